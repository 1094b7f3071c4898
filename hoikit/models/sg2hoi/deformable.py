"""SG2HOI+ on a Deformable DETR base (``model.detr.type = deformable``).

The paper builds SG2HOI+ on DETR and initialises it from a COCO DETR (Section IV-D). On a CPU budget a
DETR-initialised SG2HOI+ stays at the floor (benchmarks/results/synth_sg2hoi.md): its decoders start
from a detector that finds few SynthHOI objects, and DETR's global-attention decoders converge
slowly. The deformable base keeps every SG2HOI+ module and loss and replaces the transformer
underneath by a two-stage Deformable DETR (Zhu et al., ICLR 2021), initialised from a trained one:

- backbone, input projections, level embedding and deformable encoder: the detector's. HSS (Eq. 1-3)
  reads one backbone level (``model.sg2hoi.hss_level``); ``f_agg`` is added to that level's projected
  map, with ``W_v`` / ``W_s`` starting at zero so the encoder first sees exactly the detector's input
  (the DETR base's ``detr_proj`` does the same). There is no [CLS] token (deformable attention samples
  around a position; a global token has none), so distillation (Eq. 5) reads the pooled memory.
- pair queries (``model.sg2hoi.pair_queries``): ``detections`` (default) = the ordered pairs of the
  detector's detections with the highest score products; each query's subject / object boxes are
  predicted relative to its two detections and start exactly on them (:meth:`DeformableSG2HOIEncoder.pairs`).
  ``proposals`` = one query per top two-stage proposal; its reference box is refined layer by layer by
  the detector's box heads, so it follows one entity, and both boxes are predicted relative to the
  final reference (with as many queries as the detector has, the subject box starts as exactly the
  detector's box; the object box must learn its offset, which a CPU budget does not reach:
  docs/method-notes-sg2hoi.md). Refinement heads get no gradient (:func:`pair_decoder`).
- relation decoder and HOI decoder: copies of the detector's deformable decoder. R2ITrans (Eq. 7) and
  the feature transformation keep their form: ``F_hoi`` is the multi-scale memory whose tokens attend
  ``f_r2i``, so the HOI decoder still samples it deformably. The query transformation lets the
  learned ``Q_hoi`` attend each image's relation queries.
- proposal loss: nothing in Eq. (10) trains the proposal head, and the encoder under it keeps
  training, so the detector's own two-stage loss (class-agnostic focal + L1 + GIoU against every
  annotated box of the image) stays on (``model.sg2hoi.proposal_loss``, weight 1 = the detector's).

Design notes and the alternatives considered: docs/method-notes-sg2hoi.md, "Deformable base".
"""
from __future__ import annotations

import copy
import math
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...losses.deformable_criterion import DeformableSetCriterion, FocalHungarianMatcher
from ...losses.set_criterion import num_boxes_across_processes
from ..deformable_detr import DeformableDETR, add_extra_levels
from ..deformable_transformer import DeformableDecoder, DeformableTransformer, encode_levels, inverse_sigmoid
from ..detr import targets_to_detr
from ...ops import batched_nms, box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from .heads import TupleHead
from .model import SG2HOIPlus


def check_deformable_base(net: DeformableDETR, sg) -> None:
    """The detector settings the deformable base needs; ConfigError naming the key."""
    tr = net.transformer
    if not net.two_stage:
        raise ConfigError("model.detr.two_stage: the SG2HOI+ deformable base needs a two-stage Deformable DETR "
                          "(its encoder proposals give the queries or the detections that anchor them)")
    if tr.mixed_selection:
        raise ConfigError("model.detr.mixed_selection: not supported by the SG2HOI+ deformable base (the pair "
                          "queries take their content from the proposals)")
    if tr.decoder_fine_level:
        raise ConfigError("model.detr.decoder_fine_level: not supported by the SG2HOI+ deformable base")
    if sg.hidden_dim != tr.d_model:
        raise ConfigError(f"model.sg2hoi.hidden_dim={sg.hidden_dim} must equal model.detr.hidden_dim={tr.d_model} "
                          "for the deformable base (the encoder and decoders are the detector's)")
    if sg.r2i and not sg.feature_transform:
        raise ConfigError("model.sg2hoi.feature_transform=false (-FETR) needs the DETR base: the deformable HOI "
                          "decoder samples a multi-scale map, which f_r2i alone is not")
    if not sg.relq and sg.num_hoi_queries != sg.num_rel_queries:
        raise ConfigError(f"model.sg2hoi.num_hoi_queries={sg.num_hoi_queries} must equal num_rel_queries="
                          f"{sg.num_rel_queries} for the deformable base (both sets sit on the same proposals)")


