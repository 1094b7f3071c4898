"""Focal loss (Eq. 21, UPT form) and the prior-fused logit, against hand computation. The interaction
loss calls ``fuse_logits`` (one formula): a bug planted in it fails both tests below."""
import math

import torch

from hoikit.losses.focal import binary_focal_loss_with_logits, fuse_logits, interaction_focal_loss


def test_fused_logit_matches_prior_times_sigmoid():
    logits = torch.tensor([[-2.0, 0.0, 3.0]])
    prior = torch.tensor([[0.3, 0.9, 0.5]])
    assert torch.allclose(torch.sigmoid(fuse_logits(logits, prior, eps=0.0)), prior * torch.sigmoid(logits),
                          atol=1e-6)


def _by_hand(z, y, alpha=0.5, gamma=0.2, eps=1e-6):
    p = 1 / (1 + math.exp(-z))
    bce = -math.log(p) if y == 1 else -math.log(1 - p)
    return abs(1 - y - alpha) * (abs(y - p) + eps) ** gamma * bce


def test_focal_single_terms():
    for z, y in [(0.3, 1.0), (-1.2, 0.0), (2.0, 0.0)]:
        got = binary_focal_loss_with_logits(torch.tensor([z]), torch.tensor([y]), 0.5, 0.2, "sum")
        assert math.isclose(float(got), _by_hand(z, y), rel_tol=1e-5)


def test_interaction_loss_of_two_pairs():
    # two pairs, three verbs; verb 2 is invalid for pair 0's object (prior 0) so it does not count
    logits = torch.tensor([[1.0, -1.0, 5.0], [0.5, 0.0, -0.5]])
    prior = torch.tensor([[0.8 * 0.9, 0.8 * 0.9, 0.0], [0.6 * 0.5, 0.6 * 0.5, 0.6 * 0.5]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    total = 0.0
    for i in range(2):
        for k in range(3):
            if prior[i, k] == 0:
                continue
            s, p = 1 / (1 + math.exp(-float(logits[i, k]))), float(prior[i, k])
            z = math.log(p * s / (1 - p * s))      # sigmoid(z) = p * sigmoid(logit)
            total += _by_hand(z, float(labels[i, k]))
    expected = total / 2                                       # two positives among counted entries
    got = interaction_focal_loss(logits, prior, labels, alpha=0.5, gamma=0.2)
    assert math.isclose(float(got), expected, rel_tol=1e-4)
