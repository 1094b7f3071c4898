"""UPT's building blocks, with the module names of fredzzhang/upt and fredzzhang/pocket so that
UPT checkpoints load key for key.

- :class:`MultiBranchFusion` (``mbf``, ``mbf_g``): appearance x spatial fusion, 16 branches.
- :class:`ModifiedEncoder` (``coop_layer``): the cooperative layer, attention over unary tokens
  conditioned on pairwise spatial features.
- :class:`TransformerEncoderLayer` (``comp_layer``): pocket's post-norm encoder layer used as the
  competitive layer over pair tokens (LayerNorm eps 1e-12, GELU FFN).
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiBranchFusion(nn.Module):
    """``relu(sum_k fc_3[k](relu(fc_1[k](a) * fc_2[k](s))))`` over ``cardinality`` branches.

    Args:
        appearance_size: size of appearance features ``a``.
        spatial_size: size of spatial features ``s``.
        hidden_state_size: output size (each branch has ``hidden_state_size / cardinality``).
        cardinality: number of branches (UPT: 16).
    """

    def __init__(self, appearance_size: int, spatial_size: int, hidden_state_size: int, cardinality: int):
        super().__init__()
        sub = hidden_state_size // cardinality
        if sub * cardinality != hidden_state_size:
            raise ValueError(f"hidden_state_size {hidden_state_size} not divisible by cardinality {cardinality}")
        self.fc_1 = nn.ModuleList([nn.Linear(appearance_size, sub) for _ in range(cardinality)])
        self.fc_2 = nn.ModuleList([nn.Linear(spatial_size, sub) for _ in range(cardinality)])
        self.fc_3 = nn.ModuleList([nn.Linear(sub, hidden_state_size) for _ in range(cardinality)])

    def forward(self, appearance: Tensor, spatial: Tensor) -> Tensor:
        """appearance ``[P or 1, A]``, spatial ``[P, S]`` -> ``[P, hidden_state_size]``."""
        return F.relu(torch.stack([
            f3(F.relu(f1(appearance) * f2(spatial)))
            for f1, f2, f3 in zip(self.fc_1, self.fc_2, self.fc_3)
        ]).sum(dim=0))


class FeedForwardNetwork(nn.Module):
    """pocket FFN: ``norm(x + dropout(Linear-GELU-Linear(x)))``, LayerNorm eps 1e-12."""

    def __init__(self, hidden_size: int, intermediate_size: int, dropout_prob: float = 0.1):
        super().__init__()
        self.ffn = nn.Sequential(nn.Linear(hidden_size, intermediate_size), nn.GELU(),
                                 nn.Linear(intermediate_size, hidden_size))
        self.dropout = nn.Dropout(dropout_prob)
        self.norm = nn.LayerNorm(hidden_size, eps=1e-12)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.dropout(self.ffn(x)))


class ModifiedEncoderLayer(nn.Module):
    """One cooperative layer: unary tokens exchange messages weighted by attention computed from
    the two unary tokens and their pairwise (spatial) feature.

    For receiver ``j`` and head ``h``: ``w_ij = softmax_i(attn_h([u_i, u_j, p_ij]))``,
    ``m_ij = message_h(u_i * p_ij)``, ``x_j <- norm(x_j + aggregate(relu(cat_h sum_i w_ij m_ij)))``
    then the FFN (exactly UPT's ``ModifiedEncoderLayer``).

    Args:
        hidden_size: unary token size (256).
        representation_size: pairwise feature size (512).
        num_heads: attention heads (8).
    """

    def __init__(self, hidden_size: int = 256, representation_size: int = 512, num_heads: int = 8,
                 dropout_prob: float = 0.1):
        super().__init__()
        if representation_size % num_heads:
            raise ValueError(f"representation_size {representation_size} not divisible by {num_heads} heads")
        self.sub_repr_size = representation_size // num_heads
        self.num_heads = num_heads
        self.unary = nn.Linear(hidden_size, representation_size)
        self.pairwise = nn.Linear(representation_size, representation_size)
        self.attn = nn.ModuleList([nn.Linear(3 * self.sub_repr_size, 1) for _ in range(num_heads)])
        self.message = nn.ModuleList([nn.Linear(self.sub_repr_size, self.sub_repr_size) for _ in range(num_heads)])
        self.aggregate = nn.Linear(representation_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout_prob)
        self.ffn = FeedForwardNetwork(hidden_size, hidden_size * 4, dropout_prob)

    def _heads(self, x: Tensor) -> Tensor:
        """``[..., R] -> [H, ..., R/H]``."""
        x = x.view(*x.shape[:-1], self.num_heads, self.sub_repr_size)
        return x.movedim(x.dim() - 2, 0)        # positive dim: the ONNX Transpose rejects perm -2

    def forward(self, x: Tensor, y: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """x ``[N, hidden]`` unary tokens; y ``[N, N, R]`` pairwise features.

        Returns:
            ``(x [N, hidden], weights: H tensors [N, N, 1])``.
        """
        n = x.shape[0]                                  # not len(): dynamic under ONNX tracing
        u_r = self._heads(F.relu(self.unary(x)))        # [H, N, L]
        p_r = self._heads(F.relu(self.pairwise(y)))     # [H, N, N, L]
        i, j = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(n, device=x.device), indexing="ij")
        attn_features = torch.cat([u_r[:, i], u_r[:, j], p_r], dim=-1)  # [H, N, N, 3L]
        weights = [F.softmax(layer(f), dim=0) for f, layer in zip(attn_features, self.attn)]
        u_rep = u_r.unsqueeze(2).expand(-1, -1, n, -1)
        messages = [layer(a * b) for a, b, layer in zip(u_rep, p_r, self.message)]
        agg = self.aggregate(F.relu(torch.cat([(w * m).sum(dim=0) for w, m in zip(weights, messages)], dim=-1)))
        x = self.norm(x + self.dropout(agg))
        return self.ffn(x), weights


class ModifiedEncoder(nn.Module):
    """Stack of :class:`ModifiedEncoderLayer` (``mod_enc.{i}``); UPT uses 2 layers."""

    def __init__(self, hidden_size: int = 256, representation_size: int = 512, num_heads: int = 8,
                 num_layers: int = 2, dropout_prob: float = 0.1):
        super().__init__()
        self.mod_enc = nn.ModuleList([ModifiedEncoderLayer(hidden_size, representation_size, num_heads, dropout_prob)
                                      for _ in range(num_layers)])

    def forward(self, x: Tensor, y: Tensor) -> Tuple[Tensor, list]:
        attn = []
        for layer in self.mod_enc:
            x, w = layer(x, y)
            attn.append(w)
        return x, attn


class SelfAttention(nn.Module):
    """pocket scaled dot-product self-attention over a set ``[N, K]`` (``query/key/value``)."""

    def __init__(self, hidden_size: int, num_heads: int = 8, dropout_prob: float = 0.1):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.sub = hidden_size // num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout_prob)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """x ``[N, K]`` -> ``(messages [N, K], weights [H, N, N])``."""
        def heads(t):
            return t.view(t.shape[0], self.num_heads, self.sub).permute(1, 0, 2)   # shape: dynamic in ONNX
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.sub)
        if attn_mask is not None:
            w = w.masked_fill(attn_mask == 0, -1e9)
        w = self.dropout(F.softmax(w, dim=-1))
        m = torch.matmul(w, v).permute(1, 0, 2).reshape(x.shape[0], -1)
        return m, w


class SelfAttentionOutput(nn.Module):
    """``norm(x + dropout(aggregate(m)))``, LayerNorm eps 1e-12."""

    def __init__(self, hidden_size: int, dropout_prob: float = 0.1):
        super().__init__()
        self.aggregate = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=1e-12)
        self.dropout = nn.Dropout(dropout_prob)

    def forward(self, m: Tensor, x: Tensor) -> Tensor:
        return self.norm(x + self.dropout(self.aggregate(m)))


class SelfAttentionLayer(nn.Module):
    """``attention`` + ``output`` (pocket names)."""

    def __init__(self, hidden_size: int, num_heads: int = 8, dropout_prob: float = 0.1):
        super().__init__()
        self.attention = SelfAttention(hidden_size, num_heads, dropout_prob)
        self.output = SelfAttentionOutput(hidden_size, dropout_prob)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        m, w = self.attention(x, attn_mask)
        return self.output(m, x), w


class TransformerEncoderLayer(nn.Module):
    """pocket's encoder layer (the UPT competitive layer / RmLR IRM): self-attention then FFN.

    Args:
        hidden_size: token size (UPT: 1024).
        intermediate_size: FFN width (UPT: 2048).
    """

    def __init__(self, hidden_size: int = 1024, intermediate_size: int = 2048, num_heads: int = 8,
                 dropout_prob: float = 0.1):
        super().__init__()
        self.attention = SelfAttentionLayer(hidden_size, num_heads, dropout_prob)
        self.ffn = FeedForwardNetwork(hidden_size, intermediate_size, dropout_prob)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """x ``[N, hidden]`` -> ``(x [N, hidden], weights [H, N, N])``."""
        x, w = self.attention(x, attn_mask)
        return self.ffn(x), w
