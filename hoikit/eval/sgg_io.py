"""Scene-graph prediction files (docs/formats.md, "Scene graphs"): JSON and the binary ``.npz``.

JSON: ``{"images": [{"image": i, "boxes": [[x1, y1, x2, y2], ...], "labels": [...],
"scores": [...], "pairs": [[s, o], ...], "predicate_scores": [[bg, p1, ..., pP], ...]}]}`` where
``i`` indexes the images of the evaluated split in reader order, boxes are original-image pixels
(continuous xyxy), labels are 0-based (VG index - 1, as hoikit's VG reader) and column 0 of
``predicate_scores`` is background.

NPZ (large files): the per-image arrays concatenated, plus offsets:
``image [I]`` (reader index per entry), ``box_offsets [I + 1]``, ``pair_offsets [I + 1]``,
``boxes [N, 4]`` float32, ``labels [N]`` int64, ``scores [N]`` float32,
``pairs [M, 2]`` int64 (indices local to the image), ``predicate_scores [M, P + 1]`` float32.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..data.reader_base import load_json, load_npz
from ..errors import DataError
from ..structures import SceneGraphPrediction

NPZ_KEYS = ("image", "box_offsets", "pair_offsets", "boxes", "labels", "scores", "pairs", "predicate_scores")


def _check(pred: SceneGraphPrediction, where: str) -> SceneGraphPrediction:
    n = len(pred.boxes)
    if len(pred.labels) != n or len(pred.scores) != n:
        raise DataError(f"{where}: boxes, labels and scores differ in length ({n}, {len(pred.labels)}, "
                        f"{len(pred.scores)})")
    if len(pred.pairs) and (pred.pairs.min() < 0 or pred.pairs.max() >= n):
        raise DataError(f"{where}: pair index {int(pred.pairs.max())} outside the {n} boxes")
    if len(pred.predicate_scores) != len(pred.pairs):
        raise DataError(f"{where}: {len(pred.pairs)} pairs but {len(pred.predicate_scores)} predicate_scores rows")
    return pred


def _make(boxes, labels, scores, pairs, predicate_scores) -> SceneGraphPrediction:
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    ps = np.asarray(predicate_scores, np.float32)
    ps = ps.reshape(len(pairs), 0) if ps.size == 0 else ps.reshape(len(pairs), -1)
    return SceneGraphPrediction(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64).reshape(-1),
                                np.asarray(scores, np.float32).reshape(-1), pairs, ps)


def check_npz_arrays(arrays, where: str = "predictions") -> dict:
    """Validate the concatenated NPZ layout at once (what :func:`iter_npz_arrays` checks per image).

    Returns:
        the arrays as numpy arrays (``pairs`` int64 ``[M, 2]``, offsets int64), same keys.

    Raises:
        DataError: naming the first bad entry (and its image) or array.
    """
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{where}: missing array '{missing[0]}' (needs {', '.join(NPZ_KEYS)})")
    a = {k: np.asarray(arrays[k]) for k in NPZ_KEYS}
    a["pairs"] = a["pairs"].astype(np.int64, copy=False).reshape(-1, 2)
    image = a["image"]
    for off, sizes in (("box_offsets", ("boxes", "labels", "scores")), ("pair_offsets", ("pairs", "predicate_scores"))):
        o = a[off] = a[off].astype(np.int64, copy=False)
        if len(o) != len(image) + 1:
            raise DataError(f"{where}: box_offsets / pair_offsets must have len(image) + 1 = {len(image) + 1} entries")
        bad = np.flatnonzero(np.diff(o) < 0)
        if o[0] != 0 or len(bad):
            k = int(bad[0]) if len(bad) else 0
            raise DataError(f"{where}: entry {k} (image {image[k]}): '{off}' must start at 0 and never decrease")
        for name in sizes:
            if len(a[name]) != o[-1]:
                raise DataError(f"{where}: '{name}' has {len(a[name])} rows but {off} ends at {o[-1]}")
    n_boxes = np.diff(a["box_offsets"])
    owner = np.repeat(np.arange(len(image)), np.diff(a["pair_offsets"]))
    bad = np.flatnonzero((a["pairs"].min(1, initial=0) < 0) | (a["pairs"].max(1, initial=0) >= n_boxes[owner]))
    if len(bad):
        k = int(owner[bad[0]])
        raise DataError(f"{where}: entry {k} (image {image[k]}): pair index {int(a['pairs'][bad[0]].max())} "
                        f"outside the {n_boxes[k]} boxes")
    return a


def iter_npz_arrays(arrays, where: str = "predictions") -> Iterator[Tuple[int, SceneGraphPrediction]]:
    """Per-image predictions (views, no copies) from the concatenated NPZ layout."""
    bo, po = np.asarray(arrays["box_offsets"]), np.asarray(arrays["pair_offsets"])
    image = np.asarray(arrays["image"])
    if len(bo) != len(image) + 1 or len(po) != len(image) + 1:
        raise DataError(f"{where}: box_offsets / pair_offsets must have len(image) + 1 = {len(image) + 1} entries")
    boxes, labels, scores = arrays["boxes"], arrays["labels"], arrays["scores"]
    pairs, ps = arrays["pairs"], arrays["predicate_scores"]
    for k, i in enumerate(image.tolist()):
        b0, b1, p0, p1 = bo[k], bo[k + 1], po[k], po[k + 1]
        yield int(i), _check(SceneGraphPrediction(boxes[b0:b1], labels[b0:b1], scores[b0:b1], pairs[p0:p1],
                                                  ps[p0:p1]), f"{where}: entry {k} (image {i})")


def load_predictions(path, num_images: int = None) -> List[Tuple[int, SceneGraphPrediction]]:
    """Read a JSON or NPZ prediction file into ``(image index, SceneGraphPrediction)`` pairs."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        out = list(iter_npz_arrays(load_npz(path, NPZ_KEYS), str(path)))
    else:
        data = load_json(path, "predictions file")
        entries = data.get("images") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise DataError(f"{path}: expected an object with a list under key 'images'")
        out = []
        for k, e in enumerate(entries):
            try:
                pred = _make(e["boxes"], e["labels"], e["scores"], e["pairs"], e["predicate_scores"])
                out.append((int(e["image"]), _check(pred, f"{path}: images[{k}]")))
            except KeyError as err:
                raise DataError(f"{path}: images[{k}] lacks key {err}") from None
            except (TypeError, ValueError) as err:
                raise DataError(f"{path}: images[{k}] malformed ({err})") from None
    if num_images is not None:
        for k, (i, _) in enumerate(out):
            if not 0 <= i < num_images:
                raise DataError(f"{path}: entry {k} has image {i}, outside the split's {num_images} images")
    return out


