"""Build SG2HOI+ from the typed config (``model.sg2hoi``, ``model.detr`` for the backbone, ``train``).

Variants (Table I): ``rand`` = random classifiers, no distillation; ``clip`` = text-initialised
classifiers, no distillation; ``cls`` / ``pool`` = text-initialised classifiers + distillation of
``f_en[CLS]`` / ``f_en[pool]``. ``vl_distill`` (auto | cls | pool | none) overrides the variant's
distillation source (``none`` = -VLpool, Table VII).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Mapping, Optional

import torch

from ...config import Config
from ...data.metadata import DatasetMeta
from ...errors import CheckpointError, ConfigError
from ..backbone import build_backbone
from ..clip import load_clip
from ..deformable_detr import build_deformable_detr
from ..deformable_weights import load_deformable_weights, read_deformable_weights
from .criterion import SG2HOICriterion
from .deformable import (DeformablePairDecoder, DeformableSG2HOIEncoder, DeformableSG2HOIPlus,
                         check_deformable_base, init_heads_from_detector, pair_decoder, proposal_criterion,
                         zero_box_offsets)
from .heads import TupleHead
from .detr_init import init_from_detr
from .encoder import SG2HOIEncoder, VLDistillHead
from .hoi_decoder import HOIDecoder
from .model import SG2HOIPlus
from .relation_decoder import RelationDecoder
from .segmentation import SemanticSpatialAggregation, union_vocabulary
from .semantics import TextTables, object_prompt, predicate_prompt, verb_prompt
from .transfer import CrossAttentionStack, QueryTransform, R2ITransformer

log = logging.getLogger("hoikit")

VARIANTS = ("rand", "clip", "cls", "pool")
NO_CLIP_NOTICE = ("SG2HOI+: no CLIP directory (model.sg2hoi.clip_path is empty): class embeddings come from "
                  "the offline text encoder (model.sg2hoi.text) and vision-language distillation (Eq. 5) is OFF")


def distill_source(variant: str, vl_distill: str) -> Optional[str]:
    """Effective distillation feature: None, ``cls`` or ``pool``."""
    if variant not in VARIANTS:
        raise ConfigError(f"model.sg2hoi.variant: unknown value '{variant}' (choose {' | '.join(VARIANTS)})")
    if vl_distill == "auto":
        return variant if variant in ("cls", "pool") else None
    if vl_distill == "none":
        return None
    if vl_distill in ("cls", "pool"):
        return vl_distill
    raise ConfigError(f"model.sg2hoi.vl_distill: unknown value '{vl_distill}' (choose auto | cls | pool | none)")


class StoredTables:
    """Stand-in for :class:`TextTables` when every weight comes from a checkpoint: zero tables of
    the stored shapes, so rebuilding a model for inference opens neither CLIP nor a text encoder
    (the class-embedding buffer and the text-initialised classifier weights are in the state dict).

    Args:
        state_dict: the checkpoint's model state dict.
    """

    def __init__(self, state_dict):
        self.state = state_dict
        proj = [k for k in state_dict if k.endswith("_cls.proj.weight")]          # TextClassifier.proj [D_t, d]
        self.text_dim = int(state_dict[proj[0]].shape[0]) if proj else 0

    def prompts(self, prompts) -> torch.Tensor:
        return torch.zeros(len(prompts), self.text_dim)

    def seg_table(self, names, hss: str):
        if hss == "none":
            return None
        stored = self.state.get("hss.class_embed")
        if stored is None:
            raise CheckpointError("checkpoint: key 'model.hss.class_embed' missing (semantic-spatial map table)")
        return torch.zeros_like(stored)


_notice_said = False


def no_clip_notice() -> None:
    """Warn once per process that CLIP is absent (the model still trains)."""
    global _notice_said
    if not _notice_said:
        log.warning(NO_CLIP_NOTICE)
        _notice_said = True


def _check(cfg: Config, meta_sgg: Optional[DatasetMeta], meta_hoi: Optional[DatasetMeta], task: str) -> None:
    """The datasets ``train.task`` needs and the hidden width :func:`build_sg2hoi` needs; ConfigError
    naming the key (the choice fields ``train.task``, ``hss_assign``, ``verb_loss`` are ``Literal``s
    checked when the config loads)."""
    sg = cfg.model.sg2hoi
    if (task in ("joint", "sgg") and meta_sgg is None) or (task in ("joint", "hoi") and meta_hoi is None):
        raise ConfigError(f"train.task={task}: needs {'both an SGG and an HOI' if task == 'joint' else 'an ' + task.upper()} dataset")
    if meta_sgg is not None and not meta_sgg.predicates:
        raise ConfigError(f"SG2HOI+: SGG dataset '{meta_sgg.name}' has no predicates")
    if sg.hidden_dim != 2 * sg.seg_dim:
        raise ConfigError(f"model.sg2hoi.hidden_dim={sg.hidden_dim} must equal 2 * seg_dim={2 * sg.seg_dim} "
                          "(Eq. 3: d = 2C')")


def _text_source(sg, state_dict: Optional[Mapping[str, torch.Tensor]]):
    """``(clip or None, CLIP embedding width or 0, text tables)``: the stored tables of a checkpoint
    (``state_dict``), or CLIP (``sg.clip_path``) and the text encoders."""
    clip, clip_dim = None, 0
    if state_dict is not None:
        text = StoredTables(state_dict)
        if "distill.proj.weight" in state_dict:
            clip_dim = int(state_dict["distill.proj.weight"].shape[0])
        return clip, clip_dim, text
    clip = load_clip(sg.clip_path) if sg.clip_path else None
    if clip is None:
        no_clip_notice()
    clip_dim = clip.embed_dim if clip is not None else 0
    return clip, clip_dim, TextTables(clip, sg.text)


def _relation_classes(meta_sgg: Optional[DatasetMeta], meta_hoi: Optional[DatasetMeta], text, text_init: bool):
    """``(num objects, num predicates, object text, predicate text)`` of the relation branches: the SGG
    objects and predicates (the HOI objects without an SGG set); the texts are None without text init."""
    sgg_objects = meta_sgg.objects if meta_sgg else meta_hoi.objects
    predicates = meta_sgg.predicates if meta_sgg else []
    obj = text.prompts([object_prompt(n) for n in sgg_objects]) if text_init else None
    pred = text.prompts([predicate_prompt(n) for n in predicates]) if text_init and predicates else None
    return len(sgg_objects), len(predicates), obj, pred


def _relation_decoder(sg, meta_sgg: Optional[DatasetMeta], meta_hoi: Optional[DatasetMeta], text,
                      text_init: bool) -> RelationDecoder:
    """The relation decoder over the SGG objects and predicates (the HOI objects without an SGG set)."""
    n_obj, n_pred, obj, pred = _relation_classes(meta_sgg, meta_hoi, text, text_init)
    return RelationDecoder(sg.hidden_dim, sg.nheads, sg.dim_feedforward, sg.dropout, sg.rel_dec_layers,
                           sg.num_rel_queries, n_obj, n_pred, object_text=obj, predicate_text=pred)


def _relation_head(sg, meta_sgg: Optional[DatasetMeta], meta_hoi: Optional[DatasetMeta], text,
                   text_init: bool) -> TupleHead:
    """The relation decoder's five-branch head (as :class:`RelationDecoder` builds it), for the deformable base."""
    n_obj, n_pred, obj, pred = _relation_classes(meta_sgg, meta_hoi, text, text_init)
    return TupleHead(sg.hidden_dim, n_obj + 1, n_pred + 1, n_obj + 1, obj, pred, obj)


