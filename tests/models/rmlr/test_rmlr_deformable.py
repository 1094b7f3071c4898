"""UPT / RmLR on a frozen Deformable DETR (``model.detr.type = deformable``): the same contract as on
DETR (per-query tokens, boxes, sigmoid class scores, the C5 map for the IRE), trained and evaluated."""
import torch

from hoikit.models.deformable_detr import DeformableDETR
from hoikit.models.rmlr.build import build_rmlr

from rmlr_tiny import targets_from_detections, tiny_config, tiny_images


def build_deformable(meta, ablation, text_dir, seed=0):
    cfg = tiny_config(ablation, text_dir)
    d = cfg.model.detr
    d.type, d.backbone, d.num_feature_levels, d.with_box_refine, d.two_stage = "deformable", "small_res", 3, True, True
    d.num_queries, d.nheads = 12, 4
    torch.manual_seed(seed)
    model = build_rmlr(cfg, meta)
    with torch.no_grad():   # spread the random detector's classes so NMS keeps several boxes
        g = torch.Generator().manual_seed(seed)
        for c in model.detector.class_embed:
            c.weight.copy_(torch.randn(c.weight.shape, generator=g) * 3.0)
            c.bias.zero_()
    return model


def test_rmlr_trains_and_predicts_on_deformable_detr(tiny_meta, tiny_bert_dir):
    model = build_deformable(tiny_meta, "full", tiny_bert_dir)
    assert isinstance(model.detector, DeformableDETR)
    assert not any(p.requires_grad for p in model.detector.parameters())
    images = tiny_images()
    targets = targets_from_detections(model, images)
    losses = model(images, targets)
    # language reasoning (Sec. 3.5) is on by default: its HOI loss on language-enhanced tokens too
    assert {"loss_hoi", "loss_hoi_lang", "loss_s_a", "loss_w_a", "loss_s_m", "loss_w_m"} == set(losses)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    first = float(sum(losses.values()).detach())
    for _ in range(10):
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(sum(model(images, targets).values()).detach()) < 0.8 * first
    model.eval()
    with torch.no_grad():
        out = model(images)
        det = model.detector(images)
    # kept detections carry the detector's own sigmoid scores (best class per query)
    best = det["pred_logits"][0].sigmoid().max(-1).values
    assert all(any(abs(float(s) - float(b)) < 1e-6 for b in best) for s in out[0]["scores"])
    assert out[0]["verb_scores"].shape[1] == len(tiny_meta.verbs)
