"""Learning-rate schedules, stepped once per optimizer step.

* ``step``: x0.1 every ``lr_drop`` epochs (DETR / UPT: ``StepLR(optimizer, lr_drop)``, gamma 0.1,
  facebookresearch/detr main.py), expressed in optimizer steps.
* ``cosine``: ``0.5 * (1 + cos(pi * t / T))`` over the ``T`` optimizer steps of the run.
* optional linear warm-up over ``warmup_iters`` steps, multiplied onto either schedule.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

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


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int,
                    epoch_steps: Optional[Sequence[int]] = None, start_step: int = 0) -> LambdaLR:
    """LambdaLR over optimizer steps for ``cfg.schedule``.

    Cosine's ``T`` is ``epochs * steps_per_epoch`` (or ``sum(epoch_steps)``); ``max_steps`` only
    stops a run early (like an interruption), it does not reshape the schedule, so a run stopped by
    it resumes exactly. ``start_step`` places a new scheduler at global step ``t`` (a rebuilt optimizer
    at a phase switch continues the run's schedule): group rates become ``base_lr * factor(t)``.
    """
    total = cfg.epochs * steps_per_epoch
    factor = LRFactor(cfg.schedule, total, steps_per_epoch, cfg.lr_drop, cfg.warmup_iters, epoch_steps)
    if not start_step:
        return LambdaLR(optimizer, factor)
    # LambdaLR's own way to start mid-run: base rates from each group's "initial_lr" (kept when an
    # earlier scheduler set it, else the current rate, as a fresh LambdaLR takes them), and its
    # first step lands on t = start_step: group rates become base_lr * factor(start_step)
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])
    return LambdaLR(optimizer, factor, last_epoch=int(start_step) - 1)
