"""Schedules against hand-computed values; sampler sharding/resume; per-sample seeded augmentation."""
import math
import random

import numpy as np
import pytest
import torch

from hoikit.config import TrainConfig
from hoikit.engine.sampler import ResumableSampler, SeededDataset
from hoikit.engine.schedule import LRFactor, build_scheduler
from hoikit.errors import ConfigError


def test_cosine_values():
    f = LRFactor("cosine", total_steps=8, steps_per_epoch=4, lr_drop=0)
    # 0.5 * (1 + cos(pi * t / 8)): t=0 -> 1, t=2 -> (1 + sqrt(2)/2) / 2, t=4 -> 0.5, t=8 -> 0
    assert f(0) == 1.0
    assert f(2) == pytest.approx((1 + math.sqrt(2) / 2) / 2, abs=1e-12)
    assert f(4) == pytest.approx(0.5, abs=1e-12)
    assert f(8) == pytest.approx(0.0, abs=1e-12) and f(20) == pytest.approx(0.0, abs=1e-12)


def test_step_values_and_warmup():
    f = LRFactor("step", total_steps=100, steps_per_epoch=5, lr_drop=2)  # drop every 10 steps
    assert [f(t) for t in (0, 9)] == [1.0, 1.0]
    assert f(10) == pytest.approx(0.1) and f(19) == pytest.approx(0.1) and f(20) == pytest.approx(0.01)
    w = LRFactor("step", total_steps=100, steps_per_epoch=5, lr_drop=10, warmup_iters=4)
    assert [w(t) for t in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    with pytest.raises(ConfigError, match="train.schedule"):
        LRFactor("linear", 1, 1, 1)


def test_scheduler_drives_the_optimizer():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.5)
    sched = build_scheduler(opt, TrainConfig(epochs=2, schedule="step", lr_drop=1), steps_per_epoch=3)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 0.5, 0.5, 0.05, 0.05, 0.05])


def test_scheduler_started_mid_run_is_the_one_stepped_there():
    """``start_step=t`` (a phase switch rebuilds the optimizer) gives the rates, ``last_epoch`` and
    following steps of a scheduler that ran from step 0 and stepped t times; groups keep their own
    base rates (two groups, warm-up and a drop inside the range)."""
    cfg = TrainConfig(epochs=4, schedule="step", lr_drop=1, warmup_iters=3)

    def fresh():
        a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
        return torch.optim.SGD([{"params": [a], "lr": 0.4}, {"params": [b], "lr": 0.03}])

    for t in (1, 2, 5, 7):
        ref_opt = fresh()
        ref = build_scheduler(ref_opt, cfg, steps_per_epoch=3)
        for _ in range(t):
            ref_opt.step()
            ref.step()
        opt = fresh()
        sched = build_scheduler(opt, cfg, steps_per_epoch=3, start_step=t)
        assert sched.last_epoch == ref.last_epoch == t
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]
        assert sched.get_last_lr() == ref.get_last_lr() and sched.base_lrs == [0.4, 0.03]
        for _ in range(3):
            opt.step()
            sched.step()
            ref_opt.step()
            ref.step()
            assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]
            assert sched.get_last_lr() == ref.get_last_lr()


def test_sampler_shards_cover_and_resume():
    shards = [ResumableSampler(10, 2, r, seed=3, shuffle=True, drop_last=True) for r in range(2)]
    for s in shards:
        s.set_epoch(1)
    a, b = list(shards[0]), list(shards[1])
    assert len(a) == len(b) == 5 and sorted(a + b) == list(range(10))
    shards[0].set_epoch(2)
    assert list(shards[0]) != a  # a new permutation each epoch
    shards[0].set_epoch(1, start=2)
    assert list(shards[0]) == a[2:] and len(shards[0]) == 3
    padded = ResumableSampler(5, 2, 1, shuffle=False)
    assert list(padded) == [1, 3, 0]  # order 0..4 padded by wrapping to 6, rank 1 takes odd slots


class _Aug(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return (random.random(), float(np.random.rand()), float(torch.rand(())))


def test_seeded_dataset_is_a_function_of_seed_epoch_index():
    ds = SeededDataset(_Aug(), seed=5)
    first = ds[2]
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    state = (random.getstate(), torch.get_rng_state())
    assert ds[2] == first  # independent of the global generators ...
    assert (random.getstate(), torch.get_rng_state().tolist()) == (state[0], state[1].tolist())  # ... left as found
    assert ds[1] != first
    ds.set_epoch(1)
    assert ds[2] != first
