"""Deformable DETR / H-Deformable-DETR files -> a hoikit checkpoint (``model.arch = detr``,
``model.detr.type = deformable``). The reader is :mod:`hoikit.models.deformable_weights`."""
from __future__ import annotations

from typing import Dict

import torch

from ..config import Config
from ..io.checkpoint import check_state_dict
from ..models.deformable_detr import build_deformable_detr
from ..models.deformable_weights import read_deformable_weights
from . import class_meta, write_converted
from .detr import detr_config


def convert_deformable_checkpoint(src, out, classes: str = "generic") -> Dict:
    """Convert a Deformable DETR / H-Deformable-DETR file into a hoikit checkpoint, checked strictly
    against the inferred architecture.

    Args:
        src: input file. out: output ``.pth``. classes: ``generic | hicodet | vcoco`` class names
            (``hicodet`` / ``vcoco`` need 80 class rows, e.g. PViC's fine-tuned H-DETR files).

    Returns:
        the info dict of :func:`read_deformable_weights` (plus ``out``).
    """
    sd, info = read_deformable_weights(src)
    cfg = Config()
    cfg.model.arch = "detr"
    # official Deformable DETR trains with FFN 1024 and dropout 0.1; H-DETR with dropout 0 (spec)
    cfg.model.detr = detr_config(info)
    with torch.device("meta"):
        check_state_dict(build_deformable_detr(cfg.model.detr), sd, str(src))
    meta = class_meta(classes, info["num_classes"], str(src))
    write_converted(out, cfg, meta, sd, src, info["format"], prefix="detr.")
    return {**info, "out": str(out)}
