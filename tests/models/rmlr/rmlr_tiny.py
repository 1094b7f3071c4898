"""Tiny UPT / RmLR builders shared by the rmlr tests (random tiny DETR, 64 px images)."""
import numpy as np
import torch

from hoikit.config import Config
from hoikit.data.metadata import DatasetMeta


def make_tiny_meta():
    """3 objects (person, ball, cup), 3 verbs (hold, kick, drink), 4 HOI classes."""
    corr = np.array([[0, 1, 0], [1, 1, 1], [2, 2, 0], [3, 2, 2]])   # (hoi, object, verb)
    return DatasetMeta(name="synth", objects=["person", "ball", "cup"], verbs=["hold", "kick", "drink"],
                       person_label=0, correspondence=corr)


def tiny_config(ablation="full", text_dir="", **rmlr):
    cfg = Config()
    d = cfg.model.detr
    d.backbone, d.hidden_dim, d.nheads, d.enc_layers, d.dec_layers = "tiny", 32, 2, 1, 1
    d.dim_feedforward, d.num_queries, d.num_classes, d.dropout = 64, 12, 3, 0.0
    r = cfg.model.rmlr
    r.ablation, r.representation_size, r.ire_dim, r.cml_dim, r.ire_ffn = ablation, 64, 32, 64, 64
    r.ire_layers, r.cml_sa_layers = 1, 1
    r.text.path = str(text_dir)
    for k, v in rmlr.items():
        setattr(r, k, v)
    return cfg


def build_tiny(meta, ablation="full", text_dir="", seed=0, **rmlr):
    from hoikit.models.rmlr.build import build_rmlr

    torch.manual_seed(seed)
    model = build_rmlr(tiny_config(ablation, text_dir, **rmlr), meta)
    with torch.no_grad():  # spread the random detector's classes and boxes so NMS keeps several boxes
        det = model.detector
        det.query_embed.weight.mul_(5.0)
        det.class_embed.weight.mul_(8.0)
        det.bbox_embed.layers[-1].weight.mul_(20.0)
    return model


def tiny_images(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 64, 64, generator=g), torch.randn(3, 48, 64, generator=g)][:n]


def targets_from_detections(model, images):
    """Ground truth that coincides with the frozen detector's kept boxes (so positives exist)."""
    model.eval()
    with torch.no_grad():
        outs = model(images)
    targets = []
    for o, im in zip(outs, images):
        humans = torch.nonzero(o["labels"] == 0)[:, 0]
        objs = torch.nonzero(o["labels"] != 0)[:, 0]
        boxes = torch.stack([o["boxes"][humans[0]], o["boxes"][objs[0]]])
        labels = torch.tensor([0, int(o["labels"][objs[0]])])
        verb = 0  # "hold" is valid for both ball and cup
        targets.append(dict(boxes=boxes, labels=labels, hois=torch.tensor([[0, 1, verb]]),
                            size=torch.tensor([im.shape[2], im.shape[1]]),
                            orig_size=torch.tensor([im.shape[2] * 2, im.shape[1] * 2])))
    model.train()
    return targets


def ddp_case(ablation, text_dir):
    """tests/ddp_harness.py factory: the tiny model of a Table 2 row and 4 images whose ground truth
    coincides with the frozen detector's boxes (2 ranks x batch 1 x 2 steps)."""
    from hoikit.data.dataset import collate

    model = build_tiny(make_tiny_meta(), ablation, text_dir)
    images = tiny_images(2, seed=0) + tiny_images(2, seed=1)
    data = list(zip(images, targets_from_detections(model, images)))
    cfg = tiny_config(ablation, text_dir)
    cfg.train.lr, cfg.train.warmup_iters = 1e-3, 0
    return cfg, model, data, collate
