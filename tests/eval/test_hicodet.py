"""HICO-DET evaluator: hand-computed cases for every rule, the real file, the simple loop reference."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hoikit.cli import main as cli_main
from hoikit.errors import DataError
from hoikit.eval.hicodet import HICODetEvaluator, format_results, predictions_to_arrays
from hoikit.structures import HOIPrediction

_spec = importlib.util.spec_from_file_location("hico_reference", Path(__file__).with_name("hico_reference.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

# ---------------------------------------------------------------------------- a tiny dataset
# classes: 0 = ride bicycle, 1 = hold bicycle, 2 = hold cup (rare)
H = [0, 0, 10, 10]  # the human box used throughout (continuous pixels)


def to_file(box):
    """continuous (x1, y1, x2, y2) -> HICO-DET file convention, 1-based inclusive."""
    return [box[0] + 1, box[1] + 1, box[2], box[3]]


def make_anno(pairs, num_images, empty=()):
    """pairs: list of (image, hoi, box_h, box_o) in file order, boxes continuous."""
    corr = [[0, 1, 0], [1, 1, 1], [2, 2, 1]]
    ann = [dict(boxes_h=[], boxes_o=[], hoi=[], object=[], verb=[]) for _ in range(num_images)]
    for i, h, bh, bo in pairs:
        a = ann[i]
        a["boxes_h"].append(to_file(bh))
        a["boxes_o"].append(to_file(bo))
        a["hoi"].append(h)
        a["object"].append(corr[h][1])
        a["verb"].append(corr[h][2])
    return dict(annotation=ann, filenames=[f"im{i}.jpg" for i in range(num_images)], empty=list(empty),
                objects=["person", "bicycle", "cup"], verbs=["ride", "hold"], correspondence=corr,
                size=[[100, 100]] * num_images, rare=[2], non_rare=[0, 1])


def run(anno, dets, **kw):
    """dets: list of (image, hoi, score, box_h, box_o). Returns (hoikit result, reference result)."""
    image = np.array([d[0] for d in dets], np.int64)
    hoi = np.array([d[1] for d in dets], np.int64)
    score = np.array([d[2] for d in dets], np.float64)
    bh = np.array([d[3] for d in dets], np.float64).reshape(-1, 4)
    bo = np.array([d[4] for d in dets], np.float64).reshape(-1, 4)
    res = HICODetEvaluator(anno, **kw).evaluate(image, hoi, score, bh, bo)
    r = ref.evaluate_reference(anno, image, hoi, score, bh, bo, skip_empty=kw.get("skip_empty", False))
    return res, r


def ap(res, c, setting="ap"):
    return res["per_class"][c][setting] / 100


def both(res, r, c, expected, setting="default"):
    """hoikit and the loop reference both give the hand-computed AP."""
    key = "ap" if setting == "default" else "ap_known_object"
    assert ap(res, c, key) == pytest.approx(expected, abs=1e-12)
    assert r[setting][c] == pytest.approx(expected, abs=1e-12)


def box_x(x):
    return [x, 0, x + 10, 10]


# ---------------------------------------------------------------------------- hand cases
def test_no_fallback_to_second_best():
    # two pairs of class 0 in image 0, object boxes shifted by 0 and 4 pixels in x
    anno = make_anno([(0, 0, H, box_x(0)), (0, 0, H, box_x(4))], 1)
    # d1 = pair A exactly -> TP. d2 object at x=1: IoU(A) = 9/11, IoU(B) = 7/13 >= 0.5, argmax = A
    # (taken) -> FP, never B. tp = [1, 0], npos 2: rec .5 .5, prec 1 .5 -> t = 0 ... .5: 6/11
    res, r = run(anno, [(0, 0, 0.9, H, box_x(0)), (0, 0, 0.8, H, box_x(1))])
    both(res, r, 0, 6 / 11)
    # a greedy "any free ground truth" matcher would make d2 a TP and give AP 1: we must not
    assert ap(res, 0) < 1


def test_overlap_exactly_half_is_true_positive():
    anno = make_anno([(0, 0, H, H), (1, 0, H, H)], 2)
    half = [0, 0, 10, 5]          # IoU with H = 50 / 100 = 0.5 exactly
    below = [0, 0, 10, 4.99]      # IoU 49.9 / 100 < 0.5
    res, r = run(anno, [(0, 0, 0.9, H, half), (1, 0, 0.8, half, H)])
    both(res, r, 0, 1.0)          # min(IoU_h, IoU_o) = 0.5 >= 0.5: both TP
    res, r = run(anno, [(0, 0, 0.9, H, below), (1, 0, 0.8, H, H)])
    # tp = [0, 1], npos 2: rec 0 .5, prec 0 .5 -> t = 0 ... .5 give .5: 6 * .5 / 11
    both(res, r, 0, 3 / 11)


def test_duplicate_detections_are_false_positives():
    anno = make_anno([(0, 0, H, H), (1, 0, H, H)], 2)
    # A, A again, B: tp = [1, 0, 1], rec .5 .5 1, prec 1 .5 2/3 -> (6 * 1 + 5 * 2/3) / 11
    res, r = run(anno, [(0, 0, 0.9, H, H), (0, 0, 0.8, H, H), (1, 0, 0.7, H, H)])
    both(res, r, 0, (6 + 5 * 2 / 3) / 11)
    assert res["per_class"][0]["recall"] == pytest.approx(100.0)


def test_stable_ties_image_then_input_position():
    anno = make_anno([(1, 0, H, H)], 2)
    far = [50, 50, 60, 60]
    # equal scores: the FP (image 0) comes AFTER the TP (image 1) in the input, but MATLAB's
    # input is image by image, so the FP ranks first: tp = [0, 1] -> prec .5 at rec 1 -> AP .5
    res, r = run(anno, [(1, 0, 0.5, H, H), (0, 0, 0.5, H, far)])
    both(res, r, 0, 0.5)
    # same image: ties keep input position
    anno = make_anno([(0, 0, H, H)], 1)
    res, r = run(anno, [(0, 0, 0.5, H, far), (0, 0, 0.5, H, H)])
    both(res, r, 0, 0.5)
    res, r = run(anno, [(0, 0, 0.5, H, H), (0, 0, 0.5, H, far)])
    both(res, r, 0, 1.0)


def test_overlap_tie_goes_to_first_pair_in_file_order():
    # pairs A (object at x = 0) and B (x = 4), A first in the file. d1 = A exactly takes A.
    # d2 (object at x = 2) overlaps A and B equally (80 / 120 each): the tie goes to A, which
    # is taken -> FP, although B is free. tp = [1, 0], npos 2 -> 6/11 (last-wins would give 1).
    anno = make_anno([(0, 0, H, box_x(0)), (0, 0, H, box_x(4))], 1)
    res, r = run(anno, [(0, 0, 0.9, H, box_x(0)), (0, 0, 0.8, H, box_x(2))])
    both(res, r, 0, 6 / 11)
    # file order decides, not box order: listing B first makes d2's tie go to the free B
    anno = make_anno([(0, 0, H, box_x(4)), (0, 0, H, box_x(0))], 1)
    res, r = run(anno, [(0, 0, 0.9, H, box_x(0)), (0, 0, 0.8, H, box_x(2))])
    both(res, r, 0, 1.0)


def test_matlab_thresholds_inside_evaluator():
    # 5 pairs of class 1, 3 exact detections: recall exactly 3/5 reaches t = 0.6 -> 7/11
    anno = make_anno([(i, 1, H, H) for i in range(5)], 5)
    res, r = run(anno, [(i, 1, 1.0 - i / 10, H, H) for i in range(3)])
    both(res, r, 1, 7 / 11)


def test_known_object_filtering_keeps_npos():
    # class 2 (hold cup): pairs in images 0 and 3; image 1 has only a bicycle pair, image 2 nothing
    anno = make_anno([(0, 2, H, H), (3, 2, H, H), (1, 0, H, H)], 4)
    dets = [(1, 2, 0.9, H, H), (2, 2, 0.85, H, H), (0, 2, 0.8, H, H)]
    res, r = run(anno, dets)
    # Default: tp = [0, 0, 1], npos 2: rec 0 0 .5, prec 0 0 1/3 -> 6 * (1/3) / 11
    both(res, r, 2, 2 / 11)
    # Known-Object: images 1 and 2 have no cup -> dropped; tp = [1], rec .5 (npos still 2) -> 6/11
    both(res, r, 2, 6 / 11, setting="known_object")
    assert res["per_class"][2]["detections_known_object"] == 1


def test_empty_images_counted_or_skipped():
    anno = make_anno([(0, 0, H, H)], 2, empty=[1])
    dets = [(1, 0, 0.95, H, H), (0, 0, 0.5, H, H)]
    res, r = run(anno, dets)
    both(res, r, 0, 0.5)                       # official: FP in the empty image ranks first
    res, r = run(anno, dets, skip_empty=True)  # UPT: never run on empty images
    both(res, r, 0, 1.0)
    assert res["setting"]["num_detections"] == 1


def test_no_ground_truth_in_image_and_no_detections():
    anno = make_anno([(0, 0, H, H), (0, 2, H, H)], 2)
    res, r = run(anno, [(1, 0, 0.9, H, H), (0, 0, 0.1, H, H)])  # image 1 has no pair: FP
    both(res, r, 0, 0.5)
    both(res, r, 1, 0.0)  # no detections (and no ground truth)
    both(res, r, 2, 0.0)  # ground truth but no detections
    # Full = mean of 3 classes, Rare = class 2, Non-rare = classes 0 and 1
    assert res["default"]["full"] == pytest.approx(100 * 0.5 / 3)
    assert res["default"]["rare"] == pytest.approx(0.0)
    assert res["default"]["non_rare"] == pytest.approx(100 * 0.25)


def test_incremental_add_equals_arrays_and_prediction_helper():
    anno = make_anno([(0, 0, H, H), (0, 1, H, box_x(40)), (1, 2, H, box_x(20))], 2)
    # image 0: person 0, bicycle 1 (= H) and bicycle 2 (x = 40); image 1: person, cup at x = 20
    p0 = HOIPrediction(boxes=np.array([H, H, box_x(40)], np.float32), labels=np.array([0, 1, 1]),
                       box_scores=np.ones(3, np.float32), pairs=np.array([[0, 1], [0, 2]]),
                       verb_scores=np.array([[0.9, 0.2], [0.1, 0.8]], np.float32))
    p1 = HOIPrediction(boxes=np.array([H, box_x(20)], np.float32), labels=np.array([0, 2]),
                       box_scores=np.ones(2, np.float32), pairs=np.array([[0, 1]]),
                       verb_scores=np.array([[0.3, 0.7]], np.float32))  # "ride cup" is no class
    arrays = predictions_to_arrays([p0, p1], anno["correspondence"], image_indices=[0, 1])
    assert sorted(zip(arrays["image"].tolist(), arrays["hoi"].tolist())) == [(0, 0), (0, 0), (0, 1), (0, 1), (1, 2)]
    ev = HICODetEvaluator(anno)
    whole = ev.evaluate(**arrays)
    ev.add_prediction(0, p0)
    ev.add_prediction(1, p1)
    inc = ev.compute()
    assert inc["per_class"] == whole["per_class"]
    # class 0: (H, H) .9 TP, (H, x40) .1 FP -> 1; class 1: (H, x40) .8 TP, (H, H) .2 FP -> 1; class 2: TP
    assert [round(c["ap"], 9) for c in whole["per_class"]] == [100.0, 100.0, 100.0]
    ev.reset()
    assert ev.compute()["default"]["full"] == 0.0


# ---------------------------------------------------------------------------- bad input, CLI
def test_bad_input_raises_data_error_naming_the_fault():
    anno = make_anno([(0, 0, H, H)], 2)
    ev = HICODetEvaluator(anno)
    ok = dict(image=np.array([0]), hoi=np.array([0]), score=np.array([0.5]), box_h=np.array([H], float),
              box_o=np.array([H], float))
    cases = [(dict(ok, hoi=np.array([3])), "'hoi' index 0: 3 outside 0..2"),
             (dict(ok, image=np.array([2])), "'image' index 0: 2 outside 0..1"),
             (dict(ok, score=np.array([np.nan])), "'score' index 0: non-finite"),
             (dict(ok, box_o=np.array([H[:3]], float)), "'box_o' has shape (1, 3)"),
             (dict(ok, image=np.array([0.5])), "'image' index 0: 0.5 is not an integer"),
             (dict(ok, box_h=None), "missing array 'box_h'")]
    for arrays, msg in cases:
        with pytest.raises(DataError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            ev.evaluate(**arrays)
    with pytest.raises(DataError, match="add\\(image_index=5\\)"):
        ev.add(5, [0], [0.5], [H], [H])
    with pytest.raises(DataError, match="missing key 'correspondence'"):
        HICODetEvaluator({k: v for k, v in anno.items() if k != "correspondence"})
    bad = json.loads(json.dumps(anno))
    bad["annotation"][1]["hoi"] = [7]
    bad["annotation"][1]["boxes_h"] = bad["annotation"][1]["boxes_o"] = [H]
    with pytest.raises(DataError, match=r"annotation\[1\] 'hoi' 7"):
        HICODetEvaluator(bad)


def test_cli_npz_and_json_agree_and_errors_are_one_line(tmp_path, capsys):
    anno = make_anno([(0, 0, H, H), (1, 2, H, H)], 2)
    anno_path = tmp_path / "anno.json"
    anno_path.write_text(json.dumps(anno))
    dets = dict(image=np.array([0, 1, 1]), hoi=np.array([0, 2, 2]), score=np.array([0.9, 0.4, 0.8]),
                box_h=np.array([H, H, H], float), box_o=np.array([H, box_x(30), H], float))
    np.savez(tmp_path / "d.npz", **dets)
    rows = [dict(image=int(dets["image"][i]), hoi=int(dets["hoi"][i]), score=float(dets["score"][i]),
                 box_h=dets["box_h"][i].tolist(), box_o=dets["box_o"][i].tolist()) for i in range(3)]
    (tmp_path / "d.json").write_text(json.dumps({"detections": rows}))
    outs = []
    for name in ("d.npz", "d.json"):
        out = tmp_path / (name + ".metrics.json")
        assert cli_main(["eval", "hicodet", "--pred", str(tmp_path / name), "--anno", str(anno_path),
                         "--json", str(out)]) == 0
        outs.append(json.loads(out.read_text()))
    printed = capsys.readouterr().out
    assert "Known-Object" in printed and "100.00" in printed and "66.67" in printed
    assert outs[0]["per_class"] == outs[1]["per_class"]
    assert set(outs[0]) >= {"default", "known_object", "per_class"}
    assert outs[0]["default"]["full"] == pytest.approx(200 / 3)  # classes 0 and 2 AP 1, class 1 AP 0
    np.savez(tmp_path / "bad.npz", image=dets["image"], hoi=dets["hoi"], score=dets["score"], box_h=dets["box_h"])
    assert cli_main(["eval", "hicodet", "--pred", str(tmp_path / "bad.npz"), "--anno", str(anno_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bad.npz" in err and "box_o" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- the real test file
@pytest.fixture(scope="module")
def real(shared_data):
    path = shared_data / "hicodet" / "instances_test2015.json"
    anno = json.loads(path.read_text())
    return anno, HICODetEvaluator(anno)


def test_real_file_ground_truth_scores_100(real):
    anno, ev = real
    shift = np.array([1.0, 1.0, 0.0, 0.0])  # file -> continuous
    for i, a in enumerate(anno["annotation"]):
        if a["hoi"]:
            ev.add(i, a["hoi"], np.ones(len(a["hoi"])), np.asarray(a["boxes_h"]) - shift,
                   np.asarray(a["boxes_o"]) - shift)
    res = ev.compute()
    ev.reset()
    assert len(res["per_class"]) == 600
    for setting in ("default", "known_object"):
        for k in ("full", "rare", "non_rare"):
            assert res[setting][k] == pytest.approx(100.0, abs=1e-9)
    assert sum(c["rare"] for c in res["per_class"]) == 138
    assert sum(c["npos"] for c in res["per_class"]) == 33405


@pytest.mark.parametrize("skip_empty", [False, True])
def test_real_file_agrees_with_loop_reference(real, skip_empty):
    anno, _ = real
    dets = ref.make_detections(anno, 150_000, seed=3 + skip_empty)
    ev = HICODetEvaluator(anno, skip_empty=skip_empty)
    res = ev.evaluate(**dets)
    rng = np.random.default_rng(11 + skip_empty)
    classes = sorted(rng.choice(600, 60, replace=False).tolist())
    r = ref.evaluate_reference(anno, dets["image"], dets["hoi"], dets["score"], dets["box_h"], dets["box_o"],
                               classes=classes, skip_empty=skip_empty)
    for c in classes:
        assert res["per_class"][c]["ap"] / 100 == pytest.approx(r["default"][c], abs=1e-9)
        assert res["per_class"][c]["ap_known_object"] / 100 == pytest.approx(r["known_object"][c], abs=1e-9)
        assert res["per_class"][c]["recall"] / 100 == pytest.approx(r["recall"][c], abs=1e-9)
    aps = np.array([r["default"][c] for c in classes])
    assert 0.05 < aps.mean() < 0.95  # a non-trivial mix of TP and FP
    assert "HICO-DET mAP" in format_results(res)


def test_ranked_order_is_lexsort_class_score_image_position():
    from hoikit.eval.hicodet import ranked_order
    rng = np.random.default_rng(5)
    for num_images in (50, 70_000):  # uint16 radix path and the int64 fallback
        image = rng.integers(0, num_images, 5000)
        hoi = rng.integers(0, 7, 5000)
        score = np.round(rng.random(5000), 1)  # many exact ties
        expected = np.lexsort((np.arange(5000), image, -score, hoi))
        assert (ranked_order(image, hoi, score) == expected).all()
    # sparse classes (most empty, some with one detection), a single detection, none
    hoi = np.array([599, 3, 3, 0, 599, 42, 3, 599])
    image, score = np.array([1, 0, 2, 5, 0, 7, 0, 1]), np.array([0.5, 0.2, 0.9, 0.1, 0.5, 0.3, 0.2, 0.7])
    assert ranked_order(image, hoi, score).tolist() == [3, 2, 1, 6, 5, 7, 4, 0]
    assert ranked_order(image[:1], hoi[:1], score[:1]).tolist() == [0]
    assert len(ranked_order(image[:0], hoi[:0], score[:0])) == 0


def test_object_order_comes_from_the_file(real, shared_data):
    """The COCO-80-ordered copy of the test file (other object ids, same HOI ids) gives the same APs."""
    anno, ev = real
    coco80 = json.loads((shared_data / "hicodet" / "instances_test2015.coco80.json").read_text())
    assert coco80["objects"] != anno["objects"]
    dets = ref.make_detections(anno, 60_000, seed=9)
    a, b = ev.evaluate(**dets), HICODetEvaluator(coco80).evaluate(**dets)
    for ca, cb in zip(a["per_class"], b["per_class"]):
        assert (ca["name"], ca["ap"], ca["ap_known_object"]) == (cb["name"], cb["ap"], cb["ap_known_object"])
    assert a["known_object"]["full"] > a["default"]["full"]  # Known-Object drops FPs: non-trivial here


def test_report_table_and_json(tmp_path):
    from hoikit.eval.report import format_table, write_json
    table = format_table("mAP (%)", {"Default": {"full": 36.926, "rare": float("nan")}}, ["full", "rare"],
                         headers={"full": "Full", "rare": "Rare"})
    assert [line.split() for line in table.splitlines()] == [["mAP", "(%)", "Full", "Rare"],
                                                              ["Default", "36.93", "n/a"]]
    out = write_json(tmp_path / "sub" / "m.json", {"a": np.float32(0.5), "b": float("nan"), "c": np.arange(2)})
    assert json.loads(out.read_text()) == {"a": 0.5, "b": None, "c": [0, 1]}
    assert [p.name for p in out.parent.iterdir()] == ["m.json"]  # no temp file left behind
