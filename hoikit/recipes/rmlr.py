"""``model.arch = rmlr``: UPT / RmLR, a two-stage HOI model on a frozen DETR-family detector
(:func:`hoikit.models.rmlr.build.build_rmlr`; ``model.rmlr.ablation: plain`` is UPT).

Data: an HOI dataset (``data.zero_shot``: without the pairs of unseen classes), evaluated with its
official protocol (HICO-DET mAP for HICO-DET and SynthHOI, V-COCO role AP when the official files
are named). Inference builds leave out the training-only cross-modal branches
(:data:`RmLR.TRAINING_ONLY`); ``model.rmlr.detections: oracle`` models read the ground truth in eval
too and cannot predict on plain images.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from torch import nn

from ..config import Config
from ..data.dataset import HOIDataset, build_transforms
from ..errors import ConfigError
from ..eval.adapters import EvalTask
from ..models.rmlr.build import build_rmlr
from ..models.rmlr.model import RmLR
from .base import MetaLike, ReaderFactory, RecipeBase, TrainingSets
from .common import hoi_protocol_task, training_reader


def _oracle(model: nn.Module) -> bool:
    """True for an RmLR that takes its boxes from the targets (``model.rmlr.detections=oracle``)."""
    return isinstance(model, RmLR) and model.needs_targets


class RmLRRecipe(RecipeBase):
    name = "rmlr"

    def build_model(self, cfg: Config, meta: MetaLike, *, state_dict: Optional[Dict] = None,
                    inference: bool = False) -> nn.Module:
        if meta is None:
            raise ConfigError("model.arch=rmlr: needs dataset metadata (class names)")
        return build_rmlr(cfg, meta, inference=inference)

    def training_sets(self, cfg: Config, readers: ReaderFactory) -> TrainingSets:
        d = cfg.data
        reader = training_reader(cfg, d, readers)
        return TrainingSets({"train": HOIDataset(reader, build_transforms(d, train=True), d.skip_unreadable)},
                            reader.meta)

    def evaluations(self, cfg: Config, meta: MetaLike, readers: ReaderFactory,
                    split: str = "test") -> Tuple[List[EvalTask], str]:
        d = cfg.data
        return hoi_protocol_task(cfg, d, readers(d, split), meta, split, zero_shot=d.zero_shot)

    def check_predictable(self, model: nn.Module) -> None:
        if _oracle(model):
            raise ConfigError("model.rmlr.detections=oracle: this model takes its boxes from ground-truth annotations "
                              "(analysis only) and cannot predict on plain images; use a model with detections=detr")

    def score_exponents(self, cfg: Config) -> Optional[Tuple[float, float]]:
        r = cfg.model.rmlr       # UPT's prior exponents (RmLR model.py: the test one at inference)
        return float(r.prior_power_test), float(r.prior_power_train)

    def forward(self, model: nn.Module, images: Sequence, targets: Sequence[Dict]) -> Any:
        # oracle-detection models (model.rmlr.detections=oracle) read the ground truth in eval too
        return model(list(images), list(targets)) if _oracle(model) else model(list(images))

    #: the training-only cross-modal modules the inference build does not have
    OPTIONAL_KEY_PREFIXES = RmLR.TRAINING_ONLY
