"""Evaluator adapters for :func:`hoikit.engine.trainer.evaluate` and ``hoikit test``: each has
``add(index, prediction)`` and ``compute() -> dict of scalar metrics`` (percent), and keeps the full
result in ``.results``. Adapters that write evaluator files (``hoikit test``) also have
``prepare(index, prediction) -> record`` (run on every rank before gathering: a compact record that
``add`` accepts too), ``save(out_dir) -> path`` (the evaluator's detection file) and ``table()``.

* :class:`HOIEvaluation` - official HICO-DET protocol (HICO-DET and SynthHOI), primary ``mAP_full``;
* :class:`DetectionEvaluation` - detector AP at IoU 0.5 (VOC all-point, per class then mean), primary ``AP50``;
* :class:`SGGEvaluation` - SGDet recall (R@K, mR@K, ...), primary ``mR@50``;
* :class:`VCOCOEvaluation` - official V-COCO role AP (Scenario 1 / 2) and agent AP, primary ``role_mAP_S1``.

:class:`EvalTask` bundles a dataset, an evaluator factory and the ``postprocess`` task, so one run can
be scored by several protocols (SG2HOI+: SGDet on the scene-graph test set and HICO-DET on the HOI
test set); their metric keys do not collide and are merged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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
    threshold: minimum (pair, verb) score kept (``cfg.eval.threshold``); zero_shot: ``data.zero_shot``
    (adds ``mAP_unseen`` / ``mAP_seen``, Default setting)."""

    protocol = "hicodet"
    primary = "mAP_full"

    file_name = "detections.npz"

    def __init__(self, anno, skip_empty: bool = False, threshold: float = 0.0, zero_shot: str = ""):
        from ..eval.hicodet import HICODetEvaluator

        self.ev = HICODetEvaluator(anno, skip_empty=skip_empty, zero_shot=zero_shot)
        self.threshold = threshold
        self.results: Dict = {}
        self._parts: List[Dict[str, np.ndarray]] = []

    def prepare(self, index: int, prediction) -> Dict[str, np.ndarray]:
        """HOIPrediction -> the image's (pair, verb) entries as HOI classes (scores >= threshold):
        ``hoi [T]``, ``score [T]``, ``box_h`` / ``box_o [T, 4]`` (original pixels)."""
        t = prediction.triplets(self.ev.gt.correspondence, threshold=self.threshold)
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
        from ..eval.hicodet_io import DETECTION_KEYS

        empty = {"image": np.zeros(0, np.int64), "hoi": np.zeros(0, np.int64), "score": np.zeros(0, np.float32),
                 "box_h": np.zeros((0, 4), np.float32), "box_o": np.zeros((0, 4), np.float32)}
        return {k: np.concatenate([p[k] for p in self._parts]) if self._parts else empty[k] for k in DETECTION_KEYS}

    def save(self, out_dir) -> Path:
        path = Path(out_dir) / self.file_name
        np.savez(path, **self.detections())
        return path

    def table(self) -> str:
        from ..eval.hicodet import format_results

        return format_results(self.results)


class DetectionEvaluation:
    """Detector AP50. Args: samples: ground truth per image index (``boxes [N,4]``, ``labels [N]``);
    num_classes: classes averaged over (those with ground truth)."""

    protocol = "detection"
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
        from ..eval.sgg import evaluate

        self.results = r = evaluate(self.preds, self.samples, self.num_predicates, self.zeroshot, self.longtail)
        return {k: 100.0 * float(v) for k, v in r.items()
                if isinstance(v, (float, np.floating)) and "@" in k and "per_predicate" not in k}

    file_name = "scene_graphs.npz"

    def prepare(self, index: int, prediction):
        return prediction

    def save(self, out_dir) -> Path:
        from ..eval.sgg_io import save_predictions

        path = Path(out_dir) / self.file_name
        save_predictions(sorted(self.preds, key=lambda p: p[0]), path)
        return path

    def table(self) -> str:
        from ..eval.sgg import format_results

        return format_results(self.results)


class VCOCOEvaluation:
    """Official V-COCO evaluation (s-gupta/v-coco ``vsrl_eval.py``, :mod:`hoikit.eval.vcoco`).

    Args:
        vcoco_json, coco_json, ids_file: the official ground truth (``data.vcoco_json``,
            ``data.coco_json``, ``data.vcoco_ids``).
        image_ids: COCO image id of each reader index (``VCOCOReader.image_ids``).
        classes: the model's "action role" verb names (``meta.verbs``).

    Each detected pair becomes one official record (:func:`hoikit.eval.vcoco.pairs_to_detections`).
    """

    protocol = "vcoco"
    primary = "role_mAP_S1"
    file_name = "detections.pkl"      # official records (s-gupta/v-coco cache format)

    def __init__(self, vcoco_json, coco_json, ids_file, image_ids: Sequence[int], classes: Sequence[str]):
        from ..eval.vcoco import load_ground_truth

        self.gt = load_ground_truth(vcoco_json, coco_json, ids_file)
        self.image_ids, self.classes = list(image_ids), list(classes)
        self.parts: List = []
        self.results: Dict = {}

    def prepare(self, index: int, prediction):
        from ..eval.vcoco import pairs_to_detections

        return pairs_to_detections([prediction], [int(self.image_ids[index])], self.classes)

    def add(self, index: int, prediction) -> None:
        from ..eval.vcoco import VCOCODetections

        self.parts.append(prediction if isinstance(prediction, VCOCODetections) else self.prepare(index, prediction))

    def detections(self):
        from ..eval.vcoco import VCOCODetections, pairs_to_detections

        return VCOCODetections.concatenate(self.parts) if self.parts else pairs_to_detections([], [], self.classes)

    def compute(self) -> Dict[str, float]:
        from ..eval.vcoco import evaluate

        self.results = r = evaluate(self.gt, self.detections())
        return {"role_mAP_S1": 100.0 * r["scenario_1"]["mean_role_ap"],
                "role_mAP_S2": 100.0 * r["scenario_2"]["mean_role_ap"],
                "role_mAP_S1_no_point": 100.0 * r["scenario_1"]["mean_role_ap_no_point"],
                "role_mAP_S2_no_point": 100.0 * r["scenario_2"]["mean_role_ap_no_point"],
                "agent_mAP": 100.0 * r["mean_agent_ap"]}

    def save(self, out_dir) -> Path:
        from ..eval.vcoco_records import save_detections

        path = Path(out_dir) / self.file_name
        save_detections(self.detections(), path)
        return path

    def table(self) -> str:
        from ..eval.vcoco import format_table

        return format_table(self.results)
