"""DN-DETR denoising queries (Li et al., CVPR 2022) on Deformable DETR: noise statistics, the
attention mask's semantics (matching queries cannot see them), losses, and that inference and the
dn-off path are exactly today's."""
from __future__ import annotations

import pytest
import torch

from hoikit.config import Config
from hoikit.data.metadata import DatasetMeta
from hoikit.errors import ConfigError
from hoikit.losses.deformable_criterion import DeformableSetCriterion, FocalHungarianMatcher
from hoikit.models.deformable_detr import build_deformable_detr
from hoikit.models.denoising import build_dn_queries, dn_attention_mask, noise_boxes, noise_labels

from hoikit.config import DETRConfig


def tiny_cfg(**kw) -> DETRConfig:
    base = dict(type="deformable", backbone="small_res", num_classes=4, hidden_dim=32, nheads=4, enc_layers=1,
                dec_layers=2, dim_feedforward=64, dropout=0.0, num_queries=6, num_feature_levels=3)
    base.update(kw)
    return DETRConfig(**base)

TARGETS = [{"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.1, 0.9, 0.2, 0.2]])},
           {"labels": torch.tensor([3]), "boxes": torch.tensor([[0.4, 0.6, 0.3, 0.3]])}]
IMAGES = [torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1)),
          torch.randn(3, 48, 64, generator=torch.Generator().manual_seed(2))]


def test_label_flip_ratio_and_flipped_labels_change_class():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (200_000,), generator=g)
    noised = noise_labels(labels, 0.2, 5, g)
    changed = (noised != labels).float().mean()
    assert abs(float(changed) - 0.2) < 0.005               # every flip lands on another class
    counts = torch.bincount(noised[noised != labels], minlength=5).float()
    assert float(counts.min() / counts.max()) > 0.95       # spread uniformly over classes
    assert torch.equal(noise_labels(labels, 0.0, 5, g), labels)


def test_box_noise_bounds_and_range():
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]]).repeat(100_000, 1)
    noised = noise_boxes(boxes, 0.4, g)
    d = (noised - boxes).abs()
    # DN-DETR: |dx| < lambda w / 2, |dy| < lambda h / 2, |dw| < lambda w, |dh| < lambda h
    bound = torch.tensor([0.4 * 0.1, 0.4 * 0.2, 0.4 * 0.2, 0.4 * 0.4])
    assert bool((d <= bound + 1e-6).all())
    assert bool((d.max(0).values > 0.95 * bound).all())              # the bound is reached (uniform)
    assert abs(float((noised - boxes).mean(0).abs().max())) < 2e-3   # centred noise
    edge = noise_boxes(torch.tensor([[0.02, 0.98, 0.5, 0.5]]).repeat(1000, 1), 0.4, g)
    assert float(edge.min()) >= 0.0 and float(edge.max()) <= 1.0
    assert float(edge.max()) == 1.0 and float(edge.min()) == 0.0     # clipped, not rejected


def test_dn_queries_layout_and_padding():
    labels, boxes, valid = build_dn_queries(TARGETS, 3, 0.0, 0.0, 5)
    assert labels.shape == (2, 6) and boxes.shape == (2, 6, 4)
    assert valid[1].tolist() == [True, False] * 3
    assert labels[0].tolist() == [1, 2] * 3 and labels[1, 0::2].tolist() == [3] * 3
    assert torch.equal(boxes[0, 2:4], TARGETS[0]["boxes"])


def test_mask_blocks_matching_from_dn_and_groups_from_each_other():
    valid = torch.tensor([[True, True, True, True], [True, False, True, False]])   # 2 groups of P = 2
    m = dn_attention_mask(3, 2, valid)
    assert m.shape == (2, 7, 7)
    assert bool(m[:, :3, 3:].all()) and not bool(m[:, :3, :3].any())    # matching: see only matching
    assert not bool(m[:, 3:, :3].any())                                  # dn sees matching
    assert not bool(m[0, 3:5, 3:5].any()) and bool(m[0, 3:5, 5:].all())  # own group only
    assert bool(m[1, 3, 4]) and not bool(m[1, 3, 3])                     # padding slot is invisible
    base = torch.eye(3, dtype=torch.bool)
    assert torch.equal(dn_attention_mask(3, 2, valid, base)[:, :3, :3], base.expand(2, 3, 3))


