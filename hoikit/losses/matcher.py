"""Hungarian matching between predictions and ground truth (DETR, Carion et al. 2020, Eq. (1)).

Two layers, so that other set-prediction models reuse the assignment:

- :func:`match_cost_matrices` solves one assignment per image from any cost matrices
  (SG2HOI+ builds its own costs over (subject, predicate, object) 5-tuples and calls this);
- :func:`detr_cost_matrix` is DETR's pairwise cost ``-w_class * p(c) + w_L1 * L1 - w_giou * GIoU``;
- :class:`HungarianMatcher` combines both for DETR outputs.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ..errors import ConfigError, TrainingError
from ..ops import box_cxcywh_to_xyxy, generalized_box_iou

Match = Tuple[Tensor, Tensor]


def match_cost_matrices(costs: Sequence[Tensor]) -> List[Match]:
    """Minimum-cost one-to-one assignment for each image.

    Args:
        costs: per image a ``[num_queries, num_targets_i]`` cost matrix (any device/dtype).

    Returns:
        per image ``(query_idx, target_idx)``, int64 tensors of length ``min(Q, T_i)``, sorted by
        query index (scipy's ``linear_sum_assignment`` order).

    Raises:
        TrainingError: a cost matrix with NaN / inf entries (non-finite predictions), naming the
            image of the batch; the training engine adds the step.
    """
    out: List[Match] = []
    for b, c in enumerate(costs):
        c = c.detach().float().cpu()
        if not torch.isfinite(c).all():
            raise TrainingError(f"Hungarian matching: cost matrix of batch image {b} has "
                                f"{int((~torch.isfinite(c)).sum())} NaN/inf entries (non-finite predictions)")
        if c.numel() == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            out.append((empty, empty.clone()))
            continue
        i, j = linear_sum_assignment(c.numpy())
        out.append((torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64)))
    return out


def detr_cost_matrix(logits: Tensor, boxes: Tensor, tgt_labels: Tensor, tgt_boxes: Tensor,
                     cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0) -> Tensor:
    """DETR's matching cost for one image.

    The class term is ``-p(target class)`` (the constant 1 of ``1 - p`` is dropped as in DETR);
    the box terms are the L1 distance of normalised cxcywh boxes and ``-GIoU``.

    Args:
        logits: ``[Q, C+1]`` class logits. boxes: ``[Q, 4]`` normalised cxcywh.
        tgt_labels: ``[T]`` int64. tgt_boxes: ``[T, 4]`` normalised cxcywh.

    Returns:
        ``[Q, T]`` cost.
    """
    prob = logits.softmax(-1)
    c_class = -prob[:, tgt_labels]
    c_bbox = torch.cdist(boxes, tgt_boxes, p=1)
    c_giou = -generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes))
    return cost_bbox * c_bbox + cost_class * c_class + cost_giou * c_giou


class HungarianMatcher(nn.Module):
    """One-to-one matching of DETR queries to targets.

    Args:
        cost_class, cost_bbox, cost_giou: weights of the cost terms (DETR: 1, 5, 2).
    """

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ConfigError("matcher: all matching cost weights (class, bbox, giou) are 0")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou

    @torch.no_grad()
    def forward(self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]) -> List[Match]:
        """Args:
            outputs: ``pred_logits [B, Q, C+1]`` and ``pred_boxes [B, Q, 4]`` (normalised cxcywh).
            targets: per image ``labels [T_i]`` and ``boxes [T_i, 4]`` (normalised cxcywh).

        Returns:
            per image ``(query_idx, target_idx)`` int64 tensors of length ``min(Q, T_i)``.
        """
        costs = [detr_cost_matrix(outputs["pred_logits"][b], outputs["pred_boxes"][b], t["labels"], t["boxes"],
                                  self.cost_class, self.cost_bbox, self.cost_giou)
                 for b, t in enumerate(targets)]
        return match_cost_matrices(costs)
