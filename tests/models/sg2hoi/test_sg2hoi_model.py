"""SG2HOI+ model: ablation switches, task-dependent losses, training, postprocess, CLIP handling."""
import logging

import pytest
import torch

from sg2hoi_tiny import hoi_batch, sgg_batch, tiny_cfg
from hoikit.errors import CheckpointError, ConfigError
from hoikit.models.sg2hoi.build import NO_CLIP_NOTICE, build_sg2hoi
from hoikit.recipes.sg2hoi import SG2HOIRecipe, phase_for_epoch
from hoikit.models.sg2hoi.heads import TextClassifier
from hoikit.ops import box_cxcywh_to_xyxy


def build(metas, clip_dir, task="joint", **sg):
    cfg = tiny_cfg(clip_dir, **sg)
    cfg.train.task = task
    torch.manual_seed(0)
    return build_sg2hoi(cfg, *metas, task=cfg.train.task), cfg


def names(model):
    return {n for n, _ in model.named_parameters()}


def test_full_model_has_every_module_and_both_loss_sets(metas, tiny_clip_dir):
    m, _ = build(metas, tiny_clip_dir)
    n = names(m)
    for prefix in ("hss.bbseg.", "hss.w_s.", "distill.", "r2i.w_t.", "feature_transform.", "query_transform.attn.",
                   "hoi_decoder.", "rel_decoder.query_embed."):
        assert any(x.startswith(prefix) for x in n), prefix
    assert m.distill.source == "cls" and m.clip is not None
    assert not any(k.startswith("clip.") for k in m.state_dict())         # the frozen teacher is not saved
    m.train()
    loss = m(*sgg_batch())
    assert set(loss) == {"loss_seg", "loss_algn", "loss_rel_box", "loss_rel_cls", "loss_rel_pred"}
    loss = m(*hoi_batch())
    assert set(loss) == {"loss_seg", "loss_algn", "loss_hoi_box", "loss_hoi_cls", "loss_hoi_verb"}


@pytest.mark.parametrize("switch, absent, present", [
    (dict(hss="none"), ["hss.bbseg.", "hss.w_s."], ["hss.w_v."]),
    (dict(r2i=False), ["r2i.", "feature_transform."], ["query_transform.attn."]),
    (dict(feature_transform=False), ["feature_transform."], ["r2i."]),
    (dict(query_transform=False), ["query_transform.attn."], ["query_transform.query_embed."]),
    (dict(relq=True), ["query_transform."], ["r2i.", "feature_transform."]),
    (dict(vl_distill="none"), ["distill."], ["hss.bbseg."]),
    (dict(variant="rand"), ["distill."], []),
    (dict(variant="clip"), ["distill."], []),
])
def test_ablation_switch_removes_exactly_its_module(metas, tiny_clip_dir, switch, absent, present):
    # structure only; what each switch does to the forward pass is in test_ablation_behaviour.py
    full = names(build(metas, tiny_clip_dir)[0])
    m, _ = build(metas, tiny_clip_dir, **switch)
    n = names(m)
    removed = {x for x in full - n}
    for prefix in absent:
        assert not any(x.startswith(prefix) for x in n), prefix
    for prefix in present:
        assert any(x.startswith(prefix) for x in n), prefix
    if switch.get("variant") != "rand":   # rand also swaps classifier types; the others only remove
        assert all(any(x.startswith(p) for p in absent) for x in removed), sorted(removed)[:5]


def test_hss_none_drops_seg_loss_and_variants_set_classifiers(metas, tiny_clip_dir):
    m, _ = build(metas, tiny_clip_dir, hss="none")
    m.train()
    assert "loss_seg" not in m(*sgg_batch())
    rand, _ = build(metas, tiny_clip_dir, variant="rand")
    assert not any(isinstance(x, TextClassifier) for x in rand.modules())
    clip, _ = build(metas, tiny_clip_dir, variant="clip")
    tc = [x for x in clip.modules() if isinstance(x, TextClassifier)]
    assert len(tc) == 5                       # sub, predicate, obj (relations) + verb, obj (HOIs)
    # CLIP classifier rows start at the normalised CLIP text embedding of "A photo of a person"
    emb = clip.clip.encode_text(["A photo of a person"])[0]
    assert torch.allclose(clip.rel_decoder.head.left_cls.weight[0], emb / emb.norm(), atol=1e-5)
    pool, _ = build(metas, tiny_clip_dir, variant="pool", vl_loss="l2")
    assert pool.distill.source == "pool" and pool.distill.loss_type == "l2"
    det, _ = build(metas, tiny_clip_dir, hss="det")
    assert torch.equal(det.hss.class_embed, torch.eye(4))    # union of {person, horse, table} + {cup}