class DeformableSG2HOIEncoder(nn.Module):
    """Input projections + level embedding + deformable encoder of a Deformable DETR, with the HSS
    map added to one level, and its two-stage proposal stage.

    Args:
        net: the (trained) two-stage :class:`DeformableDETR` whose modules are taken over.
        hss_level: backbone level HSS reads (index into the backbone's levels, negative from the end).
    """

    def __init__(self, net: DeformableDETR, hss_level: int, pair_queries: str = "proposals",
                 anchor_detector: str = "shared", pair_nms: float = 0.0):
        super().__init__()
        tr = net.transformer
        self.input_proj = net.input_proj
        self.position = net.backbone[1]                      # sine encoding, no parameters
        self.level_offset, self.num_feature_levels = net.level_offset, net.num_feature_levels
        self.level_embed = tr.level_embed
        self.layers = tr.encoder.layers
        self.d_model = tr.d_model
        # two-stage proposal stage (names as in DeformableTransformer, whose methods use them)
        self.enc_output, self.enc_output_norm = tr.enc_output, tr.enc_output_norm
        self.pos_trans, self.pos_trans_norm = tr.pos_trans, tr.pos_trans_norm
        nl = tr.decoder.num_layers
        self.prop_class, self.prop_box = net.class_embed[nl], net.bbox_embed[nl]
        n_levels = len(net.backbone.level_channels)
        if not -n_levels <= hss_level < n_levels:
            raise ConfigError(f"model.sg2hoi.hss_level={hss_level}: the backbone has {n_levels} levels")
        level = hss_level % n_levels
        if level < self.level_offset:
            raise ConfigError(f"model.sg2hoi.hss_level={hss_level}: level {level} is not one the detector projects "
                              f"(it uses backbone levels {self.level_offset}..{n_levels - 1})")
        self.hss_level = level                                #: index into the backbone's levels
        self.hss_channels = net.backbone.level_channels[level]
        self.pair_queries = pair_queries
        if pair_queries == "detections":
            self.num_entities = net.num_queries
            self.pair_embed = nn.Linear(2 * self.d_model, self.d_model)   # pair content from the two tokens
            self.pair_nms = pair_nms
            if anchor_detector == "frozen":   # the whole detector, frozen: anchors that do not drift
                self.anchor_net = copy.deepcopy(net).requires_grad_(False).eval()
            elif anchor_detector == "shared":
                # the detector's decoder and last class head on this model's encoder (no gradient)
                self.entity_decoder = copy.deepcopy(tr.decoder)
                self.entity_decoder.class_embed = None
                self.entity_decoder.bbox_embed = copy.deepcopy(nn.ModuleList(list(net.bbox_embed)[:nl]))
                self.entity_class = copy.deepcopy(net.class_embed[nl - 1])
            else:
                raise ConfigError(f"model.sg2hoi.anchor_detector: unknown value '{anchor_detector}' (frozen | shared)")
        elif pair_queries != "proposals":
            raise ConfigError(f"model.sg2hoi.pair_queries: unknown value '{pair_queries}' (detections | proposals)")

    def train(self, mode: bool = True):
        super().train(mode)
        for name in ("anchor_net", "entity_decoder", "entity_class"):   # the anchoring detector: as at inference
            stage = getattr(self, name, None)
            if stage is not None:
                stage.eval()
        return self

    def forward(self, feats: List[Tensor], masks: List[Tensor], f_agg: Tensor, image_mask: Tensor):
        """Args:
            feats, masks: the backbone's levels and their paddings. f_agg: ``[B, d, h, w]`` (Eq. 3) at
            level ``hss_level``. image_mask: ``[B, H, W]`` True on padding.

        Returns:
            ``memory [B, S, d]``, ``mask [B, S]``, ``pos [B, S, d]`` (sine + level embedding) and the
            context ``{"shapes", "valid_ratios"}`` the deformable decoders need.
        """
        srcs = [proj(f) for proj, f in zip(self.input_proj, feats[self.level_offset:])]
        srcs[self.hss_level - self.level_offset] = srcs[self.hss_level - self.level_offset] + f_agg
        srcs, masks = add_extra_levels(self.input_proj, feats, srcs, masks[self.level_offset:], image_mask,
                                       self.num_feature_levels)
        pos_embeds = [self.position(m, s.dtype) for s, m in zip(srcs, masks)]
        memory, mask, pos, shapes, valid_ratios = encode_levels(self.layers, self.level_embed, srcs, masks, pos_embeds)
        return memory, mask, pos, {"shapes": shapes, "valid_ratios": valid_ratios}

    def proposals(self, memory: Tensor, mask: Tensor, shapes, k: int) -> Dict[str, Tensor]:
        """Deformable DETR's two-stage query selection: the ``k`` encoder tokens with the highest
        proposal score (class 0, trained class-agnostic) give reference boxes ``refs [B, k, 4]`` and the
        queries' position ``query_pos`` and content ``tgt [B, k, d]``; ``enc_logits [B, S, C]`` /
        ``enc_boxes [B, S, 4]`` are every token's proposal (for the proposal loss)."""
        enc_memory, props = DeformableTransformer.encoder_proposals(self, memory, mask, shapes)
        logits = self.prop_class(enc_memory)
        coords = self.prop_box(enc_memory) + props
        if logits.shape[1] < k:
            what = ("the detector's {k} queries (model.detr.num_queries)" if self.pair_queries == "detections"
                    else "the {k} pair queries (model.sg2hoi.num_rel_queries)").format(k=k)
            raise ValueError(f"SG2HOI+ deformable base: the image gives {logits.shape[1]} encoder tokens, fewer than "
                             f"{what}; use a larger input or fewer queries")
        top = torch.topk(logits[..., 0], k, dim=1)[1]
        chosen = torch.gather(coords, 1, top[..., None].repeat(1, 1, 4)).detach()
        pos_trans = self.pos_trans_norm(self.pos_trans(DeformableTransformer.proposal_pos_embed(self, chosen)))
        query_pos, tgt = torch.split(pos_trans, self.d_model, dim=2)
        return {"refs": chosen.sigmoid(), "query_pos": query_pos, "tgt": tgt, "enc_logits": logits,
                "enc_boxes": coords.sigmoid()}

    @torch.no_grad()
    def detections(self, memory: Tensor, mask: Tensor, ctx: Dict, prop: Dict[str, Tensor], images: Tensor,
                   image_mask: Tensor):
        """The detector's final boxes ``[B, K, 4]``, class logits ``[B, K, C]`` and decoder tokens
        ``[B, K, d]`` (no gradient): from the frozen copy (``anchor_detector: frozen``) or from its
        decoder on this model's (trained) encoder memory and proposals (``shared``)."""
        if getattr(self, "anchor_net", None) is not None:
            out = self.anchor_net(images, image_mask)
            return out["pred_boxes"], out["pred_logits"], out["hs"][-1]
        k = self.num_entities
        hs, inter = self.entity_decoder(prop["tgt"][:, :k], prop["refs"][:, :k], memory, ctx["shapes"],
                                        ctx["valid_ratios"], prop["query_pos"][:, :k], mask)
        return inter[-1], self.entity_class(hs[-1]), hs[-1]

    def pairs(self, boxes: Tensor, logits: Tensor, tokens: Tensor, n: int) -> Dict[str, Tensor]:
        """Pair queries from the detector's detections (``pair_queries: detections``).

        ``boxes`` / ``logits`` / ``tokens``: the detector's detections (:meth:`detections`). After
        class-wise NMS at ``pair_nms`` (a suppressed detection scores 0), the ``n`` ordered pairs (i, j),
        i != j, with the highest product of the two detection scores (best sigmoid class) become the
        queries. Query ``k`` = pair (i, j): content
        ``pair_embed([h_i; h_j])`` from the two detection tokens, position from the union box (the
        detector's ``pos_trans``), reference box = the union box (its sampling covers both entities),
        and the anchors ``sub_ref`` / ``obj_ref`` = the two detection boxes, relative to which the tuple
        head predicts the subject and object boxes.
        """
        with torch.no_grad():
            score, label = logits.sigmoid().max(-1)                       # [B, K]
            if self.pair_nms > 0:                                         # duplicates would take pair slots
                keep = torch.zeros_like(score, dtype=torch.bool)
                for bi in range(len(score)):
                    keep[bi, batched_nms(box_cxcywh_to_xyxy(boxes[bi]), score[bi], label[bi], self.pair_nms)] = True
                score = score * keep
            b, k = score.shape
            if n > k * (k - 1):
                raise ConfigError(f"model.sg2hoi.num_rel_queries={n}: more than the {k * (k - 1)} ordered pairs of the "
                                  f"detector's {k} detections")
            pair = score[:, :, None] * score[:, None, :]
            pair = pair - 2.0 * torch.eye(k, device=pair.device)         # never (i, i)
            top = pair.flatten(1).topk(n, dim=1).indices
            i, j = top // k, top % k
            sub = torch.gather(boxes, 1, i[..., None].expand(-1, -1, 4))
            obj = torch.gather(boxes, 1, j[..., None].expand(-1, -1, 4))
            sx, ox = box_cxcywh_to_xyxy(sub), box_cxcywh_to_xyxy(obj)
            union = box_xyxy_to_cxcywh(torch.cat([torch.minimum(sx[..., :2], ox[..., :2]),
                                                  torch.maximum(sx[..., 2:], ox[..., 2:])], -1))
            union = union.clamp(1e-4, 1 - 1e-4)
            h_i = torch.gather(tokens, 1, i[..., None].expand(-1, -1, tokens.shape[-1]))
            h_j = torch.gather(tokens, 1, j[..., None].expand(-1, -1, tokens.shape[-1]))
        pos = self.pos_trans_norm(self.pos_trans(DeformableTransformer.proposal_pos_embed(self, inverse_sigmoid(union))))
        return {"tgt": self.pair_embed(torch.cat([h_i, h_j], -1)), "query_pos": pos[..., :self.d_model],
                "refs": union, "sub_ref": sub, "obj_ref": obj, "pair_index": torch.stack([i, j], -1)}


