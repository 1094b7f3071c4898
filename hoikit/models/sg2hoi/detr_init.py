"""Initialise SG2HOI+ from a pretrained DETR (paper Section IV-D: "Following [17], we initialize our
model's parameters using the pretrained DETR model on the MS-COCO dataset").

What maps (DETR name -> SG2HOI+ name), everything else keeps its random initialisation:

- ``backbone.0.body.*`` -> ``backbone.body.*``
- ``transformer.encoder.layers.i.*`` -> ``encoder.encoder.layers.i.*`` (i < enc_layers)
- ``transformer.decoder.layers.i.*`` and ``transformer.decoder.norm.*`` -> the relation decoder and
  the HOI decoder (HOI-Trans initialises its interaction decoder from DETR's decoder the same way)
- ``query_embed.weight`` -> the relation queries (and the HOI queries) when N equals DETR's 100
- ``bbox_embed.layers.*`` -> the four box MLPs (subject / object, human / object)

DETR's ``input_proj`` (C -> 256) does not fit the C -> C' reduction and its class head has other
classes: both stay random. A shape mismatch on a mapped key is an error (one line naming the key).
"""
from __future__ import annotations

import re
from typing import Dict, List

from torch import nn

from ...errors import CheckpointError
from ..checkpoints import read_detr_weights


def _targets(model: nn.Module, key: str) -> List[str]:
    """SG2HOI+ keys that a DETR key initialises (possibly none)."""
    if key.startswith("backbone.0.body."):
        return ["backbone.body." + key[len("backbone.0.body."):]]
    m = re.match(r"transformer\.encoder\.(layers\.\d+\..*)", key)
    if m:
        return ["encoder.encoder." + m.group(1)]
    m = re.match(r"transformer\.decoder\.((layers\.\d+|norm)\..*)", key)
    if m:
        return [f"{d}.decoder.{m.group(1)}" for d in ("rel_decoder", "hoi_decoder")]
    if key == "query_embed.weight":
        return ["rel_decoder.query_embed.weight", "query_transform.query_embed.weight"]
    m = re.match(r"bbox_embed\.(layers\.\d+\..*)", key)
    if m:
        return [f"{d}.head.{b}.{m.group(1)}" for d in ("rel_decoder", "hoi_decoder") for b in ("left_box", "right_box")]
    return []


def init_from_detr(model: nn.Module, path: str) -> Dict[str, int]:
    """Copy the mappable DETR weights of ``path`` (any format hoikit reads) into ``model``.

    Returns:
        counts: ``loaded`` SG2HOI+ tensors set, ``unused`` DETR tensors without a target (class
        head, input projection, layers beyond the model's depth, or query sets of another size).
    """
    sd, _ = read_detr_weights(path)
    own = model.state_dict()
    new, unused = {}, 0
    for key, value in sd.items():
        targets = [t for t in _targets(model, key) if t in own]
        if key == "query_embed.weight":
            targets = [t for t in targets if own[t].shape == value.shape]
        if not targets:
            unused += 1
            continue
        for t in targets:
            if own[t].shape != value.shape:
                raise CheckpointError(f"{path}: key '{key}' has shape {tuple(value.shape)}, SG2HOI+ '{t}' "
                                      f"needs {tuple(own[t].shape)} (model.sg2hoi.hidden_dim / backbone?)")
            new[t] = value
    if not any(k.startswith("backbone.body.") for k in new):
        raise CheckpointError(f"{path}: no backbone weights match model.detr.backbone")
    model.load_state_dict(new, strict=False)
    return {"loaded": len(new), "unused": unused}
