"""SG2HOI+ encoder with a [CLS] token (Eq. 4) and the vision-language distillation head (Eq. 5)."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...errors import ConfigError
from ..position_encoding import PositionEmbeddingSine
from ..transformer import TransformerEncoder, TransformerEncoderLayer


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid tokens. ``x [B, S, D]``, ``mask [B, S]`` True = padding -> ``[B, D]``."""
    keep = (~mask).float().unsqueeze(-1)
    return (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)


class SG2HOIEncoder(nn.Module):
    """``f_en = Encoder([GAP(V); f_agg_1 .. f_agg_HW], p)`` (Eq. 4).

    The [CLS] input is the global average pool of the reduced visual map ``V`` (C' channels, padding
    excluded) projected to d by a linear layer. ``p`` is DETR's sine encoding for the H x W tokens and
    a learned vector for [CLS]; as in DETR it is added to queries and keys of every layer.

    Args:
        seg_dim: C'. d_model: d = 2C'. nhead, dim_feedforward, dropout, num_layers: transformer sizes.
    """

    def __init__(self, seg_dim: int, d_model: int, nhead: int, dim_feedforward: int, dropout: float,
                 num_layers: int):
        super().__init__()
        self.cls_proj = nn.Linear(seg_dim, d_model)
        self.cls_pos = nn.Parameter(torch.zeros(d_model))
        nn.init.normal_(self.cls_pos, std=0.02)
        self.pos_embed = PositionEmbeddingSine(d_model // 2, normalize=True)
        layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout)
        self.encoder = TransformerEncoder(layer, num_layers)
        self.d_model = d_model

    def forward(self, v: Tensor, f_agg: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Args:
            v: ``[B, C', h, w]`` reduced visual map. f_agg: ``[B, d, h, w]`` (Eq. 3).
            mask: ``[B, h, w]`` True on padding.

        Returns:
            ``f_en [B, 1 + h*w, d]`` (token 0 = [CLS]), its padding mask ``[B, 1 + h*w]`` and the
            position encodings ``p [B, 1 + h*w, d]``.
        """
        b = v.shape[0]
        flat_mask = mask.flatten(1)                                                   # [B, hw]
        gap = masked_mean(v.flatten(2).transpose(1, 2), flat_mask)                    # GAP(V) [B, C']
        cls = self.cls_proj(gap).unsqueeze(1)                                         # [B, 1, d]
        tokens = torch.cat([cls, f_agg.flatten(2).transpose(1, 2)], 1)                # [B, 1+hw, d]
        pos = self.pos_embed(mask, f_agg.dtype).flatten(2).transpose(1, 2)            # [B, hw, d]
        pos = torch.cat([self.cls_pos.expand(b, 1, -1), pos], 1)
        full_mask = torch.cat([flat_mask.new_zeros(b, 1), flat_mask], 1)
        out = self.encoder(tokens.transpose(0, 1), src_key_padding_mask=full_mask, pos=pos.transpose(0, 1))
        return out.transpose(0, 1), full_mask, pos


class VLDistillHead(nn.Module):
    """Eq. (5): align ``f_en[CLS]`` or ``f_en[pool]`` with the CLIP image embedding ``f_clip``.

    A linear layer maps the d-dim feature into CLIP's space; both vectors are L2-normalised before
    the L1 (default) or L2 (VLl2 ablation) distance, so the loss does not depend on CLIP's scale.

    Args:
        d_model: d. clip_dim: CLIP embedding size. source: ``cls | pool``. loss: ``l1 | l2``.
        has_cls: whether token 0 of ``f_en`` is [CLS] (False for the deformable base).
    """

    def __init__(self, d_model: int, clip_dim: int, source: str = "cls", loss: str = "l1", has_cls: bool = True):
        super().__init__()
        if source not in ("cls", "pool"):
            raise ConfigError(f"model.sg2hoi.vl_distill: unknown source '{source}' (choose cls | pool | none)")
        if source == "cls" and not has_cls:
            raise ConfigError("model.sg2hoi.vl_distill: 'cls' needs the [CLS] token of the DETR base's encoder; the "
                              "deformable base (model.detr.type=deformable) has none: use pool or none")
        self.has_cls = has_cls
        if loss not in ("l1", "l2"):
            raise ConfigError(f"model.sg2hoi.vl_loss: unknown value '{loss}' (choose l1 | l2)")
        self.source, self.loss_type = source, loss
        self.proj = nn.Linear(d_model, clip_dim)

    def feature(self, f_en: Tensor, mask: Tensor) -> Tensor:
        """``f_en [B, 1+hw, d]`` -> projected ``[B, clip_dim]``: [CLS] output or mean of the h*w outputs."""
        if self.source == "cls":
            feat = f_en[:, 0]
        elif self.has_cls:  # f_en[pool] = 1/(HW) sum_i f_en_i over the valid spatial tokens
            feat = masked_mean(f_en[:, 1:], mask[:, 1:])
        else:               # deformable base: every valid token of every level
            feat = masked_mean(f_en, mask)
        return self.proj(feat)

    def forward(self, f_en: Tensor, mask: Tensor, f_clip: Tensor) -> Tensor:
        """Eq. (5) ``L_algn = |f_clip - f_en[CLS/pool]|``, averaged over dimensions and images."""
        pred = F.normalize(self.feature(f_en, mask), dim=-1)
        target = F.normalize(f_clip.to(pred.dtype), dim=-1)
        if self.loss_type == "l1":
            return F.l1_loss(pred, target)
        return F.mse_loss(pred, target)
