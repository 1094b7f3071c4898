"""Entity detection post-processing, human-object pair construction and pair labelling.

Follows fredzzhang/upt ``upt.py`` (``prepare_region_proposals``, ``associate_with_ground_truth``)
and ``interaction_head.py`` (pairing): class-wise NMS, a score threshold, the number of humans and
of objects each kept within ``[min_instances, max_instances]``, every human paired with every other
box (human-human pairs included), positives by ``min(IoU_h, IoU_o) >= fg_iou_thresh``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from torch import Tensor

from ...losses.matcher import detr_cost_matrix, match_cost_matrices
from ...ops import batched_nms, box_cxcywh_to_xyxy, box_iou, box_xyxy_to_cxcywh


@dataclass
class Proposals:
    """Kept detections of one image (humans first).

    Attributes:
        boxes: ``[N, 4]`` xyxy pixels of the transformed image.
        scores: ``[N]`` detection scores.
        labels: ``[N]`` object classes (detector index space).
        hidden_states: ``[N, D]`` DETR last-decoder-layer tokens (unary tokens).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    hidden_states: Tensor


def detr_boxes_and_scores(logits: Tensor, boxes: Tensor, image_size: Tuple[int, int], sigmoid: bool = False):
    """DETR post-processing of one image: softmax, drop no-object, max; boxes to pixels.

    Args:
        logits: ``[Q, C+1]`` class logits (last column = no-object), or ``[Q, C]`` sigmoid logits
            of Deformable DETR when ``sigmoid`` (then the best class's sigmoid per query).
        boxes: ``[Q, 4]`` normalised cxcywh.
        image_size: ``(height, width)`` of the unpadded (transformed) image.

    Returns:
        ``(scores [Q], labels [Q], boxes [Q, 4] xyxy pixels)``.
    """
    if sigmoid:
        scores, labels = logits.sigmoid().max(-1)
    else:
        scores, labels = logits.softmax(-1)[..., :-1].max(-1)
    h, w = float(image_size[0]), float(image_size[1])
    scale = boxes.new_tensor([w, h, w, h])
    return scores, labels, box_cxcywh_to_xyxy(boxes) * scale


def select_detections(boxes: Tensor, scores: Tensor, labels: Tensor, hidden_states: Tensor,
                      human_idx: int, score_thresh: float = 0.2, nms_thresh: float = 0.5,
                      min_instances: int = 3, max_instances: int = 15) -> Proposals:
    """UPT's region-proposal filter for one image.

    Class-wise NMS, then humans and objects separately: when fewer than ``min_instances`` pass
    ``score_thresh``, the top ``min_instances`` by score (among all NMS survivors of that kind) are
    kept; when more than ``max_instances`` pass, the top ``max_instances``; otherwise those passing.

    Args:
        boxes: ``[Q, 4]`` xyxy; scores ``[Q]``; labels ``[Q]``; hidden_states ``[Q, D]``.
        human_idx: class index of "person" in the detector's label space.

    Returns:
        :class:`Proposals`, humans first (each group in UPT's order).
    """
    keep = batched_nms(boxes, scores, labels, nms_thresh)
    sc, lb, bx, hs = scores[keep], labels[keep], boxes[keep], hidden_states[keep]
    passed = torch.nonzero(sc >= score_thresh).squeeze(1)
    is_human = lb == human_idx

    def choose(group: Tensor) -> Tensor:
        members = torch.nonzero(group).squeeze(1)
        n_passed = int(group[passed].sum())
        if n_passed < min_instances or n_passed > max_instances:
            limit = min_instances if n_passed < min_instances else max_instances
            order = sc[members].argsort(descending=True, stable=True)[:limit]   # ties: NMS order
            return members[order]
        return passed[torch.nonzero(group[passed]).squeeze(1)]

    sel = torch.cat([choose(is_human), choose(~is_human)])
    return Proposals(boxes=bx[sel], scores=sc[sel], labels=lb[sel], hidden_states=hs[sel])


