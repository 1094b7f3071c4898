"""From a config to what :func:`hoikit.engine.trainer.fit` needs: datasets, metadata and evaluations.

What a family trains and is evaluated on is its recipe's (:meth:`Recipe.training_sets`,
:meth:`Recipe.evaluations`, :mod:`hoikit.recipes`); this module lends the recipes the distributed
reader opening (rank 0 first: it may generate SynthHOI) and puts a phased family's parts into a
:class:`~hoikit.engine.phases.PhasedTrainingSet`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

from torch.utils.data import Dataset

from ..config import Config
from ..data.dataset import build_reader
from ..recipes import get_recipe
from . import distributed as D
from .phases import PhasedTrainingSet


@dataclass
class TrainingData:
    train_set: Dataset                # a Dataset, or a PhasedTrainingSet for a phased family
    eval_set: Optional[Dataset]
    meta: object                      # DatasetMeta, or (meta_hoi, meta_sgg) for sg2hoi
    make_evaluator: Optional[Callable]
    primary: str
    evals: list = dataclasses.field(default_factory=list)  # EvalTask list (phased families), used by fit(evals=)
    collate: Optional[Callable] = None  # the recipe's collate function


def open_reader(data_cfg, split: str, **kw):
    """The reader of ``data_cfg``'s ``split``; under torchrun rank 0 opens it first (it may generate
    SynthHOI) and the others read the finished files."""
    reader = build_reader(data_cfg, split, **kw) if D.is_main_process() else None
    D.barrier()
    return reader if reader is not None else build_reader(data_cfg, split, **kw)


def eval_tasks(cfg: Config, meta, split: str = "test"):
    """The evaluations of ``split`` for ``cfg`` (what ``fit`` runs every few epochs and ``hoikit test``
    runs once). Returns ``(tasks: list[EvalTask], primary metric)``; no task when the data has no
    evaluator (V-COCO without the official ground-truth files, custom data). The primary metric
    (the one that selects ``best.pt``) is ``cfg.eval.primary_metric`` when set, else the protocol's.

    Args:
        meta: DatasetMeta of the HOI / detection dataset; ``(meta_hoi, meta_sgg)`` for ``sg2hoi``.
    """
    tasks, primary = get_recipe(cfg.model.arch).evaluations(cfg, meta, open_reader, split)
    return tasks, chosen_primary(cfg, tasks, primary)


def chosen_primary(cfg: Config, tasks, default: str) -> str:
    """``cfg.eval.primary_metric`` when set (and there is an evaluation), else ``default``."""
    return (cfg.eval.primary_metric or default) if tasks else default


def build_training_data(cfg: Config, with_eval: bool = True) -> TrainingData:
    """Training set (phased when the recipe has phases), metadata and evaluations of ``cfg``."""
    recipe = get_recipe(cfg.model.arch)
    sets = recipe.training_sets(cfg, open_reader)
    uses = recipe.phase_parts(cfg)
    tasks, primary = eval_tasks(cfg, sets.meta) if with_eval else ([], "")
    if uses is not None:
        train_set = PhasedTrainingSet(sets.parts, lambda e: recipe.phase_of(cfg, e), uses, recipe.phase_schedule(cfg))
        return TrainingData(train_set, None, sets.meta, None, primary, tasks, sets.collate)
    first = tasks[0] if tasks else None
    return TrainingData(sets.parts["train"], first and first.dataset, sets.meta, first and first.make_evaluator,
                        primary, list(tasks[1:]), sets.collate)
