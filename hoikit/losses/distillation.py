"""Cross-modal distillation distances of RmLR (Sec. 3.4).

    D_L1(a, b) = 1/N sum |a - b|                       Eq. (15)

used for the word-level alignment losses (Eq. 16-17, visual tokens vs. their cross-attention
reconstruction from word embeddings) and the sentence-level losses (Eq. 18-19, [CLS] embeddings vs.
an FFN of the visual tokens). Rows are (pair, ground-truth triplet) associations; the distance is
averaged over rows and feature dimensions, i.e. the expectation over the training set in Eq. 16-19.
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor


def l1_distance(a: Tensor, b: Tensor) -> Tensor:
    """Eq. (15): mean absolute difference of two ``[A, D]`` tensors (0 when ``A == 0``)."""
    if a.shape != b.shape:
        raise ValueError(f"l1_distance: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    if a.numel() == 0:
        return a.sum() * 0 + b.sum() * 0
    return (a - b).abs().mean()


def pooled_l1(pairs: List[tuple]) -> Tensor:
    """Eq. (15) over several images at once: ``pairs`` = list of ``(a_i [A_i, D], b_i [A_i, D])``;
    every row of every image weighs the same."""
    if not pairs:
        raise ValueError("pooled_l1: nothing to compare")
    a = torch.cat([p[0] for p in pairs])
    b = torch.cat([p[1] for p in pairs])
    return l1_distance(a, b)
