"""Tiny UPT / RmLR end to end: ablation switches, masked RoI, prior fusion, training, inference
without the text encoder."""
import pytest
import torch

from hoikit.errors import TrainingError
from hoikit.models.rmlr.build import ABLATIONS
from hoikit.models.rmlr.relation_encoder import InteractiveRelationEncoder

from rmlr_tiny import build_tiny, targets_from_detections, tiny_config, tiny_images

# loss_hoi_lang: language_reasoning (default on) classifies the language-enhanced IRM tokens, which
# exist where the IRM word-level alignment does
EXPECTED_LOSSES = {
    "plain": {"loss_hoi"},
    "wo_cl": {"loss_hoi"},
    "wo_rm": {"loss_hoi", "loss_s_m", "loss_w_m", "loss_hoi_lang"},
    "wo_wa": {"loss_hoi", "loss_s_a", "loss_s_m"},
    "wo_sa": {"loss_hoi", "loss_w_a", "loss_w_m", "loss_hoi_lang"},
    "wo_irm_kt": {"loss_hoi", "loss_s_a", "loss_w_a"},
    "wo_ire_kt": {"loss_hoi", "loss_s_m", "loss_w_m", "loss_hoi_lang"},
    "full": {"loss_hoi", "loss_s_a", "loss_w_a", "loss_s_m", "loss_w_m", "loss_hoi_lang"},
}


def _grad_reaches(model, loss, prefix):
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return any(p.grad is not None and bool(p.grad.abs().sum() > 0)
               for n, p in model.named_parameters() if n.startswith(prefix))


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_ablation_switches_change_exactly_the_intended_behaviour(ablation, tiny_meta, tiny_bert_dir):
    """Each Table 2 row: the loss terms it has, that each alignment term depends on the text and
    teaches the part it names (``_a``: the IRE, Eq. 17/19; ``_m``: the IRM, Eq. 16/18), and that the
    IRE feeds the classifier exactly in the rows that have it."""
    model = build_tiny(tiny_meta, ablation, tiny_bert_dir)
    images = tiny_images()
    targets = targets_from_detections(model, images)          # verb 0 "hold" in every image
    torch.manual_seed(0)
    losses = model(images, targets)
    assert set(losses) == EXPECTED_LOSSES[ablation]
    assert all(torch.isfinite(v) for v in losses.values())
    use_ire = ablation not in ("plain", "wo_rm")
    assert _grad_reaches(model, losses["loss_hoi"], "ire.") == use_ire
    # the same pairs described as "kick" (valid for a ball) or "drink" (cup): other sentences
    other = [dict(t, hois=torch.tensor([[0, 1, 1 if int(t["labels"][1]) == 1 else 2]])) for t in targets]
    torch.manual_seed(0)
    moved = model(images, other)
    for k in EXPECTED_LOSSES[ablation] - {"loss_hoi", "loss_hoi_lang"}:
        assert not torch.allclose(losses[k], moved[k]), f"{k} does not depend on the text"
        assert _grad_reaches(model, losses[k], "ire." if k.endswith("_a") else "interaction_head.comp_layer."), k
    if ablation == "plain":                                    # exactly UPT's modules
        assert {k.split(".")[0] for k in model.state_dict()} == {"detector", "interaction_head"}
    # the text encoder is never part of the weights
    assert not any("text_encoder" in k or k.startswith("model.") for k in model.state_dict())


def test_eval_scores_are_sigmoid_times_prior_on_valid_verbs(tiny_meta):
    model = build_tiny(tiny_meta, "plain").eval()
    images = tiny_images()
    with torch.no_grad():
        res = model._pairs(images)
        outs = model(images)
    valid = {0: [], 1: [0, 1], 2: [0, 2]}                  # object class -> verbs (tiny_meta)
    for r, o in zip(res, outs):
        assert len(r["x"]) > 0
        s = r["props"].scores
        for i, (h, ob) in enumerate(o["pairs"].tolist()):
            assert int(r["props"].labels[h]) == 0          # subject is a human
            for k in range(3):
                exp = 0.0
                if k in valid[int(o["labels"][ob])]:
                    exp = float(torch.sigmoid(r["logits"][i, k]) * s[h] ** 2.8 * s[ob] ** 2.8)
                assert abs(float(o["verb_scores"][i, k]) - exp) < 1e-6


