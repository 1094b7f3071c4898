"""COCO box AP (hoikit.eval.detection, pycocotools) against hand-computed cases.

COCO's AP of one class at one IoU threshold is the mean, over the 101 recall thresholds
0, 0.01, ..., 1, of the best precision reached at a recall >= the threshold (0 where the recall is
never reached). Each expected value below is worked out by hand from that rule.
"""
import json

import numpy as np
import pytest

from hoikit.eval.adapters import DetectionEvaluation, detection_ground_truth
from hoikit.errors import DataError
from hoikit.eval.detection import coco_detection_metrics

A, B = [0, 0, 10, 10], [20, 20, 30, 30]      # two disjoint 10 x 10 boxes (COCO "small")
NAMES = ["person", "cup", "kite"]


def gt(boxes, labels, **kw):
    return {"boxes": np.asarray(boxes, float).reshape(-1, 4), "labels": np.asarray(labels), **kw}


def dets(boxes, labels, scores):
    return {"boxes": np.asarray(boxes, float).reshape(-1, 4), "labels": np.asarray(labels),
            "scores": np.asarray(scores, float)}


def test_a_duplicate_detection_is_a_false_positive():
    g = [gt([A, B], [0, 0])]
    # ranked: A (TP), A again (FP: A is taken, B does not overlap), B (TP)
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; envelope: 1 up to recall 0.5, 2/3 above
    # -> 51 recall thresholds (0 .. 0.50) at 1 and 50 (0.51 .. 1) at 2/3, at every IoU threshold
    m = coco_detection_metrics(g, [dets([A, A, B], [0, 0, 0], [0.9, 0.8, 0.7])], NAMES)
    expected = 100 * (51 + 50 * 2 / 3) / 101
    for k in ("AP", "AP50", "AP75", "APs"):
        assert m[k] == pytest.approx(expected)
    # without the duplicate every detection is a true positive
    assert coco_detection_metrics(g, [dets([A, B], [0, 0], [0.9, 0.7])], NAMES)["AP50"] == pytest.approx(100)
    # the duplicate below the last true positive costs nothing (precision envelope)
    assert coco_detection_metrics(g, [dets([A, B, A], [0, 0, 0], [0.9, 0.8, 0.7])], NAMES)["AP"] == pytest.approx(100)


@pytest.mark.parametrize("height,ap50,ap75,ap", [
    (49, 0.0, 0.0, 0.0),       # IoU 0.49: a miss and a false positive at every threshold
    (50, 100.0, 0.0, 10.0),    # IoU exactly 0.5 matches (COCO: IoU >= t)
    (51, 100.0, 0.0, 10.0),    # IoU 0.51: a hit at 0.50 only: AP = 1 of 10 thresholds
    (62, 100.0, 0.0, 30.0),    # IoU 0.62: hits at 0.50, 0.55, 0.60
])
def test_iou_threshold(height, ap50, ap75, ap):
    g = [gt([[10, 20, 110, 120]], [1])]                # 100 x 100, away from the origin (xyxy != xywh)
    m = coco_detection_metrics(g, [dets([[10, 20, 110, 20 + height]], [1], [0.5])], NAMES)
    assert (m["AP50"], m["AP75"], m["AP"]) == pytest.approx((ap50, ap75, ap))
    assert m["per_class_AP50"] == pytest.approx({"cup": ap50})


CROWD = [100, 100, 200, 200]


def test_a_crowd_region_swallows_detections():
    # one person A and a crowd of people; two detections inside the crowd (ordinary IoU 0.04, crowd
    # IoU = intersection / detection area = 1) rank above the detection of A
    d = [dets([[110, 110, 130, 130], [150, 150, 170, 170], A], [0, 0, 0], [0.9, 0.85, 0.8])]
    m = coco_detection_metrics([gt([A, CROWD], [0, 0], iscrowd=[False, True])], d, NAMES)
    assert m["AP50"] == pytest.approx(100) and m["AP"] == pytest.approx(100)   # ignored, not false positives
    # the same region as an ordinary box: two false positives first, and a second positive never found:
    # precision 1/3 at recall 1/2 -> 51 thresholds at 1/3
    m = coco_detection_metrics([gt([A, CROWD], [0, 0], iscrowd=[False, False])], d, NAMES)
    assert m["AP50"] == pytest.approx(100 * 51 / 3 / 101)