class DeformablePairDecoder(nn.Module):
    """A deformable decoder (with box refinement) + a five-branch :class:`TupleHead` whose boxes are
    relative to each query's final reference box.

    Args:
        decoder: :class:`DeformableDecoder` with ``bbox_embed`` set (one refinement head per layer).
        head: the tuple head. names: output key of the head's left / mid / right boxes and logits.
    """

    REL = {"left_boxes": "sub_boxes", "left_logits": "sub_logits", "mid_logits": "rel_logits",
           "right_boxes": "obj_boxes", "right_logits": "obj_logits", "f_left": "f_s", "f_mid": "f_r", "f_right": "f_o"}
    HOI = {"left_boxes": "human_boxes", "left_logits": "human_logits", "mid_logits": "verb_logits",
           "right_boxes": "obj_boxes", "right_logits": "obj_logits"}

    def __init__(self, decoder: DeformableDecoder, head: TupleHead, names: Dict[str, str]):
        super().__init__()
        self.decoder, self.head, self.names = decoder, head, dict(names)

    def forward(self, tgt: Tensor, query_pos: Tensor, refs: Tensor, memory: Tensor, mask: Tensor,
                ctx: Dict, anchors=None) -> Dict[str, Tensor]:
        """``tgt`` / ``query_pos [B, Q, d]``, ``refs [B, Q, 4]`` (cxcywh in [0, 1]), memory and mask of the
        encoder (or ``F_hoi``) -> the tuple outputs under :attr:`names` plus ``hs [B, Q, d]`` and
        ``refs`` (the reference boxes the head predicted from). ``anchors``: ``(sub_ref, obj_ref)``, the
        boxes the two entity boxes are predicted relative to (pair queries); default the last reference."""
        hs, inter = self.decoder(tgt, refs, memory, ctx["shapes"], ctx["valid_ratios"], query_pos, mask)
        last_ref = refs if hs.shape[0] == 1 else inter[-2]     # the reference the last layer sampled around
        o = self.head(hs[-1], tuple(anchors) if anchors is not None else last_ref)
        out = {self.names[k]: v for k, v in o.items() if k in self.names}
        out.update(hs=hs[-1], refs=last_ref)
        return out


