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
from .report import format_table
from .sgg_io import check_npz_arrays

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


CHUNK_IMAGES = 1024  # images matched together: padded [images, pairs, predicates] arrays stay ~20 MB


def _joint_key(columns) -> Tuple[np.ndarray, np.ndarray]:
    """Encode tuples of integer columns as one int64 key, equal iff all columns are equal.

    Args:
        columns: ``(a_col, b_col)`` pairs of int arrays: the same field on the two sides.

    Returns:
        ``(key_a, key_b)`` int64.
    """
    key_a = key_b = None
    for a, b in columns:
        lo = min(int(a.min(initial=0)), int(b.min(initial=0)))
        span = max(int(a.max(initial=0)), int(b.max(initial=0))) - lo + 1
        if key_a is None:
            key_a, key_b, total = a - lo, b - lo, span
        else:
            total *= span
            if total >= 1 << 62:
                raise DataError("scene-graph evaluation: label / predicate ids too large to encode")
            key_a, key_b = key_a * span + (a - lo), key_b * span + (b - lo)
    return key_a, key_b


def _first_match(gt, pr) -> np.ndarray:
    """For each ground-truth triplet, the rank of the first matching prediction of its image.

    Args:
        gt: dict ``image [G]``, ``s``, ``p``, ``o`` labels ``[G]``, ``sub``, ``obj`` float32 ``[G, 4]``.
        pr: dict ``image [T]``, ``rank [T]`` (ascending within an image), ``s``, ``p``, ``o``,
            ``sub``, ``obj``; entries grouped by image in rank order.

    Returns:
        int64 ``[G]``: rank of the first prediction with equal labels and both IoU >= 0.5
        (+1-pixel IoU), int64 max if none.
    """
    first = np.full(len(gt["image"]), np.iinfo(np.int64).max, np.int64)
    gk, pk = _joint_key([(gt[f], pr[f]) for f in ("image", "s", "p", "o")])
    by_key = np.argsort(pk, kind="stable")                         # equal keys keep rank order
    sorted_pk = pk[by_key]
    lo, hi = np.searchsorted(sorted_pk, gk, "left"), np.searchsorted(sorted_pk, gk, "right")
    count = hi - lo
    total = int(count.sum())
    if total == 0:
        return first
    g = np.repeat(np.arange(len(gk)), count)                       # ground truth of each candidate, ascending
    t = by_key[_ranges(lo, count)]
    ok = ((box_iou_plus1_rows(gt["sub"][g], pr["sub"][t]) >= IOU_THRESHOLD)
          & (box_iou_plus1_rows(gt["obj"][g], pr["obj"][t]) >= IOU_THRESHOLD))
    g, t = g[ok], t[ok]
    head = np.r_[True, g[1:] != g[:-1]] if len(g) else np.zeros(0, bool)  # lowest rank of each g comes first
    first[g[head]] = pr["rank"][t[head]]
    return first


def _gt_triplets(gts) -> Dict[str, np.ndarray]:
    """Ground-truth relations of a chunk of images, concatenated (``image`` = position in the chunk)."""
    rel = [np.asarray(g.relations, np.int64).reshape(-1, 3) for g in gts]
    lab = [np.asarray(g.labels, np.int64).reshape(-1) for g in gts]
    box = np.concatenate([np.asarray(g.boxes, np.float32).reshape(-1, 4) for g in gts])
    image = np.repeat(np.arange(len(gts)), [len(r) for r in rel])
    rel = np.concatenate(rel)
    subj_obj = rel[:, :2] + np.r_[0, np.cumsum([len(v) for v in lab])][image, None]   # chunk box rows
    lab = np.concatenate(lab)
    return dict(image=image, s=lab[subj_obj[:, 0]], p=rel[:, 2], o=lab[subj_obj[:, 1]],
                sub=box[subj_obj[:, 0]], obj=box[subj_obj[:, 1]])


