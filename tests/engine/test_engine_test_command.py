"""`hoikit test`: a tiny UPT checkpoint over a tiny SynthHOI test split writes the HICO-DET .npz,
whose re-evaluation by `hoikit eval hicodet` gives the printed numbers; the same files come out
of two torchrun processes (sharded images, gathered on rank 0)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hoikit.cli import main
from hoikit.config import load_config, to_dict
from hoikit.data.dataset import build_reader
from hoikit.data.synth import generate_synthhoi
from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
from hoikit.recipes import build_model, meta_to_dict

N_TEST = 6


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(SynthHOI root, checkpoint) of a random tiny UPT (plain RmLR) on 6 test images of 64 px."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("synth")
    generate_synthhoi(root, n_train=2, n_test=N_TEST, seed=3, size=64)
    cfg = load_config(None, ["model.arch=rmlr", "data.format=synth", f"data.root={root}", "data.test_scale=64",
                             "data.max_size=96", "data.num_workers=0", "model.rmlr.ablation=plain",
                             "model.detr.backbone=tiny", "model.detr.hidden_dim=32", "model.detr.nheads=2",
                             "model.detr.enc_layers=1", "model.detr.dec_layers=1", "model.detr.dim_feedforward=64",
                             "model.detr.num_queries=16", "model.detr.dropout=0.0",
                             "model.rmlr.representation_size=64"])
    meta = build_reader(cfg.data, "test").meta
    cfg.model.detr.checkpoint = ""   # random tiny detector
    cfg.model.detr.num_classes = len(meta.objects)
    torch.manual_seed(0)
    model = build_model(cfg, meta)
    with torch.no_grad():  # spread the random detector's classes and boxes (several kept boxes, humans among them)
        model.detector.query_embed.weight.mul_(5.0)
        model.detector.class_embed.weight.mul_(8.0)
        model.detector.bbox_embed.layers[-1].weight.mul_(20.0)
    ck = root / "tiny_upt.pt"
    save_checkpoint(model_checkpoint(model, to_dict(cfg), meta_to_dict("rmlr", meta)), ck)
    return root, ck


def test_written_npz_reevaluates_to_the_printed_numbers(tiny_run, tmp_path, capsys):
    root, ck = tiny_run
    out = tmp_path / "res"
    assert main(["test", "--checkpoint", str(ck), "--out", str(out), "--device", "cpu", "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "HICO-DET mAP" in printed and "metrics.json" in printed
    m = json.loads((out / "metrics.json").read_text())
    det = np.load(out / "detections.npz")
    assert len(det["image"]) > 0 and set(det["image"].tolist()) <= set(range(N_TEST))
    assert (det["score"] > 0).all() and (det["score"] <= 1).all()
    # every (pair, verb) kept is a valid HOI class of the file: hoi indexes the 600-style table
    anno = root / "hicodet" / "instances_test.json"
    n_hoi = len(json.loads(anno.read_text())["correspondence"])
    assert det["hoi"].max() < n_hoi
    assert main(["eval", "hicodet", "--pred", str(out / "detections.npz"), "--anno", str(anno),
                 "--json", str(tmp_path / "re.json")]) == 0
    re_eval = json.loads((tmp_path / "re.json").read_text())
    for setting in ("default", "known_object"):
        for k in ("full", "rare", "non_rare"):
            assert re_eval[setting][k] == pytest.approx(m["hicodet"][setting][k], abs=1e-9)
    assert m["metrics"]["mAP_full"] == pytest.approx(re_eval["default"]["full"], abs=1e-9)
    # per class: the same detections counted, the same AP (random weights: mostly false positives)
    assert [c["detections"] for c in re_eval["per_class"]] == [c["detections"] for c in m["hicodet"]["per_class"]]
    assert sum(c["detections"] for c in m["hicodet"]["per_class"]) == len(det["hoi"])
    assert [c["ap"] for c in re_eval["per_class"]] == pytest.approx([c["ap"] for c in m["hicodet"]["per_class"]])
    assert m["images"]["hicodet"] == N_TEST and m["primary"] == "mAP_full"


@pytest.mark.slow  # ~20 s: two interpreter start-ups under torchrun
def test_two_processes_shard_and_gather_the_same_detections(tiny_run, tmp_path):
    root, ck = tiny_run
    single = tmp_path / "one"
    assert main(["test", "--checkpoint", str(ck), "--out", str(single), "--device", "cpu"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hoikit.cli",
           "test", "--checkpoint", str(ck), "--out", str(tmp_path / "two"), "--device", "cpu"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = np.load(single / "detections.npz"), np.load(tmp_path / "two" / "detections.npz")
    for k in ("image", "hoi", "score", "box_h", "box_o"):
        assert np.allclose(a[k], b[k], atol=1e-5), k
    ma = json.loads((single / "metrics.json").read_text())["metrics"]
    mb = json.loads((tmp_path / "two" / "metrics.json").read_text())["metrics"]
    assert ma == pytest.approx(mb, abs=1e-6)


def test_bad_override_and_missing_vcoco_files_are_one_line_errors(tiny_run, tmp_path, capsys):
    root, ck = tiny_run
    assert main(["test", "--checkpoint", str(ck), "data.no_such_key=1", "--out", str(tmp_path)]) == 2
    assert main(["test", "--checkpoint", str(ck), "data.format=vcoco",
                 f"data.test_anno={root / 'vcoco' / 'instances_vcoco_test.json'}", "--out", str(tmp_path)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("hoikit: error:")]
    assert len(err) == 2 and "no_such_key" in err[0] and "data.vcoco_json" in err[1]


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())["metrics"]


def test_test_takes_the_overrides_train_takes(tiny_run, tmp_path):
    """`key=` is the empty string in `hoikit test` as in `hoikit train` (one config path): the
    override `model.detr.checkpoint=` (what a checkpoint's own weights mean anyway) changes nothing."""
    root, ck = tiny_run
    assert main(["test", "--checkpoint", str(ck), "--out", str(tmp_path / "a"), "--device", "cpu"]) == 0
    assert main(["test", "--checkpoint", str(ck), "model.detr.checkpoint=", "data.zero_shot=",
                 "--out", str(tmp_path / "b"), "--device", "cpu"]) == 0
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")


def test_a_checkpoint_with_old_keys_loads_the_same_in_test_and_load(tiny_run, tmp_path):
    """A checkpoint written before model.detr.lr_backbone moved to train.lr_backbone, with the removed
    model.detr.freeze and without model.rmlr.text.pooling: `hoikit.load` and `hoikit test` (with a
    CONFIG whose data / eval sections replace the checkpoint's) build the same config from it."""
    import hoikit
    from hoikit.io.checkpoint import load_checkpoint

    root, ck = tiny_run
    state = load_checkpoint(ck)
    cfg = state["config"]
    old = json.loads(json.dumps(cfg))
    old["model"]["detr"]["lr_backbone"] = old["train"].pop("lr_backbone")
    old["model"]["detr"]["freeze"] = False
    del old["model"]["rmlr"]["text"]["pooling"]
    old_ck = tmp_path / "old.pt"
    save_checkpoint({**state, "config": old}, old_ck)
    loaded = hoikit.load(str(old_ck)).cfg
    assert loaded.train.lr_backbone == cfg["train"]["lr_backbone"] and loaded.model.rmlr.text.pooling == "cls"
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text(f"data:\n  format: synth\n  root: {root}\n  test_scale: 64\n  max_size: 96\n"
                         "  num_workers: 0\nmodel:\n  detr:\n    freeze: false\n")   # model section: not taken
    assert main(["test", "--checkpoint", str(old_ck), str(yaml_file), "--out", str(tmp_path / "old"),
                 "--device", "cpu"]) == 0
    assert main(["test", "--checkpoint", str(ck), "--out", str(tmp_path / "new"), "--device", "cpu"]) == 0
    assert _metrics(tmp_path / "old") == _metrics(tmp_path / "new")


def test_a_wrong_choice_is_refused_at_load_naming_key_and_values(tiny_run, tmp_path, capsys):
    root, ck = tiny_run
    assert main(["test", "--checkpoint", str(ck), "model.rmlr.ablation=wo_everything", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.rmlr.ablation" in err[0] and "wo_everything" in err[0]
    assert all(v in err[0] for v in ("full", "plain", "wo_cl", "wo_ire_kt"))
    assert not (tmp_path / "metrics.json").exists()
