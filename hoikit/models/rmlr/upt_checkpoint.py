"""UPT checkpoints (fredzzhang/upt ``{"model_state_dict": ...}``, or the bare state dict) <-> hoikit's
plain RmLR model.

hoikit's plain model uses UPT's own module names, so the key mapping is the identity on
``detector.*`` (official DETR names) and ``interaction_head.*``; what this module adds is the
strict check (every key present with the same shape, nothing left over), the inference of the
architecture from the weights, and ``hoikit convert upt --src FILE --out FILE``.
"""
from __future__ import annotations

import argparse
from typing import Dict, Mapping, Tuple

import torch
from torch import Tensor

from ...errors import CheckpointError

DETECTOR_PREFIX = "detector."
HEAD_PREFIX = "interaction_head."


def upt_to_hoikit(sd: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """UPT ``model_state_dict`` -> hoikit plain-model state dict (identity names, wrappers stripped)."""
    from ..checkpoints import strip_wrappers

    return dict(strip_wrappers(sd))


def hoikit_to_upt(sd: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """hoikit plain-model state dict -> UPT ``model_state_dict`` (only UPT's two modules)."""
    bad = [k for k in sd if not (k.startswith(DETECTOR_PREFIX) or k.startswith(HEAD_PREFIX))]
    if bad:
        raise CheckpointError(f"key '{bad[0]}' has no UPT counterpart (only ablation=plain models convert to UPT)")
    return dict(sd)


def read_upt_file(path) -> Tuple[Dict[str, Tensor], Dict]:
    """Read a UPT file and infer its architecture.

    Returns:
        (hoikit state dict, info: ``detr`` (DETRConfig fields), ``num_verbs``, ``representation_size``,
        ``num_coop_layers``, ``num_tensors``).
    """
    from ..checkpoints import agreed_size, infer_detr_config, read_checkpoint_file, strip_wrappers

    obj = read_checkpoint_file(path)
    if isinstance(obj, Mapping) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]                    # UPT's training checkpoint
    elif not (isinstance(obj, Mapping) and all(isinstance(k, str) for k in obj)
              and any(k.startswith(HEAD_PREFIX) for k in strip_wrappers(obj))):
        raise CheckpointError(f"{path}: neither a UPT checkpoint (key 'model_state_dict') nor a bare UPT state "
                              f"dict (keys '{HEAD_PREFIX}*'): not a UPT checkpoint")
    sd = upt_to_hoikit(obj)                              # a bare state dict (torch.save(model.state_dict()))
    for k, v in sd.items():
        if not isinstance(v, Tensor):
            raise CheckpointError(f"{path}: key '{k}' is a {type(v).__name__}, not a tensor")
    key = HEAD_PREFIX + "box_pair_predictor.weight"
    if key not in sd:
        raise CheckpointError(f"{path}: key '{key}' missing: not a UPT checkpoint (no interaction head)")
    det = {k[len(DETECTOR_PREFIX):]: v for k, v in sd.items() if k.startswith(DETECTOR_PREFIX)}
    detr = infer_detr_config(det, None, str(path), key_prefix=DETECTOR_PREFIX)
    coop = {k.split(".")[3] for k in sd if k.startswith(HEAD_PREFIX + "coop_layer.mod_enc.")}
    head = HEAD_PREFIX + "comp_layer."
    repr_keys = [(key, 1), (head + "attention.attention.query.weight", 0),
                 (head + "attention.attention.query.weight", 1),
                 (head + "attention.output.norm.weight", 0), (head + "ffn.norm.weight", 0), (head + "ffn.ffn.0.weight", 1)]
    info = dict(detr={k: v for k, v in detr.items() if k != "dilation_known"},
                num_verbs=agreed_size(sd, "the number of verbs", [(key, 0), (HEAD_PREFIX + "box_pair_predictor.bias", 0)],
                                      str(path)),
                representation_size=agreed_size(sd, "representation_size", repr_keys, str(path)),
                num_coop_layers=len(coop), num_tensors=len(sd))
    return sd, info


def guess_meta(num_verbs: int, num_classes: int, path: str, classes: str = "auto"):
    """HICO-DET (117 verbs, 80 objects) or V-COCO (24 action-roles) metadata for a UPT file."""
    from ...data.metadata import hicodet_meta, vcoco_meta

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
    anything else is passed through (:mod:`~hoikit.models.rmlr.detector_classes`)."""
    if detector_classes != "auto":
        return detector_classes
    return {80: "coco80", 91: "coco91"}.get(int(num_classes), "auto")


def upt_config(info: Dict, detector_classes: str = "auto"):
    """hoikit :class:`~hoikit.config.Config` of the plain model described by ``info``."""
    from ...config import Config, DETRConfig

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
    from ..checkpoints import check_state_dict
    from .build import build_rmlr

    sd, info = read_upt_file(path)
    cfg = upt_config(info, detector_classes)
    meta = meta or guess_meta(info["num_verbs"], info["detr"]["num_classes"], str(path))
    model = build_rmlr(cfg, meta).to(device)
    check_state_dict(model, sd, str(path))
    model.load_state_dict(sd, strict=True)
    return model, info


def convert_upt_checkpoint(src, out, classes: str = "auto", detector_classes: str = "auto") -> Dict:
    """Check a UPT file key by key against hoikit's UPT (built on the meta device) and write a
    hoikit checkpoint (``model.arch = rmlr``, ``model.rmlr.ablation = plain``)."""
    from ...config import to_dict
    from ...engine.checkpoint import FORMAT, VERSION, save_checkpoint
    from ..checkpoints import check_state_dict
    from .build import build_rmlr

    sd, info = read_upt_file(src)
    cfg = upt_config(info, detector_classes)
    meta = guess_meta(info["num_verbs"], info["detr"]["num_classes"], str(src), classes)
    with torch.device("meta"):
        model = build_rmlr(cfg, meta)
    check_state_dict(model, sd, str(src))
    save_checkpoint({"format": FORMAT, "version": VERSION, "config": to_dict(cfg), "meta": meta.to_dict(),
                     "model": {k: v.contiguous() for k, v in sd.items()},
                     "source": {"path": str(src), "format": "upt"}}, out)
    return {**info, "dataset": meta.name, "out": str(out), "detector_classes": cfg.model.rmlr.detector_classes}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, help="UPT checkpoint (.pth with model_state_dict)")
    parser.add_argument("--out", required=True, help="hoikit checkpoint to write")
    parser.add_argument("--classes", default="auto", choices=["auto", "hicodet", "vcoco"],
                        help="dataset tables stored in the checkpoint (auto: from the number of verbs)")
    parser.add_argument("--detector-classes", default="auto",
                        help="the detector's class list (auto: UPT's, 80 = coco80 (COCO order, person 0), "
                        "91 = coco91 (COCO category ids)); or dataset | coco80 | coco91 | name,name,...")


def run_cli(args) -> int:
    info = convert_upt_checkpoint(args.src, args.out, args.classes, args.detector_classes)
    d = info["detr"]
    print(f"source format: upt ({info['num_tensors']} tensors, all matched)")
    print(f"detector:      DETR {d['backbone']} num_classes={d['num_classes']} (+1) queries={d['num_queries']}")
    print(f"interaction:   {info['num_verbs']} verbs ({info['dataset']}), pair token {info['representation_size']}, "
          f"{info['num_coop_layers']} cooperative layers")
    print(f"classes:       detector classes {info['detector_classes']} -> {info['dataset']} objects (by name)")
    print(f"wrote {info['out']}")
    return 0
