"""SG2HOI+ on the deformable base (model.detr.type = deformable).

Independent expectations: the detector itself (at initialisation each relation / HOI query's subject
box is the detector's box of the same proposal, and the encoder output is the detector's memory),
the two-stage selection (the queries sit on the detector's top proposals), round trips (rebuilt
from the state dict alone, the model gives the same outputs), and the training contract (losses
finite, the proposal loss reaches the proposal head, -R2ITR / -HSS behave as on the DETR base).
"""
import dataclasses

import pytest
import torch

from sg2hoi_tiny import hoi_batch, sgg_batch, tiny_cfg
from hoikit.errors import CheckpointError, ConfigError
from hoikit.models.deformable_detr import build_deformable_detr
from hoikit.models.detr import nested_tensor_from_images
from hoikit.models.sg2hoi.build import build_sg2hoi


def detector_cfg(cfg, num_classes=4):
    d = cfg.model.detr
    d.type, d.backbone, d.hidden_dim, d.nheads = "deformable", "small_res", 32, 2
    d.enc_layers, d.dec_layers, d.dim_feedforward, d.dropout = 1, 2, 64, 0.0
    d.num_queries, d.num_feature_levels, d.with_box_refine, d.two_stage = 6, 3, True, True
    return dataclasses.replace(d, num_classes=num_classes)


