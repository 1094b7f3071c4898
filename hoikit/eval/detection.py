"""Detector AP with the COCO protocol, computed by pycocotools (the official COCO API).

    m = coco_detection_metrics(gt_per_image, dets_per_image, class_names)
    m["AP"], m["AP50"], m["AP75"], m["APs"], m["APm"], m["APl"]       # percent
    m["per_class_AP"]["person"], m["per_class_AP50"]["person"]        # percent

Why pycocotools and not faster-coco-eval: pycocotools is the COCO authors' own evaluation
(``cocodataset/cocoapi``) that DETR, detectron2 and mmdetection report with, so numbers here are
the field's numbers by construction; it has wheels for every CPython hoikit supports and needs
nothing else. faster-coco-eval re-implements it in C++ to be faster, which the sizes hoikit
evaluates after every epoch do not need (benchmarks/results/detection_eval.md: 500 images x 100
detections in about a second).

The protocol, as pycocotools implements it (cocodataset.org "Detection evaluation"):

* per class, detections of an image are ranked by score and at most ``max_dets`` (100) of them are
  kept; each is matched greedily to the unmatched ground-truth box of its class with the highest
  IoU >= t (IoU exactly t matches), so a second detection of an already matched object is a false
  positive;
* a crowd region (``iscrowd``) is matched by intersection over the *detection's* area and may
  swallow any number of detections; a detection matched to it (or to a box outside the evaluated
  area range) is ignored, neither true nor false positive; crowd regions are never positives;
* AP is the 101-point interpolated precision (recall 0, 0.01, ..., 1) of the monotone precision
  envelope, averaged over the 10 IoU thresholds 0.50:0.05:0.95 (``AP``) or taken at one of them
  (``AP50``, ``AP75``) and averaged over the classes that have ground truth (others are skipped,
  as COCO does with -1 entries);
* ``APs`` / ``APm`` / ``APl``: ground truth of area < 32^2, 32^2..96^2, > 96^2 pixels; the area is
  the annotation's ``area`` field when the ground truth has one (a COCO file: the segmentation
  area), otherwise the box area ``w * h`` (formats without segmentation); a detection's area is
  its box area. A size with no ground truth gives ``nan``.

The COCO objects are built in memory (no files) and pycocotools' progress prints are silenced.
"""
from __future__ import annotations

import contextlib
import io
from typing import Dict, Mapping, Sequence, Union

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..errors import DataError

MAX_DETS = 100          # COCO's maxDets for AP: detections kept per image and class
AREA_NAMES = ("all", "small", "medium", "large")   # order of pycocotools' Params.areaRng

__all__ = ["coco_detection_metrics", "format_detection_metrics", "MAX_DETS"]


