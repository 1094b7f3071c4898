"""Post-norm transformer of DETR with DETR's parameter names, plus reusable building blocks.

Sequences are ``[S, B, D]`` (sequence first), as in facebookresearch/detr and
``nn.MultiheadAttention(batch_first=False)``, so checkpoints map one to one:
``self_attn.in_proj_weight``, ``multihead_attn.out_proj.*``, ``linear1``, ``linear2``,
``norm1..3``, ``decoder.norm`` (there is no final encoder norm in post-norm DETR).

Building blocks reused by SG2HOI+ and RmLR: :class:`TransformerEncoderLayer`,
:class:`TransformerDecoderLayer`, :class:`TransformerEncoder`, :class:`TransformerDecoder`,
:class:`MLP`.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _with_pos(x: Tensor, pos: Optional[Tensor]) -> Tensor:
    return x if pos is None else x + pos


def _clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList([copy.deepcopy(module) for _ in range(n)])


class MLP(nn.Module):
    """Feed-forward net with ReLU between layers (DETR's box head: ``layers.0..2``).

    Args:
        input_dim, hidden_dim, output_dim: sizes; ``num_layers`` Linear layers in total.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x: Tensor) -> Tensor:
        """``x [..., input_dim]`` -> ``[..., output_dim]``."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class TransformerEncoderLayer(nn.Module):
    """Post-norm self-attention + FFN; position added to queries and keys only.

    Args:
        d_model: D. nhead: heads. dim_feedforward: FFN width. dropout: on attention and FFN outputs.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src: Tensor, src_mask: Optional[Tensor] = None,
                src_key_padding_mask: Optional[Tensor] = None, pos: Optional[Tensor] = None) -> Tensor:
        """``src [S, B, D]``, ``src_key_padding_mask [B, S]`` (True = ignore), ``pos [S, B, D]`` -> ``[S, B, D]``."""
        q = k = _with_pos(src, pos)
        src2 = self.self_attn(q, k, value=src, attn_mask=src_mask, key_padding_mask=src_key_padding_mask)[0]
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(src2))


