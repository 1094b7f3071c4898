"""COCO instances files as detection data (DETR's training format) and SynthHOI's detector data."""
import dataclasses
import json

import numpy as np
import pytest

from hoikit.config import DataConfig, load_config
from hoikit.data.readers import open_reader
from hoikit.errors import ConfigError, DataError

# COCO-2017-like: category ids with gaps, listed out of order; one crowd box, one zero-width box
COCO = {
    "images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 80},
               {"id": 3, "file_name": "b.jpg", "width": 50, "height": 50}],
    "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 20, 30, 40], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0.5, 1.5, 2, 3], "iscrowd": 0},
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 100, 80], "iscrowd": 1},
        {"id": 4, "image_id": 3, "category_id": 90, "bbox": [5, 5, 0, 10], "iscrowd": 0},
        {"id": 5, "image_id": 3, "category_id": 90, "bbox": [1, 2, 3, 4]},
    ],
}


def write(tmp_path, obj, name="instances.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return p


def test_boxes_labels_and_class_order(tmp_path):
    r = open_reader("coco", write(tmp_path, COCO), images=tmp_path)
    # classes = categories sorted by id: person (1), dog (18), toothbrush (90)
    assert r.meta.objects == ["person", "dog", "toothbrush"] and r.meta.person_label == 0
    assert r.meta.extra["category_ids"] == [1, 18, 90]
    assert len(r) == 2 and r.image_ids == [7, 3]
    a = r[0]
    # xywh -> xyxy; the crowd box is not a target (DETR drops iscrowd = 1)
    np.testing.assert_allclose(a.boxes, [[10, 20, 40, 60], [0.5, 1.5, 2.5, 4.5]])
    assert a.labels.tolist() == [1, 0] and a.size == (100, 80) and a.image_id == 7
    assert a.image_path == str(tmp_path / "a.jpg") and len(a.hois) == 0
    b = r[1]   # the zero-width box is dropped like DETR's ConvertCocoPolysToMask does
    np.testing.assert_allclose(b.boxes, [[1, 2, 4, 6]])
    assert b.labels.tolist() == [2]


@pytest.mark.parametrize("change,message", [
    (lambda d: d["annotations"][0].update(category_id=5), "annotations[0].category_id"),
    (lambda d: d["annotations"][1].update(image_id=99), "image_id 99 is not in 'images'"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotations[0].bbox"),
    (lambda d: d["annotations"][0].update(bbox=[10, 20, -30, 40]), "x2 < x1"),
    (lambda d: d.pop("categories"), "missing key 'categories'"),
    (lambda d: d["images"].append({"id": 7, "file_name": "c.jpg"}), "duplicate image id 7"),
])
def test_bad_files_fail_with_one_line_naming_the_fault(tmp_path, change, message):
    d = json.loads(json.dumps(COCO))
    change(d)
    path = write(tmp_path, d)
    with pytest.raises(DataError) as e:
        open_reader("coco", path)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_lenient_mode_collects_problems_and_keeps_the_rest(tmp_path):
    d = json.loads(json.dumps(COCO))
    d["annotations"][0]["category_id"] = 5
    r = open_reader("coco", write(tmp_path, d), strict=False)
    assert len(r.problems) == 1 and r[0].labels.tolist() == [0]


def test_synth_detector_data_uses_every_drawn_instance(tmp_path):
    """SynthHOI's detector data is its COCO file: every person and object, also those in no HOI pair."""
    from hoikit.data.synth import generate_synthhoi
    from hoikit.recipes.common import detector_data_config

    root = tmp_path / "synth"
    generate_synthhoi(root, 12, 4, 0, 96)
    base = DataConfig(format="synth", root=str(root))
    for split in ("train", "test"):
        det = detector_data_config(base, split)
        coco = json.loads((root / "vcoco" / f"instances_{split}.json").read_text())
        r = open_reader(det.format, det.train_anno if split == "train" else det.test_anno,
                        images=det.train_images if split == "train" else det.test_images)
        hoi = open_reader("synth", root / "hicodet" / f"instances_{split}.json")
        assert sum(len(r[i].boxes) for i in range(len(r))) == len(coco["annotations"])
        assert r.meta.objects == hoi.meta.objects
        assert [r[i].file_name for i in range(len(r))] == hoi.filenames
        for i in range(len(r)):      # every HOI entity is among the instances (same box, same class)
            s = hoi[i]
            for box, lab in zip(s.boxes, s.labels):
                same = (np.abs(r[i].boxes - box).max(1) < 1e-3) & (r[i].labels == lab)
                assert same.any(), (split, i, box)
    hoi_only = dataclasses.replace(base, synth_detector_boxes="hoi")
    assert detector_data_config(hoi_only, "train") is hoi_only
    with pytest.raises(ConfigError, match="data.synth_detector_boxes"):   # checked once, when the config loads
        load_config(None, ["data.synth_detector_boxes=some"])