def zero_box_offsets(model: "DeformableSG2HOIPlus") -> None:
    """Detection pairs: the last layer of every box MLP starts at zero, so every subject / object box
    starts as exactly its anchor detection."""
    with torch.no_grad():
        for dec in (model.rel_decoder, model.hoi_decoder):
            if dec is not None:
                for box in (dec.head.left_box, dec.head.right_box):
                    box.layers[-1].weight.zero_()
                    box.layers[-1].bias.zero_()


def pair_decoder(net: DeformableDETR, head: TupleHead, names: Dict[str, str], refine: bool = True) -> DeformablePairDecoder:
    """A copy of ``net``'s decoder with its own copies of the per-layer refinement heads (``refine``).

    The refinement heads keep the detector's weights: the reference boxes between layers are detached
    (as in Deformable DETR) and SG2HOI+'s losses (Eq. 9-10) read the last layer only, so no gradient
    reaches them (AdamW skips a parameter without gradient: no update, no weight decay). Exception:
    with ``model.detr.look_forward_twice`` the last layer samples around the *undetached* refined
    reference of the layer before (that is look-forward-twice's point), so with proposal queries, whose
    boxes are predicted from that reference, the box losses reach the heads of the earlier layers. They keep
    moving each reference box as the detector did, and the trainable tuple head predicts the final
    boxes from the last reference. (They stay in the optimizer's groups so that checkpoints of the
    first runs resume; tests/models/sg2hoi/test_deformable_base.py checks that they get no gradient.)"""
    tr = net.transformer
    dec = DeformableDecoder(copy.deepcopy(tr.decoder.layers[0]), tr.decoder.num_layers, tr.decoder.look_forward_twice)
    dec.layers = copy.deepcopy(tr.decoder.layers)
    if refine:      # refine=False (detection pairs): the reference (union) box stays fixed
        dec.bbox_embed = copy.deepcopy(nn.ModuleList(list(net.bbox_embed)[:tr.decoder.num_layers]))
    return DeformablePairDecoder(dec, head, names)


