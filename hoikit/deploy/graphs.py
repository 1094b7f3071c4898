"""The modules that ``torch.onnx`` traces: each wraps a loaded hoikit model and runs its inference
path for ONE unpadded image with tensor-only control flow.

* :class:`DETRGraph` (``model.arch = detr``): ``image [1, 3, H, W] -> boxes [Q, 4], scores [Q], labels [Q]``
  (DETR's post-processing, boxes in pixels of the input).
* :class:`DeformableDETRGraph` (``model.arch = detr``, ``model.detr.type = deformable``): ``image ->
  boxes [K, 4], scores [K], labels [K]`` (the official top-k over queries x classes, then the optional
  class-wise NMS of :class:`~hoikit.models.deformable_detr.DeformableDETRDetector` in traceable ops)
  plus the raw ``pred_logits [Q, C]`` and ``pred_boxes [Q, 4]``.
* :class:`ProposalGraph` (UPT / RmLR, first graph): DETR or Deformable DETR + UPT's proposal filter
  (:func:`~hoikit.deploy.traceable.select_detections_indices`) -> the ``N`` kept detections, their
  DETR tokens and the per-image features the interaction head reads.
* :class:`InteractionGraph` (UPT / RmLR, second graph): pair construction + interaction head for the
  ``N`` proposals -> ``pairs [P, 2]``, ``verb_scores [P, K]``.

Two graphs because the head only runs when the image has a human and at least two boxes: the
runner checks that between them (docs/onnx.md, "glue"). Both are dynamic in ``H, W``, ``N`` and ``P``.

Deformable DETR's level sizes ``(H_l, W_l)``, its two-stage proposal count ``min(Q, S)`` and the top-k
``min(k, Q * C)`` are traced sizes, so one graph serves every input size (hoikit/models/deformable_*.py
keep them as tensors under tracing). The greedy-NMS loops run a fixed number of rounds, the largest
candidate count (``rounds``), which is exact for any smaller count (:func:`greedy_nms_keep`).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from ..models.deformable_detr import DeformableDETR
from ..models.deformable_transformer import at_most
from ..ops import box_cxcywh_to_xyxy
from .traceable import batched_nms_sorted, select_detections_indices


def _pixel_scale(images: Tensor) -> Tensor:
    """``[4]`` float = (W, H, W, H) of a ``[1, 3, H, W]`` input. Under ONNX tracing the shape entries
    are traced 0-dim tensors, so the scale follows the input size (a dynamic axis)."""
    h, w = (torch.as_tensor(s, dtype=torch.float32) for s in images.shape[-2:])
    return torch.stack([w, h, w, h])


class DETRGraph(nn.Module):
    """DETR + :func:`~hoikit.models.detr.postprocess_detections` for one image.

    Args:
        detr: a :class:`~hoikit.models.detr.DETR` in eval mode.
    """

    def __init__(self, detr: nn.Module):
        super().__init__()
        self.detr = detr

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``images [1, 3, H, W]`` normalised -> ``boxes [Q, 4]`` xyxy pixels, ``scores [Q]``, ``labels [Q]``."""
        out = self.detr(images)
        prob = out["pred_logits"][0].softmax(-1)[:, :-1]
        scores, labels = prob.max(-1)
        boxes = box_cxcywh_to_xyxy(out["pred_boxes"][0]) * _pixel_scale(images)
        return boxes, scores, labels


class DeformableDETRGraph(nn.Module):
    """Deformable DETR + :class:`~hoikit.models.deformable_detr.DeformableDETRDetector`'s eval
    post-processing for one image: :func:`~hoikit.models.deformable_detr.postprocess_topk` and, when
    ``nms_thresh > 0``, class-wise NMS (:func:`~hoikit.deploy.traceable.batched_nms_sorted`, in the graph).

    Args:
        detector: an eval-mode :class:`~hoikit.models.deformable_detr.DeformableDETRDetector`.
    """

    OUTPUTS = ["boxes", "scores", "labels", "pred_logits", "pred_boxes"]

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detr = detector.detr
        self.max_detections = int(detector.max_detections)
        self.nms_thresh = float(detector.nms_thresh)

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        """``images [1, 3, H, W]`` -> ``boxes [K, 4]`` xyxy pixels, ``scores [K]``, ``labels [K]`` by
        decreasing score (K <= ``max_detections``; fewer after NMS), ``pred_logits [Q, C]`` (sigmoid
        logits) and ``pred_boxes [Q, 4]`` (normalised cxcywh) before post-processing."""
        out = self.detr(images)
        logits, cxcywh = out["pred_logits"][0], out["pred_boxes"][0]
        prob = logits.sigmoid()
        q, c = prob.shape                        # q is traced (two-stage: min(num_queries, S))
        scores, idx = torch.topk(prob.reshape(-1), at_most(self.max_detections, q * c))
        queries, labels = idx // c, idx % c
        boxes = (box_cxcywh_to_xyxy(cxcywh) * _pixel_scale(images))[queries]
        if self.nms_thresh > 0:
            valid = torch.ones_like(scores, dtype=torch.bool)
            order, keep = batched_nms_sorted(boxes, scores, labels, valid, self.nms_thresh,
                                             rounds=self.max_detections)
            sel = order[torch.nonzero(keep)[:, 0]]
            boxes, scores, labels = boxes[sel], scores[sel], labels[sel]
        return boxes, scores, labels, logits, cxcywh


