"""Deformable DETR: official key layouts, the attention against a loop reference, initialisation
facts of the paper's code, training-aid switches that leave inference unchanged."""
from __future__ import annotations

import math

import pytest
import torch

from hoikit.config import DETRConfig
from hoikit.data.metadata import DatasetMeta
from hoikit.errors import CheckpointError, ConfigError
from hoikit.models.deformable_weights import load_deformable_weights, read_deformable_weights
from hoikit.models.deformable_detr import build_deformable_detr, postprocess_topk
from hoikit.models.ms_deform_attn import MSDeformAttn, ms_deform_attn_sample
from hoikit.paths import shared_data_dir

SPECS = shared_data_dir().parent / "specs"


def official_cfg(**kw) -> DETRConfig:
    # fundamentalvision/Deformable-DETR main.py defaults (spec "Training and inference")
    base = dict(type="deformable", backbone="resnet50", num_classes=91, hidden_dim=256, nheads=8, enc_layers=6,
                dec_layers=6, dim_feedforward=1024, dropout=0.1, num_queries=300, num_feature_levels=4)
    base.update(kw)
    return DETRConfig(**base)


def tiny_cfg(**kw) -> DETRConfig:
    base = dict(type="deformable", backbone="small_res", num_classes=4, hidden_dim=32, nheads=4, enc_layers=1,
                dec_layers=2, dim_feedforward=64, dropout=0.0, num_queries=6, num_feature_levels=3)
    base.update(kw)
    return DETRConfig(**base)


def read_layout(name: str):
    path = SPECS / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    out = {}
    for line in path.read_text().splitlines():
        k, shape = line.split("\t")
        out[k] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


@pytest.mark.parametrize("name,kw", [
    ("deformable_detr_r50_keys.txt", {}),
    ("deformable_detr_r50_box_refine_keys.txt", {"with_box_refine": True}),
    ("deformable_detr_r50_two_stage_keys.txt", {"with_box_refine": True, "two_stage": True}),
    # H-Deformable-DETR R50 (two-stage, mixed selection, 300 + 1500 queries, FFN 2048, dropout 0)
    ("h_deformable_detr_r50_keys.txt", {"with_box_refine": True, "two_stage": True, "mixed_selection": True,
                                        "num_queries_one2many": 1500, "dim_feedforward": 2048, "dropout": 0.0}),
])
def test_key_names_and_shapes_equal_the_official_layouts(name, kw):
    expected = read_layout(name)
    with torch.device("meta"):
        model = build_deformable_detr(official_cfg(**kw))
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(got) == set(expected), (sorted(set(got) - set(expected))[:5], sorted(set(expected) - set(got))[:5])
    bad = {k: (got[k], expected[k]) for k in got if got[k] != expected[k]}
    assert not bad


def _loop_reference(value, shapes, loc, weights):
    """Bilinear sampling written out per sample (zero padding, pixel centres at (i + 0.5) / W)."""
    b, _, m, dh = value.shape
    _, q, _, n_levels, n_points, _ = loc.shape
    out = torch.zeros(b, q, m, dh, dtype=torch.float64)
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        v = value[:, start:start + h * w].reshape(b, h, w, m, dh).double()
        start += h * w
        for bi in range(b):
            for qi in range(q):
                for mi in range(m):
                    for p in range(n_points):
                        x = float(loc[bi, qi, mi, lvl, p, 0]) * w - 0.5
                        y = float(loc[bi, qi, mi, lvl, p, 1]) * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        acc = torch.zeros(dh, dtype=torch.float64)
                        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                            for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                                if 0 <= yy < h and 0 <= xx < w:
                                    acc += wy * wx * v[bi, yy, xx, mi]
                        out[bi, qi, mi] += float(weights[bi, qi, mi, lvl, p]) * acc
    return out.reshape(b, q, m * dh)


