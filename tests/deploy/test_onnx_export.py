"""`hoikit export --format onnx` and `hoikit predict --onnx`: the onnxruntime outputs of tiny DETR,
UPT and RmLR checkpoints equal the PyTorch model's to 1e-4 on SynthHOI test images; the glue's
no-pair branch; one-line errors."""
import json

import pytest
import torch

pytest.importorskip("onnx", reason="the 'onnx' extra is not installed (pip install 'hoikit[onnx]')")
pytest.importorskip("onnxruntime", reason="the 'onnx' extra is not installed (pip install 'hoikit[onnx]')")

from hoikit.cli import main  # noqa: E402
from hoikit.config import load_config, to_dict  # noqa: E402
from hoikit.data.synth.classes import VERBS  # noqa: E402
from hoikit.data.synth.scene import make_image  # noqa: E402
from hoikit.deploy.onnx_runtime import OnnxModel  # noqa: E402
from hoikit.io.checkpoint import model_checkpoint, save_checkpoint  # noqa: E402
from hoikit.engine.inference import Predictor  # noqa: E402
from hoikit.recipes import build_model, meta_to_dict  # noqa: E402
from onnx_common import DETECTOR_CLASSES, META, TINY_RMLR, assert_close, export  # noqa: E402

TINY_DETR = ["model.detr.backbone=tiny", "model.detr.hidden_dim=32", "model.detr.nheads=2", "model.detr.enc_layers=1",
             "model.detr.dec_layers=1", "model.detr.dim_feedforward=64", "model.detr.num_queries=20",
             "model.detr.dropout=0.0", "data.test_scale=96", "data.max_size=160"]


def _checkpoint(tmp_path, arch, extra=(), no_person=False):
    cfg = load_config(None, [f"model.arch={arch}", *TINY_DETR, *(TINY_RMLR if arch == "rmlr" else ()), *extra])
    if arch == "rmlr":   # a detector with two classes the dataset lacks, in another order: the label map runs
        cfg.model.detr.num_classes = len(DETECTOR_CLASSES)
        cfg.model.rmlr.detector_classes = ",".join(DETECTOR_CLASSES)
    torch.manual_seed(0)
    model = build_model(cfg, META, inference=True) if arch == "rmlr" else build_model(cfg, META)
    detr = model.detector if arch == "rmlr" else model.detr
    with torch.no_grad():  # spread the random detector's classes and boxes so NMS keeps several boxes
        detr.query_embed.weight.mul_(5.0)
        detr.class_embed.weight.mul_(8.0)
        detr.bbox_embed.layers[-1].weight.mul_(20.0)
        person = DETECTOR_CLASSES.index("person") if arch == "rmlr" else 0
        detr.class_embed.bias[person] = -1e4 if no_person else 12.0    # no person / a few persons
    path = tmp_path / f"{arch}.pt"
    save_checkpoint(model_checkpoint(model, to_dict(cfg), meta_to_dict(arch, META)), path)
    return path


def _synth_tensors(predictor, n=3):
    return [predictor.preprocess(make_image(0, "test", i, 128)[0])[0] for i in range(n)]


@pytest.fixture(scope="module")
def rmlr_export(tmp_path_factory):
    """(checkpoint, export dir) of a tiny full RmLR, shared by the tests that only read them."""
    tmp = tmp_path_factory.mktemp("rmlr_full")
    ck = _checkpoint(tmp, "rmlr", ["model.rmlr.ablation=full"])
    return ck, export(tmp, ck)


@pytest.mark.parametrize("ablation", ["full", "plain"])   # RmLR (IRE + fusion) and UPT
def test_rmlr_and_upt_onnx_equal_pytorch_on_synthhoi(tmp_path, ablation, rmlr_export):
    if ablation == "full":
        ck, out = rmlr_export
    else:
        ck = _checkpoint(tmp_path, "rmlr", [f"model.rmlr.ablation={ablation}"])
        out = export(tmp_path, ck)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"proposals", "interaction"}
    assert ("encoded" in manifest["graphs"]["interaction"]["inputs"]) == (ablation == "full")
    predictor, onnx = Predictor.from_checkpoint(ck), OnnxModel(out)
    n_pairs = []
    for image in _synth_tensors(predictor):
        with torch.no_grad():
            ref = predictor.model([image])[0]
        ours = onnx(image)
        assert_close(ours, ref)
        n_pairs.append(len(ours["pairs"]))
    assert len(set(n_pairs)) > 1 and min(n_pairs) > 0   # several P through one graph, not one traced shape


