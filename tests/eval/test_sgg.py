"""SGDet recall: hand cases for each rule of specs/evaluation.md, GT-as-prediction, loop reference."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hoikit.errors import DataError
from hoikit.eval import sgg
from hoikit.eval.sgg_io import load_predictions, save_predictions
from hoikit.structures import Sample, SceneGraphPrediction, box_iou_plus1_rows

_spec = importlib.util.spec_from_file_location("sgg_reference", Path(__file__).with_name("sgg_reference.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

A, B, C = [0, 0, 49, 49], [100, 100, 149, 149], [200, 0, 249, 49]


def gt(boxes, labels, rels):
    return Sample(0, "x.jpg", (300, 300), boxes=boxes, labels=labels, relations=rels)


def pred(boxes, labels, pairs, pscores, scores=None):
    return SceneGraphPrediction(np.float32(boxes), np.int64(labels), np.float32(scores or [1.0] * len(boxes)),
                                np.int64(pairs).reshape(-1, 2), np.float32(pscores))


def onehot(p, P=3, v=0.9):
    row = [0.0] * (P + 1)
    row[p + 1] = v
    return row


def test_graph_constraint_one_predicate_per_pair_vs_ng():
    # two GT predicates on the same pair; the prediction scores both
    g = gt([A, B], [0, 1], [[0, 1, 0], [0, 1, 2]])
    p = pred([A, B], [0, 1], [[0, 1]], [[0.0, 0.6, 0.0, 0.4]])
    res = sgg.evaluate([p], [g], num_predicates=3)
    assert res["R@20"] == 0.5 and res["ng-R@20"] == 1.0


def test_first_maximum_breaks_predicate_ties():
    g = gt([A, B], [0, 1], [[0, 1, 1]])
    p = pred([A, B], [0, 1], [[0, 1]], [[0.0, 0.5, 0.5, 0.0]])  # tie between predicates 0 and 1
    res = sgg.evaluate([p], [g], num_predicates=3)
    assert res["R@100"] == 0.0 and res["ng-R@100"] == 1.0


def test_ties_in_pair_ranking_are_stable_and_k_cuts():
    # 25 pairs of equal score; only the last one (input position 24) is right -> not in top 20.
    g = gt([A, B, C], [0, 1, 2], [[0, 1, 0]])
    pairs = [[1, 2]] * 24 + [[0, 1]]
    p = pred([A, B, C], [0, 1, 2], pairs, [[0.0, 0.3, 0.3, 0.3]] * 25)  # all predicates tie too
    res = sgg.evaluate([p], [g], num_predicates=3)
    assert (res["R@20"], res["R@50"]) == (0.0, 1.0)
    # ng: 25 pairs x 3 predicates, all equal; row-major order puts (pair 24, predicate 0) at
    # position 72 (after 24 pairs' 3 candidates) -> beyond 50, within 100
    assert (res["ng-R@50"], res["ng-R@100"]) == (0.0, 1.0)


def test_iou_is_plus_one_pixel_and_boundary_inclusive():
    g = gt([[0, 0, 9, 9], B], [0, 1], [[0, 1, 0]])
    assert box_iou_plus1_rows(np.float32([[0, 0, 9, 9]]), np.float32([[0, 0, 9, 4]]))[0] == 0.5
    hit = sgg.evaluate([pred([[0, 0, 9, 4], B], [0, 1], [[0, 1]], [onehot(0)])], [g], num_predicates=3)
    miss = sgg.evaluate([pred([[0, 0, 9, 3.9], B], [0, 1], [[0, 1]], [onehot(0)])], [g], num_predicates=3)
    assert hit["R@20"] == 1.0 and miss["R@20"] == 0.0


def test_mean_recall_is_per_image_then_per_predicate_and_skips():
    # image 0: one GT of predicate 0, recalled. image 1: three GTs of predicate 0, none recalled,
    # one GT of predicate 2, recalled. Predicate 1 never appears -> counts 0.
    g0 = gt([A, B], [0, 1], [[0, 1, 0]])
    g1 = gt([A, B, C], [0, 1, 2], [[1, 2, 0], [2, 1, 0], [1, 0, 0], [0, 2, 2]])
    g2 = gt([A, B], [0, 1], np.zeros((0, 3)))  # no GT relations: skipped
    g3 = gt([A, B], [0, 1], [[0, 1, 0]])  # GT but no predicted pair: skipped (not 0)
    p0 = pred([A, B], [0, 1], [[0, 1]], [onehot(0)])
    p1 = pred([A, B, C], [0, 1, 2], [[0, 2]], [onehot(2)])
    p3 = pred([A, B], [0, 1], np.zeros((0, 2)), np.zeros((0, 4)))
    res = sgg.evaluate([p0, p1, p0, p3], [g0, g1, g2, g3], num_predicates=3)
    assert res["images"] == 2
    assert res["R@20"] == pytest.approx((1.0 + 1 / 4) / 2)
    # predicate 0: (1 + 0) / 2 = 0.5 (pooled would be 1/4); predicate 2: 1; predicate 1: 0
    assert res["per_predicate_R@20"] == pytest.approx([0.5, 0.0, 1.0])
    assert res["mR@20"] == pytest.approx(1.5 / 3)


def test_zero_shot_recall_counts_only_listed_triplets():
    g0 = gt([A, B, C], [0, 1, 2], [[0, 1, 0], [1, 2, 1]])
    g1 = gt([A, B], [0, 1], [[0, 1, 2]])  # no zero-shot triplet: not in zR's mean
    p0 = pred([A, B, C], [0, 1, 2], [[1, 2]], [onehot(1)])
    p1 = pred([A, B], [0, 1], [[0, 1]], [onehot(2)])
    zs = np.array([[0, 1, 0], [1, 2, 1], [5, 5, 5]])  # (subject, object, predicate)
    res = sgg.evaluate([p0, p1], [g0, g1], num_predicates=3, zeroshot=zs)
    assert res["zR@20"] == 0.5 and res["R@20"] == pytest.approx((0.5 + 1) / 2)
    assert np.isnan(sgg.evaluate([p0], [g0], num_predicates=3)["zR@20"])


def test_default_lists_are_vg150_and_zero_based():
    zs = sgg.load_zeroshot()
    assert zs.shape == (5971, 3) and zs.min() == 0
    lt = sgg.load_longtail()
    assert [len(lt[g]) for g in ("head", "body", "tail")] == [7, 21, 22]
    assert sorted(np.concatenate(list(lt.values())).tolist()) == list(range(50))


@pytest.mark.parametrize("rows, bad", [([[1, 2, 3], [1, 2]], 1), ([[1, 2, 3], [4, 5, "x"]], 1), ([[1, 2], [1, 2, 3]], 0)])
def test_ragged_zeroshot_rows_are_a_one_line_error(tmp_path, rows, bad):
    f = tmp_path / "zs.json"
    f.write_text(json.dumps({"triplets": rows}))
    with pytest.raises(DataError) as e:
        sgg.load_zeroshot(f)
    assert str(e.value) == f"{f}: triplet row {bad} is not three integers [subject, object, predicate]"


def test_npz_keeps_the_predicate_width_of_the_predictions(tmp_path):
    P = 7   # not VG150's 50: the file must not assume 51 columns
    box = np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32)
    with_pairs = pred(box, [0, 1], [[0, 1]], [onehot(2, P)])
    no_pairs = SceneGraphPrediction(box, np.array([0, 1]), np.ones(2, np.float32), np.zeros((0, 2), np.int64),
                                    np.zeros((0, 0), np.float32))          # what JSON's [] reads as
    save_predictions([(0, no_pairs), (1, with_pairs)], tmp_path / "p.npz")
    loaded = dict(load_predictions(tmp_path / "p.npz", 2))
    assert loaded[1].predicate_scores.shape == (1, P + 1) and loaded[0].predicate_scores.shape == (0, P + 1)
    np.testing.assert_array_equal(loaded[1].predicate_scores, np.asarray(with_pairs.predicate_scores))
    save_predictions([(0, no_pairs)], tmp_path / "q.npz")
    assert dict(load_predictions(tmp_path / "q.npz", 1))[0].predicate_scores.shape == (0, 0)
    other = pred(box, [0, 1], [[0, 1]], [onehot(2, P + 2)])
    with pytest.raises(DataError, match=r"image 2 has 10 predicate_scores columns, image 1 has 8"):
        save_predictions([(1, with_pairs), (2, other)], tmp_path / "r.npz")


def random_case(seed, n_images=12, P=50):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for i in range(n_images):
        n = rng.integers(2, 7)
        xy = rng.uniform(0, 300, (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(20, 150, (n, 2))]
        labels = rng.integers(0, 4, n)
        r = rng.integers(0, 6) if i else 0
        rels = np.c_[rng.integers(0, n, (r, 2)), rng.integers(0, 5, r)]
        gts.append(gt(boxes, labels, rels))
        m = rng.integers(0, 40) if i != 1 else 0
        pb = np.r_[boxes + rng.normal(0, 8, boxes.shape), rng.uniform(0, 300, (3, 4))]
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2] + 5)
        pl = np.r_[np.where(rng.random(n) < 0.8, labels, rng.integers(0, 4, n)), rng.integers(0, 4, 3)]
        ps = rng.random((m, P + 1)).astype(np.float32)
        ps[:, 1:6] *= 4
        ps[rng.random((m, P + 1)) < 0.2] = 0.5  # ties
        sc = np.where(rng.random(len(pb)) < 0.3, 0.5, rng.random(len(pb)))
        pairs = rng.integers(0, len(pb), (m, 2))
        k = min(len(rels), m)
        pairs[:k] = rels[rng.permutation(len(rels))[:k], :2]  # some pairs are the right ones
        preds.append(pred(pb, pl, pairs[rng.permutation(m)], ps, list(sc)))
    return gts, preds


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference(seed):
    gts, preds = random_case(seed)
    zs = np.array([[a, b, p] for a in range(4) for b in range(4) for p in range(5) if (a + b + p) % 3 == 0])
    lt = {"head": np.arange(0, 3), "body": np.arange(3, 10), "tail": np.arange(10, 50)}
    res = sgg.evaluate(list(enumerate(preds)), gts, num_predicates=50, zeroshot=zs, longtail=lt)
    exp = ref.evaluate(list(enumerate(preds)), gts, 50, zeroshot=zs, longtail=lt)
    assert res["images"] == exp["images"] == sum(1 for g, p in zip(gts, preds) if len(g.relations) and len(p.pairs))
    for key, v in exp.items():
        assert res[key] == pytest.approx(v, abs=1e-9, nan_ok=True), key
    assert 0.1 < res["R@100"] < 0.9 and res["ng-R@100"] >= res["R@100"]


def test_ground_truth_as_predictions_scores_100():
    gts, _ = random_case(3)
    preds = [pred(g.boxes, g.labels, g.relations[:, :2], [onehot(int(p), 50) for p in g.relations[:, 2]])
             if len(g.relations) else None for g in gts]
    res = sgg.evaluate(preds, gts, num_predicates=50, zeroshot=np.array([[0, 1, 2]]))
    seen = np.unique(np.concatenate([g.relations[:, 2] for g in gts]))
    assert res["R@20"] == res["ng-R@20"] == 1.0
    assert np.allclose(np.array(res["per_predicate_R@20"])[seen], 1.0)
    assert res["mR@20"] == pytest.approx(len(seen) / 50)


def write_tiny_vg(tmp):
    """A 2-image VG150-layout h5 (test split) + image_data + the real dicts."""
    import h5py
    with h5py.File(tmp / "vg.h5", "w") as f:
        f["labels"] = np.array([[1], [2], [3], [4]])
        f["boxes_1024"] = np.array([[100, 100, 50, 50], [300, 300, 80, 40], [500, 500, 60, 60], [700, 200, 30, 90]], np.int32)
        f["attributes"] = np.zeros((4, 10), np.int64)
        f["relationships"] = np.array([[0, 1], [2, 3]], np.int32)
        f["predicates"] = np.array([[31], [20]])
        for k, v in (("img_to_first_box", [0, 2]), ("img_to_last_box", [1, 3]), ("img_to_first_rel", [0, 1]),
                     ("img_to_last_rel", [0, 1]), ("split", [2, 2])):
            f[k] = np.array(v, np.int32)
    (tmp / "image_data.json").write_text(json.dumps([dict(image_id=1, width=1024, height=768),
                                                     dict(image_id=2, width=800, height=1024)]))
    return tmp / "vg.h5", tmp / "image_data.json"


def test_files_and_cli_on_vg_layout(tmp_path, shared_data, capsys):
    from hoikit.cli import main
    from hoikit.data.visual_genome import VisualGenomeReader
    h5, image_data = write_tiny_vg(tmp_path)
    dicts = shared_data / "vg" / "VG-SGG-dicts-with-attri.json"
    reader = VisualGenomeReader(h5, dicts, image_data, split="test")
    items = [(i, pred(s.boxes, s.labels, s.relations[:, :2], [onehot(int(p), 50) for p in s.relations[:, 2]]))
             for i, s in enumerate(reader)]
    items[1][1].predicate_scores[0] = np.float32(onehot(0, 50))  # wrong predicate on image 1
    for suffix in (".json", ".npz"):
        save_predictions(items, tmp_path / f"p{suffix}")
        loaded = load_predictions(tmp_path / f"p{suffix}", len(reader))
        assert sgg.evaluate(loaded, reader)["R@20"] == 0.5
        out = tmp_path / f"r{suffix}.json"
        assert main(["eval", "sgg", "--pred", str(tmp_path / f"p{suffix}"), "--anno", str(h5), "--dicts",
                     str(dicts), "--image-data", str(image_data), "--json", str(out)]) == 0
        assert json.loads(out.read_text())["R@20"] == 50.0
    printed = capsys.readouterr().out
    assert "no graph constraint" in printed and f"wrote {tmp_path / 'r.npz.json'}" in printed
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"image": 5, "boxes": [], "labels": [], "scores": [], "pairs": [],
                                           "predicate_scores": []}]}))
    with pytest.raises(DataError, match="image 5"):
        load_predictions(bad, len(reader))
    assert main(["eval", "sgg", "--pred", str(bad), "--anno", str(h5), "--dicts", str(dicts),
                 "--image-data", str(image_data)]) == 2


@pytest.mark.parametrize("seed", [3, 4])
def test_chunked_and_array_inputs_match_loop_reference(seed, tmp_path):
    # the evaluator matches images in chunks; an NPZ-layout dict skips per-image objects. Neither may
    # change a number: small chunks, images with equal pair counts (the gather path) and ragged ones.
    gts, preds = random_case(seed, n_images=14)
    full = [pred(p.boxes, p.labels, np.resize(p.pairs, (8, 2)) if len(p.pairs) else p.pairs,
                 np.resize(p.predicate_scores, (8, 51)) if len(p.pairs) else p.predicate_scores, list(p.scores))
            for p in preds]
    lt = {"head": np.arange(0, 3), "body": np.arange(3, 10), "tail": np.arange(10, 50)}
    for case in (preds, full):
        items = list(enumerate(case))
        exp = ref.evaluate(items, gts, 50, zeroshot=[], longtail=lt)
        save_predictions(items, tmp_path / "c.npz")
        with np.load(tmp_path / "c.npz") as z:
            arrays = {k: z[k] for k in z.files}
        for got in (sgg.evaluate(items, gts, num_predicates=50, longtail=lt, chunk_images=3),
                    sgg.evaluate(arrays, gts, num_predicates=50, longtail=lt, chunk_images=4),
                    sgg.evaluate(arrays, gts, num_predicates=50, longtail=lt)):
            assert got["images"] == exp["images"]
            for key, v in exp.items():
                assert got[key] == pytest.approx(v, abs=1e-9, nan_ok=True), key
