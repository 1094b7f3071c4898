"""SG2HOI+: one-stage joint scene-graph generation and HOI detection (paper Fig. 1, Section III).

images -> backbone -> channel reduction + BBSeg + semantic map + Eq. (3) -> encoder with [CLS]
(Eq. 4) + VL distillation (Eq. 5) -> relation decoder (Eq. 6) -> R2ITrans (Eq. 7), feature and
query transformation -> HOI decoder (Eq. 8). Losses Eq. (9)-(10).

A training image comes either from an SGG dataset or from an HOI dataset, as its reader says in
``target["task"]`` (``sgg`` | ``hoi``): joint training alternates such batches (paper Section III-D).
``task`` (joint | sgg | hoi, Table V) selects which set losses may be computed at all.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ...data.metadata import DatasetMeta
from ...errors import ConfigError, DataError
from ...ops import box_cxcywh_to_xyxy
from ...structures import HOIPrediction, SceneGraphPrediction
from ..detr import nested_tensor_from_images
from .criterion import SG2HOICriterion, hoi_tuples, relation_tuples
from .encoder import SG2HOIEncoder, VLDistillHead
from .heads import TextClassifier
from .hoi_decoder import HOIDecoder
from .relation_decoder import RelationDecoder
from .segmentation import SemanticSpatialAggregation, bbseg_loss, box_seg_targets
from .transfer import CrossAttentionStack, QueryTransform, R2ITransformer

TASKS = ("joint", "sgg", "hoi")
# training phases (Section IV-D, Table V): a task, or "hoi_frozen" = HOI training with the SGG part
# (backbone, HSS, encoder, distillation head, relation decoder) frozen after SGG training
# "sgg_control" = SGG training after phase 1 at the joint phase's rates (``train.sgg_control``)
PHASES = TASKS + ("hoi_frozen", "sgg_control")


def batch_source(target: Dict[str, Tensor], only: Optional[str] = None) -> str:
    """Which dataset an image comes from: ``target["task"]`` (``sgg`` | ``hoi``), set by the reader
    (:attr:`hoikit.structures.Sample.task`), never guessed from the annotations: a scene-graph image
    whose relations were all cropped away is still an ``sgg`` image (set loss towards no-relation,
    segmentation loss). ``only``: the model's single dataset, used when the target has no ``task``.

    Raises:
        DataError: no ``task`` and a model with two datasets, or an unknown value.
    """
    task = target.get("task", only)
    if task not in ("sgg", "hoi"):
        where = f"image {int(target['index'])}" if "index" in target else "a training image"
        raise DataError(f"SG2HOI+: target of {where} has task={task!r}; every image must say which dataset it "
                        f"comes from (target['task'] = 'sgg' | 'hoi', set by hoikit's readers as Sample.task)")
    return task


class SG2HOIPlus(nn.Module):
    """The full model. Submodules are built by :func:`hoikit.models.sg2hoi.build.build_sg2hoi`.

    Args:
        backbone: ``backbone(images, mask) -> (C5 [B, C, h, w], mask [B, h, w])``.
        hss: :class:`SemanticSpatialAggregation`. encoder: :class:`SG2HOIEncoder`.
        rel_decoder: :class:`RelationDecoder`. distill: :class:`VLDistillHead` or None.
        r2i: :class:`R2ITransformer` or None (-R2ITR). feature_transform: cross-attention stack or
            None (-FETR). query_transform: :class:`QueryTransform` or None (RELQ).
        hoi_decoder: :class:`HOIDecoder` or None (SGG-only model). criterion: :class:`SG2HOICriterion`.
        meta_sgg, meta_hoi: dataset metadata (either may be None). seg_maps: per dataset, class index
            -> BBSeg (union) index. clip: frozen CLIP (kept out of the state dict) or None.
        lambda_seg, lambda_algn: lambda_1, lambda_2 of Eq. (10). task: joint | sgg | hoi.
    """

    def __init__(self, backbone: nn.Module, hss: SemanticSpatialAggregation, encoder: SG2HOIEncoder,
                 rel_decoder: RelationDecoder, distill: Optional[VLDistillHead], r2i: Optional[R2ITransformer],
                 feature_transform: Optional[CrossAttentionStack], query_transform: Optional[QueryTransform],
                 hoi_decoder: Optional[HOIDecoder], criterion: SG2HOICriterion,
                 meta_sgg: Optional[DatasetMeta], meta_hoi: Optional[DatasetMeta], seg_maps: Dict[str, Tensor],
                 clip=None, lambda_seg: float = 2.0, lambda_algn: float = 4.0, task: str = "joint"):
        super().__init__()
        if task not in TASKS:
            raise ConfigError(f"train.task: unknown value '{task}' (choose {' | '.join(TASKS)})")
        self.backbone, self.hss, self.encoder, self.rel_decoder = backbone, hss, encoder, rel_decoder
        self.distill, self.r2i, self.feature_transform = distill, r2i, feature_transform
        self.query_transform, self.hoi_decoder, self.criterion = query_transform, hoi_decoder, criterion
        self.meta_sgg, self.meta_hoi = meta_sgg, meta_hoi
        self.meta = meta_hoi if meta_hoi is not None else meta_sgg
        for k, m in seg_maps.items():
            self.register_buffer(f"seg_map_{k}", m, persistent=False)
        object.__setattr__(self, "clip", clip)          # frozen teacher: not a submodule, not saved
        self.lambda_seg, self.lambda_algn, self.task = lambda_seg, lambda_algn, task
        # an SGG batch leaves the HOI part without gradients (and vice versa): DDP must allow it
        self.find_unused_parameters = True
        self.sgg_frozen = False
        self._trainable = {id(p): p.requires_grad for p in self.parameters()}   # restored when unfreezing

    def set_phase(self, phase: str) -> None:
        """Two-phase schedule (Section IV-D): ``sgg`` (and ``sgg_control``) computes only SGG losses;
        ``joint`` / ``hoi`` restore the task; ``hoi_frozen`` (Table V single-task HOI) computes HOI losses only and
        freezes the SGG part (no gradients, BatchNorm/dropout in eval mode, no Eq. (2)/(5) losses).
        Build a new optimizer (the recipe's ``param_groups`` of the same phase) after it."""
        if phase not in PHASES:
            raise ConfigError(f"SG2HOI+ phase '{phase}': choose {' | '.join(PHASES)}")
        self.task = {"hoi_frozen": "hoi", "sgg_control": "sgg"}.get(phase, phase)
        self.sgg_frozen = phase == "hoi_frozen"
        for p in self.sgg_parameters():
            p.requires_grad_(self._trainable[id(p)] and not self.sgg_frozen)
        self.train(self.training)

    def sgg_modules(self) -> List[nn.Module]:
        """The SGG part: backbone, HSS (+ BBSeg), encoder, distillation head, relation decoder."""
        return [m for m in (self.backbone, self.hss, self.encoder, self.distill, self.rel_decoder) if m is not None]

    def sgg_parameters(self) -> List[nn.Parameter]:
        return [p for m in self.sgg_modules() for p in m.parameters()]

    def train(self, mode: bool = True):
        """Like ``nn.Module.train``; a frozen SGG part stays in eval mode."""
        super().train(mode)
        if mode and getattr(self, "sgg_frozen", False):
            for m in self.sgg_modules():
                m.eval()
        return self

    # ------------------------------------------------------------------ forward pieces
    def _encode(self, tensor: Tensor, mask: Tensor) -> Dict:
        """Backbone, HSS (Eq. 1-3) and encoder (Eq. 4): ``f_en [B, S, d]``, its padding ``mask`` and
        positions ``pos``, the BBSeg logits ``seg`` (None under -HSS) and ``seg_mask``, the padding of
        the map BBSeg sees."""
        feats, fmask = self.backbone(tensor, mask)
        v, f_agg, seg = self.hss(feats)
        f_en, en_mask, pos = self.encoder(v, f_agg, fmask)                                     # Eq. (4)
        return {"f_en": f_en, "mask": en_mask, "pos": pos, "seg": seg, "seg_mask": fmask}

    def _relations(self, enc: Dict) -> Dict[str, Tensor]:
        """The relation decoder (Eq. 6) on the encoder output."""
        return self.rel_decoder(enc["f_en"], enc["mask"], enc["pos"])

    def _extra_losses(self, enc: Dict, targets: List[Dict[str, Tensor]], images) -> Dict[str, Tensor]:
        """Losses of the base network beyond Eq. (10) (none for the DETR base)."""
        return {}

    def _hoi_branch(self, enc: Dict, rel: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """R2I (Eq. 7), feature / query transformation and the HOI decoder (Eq. 8)."""
        f_en, en_mask, pos = enc["f_en"], enc["mask"], enc["pos"]
        b = f_en.shape[0]
        q_rel = self.rel_decoder.query_embed.weight                                  # [N_rel, d]
        rel_pos = q_rel.unsqueeze(0).expand(b, -1, -1)
        if self.query_transform is None:                                             # RELQ
            queries = rel_pos
        else:
            queries = self.query_transform(q_rel, b)
        if self.r2i is None:                                                         # -R2ITR
            memory, mask, mem_pos = f_en, en_mask, pos
        else:
            f_r2i = self.r2i(rel["f_s"], rel["f_r"], rel["f_o"], rel_pos)
            if self.feature_transform is None:                                       # -FETR
                memory, mask, mem_pos = f_r2i, None, rel_pos
            else:                                                                    # F_hoi
                memory = self.feature_transform(f_en, f_r2i, x_pos=pos, kv_pos=rel_pos)
                mask, mem_pos = en_mask, pos
        return self.hoi_decoder(memory, mask, mem_pos, queries)

    def _source(self, target: Dict[str, Tensor]) -> str:
        """``sgg`` | ``hoi``: the dataset of a training image (:func:`batch_source`)."""
        only = "hoi" if self.meta_sgg is None else "sgg" if self.meta_hoi is None else None
        return batch_source(target, only)

    def _seg_targets(self, targets: List[Dict[str, Tensor]], seg: Tensor, padded_hw, fmask: Tensor):
        """Box-filled targets ``[B, No+1, h, w]`` in the union vocabulary and the valid mask."""
        h, w = seg.shape[-2:]
        stride = (padded_hw[0] / h, padded_hw[1] / w)
        ys, valid = [], ~fmask
        for t in targets:
            labels = getattr(self, f"seg_map_{self._source(t)}")[t["labels"].long()]
            ys.append(box_seg_targets(t["boxes"].to(seg.device), labels.to(seg.device), self.hss.num_classes, (h, w),
                                      stride))
        return torch.stack(ys), valid

    def forward(self, images: Sequence[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None):
        """Args:
            images: list of ``[3, H_i, W_i]`` normalised images.
            targets: list of target dicts (docs/architecture.md "Batches"); required in training.

        Returns:
            training: dict of weighted scalar losses ``loss_seg``, ``loss_algn``, ``loss_rel_*``,
            ``loss_hoi_*`` (only those that apply to this batch). eval: list per image of
            ``{"sgg": {...}, "hoi": {...}}`` with boxes in transformed-image pixels (see :meth:`_predict`).
        """
        tensor, mask = nested_tensor_from_images(list(images))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.sgg_frozen):
            enc = self._encode(tensor, mask)
            rel = self._relations(enc)                                                          # Eq. (6)
        f_en, en_mask, seg = enc["f_en"], enc["mask"], enc["seg"]
        if not self.training:
            hoi = self._hoi_branch(enc, rel) if self.hoi_decoder is not None else None
            return self._predict(rel, hoi, images)
        if targets is None:
            raise ConfigError("SG2HOI+ forward in training mode needs targets")
        sources = {self._source(t) for t in targets}
        losses: Dict[str, Tensor] = {}
        if seg is not None and self.lambda_seg > 0 and not self.sgg_frozen:                    # Eq. (2)
            y, valid = self._seg_targets(targets, seg, tensor.shape[-2:], enc["seg_mask"])
            losses["loss_seg"] = self.lambda_seg * bbseg_loss(seg, y, valid)
        if self.distill is not None and self.clip is not None and self.lambda_algn > 0 and not self.sgg_frozen:
            if self.clip.in_mean.device != tensor.device:
                self.clip.to(tensor.device)
            f_clip = self.clip.encode_image(list(images))                                       # Eq. (5)
            losses["loss_algn"] = self.lambda_algn * self.distill(f_en, en_mask, f_clip)
        if not self.sgg_frozen:
            losses.update(self._extra_losses(enc, targets, images))
        if "sgg" in sources and self.task in ("joint", "sgg") and self.meta_sgg is not None:
            sel = [i for i, t in enumerate(targets) if self._source(t) == "sgg"]
            out = {k: x[sel] for k, x in rel.items()}
            losses.update(self.criterion.relation_losses(out, [relation_tuples(targets[i]) for i in sel]))
        if "hoi" in sources and self.task in ("joint", "hoi") and self.hoi_decoder is not None:
            sel = [i for i, t in enumerate(targets) if self._source(t) == "hoi"]
            hoi = self._hoi_branch(enc, rel)                                                    # Eq. (7)-(8)
            out = {k: x[sel] for k, x in hoi.items()}
            nv = hoi["verb_logits"].shape[-1]
            losses.update(self.criterion.hoi_losses(out, [hoi_tuples(targets[i], nv) for i in sel]))
        return losses                                                                           # Eq. (10)

    # ------------------------------------------------------------------ inference
    @staticmethod
    def _pixels(boxes: Tensor, image: Tensor) -> Tensor:
        h, w = image.shape[-2:]
        return box_cxcywh_to_xyxy(boxes) * boxes.new_tensor([w, h, w, h])

    @torch.no_grad()
    def _predict(self, rel: Dict[str, Tensor], hoi: Optional[Dict[str, Tensor]], images: Sequence[Tensor]):
        """Per image: ``sgg`` = sub/obj boxes ``[N_rel, 4]`` xyxy pixels, labels and scores (best
        foreground class), ``predicate_scores [N_rel, Nr+1]`` softmax with no-relation in column 0;
        ``hoi`` = human/object boxes, ``human_scores``, ``obj_labels``, ``obj_scores`` and
        ``verb_scores [N_hoi, V] = sigmoid(verb) * s_h * s_o`` (QPIC's scoring)."""
        results = []
        for i, img in enumerate(images):
            ps, po = rel["sub_logits"][i].softmax(-1)[:, :-1], rel["obj_logits"][i].softmax(-1)[:, :-1]
            pr = rel["rel_logits"][i].softmax(-1)
            sg = {"sub_boxes": self._pixels(rel["sub_boxes"][i], img), "obj_boxes": self._pixels(rel["obj_boxes"][i], img),
                  "sub_scores": ps.max(-1).values, "sub_labels": ps.argmax(-1),
                  "obj_scores": po.max(-1).values, "obj_labels": po.argmax(-1),
                  "predicate_scores": torch.cat([pr[:, -1:], pr[:, :-1]], -1)}
            out = {"sgg": sg, "size": (img.shape[-1], img.shape[-2])}
            if hoi is not None:
                sh = hoi["human_logits"][i].softmax(-1)[:, 0]
                pobj = hoi["obj_logits"][i].softmax(-1)[:, :-1]
                so, lo = pobj.max(-1)
                out["hoi"] = {"human_boxes": self._pixels(hoi["human_boxes"][i], img),
                              "obj_boxes": self._pixels(hoi["obj_boxes"][i], img), "human_scores": sh,
                              "obj_scores": so, "obj_labels": lo,
                              "verb_scores": hoi["verb_logits"][i].sigmoid() * (sh * so)[:, None]}
            results.append(out)
        return results

    def postprocess(self, outputs: List[Dict], targets_or_sizes, task: Optional[str] = None):
        """Eval outputs -> :class:`HOIPrediction` (``task="hoi"``, default when the model has an HOI
        head) or :class:`SceneGraphPrediction` (``task="sgg"``) per image, in original pixels.

        Args:
            outputs: eval-mode :meth:`forward` result.
            targets_or_sizes: per image a target dict with ``orig_size`` (W, H), or an original
                ``(W, H)``; boxes are scaled by ``orig_size / size``.
        """
        task = task or ("hoi" if self.hoi_decoder is not None else "sgg")
        preds = []
        for out, t in zip(outputs, targets_or_sizes):
            ow, oh = [float(x) for x in (t["orig_size"] if isinstance(t, dict) else t)]
            w, h = out["size"]
            scale = torch.tensor([ow / w, oh / h, ow / w, oh / h])
            if task == "sgg":
                s = out["sgg"]
                n = len(s["sub_boxes"])
                boxes = torch.cat([s["sub_boxes"], s["obj_boxes"]]).cpu() * scale
                preds.append(SceneGraphPrediction(
                    boxes=boxes.numpy().astype(np.float32),
                    labels=torch.cat([s["sub_labels"], s["obj_labels"]]).cpu().numpy().astype(np.int64),
                    scores=torch.cat([s["sub_scores"], s["obj_scores"]]).cpu().numpy().astype(np.float32),
                    pairs=np.stack([np.arange(n), np.arange(n) + n], 1).astype(np.int64),
                    predicate_scores=s["predicate_scores"].cpu().numpy().astype(np.float32)))
            elif task == "hoi":
                s = out["hoi"]
                n = len(s["human_boxes"])
                person = self.meta_hoi.person_label
                boxes = torch.cat([s["human_boxes"], s["obj_boxes"]]).cpu() * scale
                labels = torch.cat([torch.full((n,), person, dtype=torch.long), s["obj_labels"].cpu()])
                preds.append(HOIPrediction(
                    boxes=boxes.numpy().astype(np.float32), labels=labels.numpy().astype(np.int64),
                    box_scores=torch.cat([s["human_scores"], s["obj_scores"]]).cpu().numpy().astype(np.float32),
                    pairs=np.stack([np.arange(n), np.arange(n) + n], 1).astype(np.int64),
                    verb_scores=s["verb_scores"].cpu().numpy().astype(np.float32)))
            else:
                raise ConfigError(f"postprocess task '{task}': choose sgg | hoi")
        return preds

    # ------------------------------------------------------------------ optimisation
    def parameter_parts(self) -> Dict[str, List[nn.Parameter]]:
        """The trainable parameters by part (each once): ``backbone``, ``sgg`` (HSS, encoder,
        distillation head, relation decoder), ``hoi`` (R2I, transformations, HOI decoder) and the
        text-initialised classifier weights of either side, ``sgg_text_cls`` / ``hoi_text_cls``
        (Section IV-D gives those their own learning rate). The SG2HOI+ recipe
        (:mod:`hoikit.recipes.sg2hoi`) turns them into optimizer groups per training phase."""
        text_w = {id(m.weight) for m in self.modules() if isinstance(m, TextClassifier)}
        hoi_modules = [m for m in (self.r2i, self.feature_transform, self.query_transform, self.hoi_decoder) if m is not None]
        hoi_ids = {id(p) for m in hoi_modules for p in m.parameters()}
        bb_ids = {id(p) for p in self.backbone.parameters()}
        parts: Dict[str, List[nn.Parameter]] = {"backbone": [], "sgg": [], "hoi": [], "sgg_text_cls": [],
                                                "hoi_text_cls": []}
        for p in self.parameters():
            if not p.requires_grad:
                continue
            part = "backbone" if id(p) in bb_ids else "hoi" if id(p) in hoi_ids else "sgg"
            if id(p) in text_w:
                part += "_text_cls"
            parts[part].append(p)
        return parts
