"""Deformable DETR's set loss (Zhu et al. 2021): sigmoid focal classification, L1 + GIoU boxes,
Hungarian matching with the focal class cost, on every decoder layer and, in the two-stage
variant, on the encoder proposals (class-agnostic: every target is label 0).

Facts (/work/shared/specs/deformable-detr.md, "Training and inference"): focal alpha 0.25,
gamma 2, mean over queries, sum / num_boxes, times num_queries; matcher costs class 2, L1 5,
GIoU 2; loss weights ce 2, bbox 5, giou 2 on the last layer, the aux layers and ``_enc``.
H-DETR's hybrid matching adds the same losses on the one-to-many queries against the targets
repeated ``k`` times, weighted by ``lambda_one2many`` (suffix ``_one2many``). DN-DETR's denoising
queries are supervised by the ground truth they were made from, without matching, with the same
losses and weights on every decoder layer (suffix ``_dn``), normalised by ``num_boxes * groups``
(DN-DETR's dn_components.py divides by the number of denoising queries).
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import box_cxcywh_to_xyxy, generalized_box_iou
from .matcher import Match, match_cost_matrices
from .set_criterion import _matched_index, matched_class_error, num_boxes_across_processes


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, num_boxes: float, alpha: float = 0.25,
                       gamma: float = 2.0) -> Tensor:
    """RetinaNet focal loss summed over classes, averaged over queries, summed over the batch,
    divided by ``num_boxes``.

    Args:
        logits: ``[B, Q, C]``. targets: ``[B, Q, C]`` one-hot (float).
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_boxes