def test_relq_feeds_relation_queries_to_the_hoi_decoder(metas, tiny_clip_dir):
    imgs, _ = hoi_batch()
    for relq, expect_change in ((True, True), (False, False)):
        # without R2I and query transformation, relation queries reach the HOI decoder only through RELQ
        m, _ = build(metas, tiny_clip_dir, relq=relq, r2i=False, query_transform=False)
        m.eval()
        with torch.no_grad():
            a = m(imgs)[0]["hoi"]["verb_scores"]
            m.rel_decoder.query_embed.weight.add_(1.0)
            b = m(imgs)[0]["hoi"]["verb_scores"]
        assert (not torch.allclose(a, b)) == expect_change


def test_task_selects_losses_and_sgg_batch_has_no_hoi_loss(metas, tiny_clip_dir):
    m, _ = build(metas, tiny_clip_dir, task="sgg")
    m.train()
    assert not any(k.startswith("loss_hoi") for k in m(*hoi_batch()))
    assert any(k.startswith("loss_rel") for k in m(*sgg_batch()))
    m, _ = build(metas, tiny_clip_dir, task="hoi")
    m.train()
    assert not any(k.startswith("loss_rel") for k in m(*sgg_batch()))
    assert any(k.startswith("loss_hoi") for k in m(*hoi_batch()))
    with pytest.raises(ConfigError, match="train.task=hoi"):
        cfg = tiny_cfg(tiny_clip_dir)
        cfg.train.task = "hoi"
        build_sg2hoi(cfg, metas[0], None, task=cfg.train.task)


