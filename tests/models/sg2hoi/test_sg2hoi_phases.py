"""SG2HOI+ training phases (Section IV-D, Table V) and rebuilding from weights without text models."""
import pytest
import torch

from sg2hoi_tiny import hoi_batch, sgg_batch, tiny_cfg
from hoikit.errors import ConfigError
from hoikit.models.sg2hoi.build import build_sg2hoi
from hoikit.recipes.sg2hoi import SG2HOIRecipe, phase_for_epoch


def build(metas, clip_dir, task="joint", **sg):
    cfg = tiny_cfg(clip_dir, **sg)
    cfg.train.task = task
    torch.manual_seed(0)
    return build_sg2hoi(cfg, *metas, task=cfg.train.task), cfg


@pytest.mark.parametrize("task, sgg_epochs, expected", [
    ("joint", 2, ["sgg", "sgg", "joint", "joint"]),
    ("joint", 0, ["joint"] * 4),
    ("sgg", 2, ["sgg"] * 4),
    ("hoi", 1, ["sgg", "hoi_frozen", "hoi_frozen", "hoi_frozen"]),   # Table V: SGG first, then frozen
    ("hoi", 0, ["hoi"] * 4),
])
def test_phase_for_epoch(task, sgg_epochs, expected):
    cfg = tiny_cfg()
    cfg.train.task, cfg.train.sgg_epochs = task, sgg_epochs
    assert [phase_for_epoch(cfg, e) for e in range(4)] == expected


def test_sgg_control_is_sgg_alone_at_the_joint_phase_rates_after_phase_1(metas, tiny_clip_dir):
    from hoikit.config import validate
    from hoikit.recipes.sg2hoi import phase_rates

    cfg = tiny_cfg()
    cfg.train.task, cfg.train.sgg_epochs, cfg.train.sgg_control = "sgg", 1, True
    assert [phase_for_epoch(cfg, e) for e in range(4)] == ["sgg", "sgg_control", "sgg_control", "sgg_control"]
    cfg.train.sgg_epochs = 0                        # no phase 1 to follow: plain SGG training ...
    assert [phase_for_epoch(cfg, e) for e in range(2)] == ["sgg", "sgg"]
    for task, sgg_epochs in (("sgg", 0), ("sgg", 4), ("joint", 1), ("hoi", 1)):   # ... which training refuses
        cfg.train.task, cfg.train.sgg_epochs, cfg.train.epochs = task, sgg_epochs, 4
        with pytest.raises(ConfigError, match=f"train.sgg_control=true needs .*got task={task}, sgg_epochs={sgg_epochs}"):
            validate(cfg)
    cfg.train.task, cfg.train.sgg_epochs = "sgg", 1
    validate(cfg)
    cfg.data.format = "vg"                          # the joint run's schedule counts HOI batches
    with pytest.raises(ConfigError, match="sgg_control=true with data.format=vg"):
        validate(cfg)
    cfg.data.format = "synth"
    cfg.train.lr, cfg.train.sgg_lr, cfg.train.lr_backbone = 2e-4, 5e-5, 1e-5
    assert phase_rates(cfg, "sgg_control") == {"backbone": 1e-5, "sgg": 5e-5, "hoi": None}
    assert phase_rates(cfg, "joint")["sgg"] == phase_rates(cfg, "sgg_control")["sgg"]
    assert phase_rates(cfg, "sgg")["sgg"] == 2e-4
    m, cfg = build(metas, tiny_clip_dir, task="sgg")
    cfg.train.sgg_lr = 5e-5
    m.set_phase("sgg_control")
    groups = SG2HOIRecipe().param_groups(m, cfg, "sgg_control")
    assert groups and all(not g["name"].startswith("hoi") for g in groups)
    assert {g["lr"] for g in groups if g["name"] == "sgg"} == {5e-5}
    m.train()
    loss = m(*sgg_batch())
    assert "loss_seg" in loss and not any(k.startswith("loss_hoi") for k in loss)   # SGG losses only
    assert any(k.startswith("loss_rel") for k in loss)                               # trained as task sgg


def test_hoi_frozen_trains_only_the_hoi_part_and_unfreezes(metas, tiny_clip_dir):
    m, cfg = build(metas, tiny_clip_dir, task="hoi")
    m.set_phase("hoi_frozen")
    groups = SG2HOIRecipe().param_groups(m, cfg, "hoi_frozen")
    assert {g["name"] for g in groups} == {"hoi", "hoi_text_cls"}
    hoi_ids = {id(p) for mod in (m.r2i, m.feature_transform, m.query_transform, m.hoi_decoder) for p in mod.parameters()}
    assert {id(p) for g in groups for p in g["params"]} == hoi_ids
    m.train()
    assert not m.hss.bbseg.training and not m.rel_decoder.training and m.hoi_decoder.training
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.AdamW(groups, lr=1e-2)
    for b in (hoi_batch(), sgg_batch(), hoi_batch()):
        loss = m(*b)
        assert set(loss) <= {"loss_hoi_box", "loss_hoi_cls", "loss_hoi_verb"}     # no Eq. (2)/(5), no relations
        if loss:
            opt.zero_grad()
            sum(loss.values()).backward()
            opt.step()
    after = m.state_dict()
    sgg_keys = [k for k in after if not k.startswith(("r2i.", "feature_transform.", "query_transform.", "hoi_decoder."))]
    assert all(torch.equal(before[k], after[k]) for k in sgg_keys)              # incl. BatchNorm running stats
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("hoi_decoder."))
    m.set_phase("joint")
    m.train()
    assert m.hss.bbseg.training and all(p.requires_grad for p in m.rel_decoder.parameters())
    assert "loss_seg" in m(*sgg_batch())
    with pytest.raises(ConfigError, match="phase 'hoi_all'"):
        m.set_phase("hoi_all")


def test_rebuild_from_weights_opens_no_text_model(metas, tiny_clip_dir, monkeypatch):
    import hoikit.models.sg2hoi.build as B
    import hoikit.models.sg2hoi.semantics as S
    from hoikit.io.checkpoint import load_model_state
    m, cfg = build(metas, tiny_clip_dir, variant="cls")
    m.eval()
    sd = m.state_dict()

    def refuse(*a, **k):
        raise AssertionError("a text model was opened")

    monkeypatch.setattr(B, "load_clip", refuse)
    monkeypatch.setattr(S, "load_text_encoder", refuse)
    monkeypatch.setattr(B, "_notice_said", False)
    torch.manual_seed(5)                                              # different random init
    r = build_sg2hoi(cfg, *metas, state_dict=sd, task=cfg.train.task)
    assert not B._notice_said                                         # inference needs no CLIP: no notice
    load_model_state(r, sd)
    r.eval()
    imgs, _ = sgg_batch()
    with torch.no_grad():
        a, b = m(imgs), r(imgs)
    for x, y in zip(a, b):
        for part in ("sgg", "hoi"):
            for k in x[part]:
                assert torch.equal(x[part][k], y[part][k]), (part, k)