def test_sampling_equals_a_bilinear_loop_reference_including_outside_points():
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 7), (3, 4)]
    b, q, m, dh, p = 2, 3, 2, 4, 3
    value = torch.randn(b, sum(h * w for h, w in shapes), m, dh, generator=g)
    loc = torch.rand(b, q, m, len(shapes), p, 2, generator=g) * 1.4 - 0.2    # some points outside [0, 1]
    weights = torch.rand(b, q, m, len(shapes), p, generator=g)
    got = ms_deform_attn_sample(value, shapes, loc, weights)
    ref = _loop_reference(value, shapes, loc, weights)
    assert torch.allclose(got.double(), ref, atol=1e-5)


def test_offsets_start_on_head_rays_with_uniform_weights():
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=8, n_points=3)
    bias = attn.sampling_offsets.bias.view(8, 2, 3, 2)
    # head 1 points at 45 degrees: direction (1, 1) after scaling the larger coordinate to 1
    assert torch.allclose(bias[1, 0, 2], torch.tensor([3.0, 3.0]), atol=1e-6)
    assert torch.allclose(bias[2, 1, 0], torch.tensor([0.0, 1.0]), atol=1e-6)   # 90 degrees, point 1
    assert torch.equal(bias[:, 0], bias[:, 1])                                   # all levels alike
    assert float(attn.attention_weights.weight.detach().abs().sum()) == 0.0


def test_zero_offsets_at_a_cell_centre_return_that_cell():
    attn = MSDeformAttn(d_model=8, n_levels=1, n_heads=2, n_points=2)
    torch.nn.init.zeros_(attn.sampling_offsets.bias)
    with torch.no_grad():
        attn.value_proj.weight.copy_(torch.eye(8))
        attn.output_proj.weight.copy_(torch.eye(8))
    src = torch.randn(1, 12, 8)                    # one 3 x 4 level
    ref = torch.tensor([[[[(2 + 0.5) / 4, (1 + 0.5) / 3]]]])   # centre of cell (y 1, x 2)
    out = attn(torch.randn(1, 1, 8), ref, src, [(3, 4)])
    assert torch.allclose(out[0, 0], src[0, 1 * 4 + 2], atol=1e-6)


def test_padding_values_are_ignored():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=8, n_levels=1, n_heads=2, n_points=4)
    src = torch.randn(1, 12, 8)
    mask = torch.zeros(1, 12, dtype=torch.bool)
    mask[0, 8:] = True
    q, ref = torch.randn(1, 5, 8), torch.rand(1, 5, 1, 2)
    a = attn(q, ref, src, [(3, 4)], mask)
    src2 = src.clone()
    src2[0, 8:] = 1e3
    assert torch.equal(a, attn(q, ref, src2, [(3, 4)], mask))


@pytest.mark.parametrize("kw", [{}, {"with_box_refine": True}, {"with_box_refine": True, "two_stage": True},
                                {"with_box_refine": True, "two_stage": True, "mixed_selection": True}])
def test_forward_shapes_and_box_range(kw):
    torch.manual_seed(0)
    model = build_deformable_detr(tiny_cfg(**kw)).eval()
    out = model([torch.randn(3, 64, 80), torch.randn(3, 48, 64)])
    assert out["pred_logits"].shape == (2, 6, 4) and out["pred_boxes"].shape == (2, 6, 4)
    assert len(out["aux_outputs"]) == 1 and out["hs"].shape == (2, 2, 6, 32)
    assert float(out["pred_boxes"].min()) >= 0 and float(out["pred_boxes"].max()) <= 1
    assert ("enc_outputs" in out) == bool(kw.get("two_stage"))


def test_two_stage_needs_box_refine():
    with pytest.raises(ConfigError, match="with_box_refine"):
        build_deformable_detr(tiny_cfg(two_stage=True))


