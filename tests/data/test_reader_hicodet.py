import json

import numpy as np
import pytest

from hoikit.data.hicodet import HICODetReader
from hoikit.data.readers import open_reader
from hoikit.errors import DataError


@pytest.fixture(scope="module")
def hico(shared_data):
    return HICODetReader(shared_data / "hicodet" / "instances_test2015.json")


def test_real_test_file_counts_and_meta(hico):
    assert len(hico) == 9658
    assert sum(len(hico.pairs(i)["hoi"]) for i in range(len(hico))) == 33405
    assert hico.meta.name == "hicodet" and hico.meta.num_hois == 600 and len(hico.meta.verbs) == 117
    assert hico.meta.objects[hico.meta.person_label] == "person" and hico.meta.person_label == 49
    assert len(hico.meta.rare) == 138 and len(hico.empty) == 112
    assert not [p for p in hico.problems if p.severity == "error"]


def test_first_image_boxes_converted_and_merged(hico):
    s = hico[0]
    # file: boxes_h [320,306,359,349], [270,303,311,350]; boxes_o twice [148,345,376,414]; verb 87, object 8
    np.testing.assert_array_equal(s.boxes, [[319, 305, 359, 349], [269, 302, 311, 350], [147, 344, 376, 414]])
    assert s.labels.tolist() == [49, 49, 8]
    assert s.hois.tolist() == [[0, 2, 87], [1, 2, 87]]  # the shared object box is one entity
    assert s.size == (640, 427) and s.file_name == "HICO_test2015_00000001.jpg"


def test_object_order_read_from_file(hico, shared_data):
    coco = open_reader("hicodet", shared_data / "hicodet" / "instances_test2015.coco80.json")
    assert coco.meta.person_label == 0 and coco.meta.objects[:2] == ["person", "bicycle"]
    for i in range(0, len(hico), 97):  # same names, boxes and verbs whichever order the file uses
        a, b = hico[i], coco[i]
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert [hico.meta.objects[c] for c in a.labels] == [coco.meta.objects[c] for c in b.labels]
        np.testing.assert_array_equal(a.hois, b.hois)
    # correspondence rows name the same (verb, object) in both orders
    assert [hico.meta.hoi_name(h) for h in range(600)] == [coco.meta.hoi_name(h) for h in range(600)]


def _synth_like():
    return dict(objects=["person", "ball", "cup"], verbs=["hold", "kick"],
                correspondence=[[0, 1, 0], [1, 1, 1], [2, 2, 0]], rare=[1],
                filenames=["a.png", "b.png"], size=[[64, 48], [32, 32]], empty=[1],
                annotation=[dict(boxes_h=[[1, 1, 10, 20]] * 2, boxes_o=[[5, 5, 9, 9], [20, 20, 30, 30]],
                                 hoi=[0, 2], object=[1, 2], verb=[0, 0]),
                            dict(boxes_h=[], boxes_o=[], hoi=[], object=[], verb=[])])


def test_meta_built_from_file_tables(tmp_path):
    p = tmp_path / "synth.json"
    p.write_text(json.dumps(_synth_like()))
    r = HICODetReader(p)
    assert r.meta.name == "synth" and r.meta.objects == ["person", "ball", "cup"] and r.meta.num_hois == 3
    assert r.meta.rare == [1] and r.meta.person_label == 0
    s = r[0]
    assert s.labels.tolist() == [0, 1, 2] and s.hois.tolist() == [[0, 1, 0], [0, 2, 0]]
    np.testing.assert_array_equal(s.boxes[0], [0, 0, 10, 20])
    assert len(r[1].boxes) == 0 and not r.problems


def test_file_without_tables_falls_back_to_packaged(tmp_path, hico):
    d = _synth_like()
    for k in ("objects", "verbs", "correspondence", "rare"):
        del d[k]
    d["annotation"][0].update(hoi=[245, 245], object=[8, 8], verb=[87, 87])
    p = tmp_path / "plain.json"
    p.write_text(json.dumps(d))
    r = HICODetReader(p)
    assert r.meta.objects == hico.meta.objects and r.meta.num_hois == 600


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.pop("filenames"), "missing key 'filenames'"),
    (lambda d: d["annotation"][0].pop("verb"), "image 0: field 'verb': missing key"),
    (lambda d: d["annotation"][0].update(verb=[0]), "image 0: field 'verb': has 1 entries but 'hoi' has 2"),
    (lambda d: d["annotation"][0].update(boxes_o=[[5, 5, 3, 9], [20, 20, 30, 30]]), "image 0: field 'boxes_o[0]'"),
    (lambda d: d["annotation"][0].update(hoi=[0, 7]), "image 0: field 'hoi[1]': value 7 out of range [0, 3)"),
    (lambda d: d["annotation"][0].update(boxes_h=[[1, 2, 3]] * 2), "image 0: field 'boxes_h': expected shape N x 4"),
    (lambda d: d["annotation"][0].update(object=[1, 1]), "image 0: field 'hoi[1]': hoi 2 is (object 2, verb 0)"),
    (lambda d: d["size"].__setitem__(1, [32]), "image 1: field 'size'"),
])
def test_malformed_file_one_line_errors(tmp_path, mutate, needle):
    d = _synth_like()
    mutate(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(DataError) as e:
        HICODetReader(p)
    assert needle in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_lenient_mode_drops_only_bad_pairs(tmp_path):
    d = _synth_like()
    d["annotation"][0].update(hoi=[0, 9])
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    r = HICODetReader(p, strict=False)
    assert [x.severity for x in r.problems] == ["error"] and r[0].hois.tolist() == [[0, 1, 0]]


def test_unparsable_and_missing_files(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{\"annotation\": [")
    with pytest.raises(DataError, match="not valid JSON"):
        HICODetReader(p)
    with pytest.raises(DataError, match="annotation file not found"):
        HICODetReader(tmp_path / "nope.json")
