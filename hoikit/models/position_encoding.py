"""Sine position encoding of DETR (Carion et al. 2020, after "Attention is all you need").

The computation follows facebookresearch/detr ``models/position_encoding.py`` exactly (see
/work/shared/specs/detr-and-upt.md): cumulative sums over the non-padded area in float32,
normalised to ``[0, 2*pi]`` with eps 1e-6, temperature 10000, sin/cos interleaved per frequency,
y channels first then x channels.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """Fixed 2-D sine encoding; no parameters.

    Args:
        num_pos_feats: channels per axis (DETR: hidden_dim // 2 = 128); output has 2x this.
        temperature: base of the geometric frequency progression (10000).
        normalize: divide positions by the extent of the non-padded area and multiply by ``scale``.
        scale: 2*pi by default.
        offset: added to the cumulative positions before normalising (DETR 0; Deformable
            DETR -0.5: ``(cumsum - 0.5) / (last + eps) * scale``, spec deformable-detr.md).
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, normalize: bool = True,
                 scale: Optional[float] = None, eps: float = 1e-6, offset: float = 0.0):
        super().__init__()
        self.offset = offset
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self.eps = eps

    def forward(self, mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Encode positions of the valid (non-padding) cells.

        Args:
            mask: ``[B, h, w]`` bool, True on padding.
            dtype: dtype of the returned tensor (the feature map's).

        Returns:
            ``[B, 2 * num_pos_feats, h, w]``: channels ``[0, F)`` encode y, ``[F, 2F)`` encode x;
            within an axis, channel ``2k`` is ``sin(p / T^(2k/F))`` and ``2k+1`` is ``cos`` of the same.
        """
        not_mask = ~mask
        y = not_mask.cumsum(1, dtype=torch.float32)
        x = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            y = (y + self.offset) / (y[:, -1:, :] + self.eps) * self.scale
            x = (x + self.offset) / (x[:, :, -1:] + self.eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        px = x[..., None] / dim_t
        py = y[..., None] / dim_t
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((py, px), dim=3).permute(0, 3, 1, 2).to(dtype)
