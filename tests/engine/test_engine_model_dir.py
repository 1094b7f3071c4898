"""Model directories (`hoikit export --format dir`, `hoikit.load(DIR)`): config.yaml + model.safetensors +
classes.json, read without pickle, giving the predictions of the checkpoint they came from."""
import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import hoikit
from hoikit.cli import main
from hoikit.config import load_config, to_dict
from hoikit.data.synth.scene import make_image
from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
from hoikit.errors import CheckpointError, ConfigError
from hoikit.recipes import build_model, meta_to_dict

from test_engine_predict import META

TINY_DETR = ["model.detr.backbone=tiny", "model.detr.hidden_dim=32", "model.detr.nheads=2", "model.detr.enc_layers=1",
             "model.detr.dec_layers=1", "model.detr.dim_feedforward=64", "model.detr.num_queries=12",
             "model.detr.num_classes=3", "data.test_scale=64", "data.max_size=96"]
TINY_RMLR = ["model.arch=rmlr", "model.rmlr.ablation=plain", "model.rmlr.representation_size=64",
             "model.rmlr.box_score_thresh=0.0"]


@pytest.fixture(scope="module")
def rmlr_checkpoint(tmp_path_factory):
    cfg = load_config(None, TINY_DETR + TINY_RMLR)
    torch.manual_seed(0)
    model = build_model(cfg, META)
    with torch.no_grad():   # spread the random detector's boxes and classes so pairs exist
        model.detector.class_embed.weight.mul_(8.0)
        model.detector.bbox_embed.layers[-1].weight.mul_(20.0)
    path = tmp_path_factory.mktemp("ck") / "rmlr.pt"
    save_checkpoint(model_checkpoint(model, to_dict(cfg), meta_to_dict("rmlr", META)), path)
    return path


def images():
    return [np.asarray(make_image(0, "test", i, 96)[0]) for i in range(2)]


def test_export_dir_round_trip_gives_identical_predictions(rmlr_checkpoint, tmp_path, monkeypatch, capsys):
    out = tmp_path / "model"
    assert main(["export", "--checkpoint", str(rmlr_checkpoint), "--format", "dir", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["classes.json", "config.yaml", "model.safetensors"]
    assert f"wrote {out / 'model.safetensors'}" in capsys.readouterr().out
    # plain files: YAML config, JSON class tables, safetensors weights equal to the checkpoint's
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"]["arch"] == "rmlr" and cfg["model"]["detr"]["checkpoint"] == ""
    classes = json.loads((out / "classes.json").read_text())
    assert classes["objects"] == META.objects and classes["verbs"] == META.verbs
    assert classes["correspondence"] == META.correspondence.tolist()
    stored = torch.load(rmlr_checkpoint, weights_only=True)["model"]
    weights = load_file(str(out / "model.safetensors"))
    assert weights.keys() == stored.keys() and all(torch.equal(weights[k], stored[k]) for k in stored)

    before = [hoikit.load(str(rmlr_checkpoint)).predict(im, threshold=0.0) for im in images()]

    def no_pickle(*a, **k):
        raise AssertionError("torch.load (pickle) called while reading a model directory")
    monkeypatch.setattr(torch, "load", no_pickle)
    model = hoikit.load(str(out))
    after = [model.predict(im, threshold=0.0) for im in images()]
    assert sum(len(r["triplets"]) for r in before) > 0
    assert after == before


def test_save_refuses_a_non_empty_directory(rmlr_checkpoint, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="taken: exists and is not an empty directory"):
        hoikit.load(str(rmlr_checkpoint)).save(out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_broken_model_directories_are_one_line_errors(rmlr_checkpoint, tmp_path, capsys):
    model = hoikit.load(str(rmlr_checkpoint))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="not a hoikit model directory"):
        hoikit.load(str(empty))
    out = tmp_path / "m"
    model.save(out)
    (out / "classes.json").unlink()
    with pytest.raises(CheckpointError, match="classes.json: model directory has no classes.json"):
        hoikit.load(str(out))
    out2 = tmp_path / "m2"
    model.save(out2)
    (out2 / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    assert main(["predict", str(tmp_path), "--checkpoint", str(out2)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.safetensors: cannot read safetensors file" in err[0], err


def test_an_exported_detector_directory_loads_as_a_detr_checkpoint(tmp_path):
    """model.detr.checkpoint may name an exported detector directory (read like the checkpoint file)."""
    from hoikit.convert.detr import load_detr

    cfg = load_config(None, ["model.arch=detr", *TINY_DETR])
    torch.manual_seed(0)
    model = build_model(cfg, META)
    save_checkpoint(model_checkpoint(model, to_dict(cfg), meta_to_dict("detr", META)), tmp_path / "detr.pt")
    hoikit.load(str(tmp_path / "detr.pt")).save(tmp_path / "detr_dir")
    from_file, info_file = load_detr(tmp_path / "detr.pt")
    from_dir, info_dir = load_detr(tmp_path / "detr_dir")
    assert info_dir["format"] == "hoikit" and info_dir["backbone"] == info_file["backbone"] == "tiny"
    a, b = from_file.state_dict(), from_dir.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
