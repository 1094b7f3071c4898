"""Class text embeddings for SG2HOI+: the semantic-spatial map and text-initialised classifiers.

Sources (paper Section III-A, III-B, Table VI):

- full: CLIP text embeddings of "A photo of a [class]"; without a CLIP directory the configured
  offline text encoder (``model.sg2hoi.text``, MiniLM by default) embeds the same prompt.
- HSSG (``hss=glove``): word vectors of the bare class name. GloVe is not available offline, so the
  offline text encoder embeds the class name alone (docs/method-notes-sg2hoi.md).
- HSSD (``hss=det``): discrete class labels, i.e. one-hot vectors (identity table).

Embeddings are computed once when the model is built and stored in buffers / initial weights, so
inference never loads a text model.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
from torch import Tensor

from ...config import TextEncoderConfig
from ...errors import ConfigError
from ..clip import FrozenCLIP
from ..text import load_text_encoder

Encoder = Callable[[Sequence[str]], Tensor]


def object_prompt(name: str) -> str:
    """Paper Section III-A: "A photo of a [object class]"."""
    return f"A photo of a {name.replace('_', ' ')}"


def predicate_prompt(name: str) -> str:
    """Predicate classifier text (paper leaves it open; see method notes)."""
    return f"A photo of something {name.replace('_', ' ')} something"


def verb_prompt(name: str) -> str:
    """Interaction classifier text (paper leaves it open; see method notes)."""
    return f"A photo of a person {name.replace('_', ' ')} something"


def offline_text_encoder(text_cfg: TextEncoderConfig) -> Encoder:
    """Sentence embeddings ``[N, D_l]`` from the configured offline text encoder
    (:func:`hoikit.models.text.load_text_encoder`): the mean of the last hidden states over the
    real tokens (sentence-transformers pooling of MiniLM)."""
    enc = load_text_encoder(text_cfg.name, text_cfg.path, text_cfg.max_length)

    def encode(prompts: Sequence[str]) -> Tensor:
        out = enc(list(prompts))
        m = out.attention_mask.unsqueeze(-1).float()
        return ((out.hidden * m).sum(1) / m.sum(1).clamp(min=1)).float()

    return encode


class TextTables:
    """Lazily opened text encoders; builds the embedding tables the model needs.

    Args:
        clip: the frozen CLIP, or None (then every CLIP use falls back to the offline encoder).
        text_cfg: offline text encoder config.
    """

    def __init__(self, clip: Optional[FrozenCLIP], text_cfg: TextEncoderConfig):
        self.clip = clip
        self.text_cfg = text_cfg
        self._offline: Optional[Encoder] = None

    def offline(self) -> Encoder:
        if self._offline is None:
            self._offline = offline_text_encoder(self.text_cfg)
        return self._offline

    def prompts(self, prompts: Sequence[str]) -> Tensor:
        """CLIP text embeddings ``[N, D]`` (offline encoder without CLIP)."""
        if self.clip is not None:
            return self.clip.encode_text(prompts)
        return self.offline()(prompts)

    def seg_table(self, names: List[str], hss: str) -> Optional[Tensor]:
        """Embedding per segmentation class ``[No, D_t]`` for ``hss`` = full | det | glove | none."""
        if hss == "none":
            return None
        if hss == "full":
            return self.prompts([object_prompt(n) for n in names])
        if hss == "glove":                                    # HSSG: word vectors of the class name
            return self.offline()([n.replace("_", " ") for n in names])
        if hss == "det":                                      # HSSD: discrete labels (one-hot)
            return torch.eye(len(names))
        raise ConfigError(f"model.sg2hoi.hss: unknown value '{hss}' (choose full | none | det | glove)")