def _ranges(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start[i], start[i] + count[i])`` over i (int64)."""
    total = int(count.sum())
    return np.repeat(start - np.cumsum(count) + count, count) + np.arange(total)


def _stack_items(preds) -> Dict[str, np.ndarray]:
    """Per-image predictions -> one chunk in the concatenated NPZ layout (pairs local to each image)."""
    return dict(box_offsets=np.r_[0, np.cumsum([len(q.boxes) for q in preds])],
                pair_offsets=np.r_[0, np.cumsum([len(q.pairs) for q in preds])],
                pairs=np.concatenate([np.asarray(q.pairs, np.int64).reshape(-1, 2) for q in preds]),
                predicate_scores=np.concatenate([np.asarray(q.predicate_scores, np.float32) for q in preds]),
                scores=np.concatenate([np.asarray(q.scores, np.float32).reshape(-1) for q in preds]),
                labels=np.concatenate([np.asarray(q.labels, np.int64).reshape(-1) for q in preds]),
                boxes=np.concatenate([np.asarray(q.boxes, np.float32).reshape(-1, 4) for q in preds]))


def _ranked_pairs(c: Dict[str, np.ndarray]):
    """Pairs of a chunk ranked per image by predicate x subject x object (stable on ties).

    Args:
        c: a chunk in the concatenated NPZ layout (:func:`_stack_items`).

    Returns:
        ``(image [M], rank [M], order [M], subject [M], object [M] (chunk box rows), predicate [M])``,
        rows in rank order; ``order`` gives each ranked row's input row.
    """
    pair_off, box_off = c["pair_offsets"], c["box_offsets"]
    image = np.repeat(np.arange(len(pair_off) - 1), np.diff(pair_off))
    pairs = c["pairs"] + box_off[image, None]
    scores = np.asarray(c["predicate_scores"], np.float32)[:, 1:]
    obj_s = np.asarray(c["scores"], np.float32)
    # graph constraint: predicate = first max over 1..P; rank by predicate x subject x object
    predicate = scores.argmax(1)
    triple = scores[np.arange(len(pairs)), predicate] * obj_s[pairs[:, 0]] * obj_s[pairs[:, 1]]
    order = np.lexsort((-triple, image))                          # stable: ties keep input order
    rank = np.arange(len(order)) - pair_off[image]
    return image, rank, order, pairs[order, 0], pairs[order, 1], predicate[order]


def _ng_top(neg: np.ndarray, n_pairs: np.ndarray):
    """Per image the ``NG_TOP`` smallest of ``neg`` (ties: row-major order over the ranked pairs).

    Args:
        neg: float32 ``[I, W, P]`` negated (pair, predicate) scores, pairs in rank order; rows
            ``>= n_pairs[i]`` are padding.
        n_pairs: int ``[I]``.

    Returns:
        ``(image [T], flat [T], rank [T])``: chosen entries (flat index ``pair * P + predicate``)
        grouped by image in rank order.
    """
    n_img, width, n_pred = neg.shape
    flat = neg.reshape(n_img, width * n_pred)
    valid = None
    if (n_pairs < width).any():
        valid = np.broadcast_to((np.arange(width)[None, :] < n_pairs[:, None])[:, :, None],
                                neg.shape).reshape(n_img, -1)
    if width * n_pred > NG_TOP:  # only entries up to the 100th score (with its ties) need sorting
        # padding holds +inf: it reaches the threshold only in images with < 100 entries
        thr = np.partition(flat, NG_TOP - 1, axis=1)[:, NG_TOP - 1]
        cand = flat <= thr[:, None]
        valid = cand if valid is None else valid & cand
    elif valid is None:
        valid = np.ones(flat.shape, bool)
    row, col = np.nonzero(valid)                                   # row-major: ties keep flat order
    order = np.lexsort((flat[row, col], row))
    row, col = row[order], col[order]
    rank = np.arange(len(row)) - np.searchsorted(row, np.arange(n_img))[row]
    keep = rank < NG_TOP
    return row[keep], col[keep], rank[keep]


def _match_chunk(gts, c: Dict[str, np.ndarray], num_predicates: int
                 ) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """Ranks at which each ground-truth relation of a chunk of images is first recalled.

    Args:
        gts: per image an object with ``boxes [N, 4]``, ``labels [N]``, ``relations [R, 3]`` (0-based).
        c: the images' predictions in the concatenated NPZ layout (``predicate_scores [M, P + 1]``,
            column 0 background), every image with at least one relation and one pair.
        num_predicates: P.

    Returns:
        ``(first_gc, first_ng, gt)``: int64 ``[G]`` each over the chunk's concatenated relations
        (recalled at K iff ``first < K``) and the relations (:func:`_gt_triplets`).
    """
    gt = _gt_triplets(gts)
    image, rank, order, sub, obj, predicate = _ranked_pairs(c)
    labels, boxes, obj_s = np.asarray(c["labels"]), np.asarray(c["boxes"], np.float32), c["scores"]
    scores = np.asarray(c["predicate_scores"], np.float32)[:, 1:]
    top = rank < max(KS)
    gc = dict(image=image[top], rank=rank[top], s=labels[sub[top]], p=predicate[top], o=labels[obj[top]],
              sub=boxes[sub[top]], obj=boxes[obj[top]])
    # no graph constraint: (subject x object) x predicate over all (pair, predicate), top 100 per image
    n_pairs = np.diff(c["pair_offsets"])
    width = int(n_pairs.max())
    neg = np.full((len(n_pairs), width, scores.shape[1]), np.inf, np.float32)
    if (n_pairs == width).all():   # every image full: gather the ranked rows in place, no temporaries
        rows = neg.reshape(-1, scores.shape[1])
        np.take(scores, order, axis=0, out=rows)
        rows *= -(obj_s[sub] * obj_s[obj])[:, None]                # -(a * x) == (-a) * x exactly
    else:
        neg[image, rank] = -((obj_s[sub] * obj_s[obj])[:, None] * scores[order])
    row, col, ng_rank = _ng_top(neg, n_pairs)
    pair = c["pair_offsets"][row] + col // scores.shape[1]
    ngd = dict(image=row, rank=ng_rank, s=labels[sub[pair]], p=col % scores.shape[1], o=labels[obj[pair]],
               sub=boxes[sub[pair]], obj=boxes[obj[pair]])
    return _first_match(gt, gc), _first_match(gt, ngd), gt


def match_image(gt, pred: SceneGraphPrediction, num_predicates: int) -> Tuple[np.ndarray, np.ndarray]:
    """Ranks at which each ground-truth relation of one image is first recalled.

    Args:
        gt: object with ``boxes [N, 4]``, ``labels [N]`` and ``relations [R, 3]`` (0-based), e.g. a Sample.
        pred: the image's prediction (``predicate_scores [M, P + 1]``, column 0 background).
        num_predicates: P.

    Returns:
        ``(first_gc, first_ng)``: int64 ``[R]`` each; ground truth g is recalled at K iff ``first < K``.
    """
    first_gc, first_ng, _ = _match_chunk([gt], _stack_items([pred]), num_predicates)
    return first_gc, first_ng


def _recalls(first: np.ndarray, image: np.ndarray, predicate: np.ndarray, zs_mask: np.ndarray, n_img: int,
             num_predicates: int, longtail, prefix: str) -> Dict[str, float]:
    """R@K, mR@K, zR@K (+ head/body/tail) from every evaluated relation's first-recall rank.

    Per image recalls are averaged over images; per (image, predicate) recalls are summed per
    predicate in image order (the official accumulation), then divided by the images holding it.
    """
    n_rel = np.bincount(image, minlength=n_img).astype(np.float64)
    n_zs = np.bincount(image, weights=zs_mask, minlength=n_img)
    cell, cell_of = np.unique(image * num_predicates + predicate, return_inverse=True)  # image-major
    cell_n = np.bincount(cell_of).astype(np.float64)
    cell_p = cell % num_predicates
    cls_n = np.bincount(cell_p, minlength=num_predicates)
    out = {}
    for k in KS:
        hit = (first < k).astype(np.float64)
        recall = np.bincount(image, weights=hit, minlength=n_img) / n_rel
        has_zs = n_zs > 0
        zs = np.bincount(image, weights=hit * zs_mask, minlength=n_img)[has_zs] / n_zs[has_zs]
        cls_sum = np.bincount(cell_p, weights=np.bincount(cell_of, weights=hit) / cell_n, minlength=num_predicates)
        per_class = np.where(cls_n > 0, cls_sum / np.maximum(cls_n, 1), 0.0)
        out[f"{prefix}R@{k}"] = float(np.mean(recall)) if n_img else float("nan")
        out[f"{prefix}mR@{k}"] = float(per_class.sum() / len(per_class))
        out[f"{prefix}zR@{k}"] = float(np.mean(zs)) if len(zs) else float("nan")
        for group, ids in (longtail or {}).items():
            out[f"{prefix}mR@{k}_{group}"] = float(per_class[ids].mean()) if len(ids) else float("nan")
        out[f"{prefix}per_predicate_R@{k}"] = per_class.tolist()
    return out


def _item_chunks(predictions, ground_truth, num_predicates: int, chunk_images: int):
    """``(gts, chunk)`` of up to ``chunk_images`` evaluated images from ``(index, prediction)`` items,
    with the official skips and shape checks."""
    items = predictions
    if isinstance(predictions, (list, tuple)) and all(p is None or isinstance(p, SceneGraphPrediction)
                                                      for p in predictions):
        items = enumerate(predictions)  # aligned with ground_truth
    gts, preds = [], []
    for index, pred in items:
        if pred is None:
            continue
        if not 0 <= index < len(ground_truth):
            raise DataError(f"scene-graph predictions: image index {index} outside the {len(ground_truth)} "
                            "ground-truth images")
        gt = ground_truth[index]
        if len(gt.relations) == 0 or len(pred.pairs) == 0:
            continue  # skipped as in the official code
        ps = pred.predicate_scores
        if np.ndim(ps) != 2 or np.shape(ps) != (len(pred.pairs), num_predicates + 1):
            raise DataError(f"scene-graph predictions: image {index}: predicate_scores has shape {np.shape(ps)}, "
                            f"expected ({len(pred.pairs)}, {num_predicates + 1})")
        gts.append(gt)
        preds.append(pred)
        if len(preds) == chunk_images:
            yield gts, _stack_items(preds)
            gts, preds = [], []
    if preds:
        yield gts, _stack_items(preds)


def _array_chunks(arrays, ground_truth, num_predicates: int, chunk_images: int):
    """As :func:`_item_chunks` for predictions in the concatenated NPZ layout (no per-image objects)."""
    a = check_npz_arrays(arrays)
    image, box_off, pair_off = a["image"], a["box_offsets"], a["pair_offsets"]
    bad = np.flatnonzero((image < 0) | (image >= len(ground_truth)))
    if len(bad):
        raise DataError(f"scene-graph predictions: image index {image[bad[0]]} outside the {len(ground_truth)} "
                        "ground-truth images")
    n_pairs = np.diff(pair_off)
    if n_pairs.sum() and a["predicate_scores"].shape[1:] != (num_predicates + 1,):
        k = int(np.flatnonzero(n_pairs)[0])
        raise DataError(f"scene-graph predictions: image {image[k]}: predicate_scores has shape "
                        f"{(int(n_pairs[k]),) + a['predicate_scores'].shape[1:]}, expected "
                        f"({n_pairs[k]}, {num_predicates + 1})")
    for c0 in range(0, len(image), chunk_images):
        k = np.arange(c0, min(c0 + chunk_images, len(image)))
        gts = [ground_truth[i] for i in image[k].tolist()]
        keep = (n_pairs[k] > 0) & np.array([len(g.relations) > 0 for g in gts], bool)  # official skips
        if not keep.any():
            continue
        gts, k = [g for g, ok in zip(gts, keep) if ok], k[keep]
        nb, npr = np.diff(box_off)[k], n_pairs[k]
        rows_b, rows_p = _ranges(box_off[k], nb), _ranges(pair_off[k], npr)
        chunk = {name: a[name][rows_b] for name in ("boxes", "labels", "scores")}
        chunk.update(pairs=a["pairs"][rows_p], predicate_scores=a["predicate_scores"][rows_p],
                     box_offsets=np.r_[0, np.cumsum(nb)], pair_offsets=np.r_[0, np.cumsum(npr)])
        yield gts, chunk


def evaluate(predictions: Iterable[Tuple[int, SceneGraphPrediction]], ground_truth: Sequence,
             num_predicates: int = 50, zeroshot: Optional[np.ndarray] = None,
             longtail: Optional[Dict[str, np.ndarray]] = None, chunk_images: int = CHUNK_IMAGES) -> Dict:
    """SGDet recall of predictions against ground truth.

    Args:
        predictions: ``(image index, SceneGraphPrediction)`` pairs (index into ``ground_truth``),
            a sequence aligned with ``ground_truth`` (None = image not predicted), or a dict of
            arrays in the concatenated NPZ layout (:mod:`hoikit.eval.sgg_io`, fastest).
        ground_truth: per image an object with ``boxes [N, 4]`` (original pixels), ``labels [N]``
            and ``relations [R, 3]`` (0-based), e.g. the samples of ``VisualGenomeReader``.
        num_predicates: P (50 for VG150).
        zeroshot: int64 ``[Z, 3]`` 0-based (subject, object, predicate) triplets, see :func:`load_zeroshot`.
        longtail: ``{"head"|"body"|"tail": 0-based predicate ids}``, see :func:`load_longtail`.
        chunk_images: images matched together (memory vs. speed; results do not depend on it).

    Returns:
        dict of fractions: ``R@K``, ``mR@K``, ``zR@K``, ``mR@K_head/_body/_tail`` and the same with
        prefix ``ng-``; ``per_predicate_R@K`` (mean recall per predicate); ``images`` (evaluated count).
    """
    zs = np.zeros((0, 3), np.int64) if zeroshot is None else np.asarray(zeroshot, np.int64).reshape(-1, 3)
    zs_key = np.unique((zs[:, 0] * (1 << 20) + zs[:, 1]) * (1 << 8) + zs[:, 2])
    parts = {k: [] for k in ("gc", "ng", "image", "predicate", "zs")}
    if isinstance(predictions, dict):
        chunks = _array_chunks(predictions, ground_truth, num_predicates, chunk_images)
    else:
        chunks = _item_chunks(predictions, ground_truth, num_predicates, chunk_images)
    n_eval = 0
    for gts, chunk in chunks:
        first_gc, first_ng, gt = _match_chunk(gts, chunk, num_predicates)
        key = (gt["s"] * (1 << 20) + gt["o"]) * (1 << 8) + gt["p"]
        pos = np.minimum(np.searchsorted(zs_key, key), max(len(zs_key) - 1, 0))
        parts["zs"].append(zs_key[pos] == key if len(zs_key) else np.zeros(len(key), bool))
        parts["gc"].append(first_gc)
        parts["ng"].append(first_ng)
        parts["image"].append(gt["image"] + n_eval)
        parts["predicate"].append(gt["p"])
        n_eval += len(gts)
    cat = {k: np.concatenate(v) if v else np.zeros(0, bool if k == "zs" else np.int64) for k, v in parts.items()}
    bad = (cat["predicate"] < 0) | (cat["predicate"] >= num_predicates)
    if bad.any():
        raise DataError(f"scene-graph ground truth: relation predicate {int(cat['predicate'][bad][0])} outside "
                        f"0..{num_predicates - 1}")
    out = {"images": n_eval}
    for prefix, first in (("", cat["gc"]), ("ng-", cat["ng"])):
        out.update(_recalls(first, cat["image"], cat["predicate"], cat["zs"].astype(np.float64), n_eval,
                            num_predicates, longtail, prefix))
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


def results_percent(res: Dict) -> Dict:
    """The results of :func:`evaluate` with every recall in percent (``images`` unchanged): the
    layout ``hoikit eval sgg --json`` writes."""
    return {k: (v if k == "images" else [100 * x for x in v] if isinstance(v, list) else 100 * v)
            for k, v in res.items()}
