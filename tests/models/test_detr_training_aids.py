"""Training aids on DETR that leave its inference unchanged: H-DETR hybrid matching (Jia et al., CVPR
2023: training-only one-to-many queries) and DN-DETR denoising queries (Li et al., CVPR 2022)."""
from __future__ import annotations

import torch

from hoikit.config import Config, DETRConfig
from hoikit.data.metadata import DatasetMeta
from hoikit.losses.matcher import HungarianMatcher
from hoikit.losses.set_criterion import SetCriterion
from hoikit.models.detr import build_detector, build_detr

IMAGES = [torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1)),
          torch.randn(3, 48, 64, generator=torch.Generator().manual_seed(2))]
TARGETS = [{"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.1, 0.8, 0.2, 0.2]])},
           {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.4, 0.6, 0.3, 0.3]])}]


def tiny_cfg(**kw) -> DETRConfig:
    base = dict(backbone="tiny", hidden_dim=32, nheads=4, enc_layers=1, dec_layers=2, dim_feedforward=64,
                num_queries=8, num_classes=3, dropout=0.0)
    base.update(kw)
    return DETRConfig(**base)


def test_one_to_one_outputs_unchanged_by_the_one_to_many_group():
    torch.manual_seed(0)
    plain = build_detr(tiny_cfg())
    hybrid = build_detr(tiny_cfg(num_queries_one2many=12))
    sd = plain.state_dict()
    sd["query_embed.weight"] = torch.cat([sd["query_embed.weight"], hybrid.query_embed.weight.detach()[8:]])
    hybrid.load_state_dict(sd)
    a, b = plain.train()(IMAGES), hybrid.train()(IMAGES)
    assert b["one2many"]["pred_logits"].shape == (2, 12, 4) and len(b["one2many"]["aux_outputs"]) == 1
    assert b["pred_logits"].shape == (2, 8, 4) and b["hs"].shape == (2, 2, 8, 32)
    for key in ("pred_logits", "pred_boxes"):
        assert torch.allclose(a[key], b[key], atol=1e-5)
        assert torch.allclose(a["aux_outputs"][0][key], b["aux_outputs"][0][key], atol=1e-5)
    with torch.no_grad():   # inference: only the one-to-one rows, bit-identical to plain DETR
        ea, eb = plain.eval()(IMAGES), hybrid.eval()(IMAGES)
    assert "one2many" not in eb
    assert torch.equal(ea["pred_logits"], eb["pred_logits"]) and torch.equal(ea["pred_boxes"], eb["pred_boxes"])


def test_one_to_many_loss_matches_each_target_k_times():
    crit = SetCriterion(3, HungarianMatcher(1, 5, 2), k_one2many=3, lambda_one2many=0.5)
    t = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05], [0.5, 0.5, 0.2, 0.2],
                           [0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2]]])
    logits = torch.zeros(1, 5, 4)
    logits[0, [0, 2, 3], 1] = 5.0
    outputs = {"pred_logits": torch.zeros(1, 2, 4), "pred_boxes": torch.rand(1, 2, 4), "aux_outputs": [],
               "one2many": {"pred_logits": logits, "pred_boxes": boxes, "aux_outputs": []}}
    losses = crit(outputs, t)
    # the three exact copies match the three repeated targets: zero L1, zero GIoU loss
    assert float(losses["loss_bbox_one2many"]) < 1e-6 and float(losses["loss_giou_one2many"]) < 1e-6
    # CE: queries 0, 2, 3 target class 1, queries 1, 4 no-object (weight 0.1), times lambda 0.5
    lsm = logits[0].log_softmax(-1)
    w = torch.tensor([1, 0.1, 1, 1, 0.1])
    ce = -(w * lsm[torch.arange(5), torch.tensor([1, 3, 1, 1, 3])]).sum() / w.sum()
    assert torch.allclose(losses["loss_ce_one2many"], 0.5 * ce, atol=1e-5)


def test_detector_trains_with_hybrid_matching_and_evaluates():
    torch.manual_seed(0)
    cfg = Config()
    cfg.model.arch = "detr"
    cfg.model.detr = tiny_cfg(num_queries_one2many=6, k_one2many=2)
    cfg.train.lr_backbone = 1e-4
    det = build_detector(cfg, DatasetMeta("t", ["person", "ball", "cup"]))
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([1])}]
    losses = det.train()([IMAGES[0]], targets)
    assert {"loss_ce_one2many", "loss_bbox_0_one2many", "loss_ce", "loss_ce_0"} <= set(losses)
    sum(v for k, v in losses.items() if k.startswith("loss_")).backward()
    assert float(det.detr.query_embed.weight.grad[8:].abs().sum()) > 0   # the one-to-many rows train
    out = det.eval()([IMAGES[0]])
    assert out[0]["boxes"].shape == (8, 4)


def test_a_detr_file_initialises_a_model_with_training_aids(tmp_path):
    from hoikit.models.detr_weights import load_detr_weights

    torch.manual_seed(0)
    plain = build_detr(tiny_cfg(backbone="resnet18"))
    torch.save({"model": plain.state_dict()}, tmp_path / "detr.pth")
    hybrid = build_detr(tiny_cfg(backbone="resnet18", num_queries_one2many=4, dn_number=2))
    init = hybrid.query_embed.weight.detach().clone()
    load_detr_weights(hybrid, tmp_path / "detr.pth")
    assert torch.equal(hybrid.query_embed.weight[:8], plain.query_embed.weight)
    assert torch.equal(hybrid.query_embed.weight[8:], init[8:])
    assert hybrid.dn_label_embed.weight.shape == (3, 32)     # kept its initialisation (not in the file)


