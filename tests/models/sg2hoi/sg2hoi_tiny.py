"""Tiny SG2HOI+ configs and batches shared by the SG2HOI+ tests."""
import torch

from hoikit.config import Config


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
              size=torch.tensor([64, 64]), orig_size=torch.tensor([128, 128]), task="sgg")
    t1 = dict(boxes=torch.tensor([[2., 2., 20., 40.], [30., 10., 60., 40.]]), labels=torch.tensor([0, 2]),
              relations=torch.tensor([[0, 1, 1]]), hois=torch.zeros(0, 3, dtype=torch.long),
              size=torch.tensor([64, 48]), orig_size=torch.tensor([128, 96]), task="sgg")
    return imgs, [t0, t1]


def hoi_batch():
    """Two 64x64 images with HOI targets (labels in OBJECTS_HOI)."""
    g = torch.Generator().manual_seed(2)
    imgs = [torch.randn(3, 64, 64, generator=g), torch.randn(3, 64, 48, generator=g)]
    t0 = dict(boxes=torch.tensor([[4., 4., 30., 60.], [20., 30., 60., 62.]]), labels=torch.tensor([0, 1]),
              hois=torch.tensor([[0, 1, 0], [0, 1, 1]]), relations=torch.zeros(0, 3, dtype=torch.long),
              size=torch.tensor([64, 64]), orig_size=torch.tensor([64, 64]), task="hoi")
    t1 = dict(boxes=torch.tensor([[2., 2., 20., 40.], [24., 10., 46., 40.]]), labels=torch.tensor([0, 2]),
              hois=torch.tensor([[0, 1, 1]]), relations=torch.zeros(0, 3, dtype=torch.long),
              size=torch.tensor([48, 64]), orig_size=torch.tensor([96, 128]), task="hoi")
    return imgs, [t0, t1]