def test_a_crowd_region_is_not_a_positive():
    # an unmatched crowd costs no recall; a class with only crowd ground truth is not averaged
    g = [gt([A, CROWD], [0, 1], iscrowd=[False, True])]
    m = coco_detection_metrics(g, [dets([A], [0], [0.9])], NAMES)
    assert m["AP50"] == pytest.approx(100) and m["per_class_AP50"] == pytest.approx({"person": 100})
    # next to a crowd of people, a person detection outside it is still a false positive:
    # ranked first, it halves the precision at recall 1
    g = [gt([A, CROWD], [0, 0], iscrowd=[False, True])]
    m = coco_detection_metrics(g, [dets([[0, 50, 10, 60], A], [0, 0], [0.95, 0.9])], NAMES)
    assert m["AP50"] == pytest.approx(50)


def test_per_class_ap():
    g = [gt([A, B], [0, 1]), gt([B], [0])]
    d = [dets([A, A, [20, 20, 30, 26.2]], [0, 1, 1], [0.9, 0.8, 0.7]),   # person hit; cup: FP then IoU 0.62
         dets([B, B], [0, 2], [0.6, 0.5])]                              # person hit; kite (no ground truth)
    m = coco_detection_metrics(g, d, NAMES)
    # person: 2 hits -> 100 at every threshold. cup: ranked FP (person box), hit: precision 1/2 at recall
    # 1 -> AP50 50; the hit has IoU 0.62, so 50 at IoU 0.50 / 0.55 / 0.60 and 0 at the other 7
    assert m["per_class_AP50"] == pytest.approx({"person": 100, "cup": 50})
    assert m["per_class_AP"] == pytest.approx({"person": 100, "cup": 15})
    assert "kite" not in m["per_class_AP50"]           # no ground truth: not averaged
    assert m["AP50"] == pytest.approx(75) and m["AP"] == pytest.approx(57.5) and m["AP75"] == pytest.approx(50)


def test_area_field_decides_the_size_range():
    box = [0, 0, 40, 40]                               # box area 1600: medium (32^2 .. 96^2)
    d = [dets([box], [0], [0.9])]
    m = coco_detection_metrics([gt([box], [0])], d, NAMES)
    assert m["APm"] == pytest.approx(100) and np.isnan(m["APs"]) and np.isnan(m["APl"])
    m = coco_detection_metrics([gt([box], [0], area=[900.0])], d, NAMES)   # a segmentation area: small
    assert m["APs"] == pytest.approx(100) and np.isnan(m["APm"])
    m = coco_detection_metrics([gt([box], [0], area=[np.nan])], d, NAMES)  # nan: the box area
    assert m["APm"] == pytest.approx(100)


def test_max_dets_keeps_the_best_scored():
    g = [gt([A, B], [0, 0])]
    d = [dets([A, B], [0, 0], [0.9, 0.8])]
    assert coco_detection_metrics(g, d, NAMES)["AP50"] == pytest.approx(100)
    # one detection per image and class: recall 1/2 with precision 1 -> 51 thresholds
    assert coco_detection_metrics(g, d, NAMES, max_dets=1)["AP50"] == pytest.approx(100 * 51 / 101)


def test_images_without_detections_and_without_ground_truth():
    g = [gt([A], [0]), gt(np.zeros((0, 4)), [])]
    assert coco_detection_metrics(g, {}, NAMES)["AP50"] == pytest.approx(0)     # a miss counts
    assert coco_detection_metrics(g, {0: dets([A], [0], [1.0])}, NAMES)["AP50"] == pytest.approx(100)
    m = coco_detection_metrics([g[1]], {0: dets([A], [0], [1.0])}, NAMES)     # nothing to find
    assert np.isnan(m["AP50"]) and m["per_class_AP50"] == {}


