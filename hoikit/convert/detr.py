"""DETR files (official facebookresearch/detr, UPT detectors, Hugging Face, bare, hoikit) -> a DETR or a
hoikit checkpoint (``model.arch = detr``). The reader is :mod:`hoikit.models.detr_weights`."""
from __future__ import annotations

from typing import Dict, Optional

import torch

from ..config import Config, DETRConfig
from ..io.checkpoint import check_state_dict, load_model_state
from ..models.detr import build_detr
from ..models.detr_weights import read_detr_weights
from . import class_meta, write_converted


def detr_config(info: Dict, **overrides) -> DETRConfig:
    """The :class:`DETRConfig` of the architecture :func:`read_detr_weights` inferred, with ``overrides``."""
    fields = {k: info[k] for k in DETRConfig.__dataclass_fields__ if k in info}
    fields.update(overrides)
    return DETRConfig(**fields)


def load_detr(path, **overrides):
    """Build a DETR with the architecture found in ``path`` and load it strictly.

    Args:
        overrides: DETRConfig fields that the weights cannot tell (``dilation``, ``nheads``, ...).

    Returns:
        (DETR, info dict of :func:`read_detr_weights`).
    """
    sd, info = read_detr_weights(path)
    model = build_detr(detr_config(info, **overrides))
    load_model_state(model, sd, str(path), key_prefix="")
    return model, info


def convert_detr_checkpoint(src, out, classes: Optional[str] = None, dilation: Optional[bool] = None) -> Dict:
    """Convert any supported DETR file into a hoikit checkpoint (``model.arch = detr``).

    The weights are checked strictly against a DETR built with the inferred architecture, and
    stored under ``detr.*`` exactly as :class:`hoikit.models.detr.DETRDetector` names them.

    Args:
        src: input file or Hugging Face DETR directory. out: output ``.pth``.
        classes: ``generic | hicodet | vcoco`` class names; None = the source's names (Hugging Face
            ``id2label``) when it has them, else generic.
        dilation: DC5 when the file cannot tell (overrides the inferred value).

    Returns:
        the info dict of :func:`read_detr_weights` (plus ``out`` and ``meta_objects``).
    """
    sd, info = read_detr_weights(src)
    if dilation is not None:
        info["dilation"], info["dilation_known"] = bool(dilation), True
    cfg = Config()
    cfg.model.arch = "detr"
    cfg.model.detr = detr_config(info)
    with torch.device("meta"):  # shapes only: no memory for a second copy of the weights
        check_state_dict(build_detr(cfg.model.detr), sd, str(src))
    meta = class_meta(classes, info["num_classes"], str(src), info.get("class_names"))
    write_converted(out, cfg, meta, sd, src, info["format"], prefix="detr.")
    return {**info, "out": str(out), "meta_objects": meta["objects"]}
