"""Inference on single images: ``hoikit.load(ckpt).predict(image)``.

:class:`Predictor` rebuilds the model of a hoikit checkpoint from its stored config and metadata
(no dataset, detector file or text encoder needed), applies the evaluation transforms and returns
plain-Python results with class names::

    {"image": "a.jpg", "size": [W, H], "arch": "rmlr",
     "triplets": [{"subject": "person", "verb": "ride", "object": "bicycle", "score": 0.87,
                   "subject_box": [x1, y1, x2, y2], "object_box": [...], "hoi": 12,
                   "confidence": 0.93}, ...],                                          # RmLR / UPT
     "detections": [{"label": "person", "score": 0.98, "box": [...]}, ...],
     "scene_graph": {"relations": [{"subject": "person", "predicate": "riding", "object": "bicycle",
                                    "score": 0.7, "subject_box": [...], "object_box": [...]}]}}   # SG2HOI+

Boxes are xyxy in original-image pixels; lists are sorted by descending score. ``score`` ranks the
triplets (the HICO-DET evaluation's score); RmLR / UPT triplets also carry ``confidence``, the same
triplet on the probability scale that training fits (:func:`triplet_confidence`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image

from ..config import from_dict, to_dict
from ..data.dataset import build_transforms
from ..errors import CheckpointError, DataError
from ..io.checkpoint import load_checkpoint, load_model_state, write_model_dir
from ..recipes import get_recipe
from ..structures import HOIPrediction, SceneGraphPrediction
from .distributed import resolve_device

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]
MAX_RELATIONS = 20  # scene-graph relations kept per image (most confident first)


def to_pil(image: ImageLike) -> Image.Image:
    """Path, PIL image or ``[H, W, 3]`` uint8 array -> RGB PIL image (one-line DataError otherwise)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.stack([image] * 3, -1)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise DataError(f"image array has shape {image.shape}, expected [H, W, 3]")
        if image.dtype != np.uint8:
            image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return Image.fromarray(image[..., :3])
    path = Path(image)
    if not path.is_file():
        raise DataError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({type(e).__name__})") from None


def triplet_confidence(score: float, s_h: float, s_o: float, power_test: float, power_train: float = 1.0) -> float:
    """The probability that training fits for a UPT-style triplet (RmLR Eq. 21 / UPT): the loss is a
    focal loss with alpha 0.5 and gamma 0.2, close to binary cross-entropy, on
    ``sigmoid(logit) * (s_h * s_o)^p_train``; inference ranks by ``score = sigmoid(logit) * (s_h * s_o)^p_test``
    (``model.rmlr.prior_power_train`` 1 and ``prior_power_test`` 2.8). So the confidence is
    ``score * (s_h * s_o)^(p_train - p_test)``, rounded to 4 decimals.

    The ranking score is what mAP measures; the confidence is on the scale of a probability. With a
    focal-loss detector's box scores of 0.3-0.5, a pair the interaction head is sure of has confidence
    ~0.2 but score ~0.01. It is the fitted value, not a calibrated probability: it cannot exceed
    ``(s_h * s_o)^p_train``, and a focal loss with gamma 0.2 settles above small true rates (at a rate of
    0.1, near 0.13). It assumes the checkpoint's training exponent (``model.rmlr.prior_power_train``). The
    classifier's sigmoid alone is not a probability of the triplet: training only fits its product with
    the detection scores, and it saturates near 1 on every plausible pair.
    """
    prior = s_h * s_o
    return round(min(1.0, score * prior ** (power_train - power_test)), 4) if prior > 0 else 0.0


def model_from_checkpoint(path: Union[str, os.PathLike], cfg=None, state: Optional[Dict] = None):
    """Rebuild the model of a hoikit checkpoint and load its weights strictly.

    Args:
        path: the checkpoint (named in errors).
        cfg: the config to build with (default: the checkpoint's; ``hoikit test`` passes the
            checkpoint's with data / eval overrides).
        state: the already loaded checkpoint dict (default: read ``path``).

    Returns:
        ``(model, cfg, meta)``; meta is a DatasetMeta, or ``(meta_hoi, meta_sgg)`` for SG2HOI+. The
        model is an inference build (RmLR without its training-only cross-modal modules).
    """
    ck = state if state is not None else load_checkpoint(path)
    if cfg is None:
        try:
            cfg = from_dict(ck["config"], where=str(path))
        except Exception as e:
            raise CheckpointError(f"{path}: key 'config' is not a valid hoikit config "
                                  f"({str(e).splitlines()[0]})") from None
    cfg.model.detr.checkpoint = ""  # every weight comes from this file
    if not ck.get("meta"):
        raise CheckpointError(f"{path}: key 'meta' is empty (class names unknown)")
    recipe = get_recipe(cfg.model.arch)
    meta = recipe.meta_from_dict(ck["meta"])
    # built for inference from the stored weights: e.g. SG2HOI+'s class-embedding tables come from the
    # state dict, not from CLIP / a text encoder; RmLR has no training-only cross-modal modules
    model = recipe.build_model(cfg, meta, state_dict=ck["model"], inference=True)
    load_model_state(model, recipe.inference_state_dict(model, ck["model"]), str(path))
    return model, cfg, meta


