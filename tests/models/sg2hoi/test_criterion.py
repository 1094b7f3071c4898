"""Eq. (9) matching costs and the SG2HOI+ losses on hand-computed cases."""
import math

import torch

from hoikit.models.sg2hoi.criterion import (SG2HOICriterion, box_cost, hoi_tuples, relation_tuples, verb_cost,
                                            verb_focal_loss)

A = [0.3, 0.3, 0.2, 0.2]
B = [0.7, 0.6, 0.2, 0.4]


def _rel_outputs():
    """Two queries with identical (exact) boxes; class probabilities chosen by hand."""
    p = lambda *v: torch.tensor(v).log()
    return {"sub_boxes": torch.tensor([[A, A]]), "obj_boxes": torch.tensor([[B, B]]),
            "sub_logits": torch.stack([p(.6, .3, .1), p(.3, .6, .1)])[None],
            "obj_logits": torch.stack([p(.3, .6, .1), p(.6, .3, .1)])[None],
            "rel_logits": torch.stack([p(.2, .7, .1), p(.7, .2, .1)])[None]}


def _rel_targets():
    return [{"sub_boxes": torch.tensor([A, A]), "obj_boxes": torch.tensor([B, B]),
             "sub_labels": torch.tensor([0, 1]), "obj_labels": torch.tensor([1, 0]), "predicates": torch.tensor([0, 1])}]


def test_box_cost_hand_case():
    c = box_cost(torch.tensor([[0.5, 0.5, 0.2, 0.2]]), torch.tensor([[0.6, 0.5, 0.2, 0.2]]))
    # L1 = 0.1; boxes [.4,.4,.6,.6] and [.5,.4,.7,.6]: IoU = 0.02/0.06, enclosing area 0.06 -> GIoU = 1/3
    assert torch.isclose(c[0, 0], torch.tensor(0.1 - 1 / 3), atol=1e-5)


def test_relation_matching_uses_alpha_weights():
    # box terms are equal (L1 0, GIoU 1 twice -> -2 * a1).
    # a = (1, 2, 4): C00 = -2 - 2*(0.6+0.6) - 4*0.2 = -5.2, C01 = -2 - 2*(0.3+0.3) - 4*0.7 = -6.0,
    # C10 = -6.0, C11 = -5.2  -> the predicate term decides: q0 -> t1, q1 -> t0.
    crit = SG2HOICriterion(1.0, 2.0, 4.0)
    (qi, ti), = crit.match_relations(_rel_outputs(), _rel_targets())
    assert dict(zip(qi.tolist(), ti.tolist())) == {0: 1, 1: 0}
    # a3 = 1: C00 = -2 - 2.4 - 0.2 = -4.6 < C01 = -2 - 1.2 - 0.7 = -3.9 -> labels decide: q0 -> t0
    (qi, ti), = SG2HOICriterion(1.0, 2.0, 1.0).match_relations(_rel_outputs(), _rel_targets())
    assert dict(zip(qi.tolist(), ti.tolist())) == {0: 0, 1: 1}


def test_relation_losses_hand_values():
    crit = SG2HOICriterion(1.0, 2.0, 4.0, train_unmatched=False)
    loss = crit.relation_losses(_rel_outputs(), _rel_targets())
    assert loss["loss_rel_box"] < 1e-5                                    # boxes are exact
    # matched q0->t1, q1->t0: sub CE = -ln 0.3 each, obj CE = -ln 0.3 each, predicate CE = -ln 0.7 each
    assert torch.isclose(loss["loss_rel_cls"], torch.tensor(2.0 * 2 * -math.log(0.3)), atol=1e-4)
    assert torch.isclose(loss["loss_rel_pred"], torch.tensor(4.0 * -math.log(0.7)), atol=1e-4)


def test_unmatched_queries_only_count_when_trained():
    out = _rel_outputs()
    out = {k: torch.cat([v, v[:, :1]], 1) for k, v in out.items()}       # a third query
    tgt = [{k: v[:1] for k, v in _rel_targets()[0].items()}]             # one target: query 2 or 0 unmatched
    for unmatched in (False, True):
        crit = SG2HOICriterion(train_unmatched=unmatched)
        a = crit.relation_losses(out, tgt)
        (qi, _), = crit.match_relations(out, tgt)
        free = [q for q in range(3) if q not in qi.tolist()][0]
        out2 = {k: v.clone() for k, v in out.items()}
        out2["rel_logits"][0, free] = torch.tensor([-5.0, -5.0, 5.0])   # towards no-relation
        assert crit.match_relations(out2, tgt)[0][0].tolist() == qi.tolist()
        b = crit.relation_losses(out2, tgt)
        assert torch.isclose(a["loss_rel_pred"], b["loss_rel_pred"]) != unmatched


def test_verb_cost_and_focal_loss_hand_values():
    logits = torch.tensor([[math.log(4.0), math.log(1 / 9), 0.0]])       # p = 0.8, 0.1, 0.5
    c = verb_cost(logits, torch.tensor([[1.0, 0.0, 0.0]]))
    assert torch.isclose(c[0, 0], torch.tensor(-(0.8 + (0.9 + 0.5) / 2) / 2), atol=1e-5)
    # p = 0.5 positive and negative: 2 * (-ln 0.5 * 0.25), one positive label
    f = verb_focal_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    assert torch.isclose(f, torch.tensor(2 * math.log(2) * 0.25), atol=1e-6)


def test_targets_to_tuples():
    t = {"boxes": torch.tensor([[0., 0., 10., 20.], [10., 0., 30., 10.], [5., 5., 15., 15.]]),
         "labels": torch.tensor([0, 4, 2]), "size": torch.tensor([40, 20]),
         "hois": torch.tensor([[0, 1, 0], [0, 1, 1], [0, 2, 1], [0, -1, 0]]),
         "relations": torch.tensor([[1, 2, 3]])}
    h = hoi_tuples(t, num_verbs=2)
    assert h["verbs"].tolist() == [[1., 1.], [0., 1.]]                   # grouped per pair, no-object row dropped
    assert h["obj_labels"].tolist() == [4, 2]
    assert torch.allclose(h["human_boxes"][0], torch.tensor([5 / 40, 10 / 20, 10 / 40, 20 / 20]))
    r = relation_tuples(t)
    assert r["sub_labels"].tolist() == [4] and r["obj_labels"].tolist() == [2] and r["predicates"].tolist() == [3]
    assert torch.allclose(r["obj_boxes"][0], torch.tensor([10 / 40, 10 / 20, 10 / 40, 10 / 20]))
