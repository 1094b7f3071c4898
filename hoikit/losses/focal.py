"""Binary focal loss (Lin et al. 2017) as UPT uses it, and UPT's interaction loss.

RmLR Eq. (21): ``L_hoi = Focal(sigmoid(P), GT)``; with UPT's implementation
(fredzzhang/upt ``ops.binary_focal_loss_with_logits``):

    L = |1 - y - alpha| * (|y - sigmoid(x)| + eps)^gamma * BCE(x, y)

i.e. weight ``alpha`` on positives and ``1 - alpha`` on negatives (alpha 0.5 = balanced), and the
modulating factor ``(1 - p_t)^gamma`` (gamma 0.2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import torch.distributed as dist


def binary_focal_loss_with_logits(x: Tensor, y: Tensor, alpha: float = 0.5, gamma: float = 2.0,
                                  reduction: str = "mean", eps: float = 1e-6) -> Tensor:
    """Focal loss on logits.

    Args:
        x: ``[...]`` logits.
        y: ``[...]`` binary labels (float).
        alpha: balance between positives (``alpha``) and negatives (``1 - alpha``).
        gamma: focusing exponent.
        reduction: ``mean`` | ``sum`` | ``none``.
        eps: added inside the power to keep its gradient finite at ``|y - p| = 0``.
    """
    loss = (1 - y - alpha).abs() * ((y - torch.sigmoid(x)).abs() + eps) ** gamma * \
        F.binary_cross_entropy_with_logits(x, y, reduction="none")
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unsupported reduction '{reduction}' (mean | sum | none)")


def fuse_logits(logits: Tensor, prior: Tensor, eps: float = 1e-8) -> Tensor:
    """Logit ``z`` with ``sigmoid(z) = prior * sigmoid(logits)`` (UPT's prior-fused logit).

    ``z = log(prior / (1 + exp(-logits) - prior) + eps)``; ``prior`` already multiplied over
    human and object, only used where ``prior > 0``. Shapes: any, equal.
    """
    return torch.log(prior / (1 + torch.exp(-logits) - prior) + eps)


def num_positives(labels: Tensor) -> float:
    """Number of positive labels, averaged over processes under DDP (UPT's normaliser)."""
    n = float((labels > 0).sum())
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([n], device=labels.device)
        dist.all_reduce(t)
        n = float(t) / dist.get_world_size()
    return n


def interaction_focal_loss(logits: Tensor, prior: Tensor, labels: Tensor, alpha: float = 0.5,
                           gamma: float = 0.2) -> Tensor:
    """UPT's interaction loss over all pairs of a batch.

    Only (pair, verb) entries with a non-zero prior (verb valid for the object class) count; the
    logit is fused with the prior so that ``sigmoid(z) = prior * sigmoid(logit)``; the summed focal
    loss is divided by the number of positives (clamped to 1 so an image without positives still
    gives a finite loss).

    Args:
        logits: ``[P, K]`` classifier logits.
        prior: ``[P, K]`` product ``s_h^p * s_o^p`` on valid verbs, 0 elsewhere.
        labels: ``[P, K]`` binary targets.
    """
    x, y = torch.nonzero(prior).unbind(1)
    lg, pr, lb = logits[x, y], prior[x, y], labels[x, y]
    fused = fuse_logits(lg, pr)
    loss = binary_focal_loss_with_logits(fused, lb, alpha=alpha, gamma=gamma, reduction="sum")
    return loss / max(num_positives(lb), 1.0)
