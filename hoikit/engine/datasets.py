"""From a config to what :func:`hoikit.engine.trainer.fit` needs: datasets, metadata and the evaluator.

* ``detr``: a detection set evaluated by COCO box AP (pycocotools; primary AP50): a COCO instances file (``format: coco``), SynthHOI's
  COCO file with every drawn instance (:func:`detector_data_config`), or an HOI dataset's entities;
* ``rmlr``: the HOI dataset, evaluated with the official HICO-DET protocol (HICO-DET, SynthHOI);
* ``sg2hoi``: a :class:`~hoikit.engine.phases.PhasedTrainingSet` of a scene-graph dataset (VG150
  format, part ``sgg``) and an HOI dataset (part ``hoi``): phase ``sgg`` trains on the scene graphs,
  ``joint`` alternates batches of both, ``hoi`` / ``hoi_frozen`` use the HOIs
  (:func:`hoikit.models.sg2hoi.build.phase_for_epoch`). Evaluated with SGDet recall (R@K, mR@K, ng,
  zero-shot, head/body/tail) on the scene-graph test split whenever the model has an SGG part trained,
  and with the HOI dataset's protocol (HICO-DET mAP or V-COCO role AP) whenever it has an HOI dataset;
  ``best.pt`` follows the HOI metric (``eval.primary_metric`` chooses another).

  SynthHOI (``data.format = synth``): the VG150 files come from its ``vg/`` folder, with its own
  ``zeroshot_triplets.json`` and ``longtail_split.json``. SynthHOI has train and test images only
  (the same in every format), so the scene-graph training split uses every train image
  (``num_val_im = 0``; VG150's 5,000-image val carve-out would empty a small SynthHOI) and both
  evaluations use the test images.
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
from .evaluation import (DetectionEvaluation, EvalTask, HOIEvaluation, SGGEvaluation, VCOCOEvaluation,
                         detection_ground_truth)
from .phases import PhasedTrainingSet

SYNTH_NUM_VAL_IM = 0  # SynthHOI has no val split: the scene-graph train split keeps every train image


@dataclass
class TrainingData:
    train_set: Dataset
    eval_set: Optional[Dataset]
    meta: object                      # DatasetMeta, or (meta_hoi, meta_sgg) for sg2hoi
    make_evaluator: Optional[Callable]
    primary: str
    evals: list = dataclasses.field(default_factory=list)  # EvalTask list (sg2hoi), used by fit(evals=)


def _readers(data_cfg, split: str, **kw):
    from ..data.dataset import build_reader

    # rank 0 first: it may generate SynthHOI; the others read the finished files
    reader = build_reader(data_cfg, split, **kw) if D.is_main_process() else None
    D.barrier()
    return reader if reader is not None else build_reader(data_cfg, split, **kw)


def synth_vg_config(data_cfg, split: str):
    """DataConfig reading SynthHOI's VG150 files (``ROOT/vg``) with the images of ``split``."""
    root = Path(data_cfg.root)
    return dataclasses.replace(data_cfg, format="vg", vg_h5=str(root / "vg" / "VG-SGG-with-attri.h5"),
                               vg_dicts=str(root / "vg" / "VG-SGG-dicts-with-attri.json"),
                               vg_image_data=str(root / "vg" / "image_data.json"),
                               vg_images=str(root / "images" / split))


def detector_data_config(data_cfg, split: str):
    """The data a DETR detector trains and is evaluated on.

    SynthHOI (``format: synth``) with ``synth_detector_boxes: all`` (default) reads the COCO instances
    file ``ROOT/vcoco/instances_<split>.json``: every drawn person and object, like DETR's COCO
    training. The HICO-DET file only has the boxes of interacting pairs (29 % of the instances of the
    default training split are in no pair), so a detector trained on it learns to miss non-interacting
    people and objects and is scored as wrong when it finds them. Any other config is returned as is.
    """
    mode = data_cfg.synth_detector_boxes
    if mode not in ("all", "hoi"):
        raise ConfigError(f"data.synth_detector_boxes: '{mode}' is not one of all | hoi")
    if data_cfg.format != "synth" or mode == "hoi" or data_cfg.train_anno or data_cfg.test_anno:
        return data_cfg
    _readers(data_cfg, split)  # generates SynthHOI when missing (rank 0; every rank meets its barrier)
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
        from ..data.dataset import synth_paths

        return str(synth_paths(data_cfg.root, split)[0])
    raise ConfigError(f"data.{split}_anno: needed for evaluation")


def has_vcoco_ground_truth(data_cfg) -> bool:
    """True when the config names the official V-COCO evaluation files."""
    return bool(data_cfg.vcoco_json and data_cfg.coco_json and data_cfg.vcoco_ids)


