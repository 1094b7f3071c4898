"""Train a model from its config: the training data, the model, the run directory's
``config.yaml`` and ``curves.png`` around :func:`hoikit.engine.trainer.fit`.

:func:`train` is what ``hoikit train`` runs (the command adds the argument parsing, the checks of the
output directory and the summary line); ``hoikit demo`` and the benchmarks call it directly.
"""
from __future__ import annotations

from pathlib import Path

from .config import Config, to_yaml
from .data.dataset import collate
from .engine import distributed as D
from .engine import trainer
from .engine.datasets import build_training_data
from .recipes import build_model, meta_to_dict
from .viz.plots import plot_training_curves


def train(cfg: Config, resume: bool = False, with_eval: bool = True):
    """Train ``cfg`` (datasets, model, evaluator from the config). Returns ``(TrainState, TrainingData)``.

    ``with_eval=False`` skips every evaluation (callers that evaluate themselves, e.g. ``hoikit demo``).
    Under torchrun this is the rendezvous (``init_distributed``); the caller calls
    :func:`hoikit.engine.distributed.cleanup` when done.
    """
    info = D.init_distributed(cfg.train.device)
    data = build_training_data(cfg, with_eval=with_eval)
    trainer.seed_everything(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg, data.meta)
    out = Path(cfg.output_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(to_yaml(cfg))  # after build: builders may fill derived fields
    # trainer.fit looked up at call time: benchmarks/kill_train.py wraps it to inject a fault
    state = trainer.fit(cfg, model, data.train_set, collate_fn=collate, meta=meta_to_dict(cfg.model.arch, data.meta),
                        eval_set=data.eval_set, make_evaluator=data.make_evaluator, primary_metric=data.primary,
                        evals=data.evals, resume=resume, info=info)
    if info.is_main:
        plot_training_curves(out, out / "curves.png")
    return state, data