@pytest.mark.parametrize("two_stage", [False, True])
def test_hybrid_matching_leaves_the_one_to_one_outputs_unchanged(two_stage):
    """The one-to-many group is masked out of the one-to-one queries' self-attention, so adding it
    (training) does not change the one-to-one predictions (H-DETR, spec "H-DETR")."""
    torch.manual_seed(0)
    kw = {"with_box_refine": True, "two_stage": two_stage}
    hybrid = build_deformable_detr(tiny_cfg(num_queries_one2many=10, mixed_selection=two_stage, **kw))
    x = [torch.randn(3, 64, 64)]
    hybrid.train()
    out_train = hybrid(x)
    assert out_train["one2many"]["pred_logits"].shape == (1, 10, 4)
    hybrid.eval()
    out_eval = hybrid(x)
    assert "one2many" not in out_eval
    assert torch.allclose(out_train["pred_boxes"], out_eval["pred_boxes"], atol=1e-5)
    assert torch.allclose(out_train["pred_logits"], out_eval["pred_logits"], atol=1e-5)


def test_look_forward_twice_changes_gradients_not_outputs():
    torch.manual_seed(0)
    a = build_deformable_detr(tiny_cfg(with_box_refine=True))
    b = build_deformable_detr(tiny_cfg(with_box_refine=True, look_forward_twice=True))
    b.load_state_dict(a.state_dict())
    x = [torch.randn(3, 64, 64)]
    oa, ob = a(x), b(x)
    assert torch.allclose(oa["pred_boxes"], ob["pred_boxes"], atol=1e-6)
    oa["pred_boxes"].sum().backward()
    ob["pred_boxes"].sum().backward()
    ga = a.bbox_embed[0].layers[-1].weight.grad
    gb = b.bbox_embed[0].layers[-1].weight.grad
    assert ga is None or float(ga.abs().sum()) == 0.0     # last layer's boxes do not reach layer 0's head
    assert float(gb.abs().sum()) > 0                       # look-forward-twice: they do


def test_postprocess_topk_over_queries_and_classes():
    logits = torch.full((1, 3, 2), -10.0)
    logits[0, 1, 0], logits[0, 1, 1], logits[0, 2, 1] = 3.0, 2.0, 1.0
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.25, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]]])
    res = postprocess_topk({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[100, 50]]), k=3)[0]
    assert res["queries"].tolist() == [1, 1, 2] and res["labels"].tolist() == [0, 1, 1]
    assert torch.allclose(res["boxes"][0], torch.tensor([0.0, 0.0, 50.0, 50.0]))
    assert torch.allclose(res["scores"][0], torch.sigmoid(torch.tensor(3.0)))


def test_detector_nms_drops_same_class_duplicates_only():
    from hoikit.models.deformable_detr import DeformableDETRDetector

    # queries 0 and 1 are the same box [0, 0, 50, 50] (IoU 1); query 2 is [20, 20, 70, 70]; two classes
    logits = torch.full((1, 3, 2), -10.0)
    logits[0, 0, 0], logits[0, 1, 0], logits[0, 1, 1], logits[0, 2, 0] = 3.0, 2.0, 1.0, 0.5
    boxes = torch.tensor([[[0.25, 0.25, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5], [0.45, 0.45, 0.5, 0.5]]])
    outputs = {"pred_logits": logits, "pred_boxes": boxes}

    class Fixed(torch.nn.Module):
        def forward(self, images):
            return outputs

    def run(thresh):
        det = DeformableDETRDetector(Fixed(), torch.nn.Identity(), max_detections=4, nms_thresh=thresh).eval()
        r = det([torch.zeros(3, 100, 100)])[0]
        return r["labels"].tolist(), [round(float(s), 4) for s in r["scores"]]

    s = [round(float(torch.sigmoid(torch.tensor(v))), 4) for v in (3.0, 2.0, 1.0, 0.5)]
    # off: the official top-k, duplicates included
    assert run(0.0) == ([0, 0, 1, 0], s)
    # IoU([0,0,50,50], [20,20,70,70]) = 900 / 4100 = 0.22: kept at 0.5, the class-0 duplicate is not;
    # the class-1 detection of the same box is another class and stays
    assert run(0.5) == ([0, 1, 0], [s[0], s[2], s[3]])
    assert run(0.2) == ([0, 1], [s[0], s[2]])


