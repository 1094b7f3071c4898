"""Data and evaluation helpers the recipes share (moved from ``engine/datasets.py``): which files a
data config reads for a detector or a scene-graph model, and the HOI protocol of a dataset.

SynthHOI (``data.format = synth``): its VG150 files are in ``ROOT/vg`` (:func:`synth_vg_config`) and
its COCO instances file with every drawn instance in ``ROOT/vcoco`` (:func:`detector_data_config`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional, Tuple

from ..config import Config
from ..data.dataset import HOIDataset, build_reader, build_transforms, synth_paths
from ..data.zero_shot import SeenPairsReader
from ..errors import ConfigError
from ..eval.adapters import EvalTask, HOIEvaluation, VCOCOEvaluation
from .base import ReaderFactory

SYNTH_NUM_VAL_IM = 0  # SynthHOI has no val split: the scene-graph train split keeps every train image


def synth_vg_config(data_cfg, split: str):
    """DataConfig reading SynthHOI's VG150 files (``ROOT/vg``) with the images of ``split``."""
    root = Path(data_cfg.root)
    return dataclasses.replace(data_cfg, format="vg", vg_h5=str(root / "vg" / "VG-SGG-with-attri.h5"),
                               vg_dicts=str(root / "vg" / "VG-SGG-dicts-with-attri.json"),
                               vg_image_data=str(root / "vg" / "image_data.json"),
                               vg_images=str(root / "images" / split))


def detector_data_config(data_cfg, split: str, readers: ReaderFactory = build_reader):
    """The data a DETR detector trains and is evaluated on.

    SynthHOI (``format: synth``) with ``synth_detector_boxes: all`` (default) reads the COCO instances
    file ``ROOT/vcoco/instances_<split>.json``: every drawn person and object, like DETR's COCO
    training. The HICO-DET file only has the boxes of interacting pairs (29 % of the instances of the
    default training split are in no pair), so a detector trained on it learns to miss non-interacting
    people and objects and is scored as wrong when it finds them. Any other config is returned as is.
    ``readers`` opens SynthHOI once (generating it when missing).
    """
    mode = data_cfg.synth_detector_boxes
    if data_cfg.format != "synth" or mode == "hoi" or data_cfg.train_anno or data_cfg.test_anno:
        return data_cfg
    readers(data_cfg, split)  # generates SynthHOI when missing (rank 0; every rank meets its barrier)
    root = Path(data_cfg.root)
    return dataclasses.replace(data_cfg, format="coco",
                               train_anno=str(root / "vcoco" / "instances_train.json"),
                               test_anno=str(root / "vcoco" / "instances_test.json"),
                               train_images=data_cfg.train_images or str(root / "images" / "train"),
                               test_images=data_cfg.test_images or str(root / "images" / "test"))


def hoi_annotation(data_cfg, split: str = "test") -> str:
    """HICO-DET-format annotation file of the evaluated split (``test`` or ``train``)."""
    anno = data_cfg.test_anno if split == "test" else data_cfg.train_anno
    if anno:
        return anno
    if data_cfg.format == "synth":
        return str(synth_paths(data_cfg.root, split)[0])
    raise ConfigError(f"data.{split}_anno: needed for evaluation")


def has_vcoco_ground_truth(data_cfg) -> bool:
    """True when the config names the official V-COCO evaluation files."""
    return bool(data_cfg.vcoco_json and data_cfg.coco_json and data_cfg.vcoco_ids)


def seen_pairs_reader(cfg: Config, reader):
    """``data.zero_shot``: the training reader without the pairs of unseen HOI classes (HICO-DET /
    SynthHOI with ``model.arch=rmlr``; :class:`~hoikit.data.zero_shot.SeenPairsReader`)."""
    if cfg.model.arch != "rmlr" or cfg.data.format not in ("hicodet", "synth"):
        raise ConfigError(f"data.zero_shot: '{cfg.data.zero_shot}' needs model.arch=rmlr on data.format hicodet | "
                          f"synth (got {cfg.model.arch} on {cfg.data.format})")
    return SeenPairsReader(reader, cfg.data.zero_shot)   # fit() logs its summary()


def training_reader(cfg: Config, data_cfg, readers: ReaderFactory):
    """The training-split reader of ``data_cfg``; with ``data.zero_shot`` only the seen pairs."""
    reader = readers(data_cfg, "train")
    return seen_pairs_reader(cfg, reader) if cfg.data.zero_shot else reader


def hoi_protocol_task(cfg: Config, data_cfg, reader, meta, split: str, task: Optional[str] = None,
                      zero_shot: str = "") -> Tuple[List[EvalTask], str]:
    """The official HOI evaluation of ``reader`` (a split of ``data_cfg``): HICO-DET mAP (HICO-DET,
    SynthHOI; ``zero_shot`` adds the unseen / seen mAP) or V-COCO role AP (when ``data.vcoco_json`` /
    ``coco_json`` / ``vcoco_ids`` name the official files); no task for other data. ``task``: the
    model's ``postprocess`` task. Returns ``([EvalTask] or [], primary metric)``."""
    dataset, e = HOIDataset(reader, build_transforms(data_cfg, train=False)), cfg.eval
    if data_cfg.format in ("hicodet", "synth"):
        anno = hoi_annotation(data_cfg, split)
        make = lambda: HOIEvaluation(anno, e.hicodet_skip_empty, e.threshold, e.max_detections,  # noqa: E731
                                     zero_shot)
        return [EvalTask(dataset, make, task)], HOIEvaluation.primary
    if data_cfg.format == "vcoco" and has_vcoco_ground_truth(data_cfg):
        d, ids, verbs = data_cfg, list(reader.image_ids), list(meta.verbs)
        make = lambda: VCOCOEvaluation(d.vcoco_json, d.coco_json, d.vcoco_ids, ids, verbs,  # noqa: E731
                                       e.max_detections)
        return [EvalTask(dataset, make, task)], VCOCOEvaluation.primary
    return [], ""