@torch.no_grad()
def init_heads_from_detector(model: "DeformableSG2HOIPlus", net: DeformableDETR) -> int:
    """Start both box MLPs of both tuple heads as the detector's last box head, behind entity branches
    set to a shifted identity (as :func:`hoikit.models.sg2hoi.detr_init._shifted_identity_branches`
    for the DETR base): at initialisation every subject / human box is exactly the detector's box of
    the query. The shift ``c`` is bounded from the last decoder layer's output LayerNorm. Returns the
    number of tensors set."""
    nl = net.transformer.decoder.num_layers
    last = net.bbox_embed[nl - 1]
    norm = net.transformer.decoder.layers[nl - 1].norm3
    g, beta = norm.weight.float(), norm.bias.float()
    c = (g.abs() * math.sqrt(g.numel()) - beta).clamp(min=0)
    n = 0
    # exact only when the queries are the detector's (num_rel_queries = model.detr.num_queries): the
    # decoder's self-attention otherwise sees another set of queries
    for dec in (model.rel_decoder, model.hoi_decoder):
        if dec is None:
            continue
        head = dec.head
        for side, r2i_cols in (("left", 0), ("right", 2)):
            box = getattr(head, f"{side}_box")
            box.load_state_dict(last.state_dict())
            branch = getattr(head, f"{side}_branch")[0]
            branch.weight.copy_(torch.eye(c.numel()))
            branch.bias.copy_(c)
            cls = getattr(head, f"{side}_cls")
            for lin in (box.layers[0], getattr(cls, "proj", cls)):
                lin.bias.sub_(lin.weight @ c)
            if dec is model.rel_decoder and model.r2i is not None:
                d = c.numel()
                model.r2i.w_t.bias.sub_(model.r2i.w_t.weight[:, r2i_cols * d:(r2i_cols + 1) * d] @ c)
            n += len(last.state_dict()) + 2
    return n