def _hoi_branch(sg, meta_hoi: Optional[DatasetMeta], text, text_init: bool, hoi_decoder_from_head=None):
    """``(R2I transformer, feature transform, query transform, HOI decoder)``, each None when the
    ablation or a missing HOI dataset leaves it out (built in this order: initial weights).
    ``hoi_decoder_from_head``: the deformable base's decoder factory, given the HOI tuple head."""
    r2i = feat_tr = query_tr = hoi_decoder = None
    if meta_hoi is None:
        return r2i, feat_tr, query_tr, hoi_decoder
    d = sg.hidden_dim
    if sg.relq and sg.num_hoi_queries != sg.num_rel_queries:
        log.info("SG2HOI+ RELQ: HOI queries are the %d relation queries", sg.num_rel_queries)
    if sg.r2i:
        r2i = R2ITransformer(d, sg.nheads, sg.dim_feedforward, sg.dropout, sg.r2i_layers)
        if sg.feature_transform:
            feat_tr = CrossAttentionStack(d, sg.nheads, sg.dim_feedforward, sg.dropout, sg.transform_layers)
    if not sg.relq:
        query_tr = QueryTransform(d, sg.nheads, sg.dim_feedforward, sg.dropout, sg.transform_layers,
                                  sg.num_hoi_queries, enabled=sg.query_transform)
    object_text = text.prompts([object_prompt(n) for n in meta_hoi.objects]) if text_init else None
    verb_text = text.prompts([verb_prompt(n) for n in meta_hoi.verbs]) if text_init else None
    if hoi_decoder_from_head is not None:       # as HOIDecoder's head: human / no-human, verbs, objects
        head = TupleHead(d, 2, len(meta_hoi.verbs), len(meta_hoi.objects) + 1, None, verb_text, object_text,
                         left_extra=0, mid_extra=0, right_extra=1)
        return r2i, feat_tr, query_tr, hoi_decoder_from_head(head)
    hoi_decoder = HOIDecoder(d, sg.nheads, sg.dim_feedforward, sg.dropout, sg.hoi_dec_layers, len(meta_hoi.objects),
                             len(meta_hoi.verbs), object_text=object_text, verb_text=verb_text)
    return r2i, feat_tr, query_tr, hoi_decoder


