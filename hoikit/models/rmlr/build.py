"""``build_rmlr(cfg, meta)``: UPT / RmLR from a :class:`hoikit.config.Config`.

``model.rmlr.ablation`` selects a row of RmLR Table 2:

=========== ===== =========================== ===========================
ablation    IRE   IRE knowledge transfer      IRM knowledge transfer
=========== ===== =========================== ===========================
plain       -     -                           -           (exactly UPT)
wo_cl       yes   -                           -
wo_rm       -     -                           sentence + word
wo_wa       yes   sentence                    sentence
wo_sa       yes   word                        word
wo_irm_kt   yes   sentence + word             -
wo_ire_kt   yes   -                           sentence + word
full        yes   sentence + word             sentence + word
=========== ===== =========================== ===========================
"""
from __future__ import annotations

import warnings
from functools import partial
from typing import List, Optional

from torch import nn

from ...errors import ConfigError
from ...io.checkpoint import detector_scale_mismatch
from ..detectors import build_detector_network, load_detector_weights, num_detector_classes
from ..text import encoder_pooling, load_text_encoder, text_encoder_dim
from .cross_modal import CrossModalBranch
from .detector_cache import DetectorCache
from .detector_classes import detector_to_dataset
from .interaction_head import InteractionHead
from .model import RmLR
from .relation_encoder import InteractiveRelationEncoder

#: Table 2 rows: (IRE on, transfer terms). "s"/"w" = sentence/word, "_a" = IRE, "_m" = IRM.
ABLATIONS = {
    "plain": (False, ()),
    "wo_cl": (True, ()),
    "wo_rm": (False, ("s_m", "w_m")),
    "wo_wa": (True, ("s_a", "s_m")),
    "wo_sa": (True, ("w_a", "w_m")),
    "wo_irm_kt": (True, ("s_a", "w_a")),
    "wo_ire_kt": (True, ("s_m", "w_m")),
    "full": (True, ("s_a", "w_a", "s_m", "w_m")),
}


def object_to_verbs(meta, num_classes: int) -> List[List[int]]:
    """Valid verbs per dataset object id ``0 .. num_classes - 1`` (the model maps detector classes
    to dataset object ids first: :mod:`~hoikit.models.rmlr.detector_classes`).

    Uses ``meta.correspondence`` (HICO-DET, SynthHOI) or V-COCO's ``extra["action_to_object"]``.
    """
    table: List[List[int]] = [[] for _ in range(num_classes)]
    if len(meta.correspondence):
        for _, o, v in meta.correspondence.tolist():
            if o < num_classes:
                table[o].append(v)
    elif "action_to_object" in meta.extra:
        for v, objs in enumerate(meta.extra["action_to_object"]):
            for o in objs:
                if o < num_classes:
                    table[o].append(v)
    else:
        raise ConfigError(f"dataset '{meta.name}' has neither an HOI correspondence table nor action_to_object")
    return [sorted(set(t)) for t in table]


def ablation_switches(name: str):
    """``(use_ire, transfer terms)`` of a Table 2 row; ConfigError for an unknown name."""
    if name not in ABLATIONS:
        raise ConfigError(f"model.rmlr.ablation: unknown value '{name}' (choose from {', '.join(ABLATIONS)})")
    return ABLATIONS[name]