def eval_tasks(cfg: Config, meta, split: str = "test"):
    """The evaluations of ``split`` for ``cfg`` (what ``fit`` runs every few epochs and ``hoikit test``
    runs once). Returns ``(tasks: list[EvalTask], primary metric)``; no task when the data has no
    evaluator (V-COCO without the official ground-truth files, custom data). The primary metric
    (the one that selects ``best.pt``) is ``cfg.eval.primary_metric`` when set, else the protocol's.

    Args:
        meta: DatasetMeta of the HOI / detection dataset; ``(meta_hoi, meta_sgg)`` for ``sg2hoi``.
    """
    tasks, primary = _protocol_tasks(cfg, meta, split)
    return tasks, chosen_primary(cfg, tasks, primary)


def chosen_primary(cfg: Config, tasks, default: str) -> str:
    """``cfg.eval.primary_metric`` when set (and there is an evaluation), else ``default``."""
    return (cfg.eval.primary_metric or default) if tasks else default


def _protocol_tasks(cfg: Config, meta, split: str):
    from ..data.dataset import HOIDataset, build_transforms

    arch, d = cfg.model.arch, cfg.data
    tr_test = build_transforms(d, train=False)
    if arch == "sg2hoi":
        return _sg2hoi_evals(cfg, *meta, tr_test, split)
    if arch == "detr":
        d = detector_data_config(d, split)
    reader = _readers(d, split)
    dataset = HOIDataset(reader, tr_test)
    if arch == "detr":
        gt, names = detection_ground_truth(reader), list(meta.objects)
        return [EvalTask(dataset, lambda: DetectionEvaluation(gt, names))], DetectionEvaluation.primary
    if d.format in ("hicodet", "synth"):
        anno = hoi_annotation(d, split)
        make = lambda: HOIEvaluation(anno, cfg.eval.hicodet_skip_empty, cfg.eval.threshold,  # noqa: E731
                                     cfg.eval.max_detections, d.zero_shot)
        return [EvalTask(dataset, make)], HOIEvaluation.primary
    if d.format == "vcoco" and has_vcoco_ground_truth(d):
        ids, verbs = list(reader.image_ids), list(meta.verbs)
        make = lambda: VCOCOEvaluation(d.vcoco_json, d.coco_json, d.vcoco_ids, ids, verbs,  # noqa: E731
                                       cfg.eval.max_detections)
        return [EvalTask(dataset, make)], VCOCOEvaluation.primary
    return [], ""


def build_training_data(cfg: Config, with_eval: bool = True) -> TrainingData:
    """Readers, transformed datasets, metadata and evaluator factory of ``cfg``."""
    from ..data.dataset import HOIDataset, build_transforms

    arch, d = cfg.model.arch, cfg.data
    tr_train, tr_test = build_transforms(d, train=True), build_transforms(d, train=False)
    if arch == "sg2hoi":
        return _sg2hoi_data(cfg, tr_train, tr_test, with_eval)
    train_reader = _readers(detector_data_config(d, "train") if arch == "detr" else d, "train")
    if d.zero_shot:
        train_reader = seen_pairs_reader(cfg, train_reader)
    meta = train_reader.meta
    eval_set = make = None
    primary = ""
    if with_eval:
        # V-COCO is evaluated when data.vcoco_json / coco_json / vcoco_ids name the official files
        tasks, primary = eval_tasks(cfg, meta)
        if tasks:
            eval_set, make = tasks[0].dataset, tasks[0].make_evaluator
    return TrainingData(HOIDataset(train_reader, tr_train, d.skip_unreadable), eval_set, meta, make, primary)


def seen_pairs_reader(cfg: Config, reader):
    """``data.zero_shot``: the training reader without the pairs of unseen HOI classes (HICO-DET /
    SynthHOI with ``model.arch=rmlr``; :class:`~hoikit.data.zero_shot.SeenPairsReader`)."""
    from ..data.zero_shot import SeenPairsReader

    if cfg.model.arch != "rmlr" or cfg.data.format not in ("hicodet", "synth"):
        raise ConfigError(f"data.zero_shot: '{cfg.data.zero_shot}' needs model.arch=rmlr on data.format hicodet | "
                          f"synth (got {cfg.model.arch} on {cfg.data.format})")
    return SeenPairsReader(reader, cfg.data.zero_shot)   # fit() logs its summary()


