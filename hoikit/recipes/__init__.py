"""One recipe per model family behind one Protocol (:class:`~hoikit.recipes.base.Recipe`).

``get_recipe(cfg.model.arch)`` is how the engine and the commands reach a family; :data:`RECIPES`
is the registry, an explicit dict (``model.arch`` is a ``Literal`` of its keys, checked at load).
A new family is one recipe file plus its modules in :mod:`hoikit.models`, one entry here and its
name in ``config.Arch``.

The module functions below are the recipe calls most callers need (build a model, convert its
metadata for a checkpoint).
"""
from __future__ import annotations

from typing import Dict, Optional

from torch import nn

from ..config import choices
from ..errors import ConfigError
from .base import MetaLike, ReaderFactory, Recipe, RecipeBase, TrainingSets
from .detr import DETRRecipe
from .rmlr import RmLRRecipe
from .sg2hoi import SG2HOIRecipe

RECIPES: Dict[str, Recipe] = {"detr": DETRRecipe(), "rmlr": RmLRRecipe(), "sg2hoi": SG2HOIRecipe()}


def get_recipe(arch: str) -> Recipe:
    """The recipe of ``model.arch``.

    Raises:
        ConfigError: an unknown architecture, naming the choices.
    """
    try:
        return RECIPES[arch]
    except KeyError:
        raise ConfigError(f"config key 'model.arch': unknown architecture '{arch}' "
                          f"(choose {' | '.join(choices('model.arch'))})") from None


def build_model(cfg, meta: MetaLike, *, state_dict: Optional[Dict] = None, inference: bool = False) -> nn.Module:
    """The model of ``cfg.model.arch`` for ``meta`` (:meth:`Recipe.build_model`)."""
    return get_recipe(cfg.model.arch).build_model(cfg, meta, state_dict=state_dict, inference=inference)


def meta_to_dict(arch: str, meta: MetaLike) -> dict:
    """The checkpoint form of ``meta`` (:meth:`Recipe.meta_to_dict`)."""
    return get_recipe(arch).meta_to_dict(meta)


def meta_from_dict(arch: str, d: dict) -> MetaLike:
    """Inverse of :func:`meta_to_dict`."""
    return get_recipe(arch).meta_from_dict(d)


__all__ = ["RECIPES", "MetaLike", "ReaderFactory", "Recipe", "RecipeBase", "TrainingSets", "build_model",
           "get_recipe", "meta_from_dict", "meta_to_dict"]
