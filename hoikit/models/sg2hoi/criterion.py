"""Hungarian matching and losses of SG2HOI+ for relation and HOI 5-tuples (Eq. 9).

Matching cost of a prediction q and a ground-truth tuple t (Eq. 9, weights alpha_1..3 = 1, 2, 4
following HOI-Trans [17]):

    C = a1 * sum_{*=sub,obj} (L1(b*_q, b*_t) - GIoU(b*_q, b*_t))
      + a2 * sum_{*=sub,obj} (-p*_q(l*_t)) + a3 * C_mid

with ``C_mid = -p_q(r_t)`` for a predicate. For HOIs the subject label is binary (human) and the
middle term is the multi-label verb cost of QPIC: ``-(mean_{v in t} p_v + mean_{v not in t} (1-p_v))/2``.
"The matched cost is the loss": the losses use the same weights: a1 * (L1 + (1 - GIoU)) per box,
a2 * cross-entropy per label, a3 * predicate cross-entropy / verb focal loss. Unmatched queries are
trained towards no-object / no-relation (weight ``eos_coef``) unless ``train_unmatched`` is False
(the paper's literal "we do not compute the loss for unmatched pairs"); see the method notes.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...losses.matcher import match_cost_matrices
from ...ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, generalized_box_iou


def normalise_boxes(boxes: Tensor, size: Tensor) -> Tensor:
    """xyxy pixels ``[N, 4]`` of an image of ``size = (W, H)`` -> normalised cxcywh ``[N, 4]``."""
    w, h = size.float().unbind(-1)
    return box_xyxy_to_cxcywh(boxes.float()) / torch.stack([w, h, w, h]).to(boxes.device)


def relation_tuples(target: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Ground-truth relation 5-tuples of one image (boxes normalised cxcywh)."""
    rel = target["relations"].long().reshape(-1, 3)
    boxes = normalise_boxes(target["boxes"].reshape(-1, 4), target["size"])
    labels = target["labels"].long()
    return {"sub_boxes": boxes[rel[:, 0]], "sub_labels": labels[rel[:, 0]], "predicates": rel[:, 2],
            "obj_boxes": boxes[rel[:, 1]], "obj_labels": labels[rel[:, 1]]}


def hoi_tuples(target: Dict[str, Tensor], num_verbs: int) -> Dict[str, Tensor]:
    """Ground-truth HOI tuples of one image: one per distinct (human, object) pair, verbs multi-hot.

    Rows with a negative object index (V-COCO actions without an object role) are not matched.
    """
    hois = target["hois"].long().reshape(-1, 3)
    hois = hois[hois[:, 1] >= 0]
    boxes = normalise_boxes(target["boxes"].reshape(-1, 4), target["size"])
    pairs, inverse = torch.unique(hois[:, :2], dim=0, return_inverse=True) if len(hois) else \
        (hois.new_zeros(0, 2), hois.new_zeros(0))
    verbs = torch.zeros(len(pairs), num_verbs, device=boxes.device)
    if len(hois):
        verbs[inverse, hois[:, 2]] = 1.0
    return {"human_boxes": boxes[pairs[:, 0]], "obj_boxes": boxes[pairs[:, 1]],
            "obj_labels": target["labels"].long()[pairs[:, 1]], "verbs": verbs}


def box_cost(pred: Tensor, tgt: Tensor) -> Tensor:
    """``L1 - GIoU`` between ``pred [Q, 4]`` and ``tgt [T, 4]`` (normalised cxcywh) -> ``[Q, T]``."""
    return torch.cdist(pred, tgt, p=1) - generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(tgt))


def verb_cost(verb_logits: Tensor, tgt_verbs: Tensor) -> Tensor:
    """QPIC's multi-label verb matching cost ``[Q, T]`` from ``verb_logits [Q, V]`` and ``tgt_verbs [T, V]``."""
    p = verb_logits.sigmoid()
    pos = p @ tgt_verbs.t() / tgt_verbs.sum(1).clamp(min=1e-6)
    neg = (1 - p) @ (1 - tgt_verbs).t() / (1 - tgt_verbs).sum(1).clamp(min=1e-6)
    return -(pos + neg) / 2


