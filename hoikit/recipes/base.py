"""The recipe of a model family: everything the engine and the commands need to know about it.

A family (DETR / Deformable DETR, UPT / RmLR, SG2HOI+) is one :class:`Recipe`; the engine
(:mod:`hoikit.engine`) and the commands reach it only through :func:`hoikit.recipes.get_recipe`
``(cfg.model.arch)`` and the methods below, never by ``if arch == ...`` or by probing a model's
attributes. Models stay plain ``nn.Module`` s; what depends on the training config (phases, learning
rates per parameter group) lives here.

Layering: recipes import config, data, eval, losses and models; the engine imports recipes; a recipe
never imports the engine. What the engine lends a recipe comes in as arguments: ``readers`` opens the
reader of a data config (``readers(data_cfg, split, **kw)``; under torchrun rank 0 first, since it may
generate SynthHOI).

:class:`RecipeBase` holds the behaviour most families share (one dataset, the DETR learning-rate
convention, no phases, a plain forward); a recipe overrides what differs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

from torch import nn
from torch.utils.data import Dataset

from ..config import Config
from ..data.dataset import collate
from ..data.metadata import DatasetMeta
from ..eval.adapters import EvalTask

#: a DatasetMeta, or ``(meta_hoi, meta_sgg)`` for a family trained on two datasets (SG2HOI+)
MetaLike = Union[DatasetMeta, Tuple[Optional[DatasetMeta], Optional[DatasetMeta]]]
#: ``readers(data_cfg, split, **kw) -> reader`` (lent by the engine: rank 0 opens first)
ReaderFactory = Callable[..., Any]


@dataclass
class TrainingSets:
    """What a recipe trains on.

    Args:
        parts: named training datasets: ``{"train": dataset}`` for a single-phase family, else the
            datasets its phases draw from (:meth:`Recipe.phase_parts`).
        meta: the class metadata the model is built for (and stored in checkpoints).
        collate: batches ``(image, target)`` pairs.
    """

    parts: Dict[str, Dataset]
    meta: MetaLike
    collate: Callable = field(default=collate)


@runtime_checkable
class Recipe(Protocol):
    """One model family. ``name`` is its ``model.arch``."""

    name: str

    # ------------------------------------------------------------------ model
    def build_model(self, cfg: Config, meta: MetaLike, *, state_dict: Optional[Dict] = None,
                    inference: bool = False) -> nn.Module:
        """The model of ``cfg`` for the classes of ``meta``. ``state_dict``: the weights about to be
        loaded (rebuilding from a checkpoint: open no pretrained file); ``inference``: leave out
        training-only modules."""

    # ------------------------------------------------------------------ data and evaluation
    def training_sets(self, cfg: Config, readers: ReaderFactory) -> TrainingSets:
        """The training datasets, their metadata and collate function."""

    def evaluations(self, cfg: Config, meta: MetaLike, readers: ReaderFactory,
                    split: str = "test") -> Tuple[List[EvalTask], str]:
        """The evaluations of ``split`` (training-time and ``hoikit test``) and the protocol's
        primary metric; no task when the data has no evaluator."""

    # ------------------------------------------------------------------ training
    def phase_parts(self, cfg: Config) -> Optional[Dict[str, Tuple[str, ...]]]:
        """Phase name -> the :class:`TrainingSets` parts it trains on; None = one phase, part ``train``."""

    def phase_of(self, cfg: Config, epoch: int) -> Optional[str]:
        """The phase of ``epoch`` (0-based); None for a single-phase family."""

    def phase_schedule(self, cfg: Config) -> Dict[str, str]:
        """Phase name -> the phase whose learning-rate schedule its batches follow (see
        :meth:`hoikit.engine.phases.PhasedTrainingSet.schedule_positions`); empty = each its own."""

    def set_phase(self, model: nn.Module, phase: str) -> None:
        """Switch ``model`` to ``phase`` (which losses it computes, what is frozen)."""

    def param_groups(self, model: nn.Module, cfg: Config, phase: Optional[str] = None) -> List[Dict]:
        """Optimizer parameter groups ``{"params", "lr"[, "name"]}`` of ``phase`` (empty groups dropped)."""

    # ------------------------------------------------------------------ predictions
    def check_predictable(self, model: nn.Module) -> None:
        """Raise a ConfigError when ``model`` cannot predict on plain images."""

    def forward(self, model: nn.Module, images: Sequence, targets: Sequence[Dict]) -> Any:
        """The eval-mode forward (``targets`` only reach models that read them, e.g. oracle boxes)."""

    def postprocess(self, model: nn.Module, outputs: Any, targets: Sequence[Dict],
                    task: Optional[str] = None) -> List:
        """Outputs -> per-image predictions in original-image pixels (``HOIPrediction``,
        ``SceneGraphPrediction`` or a detection dict); ``task`` picks the output of a multi-task model."""

    def prediction_tasks(self, model: nn.Module, meta: MetaLike) -> Tuple[Optional[str], ...]:
        """The ``postprocess`` tasks ``hoikit predict`` / :class:`~hoikit.engine.inference.Predictor` runs."""

    def score_exponents(self, cfg: Config) -> Optional[Tuple[float, float]]:
        """``(p_test, p_train)`` of a UPT-style triplet score ``sigmoid(logit) * (s_h * s_o)^p``, from which the
        Predictor adds each triplet's ``confidence`` (:func:`hoikit.engine.inference.triplet_confidence`);
        None for a family without that score."""

    # ------------------------------------------------------------------ checkpoint
    def meta_to_dict(self, meta: MetaLike) -> Dict:
        """The checkpoint form of ``meta``."""

    def meta_from_dict(self, d: Dict) -> MetaLike:
        """Inverse of :meth:`meta_to_dict`."""

    def inference_state_dict(self, model: nn.Module, state_dict: Dict) -> Dict:
        """``state_dict`` without the keys of training-only modules an inference build leaves out."""


class RecipeBase:
    """Shared defaults: one dataset and one DatasetMeta, a single phase, parameters named ``backbone``
    at ``train.lr_backbone`` and the rest at ``train.lr`` (DETR's convention), a plain forward."""

    name = ""

    def phase_parts(self, cfg: Config) -> Optional[Dict[str, Tuple[str, ...]]]:
        return None

    def phase_of(self, cfg: Config, epoch: int) -> Optional[str]:
        return None

    def phase_schedule(self, cfg: Config) -> Dict[str, str]:
        return {}

    def set_phase(self, model: nn.Module, phase: str) -> None:
        return None

    def param_groups(self, model: nn.Module, cfg: Config, phase: Optional[str] = None) -> List[Dict]:
        t = cfg.train
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in named if "backbone" not in n], "lr": t.lr},
                  {"params": [p for n, p in named if "backbone" in n], "lr": t.lr_backbone}]
        return [g for g in groups if g["params"]]

    def check_predictable(self, model: nn.Module) -> None:
        return None

    def forward(self, model: nn.Module, images: Sequence, targets: Sequence[Dict]) -> Any:
        return model(list(images))

    def postprocess(self, model: nn.Module, outputs: Any, targets: Sequence[Dict],
                    task: Optional[str] = None) -> List:
        return model.postprocess(outputs, list(targets)) if task is None else \
            model.postprocess(outputs, list(targets), task=task)

    def prediction_tasks(self, model: nn.Module, meta: MetaLike) -> Tuple[Optional[str], ...]:
        return (None,)

    def score_exponents(self, cfg: Config) -> Optional[Tuple[float, float]]:
        return None

    def meta_to_dict(self, meta: MetaLike) -> Dict:
        return meta.to_dict()

    def meta_from_dict(self, d: Dict) -> MetaLike:
        return DatasetMeta.from_dict(d)

    #: checkpoint key prefixes an inference build may lack (training-only modules, layouts of older
    #: versions); :meth:`inference_state_dict` leaves them out when the model has no such key
    OPTIONAL_KEY_PREFIXES: Tuple[str, ...] = ()

    def inference_state_dict(self, model: nn.Module, state_dict: Dict) -> Dict:
        """``state_dict`` without the keys under :attr:`OPTIONAL_KEY_PREFIXES` that ``model`` does not
        have; every other key is kept, so strict loading still reports anything else that does not fit."""
        if not self.OPTIONAL_KEY_PREFIXES:
            return state_dict
        own = model.state_dict()
        return {k: v for k, v in state_dict.items() if k in own or not k.startswith(self.OPTIONAL_KEY_PREFIXES)}
