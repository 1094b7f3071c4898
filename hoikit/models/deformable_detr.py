"""Deformable DETR (Zhu et al., ICLR 2021) with the official fundamentalvision/Deformable-DETR
state-dict layout, plus H-DETR's hybrid matching (Jia et al., CVPR 2023) as a training aid.

Layout (/work/shared/specs/deformable-detr.md, "Checkpoints"): ``backbone.0.body.*`` (ResNet, as
DETR), ``input_proj.{l}.{0,1}`` (conv + GroupNorm per level; the extra levels are 3x3 stride-2
convolutions, the first on the raw C5), ``transformer.*``, ``class_embed.{i}`` / ``bbox_embed.{i}``
(one per decoder layer, +1 proposal head in the two-stage variant; without box refinement they are one
shared module), ``query_embed`` (one-stage: ``[Q, 2D]`` = position | content; mixed selection:
``[Q, D]`` content).

- :class:`DeformableDETR` returns the raw outputs dict (same keys as :class:`hoikit.models.detr.DETR`
  where they exist; ``pred_logits`` are sigmoid logits without a no-object column).
- :func:`postprocess_topk` is the official post-processing (top-k over queries x classes).
- :func:`postprocess_per_query` gives one (score, label) per query, for the two-stage HOI models
  whose pair tokens are the decoder states of the kept queries.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..losses.deformable_criterion import DeformableSetCriterion, FocalHungarianMatcher
from ..ops import batched_nms, box_cxcywh_to_xyxy
from .backbone import Backbone, build_backbone
from .deformable_weights import load_deformable_weights
from .deformable_transformer import DeformableTransformer, inverse_sigmoid
from .denoising import build_dn_queries, dn_attention_mask
from .detr import DETRDetector, FreezableDetector, nested_tensor_from_images, targets_to_detr
from .position_encoding import PositionEmbeddingSine
from .transformer import MLP


class MultiScaleJoiner(nn.Sequential):
    """``backbone.0`` = :class:`Backbone`, ``backbone.1`` = sine position encoding with Deformable
    DETR's -0.5 offset (no parameters)."""

    def __init__(self, backbone: Backbone, position_embedding: PositionEmbeddingSine):
        super().__init__(backbone, position_embedding)
        self.level_channels: List[int] = list(backbone.body.level_channels)
        self.num_channels: int = self.level_channels[-1]     # C5, the map the HOI heads re-mine
        self.stride: int = backbone.stride                   # pixels per C5 cell

    def forward(self, images: Tensor, mask: Tensor) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """``images [B,3,H,W]``, ``mask [B,H,W]`` -> per level features, masks, position encodings."""
        feats, masks = self[0].forward_levels(images, mask)
        return feats, masks, [self[1](m, f.dtype) for f, m in zip(feats, masks)]


def add_extra_levels(input_proj: nn.ModuleList, feats: List[Tensor], srcs: List[Tensor], masks: List[Tensor],
                     image_mask: Tensor, num_feature_levels: int) -> Tuple[List[Tensor], List[Tensor]]:
    """``srcs`` / ``masks`` (the projected backbone levels) extended by the extra stride-2 levels up to
    ``num_feature_levels``: the first extra level convolves the raw C5 (``feats[-1]``), the next ones
    the previous level; their masks are the image mask resized (spec: dd 140-152). New lists."""
    srcs, masks = list(srcs), list(masks)
    n_back = len(srcs)
    for lvl in range(n_back, num_feature_levels):
        src = input_proj[lvl](feats[-1] if lvl == n_back else srcs[-1])
        masks.append(nn.functional.interpolate(image_mask[None].float(), size=src.shape[-2:]).to(torch.bool)[0])
        srcs.append(src)
    return srcs, masks