@pytest.mark.parametrize("kw", [{}, {"mixed_selection": True, "num_queries_one2many": 5}])
def test_matching_outputs_do_not_change_when_dn_queries_are_added(kw):
    torch.manual_seed(0)
    plain = build_deformable_detr(tiny_cfg(with_box_refine=True, two_stage=True, **kw)).train()
    dn = build_deformable_detr(tiny_cfg(with_box_refine=True, two_stage=True, dn_number=3, **kw)).train()
    missing = dn.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["dn_label_embed.weight"]
    a, b = plain(IMAGES, targets=TARGETS), dn(IMAGES, targets=TARGETS)
    assert "dn" in b and "dn" not in a
    for key in ("pred_logits", "pred_boxes"):
        assert torch.allclose(a[key], b[key], atol=1e-5)
        assert torch.allclose(a["aux_outputs"][0][key], b["aux_outputs"][0][key], atol=1e-5)
    if "one2many" in a:
        assert torch.allclose(a["one2many"]["pred_boxes"], b["one2many"]["pred_boxes"], atol=1e-5)
    assert b["dn"]["pred_boxes"].shape == (2, 6, 4)


def test_dn_groups_do_not_see_each_other():
    """Without noise every group is the same copy of the ground truth; if the groups could see each
    other, the duplicated keys would change group 0's attention, so its output with 2 groups must
    equal its output with 1."""
    torch.manual_seed(0)
    two = build_deformable_detr(tiny_cfg(with_box_refine=True, two_stage=True, dn_number=2, dn_label_noise=0.0,
                                         dn_box_noise=0.0)).train()
    one = build_deformable_detr(tiny_cfg(with_box_refine=True, two_stage=True, dn_number=1, dn_label_noise=0.0,
                                         dn_box_noise=0.0)).train()
    one.load_state_dict(two.state_dict())
    a = two(IMAGES, targets=TARGETS)["dn"]
    b = one(IMAGES, targets=TARGETS)["dn"]
    for key in ("pred_logits", "pred_boxes"):
        assert torch.allclose(a[key][:, :2], b[key], atol=1e-5)
        assert torch.allclose(a[key][:, 2:], b[key], atol=1e-5)


def test_eval_and_dn_off_are_bit_identical():
    torch.manual_seed(0)
    plain = build_deformable_detr(tiny_cfg(with_box_refine=True, two_stage=True))
    dn = build_deformable_detr(tiny_cfg(with_box_refine=True, two_stage=True, dn_number=3))
    dn.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        a, b = plain.eval()(IMAGES), dn.eval()(IMAGES, targets=TARGETS)
    assert "dn" not in b
    assert torch.equal(a["pred_logits"], b["pred_logits"]) and torch.equal(a["pred_boxes"], b["pred_boxes"])
    with torch.no_grad():   # training without targets (e.g. an HOI model's detector) builds no DN queries
        c = dn.train()(IMAGES)
    assert "dn" not in c and torch.equal(plain.train()(IMAGES)["pred_boxes"], c["pred_boxes"])


def test_dn_needs_two_stage_and_valid_values():
    with pytest.raises(ConfigError, match="dn_number"):
        build_deformable_detr(tiny_cfg(with_box_refine=True, dn_number=2))
    with pytest.raises(ConfigError, match="dn_label_noise"):
        build_deformable_detr(tiny_cfg(with_box_refine=True, two_stage=True, dn_number=2, dn_label_noise=1.5))


