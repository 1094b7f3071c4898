import pytest

from hoikit.config import Config, load_config, to_dict, from_dict
from hoikit.errors import ConfigError


def test_override_changes_one_field():
    cfg = load_config(None, ["train.lr=2e-4", "model.rmlr.ablation=plain"])
    assert cfg.train.lr == pytest.approx(2e-4)
    assert cfg.model.rmlr.ablation == "plain"
    assert cfg.train.epochs == Config().train.epochs


@pytest.mark.parametrize("override, key", [("train.lrr=1", "train.lrr"), ("train.epochs=abc", "train.epochs"),
                                           ("nokey.x=1", "nokey")])
def test_bad_override_names_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_yaml_unknown_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match="epochz"):
        load_config(str(p))


def test_dict_round_trip():
    cfg = load_config(None, ["seed=7", "data.scales=[100,200]"])
    assert from_dict(to_dict(cfg)) == cfg


def test_lr_backbone_has_one_source_and_old_files_still_load(tmp_path):
    from pathlib import Path

    assert not hasattr(Config().model.detr, "lr_backbone")
    for preset in sorted((Path(__file__).parents[1] / "hoikit" / "configs").glob("*.yaml")):
        load_config(str(preset))                                   # every preset loads
    f = tmp_path / "old.yaml"
    f.write_text("model:\n  detr:\n    lr_backbone: 0.0\n")        # older file: only the DETR copy
    assert load_config(str(f)).train.lr_backbone == 0.0
    f.write_text("model:\n  detr:\n    lr_backbone: 1.0e-3\ntrain:\n  lr_backbone: 1.0e-3\n")
    assert load_config(str(f)).train.lr_backbone == 1e-3
    f.write_text("model:\n  detr:\n    lr_backbone: 0.0\ntrain:\n  lr_backbone: 1.0e-3\n")
    with pytest.raises(ConfigError, match=r"'model.detr.lr_backbone' \(0.0\) differs from 'train.lr_backbone'"):
        load_config(str(f))
    with pytest.raises(ConfigError, match="model.detr.lr_backbone"):
        load_config(None, ["model.detr.lr_backbone=0.1"])
    old = to_dict(Config())
    old["model"]["detr"]["lr_backbone"], old["train"]["lr_backbone"] = 0.0, 2e-5   # an old checkpoint's config
    assert from_dict(old).train.lr_backbone == 2e-5


def test_detr_backbone_trains_iff_train_lr_backbone_is_positive():
    from hoikit.data.metadata import DatasetMeta
    from hoikit.recipes import build_model

    meta = DatasetMeta(name="t", objects=["person", "ball"], verbs=[], person_label=0)
    for lr, trains in ((1e-4, True), (0.0, False)):
        cfg = load_config(None, ["model.arch=detr", "model.detr.backbone=tiny", "model.detr.hidden_dim=16",
                                 "model.detr.nheads=2", "model.detr.enc_layers=1", "model.detr.dec_layers=1",
                                 "model.detr.dim_feedforward=16", "model.detr.num_queries=2", f"train.lr_backbone={lr}"])
        model = build_model(cfg, meta)
        assert any(p.requires_grad for n, p in model.named_parameters() if "backbone" in n) is trains


def test_empty_override_is_the_empty_string_and_names_the_key_when_invalid():
    assert load_config("synth_rmlr", ["model.detr.checkpoint="]).model.detr.checkpoint == ""
    with pytest.raises(ConfigError, match=r"override 'train.epochs=': config key 'train.epochs'"):
        load_config("synth_rmlr", ["train.epochs="])


# every choice field (a Literal in hoikit/config.py) with its allowed values, written out by hand
CHOICE_FIELDS = {
    "model.arch": ["rmlr", "sg2hoi", "detr"],
    "data.format": ["hicodet", "vcoco", "vg", "custom", "synth", "coco"],
    "data.zero_shot": ["", "rf_uc", "nf_uc", "uo", "uv"],
    "data.synth_detector_boxes": ["all", "hoi"],
    "model.detr.type": ["detr", "deformable"],
    "model.detr.backbone": ["resnet18", "resnet34", "resnet50", "resnet101", "tiny", "small", "small_res"],
    "model.rmlr.ablation": ["full", "plain", "wo_cl", "wo_rm", "wo_wa", "wo_sa", "wo_irm_kt", "wo_ire_kt"],
    "model.rmlr.detections": ["detr", "oracle"], "model.rmlr.ire_pool": ["masked", "full"],
    "model.rmlr.word_scope": ["image", "pair"], "model.rmlr.word_context": ["joint", "separate"],
    "model.rmlr.word_target": ["joint", "detached"], "model.rmlr.text.pooling": ["auto", "cls", "mean"],
    "model.sg2hoi.variant": ["rand", "clip", "cls", "pool"], "model.sg2hoi.hss": ["full", "none", "det", "glove"],
    "model.sg2hoi.vl_distill": ["auto", "cls", "pool", "none"], "model.sg2hoi.vl_loss": ["l1", "l2"],
    "model.sg2hoi.hss_assign": ["argmax", "soft"], "model.sg2hoi.verb_loss": ["focal", "bce"],
    "train.optimizer": ["adamw", "adam"], "train.schedule": ["cosine", "step"], "train.task": ["joint", "sgg", "hoi"],
}


@pytest.mark.parametrize("key", sorted(CHOICE_FIELDS))
def test_a_wrong_choice_fails_at_load_naming_key_and_allowed_values(key, tmp_path):
    """Each choice field is checked once, when the config is made (override, YAML file or a
    checkpoint's stored config), not where a builder first reads it."""
    from hoikit.config import choices

    assert list(choices(key)) == CHOICE_FIELDS[key]
    for value in CHOICE_FIELDS[key]:             # every allowed value loads and stays a plain string
        assert to_dict(load_config(None, [f"{key}={value}"]))
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}=bogus_value"])
    msg = str(e.value)
    assert "\n" not in msg and f"'{key}'" in msg and "bogus_value" in msg
    assert all(repr(v) in msg for v in CHOICE_FIELDS[key])
    *parents, leaf = key.split(".")
    stored = to_dict(Config())
    section = stored
    for p in parents:
        section = section[p]
    section[leaf] = "bogus_value"
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(stored)
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("\n".join(f"{'  ' * i}{p}:" for i, p in enumerate(parents)) + f"\n{'  ' * len(parents)}{leaf}: bogus_value\n")
    with pytest.raises(ConfigError, match=str(yaml_file)):
        load_config(str(yaml_file))


def test_yaml_choice_values_stay_plain_strings():
    cfg = load_config("synth_sg2hoi")
    d = to_dict(cfg)
    assert type(cfg.model.arch) is str and type(d["model"]["arch"]) is str and d["train"]["task"] == cfg.train.task
