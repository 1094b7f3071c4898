"""The training loop: :func:`train_one_epoch`, :func:`evaluate` and :func:`fit`, which adds
checkpoints, exact resume, DDP and logging around them.

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

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import Config, to_dict
from ..errors import ConfigError, DataError, TrainingError
from . import distributed as D
from .evaluation import EvalTask
from .phases import PhasedTrainingSet
from .checkpoint import (load_checkpoint, load_model_state, rng_state, save_checkpoint, set_rng_state,
                         training_checkpoint)
from .logging import TrainLogger
from .sampler import ResumableSampler, SeededDataset, epoch_generator, worker_init
from .testing import collect_predictions, to_device as _to_device
from .schedule import build_scheduler


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
    """AdamW/Adam over trainable parameters.

    Parameter groups come from ``model.param_groups(cfg[, phase])`` when the model defines it (e.g.
    SG2HOI+'s phase-dependent learning rates); otherwise parameters whose name contains ``backbone``
    use ``cfg.train.lr_backbone`` and the rest ``cfg.train.lr`` (DETR convention).
    """
    t = cfg.train
    if hasattr(model, "param_groups"):
        groups = model.param_groups(cfg, phase) if phase is not None else model.param_groups(cfg)
    else:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in named if "backbone" not in n], "lr": t.lr},
                  {"params": [p for n, p in named if "backbone" in n], "lr": t.lr_backbone}]
        groups = [g for g in groups if g["params"]]
    if not groups:
        raise TrainingError("the model has no trainable parameters (everything frozen?)")
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay)
    raise ConfigError(f"config key 'train.optimizer': unknown optimizer '{t.optimizer}' (adamw | adam)")


def train_one_epoch(model, loader, optimizer, scheduler, scaler, state: TrainState, *, cfg: Config,
                    device: torch.device, logger: TrainLogger, epochs: int, steps_per_epoch: int,
                    callback: Optional[Callback] = None) -> bool:
    """Train from ``state.iteration`` to the end of ``state.epoch`` (or ``cfg.train.max_steps``).

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
        if callback is not None:
            callback("step", state)
        if t.max_steps > 0 and state.step >= t.max_steps:
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
             task: Optional[str] = None) -> Dict[str, float]:
    """Run the model over ``loader``, gather predictions on rank 0, score them there.

    Args:
        make_evaluator: returns an object with ``add(index, prediction)`` and ``compute() -> dict``
            (prediction = one element of ``model.postprocess``; index = ``target["index"]``).
        task: passed as ``model.postprocess(..., task=task)`` (multi-task models, e.g. SG2HOI+'s
            ``sgg`` / ``hoi``); None = the model's default.

    Returns:
        metrics (identical on every rank).

    The global random generators are restored afterwards, so evaluating (or not) never changes the
    training that follows (a run stopped and evaluated by ``max_steps`` resumes exactly).
    """
    saved = rng_state()
    try:
        return _evaluate(model, loader, make_evaluator, device, task)
    finally:
        set_rng_state(saved)


def _evaluate(model, loader, make_evaluator, device, task) -> Dict[str, float]:
    merged = collect_predictions(model, loader, device, task)   # shared with `hoikit test`
    metrics = None
    if merged is not None:
        ev = make_evaluator()
        for index in sorted(merged):
            ev.add(index, merged[index])
        metrics = {k: (float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in ev.compute().items()}
    return D.broadcast_object(metrics)


def _loader(dataset: Dataset, sampler, batch_size: int, collate_fn, num_workers: int, drop_last: bool, generator):
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn, drop_last=drop_last,
                      num_workers=num_workers, worker_init_fn=worker_init if num_workers > 0 else None,
                      generator=generator, persistent_workers=False)



