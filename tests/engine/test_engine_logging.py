"""Training logs: TensorBoard events (the 'tensorboard' extra, train.tensorboard=true) carry the values of
log.csv / eval.csv; the evaluation after each epoch shows a progress bar; a missing extra is one line."""
import csv
import sys

import pytest
import torch

from engine_toy import ToyDataset, ToyEvaluator, ToyModel, toy_collate
from hoikit.config import load_config
from hoikit.engine.trainer import fit, seed_everything
from hoikit.extras import MissingExtraError


def _fit(out, *overrides):
    torch.set_num_threads(1)
    cfg = load_config(None, [f"output_dir={out}", "train.epochs=2", "train.batch_size=4", "train.lr=0.01",
                             "train.log_every=2", "data.num_workers=0", *overrides])
    seed_everything(0)
    train, test = ToyDataset(16, 1), ToyDataset(6, 2)   # 4 steps per epoch
    return fit(cfg, ToyModel(), train, collate_fn=toy_collate, eval_set=test, primary_metric="neg_mae",
               make_evaluator=lambda: ToyEvaluator(test))


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tensorboard_events_carry_the_csv_values(tmp_path):
    pytest.importorskip("tensorboard", reason="the 'tensorboard' extra is not installed (pip install -e \".[tensorboard]\")")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _fit(tmp_path, "train.tensorboard=true")
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    for tag, rows, column in [("train/loss", _csv(tmp_path / "log.csv"), "loss"),
                              ("train/lr", _csv(tmp_path / "log.csv"), "lr"),
                              ("eval/neg_mae", _csv(tmp_path / "eval.csv"), "neg_mae")]:
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [int(r["step"]) for r in rows], tag
        assert [s.value for s in scalars] == pytest.approx([float(r[column]) for r in rows], rel=1e-5), tag
    assert [int(r["step"]) for r in _csv(tmp_path / "log.csv")] == [2, 4, 6, 8]
    assert [int(r["step"]) for r in _csv(tmp_path / "eval.csv")] == [4, 8]


def test_no_tensorboard_files_without_the_flag(tmp_path):
    _fit(tmp_path)
    assert not (tmp_path / "tb").exists()


def test_missing_tensorboard_extra_stops_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)   # import tensorboard -> ImportError
    with pytest.raises(MissingExtraError, match=r"train.tensorboard=true needs the 'tensorboard' extra") as e:
        _fit(tmp_path, "train.tensorboard=true")
    assert "\n" not in str(e.value) and 'pip install "hoikit[tensorboard]"' in str(e.value)
    assert not (tmp_path / "last.pt").exists()


def test_evaluation_after_each_epoch_shows_a_progress_bar(tmp_path, capsys):
    _fit(tmp_path)
    err = capsys.readouterr().err
    # 6 evaluation images in batches of 4: 2 batches, after epoch 1 and after epoch 2
    assert "eval epoch 1: 100%" in err and "eval epoch 2: 100%" in err and "2/2" in err, err[-500:]