def build_sg2hoi(cfg: Config, meta_sgg: Optional[DatasetMeta], meta_hoi: Optional[DatasetMeta],
                 state_dict: Optional[Mapping[str, torch.Tensor]] = None, *, task: str,
                 train_backbone: bool = True) -> SG2HOIPlus:
    """Build the model.

    Args:
        cfg: the config; only its ``model`` section is read. meta_sgg: SGG dataset metadata (objects +
            predicates) or None. meta_hoi: HOI dataset metadata (objects + verbs) or None.
        task: the branches to build (the recipe passes ``train.task``): ``sgg`` needs ``meta_sgg``,
            ``hoi`` needs ``meta_hoi``, ``joint`` both. train_backbone: whether the backbone trains
            (the recipe passes ``train.lr_backbone > 0``).
        state_dict: weights the caller will load next (inference from a checkpoint): then CLIP and
            the text encoders are not opened; tables get the stored shapes (:class:`StoredTables`)
            and the distillation head CLIP's stored width. The model has no CLIP teacher.

    The modules are created in a fixed order (backbone, HSS, encoder, distillation head, relation
    decoder, HOI branch): with a given seed the initial weights do not change.
    """
    _check(cfg, meta_sgg, meta_hoi, task)
    sg, d = cfg.model.sg2hoi, cfg.model.sg2hoi.hidden_dim
    source = distill_source(sg.variant, sg.vl_distill)
    if cfg.model.detr.type == "deformable":
        return _build_deformable(cfg, meta_sgg, meta_hoi, state_dict, task, train_backbone, source)
    clip, clip_dim, text = _text_source(sg, state_dict)
    backbone = build_backbone(cfg.model.detr.backbone, cfg.model.detr.dilation,
                              train_backbone=train_backbone)
    # BBSeg classes: union of the two datasets' object vocabularies (method notes)
    union, (map_sgg, map_hoi) = union_vocabulary(meta_sgg.objects if meta_sgg else None,
                                                 meta_hoi.objects if meta_hoi else None)
    seg_embed = text.seg_table(union, sg.hss)
    hss = SemanticSpatialAggregation(backbone.num_channels, sg.seg_dim, seg_embed, use_hss=sg.hss != "none",
                                     assign=sg.hss_assign, num_convs=sg.seg_convs,
                                     detr_proj=sg.detr_proj)
    encoder = SG2HOIEncoder(sg.seg_dim, d, sg.nheads, sg.dim_feedforward, sg.dropout, sg.enc_layers)
    distill = VLDistillHead(d, clip_dim, source, sg.vl_loss) if (source and clip_dim) else None
    text_init = sg.variant != "rand"
    rel_decoder = _relation_decoder(sg, meta_sgg, meta_hoi, text, text_init)
    r2i, feat_tr, query_tr, hoi_decoder = _hoi_branch(sg, meta_hoi, text, text_init)
    criterion = SG2HOICriterion(sg.alpha_box, sg.alpha_cls, sg.alpha_rel, sg.eos_coef, sg.train_unmatched, sg.verb_loss)
    lambda_seg = sg.lambda_seg if sg.hss != "none" else 0.0          # -HSS: lambda_1 = 0 (Table VI)
    model = SG2HOIPlus(backbone, hss, encoder, rel_decoder, distill, r2i, feat_tr, query_tr, hoi_decoder, criterion,
                       meta_sgg, meta_hoi, {"sgg": map_sgg, "hoi": map_hoi}, clip=clip,
                       lambda_seg=lambda_seg, lambda_algn=sg.lambda_algn, task=task)
    if cfg.model.detr.checkpoint and state_dict is None:             # Section IV-D: DETR initialisation
        counts = init_from_detr(model, cfg.model.detr.checkpoint)
        log.info("SG2HOI+: initialised %d tensors from DETR %s (%d DETR tensors unused)",
                 counts["loaded"], cfg.model.detr.checkpoint, counts["unused"])
    return model