class DeformableDETR(FreezableDetector):
    """Deformable DETR.

    Args:
        backbone: :class:`MultiScaleJoiner`. transformer: :class:`DeformableTransformer`.
        num_classes: C (sigmoid classifier, no no-object column).
        num_queries: one-to-one queries Q (300); two-stage: proposals kept.
        num_feature_levels: L (4: C3-C5 + one stride-2 conv on C5).
        aux_loss, with_box_refine, two_stage: the official switches.
        num_queries_one2many: H-DETR one-to-many queries (0 = off); used in training only.
        dn_number, dn_label_noise, dn_box_noise: DN-DETR denoising groups (0 = off; two-stage
            only), label flip ratio, box noise scale; training only (:mod:`hoikit.models.denoising`).
    """

    def __init__(self, backbone: MultiScaleJoiner, transformer: DeformableTransformer, num_classes: int,
                 num_queries: int = 300, num_feature_levels: int = 4, aux_loss: bool = True,
                 with_box_refine: bool = False, two_stage: bool = False, num_queries_one2many: int = 0,
                 dn_number: int = 0, dn_label_noise: float = 0.2, dn_box_noise: float = 0.4):
        super().__init__()
        if transformer.decoder_fine_level and not hasattr(backbone[0].body, "fine_channels"):
            raise ConfigError(f"model.detr.decoder_fine_level needs a backbone with a stride-4 map (small_res, "
                              f"resnet18/34/50/101), not {type(backbone[0].body).__name__}")
        if dn_number < 0 or not 0.0 <= dn_label_noise <= 1.0 or dn_box_noise < 0:
            raise ConfigError(f"model.detr: dn_number {dn_number} (>= 0), dn_label_noise {dn_label_noise} (in [0, 1]), "
                              f"dn_box_noise {dn_box_noise} (>= 0): a value is out of range")
        if dn_number > 0 and not two_stage:
            raise ConfigError("model.detr.dn_number > 0 needs model.detr.two_stage=true for type deformable "
                              "(denoising queries are 4-d reference boxes; the one-stage decoder starts from points)")
        if two_stage and not with_box_refine:
            raise ConfigError("model.detr.two_stage needs model.detr.with_box_refine=true (as in Deformable DETR: "
                              "the proposal head is the extra box-refinement head)")
        d = transformer.d_model
        self.num_classes, self.num_queries = num_classes, num_queries
        self.num_queries_one2many = num_queries_one2many
        self.num_feature_levels = num_feature_levels
        self.aux_loss, self.with_box_refine, self.two_stage = aux_loss, with_box_refine, two_stage
        self.transformer = transformer
        self.backbone = backbone
        total_queries = num_queries + num_queries_one2many
        if not two_stage:
            self.query_embed = nn.Embedding(total_queries, 2 * d)
        elif transformer.mixed_selection:
            self.query_embed = nn.Embedding(total_queries, d)
        chans = backbone.level_channels
        n_back = min(len(chans), num_feature_levels)
        proj = [nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(32 if d % 32 == 0 else 8, d))
                for c in chans[len(chans) - n_back:]]
        cin = chans[-1]
        for _ in range(num_feature_levels - n_back):
            proj.append(nn.Sequential(nn.Conv2d(cin, d, 3, stride=2, padding=1), nn.GroupNorm(32 if d % 32 == 0 else 8, d)))
            cin = d
        self.input_proj = nn.ModuleList(proj)
        # decoder_fine_level: the stride-4 map's projection (as the other levels': 1x1 conv + GroupNorm)
        self.fine_proj = (nn.Sequential(nn.Conv2d(backbone[0].body.fine_channels, d, 1),
                                        nn.GroupNorm(32 if d % 32 == 0 else 8, d))
                          if transformer.decoder_fine_level else None)
        self.level_offset = len(chans) - n_back
        class_embed = nn.Linear(d, num_classes)
        bbox_embed = MLP(d, d, 4, 3)
        # spec "Heads, refinement, two-stage": class bias -log((1 - 0.01) / 0.01), box last layer 0
        nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.constant_(bbox_embed.layers[-1].weight, 0.0)
        nn.init.constant_(bbox_embed.layers[-1].bias, 0.0)
        for p in list(self.input_proj) + ([self.fine_proj] if self.fine_proj is not None else []):
            nn.init.xavier_uniform_(p[0].weight, gain=1)
            nn.init.constant_(p[0].bias, 0)
        num_pred = transformer.decoder.num_layers + (1 if two_stage else 0)
        if with_box_refine:
            self.class_embed = nn.ModuleList(copy.deepcopy(class_embed) for _ in range(num_pred))
            self.bbox_embed = nn.ModuleList(copy.deepcopy(bbox_embed) for _ in range(num_pred))
            nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
            transformer.decoder.bbox_embed = self.bbox_embed
        else:
            nn.init.constant_(bbox_embed.layers[-1].bias[2:], -2.0)
            self.class_embed = nn.ModuleList([class_embed] * num_pred)
            self.bbox_embed = nn.ModuleList([bbox_embed] * num_pred)
        if two_stage:
            transformer.decoder.class_embed = self.class_embed
            for b in self.bbox_embed:
                nn.init.constant_(b.layers[-1].bias[2:], 0.0)
        self.dn_number, self.dn_label_noise, self.dn_box_noise = dn_number, dn_label_noise, dn_box_noise
        if dn_number > 0:   # training-only content of the denoising queries (not exported)
            self.dn_label_embed = nn.Embedding(num_classes, d)

    def per_query_detections(self, outputs: Dict, sizes: Tensor) -> List[Dict[str, Tensor]]:
        """One detection per query (best sigmoid class), in query order: :func:`postprocess_per_query`."""
        return postprocess_per_query(outputs, sizes)

    def _levels(self, tensor: Tensor, mask: Tensor):
        """Backbone levels, their projections / masks / positions (plus the extra levels), the C5
        mask and position, and ``fine`` (decoder_fine_level: the projected stride-4 map and its mask)."""
        fine = None
        if self.fine_proj is None:
            feats, masks, pos = self.backbone(tensor, mask)
        else:
            feats, masks = self.backbone[0].forward_levels(tensor, mask, fine=True)
            fine = (self.fine_proj(feats[0]), masks[0])
            feats, masks = feats[1:], masks[1:]
            pos = [self.backbone[1](m, f.dtype) for f, m in zip(feats, masks)]
        c5 = (masks[-1], pos[-1])
        srcs = [self.input_proj[i](f) for i, f in enumerate(feats[self.level_offset:])]
        masks, pos = masks[self.level_offset:], pos[self.level_offset:]
        n_back = len(srcs)
        srcs, masks = add_extra_levels(self.input_proj, feats, srcs, masks, mask, self.num_feature_levels)
        pos = list(pos) + [self.backbone[1](m, s.dtype) for s, m in zip(srcs[n_back:], masks[n_back:])]
        return feats, srcs, masks, pos, c5, fine

    def _hybrid_mask(self, total: int, device) -> Optional[Tensor]:
        if not (self.training and self.num_queries_one2many > 0):
            return None
        q1 = self.num_queries
        m = torch.zeros(total, total, dtype=torch.bool, device=device)
        m[q1:, :q1] = True      # the one-to-many group cannot see the one-to-one group
        m[:q1, q1:] = True      # and vice versa (H-DETR, spec "H-DETR")
        return m

    def _dn_queries(self, targets: List[Dict[str, Tensor]], num_matching: int, base: Optional[Tensor]):
        """Denoising content ``[B, N, D]``, boxes ``[B, N, 4]``, valid ``[B, N]`` and the decoder's
        self-attention mask ``[B * heads, M + N, M + N]``."""
        labels, boxes, valid = build_dn_queries(targets, self.dn_number, self.dn_label_noise, self.dn_box_noise,
                                                self.num_classes)
        attn = dn_attention_mask(num_matching, self.dn_number, valid, base)
        attn = attn.repeat_interleave(self.transformer.nhead, 0)
        return self.dn_label_embed(labels), boxes, valid, attn

    def forward(self, images: Union[Sequence[Tensor], Tensor], mask: Optional[Tensor] = None,
                targets: Optional[List[Dict[str, Tensor]]] = None) -> Dict:
        """Detect objects.

        Args:
            images: list of ``[3, H_i, W_i]`` normalised images, or a padded ``[B, 3, H, W]`` batch
                with ``mask [B, H, W]`` (True on padding).
            targets: training with ``dn_number > 0``: per image ``labels [T]``, ``boxes [T, 4]``
                (cxcywh, normalised) for the denoising queries; ignored otherwise.

        Returns:
            dict with ``pred_logits [B, Q, C]`` (sigmoid logits), ``pred_boxes [B, Q, 4]`` (cxcywh
            normalised by each image's unpadded size), ``aux_outputs`` (L-1 dicts), ``hs [L, B, Q, D]``,
            ``features [B, Cb, h, w]`` (the backbone's C5) with ``mask [B, h, w]`` and ``pos [B, D, h, w]``
            (its sine encoding), ``memory [B, S, D]``
            (encoder output, all levels); two-stage: ``enc_outputs`` (``pred_logits [B, S, C]``,
            ``pred_boxes [B, S, 4]``); hybrid matching in training: ``one2many`` (same form);
            denoising in training: ``dn`` (same form, ``[B, G * P, .]``) with ``dn_valid [B, G * P]``
            and ``dn_groups`` (slot ``g * P + i`` is target ``i``).
        """
        if isinstance(images, Tensor) and images.dim() == 4:
            tensor = images
            if mask is None:
                mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool, device=images.device)
        else:
            tensor, mask = nested_tensor_from_images(list(images))
        feats, srcs, masks, pos, (c5_mask, c5_pos), fine = self._levels(tensor, mask)
        use_one2many = self.training and self.num_queries_one2many > 0
        total = self.num_queries + (self.num_queries_one2many if use_one2many else 0)
        query = getattr(self, "query_embed", None)
        query = query.weight[:total] if query is not None else None
        attn_mask, dn = self._hybrid_mask(total, tensor.device), None
        use_dn = self.training and self.dn_number > 0 and targets is not None
        if use_dn:
            dn = self._dn_queries(targets, total, attn_mask)
            attn_mask = dn[3]
        tr = self.transformer(srcs, masks, pos, query, attn_mask, num_queries=total,
                              dn_tgt=dn[0] if use_dn else None, dn_boxes=dn[1] if use_dn else None, fine=fine)
        hs = tr["hs"]
        logits, boxes = [], []
        for lvl in range(hs.shape[0]):
            ref = inverse_sigmoid(tr["init_reference"] if lvl == 0 else tr["inter_references"][lvl - 1])
            delta = self.bbox_embed[lvl](hs[lvl])
            if ref.shape[-1] == 4:
                delta = delta + ref
            else:
                delta = torch.cat([delta[..., :2] + ref, delta[..., 2:]], -1)
            logits.append(self.class_embed[lvl](hs[lvl]))
            boxes.append(delta.sigmoid())
        logits, boxes = torch.stack(logits), torch.stack(boxes)
        q1 = self.num_queries
        out = self._pack(logits[:, :, :q1], boxes[:, :, :q1])
        out.update(hs=hs[:, :, :q1], features=feats[-1], mask=c5_mask, pos=c5_pos, memory=tr["memory"],
                   level_shapes=tr["shapes"], memory_mask=tr["mask"])
        if self.two_stage:
            out["enc_outputs"] = {"pred_logits": tr["enc_logits"], "pred_boxes": tr["enc_coords_unact"].sigmoid()}
        if use_one2many:
            out["one2many"] = self._pack(logits[:, :, q1:total], boxes[:, :, q1:total])
        if use_dn:
            out["dn"] = self._pack(logits[:, :, total:], boxes[:, :, total:])
            out.update(dn_valid=dn[2], dn_groups=self.dn_number)
        return out


