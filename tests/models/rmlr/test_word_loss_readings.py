"""The two readings of the word-level loss L_w = D_L1(V_a, V^_a) (Eq. 16/17; issue 12, item 5).

``joint`` (literal): both sides trainable, so L_w also moves the cross-attention (the teacher side)
and can fall by collapsing both sides without teaching the visual features. ``detached``: V^_a is a
stop-gradient teacher; L_w moves only V_a. In both readings L_w's gradient must reach the visual
features (the IRE for L_w^a, the IRM for L_w^m)."""
import pytest
import torch

from hoikit.config import load_config
from hoikit.errors import ConfigError
from rmlr_tiny import build_tiny, targets_from_detections, tiny_images

torch.set_num_threads(1)


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad for n, p in model.named_parameters()}


def _nonzero(grads, prefix):
    return any(g is not None and bool(g.abs().sum() > 0) for n, g in grads.items() if n.startswith(prefix))


@pytest.mark.parametrize("word_target", ["joint", "detached"])
def test_word_loss_gradient_reaches_the_visual_features(word_target, tiny_meta, tiny_bert_dir):
    model = build_tiny(tiny_meta, "full", tiny_bert_dir, word_target=word_target)
    images = tiny_images()
    targets = targets_from_detections(model, images)
    g = _grads(model, model(images, targets)["loss_w_a"])
    assert _nonzero(g, "ire.")                                   # Eq. (17): M^v = IRE output m
    assert _nonzero(g, "cml_ire.self_attn.")
    teacher_moved = _nonzero(g, "cml_ire.cross_attn.")
    g = _grads(model, model(images, targets)["loss_w_m"])
    assert _nonzero(g, "interaction_head.comp_layer.")          # Eq. (16): O^v = IRM output
    assert _nonzero(g, "ire.")                                   # through H = FC(cat(g, s, m)) (Eq. 9)
    teacher_moved_m = _nonzero(g, "cml_irm.cross_attn.")
    # the teacher side (cross-attention) is moved by L_w only in the joint reading
    assert teacher_moved == teacher_moved_m == (word_target == "joint")


def test_detached_teacher_is_trained_by_language_reasoning_or_frozen(tiny_meta, tiny_bert_dir):
    on = build_tiny(tiny_meta, "full", tiny_bert_dir, word_target="detached", language_reasoning=True)
    off = build_tiny(tiny_meta, "full", tiny_bert_dir, word_target="detached", language_reasoning=False)
    # the IRE teacher has no loss of its own: frozen at init; the IRM teacher is frozen unless
    # language_reasoning classifies its output (loss_hoi_lang)
    assert not any(p.requires_grad for p in on.cml_ire.cross_attn.parameters())
    assert all(p.requires_grad for p in on.cml_irm.cross_attn.parameters())
    assert not any(p.requires_grad for p in off.cml_irm.cross_attn.parameters())
    images = tiny_images()
    targets = targets_from_detections(on, images)
    g = _grads(on, on(images, targets)["loss_hoi_lang"])
    assert _nonzero(g, "cml_irm.cross_attn.")


def test_detached_word_loss_equals_the_joint_value(tiny_meta, tiny_bert_dir):
    """Same weights, same forward: the readings differ in gradients only, not in the loss value."""
    a = build_tiny(tiny_meta, "full", tiny_bert_dir, word_target="joint").eval()
    b = build_tiny(tiny_meta, "full", tiny_bert_dir, word_target="detached").eval()
    b.load_state_dict(a.state_dict())
    images = tiny_images()
    targets = targets_from_detections(a, images)
    a.train(), b.train()
    for m in (a, b):        # no dropout in the tiny model's branches: make it explicit
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    la, lb = a(images, targets), b(images, targets)
    for k in ("loss_w_a", "loss_w_m"):
        assert torch.allclose(la[k], lb[k], atol=1e-6), k


def test_unknown_word_target_is_a_config_error():
    with pytest.raises(ConfigError, match="config key 'model.rmlr.word_target': Invalid value 'teacher'"):
        load_config(None, ["model.arch=rmlr", "model.rmlr.word_target=teacher"])   # refused when the config loads
