"""Resumable data order and augmentation randomness.

Exact resume needs two things to be a pure function of ``(seed, epoch, position)``:

* the order of samples: :class:`ResumableSampler` permutes with a generator seeded by
  ``seed + epoch`` (identical on every rank, like ``DistributedSampler``), gives each rank its
  strided share and can start mid-epoch (``start`` = samples of this rank already consumed);
* the augmentation of each sample: :class:`SeededDataset` seeds Python, NumPy and torch from
  ``(seed, epoch, index)`` for the duration of one ``__getitem__`` and restores the previous
  states afterwards, so a sample looks the same whichever worker loads it and whenever.
"""
from __future__ import annotations

import math
import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

_MIX = 0x9E3779B1  # odd 32-bit constant (golden ratio) to spread (seed, epoch, index) apart


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 31-bit seed unique to (seed, epoch, index)."""
    return (seed * _MIX * _MIX + epoch * _MIX + index) % (2 ** 31 - 1)


class ResumableSampler(Sampler[int]):
    """Seeded, rank-sharded sample order that can resume mid-epoch.

    Args:
        length: dataset size.
        num_replicas: number of processes.
        rank: this process's rank.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        shuffle: permute (training) or keep order (evaluation).
        drop_last: drop the tail so every rank sees the same count; otherwise pad by wrapping.
    """

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False):
        self.length, self.num_replicas, self.rank = length, num_replicas, rank
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch = 0
        self.start = 0
        if drop_last:
            self.num_samples = length // num_replicas
        else:
            self.num_samples = math.ceil(length / num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and skip the first ``start`` samples of this rank."""
        self.epoch, self.start = epoch, start

    def indices(self) -> list:
        """This rank's full index list for the current epoch (before ``start`` is applied)."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        total = self.num_samples * self.num_replicas
        if self.drop_last:
            order = order[:total]
        elif order:
            while len(order) < total:
                order += order[: total - len(order)]
        return order[self.rank:total:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


class SeededDataset(Dataset):
    """Wraps a dataset so each item's randomness depends only on ``(seed, epoch, index)``.

    Args:
        dataset: any map-style dataset (e.g. ``HOIDataset``) whose transforms use
            ``random``, ``numpy.random`` or torch's global generator.
        seed: base seed (``cfg.seed``).
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):  # expose reader/meta of the wrapped dataset
        if name in ("dataset", "seed", "epoch"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int):
        s = sample_seed(self.seed, self.epoch, int(index))
        py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            random.seed(s)
            np.random.seed(s)
            torch.manual_seed(s)
            return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)


def worker_init(worker_id: int) -> None:  # noqa: ARG001 - DataLoader signature
    """Seed Python/NumPy in DataLoader workers from torch's per-worker seed (reproducible)."""
    s = torch.initial_seed() % (2 ** 31 - 1)
    random.seed(s)
    np.random.seed(s)


def epoch_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """Generator for the DataLoader's worker base seeds, so it never draws from the global RNG."""
    g = torch.Generator()
    g.manual_seed(sample_seed(seed, epoch, 1_000_003 + rank))
    return g
