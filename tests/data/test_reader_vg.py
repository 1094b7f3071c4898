import json

import numpy as np
import pytest

from hoikit.data.readers import open_reader
from hoikit.data.visual_genome import VisualGenomeReader
from hoikit.errors import DataError



def _ids(reader):
    return [reader[i].image_id for i in range(len(reader))]


def test_splits_follow_sgb_rules(vg_files):
    h5, dicts, image_data = vg_files
    # test = split 2 with boxes and relations (image 12 has no relation)
    assert _ids(VisualGenomeReader(h5, dicts, image_data, split="test")) == [11, 15]
    assert _ids(VisualGenomeReader(h5, dicts, image_data, split="test", filter_empty_rels=False)) == [11, 12, 15]
    # split 0 after dropping 13 (no boxes): [10, 14]; val = first num_val_im, train = rest
    assert _ids(VisualGenomeReader(h5, dicts, image_data, split="val", num_val_im=1)) == [10]
    assert _ids(VisualGenomeReader(h5, dicts, image_data, split="train", num_val_im=1)) == [14]
    with pytest.warns(UserWarning, match="the train split is empty"):
        assert len(VisualGenomeReader(h5, dicts, image_data, split="train")) == 0  # SGB's 5,000 val images


def test_boxes_labels_relations_converted(vg_files, shared_data):
    h5, dicts, image_data = vg_files
    r = open_reader("vg", h5, dicts=dicts, image_data=image_data, split="test", images="/imgs")
    s = r[0]
    assert s.image_id == 11 and s.size == (500, 1000) and s.file_name == "11.jpg"
    assert s.image_path == "/imgs/11.jpg"
    k = 1000 / 1024  # long side 1000 -> boxes given on a 1024 long side
    # object 0: cx=200 cy=300 w=40 h=60 -> xyxy (180, 270, 220, 330) on the 1024 image
    np.testing.assert_allclose(s.boxes[0], np.array([180, 270, 220, 330]) * k, rtol=1e-6)
    np.testing.assert_allclose(s.boxes[2], np.array([8, 16, 12, 24]) * k, rtol=1e-6)
    assert s.labels.tolist() == [77, 149, 2]
    names = json.load(open(dicts))["idx_to_label"]
    assert [r.meta.objects[c] for c in s.labels] == [names["78"], names["150"], names["3"]]
    # relations are per-image and 0-based predicates, even though the h5 stores global rows
    assert s.relations.tolist() == [[2, 0, 19], [1, 2, 49]]
    preds = json.load(open(dicts))["idx_to_predicate"]
    assert r.meta.predicates[19] == preds["20"] and len(r.meta.predicates) == 50
    assert r.meta.extra.get("longtail_split")  # the packaged VG150 meta is recognised


def test_image_data_without_corrupt_entries_and_box_scale(tmp_path, shared_data, vg_writer):
    write_vg, _ = vg_writer
    h5, image_data = write_vg(tmp_path, with_corrupt=False, box_key="boxes_512")
    dicts = shared_data / "vg" / "VG-SGG-dicts-with-attri.json"
    r = VisualGenomeReader(h5, dicts, image_data, split="test", box_scale=512)
    s = r[1]
    assert s.image_id == 15  # W=200, H=400: scale 400 / 512
    np.testing.assert_allclose(s.boxes[0], np.array([48, 96, 80, 160]) * 400 / 512, rtol=1e-6)


def _broken(tmp_path, shared_data, mutate, vg_writer):
    write_vg, VG_IMAGES = vg_writer
    images = json.loads(json.dumps(VG_IMAGES))
    mutate(images)
    h5, image_data = write_vg(tmp_path, images)
    return h5, shared_data / "vg" / "VG-SGG-dicts-with-attri.json", image_data


@pytest.mark.parametrize("mutate, needle", [
    (lambda ims: ims[1]["objects"].__setitem__(0, (151, 200, 300, 40, 60)), "image 1: field 'labels[2]': label 151"),
    (lambda ims: ims[4]["rels"].__setitem__(0, (1, 0, 51)), "image 4: field 'predicates[3]': predicate 51"),
    (lambda ims: ims[0]["rels"].append((0, 2, 1)), "image 0: field 'relationships[1]'"),
    (lambda ims: ims[5]["objects"].__setitem__(1, (10, 30, 30, 0, 8)), "image 5: field 'boxes_1024[9]'"),
])
def test_malformed_h5_one_line_errors(tmp_path, shared_data, vg_writer, mutate, needle):
    h5, dicts, image_data = _broken(tmp_path, shared_data, mutate, vg_writer)
    with pytest.raises(DataError) as e:
        VisualGenomeReader(h5, dicts, image_data, split="test")
    msg = str(e.value)
    assert needle in msg and str(h5) in msg and "\n" not in msg
    # lenient mode collects the problem and leaves the broken image out of the split
    r = VisualGenomeReader(h5, dicts, image_data, split="test", strict=False)
    assert any(needle in p.message for p in r.problems)
    bad_row = int(needle.split("image ")[1].split(":")[0])
    assert bad_row not in r.rows.tolist()


def test_missing_dataset_and_misaligned_image_data(tmp_path, shared_data, vg_writer):
    import h5py

    write_vg, _ = vg_writer
    h5, image_data = write_vg(tmp_path)
    dicts = shared_data / "vg" / "VG-SGG-dicts-with-attri.json"
    data = json.load(open(image_data))
    json.dump(data[:-1], open(image_data, "w"))
    with pytest.raises(DataError, match="image_data.json: 9 images but the h5 has 6"):
        VisualGenomeReader(h5, dicts, image_data)
    with h5py.File(h5, "a") as f:
        del f["split"]
    with pytest.raises(DataError, match="missing dataset 'split'"):
        VisualGenomeReader(h5, dicts, image_data)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        VisualGenomeReader(h5, dicts, image_data, split="dev")


def test_relative_url_names_the_image_file(tmp_path, shared_data, vg_writer):
    write_vg, _ = vg_writer
    h5, image_data = write_vg(tmp_path, with_corrupt=False)
    data = json.load(open(image_data))
    data[1]["url"] = "images/test/11.jpg"  # SynthHOI: relative to the dataset root
    data[5]["url"] = "https://cs.stanford.edu/people/rak248/VG_100K_2/15.jpg"  # real VG: a web address
    json.dump(data, open(image_data, "w"))
    r = VisualGenomeReader(h5, shared_data / "vg" / "VG-SGG-dicts-with-attri.json", image_data, images="/root")
    assert [r[i].image_path for i in range(len(r))] == ["/root/images/test/11.jpg", "/root/15.jpg"]
    # a split's own image directory holding <image_id>.jpg works too
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "11.jpg").write_bytes(b"")
    r = VisualGenomeReader(h5, shared_data / "vg" / "VG-SGG-dicts-with-attri.json", image_data,
                           images=tmp_path / "test")
    assert r[0].image_path == str(tmp_path / "test" / "11.jpg")


def test_non_numeric_image_size_is_a_one_line_error(tmp_path, shared_data, vg_writer):
    write_vg, _ = vg_writer
    h5, image_data = write_vg(tmp_path, with_corrupt=False)
    data = json.loads(image_data.read_text())
    data[2]["width"] = "wide"
    image_data.write_text(json.dumps(data))
    with pytest.raises(DataError) as e:
        VisualGenomeReader(h5, shared_data / "vg" / "VG-SGG-dicts-with-attri.json", image_data)
    assert "image 2: field 'width/height': invalid size wide" in str(e.value) and "\n" not in str(e.value)
