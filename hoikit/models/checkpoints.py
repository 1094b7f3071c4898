"""Load DETR weights from any released format, strictly, and convert them to hoikit checkpoints.

Recognised sources (see /work/shared/specs/detr-and-upt.md):

- ``official``: facebookresearch/detr, ``{"model": state_dict, "args": argparse.Namespace, ...}``;
- ``upt``: fredzzhang/upt, ``{"model_state_dict": ...}``; full UPT files carry ``detector.*`` keys plus
  the interaction head, of which only the detector is taken here;
- ``huggingface``: ``DetrForObjectDetection`` state dicts (``model.backbone.conv_encoder.model.*``,
  q/k/v projections split), ``.bin``/``.pth`` or ``.safetensors``;
- ``hoikit``: hoikit checkpoints (``model.arch = detr``, keys ``detr.*``);
- ``bare``: a plain DETR state dict.

Files are read with ``torch.load(weights_only=True)`` and an explicit allow-list (only
``argparse.Namespace``, for official training files); anything else is refused, never unpickled.
Every key of the model must be found with the right shape and no key may be left over.
"""
from __future__ import annotations

import argparse
import json
import pickle
import re
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from ..errors import CheckpointError

SAFE_GLOBALS = [argparse.Namespace]
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
HF_BACKBONE = "model.backbone.conv_encoder.model."

# (hoikit suffix, HF suffix) inside transformer layers; attention in_proj is split separately.
_ENC_RENAMES = [("linear1", "fc1"), ("linear2", "fc2"), ("norm1", "self_attn_layer_norm"),
                ("norm2", "final_layer_norm"), ("self_attn.out_proj", "self_attn.out_proj")]
_DEC_RENAMES = [("linear1", "fc1"), ("linear2", "fc2"), ("norm1", "self_attn_layer_norm"),
                ("norm2", "encoder_attn_layer_norm"), ("norm3", "final_layer_norm"),
                ("self_attn.out_proj", "self_attn.out_proj"), ("multihead_attn.out_proj", "encoder_attn.out_proj")]
_TOP_RENAMES = [("transformer.decoder.norm.", "model.decoder.layernorm."), ("input_proj.", "model.input_projection."),
                ("query_embed.", "model.query_position_embeddings."), ("class_embed.", "class_labels_classifier."),
                ("bbox_embed.", "bbox_predictor."), ("backbone.0.body.", HF_BACKBONE)]


# ----------------------------------------------------------------------------------------------
# reading files

def read_checkpoint_file(path) -> object:
    """Read a ``.pth``/``.bin``/``.pt`` (weights-only pickle) or ``.safetensors`` file.

    Raises:
        CheckpointError: missing file, unreadable file, or content outside the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:
            raise CheckpointError(f"{path}: cannot read safetensors file ({_first_line(e)})") from None
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load (not weights-only safe): {_first_line(e)}") from None
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {_first_line(e)})") from None


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def strip_wrappers(sd: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Remove DataParallel/DDP ``module.`` and ``torch.compile`` ``_orig_mod.`` prefixes anywhere in front."""
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in WRAPPER_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


# ----------------------------------------------------------------------------------------------
# HuggingFace key mapping (both directions)

def detr_to_hf(sd: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """hoikit/official DETR keys -> ``DetrForObjectDetection`` keys (in_proj split into q/k/v)."""
    out: Dict[str, Tensor] = {}
    for k, v in sd.items():
        m = re.match(r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(.+)$", k)
        if m is None:
            for a, b in _TOP_RENAMES:
                if k.startswith(a):
                    out[b + k[len(a):]] = v
                    break
            else:
                raise CheckpointError(f"key '{k}' has no HuggingFace equivalent")
            continue
        part, i, rest = m.groups()
        base = f"model.{part}.layers.{i}."
        attn = re.match(r"(self_attn|multihead_attn)\.in_proj_(weight|bias)$", rest)
        if attn:
            hf_attn = "self_attn" if attn.group(1) == "self_attn" else "encoder_attn"
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), v.chunk(3, dim=0)):
                out[f"{base}{hf_attn}.{name}.{attn.group(2)}"] = chunk.clone()
            continue
        for a, b in (_ENC_RENAMES if part == "encoder" else _DEC_RENAMES):
            if rest.startswith(a + "."):
                out[base + b + rest[len(a):]] = v
                break
        else:
            raise CheckpointError(f"key '{k}' has no HuggingFace equivalent")
    return out


