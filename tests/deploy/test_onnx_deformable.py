"""`hoikit export --format onnx` of Deformable DETR (plain, box refinement, two-stage + refinement with
class-wise NMS) and of RmLR on a Deformable DETR detector: on tiny random models, the
onnxruntime outputs equal PyTorch's to 1e-4 on SynthHOI test images of several sizes, before the
post-processing (raw logits and boxes) and after it (the detector's and RmLR's eval outputs)."""
import json

import pytest
import torch

pytest.importorskip("onnx", reason="the 'onnx' extra is not installed (pip install 'hoikit[onnx]')")
pytest.importorskip("onnxruntime", reason="the 'onnx' extra is not installed (pip install 'hoikit[onnx]')")

from hoikit.cli import main  # noqa: E402
from hoikit.config import load_config, to_dict  # noqa: E402
from hoikit.data.synth.scene import make_image  # noqa: E402
from hoikit.deploy.onnx_runtime import OnnxModel  # noqa: E402
from hoikit.deploy.traceable import greedy_nms_keep  # noqa: E402
from hoikit.io.checkpoint import model_checkpoint, save_checkpoint  # noqa: E402
from hoikit.engine.inference import Predictor  # noqa: E402
from hoikit.recipes import build_model, meta_to_dict  # noqa: E402
from onnx_common import DETECTOR_CLASSES, META, TINY_RMLR, assert_close, export  # noqa: E402
from hoikit.ops import box_iou  # noqa: E402

# small_res has 3 levels (strides 8, 16, 32); a 72 x 64 px image gives 9x8 + 5x4 + 3x2 = S = 98 tokens
TINY = ["model.detr.type=deformable", "model.detr.backbone=small_res", "model.detr.hidden_dim=32",
        "model.detr.nheads=2", "model.detr.enc_layers=1", "model.detr.dec_layers=2", "model.detr.dim_feedforward=64",
        "model.detr.num_queries=20", "model.detr.dropout=0.0", "model.detr.enc_n_points=2",
        "model.detr.dec_n_points=2", "data.test_scale=96", "data.max_size=96"]
VARIANTS = {
    # 4 levels: the 4th is a stride-2 convolution of C5 with an interpolated mask
    "plain": ["model.detr.num_feature_levels=4"],
    "refine": ["model.detr.num_feature_levels=3", "model.detr.with_box_refine=true"],
    # 100 proposals > the 98 tokens of a 72 x 64 image: the query count min(Q, S) follows the input
    "two_stage_nms": ["model.detr.num_feature_levels=3", "model.detr.with_box_refine=true",
                      "model.detr.two_stage=true", "model.detr.num_queries=100", "model.detr.nms_thresh=0.5"],
    # the decoder also samples the stride-4 map (its shape and mask follow the input too)
    "two_stage_fine": ["model.detr.num_feature_levels=3", "model.detr.with_box_refine=true",
                       "model.detr.two_stage=true", "model.detr.decoder_fine_level=true"],
}


def _spread(detr, person: int, person_bias: float = 3.0):
    """Spread a random Deformable DETR's scores and boxes (distinct top-k, boxes that NMS and the
    pair filter can tell apart) and make the person class likely."""
    with torch.no_grad():
        for head in {id(m): m for m in detr.class_embed}.values():
            head.weight.mul_(8.0)
            head.bias[person] = person_bias
        for mlp in {id(m): m for m in detr.bbox_embed}.values():
            mlp.layers[-1].weight.normal_(0.0, 0.1)      # initialised to 0: boxes = reference points
            mlp.layers[-1].bias[2:] += 2.0                 # larger boxes, some of them overlapping


def _checkpoint(tmp_path, arch: str, extra=()):
    overrides = [f"model.arch={arch}", *TINY, *extra]
    cfg = load_config(None, overrides + (list(TINY_RMLR) if arch == "rmlr" else []))
    if arch == "rmlr":   # a detector with two classes the dataset lacks, in another order: the label map runs
        cfg.model.detr.num_classes = len(DETECTOR_CLASSES)
        cfg.model.rmlr.detector_classes = ",".join(DETECTOR_CLASSES)
    torch.manual_seed(0)
    model = build_model(cfg, META, inference=True) if arch == "rmlr" else build_model(cfg, META)
    detr = model.detector if arch == "rmlr" else model.detr
    _spread(detr, DETECTOR_CLASSES.index("person") if arch == "rmlr" else 0)
    path = tmp_path / f"{arch}.pt"
    save_checkpoint(model_checkpoint(model, to_dict(cfg), meta_to_dict(arch, META)), path)
    return path


