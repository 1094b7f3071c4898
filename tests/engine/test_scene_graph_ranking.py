"""One ranking of scene-graph relations everywhere: the SGDet evaluator and ``Predictor`` both rank
pairs by ``p_predicate * s_subject * s_object`` (Scene-Graph-Benchmark's ``triple_scores``)."""
import numpy as np
import pytest

from hoikit.data.metadata import DatasetMeta
from hoikit.engine.inference import Predictor
from hoikit.eval.sgg import match_image
from hoikit.structures import Sample, SceneGraphPrediction

META = DatasetMeta(name="vg-tiny", objects=["person", "horse", "table"], predicates=["on", "near"])
BOX_A, BOX_B = [0, 0, 10, 10], [20, 20, 40, 40]


def _prediction():
    """Pair 0: confident predicate (0.9 'on') between unsure boxes (0.2, 0.25) -> 0.9*0.2*0.25 = 0.045.
    Pair 1: weaker predicate (0.6 'near') between sure boxes (0.9, 0.8) -> 0.6*0.9*0.8 = 0.432."""
    boxes = np.array([BOX_A, BOX_B, BOX_A, BOX_B], np.float32)
    return SceneGraphPrediction(
        boxes=boxes, labels=np.array([0, 1, 0, 2]), scores=np.array([0.2, 0.25, 0.9, 0.8], np.float32),
        pairs=np.array([[0, 1], [2, 3]]),
        predicate_scores=np.array([[0.05, 0.9, 0.05], [0.1, 0.3, 0.6]], np.float32))


def test_predictor_ranks_relations_by_the_triplet_score():
    p = object.__new__(Predictor)
    p.meta_sgg = META
    rows = p._scene_graph(_prediction(), threshold=0.0)["relations"]
    assert [(r["subject"], r["predicate"], r["object"]) for r in rows] == [("person", "near", "table"),
                                                                           ("person", "on", "horse")]
    assert [r["score"] for r in rows] == pytest.approx([0.432, 0.045], abs=1e-4)
    # the threshold applies to the same score: 0.1 keeps only the first
    assert len(p._scene_graph(_prediction(), threshold=0.1)["relations"]) == 1


def test_evaluator_ranks_the_same_pair_first():
    gt = Sample(index=0, file_name="a.jpg", size=(50, 50), boxes=np.array([BOX_A, BOX_B], np.float32),
                labels=np.array([0, 2]), relations=np.array([[0, 1, 1]]))          # person near table
    first_gc, _ = match_image(gt, _prediction(), num_predicates=2)
    assert first_gc.tolist() == [0]                                              # rank 0: recalled at K = 1
    order, predicate, score = _prediction().ranked_relations()
    assert order.tolist() == [1, 0] and predicate.tolist() == [0, 1]
    assert score == pytest.approx([0.045, 0.432])
