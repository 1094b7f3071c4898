"""Oracle detections (``model.rmlr.detections=oracle``, analysis only): ground-truth entities as
proposals, unary tokens of the Hungarian-matched DETR queries, eval through collect_predictions,
Predictor refusal, and ``detr`` (default) unchanged."""
import warnings

import pytest
import torch

from hoikit.config import to_dict
from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
from hoikit.engine.inference import Predictor
from hoikit.engine.testing import collect_predictions
from hoikit.errors import ConfigError, DataError
from hoikit.recipes import RECIPES, meta_to_dict
from hoikit.models.rmlr.build import build_rmlr
from hoikit.models.rmlr.model import map_detector_labels
from hoikit.models.rmlr.pairs import detr_boxes_and_scores, select_detections
from rmlr_tiny import build_tiny, tiny_config, tiny_images

torch.set_num_threads(1)


def _gt(im, boxes, labels, hois, index=0):
    h, w = im.shape[1], im.shape[2]
    return dict(boxes=torch.tensor(boxes, dtype=torch.float32), labels=torch.tensor(labels),
                hois=torch.tensor(hois).reshape(-1, 3), size=torch.tensor([w, h]),
                orig_size=torch.tensor([2 * w, 2 * h]), index=torch.tensor(index))


def _targets(images):
    """Image 0: ball, person, cup, person (humans not first); image 1: one person, one ball."""
    return [_gt(images[0], [[30, 4, 50, 20], [2, 2, 20, 60], [40, 30, 62, 50], [22, 10, 40, 58]], [1, 0, 2, 0],
                [[1, 0, 0], [3, 2, 2]], index=0),
            _gt(images[1], [[5, 5, 25, 40], [30, 20, 50, 35]], [0, 1], [[0, 1, 1]], index=1)]


def _box_pairs(boxes, x, y):
    return {(tuple(boxes[i].tolist()), tuple(boxes[j].tolist())) for i, j in zip(x.tolist(), y.tolist())}


def _expected_pairs(t):
    """Every (human, other entity) of the ground truth, as box tuples."""
    b, l = t["boxes"], t["labels"].tolist()
    return {(tuple(b[i].tolist()), tuple(b[j].tolist())) for i in range(len(l)) if l[i] == 0
            for j in range(len(l)) if j != i}


@pytest.mark.parametrize("training", [True, False])
def test_oracle_proposals_are_the_ground_truth_and_pairs_every_human_with_every_entity(tiny_meta, training):
    model = build_tiny(tiny_meta, "wo_cl", detections="oracle")
    images = tiny_images()
    targets = _targets(images)
    model.train(training)
    with torch.no_grad():
        res = model._pairs(images, targets)
    for r, t in zip(res, targets):
        p = r["props"]
        humans = t["labels"] == 0
        order = torch.cat([torch.nonzero(humans)[:, 0], torch.nonzero(~humans)[:, 0]])   # humans first, GT order
        assert torch.equal(p.boxes, t["boxes"][order]) and torch.equal(p.labels, t["labels"][order])
        assert torch.equal(p.scores, torch.ones(len(t["boxes"])))
        assert _box_pairs(p.boxes, r["x"], r["y"]) == _expected_pairs(t)
        assert len(r["x"]) == int(humans.sum()) * (len(t["labels"]) - 1)
        # scores 1: the prior is the object-valid verb mask whatever the exponent p
        valid = model.interaction_head.valid_verbs[p.labels[r["y"]]]
        assert torch.equal(r["prior"], torch.stack([valid, valid]))
        assert r["m"] is not None and r["m"].shape[0] == len(r["x"])      # IRE ran on the GT pair boxes
    if training:
        losses = model(images, targets)
        assert torch.isfinite(losses["loss_hoi"]) and losses["loss_hoi"] > 0
    else:
        out = model(images, targets)
        for o, t in zip(out, targets):
            assert _box_pairs(o["boxes"], o["pairs"][:, 0], o["pairs"][:, 1]) == _expected_pairs(t)
        with pytest.raises(DataError, match="model.rmlr.detections=oracle"):
            model(images)