def test_postprocess_scales_to_original_pixels(tiny_meta):
    model = build_tiny(tiny_meta, "plain").eval()
    images = tiny_images()
    with torch.no_grad():
        outs = model(images)
    preds = model.postprocess(outs, [dict(orig_size=torch.tensor([128, 128])), (128, 96)])
    assert torch.allclose(torch.as_tensor(preds[0].boxes), outs[0]["boxes"] * 2, atol=1e-4)
    assert preds[1].verb_scores.shape == tuple(outs[1]["verb_scores"].shape)


def test_masked_roi_ignores_features_outside_both_boxes():
    torch.manual_seed(0)
    ire = InteractiveRelationEncoder(8, d_model=8, out_dim=4, num_layers=1, nheads=2, dim_feedforward=16).eval()
    x_e = torch.randn(8, 6, 6)
    valid = torch.ones(6, 6, dtype=torch.bool)
    bh, bo = torch.tensor([[0., 0., 16., 16.]]), torch.tensor([[32., 32., 48., 48.]])   # stride 8
    m = ire.relation_features(x_e, valid, bh, bo, stride=8.0)
    x2 = x_e.clone()
    keep = torch.zeros(6, 6, dtype=torch.bool)
    keep[0:2, 0:2] = True                                   # human cells (centres 4, 12)
    keep[4:6, 4:6] = True                                   # object cells (centres 36, 44)
    x2[:, ~keep] = torch.randn(8, int((~keep).sum())) * 100
    assert torch.allclose(ire.relation_features(x2, valid, bh, bo, 8.0), m, atol=1e-5)
    x3 = x_e.clone()
    x3[:, 0, 0] += 10                                       # inside the human box: m changes
    assert not torch.allclose(ire.relation_features(x3, valid, bh, bo, 8.0), m, atol=1e-3)


def test_training_step_reduces_loss(tiny_meta, tiny_bert_dir):
    model = build_tiny(tiny_meta, "full", tiny_bert_dir)
    images = tiny_images()
    targets = targets_from_detections(model, images)
    params = [p for p in model.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in model.detector.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    torch.manual_seed(1)
    first = None
    for _ in range(12):
        loss = sum(model(images, targets).values())
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = float(sum(model(images, targets).values()).detach())
    assert last < 0.8 * first


def test_inference_never_creates_the_text_encoder(tiny_meta, tiny_bert_dir, monkeypatch):
    import hoikit.models.text as text

    model = build_tiny(tiny_meta, "full", tiny_bert_dir).eval()

    def boom(*a, **k):
        raise AssertionError("text encoder instantiated at inference")

    monkeypatch.setattr(text.FrozenTextEncoder, "__init__", boom)
    with torch.no_grad():
        outs = model(tiny_images())
    assert model._text_encoder is None and len(outs) == 2
    with pytest.raises(AssertionError, match="text encoder instantiated"):
        model.train()
        model(tiny_images(), targets_from_detections(model, tiny_images()))


def test_inference_build_has_no_cross_modal_modules_and_predicts_identically(tiny_meta, tiny_bert_dir, tmp_path):
    from hoikit.config import to_dict
    from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
    from hoikit.engine.inference import model_from_checkpoint

    full = build_tiny(tiny_meta, "full", tiny_bert_dir).eval()
    cml = {n: p.numel() for n, p in full.named_parameters() if n.startswith(("cml_ire.", "cml_irm."))}
    assert any(n.startswith("cml_ire.") for n in cml) and any(n.startswith("cml_irm.") for n in cml)
    path = save_checkpoint(model_checkpoint(full, to_dict(tiny_config("full", tiny_bert_dir)), tiny_meta.to_dict()),
                           tmp_path / "full.pt")
    slim, _, _ = model_from_checkpoint(path)
    names = [n for n, _ in slim.named_parameters()]
    assert not [n for n in names if "cml" in n]
    n_full = sum(p.numel() for p in full.parameters())
    assert sum(p.numel() for p in slim.parameters()) == n_full - sum(cml.values())
    slim.eval()
    with torch.no_grad():
        a, b = full(tiny_images()), slim(tiny_images())
    assert sum(len(o["pairs"]) for o in a) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    # an inference build cannot silently train without its transfer losses
    slim.train()
    with pytest.raises(TrainingError, match=r"^RmLR was built for inference \(no cml_ire\)"):
        slim(tiny_images(), targets_from_detections(slim, tiny_images()))