def _get(obj, key: str, default=None):
    """``obj[key]`` for a mapping, ``obj.key`` otherwise (a :class:`~hoikit.structures.Sample`)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _boxes(obj, i: int, what: str, num_classes: int):
    """Validated ``boxes [N, 4]`` (xyxy) and ``labels [N]`` of image ``i``."""
    boxes = np.asarray(_get(obj, "boxes"), np.float64).reshape(-1, 4)
    labels = np.asarray(_get(obj, "labels"), np.int64).reshape(-1)
    if len(labels) != len(boxes):
        raise DataError(f"{what} of image {i}: {len(boxes)} boxes but {len(labels)} labels")
    if not np.isfinite(boxes).all():
        raise DataError(f"{what} of image {i}: non-finite box coordinates")
    bad = np.nonzero((labels < 0) | (labels >= num_classes))[0]
    if len(bad):
        raise DataError(f"{what} of image {i}: label {int(labels[bad[0]])} is not in 0..{num_classes - 1}")
    return boxes, labels


def _column(obj, key: str, n: int, i: int, what: str, dtype, default):
    v = _get(obj, key)
    if v is None:
        return np.full(n, default, dtype)
    v = np.asarray(v, dtype).reshape(-1)
    if len(v) != n:
        raise DataError(f"{what} of image {i}: {len(v)} '{key}' values for {n} boxes")
    return v


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """xyxy ``[N, 4]`` -> COCO ``[x, y, w, h]`` (continuous pixels, no +1)."""
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _coco(images: int, class_names: Sequence[str], annotations: list) -> COCO:
    """A pycocotools COCO object built in memory (no JSON file), ids: image = reader index,
    category = class index."""
    c = COCO()
    c.dataset = {"images": [{"id": i} for i in range(images)],
                 "categories": [{"id": k, "name": str(n)} for k, n in enumerate(class_names)],
                 "annotations": annotations}
    c.createIndex()
    return c


def _ground_truth_annotations(gt_per_image: Sequence, num_classes: int) -> list:
    anns = []
    for i, g in enumerate(gt_per_image):
        boxes, labels = _boxes(g, i, "ground truth", num_classes)
        xywh = _xywh(boxes)
        crowd = _column(g, "iscrowd", len(boxes), i, "ground truth", bool, False)
        area = _column(g, "area", len(boxes), i, "ground truth", np.float64, np.nan)
        area = np.where(np.isnan(area), xywh[:, 2] * xywh[:, 3], area)   # no segmentation: the box area
        for b, c, a, z in zip(xywh.tolist(), labels.tolist(), area.tolist(), crowd.tolist()):
            # ids start at 1: pycocotools marks "unmatched" with id 0
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": b, "area": a,
                         "iscrowd": int(z)})
    return anns


def _detection_annotations(dets_per_image: Union[Sequence, Mapping], num_images: int, num_classes: int) -> list:
    items = dets_per_image.items() if isinstance(dets_per_image, Mapping) else enumerate(dets_per_image)
    anns = []
    for i, d in items:
        if not 0 <= int(i) < num_images:
            raise DataError(f"detections of image {i}: no such image (ground truth has {num_images})")
        boxes, labels = _boxes(d, i, "detections", num_classes)
        scores = _column(d, "scores", len(boxes), i, "detections", np.float64, np.nan)
        if not np.isfinite(scores).all():
            raise DataError(f"detections of image {i}: 'scores' missing or not finite")
        xywh = _xywh(boxes)
        for b, c, s in zip(xywh.tolist(), labels.tolist(), scores.tolist()):
            # as pycocotools' COCO.loadRes does for box results: area = w * h, never crowd
            anns.append({"id": len(anns) + 1, "image_id": int(i), "category_id": c, "bbox": b,
                         "score": s, "area": b[2] * b[3], "iscrowd": 0})
    return anns


def _mean_percent(p: np.ndarray) -> float:
    """Mean of the valid (> -1) precision entries, in percent; nan when none (COCO prints -1)."""
    v = p[p > -1]
    return 100.0 * float(v.mean()) if v.size else float("nan")


def coco_detection_metrics(gt_per_image: Sequence, dets_per_image: Union[Sequence, Mapping],
                           class_names: Sequence[str], max_dets: int = MAX_DETS) -> Dict:
    """COCO box AP of detections against ground truth (pycocotools ``COCOeval``, ``iouType="bbox"``).

    Args:
        gt_per_image: one entry per image (a :class:`~hoikit.structures.Sample` or a dict):
            ``boxes [N, 4]`` xyxy pixels, ``labels [N]`` class indices; optional ``iscrowd [N]``
            (bool, default False) and ``area [N]`` (pixels^2, default the box area; nan entries too).
        dets_per_image: list aligned with ``gt_per_image``, or ``{image index: dets}`` (images left
            out have no detections); dets: ``boxes [M, 4]`` xyxy, ``scores [M]``, ``labels [M]``.
        class_names: ``[K]`` names; class index k is ``class_names[k]``.
        max_dets: detections kept per image and class, highest scores first (COCO: 100).

    Returns:
        dict of percent values: ``AP`` (IoU 0.50:0.95), ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``;
        ``per_class_AP`` and ``per_class_AP50``: {class name: value} for the classes with
        (non-crowd) ground truth. ``nan`` where nothing is evaluated (no ground truth at all, or none
        of that size).
    """
    k, n = len(class_names), len(gt_per_image)
    gt_anns = _ground_truth_annotations(gt_per_image, k)
    dt_anns = _detection_annotations(dets_per_image, n, k)
    with contextlib.redirect_stdout(io.StringIO()):   # pycocotools prints progress
        ev = COCOeval(_coco(n, class_names, gt_anns), _coco(n, class_names, dt_anns), "bbox")
        ev.params.imgIds, ev.params.catIds = list(range(n)), list(range(k))
        ev.params.maxDets = [int(max_dets)]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]          # [T iou, R recall, K class, A area, M maxDets], -1 = absent
    t50, t75 = (int(np.argmin(np.abs(ev.params.iouThrs - t))) for t in (0.5, 0.75))
    area = {name: j for j, name in enumerate(ev.params.areaRngLbl)}
    p_all = precision[:, :, :, area["all"], -1]    # [T, R, K]
    out = {"AP": _mean_percent(p_all), "AP50": _mean_percent(p_all[t50]), "AP75": _mean_percent(p_all[t75]),
           "APs": _mean_percent(precision[:, :, :, area["small"], -1]),
           "APm": _mean_percent(precision[:, :, :, area["medium"], -1]),
           "APl": _mean_percent(precision[:, :, :, area["large"], -1])}
    has_gt = [c for c in range(k) if (p_all[:, :, c] > -1).any()]
    out["per_class_AP"] = {class_names[c]: _mean_percent(p_all[:, :, c]) for c in has_gt}
    out["per_class_AP50"] = {class_names[c]: _mean_percent(p_all[t50, :, c]) for c in has_gt}
    return out


def format_detection_metrics(m: Dict) -> str:
    """The metrics of :func:`coco_detection_metrics` as a short text table (summary, then per class)."""
    lines = ["COCO box AP (pycocotools, %)",
             "  " + "  ".join(f"{k} {m[k]:.2f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")),
             f"  {'class':<20} {'AP':>7} {'AP50':>7}"]
    lines += [f"  {c:<20} {m['per_class_AP'][c]:7.2f} {m['per_class_AP50'][c]:7.2f}" for c in m["per_class_AP"]]
    return "\n".join(lines)
