"""Exact resume after SIGKILL, and the non-finite-loss stop (toy model, CPU, a few steps)."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine_toy import ToyDataset, ToyEvaluator, ToyModel, main as toy_main, toy_collate
from hoikit.config import load_config
from hoikit.io.checkpoint import load_checkpoint
from hoikit.engine.trainer import fit, seed_everything
from hoikit.errors import TrainingError

TOY = Path(__file__).with_name("engine_toy.py")


def _run(out, *args, check=True):
    env = {**os.environ, "PYTHONPATH": str(TOY.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(TOY), str(out), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    # 24 images / batch 4 = 6 steps per epoch, 3 epochs = 18 steps. The killed run dies by SIGKILL
    # at step 9 (mid epoch 2, after the epoch-1 checkpoint); it is resumed once with max_steps=10
    # (stops mid-epoch, checkpoints the mid-epoch position) and once more to the end.
    full = _run(tmp_path / "full")
    killed = _run(tmp_path / "killed", "--kill-at", "9")
    assert killed.wait(600) == -9, killed.communicate()[1][-2000:]
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["step"] == 6
    # the resumes run the same script entry point in this process (no second interpreter start-up):
    # the resumed process state comes only from the checkpoint, as in a fresh process
    assert toy_main([str(tmp_path / "killed"), "--resume", "train.max_steps=10"]) == 0
    mid = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert (mid["epoch"], mid["iteration"], mid["step"]) == (1, 4, 10)
    assert toy_main([str(tmp_path / "killed"), "--resume"]) == 0
    assert full.wait(600) == 0, full.communicate()[1][-2000:]

    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert a["step"] == b["step"] == 18
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k
    # the logs of the resumed run equal the uninterrupted ones (rows of the killed run were dropped)
    for name in ("log.csv", "eval.csv"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "killed" / name).read_text()
    # the weights did move: this is not a comparison of two untrained models
    seed_everything(42)
    init = ToyModel().state_dict()
    assert not torch.equal(init["head.weight"], a["model"]["head.weight"])


def test_nonfinite_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(None, [f"output_dir={tmp_path}", "train.epochs=3", "train.batch_size=4", "train.lr=0.01",
                             "data.num_workers=0"])
    seed_everything(0)
    model = ToyModel(nan_at=8)  # 6 steps per epoch -> step 8 = epoch 2, iteration 2
    digests = []

    def cb(event, state):
        if event == "checkpoint":
            digests.append(hashlib.sha256((tmp_path / "last.pt").read_bytes()).hexdigest())

    train, test = ToyDataset(24, 1), ToyDataset(6, 2)
    with pytest.raises(TrainingError) as e:
        fit(cfg, model, train, collate_fn=toy_collate, eval_set=test, make_evaluator=lambda: ToyEvaluator(test),
            callback=cb)
    msg = str(e.value)
    assert "non-finite loss at step 8 (epoch 2, iteration 2/6)" in msg and "loss_mse=nan" in msg
    assert "\n" not in msg and str(tmp_path / "last.pt") in msg
    assert len(digests) == 1  # only the epoch-1 checkpoint was written, and it is untouched
    assert hashlib.sha256((tmp_path / "last.pt").read_bytes()).hexdigest() == digests[0]
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["step"] == 6 and all(torch.isfinite(v).all() for v in ck["model"].values())


class _MatchingToy(ToyModel):
    """ToyModel whose regression output is matched to its target with the real Hungarian matcher
    (one query, one target); ``nan_at`` poisons the predictions (not the loss) of one step."""

    def forward(self, images, targets=None):
        from hoikit.losses.matcher import HungarianMatcher

        if not self.training:
            return super().forward(images, targets)
        self.calls += 1
        x = torch.stack(images)
        y = self.head(self.drop(self.backbone(x).relu().mean((2, 3))))          # [B, 1]
        if self.calls == self.nan_at:
            y = y * float("nan")
        boxes = torch.cat([y.sigmoid().expand(-1, 2), torch.full_like(y, 0.1).expand(-1, 2)], 1)[:, None]
        outputs = {"pred_logits": torch.zeros(len(images), 1, 2), "pred_boxes": boxes}
        tgts = [{"labels": torch.zeros(1, dtype=torch.long), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])}
                for _ in images]
        HungarianMatcher()(outputs, tgts)
        gt = torch.stack([t["value"] for t in targets])
        return {"loss_mse": ((y - gt) ** 2).mean()}


def test_nan_predictions_reaching_the_matcher_stop_with_the_step(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(None, [f"output_dir={tmp_path}", "train.epochs=2", "train.batch_size=4", "train.lr=0.01",
                             "data.num_workers=0"])
    seed_everything(0)
    with pytest.raises(TrainingError) as e:
        fit(cfg, _MatchingToy(nan_at=9), ToyDataset(24, 1), collate_fn=toy_collate)   # 6 steps per epoch
    msg = str(e.value)
    assert msg.startswith("error in the model's forward at step 9 (epoch 2, iteration 3/6): Hungarian matching: "
                          "cost matrix of batch image 0 has 1 NaN/inf entries")
    assert "\n" not in msg and msg.endswith(f"last good checkpoint: {tmp_path / 'last.pt'}")
