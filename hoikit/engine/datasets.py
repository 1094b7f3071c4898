"""From a config to what :func:`hoikit.engine.trainer.fit` needs: datasets, metadata and the evaluator.

* ``detr``: the HOI dataset's entities as a detection set, evaluated by AP50;
* ``rmlr``: the HOI dataset, evaluated with the official HICO-DET protocol (HICO-DET, SynthHOI);
* ``sg2hoi``: a scene-graph dataset (VG150 format) and/or an HOI dataset, concatenated (each image
  carries its source: relations or HOIs); evaluated with the HOI protocol, or SGDet recall when
  ``train.task = sgg``. For ``data.format = synth`` the VG150 files come from SynthHOI's ``vg/`` folder.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from torch.utils.data import ConcatDataset, Dataset

from ..config import Config
from ..errors import ConfigError
from . import distributed as D
from .evaluation import DetectionEvaluation, HOIEvaluation, SGGEvaluation


@dataclass
class TrainingData:
    train_set: Dataset
    eval_set: Optional[Dataset]
    meta: object                      # DatasetMeta, or (meta_hoi, meta_sgg) for sg2hoi
    make_evaluator: Optional[Callable]
    primary: str


def _readers(data_cfg, split: str):
    from ..data.dataset import build_reader

    # rank 0 first: it may generate SynthHOI; the others read the finished files
    reader = build_reader(data_cfg, split) if D.is_main_process() else None
    D.barrier()
    return reader if reader is not None else build_reader(data_cfg, split)


def synth_vg_config(data_cfg, split: str):
    """DataConfig reading SynthHOI's VG150 files (``ROOT/vg``) with the images of ``split``."""
    root = Path(data_cfg.root)
    return dataclasses.replace(data_cfg, format="vg", vg_h5=str(root / "vg" / "VG-SGG-with-attri.h5"),
                               vg_dicts=str(root / "vg" / "VG-SGG-dicts-with-attri.json"),
                               vg_image_data=str(root / "vg" / "image_data.json"),
                               vg_images=str(root / "images" / split))


def hoi_annotation(data_cfg) -> str:
    """HICO-DET-format annotation file of the evaluated split."""
    if data_cfg.test_anno:
        return data_cfg.test_anno
    if data_cfg.format == "synth":
        from ..data.dataset import synth_paths

        return str(synth_paths(data_cfg.root, "test")[0])
    raise ConfigError("data.test_anno: needed for evaluation")


def build_training_data(cfg: Config, with_eval: bool = True) -> TrainingData:
    """Readers, transformed datasets, metadata and evaluator factory of ``cfg``."""
    from ..data.dataset import HOIDataset, build_transforms

    arch, d = cfg.model.arch, cfg.data
    tr_train, tr_test = build_transforms(d, train=True), build_transforms(d, train=False)
    if arch == "sg2hoi":
        return _sg2hoi_data(cfg, tr_train, tr_test, with_eval)
    train_reader = _readers(d, "train")
    meta = train_reader.meta
    eval_set = make = None
    primary = ""
    if with_eval:
        test_reader = _readers(d, "test")
        eval_set = HOIDataset(test_reader, tr_test)
        if arch == "detr":
            samples = [test_reader[i] for i in range(len(test_reader))]
            make, primary = (lambda: DetectionEvaluation(samples, len(meta.objects))), DetectionEvaluation.primary
        elif d.format in ("hicodet", "synth"):
            anno = hoi_annotation(d)
            make = lambda: HOIEvaluation(anno, cfg.eval.hicodet_skip_empty, cfg.eval.threshold)  # noqa: E731
            primary = HOIEvaluation.primary
        else:
            eval_set = None  # V-COCO needs the official ground truth: `hoikit eval vcoco` after `predict`
    return TrainingData(HOIDataset(train_reader, tr_train), eval_set, meta, make, primary)


def _sg2hoi_data(cfg: Config, tr_train, tr_test, with_eval: bool) -> TrainingData:
    from ..data.dataset import HOIDataset

    d, task = cfg.data, cfg.train.task
    vg_cfg = (lambda s: synth_vg_config(d, s)) if d.format == "synth" else (lambda s: d)
    hoi_cfg = d if d.format != "vg" else None
    parts, meta_hoi, meta_sgg = [], None, None
    if task in ("joint", "sgg"):
        if d.format != "synth" and not d.vg_h5:
            raise ConfigError("data.vg_h5: SG2HOI+ with train.task=" + task + " needs a VG150 scene-graph dataset")
        if d.format == "synth":
            _readers(d, "train")  # generates SynthHOI when missing
        r = _readers(vg_cfg("train"), "train")
        meta_sgg = r.meta
        parts.append(HOIDataset(r, tr_train))
    if task in ("joint", "hoi"):
        if hoi_cfg is None:
            raise ConfigError("data.format: SG2HOI+ with train.task=" + task + " needs an HOI dataset (hicodet | synth)")
        r = _readers(hoi_cfg, "train")
        meta_hoi = r.meta
        parts.append(HOIDataset(r, tr_train))
    eval_set = make = None
    primary = ""
    if with_eval and task == "sgg":
        test = _readers(vg_cfg("test"), "test")
        eval_set = HOIDataset(test, tr_test)
        samples = [test[i] for i in range(len(test))]
        make = lambda: SGGEvaluation(samples, len(meta_sgg.predicates))  # noqa: E731
        primary = SGGEvaluation.primary
    elif with_eval and hoi_cfg is not None and hoi_cfg.format in ("hicodet", "synth"):
        eval_set = HOIDataset(_readers(hoi_cfg, "test"), tr_test)
        anno = hoi_annotation(hoi_cfg)
        make = lambda: HOIEvaluation(anno, cfg.eval.hicodet_skip_empty, cfg.eval.threshold)  # noqa: E731
        primary = HOIEvaluation.primary
    train_set = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    return TrainingData(train_set, eval_set, (meta_hoi, meta_sgg), make, primary)
