"""Linguistic knowledge generation (RmLR Sec. 3.3, Eq. 7-8).

Every ground-truth triplet ``<person, verb, object>`` of an image is serialised as a sub-sentence
("person ride bicycle"; V-COCO's action-role classes through its class table's natural phrases:
"person talks on a cell phone", not "person talk_on_phone instr cell phone"); the sub-sentences of
an image are joined by the encoder's separator token
("[SEP]" for BERT-family WordPiece tokenisers) into the annotation text ``T``. A frozen text encoder
gives:

- ``E_cls``: one sentence-level vector per sub-sentence from encoding that sub-sentence alone
  (``[CLS] t_i [SEP]``): its [CLS] output, or the mean of its token outputs for encoders trained
  with mean pooling (``model.rmlr.text.pooling``), ``[T_i, D_l]``;
- ``E_w``: word-level vectors, the outputs of the non-special tokens of the joint text (so each
  word is contextualised by the image's other interactions; ``word_context="separate"`` takes them
  from the per-sub-sentence encodings instead), ``[W_i, D_l]``, with the index of the sub-sentence
  each word token belongs to (:func:`word_owners`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from ...errors import ConfigError, DataError

from ..text import FrozenTextEncoder, sentence_vectors


@dataclass
class ImageText:
    """Linguistic knowledge of one image.

    Attributes:
        sentences: the ``T_i`` sub-sentences (one per ground-truth HOI row).
        cls: ``[T_i, D_l]`` sentence-level embeddings E_cls.
        words: ``[W_i, D_l]`` word-level embeddings E_w.
        word_owner: ``[W_i]`` sub-sentence index of each word token.
    """

    sentences: List[str]
    cls: Tensor
    words: Tensor
    word_owner: Tensor


#: V-COCO-style role suffixes of action classes ("hold obj", "cut instr"): not words of a sentence
ROLE_SUFFIXES = (" obj", " instr")


def triplet_sentence(subject: str, verb: str, obj: str) -> str:
    """``<subject, verb, object>`` as plain words; underscores become spaces ("cut_with" -> "cut with")
    and a role suffix of an action-role class is dropped ("hold obj" -> "hold")."""
    for suffix in ROLE_SUFFIXES:
        if verb.endswith(suffix):
            verb = verb[: -len(suffix)]
    return " ".join(s.replace("_", " ") for s in (subject, verb, obj))


def with_article(noun: str, plural: Sequence[str] = ()) -> str:
    """"a cup", "an umbrella"; nouns in ``plural`` ("skis", "scissors") take none."""
    noun = noun.replace("_", " ")
    if noun in plural:
        return noun
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def phrase_sentence(subject: str, phrase: str, obj: str, plural: Sequence[str] = ()) -> str:
    """``subject`` + a class table phrase with ``{obj}`` ("talks on {obj}") -> "person talks on a cell phone"."""
    return f"{subject} " + phrase.format(obj=with_article(obj, plural))


def image_sentences(hois: Tensor, labels: Tensor, objects: Sequence[str], verbs: Sequence[str],
                    person_label: int, phrases: Optional[Sequence[str]] = None,
                    plural: Sequence[str] = ()) -> List[str]:
    """Sub-sentences of one image, one per row of ``hois [K, 3] = (h, o, verb)``; ``labels [N]``
    are the entity classes of the image. ``phrases`` (one per verb, with ``{obj}``; V-COCO's class
    table ``phrases``) give natural sentences ("person holds a cup"); without them the triplet's
    words (:func:`triplet_sentence`)."""
    subj = objects[person_label]
    if phrases is not None:
        return [phrase_sentence(subj, phrases[int(v)], objects[int(labels[int(o)])], plural)
                for _, o, v in hois.tolist()]
    return [triplet_sentence(subj, verbs[int(v)], objects[int(labels[int(o)])]) for _, o, v in hois.tolist()]


def word_owners(input_ids: Tensor, special: Tensor, sep_id: int, n: int):
    """Word tokens of one [SEP]-joined text and the sub-sentence each belongs to.

    The joint text of ``n`` sub-sentences tokenises to ``[CLS] t_0 [SEP] t_1 [SEP] ... t_{n-1} [SEP]
    [PAD]...``. The owner of a token is the number of separators before it. Word tokens are the
    tokens that are neither special ([CLS], the final [SEP], padding: ``special``) nor a separator:
    the separators typed into the text are NOT flagged by the tokenizer's special-tokens mask
    (BERT / MiniLM WordPiece), so they are excluded here by id. Right truncation
    (``model.rmlr.text.max_length``) only removes the last sub-sentences' words: their owners stay
    correct and a truncated-away sub-sentence simply owns no word. A token after the ``n``-th
    separator belongs to no sub-sentence (the tokenizer produced more separators than were joined)
    and is dropped rather than attributed to the last one.

    Args:
        input_ids: ``[T]`` token ids of the joint text.
        special: ``[T]`` bool, True on special tokens and padding.
        sep_id: id of the separator token.
        n: number of sub-sentences joined.

    Returns:
        ``(keep [T] bool, owner [W] int64)``: which positions are words, and their sub-sentence index
        in ``[0, n)``, ``W = keep.sum()``.
    """
    is_sep = input_ids == sep_id
    owner = torch.cumsum(is_sep.long(), 0) - is_sep.long()          # separators strictly before
    keep = ~special & ~is_sep & (owner < n)
    return keep, owner[keep]


def _words_of(batch, row: int) -> Tensor:
    keep = ~batch.special[row]
    return batch.hidden[row][keep]


@torch.no_grad()
def encode_knowledge(encoder: FrozenTextEncoder, sentences: Sequence[Sequence[str]],
                     word_context: str = "joint", pooling: str = "cls") -> List[ImageText]:
    """Eq. (7)-(8) for a batch of images.

    Args:
        encoder: frozen text encoder.
        sentences: per image, its sub-sentences (may be empty).
        word_context: ``joint`` (words from the [SEP]-joined text) | ``separate``.
        pooling: E_cls of a sub-sentence: its [CLS] output (``cls``) or the mean of its token
            outputs (``mean``, how sentence-transformers models such as all-MiniLM-L6-v2 were trained).

    Returns:
        one :class:`ImageText` per image (empty tensors for an image without HOIs).
    """
    if word_context not in ("joint", "separate"):
        raise ConfigError(f"model.rmlr.word_context: '{word_context}' is not one of joint | separate")
    flat = [s for ss in sentences for s in ss]
    for i, ss in enumerate(sentences):   # a separator inside a sub-sentence would shift every later owner
        bad = [s for s in ss if encoder.sep_token in s]
        if bad:
            raise DataError(f"image {i} of the batch: sub-sentence '{bad[0]}' contains the text encoder's "
                            f"separator token '{encoder.sep_token}' (rename the class)")
    d = encoder.dim
    dev = next(encoder.model.parameters()).device
    if not flat:
        return [ImageText(list(ss), torch.zeros(0, d, device=dev), torch.zeros(0, d, device=dev),
                          torch.zeros(0, dtype=torch.long, device=dev)) for ss in sentences]
    sep_batch = encoder(flat)
    cls_all = sentence_vectors(sep_batch.hidden, sep_batch.attention_mask, pooling)   # E_cls per sub-sentence
    out, start = [], 0
    joint_texts = [f" {encoder.sep_token} ".join(ss) for ss in sentences if ss]
    joint = encoder(joint_texts) if word_context == "joint" and joint_texts else None
    sep_id = encoder.tokenizer.sep_token_id
    j = 0
    for ss in sentences:
        n = len(ss)
        if n == 0:
            out.append(ImageText([], cls_all.new_zeros(0, d), cls_all.new_zeros(0, d),
                                 torch.zeros(0, dtype=torch.long, device=dev)))
            continue
        cls = cls_all[start:start + n]
        if joint is not None:
            keep, owner = word_owners(joint.input_ids[j], joint.special[j], sep_id, n)
            words = joint.hidden[j][keep]
            j += 1
        else:
            parts = [_words_of(sep_batch, start + k) for k in range(n)]
            words = torch.cat(parts)
            owner = torch.cat([torch.full((len(p),), k, dtype=torch.long, device=dev) for k, p in enumerate(parts)])
        out.append(ImageText(list(ss), cls, words, owner))
        start += n
    return out
