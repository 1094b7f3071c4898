"""Learning-rate schedules, stepped once per optimizer step.

* ``step``: x0.1 every ``lr_drop`` epochs (DETR / UPT: ``StepLR(optimizer, lr_drop)``, gamma 0.1,
  facebookresearch/detr main.py), expressed in optimizer steps.
* ``cosine``: ``0.5 * (1 + cos(pi * t / T))`` over the ``T`` optimizer steps of the run.
* optional linear warm-up over ``warmup_iters`` steps, multiplied onto either schedule.

A :class:`StepMap` makes a run follow the schedule of another run: its step ``t`` takes the factor
of that run's step ``map(t)`` (SG2HOI+'s ``sgg_control``: the SGG batches of the joint run, without
the HOI batches between them, at the rates they get there).
"""
from __future__ import annotations

import math
from bisect import bisect_right
from typing import List, Optional, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..config import TrainConfig
from ..errors import ConfigError

STEP_GAMMA = 0.1  # DETR/UPT StepLR decay factor


class LRFactor:
    """Multiplier of the base learning rate at optimizer step ``t`` (0-based).

    Args:
        schedule: ``cosine`` | ``step``.
        total_steps: ``T``, optimizer steps of the whole run (cosine).
        steps_per_epoch: optimizer steps in one epoch (step schedule).
        lr_drop: epochs between two x0.1 drops (step schedule).
        warmup_iters: linear warm-up steps (0 = none).
        epoch_steps: optimizer steps of every epoch when they differ (phased runs, e.g. SG2HOI+'s
            SGG-only phase 1 and alternating phase 2); then ``total_steps`` is their sum and the step
            schedule drops at the first step of epochs ``lr_drop, 2 lr_drop, ...``.
    """

    def __init__(self, schedule: str, total_steps: int, steps_per_epoch: int, lr_drop: int, warmup_iters: int = 0,
                 epoch_steps: Optional[Sequence[int]] = None):
        if schedule not in ("cosine", "step"):
            raise ConfigError(f"config key 'train.schedule': unknown schedule '{schedule}' (cosine | step)")
        self.schedule = schedule
        self.total_steps = max(1, int(total_steps))
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.lr_drop = int(lr_drop)
        self.warmup_iters = int(warmup_iters)
        self.drop_steps = None
        if epoch_steps is not None:
            starts = [0]
            for n in epoch_steps:
                starts.append(starts[-1] + int(n))
            self.total_steps = max(1, starts[-1])
            self.drop_steps = [starts[e] for e in range(self.lr_drop, len(epoch_steps), self.lr_drop)] \
                if self.lr_drop > 0 else []

    def __call__(self, t: int) -> float:
        if self.schedule == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * min(t, self.total_steps) / self.total_steps))
        else:
            if self.drop_steps is not None:
                drops = sum(1 for d in self.drop_steps if t >= d)
            else:
                drops = t // (self.lr_drop * self.steps_per_epoch) if self.lr_drop > 0 else 0
            factor = STEP_GAMMA ** drops
        if self.warmup_iters > 0 and t < self.warmup_iters:
            factor *= (t + 1) / self.warmup_iters
        return factor


class StepMap:
    """This run's optimizer step -> the step of the reference run whose learning rate it takes.

    Args:
        epoch_steps: this run's optimizer steps of every epoch.
        ref_epoch_steps: the reference run's steps of every epoch (same number of epochs).
        positions: per epoch, None (the epoch is the reference's, step for step) or the index, in
            the reference's epoch, of each of this epoch's steps (increasing).

    Steps past this run's end map past the reference's end (the schedule's tail).
    """

    def __init__(self, epoch_steps: Sequence[int], ref_epoch_steps: Sequence[int],
                 positions: Sequence[Optional[Sequence[int]]]):
        if not len(epoch_steps) == len(ref_epoch_steps) == len(positions):
            raise ConfigError(f"step map: {len(epoch_steps)} epochs, reference {len(ref_epoch_steps)}, "
                              f"positions for {len(positions)}")
        self.ref_epoch_steps = [int(n) for n in ref_epoch_steps]
        self.positions: List[Optional[List[int]]] = []
        for e, (n, m, pos) in enumerate(zip(epoch_steps, self.ref_epoch_steps, positions)):
            pos = None if pos is None else [int(k) for k in pos]
            bad = (n != m) if pos is None else (len(pos) != n or any(not 0 <= a < b for a, b in zip(pos, pos[1:] + [m])))
            if bad:
                raise ConfigError(f"step map, epoch {e + 1}: {n} steps cannot follow the reference's {m}"
                                  + ("" if pos is None else f" at positions {pos[:4]}..."))
            self.positions.append(pos)
        self.starts, self.ref_starts = [0], [0]
        for n, m in zip(epoch_steps, self.ref_epoch_steps):
            self.starts.append(self.starts[-1] + int(n))
            self.ref_starts.append(self.ref_starts[-1] + m)

    def __call__(self, t: int) -> int:
        if t >= self.starts[-1]:
            return self.ref_starts[-1] + t - self.starts[-1]
        e = bisect_right(self.starts, t) - 1
        i = t - self.starts[e]
        pos = self.positions[e]
        return self.ref_starts[e] + (i if pos is None else pos[i])


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int,
                    epoch_steps: Optional[Sequence[int]] = None, start_step: int = 0,
                    step_map: Optional[StepMap] = None) -> LambdaLR:
    """LambdaLR over optimizer steps for ``cfg.schedule``.

    Cosine's ``T`` is ``epochs * steps_per_epoch`` (or ``sum(epoch_steps)``); ``max_steps`` only
    stops a run early (like an interruption), it does not reshape the schedule, so a run stopped by
    it resumes exactly. ``start_step`` places a new scheduler at global step ``t`` (a rebuilt optimizer
    at a phase switch continues the run's schedule): group rates become ``base_lr * factor(t)``.
    ``step_map``: step ``t`` takes the reference run's factor at ``step_map(t)`` (its epochs, steps
    and drops replace ``epoch_steps``).
    """
    total = cfg.epochs * steps_per_epoch
    factor = LRFactor(cfg.schedule, total, steps_per_epoch, cfg.lr_drop, cfg.warmup_iters,
                      step_map.ref_epoch_steps if step_map is not None else epoch_steps)
    if step_map is not None:
        ref = factor
        factor = lambda t: ref(step_map(t))  # noqa: E731 -- a function: LambdaLR keeps it out of state_dict()
    if not start_step:
        return LambdaLR(optimizer, factor)
    # LambdaLR's own way to start mid-run: base rates from each group's "initial_lr" (kept when an
    # earlier scheduler set it, else the current rate, as a fresh LambdaLR takes them), and its
    # first step lands on t = start_step: group rates become base_lr * factor(start_step)
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])
    return LambdaLR(optimizer, factor, last_epoch=int(start_step) - 1)
