"""HICO-DET mAP exactly as the official MATLAB tool computes it, vectorised.

Official procedure (``ywchao/ho-rcnn``: ``evaluation/eval_one.m`` + ``VOCevaldet_bboxpair.m``;
stated precisely in ``../shared/specs/evaluation.md``), per HOI class:

1. detections of the class over the test set are sorted by descending score with MATLAB's
   *stable* sort on image-by-image input: ties go by image index, then input position;
2. each detection takes the ground-truth pair of its class and image with the largest
   overlap ``min(IoU_h, IoU_o)`` (ties: first pair in file order), never a second best;
3. true positive iff overlap >= ``min_overlap`` (0.5) and that pair is not yet taken;
4. AP = VOC2007 11-point AP with MATLAB's ``0:0.1:1`` thresholds (:mod:`hoikit.eval.ap`),
   ``npos`` = number of ground-truth pairs of the class.

Vectorisation: one stable ordering by (class, -score, image) gives the official order of every
class at once (:func:`ranked_order`); the argmax pair of every detection is computed for all
detections together, a loop over "the k-th pair of the detection's (class, image) cell" on
contiguous arrays (:func:`match_argmax`); and since a detection never falls back, it is a true
positive iff it is the *first* detection in ranked order whose argmax is that pair and whose
overlap passes (no sequential "taken" loop needed).

Boxes: detections are continuous original-image pixels (hoikit's convention); ground truth
is 1-based inclusive in the file and becomes continuous as ``(x1 - 1, y1 - 1, x2, y2)``; plain
continuous IoU then equals the official ``+1`` arithmetic. Known-Object: a class with object
``n`` keeps only detections from images that have a ground-truth pair with object ``n`` (the
official tool uses HICO's image-level labels; this box-based test is the documented
approximation). Detections in the file's ``empty`` images are false positives as in the
official tool, or dropped with ``skip_empty=True`` (UPT).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from ..data.zero_shot import SETTINGS, unseen_hois
from ..errors import DataError
from .ap import mean_ap, precision_recall, voc_ap_11point
from .hicodet_io import DETECTION_KEYS, HICODetGroundTruth, check_detections
from .report import format_table

MIN_OVERLAP = 0.5  # eval_one.m: `min_overlap = 0.5`, compared with >=


def _iou_against_gt(det: Sequence[np.ndarray], det_area: np.ndarray, rows, gt_cols: Sequence[np.ndarray],
                    gt_area: np.ndarray, g: np.ndarray, work: np.ndarray) -> np.ndarray:
    """IoU of some detections with ground-truth rows ``g`` (continuous boxes).

    Args:
        det: four ``[M]`` columns x1, y1, x2, y2 of the detection boxes (float32 or float64: the
            arithmetic is float64 either way); det_area: float64 ``[M]``.
        rows: the detections to use: a ``slice`` or int64 ``[m]`` indices into the columns.
        gt_cols: four float64 ``[G]`` ground-truth columns; gt_area ``[G]``.
        g: int ``[m]`` ground-truth row of each used detection.
        work: float64 ``[3, >= m]`` scratch space (avoids fresh allocations in the hot loop).

    Returns:
        float64 ``[m]`` (a view into ``work``, valid until its next use); 0 where the boxes do
        not intersect (official ``iw > 0 && ih > 0``).
    """
    m = len(g)
    a, b, c = work[0, :m], work[1, :m], work[2, :m]
    np.minimum(det[2][rows], np.take(gt_cols[2], g, out=a), out=a)
    a -= np.maximum(det[0][rows], np.take(gt_cols[0], g, out=b), out=b)       # iw
    np.minimum(det[3][rows], np.take(gt_cols[3], g, out=b), out=b)
    b -= np.maximum(det[1][rows], np.take(gt_cols[1], g, out=c), out=c)       # ih
    np.maximum(a, 0.0, out=a)
    np.maximum(b, 0.0, out=b)
    a *= b                                                                     # intersection
    np.add(det_area[rows], np.take(gt_area, g, out=b), out=b)
    b -= a                                                                     # union
    c[:] = 0.0
    return np.divide(a, b, out=c, where=a > 0)


def _columns(boxes: np.ndarray, rows: np.ndarray):
    """Rows of ``[N, 4]`` boxes -> (four contiguous columns ``[M]`` (input dtype), float64 areas)."""
    cols = [boxes[rows, j] for j in range(4)]
    return cols, (cols[2] - cols[0].astype(np.float64)) * (cols[3] - cols[1].astype(np.float64))


MATCH_CHUNK = 1 << 16  # detections matched at once: scratch arrays stay in cache


def match_argmax(gt: HICODetGroundTruth, image: np.ndarray, hoi: np.ndarray, box_h: np.ndarray,
                 box_o: np.ndarray, min_overlap: float = MIN_OVERLAP):
    """Argmax ground-truth pair of every detection (same class, same image), where it matters.

    Detections are processed in chunks, in decreasing order of their number of candidate
    pairs, so that step ``k`` (the k-th pair of each detection's (class, image) cell) works on
    a prefix of the chunk; the running maximum is replaced only on a strictly larger overlap,
    so the first pair in file order wins ties, as ``if min_ov > ov_max`` in the official code.
    A pair with ``IoU_h < min_overlap`` has overlap ``< min_overlap`` and can be the argmax only
    of a detection that is a false positive anyway, so ``IoU_o`` is computed only for pairs
    that pass on the human box.

    Args:
        gt: the ground truth.
        image: int64 ``[N]`` image indices; hoi: int64 ``[N]`` classes.
        box_h: ``[N, 4]`` human boxes; box_o: ``[N, 4]`` object boxes (continuous pixels).
        min_overlap: the TP threshold on ``min(IoU_h, IoU_o)``.

    Returns:
        ``(best, overlap)``: for a detection whose largest overlap is ``>= min_overlap``, the
        argmax row into ``gt.key`` (int64 ``[N]``) and that overlap (float64 ``[N]``, exact);
        otherwise ``best`` is the row of the best pair that passed on the human box (or -1) and
        ``overlap`` is some value ``< min_overlap`` (-inf when no pair passed).
    """
    n = len(image)
    start, count = gt.cells(hoi.astype(np.int64) * gt.num_images + image)
    best = np.full(n, -1, dtype=np.int64)
    overlap = np.full(n, -np.inf, dtype=np.float64)
    has = np.nonzero(count)[0]
    if len(has) == 0:
        return best, overlap
    has = has[_stable_argsort_int(count.max() - count[has])]
    size = min(MATCH_CHUNK, len(has))
    work_h, work_o, g_all = np.empty((3, size)), np.empty((3, size)), np.empty(size, dtype=start.dtype)
    for c0 in range(0, len(has), size):
        rows = has[c0:c0 + size]
        neg_count, first = -count[rows], start[rows]
        dh, dh_area = _columns(box_h, rows)
        do, do_area = _columns(box_o, rows)
        ov_best = np.full(len(rows), -np.inf)
        k_best = np.full(len(rows), -1, dtype=np.int64)
        for k in range(int(-neg_count[0])):
            m = int(np.searchsorted(neg_count, -k, side="left"))  # detections with more than k pairs
            g = np.add(first[:m], k, out=g_all[:m])
            iou_h = _iou_against_gt(dh, dh_area, slice(0, m), gt.h_cols, gt.h_area, g, work_h)
            sel = np.flatnonzero(iou_h >= min_overlap)
            if len(sel) == 0:
                continue
            ov = np.minimum(iou_h[sel], _iou_against_gt(do, do_area, sel, gt.o_cols, gt.o_area, g[sel], work_o))
            better = ov > ov_best[sel]
            sel = sel[better]
            ov_best[sel] = ov[better]
            k_best[sel] = k
        found = k_best >= 0
        best[rows[found]] = first[found] + k_best[found]
        overlap[rows] = ov_best
    return best, overlap


def _stable_argsort_int(values: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative ints; uint16 keys let numpy use its O(N) radix sort."""
    if len(values) and values.max() < 1 << 16:
        values = values.astype(np.uint16)
    return np.argsort(values, kind="stable")


def ranked_order(image: np.ndarray, hoi: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The official evaluation order of all detections, every class at once.

    Sorted by class, then descending score; equal scores keep MATLAB's stable order on its
    image-by-image input: image index, then input position. Equals
    ``np.lexsort((image, -score, hoi))``. Done as two stable radix passes on the integer keys
    (image, then class) and one stable score sort inside each class's segment: a segment
    (~5,000 of 3M detections on HICO-DET) sorts in cache, which is faster than one
    3M-element float sort (0.38 s vs 0.66 s for the former three whole-array passes on the
    benchmark's 3M detections).

    Args:
        image, hoi: int64 ``[N]``; score: float ``[N]``.

    Returns:
        int64 ``[N]`` permutation.
    """
    order = _stable_argsort_int(image)
    order = order[_stable_argsort_int(hoi[order])]           # (class, image, position)
    if len(order) == 0:
        return order
    neg = -score[order].astype(np.float64)
    bounds = np.flatnonzero(np.diff(hoi[order])) + 1          # where the class changes
    for s, e in zip(np.r_[0, bounds], np.r_[bounds, len(order)]):
        if e - s > 1:
            order[s:e] = order[s:e][np.argsort(neg[s:e], kind="stable")]
    return order


def _class_aps(hoi_sorted: np.ndarray, tp: np.ndarray, npos: np.ndarray):
    """Per-class 11-point AP, final recall and detection count from ranked TP flags."""
    c = len(npos)
    bounds = np.searchsorted(hoi_sorted, np.arange(c + 1))
    ap = np.zeros(c)
    rec_final = np.zeros(c)
    for k in range(c):
        s, e = bounds[k], bounds[k + 1]
        if e > s:
            rec, prec = precision_recall(tp[s:e], int(npos[k]))
            ap[k] = voc_ap_11point(rec, prec)
            rec_final[k] = rec[-1]  # eval_one.m: REC(i) = rec(end); 0 without detections
    return ap, rec_final, np.diff(bounds)


class HICODetEvaluator:
    """Official HICO-DET mAP (Default and Known-Object; Full / Rare / Non-rare; per class).

    Args:
        anno: the HICO-DET-format annotation file (path), its parsed dict, or a
            :class:`HICODetGroundTruth` (e.g. ``instances_test2015.json`` or SynthHOI's).
        skip_empty: drop detections in the file's ``empty`` images (UPT) instead of
            counting them as false positives (official).
        min_overlap: overlap threshold on ``min(IoU_h, IoU_o)`` (official 0.5, ``>=``).
        zero_shot: rf_uc | nf_uc | uo | uv: also report Unseen / Seen / Full mAP of that setting
            (:mod:`hoikit.data.zero_shot`); "" = no.

    Either call :meth:`evaluate` with arrays, or feed images with :meth:`add` /
    :meth:`add_prediction` and call :meth:`compute`.
    """

    def __init__(self, anno, skip_empty: bool = False, min_overlap: float = MIN_OVERLAP, zero_shot: str = ""):
        self.gt = anno if isinstance(anno, HICODetGroundTruth) else HICODetGroundTruth(anno)
        self.skip_empty = bool(skip_empty)
        self.min_overlap = float(min_overlap)
        self.zero_shot = zero_shot
        self.unseen = unseen_hois(zero_shot, self.gt.num_classes) if zero_shot else None
        self.reset()

    # ------------------------------------------------------------------ incremental API
    def reset(self) -> None:
        """Forget everything fed with :meth:`add`."""
        self._parts: List[Dict[str, np.ndarray]] = []

    def add(self, image_index: int, hoi, score, box_h, box_o) -> None:
        """Add the detections of one image.

        Args:
            image_index: index into the annotation file's ``filenames``.
            hoi: ``[T]`` HOI classes; score: ``[T]``; box_h, box_o: ``[T, 4]`` xyxy continuous
                pixels of the original image.
        """
        hoi = np.array(hoi).reshape(-1)  # copies: the caller may reuse its buffers
        arrays = dict(image=np.full(len(hoi), image_index, dtype=np.int64), hoi=hoi, score=np.array(score),
                      box_h=np.array(box_h), box_o=np.array(box_o))
        self._parts.append(check_detections(arrays, self.gt, f"add(image_index={image_index})"))

    def add_prediction(self, image_index: int, prediction, threshold: float = 0.0) -> None:
        """Add one image's :class:`hoikit.structures.HOIPrediction` (verb scores -> HOI classes
        through the annotation file's correspondence)."""
        t = prediction.triplets(self.gt.correspondence, threshold=threshold)
        self.add(image_index, t["hoi"], t["score"], t["box_h"], t["box_o"])

    def compute(self) -> Dict:
        """Evaluate everything added so far (input order = order of the :meth:`add` calls)."""
        if not self._parts:
            return self.evaluate(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
                                 np.zeros((0, 4)), np.zeros((0, 4)), source="compute()")
        return self._evaluate({k: np.concatenate([p[k] for p in self._parts]) for k in DETECTION_KEYS})

    # ------------------------------------------------------------------ array API
    def evaluate(self, image, hoi, score, box_h, box_o, source: str = "detections") -> Dict:
        """Evaluate all detections at once.

        Args:
            image: ``[N]`` int image indices into ``filenames``.
            hoi: ``[N]`` int HOI classes (0 .. C-1, C = rows of ``correspondence``).
            score: ``[N]`` float scores (finite).
            box_h: ``[N, 4]`` human boxes, box_o: ``[N, 4]`` object boxes (continuous pixels).
            source: name used in error messages (e.g. the detections file).

        Returns:
            ``{"default": {"full", "rare", "non_rare"}, "known_object": {...}, "per_class": [...],
            "setting": {...}}``; every AP and recall in percent (see docs/formats.md).
        """
        arrays = dict(image=image, hoi=hoi, score=score, box_h=box_h, box_o=box_o)
        return self._evaluate(check_detections(arrays, self.gt, source))

    def _evaluate(self, d: Dict[str, np.ndarray]) -> Dict:
        gt = self.gt
        image, hoi, score, box_h, box_o = (d[k] for k in DETECTION_KEYS)
        if self.skip_empty:
            keep = ~gt.empty[image]
            image, hoi, score, box_h, box_o = image[keep], hoi[keep], score[keep], box_h[keep], box_o[keep]
        # Official order per class: MATLAB's stable sort of -score over image-by-image input.
        order = ranked_order(image, hoi, score)
        best, overlap = match_argmax(gt, image, hoi, box_h, box_o, self.min_overlap)
        # Known-Object: every TP lies in an image with its object, so TP flags are unchanged.
        ko = gt.image_has_object[image, gt.hoi_object[hoi]][order]
        hoi = hoi[order]
        # No fallback: TP iff overlap >= min_overlap and the first such detection (in ranked
        # order) of its argmax pair; later ones find the pair taken.
        valid = np.flatnonzero((overlap >= self.min_overlap)[order])  # ranked positions
        first = np.full(len(gt.key), len(order), dtype=np.int64)
        np.minimum.at(first, best[order[valid]], valid)
        tp = np.zeros(len(order), dtype=bool)
        tp[first[first < len(order)]] = True
        ap_def, rec_def, n_def = _class_aps(hoi, tp, gt.npos)
        ap_ko, rec_ko, n_ko = _class_aps(hoi[ko], tp[ko], gt.npos)
        return self._summary(ap_def, rec_def, n_def, ap_ko, rec_ko, n_ko, len(order))

    def _summary(self, ap_def, rec_def, n_def, ap_ko, rec_ko, n_ko, n_total) -> Dict:
        gt = self.gt

        def means(ap):
            return {"full": 100 * mean_ap(ap), "rare": 100 * mean_ap(ap[gt.rare]),
                    "non_rare": 100 * mean_ap(ap[gt.non_rare])}

        per_class = [dict(hoi=c, name=gt.names[c], object=int(gt.hoi_object[c]), verb=int(gt.hoi_verb[c]),
                          rare=bool(gt.rare[c]), npos=int(gt.npos[c]),
                          ap=100 * float(ap_def[c]), ap_known_object=100 * float(ap_ko[c]),
                          recall=100 * float(rec_def[c]), recall_known_object=100 * float(rec_ko[c]),
                          detections=int(n_def[c]), detections_known_object=int(n_ko[c]))
                     for c in range(gt.num_classes)]
        out = {"default": means(ap_def), "known_object": means(ap_ko), "per_class": per_class,
               "setting": {"skip_empty": self.skip_empty, "min_overlap": self.min_overlap,
                           "num_detections": int(n_total), "num_classes": gt.num_classes,
                           "annotation": gt.source}}
        if self.unseen is not None:
            out["zero_shot"] = {"setting": self.zero_shot, "unseen_classes": self.unseen.tolist(),
                                "default": split_means(ap_def, self.unseen),
                                "known_object": split_means(ap_ko, self.unseen)}
        return out


def split_means(ap: np.ndarray, unseen: np.ndarray) -> Dict[str, float]:
    """Unseen / Seen / Full mAP (percent) of per-class APs ``[C]`` (fractions): plain means, as
    Full / Rare / Non-rare."""
    mask = np.zeros(len(ap), bool)
    mask[unseen] = True
    return {"unseen": 100 * mean_ap(ap[mask]), "seen": 100 * mean_ap(ap[~mask]), "full": 100 * mean_ap(ap)}


def predictions_to_arrays(predictions: Sequence, correspondence, image_indices: Optional[Sequence[int]] = None,
                          threshold: float = 0.0) -> Dict[str, np.ndarray]:
    """Turn per-image :class:`hoikit.structures.HOIPrediction` into evaluator arrays.

    Args:
        predictions: one HOIPrediction per image.
        correspondence: ``[C, 3]`` rows ``(hoi, object, verb)``.
        image_indices: image index of each prediction (default ``0 .. len - 1``).
        threshold: keep (pair, verb) scores >= threshold.

    Returns:
        dict ``image`` int64 ``[N]``, ``hoi`` int64 ``[N]``, ``score`` float32 ``[N]``,
        ``box_h`` / ``box_o`` float32 ``[N, 4]``.
    """
    if image_indices is None:
        image_indices = range(len(predictions))
    image_indices = list(image_indices)
    if len(image_indices) != len(predictions):
        raise DataError(f"predictions_to_arrays: {len(predictions)} predictions but {len(image_indices)} image indices")
    parts = [p.triplets(correspondence, threshold=threshold) for p in predictions]
    out = {"image": np.concatenate([np.full(len(t["hoi"]), i, np.int64) for i, t in zip(image_indices, parts)]
                                   or [np.zeros(0, np.int64)])}
    for k, shape in (("hoi", (0,)), ("score", (0,)), ("box_h", (0, 4)), ("box_o", (0, 4))):
        out[k] = np.concatenate([t[k] for t in parts]) if parts else np.zeros(shape, np.float32)
    return out


def format_results(results: Dict) -> str:
    """The Default / Known-Object x Full / Rare / Non-rare table in percent, two decimals; with a
    zero-shot setting also its Unseen / Seen / Full table."""
    rows = {"Default": results["default"], "Known-Object": results["known_object"]}
    text = format_table("HICO-DET mAP (%)", rows, ["full", "rare", "non_rare"],
                        headers={"full": "Full", "rare": "Rare", "non_rare": "Non-rare"})
    zs = results.get("zero_shot")
    if zs:
        n = len(zs["unseen_classes"])
        rows = {"Default": zs["default"], "Known-Object": zs["known_object"]}
        text += "\n" + format_table(f"{SETTINGS[zs['setting']].split(' (')[0]} mAP (%)", rows,
                                     ["unseen", "seen", "full"],
                                     headers={"unseen": f"Unseen ({n})",
                                              "seen": f"Seen ({results['setting']['num_classes'] - n})",
                                              "full": "Full"})
    return text
