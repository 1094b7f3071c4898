"""One epoch of training and one evaluation pass, and what the training loop shares:
:class:`TrainState`, :data:`Callback`, :func:`seed_everything`, :func:`build_optimizer`,
:func:`train_one_epoch` and :func:`evaluate`.

Import direction: :mod:`hoikit.engine.run` (the objects of one ``fit`` call) and
:mod:`hoikit.engine.trainer` (``fit``) both import this module; it imports neither. ``trainer``
re-exports these names, so ``from hoikit.engine.trainer import evaluate, seed_everything`` works.
Model contract and exact resume: see :mod:`hoikit.engine.trainer`.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from ..config import Config
from ..errors import TrainingError
from ..recipes import Recipe, get_recipe
from . import distributed as D
from ..io.checkpoint import rng_state, set_rng_state
from .logging import TrainLogger
from .testing import collect_predictions, to_device as _to_device


OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}   # train.optimizer (checked at load)


@dataclass
class TrainState:
    """Position of a run. ``epoch``/``iteration`` index the NEXT batch; ``step`` counts optimizer steps done."""

    epoch: int = 0
    iteration: int = 0
    step: int = 0
    best: Optional[float] = None
    best_epoch: int = -1
    last_checkpoint: Optional[Path] = None
    metrics: Optional[Dict[str, float]] = None


Callback = Callable[[str, TrainState], None]  # event ("step" | "checkpoint"), state


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def build_optimizer(model: torch.nn.Module, cfg: Config, phase: Optional[str] = None) -> torch.optim.Optimizer:
    """AdamW/Adam over the parameter groups of the model family's recipe
    (:meth:`hoikit.recipes.base.Recipe.param_groups` for ``phase``: e.g. SG2HOI+'s phase-dependent
    learning rates; by default parameters whose name contains ``backbone`` use ``cfg.train.lr_backbone``
    and the rest ``cfg.train.lr``, DETR's convention).
    """
    t = cfg.train
    groups = get_recipe(cfg.model.arch).param_groups(model, cfg, phase)
    if not groups:
        raise TrainingError("the model has no trainable parameters (everything frozen?)")
    return OPTIMIZERS[t.optimizer](groups, lr=t.lr, weight_decay=t.weight_decay)


def train_one_epoch(model, loader, optimizer, scheduler, scaler, state: TrainState, *, cfg: Config,
                    device: torch.device, logger: TrainLogger, epochs: int, steps_per_epoch: int,
                    callback: Optional[Callback] = None, save: Optional[Callable[[], None]] = None) -> bool:
    """Train from ``state.iteration`` to the end of ``state.epoch`` (or ``cfg.train.max_steps``).

    ``save`` (when given) writes a mid-epoch checkpoint every ``cfg.train.checkpoint_every`` optimizer
    steps; the epoch's last step and a ``max_steps`` stop are left to the caller, which saves there.

    Returns:
        True when the epoch ran to its end, False when ``max_steps`` stopped it.

    Raises:
        TrainingError: a non-finite loss, or a TrainingError raised inside the model's forward (e.g.
            non-finite predictions reaching the Hungarian matcher), naming the step, epoch, iteration
            and the last good checkpoint.
    """
    t = cfg.train
    model.train()
    amp = t.amp and device.type == "cuda"
    params = [p for g in optimizer.param_groups for p in g["params"]]
    logger.start_epoch(state.epoch, epochs, steps_per_epoch, state.iteration)

    def stop(what: str, detail: str) -> TrainingError:
        logger.end_epoch()
        return TrainingError(f"{what} at step {state.step + 1} (epoch {state.epoch + 1}, iteration "
                             f"{state.iteration + 1}/{steps_per_epoch}): {detail}; training stopped, last "
                             f"good checkpoint: {state.last_checkpoint or 'none written yet'}")

    for images, targets in loader:
        images, targets = _to_device(images, targets, device)
        losses, loss = _checked_forward(model, images, targets, device, amp, stop)
        lr = _optimizer_step(loss, optimizer, scheduler, scaler, params, t.clip_max_norm)
        state.step += 1
        state.iteration += 1
        if state.step % max(1, t.log_every) == 0 or state.iteration == steps_per_epoch:
            values = D.reduce_dict({**{k: v for k, v in losses.items() if k.startswith("loss")}, "loss": loss})
            values["lr"] = lr
            logger.log_train(state.epoch, state.step, values)
        logger.step({"loss": float(loss.detach())})
        max_steps_hit = t.max_steps > 0 and state.step >= t.max_steps
        if (save is not None and t.checkpoint_every > 0 and state.step % t.checkpoint_every == 0
                and state.iteration < steps_per_epoch and not max_steps_hit):
            save()
        if callback is not None:
            callback("step", state)
        if max_steps_hit:
            logger.end_epoch()
            return False
    logger.end_epoch()
    return True


def _checked_forward(model, images, targets, device: torch.device, amp: bool,
                     stop: Callable[[str, str], TrainingError]):
    """Forward of one training step; stops every rank when the model failed or the loss is not finite.

    Under DDP the ranks agree before the backward (one all-reduce of two flags per step): a
    TrainingError raised inside the forward of ONE rank, or a non-finite loss on one rank, makes every
    rank raise the same error (naming the failing rank), instead of the others waiting forever in
    the gradient all-reduce.

    Returns:
        ``(losses, loss)``: the model's loss dict and the scalar sum of its ``loss*`` entries.

    Raises:
        the TrainingError built by ``stop(what, detail)``.
    """
    error, losses, loss = None, None, None
    try:
        with torch.autocast(device.type, enabled=amp):
            losses = model(images, targets)
    except TrainingError as e:   # raised inside the model, e.g. NaN predictions reaching the matcher
        error = str(e)
    if losses is not None:
        loss = sum(v for k, v in losses.items() if k.startswith("loss"))
    failed, bad = error is not None, loss is not None and not bool(torch.isfinite(loss.detach()).all())
    if D.get_world_size() > 1:
        failed, bad = D.any_true_each([failed, bad], device)
        if failed:  # every rank learns which one failed and why (only on this path: one more collective)
            errors = D.all_gather_objects(error)
            rank = next(r for r, e in enumerate(errors) if e is not None)
            raise stop(f"error in the model's forward on rank {rank}", errors[rank])
    if failed:
        raise stop("error in the model's forward", error)
    if bad:
        terms = [f"{k}={float(v.detach()):.4g}" for k, v in losses.items() if k.startswith("loss")
                 and not math.isfinite(float(v.detach()))] or [f"loss={float(loss.detach()):.4g} (on another rank)"]
        raise stop("non-finite loss", ', '.join(terms))
    return losses, loss


def _optimizer_step(loss: torch.Tensor, optimizer, scheduler, scaler, params: List[torch.Tensor],
                    clip_max_norm: float) -> float:
    """Backward (AMP-scaled), optional gradient clipping, optimizer and schedule step.

    Returns:
        the learning rate of the first parameter group this step used.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_max_norm > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, clip_max_norm)
    lr = optimizer.param_groups[0]["lr"]
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return lr


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, make_evaluator: Callable, device: torch.device,
             task: Optional[str] = None, progress: Optional[str] = None,
             recipe: Optional[Recipe] = None) -> Dict[str, float]:
    """Run the model over ``loader``, gather predictions on rank 0, score them there.

    Args:
        make_evaluator: returns an object with ``add(index, prediction)`` and ``compute() -> dict``
            (prediction = one element of ``model.postprocess``; index = ``target["index"]``).
        task: passed as ``model.postprocess(..., task=task)`` (multi-task models, e.g. SG2HOI+'s
            ``sgg`` / ``hoi``); None = the model's default.
        progress: description of a progress bar over the batches, shown on rank 0 (None = no bar).
        recipe: the model family's recipe (how its forward and postprocess run); None = plain.

    Returns:
        metrics (identical on every rank).

    The global random generators are restored afterwards, so evaluating (or not) never changes the
    training that follows (a run stopped and evaluated by ``max_steps`` resumes exactly).
    """
    saved = rng_state()
    try:
        return _evaluate(model, loader, make_evaluator, device, task, progress, recipe)
    finally:
        set_rng_state(saved)


def _evaluate(model, loader, make_evaluator, device, task, progress, recipe) -> Dict[str, float]:
    merged = collect_predictions(model, loader, device, task, progress=progress, recipe=recipe)  # as `hoikit test`
    metrics = None
    if merged is not None:
        ev = make_evaluator()
        for index in sorted(merged):
            ev.add(index, merged[index])
        metrics = {k: (float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in ev.compute().items()}
    return D.broadcast_object(metrics)
