"""DETR: official key layout, exact building blocks, padding, post-processing, training, freezing."""
import math

import pytest
import torch
from torch import nn

from hoikit.config import Config, DETRConfig
from hoikit.data.metadata import DatasetMeta
from hoikit.models.backbone import FrozenBatchNorm2d, build_backbone
from hoikit.models.detr import build_detector, build_detr, nested_tensor_from_images, postprocess_detections
from hoikit.models.position_encoding import PositionEmbeddingSine
from hoikit.models.transformer import TransformerDecoderLayer, TransformerEncoderLayer
from hoikit.paths import shared_data_dir

UPT_KEYS = shared_data_dir().parent / "specs" / "upt_r50_hicodet_keys.txt"


def tiny_cfg(**kw) -> DETRConfig:
    base = dict(backbone="tiny", hidden_dim=32, nheads=4, enc_layers=1, dec_layers=1, dim_feedforward=64,
                num_queries=8, num_classes=3, dropout=0.0)
    base.update(kw)
    return DETRConfig(**base)


def r50(num_classes: int):
    with torch.device("meta"):
        return build_detr(DETRConfig(backbone="resnet50", num_classes=num_classes))


def test_r50_key_names_and_shapes_match_the_official_layout():
    model = r50(91)
    sd = model.state_dict()
    assert len(sd) == 458
    # FrozenBatchNorm channels of ResNet-50, by hand: stem 64; layer1 3*(64+64+256)+256;
    # layer2 4*(128+128+512)+512; layer3 6*(256+256+1024)+1024; layer4 3*(512+512+2048)+2048.
    bn_channels = 64 + (3 * 384 + 256) + (4 * 768 + 512) + (6 * 1536 + 1024) + (3 * 3072 + 2048)
    assert bn_channels == 26560
    # the spec's 41,524,768 counts the parameters, i.e. everything but the four FrozenBatchNorm buffers
    assert sum(p.numel() for p in model.parameters()) == 41_524_768
    assert sum(v.numel() for v in sd.values()) == 41_524_768 + 4 * bn_channels
    expect = {
        "transformer.encoder.layers.5.self_attn.in_proj_weight": (768, 256),
        "transformer.encoder.layers.0.self_attn.in_proj_bias": (768,),
        "transformer.encoder.layers.0.linear1.weight": (2048, 256),
        "transformer.decoder.layers.5.multihead_attn.out_proj.weight": (256, 256),
        "transformer.decoder.layers.0.norm3.weight": (256,),
        "transformer.decoder.norm.weight": (256,),
        "class_embed.weight": (92, 256),
        "bbox_embed.layers.2.weight": (4, 256),
        "query_embed.weight": (100, 256),
        "input_proj.weight": (256, 2048, 1, 1),
        "backbone.0.body.conv1.weight": (64, 3, 7, 7),
        "backbone.0.body.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "backbone.0.body.layer4.2.bn3.running_var": (2048,),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert not any("num_batches_tracked" in k or ".fc." in k or "encoder.norm" in k for k in sd)


@pytest.mark.skipif(not UPT_KEYS.exists(), reason="specs not available")
def test_r50_equals_the_upt_detector_keys_in_order():
    lines = UPT_KEYS.read_text().splitlines()[:458]
    ref = [(k[len("detector."):], tuple(int(x) for x in s.strip("()").split(",") if x.strip()))
           for k, s in (line.split("\t") for line in lines)]
    mine = [(k, tuple(v.shape)) for k, v in r50(80).state_dict().items()]
    assert mine == ref


def test_backbone_depths_and_dc5():
    with torch.device("meta"):
        r101 = build_backbone("resnet101")
        r18 = build_backbone("resnet18")
    assert len(r101.body.layer3) == 23 and r101.num_channels == 2048 and r18.num_channels == 512
    bb = build_backbone("resnet50", dilation=True)
    # torchvision's rule: the first dilated block keeps dilation 1 (stride 1), the others dilate by 2
    assert bb.body.layer4[0].conv2.stride == (1, 1) and bb.body.layer4[0].conv2.dilation == (1, 1)
    assert bb.body.layer4[1].conv2.dilation == (2, 2) and bb.body.layer4[1].conv2.padding == (2, 2)
    with torch.no_grad():
        f, m = bb(torch.zeros(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.bool))
        f32, _ = build_backbone("resnet18")(torch.zeros(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.bool))
    assert f.shape[-2:] == (4, 4) and m.shape == (1, 4, 4) and f32.shape[-2:] == (2, 2)


def test_backbone_freezing_follows_detr():
    bb = build_backbone("resnet18", train_backbone=True)
    trainable = {n.split(".")[0] for n, p in bb.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}
    assert not any(p.requires_grad for p in build_backbone("resnet18", train_backbone=False).parameters())


def test_frozen_batchnorm_formula():
    bn = FrozenBatchNorm2d(2)
    bn.weight.copy_(torch.tensor([2.0, 1.0]))
    bn.bias.copy_(torch.tensor([1.0, 0.0]))
    bn.running_mean.copy_(torch.tensor([3.0, -1.0]))
    bn.running_var.copy_(torch.tensor([4.0, 1.0]) - 1e-5)      # (rv + eps).rsqrt() = 0.5, 1
    x = torch.randn(2, 2, 3, 3)
    y = bn(x)
    # channel 0: scale 2*0.5 = 1, shift 1 - 3*1 = -2 ; channel 1: scale 1, shift 0 + 1 = 1
    assert torch.allclose(y[:, 0], x[:, 0] - 2, atol=1e-5)
    assert torch.allclose(y[:, 1], x[:, 1] + 1, atol=1e-5)
    ref = nn.BatchNorm2d(2, eps=1e-5).eval()
    ref.load_state_dict({k: getattr(bn, k) for k in ("weight", "bias", "running_mean", "running_var")}, strict=False)
    assert torch.allclose(y, ref(x), atol=1e-5)
    assert [n for n, _ in bn.named_parameters()] == []


def test_sine_position_encoding_by_hand():
    mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    mask[0, :, 2] = True                                      # last column is padding
    pos = PositionEmbeddingSine(num_pos_feats=4)(mask)
    assert pos.shape == (1, 8, 2, 3)
    eps, two_pi = 1e-6, 2 * math.pi
    # cell (row 0, col 1): y = 1 / (2 + eps) * 2pi ; x = 2 / (2 + eps) * 2pi (valid width 2)
    y, x = 1 / (2 + eps) * two_pi, 2 / (2 + eps) * two_pi
    dim_t = [1.0, 1.0, 100.0, 100.0]                         # 10000 ** (2 * (k // 2) / 4)
    want = [math.sin(y / dim_t[0]), math.cos(y / dim_t[1]), math.sin(y / dim_t[2]), math.cos(y / dim_t[3]),
            math.sin(x / dim_t[0]), math.cos(x / dim_t[1]), math.sin(x / dim_t[2]), math.cos(x / dim_t[3])]
    assert torch.allclose(pos[0, :, 0, 1], torch.tensor(want), atol=1e-5)


def test_transformer_layers_equal_torch_reference_layers():
    torch.manual_seed(0)
    enc, ref_enc = TransformerEncoderLayer(16, 2, 32, 0.0).eval(), nn.TransformerEncoderLayer(16, 2, 32, 0.0).eval()
    ref_enc.load_state_dict(enc.state_dict())                 # same parameter names, strict
    dec, ref_dec = TransformerDecoderLayer(16, 2, 32, 0.0).eval(), nn.TransformerDecoderLayer(16, 2, 32, 0.0).eval()
    ref_dec.load_state_dict(dec.state_dict())
    src, tgt = torch.randn(5, 2, 16), torch.randn(3, 2, 16)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    with torch.no_grad():
        assert torch.allclose(enc(src, src_key_padding_mask=pad), ref_enc(src, src_key_padding_mask=pad), atol=1e-5)
        assert torch.allclose(dec(tgt, src, memory_key_padding_mask=pad),
                              ref_dec(tgt, src, memory_key_padding_mask=pad), atol=1e-5)


def test_nested_tensor_pads_bottom_right_with_zeros():
    a, b = torch.ones(3, 4, 2), torch.full((3, 2, 5), 2.0)
    t, m = nested_tensor_from_images([a, b])
    assert t.shape == (2, 3, 4, 5) and m.shape == (2, 4, 5)
    assert torch.equal(t[0, :, :4, :2], a) and t[0, :, :, 2:].abs().sum() == 0
    assert torch.equal(t[1, :, :2, :5], b) and t[1, :, 2:].abs().sum() == 0
    assert m[0].sum() == 4 * 5 - 4 * 2 and not m[0, :4, :2].any() and m[0, :, 2:].all()
    assert m[1].sum() == 4 * 5 - 2 * 5 and m[1, 2:].all()


def test_forward_contract_shapes():
    torch.manual_seed(0)
    model = build_detr(tiny_cfg(dec_layers=2)).eval()
    out = model([torch.randn(3, 64, 48), torch.randn(3, 40, 64)])
    assert out["pred_logits"].shape == (2, 8, 4) and out["pred_boxes"].shape == (2, 8, 4)
    assert out["hs"].shape == (2, 2, 8, 32) and len(out["aux_outputs"]) == 1
    assert out["features"].shape == (2, 64, 4, 4) and out["memory"].shape == (2, 32, 4, 4)
    assert out["pos"].shape == (2, 32, 4, 4) and out["mask"].shape == (2, 4, 4)
    # image 0 (48 wide) is padded in the last column (x >= 48), image 1 (40 high) in the last row
    assert out["mask"][0, :, 3].all() and not out["mask"][0, :, :3].any()
    assert out["mask"][1, 3].all() and not out["mask"][1, :3].any()
    assert ((out["pred_boxes"] > 0) & (out["pred_boxes"] < 1)).all()
    # the decoder norm (fresh LayerNorm: identity affine) is applied to every layer's output
    assert torch.allclose(out["hs"].mean(-1), torch.zeros(2, 2, 8), atol=1e-5)
    assert torch.allclose(out["hs"].var(-1, unbiased=False), torch.ones(2, 2, 8), atol=1e-3)
    assert torch.allclose(model.class_embed(out["hs"][-1]), out["pred_logits"])


def test_postprocess_by_hand():
    logits = torch.log(torch.tensor([[[0.1, 0.7, 0.2], [0.2, 0.1, 0.7]]]))  # 2 classes + no-object
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5]]])
    (res,) = postprocess_detections({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[200, 100]]))
    assert res["labels"].tolist() == [1, 0]                  # no-object column dropped before the max
    assert torch.allclose(res["scores"], torch.tensor([0.7, 0.2]))
    assert torch.allclose(res["boxes"], torch.tensor([[50.0, 25.0, 150.0, 75.0], [0.0, 0.0, 100.0, 50.0]]))


