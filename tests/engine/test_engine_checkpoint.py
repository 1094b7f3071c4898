"""Atomic checkpoint writes, safe and strict loads, RNG round trip."""
import random

import numpy as np
import pytest
import torch
from torch import nn

from hoikit.io import checkpoint as C
from hoikit.errors import CheckpointError


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def test_crash_during_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    m = _model()
    C.save_checkpoint(C.model_checkpoint(m, {"name": "a"}, {}), path)
    before = path.read_bytes()

    def crashing_save(obj, f):  # writes half a file, then the process "dies"
        f.write(b"\x80\x02partial")
        raise OSError("disk full")

    monkeypatch.setattr(C.torch, "save", crashing_save)
    with pytest.raises(OSError):
        C.save_checkpoint(C.model_checkpoint(_model(), {"name": "b"}, {}), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind
    assert C.load_checkpoint(path)["config"] == {"name": "a"}


def test_strict_model_state_names_the_key(tmp_path):
    m = _model()
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    bad = dict(sd, **{"1.weight": torch.zeros(5, 4)})
    with pytest.raises(CheckpointError, match=r"key 'model.1.weight' has shape \(5, 4\), the model expects \(2, 4\)"):
        C.load_model_state(m, bad, "x.pt")
    missing = {k: v for k, v in sd.items() if k != "0.bias"}
    with pytest.raises(CheckpointError, match=r"x.pt: key 'model.0.bias' missing"):
        C.load_model_state(m, missing, "x.pt")
    with pytest.raises(CheckpointError, match=r"unexpected key 'model.extra'"):
        C.load_model_state(m, dict(sd, extra=torch.zeros(1)), "x.pt")
    other = _model()
    C.load_model_state(other, sd, "x.pt")
    assert all(torch.equal(other.state_dict()[k], sd[k]) for k in sd)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "hoikit", "model": {}, "config": {}, "x": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        C.load_checkpoint(evil)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a hoikit checkpoint"):
        C.load_checkpoint(foreign)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        C.load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        C.load_checkpoint(tmp_path / "nope.pt")


def test_rng_state_round_trip_through_a_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    C.save_checkpoint({"format": "hoikit", "model": {}, "config": {}, "rng": C.rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.randn(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    C.set_rng_state(C.load_checkpoint(tmp_path / "r.pt")["rng"])
    got = (random.random(), np.random.randn(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_one_allow_list_official_args_read_but_not_taken_for_a_hoikit_checkpoint(tmp_path):
    import argparse

    official = tmp_path / "detr-r50.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(dilation=True, nheads=8)}, official)
    raw = C.load_checkpoint(official, require_format=False)          # converters read released files this way
    assert raw["args"].dilation is True and torch.equal(raw["model"]["w"], torch.ones(2))
    with pytest.raises(CheckpointError, match=r"detr-r50.pth: not a hoikit checkpoint .*hoikit convert"):
        C.load_checkpoint(official)


def test_the_checkpoint_module_imports_only_the_bottom_layer():
    import ast
    from pathlib import Path

    import hoikit.io

    allowed = {"errors", "paths"}
    for path in Path(hoikit.io.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                assert (node.module or "").split(".")[0] in allowed, f"{path.name} imports ..{node.module}"
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith("hoikit"), f"{path.name} imports {node.module}"


def test_detector_input_overrides_are_the_scales_the_detector_trained_at(tmp_path):
    from hoikit.config import load_config

    m = _model()
    data = {"scales": [352, 384], "max_size": 480, "test_scale": 384, "synth_size": 256}
    C.save_checkpoint(C.model_checkpoint(m, {"data": data}, {}), tmp_path / "det.pt")
    over = C.detector_input_overrides(tmp_path / "det.pt")
    assert over == ["data.scales=[352,384]", "data.max_size=480", "data.test_scale=384"]
    assert C.detector_input_overrides(C.load_checkpoint(tmp_path / "det.pt")) == over   # a checkpoint already read
    cfg = load_config("synth_rmlr", over)        # they apply to a preset as written
    assert (cfg.data.scales, cfg.data.max_size, cfg.data.test_scale) == ([352, 384], 480, 384)
    # an official release (a bare state dict / DETR's {"model", "args"}) stores no hoikit config: nothing
    torch.save({"model": m.state_dict()}, tmp_path / "official.pth")
    assert C.detector_input_overrides(tmp_path / "official.pth") == []
    with pytest.raises(CheckpointError, match="missing.pt"):
        C.detector_input_overrides(tmp_path / "missing.pt")


def test_detector_scale_mismatch_names_the_stored_scale_and_the_overrides(tmp_path):
    from types import SimpleNamespace

    m = _model()
    data = {"scales": [352, 384], "max_size": 480, "test_scale": 384}
    C.save_checkpoint(C.model_checkpoint(m, {"data": data}, {}), tmp_path / "det.pt")
    same = SimpleNamespace(scales=[256], max_size=480, test_scale=384)     # training scales may differ
    assert C.detector_scale_mismatch(same, tmp_path / "det.pt") is None
    msg = C.detector_scale_mismatch(SimpleNamespace(scales=[384], max_size=480, test_scale=256), tmp_path / "det.pt")
    assert "trained at test_scale 384 (this run: 256);" in msg and "max_size" not in msg.split(";")[0]
    assert msg.endswith("data.scales=[352,384] data.max_size=480 data.test_scale=384") and "\n" not in msg
    torch.save({"model": m.state_dict()}, tmp_path / "official.pth")       # no stored config: nothing to say
    assert C.detector_scale_mismatch(same, tmp_path / "official.pth") is None
    hf = tmp_path / "hf_detr"                 # a Hugging Face DETR folder: loadable weights, no hoikit config
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    assert C.detector_scale_mismatch(same, hf) is None
    msg = C.detector_scale_mismatch(SimpleNamespace(max_size=480, test_scale=256), C.load_checkpoint(tmp_path / "det.pt"))
    assert msg.startswith("model.detr.checkpoint <checkpoint>: the detector was trained at test_scale 384")
