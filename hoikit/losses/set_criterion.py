"""DETR's set prediction loss (Carion et al. 2020, Eq. (2)): Hungarian matching, then
cross-entropy on classes (no-object class down-weighted by ``eos_coef``) and L1 + GIoU on matched
boxes, on the final decoder layer and, as auxiliary losses, on every intermediate layer.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..ops import box_cxcywh_to_xyxy, generalized_box_iou
from .matcher import HungarianMatcher, Match


def num_boxes_across_processes(targets: List[Dict[str, Tensor]], device: torch.device) -> float:
    """Average number of target boxes per process (all-reduced under DDP), at least 1."""
    n = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
    world = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(n)
        world = torch.distributed.get_world_size()
    return max(n.item() / world, 1.0)


def _matched_index(indices: List[Match]) -> Tuple[Tensor, Tensor]:
    batch = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    src = torch.cat([src for src, _ in indices])
    return batch, src


def matched_class_error(logits: Tensor, targets, indices: List[Match]) -> Tensor:
    """DETR's logged ``class_error``: percent of matched queries whose top class is not their target's
    (0 with no target). The matcher's indices are CPU tensors and the labels follow the targets; the
    comparison runs on the predictions' device (the Deformable DETR criterion's own copy of this compared
    on the indices' device and failed on CUDA: found on an H200, session 12)."""
    batch, src = _matched_index(indices)
    tgt = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(logits.device)
    if not tgt.numel():
        return logits.new_tensor(0.0)
    return 100 - (logits[batch, src].argmax(-1) == tgt).float().mean() * 100


