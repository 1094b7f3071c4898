"""Key mapping between hoikit/official DETR and HuggingFace ``DetrForObjectDetection`` state dicts.

Facts from /work/shared/specs/detr-and-upt.md and HuggingFace's DETR conversion script
(transformers ``convert_detr_original_pytorch_checkpoint_to_pytorch.py``): backbone
``backbone.0.body`` <-> ``model.backbone.conv_encoder.model`` (timm ResNet names equal torchvision's),
``in_proj`` <-> ``q_proj``/``k_proj``/``v_proj`` (rows in q, k, v order), ``linear1/2`` <-> ``fc1/2``,
encoder ``norm1/2`` <-> ``self_attn_layer_norm``/``final_layer_norm``, decoder ``norm1/2/3`` <->
``self_attn_layer_norm``/``encoder_attn_layer_norm``/``final_layer_norm``, ``multihead_attn`` <->
``encoder_attn``, ``transformer.decoder.norm`` <-> ``model.decoder.layernorm``, ``input_proj`` <->
``model.input_projection``, ``query_embed`` <-> ``model.query_position_embeddings``,
``class_embed`` <-> ``class_labels_classifier``, ``bbox_embed`` <-> ``bbox_predictor``.
"""
from __future__ import annotations

import re
from typing import Dict, Mapping

import torch
from torch import Tensor

from ..errors import CheckpointError

HF_BACKBONE = "model.backbone.conv_encoder.model."
# transformers 5.x in-memory names (``DetrForObjectDetection(config).state_dict()``) differ from the
# Hub files: native (non-timm) ResNet under ``model.backbone.model``, ``o_proj``, ``mlp.fc1/2``.
HF5_BACKBONE = "model.backbone.model."

# (hoikit suffix, HF suffix) inside transformer layers; attention in_proj is split separately.
_ENC_RENAMES = [("linear1", "fc1"), ("linear2", "fc2"), ("norm1", "self_attn_layer_norm"),
                ("norm2", "final_layer_norm"), ("self_attn.out_proj", "self_attn.out_proj")]
_DEC_RENAMES = [("linear1", "fc1"), ("linear2", "fc2"), ("norm1", "self_attn_layer_norm"),
                ("norm2", "encoder_attn_layer_norm"), ("norm3", "final_layer_norm"),
                ("self_attn.out_proj", "self_attn.out_proj"), ("multihead_attn.out_proj", "encoder_attn.out_proj")]
_TOP_RENAMES = [("transformer.decoder.norm.", "model.decoder.layernorm."), ("input_proj.", "model.input_projection."),
                ("query_embed.", "model.query_position_embeddings."), ("class_embed.", "class_labels_classifier."),
                ("bbox_embed.", "bbox_predictor."), ("backbone.0.body.", HF_BACKBONE)]


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


def _hf5_backbone_name(rest: str) -> str:
    """transformers' native ResNet names -> torchvision names (``rest`` follows ``model.backbone.model.``)."""
    rest = re.sub(r"^embedder\.embedder\.convolution\.", "conv1.", rest)
    rest = re.sub(r"^embedder\.embedder\.normalization\.", "bn1.", rest)
    m = re.match(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(.+)$", rest)
    if m is None:
        return rest
    stage, block, tail = int(m.group(1)), m.group(2), m.group(3)
    tail = re.sub(r"^shortcut\.convolution\.", "downsample.0.", tail)
    tail = re.sub(r"^shortcut\.normalization\.", "downsample.1.", tail)
    tail = re.sub(r"^layer\.(\d+)\.convolution\.", lambda t: f"conv{int(t.group(1)) + 1}.", tail)
    tail = re.sub(r"^layer\.(\d+)\.normalization\.", lambda t: f"bn{int(t.group(1)) + 1}.", tail)
    return f"layer{stage + 1}.{block}.{tail}"


def normalize_hf_names(sd: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Bring transformers-5 names (in memory, or native-ResNet names in ``save_pretrained`` files) to the
    Hub (v4, timm) names that :func:`hf_to_detr` maps."""
    out = {}
    for k, v in sd.items():
        if k.startswith(HF5_BACKBONE):
            k = HF_BACKBONE + _hf5_backbone_name(k[len(HF5_BACKBONE):])
        elif k.startswith(HF_BACKBONE + "embedder.") or k.startswith(HF_BACKBONE + "encoder.stages."):
            # save_pretrained files of transformers 5 with the native ResNet: Hub prefix, native names
            k = HF_BACKBONE + _hf5_backbone_name(k[len(HF_BACKBONE):])
        k = k.replace(".o_proj.", ".out_proj.").replace(".mlp.fc1.", ".fc1.").replace(".mlp.fc2.", ".fc2.")
        out[k] = v
    return out


def hf_to_detr(sd: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """``DetrForObjectDetection`` keys -> hoikit/official DETR keys (q/k/v concatenated into in_proj).

    Accepts Hub file names (timm backbone) and transformers-5 in-memory names (native ResNet).

    Raises:
        CheckpointError: a key with no DETR equivalent, or an incomplete q/k/v triple.
    """
    out: Dict[str, Tensor] = {}
    qkv: Dict[str, Dict[str, Tensor]] = {}
    for k, v in normalize_hf_names(sd).items():
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
