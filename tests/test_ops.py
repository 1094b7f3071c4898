"""Box operations: NMS against the greedy per-box loop (hoikit's earlier implementation) and by hand."""
import pytest
import torch

from hoikit.ops import batched_nms, box_iou, nms


def loop_nms(boxes, scores, iou_threshold):
    """The plain greedy procedure (hoikit's NMS before the matrix form): visit boxes by decreasing score,
    stable on ties, and drop every later box whose IoU with a kept one is > the threshold."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.sort(scores, descending=True, stable=True).indices
    iou, _ = box_iou(boxes[order], boxes[order])
    keep = torch.ones(order.numel(), dtype=torch.bool)
    over = iou > iou_threshold
    for i in range(order.numel()):
        if keep[i]:
            sup = over[i].clone()
            sup[: i + 1] = False
            keep &= ~sup
    return order[keep]


def test_nms_by_hand():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [2, 0, 12, 10], [0, 0, 10, 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.9])
    # ranked: 3 (0.95), 0 (0.9), 4 (0.9, tie: input order), 1, 2. IoU(3, 0) = 80/120, IoU(3, 1) = 90/110,
    # IoU(3, 4) = 80/120: all > 0.5, so only 3 and 2 survive; at 0.7 box 0 (2/3) survives and suppresses 4 (IoU 1)
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, 0.7).tolist() == [3, 0, 2]
    # at 0.82 box 1 survives box 3 (IoU 90/110 = 0.818) and only the duplicate 4 of box 0 goes
    assert nms(boxes, scores, 0.82).tolist() == [3, 0, 1, 2]
    assert nms(boxes, scores, 1.0).tolist() == [3, 0, 4, 1, 2]     # IoU 1 is not > 1
    assert nms(boxes[:0], scores[:0], 0.5).dtype == torch.long and nms(boxes[:0], scores[:0], 0.5).numel() == 0


def test_nms_equals_the_greedy_loop_on_random_boxes_with_ties():
    g = torch.Generator().manual_seed(0)
    for trial in range(100):
        n = int(torch.randint(1, 80, (1,), generator=g))
        # integer corners on a small grid (identical boxes, equal IoUs) and 4 score levels (many ties)
        xy = torch.randint(0, 12, (n, 2), generator=g).float()
        wh = torch.randint(1, 8, (n, 2), generator=g).float()
        boxes = torch.cat([xy, xy + wh], 1)
        scores = torch.randint(0, 4, (n,), generator=g).float() / 4
        for t in (0.0, 0.3, 0.5, 0.7):
            assert torch.equal(nms(boxes, scores, t), loop_nms(boxes, scores, t)), (trial, t)
        labels = torch.randint(0, 3, (n,), generator=g)
        got = batched_nms(boxes, scores, labels, 0.5)
        want = torch.cat([idx[loop_nms(boxes[idx], scores[idx], 0.5)]
                          for idx in (torch.nonzero(labels == c).squeeze(1) for c in range(3))])
        assert sorted(got.tolist()) == sorted(want.tolist()), trial
        assert torch.equal(scores[got], scores[got].sort(descending=True, stable=True).values)


def test_nms_long_suppression_chain():
    # boxes shifted by one unit each: every box suppresses its successor, so the kept set alternates
    # and the matrix iteration needs many steps to settle
    n = 41
    x = torch.arange(n, dtype=torch.float32)
    boxes = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], 1)
    scores = torch.linspace(1, 0, n)
    # IoU of neighbours 9/11 > 0.8, of boxes two apart 8/12 < 0.8: keep 0, 2, 4, ...
    assert nms(boxes, scores, 0.8).tolist() == list(range(0, n, 2))
    assert torch.equal(nms(boxes, scores, 0.8), loop_nms(boxes, scores, 0.8))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_nms_traces_without_a_python_loop_per_box():
    # traced on 12 disjoint boxes (nothing suppressed); a per-box Python loop would bake that data's
    # branches into the graph, the matrix form replays correctly on crowded boxes of the same count
    n = 12
    x = 20 * torch.arange(n, dtype=torch.float32)
    disjoint = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], 1)
    traced = torch.jit.trace(lambda b, s: nms(b, s, 0.4), (disjoint, torch.rand(n)), check_trace=False)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        xy = torch.randint(0, 6, (n, 2), generator=g).float()
        boxes = torch.cat([xy, xy + torch.randint(2, 6, (n, 2), generator=g).float()], 1)
        scores = torch.randint(0, 3, (n,), generator=g).float()
        assert torch.equal(traced(boxes, scores), loop_nms(boxes, scores, 0.4))
