"""Hungarian matcher and DETR set criterion against hand-computed cases."""
import math

import pytest
import torch

from hoikit.errors import TrainingError

from hoikit.losses.matcher import HungarianMatcher, detr_cost_matrix, match_cost_matrices
from hoikit.losses.set_criterion import SetCriterion


def test_assignment_of_hand_computed_cost_matrix():
    # The 6 permutations cost 5 (0->1, 1->0, 2->2), 6, 6, 7, 9, 11: the minimum is unique.
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    (i, j), = match_cost_matrices([cost])
    assert i.tolist() == [0, 1, 2] and j.tolist() == [1, 0, 2]
    assert cost[i, j].sum().item() == 5.0


def test_rectangular_and_empty_cost_matrices():
    tall = torch.tensor([[3.0], [0.5], [2.0]])          # 3 queries, 1 target: the cheapest query wins
    wide = torch.tensor([[1.0, 0.2, 3.0]])              # 1 query, 3 targets
    empty = torch.zeros(4, 0)
    (i1, j1), (i2, j2), (i3, j3) = match_cost_matrices([tall, wide, empty])
    assert (i1.tolist(), j1.tolist()) == ([1], [0])
    assert (i2.tolist(), j2.tolist()) == ([0], [1])
    assert i3.numel() == 0 and j3.numel() == 0 and i3.dtype == torch.int64


def test_non_finite_cost_is_refused_naming_the_image():
    bad = torch.tensor([[0.0, float("nan")], [float("inf"), 1.0]])
    with pytest.raises(TrainingError, match=r"^Hungarian matching: cost matrix of batch image 1 has 2 NaN/inf entries"):
        match_cost_matrices([torch.zeros(2, 2), bad])


def test_detr_cost_terms_by_hand():
    # one query, one target, 2 classes + no-object; logits give p = softmax([ln 3, ln 1, ln 1]) = (.6,.2,.2)
    logits = torch.log(torch.tensor([[3.0, 1.0, 1.0]]))
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2]])         # xyxy (0.4, 0.4, 0.6, 0.6)
    tgt = torch.tensor([[0.5, 0.5, 0.4, 0.4]])          # xyxy (0.3, 0.3, 0.7, 0.7), encloses pred
    # class: -0.6 ; L1: |0.2-0.4|*2 = 0.4 ; GIoU = IoU = 0.04/0.16 = 0.25
    c = detr_cost_matrix(logits, pred, torch.tensor([0]), tgt, cost_class=1.0, cost_bbox=5.0, cost_giou=2.0)
    assert c.shape == (1, 1)
    assert c.item() == pytest.approx(-0.6 + 5 * 0.4 - 2 * 0.25, abs=1e-5)


def test_matcher_recovers_a_permutation():
    torch.manual_seed(0)
    tgt_boxes = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.3, 0.2, 0.3], [0.5, 0.8, 0.3, 0.1]])
    labels = torch.tensor([1, 0, 2])
    perm = torch.tensor([3, 0, 4])                      # target t is predicted by query perm[t]
    boxes = torch.rand(1, 5, 4) * 0.1 + 0.45
    boxes[0, perm] = tgt_boxes + 0.005
    logits = torch.zeros(1, 5, 4)
    logits[0, perm, labels] = 5.0
    (i, j), = HungarianMatcher()({"pred_logits": logits, "pred_boxes": boxes}, [{"labels": labels, "boxes": tgt_boxes}])
    assert dict(zip(j.tolist(), i.tolist())) == {0: 3, 1: 0, 2: 4}


def _criterion():
    return SetCriterion(num_classes=1, matcher=HungarianMatcher(), eos_coef=0.1, ce_coef=1.0, bbox_coef=5.0,
                        giou_coef=2.0)


def test_set_criterion_by_hand():
    # query 0 matches the target (same centre), query 1 is no-object.
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05]]])
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]
    aux = [{"pred_logits": logits.clone(), "pred_boxes": boxes.clone()}]
    losses = _criterion()({"pred_logits": logits, "pred_boxes": boxes, "aux_outputs": aux}, targets)
    ce0 = math.log(1 + math.exp(-2.0))                  # -log softmax([2, 0])[0], weight 1
    ce1 = math.log(1 + math.exp(-1.0))                  # -log softmax([0, 1])[1], weight eos 0.1
    expected = {"loss_ce": (ce0 + 0.1 * ce1) / 1.1, "loss_bbox": 5 * 0.4, "loss_giou": 2 * (1 - 0.25)}
    for k, v in expected.items():
        assert losses[k].item() == pytest.approx(v, abs=1e-5), k
        assert losses[k + "_0"].item() == pytest.approx(v, abs=1e-5), k + "_0"
    assert losses["class_error"].item() == pytest.approx(0.0)
    assert losses["cardinality_error"].item() == pytest.approx(0.0)   # 1 predicted object, 1 target


def test_box_losses_are_normalised_by_the_number_of_boxes():
    # two images, 1 + 2 boxes; every prediction off by 0.1 in cx only -> L1 sum 0.3, divided by 3 boxes
    tgt = [torch.tensor([[0.3, 0.3, 0.2, 0.2]]), torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])]
    boxes = torch.tensor([[[0.4, 0.3, 0.2, 0.2], [0.9, 0.1, 0.01, 0.01]],
                          [[0.4, 0.3, 0.2, 0.2], [0.8, 0.7, 0.2, 0.2]]])
    logits = torch.zeros(2, 2, 2)
    targets = [{"labels": torch.zeros(len(t), dtype=torch.int64), "boxes": t} for t in tgt]
    losses = _criterion()({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert losses["loss_bbox"].item() == pytest.approx(5 * 0.3 / 3, abs=1e-5)
    assert not any(k.endswith("_0") for k in losses)


def test_image_without_targets_only_gets_no_object_loss():
    logits = torch.tensor([[[0.0, 0.0]]])
    out = _criterion()({"pred_logits": logits, "pred_boxes": torch.full((1, 1, 4), 0.5)},
                       [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}])
    assert out["loss_ce"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert out["loss_bbox"].item() == 0.0 and out["loss_giou"].item() == 0.0


def test_matched_class_error_by_hand():
    """DETR's logged class_error, shared by the DETR and Deformable DETR criteria: percent of matched
    queries whose top class is not the target's; 0 without targets."""
    from hoikit.losses.set_criterion import matched_class_error

    logits = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]]])   # query i -> class i
    targets = [{"labels": torch.tensor([1, 2])}]
    # query 1 matched to target 0 (class 1: right), query 0 to target 1 (class 2: wrong) -> 50 %
    indices = [(torch.tensor([1, 0]), torch.tensor([0, 1]))]
    assert matched_class_error(logits, targets, indices).item() == pytest.approx(50.0)
    indices = [(torch.tensor([1, 2]), torch.tensor([0, 1]))]
    assert matched_class_error(logits, targets, indices).item() == pytest.approx(0.0)
    empty = [(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))]
    assert matched_class_error(logits, [{"labels": torch.zeros(0, dtype=torch.int64)}], empty).item() == 0.0
