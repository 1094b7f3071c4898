"""Holistic semantic-spatial feature learning of SG2HOI+ (paper Section III-A, Eq. (1)-(3)).

Pipeline on the backbone's C5 map ``V [B, C, h, w]``:

1. 1x1 channel reduction ``C -> C'`` (:class:`SemanticSpatialAggregation.reduce`).
2. BBSeg ``FCN_seg``: five 3x3 conv + BN + ReLU layers and a 1x1 classifier to ``No + 1``
   channels (Section IV-D), trained with per-channel BCE against box-filled masks (Eq. 1-2).
3. The holistic semantic-spatial map ``E_s``: at every position the text embedding of the
   predicted class ("A photo of a [class]"), the 0 vector for background.
4. Feature aggregation Eq. (3): ``f_agg = CONCAT(W_v V, W_s E_s)``, ``d = 2 C'``.

Class index convention: channels ``0..No-1`` are object classes, channel ``No`` is background
(the DETR "no-object" position).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...errors import ConfigError


def box_seg_targets(boxes: Tensor, labels: Tensor, num_classes: int, feat_size: Tuple[int, int],
                    stride: Tuple[float, float]) -> Tensor:
    """Bounding-box segmentation ground truth ``y`` of Eq. (2), downsampled to the feature map.

    Every pixel inside an annotated box belongs to the box's class (several classes may overlap);
    a pixel in no box is background. Downsampling samples the box-filled mask at the centre of each
    feature cell: cell ``(i, j)`` covers pixels ``[j*sx, (j+1)*sx) x [i*sy, (i+1)*sy)`` and takes the
    classes of the boxes containing ``((j + 0.5) sx, (i + 0.5) sy)``.

    Args:
        boxes: ``[N, 4]`` xyxy pixels of the (transformed, unpadded) image.
        labels: ``[N]`` int64 in ``[0, num_classes)``.
        num_classes: ``No`` (background is channel ``No``).
        feat_size: ``(h, w)`` of the feature map.
        stride: ``(sy, sx)`` pixels per feature cell (padded image size / feature size).

    Returns:
        ``[No + 1, h, w]`` float {0, 1} targets.
    """
    h, w = feat_size
    sy, sx = stride
    dev = boxes.device
    cy = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) * sy
    cx = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) * sx
    y = torch.zeros(num_classes + 1, h, w, device=dev)
    if len(boxes):
        b = boxes.float()
        inside_y = (cy[None, :] >= b[:, 1:2]) & (cy[None, :] < b[:, 3:4])          # [N, h]
        inside_x = (cx[None, :] >= b[:, 0:1]) & (cx[None, :] < b[:, 2:3])          # [N, w]
        inside = (inside_y[:, :, None] & inside_x[:, None, :]).float()             # [N, h, w]
        y.index_add_(0, labels.long(), inside)
        y = y.clamp_(max=1.0)
    y[num_classes] = (y[:num_classes].sum(0) == 0).float()
    return y


def bbseg_loss(seg_logits: Tensor, seg_targets: Tensor, valid: Tensor) -> Tensor:
    """Eq. (2): sum over the ``No + 1`` channels of the BCE of each channel map.

    Each channel's BCE is averaged over the valid (non-padding) positions of an image; the sum over
    channels follows Eq. (2) literally; images are averaged (so the loss does not grow with batch size).

    Args:
        seg_logits: ``[B, No+1, h, w]``. seg_targets: ``[B, No+1, h, w]``. valid: ``[B, h, w]`` bool.

    Returns:
        scalar loss.
    """
    bce = F.binary_cross_entropy_with_logits(seg_logits, seg_targets, reduction="none")   # [B, K, h, w]
    v = valid[:, None].float()
    per_channel = (bce * v).sum((2, 3)) / v.sum((2, 3)).clamp(min=1.0)                   # [B, K]
    return per_channel.sum(1).mean()


class BBSeg(nn.Module):
    """``FCN_seg`` of Eq. (1): five 3x3 conv + BN + ReLU layers and a 1x1 classifier.

    Args:
        in_dim: C'. num_classes: No (the classifier has No + 1 outputs). num_convs: 5 (Section IV-D).
    """

    def __init__(self, in_dim: int, num_classes: int, num_convs: int = 5):
        super().__init__()
        layers: List[nn.Module] = []
        for _ in range(num_convs):
            layers += [nn.Conv2d(in_dim, in_dim, 3, padding=1, bias=False), nn.BatchNorm2d(in_dim),
                       nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(in_dim, num_classes + 1, 1)

    def forward(self, v: Tensor) -> Tensor:
        """``v [B, C', h, w]`` -> segmentation logits ``s [B, No+1, h, w]`` (Eq. 1)."""
        return self.classifier(self.convs(v))


def semantic_map(seg_logits: Tensor, class_embed: Tensor, assign: str = "argmax") -> Tensor:
    """Holistic semantic-spatial map ``E_s`` (Section III-A, "Semantics embedding").

    Args:
        seg_logits: ``[B, No+1, h, w]``; channel ``No`` is background.
        class_embed: ``[No, D_t]`` class text embeddings; background uses the 0 vector.
        assign: ``argmax``: each position takes the embedding of its highest-scoring channel (the
            paper's "semantic map that indicates the object category of each position");
            ``soft``: the sigmoid scores, normalised over channels, weight the embeddings.

    Returns:
        ``[B, D_t, h, w]``.
    """
    table = torch.cat([class_embed, class_embed.new_zeros(1, class_embed.shape[1])], 0)   # [No+1, D_t]
    if assign == "argmax":
        idx = seg_logits.argmax(1)                                                        # [B, h, w]
        return table[idx].permute(0, 3, 1, 2)
    if assign == "soft":
        p = seg_logits.sigmoid()
        p = p / p.sum(1, keepdim=True).clamp(min=1e-6)
        return torch.einsum("bkhw,kd->bdhw", p, table)
    raise ConfigError(f"model.sg2hoi.hss_assign: unknown value '{assign}' (choose argmax | soft)")


class SemanticSpatialAggregation(nn.Module):
    """Channel reduction, BBSeg, semantic map and Eq. (3) aggregation.

    Args:
        in_channels: C of the backbone map. seg_dim: C'. class_embed: ``[No, D_t]`` text embeddings
            of the segmentation classes (stored as a buffer, so inference needs no text model).
        use_hss: False for the -HSS ablation: no BBSeg, no map; ``W_v`` then maps ``C' -> 2C'`` so
            the encoder width ``d`` is unchanged.
        assign: ``argmax | soft`` (see :func:`semantic_map`).
        detr_proj: add ``P(C5)`` to ``f_agg``, a ``C -> 2C'`` 1x1 projection that DETR's
            ``input_proj`` initialises (``model.sg2hoi.detr_proj``; not in the paper). ``W_v`` and
            ``W_s`` then start at zero, so the encoder first sees exactly the DETR tokens its
            DETR-initialised layers expect and Eq. (3)'s terms grow in during training.
        zero_init: ``W_v`` and ``W_s`` start at zero without ``detr_proj`` (the deformable base adds
            ``f_agg`` to the detector's own projection of the level).
    """

    def __init__(self, in_channels: int, seg_dim: int, class_embed: Optional[Tensor], use_hss: bool = True,
                 assign: str = "argmax", num_convs: int = 5, detr_proj: bool = False, zero_init: bool = False):
        super().__init__()
        self.use_hss = use_hss
        self.assign = assign
        self.reduce = nn.Conv2d(in_channels, seg_dim, 1)
        if use_hss:
            if class_embed is None:
                raise ConfigError("model.sg2hoi.hss: the semantic-spatial map needs class text embeddings")
            self.num_classes = class_embed.shape[0]
            self.register_buffer("class_embed", class_embed.detach().float().clone())
            self.bbseg = BBSeg(seg_dim, self.num_classes, num_convs)
            self.w_v = nn.Conv2d(seg_dim, seg_dim, 1)                          # W_v of Eq. (3)
            self.w_s = nn.Conv2d(class_embed.shape[1], seg_dim, 1)             # W_s of Eq. (3)
        else:
            self.num_classes = 0
            self.w_v = nn.Conv2d(seg_dim, 2 * seg_dim, 1)
        self.out_dim = 2 * seg_dim
        self.detr_proj = nn.Conv2d(in_channels, 2 * seg_dim, 1) if detr_proj else None
        if detr_proj or zero_init:
            for m in (self.w_v, getattr(self, "w_s", None)):
                if m is not None:
                    nn.init.zeros_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, feats: Tensor) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Args:
            feats: ``[B, C, h, w]`` backbone C5.

        Returns:
            ``v [B, C', h, w]`` (reduced features), ``f_agg [B, 2C', h, w]`` (Eq. 3) and the
            segmentation logits ``[B, No+1, h, w]`` (None under -HSS).
        """
        v = self.reduce(feats)
        extra = self.detr_proj(feats) if self.detr_proj is not None else 0.0
        if not self.use_hss:
            return v, self.w_v(v) + extra, None
        seg = self.bbseg(v)                                                    # Eq. (1)
        e_s = semantic_map(seg, self.class_embed, self.assign)
        f_agg = torch.cat([self.w_v(v), self.w_s(e_s)], 1) + extra            # Eq. (3)
        return v, f_agg, seg


def union_vocabulary(*name_lists: Optional[Sequence[str]]) -> Tuple[List[str], List[Tensor]]:
    """Merge object vocabularies of the SGG and HOI datasets for one BBSeg classifier.

    Names are matched after lower-casing and replacing ``_`` by a space ("dining_table" = "dining
    table"). Returns the union (first-seen order) and, per input list, an int64 map from the
    dataset's class index to the union index (empty tensor for a None list).
    """
    union: List[str] = []
    where = {}
    maps: List[Tensor] = []
    for names in name_lists:
        if names is None:
            maps.append(torch.zeros(0, dtype=torch.int64))
            continue
        m = []
        for n in names:
            key = n.replace("_", " ").strip().lower()
            if key not in where:
                where[key] = len(union)
                union.append(key)
            m.append(where[key])
        maps.append(torch.tensor(m, dtype=torch.int64))
    return union, maps
