"""Multi-scale deformable attention (Zhu et al., "Deformable DETR", ICLR 2021, Eq. (3)) in pure PyTorch.

Each query samples ``n_points`` locations per head and per feature level around its reference point,
bilinearly (``F.grid_sample``), and sums them with softmax weights shared over the
``n_levels * n_points`` samples of a head. No compiled extension is needed; the official CUDA kernel
computes the same bilinear sums with zeros outside the map (``align_corners=False`` convention).

Module and parameter names follow fundamentalvision/Deformable-DETR ``ops/modules/ms_deform_attn.py``
(``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``) so that the official
checkpoints load strictly (/work/shared/specs/deformable-detr.md).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError


def ms_deform_attn_sample(value: Tensor, shapes: Sequence[Tuple[int, int]], locations: Tensor,
                          weights: Tensor) -> Tensor:
    """Weighted bilinear sampling of a multi-level value map.

    Args:
        value: ``[B, S, M, Dh]`` per-head values of all levels, flattened level after level
            (``S = sum(H_l * W_l)``).
        shapes: ``L`` pairs ``(H_l, W_l)``.
        locations: ``[B, Q, M, L, P, 2]`` sampling points as (x, y) in ``[0, 1]`` of each level's
            padded map (outside = zeros).
        weights: ``[B, Q, M, L, P]`` attention weights (softmax over ``L * P`` per head).

    Returns:
        ``[B, Q, M * Dh]``.
    """
    b, _, m, dh = value.shape
    _, q, _, n_levels, n_points, _ = locations.shape
    grids = 2 * locations - 1                      # grid_sample's [-1, 1] frame (align_corners=False)
    sampled: List[Tensor] = []
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        # slices, not split(): the sizes may be traced tensors (ONNX export), which split() would freeze
        v = value[:, start:start + h * w].flatten(2).transpose(1, 2).reshape(b * m, dh, h, w)
        start = start + h * w
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)          # [B*M, Q, P, 2]
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    w = weights.transpose(1, 2).reshape(b * m, 1, q, n_levels * n_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * w).sum(-1)       # [B*M, Dh, Q]
    return out.view(b, m * dh, q).transpose(1, 2).contiguous()


def level_sizes_wh(shapes: Sequence[Tuple[int, int]]) -> Tensor:
    """``[L, 2]`` float (W_l, H_l); built with ``stack`` so that traced sizes (ONNX export) stay dynamic."""
    return torch.stack([torch.stack([torch.as_tensor(w), torch.as_tensor(h)]) for h, w in shapes]).float()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module.

    Args:
        d_model: channels (256). n_levels: feature levels (4). n_heads: heads (8).
        n_points: sampling points per head and level (4).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ConfigError(f"deformable attention: d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official init (spec: ms 62-76): offsets start on rays in the 8 head directions, point k at
        distance k + 1 (the direction scaled so its larger coordinate is 1); uniform attention."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, query: Tensor, reference_points: Tensor, source: Tensor,
                shapes: Sequence[Tuple[int, int]], padding_mask: Optional[Tensor] = None) -> Tensor:
        """Attend from each query to sampled points of every level.

        Args:
            query: ``[B, Q, D]`` (content + position).
            reference_points: ``[B, Q, L, 2]`` (x, y) in ``[0, 1]`` of each level's padded map, or
                ``[B, Q, L, 4]`` boxes (cx, cy, w, h): offsets are then scaled by the box size.
            source: ``[B, S, D]`` flattened features of all levels.
            shapes: ``L`` pairs ``(H_l, W_l)`` (``S = sum(H_l * W_l)``).
            padding_mask: ``[B, S]`` bool, True on padding (those values are zeroed).

        Returns:
            ``[B, Q, D]``.
        """
        b, q, _ = query.shape
        value = self.value_proj(source)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(b, source.shape[1], self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(b, q, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(b, q, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(b, q, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            # offsets are in cells of each level: divide by (W_l, H_l)
            norm = level_sizes_wh(shapes).to(offsets)
            loc = reference_points[:, :, None, :, None, :] + offsets / norm[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            loc = reference_points[:, :, None, :, None, :2] + \
                offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5
        else:
            raise ValueError(f"reference_points must end in 2 or 4 coordinates, got {tuple(reference_points.shape)}")
        return self.output_proj(ms_deform_attn_sample(value, shapes, loc, weights))
