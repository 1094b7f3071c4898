"""Training data whose composition changes with the epoch, and batches that alternate between datasets.

SG2HOI+ (paper Section III-D, IV-D) trains in two phases: the SGG part alone on a scene-graph
dataset, then jointly with "alternating batches" of the scene-graph and the HOI dataset.
:class:`PhasedTrainingSet` names the datasets (``parts``), which phase each epoch is in and which
parts a phase uses; :class:`AlternatingBatchSampler` yields the batches of one epoch.

Exact resume: the batches of an epoch are a pure function of ``(seed, epoch)`` and the number of
batches already consumed (``start``), like :class:`~hoikit.engine.sampler.ResumableSampler`.

A phase can take its learning rates from another phase (``PhasedTrainingSet.schedule_as``): SG2HOI+'s
``sgg_control`` trains the SGG batches of the joint phase without its HOI batches, and each of them
gets the rate it gets in the joint run (:meth:`PhasedTrainingSet.schedule_positions`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

from ..errors import ConfigError
from .sampler import sample_seed

_PART_SALT = 2_000_003  # keeps the per-part permutation seeds apart from sample / worker seeds


def part_order(sizes: Sequence[int], global_batch: int) -> List[int]:
    """The part of each batch of an epoch, in :class:`AlternatingBatchSampler` order: round-robin over
    the parts' ``size // global_batch`` batches (``[10, 7]``, 2 -> ``[0, 1, 0, 1, 0, 1, 0, 0]``)."""
    counts = [int(n) // global_batch for n in sizes]
    return [p for k in range(max(counts, default=0)) for p, c in enumerate(counts) if k < c]


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
        taken = [0] * len(per_part)
        out = []
        for p in part_order(self.sizes, g):
            out.append(per_part[p][taken[p]])
            taken[p] += 1
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
        schedule_as: phase name -> the phase whose learning-rate schedule its batches follow (its
            parts must be among that phase's; they may be parts it does not train on, which then
            only count): see :meth:`schedule_positions`.
    """

    parts: Dict[str, Dataset]
    phase_of: Callable[[int], str]
    uses: Dict[str, Tuple[str, ...]]
    schedule_as: Dict[str, str] = field(default_factory=dict)

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

    def schedule_positions(self, phase: str, batch_size: int, num_replicas: int = 1
                           ) -> Optional[Tuple[int, List[int]]]:
        """Where ``phase``'s batches sit in an epoch of the phase it takes its schedule from.

        Returns:
            None when ``phase`` follows its own schedule; else ``(steps, positions)``: the number of
            batches of an epoch of the reference phase, and for every batch of ``phase``'s epoch its
            index among them. The parts of both phases are permuted alike (a part's permutation
            seed depends on its position in the phase's part list, so the shared parts must come
            first, in the same order), hence batch ``i`` of ``phase`` is the very batch the
            reference phase trains at ``positions[i]``.

        Raises:
            ConfigError: the reference phase lacks one of ``phase``'s parts, or lists them elsewhere.
        """
        ref = self.schedule_as.get(phase)
        if ref is None:
            return None
        own, other = self.part_names(phase), self.part_names(ref)
        if other[:len(own)] != own:
            raise ConfigError(f"training phase '{phase}' takes its learning rates from phase '{ref}', which "
                              f"needs its parts {', '.join(own)} first (has {', '.join(other)})")
        g = int(batch_size) * int(num_replicas)
        order = part_order([len(self.parts[n]) for n in other], g)
        return len(order), [k for k, p in enumerate(order) if p < len(own)]

    def __len__(self) -> int:
        return sum(len(d) for d in self.parts.values())