def fit(cfg: Config, model: torch.nn.Module, train_set: Dataset, *, collate_fn: Callable, meta: Optional[dict] = None,
        eval_set: Optional[Dataset] = None, make_evaluator: Optional[Callable] = None, primary_metric: str = "",
        resume: bool = False, callback: Optional[Callback] = None, info: Optional[D.DistInfo] = None,
        evals: Optional[Sequence[EvalTask]] = None) -> TrainState:
    """Train ``model`` on ``train_set`` following ``cfg.train``; write checkpoints and logs to
    ``cfg.output_dir`` (``last.pt`` every epoch, ``best.pt`` on a better ``primary_metric``).

    Args:
        cfg: full config (saved in every checkpoint).
        model: freshly built model (on CPU); moved to the device and wrapped in DDP here.
        train_set: map-style dataset of ``(image, target)`` pairs, or a
            :class:`~hoikit.engine.phases.PhasedTrainingSet`: then every epoch has a phase; at a phase
            change the model gets ``model.set_phase(phase)`` and a new optimizer from
            ``model.param_groups(cfg, phase)`` (the schedule continues at the global step), and the
            epoch's batches alternate between the phase's datasets.
        collate_fn: batches them (``hoikit.data.dataset.collate``).
        meta: ``DatasetMeta.to_dict()`` stored in checkpoints (names for predict).
        eval_set, make_evaluator: evaluation every ``cfg.train.eval_every`` epochs and at the end.
        primary_metric: metric key that selects ``best.pt`` (higher is better).
        resume: continue from ``cfg.output_dir/last.pt``.
        callback: called with ("step" | "checkpoint", state) (tests, custom hooks).
        info: distributed info from :func:`hoikit.engine.distributed.init_distributed`.
        evals: several evaluations (:class:`~hoikit.engine.evaluation.EvalTask`), metrics merged;
            ``eval_set`` / ``make_evaluator`` add one more.
    """
    info = info or D.init_distributed(cfg.train.device)
    t = cfg.train
    run = _Run(cfg, model, train_set, collate_fn, meta, info, callback)
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
                                      steps_per_epoch=steps_per_epoch, callback=callback)
        if stopped and state.iteration < steps_per_epoch:
            run.save()
            break
        state.epoch, state.iteration = state.epoch + 1, 0
        metrics = None
        if eval_loaders and (state.epoch % max(1, t.eval_every) == 0 or state.epoch == t.epochs or stopped):
            metrics = run.evaluate_epoch(eval_loaders, primary_metric)
        run.save(metrics)
    run.logger.close()
    return state


