"""Cross-modal learning (RmLR Sec. 3.4, Eq. 10-19): training-only distillation branches.

One :class:`CrossModalBranch` serves the IRE features ``M^v`` ("a", Eq. 11, 13, 17, 19) and another
the IRM outputs ``O^v`` ("m", Eq. 12, 14, 16, 18):

    V^s   = SA^L(V)                         Eq. (11)/(12), L self-attention layers per image
    V_a   = rows of V^s of pairs associated with ground-truth triplets
    V^_a  = ATTN(V_a, E_w, E_w)             Eq. (13)/(14), cross-attention to word embeddings
    L_w   = D_L1(V_a, V^_a)                 Eq. (16)/(17)   (word_target=joint)
    L_w   = D_L1(V_a, sg(V^_a))             Eq. (16)/(17)   (word_target=detached: V^_a is a teacher)
    L_s   = D_L1(E_cls, FFN_T(V_a))         Eq. (18)/(19)

Visual tokens are projected to ``cml_dim`` (paper: 1024); the cross-attention reads D_l-sized text
embeddings through its key/value projections, and ``FFN_T`` maps back to D_l. The cross-attention
output has no residual (a residual would make Eq. 16 trivially zero). Choices are argued in
docs/method-notes-rmlr.md.

A branch holds only the modules its Table 2 row uses: no cross-attention without the word-level
loss, no ``FFN_T`` without the sentence-level loss (every parameter of a branch then receives a
gradient at every step, as DDP without ``find_unused_parameters`` requires).

With ``word_scope=pair``, a pair whose sub-sentence was truncated away by the tokenizer
(``model.rmlr.text.max_length``) has no words to attend to: it is left out of ``L_w`` and its
"language-enhanced" token is its visual token (no language added); a warning says so once.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from ...errors import ConfigError

from ...losses.distillation import pooled_l1

_warned_truncation = False   # the truncation warning is given once per process

#: readings of the word-level loss L_w (Eq. 16/17), docs/method-notes-rmlr.md
WORD_TARGETS = ("joint", "detached")


def _warn_truncated(lost: int, total: int) -> None:
    global _warned_truncation
    if not _warned_truncation:
        _warned_truncation = True
        warnings.warn(f"RmLR word_scope=pair: {lost} of {total} associated pairs of an image have no words "
                      f"(their sub-sentence was truncated away; raise model.rmlr.text.max_length); they are "
                      f"left out of the word-level loss (warned once)", RuntimeWarning, stacklevel=3)


class CrossModalBranch(nn.Module):
    """Self-attention, word-level cross-attention and sentence FFN for one visual stream.

    Args:
        in_dim: size of the visual tokens (IRE: ``ire_dim``; IRM: representation size).
        text_dim: D_l of the text encoder.
        cml_dim: hidden size of the attention layers (paper: 1024).
        sa_layers: self-attention layers L (Table 8 "CML-SA", paper: 2).
        ca_layers: cross-attention layers (paper: 1).
        word_scope: ``image`` (attend to every word of the image's text) | ``pair`` (only the words
            of the associated triplet's sub-sentence).
        query_stop_grad: detach the visual query of the cross-attention (the visual tokens are
            then taught only through the first argument of Eq. 16/17).
        word_level / sentence_level: build the cross-attention (Eq. 13/14) / ``FFN_T`` (Eq. 18/19);
            a row without that loss has no such module.
        word_target: ``joint`` (literal Eq. 16/17: both ``V_a`` and ``V^_a`` receive the gradient) |
            ``detached`` (``V^_a`` is a stop-gradient teacher: ``L_w`` moves only ``V_a``, so it cannot
            be lowered by changing the teacher).
        train_teacher: with ``detached``, whether another loss trains the cross-attention
            (``language_reasoning`` for the IRM branch). If not, it is frozen at its initialisation
            (no loss reaches it; a fixed random cross-attention over the words is then the teacher).
    """

    def __init__(self, in_dim: int, text_dim: int, cml_dim: int = 1024, sa_layers: int = 2, ca_layers: int = 1,
                 nheads: int = 8, dropout: float = 0.1, word_scope: str = "image", query_stop_grad: bool = False,
                 word_level: bool = True, sentence_level: bool = True, word_target: str = "joint",
                 train_teacher: bool = False):
        super().__init__()
        if word_scope not in ("image", "pair"):
            raise ConfigError(f"model.rmlr.word_scope: '{word_scope}' is not one of image | pair")
        if word_target not in WORD_TARGETS:
            raise ConfigError(f"model.rmlr.word_target: '{word_target}' is not one of {' | '.join(WORD_TARGETS)}")
        self.word_scope = word_scope
        self.query_stop_grad = query_stop_grad
        self.word_target = word_target
        self.in_proj = nn.Linear(in_dim, cml_dim) if in_dim != cml_dim else nn.Identity()
        self.self_attn = nn.ModuleList([
            nn.TransformerEncoderLayer(cml_dim, nheads, 2 * cml_dim, dropout, batch_first=True)
            for _ in range(sa_layers)])
        if word_level:
            self.cross_attn = nn.ModuleList([
                nn.MultiheadAttention(cml_dim, nheads, dropout=0.0, kdim=text_dim, vdim=text_dim, batch_first=True)
                for _ in range(ca_layers)])
            if word_target == "detached" and not train_teacher:
                self.cross_attn.requires_grad_(False)
        if sentence_level:
            self.sentence_head = nn.Sequential(nn.Linear(cml_dim, cml_dim), nn.ReLU(), nn.Linear(cml_dim, text_dim))

    def self_attend(self, tokens: Tensor) -> Tensor:
        """Eq. (11)/(12) over the pairs of one image: ``[P, in_dim] -> [P, cml_dim]``."""
        x = self.in_proj(tokens)[None]
        for layer in self.self_attn:
            x = layer(x)
        return x[0]

    def cross_attend(self, queries: Tensor, words: Tensor, allowed: Optional[Tensor]) -> Tensor:
        """Eq. (13)/(14): ``queries [A, cml]``, ``words [W, D_l]``, ``allowed [A, W]`` bool -> ``[A, cml]``."""
        q = queries.detach() if self.query_stop_grad else queries
        mask = None if allowed is None else ~allowed
        for attn in self.cross_attn:
            q, _ = attn(q[None], words[None], words[None], attn_mask=mask, need_weights=False)
            q = q[0]
        return q

    def forward(self, tokens: List[Tensor], rows: List[Tensor], text_rows: List[Tensor], texts: list,
                word_level: bool = True, sentence_level: bool = True) -> Dict[str, Tensor]:
        """Alignment losses of a batch.

        Args:
            tokens: per image, visual tokens ``[P_i, in_dim]`` of all its pairs.
            rows: per image, pair index of each association ``[A_i]``.
            text_rows: per image, sub-sentence index of each association ``[A_i]``.
            texts: per image :class:`~hoikit.models.rmlr.text_knowledge.ImageText`.
            word_level / sentence_level: which losses to compute (only those the branch was built for).

        Returns:
            dict with ``word`` (Eq. 16/17) and/or ``sentence`` (Eq. 18/19), and ``aligned``: per
            image ``(V_a [A_i, cml], V^_a [A_i, cml])`` or None (for the language-enhanced reasoning switch;
            with ``word_scope=pair`` a pair without words has ``V^_a`` row = ``V_a`` row, and an image
            none of whose pairs has words gives None).
        """
        if word_level and not hasattr(self, "cross_attn") or sentence_level and not hasattr(self, "sentence_head"):
            raise ConfigError("CrossModalBranch: asked for a loss whose module this branch was built without")
        word_pairs, sent_pairs, aligned = [], [], []
        for tok, r, t, txt in zip(tokens, rows, text_rows, texts):
            if len(r) == 0 or len(tok) == 0:
                aligned.append(None)
                continue
            va = self.self_attend(tok)[r]                                     # V_a
            if word_level and len(txt.words) and self.word_scope == "image":
                va_hat = self.cross_attend(va, txt.words, None)                # V^_a
                word_pairs.append((va, va_hat))
                aligned.append((va, va_hat))
            elif word_level and len(txt.words):
                allowed = txt.word_owner[None, :] == t[:, None]                # [A, W]: own sub-sentence
                has = allowed.any(1)                                           # [A]
                if not bool(has.all()):
                    _warn_truncated(int((~has).sum()), len(t))
                if bool(has.any()):
                    va_hat = self.cross_attend(va[has], txt.words, allowed[has])   # V^_a of pairs with words
                    word_pairs.append((va[has], va_hat))
                    enhanced = va.clone()                                      # no words: no language added
                    enhanced[has] = va_hat
                    aligned.append((va, enhanced))
                else:
                    aligned.append(None)
            else:
                aligned.append(None)
            if sentence_level:
                sent_pairs.append((txt.cls[t], self.sentence_head(va)))       # (E_cls, FFN_T(V_a))
        out: Dict[str, Tensor] = {"aligned": aligned}
        zero = sum(p.sum() for p in self.parameters()) * 0.0                 # keeps DDP graphs complete
        if word_level and self.word_target == "detached":                    # sg(V^_a): a teacher
            word_pairs = [(va, va_hat.detach()) for va, va_hat in word_pairs]
        if word_level:
            out["word"] = pooled_l1(word_pairs) if word_pairs else zero
        if sentence_level:
            out["sentence"] = pooled_l1(sent_pairs) if sent_pairs else zero
        return out
