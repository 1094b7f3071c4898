"""SG2HOI+ on V-COCO: official role AP (Scenario 1 / 2) during training and in ``hoikit test``;
``best.pt`` follows the HOI dataset's metric (``eval.primary_metric`` chooses another)."""
import csv
import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

from sg2hoi_tiny import tiny_cfg
from hoikit.training import train
from hoikit.engine.datasets import eval_tasks
from hoikit.eval.adapters import VCOCOEvaluation
from hoikit.engine.testing import run_test
from hoikit.data.metadata import vcoco_meta
from hoikit.errors import ConfigError

_spec = importlib.util.spec_from_file_location(
    "vcoco_engine_files", Path(__file__).parents[2] / "engine" / "test_engine_vcoco_eval.py")
_vc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_vc)


def _cfg(tmp_path, *overrides):
    """Tiny SG2HOI+ trained on HOIs alone (Table V 'hoi', no scene graphs) on a one-image V-COCO."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = _vc._files(tmp_path)                       # COCO image 7, 320 x 240: person holds a cup
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (320, 240), (90, 120, 150)).save(images / "a.jpg")
    cfg = tiny_cfg("", variant="rand", hss="det")
    cfg.output_dir = str(tmp_path / "run")
    d = cfg.data
    d.format, d.train_anno, d.test_anno = "vcoco", str(paths["test_anno"]), str(paths["test_anno"])
    d.vcoco_json, d.coco_json, d.vcoco_ids = str(paths["vcoco_json"]), str(paths["coco_json"]), str(paths["vcoco_ids"])
    d.train_images = d.test_images = str(images)
    d.scales, d.max_size, d.test_scale = [64], 96, 64
    d.hflip, d.color_jitter, d.random_crop, d.num_workers = False, 0.0, False, 0
    t = cfg.train
    t.task, t.sgg_epochs, t.epochs, t.batch_size, t.device, t.log_every = "hoi", 0, 1, 1, "cpu", 1
    for o in overrides:
        key, value = o.split("=")
        setattr(cfg.eval, key, value)
    return cfg


def test_training_evaluates_role_ap_and_keeps_best_by_it_then_hoikit_test_reports_it(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    state, data = train(cfg)
    assert data.primary == "role_mAP_S1"
    assert [type(e.make_evaluator()).__name__ for e in data.evals] == ["VCOCOEvaluation"]
    rows = list(csv.DictReader(open(tmp_path / "run" / "eval.csv")))
    assert len(rows) == 1 and {"role_mAP_S1", "role_mAP_S2", "agent_mAP"} <= set(rows[0])
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    assert state.best == pytest.approx(best["metrics"]["role_mAP_S1"])
    assert float(rows[0]["role_mAP_S1"]) == pytest.approx(state.best, abs=1e-3)
    out = run_test(tmp_path / "run" / "best.pt", out_dir=tmp_path / "test", report=print)
    assert out["primary"] == "role_mAP_S1" and (tmp_path / "test" / "detections.pkl").exists()
    assert out["metrics"]["role_mAP_S1"] == pytest.approx(best["metrics"]["role_mAP_S1"], abs=1e-4)
    assert "wrote " + str(tmp_path / "test" / "detections.pkl") in capsys.readouterr().out


def test_primary_metric_is_configurable_and_an_unknown_one_is_a_one_line_error(tmp_path):
    tasks, primary = eval_tasks(_cfg(tmp_path, "primary_metric=role_mAP_S2"), (vcoco_meta(), None))
    assert primary == "role_mAP_S2" and isinstance(tasks[0].make_evaluator(), VCOCOEvaluation)
    cfg = _cfg(tmp_path / "bad", "primary_metric=mAP_full")
    with pytest.raises(ConfigError, match="eval.primary_metric: 'mAP_full' is not a metric .*role_mAP_S1"):
        train(cfg)
    assert (tmp_path / "bad" / "run" / "last.pt").exists()             # the epoch is kept (--resume)
