"""SG2HOI+ from a DETR (Section IV-D): the box heads and (with detr_proj) the encoder input start as DETR's."""
import torch
from torch.nn import functional as F

from sg2hoi_tiny import tiny_cfg
from hoikit.config import DETRConfig
from hoikit.models.detr import build_detr
from hoikit.models.sg2hoi.build import build_sg2hoi

D = 32


def _detr(path):
    torch.manual_seed(3)
    det = build_detr(DETRConfig(backbone="tiny", hidden_dim=D, nheads=2, enc_layers=1, dec_layers=1,
                                dim_feedforward=64, num_queries=6, num_classes=5))
    sd = det.state_dict()
    with torch.no_grad():                     # a non-trivial final decoder norm (a trained DETR has one)
        sd["transformer.decoder.norm.weight"].uniform_(0.5, 2.0)
        sd["transformer.decoder.norm.bias"].uniform_(-1.0, 1.0)
    torch.save({"model": sd}, path)
    return sd


def _build(metas, detr_path="", **sg):
    cfg = tiny_cfg("", **sg)
    cfg.model.detr.checkpoint = str(detr_path)
    torch.manual_seed(0)
    return build_sg2hoi(cfg, *metas, task=cfg.train.task).eval()


def _mlp(sd, prefix, x):
    """DETR's 3-layer box MLP (ReLU between layers) from the state dict."""
    for i in range(3):
        x = F.linear(x, sd[f"{prefix}.layers.{i}.weight"], sd[f"{prefix}.layers.{i}.bias"])
        x = x.relu() if i < 2 else x
    return x


def test_box_heads_start_as_detrs_box_mlp_and_consumers_see_the_unshifted_feature(metas, tmp_path):
    sd = _detr(tmp_path / "detr.pth")
    model, plain = _build(metas, tmp_path / "detr.pth"), _build(metas)
    g, b = sd["transformer.decoder.norm.weight"], sd["transformer.decoder.norm.bias"]
    # decoder outputs: any LayerNorm output of DETR's final norm, including extreme ones
    x = torch.randn(2, 5, D) * 3
    x[0, 0] = torch.cat([torch.full((1,), 100.0), torch.zeros(D - 1)])          # one component at the bound
    hs = F.layer_norm(x, (D,), g, b)
    want = _mlp(sd, "bbox_embed", hs).sigmoid()
    with torch.no_grad():
        for dec in ("rel_decoder", "hoi_decoder"):
            out = getattr(model, dec).head(hs)
            assert torch.allclose(out["left_boxes"], want, atol=1e-5)
            assert torch.allclose(out["right_boxes"], want, atol=1e-5)
            # the classifier projection sees h (its random weights as built, bias compensated)
            cls, ref = getattr(model, dec).head.left_cls, getattr(plain, dec).head.left_cls
            cls, ref = getattr(cls, "proj", cls), getattr(ref, "proj", ref)           # text or plain classifier
            assert torch.allclose(cls(out["f_left"]), ref(hs), atol=1e-4)
        # R2ITrans W_t of [f_s; f_r; f_o]: same as the plain model's on [h; f_r; h]
        out, ref = model.rel_decoder.head(hs), plain.rel_decoder.head(hs)
        got = model.r2i.w_t(torch.cat([out["f_left"], out["f_mid"], out["f_right"]], -1))
        exp = plain.r2i.w_t(torch.cat([hs, out["f_mid"], hs], -1))
        assert torch.equal(model.r2i.w_t.weight, plain.r2i.w_t.weight)
        assert torch.allclose(got, exp, atol=1e-4)


def test_detr_proj_makes_the_encoder_input_detrs_projection(metas, tmp_path):
    sd = _detr(tmp_path / "detr.pth")
    model = _build(metas, tmp_path / "detr.pth", detr_proj=True)
    assert torch.equal(model.hss.detr_proj.weight, sd["input_proj.weight"])
    feats = torch.randn(2, model.backbone.num_channels, 3, 4)
    with torch.no_grad():
        _, f_agg, seg = model.hss(feats)
        assert torch.allclose(f_agg, F.conv2d(feats, sd["input_proj.weight"], sd["input_proj.bias"]), atol=1e-5)
        assert seg is not None                                            # BBSeg still runs (Eq. 1)
    # W_v / W_s start at 0 but learn: Eq. (3)'s terms receive gradients
    model.train()
    _, f_agg, _ = model.hss(feats)
    f_agg.square().sum().backward()
    assert model.hss.w_v.weight.grad.abs().sum() > 0 and model.hss.w_s.weight.grad.abs().sum() > 0
    # without detr_proj there is no such module and DETR's input projection stays unused
    assert _build(metas, tmp_path / "detr.pth").hss.detr_proj is None


def test_hoi_queries_start_random_not_as_detrs_relation_queries(metas, tmp_path):
    """Paper Sec. III-C: "we start by randomly initializing a set of HOI query vectors Q_hoi";
    -QUTR "learns a set of HOI queries from scratch". Only Q_rel starts from DETR's query_embed."""
    sd = _detr(tmp_path / "detr.pth")
    for switch in ({}, {"query_transform": False}):                 # FULL and -QUTR
        m = _build(metas, tmp_path / "detr.pth", **switch)
        q_rel, q_hoi = m.rel_decoder.query_embed.weight, m.query_transform.query_embed.weight
        assert torch.equal(q_rel, sd["query_embed.weight"])
        assert q_hoi.shape == q_rel.shape
        # no row of Q_hoi is a row of DETR's / the relation queries
        assert torch.cdist(q_hoi, q_rel).min() > 1e-3, switch
        # random: N(0, 1) like nn.Embedding's default (6 x 32 values)
        assert abs(float(q_hoi.detach().std()) - 1.0) < 0.3
