"""One checkpoint, one number (issue 13, item 8): training-time evaluation (padded batches of 8),
``hoikit test --batch-size 1`` and ``--batch-size 8`` give the same HICO-DET metrics and detection
files, and ``hoikit predict`` finds the same boxes. The test images have different sizes, so a batch
of 8 is padded; a padded forward pass moves this random detector's boxes (checked below), which is
what made the numbers depend on the batch size."""
import json

import numpy as np
import pytest
import torch

from hoikit.cli import main
from hoikit.config import load_config, to_dict
from hoikit.data.dataset import build_reader, collate
from hoikit.data.synth import generate_synthhoi
from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
from hoikit.engine.datasets import eval_tasks
from hoikit.engine.inference import Predictor, model_from_checkpoint
from hoikit.engine.testing import collect_predictions, eval_loader
from hoikit.engine.trainer import evaluate
from hoikit.recipes import build_model, meta_to_dict

N_TEST = 8


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """(SynthHOI root, checkpoint) of a random tiny UPT on 8 test images of different sizes (<= 64 px)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("synth_paths")
    generate_synthhoi(root, n_train=2, n_test=N_TEST, seed=5, size=64)
    cfg = load_config(None, ["model.arch=rmlr", "data.format=synth", f"data.root={root}", "data.test_scale=64",
                             "data.max_size=96", "data.num_workers=0", "model.rmlr.ablation=plain",
                             "model.detr.backbone=tiny", "model.detr.hidden_dim=32", "model.detr.nheads=2",
                             "model.detr.enc_layers=1", "model.detr.dec_layers=1", "model.detr.dim_feedforward=64",
                             "model.detr.num_queries=16", "model.detr.dropout=0.0", "model.detr.checkpoint=",
                             "model.rmlr.representation_size=64", "model.rmlr.box_score_thresh=0.0"])
    meta = build_reader(cfg.data, "test").meta
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


def test_padding_moves_the_detectors_boxes(tiny_ckpt):
    # the premise: the same images in one padded batch and one by one give other boxes
    model, cfg, meta = model_from_checkpoint(tiny_ckpt[1])
    tasks, _ = eval_tasks(cfg, meta)
    images = [tasks[0].dataset[i][0] for i in range(N_TEST)]
    assert len({tuple(im.shape) for im in images}) > 1
    det = model.detector.eval()
    with torch.no_grad():
        batched = det(images)["pred_boxes"]
        alone = torch.cat([det([im])["pred_boxes"] for im in images])
    assert (batched - alone).abs().max() > 1e-3


def test_one_checkpoint_gives_the_same_metrics_on_every_path(tiny_ckpt, tmp_path, capsys):
    root, ck = tiny_ckpt
    got = {}
    for bs in (1, 8):
        out = tmp_path / f"b{bs}"
        assert main(["test", "--checkpoint", str(ck), "--out", str(out), "--device", "cpu", "--batch-size", str(bs)]) == 0
        got[bs] = json.loads((out / "metrics.json").read_text())["metrics"], np.load(out / "detections.npz")
    capsys.readouterr()
    (m1, d1), (m8, d8) = got[1], got[8]
    assert m1 == m8
    assert d1.files == d8.files and all(np.array_equal(d1[k], d8[k]) for k in d1.files)
    assert len(set(d1["image"].tolist())) >= N_TEST - 2           # not a comparison of two empty results
    # (a random detector scores mAP 0; the detection files above are what carry the boxes and scores)

    # training-time evaluation: trainer.evaluate over padded batches of 8, as fit runs it
    model, cfg, meta = model_from_checkpoint(ck)
    tasks, primary = eval_tasks(cfg, meta)
    loader = eval_loader(tasks[0].dataset, 8, collate)
    assert len(loader) == 1
    during_training = evaluate(model, loader, tasks[0].make_evaluator, torch.device("cpu"))
    # metrics.json writes NaN (no non-rare class in 8 images) as null
    assert {k: (None if v != v else v) for k, v in during_training.items() if k in m1} == m1

    # hoikit predict: the same boxes and scores as the evaluation's records (read in batches of 8)
    records = collect_predictions(model, loader, torch.device("cpu"))
    predictor = Predictor.from_checkpoint(str(ck), device="cpu")
    reader = tasks[0].dataset.reader
    for i in range(N_TEST):
        res = predictor.predict(reader[i].image_path, threshold=0.0)
        rec = records[i]
        want = sorted((round(float(s), 4), [round(float(x), 2) for x in b]) for b, s in zip(rec.boxes, rec.box_scores))
        have = sorted((d["score"], d["box"]) for d in res["detections"])
        assert have == want, i
