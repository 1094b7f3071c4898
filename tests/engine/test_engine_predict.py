"""`hoikit predict` / `hoikit.load(...).predict`: JSON + pictures from tiny checkpoints; one-line CLI errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import hoikit
from engine_toy import ToyHOIRecipe
from hoikit.cli import main
from hoikit.config import load_config, to_dict
from hoikit.data.metadata import DatasetMeta
from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
from hoikit.recipes import RECIPES, build_model, meta_to_dict

META = DatasetMeta(name="toy", objects=["person", "bicycle", "cup"], verbs=["ride", "hold", "look at"],
                   person_label=0, correspondence=[[0, 1, 0], [1, 1, 1], [2, 2, 1], [3, 2, 2]], rare=[3])


def _checkpoint(tmp_path, arch, extra=()):
    cfg = load_config(None, [f"model.arch={arch}", "data.test_scale=64", "data.max_size=128", *extra])
    torch.manual_seed(0)
    model = build_model(cfg, META)
    path = tmp_path / f"{arch.split(':')[-1]}.pt"
    save_checkpoint(model_checkpoint(model, to_dict(cfg), meta_to_dict(cfg.model.arch, META)), path)
    return path


def test_predict_cli_writes_named_triplets_json_and_picture(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(RECIPES, "rmlr", ToyHOIRecipe())     # model.arch=rmlr builds the toy model
    ck = _checkpoint(tmp_path, "rmlr")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.fromarray(np.full((50, 100, 3), 40 * i, np.uint8)).save(frames / f"f{i}.png")
    assert main(["predict", str(frames), "--checkpoint", str(ck), "--threshold", "0.2", "--out", str(tmp_path / "o")]) == 0
    res = json.loads((tmp_path / "o" / "f1.json").read_text())
    # verb 0 (ride, 0.9) and verb 1 (hold, 0.3) are valid with object 1 (bicycle) and above 0.2;
    # verb 2 (look at) is below the threshold and not a bicycle class anyway
    assert [(t["subject"], t["verb"], t["object"], t["score"], t["hoi"]) for t in res["triplets"]] == [
        ("person", "ride", "bicycle", pytest.approx(0.9), 0), ("person", "hold", "bicycle", pytest.approx(0.3), 1)]
    assert res["triplets"][0]["subject_box"] == [10, 5, 40, 45] and res["triplets"][0]["object_box"] == [50, 20, 90, 40]
    assert res["size"] == [100, 50] and [d["label"] for d in res["detections"]] == ["person", "bicycle"]
    pic = Image.open(tmp_path / "o" / "f1.png")
    assert max(pic.size) >= 640 and pic.size[0] == 2 * pic.size[1]  # upscaled for readable captions
    assert np.asarray(pic).std() > 0  # something was drawn on the flat frame
    assert "person ride bicycle 0.90" in capsys.readouterr().out


def test_predict_draws_the_best_triplets_when_none_reaches_the_threshold(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(RECIPES, "rmlr", ToyHOIRecipe())
    ck = _checkpoint(tmp_path, "rmlr")
    Image.fromarray(np.full((50, 100, 3), 40, np.uint8)).save(tmp_path / "f.png")
    for thresh in ("0.2", "0.95"):
        assert main(["predict", str(tmp_path / "f.png"), "--checkpoint", str(ck), "--threshold", thresh,
                     "--out", str(tmp_path / thresh)]) == 0
    out = capsys.readouterr().out
    # the toy's triplets score 0.9 and 0.3: none reaches 0.95, so the JSON has none and the line names
    # the best ones; the picture draws them, i.e. the same picture as at 0.2 where both pass
    assert json.loads((tmp_path / "0.95" / "f.json").read_text())["triplets"] == []
    assert "0 triplets >= 0.95; best person ride bicycle 0.90, person hold bicycle 0.30" in out
    assert np.array_equal(np.asarray(Image.open(tmp_path / "0.95" / "f.png")),
                          np.asarray(Image.open(tmp_path / "0.2" / "f.png")))


class _ToyWithConfidence(ToyHOIRecipe):
    """The toy with RmLR's score exponents (p_test 2.8, p_train 1): its triplets carry a confidence."""

    def score_exponents(self, cfg):
        return 2.8, 1.0


