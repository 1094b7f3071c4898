"""SynthHOI files: determinism and the layouts of the real HICO-DET / V-COCO / VG150 files."""
import filecmp
import json
from collections import Counter

import h5py
import numpy as np
import pytest
from PIL import Image

from hoikit.cli import main
from hoikit.data.synth import generate_synthhoi
from hoikit.errors import ConfigError

ANNOTATIONS = ["hicodet/instances_train.json", "hicodet/instances_test.json", "vcoco/instances_vcoco_train.json",
               "vcoco/vcoco_test.json", "vcoco/instances_test.json", "vcoco/test.ids", "vg/VG-SGG-with-attri.h5",
               "vg/VG-SGG-dicts-with-attri.json", "vg/image_data.json", "vg/zeroshot_triplets.json",
               "vg/longtail_split.json", "synthhoi.json"]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    paths = generate_synthhoi(root / "a", 12, 6, seed=5, size=80, workers=1)
    return root, paths


def _load(p):
    with open(p) as f:
        return json.load(f)


def test_same_seed_is_byte_identical_any_workers(ds, tmp_path):
    root, _ = ds
    generate_synthhoi(tmp_path / "b", 12, 6, seed=5, size=80, workers=2)
    for rel in ANNOTATIONS:
        assert filecmp.cmp(root / "a" / rel, tmp_path / "b" / rel, shallow=False), rel
    generate_synthhoi(tmp_path / "c", 12, 6, seed=6, size=80)
    assert not filecmp.cmp(root / "a" / ANNOTATIONS[0], tmp_path / "c" / ANNOTATIONS[0], shallow=False)


def test_hicodet_layout(ds):
    root, paths = ds
    train, test = _load(paths["hicodet_train"]), _load(paths["hicodet_test"])
    keys = {"annotation", "filenames", "size", "empty", "objects", "verbs", "correspondence", "rare", "non_rare"}
    assert set(train) == keys == set(test)
    corr = np.array(train["correspondence"])
    for d, split in ((train, "train"), (test, "test")):
        assert len(d["filenames"]) == len(d["size"]) == len(d["annotation"])
        for k, (a, name, (w, h)) in enumerate(zip(d["annotation"], d["filenames"], d["size"])):
            assert Image.open(root / "a" / "images" / split / name).size == (w, h)
            assert (k in d["empty"]) == (len(a["hoi"]) == 0)
            for bh, bo, hoi, o, v in zip(a["boxes_h"], a["boxes_o"], a["hoi"], a["object"], a["verb"]):
                assert corr[hoi].tolist() == [hoi, o, v]
                for b in (bh, bo):   # 1-based inclusive pixel indices inside the image
                    assert all(float(x).is_integer() for x in b)
                    assert 1 <= b[0] <= b[2] <= w and 1 <= b[1] <= b[3] <= h
    # rare: < 10 instances in the training file, recounted here
    counts = Counter(i for a in train["annotation"] for i in a["hoi"])
    assert train["rare"] == [i for i in range(len(corr)) if counts[i] < 10] == test["rare"]
    assert sorted(train["rare"] + train["non_rare"]) == list(range(len(corr)))


