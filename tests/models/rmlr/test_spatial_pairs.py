"""Spatial encodings, detection filtering, pairing and positive labelling against hand-computed cases."""
import math

import torch

from hoikit.models.rmlr.pairs import associate_with_ground_truth, pair_indices, select_detections
from hoikit.models.rmlr.spatial import box_pair_features, build_spatial_head, compute_spatial_encodings


def test_spatial_features_of_a_known_pair():
    # image 100 (h) x 200 (w); human [10, 20, 30, 60] (w 20, h 40, centre 20, 40);
    # object [40, 40, 80, 60] (w 40, h 20, centre 60, 50); intersection 0 -> IoU 0
    h = torch.tensor([[10., 20., 30., 60.]])
    o = torch.tensor([[40., 40., 80., 60.]])
    f = box_pair_features(h, o, (100, 200), eps=0.0)[0]
    expected = [20 / 200, 40 / 100, 60 / 200, 50 / 100,       # centres
                20 / 200, 40 / 100, 40 / 200, 20 / 100,       # sizes
                800 / 20000, 800 / 20000, 800 / 800,          # areas, area ratio
                20 / 40, 40 / 20,                             # aspect ratios
                0.0,                                          # IoU
                40 / 20, 0.0, 10 / 40, 0.0]                   # object right of and below the human
    assert torch.allclose(f, torch.tensor(expected), atol=1e-6)
    enc = compute_spatial_encodings(h, o, (100, 200), eps=1e-10)[0]
    assert enc.shape == (36,)
    assert math.isclose(float(enc[18]), math.log(0.1 + 1e-10), rel_tol=1e-5)
    assert float(enc[18 + 13]) < -20          # log(IoU 0 + eps)


def test_spatial_features_overlap_and_direction():
    h = torch.tensor([[0., 0., 10., 10.]])
    o = torch.tensor([[5., -5., 15., 5.]])    # up-right, IoU = 25 / 175
    f = box_pair_features(h, o, (20, 20), eps=0.0)[0]
    assert math.isclose(float(f[13]), 25 / 175, rel_tol=1e-6)
    assert float(f[14]) == 0.5 and float(f[15]) == 0 and float(f[16]) == 0 and float(f[17]) == 0.5   # |5 - 0| / 10


def test_spatial_head_is_36_128_256_r():
    head = build_spatial_head(512)
    assert [m.weight.shape for m in head if isinstance(m, torch.nn.Linear)] == [(128, 36), (256, 128), (512, 256)]


def _det(boxes, scores, labels):
    b = torch.tensor(boxes, dtype=torch.float32)
    return b, torch.tensor(scores), torch.tensor(labels), torch.arange(len(boxes)).float()[:, None]


def test_nms_is_class_wise_and_threshold_applies():
    # two overlapping persons (IoU 0.81 > 0.5): the lower one goes; an overlapping ball survives (other class)
    boxes = [[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50],
             [60, 60, 70, 70], [80, 80, 90, 90]]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.1]
    labels = [0, 0, 1, 0, 0, 1, 1]
    p = select_detections(*_det(boxes, scores, labels), human_idx=0, score_thresh=0.2, min_instances=1,
                          max_instances=15)
    ids = p.hidden_states[:, 0].long().tolist()
    assert ids == [0, 3, 4, 2, 5]             # humans first; box 1 suppressed; box 6 below 0.2


def test_min_and_max_instances():
    boxes = [[i * 20, 0, i * 20 + 10, 10] for i in range(8)]
    scores = [0.9, 0.1, 0.15, 0.05, 0.95, 0.9, 0.85, 0.8]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    # 1 human passes 0.2 < min 3 -> top-3 humans by score regardless of threshold;
    # 4 objects pass > max 2 -> top-2 objects
    p = select_detections(*_det(boxes, scores, labels), human_idx=0, score_thresh=0.2, min_instances=3,
                          max_instances=2)
    assert p.hidden_states[:, 0].long().tolist() == [0, 2, 1, 4, 5]


def test_pairs_every_human_with_every_other_box():
    x, y = pair_indices(torch.tensor([0, 0, 1]), human_idx=0)
    assert list(zip(x.tolist(), y.tolist())) == [(0, 1), (0, 2), (1, 0), (1, 2)]


def test_positive_labelling_at_the_boundary():
    gt_h = torch.tensor([[0., 0., 10., 10.]])
    gt_o = torch.tensor([[20., 0., 30., 10.]])
    # IoU([0,0,10,10], [0,0,10,20]) = 100/200 = 0.5 exactly -> positive; [0,0,10,21] -> 100/210 < 0.5
    hs = torch.tensor([[0., 0., 10., 20.], [0., 0., 10., 21.]])
    os_ = gt_o.repeat(2, 1)
    labels, match = associate_with_ground_truth(hs, os_, gt_h, gt_o, torch.tensor([2]), num_verbs=3)
    assert labels.tolist() == [[0, 0, 1], [0, 0, 0]]
    assert match.tolist() == [[True], [False]]
