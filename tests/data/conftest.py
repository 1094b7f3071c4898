"""Shared fixtures of the data-layer tests: small files in the real layouts, blank images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def blank_images(directory: Path, names_sizes) -> Path:
    """Write grey JPEGs of the given (file_name, (W, H)) under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (w, h) in names_sizes:
        Image.new("RGB", (int(w), int(h)), (128, 128, 128)).save(directory / name)
    return directory


# A tiny VG150 h5 in the real layout. Per image: split flag, objects (label 1-based, cx, cy, w, h on the
# 1024-long-side image), relations (LOCAL object indices, predicate 1-based); written with GLOBAL rows.
VG_IMAGES = [
    dict(image_id=10, width=800, height=600, split=0, objects=[(1, 512, 384, 100, 200), (78, 100, 100, 50, 50)],
         rels=[(0, 1, 31)]),
    dict(image_id=11, width=500, height=1000, split=2, objects=[(78, 200, 300, 40, 60), (150, 500, 500, 20, 20),
                                                              (3, 10, 20, 4, 8)], rels=[(2, 0, 20), (1, 2, 50)]),
    dict(image_id=12, width=300, height=300, split=2, objects=[(5, 100, 100, 10, 10)], rels=[]),   # no relations
    dict(image_id=13, width=640, height=480, split=0, objects=[], rels=[]),                       # no boxes
    dict(image_id=14, width=1024, height=768, split=0, objects=[(7, 50, 60, 20, 30), (8, 70, 80, 10, 10)],
         rels=[(1, 0, 1)]),
    dict(image_id=15, width=200, height=400, split=2, objects=[(9, 64, 128, 32, 64), (10, 30, 30, 8, 8)],
         rels=[(0, 1, 22), (1, 0, 29)]),
]


def write_vg(tmp: Path, images=VG_IMAGES, with_corrupt: bool = True, box_key: str = "boxes_1024"):
    """Write (h5, image_data.json) for ``images``; ``with_corrupt`` adds the 4 corrupt ids to image_data."""
    import h5py

    labels, boxes, rels, preds, split = [], [], [], [], []
    fb, lb, fr, lr = [], [], [], []
    for im in images:
        first = len(labels)
        for (lab, cx, cy, w, h) in im["objects"]:
            labels.append([lab])
            boxes.append([cx, cy, w, h])
        fb.append(first if im["objects"] else -1)
        lb.append(len(labels) - 1 if im["objects"] else -1)
        first_rel = len(preds)
        for (s, o, p) in im["rels"]:
            rels.append([s + first, o + first])
            preds.append([p])
        fr.append(first_rel if im["rels"] else -1)
        lr.append(len(preds) - 1 if im["rels"] else -1)
        split.append(im["split"])
    h5 = tmp / "VG-SGG-with-attri.h5"
    with h5py.File(h5, "w") as f:
        f["labels"] = np.asarray(labels, np.int64).reshape(-1, 1)
        f[box_key] = np.asarray(boxes, np.int32).reshape(-1, 4)
        f["attributes"] = np.zeros((len(labels), 10), np.int64)
        f["relationships"] = np.asarray(rels, np.int32).reshape(-1, 2)
        f["predicates"] = np.asarray(preds, np.int64).reshape(-1, 1)
        for k, v in (("img_to_first_box", fb), ("img_to_last_box", lb), ("img_to_first_rel", fr),
                     ("img_to_last_rel", lr), ("split", split)):
            f[k] = np.asarray(v, np.int32)
    data = [dict(image_id=im["image_id"], width=im["width"], height=im["height"]) for im in images]
    if with_corrupt:
        for k, cid in enumerate((1592, 1722, 4616, 4617)):
            data.insert(min(k * 2, len(data)), dict(image_id=cid, width=1, height=1))
    image_data = write_json(tmp / "image_data.json", data)
    return h5, image_data


@pytest.fixture
def vg_files(tmp_path, shared_data):
    """(h5, dicts, image_data) of the tiny VG dataset with the real dicts JSON."""
    h5, image_data = write_vg(tmp_path)
    return h5, shared_data / "vg" / "VG-SGG-dicts-with-attri.json", image_data


@pytest.fixture
def vg_writer():
    """The ``write_vg(tmp, images=VG_IMAGES, ...)`` helper and the default image list."""
    return write_vg, VG_IMAGES


@pytest.fixture
def image_writer():
    """The ``blank_images(directory, [(file_name, (W, H)), ...])`` helper."""
    return blank_images


@pytest.fixture(scope="session")
def hico_test_json(shared_data):
    """The parsed real HICO-DET test file (read once per session; copy before mutating)."""
    return json.loads((shared_data / "hicodet" / "instances_test2015.json").read_text())