def test_vcoco_official_layout_and_coco_instances(ds):
    root, paths = ds
    gt, coco = _load(paths["vcoco_gt_test"]), _load(paths["coco_test"])
    anns = {a["id"]: a for a in coco["annotations"]}
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    assert cats[1] == "person"
    ids = [int(x) for x in (root / "a" / "vcoco" / "test.ids").read_text().split()]
    assert ids == [im["id"] for im in coco["images"]]
    for action in gt:
        assert list(action) == ["image_id", "ann_id", "role_object_id", "label", "action_name", "role_name", "include"]
        n = len(action["ann_id"])
        roles = np.array(action["role_object_id"]).reshape(len(action["role_name"]), -1).T  # official loader
        assert roles.shape == (n, len(action["role_name"])) and (roles[:, 0] == action["ann_id"]).all()
        for img, aid, lab, row in zip(action["image_id"], action["ann_id"], action["label"], roles):
            assert anns[aid]["image_id"] == img and cats[anns[aid]["category_id"]] == "person"
            if len(row) > 1:
                assert (row[1] > 0) == (lab == 1)
                if row[1]:
                    assert cats[anns[row[1]]["category_id"]] in action["include"][1]
    # COCO boxes agree with the HICO-DET file (xywh -> 1-based inclusive)
    hico = _load(paths["hicodet_test"])
    boxes = {tuple(np.round([a["bbox"][0] + 1, a["bbox"][1] + 1, a["bbox"][0] + a["bbox"][2],
                             a["bbox"][1] + a["bbox"][3]], 6)) for a in coco["annotations"]}
    for a in hico["annotation"]:
        for b in a["boxes_h"] + a["boxes_o"]:
            assert tuple(b) in boxes
    train = _load(paths["vcoco_train_json_train"])
    assert train["objects"][0] == "background" and train["objects"][1] == "person"
    assert all(" " in c for c in train["classes"]) and len(train["action_to_object"]) == len(train["classes"])


def test_vg_layout(ds):
    root, paths = ds
    info = _load(paths["vg_image_data"])
    with h5py.File(paths["vg_h5"], "r") as f:
        a = {k: f[k][:] for k in f}
    assert a["labels"].shape[1] == 1 and a["attributes"].shape == (len(a["labels"]), 10)
    assert (a["split"] == [0] * 12 + [2] * 6).all() and len(info) == 18
    hico = _load(paths["hicodet_train"])
    for i, im in enumerate(info):
        fb, lb = a["img_to_first_box"][i], a["img_to_last_box"][i]
        s = 1024 / max(im["width"], im["height"])
        b = a["boxes_1024"][fb:lb + 1].astype(float)
        xyxy = np.column_stack([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2]) / s
        assert (xyxy[:, :2] >= -1).all() and (xyxy[:, 2] <= im["width"] + 1).all()
        if i < 12:  # every HICO-DET box of this image is one of the VG boxes (up to rounding)
            for hb in hico["annotation"][i]["boxes_h"] + hico["annotation"][i]["boxes_o"]:
                cont = np.array([hb[0] - 1, hb[1] - 1, hb[2], hb[3]])
                # centre and size are each rounded by <= 0.5 on the 1024 scale: a corner moves <= 0.75
                assert np.abs(xyxy - cont).max(1).min() <= 0.75 / s + 1e-6
        if a["img_to_first_rel"][i] >= 0:
            r = a["relationships"][a["img_to_first_rel"][i]:a["img_to_last_rel"][i] + 1]
            assert ((r >= fb) & (r <= lb)).all()
    d = _load(paths["vg_dicts"])
    assert d["idx_to_label"]["1"] == "person" and d["label_to_idx"]["person"] == 1
    lt = _load(paths["vg_longtail"])
    assert sorted(lt["head"] + lt["body"] + lt["tail"]) == list(range(1, len(d["idx_to_predicate"]) + 1))
    trip = lambda split: {(int(a["labels"][s, 0]), int(a["labels"][o, 0]), int(p))  # noqa: E731
                          for (s, o), p, sp in zip(a["relationships"], a["predicates"][:, 0],
                                                   np.repeat(a["split"], np.maximum(a["img_to_last_rel"] - a["img_to_first_rel"] + 1, 0) * (a["img_to_first_rel"] >= 0)))
                          if sp == split}
    assert sorted(map(tuple, _load(paths["vg_zeroshot"])["triplets"])) == sorted(trip(2) - trip(0))


def test_cli_and_bad_arguments(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "d"), "--train", "2", "--test", "1", "--size", "48"]) == 0
    assert (tmp_path / "d" / "hicodet" / "instances_test.json").is_file()
    assert main(["synth", "--out", str(tmp_path / "e"), "--train", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--train" in err[0]
    with pytest.raises(ConfigError, match="--size"):
        generate_synthhoi(tmp_path / "f", 2, 1, size=8)
