"""Read DETR weights from any released format and load them strictly into a DETR (key mapping and
architecture inference; the files are read by :mod:`hoikit.io.checkpoint`, converting them into hoikit
checkpoints is :mod:`hoikit.convert.detr`).

Recognised sources (see /work/shared/specs/detr-and-upt.md):

- ``official``: facebookresearch/detr, ``{"model": state_dict, "args": argparse.Namespace, ...}``;
- ``upt``: fredzzhang/upt, ``{"model_state_dict": ...}``; full UPT files carry ``detector.*`` keys plus
  the interaction head, of which only the detector is taken here;
- ``huggingface``: ``DetrForObjectDetection`` state dicts (``model.backbone.conv_encoder.model.*``,
  q/k/v projections split), ``.bin``/``.pth`` or ``.safetensors``;
- ``hoikit``: hoikit checkpoints (``model.arch = detr``, keys ``detr.*``);
- ``bare``: a plain DETR state dict.

Files are read by :func:`hoikit.io.checkpoint.load_checkpoint` (``torch.load(weights_only=True)`` with the
one allow-list; anything else is refused, never unpickled). Every key of the model must be found with the
right shape and no key may be left over.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..io.checkpoint import is_model_dir, load_checkpoint, load_model_state, stored_input_scales, strip_wrappers
from .backbone import SMALL_BODIES
from .hf_detr import HF5_BACKBONE, HF_BACKBONE, hf_to_detr

# ----------------------------------------------------------------------------------------------
# reading files

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_hf_detr_dir(path) -> Tuple[Dict[str, Tensor], Dict]:
    """A Hugging Face DETR model directory (``save_pretrained`` / Hub snapshot): ``config.json`` and
    ``model.safetensors`` (or ``pytorch_model.bin``).

    Returns:
        (the weights as stored, architecture facts the weights cannot tell: ``dilation``, ``nheads`` and
        ``class_names`` from ``id2label`` (index i = class i; unnamed indices become ``class_<i>``)).
    """
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{path}: a directory without config.json (expected a Hugging Face DETR model directory)")
    try:
        hf = json.loads(cfg_file.read_text())
    except ValueError as e:
        raise CheckpointError(f"{cfg_file}: cannot parse JSON ({_first_line(e)})") from None
    if not isinstance(hf, dict) or hf.get("model_type") != "detr":
        found = hf.get("model_type") if isinstance(hf, dict) else None
        raise CheckpointError(f"{cfg_file}: key 'model_type' is {found!r}, expected 'detr'")
    weights = next((path / n for n in HF_WEIGHT_FILES if (path / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{path}: no {' or '.join(HF_WEIGHT_FILES)} next to config.json")
    labels = {int(k): str(v) for k, v in (hf.get("id2label") or {}).items()}
    facts = {"dilation": bool(hf.get("dilation", False)), "nheads": int(hf.get("encoder_attention_heads", 8)),
             "id2label": labels, "weights": str(weights)}
    return load_checkpoint(weights, require_format=False), facts


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


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
    sd = detector_weights(sd, path)
    if any(k.startswith((HF_BACKBONE, HF5_BACKBONE, "class_labels_classifier.")) for k in sd):
        try:
            sd = hf_to_detr(sd)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        fmt = "huggingface" if fmt == "bare" else fmt
    return dict(sd), fmt, args


def agreed_size(sd: Mapping[str, Tensor], name: str, witnesses: Sequence[Tuple[str, int]], path: str = "checkpoint",
                key_prefix: str = "") -> int:
    """The size ``name`` that every present ``(key, axis)`` of ``witnesses`` implies.

    A dimension read from one tensor alone would build the model around a misshapen tensor and blame
    a correct key for the mismatch; reading it from several keys lets the error name the culprit.

    Raises:
        CheckpointError: one line naming the keys that disagree and the size each implies (the
            minority first, with the key holding the odd value), ``key_prefix`` before each key.
    """
    seen: Dict[int, List[str]] = {}
    for key, axis in witnesses:
        t = sd.get(key)
        if isinstance(t, Tensor) and t.dim() > axis:
            seen.setdefault(int(t.shape[axis]), []).append(key)
    if not seen:
        raise CheckpointError(f"{path}: none of the keys {', '.join(repr(key_prefix + k) for k, _ in witnesses)} "
                              f"is present: cannot infer {name}")
    if len(seen) > 1:
        groups = sorted(seen.items(), key=lambda kv: len(kv[1]))
        parts = [", ".join(f"'{key_prefix}{k}' {tuple(sd[k].shape)}" for k in keys) + f" imply {name} = {v}"
                 for v, keys in groups]
        raise CheckpointError(f"{path}: keys disagree on {name}: " + "; ".join(parts))
    return next(iter(seen))


def detector_weights(sd: Mapping, path: str = "checkpoint", drop_suffixes: Tuple[str, ...] = ()) -> Dict[str, Tensor]:
    """The detector's own state dict inside a file's weights: every value a tensor (else one line naming
    the key), keys ending in ``drop_suffixes`` left out, DDP / ``torch.compile`` prefixes removed, and the
    ``detector.`` (UPT / RmLR) or ``detr.`` (hoikit's detector wrapper) prefix taken off when present.
    Shared by the DETR and Deformable DETR readers."""
    sd = {k: v for k, v in sd.items() if not k.endswith(drop_suffixes)} if drop_suffixes else sd
    for k, v in sd.items():
        if not isinstance(v, Tensor):
            raise CheckpointError(f"{path}: key '{k}' is a {type(v).__name__}, not a tensor")
    sd = strip_wrappers(sd)
    for prefix in ("detector.", "detr."):
        if any(k.startswith(prefix + "class_embed.") for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def infer_detr_config(sd: Mapping[str, Tensor], args: Optional[argparse.Namespace] = None,
                      path: str = "checkpoint", key_prefix: str = "") -> Dict:
    """Architecture fields of :class:`hoikit.config.DETRConfig` implied by the weights.

    num_classes = ``class_embed`` rows - 1; backbone from the block counts; hidden_dim,
    num_queries, FFN width and layer counts from shapes, each size checked against every key that
    implies it (:func:`agreed_size`). Dilation (DC5) and heads leave no trace in the
    weights: they come from ``args`` when present (official files), else the DETR defaults
    (no DC5, 8 heads) and ``dilation_known`` is False. ``key_prefix``: written before keys in errors.
    """
    for key in ("class_embed.weight", "query_embed.weight"):
        if key not in sd:
            raise CheckpointError(f"{path}: key '{key}' missing: not a DETR checkpoint")
    cfg = {"num_classes": agreed_size(sd, "num_classes + 1", [("class_embed.weight", 0), ("class_embed.bias", 0)],
                                      path, key_prefix) - 1,
           "hidden_dim": agreed_size(sd, "hidden_dim", [("class_embed.weight", 1), ("query_embed.weight", 1),
                                                        ("input_proj.weight", 0), ("input_proj.bias", 0),
                                                        ("bbox_embed.layers.0.weight", 1)], path, key_prefix),
           "num_queries": int(sd["query_embed.weight"].shape[0])}
    for part in ("encoder", "decoder"):
        idx = {int(m.group(1)) for k in sd for m in [re.match(rf"transformer\.{part}\.layers\.(\d+)\.", k)] if m}
        cfg["enc_layers" if part == "encoder" else "dec_layers"] = max(idx) + 1 if idx else 0
    ffn = [(f"transformer.{part}.layers.{i}.{name}", axis) for part in ("encoder", "decoder") for i in range(2)
           for name, axis in (("linear1.weight", 0), ("linear1.bias", 0), ("linear2.weight", 1))]
    if any(k in sd for k, _ in ffn):
        cfg["dim_feedforward"] = agreed_size(sd, "dim_feedforward", ffn, path, key_prefix)
    cfg["backbone"] = infer_backbone(sd, path)
    cfg["dilation"] = bool(getattr(args, "dilation", False))
    cfg["nheads"] = int(getattr(args, "nheads", 8))
    cfg["dilation_known"] = args is not None and hasattr(args, "dilation")
    return cfg


def infer_backbone(sd: Mapping[str, Tensor], path: str) -> str:
    """The ``model.detr.backbone`` name that the ``backbone.0.body.*`` keys imply (DETR and Deformable DETR)."""
    if any(k.startswith("backbone.0.body.stem.") for k in sd):   # the multi-scale small_res body
        return "small_res"
    convs = [k for k in sd if re.fullmatch(r"backbone\.0\.body\.layers\.\d+\.weight", k) and sd[k].dim() == 4]
    if convs:   # the small trainable bodies, told apart by their number of convolutions
        by_count = {len(widths) * per_stage: name for name, (widths, per_stage) in SMALL_BODIES.items()}
        if len(convs) not in by_count:
            raise CheckpointError(f"{path}: {len(convs)} convolutions under 'backbone.0.body.layers.*' match "
                                  "no backbone (" + ", ".join(f"{n} has {c}" for c, n in by_count.items()) + ")")
        return by_count[len(convs)]
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

def read_detr_weights(path) -> Tuple[Dict[str, Tensor], Dict]:
    """Read any supported DETR file.

    Args:
        path: a file, a hoikit model directory (``hoikit export --format dir``) or a Hugging Face DETR
            model directory (:func:`read_hf_detr_dir`).

    Returns:
        (state dict in hoikit/official names, info dict: ``format``, ``path`` and the inferred
        architecture fields of :func:`infer_detr_config`; ``class_names`` when the source names its classes;
        ``input_scales``: the image scales a hoikit file stores, :func:`~hoikit.io.checkpoint.stored_input_scales`).
    """
    if Path(path).is_dir() and not is_model_dir(path):
        obj, hf = read_hf_detr_dir(path)
        sd, _, _ = extract_detr_state_dict(obj, hf["weights"])
        info = {"format": "huggingface", "path": str(path), **infer_detr_config(sd, None, hf["weights"])}
        info.update(dilation=hf["dilation"], nheads=hf["nheads"], dilation_known=True, input_scales={},
                    class_names=[hf["id2label"].get(i, f"class_{i}") for i in range(info["num_classes"])])
        return sd, info
    obj = load_checkpoint(path, require_format=False)   # a file or a model directory (hoikit export --format dir)
    sd, fmt, args = extract_detr_state_dict(obj, str(path))
    info = {"format": fmt, "path": str(path), **infer_detr_config(sd, args, str(path)),
            "input_scales": stored_input_scales(obj)}
    if fmt == "hoikit" and isinstance(obj.get("config"), Mapping):
        det = obj["config"].get("model", {}).get("detr", {})
        info["dilation"], info["nheads"] = bool(det.get("dilation", False)), int(det.get("nheads", 8))
        info["dilation_known"] = "dilation" in det
    elif not info["dilation_known"] and "dc5" in Path(path).name.lower():
        info["dilation"], info["dilation_known"] = True, True  # official release names: detr-r50-dc5-*.pth
    return sd, info


def load_detr_weights(model: nn.Module, path) -> Dict:
    """Strictly load a DETR file into an existing :class:`hoikit.models.detr.DETR` (with hybrid
    matching on, a file with only the one-to-one query rows fills them and keeps the rest).

    Returns:
        the info dict of :func:`read_detr_weights`.

    Raises:
        CheckpointError: missing file, unsafe content, or a missing / extra / misshapen key.
    """
    sd, info = read_detr_weights(path)
    q2, own = int(getattr(model, "num_queries_one2many", 0)), model.state_dict()
    qe = sd.get("query_embed.weight")
    if q2 > 0 and qe is not None and qe.shape[0] == own["query_embed.weight"].shape[0] - q2:
        # hybrid matching from a DETR file: its rows are the one-to-one queries, the training-only
        # one-to-many rows keep their initialisation
        sd = {**sd, "query_embed.weight": torch.cat([qe, own["query_embed.weight"][qe.shape[0]:].to(qe)])}
    # DN-DETR's training-only modules keep their initialisation
    sd = {**{k: v for k, v in own.items() if k.startswith(("dn_label_embed.", "dn_box_embed.")) and k not in sd}, **sd}
    load_model_state(model, sd, str(path), key_prefix="")
    return info
