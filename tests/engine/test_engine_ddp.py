"""Two CPU processes under torchrun (gloo): DDP keeps the replicas identical, and they learned."""
import os
import subprocess
import sys
from pathlib import Path

import torch

TOY = Path(__file__).with_name("engine_toy.py")


def test_two_process_gloo_ranks_end_identical(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(TOY.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(TOY), str(tmp_path), "train.epochs=2"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    # 24 images over 2 ranks, batch 4 per rank -> 3 steps per epoch, 2 epochs
    assert ck["step"] == 6 and len(ck["rng"]) == 2
    for k in w0:
        assert torch.equal(ck["model"][k], w0[k]), k
    # evaluation gathered all 6 test images from both ranks exactly once
    rows = (tmp_path / "eval.csv").read_text().splitlines()
    assert rows[0].split(",")[-1] == "images" and all(r.split(",")[-1] == "6" for r in rows[1:])


def test_forward_error_on_one_rank_stops_every_rank(tmp_path):
    """Rank 1's model raises a TrainingError in the forward of step 2; rank 0's forward succeeds.
    Both ranks must raise the same one-line error (naming rank 1 and step 2) before the backward's
    gradient all-reduce, instead of rank 0 waiting there for a peer that left."""
    env = {**os.environ, "PYTHONPATH": str(TOY.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(TOY), str(tmp_path), "train.epochs=2", "--raise-at", "2", "--raise-rank", "1"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    expected = ("hoikit: error: error in the model's forward on rank 1 at step 2 (epoch 1, iteration 2/3): "
                "toy failure in forward call 2; training stopped, last good checkpoint: none written yet")
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("hoikit: error:")]
    assert lines == [expected, expected], r.stderr[-3000:]
    assert not (tmp_path / "last.pt").exists()   # stopped in epoch 1, before any checkpoint
