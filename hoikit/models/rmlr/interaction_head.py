"""UPT's interaction head: pair tokens from the cooperative layer, the competitive layer (RmLR's
Interaction Reasoning Module, IRM), the verb classifier and the detection-score prior.

Module names equal fredzzhang/upt's ``InteractionHead`` (``spatial_head``, ``coop_layer``,
``comp_layer``, ``mbf``, ``mbf_g``, ``box_pair_predictor``) so UPT checkpoints load key for key.
The computation is split in two so RmLR can insert its fused representation (Eq. 9) between
pair-token construction and reasoning:

    s = head.pair_tokens(...)        # UPT pair token s~ (2 x representation)
    o = head.reason(h)               # competitive layer / IRM, Eq. (20) F_IR
    logits = head.box_pair_predictor(o)
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from .pairs import pair_indices
from .spatial import build_spatial_head, compute_spatial_encodings
from .upt_layers import ModifiedEncoder, MultiBranchFusion, TransformerEncoderLayer


class ReasoningStack(nn.Module):
    """Several competitive layers (Table 8 "IRM" > 1); keys ``comp_layer.layers.{i}``."""

    def __init__(self, num_layers: int, hidden_size: int, intermediate_size: int, num_heads: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList([TransformerEncoderLayer(hidden_size, intermediate_size, num_heads, dropout)
                                     for _ in range(num_layers)])

    def forward(self, x: Tensor):
        w = None
        for layer in self.layers:
            x, w = layer(x)
        return x, w


class InteractionHead(nn.Module):
    """UPT interaction head.

    Args:
        num_verbs: number of interaction (verb) classes K.
        object_to_verbs: for each detector object class, the verbs valid with it.
        human_idx: detector class index of "person".
        hidden_state_size: unary token size (DETR hidden dim, 256).
        representation_size: pair-token size (UPT: 1024 = 2 x 512 spatial/fusion size).
        num_channels: channels of the C5 backbone map (2048 for R50/R101).
        num_coop_layers: cooperative layers (UPT: 2).
        num_comp_layers: competitive / IRM layers (UPT: 1; Table 8).
        cardinality: MBF branches (UPT: 16).
    """

    def __init__(self, num_verbs: int, object_to_verbs: Sequence[Sequence[int]], human_idx: int,
                 hidden_state_size: int = 256, representation_size: int = 1024, num_channels: int = 2048,
                 num_coop_layers: int = 2, num_comp_layers: int = 1, num_heads: int = 8,
                 cardinality: int = 16, dropout: float = 0.1):
        super().__init__()
        if representation_size % 2:
            raise ValueError(f"representation_size {representation_size} must be even (two halves of a pair token)")
        half = representation_size // 2
        self.num_verbs = num_verbs
        self.human_idx = human_idx
        self.representation_size = representation_size
        self.object_to_verbs = [list(v) for v in object_to_verbs]
        # valid[c, k] = 1 when verb k forms an HOI class with object class c
        valid = torch.zeros(len(self.object_to_verbs), num_verbs)
        for c, verbs in enumerate(self.object_to_verbs):
            valid[c, verbs] = 1
        self.register_buffer("valid_verbs", valid, persistent=False)

        self.box_pair_predictor = nn.Linear(representation_size, num_verbs)
        self.spatial_head = build_spatial_head(half)
        self.coop_layer = ModifiedEncoder(hidden_state_size, half, num_heads, num_coop_layers, dropout)
        if num_comp_layers == 1:
            self.comp_layer = TransformerEncoderLayer(representation_size, 2 * representation_size, num_heads, dropout)
        else:
            self.comp_layer = ReasoningStack(num_comp_layers, representation_size, 2 * representation_size,
                                             num_heads, dropout)
        self.mbf = MultiBranchFusion(hidden_state_size * 2, half, half, cardinality)
        self.mbf_g = MultiBranchFusion(num_channels, half, half, cardinality)

    def pair_tokens(self, unary_tokens: Tensor, boxes: Tensor, labels: Tensor, global_features: Tensor,
                    image_size: Tuple[int, int]) -> Tuple[Tensor, Tensor, Tensor, list]:
        """UPT pair tokens s~ of one image.

        Args:
            unary_tokens: ``[N, hidden]`` DETR tokens of the kept boxes (humans first).
            boxes: ``[N, 4]`` xyxy pixels; labels ``[N]`` (humans first).
            global_features: ``[C5]`` globally pooled backbone features of this image.
            image_size: ``(height, width)`` of the unpadded transformed image.

        Returns:
            ``(tokens [P, representation_size], x [P], y [P], coop attention)``; P = 0 when the
            image has no human or fewer than two boxes.
        """
        n = len(boxes)
        n_h = int((labels == self.human_idx).sum())
        if n_h == 0 or n <= 1:
            empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
            return boxes.new_zeros(0, self.representation_size), empty, empty, []
        return self.pair_tokens_nonempty(unary_tokens, boxes, labels, global_features, image_size)

    def pair_tokens_nonempty(self, unary_tokens: Tensor, boxes: Tensor, labels: Tensor, global_features: Tensor,
                             image_size) -> Tuple[Tensor, Tensor, Tensor, list]:
        """:meth:`pair_tokens` for an image with a human and at least two boxes, without Python
        branches on tensor values (the ONNX interaction graph traces it; ``image_size`` may be a
        ``[2]`` tensor there)."""
        n = boxes.shape[0]
        gx, gy = torch.meshgrid(torch.arange(n, device=boxes.device), torch.arange(n, device=boxes.device),
                                indexing="ij")
        gx, gy = gx.flatten(), gy.flatten()
        spatial = self.spatial_head(compute_spatial_encodings(boxes[gx], boxes[gy], image_size)).reshape(n, n, -1)
        unary, attn = self.coop_layer(unary_tokens, spatial)
        x, y = pair_indices(labels, self.human_idx)
        tokens = torch.cat([
            self.mbf(torch.cat([unary[x], unary[y]], 1), spatial[x, y]),
            self.mbf_g(global_features[None], spatial[x, y]),
        ], dim=1)
        return tokens, x, y, attn

    def reason(self, tokens: Tensor) -> Tuple[Tensor, Tensor]:
        """Competitive layer(s) over the pair tokens of one image: ``[P, R] -> ([P, R], attention)``."""
        if len(tokens) == 0:
            return tokens, None
        return self.comp_layer(tokens)

    def prior(self, x: Tensor, y: Tensor, scores: Tensor, labels: Tensor, power: float) -> Tensor:
        """Prior ``[2, P, K]``: ``(s_h^p, s_o^p)`` on verbs valid for the object class, 0 elsewhere."""
        valid = self.valid_verbs[labels[y]]                  # [P, K]
        return torch.stack([valid * scores[x, None].pow(power), valid * scores[y, None].pow(power)])