def hf_to_detr(sd: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """``DetrForObjectDetection`` keys -> hoikit/official DETR keys (q/k/v concatenated into in_proj).

    Raises:
        CheckpointError: a key with no DETR equivalent, or an incomplete q/k/v triple.
    """
    out: Dict[str, Tensor] = {}
    qkv: Dict[str, Dict[str, Tensor]] = {}
    for k, v in sd.items():
        m = re.match(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.+)$", k)
        if m is None:
            for a, b in _TOP_RENAMES:
                if k.startswith(b):
                    out[a + k[len(b):]] = v
                    break
            else:
                raise CheckpointError(f"unexpected key '{k}' (no DETR equivalent)")
            continue
        part, i, rest = m.groups()
        base = f"transformer.{part}.layers.{i}."
        attn = re.match(r"(self_attn|encoder_attn)\.(q_proj|k_proj|v_proj)\.(weight|bias)$", rest)
        if attn:
            name = "self_attn" if attn.group(1) == "self_attn" else "multihead_attn"
            qkv.setdefault(f"{base}{name}.in_proj_{attn.group(3)}", {})[attn.group(2)] = v
            continue
        for a, b in (_ENC_RENAMES if part == "encoder" else _DEC_RENAMES):
            if rest.startswith(b + "."):
                out[base + a + rest[len(b):]] = v
                break
        else:
            raise CheckpointError(f"unexpected key '{k}' (no DETR equivalent)")
    for key, parts in qkv.items():
        for p in ("q_proj", "k_proj", "v_proj"):
            if p not in parts:
                raise CheckpointError(f"key '{key}': HuggingFace {p} missing for this attention layer")
        out[key] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]], dim=0)
    return out


# ----------------------------------------------------------------------------------------------
# recognising the source