def oracle_proposals(gt_boxes: Tensor, gt_labels: Tensor, pred_boxes: Tensor, hidden_states: Tensor,
                     image_size: Tuple[int, int], human_idx: int, cost_bbox: float = 5.0,
                     cost_giou: float = 2.0) -> Proposals:
    """Ground-truth entities as proposals ("oracle detections", analysis only; not a paper setting).

    Each ground-truth box gets the unary token of the DETR query matched to it one-to-one by the
    Hungarian algorithm on DETR's box cost, class-agnostic: ``cost_bbox * L1(cxcywh) - cost_giou *
    GIoU`` on boxes normalised by the unpadded image size (DETR, Carion et al. 2020, Sec. 3.1; the
    class term is left out because ground-truth labels are dataset ids, not detector classes).

    Args:
        gt_boxes: ``[T, 4]`` xyxy pixels of the transformed image (``T <= Q``; the caller truncates).
        gt_labels: ``[T]`` dataset object ids.
        pred_boxes: ``[Q, 4]`` DETR boxes, normalised cxcywh.
        hidden_states: ``[Q, D]`` DETR last-decoder-layer tokens.
        image_size: ``(height, width)`` of the unpadded transformed image.
        human_idx: dataset object id of "person".
        cost_bbox, cost_giou: DETR's matching weights (``model.detr.set_cost_bbox`` / ``set_cost_giou``).

    Returns:
        :class:`Proposals` of the ``T`` ground-truth entities, humans first (ground-truth order within
        each group), scores 1.
    """
    boxes = gt_boxes.to(pred_boxes).reshape(-1, 4)
    labels = gt_labels.to(device=pred_boxes.device, dtype=torch.int64).reshape(-1)
    if len(boxes) > len(pred_boxes):
        raise ValueError(f"oracle_proposals: {len(boxes)} ground-truth boxes but only {len(pred_boxes)} queries")
    is_human = labels == human_idx
    order = torch.cat([torch.nonzero(is_human).squeeze(1), torch.nonzero(~is_human).squeeze(1)])
    boxes, labels = boxes[order], labels[order]
    hidden = hidden_states[:0]
    if len(boxes):
        h, w = float(image_size[0]), float(image_size[1])
        tgt = box_xyxy_to_cxcywh(boxes) / boxes.new_tensor([w, h, w, h])
        # class-agnostic: weight 0 on the class term (any valid class index), DETR's box terms
        cost = detr_cost_matrix(pred_boxes.new_zeros(len(pred_boxes), 1), pred_boxes,
                                torch.zeros_like(labels), tgt, 0.0, cost_bbox, cost_giou)
        (q, t), = match_cost_matrices([cost])
        hidden = hidden_states[q[t.argsort()].to(hidden_states.device)]   # T <= Q: every box has a query
    return Proposals(boxes=boxes, scores=torch.ones_like(boxes[:, 0]), labels=labels, hidden_states=hidden)


def pair_indices(labels: Tensor, human_idx: int) -> Tuple[Tensor, Tensor]:
    """Every human with every other box (UPT pairing). Requires humans first.

    Args:
        labels: ``[N]`` box classes, humans first.

    Returns:
        ``(x [P], y [P])`` indices of the human and of the other box, in row-major order of the
        ``N x N`` grid (UPT's ``nonzero(logical_and(x != y, x < n_h))``).
    """
    n = labels.shape[0]                      # shape, not len(): stays dynamic under ONNX tracing
    n_h = (labels == human_idx).sum()
    x, y = torch.meshgrid(torch.arange(n, device=labels.device), torch.arange(n, device=labels.device),
                          indexing="ij")
    x_keep, y_keep = torch.nonzero(torch.logical_and(x != y, x < n_h)).unbind(1)
    return x_keep, y_keep


def associate_with_ground_truth(boxes_h: Tensor, boxes_o: Tensor, gt_boxes_h: Tensor, gt_boxes_o: Tensor,
                                gt_verbs: Tensor, num_verbs: int, fg_iou_thresh: float = 0.5):
    """Binary verb labels of detected pairs.

    A detected pair ``i`` matches ground-truth pair ``j`` when ``min(IoU(h_i, gh_j), IoU(o_i, go_j))
    >= fg_iou_thresh``; it then gets label 1 on verb ``gt_verbs[j]``.

    Args:
        boxes_h, boxes_o: ``[P, 4]`` detected pair boxes.
        gt_boxes_h, gt_boxes_o: ``[G, 4]`` ground-truth pair boxes (one row per annotated HOI).
        gt_verbs: ``[G]`` verb of each ground-truth HOI.

    Returns:
        ``(labels [P, num_verbs] float, match [P, G] bool)``.
    """
    labels = torch.zeros(len(boxes_h), num_verbs, device=boxes_h.device)
    if len(gt_boxes_h) == 0 or len(boxes_h) == 0:
        return labels, torch.zeros(len(boxes_h), len(gt_boxes_h), dtype=torch.bool, device=boxes_h.device)
    match = torch.min(box_iou(boxes_h, gt_boxes_h)[0], box_iou(boxes_o, gt_boxes_o)[0]) >= fg_iou_thresh
    x, y = torch.nonzero(match).unbind(1)
    labels[x, gt_verbs[y]] = 1
    return labels, match


def hoi_targets(target: dict) -> Tuple[Tensor, Tensor, Tensor]:
    """Ground-truth pair boxes and verbs of one hoikit target dict.

    Args:
        target: with ``boxes [N, 4]`` (transformed-image pixels) and ``hois [K, 3]`` = (h, o, verb).

    Returns:
        ``(boxes_h [K, 4], boxes_o [K, 4], verbs [K])``.
    """
    hois = target["hois"].long().reshape(-1, 3)
    boxes = target["boxes"].float().reshape(-1, 4)
    return boxes[hois[:, 0]], boxes[hois[:, 1]], hois[:, 2]
