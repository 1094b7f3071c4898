"""UPT box-pair spatial encodings (Zhang et al., CVPR 2022) and the MLP that embeds them.

Computation follows fredzzhang/upt ``ops.compute_spatial_encodings``: 18 handcrafted features
of a (human, object) box pair, concatenated with ``log(f + eps)`` -> 36 numbers, then
``spatial_head`` = MLP 36-128-256-``representation_size`` with ReLU after every layer.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from ...ops import box_area

#: number of handcrafted box-pair features (doubled by the log branch)
NUM_BOX_PAIR_FEATURES = 18


def aligned_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of aligned pairs ``a [M, 4]``, ``b [M, 4]`` xyxy -> ``[M]``: the diagonal of
    :func:`hoikit.ops.box_iou`, same arithmetic, without the ``M x M`` matrix (and no ``diag``,
    which ONNX lacks)."""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(a) + box_area(b) - inter
    return inter / union.clamp(min=1e-12)


def box_pair_features(boxes_1: Tensor, boxes_2: Tensor, image_size: Tuple[float, float],
                      eps: float = 1e-10) -> Tensor:
    """The 18 raw spatial features of aligned box pairs.

    Args:
        boxes_1: ``[M, 4]`` first (human) boxes, xyxy pixels.
        boxes_2: ``[M, 4]`` second (object) boxes, xyxy pixels.
        image_size: ``(height, width)`` of the (transformed, unpadded) image (numbers or a ``[2]`` tensor).
        eps: numerical-stability constant (UPT: 1e-10).

    Returns:
        ``[M, 18]``: centres (4), sizes (4) normalised by the image, areas (2) normalised by the
        image area, area ratio, aspect ratios (2), IoU, and 4 directional centre distances
        normalised by the first box's width / height.
    """
    h, w = image_size[0], image_size[1]
    if not isinstance(h, Tensor):            # a [2] tensor stays a tensor (ONNX graphs)
        h, w = float(h), float(w)
    b1, b2 = boxes_1, boxes_2
    c1_x = (b1[:, 0] + b1[:, 2]) / 2
    c1_y = (b1[:, 1] + b1[:, 3]) / 2
    c2_x = (b2[:, 0] + b2[:, 2]) / 2
    c2_y = (b2[:, 1] + b2[:, 3]) / 2
    b1_w = b1[:, 2] - b1[:, 0]
    b1_h = b1[:, 3] - b1[:, 1]
    b2_w = b2[:, 2] - b2[:, 0]
    b2_h = b2[:, 3] - b2[:, 1]
    d_x = torch.abs(c2_x - c1_x) / (b1_w + eps)
    d_y = torch.abs(c2_y - c1_y) / (b1_h + eps)
    iou = aligned_box_iou(b1, b2)
    return torch.stack([
        c1_x / w, c1_y / h, c2_x / w, c2_y / h,
        b1_w / w, b1_h / h, b2_w / w, b2_h / h,
        b1_w * b1_h / (h * w), b2_w * b2_h / (h * w),
        b2_w * b2_h / (b1_w * b1_h + eps),
        b1_w / (b1_h + eps), b2_w / (b2_h + eps),
        iou,
        (c2_x > c1_x).float() * d_x,
        (c2_x < c1_x).float() * d_x,
        (c2_y > c1_y).float() * d_y,
        (c2_y < c1_y).float() * d_y,
    ], dim=1)


def compute_spatial_encodings(boxes_1: Tensor, boxes_2: Tensor, image_size: Tuple[float, float],
                              eps: float = 1e-10) -> Tensor:
    """UPT's 36-d encoding ``cat(f, log(f + eps))`` of aligned box pairs.

    Args:
        boxes_1: ``[M, 4]`` xyxy pixels.
        boxes_2: ``[M, 4]`` xyxy pixels.
        image_size: ``(height, width)``.

    Returns:
        ``[M, 36]``.
    """
    f = box_pair_features(boxes_1, boxes_2, image_size, eps)
    return torch.cat([f, torch.log(f + eps)], dim=1)


def build_spatial_head(representation_size: int = 512) -> nn.Sequential:
    """MLP ``36 -> 128 -> 256 -> representation_size``, ReLU after each layer.

    Module indices 0, 2, 4 are the Linear layers (UPT keys ``spatial_head.{0,2,4}``).
    """
    n = 2 * NUM_BOX_PAIR_FEATURES
    return nn.Sequential(
        nn.Linear(n, 128), nn.ReLU(),
        nn.Linear(128, 256), nn.ReLU(),
        nn.Linear(256, representation_size), nn.ReLU(),
    )
