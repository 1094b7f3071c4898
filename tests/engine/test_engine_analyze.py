"""`hoikit analyze tokens`: pair statistics by hand, and an end-to-end run on a tiny DETR."""
import json

import numpy as np
import pytest
import torch

from hoikit.cli import main
from hoikit.analysis.tokens import human_token, pair_stats
from hoikit.config import load_config, to_dict
from hoikit.data.metadata import DatasetMeta
from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
from hoikit.recipes import build_model, meta_to_dict


def test_pair_stats_by_hand():
    s = pair_stats([np.array([1.0, 0.0]), np.array([0.0, 2.0]), np.array([3.0, 0.0])])
    # pairs (0,1), (0,2), (1,2): cosines 0, 1, 0; distances sqrt(5), 2, sqrt(13)
    assert s["cosine"] == pytest.approx([0.0, 1.0, 0.0])
    assert s["distance"] == pytest.approx([5 ** 0.5, 2.0, 13 ** 0.5])
    assert s["cosine_mean"] == pytest.approx(1 / 3) and s["pairs"] == 3


def test_tokens_end_to_end_on_tiny_detr(tmp_path, capsys):
    meta = DatasetMeta(name="toy", objects=["person", "ball"], verbs=[], person_label=0)
    cfg = load_config(None, ["model.arch=detr", "model.detr.backbone=tiny", "model.detr.hidden_dim=32",
                             "model.detr.nheads=2", "model.detr.enc_layers=1", "model.detr.dec_layers=1",
                             "model.detr.dim_feedforward=64", "model.detr.num_queries=6", "data.test_scale=64"])
    torch.manual_seed(0)
    ck = tmp_path / "detr.pt"
    save_checkpoint(model_checkpoint(build_model(cfg, meta), to_dict(cfg), meta_to_dict("detr", meta)), ck)
    assert main(["analyze", "tokens", "--checkpoint", str(ck), "--out", str(tmp_path / "a")]) == 0
    res = json.loads((tmp_path / "a" / "tokens.json").read_text())
    assert len(res) == 2 and all(r["pairs"] == 15 for r in res.values())  # 6 images per group
    assert (tmp_path / "a" / "tokens.png").stat().st_size > 0
    # 6 + 6 images, "hold forward" at x=0.44 belongs to both groups -> 11 distinct files
    assert len(list((tmp_path / "a" / "images").glob("*.png"))) == 11
    assert "cosine" in capsys.readouterr().out
    # a second run into the same --out refuses and replaces nothing; --overwrite replaces
    before = {f: f.stat().st_mtime_ns for f in (tmp_path / "a").rglob("*")}
    (tmp_path / "a" / "tokens.json").write_text("the user's own notes")
    assert main(["analyze", "tokens", "--checkpoint", str(ck), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tokens.json is already there" in err[0] and "--overwrite" in err[0]
    assert (tmp_path / "a" / "tokens.json").read_text() == "the user's own notes"
    assert all(f.stat().st_mtime_ns == t for f, t in before.items() if f.name != "tokens.json")
    # only a rendered image in a separate --data: still refused, since it would be replaced
    data = tmp_path / "imgs"
    data.mkdir()
    (data / "hold_forward_44.png").write_bytes(b"mine")
    assert main(["analyze", "tokens", "--checkpoint", str(ck), "--out", str(tmp_path / "b"), "--data", str(data)]) == 2
    assert "hold_forward_44.png is already there" in capsys.readouterr().err
    assert (data / "hold_forward_44.png").read_bytes() == b"mine" and not (tmp_path / "b").exists()
    assert main(["analyze", "tokens", "--checkpoint", str(ck), "--out", str(tmp_path / "a"), "--overwrite"]) == 0
    assert json.loads((tmp_path / "a" / "tokens.json").read_text()) == res


@pytest.mark.parametrize("match, labels, expected_q", [
    ("iou", [0, 1, 0, 0], 1),      # best IoU, whatever its label
    ("score", [0, 1, 0, 0], 0),    # person queries at IoU >= 0.5: q0 (0.9) and q3 (0.6); q2 (0.99) misses
    ("score", [1, 1, 0, 1], 1),    # no person query reaches IoU 0.5 -> falls back to the best IoU
])
def test_human_token_is_the_token_of_the_person_query(match, labels, expected_q):
    """The token analysed is ``hs[-1]`` of a QUERY (index into the decoder's queries), chosen from the
    detector's one-detection-per-query list: by IoU with the drawn person (hand-computed below), or the
    highest-scoring person query with IoU >= 0.5. (Session 5 found the token taken at the index of the
    top-k list of Deformable DETR's post-processing instead, which is not a query index.)"""
    from types import SimpleNamespace

    boxes = torch.tensor([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60], [0, 0, 20, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.95, 0.99, 0.6])
    hs = torch.arange(2 * 1 * 4 * 3, dtype=torch.float32).reshape(2, 1, 4, 3)      # [L, B, Q, D]

    class Detector:
        def __call__(self, images):
            return {"hs": hs, "pred_logits": torch.zeros(1, 4, 2), "pred_boxes": torch.zeros(1, 4, 4)}

        def per_query_detections(self, outputs, sizes):
            assert sizes.tolist() == [[64.0, 48.0]]   # the image's own pixel frame (W, H)
            return [{"boxes": boxes, "scores": scores, "labels": torch.tensor(labels)}]

    predictor = SimpleNamespace(model=SimpleNamespace(detr=Detector()), device=torch.device("cpu"),
                                preprocess=lambda image: (torch.zeros(3, 8, 8), {}),
                                meta_hoi=SimpleNamespace(person_label=0))
    person = np.array([1, 0, 12, 10], np.float32)
    # IoU with the person box (area 110): q0 90/120 = 0.75, q1 100/110 = 0.909, q2 0, q3 110/200 = 0.55
    token, iou = human_token(predictor, SimpleNamespace(width=64, height=48), person, match)
    assert iou == pytest.approx([0.75, 100 / 110, 0.0, 0.55][expected_q])
    assert np.array_equal(token, hs[-1, 0, expected_q].numpy())
