"""Every SG2HOI+ row (FULL, Table I variants, Table V tasks, Table VI-VIII ablations) trains 2 steps
under 2-process gloo DDP through the engine's ``fit`` and both ranks end with equal parameters
(issue 12, item 1: a module that a row builds but never uses must not break DDP)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddp_rows_worker import ROWS, tiny_metas
from sg2hoi_tiny import hoi_batch, sgg_batch, tiny_cfg
from hoikit.models.sg2hoi.build import build_sg2hoi

WORKER = Path(__file__).with_name("ddp_rows_worker.py")


def test_every_row_trains_two_ddp_steps_with_equal_weights_on_both_ranks(tiny_clip_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(WORKER.parent), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(WORKER), str(tmp_path), tiny_clip_dir]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "rows.json").read_text())
    errors = {row: rep["error"] for row, rep in report.items() if "error" in rep}
    assert not errors, errors
    assert sorted(report) == sorted(ROWS)
    for row, rep in report.items():
        assert rep["world"] == 2 and rep["steps"] == 2, (row, rep)
        assert rep["equal"] and rep["max_diff"] == 0.0, (row, rep)
        assert rep["moved"] > 0, (row, rep)                  # the two steps did train something


JOINT_ROWS = sorted(r for r, (_, task, _, _) in ROWS.items() if task == "joint")


@pytest.mark.parametrize("row", JOINT_ROWS)
def test_every_built_parameter_of_a_row_gets_a_gradient_from_one_sgg_and_one_hoi_batch(tiny_clip_dir, row):
    """A row builds only what it uses: after one SGG and one HOI batch every trainable parameter has a
    gradient (a module built but never run would need DDP's unused-parameter search on every step
    and would be saved, trained by weight decay alone, in every checkpoint)."""
    switches, task, _, _ = ROWS[row]
    cfg = tiny_cfg(tiny_clip_dir, **switches)
    cfg.train.task = task
    torch.manual_seed(0)
    model = build_sg2hoi(cfg, *tiny_metas(), task=cfg.train.task).train()
    for batch in (sgg_batch(), hoi_batch()):
        sum(model(*batch).values()).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused
