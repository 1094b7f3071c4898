"""SG2HOI+ (paper 004): one-stage joint scene-graph generation and HOI detection."""
from .build import build_sg2hoi, phase_for_epoch
from .model import SG2HOIPlus

__all__ = ["SG2HOIPlus", "build_sg2hoi", "phase_for_epoch"]