def saved_detector(dcfg, seed, path):
    """A random two-stage Deformable DETR with every parameter perturbed (so no head sits at its zero
    initialisation), saved to ``path`` as a bare state dict; returns the network in eval mode."""
    torch.manual_seed(seed)
    net = build_deformable_detr(dcfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save(net.state_dict(), path)
    return net.eval()


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddetr") / "det.pt"
    return path, saved_detector(detector_cfg(tiny_cfg()), 3, path)


def build(metas, path, task="joint", **sg):
    sg.setdefault("pair_queries", "proposals")
    cfg = tiny_cfg(**sg)
    detector_cfg(cfg)
    cfg.model.detr.checkpoint = str(path)
    torch.manual_seed(0)
    return build_sg2hoi(cfg, *metas, task=task), cfg


def test_at_init_subject_boxes_are_the_detector_boxes(metas, detector_file):
    path, net = detector_file
    m, _ = build(metas, path)
    m.eval()
    imgs = hoi_batch()[0]
    tensor, mask = nested_tensor_from_images(imgs)
    with torch.no_grad():
        det = net(imgs)
        enc = m._encode(tensor, mask)
        rel = m._relations(enc)
        hoi = m._hoi_branch(enc, rel)
    # W_v / W_s start at zero: the encoder output is the detector's memory
    assert torch.allclose(enc["f_en"], det["memory"], atol=1e-5)
    # 6 queries = the detector's two-stage top-6: the same reference boxes, and the final box of each
    # query is the detector's final box (shifted-identity branch + the detector's last box head)
    assert torch.allclose(rel["sub_boxes"], det["pred_boxes"], atol=1e-5)
    assert torch.allclose(rel["obj_boxes"], det["pred_boxes"], atol=1e-5)
    assert hoi["human_boxes"].shape == det["pred_boxes"].shape
    # every module is its own copy: no two state-dict tensors share storage, nothing registered twice
    sd = m.state_dict()
    assert len({t.untyped_storage().data_ptr() for t in sd.values() if t.numel()}) == \
        sum(1 for t in sd.values() if t.numel())
    assert len(list(m.named_parameters(remove_duplicate=False))) == len(list(m.named_parameters()))


@pytest.mark.parametrize("dec_layers, look_forward_twice", [(1, False), (2, False), (2, True)])
def test_hoi_decoder_without_r2i_starts_as_the_detector(metas, tmp_path, dec_layers, look_forward_twice):
    # with r2i off and RELQ the HOI decoder reads f_en with the relation content as queries: a second
    # copy of the detector, so its human boxes are the detector's boxes too (every decoder depth; the
    # reference box of the last layer is inter[-2], or the proposals with one layer)
    cfg = tiny_cfg()
    dcfg = dataclasses.replace(detector_cfg(cfg), dec_layers=dec_layers, look_forward_twice=look_forward_twice)
    net = saved_detector(dcfg, 4, tmp_path / "det.pt")
    cfg = tiny_cfg(r2i=False, relq=True, pair_queries="proposals")
    cfg.model.detr = dataclasses.replace(dcfg, checkpoint=str(tmp_path / "det.pt"))
    torch.manual_seed(0)
    m = build_sg2hoi(cfg, *metas, task="joint").eval()
    imgs = hoi_batch()[0]
    with torch.no_grad():
        out = m(imgs)
        det = net(imgs)
    sizes = torch.tensor([[im.shape[2], im.shape[1]] * 2 for im in imgs], dtype=torch.float32)[:, None]
    from hoikit.ops import box_cxcywh_to_xyxy
    expect = box_cxcywh_to_xyxy(det["pred_boxes"]) * sizes
    for i in range(len(imgs)):
        assert torch.allclose(out[i]["hoi"]["human_boxes"], expect[i], atol=1e-3)
        assert torch.allclose(out[i]["sgg"]["sub_boxes"], expect[i], atol=1e-3)


def test_proposals_are_the_detector_top_k(metas, detector_file):
    path, net = detector_file
    m, _ = build(metas, path)
    m.eval()
    imgs = sgg_batch()[0]
    tensor, mask = nested_tensor_from_images(imgs)
    with torch.no_grad():
        det = net(imgs)
        p = m._encode(tensor, mask)["proposals"]
    enc = det["enc_outputs"]
    top = enc["pred_logits"][..., 0].topk(6, dim=1).indices
    expect = torch.gather(enc["pred_boxes"], 1, top[..., None].expand(-1, -1, 4))
    assert torch.allclose(p["refs"], expect, atol=1e-6)


def test_training_step_and_proposal_loss(metas, detector_file):
    path, _ = detector_file
    m, _ = build(metas, path)
    m.train()
    for batch in (sgg_batch(), hoi_batch()):
        losses = m(*batch)
        assert {"loss_ce_prop", "loss_bbox_prop", "loss_giou_prop", "loss_seg"} <= set(losses)
        assert all(torch.isfinite(v) for v in losses.values())
    m.zero_grad()
    m(*hoi_batch())["loss_ce_prop"].backward()
    assert m.encoder.prop_class.weight.grad.abs().sum() > 0
    m.zero_grad()
    sum(m(*hoi_batch()).values()).backward()
    assert m.hoi_decoder.head.mid_cls.weight.grad.abs().sum() > 0      # verbs learn
    assert m.hss.w_v.weight.grad.abs().sum() > 0                          # Eq. (3) terms grow in


def test_every_trainable_parameter_learns_except_the_refinement_heads(metas, detector_file):
    # over one SGG and one HOI batch every parameter gets a gradient, except the decoders' per-layer
    # refinement heads (detached references, last-layer losses: they keep the detector's weights)
    m, _ = build(metas, detector_file[0])
    m.train()
    (sum(m(*sgg_batch()).values()) + sum(m(*hoi_batch()).values())).backward()
    no_grad = {n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())}
    assert no_grad == {n for n, _ in m.named_parameters() if ".decoder.bbox_embed." in n}


def test_hoi_frozen_phase_trains_the_hoi_part_only(metas, detector_file):
    # Table V single-task HOI: after set_phase("hoi_frozen") the SGG part (backbone, HSS, encoder with the
    # proposal stage, relation decoder) has no trainable parameter and no loss but the HOI set losses runs
    m, _ = build(metas, detector_file[0], task="hoi")
    m.set_phase("hoi_frozen")
    losses = m.train()(*hoi_batch())
    assert losses and all(k.startswith("loss_hoi") for k in losses)
    parts = m.parameter_parts()
    assert not parts["backbone"] and not parts["sgg"] and not parts["sgg_text_cls"]
    hoi_ids = {id(p) for p in parts["hoi"] + parts["hoi_text_cls"]}
    assert hoi_ids == {id(p) for mod in (m.r2i, m.feature_transform, m.query_transform, m.hoi_decoder)
                       for p in mod.parameters()}
    m.set_phase("joint")
    assert {"loss_ce_prop", "loss_seg"} <= set(m.train()(*sgg_batch()))


