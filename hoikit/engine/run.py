"""The objects of one :func:`hoikit.engine.trainer.fit` call and the parts of its epoch loop:
:class:`TrainingRun` (set-up and resume, DDP wrapping, the loaders of every epoch and evaluation, phase
switches of a :class:`~hoikit.engine.phases.PhasedTrainingSet`, end-of-epoch evaluation and
checkpoints), with its helpers :func:`_epoch_steps` and :func:`_loader`.

Import direction: trainer (``fit``) -> this module -> :mod:`hoikit.engine.epoch` (the building
blocks :class:`~hoikit.engine.epoch.TrainState`, ``build_optimizer``, ``seed_everything``, ``evaluate``).
How exact resume works is described in :mod:`hoikit.engine.trainer`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..config import Config, to_dict
from ..errors import ConfigError, DataError
from ..io.checkpoint import (load_checkpoint, load_model_state, rng_state, save_checkpoint, set_rng_state,
                             training_checkpoint)
from . import distributed as D
from ..eval.adapters import EvalTask
from ..recipes import get_recipe
from .phases import PhasedTrainingSet
from .resume import check_resume_changes, stored_config
from .logging import TrainLogger
from .sampler import ResumableSampler, SeededDataset, epoch_generator, worker_init
from .schedule import StepMap, build_scheduler
from .epoch import Callback, TrainState, build_optimizer, evaluate, seed_everything


def _loader(dataset: Dataset, sampler, batch_size: int, collate_fn, num_workers: int, drop_last: bool, generator):
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn, drop_last=drop_last,
                      num_workers=num_workers, worker_init_fn=worker_init if num_workers > 0 else None,
                      generator=generator, persistent_workers=False)


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


def _step_map(train_set: Dataset, t, world_size: int, epoch_steps: List[int]) -> Optional[StepMap]:
    """The schedule a phased run follows when one of its phases takes another's rates
    (``PhasedTrainingSet.schedule_as``); None when every epoch follows its own steps."""
    if not isinstance(train_set, PhasedTrainingSet) or not train_set.schedule_as:
        return None
    ref_steps, positions, by_phase = [], [], {}
    for e, n in enumerate(epoch_steps):
        phase = train_set.phase_of(e)            # every epoch of a phase has the same positions: once each
        if phase not in by_phase:
            by_phase[phase] = train_set.schedule_positions(phase, t.batch_size, world_size)
        found = by_phase[phase]
        ref_steps.append(n if found is None else found[0])
        positions.append(None if found is None else found[1])
    if all(p is None for p in positions):
        return None
    return StepMap(epoch_steps, ref_steps, positions)


class TrainingRun:
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
        self.step_map = _step_map(train_set, self.t, info.world_size, self.epoch_steps)
        self.state = TrainState()
        self.phase: Optional[str] = None
        self.config_dict = to_dict(cfg)
        self.recipe = get_recipe(cfg.model.arch)
        self.seeded_phase: Dict[str, SeededDataset] = {}

    # ------------------------------------------------------------------ set-up
    def start(self, resume: bool) -> None:
        """Device, optimizer, scheduler and scaler; the resume state (or fresh seeds); DDP; logger;
        the training sampler of an unphased set."""
        t, info = self.t, self.info
        self.net.to(self.device)
        ck = load_checkpoint(self.ckpt_path) if resume else None
        changes = check_resume_changes(stored_config(ck, str(self.ckpt_path)), self.cfg, str(self.ckpt_path)) \
            if ck is not None else []
        if self.phased:  # the optimizer's phase: the checkpoint's (its optimizer state belongs to it), else epoch 0's
            phase = ck.get("phase") if ck is not None else None
            self.phase = phase or self.train_set.phase_of(ck["epoch"] if ck is not None else 0)
            self.recipe.set_phase(self.net, self.phase)
        self.optimizer = build_optimizer(self.net, self.cfg, self.phase)
        self.scheduler = build_scheduler(self.optimizer, t, self.epoch_steps[0],
                                         self.epoch_steps if self.phased else None, step_map=self.step_map)
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
            changed = "".join(f", {k} {a} -> {b}" for k, a, b in changes)
            self.logger.info(f"resumed from {self.ckpt_path} at epoch {s.epoch + 1}, iteration {s.iteration}, "
                             f"step {s.step}" + (f", phase {self.phase}" if self.phased else "") + changed)
        if self.cfg.data.zero_shot and not self.phased:      # a SeenPairsReader (engine/datasets.py)
            self.logger.info(self.train_set.reader.summary())
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
        self.recipe.set_phase(self.net, phase)
        self.optimizer = build_optimizer(self.net, self.cfg, phase)
        self.scheduler = build_scheduler(self.optimizer, self.t, self.epoch_steps[0], self.epoch_steps,
                                         start_step=self.state.step, step_map=self.step_map)
        self.model = self._wrap()  # DDP's reducer must see the phase's trainable parameters
        rates = ", ".join(f"{g.get('name', i)} lr={g['lr']:.2e}" for i, g in enumerate(self.optimizer.param_groups))
        self.logger.info(f"epoch {self.state.epoch + 1}: phase '{phase}' ({rates})")

    # ------------------------------------------------------------------ epoch end
    def evaluate_epoch(self, eval_loaders: list, primary_metric: str) -> Dict[str, float]:
        """Run every evaluation after epoch ``state.epoch - 1``; log; update the best metric."""
        s, metrics = self.state, {}
        for eval_loader, task in eval_loaders:
            desc = f"eval epoch {s.epoch}" + (f" ({task.task})" if task.task else "")
            metrics.update(evaluate(self.model, eval_loader, task.make_evaluator, self.device, task.task, desc,
                                    self.recipe))
        s.metrics = metrics
        self.logger.log_eval(s.epoch - 1, s.step, metrics)
        value = metrics.get(primary_metric)
        if isinstance(value, float) and (s.best is None or value > s.best):
            s.best, s.best_epoch = value, s.epoch - 1
        return metrics

    @staticmethod
    def check_primary(metrics: Dict[str, float], primary_metric: str) -> None:
        """A ``best.pt`` metric the evaluation does not produce is a one-line ConfigError (raised after
        ``last.pt`` is written, so the epoch is kept: fix ``eval.primary_metric`` and ``--resume``)."""
        if metrics and primary_metric and primary_metric not in metrics:
            raise ConfigError(f"eval.primary_metric: '{primary_metric}' is not a metric of this run's evaluation "
                              f"(choose one of {', '.join(sorted(metrics))})")

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
