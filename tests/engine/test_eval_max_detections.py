"""``eval.max_detections``: the HOI evaluations keep the top-K (pair, verb) triplets of an image
(QPIC's one-stage convention, ``max_hois = 100``); 0 keeps all."""
import json

import numpy as np
import pytest

from hoikit.config import load_config
from hoikit.data.metadata import DatasetMeta, vcoco_meta
from hoikit.engine.datasets import eval_tasks
from hoikit.structures import HOIPrediction
from test_engine_vcoco_eval import _files as vcoco_files

CORR = [[0, 1, 0], [1, 1, 1], [2, 2, 1]]        # ride bicycle, hold bicycle, hold cup
META = DatasetMeta(name="hico-tiny", objects=["person", "bicycle", "cup"], verbs=["ride", "hold"],
                   person_label=0, correspondence=CORR)


def _hico_file(tmp_path):
    anno = dict(annotation=[dict(boxes_h=[[1, 1, 10, 10]], boxes_o=[[11, 11, 20, 20]], hoi=[0], object=[1], verb=[0])],
                filenames=["a.jpg"], size=[[100, 100]], empty=[], objects=META.objects, verbs=META.verbs,
                correspondence=CORR)
    path = tmp_path / "test.json"
    path.write_text(json.dumps(anno))
    return path


def _prediction():
    """Pair 0 (person, bicycle): ride 0.9, hold 0.3; pair 1 (person, cup): ride 0.7 (no such HOI class),
    hold 0.5. HOI triplets: ride-bicycle 0.9, hold-bicycle 0.3, hold-cup 0.5."""
    boxes = np.array([[0, 0, 10, 10], [10, 10, 20, 20], [30, 30, 40, 40]], np.float32)
    return HOIPrediction(boxes, np.array([0, 1, 2]), np.ones(3, np.float32), np.array([[0, 1], [0, 2]]),
                         np.array([[0.9, 0.3], [0.7, 0.5]], np.float32))


@pytest.mark.parametrize("k, hois, scores", [(0, [0, 1, 2], [0.9, 0.3, 0.5]), (2, [0, 2], [0.9, 0.5]),
                                             (1, [0], [0.9]), (100, [0, 1, 2], [0.9, 0.3, 0.5])])
def test_hicodet_evaluation_keeps_the_top_k_triplets(tmp_path, k, hois, scores):
    cfg = load_config(None, ["model.arch=rmlr", "data.format=hicodet", f"data.test_anno={_hico_file(tmp_path)}",
                             f"eval.max_detections={k}"])
    tasks, _ = eval_tasks(cfg, META)
    rec = tasks[0].make_evaluator().prepare(0, _prediction())
    assert rec["hoi"].tolist() == hois and rec["score"] == pytest.approx(scores)


def test_vcoco_evaluation_keeps_the_top_k_action_role_scores(tmp_path):
    paths = vcoco_files(tmp_path)
    verb_scores = np.zeros((2, 24), np.float32)
    verb_scores[0, 0], verb_scores[0, 3], verb_scores[1, 5] = 0.8, 0.6, 0.7
    pred = HOIPrediction(np.array([[10, 10, 110, 210], [120, 100, 160, 140], [0, 0, 5, 5]], np.float32),
                         np.array([1, 42, 3]), np.ones(3, np.float32), np.array([[0, 1], [0, 2]]), verb_scores)
    kept = {}
    for k in (0, 2):
        cfg = load_config(None, ["model.arch=rmlr", "data.format=vcoco", f"eval.max_detections={k}",
                                 *(f"data.{n}={v}" for n, v in paths.items())])
        tasks, _ = eval_tasks(cfg, vcoco_meta())
        rec = tasks[0].make_evaluator().prepare(0, pred)
        kept[k] = np.sort(rec.role_scores[~np.isnan(rec.role_scores)])
    assert len(kept[0]) == 2 * 24 and kept[0].max() == pytest.approx(0.8)
    assert kept[2] == pytest.approx([0.7, 0.8])             # the two best (pair, action-role) scores
