"""BBSeg targets, semantic map and Eq. (3) aggregation, checked against hand-computed cases."""
import torch

from hoikit.models.sg2hoi.segmentation import (SemanticSpatialAggregation, bbseg_loss, box_seg_targets,
                                               semantic_map, union_vocabulary)


def test_box_seg_targets_hand_case():
    # 64x64 image, 2x2 feature map (stride 32): cell centres at 16 and 48 px.
    boxes = torch.tensor([[0., 0., 40., 40.],      # contains centre (16,16) only
                          [10., 10., 60., 60.]])   # contains (16,16), (48,16), (16,48), (48,48)
    y = box_seg_targets(boxes, torch.tensor([0, 2]), num_classes=3, feat_size=(2, 2), stride=(32., 32.))
    assert y.shape == (4, 2, 2)
    assert y[0].tolist() == [[1, 0], [0, 0]]
    assert y[1].tolist() == [[0, 0], [0, 0]]
    assert y[2].tolist() == [[1, 1], [1, 1]]
    assert y[3].tolist() == [[0, 0], [0, 0]]        # no background: every cell is in a box


def test_box_seg_targets_background_and_rectangular_stride():
    # 4x2 feature map of a 64 (H) x 64 (W) image: sy = 16, sx = 32 -> centres y 8,24,40,56 ; x 16,48
    y = box_seg_targets(torch.tensor([[20., 20., 64., 30.]]), torch.tensor([1]), 2, (4, 2), (16., 32.))
    assert y[1].tolist() == [[0, 0], [0, 1], [0, 0], [0, 0]]   # x centre 48 in [20, 64), 16 not
    assert (y[2] == 1 - y[1]).all()                              # background = not in any box
    assert box_seg_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 2, (3, 3), (8., 8.))[2].all()


def test_bbseg_loss_is_sum_over_channels_of_mean_bce():
    logits = torch.zeros(1, 2, 1, 2)               # BCE(0 logit) = ln 2 for every entry
    targets = torch.tensor([[[[1., 0.]], [[0., 1.]]]])
    valid = torch.tensor([[[True, False]]])       # the padded cell must not count
    assert torch.isclose(bbseg_loss(logits, targets, valid), torch.tensor(2 * 0.6931472), atol=1e-5)
    logits2 = torch.tensor([[[[20., 99.]], [[-20., -99.]]]])      # right for the valid cell
    assert bbseg_loss(logits2, targets, valid) < 1e-6


def test_semantic_map_background_gets_zero_vector():
    emb = torch.tensor([[1., 2.], [3., 4.]])                      # 2 classes, D_t = 2
    seg = torch.full((1, 3, 1, 3), -5.0)
    seg[0, 0, 0, 0] = 5.0            # class 0
    seg[0, 1, 0, 1] = 5.0            # class 1
    seg[0, 2, 0, 2] = 5.0            # background
    e = semantic_map(seg, emb, "argmax")
    assert e.shape == (1, 2, 1, 3)
    assert e[0, :, 0, 0].tolist() == [1., 2.]
    assert e[0, :, 0, 1].tolist() == [3., 4.]
    assert e[0, :, 0, 2].tolist() == [0., 0.]
    soft = semantic_map(seg, emb, "soft")
    p = torch.sigmoid(torch.tensor([5., -5., -5.]))
    p = p / p.sum()
    assert torch.allclose(soft[0, :, 0, 0], p[0] * emb[0] + p[1] * emb[1], atol=1e-6)


def test_aggregation_has_d_equal_2cprime_and_hss_off_has_no_bbseg():
    torch.manual_seed(0)
    agg = SemanticSpatialAggregation(in_channels=8, seg_dim=6, class_embed=torch.randn(4, 5), num_convs=5)
    v, f, seg = agg(torch.randn(2, 8, 3, 4))
    assert v.shape == (2, 6, 3, 4) and f.shape == (2, 12, 3, 4) and seg.shape == (2, 5, 3, 4)
    convs = [m for m in agg.bbseg.convs if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and all(c.kernel_size == (3, 3) for c in convs)
    assert agg.bbseg.classifier.kernel_size == (1, 1)
    # Eq. (3): the second half of f_agg is W_s E_s, and E_s depends on the segmentation only
    agg.eval()
    e = semantic_map(agg.bbseg(agg.reduce(torch.ones(1, 8, 3, 4))), agg.class_embed)
    _, f1, _ = agg(torch.ones(1, 8, 3, 4))
    assert torch.allclose(f1[:, 6:], agg.w_s(e), atol=1e-6)
    off = SemanticSpatialAggregation(8, 6, None, use_hss=False)
    v, f, seg = off(torch.randn(2, 8, 3, 4))
    assert seg is None and f.shape == (2, 12, 3, 4)
    assert not any("bbseg" in n or "w_s" in n for n, _ in off.named_parameters())


def test_union_vocabulary_merges_by_name():
    names, (a, b) = union_vocabulary(["person", "dining_table"], ["Person", "dining table", "cup"])
    assert names == ["person", "dining table", "cup"]
    assert a.tolist() == [0, 1] and b.tolist() == [0, 1, 2]
    names, (a, b) = union_vocabulary(None, ["x"])
    assert len(a) == 0 and b.tolist() == [0]