class TransformerDecoderLayer(nn.Module):
    """Post-norm self-attention, cross-attention to memory, FFN (DETR's decoder layer).

    Queries get ``query_pos`` on queries/keys of self-attention and on the cross-attention query;
    memory keys get ``pos``; values never carry positions.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Optional[Tensor] = None,
                memory_mask: Optional[Tensor] = None, tgt_key_padding_mask: Optional[Tensor] = None,
                memory_key_padding_mask: Optional[Tensor] = None, pos: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None) -> Tensor:
        """Args:
            tgt: ``[Q, B, D]`` queries. memory: ``[S, B, D]``.
            memory_key_padding_mask: ``[B, S]`` True on padding. pos: ``[S, B, D]``. query_pos: ``[Q, B, D]``.

        Returns:
            ``[Q, B, D]``.
        """
        q = k = _with_pos(tgt, query_pos)
        tgt2 = self.self_attn(q, k, value=tgt, attn_mask=tgt_mask, key_padding_mask=tgt_key_padding_mask)[0]
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.multihead_attn(query=_with_pos(tgt, query_pos), key=_with_pos(memory, pos), value=memory,
                                   attn_mask=memory_mask, key_padding_mask=memory_key_padding_mask)[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(tgt2))


class TransformerEncoder(nn.Module):
    """A stack of encoder layers (``layers.i``), optional final ``norm`` (None in post-norm DETR)."""

    def __init__(self, encoder_layer: nn.Module, num_layers: int, norm: Optional[nn.Module] = None):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.norm = norm

    def forward(self, src: Tensor, mask: Optional[Tensor] = None, src_key_padding_mask: Optional[Tensor] = None,
                pos: Optional[Tensor] = None) -> Tensor:
        """``src [S, B, D]`` -> ``[S, B, D]``."""
        out = src
        for layer in self.layers:
            out = layer(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask, pos=pos)
        return out if self.norm is None else self.norm(out)


class TransformerDecoder(nn.Module):
    """A stack of decoder layers with a shared final ``norm`` applied to every returned output.

    Returns ``[L, Q, B, D]`` when ``return_intermediate`` (the norm applied to each layer's output),
    else ``[1, Q, B, D]``.
    """

    def __init__(self, decoder_layer: nn.Module, num_layers: int, norm: Optional[nn.Module] = None,
                 return_intermediate: bool = False):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.norm = norm
        self.return_intermediate = return_intermediate

    def forward(self, tgt: Tensor, memory: Tensor, memory_key_padding_mask: Optional[Tensor] = None,
                pos: Optional[Tensor] = None, query_pos: Optional[Tensor] = None, **kwargs) -> Tensor:
        """``tgt [Q, B, D]``, ``memory [S, B, D]``, ``memory_key_padding_mask [B, S]`` (True = padding),
        ``pos [S, B, D]``, ``query_pos [Q, B, D]`` -> ``[L, Q, B, D]`` (``[1, Q, B, D]`` without
        ``return_intermediate``); ``kwargs`` go to every layer."""
        out = tgt
        inter = []
        for layer in self.layers:
            out = layer(out, memory, memory_key_padding_mask=memory_key_padding_mask, pos=pos,
                        query_pos=query_pos, **kwargs)
            if self.return_intermediate:
                inter.append(out if self.norm is None else self.norm(out))
        if self.return_intermediate:
            return torch.stack(inter)
        return (out if self.norm is None else self.norm(out)).unsqueeze(0)


class Transformer(nn.Module):
    """DETR's encoder-decoder (Carion et al. 2020, Fig. 2), post-norm.

    Args:
        d_model: D (256). nhead: 8. num_encoder_layers / num_decoder_layers: 6 / 6.
        dim_feedforward: 2048. dropout: 0.1. return_intermediate_dec: return every decoder layer.
    """

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 return_intermediate_dec: bool = True):
        super().__init__()
        self.encoder = TransformerEncoder(TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout),
                                          num_encoder_layers)
        self.decoder = TransformerDecoder(TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout),
                                          num_decoder_layers, nn.LayerNorm(d_model),
                                          return_intermediate=return_intermediate_dec)
        self.d_model = d_model
        self.nhead = nhead
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, mask: Tensor, query_embed: Tensor, pos_embed: Tensor,
                tgt_mask: Optional[Tensor] = None, extra_tgt: Optional[Tensor] = None,
                extra_pos: Optional[Tensor] = None):
        """Encode the feature map and decode the queries.

        Args:
            src: ``[B, D, h, w]`` projected features. mask: ``[B, h, w]`` True on padding.
            query_embed: ``[Q, D]`` learned query positions. pos_embed: ``[B, D, h, w]``.
            tgt_mask: optional decoder self-attention mask, ``[Q, Q]`` or ``[B * nhead, Q, Q]`` bool
                (True = blocked): keeps query groups apart (hybrid matching, denoising).
            extra_tgt, extra_pos: optional ``[B, N, D]`` content and position of N extra queries
                appended after the learned ones (whose content is zero, as in DETR): denoising.

        Returns:
            hs ``[L, B, Q, D]`` (decoder norm applied) and memory ``[B, D, h, w]``.
        """
        b, c, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)
        pos = pos_embed.flatten(2).permute(2, 0, 1)
        query = query_embed.unsqueeze(1).repeat(1, b, 1)
        key_mask = mask.flatten(1)
        tgt = torch.zeros_like(query)
        if extra_tgt is not None:
            query = torch.cat([query, extra_pos.transpose(0, 1)], 0)
            tgt = torch.cat([tgt, extra_tgt.transpose(0, 1)], 0)
        memory = self.encoder(src, src_key_padding_mask=key_mask, pos=pos)
        extra = {} if tgt_mask is None else {"tgt_mask": tgt_mask}
        hs = self.decoder(tgt, memory, memory_key_padding_mask=key_mask, pos=pos, query_pos=query, **extra)
        return hs.transpose(1, 2), memory.permute(1, 2, 0).reshape(b, c, h, w)