def _epoch_steps(train_set: Dataset, t, world_size: int) -> List[int]:
    """Optimizer steps of every epoch on each rank (``[epochs]``).

    Raises:
        DataError: an epoch would have no full batch.
    """
    if isinstance(train_set, PhasedTrainingSet):
        steps = [train_set.sampler(train_set.phase_of(e), t.batch_size, world_size).steps() for e in range(t.epochs)]
        bad = [e for e, n in enumerate(steps) if n == 0]
        if bad:
            ph = train_set.phase_of(bad[0])
            sizes = ", ".join(f"{n}={len(train_set.parts[n])}" for n in train_set.part_names(ph))
            raise DataError(f"training set of phase '{ph}' (epoch {bad[0] + 1}): {sizes} images for "
                            f"{world_size} process(es), fewer than train.batch_size={t.batch_size} per part")
        return steps
    per_rank = len(train_set) // world_size
    if per_rank // t.batch_size == 0:
        raise DataError(f"training set: {len(train_set)} images for {world_size} process(es) is fewer than "
                        f"train.batch_size={t.batch_size}")
    return [per_rank // t.batch_size] * max(1, t.epochs)


class _Run:
    """The objects of one :func:`fit` call and the parts of its epoch loop.

    ``net`` is the bare model, ``model`` the one trained (``net`` wrapped in DDP when distributed);
    ``optimizer`` / ``scheduler`` are rebuilt at a phase change of a phased training set.
    """

    def __init__(self, cfg: Config, net: torch.nn.Module, train_set: Dataset, collate_fn: Callable,
                 meta: Optional[dict], info: D.DistInfo, callback: Optional[Callback]):
        self.cfg, self.t, self.info, self.device = cfg, cfg.train, info, info.device
        self.out = Path(cfg.output_dir)
        self.ckpt_path = self.out / "last.pt"
        self.net, self.model, self.train_set = net, net, train_set
        self.collate_fn, self.meta, self.callback = collate_fn, meta or {}, callback
        self.phased = isinstance(train_set, PhasedTrainingSet)
        self.epoch_steps = _epoch_steps(train_set, self.t, info.world_size)
        self.state = TrainState()
        self.phase: Optional[str] = None
        self.config_dict = to_dict(cfg)
        self.seeded_phase: Dict[str, SeededDataset] = {}

    # ------------------------------------------------------------------ set-up
    def start(self, resume: bool) -> None:
        """Device, optimizer, scheduler and scaler; the resume state (or fresh seeds); DDP; logger;
        the training sampler of an unphased set."""
        t, info = self.t, self.info
        self.net.to(self.device)
        ck = load_checkpoint(self.ckpt_path) if resume else None
        if self.phased:  # the optimizer's phase: the checkpoint's (its optimizer state belongs to it), else epoch 0's
            phase = ck.get("phase") if ck is not None else None
            self.phase = phase or self.train_set.phase_of(ck["epoch"] if ck is not None else 0)
            self.net.set_phase(self.phase)
        self.optimizer = build_optimizer(self.net, self.cfg, self.phase)
        self.scheduler = build_scheduler(self.optimizer, t, self.epoch_steps[0],
                                         self.epoch_steps if self.phased else None)
        self.scaler = torch.amp.GradScaler("cuda", enabled=t.amp and self.device.type == "cuda")
        if ck is not None:
            self._restore(ck)
        else:
            seed_everything(self.cfg.seed + info.rank)
        self.model = self._wrap()
        self.logger = TrainLogger(self.out, info.is_main, t.tensorboard,
                                  keep_until_step=self.state.step if resume else None)
        if resume:
            s = self.state
            self.logger.info(f"resumed from {self.ckpt_path} at epoch {s.epoch + 1}, iteration {s.iteration}, "
                             f"step {s.step}" + (f", phase {self.phase}" if self.phased else ""))
        if not self.phased:
            self.seeded = SeededDataset(self.train_set, self.cfg.seed)
            self.sampler = ResumableSampler(len(self.train_set), info.world_size, info.rank, self.cfg.seed,
                                            shuffle=True, drop_last=True)

    def _restore(self, ck: dict) -> None:
        """Model, optimizer, scheduler position, scaler, run position and per-rank RNG states of ``last.pt``."""
        load_model_state(self.net, ck["model"], str(self.ckpt_path))
        self.optimizer.load_state_dict(ck["optimizer"])
        # the schedule's shape comes from the (possibly edited) config, only its position from the file
        self.scheduler.load_state_dict({**ck["scheduler"], "lr_lambdas": [None] * len(self.scheduler.lr_lambdas)})
        self.scaler.load_state_dict(ck["scaler"])
        self.state = TrainState(epoch=ck["epoch"], iteration=ck["iteration"], step=ck["step"], best=ck["best"],
                                best_epoch=ck["best_epoch"], last_checkpoint=self.ckpt_path)
        rngs = ck["rng"]
        if len(rngs) == self.info.world_size:
            set_rng_state(rngs[self.info.rank])
        else:  # another number of processes: fresh, step-dependent seeds
            seed_everything(self.cfg.seed + 7919 * self.state.step + self.info.rank)

    def _wrap(self) -> torch.nn.Module:
        """``net`` in DistributedDataParallel when distributed (else ``net``)."""
        if not self.info.distributed:
            return self.net
        return torch.nn.parallel.DistributedDataParallel(
            self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=getattr(self.net, "find_unused_parameters", False))

    def eval_loaders(self, tasks: Sequence[EvalTask]) -> list:
        """``(loader, task)`` per evaluation; each rank reads its shard in order."""
        info, t = self.info, self.t
        loaders = []
        for task in tasks:
            sampler = ResumableSampler(len(task.dataset), info.world_size, info.rank, shuffle=False)
            loaders.append((_loader(task.dataset, sampler, t.batch_size, self.collate_fn, self.cfg.data.num_workers,
                                    False, torch.Generator()), task))
        return loaders

    # ------------------------------------------------------------------ one epoch
    def epoch_loader(self) -> DataLoader:
        """The loader of ``state.epoch`` from ``state.iteration`` on (switching phase first if due)."""
        t, info, s, nw, seed = self.t, self.info, self.state, self.cfg.data.num_workers, self.cfg.seed
        if not self.phased:
            self.seeded.set_epoch(s.epoch)
            self.sampler.set_epoch(s.epoch, start=s.iteration * t.batch_size)
            return _loader(self.seeded, self.sampler, t.batch_size, self.collate_fn, nw, True,
                           epoch_generator(seed, s.epoch, info.rank))
        if self.train_set.phase_of(s.epoch) != self.phase:
            self._switch_phase(self.train_set.phase_of(s.epoch))
        if self.phase not in self.seeded_phase:
            self.seeded_phase[self.phase] = SeededDataset(self.train_set.dataset(self.phase), seed)
        seeded = self.seeded_phase[self.phase]
        seeded.set_epoch(s.epoch)
        batches = self.train_set.sampler(self.phase, t.batch_size, info.world_size, info.rank, seed)
        batches.set_epoch(s.epoch, start=s.iteration)
        return DataLoader(seeded, batch_sampler=batches, collate_fn=self.collate_fn, num_workers=nw,
                          worker_init_fn=worker_init if nw > 0 else None,
                          generator=epoch_generator(seed, s.epoch, info.rank))

    def _switch_phase(self, phase: str) -> None:
        """New parameter groups and fresh optimizer state; the schedule continues at the global step."""
        self.phase = phase
        self.net.set_phase(phase)
        self.optimizer = build_optimizer(self.net, self.cfg, phase)
        self.scheduler = build_scheduler(self.optimizer, self.t, self.epoch_steps[0], self.epoch_steps,
                                         start_step=self.state.step)
        self.model = self._wrap()  # DDP's reducer must see the phase's trainable parameters
        rates = ", ".join(f"{g.get('name', i)} lr={g['lr']:.2e}" for i, g in enumerate(self.optimizer.param_groups))
        self.logger.info(f"epoch {self.state.epoch + 1}: phase '{phase}' ({rates})")

    # ------------------------------------------------------------------ epoch end
    def evaluate_epoch(self, eval_loaders: list, primary_metric: str) -> Dict[str, float]:
        """Run every evaluation after epoch ``state.epoch - 1``; log; update the best metric."""
        s, metrics = self.state, {}
        for eval_loader, task in eval_loaders:
            metrics.update(evaluate(self.model, eval_loader, task.make_evaluator, self.device, task.task))
        s.metrics = metrics
        self.logger.log_eval(s.epoch - 1, s.step, metrics)
        value = metrics.get(primary_metric)
        if isinstance(value, float) and (s.best is None or value > s.best):
            s.best, s.best_epoch = value, s.epoch - 1
        return metrics

    def save(self, epoch_done_metrics: Optional[Dict[str, float]] = None) -> None:
        """Write ``last.pt`` (rank 0; every rank's RNG state inside) and ``best.pt`` when the epoch just
        evaluated is the best; then the ``checkpoint`` callback."""
        s = self.state
        rngs = D.all_gather_objects(rng_state())
        if self.info.is_main:
            ck = training_checkpoint(self.net, self.optimizer, self.scheduler, self.scaler, config=self.config_dict,
                                     meta=self.meta, epoch=s.epoch, iteration=s.iteration,
                                     step=s.step, best=s.best, best_epoch=s.best_epoch)
            ck["rng"] = rngs
            if self.phased:
                ck["phase"] = self.phase
            save_checkpoint(ck, self.ckpt_path)
            if epoch_done_metrics is not None and s.best_epoch == s.epoch - 1:
                save_checkpoint({**ck, "metrics": epoch_done_metrics}, self.out / "best.pt")
        D.barrier()
        s.last_checkpoint = self.ckpt_path
        if self.callback is not None:
            self.callback("checkpoint", s)