def test_param_groups_follow_the_two_phase_schedule(metas, tiny_clip_dir):
    m, cfg = build(metas, tiny_clip_dir)
    cfg.train.lr, cfg.train.lr_backbone, cfg.train.sgg_lr = 1e-4, 1e-5, 2e-5
    cfg.model.sg2hoi.clip_cls_lr = 3e-5
    g = {x["name"]: x for x in SG2HOIRecipe().param_groups(m, cfg, "sgg")}
    assert set(g) == {"backbone", "sgg", "sgg_text_cls"}                 # HOI part not trained in phase 1
    assert g["sgg"]["lr"] == 1e-4 and g["backbone"]["lr"] == 1e-5 and g["sgg_text_cls"]["lr"] == 3e-5
    g = {x["name"]: x for x in SG2HOIRecipe().param_groups(m, cfg, "joint")}
    assert g["hoi"]["lr"] == 1e-4 and g["sgg"]["lr"] == 2e-5 and g["hoi_text_cls"]["lr"] == 3e-5
    ids = [id(p) for x in g.values() for p in x["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in m.parameters() if p.requires_grad)
    assert {id(p) for p in m.r2i.parameters()} <= {id(p) for p in g["hoi"]["params"]}
    cfg.train.sgg_epochs = 2
    assert [phase_for_epoch(cfg, e) for e in range(4)] == ["sgg", "sgg", "joint", "joint"]
    m.set_phase("sgg")
    m.train()
    assert not any(k.startswith("loss_hoi") for k in m(*hoi_batch()))       # phase 1: SGG losses only


def test_training_steps_reduce_the_total_loss(metas, tiny_clip_dir):
    m, cfg = build(metas, tiny_clip_dir)
    cfg.train.lr = cfg.train.sgg_lr = cfg.train.lr_backbone = cfg.model.sg2hoi.clip_cls_lr = 2e-3
    opt = torch.optim.AdamW(SG2HOIRecipe().param_groups(m, cfg, "joint"), weight_decay=0.0)
    m.train()
    batches = [sgg_batch(), hoi_batch()]

    def total():
        with torch.no_grad():
            return sum(float(sum(m(*b).values())) for b in batches)

    torch.manual_seed(0)
    before = total()
    for step in range(12):
        loss = sum(m(*batches[step % 2]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = total()
    assert after < 0.7 * before, (before, after)


def test_postprocess_returns_original_pixels(metas, tiny_clip_dir):
    m, _ = build(metas, tiny_clip_dir)
    m.eval()
    imgs, targets = sgg_batch()
    seen = {}
    m.rel_decoder.register_forward_hook(lambda mod, i, o: seen.update(o))
    m.hoi_decoder.register_forward_hook(lambda mod, i, o: seen.update({"hoi_" + k: v for k, v in o.items()}))
    with torch.no_grad():
        out = m(imgs)
    sg = m.postprocess(out, targets, task="sgg")
    hoi = m.postprocess(out, [tuple(t["orig_size"].tolist()) for t in targets])
    for i, t in enumerate(targets):
        ow, oh = t["orig_size"].tolist()
        scale = torch.tensor([ow, oh, ow, oh], dtype=torch.float32)
        n = seen["sub_boxes"].shape[1]
        exp_sub = box_cxcywh_to_xyxy(seen["sub_boxes"][i]) * scale           # normalised box x original size
        assert torch.allclose(torch.from_numpy(sg[i].boxes[:n]), exp_sub, atol=1e-3)
        assert sg[i].pairs.tolist()[0] == [0, n] and sg[i].predicate_scores.shape == (n, 3)
        assert torch.allclose(torch.from_numpy(sg[i].predicate_scores).sum(1), torch.ones(n), atol=1e-5)
        exp_obj = box_cxcywh_to_xyxy(seen["hoi_obj_boxes"][i]) * scale
        assert torch.allclose(torch.from_numpy(hoi[i].boxes[n:]), exp_obj, atol=1e-3)
        assert (hoi[i].labels[:n] == 0).all() and hoi[i].verb_scores.shape == (n, 2)


def test_without_clip_it_trains_and_says_so_once(metas, caplog, monkeypatch):
    import hoikit.models.sg2hoi.build as B
    monkeypatch.setattr(B, "_notice_said", False)                     # a fresh process
    with caplog.at_level(logging.WARNING, logger="hoikit"):
        build(metas, "")                                              # a second build in the same process
        m, cfg = build(metas, "")
        m.train()
        for b in (sgg_batch(), hoi_batch(), sgg_batch()):
            loss = m(*b)
            assert "loss_algn" not in loss and torch.isfinite(sum(loss.values()))
            sum(loss.values()).backward()
    notices = [r for r in caplog.records if r.getMessage() == NO_CLIP_NOTICE]
    assert len(notices) == 1                                          # once per process
    assert m.distill is None and m.clip is None
    assert m.hss.class_embed.shape == (4, 384)                           # MiniLM sentence embeddings


def _save_tiny_detr(path, hidden_dim=32):
    from hoikit.config import DETRConfig
    from hoikit.models.detr import build_detr
    torch.manual_seed(3)
    det = build_detr(DETRConfig(backbone="tiny", hidden_dim=hidden_dim, nheads=2, enc_layers=1, dec_layers=1,
                                dim_feedforward=64, num_queries=6, num_classes=5))
    torch.save({"model": det.state_dict()}, path)
    return det.state_dict()


def test_detr_initialisation_copies_the_mappable_weights(metas, tmp_path):
    sd = _save_tiny_detr(tmp_path / "detr.pth")
    plain = build(metas, "")[0].state_dict()
    cfg = tiny_cfg("")
    cfg.model.detr.checkpoint = str(tmp_path / "detr.pth")
    torch.manual_seed(0)
    own = build_sg2hoi(cfg, *metas, task=cfg.train.task).state_dict()
    assert torch.equal(own["backbone.body.layers.0.weight"], sd["backbone.0.body.layers.0.weight"])
    assert torch.equal(own["encoder.encoder.layers.0.linear1.weight"], sd["transformer.encoder.layers.0.linear1.weight"])
    for dec in ("rel_decoder", "hoi_decoder"):
        assert torch.equal(own[f"{dec}.decoder.layers.0.multihead_attn.in_proj_weight"],
                           sd["transformer.decoder.layers.0.multihead_attn.in_proj_weight"])
        assert torch.equal(own[f"{dec}.head.left_box.layers.2.weight"], sd["bbox_embed.layers.2.weight"])
    assert torch.equal(own["rel_decoder.query_embed.weight"], sd["query_embed.weight"])
    for key in ("hss.reduce.weight", "encoder.cls_proj.weight", "rel_decoder.head.mid_cls.weight"):
        assert torch.equal(own[key], plain[key])                          # not in DETR: left as built
    _save_tiny_detr(tmp_path / "bad.pth", hidden_dim=16)
    cfg.model.detr.checkpoint = str(tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="transformer.encoder.layers.0"):
        build_sg2hoi(cfg, *metas, task=cfg.train.task)