def focal_cost_matrix(logits: Tensor, boxes: Tensor, tgt_labels: Tensor, tgt_boxes: Tensor, cost_class: float,
                      cost_bbox: float, cost_giou: float, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Deformable DETR's matching cost for one image: ``[Q, T]``.

    The class term is the focal loss of a positive minus that of a negative at the target class.
    Args: ``logits [Q, C]``, ``boxes [Q, 4]`` cxcywh, ``tgt_labels [T]``, ``tgt_boxes [T, 4]`` cxcywh.
    """
    prob = logits.sigmoid()
    neg = (1 - alpha) * prob ** gamma * -(1 - prob + 1e-8).log()
    pos = alpha * (1 - prob) ** gamma * -(prob + 1e-8).log()
    c_class = pos[:, tgt_labels] - neg[:, tgt_labels]
    c_bbox = torch.cdist(boxes, tgt_boxes, p=1)
    c_giou = -generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes))
    return cost_bbox * c_bbox + cost_class * c_class + cost_giou * c_giou


class FocalHungarianMatcher(nn.Module):
    """One-to-one matching with the focal class cost (Deformable DETR: class 2, L1 5, GIoU 2)."""

    def __init__(self, cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0, alpha: float = 0.25):
        super().__init__()
        self.cost_class, self.cost_bbox, self.cost_giou, self.alpha = cost_class, cost_bbox, cost_giou, alpha

    @torch.no_grad()
    def forward(self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]) -> List[Match]:
        """``pred_logits [B, Q, C]``, ``pred_boxes [B, Q, 4]``; targets ``labels``, ``boxes`` (cxcywh)."""
        costs = [focal_cost_matrix(outputs["pred_logits"][b].float(), outputs["pred_boxes"][b].float(), t["labels"],
                                   t["boxes"].float(), self.cost_class, self.cost_bbox, self.cost_giou, self.alpha)
                 for b, t in enumerate(targets)]
        return match_cost_matrices(costs)


class DeformableSetCriterion(nn.Module):
    """Weighted losses ``loss_ce``, ``loss_bbox``, ``loss_giou`` with suffixes ``_{i}`` (aux layer i),
    ``_enc`` (two-stage proposals) and ``_one2many`` (hybrid matching), plus ``class_error``.

    Args:
        num_classes: C (sigmoid outputs, no no-object column).
        matcher: :class:`FocalHungarianMatcher`. focal_alpha: 0.25.
        ce_coef, bbox_coef, giou_coef: 2, 5, 2. k_one2many, lambda_one2many: H-DETR (6, 1).
        dn_number: DN-DETR groups (0 = off); with it on, training outputs carry ``dn``.
    """

    def __init__(self, num_classes: int, matcher: FocalHungarianMatcher, focal_alpha: float = 0.25,
                 ce_coef: float = 2.0, bbox_coef: float = 5.0, giou_coef: float = 2.0, k_one2many: int = 6,
                 lambda_one2many: float = 1.0, dn_number: int = 0):
        super().__init__()
        self.num_classes, self.matcher, self.focal_alpha = num_classes, matcher, focal_alpha
        self.weights = {"loss_ce": ce_coef, "loss_bbox": bbox_coef, "loss_giou": giou_coef}
        self.k_one2many, self.lambda_one2many = k_one2many, lambda_one2many
        self.dn_number = dn_number

    def _layer(self, out: Dict[str, Tensor], targets, num_boxes: float, suffix: str, scale: float = 1.0,
               indices: List[Match] = None):
        """Losses of one layer against ``targets``, matched by the matcher unless ``indices`` are given."""
        if indices is None:
            indices = self.matcher(out, targets)
        logits, boxes = out["pred_logits"], out["pred_boxes"]
        batch, src = _matched_index(indices)
        onehot = torch.zeros_like(logits)
        tgt_labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(logits.device)
        onehot[batch, src, tgt_labels] = 1.0
        loss_ce = sigmoid_focal_loss(logits, onehot, num_boxes, self.focal_alpha) * logits.shape[1]
        src_boxes = boxes[batch, src]
        tgt_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(boxes)
        l1 = F.l1_loss(src_boxes, tgt_boxes, reduction="none").sum() / num_boxes
        giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(tgt_boxes)))
        raw = {"loss_ce": loss_ce, "loss_bbox": l1, "loss_giou": (1 - giou).sum() / num_boxes}
        return {k + suffix: v * self.weights[k] * scale for k, v in raw.items()}, indices

    def _all_layers(self, outputs: Dict, targets, suffix: str, scale: float) -> Dict[str, Tensor]:
        num_boxes = num_boxes_across_processes(targets, outputs["pred_logits"].device)
        losses, indices = self._layer(outputs, targets, num_boxes, suffix, scale)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update(self._layer(aux, targets, num_boxes, f"_{i}{suffix}", scale)[0])
        if "enc_outputs" in outputs:
            agnostic = [{"labels": torch.zeros_like(t["labels"]), "boxes": t["boxes"]} for t in targets]
            losses.update(self._layer(outputs["enc_outputs"], agnostic, num_boxes, f"_enc{suffix}", scale)[0])
        if not suffix:
            with torch.no_grad():
                losses["class_error"] = matched_class_error(outputs["pred_logits"], targets, indices)
        return losses

    def _denoising(self, outputs: Dict, targets) -> Dict[str, Tensor]:
        """``_dn`` losses: slot ``g * P + i`` of image ``b`` in ``outputs["dn"]`` is supervised by
        target ``i`` of image ``b``; padding slots are neither positives nor negatives."""
        dn, valid, groups = outputs["dn"], outputs["dn_valid"], int(outputs["dn_groups"])
        num_boxes = num_boxes_across_processes(targets, valid.device) * groups
        pad = valid.shape[1] // groups
        slots = torch.arange(valid.shape[1], device=valid.device)
        sizes = [int(t["labels"].numel()) for t in targets]
        # all images' valid slots as one sequence (image-major), each paired with its target in the
        # concatenation of all images' targets
        tgt_index = torch.cat([slots[valid[b]] % pad + sum(sizes[:b]) for b in range(len(targets))])
        indices = [(torch.arange(len(tgt_index), device=valid.device), tgt_index)]
        flat_targets = [{"labels": torch.cat([t["labels"] for t in targets]),
                         "boxes": torch.cat([t["boxes"] for t in targets])}]
        keep = valid.reshape(-1)
        losses = {}
        for i, layer in enumerate([dn] + list(dn.get("aux_outputs", []))):
            flat = {k: layer[k].flatten(0, 1)[keep][None] for k in ("pred_logits", "pred_boxes")}
            suffix = "_dn" if i == 0 else f"_{i - 1}_dn"
            if len(tgt_index) == 0:   # no object in the batch: zero (the focal mean over 0 slots is NaN)
                zero = layer["pred_logits"].sum() * 0.0
                losses.update({k + suffix: zero for k in self.weights})
                continue
            losses.update(self._layer(flat, flat_targets, num_boxes, suffix, indices=indices)[0])
        return losses

    def forward(self, outputs: Dict, targets: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """Args:
            outputs: ``pred_logits [B, Q, C]``, ``pred_boxes [B, Q, 4]``, optional ``aux_outputs``,
                ``enc_outputs`` and ``one2many`` (a dict of the same form).
            targets: per image ``labels [T]`` and ``boxes [T, 4]`` normalised cxcywh.
        """
        losses = self._all_layers(outputs, targets, "", 1.0)
        if "one2many" in outputs:
            k = self.k_one2many
            rep = [{"labels": t["labels"].repeat(k), "boxes": t["boxes"].repeat(k, 1)} for t in targets]
            losses.update(self._all_layers(outputs["one2many"], rep, "_one2many", self.lambda_one2many))
        if "dn" in outputs:
            losses.update(self._denoising(outputs, targets))
        return losses
