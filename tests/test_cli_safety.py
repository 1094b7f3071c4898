"""Nothing the user has is lost, every command works from any directory, every bad value is one line
(issue 13, items 1-3, 9-11, 13): end to end through ``hoikit.cli.main``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hoikit.cli import main
from hoikit.config import load_config, to_dict
from hoikit.data.metadata import DatasetMeta
from hoikit.engine.checkpoint import load_checkpoint, model_checkpoint, save_checkpoint
from hoikit.models.build import build_model, meta_to_dict

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from hoikit.data.synth import generate_synthhoi

    root = tmp_path_factory.mktemp("safety") / "synth"
    generate_synthhoi(root, 8, 4, seed=3, size=64, workers=1)
    return root


def tiny_detr_args(root, out):
    """``hoikit train`` arguments of a one-step DETR run on the tiny SynthHOI (a few seconds on CPU)."""
    return ["train", "synth_detr", f"data.root={root}", "data.scales=[64]",
            "data.max_size=64", "data.test_scale=64", "model.detr.checkpoint=", "model.detr.hidden_dim=32",
            "model.detr.nheads=2", "model.detr.enc_layers=1", "model.detr.dec_layers=1",
            "model.detr.dim_feedforward=64", "model.detr.num_queries=5", "model.detr.dense_loss_coef=0",
            "train.epochs=1", "train.batch_size=4", "train.max_steps=1", "train.warmup_iters=0",
            "train.log_every=1", "train.eval_every=1", "--output-dir", str(out)]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hoikit: error: "), err
    return lines[0]


# ---------------------------------------------------------------------------------------------- 1
def _old_run(out: Path) -> dict:
    out.mkdir(parents=True)
    files = {"last.pt": b"old last", "best.pt": b"old best", "log.csv": b"epoch,step\n1,10\n",
             "eval.csv": b"epoch,step,mAP\n1,10,3.0\n", "config.yaml": b"name: old\n"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


def test_train_refuses_a_directory_that_holds_a_run(tmp_path, synth_root, capsys):
    out = tmp_path / "run"
    files = _old_run(out)
    assert main(tiny_detr_args(synth_root, out)) == 2
    line = one_error_line(capsys)
    assert str(out) in line and "--resume" in line and "--output-dir" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files   # nothing touched


def test_train_overwrite_replaces_the_whole_old_run(tmp_path, synth_root, capsys):
    out = tmp_path / "run"
    _old_run(out)
    (out / "notes.txt").write_text("mine")                           # not a run file: kept
    assert main(tiny_detr_args(synth_root, out) + ["--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "best.pt").exists() or load_checkpoint(out / "best.pt")["step"] == 1  # no stale best.pt
    assert load_checkpoint(out / "last.pt")["step"] == 1
    assert "name: old" not in (out / "config.yaml").read_text()
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[1] == "1"           # header + the new run's step 1 only
    assert main(tiny_detr_args(synth_root, out) + ["--overwrite", "--resume"]) == 2
    assert "contradict" in one_error_line(capsys)
