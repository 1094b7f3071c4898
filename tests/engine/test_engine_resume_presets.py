"""Exact resume of the packaged presets through the CLI (issue 13, items 4-7): a run SIGKILLed in the
middle of epoch 2, after a mid-epoch ``train.checkpoint_every`` checkpoint, and resumed with
``hoikit train PRESET --resume`` (no overrides repeated: the run's config comes from its checkpoint)
ends with every tensor of ``last.pt`` EQUAL to an uninterrupted run's.

Default configs at tiny sizes: ``synth_rmlr`` (its text-encoder output cache on, as by default),
``synth_sg2hoi`` across its SGG -> joint phase switch, and the ``synth_detr`` detector."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hoikit.io.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
KILL = ROOT / "benchmarks" / "kill_train.py"

# 12 training images, batch 4: 3 steps per epoch (SG2HOI+ joint phase: 3 SGG + 3 HOI batches)
DATA = ["data.synth_train=12", "data.synth_test=3", "data.synth_size=64", "data.scales=[64]", "data.max_size=64",
        "data.test_scale=64", "train.batch_size=4", "train.log_every=1", "train.warmup_iters=2"]
PRESETS = {
    # preset: (overrides, checkpoint_every, kill step); the kill lands in epoch 2, after a mid-epoch checkpoint
    # ground-truth proposals: at this size the detector finds no positive pair, and without one the
    # text knowledge (Eq. 7-8, the cached encoder) never reaches a gradient
    "synth_rmlr": (["train.epochs=2", "model.rmlr.representation_size=64", "model.rmlr.cml_dim=64",
                    "model.rmlr.ire_dim=32", "model.rmlr.ire_ffn=64", "model.rmlr.detections=oracle"], 2, 5),
    "synth_sg2hoi": (["train.epochs=2", "train.sgg_epochs=1", "train.eval_every=1", "model.sg2hoi.dropout=0.1"],
                     2, 7),
    "synth_detr": (["train.epochs=2", "model.detr.checkpoint=", "model.detr.dropout=0.1", "train.eval_every=1"],
                   2, 5),
}


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def _start(*args):
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_checkpoints_equal(a: dict, b: dict) -> None:
    """Every model tensor and every optimizer-state tensor equal (not close)."""
    assert a["model"].keys() == b["model"].keys()
    bad = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not bad, f"{len(bad)} of {len(a['model'])} tensors differ, e.g. {bad[0]}"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][k]), torch.as_tensor(sb[i][k])), (i, k)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from hoikit.data.synth import generate_synthhoi

    root = tmp_path_factory.mktemp("resume_presets") / "synth"
    generate_synthhoi(root, 12, 3, seed=3, size=64, workers=1)
    return root


@pytest.mark.parametrize("preset", list(PRESETS))
def test_sigkill_mid_epoch_2_then_resume_is_bit_identical(preset, synth_root, tmp_path):
    extra, every, kill_at = PRESETS[preset]
    overrides = [f"data.root={synth_root}", *DATA, *extra, f"train.checkpoint_every={every}"]
    full = _start("-m", "hoikit.cli", "train", preset, *overrides, "--output-dir", tmp_path / "full")
    killed = _start(KILL, "--kill-at", kill_at, "train", preset, *overrides, "--output-dir", tmp_path / "killed")
    assert killed.wait(600) == -9, killed.communicate()[1][-3000:]
    mid = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert (mid["epoch"], mid["iteration"], mid["step"]) == (1, (kill_at - 1) // every * every - 3, kill_at - 1)
    # resumed with the preset alone: data root, sizes, epochs ... come from the checkpoint (item 7)
    resumed = subprocess.run([sys.executable, "-m", "hoikit.cli", "train", preset, "--resume", "--output-dir",
                              str(tmp_path / "killed")], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert full.wait(600) == 0, full.communicate()[1][-3000:]
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert a["step"] == b["step"] == (9 if preset == "synth_sg2hoi" else 6)
    assert_checkpoints_equal(a, b)
    for name in ("log.csv", "eval.csv"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "killed" / name).read_text()
    assert (tmp_path / "full" / "config.yaml").read_text() == (tmp_path / "killed" / "config.yaml").read_text() \
        .replace(str(tmp_path / "killed"), str(tmp_path / "full"))
