"""Deformable transformer (Zhu et al., ICLR 2021): deformable encoder over multi-scale features,
decoder with deformable cross-attention, optional two-stage proposals.

Names follow fundamentalvision/Deformable-DETR ``models/deformable_transformer.py`` (``level_embed``,
``encoder.layers.i.self_attn.*``, ``decoder.layers.i.cross_attn.*``, ``enc_output``, ``pos_trans`` ...)
so the official checkpoints load strictly; the facts used are listed in
/work/shared/specs/deformable-detr.md (cited below as "spec: tr <lines>").
H-DETR additions (HDETR/H-Deformable-DETR): a self-attention mask between query groups (hybrid
matching), mixed query selection and look-forward-twice.
"""
from __future__ import annotations

import copy
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ms_deform_attn import MSDeformAttn


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``log(x / (1 - x))`` with both clamped at ``eps`` (Deformable DETR util/misc.py)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def at_most(n: int, size: Union[int, Tensor]) -> Union[int, Tensor]:
    """``min(n, size)`` for a size that is a Python int in eager mode and a traced 0-dim tensor under
    ONNX export; the tensor form keeps e.g. ``topk``'s ``k`` dynamic (ONNX TopK takes k as an input)."""
    if isinstance(size, Tensor):
        return torch.clamp(size, max=n)
    return min(n, size)


def _clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))


class _FFN(nn.Module):
    """Post-norm feed-forward block ``norm(x + linear2(relu(linear1(x))))``."""

    def _ffn(self, x: Tensor, norm: nn.LayerNorm) -> Tensor:
        return norm(x + self.dropout_out(self.linear2(self.dropout_act(F.relu(self.linear1(x))))))


class DeformableEncoderLayer(_FFN):
    """Deformable self-attention over all levels, then the FFN (post-norm)."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout_act = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout_out = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, refs: Tensor, shapes, mask: Optional[Tensor]) -> Tensor:
        """``src``/``pos [B, S, D]``, ``refs [B, S, L, 2]``, ``mask [B, S]`` -> ``[B, S, D]``."""
        src = self.norm1(src + self.dropout1(self.self_attn(src + pos, refs, src, shapes, mask)))
        return self._ffn(src, self.norm2)


class DeformableDecoderLayer(_FFN):
    """Self-attention (``nn.MultiheadAttention``) -> norm2, deformable cross-attention -> norm1,
    FFN -> norm3 (spec: tr 295-312)."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout_act = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout_out = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, query_pos: Tensor, refs: Tensor, memory: Tensor, shapes,
                mask: Optional[Tensor], attn_mask: Optional[Tensor] = None) -> Tensor:
        """``tgt``/``query_pos [B, Q, D]``, ``refs [B, Q, L, 2 or 4]``, ``memory [B, S, D]``;
        ``attn_mask [Q, Q]`` bool (True = blocked) keeps query groups apart (H-DETR)."""
        q = k = (tgt + query_pos).transpose(0, 1)
        t2 = self.self_attn(q, k, tgt.transpose(0, 1), attn_mask=attn_mask, need_weights=False)[0].transpose(0, 1)
        tgt = self.norm2(tgt + self.dropout2(t2))
        tgt = self.norm1(tgt + self.dropout1(self.cross_attn(tgt + query_pos, refs, memory, shapes, mask)))
        return self._ffn(tgt, self.norm3)


def encoder_reference_points(shapes: Sequence[Tuple[int, int]], valid_ratios: Tensor) -> Tensor:
    """Pixel centres of every level as encoder reference points (spec: tr 238-250).

    Args:
        shapes: ``L`` pairs ``(H_l, W_l)``. valid_ratios: ``[B, L, 2]`` unpadded fraction (w, h).

    Returns:
        ``[B, S, L, 2]``: each token's centre, normalised by its own level's valid size, then
        expressed in every level's padded frame.
    """
    refs = []
    for lvl, (h, w) in enumerate(shapes):
        # arange + 0.5 = linspace(0.5, h - 0.5, h) exactly (unit steps), and follows a traced h (ONNX export)
        ys = torch.arange(h, dtype=torch.float32, device=valid_ratios.device) + 0.5
        xs = torch.arange(w, dtype=torch.float32, device=valid_ratios.device) + 0.5
        ry, rx = torch.meshgrid(ys, xs, indexing="ij")
        ry = ry.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
        rx = rx.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
        refs.append(torch.stack((rx, ry), -1))
    return torch.cat(refs, 1)[:, :, None] * valid_ratios[:, None]