@pytest.mark.parametrize("g,d,message", [
    ([gt([A], [3])], {}, "ground truth of image 0: label 3 is not in 0..2"),
    ([gt([A], [0])], {0: dets([A], [5], [1.0])}, "detections of image 0: label 5"),
    ([gt([A], [0])], {2: dets([A], [0], [1.0])}, "detections of image 2: no such image"),
    ([gt([A], [0])], {0: dets([A], [0], [np.nan])}, "detections of image 0: 'scores'"),
    ([gt([A], [0])], {0: {"boxes": [A], "labels": [0]}}, "detections of image 0: 'scores'"),
    ([gt([A], [0, 1])], {}, "ground truth of image 0: 1 boxes but 2 labels"),
    ([gt([A], [0], iscrowd=[0, 1])], {}, "ground truth of image 0: 2 'iscrowd' values for 1 boxes"),
])
def test_bad_input_is_one_line_naming_the_image(g, d, message):
    with pytest.raises(DataError) as e:
        coco_detection_metrics(g, d, NAMES)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_summary_matches_pycocotools_own_summary():
    """Random case: the metrics read from the precision array equal COCOeval.summarize()'s stats,
    run the documented way (results loaded by COCO.loadRes)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    g, d, images, anns, results = [], [], [], [], []
    for i in range(30):
        n = int(rng.integers(1, 6))
        xy = rng.uniform(0, 150, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 120, (n, 2))], 1)
        labels, crowd = rng.integers(0, 3, n), rng.random(n) < 0.1
        g.append(gt(boxes, labels, iscrowd=crowd))
        src = rng.integers(0, n, 12)
        db, dl, ds = boxes[src] + rng.normal(0, 8, (12, 4)), np.where(rng.random(12) < 0.8, labels[src], 1), rng.random(12)
        d.append(dets(db, dl, ds))
        images.append({"id": i})
        for b, c, z in zip(boxes, labels, crowd):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "bbox": [b[0], b[1], w, h],
                         "area": w * h, "iscrowd": int(z)})
        results += [{"image_id": i, "category_id": int(c), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                     "score": float(s)} for b, c, s in zip(db, dl, ds)]
    m = coco_detection_metrics(g, d, NAMES)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps({"images": images, "annotations": anns,
                                              "categories": [{"id": k, "name": n} for k, n in enumerate(NAMES)]}))
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    official = dict(zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), 100 * ev.stats[:6]))
    assert {k: m[k] for k in official} == pytest.approx(official, abs=1e-9)
    assert 0 < m["AP"] < m["AP50"] < 100
    assert np.mean(list(m["per_class_AP"].values())) == pytest.approx(m["AP"])
    assert np.mean(list(m["per_class_AP50"].values())) == pytest.approx(m["AP50"])


COCO_FILE = {
    "images": [{"id": 5, "file_name": "a.jpg", "width": 300, "height": 300}],
    "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "cup"}],
    "annotations": [
        {"id": 1, "image_id": 5, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 2000.0, "iscrowd": 0},
        {"id": 2, "image_id": 5, "category_id": 1, "bbox": [100, 100, 100, 100], "area": 7000.0, "iscrowd": 1},
        {"id": 3, "image_id": 5, "category_id": 3, "bbox": [50, 50, 40, 40]},
    ],
}


def test_engine_evaluation_of_a_coco_file_keeps_crowd_and_area(tmp_path):
    """DetectionEvaluation on a COCO file's reader: the crowd region (dropped from training samples)
    swallows a detection, and the file's ``area`` (not the box area) decides the size range."""
    from hoikit.data.readers import open_reader

    path = tmp_path / "instances.json"
    path.write_text(json.dumps(COCO_FILE))
    reader = open_reader("coco", path)
    assert reader[0].labels.tolist() == [0, 1]                 # training sample: no crowd region
    t = reader.detection_targets(0)
    assert t["iscrowd"].tolist() == [False, True, False] and t["labels"].tolist() == [0, 0, 1]
    np.testing.assert_allclose(t["area"], [2000.0, 7000.0, np.nan])
    ev = DetectionEvaluation(detection_ground_truth(reader), reader.meta.objects)
    ev.add(0, dets([[120, 120, 140, 140], A, [50, 50, 90, 90]], [0, 0, 1], [0.9, 0.8, 0.7]))
    m = ev.compute()
    assert m["AP50"] == pytest.approx(100) and m["AP50/person"] == pytest.approx(100)
    assert m["AP50/cup"] == pytest.approx(100)
    # person: box 100 px^2 but area 2000 -> medium; cup: no area, box 1600 -> medium; nothing small or large
    assert m["APm"] == pytest.approx(100) and np.isnan(m["APs"]) and np.isnan(m["APl"])
    assert "person" in ev.table() and "AP50" in ev.table()


