"""HICO-DET evaluation inputs: the ground truth and the detections file (docs/formats.md).

The annotation file is the fredzzhang/hicodet ``instances_<split>.json`` layout (SynthHOI writes
the same): ``annotation`` (per image ``boxes_h``, ``boxes_o`` 1-based inclusive, ``hoi``,
``object``, ``verb``), ``filenames``, ``empty``, ``objects``, ``verbs``, ``correspondence``
(rows ``[hoi, object, verb]``), ``rare``, ``non_rare``. The number of classes is the number of
``correspondence`` rows, so any dataset in this layout works.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import numpy as np

from ..data.reader_base import load_json, load_npz
from ..errors import DataError

DETECTION_KEYS = ("image", "hoi", "score", "box_h", "box_o")


class HICODetGroundTruth:
    """Ground-truth pairs of a HICO-DET-format file, arranged for vectorised matching.

    Args:
        anno: path of the annotation JSON or its parsed dict.

    Attributes:
        source: file name (or ``"<dict>"``) used in messages.
        num_images, num_classes, num_objects: sizes.
        correspondence: int64 ``[C, 3]`` rows ``(hoi, object, verb)`` as in the file.
        hoi_object, hoi_verb: int64 ``[C]`` object / verb of each HOI class.
        names: ``[C]`` "verb object" names.
        rare, non_rare: bool ``[C]`` masks from the file's ``rare`` / ``non_rare`` lists.
        empty: bool ``[num_images]``, True for images listed in ``empty``.
        npos: int64 ``[C]`` number of ground-truth pairs per class.
        key: int64 ``[G]`` ``hoi * num_images + image`` of every pair, ascending; pairs of one
            (class, image) keep file order.
        box_h, box_o: float64 ``[G, 4]`` continuous boxes ``(x1 - 1, y1 - 1, x2, y2)``;
            h_cols / o_cols: their four columns, contiguous; h_area / o_area ``[G]``.
        image_has_object: bool ``[num_images, num_objects]``: the image has a pair with that
            object (Known-Object setting).
    """

    def __init__(self, anno: Union[str, Path, Dict]):
        if isinstance(anno, dict):
            self.source, d = "<dict>", anno
        else:
            self.source, d = str(anno), load_json(anno)
        src = self.source
        if not isinstance(d, dict):
            raise DataError(f"{src}: expected a JSON object (HICO-DET annotation format, see docs/formats.md)")
        for k in ("annotation", "filenames", "correspondence"):
            if k not in d:
                raise DataError(f"{src}: missing key '{k}' (HICO-DET annotation format, see docs/formats.md)")
        if len(d["annotation"]) != len(d["filenames"]):
            raise DataError(f"{src}: {len(d['annotation'])} 'annotation' entries but {len(d['filenames'])} 'filenames'")
        corr = np.asarray(d["correspondence"], dtype=np.int64).reshape(-1, 3)
        c = len(corr)
        if c == 0 or sorted(corr[:, 0].tolist()) != list(range(c)):
            raise DataError(f"{src}: 'correspondence' hoi ids must be 0..{max(c - 1, 0)}, each once")
        self.correspondence = corr
        self.num_classes = c
        self.num_images = len(d["filenames"])
        self.filenames = list(d["filenames"])
        self.hoi_object = np.zeros(c, np.int64)
        self.hoi_verb = np.zeros(c, np.int64)
        self.hoi_object[corr[:, 0]] = corr[:, 1]
        self.hoi_verb[corr[:, 0]] = corr[:, 2]
        objects, verbs = d.get("objects"), d.get("verbs")
        self.num_objects = max(len(objects or []), int(corr[:, 1].max()) + 1)
        self.names = [(f"{verbs[v]} {objects[o]}" if objects and verbs and v < len(verbs) and o < len(objects)
                       else f"hoi {h}") for h, o, v in zip(range(c), self.hoi_object, self.hoi_verb)]
        self.rare = self._class_mask(d.get("rare", []), "rare")
        self.non_rare = self._class_mask(d["non_rare"], "non_rare") if "non_rare" in d else ~self.rare
        if (self.rare & self.non_rare).any():
            raise DataError(f"{src}: class {int(np.argmax(self.rare & self.non_rare))} is in both 'rare' and 'non_rare'")
        self.empty = np.zeros(self.num_images, bool)
        empty = np.asarray(d.get("empty", []), dtype=np.int64)
        if ((empty < 0) | (empty >= self.num_images)).any():
            raise DataError(f"{src}: 'empty' holds an image index outside 0..{self.num_images - 1}")
        self.empty[empty] = True
        self._load_pairs(d["annotation"])

    def _class_mask(self, ids, key: str) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        bad = (ids < 0) | (ids >= self.num_classes)
        if bad.any():
            raise DataError(f"{self.source}: '{key}' holds class {int(ids[bad][0])} outside 0..{self.num_classes - 1}")
        mask = np.zeros(self.num_classes, bool)
        mask[ids] = True
        return mask

    def _load_pairs(self, annotation) -> None:
        img, hoi, bh, bo = [], [], [], []
        for i, a in enumerate(annotation):
            try:
                h, ph, po = a["hoi"], a["boxes_h"], a["boxes_o"]
            except (KeyError, TypeError):
                raise DataError(f"{self.source}: annotation[{i}] needs keys 'hoi', 'boxes_h', 'boxes_o'") from None
            if not (len(h) == len(ph) == len(po)):
                raise DataError(f"{self.source}: annotation[{i}]: 'hoi', 'boxes_h', 'boxes_o' differ in length")
            img.extend([i] * len(h))
            hoi.extend(h)
            bh.extend(ph)
            bo.extend(po)
        img = np.asarray(img, np.int64)
        hoi = np.asarray(hoi, np.int64)
        try:
            bh = np.asarray(bh, np.float64).reshape(-1, 4)
            bo = np.asarray(bo, np.float64).reshape(-1, 4)
        except ValueError:
            raise DataError(f"{self.source}: annotation boxes must be [x1, y1, x2, y2] lists") from None
        bad = (hoi < 0) | (hoi >= self.num_classes)
        if bad.any():
            j = int(np.argmax(bad))
            raise DataError(f"{self.source}: annotation[{img[j]}] 'hoi' {hoi[j]} outside 0..{self.num_classes - 1}")
        self.npos = np.bincount(hoi, minlength=self.num_classes).astype(np.int64)
        key = hoi * self.num_images + img
        order = np.argsort(key, kind="stable")  # stable: file order within a (class, image)
        self.key = key[order]
        # 1-based inclusive -> continuous: (x1 - 1, y1 - 1, x2, y2) (spec, "IoU convention")
        shift = np.array([1.0, 1.0, 0.0, 0.0])
        self.box_h = bh[order] - shift
        self.box_o = bo[order] - shift
        self.h_cols = [np.ascontiguousarray(self.box_h[:, j]) for j in range(4)]
        self.o_cols = [np.ascontiguousarray(self.box_o[:, j]) for j in range(4)]
        self.h_area = (self.box_h[:, 2] - self.box_h[:, 0]) * (self.box_h[:, 3] - self.box_h[:, 1])
        self.o_area = (self.box_o[:, 2] - self.box_o[:, 0]) * (self.box_o[:, 3] - self.box_o[:, 1])
        self._cell_table = None
        self.image_has_object = np.zeros((self.num_images, self.num_objects), bool)
        self.image_has_object[img, self.hoi_object[hoi]] = True

    # dense (class, image) tables up to this many cells (2 x int32: 8 bytes per cell)
    DENSE_CELLS = 1 << 24

    def cells(self, key: np.ndarray):
        """First row in ``key``-sorted pairs and number of pairs of each (class, image) cell.

        Args:
            key: int64 ``[N]`` cell ids ``hoi * num_images + image``.

        Returns:
            ``(start, count)``, int ``[N]``: the cell's pairs are rows ``start .. start + count - 1``
            of ``self.key`` / ``box_h`` / ``box_o``, in file order.
        """
        num_cells = self.num_classes * self.num_images
        if num_cells > self.DENSE_CELLS:
            start = np.searchsorted(self.key, key, side="left")
            return start, np.searchsorted(self.key, key, side="right") - start
        if self._cell_table is None:
            count = np.bincount(self.key, minlength=num_cells).astype(np.int32)
            start = (np.cumsum(count, dtype=np.int64) - count).astype(np.int32)
            self._cell_table = (start, count)
        start, count = self._cell_table
        return start[key], count[key]


def check_detections(arrays: Dict, gt: HICODetGroundTruth, source: str) -> Dict[str, np.ndarray]:
    """Validate detection arrays against the ground truth and normalise their dtypes.

    Args:
        arrays: ``image`` ``[N]``, ``hoi`` ``[N]``, ``score`` ``[N]``, ``box_h`` / ``box_o`` ``[N, 4]``.
        gt: the ground truth (image and class ranges).
        source: file or call named in error messages.

    Returns:
        dict with int64 ``image``, ``hoi``, float64 ``score`` and float boxes (dtype kept).

    Raises:
        DataError: missing array, wrong shape, non-integer index, index out of range,
            non-finite score or box; the message names the source, array and first bad index.
    """
    out = {}
    for k in DETECTION_KEYS:
        if k not in arrays or arrays[k] is None:
            raise DataError(f"{source}: missing array '{k}' (needs {', '.join(DETECTION_KEYS)})")
        a = np.asarray(arrays[k])
        if not np.issubdtype(a.dtype, np.number):
            raise DataError(f"{source}: array '{k}' must be numeric, got dtype {a.dtype}")
        out[k] = a
    n = out["image"].shape[0] if out["image"].ndim == 1 else -1
    for k in DETECTION_KEYS:
        want = (n, 4) if k.startswith("box") else (n,)
        if n < 0 or out[k].shape != want:
            raise DataError(f"{source}: array '{k}' has shape {tuple(out[k].shape)}, expected "
                            f"{'(N, 4)' if k.startswith('box') else '(N,)'} with N = len(image)")
    for k, hi in (("image", gt.num_images), ("hoi", gt.num_classes)):
        a = out[k]
        if not np.issubdtype(a.dtype, np.integer):
            bad = ~np.isfinite(a) | (a != np.round(a)) if len(a) else np.zeros(0, bool)
            if bad.any():
                j = int(np.argmax(bad))
                raise DataError(f"{source}: array '{k}' index {j}: {a[j]} is not an integer")
        a = a.astype(np.int64, copy=False)
        bad = (a < 0) | (a >= hi)
        if bad.any():
            j = int(np.argmax(bad))
            raise DataError(f"{source}: array '{k}' index {j}: {a[j]} outside 0..{hi - 1}")
        out[k] = a
    out["score"] = out["score"].astype(np.float64, copy=False)
    for k in ("score", "box_h", "box_o"):
        fin = np.isfinite(out[k])
        if not fin.all():
            j = int(np.argmax(~fin.reshape(n, -1).all(1)))
            raise DataError(f"{source}: array '{k}' index {j}: non-finite value (NaN or inf)")
        if not np.issubdtype(out[k].dtype, np.floating):
            out[k] = out[k].astype(np.float64)
    return out


def load_detections(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """Read a detections file: ``.npz`` arrays or ``.json`` ``{"detections": [{...}, ...]}``.

    Args:
        path: the file (format in docs/formats.md).

    Returns:
        dict ``image`` ``[N]``, ``hoi`` ``[N]``, ``score`` ``[N]``, ``box_h``, ``box_o`` ``[N, 4]``
        (not yet validated against an annotation file: see :func:`check_detections`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, DETECTION_KEYS)
    if suffix == ".json":
        d = load_json(path, "detections file")
        dets = d.get("detections") if isinstance(d, dict) else None
        if not isinstance(dets, list):
            raise DataError(f"{path}: expected {{\"detections\": [...]}} at the top level")
        cols = {k: [] for k in DETECTION_KEYS}
        for i, det in enumerate(dets):
            for k in DETECTION_KEYS:
                if not isinstance(det, dict) or k not in det:
                    raise DataError(f"{path}: detections[{i}] has no key '{k}'")
                v = det[k]
                if k.startswith("box") and (not isinstance(v, (list, tuple)) or len(v) != 4):
                    raise DataError(f"{path}: detections[{i}] '{k}' must be [x1, y1, x2, y2]")
                cols[k].append(v)
        try:
            return {k: np.asarray(v, dtype=np.float64).reshape((-1, 4) if k.startswith("box") else (-1,))
                    for k, v in cols.items()}
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}: non-numeric detection value ({e})") from None
    raise DataError(f"{path}: unknown detections format '{suffix}' (use .npz or .json)")
