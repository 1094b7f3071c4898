"""Tiny SG2HOI+ fixtures: 2 synthetic metas, a tiny random CLIP in a tmp dir, d=32 configs."""
import json

import pytest
import torch

from hoikit.config import Config
from hoikit.data.metadata import DatasetMeta

OBJECTS_SGG = ["person", "horse", "table"]
PREDICATES = ["on", "near"]
OBJECTS_HOI = ["person", "horse", "cup"]
VERBS = ["ride", "hold"]


@pytest.fixture(scope="session")
def metas():
    sgg = DatasetMeta(name="vg-tiny", objects=OBJECTS_SGG, predicates=PREDICATES)
    hoi = DatasetMeta(name="hoi-tiny", objects=OBJECTS_HOI, verbs=VERBS, person_label=0,
                      correspondence=[[0, 1, 0], [1, 2, 1], [2, 1, 1]])
    return sgg, hoi


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A randomly initialised CLIP (1-layer towers, 16-d projection) and a character-level BPE tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    d = tmp_path_factory.mktemp("tiny_clip")
    chars = "abcdefghijklmnopqrstuvwxyz"
    vocab = {}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    for s in ("<|startoftext|>", "<|endoftext|>"):
        vocab[s] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64,
                         eos_token_id=vocab["<|endoftext|>"], bos_token_id=vocab["<|startoftext|>"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=224, patch_size=32),
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return str(d)


from sg2hoi_tiny import hoi_batch, sgg_batch, tiny_cfg  # noqa: E402,F401  (re-exported for tests)