@torch.no_grad()
def postprocess_topk(outputs: Dict, sizes: Tensor, k: int = 100) -> List[Dict[str, Tensor]]:
    """Official post-processing: sigmoid, top-``k`` over queries x classes (spec: dd 411-422).

    Args:
        outputs: ``pred_logits [B, Q, C]``, ``pred_boxes [B, Q, 4]``. sizes: ``[B, 2]`` (W, H).

    Returns:
        per image ``boxes [k, 4]`` xyxy pixels, ``scores [k]``, ``labels [k]``, ``queries [k]``.
    """
    prob = outputs["pred_logits"].sigmoid()
    b, q, c = prob.shape
    scores, idx = torch.topk(prob.reshape(b, -1), min(k, q * c), dim=1)
    queries, labels = idx // c, idx % c
    wh = torch.as_tensor(sizes, dtype=torch.float32, device=prob.device).reshape(-1, 2)
    boxes = box_cxcywh_to_xyxy(outputs["pred_boxes"]) * torch.cat([wh, wh], 1)[:, None, :]
    boxes = torch.gather(boxes, 1, queries[..., None].repeat(1, 1, 4))
    return [{"boxes": bb, "scores": s, "labels": l, "queries": qq} for bb, s, l, qq in zip(boxes, scores, labels, queries)]