def test_bad_area_in_a_coco_file(tmp_path):
    from hoikit.data.readers import open_reader

    d = json.loads(json.dumps(COCO_FILE))
    d["annotations"][0]["area"] = "big"
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"annotations\[0\]\.area"):
        open_reader("coco", path)


def test_a_coco_file_read_by_hoikit_scores_as_pycocotools_scores_the_file(tmp_path):
    """Side by side with the official route: pycocotools loads the JSON file itself (image and category
    ids with gaps, crowd regions, segmentation areas, a zero-width box) and the detections as COCO
    results; hoikit goes through its reader (detection_targets) and coco_detection_metrics."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from hoikit.data.readers import open_reader

    rng = np.random.default_rng(1)
    cat_ids = [3, 1, 44]
    images, anns = [], []
    for n, image_id in enumerate([90, 7, 12, 501, 33, 8, 64, 2]):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 320, "height": 240})
        for _ in range(int(rng.integers(1, 7))):
            x, y = rng.uniform(0, 200), rng.uniform(0, 140)
            w, h = rng.uniform(4, 160), rng.uniform(4, 120)
            anns.append({"id": 1000 + len(anns), "image_id": image_id, "category_id": int(rng.choice(cat_ids)),
                         "bbox": [x, y, w, h], "area": float(w * h * rng.uniform(0.4, 0.9)),
                         "iscrowd": int(rng.random() < 0.15)})
    anns[3]["bbox"][2] = 0.0                                     # a zero-width box: a positive never found
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": c, "name": f"c{c}"} for c in cat_ids]}))
    reader = open_reader("coco", path)
    dets, results = {}, []
    class_of = {c: k for k, c in enumerate(sorted(cat_ids))}
    for i, image_id in enumerate(reader.image_ids):   # detections around every annotation, crowds too
        mine = [a for a in anns if a["image_id"] == image_id]
        xyxy = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                         for a in mine])
        k = len(mine) * 3
        src = rng.integers(0, len(mine), k)
        boxes = xyxy[src] + rng.normal(0, 5, (k, 4))
        labels = np.where(rng.random(k) < 0.8, [class_of[mine[j]["category_id"]] for j in src], rng.integers(0, 3, k))
        scores = rng.random(k)
        dets[i] = {"boxes": boxes, "labels": labels, "scores": scores}
        results += [{"image_id": reader.image_ids[i], "category_id": reader.meta.extra["category_ids"][c],
                     "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": float(s)}
                    for b, c, s in zip(boxes.tolist(), labels.tolist(), scores)]
    m = coco_detection_metrics([reader.detection_targets(i) for i in range(len(reader))], dets, reader.meta.objects)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    official = dict(zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), 100 * ev.stats[:6]))
    assert {k: m[k] for k in official} == pytest.approx(official, abs=1e-9)
    assert 0 < m["AP"] < m["AP50"] < 100 and sum(a["iscrowd"] for a in anns) > 0
    assert all(0 < m[k] < 100 for k in ("APs", "APm", "APl"))   # every size range is populated
