"""Interactive Relation Encoder (IRE, RmLR Sec. 3.2, Fig. 3) and global context.

    X_e = F_enc(X)                                   Eq. (4)
    m   = FC(GAP(mROI(X_e, B~)))                     Eq. (5)
    g   = FC(GAP(X))                                 Eq. (6)

``X`` is the backbone's C5 map. ``F_enc`` is a 1x1 projection to ``d_model`` plus DETR's sine
position encoding followed by ``num_layers`` post-norm transformer encoder layers (Appendix B:
2 layers). The masked RoI keeps the feature cells whose centres fall inside the human box or the
object box of a pair and zeroes everything else (Fig. 4: no interference from other people in
the union box). GAP averages over the kept cells (``pool="masked"``) or over the whole valid map
(``pool="full"``, the literal "global average"); both are switches (docs/method-notes-rmlr.md).

Speed (benchmarks/results/cost.md, run 4): outside training the encoder layers run through
:func:`encoder_layer_sdpa` (:class:`SDPATransformerEncoder`), the same post-norm layer written with
``F.scaled_dot_product_attention``. PyTorch's fused inference path for ``nn.TransformerEncoderLayer``
with a key-padding mask spends half of the layer in ``aten::_masked_softmax`` (22 ms of 37 ms per
layer on the 25 x 25 C5 map of an 800 px image, 1 CPU thread); the SDPA kernel takes the mask
inside its fused softmax. Training keeps the stock module (attention dropout, autograd).
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError


def pair_region_mask(boxes_h: Tensor, boxes_o: Tensor, feat_hw, stride: Union[float, Tuple[float, float]]) -> Tensor:
    """Binary masks of the union of the human and object *boxes* (not their bounding union).

    A cell ``(r, c)`` covers pixels ``[c*s_x, (c+1)*s_x) x [r*s_y, (r+1)*s_y)``;
    it is kept when its centre lies inside either box. The cell containing each box centre is
    always kept so that boxes smaller than a cell still select something.

    Args:
        boxes_h, boxes_o: ``[P, 4]`` xyxy pixels of the padded image frame.
        feat_hw: ``(h, w)`` of the feature map.
        stride: pixels per feature cell, ``s`` or ``(s_y, s_x)``: the backbone's stride (32 for a
            ResNet C5), not the padded size divided by the map size (a padded side that is not a
            multiple of the stride gives a map of ``ceil(side / s)`` cells whose last one is partly
            outside the image).

    Returns:
        ``[P, h, w]`` float mask in {0, 1}.
    """
    h, w = feat_hw[0], feat_hw[1]           # ints, or traced sizes in the ONNX graph (no int())
    sy, sx = (stride, stride) if isinstance(stride, (int, float)) else stride   # per axis (issue: 481 x 1333)
    dev = boxes_h.device
    rows = torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev)
    cy = (rows.float() + 0.5) * sy
    cx = (cols.float() + 0.5) * sx

    def inside(b: Tensor) -> Tensor:
        in_x = (cx[None] >= b[:, 0:1]) & (cx[None] <= b[:, 2:3])       # [P, w]
        in_y = (cy[None] >= b[:, 1:2]) & (cy[None] <= b[:, 3:4])       # [P, h]
        # the cell of the box centre, clamped into the map, as a one-hot [P, h, w] (no index_put)
        ctr_c = torch.minimum((((b[:, 0] + b[:, 2]) / 2) / sx).floor().long().clamp(min=0), cols[-1])
        ctr_r = torch.minimum((((b[:, 1] + b[:, 3]) / 2) / sy).floor().long().clamp(min=0), rows[-1])
        centre = (rows[None] == ctr_r[:, None])[:, :, None] & (cols[None] == ctr_c[:, None])[:, None, :]
        return (in_y[:, :, None] & in_x[:, None, :]) | centre

    return (inside(boxes_h) | inside(boxes_o)).float()


def encoder_layer_sdpa(layer: nn.TransformerEncoderLayer, x: Tensor, key_padding_mask: Optional[Tensor]) -> Tensor:
    """``layer``'s forward without dropout (eval), attention by ``F.scaled_dot_product_attention``.

    Same parameters and same arithmetic as ``nn.TransformerEncoderLayer.forward`` in eval mode
    (``softmax(q k^T / sqrt(d_h)) v`` per head, residual, LayerNorm, FFN); only the kernels differ,
    so outputs agree to float32 rounding (tests/models/rmlr/test_relation_encoder_speed.py).

    Args:
        layer: a ``batch_first`` ``nn.TransformerEncoderLayer``.
        x: ``[B, S, d]`` tokens.
        key_padding_mask: ``[B, S]`` bool, True = padded key (ignored), or None.

    Returns:
        ``[B, S, d]``.
    """
    attn = layer.self_attn
    b, s, d = x.shape
    h = attn.num_heads

    def self_attention(t: Tensor) -> Tensor:
        qkv = F.linear(t, attn.in_proj_weight, attn.in_proj_bias).view(b, s, 3, h, d // h).permute(2, 0, 3, 1, 4)
        keep = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]   # [B, 1, 1, S]
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=keep)     # [B, h, S, d/h]
        return attn.out_proj(out.transpose(1, 2).reshape(b, s, d))

    def feed_forward(t: Tensor) -> Tensor:
        return layer.linear2(layer.activation(layer.linear1(t)))

    if layer.norm_first:
        x = x + self_attention(layer.norm1(x))
        return x + feed_forward(layer.norm2(x))
    x = layer.norm1(x + self_attention(x))
    return layer.norm2(x + feed_forward(x))


class SDPATransformerEncoder(nn.TransformerEncoder):
    """``nn.TransformerEncoder`` (same submodules and state-dict keys) whose eval forward runs
    :func:`encoder_layer_sdpa`; in training (dropout) or with an attention mask it is the stock
    forward. Being a module call keeps the layers' cost attributed to it by profilers and
    FlopCounterMode."""

    def forward(self, src: Tensor, mask: Optional[Tensor] = None, src_key_padding_mask: Optional[Tensor] = None,
                is_causal: Optional[bool] = None) -> Tensor:
        """src ``[B, S, d]`` (batch first), src_key_padding_mask ``[B, S]`` (True = pad) -> ``[B, S, d]``."""
        if self.training or mask is not None or is_causal:
            return super().forward(src, mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)
        pad = src_key_padding_mask
        if pad is not None and not bool(pad.any()):
            pad = None                                                        # no padded cell: no mask
        for layer in self.layers:
            src = encoder_layer_sdpa(layer, src, pad)
        return src if self.norm is None else self.norm(src)


class InteractiveRelationEncoder(nn.Module):
    """IRE: transformer encoder over the C5 map, masked RoI, GAP, FC (Eq. 4-5), and the global
    context FC (Eq. 6).

    Args:
        in_channels: C5 channels (2048 for R50/R101).
        d_model: encoder width (= DETR hidden size so DETR's position encoding is reused).
        out_dim: size of ``m`` and ``g`` (Appendix B: 512).
        num_layers: encoder layers (Appendix B: 2).
        pool: ``masked`` (mean over kept cells) | ``full`` (mean over the whole valid map).
    """

    def __init__(self, in_channels: int, d_model: int = 256, out_dim: int = 512, num_layers: int = 2,
                 nheads: int = 8, dim_feedforward: int = 1024, dropout: float = 0.1, pool: str = "masked"):
        super().__init__()
        if pool not in ("masked", "full"):
            raise ConfigError(f"model.rmlr.ire_pool: '{pool}' is not one of masked | full")
        self.pool = pool
        self.input_proj = nn.Conv2d(in_channels, d_model, kernel_size=1)
        layer = nn.TransformerEncoderLayer(d_model, nheads, dim_feedforward, dropout, batch_first=True)
        self.encoder = SDPATransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.fc_m = nn.Linear(d_model, out_dim)   # Eq. (5) FC
        self.fc_g = nn.Linear(in_channels, out_dim)  # Eq. (6) FC

    def encode(self, features: Tensor, mask: Tensor, pos: Optional[Tensor]) -> Tensor:
        """Eq. (4). features ``[B, C, h, w]``, mask ``[B, h, w]`` (True = pad), pos ``[B, d, h, w]``
        -> ``X_e [B, d, h, w]``."""
        x = self.input_proj(features)
        if pos is not None:
            x = x + pos
        b, d, h, w = x.shape
        seq = self.encoder(x.flatten(2).transpose(1, 2), src_key_padding_mask=mask.flatten(1))  # [B, hw, d]
        return seq.transpose(1, 2).reshape(b, d, h, w)

    def relation_features(self, x_e: Tensor, valid: Tensor, boxes_h: Tensor, boxes_o: Tensor,
                          stride: Union[float, Tuple[float, float]]) -> Tensor:
        """Eq. (5) for the pairs of one image.

        Args:
            x_e: ``[d, h, w]`` encoded map of the image.
            valid: ``[h, w]`` bool, True on non-padded cells.
            boxes_h, boxes_o: ``[P, 4]`` pair boxes in pixels.
            stride: pixels per cell, ``s`` or ``(s_y, s_x)`` (the backbone's stride).

        Returns:
            ``m [P, out_dim]``.
        """
        if len(boxes_h) == 0:
            return x_e.new_zeros(0, self.fc_m.out_features)
        roi = pair_region_mask(boxes_h, boxes_o, x_e.shape[-2:], stride) * valid[None].float()  # mROI
        summed = torch.einsum("phw,dhw->pd", roi, x_e)
        if self.pool == "masked":
            denom = roi.flatten(1).sum(1, keepdim=True).clamp(min=1)
        else:
            denom = valid.float().sum().clamp(min=1).expand(roi.shape[0], 1)
        return self.fc_m(summed / denom)                               # FC(GAP(.))

    def global_context(self, features: Tensor, valid: Tensor) -> Tensor:
        """Eq. (6): ``g = FC(GAP(X))`` over non-padded cells. features ``[B, C, h, w]``,
        valid ``[B, h, w]`` -> ``[B, out_dim]``."""
        v = valid.float()[:, None]
        pooled = (features * v).sum((2, 3)) / v.sum((2, 3)).clamp(min=1)
        return self.fc_g(pooled)
