"""The detector's evaluation in the engine: SynthHOI's COCO file scored by the COCO protocol
(hoikit.eval.detection), the metrics the trainer logs and selects best.pt by, and `hoikit test`."""
import json

import numpy as np
import pytest
import torch

from hoikit.cli import main
from hoikit.config import load_config, to_dict
from hoikit.data.readers import open_reader
from hoikit.data.synth import generate_synthhoi
from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
from hoikit.engine.datasets import build_training_data
from hoikit.recipes import build_model, meta_to_dict

TINY = ["model.detr.checkpoint=", "model.detr.backbone=tiny", "model.detr.hidden_dim=32", "model.detr.nheads=2",
        "model.detr.enc_layers=1", "model.detr.dec_layers=1", "model.detr.dim_feedforward=64",
        "model.detr.num_queries=8", "model.detr.dropout=0.0", "data.test_scale=64", "data.max_size=96",
        "data.num_workers=0"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_synthhoi(root, n_train=2, n_test=4, seed=3, size=64)
    return root


def test_detector_runs_are_scored_on_every_instance_by_coco_ap(synth):
    cfg = load_config("synth_detr", [f"data.root={synth}"] + TINY)
    data = build_training_data(cfg)
    assert data.primary == "AP50"                      # selects best.pt of detector runs
    coco = open_reader("coco", synth / "vcoco" / "instances_test.json")
    perfect, shifted = data.make_evaluator(), data.make_evaluator()
    for i in range(len(coco)):
        s = coco[i]
        perfect.add(i, {"boxes": s.boxes, "labels": s.labels, "scores": np.ones(len(s.boxes))})
        w = s.boxes[:, 2:3] - s.boxes[:, 0:1]
        shifted.add(i, {"boxes": s.boxes + np.concatenate([w, 0 * w, w, 0 * w], 1) * 0.5, "labels": s.labels,
                        "scores": np.ones(len(s.boxes))})   # half a width to the right: IoU 1/3
    m = perfect.compute()
    present = sorted({coco.meta.objects[c] for i in range(len(coco)) for c in coco[i].labels})
    assert sorted(k for k in m if k.startswith("AP50/")) == [f"AP50/{c}" for c in present]
    assert all(m[f"AP50/{c}"] == pytest.approx(100) for c in present)
    assert m["AP"] == pytest.approx(100) and m["AP50"] == pytest.approx(100) and m["AP75"] == pytest.approx(100)
    m = shifted.compute()
    assert m["AP50"] == pytest.approx(0) and m["AP"] == pytest.approx(0)


def test_hoikit_test_prints_the_coco_table_for_a_detector(synth, tmp_path, capsys):
    cfg = load_config("synth_detr", [f"data.root={synth}"] + TINY)
    meta = build_training_data(cfg, with_eval=False).meta
    torch.manual_seed(0)
    ck = tmp_path / "detr.pt"
    save_checkpoint(model_checkpoint(build_model(cfg, meta), to_dict(cfg), meta_to_dict("detr", meta)), ck)
    out = tmp_path / "res"
    assert main(["test", "--checkpoint", str(ck), "--out", str(out), "--device", "cpu", "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "COCO box AP (pycocotools" in printed and "AP50" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert m["primary"] == "AP50"
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(m["metrics"])