def extract_detr_state_dict(obj, path="checkpoint") -> Tuple[Dict[str, Tensor], str, Optional[argparse.Namespace]]:
    """Find the DETR weights in a loaded object and bring them to hoikit/official key names.

    Returns:
        (state_dict, source format, official ``args`` Namespace or None).
    """
    args = None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    if obj.get("format") == "hoikit":
        fmt, sd = "hoikit", obj.get("model")
    elif "model_state_dict" in obj:
        fmt, sd = "upt", obj["model_state_dict"]
    elif "model" in obj and isinstance(obj["model"], Mapping):
        fmt, sd, args = "official", obj["model"], obj.get("args")
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        fmt, sd = "bare", obj["state_dict"]
    else:
        fmt, sd = "bare", obj
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path}: the weights of this {fmt} file are not a dict")
    for k, v in sd.items():
        if not isinstance(v, Tensor):
            raise CheckpointError(f"{path}: key '{k}' is a {type(v).__name__}, not a tensor")
    sd = strip_wrappers(sd)
    for prefix in ("detector.", "detr."):  # UPT / RmLR models and hoikit DETRDetector wrap DETR
        if any(k.startswith(prefix + "class_embed.") for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if any(k.startswith(HF_BACKBONE) or k.startswith("class_labels_classifier.") for k in sd):
        try:
            sd = hf_to_detr(sd)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        fmt = "huggingface" if fmt == "bare" else fmt
    return dict(sd), fmt, args


def infer_detr_config(sd: Mapping[str, Tensor], args: Optional[argparse.Namespace] = None,
                      path: str = "checkpoint") -> Dict:
    """Architecture fields of :class:`hoikit.config.DETRConfig` implied by the weights.

    num_classes = ``class_embed.weight.shape[0] - 1``; backbone from the block counts; hidden_dim,
    num_queries, FFN width and layer counts from shapes. Dilation (DC5) and heads leave no trace in the
    weights: they come from ``args`` when present (official files), else the DETR defaults
    (no DC5, 8 heads) and ``dilation_known`` is False.
    """
    for key in ("class_embed.weight", "query_embed.weight"):
        if key not in sd:
            raise CheckpointError(f"{path}: key '{key}' missing: not a DETR checkpoint")
    cfg = {"num_classes": int(sd["class_embed.weight"].shape[0]) - 1,
           "hidden_dim": int(sd["class_embed.weight"].shape[1]),
           "num_queries": int(sd["query_embed.weight"].shape[0])}
    for part in ("encoder", "decoder"):
        idx = {int(m.group(1)) for k in sd for m in [re.match(rf"transformer\.{part}\.layers\.(\d+)\.", k)] if m}
        cfg["enc_layers" if part == "encoder" else "dec_layers"] = max(idx) + 1 if idx else 0
    ffn = "transformer.encoder.layers.0.linear1.weight"
    ffn = ffn if ffn in sd else "transformer.decoder.layers.0.linear1.weight"
    if ffn in sd:
        cfg["dim_feedforward"] = int(sd[ffn].shape[0])
    cfg["backbone"] = _infer_backbone(sd, path)
    cfg["dilation"] = bool(getattr(args, "dilation", False))
    cfg["nheads"] = int(getattr(args, "nheads", 8))
    cfg["dilation_known"] = args is not None and hasattr(args, "dilation")
    return cfg


def _infer_backbone(sd: Mapping[str, Tensor], path: str) -> str:
    if any(k.startswith("backbone.0.body.layers.") for k in sd):
        return "tiny"
    blocks = {int(m.group(1)) for k in sd for m in [re.match(r"backbone\.0\.body\.layer3\.(\d+)\.", k)] if m}
    bottleneck = "backbone.0.body.layer1.0.conv3.weight" in sd
    table = {(2, False): "resnet18", (6, False): "resnet34", (6, True): "resnet50", (23, True): "resnet101"}
    name = table.get((len(blocks), bottleneck))
    if name is None:
        raise CheckpointError(f"{path}: cannot recognise the backbone from keys 'backbone.0.body.layer3.*' "
                              f"({len(blocks)} blocks, bottleneck={bottleneck})")
    return name


# ----------------------------------------------------------------------------------------------
# strict loading

def check_state_dict(model: nn.Module, sd: Mapping[str, Tensor], path: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming the first missing, unexpected or misshapen key."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if missing:
        raise CheckpointError(f"{path}: key '{missing[0]}' missing ({len(missing)} missing keys)")
    if extra:
        raise CheckpointError(f"{path}: unexpected key '{extra[0]}' ({len(extra)} unexpected keys)")
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: key '{k}' has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}")


def read_detr_weights(path) -> Tuple[Dict[str, Tensor], Dict]:
    """Read any supported DETR file.

    Returns:
        (state dict in hoikit/official names, info dict: ``format``, ``path`` and the inferred
        architecture fields of :func:`infer_detr_config`).
    """
    obj = read_checkpoint_file(path)
    sd, fmt, args = extract_detr_state_dict(obj, str(path))
    info = {"format": fmt, "path": str(path), **infer_detr_config(sd, args, str(path))}
    if fmt == "hoikit" and isinstance(obj.get("config"), Mapping):
        det = obj["config"].get("model", {}).get("detr", {})
        info["dilation"], info["nheads"] = bool(det.get("dilation", False)), int(det.get("nheads", 8))
        info["dilation_known"] = "dilation" in det
    elif not info["dilation_known"] and "dc5" in Path(path).name.lower():
        info["dilation"], info["dilation_known"] = True, True  # official release names: detr-r50-dc5-*.pth
    return sd, info


def load_detr_weights(model: nn.Module, path) -> Dict:
    """Strictly load a DETR file into an existing :class:`hoikit.models.detr.DETR`.

    Returns:
        the info dict of :func:`read_detr_weights`.

    Raises:
        CheckpointError: missing file, unsafe content, or a missing / extra / misshapen key.
    """
    sd, info = read_detr_weights(path)
    check_state_dict(model, sd, str(path))
    model.load_state_dict(sd, strict=True)
    return info


def load_detr(path, **overrides):
    """Build a DETR with the architecture found in ``path`` and load it strictly.

    Args:
        overrides: DETRConfig fields that the weights cannot tell (``dilation``, ``nheads``, ...).

    Returns:
        (DETR, info dict).
    """
    from ..config import DETRConfig
    from .detr import build_detr

    sd, info = read_detr_weights(path)
    fields = {k: info[k] for k in DETRConfig.__dataclass_fields__ if k in info}
    fields.update(overrides)
    model = build_detr(DETRConfig(**fields))
    check_state_dict(model, sd, str(path))
    model.load_state_dict(sd, strict=True)
    return model, info
