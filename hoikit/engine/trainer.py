"""The training loop :func:`fit`: epochs of :func:`~hoikit.engine.epoch.train_one_epoch` with
checkpoints, exact resume, DDP, evaluation and logging around them. The objects of one ``fit``
call and the parts of its epoch loop (set-up, resume, loaders, phase switches, checkpoints) are
:class:`hoikit.engine.run.TrainingRun`; one epoch, one evaluation and what they share (:class:`TrainState`,
:func:`seed_everything`, :func:`build_optimizer`) are in :mod:`hoikit.engine.epoch` and re-exported
here. Import direction: trainer -> run -> epoch (and trainer -> epoch).

Model contract (docs/architecture.md): ``model(images, targets)`` returns a dict of weighted
scalar losses in training mode (summed over ``loss_*`` keys); in eval mode ``model(images)``
returns raw outputs that ``model.postprocess(outputs, targets)`` turns into per-image predictions.

Exact resume: the data order comes from :class:`~hoikit.engine.sampler.ResumableSampler`,
augmentation randomness from :class:`~hoikit.engine.sampler.SeededDataset`, and every other
random draw (dropout, ...) from the global generators, whose states (one per rank) are checkpointed
with model, optimizer, scheduler and AMP scaler. A resumed run therefore replays the same
arithmetic as an uninterrupted one and ends with bit-identical weights (tests/engine).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch.utils.data import Dataset

from ..config import Config
from . import distributed as D
from .epoch import (Callback, TrainState, build_optimizer, evaluate,  # noqa: F401  (re-exported)
                    seed_everything, train_one_epoch)
from ..eval.adapters import EvalTask
from .run import TrainingRun


def fit(cfg: Config, model: torch.nn.Module, train_set: Dataset, *, collate_fn: Callable, meta: Optional[dict] = None,
        eval_set: Optional[Dataset] = None, make_evaluator: Optional[Callable] = None, primary_metric: str = "",
        resume: bool = False, callback: Optional[Callback] = None, info: Optional[D.DistInfo] = None,
        evals: Optional[Sequence[EvalTask]] = None) -> TrainState:
    """Train ``model`` on ``train_set`` following ``cfg.train``; write checkpoints and logs to
    ``cfg.output_dir`` (``last.pt`` every epoch and every ``cfg.train.checkpoint_every`` steps,
    ``best.pt`` on a better ``primary_metric``).

    Args:
        cfg: full config (saved in every checkpoint).
        model: freshly built model (on CPU); moved to the device and wrapped in DDP here.
        train_set: map-style dataset of ``(image, target)`` pairs, or a
            :class:`~hoikit.engine.phases.PhasedTrainingSet`: then every epoch has a phase; at a phase
            change the recipe's ``set_phase(model, phase)`` switches the model and a new optimizer
            gets the recipe's ``param_groups(model, cfg, phase)`` (the schedule continues at the global
            step), and the epoch's batches alternate between the phase's datasets.
        collate_fn: batches them (``hoikit.data.dataset.collate``).
        meta: ``DatasetMeta.to_dict()`` stored in checkpoints (names for predict).
        eval_set, make_evaluator: evaluation every ``cfg.train.eval_every`` epochs and at the end.
        primary_metric: metric key that selects ``best.pt`` (higher is better).
        resume: continue from ``cfg.output_dir/last.pt``; ``cfg`` may differ from the checkpoint's config
            only in :data:`hoikit.engine.resume.RESUMABLE` keys (ConfigError otherwise).
        callback: called with ("step" | "checkpoint", state) (tests, custom hooks).
        info: distributed info from :func:`hoikit.engine.distributed.init_distributed`.
        evals: several evaluations (:class:`~hoikit.eval.adapters.EvalTask`), metrics merged;
            ``eval_set`` / ``make_evaluator`` add one more.
    """
    info = info or D.init_distributed(cfg.train.device)
    t = cfg.train
    run = TrainingRun(cfg, model, train_set, collate_fn, meta, info, callback)
    run.start(resume)
    tasks = list(evals or [])
    if eval_set is not None and make_evaluator is not None:
        tasks.append(EvalTask(eval_set, make_evaluator))
    eval_loaders = run.eval_loaders(tasks)
    state = run.state
    stopped = False
    while state.epoch < t.epochs and not stopped:
        steps_per_epoch = run.epoch_steps[state.epoch]
        loader = run.epoch_loader()
        stopped = not train_one_epoch(run.model, loader, run.optimizer, run.scheduler, run.scaler, state, cfg=cfg,
                                      device=info.device, logger=run.logger, epochs=t.epochs,
                                      steps_per_epoch=steps_per_epoch, callback=callback, save=run.save)
        if stopped and state.iteration < steps_per_epoch:
            run.save()
            break
        state.epoch, state.iteration = state.epoch + 1, 0
        metrics = None
        if eval_loaders and (state.epoch % max(1, t.eval_every) == 0 or state.epoch == t.epochs or stopped):
            metrics = run.evaluate_epoch(eval_loaders, primary_metric)
        run.save(metrics)
        if metrics is not None:
            run.check_primary(metrics, primary_metric)
    run.logger.close()
    return state
