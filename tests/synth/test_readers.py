"""A tiny SynthHOI set loads through hoikit's HICO-DET, V-COCO and VG150 readers, consistently."""
import json

import numpy as np
import pytest

from hoikit.data.synth import generate_synthhoi
from hoikit.data.synth.classes import OBJECTS, PREDICATES, VERBS

hicodet = pytest.importorskip("hoikit.data.hicodet")
vcoco = pytest.importorskip("hoikit.data.vcoco")
visual_genome = pytest.importorskip("hoikit.data.visual_genome")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return generate_synthhoi(tmp_path_factory.mktemp("synthr") / "d", 12, 6, seed=11, size=72)


def _coco_boxes(path):
    """image id -> set of continuous xyxy boxes of every COCO annotation (x + w, no -1)."""
    out = {}
    for a in json.load(open(path))["annotations"]:
        x, y, w, h = a["bbox"]
        out.setdefault(a["image_id"], set()).add((x, y, x + w, y + h))
    return out


def test_hicodet_reader(paths):
    r = hicodet.HICODetReader(paths["hicodet_test"], images=paths["images_test"])
    assert len(r) == 6 and r.meta.objects == OBJECTS and r.meta.verbs == VERBS
    coco = _coco_boxes(paths["coco_test"])
    ids = [im["id"] for im in json.load(open(paths["coco_test"]))["images"]]
    n_pairs = 0
    for k in range(len(r)):
        s = r[k]
        assert s.file_name == f"{ids[k]}.jpg"
        for b in s.boxes:   # reader's 1-based -> continuous conversion lands on the COCO boxes
            assert tuple(float(v) for v in b) in coco[ids[k]]
        n_pairs += len(s.hois)
    d = json.load(open(paths["hicodet_test"]))
    assert n_pairs == sum(len(a["hoi"]) for a in d["annotation"])


def test_vcoco_reader(paths):
    r = vcoco.VCOCOReader(paths["vcoco_train_json_train"], images=paths["images_train"])
    assert len(r) == 12
    coco = _coco_boxes(paths["coco_train"])
    for k in range(len(r)):
        s = r[k]
        for b in s.boxes:
            assert tuple(float(v) for v in b) in coco[s.image_id]


def test_visual_genome_reader(paths):
    r = visual_genome.VisualGenomeReader(paths["vg_h5"], paths["vg_dicts"], paths["vg_image_data"], split="test",
                                         images=paths["images_test"], filter_empty_rels=False)
    assert len(r) == 6 and r.meta.objects == OBJECTS and r.meta.predicates == PREDICATES
    coco = _coco_boxes(paths["coco_test"])
    for k in range(len(r)):
        s = r[k]
        assert s.image_path.endswith(f"{s.image_id}.jpg")
        ref = np.array(sorted(coco[s.image_id]))
        scale = 1024 / max(s.size)
        for b in s.boxes:  # cxcywh rounding on the 1024 scale moves a corner by <= 0.75 units
            assert np.abs(ref - b).max(1).min() <= 0.75 / scale + 1e-4
        assert len(s.boxes) == len(coco[s.image_id])
        if len(s.relations):
            assert s.relations[:, :2].max() < len(s.boxes) and s.relations[:, 2].max() < len(PREDICATES)
