"""``model.arch = sg2hoi``: SG2HOI+, one-stage joint scene-graph generation and HOI detection
(:func:`hoikit.models.sg2hoi.build.build_sg2hoi`).

Data: a scene-graph dataset (VG150 format, part ``sgg``) and an HOI dataset (part ``hoi``). Phases
(Section IV-D, Table V; :func:`phase_for_epoch`): ``sgg`` trains on the scene graphs, ``joint``
alternates batches of both, ``hoi`` / ``hoi_frozen`` use the HOIs. Evaluated with SGDet recall (R@K,
mR@K, ng, zero-shot, head/body/tail) on the scene-graph test split whenever the model has an SGG part,
and with the HOI dataset's protocol (HICO-DET mAP or V-COCO role AP) whenever it has an HOI dataset;
``best.pt`` follows the HOI metric (``eval.primary_metric`` chooses another). The metadata is
``(meta_hoi, meta_sgg)``, stored as ``{"hoi": dict | None, "sgg": dict | None}``.

SynthHOI (``data.format = synth``): the VG150 files come from its ``vg/`` folder, with its own
``zeroshot_triplets.json`` and ``longtail_split.json``. SynthHOI has train and test images only (the
same in every format), so the scene-graph training split uses every train image (``num_val_im = 0``;
VG150's 5,000-image val carve-out would empty a small SynthHOI) and both evaluations use the test images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from torch import nn

from ..config import Config
from ..data.dataset import HOIDataset, build_transforms
from ..data.metadata import DatasetMeta
from ..errors import ConfigError
from ..eval.adapters import EvalTask, SGGEvaluation
from ..eval.sgg import load_longtail, load_zeroshot
from ..models.sg2hoi.build import build_sg2hoi
from ..models.sg2hoi.model import PHASES
from .base import MetaLike, ReaderFactory, RecipeBase, TrainingSets
from .common import SYNTH_NUM_VAL_IM, has_vcoco_ground_truth, hoi_protocol_task, synth_vg_config

#: phase -> the training parts it draws batches from, in alternation order
PHASE_PARTS = {"sgg": ("sgg",), "joint": ("sgg", "hoi"), "hoi": ("hoi",), "hoi_frozen": ("hoi",),
               "sgg_control": ("sgg",)}


def phase_for_epoch(cfg: Config, epoch: int) -> str:
    """Training phase of ``epoch`` (0-based; Section IV-D and Table V).

    ``train.task=sgg``: always ``sgg``; with ``train.sgg_control``, ``sgg_control`` after the first
    ``train.sgg_epochs`` epochs (SGG alone at the joint phase's rates: Table V's SGG-only control).
    ``joint``: ``sgg`` for the first ``train.sgg_epochs`` epochs, then ``joint``. ``hoi``: ``sgg`` for the first ``train.sgg_epochs`` epochs, then ``hoi_frozen``
    (HOI modules trained on the frozen SGG part, Table V); with ``sgg_epochs = 0`` it is ``hoi``
    throughout (HOI alone, every part trained).
    """
    task, n = cfg.train.task, cfg.train.sgg_epochs
    if task == "sgg" and cfg.train.sgg_control and 0 < n <= epoch:
        return "sgg_control"
    if task == "sgg" or epoch < n:
        return "sgg"
    if task == "hoi":
        return "hoi_frozen" if n > 0 else "hoi"
    return task


def phase_rates(cfg: Config, phase: str) -> Dict[str, Optional[float]]:
    """Learning rate of each part in ``phase`` (Section IV-D); None = not trained. ``sgg`` (phase 1):
    backbone ``train.lr_backbone``, SGG part ``train.lr``, HOI part not trained; ``joint`` (phase 2):
    HOI part ``train.lr``, SGG part ``train.sgg_lr``, backbone ``train.lr_backbone``; ``hoi`` (HOI alone
    from scratch): backbone ``train.lr_backbone``, the rest ``train.lr``; ``hoi_frozen`` (Table V
    single-task HOI after SGG training): only the HOI part, ``train.lr``; ``sgg_control`` (SGG alone
    after phase 1, ``train.sgg_control``): the joint phase's backbone and SGG rates, no HOI part."""
    t = cfg.train
    return {"sgg": {"backbone": t.lr_backbone, "sgg": t.lr, "hoi": None},
            "sgg_control": {"backbone": t.lr_backbone, "sgg": t.sgg_lr, "hoi": None},
            "joint": {"backbone": t.lr_backbone, "sgg": t.sgg_lr, "hoi": t.lr},
            "hoi": {"backbone": t.lr_backbone, "sgg": t.lr, "hoi": t.lr},
            "hoi_frozen": {"backbone": None, "sgg": None, "hoi": t.lr}}[phase]


