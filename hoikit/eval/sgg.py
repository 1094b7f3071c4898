"""Scene graph detection (SGDet) recall as KaihuaTang/Scene-Graph-Benchmark.pytorch ``sgg_eval.py``.

Metrics (specs/evaluation.md, "Scene graph generation"), K in {20, 50, 100}:
R@K / mR@K / zR@K with the strict graph constraint (one predicate per pair: the first maximum
over columns 1..P; pairs ranked by predicate x subject x object score, stable), and ng-R@K /
ng-mR@K / ng-zR@K without it (every (pair, predicate) scored subject x object x predicate, global
top 100, ties in row-major order over the ranked pairs). A triplet matches a ground truth iff
subject, predicate and object labels are equal and both boxes have IoU >= 0.5 (+1-pixel IoU);
one prediction may match several ground truths. Images without ground-truth relations, and
images with ground truth but no predicted pair, are skipped (as the official code does).
mR@K: per image and predicate, recall of that predicate's ground truths; per predicate, mean over
the images containing it; mR = sum over the P predicates / P (never-seen predicates count 0).
Head / body / tail = the same mean over each group of the long-tail split.

Labels are 0-based everywhere here (hoikit's VG reader: VG index - 1); the zero-shot and long-tail
files are 1-based VG indices (VG-SGG-dicts-with-attri.json) and converted on load.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from ..data.readers import load_json
from ..errors import DataError
from ..structures import SceneGraphPrediction, box_iou_plus1_rows
from .report import format_table, write_json
from .sgg_io import load_predictions

KS = (20, 50, 100)
IOU_THRESHOLD = 0.5  # iou_thres of sgg_eval.py
NG_TOP = 100  # ng candidates kept per image (sgg_eval.py SGNoGraphConstraintRecall)


def load_zeroshot(path=None) -> np.ndarray:
    """Zero-shot triplets ``[Z, 3]`` = (subject, object, predicate), 0-based, from a 1-based file.

    Default: hoikit/classes/vg150_zeroshot_triplets.json (the VG150 list of SGB, 5,971 rows).
    Accepts ``{"triplets": [[s, o, p], ...]}`` or a bare list.
    """
    from ..data.metadata import load_class_file
    data = load_class_file("vg150_zeroshot_triplets") if path is None else load_json(path, "zero-shot triplets file")
    rows = data.get("triplets") if isinstance(data, dict) else data
    try:
        arr = np.asarray(rows, dtype=np.int64)
    except (TypeError, ValueError):   # ragged rows or non-integers
        bad = next((i for i, r in enumerate(rows) if not (isinstance(r, list) and len(r) == 3
                                                           and all(isinstance(v, int) for v in r))), 0) \
            if isinstance(rows, list) else 0
        raise DataError(f"{path or 'vg150_zeroshot_triplets.json'}: triplet row {bad} is not three integers "
                        "[subject, object, predicate]") from None
    if arr.ndim != 2 or arr.shape[1] != 3 or (len(arr) and arr.min() < 1):
        raise DataError(f"{path or 'vg150_zeroshot_triplets.json'}: expected 1-based [subject, object, "
                        "predicate] rows under 'triplets'")
    return arr - 1


def load_longtail(path=None) -> Dict[str, np.ndarray]:
    """Head / body / tail predicate ids (0-based) from a 1-based ``{"head", "body", "tail"}`` file.

    Default: ``longtail_split`` of hoikit/classes/vg150.json (SGTR's VG150 split, 7 / 21 / 22).
    """
    from ..data.metadata import load_class_file
    data = load_class_file("vg150")["longtail_split"] if path is None else load_json(path, "long-tail split file")
    try:
        return {g: np.asarray(data[g], dtype=np.int64) - 1 for g in ("head", "body", "tail")}
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: expected lists 'head', 'body', 'tail' of 1-based predicate ids") from None


def _first_match(gt_key, gt_boxes, pr_key, pr_sub, pr_obj) -> np.ndarray:
    """For each ground-truth triplet, the rank of the first matching prediction (int64 max if none).

    Args:
        gt_key: int64 ``[R]`` encoded (subject, predicate, object) labels; gt_boxes float32 ``[R, 8]``.
        pr_key: int64 ``[T]`` encoded labels of predictions in rank order; pr_sub / pr_obj ``[T, 4]``.
    """
    first = np.full(len(gt_key), np.iinfo(np.int64).max, np.int64)
    r, t = np.nonzero(gt_key[:, None] == pr_key[None, :])  # r-major, t ascending
    if len(r):
        ok = ((box_iou_plus1_rows(gt_boxes[r, :4], pr_sub[t]) >= IOU_THRESHOLD)
              & (box_iou_plus1_rows(gt_boxes[r, 4:], pr_obj[t]) >= IOU_THRESHOLD))
        rr, idx = np.unique(r[ok], return_index=True)
        first[rr] = t[ok][idx]
    return first


def match_image(gt, pred: SceneGraphPrediction, num_predicates: int) -> Tuple[np.ndarray, np.ndarray]:
    """Ranks at which each ground-truth relation of one image is first recalled.

    Args:
        gt: object with ``boxes [N, 4]``, ``labels [N]`` and ``relations [R, 3]`` (0-based), e.g. a Sample.
        pred: the image's prediction (``predicate_scores [M, P + 1]``, column 0 background).
        num_predicates: P.

    Returns:
        ``(first_gc, first_ng)``: int64 ``[R]`` each; ground truth g is recalled at K iff ``first < K``.
    """
    rel = np.asarray(gt.relations, np.int64).reshape(-1, 3)
    labels = np.asarray(gt.labels, np.int64)
    gbox = np.asarray(gt.boxes, np.float32).reshape(-1, 4)
    n_lab = max(int(labels.max(initial=0)), int(np.max(pred.labels, initial=0))) + 1
    enc = lambda s, p, o: (s * (num_predicates + 1) + p) * n_lab + o  # noqa: E731
    gt_key = enc(labels[rel[:, 0]], rel[:, 2], labels[rel[:, 1]])
    gt_boxes = np.concatenate([gbox[rel[:, 0]], gbox[rel[:, 1]]], 1)
    pairs = np.asarray(pred.pairs, np.int64).reshape(-1, 2)
    scores = np.asarray(pred.predicate_scores, np.float32).reshape(len(pairs), -1)[:, 1:]
    obj_s = np.asarray(pred.scores, np.float32)
    plab = np.asarray(pred.labels, np.int64)
    pbox = np.asarray(pred.boxes, np.float32).reshape(-1, 4)
    # graph constraint: predicate = first max over 1..P; rank by predicate x subject x object
    order, predicate, _ = pred.ranked_relations()
    pairs, scores, predicate = pairs[order], scores[order], predicate[order]
    top = slice(0, max(KS))
    first_gc = _first_match(gt_key, gt_boxes, enc(plab[pairs[top, 0]], predicate[top], plab[pairs[top, 1]]),
                            pbox[pairs[top, 0]], pbox[pairs[top, 1]])
    # no graph constraint: (subject x object) x predicate over all (pair, predicate), global top 100
    ng = (obj_s[pairs[:, 0]] * obj_s[pairs[:, 1]])[:, None] * scores
    neg = -ng.reshape(-1)
    if len(neg) > NG_TOP:  # only candidates up to the 100th score (incl. its ties) need sorting
        cand = np.flatnonzero(neg <= np.partition(neg, NG_TOP - 1)[NG_TOP - 1])  # row-major order kept
        flat = cand[np.argsort(neg[cand], kind="stable")[:NG_TOP]]
    else:
        flat = np.argsort(neg, kind="stable")
    row, p = flat // scores.shape[1], flat % scores.shape[1]
    first_ng = _first_match(gt_key, gt_boxes, enc(plab[pairs[row, 0]], p, plab[pairs[row, 1]]),
                            pbox[pairs[row, 0]], pbox[pairs[row, 1]])
    return first_gc, first_ng


class _Accumulator:
    """Per-image recalls -> R@K, mR@K, zR@K (one instance per constraint mode)."""

    def __init__(self, num_predicates: int):
        self.recall = {k: [] for k in KS}
        self.zs = {k: [] for k in KS}
        self.cls_sum = {k: np.zeros(num_predicates) for k in KS}
        self.cls_n = np.zeros(num_predicates)

    def add(self, first: np.ndarray, predicate: np.ndarray, zs_mask: np.ndarray, present: np.ndarray):
        counts = np.bincount(predicate, minlength=len(self.cls_n)).astype(np.float64)
        for k in KS:
            hit = first < k
            self.recall[k].append(float(hit.sum()) / float(len(first)))
            if zs_mask.any():
                self.zs[k].append(float(hit[zs_mask].sum()) / float(zs_mask.sum()))
            hits = np.bincount(predicate[hit], minlength=len(self.cls_n))
            self.cls_sum[k][present] += hits[present] / counts[present]
        self.cls_n[present] += 1

    def result(self, longtail, prefix: str) -> Dict[str, float]:
        out = {}
        for k in KS:
            per_class = np.where(self.cls_n > 0, self.cls_sum[k] / np.maximum(self.cls_n, 1), 0.0)
            out[f"{prefix}R@{k}"] = float(np.mean(self.recall[k])) if self.recall[k] else float("nan")
            out[f"{prefix}mR@{k}"] = float(per_class.sum() / len(per_class))
            out[f"{prefix}zR@{k}"] = float(np.mean(self.zs[k])) if self.zs[k] else float("nan")
            for group, ids in (longtail or {}).items():
                out[f"{prefix}mR@{k}_{group}"] = float(per_class[ids].mean()) if len(ids) else float("nan")
            out.setdefault(f"{prefix}per_predicate_R@{k}", per_class.tolist())
        return out


def evaluate(predictions: Iterable[Tuple[int, SceneGraphPrediction]], ground_truth: Sequence,
             num_predicates: int = 50, zeroshot: Optional[np.ndarray] = None,
             longtail: Optional[Dict[str, np.ndarray]] = None) -> Dict:
    """SGDet recall of predictions against ground truth.

    Args:
        predictions: ``(image index, SceneGraphPrediction)`` pairs (index into ``ground_truth``),
            or a sequence aligned with ``ground_truth`` (None = image not predicted).
        ground_truth: per image an object with ``boxes [N, 4]`` (original pixels), ``labels [N]``
            and ``relations [R, 3]`` (0-based), e.g. the samples of ``VisualGenomeReader``.
        num_predicates: P (50 for VG150).
        zeroshot: int64 ``[Z, 3]`` 0-based (subject, object, predicate) triplets, see :func:`load_zeroshot`.
        longtail: ``{"head"|"body"|"tail": 0-based predicate ids}``, see :func:`load_longtail`.

    Returns:
        dict of fractions: ``R@K``, ``mR@K``, ``zR@K``, ``mR@K_head/_body/_tail`` and the same with
        prefix ``ng-``; ``per_predicate_R@K`` (mean recall per predicate); ``images`` (evaluated count).
    """
    zs = np.zeros((0, 3), np.int64) if zeroshot is None else np.asarray(zeroshot, np.int64).reshape(-1, 3)
    zs_key = np.unique((zs[:, 0] * (1 << 20) + zs[:, 1]) * (1 << 8) + zs[:, 2])
    gc, ng = _Accumulator(num_predicates), _Accumulator(num_predicates)
    items = predictions
    if isinstance(predictions, (list, tuple)) and all(p is None or isinstance(p, SceneGraphPrediction)
                                                      for p in predictions):
        items = enumerate(predictions)  # aligned with ground_truth
    n_eval = 0
    for index, pred in items:
        if pred is None:
            continue
        if not 0 <= index < len(ground_truth):
            raise DataError(f"scene-graph predictions: image index {index} outside the {len(ground_truth)} "
                            "ground-truth images")
        gt = ground_truth[index]
        rel = np.asarray(gt.relations, np.int64).reshape(-1, 3)
        if len(rel) == 0 or len(pred.pairs) == 0:
            continue  # skipped as in the official code
        ps = np.asarray(pred.predicate_scores)
        if ps.ndim != 2 or ps.shape != (len(pred.pairs), num_predicates + 1):
            raise DataError(f"scene-graph predictions: image {index}: predicate_scores has shape {ps.shape}, "
                            f"expected ({len(pred.pairs)}, {num_predicates + 1})")
        first_gc, first_ng = match_image(gt, pred, num_predicates)
        labels = np.asarray(gt.labels, np.int64)
        key = (labels[rel[:, 0]] * (1 << 20) + labels[rel[:, 1]]) * (1 << 8) + rel[:, 2]
        pos = np.minimum(np.searchsorted(zs_key, key), max(len(zs_key) - 1, 0))
        zs_mask = zs_key[pos] == key if len(zs_key) else np.zeros(len(key), bool)
        present = np.unique(rel[:, 2])
        gc.add(first_gc, rel[:, 2], zs_mask, present)
        ng.add(first_ng, rel[:, 2], zs_mask, present)
        n_eval += 1
    out = {"images": n_eval}
    out.update(gc.result(longtail, ""))
    out.update(ng.result(longtail, "ng-"))
    return out


def format_results(res: Dict) -> str:
    """R / mR / zR / head / body / tail table for both modes (percent)."""
    rows = {}
    for prefix, mode in (("", "graph constraint"), ("ng-", "no graph constraint")):
        for m in ("R", "mR", "zR", "mR_head", "mR_body", "mR_tail"):
            base, _, group = m.partition("_")
            rows[f"{prefix}{m} ({mode})"] = {str(k): 100 * res.get(f"{prefix}{base}@{k}" + (f"_{group}" if group else ""),
                                                                     float("nan")) for k in KS}
    return format_table(f"SGDet recall (%), {res['images']} images", rows, [str(k) for k in KS],
                        {str(k): f"@{k}" for k in KS})


def add_cli_arguments(parser) -> None:
    parser.add_argument("--pred", required=True, help="predictions .json or .npz (docs/formats.md)")
    parser.add_argument("--anno", required=True, help="VG-SGG-with-attri.h5 (or SynthHOI's VG-format h5)")
    parser.add_argument("--dicts", required=True, help="VG-SGG-dicts-with-attri.json")
    parser.add_argument("--image-data", required=True, help="image_data.json")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--zeroshot", default=None, help="zero-shot triplets JSON (default: VG150 list)")
    parser.add_argument("--longtail", default=None, help="head/body/tail split JSON (default: VG150 split)")
    parser.add_argument("--json", default=None, help="write the results here (percent)")


def run_cli(args) -> int:
    from ..data.visual_genome import VisualGenomeReader
    reader = VisualGenomeReader(args.anno, args.dicts, args.image_data, split=args.split)
    res = evaluate(load_predictions(args.pred, len(reader)), reader, num_predicates=len(reader.meta.predicates),
                   zeroshot=load_zeroshot(args.zeroshot), longtail=load_longtail(args.longtail))
    print(format_results(res))
    if args.json:
        write_json(args.json, {k: (v if k == "images" else
                                   [100 * x for x in v] if isinstance(v, list) else 100 * v) for k, v in res.items()})
    return 0
