"""From scene graphs to interactions (paper Section III-C): R2ITrans (Eq. 7), feature
transformation and query transformation, each switchable for the Table VIII ablations.

- R2ITrans: ``f_r2i = R2ITrans([W_t[f_s; f_r; f_o]]_k, p)``; ``p`` for relation slot k is the
  learned relation query ``Q_rel[k]`` (the relation tuples have no spatial position).
- Feature transformation: ``f_en`` (queries) cross-attends ``f_r2i`` (keys/values) -> ``F_hoi``.
- Query transformation: ``Q_hoi`` (queries) cross-attends ``Q_rel`` (keys/values).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..transformer import TransformerEncoder, TransformerEncoderLayer


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention + FFN (no self-attention: the queries may be H*W image tokens).

    Positions are added to queries and keys, never to values (DETR's rule).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor, kv: Tensor, x_pos: Optional[Tensor] = None, kv_pos: Optional[Tensor] = None,
                kv_mask: Optional[Tensor] = None) -> Tensor:
        """``x [B, Q, d]`` attends ``kv [B, S, d]`` (``kv_mask [B, S]`` True = ignore) -> ``[B, Q, d]``."""
        q = x if x_pos is None else x + x_pos
        k = kv if kv_pos is None else kv + kv_pos
        x = self.norm1(x + self.dropout1(self.multihead_attn(q, k, kv, key_padding_mask=kv_mask)[0]))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class CrossAttentionStack(nn.Module):
    """``num_layers`` :class:`CrossAttentionLayer` s (Section IV-D: 2 layers)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, num_layers: int):
        super().__init__()
        layer = CrossAttentionLayer(d_model, nhead, dim_feedforward, dropout)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, x: Tensor, kv: Tensor, x_pos: Optional[Tensor] = None, kv_pos: Optional[Tensor] = None,
                kv_mask: Optional[Tensor] = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, kv, x_pos, kv_pos, kv_mask)
        return x


class R2ITransformer(nn.Module):
    """Relation-to-interaction transformation, Eq. (7).

    Args:
        d_model: d. nhead, dim_feedforward, dropout: layer sizes. num_layers: 3 (Section IV-D).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, num_layers: int):
        super().__init__()
        self.w_t = nn.Linear(3 * d_model, d_model)                              # W_t of Eq. (7)
        self.encoder = TransformerEncoder(TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout),
                                          num_layers)

    def forward(self, f_s: Tensor, f_r: Tensor, f_o: Tensor, pos: Tensor) -> Tensor:
        """Args:
            f_s, f_r, f_o: ``[B, N_rel, d]`` subject / predicate / object branch features.
            pos: ``[B, N_rel, d]`` position encodings of the relation slots.

        Returns:
            ``f_r2i [B, N_rel, d]``.
        """
        tuples = self.w_t(torch.cat([f_s, f_r, f_o], -1))                     # f~sg_k = W_t[f_s, f_r, f_o]
        return self.encoder(tuples.transpose(0, 1), pos=pos.transpose(0, 1)).transpose(0, 1)


class QueryTransform(nn.Module):
    """Randomly initialised ``Q_hoi`` cross-attending the relation queries ``Q_rel``.

    Args:
        d_model: d. num_queries: N_hoi. enabled: False = -QUTR (the HOI queries are used as learned).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, num_layers: int,
                 num_queries: int, enabled: bool = True):
        super().__init__()
        self.query_embed = nn.Embedding(num_queries, d_model)                  # Q_hoi
        self.attn = CrossAttentionStack(d_model, nhead, dim_feedforward, dropout, num_layers) if enabled else None

    def forward(self, rel_queries: Tensor, batch: int) -> Tensor:
        """``rel_queries [N_rel, d]`` (learned, shared by the batch) or ``[B, N_rel, d]`` (per image:
        the proposal queries of the deformable base) -> HOI queries ``[B, N_hoi, d]``."""
        q = self.query_embed.weight.unsqueeze(0)
        if rel_queries.dim() == 3:
            q = q.expand(batch, -1, -1)
            return self.attn(q, rel_queries) if self.attn is not None else q
        if self.attn is not None:
            q = self.attn(q, rel_queries.unsqueeze(0))
        return q.expand(batch, -1, -1)
