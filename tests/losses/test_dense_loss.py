"""Per-cell auxiliary DETR supervision: targets computed by hand, the loss, and the checkpoint layout."""
import torch

from hoikit.config import load_config
from hoikit.data.metadata import DatasetMeta
from hoikit.losses.dense import dense_loss, dense_targets
from hoikit.models.detr import build_detector


def test_cells_take_the_smallest_box_containing_their_centre_and_padding_is_ignored():
    # image 0: 64 x 32 (H x W) inside a 64 x 64 padded batch, stride 16 -> 4 x 4 cells, centres 8, 24, 40, 56
    # big box x 0..32, y 0..64 (class 1) and a small box x 16..32, y 16..32 (class 2) inside it
    big = torch.tensor([16 / 32, 32 / 64, 32 / 32, 64 / 64])       # cxcywh normalised by (W=32, H=64)
    small = torch.tensor([24 / 32, 24 / 64, 16 / 32, 16 / 64])
    targets = [{"labels": torch.tensor([1, 2]), "boxes": torch.stack([big, small])},
               {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}]
    sizes = torch.tensor([[64, 32], [64, 64]])
    fmask = torch.zeros(2, 4, 4, dtype=torch.bool)
    fmask[0, :, 2:] = True                                          # columns beyond x = 32 are padding
    classes, boxes, fg = dense_targets(targets, sizes, (64, 64), fmask, num_classes=3)
    expect = torch.full((4, 4), 1)
    expect[1, 1] = 2                                                # centre (24, 24) is inside the small box
    expect[:, 2:] = -1
    assert classes[0].tolist() == expect.tolist()
    assert torch.equal(boxes[0, 1, 1], small) and torch.equal(boxes[0, 0, 0], big)
    assert (classes[1] == 3).all() and not fg[1].any()              # no boxes: all background
    assert fg[0].sum() == 8

    # loss: perfect predictions give zero L1 and a CE that only counts non-padding cells
    logits = torch.full((2, 4, 4, 4), -20.0)
    onehot = classes.clamp(min=0)
    logits.scatter_(-1, onehot[..., None], 20.0)
    out = dense_loss(logits, boxes.clone(), classes, boxes, fg, eos_coef=0.1)
    assert out["dense_l1"].item() == 0 and out["dense_ce"].item() < 1e-6
    logits[0, 0, 3] = 0.0                                           # a padding cell: wrong but ignored
    assert dense_loss(logits, boxes, classes, boxes, fg, 0.1)["dense_ce"].item() < 1e-6


def test_training_only_head_keeps_detr_layout_and_adds_losses():
    cfg = load_config("synth_detr", ["model.detr.checkpoint=", "model.detr.dense_loss_coef=2.0", "model.detr.hidden_dim=32",
                                     "model.detr.dim_feedforward=32", "model.detr.num_queries=5"])
    meta = DatasetMeta(name="t", objects=["person", "ball", "cup"])
    torch.manual_seed(0)
    model = build_detector(cfg, meta).train()
    assert {k.split(".")[0] for k in model.state_dict()} == {"detr", "dense_head"}
    images = [torch.randn(3, 64, 48), torch.randn(3, 48, 64)]
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 60.0]]), "labels": torch.tensor([0])},
               {"boxes": torch.tensor([[10.0, 10.0, 20.0, 20.0]]), "labels": torch.tensor([2])}]
    losses = model(images, targets)
    assert {"loss_dense_ce", "loss_dense_l1"} <= set(losses)
    sum(v for k, v in losses.items() if k.startswith("loss")).backward()
    assert model.dense_head.cls.weight.grad.abs().sum() > 0
    assert model.detr.transformer.encoder.layers[0].linear1.weight.grad.abs().sum() > 0
    off = build_detector(load_config("synth_detr", ["model.detr.checkpoint=", "model.detr.dense_loss_coef=0", "model.detr.hidden_dim=32", "model.detr.dim_feedforward=32",
                                                    "model.detr.num_queries=5"]), meta).train()
    assert not hasattr(off, "dense_head") and not any(k.startswith("loss_dense") for k in off(images, targets))