def export_model_dir(checkpoint: Union[str, os.PathLike], out: Union[str, os.PathLike]) -> Dict[str, Path]:
    """``hoikit export --format dir``: the checkpoint's inference model (strictly loaded) as a model directory."""
    return Predictor.from_checkpoint(checkpoint).save(out)


def _box(b) -> List[float]:
    return [round(float(x), 2) for x in b]


class Predictor:
    """A model ready for inference.

    Args:
        model: built model with loaded weights. cfg: its :class:`~hoikit.config.Config`.
        meta: DatasetMeta, or ``(meta_hoi, meta_sgg)`` for SG2HOI+. device: where to run.
    """

    def __init__(self, model: torch.nn.Module, cfg, meta, device: Union[str, torch.device] = "cpu"):
        self.recipe = get_recipe(cfg.model.arch)
        self.recipe.check_predictable(model)
        self.meta = meta
        self.cfg, self.device = cfg, resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.model = model.to(self.device).eval()
        self.arch = cfg.model.arch
        self.meta_hoi, self.meta_sgg = meta if isinstance(meta, tuple) else (meta, None)
        self.transforms = build_transforms(cfg.data, train=False)

    @classmethod
    def from_checkpoint(cls, path: Union[str, os.PathLike], device: str = "cpu") -> "Predictor":
        """Load a hoikit checkpoint (training or inference) or model directory strictly."""
        model, cfg, meta = model_from_checkpoint(path)
        return cls(model, cfg, meta, device)

    def save(self, out: Union[str, os.PathLike]) -> Dict[str, Path]:
        """Write this model as a model directory (config.yaml, model.safetensors, classes.json; see
        :mod:`hoikit.io.checkpoint`) that :func:`hoikit.load` reads without pickle. Returns the paths."""
        return write_model_dir(out, to_dict(self.cfg), self.recipe.meta_to_dict(self.meta), self.model.state_dict())

    def preprocess(self, image: Image.Image):
        """PIL image -> (normalised ``[3, H', W']`` tensor, target dict with ``orig_size``/``size`` (W, H))."""
        empty = dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64),
                     hois=torch.zeros(0, 3, dtype=torch.int64), relations=torch.zeros(0, 3, dtype=torch.int64))
        tensor, _ = self.transforms(image, empty)
        target = {"orig_size": torch.tensor(image.size), "size": torch.tensor([tensor.shape[-1], tensor.shape[-2]])}
        return tensor, target

    def predict(self, image: ImageLike, threshold: float = 0.2, max_triplets: int = 100,
                min_confidence: Optional[float] = None) -> Dict:
        """Named predictions for one image (see module docstring); scores below ``threshold`` dropped.

        ``min_confidence``: for a model whose triplets carry a ``confidence`` (RmLR / UPT), keep the triplets
        whose confidence is at least this value, whatever their score (``threshold`` then applies to the
        detections only; the boxes of kept triplets are listed too); ignored by other models. None or
        negative (default None): triplets are kept by score.
        """
        result = self.predict_batch([image], threshold, max_triplets, min_confidence)[0]
        result["image"] = str(image) if isinstance(image, (str, os.PathLike)) else None
        return result

    @torch.no_grad()
    def predict_batch(self, images: List[ImageLike], threshold: float = 0.2, max_triplets: int = 100,
                      min_confidence: Optional[float] = None) -> List[Dict]:
        """Named predictions for several images in one forward pass (e.g. video frames).

        Returns one result dict per image, in order, each as :meth:`predict` returns it with ``image`` = None.
        """
        pils = [to_pil(im) for im in images]
        if not pils:
            return []
        tensors, targets = zip(*(self.preprocess(p) for p in pils))
        outputs = self.recipe.forward(self.model, [t.to(self.device) for t in tensors], list(targets))
        results: List[Dict] = [{"image": None, "size": list(p.size), "arch": self.arch, "triplets": [],
                                "detections": []} for p in pils]
        for task in self.recipe.prediction_tasks(self.model, self.meta):   # e.g. SG2HOI+: hoi, then sgg
            for r, pred in zip(results, self.recipe.postprocess(self.model, outputs, list(targets), task)):
                if isinstance(pred, HOIPrediction):
                    self._add_hoi(r, pred, threshold, max_triplets, min_confidence)
                elif isinstance(pred, SceneGraphPrediction):
                    r["scene_graph"] = self._scene_graph(pred, threshold)
                else:  # detector: dict of boxes / scores / labels
                    self._add_detections(r, pred["boxes"], pred["labels"], pred["scores"], threshold)
        return results

    def _names(self, meta, labels) -> List[str]:
        objs = meta.objects
        return [objs[int(l)] if 0 <= int(l) < len(objs) else f"class{int(l)}" for l in labels]

    def _add_detections(self, result, boxes, labels, scores, threshold, also=()):
        """``result["detections"]``: the boxes scoring at least ``threshold``, and those in ``also`` (the
        boxes of triplets kept by confidence, whatever their score), by descending score."""
        meta = self.meta_hoi or self.meta_sgg
        names = self._names(meta, labels)
        order = np.argsort(-np.asarray(scores), kind="stable")
        also = set(int(i) for i in also)
        result["detections"] = [{"label": names[i], "score": round(float(scores[i]), 4), "box": _box(boxes[i])}
                                for i in order if scores[i] >= threshold or int(i) in also]

    def _add_hoi(self, result: Dict, pred: HOIPrediction, threshold: float, max_triplets: int,
                 min_confidence: Optional[float] = None) -> None:
        meta = self.meta_hoi
        if len(pred.pairs) == 0:
            self._add_detections(result, pred.boxes, pred.labels, pred.box_scores, threshold)
            return
        powers = self._prior_powers()
        by_confidence = min_confidence is not None and min_confidence >= 0 and powers is not None
        floor = 0.0 if by_confidence else threshold   # by confidence: every triplet is a candidate
        if len(meta.correspondence):
            t = pred.triplets(meta.correspondence, threshold=floor)
            pair, verb, score, hoi = t["pair"], t["verb"], t["score"], t["hoi"]
        else:  # V-COCO style: every verb column is its own class
            pair, verb = np.nonzero(pred.verb_scores >= floor)
            score, hoi = pred.verb_scores[pair, verb], verb
        names = self._names(meta, pred.labels)
        rows, kept_boxes = [], set()
        for i in np.argsort(-score, kind="stable"):
            if len(rows) >= max_triplets:
                break
            h, o = pred.pairs[pair[i]]
            confidence = None if powers is None else triplet_confidence(
                float(score[i]), float(pred.box_scores[h]), float(pred.box_scores[o]), *powers)
            if by_confidence and confidence < min_confidence:
                continue
            row = {"subject": names[h], "verb": meta.verbs[int(verb[i])], "object": names[o],
                   "score": round(float(score[i]), 4), "subject_box": _box(pred.boxes[h]),
                   "object_box": _box(pred.boxes[o]), "hoi": int(hoi[i])}
            if confidence is not None:
                row["confidence"] = confidence
            rows.append(row)
            kept_boxes.update((int(h), int(o)))
        result["triplets"] = rows
        # kept by confidence, a triplet's boxes are listed even below the detections' score threshold
        self._add_detections(result, pred.boxes, pred.labels, pred.box_scores, threshold,
                             kept_boxes if by_confidence else ())

    def _prior_powers(self) -> Optional[Tuple[float, float]]:
        """``(p_test, p_train)`` of a UPT-style score ``sigmoid(logit) * (s_h * s_o)^p`` (RmLR / UPT), or
        None for a model without that score (SG2HOI+)."""
        return get_recipe(self.arch).score_exponents(self.cfg)

    def _scene_graph(self, sg: SceneGraphPrediction, threshold: float) -> Dict:
        meta = self.meta_sgg
        names = self._names(meta, sg.labels)
        if len(sg.pairs) == 0:
            return {"relations": []}
        order, pred, score = sg.ranked_relations()    # the SGDet evaluator's ranking (p_pred x s_sub x s_obj)
        rows = []
        for i in order:
            if score[i] < threshold or len(rows) >= MAX_RELATIONS:
                break
            s, o = sg.pairs[i]
            rows.append({"subject": names[s], "predicate": meta.predicates[int(pred[i])], "object": names[o],
                         "score": round(float(score[i]), 4), "subject_box": _box(sg.boxes[s]),
                         "object_box": _box(sg.boxes[o])})
        return {"relations": rows}