def test_official_file_loads_strictly_and_a_bad_key_is_named(tmp_path):
    import argparse

    torch.manual_seed(0)
    cfg = tiny_cfg(backbone="resnet18", with_box_refine=True, two_stage=True)
    model = build_deformable_detr(cfg)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["backbone.0.body.total_ops"] = torch.zeros(1)          # thop counters are ignored, as officially
    path = tmp_path / "official.pth"
    torch.save({"model": sd, "args": argparse.Namespace(nheads=4), "epoch": 1}, path)
    _, info = read_deformable_weights(path)
    assert info["format"] == "official" and info["two_stage"] and info["with_box_refine"]
    assert info["input_scales"] == {}                  # an official release stores no hoikit image scales
    assert (info["num_feature_levels"], info["hidden_dim"], info["enc_layers"], info["dec_layers"]) == (3, 32, 1, 2)
    other = build_deformable_detr(cfg)
    load_deformable_weights(other, path)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in model.state_dict().items())
    sd["transformer.level_embed"] = torch.zeros(5, 32)
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match=r"'transformer\.level_embed' has shape \(5, 32\)"):
        load_deformable_weights(other, path)


def test_detector_trains_a_step_and_evaluates(tmp_path):
    from hoikit.config import Config
    from hoikit.recipes import RECIPES

    torch.manual_seed(0)
    cfg = Config()
    cfg.model.arch = "detr"
    cfg.model.detr = tiny_cfg(with_box_refine=True, two_stage=True, num_queries_one2many=6, k_one2many=2)
    cfg.train.lr_backbone = 1e-4
    meta = DatasetMeta("t", ["person", "ball", "cup", "box"])
    det = RECIPES["detr"].build_model(cfg, meta)
    imgs = [torch.randn(3, 64, 64), torch.randn(3, 64, 48)]
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0], [10.0, 30.0, 40.0, 60.0]]), "labels": torch.tensor([0, 3])}]
    losses = det.train()(imgs, targets)
    assert {"loss_ce", "loss_bbox", "loss_giou", "loss_ce_0", "loss_ce_enc", "loss_ce_one2many"} <= set(losses)
    sum(v for k, v in losses.items() if k.startswith("loss_")).backward()
    assert float(det.detr.transformer.enc_output.weight.grad.abs().sum()) > 0    # the proposal loss trains it
    out = det.eval()(imgs)
    assert out[0]["boxes"].shape[1] == 4 and len(out[0]["scores"]) == min(100, 6 * 4)


def test_convert_command_writes_a_checkpoint_that_predicts_like_the_source(tmp_path, capsys):
    import argparse

    import numpy as np
    from PIL import Image

    import hoikit
    from hoikit.cli import main

    torch.manual_seed(0)
    cfg = tiny_cfg(backbone="resnet18", with_box_refine=True, two_stage=True)
    model = build_deformable_detr(cfg).eval()
    src, out = tmp_path / "official.pth", tmp_path / "converted.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(nheads=4, num_queries=6)}, src)
    assert main(["convert", "deformable", "--src", str(src), "--out", str(out)]) == 0
    assert "two-stage" in capsys.readouterr().out
    predictor = hoikit.load(str(out))
    assert all(torch.equal(predictor.model.detr.state_dict()[k], v) for k, v in model.state_dict().items())
    img = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)).save(img)
    res = predictor.predict(str(img), threshold=0.0)
    # the official post-processing: top-100 over queries x classes (6 queries x 4 classes here)
    assert len(res["detections"]) == 24
    scores = [d["score"] for d in res["detections"]]
    assert scores == sorted(scores, reverse=True)