def verb_focal_loss(logits: Tensor, targets: Tensor, gamma: float = 2.0) -> Tensor:
    """QPIC's verb loss (CenterNet-style focal, no alpha), summed and normalised by #positive labels.

    ``pos: -log(p) (1-p)^gamma``, ``neg: -log(1-p) p^gamma``.
    """
    p = logits.sigmoid()
    log_p, log_1p = F.logsigmoid(logits), F.logsigmoid(-logits)
    loss = -(targets * log_p * (1 - p) ** gamma + (1 - targets) * log_1p * p ** gamma)
    return loss.sum() / targets.sum().clamp(min=1.0)


class SG2HOICriterion(nn.Module):
    """Relation and HOI set losses.

    Args:
        alpha_box, alpha_cls, alpha_rel: a1, a2, a3 of Eq. (9) (1, 2, 4).
        eos_coef: class weight of no-object / no-relation targets of unmatched queries (DETR: 0.1).
        train_unmatched: train unmatched queries towards the no-object / no-relation classes.
        verb_loss: ``focal`` (QPIC) or ``bce``.
    """

    def __init__(self, alpha_box: float = 1.0, alpha_cls: float = 2.0, alpha_rel: float = 4.0,
                 eos_coef: float = 0.1, train_unmatched: bool = True, verb_loss: str = "focal"):
        super().__init__()
        self.a1, self.a2, self.a3 = alpha_box, alpha_cls, alpha_rel
        self.eos_coef, self.train_unmatched, self.verb_loss = eos_coef, train_unmatched, verb_loss

    # ------------------------------------------------------------------ shared pieces
    def _ce(self, logits: Tensor, idx: List[Tuple[Tensor, Tensor]], tgt_labels: List[Tensor], bg: int) -> Tensor:
        """Cross-entropy over ``logits [B, Q, C]``; unmatched queries target ``bg`` when trained."""
        b, q, c = logits.shape
        target = torch.full((b, q), bg, dtype=torch.long, device=logits.device)
        matched = torch.zeros(b, q, dtype=torch.bool, device=logits.device)
        for i, (qi, ti) in enumerate(idx):
            target[i, qi] = tgt_labels[i][ti].to(logits.device)
            matched[i, qi] = True
        if not self.train_unmatched:
            if not matched.any():
                return logits.sum() * 0.0
            return F.cross_entropy(logits[matched], target[matched])
        weight = torch.ones(c, device=logits.device)
        weight[bg] = self.eos_coef
        return F.cross_entropy(logits.reshape(-1, c), target.reshape(-1), weight)

    def _boxes(self, pred: Tensor, idx, tgt: List[Tensor], num: float) -> Tensor:
        """``L1 + (1 - GIoU)`` summed over matched boxes, divided by the number of tuples."""
        p = torch.cat([pred[i, qi] for i, (qi, _) in enumerate(idx)])
        t = torch.cat([tgt[i][ti] for i, (_, ti) in enumerate(idx)]).to(p.device)
        if len(p) == 0:
            return pred.sum() * 0.0
        l1 = F.l1_loss(p, t, reduction="sum")
        giou = (1 - torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(p), box_cxcywh_to_xyxy(t)))).sum()
        return (l1 + giou) / num

    # ------------------------------------------------------------------ relations
    @torch.no_grad()
    def match_relations(self, out: Dict[str, Tensor], tuples: List[Dict[str, Tensor]]):
        """Eq. (9) cost per image -> Hungarian assignment ``[(query_idx, tuple_idx)]``."""
        costs = []
        for b, t in enumerate(tuples):
            ps, po = out["sub_logits"][b].softmax(-1), out["obj_logits"][b].softmax(-1)
            pr = out["rel_logits"][b].softmax(-1)
            c = self.a1 * (box_cost(out["sub_boxes"][b], t["sub_boxes"]) + box_cost(out["obj_boxes"][b], t["obj_boxes"]))
            c = c + self.a2 * (-ps[:, t["sub_labels"]] - po[:, t["obj_labels"]]) + self.a3 * (-pr[:, t["predicates"]])
            costs.append(c)
        return match_cost_matrices(costs)

    def relation_losses(self, out: Dict[str, Tensor], tuples: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """Returns ``loss_rel_box``, ``loss_rel_cls``, ``loss_rel_pred`` (weighted by a1, a2, a3)."""
        idx = self.match_relations(out, tuples)
        num = max(float(sum(len(t["predicates"]) for t in tuples)), 1.0)
        no_obj = out["sub_logits"].shape[-1] - 1
        no_rel = out["rel_logits"].shape[-1] - 1
        box = self._boxes(out["sub_boxes"], idx, [t["sub_boxes"] for t in tuples], num) + \
            self._boxes(out["obj_boxes"], idx, [t["obj_boxes"] for t in tuples], num)
        cls = self._ce(out["sub_logits"], idx, [t["sub_labels"] for t in tuples], no_obj) + \
            self._ce(out["obj_logits"], idx, [t["obj_labels"] for t in tuples], no_obj)
        pred = self._ce(out["rel_logits"], idx, [t["predicates"] for t in tuples], no_rel)
        return {"loss_rel_box": self.a1 * box, "loss_rel_cls": self.a2 * cls, "loss_rel_pred": self.a3 * pred}

    # ------------------------------------------------------------------ HOIs
    @torch.no_grad()
    def match_hois(self, out: Dict[str, Tensor], tuples: List[Dict[str, Tensor]]):
        """HOI cost per image: boxes, human (class 0 of the binary head) + object label, verbs."""
        costs = []
        for b, t in enumerate(tuples):
            ph, po = out["human_logits"][b].softmax(-1), out["obj_logits"][b].softmax(-1)
            c = self.a1 * (box_cost(out["human_boxes"][b], t["human_boxes"]) + box_cost(out["obj_boxes"][b], t["obj_boxes"]))
            c = c + self.a2 * (-ph[:, [0]] - po[:, t["obj_labels"]]) + self.a3 * verb_cost(out["verb_logits"][b], t["verbs"])
            costs.append(c)
        return match_cost_matrices(costs)

    def hoi_losses(self, out: Dict[str, Tensor], tuples: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """Returns ``loss_hoi_box``, ``loss_hoi_cls``, ``loss_hoi_verb`` (weighted by a1, a2, a3)."""
        idx = self.match_hois(out, tuples)
        num = max(float(sum(len(t["verbs"]) for t in tuples)), 1.0)
        no_obj = out["obj_logits"].shape[-1] - 1
        box = self._boxes(out["human_boxes"], idx, [t["human_boxes"] for t in tuples], num) + \
            self._boxes(out["obj_boxes"], idx, [t["obj_boxes"] for t in tuples], num)
        humans = [torch.zeros(len(t["verbs"]), dtype=torch.long) for t in tuples]       # class 0 = human
        cls = self._ce(out["human_logits"], idx, humans, 1) + \
            self._ce(out["obj_logits"], idx, [t["obj_labels"] for t in tuples], no_obj)
        logits = out["verb_logits"]
        target = torch.zeros_like(logits)
        matched = torch.zeros(logits.shape[:2], dtype=torch.bool, device=logits.device)
        for i, (qi, ti) in enumerate(idx):
            target[i, qi] = tuples[i]["verbs"][ti].to(logits.device)
            matched[i, qi] = True
        if not self.train_unmatched:
            logits, target = logits[matched], target[matched]
        if self.verb_loss == "focal":
            verb = verb_focal_loss(logits, target)
        else:
            verb = F.binary_cross_entropy_with_logits(logits, target) if logits.numel() else logits.sum() * 0.0
        return {"loss_hoi_box": self.a1 * box, "loss_hoi_cls": self.a2 * cls, "loss_hoi_verb": self.a3 * verb}
