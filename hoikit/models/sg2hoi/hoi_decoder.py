"""HOI decoder of SG2HOI+ (Eq. 8): ``h_hoi = HOIDecoder(F_hoi, Q_hoi)`` with five branches."""
from __future__ import annotations

from typing import Dict, Optional

from torch import Tensor, nn

from .heads import TupleHead
from .relation_decoder import build_decoder, decode


class HOIDecoder(nn.Module):
    """Decodes HOI queries over the transformed features and predicts HOI 5-tuples.

    Branches: human box, human score (binary: 2 logits, human / no-human, a changed subject label
    classification as the paper says), interaction (multi-label verbs, one sigmoid logit per verb,
    no extra row), object box, object label (No_hoi + 1 with no-object last).

    Args:
        d_model, nhead, dim_feedforward, dropout, num_layers: decoder sizes.
        num_objects: object classes of the HOI dataset. num_verbs: V.
        object_text ``[No, D_t]`` / verb_text ``[V, D_t]``: text-initialised classifiers or None.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, num_layers: int,
                 num_objects: int, num_verbs: int, object_text: Optional[Tensor] = None,
                 verb_text: Optional[Tensor] = None):
        super().__init__()
        self.decoder = build_decoder(d_model, nhead, dim_feedforward, dropout, num_layers)
        self.head = TupleHead(d_model, 2, num_verbs, num_objects + 1, None, verb_text, object_text,
                              left_extra=0, mid_extra=0, right_extra=1)

    def forward(self, memory: Tensor, mask: Optional[Tensor], pos: Optional[Tensor], queries: Tensor) -> Dict[str, Tensor]:
        """Args:
            memory: ``[B, S, d]`` (F_hoi, or f_r2i / f_en under the ablations). mask: ``[B, S]`` or None.
            pos: ``[B, S, d]`` or None. queries: ``[B, N_hoi, d]`` (transformed Q_hoi).

        Returns:
            ``human_boxes``, ``obj_boxes [B, N_hoi, 4]`` (normalised cxcywh), ``human_logits [B, N_hoi, 2]``,
            ``verb_logits [B, N_hoi, V]``, ``obj_logits [B, N_hoi, No+1]``, ``hs [B, N_hoi, d]``.
        """
        hs = decode(self.decoder, queries, memory, mask, pos)                  # Eq. (8)
        o = self.head(hs)
        return {"human_boxes": o["left_boxes"], "human_logits": o["left_logits"], "verb_logits": o["mid_logits"],
                "obj_boxes": o["right_boxes"], "obj_logits": o["right_logits"], "hs": hs}
