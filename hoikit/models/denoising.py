"""DN-DETR's denoising queries (Li et al., CVPR 2022), a training-only aid for the DETR family.

In training, ``G`` groups of noised ground-truth boxes are fed to the decoder as extra queries and
each is supervised by the ground truth it was made from (no matching). An attention mask keeps the
matching queries from seeing them and the groups from seeing each other, so the matching queries'
outputs are those of a model without denoising; inference never builds them.

Noise (DN-DETR Sec. 3.3 and its dn_components.py): box centres move by up to
``lambda * (w / 2, h / 2)``, widths and heights change by up to ``lambda * (w, h)`` (uniform in
both), then the box is clipped to [0, 1]; a fraction ``gamma`` of labels is flipped.

Layout of the denoising part of the queries: ``G`` groups of ``P`` slots (``P`` = the most
targets of an image in the batch); slot ``g * P + i`` of image ``b`` is a noised copy of its target
``i``; slots ``i >= T_b`` are padding (``valid`` False), unsupervised and invisible to the others.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor


def noise_labels(labels: Tensor, ratio: float, num_classes: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Flip each label with probability ``ratio`` to one of the OTHER ``num_classes - 1`` classes
    (DN-DETR: "randomly flipping some ground-truth labels to other labels").

    Args:
        labels: ``[N]`` int64 in ``[0, num_classes)``.
    """
    if ratio <= 0 or num_classes < 2 or labels.numel() == 0:
        return labels.clone()
    flip = torch.rand(labels.shape, generator=generator, device=labels.device) < ratio
    # a shift in [1, C-1] modulo C is uniform over the other classes
    shift = torch.randint(1, num_classes, labels.shape, generator=generator, device=labels.device)
    return torch.where(flip, (labels + shift) % num_classes, labels)


def noise_boxes(boxes: Tensor, scale: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """``boxes [N, 4]`` cxcywh in [0, 1] -> noised copies in [0, 1] (DN-DETR box noise, lambda = ``scale``).

    Eq. (DN-DETR Sec. 3.3): ``|dx| < lambda w / 2``, ``|dy| < lambda h / 2``,
    ``w' in [(1 - lambda) w, (1 + lambda) w]``, ``h'`` alike.
    """
    if scale <= 0 or boxes.numel() == 0:
        return boxes.clone()
    span = torch.cat([boxes[:, 2:] / 2, boxes[:, 2:]], 1)
    u = torch.rand(boxes.shape, generator=generator, device=boxes.device, dtype=boxes.dtype) * 2 - 1
    return (boxes + u * span * scale).clamp(0.0, 1.0)


def build_dn_queries(targets: List[Dict[str, Tensor]], num_groups: int, label_noise: float, box_noise: float,
                     num_classes: int, generator: Optional[torch.Generator] = None
                     ) -> Tuple[Tensor, Tensor, Tensor]:
    """Noised ground truth for ``num_groups`` groups.

    Args:
        targets: per image ``labels [T_b]``, ``boxes [T_b, 4]`` (cxcywh, normalised).

    Returns:
        ``labels [B, G * P]`` (int64, 0 on padding), ``boxes [B, G * P, 4]`` (cxcywh in [0, 1],
        a centred 0.5 box on padding), ``valid [B, G * P]`` bool.
    """
    b = len(targets)
    pad = max((int(t["labels"].numel()) for t in targets), default=0)
    device = targets[0]["boxes"].device if targets else torch.device("cpu")
    labels = torch.zeros(b, num_groups, pad, dtype=torch.int64, device=device)
    boxes = torch.full((b, num_groups, pad, 4), 0.5, device=device)
    valid = torch.zeros(b, num_groups, pad, dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        n = int(t["labels"].numel())
        if n == 0:
            continue
        lab = t["labels"].to(device).repeat(num_groups)
        box = t["boxes"].to(device).float().repeat(num_groups, 1)
        labels[i, :, :n] = noise_labels(lab, label_noise, num_classes, generator).view(num_groups, n)
        boxes[i, :, :n] = noise_boxes(box, box_noise, generator).view(num_groups, n, 4)
        valid[i, :, :n] = True
    return labels.flatten(1), boxes.flatten(1, 2), valid.flatten(1)


def dn_attention_mask(num_matching: int, num_groups: int, valid: Tensor, base: Optional[Tensor] = None) -> Tensor:
    """Self-attention mask over ``[matching queries | G groups of P denoising queries]``.

    Args:
        num_matching: M, the matching queries first in the sequence (all groups of them, e.g. H-DETR's
            one-to-one + one-to-many). valid: ``[B, G * P]`` (False = padding slot).
        base: optional ``[M, M]`` bool mask among the matching queries (H-DETR's group mask).

    Returns:
        ``[B, M + G P, M + G P]`` bool, True = blocked: matching queries never see denoising queries;
        a denoising query sees the matching queries and the valid slots of its own group only.
    """
    b, n = valid.shape
    pad = n // max(num_groups, 1)
    total = num_matching + n
    m = torch.zeros(b, total, total, dtype=torch.bool, device=valid.device)
    if base is not None:
        m[:, :num_matching, :num_matching] = base
    m[:, :num_matching, num_matching:] = True
    group = torch.arange(n, device=valid.device) // max(pad, 1)
    other_group = group[:, None] != group[None, :]
    m[:, num_matching:, num_matching:] = other_group[None] | ~valid[:, None, :]
    # a padding slot keeps itself visible (no all-blocked row; its output is never used)
    idx = torch.arange(num_matching, total, device=valid.device)
    m[:, idx, idx] = False
    return m
