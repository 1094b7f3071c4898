"""SG2HOI+ ablation switches (Tables VI-VIII) checked by behaviour, not by module names.

Each test perturbs exactly the input an ablation removes and asserts that the output is unchanged
with the switch off and changes with it on (the two-sided check keeps it from passing trivially).
"""
import pytest
import torch

from sg2hoi_tiny import hoi_batch, tiny_cfg
from hoikit.models.sg2hoi.build import build_sg2hoi


def build(metas, clip_dir, **sg):
    cfg = tiny_cfg(clip_dir, **sg)
    torch.manual_seed(0)
    m = build_sg2hoi(cfg, *metas, task=cfg.train.task)
    return m.eval()


def branch_inputs(m):
    """Encoder output, mask, positions and relation-decoder output for the HOI batch (no grad)."""
    from hoikit.models.detr import nested_tensor_from_images
    tensor, mask = nested_tensor_from_images(hoi_batch()[0])
    enc = m._encode(tensor, mask)
    return enc, m._relations(enc)


def bumped(rel, keys=("f_s", "f_r", "f_o", "hs")):
    return {k: (x + 1.0 if k in keys else x) for k, x in rel.items()}


@pytest.mark.parametrize("r2i, expect_change", [(False, False), (True, True)])
def test_r2i_off_hoi_outputs_ignore_the_relation_decoder_output(metas, tiny_clip_dir, r2i, expect_change):
    # -R2ITR (Table VIII): the HOI decoder reads f_en only, never f_s / f_r / f_o (Eq. 7 removed)
    m = build(metas, tiny_clip_dir, r2i=r2i)
    with torch.no_grad():
        enc, rel = branch_inputs(m)
        a = m._hoi_branch(enc, rel)
        b = m._hoi_branch(enc, bumped(rel))
    changed = not torch.equal(a["verb_logits"], b["verb_logits"])
    assert changed == expect_change


@pytest.mark.parametrize("feature_transform, expect_change", [(False, False), (True, True)])
def test_fetr_off_hoi_memory_is_f_r2i_alone(metas, tiny_clip_dir, feature_transform, expect_change):
    # -FETR: memory = f_r2i, so with the relation output held fixed the encoder tokens do not reach the
    # HOI decoder; with FETR, F_hoi = f_en attending f_r2i does depend on f_en
    m = build(metas, tiny_clip_dir, feature_transform=feature_transform)
    with torch.no_grad():
        enc, rel = branch_inputs(m)
        a = m._hoi_branch(enc, rel)
        b = m._hoi_branch(dict(enc, f_en=enc["f_en"] + torch.randn_like(enc["f_en"])), rel)
    assert (not torch.equal(a["verb_logits"], b["verb_logits"])) == expect_change


@pytest.mark.parametrize("query_transform, expect_change", [(False, False), (True, True)])
def test_qutr_off_hoi_queries_ignore_the_relation_queries(metas, tiny_clip_dir, query_transform, expect_change):
    # -QUTR: Q_hoi is used as learned; with QUTR it cross-attends Q_rel. r2i off so that Q_rel
    # cannot reach the HOI decoder through the R2I positions either.
    m = build(metas, tiny_clip_dir, query_transform=query_transform, r2i=False)
    imgs = hoi_batch()[0]
    with torch.no_grad():
        qa = m.query_transform(m.rel_decoder.query_embed.weight, 2)
        a = m(imgs)[0]["hoi"]["verb_scores"]
        m.rel_decoder.query_embed.weight.mul_(-2.0).add_(0.5)
        qb = m.query_transform(m.rel_decoder.query_embed.weight, 2)
        b = m(imgs)[0]["hoi"]["verb_scores"]
    assert (not torch.equal(qa, qb)) == expect_change
    assert (not torch.allclose(a, b)) == expect_change
    if not query_transform:
        assert torch.equal(qa[0], m.query_transform.query_embed.weight)       # Q_hoi as learned


