"""Relation decoder of SG2HOI+ (Eq. 6): N_rel learnable queries decode scene-graph 5-tuples."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor, nn

from ..transformer import TransformerDecoder, TransformerDecoderLayer
from .heads import TupleHead


def decode(decoder: TransformerDecoder, queries: Tensor, memory: Tensor, mask: Optional[Tensor],
           pos: Optional[Tensor]) -> Tensor:
    """DETR-style decoding with batch-first tensors.

    The learned queries enter as ``query_pos`` added at every layer (``tgt`` starts at zero), the
    memory keys carry ``pos`` (paper: "the position embedding p is also added in Q_rel").

    Args:
        queries: ``[B, Q, d]``. memory: ``[B, S, d]``. mask: ``[B, S]`` True = padding or None.
        pos: ``[B, S, d]`` or None.

    Returns:
        ``[B, Q, d]`` last-layer output (decoder norm applied).
    """
    q = queries.transpose(0, 1)
    hs = decoder(torch.zeros_like(q), memory.transpose(0, 1), memory_key_padding_mask=mask,
                 pos=None if pos is None else pos.transpose(0, 1), query_pos=q)
    return hs[-1].transpose(0, 1)


def build_decoder(d_model: int, nhead: int, dim_feedforward: int, dropout: float, num_layers: int) -> TransformerDecoder:
    """Post-norm DETR decoder stack with a final LayerNorm."""
    return TransformerDecoder(TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout), num_layers,
                              nn.LayerNorm(d_model))


class RelationDecoder(nn.Module):
    """``f_sg = RelDecoder(f_en, Q_rel)`` (Eq. 6) with the five relation branches.

    Args:
        d_model: d. nhead, dim_feedforward, dropout, num_layers: decoder sizes. num_queries: N_rel.
        num_objects: No of the SGG dataset (labels get a no-object row, last).
        num_predicates: Nr (predicates get a no-relation row, last).
        object_text: ``[No, D_t]`` / predicate_text ``[Nr, D_t]``: text-initialised classifiers
            (Table I "clip"); None = random ("rand").
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, num_layers: int,
                 num_queries: int, num_objects: int, num_predicates: int,
                 object_text: Optional[Tensor] = None, predicate_text: Optional[Tensor] = None):
        super().__init__()
        self.query_embed = nn.Embedding(num_queries, d_model)                 # Q_rel
        self.decoder = build_decoder(d_model, nhead, dim_feedforward, dropout, num_layers)
        self.head = TupleHead(d_model, num_objects + 1, num_predicates + 1, num_objects + 1,
                              object_text, predicate_text, object_text)

    def forward(self, f_en: Tensor, mask: Tensor, pos: Tensor) -> Dict[str, Tensor]:
        """Args:
            f_en: ``[B, S, d]`` encoder output. mask: ``[B, S]`` True = padding. pos: ``[B, S, d]``.

        Returns:
            ``sub_boxes``, ``obj_boxes [B, N_rel, 4]`` (normalised cxcywh), ``sub_logits``,
            ``obj_logits [B, N_rel, No+1]``, ``rel_logits [B, N_rel, Nr+1]``, branch features
            ``f_s``, ``f_r``, ``f_o [B, N_rel, d]``, decoder output ``hs [B, N_rel, d]``.
        """
        b = f_en.shape[0]
        queries = self.query_embed.weight.unsqueeze(0).expand(b, -1, -1)
        hs = decode(self.decoder, queries, f_en, mask, pos)                    # Eq. (6)
        o = self.head(hs)
        return {"sub_boxes": o["left_boxes"], "sub_logits": o["left_logits"], "rel_logits": o["mid_logits"],
                "obj_boxes": o["right_boxes"], "obj_logits": o["right_logits"],
                "f_s": o["f_left"], "f_r": o["f_mid"], "f_o": o["f_right"], "hs": hs}
