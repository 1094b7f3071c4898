"""The traceable proposal filter (hoikit/deploy/traceable.py) equals the eager one: hand-made NMS
and selection cases, then random DETR-like inputs against hoikit.ops.batched_nms and
hoikit.models.rmlr.pairs.select_detections."""
import pytest
import torch

from hoikit.deploy.traceable import (batched_nms_sorted, greedy_nms_keep, select_detections_indices,
                                     stable_descending_order)
from hoikit.models.rmlr.pairs import select_detections
from hoikit.ops import batched_nms, box_iou


def test_stable_order_keeps_ties_in_input_order():
    scores = torch.tensor([0.5, 0.9, 0.5, 0.1, 0.9, 0.5])
    assert stable_descending_order(scores).tolist() == [1, 4, 0, 2, 5, 3]


def test_greedy_nms_chain_keeps_the_box_whose_suppressor_was_suppressed():
    # A (0.9) suppresses B (0.8, IoU(A, B) = 0.6); C (0.7) overlaps only B (IoU 0.6), so greedy NMS
    # keeps C: B was already removed. "Suppressed by any higher box" would wrongly drop C.
    boxes = torch.tensor([[0.0, 0, 10, 10], [2.5, 0, 12.5, 10], [5.0, 0, 15, 10]])
    iou, _ = box_iou(boxes, boxes)
    assert iou[0, 1] == pytest.approx(0.6) and iou[1, 2] == pytest.approx(0.6) and iou[0, 2] == pytest.approx(1 / 3)
    keep = greedy_nms_keep(iou, torch.ones(3, dtype=torch.bool), 0.5)
    assert keep.tolist() == [True, False, True]
    # an invalid A suppresses nothing: B is kept and suppresses C
    keep = greedy_nms_keep(iou, torch.tensor([False, True, True]), 0.5)
    assert keep.tolist() == [False, True, False]


def _detr_like(seed, q=30, classes=3):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(q, 2, generator=g) * 80 + 10
    sizes = torch.rand(q, 2, generator=g) * 40 + 5
    # clusters of near-duplicates, as DETR's queries produce
    centres[q // 2:] = centres[: q - q // 2] + torch.randn(q - q // 2, 2, generator=g) * 3
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1)
    scores = torch.rand(q, generator=g)
    scores[::7] = scores[1]                      # exact ties
    labels = torch.randint(0, classes, (q,), generator=g)
    return boxes, scores, labels


@pytest.mark.parametrize("seed", range(12))
def test_batched_nms_sorted_equals_batched_nms(seed):
    boxes, scores, labels = _detr_like(seed)
    valid = torch.rand(len(boxes), generator=torch.Generator().manual_seed(seed)) > 0.2
    order, keep = batched_nms_sorted(boxes, scores, labels, valid, 0.5)
    rows = torch.nonzero(valid)[:, 0]
    expected = rows[batched_nms(boxes[rows], scores[rows], labels[rows], 0.5)]
    assert order[keep].tolist() == expected.tolist()


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("thresh,lo,hi", [(0.2, 3, 15), (0.9, 3, 15), (0.05, 2, 4), (0.5, 1, 3)])
def test_select_detections_indices_equals_select_detections(seed, thresh, lo, hi):
    boxes, scores, labels = _detr_like(seed)
    hidden = torch.arange(len(boxes), dtype=torch.float32)[:, None]   # the token names its query
    eager = select_detections(boxes, scores, labels, hidden, 0, thresh, 0.5, lo, hi)
    sel = select_detections_indices(boxes, scores, labels, torch.ones(len(boxes), dtype=torch.bool), 0, thresh,
                                    0.5, lo, hi)
    assert sel.tolist() == eager.hidden_states[:, 0].long().tolist()


def test_selection_hand_case_few_many_and_normal_groups():
    # 5 humans (class 0) far apart, 2 objects far apart; no overlaps, so NMS keeps all.
    boxes = torch.tensor([[i * 20.0, 0, i * 20 + 10, 10] for i in range(7)])
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.1, 0.05, 0.3])
    ones = torch.ones(7, dtype=torch.bool)
    # threshold 0.5, min 2, max 3: 4 humans pass (> max) -> top 3 humans; 0 objects pass (< min) -> top 2 objects
    sel = select_detections_indices(boxes, scores, labels, ones, 0, 0.5, 0.5, 2, 3)
    assert sel.tolist() == [0, 1, 2, 6, 5]
    # threshold 0.25, min 1, max 4: 4 humans pass (normal) -> the 4 passing; 1 object passes -> it
    sel = select_detections_indices(boxes, scores, labels, ones, 0, 0.25, 0.5, 1, 4)
    assert sel.tolist() == [0, 1, 2, 3, 6]
