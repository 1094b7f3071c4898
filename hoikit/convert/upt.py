"""UPT files (fredzzhang/upt ``model_state_dict``: detector + interaction head) -> hoikit's plain RmLR model
or a hoikit checkpoint (``model.arch = rmlr``, ``model.rmlr.ablation = plain``). The reader is
:mod:`hoikit.models.rmlr.upt_weights`."""
from __future__ import annotations

from typing import Dict

import torch

from ..config import Config, DETRConfig
from ..data.metadata import hicodet_meta, vcoco_meta
from ..errors import CheckpointError
from ..io.checkpoint import check_state_dict, load_model_state
from ..models.rmlr.build import build_rmlr
from ..models.rmlr.upt_weights import read_upt_file
from . import write_converted


def guess_meta(num_verbs: int, num_classes: int, path: str, classes: str = "auto"):
    """HICO-DET (117 verbs, 80 objects) or V-COCO (24 action-roles) metadata for a UPT file."""
    if classes == "auto":
        classes = "hicodet" if num_verbs == 117 else "vcoco" if num_verbs == 24 else "?"
    if classes == "hicodet" and num_verbs == 117:
        return hicodet_meta()
    if classes == "vcoco" and num_verbs == 24:
        return vcoco_meta()
    raise CheckpointError(f"{path}: key 'interaction_head.box_pair_predictor.weight' has {num_verbs} verbs; "
                          f"neither HICO-DET (117) nor V-COCO (24) (num_classes {num_classes})")


def upt_detector_classes(num_classes: int, detector_classes: str = "auto") -> str:
    """``model.rmlr.detector_classes`` of a UPT file: ``auto`` = UPT's detectors, i.e. 80 classes in
    contiguous COCO order (the fredzzhang/hicodet ``class`` branch that UPT's HICO-DET detectors are
    trained on, person = 0; specs/data-formats.md) or 91 COCO category ids (COCO DETR, V-COCO);
    anything else is passed through (:mod:`hoikit.models.rmlr.detector_classes`)."""
    if detector_classes != "auto":
        return detector_classes
    return {80: "coco80", 91: "coco91"}.get(int(num_classes), "auto")


def upt_config(info: Dict, detector_classes: str = "auto"):
    """hoikit :class:`~hoikit.config.Config` of the plain model described by ``info``."""
    cfg = Config()
    cfg.model.arch = "rmlr"
    cfg.model.detr = DETRConfig(**{k: v for k, v in info["detr"].items() if k in DETRConfig.__dataclass_fields__})
    cfg.model.detr.checkpoint = ""
    r = cfg.model.rmlr
    r.ablation = "plain"
    r.representation_size = info["representation_size"]
    r.num_coop_layers = info["num_coop_layers"]
    r.lambda_hoi = 1.0
    r.detector_classes = upt_detector_classes(info["detr"]["num_classes"], detector_classes)
    return cfg


def load_upt(path, meta=None, device: str = "cpu", detector_classes: str = "auto"):
    """Build hoikit's UPT for a UPT file and load it strictly. Returns ``(model, info)``."""
    sd, info = read_upt_file(path)
    cfg = upt_config(info, detector_classes)
    meta = meta or guess_meta(info["num_verbs"], info["detr"]["num_classes"], str(path))
    model = build_rmlr(cfg, meta).to(device)
    load_model_state(model, sd, str(path), key_prefix="")
    return model, info


def convert_upt_checkpoint(src, out, classes: str = "auto", detector_classes: str = "auto") -> Dict:
    """Check a UPT file key by key against hoikit's UPT (built on the meta device) and write a
    hoikit checkpoint (``model.arch = rmlr``, ``model.rmlr.ablation = plain``)."""
    sd, info = read_upt_file(src)
    cfg = upt_config(info, detector_classes)
    meta = guess_meta(info["num_verbs"], info["detr"]["num_classes"], str(src), classes)
    with torch.device("meta"):
        model = build_rmlr(cfg, meta)
    check_state_dict(model, sd, str(src))
    write_converted(out, cfg, meta.to_dict(), sd, src, "upt")
    return {**info, "dataset": meta.name, "out": str(out), "detector_classes": cfg.model.rmlr.detector_classes}