def _copy_into(dst, src):
    missing = dst.load_state_dict(src.state_dict(), strict=False).missing_keys
    assert all(k.startswith(("dn_label_embed.", "dn_box_embed.")) for k in missing)


def test_matching_outputs_unchanged_by_dn_queries_and_eval_bit_identical():
    torch.manual_seed(0)
    plain = build_detr(tiny_cfg(num_queries_one2many=4))
    dn = build_detr(tiny_cfg(num_queries_one2many=4, dn_number=3))
    _copy_into(dn, plain)
    a, b = plain.train()(IMAGES, targets=TARGETS), dn.train()(IMAGES, targets=TARGETS)
    assert "dn" not in a and b["dn"]["pred_boxes"].shape == (2, 6, 4) and b["dn_valid"].shape == (2, 6)
    for key in ("pred_logits", "pred_boxes"):
        assert torch.allclose(a[key], b[key], atol=1e-5)
        assert torch.allclose(a["aux_outputs"][0][key], b["aux_outputs"][0][key], atol=1e-5)
        assert torch.allclose(a["one2many"][key], b["one2many"][key], atol=1e-5)
    with torch.no_grad():
        ea, eb = plain.eval()(IMAGES), dn.eval()(IMAGES, targets=TARGETS)
    assert "dn" not in eb
    assert torch.equal(ea["pred_logits"], eb["pred_logits"]) and torch.equal(ea["pred_boxes"], eb["pred_boxes"])


def test_dn_groups_do_not_see_each_other_in_detr():
    torch.manual_seed(0)
    two = build_detr(tiny_cfg(dn_number=2, dn_label_noise=0.0, dn_box_noise=0.0)).train()
    one = build_detr(tiny_cfg(dn_number=1, dn_label_noise=0.0, dn_box_noise=0.0)).train()
    one.load_state_dict(two.state_dict())
    a, b = two(IMAGES, targets=TARGETS)["dn"], one(IMAGES, targets=TARGETS)["dn"]
    assert torch.allclose(a["pred_boxes"][:, :2], b["pred_boxes"], atol=1e-5)
    assert torch.allclose(a["pred_boxes"][:, 2:], b["pred_boxes"], atol=1e-5)


def test_dn_loss_by_hand_and_gradients_reach_the_dn_modules():
    crit = SetCriterion(3, HungarianMatcher(1, 5, 2))
    boxes = torch.rand(2, 4, 4)
    logits = torch.randn(2, 4, 4)
    valid = torch.tensor([[True, True, True, True], [True, False, True, False]])
    outputs = {"pred_logits": torch.zeros(2, 3, 4), "pred_boxes": torch.rand(2, 3, 4), "aux_outputs": [],
               "dn": {"pred_logits": logits, "pred_boxes": boxes, "aux_outputs": []}, "dn_valid": valid,
               "dn_groups": 2}
    losses = crit(outputs, TARGETS)
    t0, t1 = TARGETS[0], TARGETS[1]
    pairs = [(0, 0, t0, 0), (0, 1, t0, 1), (0, 2, t0, 0), (0, 3, t0, 1), (1, 0, t1, 0), (1, 2, t1, 0)]
    l1 = sum((boxes[b, s] - t["boxes"][i]).abs().sum() for b, s, t, i in pairs)
    assert torch.allclose(losses["loss_bbox_dn"], 5.0 * l1 / (3 * 2), atol=1e-5)
    ce = -sum(logits[b, s].log_softmax(-1)[t["labels"][i]] for b, s, t, i in pairs) / 6
    assert torch.allclose(losses["loss_ce_dn"], ce, atol=1e-5)

    torch.manual_seed(0)
    cfg = Config()
    cfg.model.arch = "detr"
    cfg.model.detr = tiny_cfg(dn_number=2)
    cfg.train.lr_backbone = 1e-4
    det = build_detector(cfg, DatasetMeta("t", ["person", "ball", "cup"]))
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([1])}]
    got = det.train()([IMAGES[0]], targets)
    names = {f"loss_{n}{s}" for n in ("ce", "bbox", "giou") for s in ("_dn", "_0_dn")}
    assert names <= set(got) and all(bool(torch.isfinite(got[k])) for k in names)
    sum(v for k, v in got.items() if k.startswith("loss_")).backward()
    assert float(det.detr.dn_label_embed.weight.grad.abs().sum()) > 0
    assert float(det.detr.dn_box_embed.layers[0].weight.grad.abs().sum()) > 0


def test_a_batch_without_objects_trains_with_dn_on():
    torch.manual_seed(0)
    model = build_detr(tiny_cfg(dn_number=2)).train()
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    out = model([IMAGES[0]], targets=empty)
    assert out["dn"]["pred_logits"].shape == (1, 0, 4)
    losses = SetCriterion(3, HungarianMatcher(1, 5, 2))(out, empty)
    assert all(float(losses[f"loss_{n}_dn"]) == 0.0 for n in ("ce", "bbox", "giou"))
