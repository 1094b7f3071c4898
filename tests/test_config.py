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