class DeformableDecoder(nn.Module):
    """Stack of decoder layers; with ``bbox_embed`` set (box refinement) each layer refines the
    reference boxes it passes on (spec: tr 331-351)."""

    def __init__(self, layer: DeformableDecoderLayer, num_layers: int, look_forward_twice: bool = False):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.num_layers = num_layers
        self.look_forward_twice = look_forward_twice
        self.bbox_embed: Optional[nn.ModuleList] = None    # set by DeformableDETR (box refine)
        self.class_embed: Optional[nn.ModuleList] = None   # set by DeformableDETR (two-stage)

    def forward(self, tgt: Tensor, refs: Tensor, memory: Tensor, shapes, valid_ratios: Tensor,
                query_pos: Tensor, mask: Optional[Tensor], attn_mask: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor]:
        """Returns ``hs [L, B, Q, D]`` (every layer's output) and ``refs [L, B, Q, 2 or 4]``, the
        reference points after each layer (the input of the next)."""
        out, hs, inter = tgt, [], []
        for lid, layer in enumerate(self.layers):
            if refs.shape[-1] == 4:
                refs_in = refs[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
            else:
                refs_in = refs[:, :, None] * valid_ratios[:, None]
            out = layer(out, query_pos, refs_in, memory, shapes, mask, attn_mask)
            new_refs = refs
            if self.bbox_embed is not None:
                delta = self.bbox_embed[lid](out)
                if refs.shape[-1] == 4:
                    new_refs = (delta + inverse_sigmoid(refs)).sigmoid()
                else:
                    new_refs = torch.cat([delta[..., :2] + inverse_sigmoid(refs), delta[..., 2:]], -1).sigmoid()
                refs = new_refs.detach()
            hs.append(out)
            # look-forward-twice (H-DETR): the next layer still gets detached refs; the returned
            # refs keep their gradient so layer l+1's box loss also trains layer l's box head
            inter.append(new_refs if self.look_forward_twice else refs)
        return torch.stack(hs), torch.stack(inter)


class DeformableTransformer(nn.Module):
    """Encoder + decoder over ``num_feature_levels`` maps.

    Args:
        d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout: sizes.
        num_feature_levels: L. enc_n_points / dec_n_points: sampling points per head and level.
        two_stage: queries from the encoder's top-scoring proposals (``two_stage_num_proposals``).
        mixed_selection: two-stage with learned content queries (H-DETR: ``tgt = query_embed``).
        look_forward_twice: see :class:`DeformableDecoder`.
        decoder_fine_level: the decoder's cross-attention has one more level, first: a finer map passed
            to :meth:`forward` as ``fine`` (not encoded; for small objects, not in Deformable DETR).
    """

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 1024, dropout: float = 0.1, num_feature_levels: int = 4,
                 dec_n_points: int = 4, enc_n_points: int = 4, two_stage: bool = False,
                 two_stage_num_proposals: int = 300, mixed_selection: bool = False, look_forward_twice: bool = False,
                 decoder_fine_level: bool = False):
        super().__init__()
        self.d_model, self.nhead = d_model, nhead
        self.two_stage, self.two_stage_num_proposals = two_stage, two_stage_num_proposals
        self.mixed_selection = mixed_selection
        enc = DeformableEncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points)
        self.encoder = nn.Module()
        self.encoder.layers = _clones(enc, num_encoder_layers)
        self.decoder_fine_level = decoder_fine_level
        dec = DeformableDecoderLayer(d_model, dim_feedforward, dropout, num_feature_levels + int(decoder_fine_level),
                                     nhead, dec_n_points)
        self.decoder = DeformableDecoder(dec, num_decoder_layers, look_forward_twice)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        if two_stage:
            self.enc_output = nn.Linear(d_model, d_model)
            self.enc_output_norm = nn.LayerNorm(d_model)
            self.pos_trans = nn.Linear(d_model * 2, d_model * 2)
            self.pos_trans_norm = nn.LayerNorm(d_model * 2)
        else:
            self.reference_points = nn.Linear(d_model, 2)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # spec: tr 58-68 (xavier on every >1-d parameter, then the attention modules' own init)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        if not self.two_stage:
            nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
            nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.normal_(self.level_embed)

    @staticmethod
    def valid_ratio(mask: Tensor) -> Tensor:
        """``mask [B, H, W]`` (True = padding) -> ``[B, 2]`` unpadded fraction (w, h) (spec: tr 117-124)."""
        _, h, w = mask.shape
        valid_h = (~mask[:, :, 0]).sum(1).float() / h
        valid_w = (~mask[:, 0, :]).sum(1).float() / w
        return torch.stack([valid_w, valid_h], -1)

    def proposal_pos_embed(self, proposals: Tensor) -> Tensor:
        """Sine embedding of unactivated proposals ``[B, K, 4]`` -> ``[B, K, 2 * d_model]``
        (128 frequencies per coordinate, temperature 10000, of sigmoid(p) * 2 pi; spec: tr 70-83)."""
        n = self.d_model // 2
        dim_t = torch.arange(n, dtype=torch.float32, device=proposals.device)
        dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / n)
        pos = proposals.sigmoid()[:, :, :, None] * (2 * math.pi) / dim_t
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=4).flatten(2)

    def encoder_proposals(self, memory: Tensor, mask: Tensor, shapes) -> Tuple[Tensor, Tensor]:
        """One square proposal per encoder token (spec: tr 85-115).

        Returns:
            ``output_memory [B, S, D]`` (zeroed where invalid, then ``enc_output`` + LayerNorm) and
            ``proposals [B, S, 4]`` in logit space, +inf on padding or outside (0.01, 0.99).
        """
        b = memory.shape[0]
        props, cur = [], 0
        for lvl, (h, w) in enumerate(shapes):
            m = mask[:, cur:cur + h * w].view(b, h, w)
            valid_h, valid_w = (~m[:, :, 0]).sum(1), (~m[:, 0, :]).sum(1)
            # arange(h) = linspace(0, h - 1, h) exactly, and follows a traced h
            gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=memory.device),
                                    torch.arange(w, dtype=torch.float32, device=memory.device),
                                    indexing="ij")
            grid = torch.cat([gx[..., None], gy[..., None]], -1)
            scale = torch.cat([valid_w[:, None], valid_h[:, None]], 1).view(b, 1, 1, 2)
            grid = (grid[None].expand(b, -1, -1, -1) + 0.5) / scale
            wh = torch.ones_like(grid) * 0.05 * (2.0 ** lvl)
            props.append(torch.cat((grid, wh), -1).view(b, -1, 4))
            cur += h * w
        props = torch.cat(props, 1)
        valid = ((props > 0.01) & (props < 0.99)).all(-1, keepdim=True)
        props = torch.log(props / (1 - props))
        props = props.masked_fill(mask[..., None], float("inf")).masked_fill(~valid, float("inf"))
        out = memory.masked_fill(mask[..., None], 0.0).masked_fill(~valid, 0.0)
        return self.enc_output_norm(self.enc_output(out)), props

    def forward(self, srcs: List[Tensor], masks: List[Tensor], pos_embeds: List[Tensor],
                query_embed: Optional[Tensor] = None, attn_mask: Optional[Tensor] = None, num_queries: int = 0,
                dn_tgt: Optional[Tensor] = None, dn_boxes: Optional[Tensor] = None,
                fine: Optional[Tuple[Tensor, Tensor]] = None):
        """Run encoder and decoder.

        Args:
            srcs: L maps ``[B, D, H_l, W_l]`` (projected). masks: L ``[B, H_l, W_l]`` (True = padding).
            pos_embeds: L ``[B, D, H_l, W_l]``.
            query_embed: one-stage ``[Q, 2D]`` (position | content); mixed selection ``[Q, D]`` content.
            attn_mask: ``[Q, Q]`` bool self-attention mask between query groups (hybrid matching).
            num_queries: two-stage: how many top proposals become queries (0 = ``two_stage_num_proposals``).
            dn_tgt, dn_boxes: two-stage, training only: denoising queries appended after the matching ones,
                content ``[B, N, D]`` and reference boxes ``[B, N, 4]`` (cxcywh in [0, 1]); their position
                embedding is the proposals' (``pos_trans`` of the box), as for a proposal query.
            fine: with ``decoder_fine_level``: ``(map [B, D, H_f, W_f], mask [B, H_f, W_f])``, a finer
                projected map that only the decoder samples (its first level; ``memory`` stays the
                encoder's L levels).

        Returns:
            dict: ``hs [Ld, B, Q, D]``, ``init_reference [B, Q, 2 or 4]``, ``inter_references
            [Ld, B, Q, 2 or 4]``, ``memory [B, S, D]``, ``shapes`` (L pairs), ``mask [B, S]``; two-stage
            also ``enc_logits [B, S, C]`` and ``enc_coords_unact [B, S, 4]``.
        """
        # Python ints in eager mode; traced sizes under ONNX export (hoikit/deploy), where every use below
        # (arange, slices, views, topk's k) then follows the input size instead of freezing it
        memory, mask, _, shapes, valid_ratios = encode_levels(self.encoder.layers, self.level_embed, srcs, masks,
                                                              pos_embeds)
        b, _, c = memory.shape
        out = {"memory": memory, "shapes": shapes, "mask": mask}
        if self.two_stage:
            enc_memory, proposals = self.encoder_proposals(memory, mask, shapes)
            nl = self.decoder.num_layers
            enc_logits = self.decoder.class_embed[nl](enc_memory)
            enc_coords = self.decoder.bbox_embed[nl](enc_memory) + proposals
            k = at_most(num_queries or self.two_stage_num_proposals, enc_logits.shape[1])
            top = torch.topk(enc_logits[..., 0], k, dim=1)[1]
            coords = torch.gather(enc_coords, 1, top[..., None].repeat(1, 1, 4)).detach()
            reference_points = coords.sigmoid()
            pos_trans = self.pos_trans_norm(self.pos_trans(self.proposal_pos_embed(coords)))
            query_pos, tgt = torch.split(pos_trans, c, dim=2)
            if self.mixed_selection:   # H-DETR: learned content, position from the proposals
                tgt = query_embed[:k].unsqueeze(0).expand(b, -1, -1)
            if dn_tgt is not None:     # DN-DETR: noised ground-truth boxes as extra 4-d anchors
                dn_pos = self.pos_trans_norm(self.pos_trans(self.proposal_pos_embed(inverse_sigmoid(dn_boxes))))
                query_pos = torch.cat([query_pos, dn_pos[..., :c]], 1)
                tgt = torch.cat([tgt, dn_tgt], 1)
                reference_points = torch.cat([reference_points, dn_boxes], 1)
            out.update(enc_logits=enc_logits, enc_coords_unact=enc_coords)
        else:
            if dn_tgt is not None:
                raise ValueError("denoising queries need the two-stage decoder (4-d reference boxes)")
            query_pos, tgt = torch.split(query_embed, c, dim=1)
            query_pos = query_pos.unsqueeze(0).expand(b, -1, -1)
            tgt = tgt.unsqueeze(0).expand(b, -1, -1)
            reference_points = self.reference_points(query_pos).sigmoid()
        if self.decoder_fine_level != (fine is not None):
            raise ValueError(f"decoder_fine_level is {self.decoder_fine_level} but the fine map was "
                             f"{'given' if fine is not None else 'not given'}")
        dec_memory, dec_shapes, dec_mask, dec_ratios = memory, shapes, mask, valid_ratios
        if fine is not None:   # the decoder's extra first level: the fine map's tokens as they are
            fmap, fmask = fine
            dec_memory = torch.cat([fmap.flatten(2).transpose(1, 2), memory], 1)
            dec_shapes = [(fmap.shape[-2], fmap.shape[-1])] + list(shapes)
            dec_mask = torch.cat([fmask.flatten(1), mask], 1)
            dec_ratios = torch.cat([self.valid_ratio(fmask)[:, None], valid_ratios], 1)
        hs, inter = self.decoder(tgt, reference_points, dec_memory, dec_shapes, dec_ratios, query_pos, dec_mask,
                                 attn_mask)
        out.update(hs=hs, init_reference=reference_points, inter_references=inter)
        return out


