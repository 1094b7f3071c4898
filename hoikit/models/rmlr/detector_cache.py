"""Per-image runs of the frozen detector, with an optional LRU cache of their outputs
(``model.rmlr.detector_cache``; docs/method-notes-rmlr.md, "Detector cache").

UPT / RmLR never train their detector (Sec. 3.1: DETR is frozen), so its outputs for an image are a
function of the image's pixels alone. Run on one image at a time, without padding, they are also
independent of the other images of the batch; then they can be cached and served again whenever the
same pixels come back (SynthHOI's preset: fixed scale, no crop or colour jitter, so each training
image has two versions, flipped or not, seen again every epoch). The batch layout the interaction
head reads (padded C5 map, its mask and position encoding, last decoder layer) is rebuilt from the
per-image rows by :func:`batch_layout`, so a batch is the same bits whether its rows were cached or
computed.

The key is a hash of the image tensor (dtype, shape, every byte): a flipped or otherwise augmented
image is a different entry, and a changed image can never be served a stale one. Rows are detached
copies kept on CPU (bounded host memory); :func:`batch_layout` builds fresh tensors, so nothing the
caller gets aliases the cache.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ...errors import ConfigError

#: the detector outputs one image's row keeps (``pos`` only when the IRE reads it)
ROW_KEYS = ("features", "mask", "pos", "hs", "pred_logits", "pred_boxes")

#: one image's outputs: features [Cb, h, w], mask [h, w], pos [D, h, w] (optional), hs [Q, D] (last
#: decoder layer), pred_logits [Q, C], pred_boxes [Q, 4]
Row = Dict[str, Tensor]


def image_key(image: Tensor) -> bytes:
    """Digest of an image tensor's dtype, shape and bytes (BLAKE2b, 16 bytes).

    Args:
        image: ``[3, H, W]`` (any dtype / device; non-contiguous views are read in logical order).
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.dtype}|{tuple(image.shape)}|".encode())
    h.update(image.detach().contiguous().cpu().numpy().tobytes())
    return h.digest()


def row_nbytes(row: Row) -> int:
    """Bytes of a row's tensors."""
    return sum(t.numel() * t.element_size() for t in row.values())


class DetectorCache:
    """LRU map ``image_key -> Row`` holding at most ``max_mb`` MiB of tensors.

    Args:
        max_mb: memory cap in MiB (``model.rmlr.detector_cache_mb``); 0 keeps nothing (every image
            is run afresh, one at a time). A row larger than the cap is not kept.
    """

    def __init__(self, max_mb: float):
        if max_mb < 0:
            raise ConfigError(f"model.rmlr.detector_cache_mb: {max_mb} is negative (0 keeps nothing)")
        self.max_bytes = int(max_mb * 2 ** 20)
        self._rows: "OrderedDict[bytes, Row]" = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = self.evictions = 0

    @property
    def num_rows(self) -> int:
        """Cached images (not ``__len__``: an empty cache must not make the object falsy)."""
        return len(self._rows)

    def __contains__(self, key: bytes) -> bool:
        return key in self._rows

    def clear(self) -> None:
        """Drop every row (the counters are kept)."""
        self._rows.clear()
        self.nbytes = 0

    def get(self, key: bytes) -> Optional[Row]:
        """The row of ``key`` (now the most recently used), or None; counts a hit or a miss."""
        row = self._rows.get(key)
        if row is None:
            self.misses += 1
            return None
        self._rows.move_to_end(key)
        self.hits += 1
        return row

    def put(self, key: bytes, row: Row) -> None:
        """Keep ``row`` (already detached copies), evicting least recently used rows to fit."""
        size = row_nbytes(row)
        if size > self.max_bytes or key in self._rows:
            return
        while self._rows and self.nbytes + size > self.max_bytes:
            _, old = self._rows.popitem(last=False)
            self.nbytes -= row_nbytes(old)
            self.evictions += 1
        self._rows[key] = row
        self.nbytes += size


def detect_one(detector: nn.Module, image: Tensor, keep_pos: bool) -> Row:
    """Run ``detector`` on one image (no padding) and keep the outputs UPT / RmLR read.

    Args:
        detector: DETR or Deformable DETR (``forward(images) -> dict``, docs/architecture.md).
        image: ``[3, H, W]``.
        keep_pos: keep the C5 position encoding (the IRE reads it).

    Returns:
        a :data:`Row` of detached CPU copies (see :data:`ROW_KEYS`).
    """
    with torch.no_grad():
        out = detector([image])
    row = dict(features=out["features"][0], mask=out["mask"][0], hs=out["hs"][-1][0],
               pred_logits=out["pred_logits"][0], pred_boxes=out["pred_boxes"][0])
    if keep_pos:
        row["pos"] = out["pos"][0]
    return {k: v.detach().to("cpu", copy=True) for k, v in row.items()}


def batch_layout(rows: Sequence[Row], device) -> Dict[str, Tensor]:
    """Per-image rows -> the padded batch layout of a detector output (fresh tensors on ``device``).

    Returns:
        dict with ``features [B, Cb, h, w]`` (zeros on padding cells), ``mask [B, h, w]`` (True on
        padding: each image's own mask, True outside its map), ``pos [B, D, h, w]`` (zeros on padding;
        only when every row has it), ``hs [1, B, Q, D]`` (last decoder layer), ``pred_logits [B, Q, C]``,
        ``pred_boxes [B, Q, 4]`` and ``global_features [B, Cb]``: each image's C5 averaged over its own map,
        as a one-image forward pools it (UPT's AdaptiveAvgPool2d over an unpadded map).
    """
    h = max(int(r["features"].shape[-2]) for r in rows)
    w = max(int(r["features"].shape[-1]) for r in rows)
    b = len(rows)
    f0 = rows[0]["features"]
    features = torch.zeros((b, f0.shape[0], h, w), dtype=f0.dtype, device=device)
    mask = torch.ones((b, h, w), dtype=torch.bool, device=device)
    with_pos = all("pos" in r for r in rows)
    pos = torch.zeros((b, rows[0]["pos"].shape[0], h, w), dtype=rows[0]["pos"].dtype, device=device) \
        if with_pos else None
    for i, r in enumerate(rows):
        hi, wi = r["features"].shape[-2:]
        features[i, :, :hi, :wi].copy_(r["features"])
        mask[i, :hi, :wi].copy_(r["mask"])
        if with_pos:
            pos[i, :, :hi, :wi].copy_(r["pos"])
    out = dict(features=features, mask=mask,
               hs=torch.stack([r["hs"] for r in rows]).to(device)[None],
               pred_logits=torch.stack([r["pred_logits"] for r in rows]).to(device),
               pred_boxes=torch.stack([r["pred_boxes"] for r in rows]).to(device),
               global_features=torch.stack([r["features"].mean(dim=(1, 2)) for r in rows]).to(device))
    if with_pos:
        out["pos"] = pos
    return out


def detect_per_image(detector: nn.Module, images: List[Tensor], cache: Optional[DetectorCache],
                     keep_pos: bool) -> Dict[str, Tensor]:
    """The detector run one image at a time (rows served from ``cache`` when there), in the batch
    layout of :func:`batch_layout`. ``cache=None`` runs every image afresh and keeps nothing."""
    rows = []
    for im in images:
        key = image_key(im) if cache is not None else None
        row = cache.get(key) if cache is not None else None
        if row is None:
            row = detect_one(detector, im, keep_pos)
            if cache is not None:
                cache.put(key, row)
        rows.append(row)
    return batch_layout(rows, images[0].device)
