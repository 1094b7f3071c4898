"""DETR (Carion et al. 2020) with the official facebookresearch/detr state-dict layout.

Module names match the official checkpoints: ``backbone.0.body.*`` (ResNet), ``transformer.*``,
``input_proj``, ``query_embed``, ``class_embed`` (C+1 rows, last = no-object), ``bbox_embed.layers.*``.

- :func:`nested_tensor_from_images` pads a list of images bottom-right with zeros.
- :class:`DETR` returns the raw outputs dict of docs/architecture.md.
- :func:`postprocess_detections` turns outputs into per-image boxes / labels / scores in pixels.
- :class:`DETRDetector` is the trainable detector of ``hoikit train`` (``model.arch = detr``).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from ..losses.dense import DenseHead, dense_loss, dense_targets
from ..losses.matcher import HungarianMatcher
from ..losses.set_criterion import SetCriterion
from ..ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from .backbone import Backbone, build_backbone
from .position_encoding import PositionEmbeddingSine
from .denoising import build_dn_queries, dn_attention_mask
from .detr_weights import load_detr_weights
from .transformer import MLP, Transformer


def nested_tensor_from_images(images: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
    """Pad images to a common size (bottom-right, zeros) and build the padding mask.

    Args:
        images: list of ``[3, H_i, W_i]`` tensors.

    Returns:
        tensor ``[B, 3, Hmax, Wmax]`` and mask ``[B, Hmax, Wmax]`` bool, True on padding.
    """
    if len(images) == 0:
        raise DataError("nested_tensor_from_images: got an empty list of images")
    for i, im in enumerate(images):
        if im.dim() != 3:
            raise DataError(f"nested_tensor_from_images: image {i} has shape {tuple(im.shape)}, expected [C, H, W]")
    c = images[0].shape[0]
    h = max(int(im.shape[1]) for im in images)
    w = max(int(im.shape[2]) for im in images)
    tensor = images[0].new_zeros((len(images), c, h, w))
    mask = torch.ones((len(images), h, w), dtype=torch.bool, device=images[0].device)
    for i, im in enumerate(images):
        tensor[i, :, : im.shape[1], : im.shape[2]].copy_(im)
        mask[i, : im.shape[1], : im.shape[2]] = False
    return tensor, mask


class Joiner(nn.Sequential):
    """``backbone.0`` = :class:`Backbone`, ``backbone.1`` = sine position encoding (no parameters)."""

    def __init__(self, backbone: Backbone, position_embedding: PositionEmbeddingSine):
        super().__init__(backbone, position_embedding)
        self.num_channels = backbone.num_channels
        self.stride = backbone.stride

    def forward(self, images: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``images [B,3,H,W]``, ``mask [B,H,W]`` -> C5 ``[B,Cb,h,w]``, mask ``[B,h,w]``, pos ``[B,D,h,w]``."""
        feats, m = self[0](images, mask)
        return feats, m, self[1](m, feats.dtype)


class FreezableDetector(nn.Module):
    """What DETR and Deformable DETR share: ``freeze()`` stops all gradients and pins eval mode (dropout
    off) even under ``model.train()`` (the frozen detector of the two-stage HOI models), and ``_pack``
    turns per-layer predictions into DETR's output dict (subclasses set ``aux_loss``)."""

    frozen = False

    def freeze(self):
        self.frozen = True
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

    def _pack(self, logits: Tensor, boxes: Tensor) -> Dict:
        """Per-layer ``logits [L, B, Q, C]`` and ``boxes [L, B, Q, 4]`` -> the last layer's
        ``pred_logits`` / ``pred_boxes`` plus ``aux_outputs`` (the earlier layers, when ``aux_loss``)."""
        aux = [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])] if self.aux_loss else []
        return {"pred_logits": logits[-1], "pred_boxes": boxes[-1], "aux_outputs": aux}