def _copy_without_fine(a, b) -> None:
    """Load model ``a`` (no fine level) into ``b`` (decoder_fine_level): every shared parameter as it
    is; the decoder's per-level sampling offsets and attention logits of ``a`` go to levels 1..L of
    ``b``, and ``b``'s fine level (level 0) gets attention logit -1e4, i.e. weight exp(-1e4) = 0."""
    sb = b.state_dict()
    for k, v in a.state_dict().items():
        if "cross_attn.sampling_offsets" in k or "cross_attn.attention_weights" in k:
            heads, points = b.transformer.nhead, 4
            last = (2,) if "sampling_offsets" in k else ()
            tail = v.shape[1:]                      # (d,) for weights, () for biases
            va = v.view(heads, -1, points, *last, *tail)
            vb = torch.zeros(heads, va.shape[1] + 1, points, *last, *tail)
            vb[:, 1:] = va
            if "attention_weights.bias" in k:
                vb[:, 0] = -1e4
            sb[k] = vb.reshape(sb[k].shape)
        else:
            sb[k] = v
    b.load_state_dict(sb, strict=False)


@pytest.mark.parametrize("kw", [{}, {"with_box_refine": True, "two_stage": True}])
def test_fine_level_is_the_decoders_first_level_and_leaves_the_encoder_alone(kw):
    """decoder_fine_level: with the fine level's attention switched off, the outputs equal the model
    without it (so the other levels keep their order, shapes and valid ratios); with it on, changing
    the stride-4 map changes the decoder's output but not the encoder's memory or proposals."""
    torch.manual_seed(0)
    a = build_deformable_detr(tiny_cfg(**kw)).eval()
    b = build_deformable_detr(tiny_cfg(decoder_fine_level=True, **kw)).eval()
    assert b.transformer.decoder.layers[0].cross_attn.n_levels == 4 and b.transformer.level_embed.shape[0] == 3
    assert set(b.state_dict()) - set(a.state_dict()) == {"fine_proj.0.weight", "fine_proj.0.bias",
                                                         "fine_proj.1.weight", "fine_proj.1.bias"}
    _copy_without_fine(a, b)
    x = [torch.randn(3, 64, 80), torch.randn(3, 48, 64)]   # padded batch: the fine mask and valid ratios matter
    oa, ob = a(x), b(x)
    assert torch.allclose(oa["pred_boxes"], ob["pred_boxes"], atol=1e-6)
    assert torch.allclose(oa["pred_logits"], ob["pred_logits"], atol=1e-5)
    assert torch.equal(oa["memory"], ob["memory"])
    # the fine level on: the stride-4 map (here through its projection) reaches the decoder only
    torch.manual_seed(1)
    c = build_deformable_detr(tiny_cfg(decoder_fine_level=True, **kw)).eval()
    o1 = c(x)
    with torch.no_grad():
        c.fine_proj[1].bias.add_(1.0)
    o2 = c(x)
    assert torch.equal(o1["memory"], o2["memory"])
    if kw:
        assert torch.equal(o1["enc_outputs"]["pred_logits"], o2["enc_outputs"]["pred_logits"])
    assert float((o1["hs"] - o2["hs"]).abs().max()) > 1e-3


def test_fine_level_trains_and_needs_a_stride4_backbone():
    torch.manual_seed(0)
    m = build_deformable_detr(tiny_cfg(decoder_fine_level=True, with_box_refine=True, two_stage=True)).train()
    out = m([torch.randn(3, 64, 64)])
    out["pred_logits"].sum().backward()    # (the box heads' last layers start at 0: no box gradient yet)
    assert float(m.fine_proj[0].weight.grad.abs().sum()) > 0
    assert float(m.backbone[0].body.stages[0][1].conv1[0].weight.grad.abs().sum()) > 0   # stage 0 now trains

    from hoikit.models.backbone import ResNetBody
    r = ResNetBody("resnet18")
    x = torch.randn(1, 3, 64, 64)
    fine = r.forward_levels(x, fine=True)
    assert fine[0].shape == (1, r.fine_channels, 16, 16) and all(torch.equal(p, q) for p, q in
                                                                    zip(fine[1:], r.forward_levels(x)))