def _sg2hoi_data(cfg: Config, tr_train, tr_test, with_eval: bool) -> TrainingData:
    from ..data.dataset import HOIDataset
    from ..models.sg2hoi.build import phase_for_epoch

    d, task = cfg.data, cfg.train.task
    synth = d.format == "synth"
    vg_cfg = (lambda s: synth_vg_config(d, s)) if synth else (lambda s: d)
    vg_kw = {"num_val_im": SYNTH_NUM_VAL_IM} if synth else {}
    hoi_cfg = d if d.format != "vg" else None
    need_sgg = task in ("joint", "sgg") or (task == "hoi" and cfg.train.sgg_epochs > 0)
    parts, meta_hoi, meta_sgg = {}, None, None
    if need_sgg:
        if not synth and not d.vg_h5:
            raise ConfigError(f"data.vg_h5: SG2HOI+ with train.task={task} (train.sgg_epochs="
                              f"{cfg.train.sgg_epochs}) needs a VG150 scene-graph dataset")
        if synth:
            _readers(d, "train")  # generates SynthHOI when missing
        r = _readers(vg_cfg("train"), "train", **vg_kw)
        meta_sgg = r.meta
        parts["sgg"] = HOIDataset(r, tr_train, d.skip_unreadable)
    if task in ("joint", "hoi"):
        if hoi_cfg is None:
            raise ConfigError("data.format: SG2HOI+ with train.task=" + task + " needs an HOI dataset (hicodet | synth)")
        r = _readers(hoi_cfg, "train")
        meta_hoi = r.meta
        parts["hoi"] = HOIDataset(r, tr_train, d.skip_unreadable)
    train_set = PhasedTrainingSet(parts, lambda e: phase_for_epoch(cfg, e),
                                  {"sgg": ("sgg",), "joint": ("sgg", "hoi"), "hoi": ("hoi",), "hoi_frozen": ("hoi",)})
    evals, primary = _sg2hoi_evals(cfg, meta_hoi, meta_sgg, tr_test) if with_eval else ([], "")
    primary = chosen_primary(cfg, evals, primary)
    return TrainingData(train_set, None, (meta_hoi, meta_sgg), None, primary, evals)


def _sg2hoi_evals(cfg: Config, meta_hoi, meta_sgg, tr_test, split: str = "test"):
    """SG2HOI+ evaluations: SGDet recall when the model has a scene-graph part (``meta_sgg``); when it
    has an HOI dataset (``meta_hoi``) the HOI protocol of that dataset: HICO-DET (HICO-DET, SynthHOI) or
    official V-COCO role AP (when ``data.vcoco_json`` / ``coco_json`` / ``vcoco_ids`` are set). The
    primary metric is the HOI one when there is an HOI evaluation (``mAP_full`` / ``role_mAP_S1``), else
    ``mR@50``."""
    from ..data.dataset import HOIDataset
    from ..eval.sgg import load_longtail, load_zeroshot

    d = cfg.data
    synth = d.format == "synth"
    vg_cfg = (lambda s: synth_vg_config(d, s)) if synth else (lambda s: d)
    vg_kw = {"num_val_im": SYNTH_NUM_VAL_IM} if synth else {}
    hoi_cfg = d if d.format != "vg" else None
    evals, primary = [], ""
    if meta_sgg is not None:
        if synth:
            _readers(d, split)  # generates SynthHOI when missing
        test = _readers(vg_cfg(split), split, **vg_kw)
        samples = [test[i] for i in range(len(test))]
        zs = lt = None
        if synth:
            vg_dir = Path(d.root) / "vg"
            zs, lt = load_zeroshot(vg_dir / "zeroshot_triplets.json"), load_longtail(vg_dir / "longtail_split.json")
        elif d.vg_h5 and len(meta_sgg.predicates) == 50:   # real VG150: the packaged lists
            zs, lt = load_zeroshot(), load_longtail()
        npred = len(meta_sgg.predicates)
        evals.append(EvalTask(HOIDataset(test, tr_test), lambda: SGGEvaluation(samples, npred, zs, lt), "sgg"))
        primary = SGGEvaluation.primary
    if meta_hoi is not None and hoi_cfg is not None and hoi_cfg.format in ("hicodet", "synth"):
        anno = hoi_annotation(hoi_cfg, split)
        evals.append(EvalTask(HOIDataset(_readers(hoi_cfg, split), tr_test),
                              lambda: HOIEvaluation(anno, cfg.eval.hicodet_skip_empty, cfg.eval.threshold,
                                                    cfg.eval.max_detections), "hoi"))
        primary = HOIEvaluation.primary
    elif meta_hoi is not None and hoi_cfg is not None and hoi_cfg.format == "vcoco" and has_vcoco_ground_truth(hoi_cfg):
        reader = _readers(hoi_cfg, split)
        ids, verbs = list(reader.image_ids), list(meta_hoi.verbs)
        make = lambda: VCOCOEvaluation(d.vcoco_json, d.coco_json, d.vcoco_ids, ids, verbs,  # noqa: E731
                                       cfg.eval.max_detections)
        evals.append(EvalTask(HOIDataset(reader, tr_test), make, "hoi"))
        primary = VCOCOEvaluation.primary
    return evals, primary
