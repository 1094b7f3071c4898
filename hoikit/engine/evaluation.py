"""Moved to :mod:`hoikit.eval.adapters` (the recipes, which the engine imports, build the evaluations);
these names stay importable from here."""
from ..eval.adapters import (DetectionEvaluation, EvalTask, HOIEvaluation, SGGEvaluation, VCOCOEvaluation,
                             detection_ground_truth)

__all__ = ["DetectionEvaluation", "EvalTask", "HOIEvaluation", "SGGEvaluation", "VCOCOEvaluation",
           "detection_ground_truth"]