def test_detr_onnx_equals_pytorch_on_synthhoi(tmp_path):
    ck = _checkpoint(tmp_path, "detr")
    out = export(tmp_path, ck)
    predictor, onnx = Predictor.from_checkpoint(ck), OnnxModel(out)
    shapes = set()
    for image in _synth_tensors(predictor):
        with torch.no_grad():
            ref = predictor.model([image])[0]
        assert_close(onnx(image), ref)
        shapes.add(tuple(image.shape))
    assert len(shapes) > 1                               # several input sizes through one graph


def test_no_person_detected_gives_no_pairs_like_pytorch(tmp_path):
    ck = _checkpoint(tmp_path, "rmlr", ["model.rmlr.ablation=full"], no_person=True)
    predictor, onnx = Predictor.from_checkpoint(ck), OnnxModel(export(tmp_path, ck))
    image = _synth_tensors(predictor, 1)[0]
    with torch.no_grad():
        ref = predictor.model([image])[0]
    ours = onnx(image)
    assert len(ref["pairs"]) == 0 and ours["pairs"].shape == (0, 2) and ours["verb_scores"].shape == (0, len(VERBS))
    assert_close(ours, ref)


def test_predict_cli_with_onnx_writes_the_same_json(tmp_path, rmlr_export):
    ck, out = rmlr_export
    image = tmp_path / "img.png"
    make_image(0, "test", 1, 128)[0].save(image)
    assert main(["predict", str(image), "--onnx", str(out), "--threshold", "0.0", "--out", str(tmp_path / "a")]) == 0
    assert main(["predict", str(image), "--checkpoint", str(ck), "--threshold", "0.0", "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "img.json").read_text())
    b = json.loads((tmp_path / "b" / "img.json").read_text())
    assert a.pop("runtime") == "onnxruntime" and a["triplets"]
    for rows in ("triplets", "detections"):
        assert [(r.get("verb"), r.get("object"), r.get("label")) for r in a[rows]] == \
            [(r.get("verb"), r.get("object"), r.get("label")) for r in b[rows]]
        for ra, rb in zip(a[rows], b[rows]):
            assert ra["score"] == pytest.approx(rb["score"], abs=2e-4)


def test_export_errors_are_one_line(tmp_path, capsys):
    ck = _checkpoint(tmp_path, "detr")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert main(["export", "--checkpoint", str(ck), "--format", "onnx", "--out", str(taken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not empty" in err and (taken / "keep.txt").read_text() == "mine"
    assert main(["predict", str(ck), "--onnx", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "manifest.json" in err


def test_predict_cli_with_onnx_runs_a_video_like_pytorch(tmp_path, rmlr_export):
    """``hoikit predict clip.mp4 --onnx DIR``: the video path needs the predictor's ``arch`` and
    ``predict_batch`` (it failed on OnnxPredictor before); its frames equal the PyTorch checkpoint's."""
    av = pytest.importorskip("av", reason="PyAV not installed (pip install -e '.[video]')")
    import numpy as np

    ck, out = rmlr_export
    frames = [np.asarray(make_image(0, "test", i, 128)[0].convert("RGB").resize((128, 96))) for i in range(3)]
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=5)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    assert main(["predict", str(clip), "--onnx", str(out), "--threshold", "0.0", "--out", str(tmp_path / "a")]) == 0
    assert main(["predict", str(clip), "--checkpoint", str(ck), "--threshold", "0.0", "--out", str(tmp_path / "b")]) == 0
    a, b = ([json.loads(line) for line in next((tmp_path / d).rglob("*.jsonl")).read_text().splitlines()]
            for d in ("a", "b"))
    assert len(a) == len(b) == 3
    for fa, fb in zip(a, b):
        assert [(t["verb"], t["object"]) for t in fa["triplets"]] == [(t["verb"], t["object"]) for t in fb["triplets"]]
        assert [t["score"] for t in fa["triplets"]] == pytest.approx([t["score"] for t in fb["triplets"]], abs=2e-4)