def _small_detector():
    cfg = Config()
    cfg.model.detr = tiny_cfg()
    torch.manual_seed(0)
    return build_detector(cfg, DatasetMeta("synth", ["person", "ball", "cup"]))


def test_tiny_detr_overfits_one_image():
    torch.manual_seed(0)
    model = _small_detector().train()
    img = torch.randn(3, 64, 64)
    tgt = {"boxes": torch.tensor([[4.0, 8.0, 30.0, 50.0], [35.0, 10.0, 60.0, 30.0]]), "labels": torch.tensor([0, 2])}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    totals = []
    for _ in range(50):
        losses = model([img], [tgt])
        loss = sum(v for k, v in losses.items() if k.startswith("loss_"))
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
    assert totals[-1] < 0.25 * totals[0]
    model.eval()
    (pred,) = model([img])
    top = pred["scores"].argsort(descending=True)[:2]
    found = {int(pred["labels"][i]): pred["boxes"][i] for i in top}
    assert set(found) == {0, 2}
    assert torch.allclose(found[0], tgt["boxes"][0], atol=3.0) and torch.allclose(found[2], tgt["boxes"][1], atol=3.0)
    # postprocess: transformed 64x64 -> original 128x96
    (orig,) = model.postprocess([pred], [{"orig_size": torch.tensor([128, 96]), "size": torch.tensor([64, 64])}])
    assert orig["boxes"] == pytest.approx(pred["boxes"].numpy() * [2.0, 1.5, 2.0, 1.5], abs=1e-4)


def test_frozen_detr_has_no_grads_and_stays_in_eval():
    model = build_detr(tiny_cfg(dropout=0.5)).freeze()
    model.train()
    assert not model.training and not any(m.training for m in model.modules())
    x = [torch.randn(3, 32, 32)]
    a, b = model(x), model(x)
    assert torch.equal(a["hs"], b["hs"])                      # dropout stays off
    assert not any(p.requires_grad for p in model.parameters())
    assert not a["pred_logits"].requires_grad
