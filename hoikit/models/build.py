"""``build_model(cfg, meta)``: one entry point for every architecture, importing lazily.

``cfg.model.arch``:

* ``detr``   - trainable DETR detector (:func:`hoikit.models.detr.build_detector`);
* ``rmlr``   - UPT / RmLR on a frozen DETR (:func:`hoikit.models.rmlr.build.build_rmlr`);
* ``sg2hoi`` - SG2HOI+ (:func:`hoikit.models.sg2hoi.build.build_sg2hoi`), which takes an SGG and an
  HOI dataset meta;
* ``package.module:function`` - any other builder ``function(cfg, meta) -> nn.Module`` (plugins, tests).

Checkpoints store ``meta`` as :meth:`DatasetMeta.to_dict` (one dataset) or, for SG2HOI+,
``{"hoi": dict | None, "sgg": dict | None}``; :func:`meta_to_dict` / :func:`meta_from_dict` convert.
"""
from __future__ import annotations

import importlib
from typing import Optional, Tuple, Union

from torch import nn

from ..data.metadata import DatasetMeta
from ..errors import ConfigError

BUILDERS = {
    "detr": ("hoikit.models.detectors", "build_detector"),
    "rmlr": ("hoikit.models.rmlr.build", "build_rmlr"),
    "sg2hoi": ("hoikit.models.sg2hoi.build", "build_sg2hoi"),
}

MetaLike = Union[DatasetMeta, Tuple[Optional[DatasetMeta], Optional[DatasetMeta]], None]


def _resolve(arch: str):
    if arch in BUILDERS:
        module, name = BUILDERS[arch]
    elif ":" in arch:
        module, name = arch.split(":", 1)
    else:
        raise ConfigError(f"config key 'model.arch': unknown architecture '{arch}' "
                          f"(choose {' | '.join(BUILDERS)} or package.module:function)")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"config key 'model.arch': cannot import builder {module}:{name} ({e})") from None


def build_model(cfg, meta: MetaLike, meta_sgg: Optional[DatasetMeta] = None, state_dict=None,
                inference: bool = False) -> nn.Module:
    """Build the model of ``cfg.model.arch``.

    Args:
        cfg: full :class:`hoikit.config.Config`.
        meta: metadata of the (HOI or detection) dataset; for ``sg2hoi`` the HOI meta (or None)
            or a ``(meta_hoi, meta_sgg)`` tuple.
        meta_sgg: SG2HOI+ only: metadata of the scene-graph dataset.
        state_dict: SG2HOI+ only: the weights about to be loaded (inference): the builder then opens
            no CLIP / text encoder (their tables are in the state dict).
        inference: RmLR only: leave out the training-only cross-modal modules (the model's
            ``TRAINING_ONLY`` key prefixes; :func:`inference_state_dict` drops them from weights).
    """
    builder = _resolve(cfg.model.arch)
    if cfg.model.arch == "sg2hoi":
        if isinstance(meta, tuple):
            meta, meta_sgg = meta
        return builder(cfg, meta_sgg, meta, state_dict=state_dict)
    if meta is None:
        raise ConfigError(f"model.arch={cfg.model.arch}: needs dataset metadata (class names)")
    if cfg.model.arch == "rmlr":
        return builder(cfg, meta, inference=inference)
    return builder(cfg, meta)


def inference_state_dict(model: nn.Module, state_dict: dict) -> dict:
    """``state_dict`` without the keys of training-only modules that ``model`` (an inference build)
    does not have (prefixes in the model's ``TRAINING_ONLY``, e.g. RmLR's ``cml_ire.`` / ``cml_irm.``).
    Every other key is kept, so strict loading still reports anything else that does not fit."""
    prefixes = tuple(getattr(model, "TRAINING_ONLY", ()))
    if not prefixes:
        return state_dict
    own = model.state_dict()
    return {k: v for k, v in state_dict.items() if k in own or not k.startswith(prefixes)}


def meta_to_dict(arch: str, meta: MetaLike, meta_sgg: Optional[DatasetMeta] = None) -> dict:
    """Checkpoint form of the metadata (see module docstring)."""
    if arch == "sg2hoi":
        if isinstance(meta, tuple):
            meta, meta_sgg = meta
        return {"hoi": meta.to_dict() if meta is not None else None,
                "sgg": meta_sgg.to_dict() if meta_sgg is not None else None}
    return meta.to_dict()


def meta_from_dict(arch: str, d: dict) -> MetaLike:
    """Inverse of :func:`meta_to_dict`: a DatasetMeta, or ``(meta_hoi, meta_sgg)`` for SG2HOI+."""
    if arch == "sg2hoi":
        return tuple(DatasetMeta.from_dict(d[k]) if d.get(k) else None for k in ("hoi", "sgg"))
    return DatasetMeta.from_dict(d)