class DETR(FreezableDetector):
    """DEtection TRansformer.

    Args:
        backbone: :class:`Joiner`. transformer: :class:`Transformer`.
        num_classes: C foreground classes (``class_embed`` has C+1 outputs; the last is no-object).
        num_queries: Q object queries (100).
        aux_loss: return per-layer predictions in ``aux_outputs``.
        num_queries_one2many: H-DETR hybrid matching (Jia et al., CVPR 2023): extra training-only
            query rows after the ``num_queries`` one-to-one rows of ``query_embed`` (0 = off, DETR).
        dn_number, dn_label_noise, dn_box_noise: DN-DETR denoising groups (0 = off), label flip
            ratio, box noise scale; training only (:mod:`hoikit.models.denoising`, :meth:`_dn_queries`).
    """

    def __init__(self, backbone: Joiner, transformer: Transformer, num_classes: int, num_queries: int = 100,
                 aux_loss: bool = True, num_queries_one2many: int = 0, dn_number: int = 0,
                 dn_label_noise: float = 0.2, dn_box_noise: float = 0.4):
        super().__init__()
        if dn_number < 0 or not 0.0 <= dn_label_noise <= 1.0 or dn_box_noise < 0:
            raise ConfigError(f"model.detr: dn_number {dn_number} (>= 0), dn_label_noise {dn_label_noise} (in [0, 1]), "
                              f"dn_box_noise {dn_box_noise} (>= 0): a value is out of range")
        d = transformer.d_model
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.num_queries_one2many = num_queries_one2many
        self.transformer = transformer
        self.class_embed = nn.Linear(d, num_classes + 1)
        self.bbox_embed = MLP(d, d, 4, 3)
        self.query_embed = nn.Embedding(num_queries + num_queries_one2many, d)
        self.input_proj = nn.Conv2d(backbone.num_channels, d, kernel_size=1)
        self.backbone = backbone
        self.aux_loss = aux_loss
        self.dn_number, self.dn_label_noise, self.dn_box_noise = dn_number, dn_label_noise, dn_box_noise
        if dn_number > 0:   # training-only (not exported): content and position of the denoising queries
            self.dn_label_embed = nn.Embedding(num_classes, d)
            self.dn_box_embed = MLP(d, d, d, 2)

    def per_query_detections(self, outputs: Dict, sizes: Tensor) -> List[Dict[str, Tensor]]:
        """One detection per query, in query order (what the two-stage HOI heads read): per image
        ``boxes [Q, 4]`` xyxy in the pixel frame ``sizes [B, 2]`` (W, H), ``scores [Q]``, ``labels [Q]``:
        the best softmax class without no-object (:class:`DeformableDETR`: the best sigmoid class)."""
        return postprocess_detections(outputs, sizes)

    def _dn_queries(self, targets: List[Dict[str, Tensor]], num_matching: int, base: Optional[Tensor]):
        """Denoising queries for DETR, whose queries have no reference box: content
        ``dn_label_embed(noised label)``, position ``dn_box_embed(sine(noised box))`` (DAB-DETR's way of
        turning an anchor box into a positional query: 4 sine encodings of D/4, then a 2-layer MLP).

        Returns:
            content ``[B, N, D]``, position ``[B, N, D]``, valid ``[B, N]``, self-attention mask
            ``[B * heads, M + N, M + N]``.
        """
        labels, boxes, valid = build_dn_queries(targets, self.dn_number, self.dn_label_noise, self.dn_box_noise,
                                                self.num_classes)
        d = self.query_embed.weight.shape[1]
        n = d // 4
        dim_t = 10000 ** (2 * torch.div(torch.arange(n, device=boxes.device), 2, rounding_mode="floor") / n)
        ang = boxes[..., None] * (2 * torch.pi) / dim_t
        sine = torch.stack((ang[..., 0::2].sin(), ang[..., 1::2].cos()), -1).flatten(2)
        attn = dn_attention_mask(num_matching, self.dn_number, valid, base)
        return (self.dn_label_embed(labels), self.dn_box_embed(sine), valid,
                attn.repeat_interleave(self.transformer.nhead, 0))

    def forward(self, images: Union[Sequence[Tensor], Tensor], mask: Optional[Tensor] = None,
                targets: Optional[List[Dict[str, Tensor]]] = None) -> Dict:
        """Detect objects.

        Args:
            images: list of ``[3, H_i, W_i]`` normalised images, or a padded ``[B, 3, H, W]`` batch
                with ``mask [B, H, W]`` (True on padding; all False when omitted).
            targets: training with ``dn_number > 0``: per image ``labels [T]``, ``boxes [T, 4]``
                (cxcywh, normalised) for the denoising queries; ignored otherwise.

        Returns:
            dict with ``pred_logits [B, Q, C+1]``, ``pred_boxes [B, Q, 4]`` (cxcywh normalised by
            each image's unpadded size), ``aux_outputs`` (list of L-1 dicts of the same two keys;
            empty when ``aux_loss`` is False), ``hs [L, B, Q, D]`` (decoder outputs after the
            decoder norm), ``features [B, Cb, h, w]`` (C5), ``mask [B, h, w]`` (True = padding),
            ``pos [B, D, h, w]`` and ``memory [B, D, h, w]`` (encoder output); hybrid matching in
            training: ``one2many`` (``pred_logits``, ``pred_boxes``, ``aux_outputs`` of the extra queries);
            denoising in training: ``dn`` (same form), ``dn_valid [B, G * P]``, ``dn_groups``.
        """
        if isinstance(images, Tensor) and images.dim() == 4:
            tensor = images
            if mask is None:
                mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool, device=images.device)
        else:
            tensor, mask = nested_tensor_from_images(list(images))
        features, fmask, pos = self.backbone(tensor, mask)
        q1 = self.num_queries
        total, group_mask, dn = q1, None, None
        if self.training and self.num_queries_one2many > 0:
            total = q1 + self.num_queries_one2many
            group_mask = torch.zeros(total, total, dtype=torch.bool, device=tensor.device)
            group_mask[q1:, :q1] = group_mask[:q1, q1:] = True   # H-DETR: the groups cannot see each other
        if self.training and self.dn_number > 0 and targets is not None:
            dn = self._dn_queries(targets, total, group_mask)
            group_mask = dn[3]
        if group_mask is None:   # DETR's own path: the one-to-one rows only
            hs, memory = self.transformer(self.input_proj(features), fmask, self.query_embed.weight[:q1], pos)
        else:
            hs, memory = self.transformer(self.input_proj(features), fmask, self.query_embed.weight[:total], pos,
                                          group_mask, dn[0] if dn else None, dn[1] if dn else None)
        logits = self.class_embed(hs)
        boxes = self.bbox_embed(hs).sigmoid()
        out = self._pack(logits[:, :, :q1], boxes[:, :, :q1])
        out.update(hs=hs[:, :, :q1], features=features, mask=fmask, pos=pos, memory=memory)
        if total > q1:
            out["one2many"] = self._pack(logits[:, :, q1:total], boxes[:, :, q1:total])
        if dn is not None:
            out["dn"] = self._pack(logits[:, :, total:], boxes[:, :, total:])
            out.update(dn_valid=dn[2], dn_groups=self.dn_number)
        return out


