"""Read Deformable DETR / H-Deformable-DETR weights and load them strictly (files are read by
:mod:`hoikit.io.checkpoint`; converting them into hoikit checkpoints is :mod:`hoikit.convert.deformable`).

Recognised files (/work/shared/specs/deformable-detr.md, "Checkpoints"):

- ``official``: fundamentalvision/Deformable-DETR and HDETR/H-Deformable-DETR training files,
  ``{"model": state_dict, "args": argparse.Namespace, ...}``;
- ``pvic``: fredzzhang/hicodet's H-DETR files fine-tuned on HICO-DET, ``{"model_state_dict": ...}``;
- ``hoikit``: hoikit checkpoints of ``model.detr.type = deformable`` (keys ``detr.*``);
- ``bare``: a plain state dict.

Keys ending in ``total_params`` / ``total_ops`` (thop counters the official files may carry) are
dropped, as the official loader ignores them (spec: main.py 234-235). Everything else must match the
model's keys and shapes exactly; the first key that does not is named in a one-line error.
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Tuple

from torch import Tensor, nn

from ..errors import CheckpointError
from ..io.checkpoint import load_checkpoint, load_model_state, stored_input_scales
from .detr_weights import detector_weights, infer_backbone

IGNORED_SUFFIXES = ("total_params", "total_ops")


def extract_deformable_state_dict(obj, path: str = "checkpoint") -> Tuple[Dict[str, Tensor], str, object]:
    """Find the detector weights in a loaded file. Returns (state dict, format, official args or None)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    args = None
    if obj.get("format") == "hoikit":
        fmt, sd = "hoikit", obj.get("model")
    elif "model_state_dict" in obj:
        fmt, sd = "pvic", obj["model_state_dict"]
    elif "model" in obj and isinstance(obj["model"], Mapping):
        fmt, sd, args = "official", obj["model"], obj.get("args")
    else:
        fmt, sd = "bare", obj
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path}: the weights of this {fmt} file are not a dict")
    sd = detector_weights(sd, path, IGNORED_SUFFIXES)
    if not any(k.startswith("transformer.level_embed") for k in sd):
        raise CheckpointError(f"{path}: key 'transformer.level_embed' missing: not a Deformable DETR checkpoint")
    return dict(sd), fmt, args


def infer_deformable_config(sd: Mapping[str, Tensor], args=None) -> Dict:
    """Fields of :class:`hoikit.config.DETRConfig` (``type: deformable``) implied by the weights.

    Heads, sampling points and dropout leave no unambiguous trace; they come from ``args`` when the file
    has them, else the official defaults (8 heads; points from the offset shapes assuming 8 heads).
    """
    levels = int(sd["transformer.level_embed"].shape[0])
    hidden = int(sd["transformer.level_embed"].shape[1])
    enc = {int(m.group(1)) for k in sd for m in [re.match(r"transformer\.encoder\.layers\.(\d+)\.", k)] if m}
    dec = {int(m.group(1)) for k in sd for m in [re.match(r"transformer\.decoder\.layers\.(\d+)\.", k)] if m}
    two_stage = "transformer.enc_output.weight" in sd
    refine = any(k.startswith("transformer.decoder.bbox_embed.") for k in sd)
    nheads = int(getattr(args, "nheads", 8))
    off = sd["transformer.encoder.layers.0.self_attn.sampling_offsets.weight"] if enc else None
    cfg = {"type": "deformable", "num_classes": int(sd["class_embed.0.weight"].shape[0]), "hidden_dim": hidden,
           "num_feature_levels": levels, "enc_layers": max(enc) + 1 if enc else 0,
           "dec_layers": max(dec) + 1 if dec else 0, "two_stage": two_stage, "with_box_refine": refine,
           "nheads": nheads, "backbone": infer_backbone(sd, "checkpoint")}
    if enc:
        cfg["dim_feedforward"] = int(sd["transformer.encoder.layers.0.linear1.weight"].shape[0])
        cfg["enc_n_points"] = int(off.shape[0]) // (nheads * levels * 2)
    if dec:
        doff = sd["transformer.decoder.layers.0.cross_attn.sampling_offsets.weight"]
        cfg["dec_n_points"] = int(doff.shape[0]) // (nheads * levels * 2)
    if "query_embed.weight" in sd:
        q, width = sd["query_embed.weight"].shape
        cfg["mixed_selection"] = two_stage and int(width) == hidden
        cfg["num_queries"] = int(getattr(args, "num_queries_one2one", getattr(args, "num_queries", q)))
        cfg["num_queries_one2many"] = int(q) - cfg["num_queries"]
    else:
        cfg["num_queries"] = int(getattr(args, "num_queries", 300))
    if args is not None and hasattr(args, "look_forward_twice"):
        cfg["look_forward_twice"] = bool(args.look_forward_twice)
    return cfg


TRAINING_ONLY_KEYS = ("dn_label_embed.weight",)


def read_deformable_weights(path) -> Tuple[Dict[str, Tensor], Dict]:
    """Read any supported Deformable DETR file: (state dict, info with ``format``, the inferred fields and
    ``input_scales``, the image scales a hoikit file stores: :func:`~hoikit.io.checkpoint.stored_input_scales`)."""
    obj = load_checkpoint(path, require_format=False)
    sd, fmt, args = extract_deformable_state_dict(obj, str(path))
    return sd, {"format": fmt, "path": str(path), **infer_deformable_config(sd, args),
                "input_scales": stored_input_scales(obj)}


def load_deformable_weights(model: nn.Module, path) -> Dict:
    """Strictly load a Deformable DETR file into an existing :class:`DeformableDETR` (a missing
    training-only key of :data:`TRAINING_ONLY_KEYS` keeps the model's own initialisation).

    Raises:
        CheckpointError: missing file, unsafe content, or a missing / extra / misshapen key.
    """
    sd, info = read_deformable_weights(path)
    # training-only parameters a detector file never holds keep their initialisation (DN-DETR's
    # label embedding: fine-tuning a released detector with denoising on)
    sd = {**{k: v for k, v in model.state_dict().items() if k in TRAINING_ONLY_KEYS and k not in sd}, **sd}
    load_model_state(model, sd, str(path), key_prefix="")
    return info