@torch.no_grad()
def postprocess_per_query(outputs: Dict, sizes: Tensor) -> List[Dict[str, Tensor]]:
    """One detection per query: the best class's sigmoid score (the contract of
    :func:`hoikit.models.detr.postprocess_detections`, which the two-stage HOI models use)."""
    scores, labels = outputs["pred_logits"].sigmoid().max(-1)
    wh = torch.as_tensor(sizes, dtype=torch.float32, device=scores.device).reshape(-1, 2)
    boxes = box_cxcywh_to_xyxy(outputs["pred_boxes"]) * torch.cat([wh, wh], 1)[:, None, :]
    return [{"boxes": bb, "scores": s, "labels": l} for bb, s, l in zip(boxes, scores, labels)]


def build_deformable_detr(cfg, train_backbone: bool = True) -> DeformableDETR:
    """Build Deformable DETR from the ``model.detr`` section (``type: deformable``); random init."""
    backbone = build_backbone(cfg.backbone, cfg.dilation, train_backbone)
    joiner = MultiScaleJoiner(backbone, PositionEmbeddingSine(cfg.hidden_dim // 2, normalize=True, offset=-0.5))
    if cfg.num_feature_levels < 1:
        raise ConfigError(f"model.detr.num_feature_levels: {cfg.num_feature_levels} (must be >= 1)")
    transformer = DeformableTransformer(
        cfg.hidden_dim, cfg.nheads, cfg.enc_layers, cfg.dec_layers, cfg.dim_feedforward, cfg.dropout,
        cfg.num_feature_levels, cfg.dec_n_points, cfg.enc_n_points, cfg.two_stage, cfg.num_queries,
        cfg.mixed_selection, cfg.look_forward_twice, cfg.decoder_fine_level)
    return DeformableDETR(joiner, transformer, cfg.num_classes, cfg.num_queries, cfg.num_feature_levels,
                          cfg.aux_loss, cfg.with_box_refine, cfg.two_stage, cfg.num_queries_one2many,
                          cfg.dn_number, cfg.dn_label_noise, cfg.dn_box_noise)


class DeformableDETRDetector(DETRDetector):
    """Trainable Deformable DETR (``model.arch = detr``, ``model.detr.type = deformable``).

    Same contract as :class:`hoikit.models.detr.DETRDetector` (weights under ``detr.*``); the loss is
    :class:`hoikit.losses.deformable_criterion.DeformableSetCriterion` and evaluation keeps the
    official top-``max_detections`` over queries x classes.
    """

    def __init__(self, detr: DeformableDETR, criterion: nn.Module, meta=None, max_detections: int = 100,
                 nms_thresh: float = 0.0):
        super().__init__(detr, criterion, meta)
        self.max_detections = max_detections
        self.nms_thresh = nms_thresh

    def forward(self, images: List[Tensor], targets: Optional[List[Dict]] = None):
        """Training: dict of weighted scalar losses. Eval: per image ``boxes [K, 4]`` xyxy in
        transformed-image pixels, ``scores [K]``, ``labels [K]`` (K <= ``max_detections``: all of them
        without NMS, those left by class-wise NMS at ``nms_thresh`` otherwise), by descending score."""
        if self.training:
            if targets is None:
                raise ValueError("DeformableDETRDetector needs targets in training mode")
            detr_targets = targets_to_detr(targets, images)
            return self.criterion(self.detr(images, targets=detr_targets), detr_targets)
        outputs = self.detr(images)
        sizes = torch.as_tensor([[im.shape[2], im.shape[1]] for im in images])
        results = postprocess_topk(outputs, sizes, self.max_detections)
        if self.nms_thresh > 0:
            results = [{k: v[keep] for k, v in r.items()} for r in results
                       for keep in [batched_nms(r["boxes"], r["scores"], r["labels"], self.nms_thresh)]]
        return [{k: v for k, v in r.items() if k != "queries"} for r in results]


def build_deformable_detector(cfg, meta, train_backbone: bool = True) -> DeformableDETRDetector:
    """``model.arch = detr`` with ``model.detr.type = deformable``, for ``meta.objects`` classes."""
    dcfg = dataclasses.replace(cfg.model.detr, num_classes=len(meta.objects))
    detr = build_deformable_detr(dcfg, train_backbone=train_backbone)
    if dcfg.checkpoint:
        load_deformable_weights(detr, dcfg.checkpoint)
    matcher = FocalHungarianMatcher(dcfg.set_cost_class, dcfg.set_cost_bbox, dcfg.set_cost_giou, dcfg.focal_alpha)
    criterion = DeformableSetCriterion(dcfg.num_classes, matcher, dcfg.focal_alpha, dcfg.ce_loss_coef,
                                       dcfg.bbox_loss_coef, dcfg.giou_loss_coef, dcfg.k_one2many,
                                       dcfg.lambda_one2many, dcfg.dn_number)
    return DeformableDETRDetector(detr, criterion, meta, nms_thresh=dcfg.nms_thresh)
