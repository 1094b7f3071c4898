"""Training data whose composition changes with the epoch, and batches that alternate between datasets.

SG2HOI+ (paper Section III-D, IV-D) trains in two phases: the SGG part alone on a scene-graph
dataset, then jointly with "alternating batches" of the scene-graph and the HOI dataset.
:class:`PhasedTrainingSet` names the datasets (``parts``), which phase each epoch is in and which
parts a phase uses; :class:`AlternatingBatchSampler` yields the batches of one epoch.

Exact resume: the batches of an epoch are a pure function of ``(seed, epoch)`` and the number of
batches already consumed (``start``), like :class:`~hoikit.engine.sampler.ResumableSampler`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

from ..errors import ConfigError
from .sampler import sample_seed

_PART_SALT = 2_000_003  # keeps the per-part permutation seeds apart from sample / worker seeds


class AlternatingBatchSampler(Sampler[List[int]]):
    """Batches of a ConcatDataset of ``len(sizes)`` parts: one batch of each part in turn.

    Every part is permuted (seed ``(seed, epoch, part)``), cut into global batches of
    ``batch_size * num_replicas`` indices (the tail that does not fill one is dropped), and the
    parts' batch lists are interleaved round-robin (A, B, A, B, ...; once the shorter part is used
    up, the rest of the longer follows). Rank ``r`` takes slice ``[r*batch_size, (r+1)*batch_size)``
    of every global batch, so all ranks train on the same part at the same step. With one part this
    is a plain shuffled batch sampler.

    Args:
        sizes: length of every part, in ConcatDataset order (indices are offset accordingly).
        batch_size: images per rank and step. num_replicas, rank: DDP world size and rank.
        seed: base seed (``cfg.seed``).
    """

    def __init__(self, sizes: Sequence[int], batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        self.sizes, self.batch_size = [int(s) for s in sizes], int(batch_size)
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's batches and skip the first ``start`` of them (already trained)."""
        self.epoch, self.start = epoch, start

    def steps(self) -> int:
        """Batches per epoch (the same on every rank)."""
        g = self.batch_size * self.num_replicas
        return sum(n // g for n in self.sizes)

    def batches(self) -> List[List[int]]:
        """This rank's batches of the current epoch (before ``start``)."""
        g = self.batch_size * self.num_replicas
        per_part, offset = [], 0
        for p, n in enumerate(self.sizes):
            gen = torch.Generator()
            gen.manual_seed(sample_seed(self.seed, self.epoch, _PART_SALT + p))
            order = (torch.randperm(n, generator=gen) + offset).tolist()
            lo = self.rank * self.batch_size
            per_part.append([order[k * g + lo:k * g + lo + self.batch_size] for k in range(n // g)])
            offset += n
        out = []
        for k in range(max((len(b) for b in per_part), default=0)):
            out += [b[k] for b in per_part if k < len(b)]
        return out

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self.batches()[self.start:])

    def __len__(self) -> int:
        return self.steps() - self.start


@dataclass
class PhasedTrainingSet:
    """Training datasets of a multi-phase run (see module docstring).

    Args:
        parts: named datasets, e.g. ``{"sgg": vg_set, "hoi": hico_set}``.
        phase_of: epoch (0-based) -> phase name.
        uses: phase name -> names of the parts it trains on, in batch-alternation order.
    """

    parts: Dict[str, Dataset]
    phase_of: Callable[[int], str]
    uses: Dict[str, Tuple[str, ...]]

    def part_names(self, phase: str) -> Tuple[str, ...]:
        if phase not in self.uses:
            raise ConfigError(f"training phase '{phase}': no datasets configured for it")
        names = tuple(n for n in self.uses[phase] if n in self.parts)
        if not names:
            raise ConfigError(f"training phase '{phase}' needs dataset(s) {' + '.join(self.uses[phase])}, "
                              f"available: {', '.join(self.parts) or 'none'}")
        return names

    def dataset(self, phase: str) -> Dataset:
        """ConcatDataset of the phase's parts (indices as :class:`AlternatingBatchSampler` makes them)."""
        return ConcatDataset([self.parts[n] for n in self.part_names(phase)])

    def sampler(self, phase: str, batch_size: int, num_replicas: int = 1, rank: int = 0,
                seed: int = 0) -> AlternatingBatchSampler:
        return AlternatingBatchSampler([len(self.parts[n]) for n in self.part_names(phase)], batch_size,
                                       num_replicas, rank, seed)

    def __len__(self) -> int:
        return sum(len(d) for d in self.parts.values())
