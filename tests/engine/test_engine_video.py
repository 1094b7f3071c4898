"""`hoikit predict clip.mp4`: annotated video, per-frame JSON and summary from short clips written here
with PyAV from SynthHOI frames; corrupt files and a missing extra give one line."""
import json
import os
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

import hoikit
from hoikit.cli import main
from hoikit.data.synth.scene import make_image
from hoikit.engine.inference import Predictor
from hoikit.recipes import RECIPES
from hoikit.viz.draw import PALETTE

from engine_toy import ToyHOIRecipe
from test_engine_predict import _checkpoint

try:
    import av
except ImportError:  # the 'video' extra (pip install -e ".[video]"; the dev extra installs it)
    av = None
needs_av = pytest.mark.skipif(av is None, reason="PyAV not installed (pip install -e \".[video]\")")
TINY_DETR = ["model.detr.backbone=tiny", "model.detr.hidden_dim=32", "model.detr.nheads=2", "model.detr.enc_layers=1",
             "model.detr.dec_layers=1", "model.detr.dim_feedforward=64", "model.detr.num_queries=5"]


def synth_frames(n, size):
    """``n`` different SynthHOI test images resized to ``size`` (W, H), as uint8 arrays."""
    return [np.asarray(make_image(0, "test", i, 96)[0].convert("RGB").resize(size)) for i in range(n)]


def write_clip(path, frames, fps=5):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def decode(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in c.decode(s)], s.average_rate