def test_relq_hoi_queries_are_the_relation_queries(metas, tiny_clip_dir):
    # RELQ: the HOI decoder's queries are Q_rel itself, and follow any change of Q_rel exactly
    m = build(metas, tiny_clip_dir, relq=True)
    seen = []
    m.hoi_decoder.register_forward_hook(lambda mod, args, out: seen.append(args[3].clone()))
    imgs = hoi_batch()[0]
    with torch.no_grad():
        m(imgs)
        m.rel_decoder.query_embed.weight.mul_(3.0).add_(1.0)
        m(imgs)
    for q in seen:
        assert q.shape == (2,) + tuple(m.rel_decoder.query_embed.weight.shape)
    q_new = m.rel_decoder.query_embed.weight
    assert torch.equal(seen[1], q_new.expand(2, -1, -1))
    assert torch.allclose(seen[0], ((q_new - 1.0) / 3.0).expand(2, -1, -1), atol=1e-6)


def test_hss_none_f_agg_is_w_v_of_v_and_full_reads_the_class_table(metas, tiny_clip_dir):
    none = build(metas, tiny_clip_dir, hss="none").hss
    feats = torch.randn(2, none.reduce.in_channels, 3, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        v, f_agg, seg = none(feats)
        assert seg is None
        assert torch.allclose(f_agg, none.w_v(none.reduce(feats)))                  # -HSS: no semantic term
        full = build(metas, tiny_clip_dir).hss
        _, a, _ = full(feats)
        full.class_embed.add_(torch.randn_like(full.class_embed))
        _, b, _ = full(feats)
    c = a.shape[1] // 2
    assert torch.equal(a[:, :c], b[:, :c])                     # W_v V half untouched
    assert not torch.allclose(a[:, c:], b[:, c:])              # W_s E_s half reads the class table


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_vl_loss_switch_gives_the_hand_computed_distance(metas, tiny_clip_dir, loss):
    m = build(metas, tiny_clip_dir, vl_loss=loss)
    head = m.distill
    d, k = head.proj.in_features, head.proj.out_features
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.zero_()
        head.proj.weight[0, 0] = head.proj.weight[1, 1] = 1.0     # projection keeps dims 0, 1
        f_en = torch.zeros(1, 2, d)
        f_en[0, 0, :2] = torch.tensor([3., 4.])                   # [CLS] -> (0.6, 0.8) after normalising
        f_clip = torch.zeros(1, k)
        f_clip[0, :2] = torch.tensor([8., 6.])                    # -> (0.8, 0.6)
        got = head(f_en, torch.zeros(1, 2, dtype=torch.bool), f_clip)
    # mean over k dims of |0.2|+|0.2| (l1) or 0.04+0.04 (l2)
    want = {"l1": 0.4 / k, "l2": 0.08 / k}[loss]
    assert abs(float(got) - want) < 1e-6


@pytest.mark.parametrize("source", ["cls", "pool"])
def test_vl_distill_source_reads_only_its_tokens(metas, tiny_clip_dir, source):
    m = build(metas, tiny_clip_dir, vl_distill=source)
    head = m.distill
    g = torch.Generator().manual_seed(4)
    f_en = torch.randn(2, 5, head.proj.in_features, generator=g)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    f_clip = torch.randn(2, head.proj.out_features, generator=g)
    other = f_en.clone()
    if source == "cls":
        other[:, 1:] += 1.0          # spatial tokens only
    else:
        other[:, 0] += 1.0           # [CLS] only
    with torch.no_grad():
        same = head(f_en, mask, f_clip), head(other, mask, f_clip)
        moved = f_en.clone()
        moved[:, 0 if source == "cls" else 1:] += 1.0
        diff = head(moved, mask, f_clip)
    assert torch.equal(same[0], same[1])
    assert not torch.equal(same[0], diff)


def test_vl_distill_none_trains_without_alignment_loss(metas, tiny_clip_dir):
    cfg = tiny_cfg(tiny_clip_dir, vl_distill="none")
    torch.manual_seed(0)
    m = build_sg2hoi(cfg, *metas, task=cfg.train.task).train()
    assert "loss_algn" not in m(*hoi_batch())
    full_cfg = tiny_cfg(tiny_clip_dir)
    full = build_sg2hoi(full_cfg, *metas, task=full_cfg.train.task).train()
    assert "loss_algn" in full(*hoi_batch())
