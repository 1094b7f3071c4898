import json

import numpy as np
import pytest

from hoikit.data.custom import CustomReader
from hoikit.data.readers import open_reader
from hoikit.data.vcoco import VCOCOReader
from hoikit.errors import DataError


def test_vcoco_real_file(shared_data, tmp_path, image_writer):
    path = shared_data / "vcoco" / "instances_vcoco_test.json"
    d = json.load(open(path))
    image_writer(tmp_path, [(d["annotations"][1]["file_name"], (640, 480))])
    r = VCOCOReader(path, images=tmp_path)
    assert len(r) == 4946 and sum(len(r.pairs(i)["actions"]) for i in range(len(r))) == 12402
    assert r.meta.person_label == 1 and r.meta.objects[1] == "person" and len(r.meta.verbs) == 24
    assert not r.problems and len(r.empty) == 414
    s = r[1]
    a = d["annotations"][1]
    assert s.image_id == 328 and s.size == (640, 480)  # size read from the image header
    # 3 distinct humans + 3 distinct objects; every pair points at the file's boxes, used as xyxy
    assert len(s.boxes) == 6 and s.labels.tolist() == [1, 1, 1, 74, 68, 14]
    np.testing.assert_allclose(s.boxes[s.hois[:, 0]], a["boxes_h"], rtol=1e-6)
    np.testing.assert_allclose(s.boxes[s.hois[:, 1]], a["boxes_o"], rtol=1e-6)
    assert s.hois[:, 2].tolist() == a["actions"]
    assert r[0].size == (0, 0)  # no image: size unknown


def test_vcoco_malformed(tmp_path):
    d = dict(annotations=[dict(boxes_h=[[0, 0, 5, 5]], boxes_o=[[1, 1, 2, 2]], actions=[24], objects=[3],
                               file_name="x.jpg")])
    p = tmp_path / "v.json"
    p.write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"image 0: field 'actions\[0\]': value 24 out of range \[0, 24\)"):
        VCOCOReader(p)
    d["annotations"][0].update(actions=[0], objects=[0])  # background is not an object class
    p.write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"field 'objects\[0\]': value 0 out of range \[1, 81\)"):
        VCOCOReader(p)


QPIC = [
    {"file_name": "a.jpg", "width": 100, "height": 80,
     "annotations": [{"bbox": [10, 10, 50, 70], "category_id": 1}, {"bbox": [40, 30, 90, 60], "category_id": 37}],
     "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": 5},
                        {"subject_id": 0, "object_id": 1, "category_id": 9}]},
    {"file_name": "b.jpg", "width": 50, "height": 50,
     "annotations": [{"bbox": [0, 0, 20, 20], "category_id": 1}], "hoi_annotation": []},
]


def test_custom_with_classes_file(tmp_path):
    anno = tmp_path / "anno.json"
    anno.write_text(json.dumps(QPIC))
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"objects": ["person", "sports ball"], "object_ids": [1, 37],
                                   "verbs": ["hold", "kick"], "verb_ids": [5, 9]}))
    r = open_reader("custom", anno, classes=classes)
    s = r[0]
    assert s.size == (100, 80) and s.labels.tolist() == [0, 1]
    np.testing.assert_array_equal(s.boxes, [[10, 10, 50, 70], [40, 30, 90, 60]])
    assert s.hois.tolist() == [[0, 1, 0], [0, 1, 1]]
    assert r.meta.person_label == 0
    # HOI classes = (object, verb) combinations found; both have 1 < 10 instances -> rare
    assert r.meta.correspondence.tolist() == [[0, 1, 0], [1, 1, 1]] and r.meta.rare == [0, 1]
    assert r.empty == [1]


def test_custom_without_names_uses_ids(tmp_path):
    anno = tmp_path / "anno.json"
    anno.write_text(json.dumps(QPIC))
    r = CustomReader(anno)
    assert r.meta.objects == ["1", "37"] and r.meta.verbs == ["5", "9"] and r.meta.person_label == 0


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d[0]["hoi_annotation"][1].update(object_id=5), "image 0: field 'hoi_annotation[1].object_id': index 5"),
    (lambda d: d[0]["annotations"][1].update(bbox=[40, 30, 20, 60]), "image 0: field 'annotations[1].bbox[0]'"),
    (lambda d: d[1].pop("annotations"), "image 1: field 'annotations'"),
    (lambda d: d[0]["annotations"][0].update(category_id=2), "image 0: field 'annotations[0].category_id'"),
    (lambda d: d[0]["annotations"][0].update(category_id=[1]), "image 0: field 'annotations[0].category_id'"),
    (lambda d: d[0].update(width="wide"), "image 0: field 'width/height': expected positive numbers"),
])
def test_custom_malformed(tmp_path, mutate, needle):
    d = json.loads(json.dumps(QPIC))
    mutate(d)
    anno = tmp_path / "anno.json"
    anno.write_text(json.dumps(d))
    with pytest.raises(DataError) as e:
        CustomReader(anno, objects=["person", "ball"], verbs=["hold", "kick"]) if "category_id'" in needle \
            else CustomReader(anno)
    assert needle in str(e.value) and "\n" not in str(e.value)
