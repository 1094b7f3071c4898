"""Checkpoints written by an earlier hoikit still load and give the same outputs.

tests/data/checkpoints_v1/ holds one tiny checkpoint per family the library saves (DETR detector, Deformable
DETR detector, RmLR plain = UPT, SG2HOI+), written by the commit named in its README with ``write_v1.py``,
and the eval forward outputs that commit computed from each (the expectation is that commit's, not this
code's). Each file is loaded through both public paths, ``hoikit.load()`` and the engine's
``load_checkpoint`` + ``config.load_config(stored=...)`` + ``model_from_checkpoint`` of ``hoikit test`` / ``predict``.
"""
import importlib.util
import json
import lzma
from pathlib import Path

import pytest
import torch

import hoikit
from hoikit.config import load_config
from hoikit.engine.testing import TEST_SECTIONS
from hoikit.engine.inference import Predictor, model_from_checkpoint
from hoikit.io.checkpoint import load_checkpoint

DATA = Path(__file__).parent / "data" / "checkpoints_v1"
_spec = importlib.util.spec_from_file_location("write_v1", DATA / "write_v1.py")
write_v1 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(write_v1)
FAMILIES = sorted(write_v1.FAMILIES)


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    out = tmp_path_factory.mktemp("v1")
    for name in FAMILIES:
        (out / f"{name}.pt").write_bytes(lzma.decompress((DATA / f"{name}.pt.xz").read_bytes()))
    return out


def expected(name):
    return torch.load(DATA / f"{name}.expected.pt", weights_only=True)


def assert_same_outputs(got, want, path):
    assert sorted(got) == sorted(k for k in want if k != "predict_json"), path
    for k, v in got.items():
        assert v.shape == want[k].shape and v.dtype == want[k].dtype, (path, k)
        torch.testing.assert_close(v, want[k], rtol=1e-4, atol=1e-5, msg=f"{path}: {k}")


#: keys the predict JSON gained after v1 (additions only: every v1 key keeps its value)
ADDED_KEYS = {"confidence"}      # session 12: RmLR / UPT triplets (hoikit.engine.inference.triplet_confidence)


def assert_close_json(got, want, where="result"):
    """Nested dicts / lists equal, numbers within 0.011 (predict rounds boxes to 2 decimals, scores to 4);
    a dict may also hold the :data:`ADDED_KEYS`."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(set(got) - ADDED_KEYS) == sorted(want), where
        for k in want:
            assert_close_json(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close_json(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=0.011), where
    else:
        assert got == want, where


def test_every_family_has_a_fixture():
    assert FAMILIES == ["deformable", "detr", "rmlr_plain", "sg2hoi"]
    for name in FAMILIES:
        assert (DATA / f"{name}.pt.xz").stat().st_size < 200_000


@pytest.mark.parametrize("name", FAMILIES)
def test_v1_checkpoint_loads_through_hoikit_load(unpacked, name):
    path = unpacked / f"{name}.pt"
    predictor = hoikit.load(str(path))
    want = expected(name)
    assert_same_outputs(write_v1.forward_outputs(predictor), want, path)
    got = predictor.predict(write_v1.fixed_image(), threshold=0.0)
    assert_close_json(got, json.loads(want["predict_json"]), str(path))


@pytest.mark.parametrize("name", FAMILIES)
def test_v1_checkpoint_loads_through_the_engine(unpacked, name):
    path = unpacked / f"{name}.pt"
    ck = load_checkpoint(path)
    cfg = load_config(None, (), stored=ck["config"], sections=TEST_SECTIONS, where=str(path))
    model, cfg, meta = model_from_checkpoint(path, cfg=cfg, state=ck)
    assert_same_outputs(write_v1.forward_outputs(Predictor(model, cfg, meta)), expected(name), path)