def test_proposal_loss_off(metas, detector_file):
    m, _ = build(metas, detector_file[0], proposal_loss=0.0)
    losses = m.train()(*hoi_batch())
    assert not any(k.endswith("_prop") for k in losses)


def test_rebuilt_from_state_dict_gives_the_same_outputs(metas, detector_file):
    m, cfg = build(metas, detector_file[0])
    m.eval()
    sd = m.state_dict()
    cfg.model.detr.checkpoint = ""                       # inference needs no detector file
    cfg.model.sg2hoi.pair_queries = "detections"         # the weights decide (checkpoints from before the switch)
    torch.manual_seed(5)
    m2 = build_sg2hoi(cfg, *metas, state_dict=sd, task="joint")
    m2.load_state_dict(sd)
    m2.eval()
    imgs = hoi_batch()[0]
    with torch.no_grad():
        a, b = m(imgs), m2(imgs)
    for x, y in zip(a, b):
        for part in ("sgg", "hoi"):
            for k in x[part]:
                assert torch.equal(x[part][k], y[part][k]), (part, k)


def test_r2i_off_hoi_ignores_the_relation_branch_features(metas, detector_file):
    for r2i, expect in ((False, False), (True, True)):
        m, _ = build(metas, detector_file[0], r2i=r2i)
        m.eval()
        tensor, mask = nested_tensor_from_images(hoi_batch()[0])
        with torch.no_grad():
            enc = m._encode(tensor, mask)
            rel = m._relations(enc)
            a = m._hoi_branch(enc, rel)["verb_logits"]
            b = m._hoi_branch(enc, {k: (v + 1 if k in ("f_s", "f_r", "f_o") else v) for k, v in rel.items()})["verb_logits"]
        assert (not torch.equal(a, b)) == expect


def test_no_hss_has_no_segmentation(metas, detector_file):
    m, _ = build(metas, detector_file[0], hss="none")
    losses = m.train()(*sgg_batch())
    assert "loss_seg" not in losses and m.hss.num_classes == 0


def test_config_errors(metas, detector_file, tmp_path):
    path = detector_file[0]
    with pytest.raises(ConfigError, match="model.detr.checkpoint"):
        build(metas, "")
    with pytest.raises(ConfigError, match="hidden_dim"):
        build(metas, path, hidden_dim=64, seg_dim=32)
    with pytest.raises(ConfigError, match="feature_transform"):
        build(metas, path, feature_transform=False)
    with pytest.raises(ConfigError, match="num_hoi_queries"):
        build(metas, path, num_hoi_queries=4)
    with pytest.raises(ConfigError, match="hss_level"):
        build(metas, path, hss_level=3)
    cfg = tiny_cfg(pair_queries="proposals")
    detector_cfg(cfg)
    with pytest.raises(CheckpointError, match="prop_class"):
        build_sg2hoi(cfg, *metas, state_dict={"x": torch.zeros(1)}, task="joint")


def test_synthhoi_preset_loads_the_shipped_detector():
    # the preset's model.detr section must match hoikit/assets/synth_deformable.pt (strict load), and the
    # model starts as that detector: subject boxes = the detector's boxes on a SynthHOI-sized image
    from hoikit.config import load_config
    from hoikit.data.metadata import DatasetMeta
    from hoikit.data.synth.classes import OBJECTS, PREDICATES, VERBS
    from hoikit.models.detectors import build_detector_network, load_detector_weights
    cfg = load_config("synth_sg2hoi_deformable", ["model.sg2hoi.pair_queries=proposals"])
    sgg = DatasetMeta(name="synth-vg", objects=list(OBJECTS), predicates=list(PREDICATES))
    hoi = DatasetMeta(name="synth", objects=list(OBJECTS), verbs=list(VERBS), person_label=0)
    torch.manual_seed(0)
    m = build_sg2hoi(cfg, sgg, hoi, task="joint").eval()
    det = build_detector_network(dataclasses.replace(cfg.model.detr, num_classes=len(OBJECTS)))
    load_detector_weights(det, cfg.model.detr.checkpoint)
    imgs = [torch.randn(3, 256, 256)]
    tensor, mask = nested_tensor_from_images(imgs)
    with torch.no_grad():
        rel = m._relations(m._encode(tensor, mask))
        ref = det.eval()(imgs)
    assert torch.allclose(rel["sub_boxes"], ref["pred_boxes"], atol=1e-4)


