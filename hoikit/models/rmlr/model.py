"""UPT / RmLR: a frozen DETR, UPT's interaction head, and RmLR's IRE and cross-modal learning.

With ``use_ire=False`` and no knowledge transfer the model *is* UPT (module and key names of
fredzzhang/upt: ``detector.*`` + ``interaction_head.*``). RmLR adds (Sec. 3.2-3.5):

    m = IRE(C5, pair boxes)                        Eq. (4)-(5)   ``ire``
    g = FC(GAP(C5))                                Eq. (6)       ``ire.fc_g``
    H = FC(cat(g, s~, m))                          Eq. (9)       ``fusion``   (s~ = UPT pair token)
    O = F_IR(H);  P = FFN_o(O)                     Eq. (20)      ``interaction_head.comp_layer`` / ``box_pair_predictor``
    L = l_hoi L_hoi + l_s^m L_s^m + l_w^m L_w^m + l_s^a L_s^a + l_w^a L_w^a     Eq. (22)

The text branch (text encoder, ``cml_ire`` / ``cml_irm``) runs only in training; the text encoder
is created on the first training step that needs it, never at inference.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import ConfigError, DataError, TrainingError
from ...losses.focal import interaction_focal_loss
from ...structures import HOIPrediction
from ..deformable_detr import DeformableDETR
from ..detectors import num_detector_classes
from .cross_modal import CrossModalBranch
from .detector_cache import DetectorCache, detect_per_image
from .interaction_head import InteractionHead
from .pairs import (associate_with_ground_truth, detr_boxes_and_scores, hoi_targets, oracle_proposals,
                    select_detections)
from .relation_encoder import InteractiveRelationEncoder
from .text_knowledge import encode_knowledge, image_sentences


class RmLR(nn.Module):
    """UPT (``use_ire=False``, no transfer) or RmLR.

    An inference build (``build_rmlr(..., inference=True)``) has no ``cml_ire`` / ``cml_irm``:
    they are training-only (Sec. 3.4), and their checkpoint keys (prefixes :attr:`TRAINING_ONLY`)
    are dropped on loading.

    Args:
        detector: frozen DETR following docs/architecture.md (``forward(images) -> dict``).
        interaction_head: :class:`InteractionHead`.
        meta: :class:`~hoikit.data.metadata.DatasetMeta` (object and verb names for the text).
        human_idx: dataset object id of "person" (``meta.person_label``).
        ire: IRE module, or None (plain model / "w/o Rm").
        fusion: Eq. (9) FC ``(2*ire_dim + R) -> R``; present iff ``ire`` is.
        cml_ire / cml_irm: cross-modal branches for IRE / IRM knowledge transfer, or None.
        transfer: which alignment losses are on: subset of {"s_a", "w_a", "s_m", "w_m"}.
        text_loader: zero-argument callable returning the frozen text encoder (called lazily).
        weights: Eq. (22) loss weights ``{"hoi", "s_m", "w_m", "s_a", "w_a"}``.
        word_context: ``joint`` | ``separate`` (see text_knowledge.py).
        language_reasoning: also classify the language-enhanced IRM tokens in training.
        alpha, gamma: focal loss (Eq. 21). prior_power: ``(train, test)`` exponents p.
        score_thresh, nms_thresh, min_instances, max_instances, fg_iou_thresh: UPT pairing.
        detector_to_object: int64 ``[C_det]`` dataset object id of each detector class (-1 = none;
            :mod:`~hoikit.models.rmlr.detector_classes`); None = identity. Every label after DETR's
            post-processing is a dataset object id: person detection, pairing, the object-valid verb
            prior and the output labels all use it.
        detections: ``detr`` (DETR's detections, the paper) | ``oracle`` (each image's ground-truth
            entities with score 1 and the tokens of their Hungarian-matched queries; analysis only,
            :func:`~hoikit.models.rmlr.pairs.oracle_proposals`). ``oracle`` needs targets in eval too
            (:attr:`needs_targets`).
        oracle_cost: ``(cost_bbox, cost_giou)`` of the oracle's query matching (DETR's matcher weights).
        pooling: E_cls of a sub-sentence, ``cls`` | ``mean`` (``model.rmlr.text.pooling`` resolved).
        detector_cache: None (the detector runs on the padded batch, as UPT) or a
            :class:`~hoikit.models.rmlr.detector_cache.DetectorCache`: the detector runs one image at a
            time and its outputs are cached by image bytes (``model.rmlr.detector_cache``). Not part
            of the state dict; cleared by ``load_state_dict`` and ``.to()`` / ``.half()``.
    """

    #: state-dict prefixes of modules that only training uses (cross-modal learning, Sec. 3.4)
    TRAINING_ONLY = ("cml_ire.", "cml_irm.")

    def __init__(self, detector: nn.Module, interaction_head: InteractionHead, meta, human_idx: int,
                 ire: Optional[InteractiveRelationEncoder] = None, fusion: Optional[nn.Module] = None,
                 cml_ire: Optional[CrossModalBranch] = None, cml_irm: Optional[CrossModalBranch] = None,
                 transfer: Sequence[str] = (), text_loader: Optional[Callable] = None,
                 weights: Optional[Dict[str, float]] = None, word_context: str = "joint",
                 language_reasoning: bool = False, alpha: float = 0.5, gamma: float = 0.2,
                 prior_power=(1.0, 2.8), score_thresh: float = 0.2, nms_thresh: float = 0.5,
                 min_instances: int = 3, max_instances: int = 15, fg_iou_thresh: float = 0.5,
                 detector_to_object: Optional[Tensor] = None, detections: str = "detr",
                 oracle_cost=(5.0, 2.0), pooling: str = "cls", detector_cache: Optional[DetectorCache] = None):
        super().__init__()
        if detections not in ("detr", "oracle"):
            raise ConfigError(f"model.rmlr.detections: '{detections}' is not one of detr | oracle")
        self.detector = detector
        self.interaction_head = interaction_head
        if ire is not None:
            self.ire = ire
            self.fusion = fusion
        if cml_ire is not None:
            self.cml_ire = cml_ire
        if cml_irm is not None:
            self.cml_irm = cml_irm
        self.meta = meta
        self.human_idx = human_idx
        self.transfer = frozenset(transfer)
        self.text_loader = text_loader
        self._text_encoder = None        # plain attribute, never part of the state dict
        self.weights = {**dict(hoi=1.0, s_m=1.0, w_m=1.0, s_a=1.0, w_a=1.0), **(weights or {})}
        self.word_context = word_context
        self.pooling = pooling
        self.language_reasoning = language_reasoning
        self.alpha, self.gamma = alpha, gamma
        self.prior_power = tuple(prior_power)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.min_instances, self.max_instances = min_instances, max_instances
        self.fg_iou_thresh = fg_iou_thresh
        self.detections = detections
        #: the forward needs ground-truth targets in eval mode too (oracle detections)
        self.needs_targets = detections == "oracle"
        self.oracle_cost = tuple(oracle_cost)
        self._warned_oracle = False
        self.detector_cache = detector_cache   # plain attribute: never saved, refills after a resume
        if detector_to_object is None:
            detector_to_object = torch.arange(num_detector_classes(detector))
        # not persistent: the table follows the config, checkpoints keep UPT's exact keys
        self.register_buffer("detector_to_object", torch.as_tensor(detector_to_object, dtype=torch.int64),
                             persistent=False)

    # ------------------------------------------------------------------ helpers
    @property
    def text_encoder(self):
        """The frozen text encoder, created on first use (training only)."""
        if self._text_encoder is None:
            if self.text_loader is None:
                raise DataError("RmLR knowledge transfer needs a text encoder but none was configured")
            enc = self.text_loader()
            enc.to(next(self.interaction_head.parameters()).device)
            self.__dict__["_text_encoder"] = enc   # bypass nn.Module registration: not in the state dict
        return self._text_encoder

    def train(self, mode: bool = True):
        super().train(mode)
        self.detector.eval()             # frozen detector: no dropout
        return self

    def _apply(self, fn, *args, **kwargs):
        # a device / dtype change changes the detector's rounding: cached rows would be stale
        if self.detector_cache is not None:
            self.detector_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``; also empties the detector cache (new detector weights)."""
        if self.detector_cache is not None:
            self.detector_cache.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _detect(self, images: List[Tensor]) -> dict:
        """The frozen detector's outputs for a batch (docs/architecture.md): on the padded batch, or
        with a detector cache one image at a time in the same layout plus ``global_features [B, Cb]``
        (:func:`~hoikit.models.rmlr.detector_cache.detect_per_image`)."""
        if self.detector_cache is None:
            with torch.no_grad():
                return self.detector(images)
        return detect_per_image(self.detector, images, self.detector_cache, keep_pos=hasattr(self, "ire"))

    def _proposals(self, out: dict, b: int, size, targets: Optional[List[dict]]):
        """Proposals of batch image ``b``: DETR's kept detections, or its ground truth (oracle)."""
        hs = out["hs"][-1][b]
        if self.detections == "oracle":
            t = targets[b]
            boxes, labels = t["boxes"].reshape(-1, 4), t["labels"].reshape(-1)
            q = len(out["pred_boxes"][b])
            if len(boxes) > q:
                if not self._warned_oracle:
                    warnings.warn(f"model.rmlr.detections=oracle: an image has {len(boxes)} ground-truth entities "
                                  f"but DETR has {q} queries; keeping the first {q} (warned once)", RuntimeWarning)
                    self._warned_oracle = True
                boxes, labels = boxes[:q], labels[:q]
            return oracle_proposals(boxes, labels, out["pred_boxes"][b], hs, size, self.human_idx, *self.oracle_cost)
        scores, labels, boxes = detr_boxes_and_scores(out["pred_logits"][b], out["pred_boxes"][b], size,
                                                      sigmoid=isinstance(self.detector, DeformableDETR))
        scores, labels, boxes, hs = map_detector_labels(self.detector_to_object, scores, labels, boxes, hs)
        return select_detections(boxes, scores, labels, hs, self.human_idx, self.score_thresh,
                                 self.nms_thresh, self.min_instances, self.max_instances)

    def _pairs(self, images: List[Tensor], targets: Optional[List[dict]] = None):
        """Run DETR + pairing + reasoning. Returns per-image dicts with logits and everything else.

        ``targets`` (per image ``boxes [N, 4]``, ``labels [N]``) are read only with oracle detections.
        """
        out = self._detect(images)
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        feats, fmask = out["features"], out["mask"]
        global_upt = out.get("global_features")      # per-image runs: each image's own map
        if global_upt is None:
            global_upt = feats.mean(dim=(2, 3))      # UPT: AdaptiveAvgPool2d over the padded map
        has_ire = hasattr(self, "ire")
        if has_ire:
            valid = ~fmask
            x_e = self.ire.encode(feats, fmask, out.get("pos"))                      # Eq. (4)
            g = self.ire.global_context(feats, valid)                                # Eq. (6)
            stride = (self.detector.backbone.stride,) * 2                            # (s_y, s_x) of C5
        p = self.prior_power[0] if self.training else self.prior_power[1]
        results = []
        for b, size in enumerate(sizes):
            props = self._proposals(out, b, size, targets)
            tokens, x, y, _ = self.interaction_head.pair_tokens(props.hidden_states, props.boxes, props.labels,
                                                                global_upt[b], size)
            m = None
            if has_ire and len(x):
                m = self.ire.relation_features(x_e[b], valid[b], props.boxes[x], props.boxes[y], stride)  # Eq. (5)
                h = self.fusion(torch.cat([g[b].expand(len(x), -1), tokens, m], dim=1))          # Eq. (9)
            else:
                h = tokens
            o, _ = self.interaction_head.reason(h)                                           # F_IR
            logits = self.interaction_head.box_pair_predictor(o)                             # Eq. (20)
            prior = self.interaction_head.prior(x, y, props.scores, props.labels, p)
            results.append(dict(props=props, x=x, y=y, m=m, o=o, logits=logits, prior=prior, size=size))
        return results

    # ------------------------------------------------------------------ forward
    def forward(self, images: List[Tensor], targets: Optional[List[dict]] = None):
        """Args:
            images: list of ``[3, H_i, W_i]`` normalised images.
            targets: per image ``boxes [N, 4]`` (pixels of the transformed image), ``labels [N]``,
                ``hois [K, 3]``; required in training, and in eval with oracle detections.

        Returns:
            training: dict of weighted losses ``loss_hoi`` (+ ``loss_s_m``, ``loss_w_m``, ``loss_s_a``,
            ``loss_w_a`` when on). eval: per image dict ``boxes [N, 4]``, ``scores [N]``, ``labels [N]``,
            ``pairs [P, 2]``, ``verb_scores [P, K]`` (sigmoid(logit) * s_h^p * s_o^p on valid verbs,
            0 elsewhere), ``size`` (W, H).
        """
        if self.training and targets is None:
            raise DataError("RmLR.forward: targets are required in training mode")
        if self.needs_targets and (targets is None or len(targets) != len(images)):
            raise DataError("RmLR.forward: model.rmlr.detections=oracle needs one ground-truth target "
                            "(boxes, labels) per image, in eval too")
        res = self._pairs(images, targets)
        if not self.training:
            return [dict(boxes=r["props"].boxes, scores=r["props"].scores, labels=r["props"].labels,
                         pairs=torch.stack([r["x"], r["y"]], 1),
                         verb_scores=torch.sigmoid(r["logits"]) * r["prior"].prod(0),
                         size=torch.tensor([r["size"][1], r["size"][0]])) for r in res]
        return self._losses(res, targets)

    def _losses(self, res: list, targets: List[dict]) -> Dict[str, Tensor]:
        k = self.interaction_head.num_verbs
        labels, matches = [], []
        for r, t in zip(res, targets):
            gh, go, gv = hoi_targets(t)
            bx = r["props"].boxes
            lb, match = associate_with_ground_truth(bx[r["x"]], bx[r["y"]], gh.to(bx), go.to(bx), gv.to(bx.device),
                                                    k, self.fg_iou_thresh)
            labels.append(lb)
            matches.append(match)
        logits = torch.cat([r["logits"] for r in res])
        prior = torch.cat([r["prior"].prod(0) for r in res])
        losses = {"loss_hoi": self.weights["hoi"] * interaction_focal_loss(
            logits, prior, torch.cat(labels), self.alpha, self.gamma)}               # Eq. (21)
        if not self.transfer:
            return losses
        missing = [n for n, terms in (("cml_ire", {"s_a", "w_a"}), ("cml_irm", {"s_m", "w_m"}))
                   if terms & self.transfer and not hasattr(self, n)]
        if missing:
            raise TrainingError(f"RmLR was built for inference (no {missing[0]}): knowledge transfer "
                                f"{sorted(self.transfer)} needs build_rmlr(..., inference=False)")
        rows = [torch.nonzero(mt)[:, 0] for mt in matches]                          # associated pairs
        text_rows = [torch.nonzero(mt)[:, 1] for mt in matches]                     # their sub-sentences
        extra = getattr(self.meta, "extra", None) or {}
        sentences = [image_sentences(t["hois"].reshape(-1, 3), t["labels"], self.meta.objects, self.meta.verbs,
                                     self.meta.person_label, extra.get("phrases"), extra.get("plural_objects", ()))
                     for t in targets]
        texts = encode_knowledge(self.text_encoder, sentences, self.word_context, self.pooling)  # Eq. (7)-(8)
        if "s_a" in self.transfer or "w_a" in self.transfer:
            ms = [r["m"] if r["m"] is not None else r["o"].new_zeros(0, 1) for r in res]
            a = self.cml_ire(ms, rows, text_rows, texts, "w_a" in self.transfer, "s_a" in self.transfer)
            if "w_a" in self.transfer:
                losses["loss_w_a"] = self.weights["w_a"] * a["word"]                  # Eq. (17)
            if "s_a" in self.transfer:
                losses["loss_s_a"] = self.weights["s_a"] * a["sentence"]              # Eq. (19)
        if "s_m" in self.transfer or "w_m" in self.transfer:
            mo = self.cml_irm([r["o"] for r in res], rows, text_rows, texts, "w_m" in self.transfer,
                              "s_m" in self.transfer)
            if "w_m" in self.transfer:
                losses["loss_w_m"] = self.weights["w_m"] * mo["word"]                 # Eq. (16)
            if "s_m" in self.transfer:
                losses["loss_s_m"] = self.weights["s_m"] * mo["sentence"]             # Eq. (18)
            if self.language_reasoning and "w_m" in self.transfer:
                losses["loss_hoi_lang"] = self.weights["hoi"] * self._language_loss(res, labels, rows, mo["aligned"])
        return losses

    def _language_loss(self, res, labels, rows, aligned) -> Tensor:
        """Focal loss of the classifier on the language-enhanced IRM tokens O^_a (switch
        ``language_reasoning``); zero when no pair is associated."""
        lg, pr, lb = [], [], []
        for r, l, rw, al in zip(res, labels, rows, aligned):
            if al is None:
                continue
            _, enhanced = al
            lg.append(self.interaction_head.box_pair_predictor(enhanced))
            pr.append(r["prior"].prod(0)[rw])
            lb.append(l[rw])
        if not lg:
            return sum(p.sum() for p in self.interaction_head.box_pair_predictor.parameters()) * 0.0
        return interaction_focal_loss(torch.cat(lg), torch.cat(pr), torch.cat(lb), self.alpha, self.gamma)

    # ------------------------------------------------------------------ postprocess
    def postprocess(self, outputs: List[dict], targets_or_sizes) -> List[HOIPrediction]:
        """Eval outputs -> :class:`HOIPrediction` in original-image pixels.

        Args:
            outputs: the eval output of :meth:`forward`.
            targets_or_sizes: per image a target dict with ``orig_size`` (W, H), or a (W, H) pair.
        """
        preds = []
        for o, t in zip(outputs, targets_or_sizes):
            orig = t["orig_size"] if isinstance(t, dict) else t
            ow, oh = (float(v) for v in torch.as_tensor(orig).reshape(2))
            w, h = (float(v) for v in o["size"])
            scale = np.array([ow / w, oh / h, ow / w, oh / h], dtype=np.float32)
            preds.append(HOIPrediction(
                boxes=o["boxes"].detach().cpu().numpy().astype(np.float32) * scale,
                labels=o["labels"].detach().cpu().numpy().astype(np.int64),
                box_scores=o["scores"].detach().cpu().numpy().astype(np.float32),
                pairs=o["pairs"].detach().cpu().numpy().astype(np.int64).reshape(-1, 2),
                verb_scores=o["verb_scores"].detach().cpu().numpy().astype(np.float32)))
        return preds


def map_detector_labels(table: Tensor, scores: Tensor, labels: Tensor, boxes: Tensor, hidden: Tensor):
    """Detector classes -> dataset object ids; queries whose class has no dataset object are dropped.

    Args:
        table: int64 ``[C_det]`` (-1 = no dataset object); scores ``[Q]``; labels ``[Q]`` detector
            classes; boxes ``[Q, 4]``; hidden ``[Q, D]``.

    Returns:
        ``(scores [Q'], labels [Q'] dataset ids, boxes [Q', 4], hidden [Q', D])``. The mapping is
        injective on kept classes, so class-wise NMS groups the same boxes as on detector classes.
    """
    mapped = table[labels]
    keep = mapped >= 0
    if bool(keep.all()):
        return scores, mapped, boxes, hidden
    return scores[keep], mapped[keep], boxes[keep], hidden[keep]

