"""Run an exported hoikit model with onnxruntime: ``OnnxPredictor.from_dir(DIR).predict(image)``.

:class:`OnnxModel` runs the graphs of :mod:`hoikit.deploy.onnx_export` on one preprocessed image
and returns what the PyTorch model's eval forward returns (numpy instead of tensors);
:class:`OnnxPredictor` adds the evaluation transforms and the named output of
:class:`hoikit.engine.inference.Predictor` (same JSON). The glue between the UPT / RmLR graphs is
:meth:`OnnxModel._hoi` (docs/onnx.md).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch

from ..config import from_dict
from ..data.dataset import build_transforms
from ..engine.inference import Predictor, to_pil
from ..errors import CheckpointError, ConfigError
from ..recipes import meta_from_dict
from ..structures import HOIPrediction
from .onnx_export import FORMAT, FORMAT_VERSION, MANIFEST


def require_onnxruntime():
    """Import ``onnxruntime``; a one-line ConfigError naming the extra when it is missing."""
    try:
        import onnxruntime  # optional dependency (extra 'onnx')
    except ImportError:
        raise ConfigError("running ONNX models needs the 'onnx' extra: pip install 'hoikit[onnx]' "
                          "(or pip install onnxruntime)") from None
    return onnxruntime


def read_manifest(directory: Union[str, os.PathLike]) -> dict:
    """``DIR/manifest.json`` checked for format and version (one-line CheckpointError otherwise)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{path}: not found (expected a directory written by 'hoikit export --format onnx')")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read ({type(e).__name__})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: key 'format'/'version' is {manifest.get('format')!r}/"
                              f"{manifest.get('version')!r}, expected {FORMAT!r}/{FORMAT_VERSION}")
    return manifest


class OnnxModel:
    """The ONNX graphs of one exported model.

    Args:
        directory: the export directory. threads: onnxruntime intra-op threads (0 = its default).
    """

    def __init__(self, directory: Union[str, os.PathLike], threads: int = 0):
        ort = require_onnxruntime()
        self.directory = Path(directory)
        self.manifest = read_manifest(directory)
        self.arch = self.manifest["arch"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sessions = {}
        for name, g in self.manifest["graphs"].items():
            path = self.directory / g["file"]
            if not path.is_file():
                raise CheckpointError(f"{path}: graph '{name}' named in {MANIFEST} is missing")
            self.sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, image: Union[torch.Tensor, np.ndarray]) -> Dict[str, np.ndarray]:
        """One normalised ``[3, H, W]`` image -> the model's eval output for it: ``boxes``, ``scores``,
        ``labels`` (DETR: all Q queries; Deformable DETR: its top-k detections after the optional NMS,
        and the raw ``pred_logits``, ``pred_boxes``; UPT / RmLR: the kept proposals) and, for UPT / RmLR, ``pairs
        [P, 2]`` and ``verb_scores [P, K]``; boxes in pixels of the input."""
        x = np.ascontiguousarray(np.asarray(image, dtype=np.float32)[None])
        if self.arch == "detr":   # DETR: boxes, scores, labels; Deformable DETR also pred_logits, pred_boxes
            names = self.manifest["graphs"]["detector"]["outputs"]
            return dict(zip(names, self.sessions["detector"].run(None, {"image": x})))
        return self._hoi(x)

    def _hoi(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """The glue of the two UPT / RmLR graphs (docs/onnx.md)."""
        g = self.manifest["graphs"]
        props = dict(zip(g["proposals"]["outputs"], self.sessions["proposals"].run(None, {"image": x})))
        n = len(props["boxes"])
        n_h = int((props["labels"] == self.manifest["human_idx"]).sum())
        out = {k: props[k] for k in ("boxes", "scores", "labels")}
        if n_h == 0 or n <= 1:      # no pair: the interaction graph is not run (the PyTorch model's branch)
            num_verbs = len(self.manifest["meta"]["verbs"])
            return {**out, "pairs": np.zeros((0, 2), np.int64), "verb_scores": np.zeros((0, num_verbs), np.float32)}
        props["image_hw"] = np.asarray(x.shape[-2:], dtype=np.float32)
        feed = {k: props[k] for k in g["interaction"]["inputs"]}
        pairs, verb_scores = self.sessions["interaction"].run(None, feed)
        return {**out, "pairs": pairs, "verb_scores": verb_scores}


class OnnxPredictor:
    """:class:`~hoikit.engine.inference.Predictor`'s ``predict`` on an exported model.

    Args:
        directory: the export directory. threads: onnxruntime intra-op threads (0 = its default).
    """

    def __init__(self, directory: Union[str, os.PathLike], threads: int = 0):
        self.model = OnnxModel(directory, threads)
        cfg = from_dict(self.model.manifest["config"])
        meta = meta_from_dict(self.model.arch, self.model.manifest["meta"])
        # the named output of Predictor (same JSON); no torch model behind it
        self._named = Predictor.__new__(Predictor)
        self._named.cfg, self._named.arch = cfg, self.model.arch
        self._named.meta_hoi, self._named.meta_sgg = meta, None
        self._named.transforms = build_transforms(cfg.data, train=False)

    @property
    def arch(self) -> str:
        """The exported model's architecture (``detr`` | ``rmlr``), as :attr:`Predictor.arch`."""
        return self.model.arch

    def predict_batch(self, images, threshold: float = 0.2, max_triplets: int = 100,
                      min_confidence: Optional[float] = None) -> List[Dict]:
        """:meth:`Predictor.predict_batch` (video frames): one :meth:`predict` per image, since the exported
        graphs take one image; ``image`` is None in each result."""
        return [{**self.predict(im, threshold, max_triplets, min_confidence), "image": None} for im in images]

    def predict(self, image, threshold: float = 0.2, max_triplets: int = 100,
                min_confidence: Optional[float] = None) -> Dict:
        """Named predictions for one image, as :meth:`Predictor.predict`."""
        named = self._named
        pil = to_pil(image)
        tensor, target = named.preprocess(pil)
        out = self.model(tensor.numpy())
        name = str(image) if isinstance(image, (str, os.PathLike)) else None
        result: Dict = {"image": name, "size": list(pil.size), "arch": named.arch, "triplets": [], "detections": [],
                        "runtime": "onnxruntime"}
        w, h = (float(v) for v in target["size"])
        ow, oh = (float(v) for v in target["orig_size"])
        scale = np.array([ow / w, oh / h, ow / w, oh / h], dtype=np.float32)
        boxes = out["boxes"].astype(np.float32) * scale
        if self.model.arch == "detr":
            named._add_detections(result, boxes, out["labels"], out["scores"], threshold)
            return result
        pred = HOIPrediction(boxes=boxes, labels=out["labels"].astype(np.int64), box_scores=out["scores"],
                             pairs=out["pairs"].astype(np.int64).reshape(-1, 2), verb_scores=out["verb_scores"])
        named._add_hoi(result, pred, threshold, max_triplets, min_confidence)
        return result
