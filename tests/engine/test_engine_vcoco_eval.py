"""V-COCO evaluation in the engine: with data.vcoco_json / coco_json / vcoco_ids the evaluation split
is scored by the official protocol (hoikit.eval.vcoco) through VCOCOEvaluation."""
import json

import numpy as np
import pytest

from hoikit.config import load_config
from hoikit.data.metadata import load_class_file
from hoikit.engine.datasets import eval_tasks
from hoikit.eval.adapters import VCOCOEvaluation
from hoikit.eval.vcoco_records import ACTIONS, official_roles
from hoikit.structures import HOIPrediction

# one image (COCO id 7): person 11 (xywh 10,10,100,200) holds object 13 (xywh 120,100,40,40)
PERSON, OBJ = [10, 10, 100, 200], [120, 100, 40, 40]


def _files(tmp):
    roles = official_roles()
    vsrl = [dict(action_name=a, role_name=r, image_id=[7], ann_id=[11], label=[int(a == "hold")],
                 role_object_id=[11] + ([13] if a == "hold" else [0] * (len(r) - 1)) if len(r) > 1 else [11])
            for a, r in zip(ACTIONS, roles)]
    coco = dict(images=[dict(id=7, width=320, height=240)], categories=[dict(id=1, name="person")],
                annotations=[dict(id=11, image_id=7, category_id=1, bbox=PERSON, area=2e4, iscrowd=0),
                             dict(id=13, image_id=7, category_id=47, bbox=OBJ, area=1600, iscrowd=0)])
    d = load_class_file("vcoco")
    train = dict(annotations=[dict(boxes_h=[[10, 10, 110, 210]], boxes_o=[[120, 100, 160, 140]], actions=[0],
                                   objects=[42], file_name="a.jpg")],
                 classes=d["classes"], objects=d["objects"], images=[7], action_to_object=d["action_to_object"])
    paths = {k: tmp / n for k, n in (("vcoco_json", "vcoco_test.json"), ("coco_json", "instances.json"),
                                      ("vcoco_ids", "test.ids"), ("test_anno", "instances_vcoco_test.json"))}
    paths["vcoco_json"].write_text(json.dumps(vsrl))
    paths["coco_json"].write_text(json.dumps(coco))
    paths["vcoco_ids"].write_text("7\n")
    paths["test_anno"].write_text(json.dumps(train))
    return paths


def _pair(obj_box):
    scores = np.zeros((1, 24), np.float32)
    scores[0, 0] = 0.8                                                  # "hold obj"
    return HOIPrediction(np.array([[10, 10, 110, 210], obj_box], np.float32), np.array([1, 42]),
                         np.ones(2, np.float32), np.array([[0, 1]]), scores)


@pytest.mark.parametrize("obj_box, expected", [([120, 100, 160, 140], 100.0), ([200, 150, 240, 190], 0.0)])
def test_engine_scores_v_coco_with_the_official_protocol(tmp_path, obj_box, expected):
    paths = _files(tmp_path)
    cfg = load_config(None, ["model.arch=rmlr", "data.format=vcoco", *(f"data.{k}={v}" for k, v in paths.items())])
    from hoikit.data.metadata import vcoco_meta

    tasks, primary = eval_tasks(cfg, vcoco_meta())
    assert primary == "role_mAP_S1" and len(tasks) == 1 and len(tasks[0].dataset) == 1
    ev = tasks[0].make_evaluator()
    assert isinstance(ev, VCOCOEvaluation)
    ev.add(0, ev.prepare(0, _pair(obj_box)))          # reader index 0 -> COCO image 7
    m = ev.compute()
    # hold-obj is the only role with positives: the means are its AP; the agent is right either way
    assert m["role_mAP_S1"] == pytest.approx(expected) and m["role_mAP_S2"] == pytest.approx(expected)
    assert ev.results["agent_ap"]["hold"] == pytest.approx(1.0)
    path = ev.save(tmp_path)
    assert path.name == "detections.pkl" and path.stat().st_size > 0


def test_v_coco_without_ground_truth_files_has_no_evaluation(tmp_path):
    paths = _files(tmp_path)
    cfg = load_config(None, ["model.arch=rmlr", "data.format=vcoco", f"data.test_anno={paths['test_anno']}"])
    from hoikit.data.metadata import vcoco_meta

    assert eval_tasks(cfg, vcoco_meta()) == ([], "")