def encode_levels(layers: nn.ModuleList, level_embed: Tensor, srcs: List[Tensor], masks: List[Tensor],
                  pos_embeds: List[Tensor]):
    """The deformable encoder over ``L`` projected maps: flatten the levels, add each level's embedding
    to its positions, and run ``layers`` (spec: tr 127-160). Shared by :class:`DeformableTransformer`
    and the SG2HOI+ deformable base.

    Args:
        srcs: L maps ``[B, D, H_l, W_l]``. masks: L ``[B, H_l, W_l]`` (True = padding).
        pos_embeds: L ``[B, D, H_l, W_l]``. level_embed: ``[L, D]``.

    Returns:
        ``memory [B, S, D]``, ``mask [B, S]``, ``pos [B, S, D]`` (with the level embedding), ``shapes``
        (L pairs) and ``valid_ratios [B, L, 2]``.
    """
    # Python ints in eager mode; traced sizes under ONNX export (hoikit/deploy)
    shapes = [(s.shape[-2], s.shape[-1]) for s in srcs]
    src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
    mask = torch.cat([m.flatten(1) for m in masks], 1)
    pos = torch.cat([p.flatten(2).transpose(1, 2) + level_embed[lvl].view(1, 1, -1)
                     for lvl, p in enumerate(pos_embeds)], 1)
    valid_ratios = torch.stack([DeformableTransformer.valid_ratio(m) for m in masks], 1)
    refs = encoder_reference_points(shapes, valid_ratios)
    memory = src
    for layer in layers:
        memory = layer(memory, pos, refs, shapes, mask)
    return memory, mask, pos, shapes, valid_ratios