def _metas(meta: MetaLike) -> Tuple[Optional[DatasetMeta], Optional[DatasetMeta]]:
    """``(meta_hoi, meta_sgg)`` of a pair or of an HOI meta alone."""
    return meta if isinstance(meta, tuple) else (meta, None)


class SG2HOIRecipe(RecipeBase):
    name = "sg2hoi"

    def build_model(self, cfg: Config, meta: MetaLike, *, state_dict: Optional[Dict] = None,
                    inference: bool = False) -> nn.Module:
        """``meta``: ``(meta_hoi, meta_sgg)`` or the HOI meta alone. ``state_dict`` (rebuilding from a
        checkpoint): the class-embedding tables come from it, no CLIP / text encoder is opened."""
        meta_hoi, meta_sgg = _metas(meta)
        return build_sg2hoi(cfg, meta_sgg, meta_hoi, state_dict=state_dict, task=cfg.train.task,
                            train_backbone=cfg.train.lr_backbone > 0)

    #: the shared-anchor stage (``model.sg2hoi.anchor_detector: shared``), which frozen-anchor
    #: deformable-base models of commits bdd2d04..8af880c also built and never used
    OPTIONAL_KEY_PREFIXES = ("encoder.entity_decoder.", "encoder.entity_class.")

    # ------------------------------------------------------------------ data
    def training_sets(self, cfg: Config, readers: ReaderFactory) -> TrainingSets:
        d, task = cfg.data, cfg.train.task
        tr_train = build_transforms(d, train=True)
        parts, meta_hoi, meta_sgg = {}, None, None
        if task in ("joint", "sgg") or (task == "hoi" and cfg.train.sgg_epochs > 0):
            if d.format != "synth" and not d.vg_h5:
                raise ConfigError(f"data.vg_h5: SG2HOI+ with train.task={task} (train.sgg_epochs="
                                  f"{cfg.train.sgg_epochs}) needs a VG150 scene-graph dataset")
            reader = self._sgg_reader(cfg, readers, "train")
            meta_sgg = reader.meta
            parts["sgg"] = HOIDataset(reader, tr_train, d.skip_unreadable)
        # train.sgg_control: the HOI set is not trained on, but its size places the SGG batches in the
        # joint run's schedule (phase_schedule); its metadata stays out, so the model, its evaluations and
        # best.pt's metric are a task=sgg run's (config.validate refuses data.format=vg here)
        if task in ("joint", "hoi") or (task == "sgg" and cfg.train.sgg_control):
            if d.format == "vg":
                raise ConfigError("data.format: SG2HOI+ with train.task=" + task + " needs an HOI dataset (hicodet | synth)")
            reader = readers(d, "train")
            meta_hoi = reader.meta if task != "sgg" else None
            parts["hoi"] = HOIDataset(reader, tr_train, d.skip_unreadable)
        return TrainingSets(parts, (meta_hoi, meta_sgg))

    @staticmethod
    def _sgg_reader(cfg: Config, readers: ReaderFactory, split: str):
        """The scene-graph reader of ``split``: VG150, or SynthHOI's VG150 files (generated when missing)."""
        d = cfg.data
        if d.format != "synth":
            return readers(d, split)
        readers(d, split)  # generates SynthHOI when missing
        return readers(synth_vg_config(d, split), split, num_val_im=SYNTH_NUM_VAL_IM)

    def evaluations(self, cfg: Config, meta: MetaLike, readers: ReaderFactory,
                    split: str = "test") -> Tuple[List[EvalTask], str]:
        """SGDet recall when the model has a scene-graph part (``meta_sgg``); when it has an HOI dataset
        (``meta_hoi``) the HOI protocol of that dataset. The primary metric is the HOI one when there
        is an HOI evaluation (``mAP_full`` / ``role_mAP_S1``), else ``mR@50``."""
        meta_hoi, meta_sgg = _metas(meta)
        d = cfg.data
        evals, primary = [], ""
        if meta_sgg is not None:
            evals.append(self._sgg_task(cfg, meta_sgg, readers, split))
            primary = SGGEvaluation.primary
        if meta_hoi is not None and (d.format in ("hicodet", "synth") or
                                     (d.format == "vcoco" and has_vcoco_ground_truth(d))):
            hoi, primary = hoi_protocol_task(cfg, d, readers(d, split), meta_hoi, split, task="hoi")
            evals += hoi
        return evals, primary

    def _sgg_task(self, cfg: Config, meta_sgg: DatasetMeta, readers: ReaderFactory, split: str) -> EvalTask:
        d = cfg.data
        test = self._sgg_reader(cfg, readers, split)
        samples = [test[i] for i in range(len(test))]
        zs = lt = None
        if d.format == "synth":
            vg_dir = Path(d.root) / "vg"
            zs, lt = load_zeroshot(vg_dir / "zeroshot_triplets.json"), load_longtail(vg_dir / "longtail_split.json")
        elif d.vg_h5 and len(meta_sgg.predicates) == 50:   # real VG150: the packaged lists
            zs, lt = load_zeroshot(), load_longtail()
        npred = len(meta_sgg.predicates)
        return EvalTask(HOIDataset(test, build_transforms(d, train=False)),
                        lambda: SGGEvaluation(samples, npred, zs, lt), "sgg")

    # ------------------------------------------------------------------ training
    def phase_parts(self, cfg: Config) -> Optional[Dict[str, Tuple[str, ...]]]:
        return dict(PHASE_PARTS)

    def phase_of(self, cfg: Config, epoch: int) -> Optional[str]:
        return phase_for_epoch(cfg, epoch)

    def phase_schedule(self, cfg: Config) -> Dict[str, str]:
        """``sgg_control``'s SGG batches take the rates they get in the joint run (Table V's control)."""
        return {"sgg_control": "joint"}

    def set_phase(self, model: nn.Module, phase: str) -> None:
        model.set_phase(phase)

    def param_groups(self, model: nn.Module, cfg: Config, phase: Optional[str] = None) -> List[Dict]:
        """Optimizer groups with the paper's learning rates (:func:`phase_rates`); text-initialised
        classifier weights always use ``model.sg2hoi.clip_cls_lr``. The default phase follows
        ``train.task``. Returns ``{"params", "lr", "name"}`` dicts (empty groups dropped)."""
        phase = phase or cfg.train.task
        if phase not in PHASES:
            raise ConfigError(f"param_groups phase '{phase}': choose {' | '.join(PHASES)}")
        rates = phase_rates(cfg, phase)
        out = []
        for name, params in model.parameter_parts().items():
            base = name.split("_")[0]
            if not params or rates[base] is None:
                continue
            lr = cfg.model.sg2hoi.clip_cls_lr if name.endswith("text_cls") else rates[base]
            out.append({"params": params, "lr": lr, "name": name})
        return out

    # ------------------------------------------------------------------ predictions and checkpoints
    def prediction_tasks(self, model: nn.Module, meta: MetaLike) -> Tuple[Optional[str], ...]:
        meta_hoi, meta_sgg = _metas(meta)
        return tuple(t for t, on in (("hoi", model.hoi_decoder is not None), ("sgg", meta_sgg is not None)) if on)

    def meta_to_dict(self, meta: MetaLike) -> Dict:
        meta_hoi, meta_sgg = _metas(meta)
        return {"hoi": meta_hoi.to_dict() if meta_hoi is not None else None,
                "sgg": meta_sgg.to_dict() if meta_sgg is not None else None}

    def meta_from_dict(self, d: Dict) -> MetaLike:
        return tuple(DatasetMeta.from_dict(d[k]) if d.get(k) else None for k in ("hoi", "sgg"))
