"""What ``--resume`` restores and what it lets change (issue 13, items 6-7): the run's own config comes
from its ``last.pt``; an override of a key that would change the experiment (lr, batch size, data,
model, seed) is refused in one line naming the key and both values; ``train.epochs`` may grow; the
config recorded in the checkpoint is the one the resumed run used."""
import pytest
import torch

from engine_toy import ToyDataset, ToyEvaluator, ToyModel, toy_collate
from hoikit.cli import main
from hoikit.config import load_config, to_dict
from hoikit.io.checkpoint import load_checkpoint, model_checkpoint, save_checkpoint
from hoikit.engine.resume import resume_config
from hoikit.engine.trainer import fit, seed_everything
from hoikit.errors import ConfigError


def _stored_run(out, *overrides):
    """A run directory whose last.pt holds the config of ``synth_rmlr`` + ``overrides`` (no training)."""
    cfg = load_config("synth_rmlr", [f"output_dir={out}", *overrides])
    save_checkpoint(model_checkpoint(torch.nn.Linear(1, 1), to_dict(cfg), {}), out / "last.pt")
    return cfg


@pytest.mark.parametrize("override, key, old, new", [
    ("train.lr=0.001", "train.lr", "0.0005", "0.001"),
    ("train.batch_size=2", "train.batch_size", "4", "2"),
    ("data.synth_train=50", "data.synth_train", "16", "50"),
    ("model.rmlr.ablation=plain", "model.rmlr.ablation", "'full'", "'plain'"),
    ("seed=1", "seed", "42", "1"),
])
def test_cli_refuses_a_change_of_the_experiment_in_one_line(tmp_path, capsys, override, key, old, new):
    _stored_run(tmp_path, "data.synth_train=16", "train.batch_size=4")
    assert main(["train", "synth_rmlr", override, "--resume", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert f"{key}={new} differs from the run's {key}={old} ({tmp_path / 'last.pt'})" in err
    assert not (tmp_path / "log.csv").exists()                # refused before anything was built or written


def test_cli_refuses_fewer_epochs(tmp_path, capsys):
    _stored_run(tmp_path, "train.epochs=5")
    assert main(["train", "synth_rmlr", "train.epochs=3", "--resume", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.epochs=3 is shorter than the run's train.epochs=5" in err and "\n" not in err


def test_resume_config_is_the_runs_own_plus_allowed_overrides(tmp_path):
    stored = _stored_run(tmp_path, "data.synth_train=16", "data.root=/somewhere", "train.lr=3e-4")
    cfg = resume_config(str(tmp_path), ["train.epochs=9", "train.max_steps=3", "eval.threshold=0.1",
                                        "data.num_workers=0", "train.checkpoint_every=5"])
    # the original overrides are kept without being repeated (the preset says 2000 / data/synthhoi / 5e-4)
    assert (cfg.data.synth_train, cfg.data.root, cfg.train.lr) == (16, "/somewhere", 3e-4)
    assert (cfg.train.epochs, cfg.train.max_steps, cfg.eval.threshold, cfg.train.checkpoint_every) == (9, 3, 0.1, 5)
    assert cfg.output_dir == str(tmp_path)
    # everything else is the stored config
    a, b = to_dict(stored), to_dict(cfg)
    assert a["model"] == b["model"] and a["data"] == {**b["data"], "num_workers": a["data"]["num_workers"]}
    assert a["seed"] == b["seed"]


def test_an_unknown_or_mistyped_override_on_resume_names_the_key(tmp_path):
    _stored_run(tmp_path)
    with pytest.raises(ConfigError, match="train.no_such_key"):
        resume_config(str(tmp_path), ["train.no_such_key=1"])


def _toy_cfg(out, *overrides):
    return load_config(None, [f"output_dir={out}", "train.epochs=2", "train.batch_size=4", "train.lr=0.01",
                              "data.num_workers=0", "train.log_every=1", *overrides])


def _toy_fit(cfg, resume=False):
    torch.set_num_threads(1)
    seed_everything(cfg.seed)
    test = ToyDataset(6, 2)
    return fit(cfg, ToyModel(), ToyDataset(24, 1), collate_fn=toy_collate, eval_set=test,
               make_evaluator=lambda: ToyEvaluator(test), primary_metric="neg_mae", resume=resume)


def test_library_fit_refuses_an_lr_change_and_applies_longer_epochs(tmp_path, capsys):
    _toy_fit(_toy_cfg(tmp_path, "train.max_steps=3"))
    with pytest.raises(ConfigError, match=r"train.lr=0.02 differs from the run's train.lr=0.01"):
        _toy_fit(_toy_cfg(tmp_path, "train.lr=0.02"), resume=True)   # the optimizer state would overwrite it
    capsys.readouterr()
    state = _toy_fit(_toy_cfg(tmp_path, "train.epochs=3"), resume=True)
    assert "resumed from" in capsys.readouterr().out.split("train.epochs 2 -> 3")[0]   # the change is logged
    assert state.step == 18                                   # 3 epochs of 6 steps: the longer run was applied
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["config"]["train"]["epochs"] == 3 and ck["config"]["train"]["max_steps"] == 0   # what it used