@needs_av
def test_video_outputs_follow_every_and_max_frames(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(RECIPES, "rmlr", ToyHOIRecipe())     # model.arch=rmlr builds the toy model
    ck = _checkpoint(tmp_path, "rmlr")    # fixed triplets: ride 0.9, hold 0.3, look at 0.05
    clip = write_clip(tmp_path / "clip.mp4", synth_frames(10, (100, 50)), fps=5)
    out = tmp_path / "o"
    assert main(["predict", str(clip), "--checkpoint", str(ck), "--out", str(out), "--every", "3",
                 "--max-frames", "3", "--batch-size", "2"]) == 0
    # frames 0, 3, 6 of a 5 frames/s clip (frame 9 is cut by --max-frames 3)
    rows = [json.loads(line) for line in (out / "clip_frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in rows] == [0, 3, 6] and [r["time"] for r in rows] == [0.0, 0.6, 1.2]
    assert [(t["verb"], t["score"]) for t in rows[1]["triplets"]] == [("ride", pytest.approx(0.9)),
                                                                     ("hold", pytest.approx(0.3))]
    s = json.loads((out / "clip_summary.json").read_text())
    assert s["frames_predicted"] == 3 and s["frames_per_second"] > 0 and s["video"]["frames"] == 10
    assert s["triplets"][0] == {"subject": "person", "verb": "ride", "object": "bicycle", "frames": 3,
                                "max_score": pytest.approx(0.9), "first_time": 0.0, "last_time": 1.2}
    assert [t["verb"] for t in s["triplets"]] == ["ride", "hold"] and s["detections"] == {"person": 3, "bicycle": 3}
    frames, rate = decode(out / "clip_annotated.mp4")
    assert len(frames) == 3 and rate == Fraction(5, 3)          # one in three frames: same duration
    assert frames[0].shape == (320, 640, 3)                    # drawn like the pictures: long side 640
    # the first caption ("person ride bicycle 0.90") sits top-left on PALETTE[0]
    corner = frames[1][6:12, 8:14].reshape(-1, 3).mean(0)
    assert np.abs(corner - PALETTE[0]).max() < 40, corner
    printed = capsys.readouterr().out
    assert "3 frames in" in printed and "frames/s" in printed and "person ride bicycle in 3 frames" in printed


@needs_av
def test_video_frames_match_single_image_predictions(tmp_path):
    """Batched video inference gives, frame by frame, what Predictor.predict gives on the decoded frame."""
    ck = _checkpoint(tmp_path, "detr", TINY_DETR)
    clip = write_clip(tmp_path / "synth.mp4", synth_frames(5, (64, 48)))
    predictor = hoikit.load(str(ck))
    from hoikit.engine.video import predict_video
    s = predict_video(predictor, clip, tmp_path / "o", threshold=0.0, batch_size=4)   # batches of 4 + 1
    rows = [json.loads(line) for line in (tmp_path / "o" / "synth_frames.jsonl").read_text().splitlines()]
    frames, _ = decode(clip)
    assert s["frames_predicted"] == len(rows) == len(frames) == 5
    for row, frame in zip(rows, frames):
        single = predictor.predict(frame, threshold=0.0)
        assert [d["label"] for d in row["detections"]] == [d["label"] for d in single["detections"]]
        np.testing.assert_allclose([d["box"] for d in row["detections"]], [d["box"] for d in single["detections"]],
                                   atol=0.02)
        np.testing.assert_allclose([d["score"] for d in row["detections"]],
                                   [d["score"] for d in single["detections"]], atol=1e-3)


def test_predict_batch_equals_one_by_one(tmp_path):
    ck = _checkpoint(tmp_path, "detr", TINY_DETR)
    predictor = Predictor.from_checkpoint(str(ck))
    images = synth_frames(3, (64, 48))
    batch = predictor.predict_batch(images, threshold=0.0)
    for image, res in zip(images, batch):
        single = predictor.predict(image, threshold=0.0)
        assert res["size"] == single["size"] == [64, 48]
        np.testing.assert_allclose([d["score"] for d in res["detections"]],
                                   [d["score"] for d in single["detections"]], atol=1e-5)
    assert batch[0]["detections"] != batch[1]["detections"]   # different frames, different outputs


@needs_av
def test_corrupt_and_truncated_videos_are_one_line_errors(tmp_path, capsys):
    ck = _checkpoint(tmp_path, "detr", TINY_DETR)
    good = write_clip(tmp_path / "good.mp4", synth_frames(4, (64, 48)))
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(3000))
    (tmp_path / "half.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for name in ("garbage.mp4", "half.mp4"):
        out = tmp_path / f"out_{name}"
        assert main(["predict", str(tmp_path / name), "--checkpoint", str(ck), "--out", str(out)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()   # stderr: no progress bar, no traceback
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"hoikit: error: {tmp_path / name}: cannot decode video ("), lines[0]
        assert not out.exists() or not any(out.iterdir())   # nothing half-written


def test_missing_video_extra_is_one_line(tmp_path, monkeypatch, capsys):
    ck = _checkpoint(tmp_path, "detr", TINY_DETR)
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 100)
    monkeypatch.setitem(sys.modules, "av", None)   # import av -> ImportError
    assert main(["predict", str(tmp_path / "clip.mp4"), "--checkpoint", str(ck), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the 'video' extra" in err[0] and 'pip install "hoikit[video]"' in err[0], err


@needs_av
def test_bad_every_is_a_config_error(tmp_path, capsys):
    ck = _checkpoint(tmp_path, "detr", TINY_DETR)
    clip = write_clip(tmp_path / "c.mp4", synth_frames(2, (64, 48)))
    assert main(["predict", str(clip), "--checkpoint", str(ck), "--out", str(tmp_path / "o"), "--every", "0"]) == 2
    assert "--every 0" in capsys.readouterr().err


@needs_av
def test_a_second_run_keeps_the_first_outputs(tmp_path, monkeypatch):
    monkeypatch.setitem(RECIPES, "rmlr", ToyHOIRecipe())     # model.arch=rmlr builds the toy model
    ck = _checkpoint(tmp_path, "rmlr")
    clip = write_clip(tmp_path / "clip.mp4", synth_frames(2, (100, 50)))
    out = tmp_path / "o"
    from hoikit.engine.video import predict_video
    predictor = hoikit.load(str(ck))
    first = predict_video(predictor, clip, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    second = predict_video(predictor, clip, out, max_frames=1)
    assert sorted(before) == ["clip_annotated.mp4", "clip_frames.jsonl", "clip_summary.json"]
    assert second["outputs"]["video"] == str(out / "clip-2_annotated.mp4") != first["outputs"]["video"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in before} == before   # untouched
    assert len((out / "clip-2_frames.jsonl").read_text().splitlines()) == 1