def _deformable_detector(cfg: Config, state_dict, train_backbone: bool):
    """The Deformable DETR whose modules the deformable base takes over: loaded strictly from
    ``model.detr.checkpoint``, or (rebuilding from an SG2HOI+ checkpoint) random with the stored
    number of detector classes."""
    dcfg = cfg.model.detr
    if state_dict is not None:
        w = state_dict.get("encoder.prop_class.weight")
        if w is None:
            raise CheckpointError("checkpoint: key 'model.encoder.prop_class.weight' missing: not an SG2HOI+ "
                                  "checkpoint of the deformable base (model.detr.type=deformable)")
        num_classes, path = int(w.shape[0]), None
    elif dcfg.checkpoint:
        path = dcfg.checkpoint
        num_classes = read_deformable_weights(path)[1]["num_classes"]
    else:
        raise ConfigError("model.detr.checkpoint: the SG2HOI+ deformable base starts from a trained two-stage "
                          "Deformable DETR (e.g. hoikit/assets/synth_deformable.pt; `hoikit train synth_deformable` "
                          "reproduces it): its proposals choose the pair queries")
    net = build_deformable_detr(dataclasses.replace(dcfg, num_classes=num_classes, num_queries_one2many=0,
                                                    dn_number=0), train_backbone=train_backbone)
    if path is not None:
        load_deformable_weights(net, path)
    return net, path


def _build_deformable(cfg: Config, meta_sgg, meta_hoi, state_dict, task: str, train_backbone: bool,
                      source: Optional[str]) -> SG2HOIPlus:
    """SG2HOI+ on the deformable base (:mod:`hoikit.models.sg2hoi.deformable`)."""
    sg = cfg.model.sg2hoi
    if state_dict is not None:      # the stored weights decide the pair queries (checkpoints from before the switch)
        stored = "detections" if "encoder.pair_embed.weight" in state_dict else "proposals"
        if stored != sg.pair_queries:
            log.info("SG2HOI+: the checkpoint's weights are of pair_queries=%s (config: %s)", stored, sg.pair_queries)
            sg = dataclasses.replace(sg, pair_queries=stored)
        anchors = "frozen" if any(k.startswith("encoder.anchor_net.") for k in state_dict) else "shared"
        if stored == "detections" and anchors != sg.anchor_detector:
            sg = dataclasses.replace(sg, anchor_detector=anchors)
    net, path = _deformable_detector(cfg, state_dict, train_backbone)
    check_deformable_base(net, sg)
    clip, clip_dim, text = _text_source(sg, state_dict)
    encoder = DeformableSG2HOIEncoder(net, sg.hss_level, sg.pair_queries, sg.anchor_detector, sg.pair_nms)
    union, (map_sgg, map_hoi) = union_vocabulary(meta_sgg.objects if meta_sgg else None,
                                                 meta_hoi.objects if meta_hoi else None)
    hss = SemanticSpatialAggregation(encoder.hss_channels, sg.seg_dim, text.seg_table(union, sg.hss),
                                     use_hss=sg.hss != "none", assign=sg.hss_assign, num_convs=sg.seg_convs,
                                     zero_init=True)
    distill = VLDistillHead(sg.hidden_dim, clip_dim, source, sg.vl_loss, has_cls=False) if (source and clip_dim) else None
    text_init = sg.variant != "rand"
    refine = sg.pair_queries == "proposals"      # detection pairs keep their union reference box
    rel_decoder = pair_decoder(net, _relation_head(sg, meta_sgg, meta_hoi, text, text_init), DeformablePairDecoder.REL,
                               refine)
    r2i, feat_tr, query_tr, hoi_decoder = _hoi_branch(
        sg, meta_hoi, text, text_init, lambda head: pair_decoder(net, head, DeformablePairDecoder.HOI, refine))
    criterion = SG2HOICriterion(sg.alpha_box, sg.alpha_cls, sg.alpha_rel, sg.eos_coef, sg.train_unmatched, sg.verb_loss)
    lambda_seg = sg.lambda_seg if sg.hss != "none" else 0.0
    model = DeformableSG2HOIPlus(
        net.backbone[0], hss, encoder, rel_decoder, distill, r2i, feat_tr, query_tr, hoi_decoder, criterion,
        meta_sgg, meta_hoi, {"sgg": map_sgg, "hoi": map_hoi}, clip=clip, lambda_seg=lambda_seg,
        lambda_algn=sg.lambda_algn, task=task, num_queries=sg.num_rel_queries,
        proposal_criterion=proposal_criterion(cfg.model.detr) if sg.proposal_loss > 0 else None,
        proposal_weight=sg.proposal_loss)
    if sg.pair_queries == "detections":
        zero_box_offsets(model)
        if path is not None:
            log.info("SG2HOI+ (deformable base): backbone, encoder, proposals and both pair "
                     "decoders from %s; pair queries = pairs of its detections", path)
    elif path is not None:
        n = init_heads_from_detector(model, net)
        log.info("SG2HOI+ (deformable base): backbone, encoder, proposals and both decoders from %s; %d head "
                 "tensors from its last box head", path, n)
    return model