class DeformableSG2HOIPlus(SG2HOIPlus):
    """SG2HOI+ on the deformable base (module docstring). Built by
    :func:`hoikit.models.sg2hoi.build.build_sg2hoi` when ``model.detr.type = deformable``.

    Extra args:
        num_queries: pair queries per image (the top proposals). proposal_criterion: the detector's
            set criterion for the proposal loss, or None (off). proposal_weight: its weight.
    """

    def __init__(self, *args, num_queries: int, proposal_criterion: Optional[DeformableSetCriterion] = None,
                 proposal_weight: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_queries = num_queries
        self.proposal_criterion, self.proposal_weight = proposal_criterion, proposal_weight

    def _encode(self, tensor: Tensor, mask: Tensor) -> Dict:
        feats, masks = self.backbone.forward_levels(tensor, mask)
        lvl = self.encoder.hss_level
        v, f_agg, seg = self.hss(feats[lvl])                                                   # Eq. (1)-(3)
        f_en, en_mask, pos, ctx = self.encoder(feats, masks, f_agg, mask)                      # Eq. (4)
        pairs = self.encoder.pair_queries == "detections"
        prop = self.encoder.proposals(f_en, en_mask, ctx["shapes"],
                                      self.encoder.num_entities if pairs else self.num_queries)
        enc = {"f_en": f_en, "mask": en_mask, "pos": pos, "seg": seg, "seg_mask": masks[lvl], "ctx": ctx,
               "proposals": prop, "queries": prop}
        if pairs:
            det = self.encoder.detections(f_en, en_mask, ctx, prop, tensor, mask)
            enc["queries"] = self.encoder.pairs(*det, self.num_queries)
        return enc

    @staticmethod
    def _anchors(q: Dict[str, Tensor]):
        return (q["sub_ref"], q["obj_ref"]) if "sub_ref" in q else None

    def _relations(self, enc: Dict) -> Dict[str, Tensor]:
        q = enc["queries"]
        return self.rel_decoder(q["tgt"], q["query_pos"], q["refs"], enc["f_en"], enc["mask"], enc["ctx"],
                                self._anchors(q))                                                         # Eq. (6)

    def _hoi_branch(self, enc: Dict, rel: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Eq. (7)-(8) on the proposal queries: ``Q_rel`` of an image is its relation queries' content."""
        p, f_en = enc["queries"], enc["f_en"]
        if self.query_transform is None:                                             # RELQ
            queries = p["tgt"]
        else:
            queries = self.query_transform(p["tgt"], f_en.shape[0])
            if "sub_ref" in p:          # detection pairs: Q_hoi (transformed) + the pair's own content
                queries = queries + p["tgt"]
        memory = f_en                                                                # -R2ITR
        if self.r2i is not None:
            f_r2i = self.r2i(rel["f_s"], rel["f_r"], rel["f_o"], p["query_pos"])
            memory = self.feature_transform(f_en, f_r2i, x_pos=enc["pos"], kv_pos=p["query_pos"])   # F_hoi
        return self.hoi_decoder(queries, p["query_pos"], p["refs"], memory, enc["mask"], enc["ctx"],
                                self._anchors(p))

    def _extra_losses(self, enc: Dict, targets: List[Dict[str, Tensor]], images) -> Dict[str, Tensor]:
        """The two-stage proposal loss (``loss_{ce,bbox,giou}_prop``): every annotated box of the image,
        class-agnostic, against every token's proposal, Hungarian-matched (Deformable DETR's encoder loss)."""
        if self.proposal_criterion is None or self.proposal_weight <= 0:
            return {}
        p = enc["proposals"]
        boxes = targets_to_detr(targets, images)
        agnostic = [{"labels": torch.zeros(len(t["boxes"]), dtype=torch.int64, device=t["boxes"].device),
                     "boxes": t["boxes"]} for t in boxes]
        num_boxes = num_boxes_across_processes(agnostic, p["enc_logits"].device)
        losses, _ = self.proposal_criterion._layer({"pred_logits": p["enc_logits"], "pred_boxes": p["enc_boxes"]},
                                                   agnostic, num_boxes, "_prop")
        return {k: v * self.proposal_weight for k, v in losses.items()}


def proposal_criterion(dcfg) -> DeformableSetCriterion:
    """The detector's criterion with its matcher costs and loss weights (``model.detr``)."""
    matcher = FocalHungarianMatcher(dcfg.set_cost_class, dcfg.set_cost_bbox, dcfg.set_cost_giou, dcfg.focal_alpha)
    return DeformableSetCriterion(1, matcher, dcfg.focal_alpha, dcfg.ce_loss_coef, dcfg.bbox_loss_coef,
                                  dcfg.giou_loss_coef)