@torch.no_grad()
def postprocess_detections(outputs: Dict, sizes: Tensor) -> List[Dict[str, Tensor]]:
    """DETR's post-processing: softmax, drop the no-object column, take the max class.

    Args:
        outputs: ``pred_logits [B, Q, C+1]`` and ``pred_boxes [B, Q, 4]``.
        sizes: ``[B, 2]`` image sizes as (W, H) in the pixel frame wanted.

    Returns:
        per image ``boxes [Q, 4]`` xyxy pixels, ``scores [Q]``, ``labels [Q]`` int64.
    """
    prob = outputs["pred_logits"].softmax(-1)[..., :-1]
    scores, labels = prob.max(-1)
    wh = torch.as_tensor(sizes, dtype=torch.float32, device=prob.device).reshape(-1, 2)
    scale = torch.cat([wh, wh], dim=1)[:, None, :]
    boxes = box_cxcywh_to_xyxy(outputs["pred_boxes"]) * scale
    return [{"boxes": b, "scores": s, "labels": l} for b, s, l in zip(boxes, scores, labels)]


def build_detr(cfg, train_backbone: bool = True) -> DETR:
    """Build DETR from a :class:`hoikit.config.DETRConfig` (random init; see models/detr_weights.py to load).

    Args:
        cfg: the ``model.detr`` section.
        train_backbone: False freezes the backbone (DETR's rule ``lr_backbone <= 0``: callers pass
            ``cfg.train.lr_backbone > 0``).
    """
    backbone = build_backbone(cfg.backbone, cfg.dilation, train_backbone)
    joiner = Joiner(backbone, PositionEmbeddingSine(cfg.hidden_dim // 2, normalize=True))
    transformer = Transformer(cfg.hidden_dim, cfg.nheads, cfg.enc_layers, cfg.dec_layers, cfg.dim_feedforward,
                              cfg.dropout, return_intermediate_dec=True)
    return DETR(joiner, transformer, cfg.num_classes, cfg.num_queries, cfg.aux_loss, cfg.num_queries_one2many,
                cfg.dn_number, cfg.dn_label_noise, cfg.dn_box_noise)


def targets_to_detr(targets: List[Dict[str, Tensor]], images: Sequence[Tensor]) -> List[Dict[str, Tensor]]:
    """hoikit targets (xyxy pixels of the transformed image) -> DETR targets (cxcywh in [0, 1]).

    Args:
        targets: per image ``boxes [N, 4]`` and ``labels [N]``. images: the ``[3, H, W]`` inputs.
    """
    out = []
    for t, im in zip(targets, images):
        h, w = im.shape[-2:]
        scale = torch.as_tensor([w, h, w, h], dtype=torch.float32, device=im.device)
        boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=im.device).reshape(-1, 4)
        out.append({"boxes": box_xyxy_to_cxcywh(boxes / scale),
                    "labels": torch.as_tensor(t["labels"], dtype=torch.int64, device=im.device).reshape(-1)})
    return out


class DETRDetector(nn.Module):
    """Trainable detector following the model contract of docs/architecture.md.

    Args:
        detr: the :class:`DETR`. criterion: a :class:`hoikit.losses.set_criterion.SetCriterion`.
        meta: :class:`hoikit.data.metadata.DatasetMeta` naming the classes.
    """

    def __init__(self, detr: DETR, criterion: nn.Module, meta=None, dense_loss_coef: float = 0.0):
        super().__init__()
        self.detr = detr
        self.criterion = criterion
        self.meta = meta
        self.dense_loss_coef = dense_loss_coef
        if dense_loss_coef > 0:   # training aid (hoikit/losses/dense.py); not part of DETR's state dict
            self.dense_head = DenseHead(detr.query_embed.weight.shape[1], detr.class_embed.out_features - 1)

    def forward(self, images: List[Tensor], targets: Optional[List[Dict]] = None):
        """Training: dict of weighted scalar losses (``loss_*``) plus logging values.
        Eval: per image ``boxes [Q, 4]`` xyxy in transformed-image pixels, ``scores [Q]``, ``labels [Q]``.
        """
        if self.training:
            if targets is None:
                raise ValueError("DETRDetector needs targets in training mode")
            detr_targets = targets_to_detr(targets, images)
            outputs = self.detr(images, targets=detr_targets)
            losses = self.criterion(outputs, detr_targets)
            if self.dense_loss_coef > 0:
                losses.update(self._dense_losses(outputs, detr_targets, images))
            return losses
        outputs = self.detr(images)
        sizes = torch.as_tensor([[im.shape[2], im.shape[1]] for im in images])
        return postprocess_detections(outputs, sizes)

    def _dense_losses(self, outputs: Dict, detr_targets: List[Dict[str, Tensor]], images) -> Dict[str, Tensor]:
        """``loss_dense_ce`` / ``loss_dense_l1`` on the encoder memory, each weighted by ``dense_loss_coef``."""
        sizes = torch.as_tensor([[im.shape[-2], im.shape[-1]] for im in images], device=outputs["memory"].device)
        padded = (int(sizes[:, 0].max()), int(sizes[:, 1].max()))
        classes, boxes, fg = dense_targets(detr_targets, sizes, padded, outputs["mask"],
                                           self.detr.class_embed.out_features - 1)
        logits, pred = self.dense_head(outputs["memory"])
        raw = dense_loss(logits, pred, classes, boxes, fg, self.criterion.eos_coef)
        return {"loss_" + k: v * self.dense_loss_coef for k, v in raw.items()}

    @torch.no_grad()
    def postprocess(self, outputs: List[Dict[str, Tensor]], targets_or_sizes) -> List[Dict[str, np.ndarray]]:
        """Eval outputs -> original-image pixels.

        Args:
            outputs: the eval-mode output of :meth:`forward`.
            targets_or_sizes: targets with ``orig_size`` and ``size`` (both (W, H)), or a list of
                ``(orig (W, H), size (W, H))`` pairs.

        Returns:
            per image numpy ``boxes [Q, 4]`` float32, ``scores [Q]`` float32, ``labels [Q]`` int64.
        """
        res = []
        for out, t in zip(outputs, targets_or_sizes):
            orig, size = (t["orig_size"], t["size"]) if isinstance(t, dict) else t
            # on the CPU: evaluation moves the targets (orig_size, size) to the model's device (review, session 12)
            ratio = (torch.as_tensor(orig, dtype=torch.float32).cpu()
                     / torch.as_tensor(size, dtype=torch.float32).cpu())
            boxes = out["boxes"].detach().cpu().float() * torch.cat([ratio, ratio])
            res.append({"boxes": boxes.numpy(), "scores": out["scores"].detach().cpu().float().numpy(),
                        "labels": out["labels"].detach().cpu().numpy().astype(np.int64)})
        return res


def build_detector(cfg, meta, train_backbone: bool = True) -> DETRDetector:
    """``model.arch = detr``: a trainable DETR for ``meta.objects`` classes.

    ``cfg.model.detr.checkpoint`` (any supported format) initialises the weights strictly; its
    number of classes must equal ``len(meta.objects)``.
    """

    dcfg = dataclasses.replace(cfg.model.detr, num_classes=len(meta.objects))
    detr = build_detr(dcfg, train_backbone=train_backbone)
    if dcfg.checkpoint:
        load_detr_weights(detr, dcfg.checkpoint)
    matcher = HungarianMatcher(dcfg.set_cost_class, dcfg.set_cost_bbox, dcfg.set_cost_giou)
    criterion = SetCriterion(dcfg.num_classes, matcher, dcfg.eos_coef, dcfg.ce_loss_coef, dcfg.bbox_loss_coef,
                             dcfg.giou_loss_coef, dcfg.k_one2many, dcfg.lambda_one2many)
    return DETRDetector(detr, criterion, meta, dense_loss_coef=dcfg.dense_loss_coef)
