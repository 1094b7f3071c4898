"""SG2HOI+ (paper 004): one-stage joint scene-graph generation and HOI detection. Its training phases
and learning rates per part are in the SG2HOI+ recipe (:mod:`hoikit.recipes.sg2hoi`)."""
from .build import build_sg2hoi
from .model import SG2HOIPlus

__all__ = ["SG2HOIPlus", "build_sg2hoi"]
