"""The few types every part of hoikit shares.

Box convention everywhere inside hoikit: continuous pixel coordinates of the
original image, ``(x1, y1, x2, y2)``, float32. Readers convert a file's own
convention (1-based inclusive for HICO-DET, COCO ``xywh``, VG ``cxcywh`` on a
rescaled image) once, at the edge; evaluators convert ground truth back where an
official protocol demands it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


def _empty(shape, dtype):
    return np.zeros(shape, dtype=dtype)


@dataclass
class Sample:
    """One annotated image, identical for every dataset format.

    Attributes:
        index: position of the image in its reader (0-based).
        file_name: image file name relative to the reader's image directory.
        size: original image size ``(width, height)`` in pixels.
        boxes: float32 ``[N, 4]`` entity boxes, xyxy, continuous pixels.
        labels: int64 ``[N]`` entity classes in the dataset's object index space.
        hois: int64 ``[K, 3]`` rows ``(human_index, object_index, verb)`` into ``boxes``.
        relations: int64 ``[R, 3]`` rows ``(subject_index, object_index, predicate)``,
            predicate 0-based (no background).
        image_id: dataset-specific id (e.g. the COCO image id), or None.
        image_path: absolute path of the image file, or None when unknown.
        task: what kind of dataset the image comes from, set by its reader: ``"sgg"`` (scene graphs,
            VG150), ``"hoi"`` (HICO-DET, V-COCO, custom HOI files) or None (detection data). Joint
            models (SG2HOI+) choose their losses by it, not by whether annotations survived a crop.
    """

    index: int
    file_name: str
    size: tuple
    boxes: np.ndarray = field(default_factory=lambda: _empty((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))
    hois: np.ndarray = field(default_factory=lambda: _empty((0, 3), np.int64))
    relations: np.ndarray = field(default_factory=lambda: _empty((0, 3), np.int64))
    image_id: Optional[int] = None
    image_path: Optional[str] = None
    task: Optional[str] = None

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.hois = np.asarray(self.hois, dtype=np.int64).reshape(-1, 3)
        self.relations = np.asarray(self.relations, dtype=np.int64).reshape(-1, 3)


@dataclass
class HOIPrediction:
    """Pair-based HOI output of a model for one image (original-image pixels).

    Attributes:
        boxes: float32 ``[M, 4]`` detected boxes, xyxy.
        labels: int64 ``[M]`` object classes (dataset index space).
        box_scores: float32 ``[M]`` detection scores.
        pairs: int64 ``[P, 2]`` ``(human_index, object_index)`` into ``boxes``.
        verb_scores: float32 ``[P, V]`` interaction scores per verb.
    """

    boxes: np.ndarray
    labels: np.ndarray
    box_scores: np.ndarray
    pairs: np.ndarray
    verb_scores: np.ndarray

    def triplets(self, correspondence: np.ndarray, threshold: float = 0.0, max_triplets: int = 0):
        """Expand to (hoi, score, box_h, box_o) rows using a [hoi, object, verb] table.

        Only (verb, object) combinations present in ``correspondence`` are kept, so an empty table
        (no HOI classes, e.g. V-COCO's) gives no rows. ``max_triplets > 0`` keeps only the that many
        highest-scoring rows (ties: the earlier row; rows stay in their order), the one-stage
        convention of QPIC's HICO-DET evaluation (``max_hois = 100``); 0 keeps every row.

        Returns:
            dict with ``hoi`` int64 [T], ``score`` float32 [T], ``box_h`` and ``box_o``
            float32 [T, 4], ``pair`` int64 [T] (row of ``pairs``) and ``verb`` int64 [T].
        """
        corr = np.asarray(correspondence, dtype=np.int64).reshape(-1, 3)
        n_obj = int(corr[:, 1].max()) + 1 if len(corr) else 0
        n_verb = max(int(corr[:, 2].max()) + 1 if len(corr) else 0,
                     self.verb_scores.shape[1] if self.verb_scores.ndim == 2 else 0)
        lut = hoi_lookup(corr, n_obj, n_verb)
        if len(self.pairs) == 0 or len(corr) == 0:
            z = np.zeros((0,), np.int64)
            return dict(hoi=z, score=np.zeros(0, np.float32), box_h=np.zeros((0, 4), np.float32),
                        box_o=np.zeros((0, 4), np.float32), pair=z, verb=z)
        pi, vi = np.nonzero(self.verb_scores >= threshold)
        obj = self.labels[self.pairs[pi, 1]]
        valid = obj < n_obj
        pi, vi, obj = pi[valid], vi[valid], obj[valid]
        hoi = lut[obj, vi]
        keep = hoi >= 0
        pi, vi, hoi = pi[keep], vi[keep], hoi[keep]
        top = top_k_mask(self.verb_scores[pi, vi], max_triplets)
        pi, vi, hoi = pi[top], vi[top], hoi[top]
        return dict(hoi=hoi, score=self.verb_scores[pi, vi].astype(np.float32),
                    box_h=self.boxes[self.pairs[pi, 0]].astype(np.float32),
                    box_o=self.boxes[self.pairs[pi, 1]].astype(np.float32), pair=pi, verb=vi)


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """bool mask of the ``k`` highest entries of ``scores`` (any shape; ties: the earlier entry in
    row-major order); ``k <= 0`` or ``k >= scores.size`` selects everything."""
    flat = np.asarray(scores).reshape(-1)
    mask = np.ones(flat.shape, bool)
    if 0 < k < flat.size:
        mask[:] = False
        mask[np.argsort(-flat, kind="stable")[:k]] = True
    return mask.reshape(np.shape(scores))


@dataclass
class SceneGraphPrediction:
    """Scene-graph output for one image (original-image pixels).

    Attributes:
        boxes: float32 ``[M, 4]`` xyxy.
        labels: int64 ``[M]`` object classes (0-based).
        scores: float32 ``[M]``.
        pairs: int64 ``[R, 2]`` (subject, object) indices into boxes.
        predicate_scores: float32 ``[R, P + 1]``; column 0 is background.
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    pairs: np.ndarray
    predicate_scores: np.ndarray

    def ranked_relations(self):
        """One predicate per pair, pairs ranked by triplet score (the graph-constrained ranking).

        The predicate of a pair is the first maximum over the foreground columns ``1..P``; its triplet
        score is ``p_predicate * s_subject * s_object``, the ranking of Scene-Graph-Benchmark
        (KaihuaTang/Scene-Graph-Benchmark.pytorch, relation_head/inference.py ``triple_scores``), which
        the one-stage SGTR and SG2HOI+'s SGDet results are evaluated with. Both the SGDet evaluator
        (:func:`hoikit.eval.sgg.match_image`) and :class:`hoikit.engine.inference.Predictor` use it.

        Returns:
            ``(order [R], predicate [R], score [R])``: pair indices by descending score (stable), the
            0-based predicate and the triplet score of each pair (in pair order, not ranked).
        """
        pairs = np.asarray(self.pairs, np.int64).reshape(-1, 2)
        ps = np.asarray(self.predicate_scores, np.float32).reshape(len(pairs), -1)[:, 1:]
        s = np.asarray(self.scores, np.float32)
        predicate = ps.argmax(1) if len(pairs) else np.zeros(0, np.int64)
        score = ps[np.arange(len(pairs)), predicate] * s[pairs[:, 0]] * s[pairs[:, 1]]
        return np.argsort(-score, kind="stable"), predicate, score


def hoi_lookup(correspondence: np.ndarray, num_objects: int, num_verbs: int) -> np.ndarray:
    """int64 ``[max(num_objects, 1), max(num_verbs, 1)]`` table: the HOI class of (object, verb), -1 if none.

    Args:
        correspondence: int64 ``[C, 3]`` rows ``(hoi, object, verb)``.
    """
    corr = np.asarray(correspondence, dtype=np.int64).reshape(-1, 3)
    lut = np.full((max(num_objects, 1), max(num_verbs, 1)), -1, dtype=np.int64)
    lut[corr[:, 1], corr[:, 2]] = corr[:, 0]
    return lut


# ----------------------------------------------------------------------------- box helpers
def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of xyxy boxes ``[..., 4]`` (continuous convention, negative sizes clamp to 0)."""
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``[len(a), len(b)]`` of xyxy boxes in continuous coordinates."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_iou_plus1_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of ``a [..., 4]`` (ground truth) and ``b [..., 4]`` with the +1-pixel convention.

    Widths are ``x2 - x1 + 1`` as in the official V-COCO (``get_overlap`` of vsrl_eval.py) and
    Scene-Graph-Benchmark (``bbox_overlaps``) tools; same operations in the same order, in the
    inputs' dtype (float32 there), so results are bitwise equal to theirs.

    Returns:
        ``[...]`` IoU per row (NaN where the union is 0).
    """
    dtype = np.result_type(a, b, np.float32)
    one, zero = np.ones((), dtype), np.zeros((), dtype)
    iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + one, zero)
    ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + one, zero)
    inters = iw * ih
    uni = ((b[..., 2] - b[..., 0] + one) * (b[..., 3] - b[..., 1] + one)
           + (a[..., 2] - a[..., 0] + one) * (a[..., 3] - a[..., 1] + one) - inters)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inters / uni


def cxcywh_to_xyxy(b) -> np.ndarray:
    """``[..., 4]`` boxes ``(cx, cy, w, h)`` -> float32 ``[..., 4]`` ``(x1, y1, x2, y2)``."""
    b = np.asarray(b, dtype=np.float32)
    return np.stack([b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2,
                     b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2], -1)