# ---------------------------------------------------------------- pair queries from the detections
@pytest.mark.parametrize("anchors", ["frozen", "shared"])
def test_detection_pairs_start_on_the_detector_boxes(metas, detector_file, anchors):
    # pair_queries=detections: query k is the ordered pair (i, j), i != j, of the detector's detections
    # with the k-th highest score product; its subject / object boxes start as exactly boxes i and j
    # (box MLPs start at zero offset), for the relation and the HOI decoder
    path, net = detector_file
    m, _ = build(metas, path, pair_queries="detections", num_rel_queries=10, num_hoi_queries=10, pair_nms=0.0,
                 anchor_detector=anchors)
    m.eval()
    imgs = hoi_batch()[0]
    tensor, mask = nested_tensor_from_images(imgs)
    with torch.no_grad():
        det = net(imgs)
        enc = m._encode(tensor, mask)
        rel = m._relations(enc)
        hoi = m._hoi_branch(enc, rel)
    q = enc["queries"]
    i, j = q["pair_index"][..., 0], q["pair_index"][..., 1]
    assert (i != j).all()
    boxes, scores = det["pred_boxes"], det["pred_logits"].sigmoid().max(-1).values
    take = lambda x, idx: torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))
    for out, sub, obj in ((rel, "sub_boxes", "obj_boxes"), (hoi, "human_boxes", "obj_boxes")):
        assert torch.allclose(out[sub], take(boxes, i), atol=1e-5)
        assert torch.allclose(out[obj], take(boxes, j), atol=1e-5)
    # the kept pairs are the top-10 score products over every ordered pair of distinct detections
    prod = scores[:, :, None] * scores[:, None, :]
    k = prod.shape[1]
    prod = prod.masked_fill(torch.eye(k, dtype=torch.bool), -1).flatten(1)
    kept = torch.gather(prod, 1, i * k + j)
    assert torch.allclose(kept, prod.topk(10, dim=1).values)


@pytest.mark.parametrize("anchors", ["frozen", "shared"])
def test_detection_pairs_train(metas, detector_file, anchors):
    m, _ = build(metas, detector_file[0], pair_queries="detections", num_rel_queries=10, num_hoi_queries=10,
                 anchor_detector=anchors)
    m.train()
    stage = m.encoder.anchor_net if anchors == "frozen" else m.encoder.entity_decoder
    before = {k: v.clone() for k, v in stage.state_dict().items()}
    (sum(m(*sgg_batch()).values()) + sum(m(*hoi_batch()).values())).backward()
    assert m.encoder.pair_embed.weight.grad.abs().sum() > 0
    # the detection stage gets no gradient (frozen copy: not even a trainable parameter) and its
    # state (BatchNorm statistics included) is unchanged by a training forward
    assert all(p.grad is None for p in stage.parameters())
    assert all(torch.equal(before[k], v) for k, v in stage.state_dict().items())
    assert not any(mod.training for mod in stage.modules())     # in eval mode (dropout off) in both designs
    if anchors == "frozen":
        assert not any(p.requires_grad for p in stage.parameters())
    assert m.hoi_decoder.head.right_box.layers[-1].weight.grad.abs().sum() > 0     # object offsets learn
    # the tiny detector has 6 detections: 30 ordered pairs, so 31 pair queries is an error naming the key
    too_many, _ = build(metas, detector_file[0], pair_queries="detections", num_rel_queries=31, num_hoi_queries=31)
    with pytest.raises(ConfigError, match="num_rel_queries=31"):
        too_many.eval()(hoi_batch()[0])