class SetCriterion(nn.Module):
    """Weighted DETR losses.

    Args:
        num_classes: C foreground classes; index C is no-object.
        matcher: a :class:`HungarianMatcher`.
        eos_coef: relative CE weight of the no-object class (DETR: 0.1).
        ce_coef, bbox_coef, giou_coef: loss weights (DETR: 1, 5, 2).
        k_one2many, lambda_one2many: H-DETR hybrid matching (6, 1): outputs with ``one2many`` get the
            same losses against the targets repeated ``k`` times, weighted by ``lambda`` (suffix
            ``_one2many``; unmatched one-to-many queries target no-object).

    Outputs with ``dn`` (DN-DETR denoising queries, training) add ``loss_*_dn`` on every layer: each
    valid denoising slot is supervised by its own ground truth (no matching): CE over the valid slots
    (all positives), L1 and GIoU summed over them and divided by ``num_boxes * groups``.

    ``forward`` returns weighted scalar losses ``loss_ce``, ``loss_bbox``, ``loss_giou`` (and
    ``loss_ce_{i}`` ... for auxiliary decoder layer ``i``), plus unweighted logging values
    ``class_error`` (percent) and ``cardinality_error`` that do not start with ``loss_``.
    """

    def __init__(self, num_classes: int, matcher: HungarianMatcher, eos_coef: float = 0.1,
                 ce_coef: float = 1.0, bbox_coef: float = 5.0, giou_coef: float = 2.0, k_one2many: int = 6,
                 lambda_one2many: float = 1.0):
        super().__init__()
        self.k_one2many, self.lambda_one2many = k_one2many, lambda_one2many
        self.num_classes = num_classes
        self.matcher = matcher
        self.eos_coef = eos_coef
        self.weights = {"loss_ce": ce_coef, "loss_bbox": bbox_coef, "loss_giou": giou_coef}
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    def loss_labels(self, logits: Tensor, targets: List[Dict[str, Tensor]], indices: List[Match]) -> Tensor:
        """Weighted CE over all queries: ``logits [B, Q, C+1]``; unmatched queries target no-object."""
        batch, src = _matched_index(indices)
        tgt_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        tgt_classes[batch, src] = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(logits.device)
        return F.cross_entropy(logits.transpose(1, 2), tgt_classes, self.empty_weight.to(logits.dtype))

    def loss_boxes(self, boxes: Tensor, targets: List[Dict[str, Tensor]], indices: List[Match],
                   num_boxes: float) -> Tuple[Tensor, Tensor]:
        """Summed L1 and ``1 - GIoU`` of matched boxes divided by ``num_boxes``; ``boxes [B, Q, 4]`` cxcywh."""
        batch, src = _matched_index(indices)
        src_boxes = boxes[batch, src]
        tgt_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(boxes)
        l1 = F.l1_loss(src_boxes, tgt_boxes, reduction="none").sum() / num_boxes
        giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(tgt_boxes)))
        return l1, (1 - giou).sum() / num_boxes

    def _layer_losses(self, out: Dict[str, Tensor], targets, indices: List[Match], num_boxes: float,
                      suffix: str, scale: float = 1.0) -> Dict[str, Tensor]:
        l1, giou = self.loss_boxes(out["pred_boxes"], targets, indices, num_boxes)
        raw = {"loss_ce": self.loss_labels(out["pred_logits"], targets, indices), "loss_bbox": l1, "loss_giou": giou}
        return {k + suffix: v * self.weights[k] * scale for k, v in raw.items()}

    def forward(self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """Args:
            outputs: ``pred_logits [B, Q, C+1]``, ``pred_boxes [B, Q, 4]`` (normalised cxcywh) and
                optionally ``aux_outputs``: list of dicts of the same two keys.
            targets: per image ``labels [T_i]`` int64 and ``boxes [T_i, 4]`` normalised cxcywh.

        Returns:
            dict of scalar tensors (see class docstring).
        """
        num_boxes = num_boxes_across_processes(targets, outputs["pred_logits"].device)
        indices = self.matcher(outputs, targets)
        losses = self._layer_losses(outputs, targets, indices, num_boxes, "")
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update(self._layer_losses(aux, targets, self.matcher(aux, targets), num_boxes, f"_{i}"))
        with torch.no_grad():
            losses.update(self._logging(outputs["pred_logits"], targets, indices))
        if "one2many" in outputs:
            losses.update(self._one2many(outputs["one2many"], targets))
        if "dn" in outputs:
            losses.update(self._denoising(outputs, targets))
        return losses

    def _denoising(self, outputs: Dict, targets) -> Dict[str, Tensor]:
        """``_dn`` losses: slot ``g * P + i`` of image ``b`` is supervised by target ``i`` of image ``b``."""
        valid, groups = outputs["dn_valid"], int(outputs["dn_groups"])
        num_boxes = num_boxes_across_processes(targets, valid.device) * groups
        pad = valid.shape[1] // groups
        slots = torch.arange(valid.shape[1], device=valid.device)
        tgt_labels = torch.cat([t["labels"][slots[valid[b]] % pad] for b, t in enumerate(targets)]).to(valid.device)
        tgt_boxes = torch.cat([t["boxes"][slots[valid[b]] % pad] for b, t in enumerate(targets)]).to(valid.device)
        keep = valid.reshape(-1)
        losses = {}
        for i, out in enumerate([outputs["dn"]] + list(outputs["dn"].get("aux_outputs", []))):
            logits = out["pred_logits"].flatten(0, 1)[keep]
            boxes = out["pred_boxes"].flatten(0, 1)[keep]
            l1 = F.l1_loss(boxes, tgt_boxes.to(boxes), reduction="none").sum() / num_boxes
            giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes.to(boxes))))
            ce = F.cross_entropy(logits, tgt_labels, self.empty_weight.to(logits.dtype)) if len(tgt_labels) \
                else logits.sum() * 0.0
            raw = {"loss_ce": ce, "loss_bbox": l1, "loss_giou": (1 - giou).sum() / num_boxes}
            suffix = "_dn" if i == 0 else f"_{i - 1}_dn"
            losses.update({k + suffix: v * self.weights[k] for k, v in raw.items()})
        return losses

    def _one2many(self, outputs: Dict, targets) -> Dict[str, Tensor]:
        """H-DETR's one-to-many branch: one-to-one matching against each target repeated ``k`` times."""
        k = self.k_one2many
        rep = [{"labels": t["labels"].repeat(k), "boxes": t["boxes"].repeat(k, 1)} for t in targets]
        num_boxes = num_boxes_across_processes(rep, outputs["pred_logits"].device)
        losses = {}
        for i, out in enumerate([outputs] + list(outputs.get("aux_outputs", []))):
            suffix = "_one2many" if i == 0 else f"_{i - 1}_one2many"
            losses.update(self._layer_losses(out, rep, self.matcher(out, rep), num_boxes, suffix, self.lambda_one2many))
        return losses

    def _logging(self, logits: Tensor, targets, indices: List[Match]) -> Dict[str, Tensor]:
        n_pred = (logits.argmax(-1) != self.num_classes).sum(1).float()
        n_tgt = torch.as_tensor([float(len(t["labels"])) for t in targets], device=logits.device)
        return {"class_error": matched_class_error(logits, targets, indices),
                "cardinality_error": F.l1_loss(n_pred, n_tgt)}
