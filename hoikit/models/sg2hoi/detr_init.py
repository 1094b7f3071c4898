"""Initialise SG2HOI+ from a pretrained DETR (paper Section IV-D: "Following [17], we initialize our
model's parameters using the pretrained DETR model on the MS-COCO dataset").

What maps (DETR name -> SG2HOI+ name), everything else keeps its random initialisation:

- ``backbone.0.body.*`` -> ``backbone.body.*``
- ``transformer.encoder.layers.i.*`` -> ``encoder.encoder.layers.i.*`` (i < enc_layers)
- ``transformer.decoder.layers.i.*`` and ``transformer.decoder.norm.*`` -> the relation decoder and
  the HOI decoder (HOI-Trans initialises its interaction decoder from DETR's decoder the same way)
- ``query_embed.weight`` -> the relation queries ``Q_rel`` when N equals DETR's num_queries. The HOI
  queries ``Q_hoi`` keep their random initialisation: the paper "start[s] by randomly initializing a
  set of HOI query vectors" (Sec. III-C), and -QUTR "learns a set of HOI queries from scratch"
  (Sec. IV); copying DETR's queries into both would start -QUTR as RELQ
- ``bbox_embed.layers.*`` -> the four box MLPs (subject / object, human / object)

- ``input_proj.*`` -> ``hss.detr_proj.*`` when ``model.sg2hoi.detr_proj`` builds it (``f_agg`` then
  starts as DETR's encoder input; see :class:`SemanticSpatialAggregation`)

The entity branches (``left_branch`` / ``right_branch``: Linear + ReLU before the box MLPs) start
as a shifted identity whose shift the branch's consumers subtract again
(:func:`_shifted_identity_branches`), so at initialisation the relation and HOI box predictions are
exactly DETR's boxes. DETR's ``input_proj`` (C -> d) does not fit the C -> C' reduction and
without ``detr_proj`` it is unused; its class head has other classes and stays random. A shape
mismatch on a mapped key is an error (one line naming the key).
"""
from __future__ import annotations

import math
import re
from typing import Dict, List

import torch
from torch import nn

from ...errors import CheckpointError
from ..detr_weights import read_detr_weights


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
        return ["rel_decoder.query_embed.weight"]             # Q_hoi stays random (Sec. III-C)
    m = re.match(r"input_proj\.(weight|bias)", key)
    if m:                                                   # only with model.sg2hoi.detr_proj
        return ["hss.detr_proj." + m.group(1)]
    m = re.match(r"bbox_embed\.(layers\.\d+\..*)", key)
    if m:
        return [f"{d}.head.{b}.{m.group(1)}" for d in ("rel_decoder", "hoi_decoder") for b in ("left_box", "right_box")]
    return []


def _shifted_identity_branches(model: nn.Module, sd: Dict[str, torch.Tensor], loaded: Dict[str, torch.Tensor]) -> None:
    """Entity branches ``f = ReLU(W h + b)`` set to ``W = I``, ``b = c`` and every consumer of ``f``
    (box MLP, classifier projection, R2ITrans ``W_t``) given bias ``b' = b - W' c``, so that at
    initialisation the branch is exactly the identity for the box MLPs of DETR.

    ``h`` is the output of DETR's final decoder LayerNorm (weight ``g``, bias ``beta``); a normalised
    component is bounded by ``sqrt(d)``, so ``c = |g| sqrt(d) - beta`` (clamped at 0) keeps
    ``h + c >= 0`` for every input and the ReLU never cuts.
    """
    g, beta = sd.get("transformer.decoder.norm.weight"), sd.get("transformer.decoder.norm.bias")
    if g is None or beta is None:
        return
    c = (g.float().abs() * math.sqrt(g.numel()) - beta.float()).clamp(min=0)            # [d]
    r2i = getattr(model, "r2i", None)
    for dec_name in ("rel_decoder", "hoi_decoder"):
        dec = getattr(model, dec_name, None)
        if dec is None:
            continue
        head = dec.head
        for side, r2i_cols in (("left", 0), ("right", 2)):                              # W_t[f_s; f_r; f_o]
            if f"{dec_name}.head.{side}_box.layers.0.weight" not in loaded:
                continue
            branch = getattr(head, f"{side}_branch")[0]
            if branch.weight.shape != (c.numel(), c.numel()):
                continue
            branch.weight.copy_(torch.eye(c.numel()))
            branch.bias.copy_(c)
            cls = getattr(head, f"{side}_cls")
            for lin in (getattr(head, f"{side}_box").layers[0], getattr(cls, "proj", cls)):
                lin.bias.sub_(lin.weight @ c)
            if dec_name == "rel_decoder" and r2i is not None:
                d = c.numel()
                r2i.w_t.bias.sub_(r2i.w_t.weight[:, r2i_cols * d:(r2i_cols + 1) * d] @ c)


@torch.no_grad()
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
    _shifted_identity_branches(model, sd, new)
    return {"loaded": len(new), "unused": unused}
