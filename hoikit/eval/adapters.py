"""Evaluator adapters for :func:`hoikit.engine.trainer.evaluate` and ``hoikit test`` (the recipes,
:mod:`hoikit.recipes`, build them): each has
``add(index, prediction)`` and ``compute() -> dict of scalar metrics`` (percent), and keeps the full
result in ``.results``. Every adapter is an :class:`Evaluation`: also
``prepare(index, prediction) -> record`` (run on every rank before gathering: a compact record that
``add`` accepts too), ``save(out_dir) -> path`` (the evaluator's detection file, None when there is
none) and ``table()``.

* :class:`HOIEvaluation` - official HICO-DET protocol (HICO-DET and SynthHOI), primary ``mAP_full``;
* :class:`DetectionEvaluation` - detector box AP by the COCO protocol (pycocotools), primary ``AP50``;
* :class:`SGGEvaluation` - SGDet recall (R@K, mR@K, ...), primary ``mR@50``;
* :class:`VCOCOEvaluation` - official V-COCO role AP (Scenario 1 / 2) and agent AP, primary ``role_mAP_S1``.

:class:`EvalTask` bundles a dataset, an evaluator factory and the ``postprocess`` task, so one run can
be scored by several protocols (SG2HOI+: SGDet on the scene-graph test set and HICO-DET on the HOI
test set); their metric keys do not collide and are merged.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from ..structures import top_k_mask
from . import sgg as sgg_eval, vcoco as vcoco_eval
from .detection import coco_detection_metrics, format_detection_metrics
from .hicodet import HICODetEvaluator, format_results as hicodet_table
from .hicodet_io import DETECTION_KEYS
from .sgg import format_results as sgg_table
from .sgg_io import save_predictions
from .vcoco import VCOCODetections, load_ground_truth, pairs_to_detections
from .vcoco_records import save_detections


@runtime_checkable
class Evaluation(Protocol):
    """What the engine asks of an evaluator adapter (training-time ``evaluate`` and ``hoikit test``)."""

    protocol: str                     # name in metrics.json and of the written file's prefix
    primary: str                      # the metric that selects best.pt by default
    results: Dict                     # the full result of the last compute()

    def prepare(self, index: int, prediction) -> Any:
        """A compact record of one prediction (run on its rank before the gather; ``add`` takes it)."""

    def add(self, index: int, prediction) -> None:
        """One image's prediction (or its prepared record)."""

    def compute(self) -> Dict[str, float]:
        """Scalar metrics (percent)."""

    def save(self, out_dir) -> Optional[Path]:
        """The evaluator's detection file in ``out_dir`` (None when the protocol has none)."""

    def table(self) -> str:
        """The printed table of :attr:`results`."""


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
    threshold: minimum (pair, verb) score kept (``cfg.eval.threshold``); max_detections: keep the
    top-K (pair, verb) triplets per image (``cfg.eval.max_detections``, QPIC: 100; 0 = all); zero_shot:
    ``data.zero_shot`` (adds ``mAP_unseen`` / ``mAP_seen``, Default setting)."""

    protocol = "hicodet"
    primary = "mAP_full"

    file_name = "detections.npz"

    def __init__(self, anno, skip_empty: bool = False, threshold: float = 0.0, max_detections: int = 0,
                 zero_shot: str = ""):

        self.ev = HICODetEvaluator(anno, skip_empty=skip_empty, zero_shot=zero_shot)
        self.threshold, self.max_detections = threshold, max_detections
        self.results: Dict = {}
        self._parts: List[Dict[str, np.ndarray]] = []

    def prepare(self, index: int, prediction) -> Dict[str, np.ndarray]:
        """HOIPrediction -> the image's (pair, verb) entries as HOI classes (scores >= threshold,
        at most ``max_detections`` of the highest): ``hoi [T]``, ``score [T]``, ``box_h`` / ``box_o [T, 4]``
        (original pixels)."""
        t = prediction.triplets(self.ev.gt.correspondence, threshold=self.threshold,
                                max_triplets=self.max_detections)
        return {k: t[k] for k in ("hoi", "score", "box_h", "box_o")}

    def add(self, index: int, prediction) -> None:
        t = prediction if isinstance(prediction, dict) else self.prepare(index, prediction)
        self.ev.add(index, t["hoi"], t["score"], t["box_h"], t["box_o"])
        self._parts.append({"image": np.full(len(t["hoi"]), index, np.int64), **t})

    def compute(self) -> Dict[str, float]:
        self.results = r = self.ev.compute()
        out = {f"mAP_{k}": float(v) for k, v in r["default"].items()}
        out.update({f"ko_mAP_{k}": float(v) for k, v in r["known_object"].items()})
        if "zero_shot" in r:
            out.update({f"mAP_{k}": float(r["zero_shot"]["default"][k]) for k in ("unseen", "seen")})
        return out

    def detections(self) -> Dict[str, np.ndarray]:
        """Everything added, as the arrays of ``hoikit eval hicodet`` (docs/formats.md)."""

        empty = {"image": np.zeros(0, np.int64), "hoi": np.zeros(0, np.int64), "score": np.zeros(0, np.float32),
                 "box_h": np.zeros((0, 4), np.float32), "box_o": np.zeros((0, 4), np.float32)}
        return {k: np.concatenate([p[k] for p in self._parts]) if self._parts else empty[k] for k in DETECTION_KEYS}

    def save(self, out_dir) -> Path:
        path = Path(out_dir) / self.file_name
        np.savez(path, **self.detections())
        return path

    def table(self) -> str:
        return hicodet_table(self.results)


class DetectionEvaluation:
    """Detector box AP by the COCO protocol (:func:`hoikit.eval.detection.coco_detection_metrics`,
    pycocotools).

    Args:
        ground_truth: per image index, ``boxes [N, 4]``, ``labels [N]`` and optionally ``iscrowd [N]``,
            ``area [N]`` (a :class:`~hoikit.structures.Sample` or :func:`detection_ground_truth`'s dicts).
        class_names: ``[K]`` class names (``meta.objects``).

    ``compute()`` gives ``AP`` (IoU 0.50:0.95), ``AP50`` (primary: selects ``best.pt``; SynthHOI's
    detector targets are AP50), ``AP75``, ``APs`` / ``APm`` / ``APl`` and ``AP50/<class>`` per class
    with ground truth, in percent; ``results`` also holds the per-class AP.
    """

    protocol = "detection"
    primary = "AP50"

    def __init__(self, ground_truth: Sequence, class_names: Sequence[str]):
        self.ground_truth, self.class_names = ground_truth, list(class_names)
        self.dets: Dict[int, Dict] = {}
        self.results: Dict = {}

    def prepare(self, index: int, prediction: Dict) -> Dict:
        return prediction

    def add(self, index: int, prediction: Dict) -> None:
        """prediction: ``boxes [M, 4]`` xyxy original pixels, ``scores [M]``, ``labels [M]``."""
        self.dets[int(index)] = prediction

    def save(self, out_dir) -> Optional[Path]:
        """No detection file: the metrics (metrics.json) are the result."""
        return None

    def compute(self) -> Dict[str, float]:
        self.results = r = coco_detection_metrics(self.ground_truth, self.dets, self.class_names)
        out = {k: r[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
        out.update({f"AP50/{c}": v for c, v in r["per_class_AP50"].items()})
        return out

    def table(self) -> str:
        return format_detection_metrics(self.results)


def detection_ground_truth(reader) -> List:
    """Evaluation ground truth of every image of ``reader`` for :class:`DetectionEvaluation`: the
    reader's ``detection_targets(i)`` when it has them (COCO files: crowd regions and the file's
    ``area``), else its samples (no crowd; COCO's size ranges then use the box area)."""
    targets = getattr(reader, "detection_targets", None)
    return [targets(i) if targets is not None else reader[i] for i in range(len(reader))]


class SGGEvaluation:
    """Args: samples: ground truth per image index (``boxes``, ``labels``, ``relations``);
    num_predicates: P; zeroshot/longtail: optional tables of :mod:`hoikit.eval.sgg`."""

    protocol = "sgg"
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
        self.results = r = sgg_eval.evaluate(self.preds, self.samples, self.num_predicates, self.zeroshot, self.longtail)
        return {k: 100.0 * float(v) for k, v in r.items()
                if isinstance(v, (float, np.floating)) and "@" in k and "per_predicate" not in k}

    file_name = "scene_graphs.npz"

    def prepare(self, index: int, prediction):
        return prediction

    def save(self, out_dir) -> Path:
        path = Path(out_dir) / self.file_name
        save_predictions(sorted(self.preds, key=lambda p: p[0]), path)
        return path

    def table(self) -> str:
        return sgg_table(self.results)


class VCOCOEvaluation:
    """Official V-COCO evaluation (s-gupta/v-coco ``vsrl_eval.py``, :mod:`hoikit.eval.vcoco`).

    Args:
        vcoco_json, coco_json, ids_file: the official ground truth (``data.vcoco_json``,
            ``data.coco_json``, ``data.vcoco_ids``).
        image_ids: COCO image id of each reader index (``VCOCOReader.image_ids``).
        classes: the model's "action role" verb names (``meta.verbs``).
        max_detections: keep the top-K (pair, action-role) scores per image (``cfg.eval.max_detections``);
            the others become "no prediction" (NaN) in the pair's record. 0 = all.

    Each detected pair becomes one official record (:func:`hoikit.eval.vcoco.pairs_to_detections`).
    """

    protocol = "vcoco"
    primary = "role_mAP_S1"
    file_name = "detections.pkl"      # official records (s-gupta/v-coco cache format)

    def __init__(self, vcoco_json, coco_json, ids_file, image_ids: Sequence[int], classes: Sequence[str],
                 max_detections: int = 0):

        self.gt = load_ground_truth(vcoco_json, coco_json, ids_file)
        self.image_ids, self.classes = list(image_ids), list(classes)
        self.max_detections = max_detections
        self.parts: List = []
        self.results: Dict = {}

    def prepare(self, index: int, prediction):
        if self.max_detections > 0:
            keep = top_k_mask(prediction.verb_scores, self.max_detections)
            prediction = dataclasses.replace(prediction, verb_scores=np.where(keep, prediction.verb_scores, np.nan))
        return pairs_to_detections([prediction], [int(self.image_ids[index])], self.classes)

    def add(self, index: int, prediction) -> None:
        self.parts.append(prediction if isinstance(prediction, VCOCODetections) else self.prepare(index, prediction))

    def detections(self):
        return VCOCODetections.concatenate(self.parts) if self.parts else pairs_to_detections([], [], self.classes)

    def compute(self) -> Dict[str, float]:
        self.results = r = vcoco_eval.evaluate(self.gt, self.detections())
        return {"role_mAP_S1": 100.0 * r["scenario_1"]["mean_role_ap"],
                "role_mAP_S2": 100.0 * r["scenario_2"]["mean_role_ap"],
                "role_mAP_S1_no_point": 100.0 * r["scenario_1"]["mean_role_ap_no_point"],
                "role_mAP_S2_no_point": 100.0 * r["scenario_2"]["mean_role_ap_no_point"],
                "agent_mAP": 100.0 * r["mean_agent_ap"]}

    def save(self, out_dir) -> Path:
        path = Path(out_dir) / self.file_name
        save_detections(self.detections(), path)
        return path

    def table(self) -> str:
        return vcoco_eval.format_table(self.results)