def test_dn_losses_equal_direct_supervision_and_reach_the_label_embedding():
    torch.manual_seed(0)
    cfg = Config()
    cfg.model.arch = "detr"
    cfg.model.detr = tiny_cfg(with_box_refine=True, two_stage=True, dn_number=2)
    cfg.train.lr_backbone = 1e-4
    from hoikit.recipes import RECIPES

    det = RECIPES["detr"].build_model(cfg, DatasetMeta("t", ["person", "ball", "cup", "box"]))
    imgs = [torch.randn(3, 64, 64), torch.randn(3, 64, 48)]
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0], [10.0, 30.0, 40.0, 60.0]]),
                "labels": torch.tensor([0, 3])}]
    losses = det.train()(imgs, targets)
    names = {f"loss_{n}{s}" for n in ("ce", "bbox", "giou") for s in ("_dn", "_0_dn")}
    assert names <= set(losses) and all(bool(torch.isfinite(losses[k])) for k in names)
    sum(v for k, v in losses.items() if k.startswith("loss_")).backward()
    assert float(det.detr.dn_label_embed.weight.grad.abs().sum()) > 0


def test_dn_loss_values_by_hand():
    """The L1 loss of the ``_dn`` term is the mean over valid slots of |pred - its own target|."""
    crit = DeformableSetCriterion(4, FocalHungarianMatcher(), dn_number=2)
    boxes = torch.rand(2, 4, 4)
    outputs = {"pred_logits": torch.zeros(2, 3, 4), "pred_boxes": torch.rand(2, 3, 4), "aux_outputs": [],
               "dn": {"pred_logits": torch.zeros(2, 4, 4), "pred_boxes": boxes, "aux_outputs": []},
               "dn_valid": torch.tensor([[True, True, True, True], [True, False, True, False]]), "dn_groups": 2}
    losses = crit(outputs, TARGETS)
    t0, t1 = TARGETS[0]["boxes"], TARGETS[1]["boxes"]
    l1 = ((boxes[0, 0] - t0[0]).abs().sum() + (boxes[0, 1] - t0[1]).abs().sum() + (boxes[0, 2] - t0[0]).abs().sum()
          + (boxes[0, 3] - t0[1]).abs().sum() + (boxes[1, 0] - t1[0]).abs().sum() + (boxes[1, 2] - t1[0]).abs().sum())
    assert torch.allclose(losses["loss_bbox_dn"], 5.0 * l1 / (3 * 2), atol=1e-5)
    # zero logits: every valid slot x class costs the focal loss at p = 0.5; 6 slots, 4 classes
    pos, neg = 0.25 * 0.25 * torch.log(torch.tensor(2.0)), 0.75 * 0.25 * torch.log(torch.tensor(2.0))
    assert torch.allclose(losses["loss_ce_dn"], 2.0 * 6 * (pos + 3 * neg) / 6, atol=1e-5)


def test_a_detector_file_without_the_dn_embedding_loads_into_a_dn_model(tmp_path):
    from hoikit.models.deformable_weights import load_deformable_weights

    torch.manual_seed(0)
    src = build_deformable_detr(tiny_cfg(backbone="resnet18", with_box_refine=True, two_stage=True))
    torch.save({"model": src.state_dict()}, tmp_path / "official.pth")
    dn = build_deformable_detr(tiny_cfg(backbone="resnet18", with_box_refine=True, two_stage=True, dn_number=2))
    init = dn.dn_label_embed.weight.detach().clone()
    load_deformable_weights(dn, tmp_path / "official.pth")
    assert torch.equal(dn.transformer.level_embed, src.transformer.level_embed)
    assert torch.equal(dn.dn_label_embed.weight, init)


def test_a_batch_without_objects_gives_zero_dn_losses():
    crit = DeformableSetCriterion(4, FocalHungarianMatcher(), dn_number=2)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    _, _, valid = build_dn_queries(empty, 2, 0.2, 0.4, 4)
    outputs = {"pred_logits": torch.zeros(1, 3, 4), "pred_boxes": torch.rand(1, 3, 4), "aux_outputs": [],
               "dn": {"pred_logits": torch.zeros(1, 0, 4), "pred_boxes": torch.zeros(1, 0, 4), "aux_outputs": []},
               "dn_valid": valid, "dn_groups": 2}
    losses = crit(outputs, empty)
    assert all(float(losses[f"loss_{n}_dn"]) == 0.0 for n in ("ce", "bbox", "giou"))
