"""The IRE's fast inference path (SDPA encoder layers) gives the outputs of the plain formulas.

References written out here, independent of the module's code:
- Eq. (4): post-norm transformer layers with explicit per-head ``softmax(q k^T / sqrt(d_h)) v``
  where padded keys get ``-inf``, and PyTorch's stock ``nn.TransformerEncoder``;
- Eq. (5): the masked RoI materialised as ``[P, d, h, w]`` with a cell-by-cell box-centre test,
  averaged over kept cells, then the FC.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from hoikit.models.rmlr.relation_encoder import InteractiveRelationEncoder, encoder_layer_sdpa

from rmlr_tiny import build_tiny, tiny_images


def reference_layer(layer, x, pad):
    """Post-norm encoder layer, eval mode, attention written out. x ``[B, S, d]``, pad ``[B, S]``."""
    b, s, d = x.shape
    h = layer.self_attn.num_heads
    dh = d // h
    w, bias = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
    q, k, v = (x @ w[i * d:(i + 1) * d].T + bias[i * d:(i + 1) * d] for i in range(3))
    heads = []
    for j in range(h):
        sl = slice(j * dh, (j + 1) * dh)
        logits = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(dh)          # [B, S, S]
        logits = logits.masked_fill(pad[:, None, :], float("-inf"))
        heads.append(logits.softmax(-1) @ v[..., sl])
    a = layer.self_attn.out_proj(torch.cat(heads, -1))
    x = F.layer_norm(x + a, (d,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    f = layer.linear2(torch.relu(layer.linear1(x)))
    return F.layer_norm(x + f, (d,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)


def padded_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, 16, 4, 5, generator=g)
    pos = torch.randn(2, 32, 4, 5, generator=g)
    mask = torch.zeros(2, 4, 5, dtype=torch.bool)
    mask[1, 3:, :] = True                                   # image 1: last row and two columns padded
    mask[1, :, 3:] = True
    return feats, mask, pos


@pytest.mark.parametrize("padded", [True, False])
def test_eval_encoder_equals_written_out_attention_and_stock_module(padded):
    torch.manual_seed(0)
    ire = InteractiveRelationEncoder(16, d_model=32, out_dim=8, num_layers=2, nheads=4, dim_feedforward=48,
                                     dropout=0.1).eval()
    feats, mask, pos = padded_inputs()
    if not padded:
        mask[:] = False
    with torch.no_grad():
        fast = ire.encode(feats, mask, pos)                                       # [B, d, h, w]
        seq = (ire.input_proj(feats) + pos).flatten(2).transpose(1, 2)
        ref = seq
        for layer in ire.encoder.layers:
            ref = reference_layer(layer, ref, mask.flatten(1))
        stock = torch.nn.TransformerEncoder.forward(ire.encoder, seq, src_key_padding_mask=mask.flatten(1))  # PyTorch's own
    ref = ref.transpose(1, 2).reshape(fast.shape)
    stock = stock.transpose(1, 2).reshape(fast.shape)
    assert fast.shape == (2, 32, 4, 5)
    assert torch.allclose(fast, ref, atol=1e-5, rtol=0)
    assert torch.allclose(fast, stock, atol=1e-5, rtol=0)
    if padded:  # padded keys really are ignored: changing padded inputs leaves valid cells unchanged
        feats2 = feats.clone()
        feats2[1][:, mask[1]] += 100.0
        with torch.no_grad():
            moved = ire.encode(feats2, mask, pos)
        assert torch.allclose(moved[1][:, ~mask[1]], fast[1][:, ~mask[1]], atol=1e-5, rtol=0)
        assert not torch.allclose(moved[1][:, mask[1]], fast[1][:, mask[1]], atol=1e-2)


def test_sdpa_layer_supports_pre_norm_like_the_stock_layer():
    torch.manual_seed(1)
    layer = torch.nn.TransformerEncoderLayer(16, 2, 24, 0.0, batch_first=True, norm_first=True).eval()
    x = torch.randn(2, 7, 16)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[0, 5:] = True
    with torch.no_grad():
        assert torch.allclose(encoder_layer_sdpa(layer, x, pad), layer(x, src_key_padding_mask=pad)[:, :],
                              atol=1e-5, rtol=0)


def test_training_mode_keeps_the_stock_module_with_dropout():
    torch.manual_seed(0)
    ire = InteractiveRelationEncoder(16, d_model=32, out_dim=8, num_layers=1, nheads=4, dim_feedforward=48,
                                     dropout=0.5).train()
    feats, mask, pos = padded_inputs()
    out = ire.encode(feats, mask, pos)
    out.sum().backward()
    assert ire.encoder.layers[0].self_attn.in_proj_weight.grad is not None
    with torch.no_grad():
        ire.eval()
        assert not torch.allclose(out, ire.encode(feats, mask, pos), atol=1e-3)   # dropout was on


def reference_relation_features(ire, x_e, valid, boxes_h, boxes_o, stride):
    """Eq. (5) cell by cell: keep cell (r, c) when its centre is inside the human or the object box,
    or it holds either box's centre; zero the rest; average the kept valid cells; FC."""
    d, h, w = x_e.shape
    rows = []
    for bh, bo in zip(boxes_h.tolist(), boxes_o.tolist()):
        masked = torch.zeros(d, h, w)
        for r in range(h):
            for c in range(w):
                cx, cy = (c + 0.5) * stride, (r + 0.5) * stride
                keep = False
                for x0, y0, x1, y1 in (bh, bo):
                    centre = (min(int(((x0 + x1) / 2) // stride), w - 1), min(int(((y0 + y1) / 2) // stride), h - 1))
                    keep |= (x0 <= cx <= x1 and y0 <= cy <= y1) or centre == (c, r)
                if keep and bool(valid[r, c]):
                    masked[:, r, c] = x_e[:, r, c]
        kept = (masked.abs().sum(0) > 0).sum().clamp(min=1)
        rows.append(masked.sum((1, 2)) / kept)
    return ire.fc_m(torch.stack(rows))


def test_relation_features_equal_the_materialised_masked_roi():
    torch.manual_seed(0)
    ire = InteractiveRelationEncoder(16, d_model=32, out_dim=8, num_layers=1, nheads=4, dim_feedforward=48).eval()
    x_e = torch.randn(32, 4, 5) + 3.0                   # nonzero everywhere, so "kept" = nonzero cells
    valid = torch.ones(4, 5, dtype=torch.bool)
    valid[3:, :] = False
    bh = torch.tensor([[0.0, 0.0, 20.0, 30.0], [33.0, 2.0, 36.0, 5.0], [10.0, 10.0, 40.0, 40.0]])
    bo = torch.tensor([[25.0, 5.0, 39.0, 15.0], [1.0, 1.0, 3.0, 3.0], [0.0, 24.0, 8.0, 31.0]])
    with torch.no_grad():
        got = ire.relation_features(x_e, valid, bh, bo, stride=8.0)
        ref = reference_relation_features(ire, x_e, valid, bh, bo, stride=8.0)
    assert got.shape == (3, 8)
    assert torch.allclose(got, ref, atol=1e-5, rtol=0)


def test_tiny_rmlr_outputs_equal_with_the_stock_encoder_path(tiny_meta):
    model = build_tiny(tiny_meta).eval()
    images = tiny_images(2)                             # 64x64 and 48x64: the second one is padded
    with torch.no_grad():
        fast = model(images)
        model.ire.train()                               # stock nn.TransformerEncoder; tiny config has dropout 0
        assert model.ire.encoder.layers[0].dropout.p == 0.0
        stock = model(images)
        model.ire.eval()
    assert sum(len(o["pairs"]) for o in fast) > 0
    for a, b in zip(fast, stock):
        assert torch.equal(a["pairs"], b["pairs"])
        assert torch.allclose(a["verb_scores"], b["verb_scores"], atol=1e-5, rtol=0)