def load_prediction_arrays(path, num_images: int = None):
    """A prediction file as the evaluator's fastest input: the checked NPZ arrays dict for ``.npz``
    (no per-image objects), else :func:`load_predictions`."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        return load_predictions(path, num_images)
    a = check_npz_arrays(load_npz(path, NPZ_KEYS), str(path))
    if num_images is not None:
        bad = np.flatnonzero((a["image"] < 0) | (a["image"] >= num_images))
        if len(bad):
            raise DataError(f"{path}: entry {bad[0]} has image {a['image'][bad[0]]}, outside the split's "
                            f"{num_images} images")
    return a


def save_predictions(items: Sequence[Tuple[int, SceneGraphPrediction]], path) -> None:
    """Write ``(image index, prediction)`` pairs as JSON or NPZ (by suffix).

    NPZ ``predicate_scores`` has the column count (P + 1) of the predictions that have pairs; images
    without pairs (any ``[0, *]`` shape, e.g. ``[0, 0]`` read from JSON's ``[]``) fit it, and a file
    without any pair stores ``[0, 0]`` (the evaluator checks columns only where pairs exist).
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        preds = [p for _, p in items]
        widths = {i: np.asarray(p.predicate_scores).reshape(len(p.predicate_scores), -1).shape[1]
                  for i, p in items if len(p.predicate_scores)}
        cols = next(iter(widths.values()), 0)
        odd = [i for i, w in widths.items() if w != cols]
        if odd:
            raise DataError(f"{path}: image {odd[0]} has {widths[odd[0]]} predicate_scores columns, "
                            f"image {next(iter(widths))} has {cols}")

        def cat(field: str, width: Optional[int]) -> np.ndarray:   # width None: a 1-D field
            shape = (0,) if width is None else (0, width)
            rows = [np.asarray(getattr(p, field)) for p in preds]
            rows = [r.reshape((len(r),) + shape[1:]) for r in rows]
            return np.concatenate(rows) if rows else np.zeros(shape)

        np.savez(path, image=np.array([i for i, _ in items], np.int64),
                 box_offsets=np.cumsum([0] + [len(p.boxes) for p in preds]),
                 pair_offsets=np.cumsum([0] + [len(p.pairs) for p in preds]),
                 boxes=cat("boxes", 4).astype(np.float32), labels=cat("labels", None).astype(np.int64),
                 scores=cat("scores", None).astype(np.float32), pairs=cat("pairs", 2).astype(np.int64),
                 predicate_scores=cat("predicate_scores", cols).astype(np.float32))
        return
    images = [{"image": int(i), "boxes": np.asarray(p.boxes).tolist(), "labels": np.asarray(p.labels).tolist(),
               "scores": np.asarray(p.scores).tolist(), "pairs": np.asarray(p.pairs).tolist(),
               "predicate_scores": np.asarray(p.predicate_scores).tolist()} for i, p in items]
    path.write_text(json.dumps({"images": images}))