class ProposalGraph(nn.Module):
    """First UPT / RmLR graph: DETR, label mapping and the proposal filter (``RmLR._proposals``).

    Args:
        model: an eval-mode :class:`~hoikit.models.rmlr.model.RmLR` with ``detections='detr'``; its
            detector is DETR (softmax scores) or Deformable DETR (sigmoid scores, as
            :func:`~hoikit.models.rmlr.pairs.detr_boxes_and_scores`).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.has_ire = hasattr(model, "ire")
        self.sigmoid = isinstance(model.detector, DeformableDETR)
        self.rounds = int(model.detector.num_queries)    # most candidates the NMS can see

    def output_names(self) -> list:
        names = ["boxes", "scores", "labels", "hidden", "global_features"]
        return names + (["encoded", "context"] if self.has_ire else [])

    def forward(self, images: Tensor):
        """``images [1, 3, H, W]`` -> ``boxes [N, 4]`` (pixels), ``scores [N]``, ``labels [N]`` (dataset ids,
        humans first), ``hidden [N, D]``, ``global_features [Cb]`` (UPT's pooled C5); with IRE also
        ``encoded [d, h, w]`` (Eq. 4, X_e) and ``context [R/2]`` (Eq. 6, g)."""
        m = self.model
        out = m.detector(images)
        if self.sigmoid:
            scores, det_labels = out["pred_logits"][0].sigmoid().max(-1)
        else:
            scores, det_labels = out["pred_logits"][0].softmax(-1)[:, :-1].max(-1)
        boxes = box_cxcywh_to_xyxy(out["pred_boxes"][0]) * _pixel_scale(images)
        mapped = m.detector_to_object[det_labels]
        valid = mapped >= 0
        labels = mapped.clamp(min=0)
        sel = select_detections_indices(boxes, scores, labels, valid, m.human_idx, m.score_thresh, m.nms_thresh,
                                        m.min_instances, m.max_instances, rounds=self.rounds)
        feats = out["features"]
        res = [boxes[sel], scores[sel], labels[sel], out["hs"][-1][0][sel], feats.mean(dim=(2, 3))[0]]
        if self.has_ire:
            valid_map = ~out["mask"]
            res += [m.ire.encode(feats, out["mask"], out.get("pos"))[0],                  # Eq. (4)
                    m.ire.global_context(feats, valid_map)[0]]                          # Eq. (6)
        return tuple(res)


class InteractionGraph(nn.Module):
    """Second UPT / RmLR graph: pairs and verb scores of the proposals (``RmLR._pairs`` per image).

    Only valid for proposals with at least one human and two boxes (the runner's check).

    Args:
        model: the same eval-mode RmLR.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.has_ire = hasattr(model, "ire")

    def input_names(self) -> list:
        names = ["boxes", "scores", "labels", "hidden", "global_features", "image_hw"]
        return names + (["encoded", "context"] if self.has_ire else [])

    def forward(self, boxes: Tensor, scores: Tensor, labels: Tensor, hidden: Tensor, global_features: Tensor,
                image_hw: Tensor, encoded: Tensor = None, context: Tensor = None):
        """Proposals of :class:`ProposalGraph` and ``image_hw [2]`` float (H, W) -> ``pairs [P, 2]`` int64
        (indices into the proposals, human first) and ``verb_scores [P, K]`` = sigmoid(logits) * s_h^p * s_o^p."""
        m, head = self.model, self.model.interaction_head
        tokens, x, y, _ = head.pair_tokens_nonempty(hidden, boxes, labels, global_features, image_hw)
        if self.has_ire:
            valid = torch.ones_like(encoded[0], dtype=torch.bool)                    # one unpadded image
            stride = (float(m.detector.backbone.stride),) * 2                         # (s_y, s_x) of C5
            rel = m.ire.relation_features(encoded, valid, boxes[x], boxes[y], stride)  # Eq. (5)
            tokens = m.fusion(torch.cat([context[None].expand(tokens.shape[0], -1), tokens, rel], dim=1))  # Eq. (9)
        o, _ = head.comp_layer(tokens)                                              # F_IR
        logits = head.box_pair_predictor(o)                                         # Eq. (20)
        prior = head.prior(x, y, scores, labels, m.prior_power[1])
        return torch.stack([x, y], 1), torch.sigmoid(logits) * prior.prod(0)