def test_pair_nms_removes_duplicate_detections_from_the_pairs(metas, detector_file):
    # two detections of one class at IoU > 0.5: with pair_nms the lower-scoring one is in no pair while
    # a distinct detection is; without it, both are paired
    m, _ = build(metas, detector_file[0], pair_queries="detections", num_rel_queries=2, num_hoi_queries=2)
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.31, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]]])
    logits = torch.tensor([[[3.0, -9.0], [2.0, -9.0], [-9.0, 1.0]]])       # scores .95, .88 (class 0), .73 (class 1)
    tokens = torch.randn(1, 3, 32)
    m.encoder.pair_nms = 0.5
    kept = m.encoder.pairs(boxes, logits, tokens, 2)["pair_index"][0].tolist()
    assert sorted(kept) == [[0, 2], [2, 0]]
    m.encoder.pair_nms = 0.0
    assert sorted(m.encoder.pairs(boxes, logits, tokens, 2)["pair_index"][0].tolist()) == [[0, 1], [1, 0]]


def test_more_pair_queries_than_encoder_tokens_is_a_clear_error(metas, detector_file):
    # a 64 x 48 image gives 8x6 + 4x3 + 2x2 = 64 tokens over the three levels: 70 proposal queries cannot
    # be chosen, and the error names the key to change
    m, _ = build(metas, detector_file[0], num_rel_queries=70, num_hoi_queries=70)
    with pytest.raises(ValueError, match=r"64 encoder tokens, fewer than the 70 pair queries \(model.sg2hoi.num_rel_queries\)"):
        m.eval()([torch.randn(3, 48, 64)])
    # detection pairs: the proposals there are the detector's own query selection, so the error names
    # model.detr.num_queries (a detector of 100 queries on the same image; the tiny one has 6)
    m, _ = build(metas, detector_file[0], pair_queries="detections", num_rel_queries=2, num_hoi_queries=2,
                 anchor_detector="shared")
    m.encoder.num_entities = 100
    with pytest.raises(ValueError, match=r"64 encoder tokens, fewer than the detector's 100 queries \(model.detr.num_queries\)"):
        m.eval()([torch.randn(3, 48, 64)])


def test_frozen_anchors_have_no_unused_parameters_and_old_checkpoints_load(metas, detector_file):
    # with anchor_detector=frozen every trainable parameter gets a gradient over one SGG and one HOI
    # batch (the shared-anchor stage, unused there, is not built); a checkpoint of commits
    # bdd2d04..8af880c, which also held that stage, still loads strictly and gives the same outputs
    from hoikit.io.checkpoint import load_model_state
    from hoikit.recipes import get_recipe
    m, cfg = build(metas, detector_file[0], pair_queries="detections", num_rel_queries=10, num_hoi_queries=10)
    assert not hasattr(m.encoder, "entity_decoder") and not hasattr(m.encoder, "entity_class")
    m.train()
    (sum(m(*sgg_batch()).values()) + sum(m(*hoi_batch()).values())).backward()
    # (grad None = outside the graph; the box MLPs' hidden layers get zero, not None, under their zero last layer)
    unused = {n for n, p in m.named_parameters() if p.requires_grad and p.grad is None}
    assert unused <= {n for n, _ in m.named_parameters() if ".decoder.bbox_embed." in n}, unused
    shared, _ = build(metas, detector_file[0], pair_queries="detections", num_rel_queries=10, num_hoi_queries=10,
                      anchor_detector="shared")
    stage = {k: v for k, v in shared.state_dict().items() if k.startswith(("encoder.entity_decoder.", "encoder.entity_class."))}
    assert stage
    old = {**m.state_dict(), **stage}
    cfg.model.detr.checkpoint = ""
    m2 = build_sg2hoi(cfg, *metas, state_dict=old, task="joint")
    load_model_state(m2, get_recipe("sg2hoi").inference_state_dict(m2, old), "old.pt")
    imgs = hoi_batch()[0]
    with torch.no_grad():
        a, b = m.eval()(imgs), m2.eval()(imgs)
    assert all(torch.equal(x["hoi"][k], y["hoi"][k]) for x, y in zip(a, b) for k in x["hoi"])
    with pytest.raises(CheckpointError, match="unexpected key 'model.encoder.stray'"):
        load_model_state(m2, get_recipe("sg2hoi").inference_state_dict(m2, {**old, "encoder.stray": torch.zeros(1)}),
                         "old.pt")
