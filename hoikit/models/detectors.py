"""The DETR-family detectors behind one switch, ``model.detr.type``:

* ``detr`` - DETR (:mod:`hoikit.models.detr`), softmax classifier with a no-object column;
* ``deformable`` - Deformable DETR (:mod:`hoikit.models.deformable_detr`), sigmoid classifier,
  multi-scale deformable attention, box refinement / two-stage / H-DETR switches.

Both networks return the same outputs dict (``pred_logits``, ``pred_boxes``, ``hs``, ``features``,
``mask``, ...); each network's ``per_query_detections`` method turns them into one (box, score, label) per
query, the contract the two-stage HOI models (UPT / RmLR) build their pairs on. The trainable detector of
``model.arch = detr`` is built by the DETR recipe (:mod:`hoikit.recipes.detr`).
"""
from __future__ import annotations

from torch import nn

from .deformable_detr import DeformableDETR, build_deformable_detr
from .deformable_weights import load_deformable_weights
from .detr import DETR, build_detr
from .detr_weights import load_detr_weights


def build_detector_network(dcfg, train_backbone: bool = True) -> nn.Module:
    """The bare network (:class:`DETR` or :class:`DeformableDETR`) of a ``model.detr`` section
    (``type``: a ``Literal`` checked when the config loads)."""
    return build_detr(dcfg, train_backbone) if dcfg.type == "detr" else build_deformable_detr(dcfg, train_backbone)


def num_detector_classes(detector: nn.Module) -> int:
    """Foreground classes of a DETR (``class_embed`` rows - 1) or Deformable DETR (sigmoid rows)."""
    if isinstance(detector, DeformableDETR):
        return detector.class_embed[0].out_features
    return detector.class_embed.out_features - 1


def load_detector_weights(detector: nn.Module, path) -> dict:
    """Strictly load any supported file of the detector's family into ``detector``."""
    if isinstance(detector, DeformableDETR):
        return load_deformable_weights(detector, path)
    return load_detr_weights(detector, path)


__all__ = ["DETR", "DeformableDETR", "build_detector_network",
           "load_detector_weights", "num_detector_classes"]