def test_oracle_trains_with_knowledge_transfer(tiny_meta, tiny_bert_dir):
    model = build_tiny(tiny_meta, "full", text_dir=tiny_bert_dir, detections="oracle")
    images = tiny_images()
    model.train()
    losses = model(images, _targets(images))
    assert {"loss_hoi", "loss_s_a", "loss_w_a", "loss_s_m", "loss_w_m"} <= set(losses)
    sum(losses.values()).backward()
    assert model.fusion.weight.grad is not None and model.fusion.weight.grad.abs().sum() > 0


def _rigged_detector(model, boxes_per_image, hidden_per_image):
    """Replace DETR's ``pred_boxes`` and last-layer ``hs`` by given values (features stay real)."""
    det = model.detector
    real = det.forward

    def forward(images):
        out = dict(real(images))
        out["pred_boxes"] = torch.stack(boxes_per_image)
        hs = out["hs"].clone()
        hs[-1] = torch.stack(hidden_per_image)
        out["hs"] = hs
        return out

    det.forward = forward


def test_oracle_token_is_the_one_of_the_query_that_predicts_the_box(tiny_meta):
    model = build_tiny(tiny_meta, "plain", detections="oracle")
    images = tiny_images()
    targets = _targets(images)
    q, d = model.detector.query_embed.weight.shape
    boxes, hidden, owner = [], [], []
    for b, (im, t) in enumerate(zip(images, targets)):
        h, w = im.shape[1:]
        g = torch.Generator().manual_seed(b)
        # distractors: small boxes far from every GT box (bottom-right corner), distinct per query
        pred = torch.tensor([0.95, 0.95, 0.02, 0.02]).repeat(q, 1) + 0.001 * torch.rand(q, 4, generator=g)
        perm = torch.randperm(q, generator=g)[:len(t["boxes"])]        # query perm[j] predicts GT box j exactly
        x1, y1, x2, y2 = t["boxes"].unbind(1)
        pred[perm] = torch.stack([(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h], 1)
        boxes.append(pred)
        hidden.append(torch.arange(q, dtype=torch.float32)[:, None].repeat(1, d) + 0.5)   # token k = k + 0.5
        owner.append(perm)
    _rigged_detector(model, boxes, hidden)
    model.eval()
    with torch.no_grad():
        res = model._pairs(images, targets)
    for r, t, perm in zip(res, targets, owner):
        p = r["props"]
        for i in range(len(p.boxes)):
            j = int(torch.nonzero((t["boxes"] == p.boxes[i]).all(1))[0, 0])     # GT index of proposal i
            assert torch.equal(p.hidden_states[i], torch.full((d,), float(perm[j]) + 0.5))


def test_oracle_keeps_the_first_num_queries_entities_and_warns_once(tiny_meta):
    model = build_tiny(tiny_meta, "plain", detections="oracle")
    images = tiny_images(1)
    q = model.detector.num_queries
    n = q + 3
    boxes = [[2 * i, 2 * i, 2 * i + 10, 2 * i + 12] for i in range(n)]
    labels = [0 if i % 2 == 0 else 1 for i in range(n)]
    t = _gt(images[0], boxes, labels, [[0, 1, 0]])
    model.eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            r = model._pairs(images, [t])[0]
            model._pairs(images, [t])
    msgs = [str(w.message) for w in caught if "detections=oracle" in str(w.message)]
    assert len(msgs) == 1 and f"keeping the first {q}" in msgs[0]
    kept = {tuple(b) for b in t["boxes"][:q].tolist()}
    assert {tuple(b) for b in r["props"].boxes.tolist()} == kept and len(r["props"].boxes) == q


def test_detr_detections_are_unchanged(tiny_meta):
    """``detections=detr`` equals the model built without the key, and its proposals are exactly
    DETR post-processing + label mapping + UPT's selection (the code path before the switch)."""
    images = tiny_images()
    default = build_tiny(tiny_meta, "wo_cl", seed=3)
    explicit = build_tiny(tiny_meta, "wo_cl", seed=3, detections="detr")
    assert not default.needs_targets and not explicit.needs_targets
    default.eval(), explicit.eval()
    with torch.no_grad():
        a, b = default(images), explicit(images)
        res = default._pairs(images)
        out = default.detector(images)
    for x, y in zip(a, b):
        for k in x:
            assert torch.equal(x[k], y[k]), k
    for i, (r, im) in enumerate(zip(res, images)):
        size = (im.shape[1], im.shape[2])
        s, l, bx = detr_boxes_and_scores(out["pred_logits"][i], out["pred_boxes"][i], size)
        s, l, bx, hs = map_detector_labels(default.detector_to_object, s, l, bx, out["hs"][-1][i])
        ref = select_detections(bx, s, l, hs, 0, default.score_thresh, default.nms_thresh,
                                default.min_instances, default.max_instances)
        for f in ("boxes", "scores", "labels", "hidden_states"):
            assert torch.equal(getattr(r["props"], f), getattr(ref, f)), f
    # training losses identical too (the head's dropout draws from the same RNG state)
    targets = _targets(images)
    default.train(), explicit.train()
    torch.manual_seed(7)
    la = default(images, targets)
    torch.manual_seed(7)
    lb = explicit(images, targets)
    assert la.keys() == lb.keys() and all(torch.equal(la[k], lb[k]) for k in la)


def test_unknown_detections_value_is_a_config_error(tiny_meta):
    with pytest.raises(ConfigError, match="model.rmlr.detections: 'gt'"):
        build_rmlr(tiny_config("plain", detections="gt"), tiny_meta)


def test_collect_predictions_evaluates_an_oracle_model(tiny_meta):
    model = build_tiny(tiny_meta, "wo_cl", detections="oracle")
    images = tiny_images()
    targets = _targets(images)
    loader = [([images[0]], [targets[0]]), ([images[1]], [targets[1]])]     # batches of one image
    model.train()
    records = collect_predictions(model, loader, torch.device("cpu"), recipe=RECIPES["rmlr"])
    assert model.training                                              # mode restored
    assert sorted(records) == [0, 1]
    for i, t in enumerate(targets):
        p = records[i]
        gt_orig = t["boxes"].numpy() * 2.0                              # orig_size = 2 x size
        assert sorted(map(tuple, p.boxes.tolist())) == sorted(map(tuple, gt_orig.tolist()))
        assert (p.box_scores == 1).all()
        n_h, n = int((t["labels"] == 0).sum()), len(t["labels"])
        assert p.pairs.shape == (n_h * (n - 1), 2) and p.verb_scores.shape == (n_h * (n - 1), 3)
        assert (p.labels[p.pairs[:, 0]] == 0).all()


def test_predictor_refuses_an_oracle_checkpoint(tiny_meta, tmp_path):
    cfg = tiny_config("plain", detections="oracle")
    cfg.data.test_scale, cfg.data.max_size = 64, 128
    model = build_rmlr(cfg, tiny_meta)
    path = tmp_path / "oracle.pt"
    save_checkpoint(model_checkpoint(model, to_dict(cfg), meta_to_dict("rmlr", tiny_meta)), path)
    with pytest.raises(ConfigError) as e:
        Predictor.from_checkpoint(path)
    msg = str(e.value)
    assert "model.rmlr.detections=oracle" in msg and "\n" not in msg


def test_oracle_image_without_entities_has_no_pairs(tiny_meta):
    model = build_tiny(tiny_meta, "wo_cl", detections="oracle")
    images = tiny_images()
    targets = _targets(images)
    targets[1] = _gt(images[1], torch.zeros(0, 4).tolist(), [], torch.zeros(0, 3, dtype=torch.int64).tolist(), 1)
    targets[1]["boxes"] = targets[1]["boxes"].reshape(0, 4)
    model.eval()
    with torch.no_grad():
        out = model(images, targets)
    assert out[1]["boxes"].shape == (0, 4) and out[1]["pairs"].shape == (0, 2) and out[1]["verb_scores"].shape[0] == 0
    assert len(out[0]["pairs"]) == 6                                   # the other image is unaffected: 2 humans x 3
    model.train()
    assert torch.isfinite(model(images, targets)["loss_hoi"])
