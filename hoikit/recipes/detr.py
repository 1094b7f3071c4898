"""``model.arch = detr``: a trainable DETR-family detector, DETR or Deformable DETR by
``model.detr.type`` (:mod:`hoikit.models.detr`, :mod:`hoikit.models.deformable_detr`).

Data: a detection set (a COCO instances file, ``format: coco``; SynthHOI's COCO file with every
drawn instance, :func:`~hoikit.recipes.common.detector_data_config`; or an HOI dataset's entities),
evaluated by COCO box AP (pycocotools; primary AP50). Parameters named ``backbone`` train at
``train.lr_backbone``, the rest at ``train.lr`` (DETR's convention, :class:`RecipeBase`).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from torch import nn

from ..config import Config
from ..data.dataset import HOIDataset, build_transforms
from ..errors import ConfigError
from ..eval.adapters import DetectionEvaluation, EvalTask, detection_ground_truth
from ..models.deformable_detr import build_deformable_detector
from ..models.detr import build_detector
from .base import MetaLike, ReaderFactory, RecipeBase, TrainingSets
from .common import detector_data_config, training_reader


class DETRRecipe(RecipeBase):
    name = "detr"

    def build_model(self, cfg: Config, meta: MetaLike, *, state_dict: Optional[Dict] = None,
                    inference: bool = False) -> nn.Module:
        """The detector of ``model.detr.type`` for ``meta.objects`` (``model.detr.checkpoint`` loaded
        strictly when set)."""
        if meta is None:
            raise ConfigError("model.arch=detr: needs dataset metadata (class names)")
        if cfg.model.detr.type == "deformable":
            return build_deformable_detector(cfg, meta, train_backbone=cfg.train.lr_backbone > 0)
        return build_detector(cfg, meta, train_backbone=cfg.train.lr_backbone > 0)

    def training_sets(self, cfg: Config, readers: ReaderFactory) -> TrainingSets:
        d = cfg.data
        reader = training_reader(cfg, detector_data_config(d, "train", readers), readers)
        return TrainingSets({"train": HOIDataset(reader, build_transforms(d, train=True), d.skip_unreadable)},
                            reader.meta)

    def evaluations(self, cfg: Config, meta: MetaLike, readers: ReaderFactory,
                    split: str = "test") -> Tuple[List[EvalTask], str]:
        d = detector_data_config(cfg.data, split, readers)
        reader = readers(d, split)
        dataset = HOIDataset(reader, build_transforms(cfg.data, train=False))
        gt, names = detection_ground_truth(reader), list(meta.objects)
        return [EvalTask(dataset, lambda: DetectionEvaluation(gt, names))], DetectionEvaluation.primary
