"""Evaluator adapters for :func:`hoikit.engine.trainer.evaluate`: each has ``add(index, prediction)``
and ``compute() -> dict of scalar metrics`` (percent), and keeps the full result in ``.results``.

* :class:`HOIEvaluation` - official HICO-DET protocol (HICO-DET and SynthHOI), primary ``mAP_full``;
* :class:`DetectionEvaluation` - detector AP at IoU 0.5 (VOC all-point, per class then mean), primary ``AP50``;
* :class:`SGGEvaluation` - SGDet recall (R@K, mR@K, ...), primary ``mR@50``.

:class:`EvalTask` bundles a dataset, an evaluator factory and the ``postprocess`` task, so one run can
be scored by several protocols (SG2HOI+: SGDet on the scene-graph test set and HICO-DET on the HOI
test set); their metric keys do not collide and are merged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..structures import box_iou

DETECTION_IOU = 0.5  # PASCAL VOC / COCO AP50 overlap threshold


@dataclass
class EvalTask:
    """One evaluation of :func:`hoikit.engine.trainer.fit`.

    Args:
        dataset: evaluation images (``target["index"]`` indexes the evaluator's ground truth).
        make_evaluator: returns a fresh adapter (``add``, ``compute``).
        task: ``model.postprocess(..., task=task)`` (None = the model's default output).
    """

    dataset: object
    make_evaluator: Callable
    task: Optional[str] = None


class HOIEvaluation:
    """Args: anno: HICO-DET-format annotation file of the evaluated split; skip_empty: UPT rule;
    threshold: minimum (pair, verb) score kept (``cfg.eval.threshold``)."""

    primary = "mAP_full"

    def __init__(self, anno, skip_empty: bool = False, threshold: float = 0.0):
        from ..eval.hicodet import HICODetEvaluator

        self.ev = HICODetEvaluator(anno, skip_empty=skip_empty)
        self.threshold = threshold
        self.results: Dict = {}

    def add(self, index: int, prediction) -> None:
        self.ev.add_prediction(index, prediction, self.threshold)

    def compute(self) -> Dict[str, float]:
        self.results = r = self.ev.compute()
        out = {f"mAP_{k}": float(v) for k, v in r["default"].items()}
        out.update({f"ko_mAP_{k}": float(v) for k, v in r["known_object"].items()})
        return out


class DetectionEvaluation:
    """Detector AP50. Args: samples: ground truth per image index (``boxes [N,4]``, ``labels [N]``);
    num_classes: classes averaged over (those with ground truth)."""

    primary = "AP50"

    def __init__(self, samples: Sequence, num_classes: int):
        self.samples, self.num_classes = samples, num_classes
        self.dets: List = []
        self.results: Dict = {}

    def add(self, index: int, prediction: Dict) -> None:
        self.dets.append((index, prediction))

    def compute(self) -> Dict[str, float]:
        from ..eval.ap import precision_recall, voc_ap_all_point

        scores = {c: [] for c in range(self.num_classes)}
        tps = {c: [] for c in range(self.num_classes)}
        npos = np.zeros(self.num_classes, np.int64)
        for s in self.samples:
            npos += np.bincount(np.asarray(s.labels, np.int64), minlength=self.num_classes)[: self.num_classes]
        for index, p in self.dets:
            gt = self.samples[index]
            for c in np.unique(p["labels"]):
                sel = np.nonzero(p["labels"] == c)[0]
                sel = sel[np.argsort(-p["scores"][sel], kind="stable")]
                g = np.nonzero(np.asarray(gt.labels) == c)[0]
                iou = box_iou(p["boxes"][sel], np.asarray(gt.boxes)[g]) if len(g) else np.zeros((len(sel), 0))
                taken = np.zeros(len(g), bool)
                for row, k in enumerate(sel):  # greedy VOC matching in score order
                    j = int(iou[row].argmax()) if len(g) else -1
                    ok = j >= 0 and iou[row, j] >= DETECTION_IOU and not taken[j]
                    if ok:
                        taken[j] = True
                    scores[int(c)].append(float(p["scores"][k]))
                    tps[int(c)].append(ok)
        aps = {}
        for c in range(self.num_classes):
            if npos[c] == 0:
                continue
            order = np.argsort(-np.asarray(scores[c]), kind="stable")
            tp = np.asarray(tps[c], bool)[order]
            rec, prec = precision_recall(tp, int(npos[c]))
            aps[c] = voc_ap_all_point(rec, prec) if len(tp) else 0.0
        self.results = {"per_class": aps}
        return {"AP50": 100.0 * float(np.mean(list(aps.values()))) if aps else 0.0}


class SGGEvaluation:
    """Args: samples: ground truth per image index (``boxes``, ``labels``, ``relations``);
    num_predicates: P; zeroshot/longtail: optional tables of :mod:`hoikit.eval.sgg`."""

    primary = "mR@50"

    def __init__(self, samples: Sequence, num_predicates: int, zeroshot: Optional[np.ndarray] = None,
                 longtail: Optional[Dict] = None):
        self.samples, self.num_predicates = samples, num_predicates
        self.zeroshot, self.longtail = zeroshot, longtail
        self.preds: List = []
        self.results: Dict = {}

    def add(self, index: int, prediction) -> None:
        self.preds.append((index, prediction))

    def compute(self) -> Dict[str, float]:
        from ..eval.sgg import evaluate

        self.results = r = evaluate(self.preds, self.samples, self.num_predicates, self.zeroshot, self.longtail)
        return {k: 100.0 * float(v) for k, v in r.items()
                if isinstance(v, (float, np.floating)) and "@" in k and "per_predicate" not in k}
