"""benchmarks/cost.py counts CPU scaled-dot-product attention (RmLR's IRE encoder) by hand formula."""
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hoikit.models.rmlr.relation_encoder import InteractiveRelationEncoder

_spec = importlib.util.spec_from_file_location("cost_sdpa", Path(__file__).parents[2] / "benchmarks" / "cost.py")
cost = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cost)


class Attend(nn.Module):
    def forward(self, q, k, v, keep):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep)


def test_cpu_sdpa_macs_match_hand_count_with_and_without_mask():
    b, h, s_q, s_k, d = 2, 3, 5, 7, 4
    q, k, v = torch.randn(b, h, s_q, d), torch.randn(b, h, s_k, d), torch.randn(b, h, s_k, d)
    keep = torch.ones(b, 1, 1, s_k, dtype=torch.bool)
    m = Attend()
    for mask in (None, keep):
        with torch.inference_mode():
            r = cost.count_macs(m, lambda: m(q, k, v, mask))
        assert r["total"] == 2 * b * h * s_q * s_k * d          # q k^T and attn v


class Host(nn.Module):
    """Calls ``ire.encode`` the way RmLR does (a method, not ``ire(...)``)."""

    def __init__(self, ire):
        super().__init__()
        self.ire = ire

    def forward(self, feats, mask):
        return self.ire.encode(feats, mask, None)


def test_ire_encoder_macs_include_attention_and_are_attributed_to_the_ire():
    c, d, ff, hw = 16, 32, 48, (4, 5)
    ire = InteractiveRelationEncoder(c, d_model=d, out_dim=8, num_layers=2, nheads=4, dim_feedforward=ff).eval()
    host = Host(ire)
    feats, mask = torch.randn(1, c, *hw), torch.zeros(1, *hw, dtype=torch.bool)
    s = hw[0] * hw[1]
    with torch.inference_mode():
        r = cost.count_macs(host, lambda: host(feats, mask))
    proj = s * c * d                                           # 1x1 input projection
    per_layer = s * d * 3 * d + s * d * d + 2 * s * d * ff + 2 * s * s * d   # qkv, out, FFN, attention
    assert r["total"] == proj + 2 * per_layer
    assert r["children"] == {"ire": r["total"]}                # nothing counted outside a submodule