def build_rmlr(cfg, meta, detector: Optional[nn.Module] = None, inference: bool = False) -> RmLR:
    """Build UPT / RmLR.

    Args:
        cfg: full :class:`~hoikit.config.Config` (uses ``model.detr`` and ``model.rmlr``).
        meta: :class:`~hoikit.data.metadata.DatasetMeta` of the HOI dataset.
        detector: an already built DETR; default builds one from ``model.detr`` (and loads
            ``model.detr.checkpoint`` when set), frozen.
        inference: leave out the training-only cross-modal branches ``cml_ire`` / ``cml_irm`` (their
            keys in :data:`RmLR.TRAINING_ONLY` are dropped when a checkpoint is loaded) and the text
            encoder; the model then predicts exactly as the full one but cannot train with transfer.
            An inference build has no detector cache either (``model.rmlr.detector_cache`` is a
            training speed-up; predicted frames and test images would only fill it).
    """
    r, d = cfg.model.rmlr, cfg.model.detr
    use_ire, transfer = ablation_switches(r.ablation)
    if detector is None:
        detector = build_detector_network(d, train_backbone=False)   # DETR or Deformable DETR (model.detr.type)
        if d.checkpoint:
            info = load_detector_weights(detector, d.checkpoint)   # the file is read once: scales from its info
            mismatch = detector_scale_mismatch(cfg.data, d.checkpoint, info["input_scales"])
            if mismatch:
                warnings.warn(mismatch)
        detector.freeze()
    num_channels = detector.backbone.num_channels
    num_classes = num_detector_classes(detector)
    det_to_obj = detector_to_dataset(r.detector_classes, num_classes, meta.objects, meta.person_label)
    head = InteractionHead(len(meta.verbs), object_to_verbs(meta, len(meta.objects)), meta.person_label, d.hidden_dim,
                           r.representation_size, num_channels, r.num_coop_layers, r.num_comp_layers)
    ire = fusion = None
    if use_ire:
        ire = InteractiveRelationEncoder(num_channels, d.hidden_dim, r.ire_dim, r.ire_layers, d.nheads, r.ire_ffn,
                                         d.dropout, r.ire_pool)
        fusion = nn.Linear(2 * r.ire_dim + r.representation_size, r.representation_size)   # Eq. (9)
    cml_ire = cml_irm = None
    loader = None
    if transfer and not inference:
        if r.language_reasoning and r.cml_dim != r.representation_size:
            raise ConfigError(f"model.rmlr.language_reasoning needs cml_dim == representation_size "
                              f"({r.cml_dim} != {r.representation_size})")
        if not r.text_dim:
            r.text_dim = text_encoder_dim(r.text.name, r.text.path)
        r.text.pooling = encoder_pooling(r.text.name, r.text.path, r.text.pooling)   # saved resolved
        common = dict(text_dim=r.text_dim, cml_dim=r.cml_dim, sa_layers=r.cml_sa_layers, ca_layers=r.cml_ca_layers,
                      dropout=d.dropout, word_scope=r.word_scope, query_stop_grad=r.query_stop_grad,
                      word_target=r.word_target)
        if {"s_a", "w_a"} & set(transfer):   # only the modules of the row's losses (DDP: no unused parameter)
            cml_ire = CrossModalBranch(r.ire_dim, word_level="w_a" in transfer, sentence_level="s_a" in transfer,
                                       train_teacher=False, **common)
        if {"s_m", "w_m"} & set(transfer):   # the IRM teacher is trained by language_reasoning's loss
            cml_irm = CrossModalBranch(r.representation_size, word_level="w_m" in transfer,
                                       sentence_level="s_m" in transfer, train_teacher=r.language_reasoning, **common)
        loader = partial(load_text_encoder, r.text.name, r.text.path, r.text.max_length, r.text.cache_size)
    weights = dict(hoi=r.lambda_hoi, s_m=r.lambda_s_m, w_m=r.lambda_w_m, s_a=r.lambda_s_a, w_a=r.lambda_w_a)
    model = RmLR(detector, head, meta, meta.person_label, ire, fusion, cml_ire, cml_irm, transfer, loader, weights,
                 r.word_context, r.language_reasoning, r.alpha, r.gamma, (r.prior_power_train, r.prior_power_test),
                 r.box_score_thresh, r.nms_thresh, r.min_instances, r.max_instances, r.fg_iou_thresh, det_to_obj,
                 r.detections, (d.set_cost_bbox, d.set_cost_giou), r.text.pooling,
                 DetectorCache(r.detector_cache_mb) if r.detector_cache and not inference else None)
    return model