def _images(predictor, n=2):
    """SynthHOI test images through the evaluation transforms (96 px long side, several aspect
    ratios), and one 72 x 64 crop (fewer tokens than the two-stage variant's 100 proposals)."""
    images = [predictor.preprocess(make_image(0, "test", i, 128)[0])[0] for i in range(n)]
    return images + [images[0][:, :72, :64].contiguous()]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_deformable_detr_onnx_equals_pytorch(tmp_path, variant):
    ck = _checkpoint(tmp_path, "detr", VARIANTS[variant])
    out = export(tmp_path, ck)
    manifest = json.loads((out / "manifest.json").read_text())
    post = manifest["graphs"]["detector"]["postprocess"]
    assert post["nms"] == "in-graph" and post["nms_thresh"] == (0.5 if variant == "two_stage_nms" else 0.0)
    predictor, onnx = Predictor.from_checkpoint(ck), OnnxModel(out)
    shapes, queries, kept = set(), set(), []
    for image in _images(predictor):
        with torch.no_grad():
            raw = predictor.model.detr([image])
            ref = predictor.model([image])[0]
        ours = onnx(image)
        # before post-processing: the network itself
        assert_close(ours, {"pred_logits": raw["pred_logits"][0], "pred_boxes": raw["pred_boxes"][0]})
        # after: top-k (and NMS) detections, labels equal, in the same order
        assert_close(ours, ref)
        shapes.add(tuple(image.shape))
        queries.add(len(ours["pred_logits"]))
        kept.append(len(ours["boxes"]))
    assert len(shapes) > 2                             # several input sizes through one graph
    if variant == "two_stage_nms":
        assert queries == {98, 100}                    # min(Q, S): a dynamic query count
        assert min(kept) < 100                         # the in-graph NMS removed detections
        _assert_predict_cli_agrees(tmp_path, ck, out)
    else:
        assert queries == {20} and set(kept) == {100}  # top-100 of 20 queries x 10 classes


def _assert_predict_cli_agrees(tmp_path, ck, out):
    """`hoikit predict --onnx` writes the detections `hoikit predict --checkpoint` writes."""
    image = tmp_path / "img.png"
    make_image(0, "test", 2, 128)[0].save(image)
    for flag, src, dst in (("--onnx", out, "a"), ("--checkpoint", ck, "b")):
        assert main(["predict", str(image), flag, str(src), "--threshold", "0.0", "--out", str(tmp_path / dst)]) == 0
    a = json.loads((tmp_path / "a" / "img.json").read_text())["detections"]
    b = json.loads((tmp_path / "b" / "img.json").read_text())["detections"]
    assert len(a) == len(b) > 0 and [r["label"] for r in a] == [r["label"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["score"] == pytest.approx(rb["score"], abs=2e-4)      # both rounded to 4 decimals
        assert ra["box"] == pytest.approx(rb["box"], abs=0.011)    # pixels of the original image, rounded to 0.01


def test_rmlr_on_deformable_detr_onnx_equals_pytorch(tmp_path):
    # full RmLR: its IRE re-mines the Deformable detector's C5 map. UPT (ablation=plain) runs the same
    # proposals graph and the interaction graph without IRE, which test_onnx_export.py checks on DETR.
    ck = _checkpoint(tmp_path, "rmlr", VARIANTS["two_stage_nms"][:-1] + ["model.rmlr.ablation=full"])
    out = export(tmp_path, ck)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"proposals", "interaction"}
    assert "encoded" in manifest["graphs"]["interaction"]["inputs"]
    predictor, onnx = Predictor.from_checkpoint(ck), OnnxModel(out)
    n_pairs = []
    for image in _images(predictor):
        with torch.no_grad():
            ref = predictor.model([image])[0]
        ours = onnx(image)
        assert_close(ours, ref)
        n_pairs.append(len(ours["pairs"]))
    assert len(set(n_pairs)) > 1 and min(n_pairs) > 0   # several P through one graph, not one traced shape


def test_greedy_nms_extra_rounds_change_nothing():
    # the graphs trace max-count rounds for a dynamic count: any rounds >= N is the greedy result
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(12, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + 10 + torch.rand(12, 2, generator=g) * 10], 1)
    iou, _ = box_iou(boxes, boxes)
    valid = torch.ones(12, dtype=torch.bool)
    exact = greedy_nms_keep(iou, valid, 0.3)
    assert 0 < int(exact.sum()) < 12
    assert torch.equal(greedy_nms_keep(iou, valid, 0.3, rounds=50), exact)
