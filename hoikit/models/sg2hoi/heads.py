"""Five-branch output heads shared by the relation decoder (Eq. 6) and the HOI decoder (Eq. 8).

A tuple (left entity, middle class, right entity) is predicted from one decoder output by three
branches, each a Linear + ReLU giving the branch's hidden feature (``f_s``, ``f_r``, ``f_o`` of
Eq. 7), followed by the branch outputs: the entity branches predict a box (3-layer MLP, Section
IV-D) and a label, the middle branch a class distribution.

- relations: (subject box, subject label, predicate (+1 no-relation), object box, object label)
- HOIs: (human box, human score (human / no-human), verbs (multi-label), object box, object label)
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..deformable_transformer import inverse_sigmoid
from ..transformer import MLP


class TextClassifier(nn.Module):
    """Cosine classifier whose class weights start from text embeddings (Table I "clip").

    ``logits = exp(s) * cos(proj(x), w_c) + b_c``; ``w_c`` rows are the normalised text embeddings
    plus ``extra`` randomly initialised rows (e.g. the no-object class, last). ``s`` starts at
    ln(1/0.07) (CLIP's initial temperature) and is learned; the per-class bias ``b`` starts at 0 (a
    cosine alone cannot make every sigmoid output of a multi-label head small).

    Args:
        in_dim: input feature size. text_embed: ``[C, D_t]``. extra: rows appended after the C classes.
    """

    def __init__(self, in_dim: int, text_embed: Tensor, extra: int = 0):
        super().__init__()
        d_t = text_embed.shape[1]
        self.proj = nn.Linear(in_dim, d_t)
        w = F.normalize(text_embed.detach().float(), dim=-1)
        if extra:
            w = torch.cat([w, F.normalize(torch.randn(extra, d_t), dim=-1)], 0)
        self.weight = nn.Parameter(w.clone())
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.bias = nn.Parameter(torch.zeros(len(w)))

    def forward(self, x: Tensor) -> Tensor:
        """``x [..., in_dim]`` -> logits ``[..., C + extra]``."""
        cos = F.normalize(self.proj(x), dim=-1) @ F.normalize(self.weight, dim=-1).t()
        return self.logit_scale.exp() * cos + self.bias


def make_classifier(in_dim: int, num_out: int, text_embed: Optional[Tensor], extra: int = 0) -> nn.Module:
    """Random ``nn.Linear`` (``text_embed`` None: Table I "rand") or :class:`TextClassifier`.

    Args:
        num_out: total outputs including ``extra`` rows.
    """
    if text_embed is None:
        return nn.Linear(in_dim, num_out)
    if text_embed.shape[0] + extra != num_out:
        raise ValueError(f"text embeddings have {text_embed.shape[0]} rows, classifier needs {num_out - extra}")
    return TextClassifier(in_dim, text_embed, extra)


class TupleHead(nn.Module):
    """Three parallel branches -> five outputs.

    Args:
        d_model: d. left_classes / mid_classes / right_classes: output sizes of the three classifiers.
        left_text / mid_text / right_text: text embeddings for text-initialised classifiers (None =
            random); ``*_extra`` rows (no-object / no-relation) follow the text rows.
    """

    def __init__(self, d_model: int, left_classes: int, mid_classes: int, right_classes: int,
                 left_text: Optional[Tensor] = None, mid_text: Optional[Tensor] = None,
                 right_text: Optional[Tensor] = None, left_extra: int = 1, mid_extra: int = 1, right_extra: int = 1):
        super().__init__()
        self.left_branch = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(inplace=True))
        self.mid_branch = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(inplace=True))
        self.right_branch = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(inplace=True))
        self.left_box = MLP(d_model, d_model, 4, 3)
        self.right_box = MLP(d_model, d_model, 4, 3)
        self.left_cls = make_classifier(d_model, left_classes, left_text, left_extra)
        self.mid_cls = make_classifier(d_model, mid_classes, mid_text, mid_extra)
        self.right_cls = make_classifier(d_model, right_classes, right_text, right_extra)

    def forward(self, hs: Tensor, ref: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Args:
            hs: ``[B, Q, d]`` decoder outputs.
            ref: ``[B, Q, 4]`` reference boxes (normalised cxcywh) of a deformable decoder, a pair
                ``(left_ref, right_ref)`` of them, or None: the boxes are then predicted relative to
                their reference box, as Deformable DETR's box refinement does (``sigmoid(MLP(f) + logit(ref))``).

        Returns:
            dict with ``left_boxes``/``right_boxes [B, Q, 4]`` (normalised cxcywh, sigmoid),
            ``left_logits [B, Q, Cl]``, ``mid_logits [B, Q, Cm]``, ``right_logits [B, Q, Cr]`` and the
            branch features ``f_left``, ``f_mid``, ``f_right`` ``[B, Q, d]``.
        """
        fl, fm, fr = self.left_branch(hs), self.mid_branch(hs), self.right_branch(hs)
        left_ref, right_ref = ref if isinstance(ref, tuple) else (ref, ref)
        lo = 0.0 if left_ref is None else inverse_sigmoid(left_ref)
        ro = 0.0 if right_ref is None else inverse_sigmoid(right_ref)
        return {"left_boxes": (self.left_box(fl) + lo).sigmoid(), "left_logits": self.left_cls(fl),
                "mid_logits": self.mid_cls(fm),
                "right_boxes": (self.right_box(fr) + ro).sigmoid(), "right_logits": self.right_cls(fr),
                "f_left": fl, "f_mid": fm, "f_right": fr}
