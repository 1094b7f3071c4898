"""benchmarks/cost.py building blocks on tiny modules: MAC counts against hand-computed values."""
import importlib.util
from pathlib import Path

import torch
from torch import nn

_spec = importlib.util.spec_from_file_location("cost", Path(__file__).parents[2] / "benchmarks" / "cost.py")
cost = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cost)


class ConvLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(5, 4)
        self.unused = nn.Linear(7, 7)

    def forward(self, x, y):
        return self.conv(x), self.fc(y)


def test_macs_of_conv_and_linear_match_hand_count():
    m = ConvLinear().eval()
    x, y = torch.randn(1, 3, 17, 17), torch.randn(2, 5)
    with torch.inference_mode():
        r = cost.count_macs(m, lambda: m(x, y))
    conv = 9 * 9 * 8 * 3 * 3 * 3          # H_out * W_out * C_out * C_in * k * k, H_out = (17 + 2 - 3) // 2 + 1
    linear = 2 * 4 * 5                    # rows * out * in
    assert r["total"] == conv + linear
    assert r["children"] == {"conv": conv, "fc": linear}
    assert r["thop_macs"] == conv + linear
    assert r["thop_params"] == (8 * 27 + 8) + (4 * 5 + 4)   # modules that ran, `unused` not counted


def test_attention_counted_by_flop_counter_but_not_by_thop_rule():
    e, length = 8, 4
    mha = nn.MultiheadAttention(e, 2).eval()
    q = torch.randn(length, 1, e)
    with torch.inference_mode():
        r = cost.count_macs(mha, lambda: mha(q, q, q))
    proj = 4 * length * e * e             # q, k, v and output projections
    scores = 2 * length * length * e      # Q K^T and A V over all heads
    assert r["total"] == proj + scores
    assert r["thop_macs"] == 0 and r["thop_params"] == 0


def test_param_touch_and_interleaving_order():
    m = ConvLinear().eval()
    x, y = torch.randn(1, 3, 9, 9), torch.randn(1, 5)
    with torch.inference_mode():
        p = cost.param_counts(m, lambda: m(x, y))
    assert p["total"] == 8 * 27 + 8 + 24 + 56
    assert p["used"] == 8 * 27 + 8 + 24 and p["unused_modules"] == ["unused"]
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    wall, cpu = cost.interleaved_latency(fns, reps=3, warmup=1)
    assert "".join(calls) == "abc" + "abc" + "bca" + "cab"
    assert all(len(v) == 3 for v in wall.values()) and set(cpu) == set("abc")
