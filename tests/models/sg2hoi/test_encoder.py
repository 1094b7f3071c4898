"""Eq. (4) encoder input, Eq. (5) distillation losses and CLIP preprocessing."""
import torch

from hoikit.models.clip import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, load_clip
from hoikit.models.sg2hoi.encoder import SG2HOIEncoder, VLDistillHead, masked_mean


def _identity_head(source, loss):
    head = VLDistillHead(2, 2, source, loss)
    with torch.no_grad():
        head.proj.weight.copy_(torch.eye(2))
        head.proj.bias.zero_()
    return head


def test_distillation_l1_and_l2_hand_values():
    f_en = torch.tensor([[[3., 4.], [9., 9.]]])            # token 0 = [CLS]
    mask = torch.tensor([[False, False]])
    f_clip = torch.tensor([[8., 6.]])                      # normalised: (0.8, 0.6) vs CLS (0.6, 0.8)
    assert torch.isclose(_identity_head("cls", "l1")(f_en, mask, f_clip), torch.tensor(0.2), atol=1e-6)
    assert torch.isclose(_identity_head("cls", "l2")(f_en, mask, f_clip), torch.tensor(0.04), atol=1e-6)


def test_pooled_feature_ignores_cls_and_padding():
    f_en = torch.tensor([[[100., 0.], [3., 4.], [5., 0.], [-50., 7.]]])
    mask = torch.tensor([[False, False, False, True]])
    head = _identity_head("pool", "l1")
    assert torch.allclose(head.feature(f_en, mask), torch.tensor([[4., 2.]]))       # mean of tokens 1, 2
    assert torch.allclose(masked_mean(f_en, mask), torch.tensor([[36., 4. / 3]]))


def test_encoder_cls_token_comes_from_gap_and_ignores_padding():
    torch.manual_seed(0)
    enc = SG2HOIEncoder(seg_dim=4, d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, num_layers=1).eval()
    v = torch.randn(1, 4, 2, 3)
    mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    mask[:, :, 2] = True                                   # last column is padding
    f_agg = torch.randn(1, 8, 2, 3)
    out, full_mask, pos = enc(v, f_agg, mask)
    assert out.shape == (1, 7, 8) and full_mask.tolist() == [[False, False, False, True, False, False, True]]
    assert pos.shape == (1, 7, 8)
    v2, f2 = v.clone(), f_agg.clone()
    v2[..., 2] += 100.0                                    # change only padded cells
    f2[..., 2] -= 100.0
    out2, _, _ = enc(v2, f2, mask)
    valid = ~full_mask[0]
    assert torch.allclose(out[0, valid], out2[0, valid], atol=1e-5)
    # the [CLS] input the transformer receives is the projected mean over the valid cells (hand GAP)
    seen = []
    hook = enc.encoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    enc(v, f_agg, mask)
    hook.remove()
    tokens = seen[0]                                       # [1 + hw, B, d] (sequence first)
    gap = v[0, :, :, :2].mean((1, 2))                      # C' channels over the 2 x 2 valid cells
    assert torch.allclose(tokens[0, 0], enc.cls_proj(gap), atol=1e-6)
    assert torch.allclose(tokens[1:, 0], f_agg[0].flatten(1).t(), atol=1e-6)   # then the f_agg cells


def test_clip_preprocess_and_towers(tiny_clip_dir):
    clip = load_clip(tiny_clip_dir)
    assert all(not p.requires_grad for p in clip.parameters()) and not clip.train().training
    rgb = torch.tensor([0.2, 0.5, 0.9]).view(3, 1, 1)
    img = ((rgb - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)).expand(3, 40, 70)
    x = clip.preprocess([img])
    assert x.shape == (1, 3, 224, 224)
    exp = (rgb.view(3) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(x[0, :, 100, 7], exp, atol=1e-5)
    assert clip.encode_image([img, img[:, :20]]).shape == (2, clip.embed_dim)
    t = clip.encode_text(["A photo of a horse", "A photo of a cup"])
    assert t.shape == (2, clip.embed_dim) and not torch.allclose(t[0], t[1])
