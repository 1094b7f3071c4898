"""Traceable (fixed control flow, tensor-only) versions of the proposal filter of UPT / RmLR.

The eager code (:func:`hoikit.ops.nms`, :func:`hoikit.models.rmlr.pairs.select_detections`) loops in
Python and branches on tensor values, which ``torch.onnx`` would freeze at export time. These
functions compute the same kept set and order with tensor ops only; they take a fixed number of
candidates ``Q`` (DETR's queries) plus a ``valid`` mask instead of dropping rows, so every shape
before the final ``nonzero`` is static. tests/deploy/test_traceable.py checks them against the
eager functions.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ..ops import box_iou


def stable_descending_order(scores: Tensor) -> Tensor:
    """``torch.sort(scores, descending=True, stable=True).indices`` for ``[N]`` scores.

    The ONNX exporter has no stable sort; the rank ``#{j: s_j > s_i} + #{j < i: s_j == s_i}`` is a
    permutation of ``0..N-1``, so any sort of it (ONNX TopK) gives the stable order.
    """
    greater = (scores[None, :] > scores[:, None]).long().sum(1)
    idx = torch.arange(scores.shape[0], device=scores.device)
    earlier_tie = ((scores[None, :] == scores[:, None]) & (idx[None, :] < idx[:, None])).long().sum(1)
    return torch.argsort(greater + earlier_tie)


def greedy_nms_keep(iou: Tensor, valid: Tensor, iou_threshold: float, rounds: Optional[int] = None) -> Tensor:
    """Greedy NMS on candidates already sorted by decreasing score.

    Candidate ``j`` is kept when it is valid and no kept ``i < j`` has ``iou[i, j] > iou_threshold``
    (torchvision's rule, as :func:`hoikit.ops.nms`). Written as the fixed-point iteration
    ``keep <- valid & ~any_i(keep_i & over_ij)``: after ``t`` rounds the first ``t`` entries are
    final (entry ``j`` depends only on entries ``i < j``), so ``N`` rounds give the greedy result.

    Args:
        iou: ``[N, N]`` IoU of the sorted candidates. valid: ``[N]`` bool (invalid ones are never
            kept and suppress nothing).
        rounds: iterations (default ``N``). Any ``rounds >= N`` gives the same result (the fixed
            point is reached after ``N``), so a graph traced with ``rounds`` = the largest possible
            ``N`` is exact when ``N`` is a dynamic size (Deformable DETR's two-stage queries).

    Returns:
        ``[N]`` bool keep mask in the sorted order.
    """
    n = iou.shape[0] if rounds is None else rounds
    upper = torch.triu(torch.ones_like(iou, dtype=torch.bool), diagonal=1)
    over = ((iou > iou_threshold) & upper).float()
    keep = valid
    for _ in range(int(n)):          # static count, >= the number of candidates
        suppressed = (keep.float()[None] @ over)[0] > 0
        keep = valid & ~suppressed
    return keep


def batched_nms_sorted(boxes: Tensor, scores: Tensor, idxs: Tensor, valid: Tensor,
                       iou_threshold: float, rounds: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Class-wise NMS with the coordinate offset of :func:`hoikit.ops.batched_nms`.

    The offset (largest coordinate of the *valid* boxes + 1) and the IoU on shifted boxes are the
    eager function's, so both see the same IoU values.

    Args:
        boxes: ``[N, 4]`` xyxy; scores ``[N]``; idxs ``[N]`` classes; valid ``[N]`` bool.
        rounds: NMS iterations, at least ``N`` (:func:`greedy_nms_keep`).

    Returns:
        ``(order [N], keep [N] bool)``: candidates by decreasing score (stable) and the keep mask in
        that order; ``order[keep]`` equals ``batched_nms`` on the valid rows (as original indices).
    """
    masked = torch.where(valid[:, None], boxes, torch.full_like(boxes, float("-inf")))
    offset = masked.max() + 1
    shifted = boxes + (idxs.to(boxes) * offset)[:, None]
    order = stable_descending_order(scores)
    iou, _ = box_iou(shifted[order], shifted[order])
    return order, greedy_nms_keep(iou, valid[order], iou_threshold, rounds)


def _choose(members: Tensor, passed: Tensor, min_instances: int, max_instances: int) -> Tensor:
    """UPT's per-group rule on score-sorted candidates: ``[N]`` bool masks -> ``[N]`` bool chosen.

    Fewer than ``min_instances`` passing: the top ``min_instances`` members; more than
    ``max_instances``: the top ``max_instances``; else the passing members.
    """
    rank = torch.cumsum(members.long(), 0) - 1          # rank among members, by score
    n_passed = (members & passed).long().sum()
    top_min = members & (rank < min_instances)
    top_max = members & (rank < max_instances)
    few, many = n_passed < min_instances, n_passed > max_instances
    # boolean algebra, not torch.where: onnxruntime has no Where kernel for bool
    return (few & top_min) | (~few & many & top_max) | (~few & ~many & members & passed)


def select_detections_indices(boxes: Tensor, scores: Tensor, labels: Tensor, valid: Tensor, human_idx: int,
                              score_thresh: float, nms_thresh: float, min_instances: int,
                              max_instances: int, rounds: Optional[int] = None) -> Tensor:
    """Traceable :func:`hoikit.models.rmlr.pairs.select_detections`: indices of the kept candidates.

    Args:
        boxes: ``[Q, 4]`` xyxy; scores ``[Q]``; labels ``[Q]`` (dataset ids); valid ``[Q]`` bool
            (False for queries whose detector class maps to no dataset object).
        rounds: NMS iterations, at least ``Q`` (:func:`greedy_nms_keep`).

    Returns:
        ``[N]`` int64 indices into the ``Q`` candidates, humans first, each group by decreasing score.
    """
    order, keep = batched_nms_sorted(boxes, scores, labels, valid, nms_thresh, rounds)
    sc, lb = scores[order], labels[order]
    passed = sc >= score_thresh
    human = lb == human_idx
    chosen_h = _choose(keep & human, passed, min_instances, max_instances)
    chosen_o = _choose(keep & ~human, passed, min_instances, max_instances)
    sel = torch.cat([torch.nonzero(chosen_h)[:, 0], torch.nonzero(chosen_o)[:, 0]])
    return order[sel]
