"""Per-cell auxiliary supervision of DETR's encoder memory (a training aid for DETR from scratch).

DETR trained from scratch on a small dataset (SynthHOI on a CPU) falls into a known failure: the
decoder learns each query's average box and class and stops reading the encoder memory, so its
predictions no longer depend on the image (docs/synthhoi-training.md measures it). A pretrained
backbone avoids this on COCO because the memory is informative from the first step. Without one,
hoikit can give the memory a direct signal instead, in the spirit of the encoder-side supervision of
two-stage Deformable DETR (Zhu et al. 2021, Sec. 4.1 / App. A.4) and of SG2HOI+'s box-filled masks
(BBSeg, its Eq. 1-2): every memory cell predicts the class of the ground-truth box it lies in and
that box. The head is a training-only module of :class:`hoikit.models.detr.DETRDetector`
(``dense_head.*``); DETR's own state dict is unchanged, so exported detectors keep the official
layout. Off (``model.detr.dense_loss_coef = 0``) by default.

Targets: a cell (centre in padded-tensor pixels) belongs to the smallest ground-truth box that
contains its centre (smallest, so a ball in front of a person is the ball's cell); cells in no box are
background; padding cells are ignored. Loss: cross-entropy over ``C + 1`` classes with the background
weight ``eos_coef`` (as DETR's no-object class) + L1 between the cell's sigmoid box and its box
(normalised cxcywh, foreground cells only), each averaged over its cells.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import box_cxcywh_to_xyxy


class DenseHead(nn.Module):
    """``memory [B, D, h, w]`` -> class logits ``[B, h, w, C+1]`` and boxes ``[B, h, w, 4]`` (sigmoid cxcywh).

    Args:
        hidden_dim: D. num_classes: C (foreground classes).
    """

    def __init__(self, hidden_dim: int, num_classes: int):
        super().__init__()
        self.cls = nn.Linear(hidden_dim, num_classes + 1)
        self.box = nn.Linear(hidden_dim, 4)

    def forward(self, memory: Tensor) -> Tuple[Tensor, Tensor]:
        x = memory.permute(0, 2, 3, 1)
        return self.cls(x), self.box(x).sigmoid()


def dense_targets(targets: List[Dict[str, Tensor]], image_sizes: Tensor, padded: Tuple[int, int],
                  fmask: Tensor, num_classes: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-cell class and box targets.

    Args:
        targets: per image DETR targets ``labels [T]``, ``boxes [T, 4]`` (cxcywh normalised by the
            image's own size). image_sizes: ``[B, 2]`` (H, W) of each unpadded image.
        padded: (H, W) of the padded batch tensor. fmask: ``[B, h, w]`` True on padding cells.

    Returns:
        classes ``[B, h, w]`` int64 (``num_classes`` = background, -1 = padding, ignored),
        boxes ``[B, h, w, 4]`` (the assigned box, cxcywh; zeros on background), foreground ``[B, h, w]`` bool.
    """
    b, h, w = fmask.shape
    dev = fmask.device
    ys = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) * (padded[0] / h)
    xs = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) * (padded[1] / w)
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")                       # cell centres in pixels [h, w]
    classes = torch.full((b, h, w), num_classes, dtype=torch.int64, device=dev)
    boxes = torch.zeros(b, h, w, 4, device=dev)
    for i, t in enumerate(targets):
        if len(t["labels"]):
            hh, ww = image_sizes[i].tolist()
            xyxy = box_cxcywh_to_xyxy(t["boxes"].float()) * torch.tensor([ww, hh, ww, hh], device=dev)
            inside = ((cx[None] >= xyxy[:, 0, None, None]) & (cx[None] < xyxy[:, 2, None, None])
                      & (cy[None] >= xyxy[:, 1, None, None]) & (cy[None] < xyxy[:, 3, None, None]))  # [T, h, w]
            area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
            cost = torch.where(inside, area[:, None, None], torch.full_like(inside, float("inf"), dtype=area.dtype))
            best = cost.argmin(0)                                               # smallest containing box
            hit = inside.any(0)
            classes[i][hit] = t["labels"][best[hit]]
            boxes[i][hit] = t["boxes"][best[hit]].float()
    classes[fmask] = -1
    return classes, boxes, classes.ge(0) & classes.lt(num_classes)


def dense_loss(logits: Tensor, pred_boxes: Tensor, classes: Tensor, boxes: Tensor, fg: Tensor,
               eos_coef: float) -> Dict[str, Tensor]:
    """Cross-entropy (background weight ``eos_coef``, padding ignored) and foreground box L1.

    Returns:
        ``dense_ce`` and ``dense_l1`` scalars (unweighted).
    """
    c1 = logits.shape[-1]
    weight = torch.ones(c1, device=logits.device, dtype=logits.dtype)
    weight[-1] = eos_coef
    ce = F.cross_entropy(logits.reshape(-1, c1), classes.reshape(-1), weight=weight, ignore_index=-1)
    l1 = (F.l1_loss(pred_boxes[fg], boxes[fg], reduction="none").sum(-1).mean() if fg.any()
          else pred_boxes.sum() * 0.0)
    return {"dense_ce": ce, "dense_l1": l1}
