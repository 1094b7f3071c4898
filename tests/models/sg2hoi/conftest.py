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


def tiny_cfg(clip_path: str = "", **sg) -> Config:
    cfg = Config()
    cfg.model.arch = "sg2hoi"
    cfg.model.detr.backbone = "tiny"
    s = cfg.model.sg2hoi
    s.hidden_dim, s.seg_dim, s.nheads, s.dim_feedforward, s.dropout = 32, 16, 2, 64, 0.0
    s.enc_layers = s.rel_dec_layers = s.r2i_layers = s.transform_layers = s.hoi_dec_layers = 1
    s.num_rel_queries = s.num_hoi_queries = 6
    s.seg_convs = 1
    s.clip_path = clip_path
    for k, v in sg.items():
        setattr(s, k, v)
    return cfg


def sgg_batch():
    """Two 64x64 images with scene-graph targets (labels in OBJECTS_SGG)."""
    g = torch.Generator().manual_seed(1)
    imgs = [torch.randn(3, 64, 64, generator=g), torch.randn(3, 48, 64, generator=g)]
    t0 = dict(boxes=torch.tensor([[4., 4., 30., 60.], [20., 30., 60., 62.]]), labels=torch.tensor([0, 1]),
              relations=torch.tensor([[0, 1, 0]]), hois=torch.zeros(0, 3, dtype=torch.long),
              size=torch.tensor([64, 64]), orig_size=torch.tensor([128, 128]))
    t1 = dict(boxes=torch.tensor([[2., 2., 20., 40.], [30., 10., 60., 40.]]), labels=torch.tensor([0, 2]),
              relations=torch.tensor([[0, 1, 1]]), hois=torch.zeros(0, 3, dtype=torch.long),
              size=torch.tensor([64, 48]), orig_size=torch.tensor([128, 96]))
    return imgs, [t0, t1]


def hoi_batch():
    """Two 64x64 images with HOI targets (labels in OBJECTS_HOI)."""
    g = torch.Generator().manual_seed(2)
    imgs = [torch.randn(3, 64, 64, generator=g), torch.randn(3, 64, 48, generator=g)]
    t0 = dict(boxes=torch.tensor([[4., 4., 30., 60.], [20., 30., 60., 62.]]), labels=torch.tensor([0, 1]),
              hois=torch.tensor([[0, 1, 0], [0, 1, 1]]), relations=torch.zeros(0, 3, dtype=torch.long),
              size=torch.tensor([64, 64]), orig_size=torch.tensor([64, 64]))
    t1 = dict(boxes=torch.tensor([[2., 2., 20., 40.], [24., 10., 46., 40.]]), labels=torch.tensor([0, 2]),
              hois=torch.tensor([[0, 1, 1]]), relations=torch.zeros(0, 3, dtype=torch.long),
              size=torch.tensor([48, 64]), orig_size=torch.tensor([96, 128]))
    return imgs, [t0, t1]