def test_predict_keeps_rmlr_triplets_by_confidence_and_others_by_score(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(RECIPES, "rmlr", _ToyWithConfidence())
    ck = _checkpoint(tmp_path, "rmlr")
    Image.fromarray(np.full((50, 100, 3), 40, np.uint8)).save(tmp_path / "f.png")
    # box scores 0.95, 0.8: prior 0.76; confidence = score * 0.76^(1 - 2.8) = score * 1.6388, at most 1:
    # ride (score 0.9) 1.0, hold (score 0.3) 0.49165
    runs = {"c45": ["--min-confidence", "0.45", "--threshold", "0.5"],   # hold kept although its score < 0.5
            "c50": ["--min-confidence", "0.5"],
            "s45": ["--min-confidence", "-1", "--threshold", "0.45"]}     # by score: hold's 0.3 < 0.45
    got = {}
    for name, opts in runs.items():
        assert main(["predict", str(tmp_path / "f.png"), "--checkpoint", str(ck), *opts,
                     "--out", str(tmp_path / name)]) == 0
        res = json.loads((tmp_path / name / "f.json").read_text())
        got[name] = [(t["verb"], t["score"], t["confidence"]) for t in res["triplets"]]
    assert got["c45"] == [("ride", pytest.approx(0.9), 1.0), ("hold", pytest.approx(0.3), pytest.approx(0.49165, abs=1e-4))]
    assert got["c50"] == got["s45"] == [("ride", pytest.approx(0.9), 1.0)]
    assert "person ride bicycle 1.00 (s=0.90)" in capsys.readouterr().out
    # detections follow --threshold, plus the boxes of the triplets kept by confidence: the bicycle (0.8)
    # is below 0.85 but its triplets are kept
    assert main(["predict", str(tmp_path / "f.png"), "--checkpoint", str(ck), "--min-confidence", "0.45",
                 "--threshold", "0.85", "--out", str(tmp_path / "d85")]) == 0
    res = json.loads((tmp_path / "d85" / "f.json").read_text())
    assert [d["label"] for d in res["detections"]] == ["person", "bicycle"] and len(res["triplets"]) == 2
    res = hoikit.load(str(ck)).predict(str(tmp_path / "f.png"), threshold=0.85, min_confidence=0.95)
    assert [d["label"] for d in res["detections"]] == ["person", "bicycle"] and len(res["triplets"]) == 1
    res = hoikit.load(str(ck)).predict(str(tmp_path / "f.png"), threshold=0.85, min_confidence=1.5)
    assert [d["label"] for d in res["detections"]] == ["person"] and res["triplets"] == []
    # nothing reaches the confidence: the line says which option to lower
    assert main(["predict", str(tmp_path / "f.png"), "--checkpoint", str(ck), "--min-confidence", "1.5",
                 "--out", str(tmp_path / "none")]) == 0
    assert "0 triplets confidence >= 1.5; best person ride bicycle" in capsys.readouterr().out
    # the Python API keeps by score unless asked
    res = hoikit.load(str(ck)).predict(str(tmp_path / "f.png"), threshold=0.45)
    assert [t["verb"] for t in res["triplets"]] == ["ride"]
    res = hoikit.load(str(ck)).predict(str(tmp_path / "f.png"), threshold=0.45, min_confidence=0.45)
    assert [t["verb"] for t in res["triplets"]] == ["ride", "hold"]


def test_python_api_on_a_tiny_detr_checkpoint(tmp_path):
    ck = _checkpoint(tmp_path, "detr", ["model.detr.backbone=tiny", "model.detr.hidden_dim=32", "model.detr.nheads=2",
                                        "model.detr.enc_layers=1", "model.detr.dec_layers=1",
                                        "model.detr.dim_feedforward=64", "model.detr.num_queries=5"])
    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    res = hoikit.load(str(ck)).predict(image, threshold=0.0)
    assert res["arch"] == "detr" and res["triplets"] == [] and len(res["detections"]) == 5
    scores = [d["score"] for d in res["detections"]]
    assert scores == sorted(scores, reverse=True)
    for d in res["detections"]:
        assert d["label"] in META.objects and len(d["box"]) == 4


def test_cli_errors_are_one_line(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cases = [["predict", str(tmp_path / "none.jpg"), "--checkpoint", str(tmp_path / "missing.pt")],
             ["train", "no_such_preset"],
             ["train", "synth_rmlr", "train.no_such_key=1"]]
    errors = []
    for argv in cases:
        r = subprocess.run([sys.executable, "-m", "hoikit.cli", *argv], env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2, (argv, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hoikit: error: "), r.stderr
        errors.append(lines[0])
    assert "missing.pt: checkpoint file not found" in errors[0]
    assert "no_such_preset" in errors[1] and "train.no_such_key" in errors[2]


def test_score_text_keeps_two_significant_digits_below_a_hundredth():
    from hoikit.viz.draw import score_text

    assert [score_text(s) for s in (0.9, 0.04, 0.01, 0.0042, 0.0)] == ["0.90", "0.04", "0.01", "0.0042", "0"]


def test_triplet_confidence_moves_the_score_to_the_training_exponent_by_hand():
    from hoikit.engine.inference import triplet_confidence

    # sigmoid(logit) 0.8, s_h 0.5, s_o 0.4: inference score 0.8 * 0.2^2.8 = 0.0087; training fits 0.8 * 0.2
    assert triplet_confidence(0.8 * 0.2 ** 2.8, 0.5, 0.4, 2.8, 1.0) == pytest.approx(0.16, abs=1e-4)
    assert triplet_confidence(0.3, 1.0, 1.0, 2.8, 1.0) == pytest.approx(0.3)      # oracle boxes: scores 1
    assert triplet_confidence(0.5, 0.0, 0.9, 2.8, 1.0) == 0.0                     # no pair prior
    assert triplet_confidence(0.02, 0.5, 0.5, 2.0, 2.0) == 0.02                   # same exponents: the score


def test_shipped_rmlr_confidence_is_the_heads_sigmoid_times_the_training_prior(tmp_path):
    """Each triplet's ``confidence`` is the interaction head's sigmoid(logit) for the triplet's own pair and
    verb (read from the classifier's output by a hook, rows in pair order) times s_h * s_o, the prior with
    the training exponent 1; the Predictor's JSON carries the same values for its best triplets."""
    from pathlib import Path

    from hoikit.data.synth import generate_synthhoi
    from hoikit.engine.inference import to_pil

    root = tmp_path / "synth"
    generate_synthhoi(root, 2, 3, seed=5, size=256, workers=1)
    predictor = hoikit.load(str(Path(hoikit.__file__).parent / "assets" / "synth_rmlr.pt"))
    for image in sorted((root / "images" / "test").glob("*")):
        logits = []
        hook = predictor.model.interaction_head.box_pair_predictor.register_forward_hook(
            lambda m, i, o: logits.append(o.detach()))
        tensor, target = predictor.preprocess(to_pil(image))
        with torch.no_grad():
            out = predictor.recipe.forward(predictor.model, [tensor], [target])
        hook.remove()
        pred = predictor.recipe.postprocess(predictor.model, out, [target])[0]
        t = pred.triplets(predictor.meta_hoi.correspondence)
        sig = torch.sigmoid(logits[0]).double().numpy()[t["pair"], t["verb"]]
        s_h = pred.box_scores[pred.pairs[t["pair"], 0]].astype(np.float64)
        s_o = pred.box_scores[pred.pairs[t["pair"], 1]].astype(np.float64)
        expected = sig * s_h * s_o
        assert np.allclose(t["score"], sig * (s_h * s_o) ** 2.8, rtol=1e-4, atol=1e-9)   # UPT's inference score
        best = np.argsort(-t["score"], kind="stable")[:10]
        res = predictor.predict(str(image), threshold=0.0, max_triplets=10)
        assert len(res["triplets"]) == len(best) > 0
        assert [r["confidence"] for r in res["triplets"]] == pytest.approx(expected[best].tolist(), abs=1e-4)


def test_demo_draws_the_confident_triplets_else_the_best_three():
    from hoikit.commands.demo import shown_triplets
    from hoikit.viz.draw import triplet_text

    t = [{"subject": "person", "verb": v, "object": "ball", "score": s, "confidence": c}
         for v, s, c in [("hold", 0.02, 0.3), ("throw", 0.015, 0.05), ("look_at", 0.01, 0.2), ("kick", 0.001, 0.1)]]
    assert [x["verb"] for x in shown_triplets({"triplets": t})["triplets"]] == ["hold", "look_at", "kick"]
    assert [x["verb"] for x in shown_triplets({"triplets": t}, most=2)["triplets"]] == ["hold", "look_at"]
    unsure = [{**x, "confidence": 0.01} for x in t]
    assert [x["verb"] for x in shown_triplets({"triplets": unsure})["triplets"]] == ["hold", "throw", "look_at"]
    plain = [{k: v for k, v in x.items() if k != "confidence"} for x in t]
    assert len(shown_triplets({"triplets": plain})["triplets"]) == 3
    assert triplet_text(t[0]) == "person hold ball 0.30 (s=0.02)"
    assert triplet_text(plain[3]) == "person kick ball 0.001"
