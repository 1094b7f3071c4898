"""UPT weights (fredzzhang/upt ``{"model_state_dict": ...}``, or the bare state dict) <-> hoikit's plain
RmLR model.

hoikit's plain model uses UPT's own module names, so the key mapping is the identity on
``detector.*`` (official DETR names) and ``interaction_head.*``; what this module adds is the
inference of the architecture from the weights. Files are read by :mod:`hoikit.io.checkpoint`;
building the model and converting a file into a hoikit checkpoint is :mod:`hoikit.convert.upt`.
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

from torch import Tensor

from ...errors import CheckpointError
from ...io.checkpoint import load_checkpoint, strip_wrappers
from ..detr_weights import agreed_size, infer_detr_config

DETECTOR_PREFIX = "detector."
HEAD_PREFIX = "interaction_head."


def upt_to_hoikit(sd: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """UPT ``model_state_dict`` -> hoikit plain-model state dict (identity names, wrappers stripped)."""
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
    obj = load_checkpoint(path, require_format=False)
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
