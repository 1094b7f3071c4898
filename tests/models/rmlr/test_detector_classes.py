"""Detector class ids -> dataset object ids (COCO-80 / COCO-91 / hand-made lists) and their use in
the model: person detection, pairing, object-valid verb priors and output labels."""
import json

import pytest
import torch

from hoikit.data.metadata import hicodet_meta, vcoco_meta
from hoikit.errors import ConfigError
from hoikit.models.rmlr.detector_classes import coco91_names, detector_to_dataset
from hoikit.models.rmlr.model import map_detector_labels
from hoikit.models.rmlr.pairs import detr_boxes_and_scores

from rmlr_tiny import build_tiny, tiny_images


def test_coco91_ids_have_the_ten_gaps_and_known_names():
    names = coco91_names()
    assert len(names) == 91 and sum(n != "N/A" for n in names) == 80
    # COCO category ids (instances_*.json "categories"): a few by hand
    assert (names[0], names[1], names[11], names[12], names[13], names[77], names[90]) == \
        ("N/A", "person", "fire hydrant", "N/A", "stop sign", "cell phone", "toothbrush")


def test_coco91_to_vcoco_is_contiguous_with_background():
    m = vcoco_meta()
    t = detector_to_dataset("auto", 91, m.objects, m.person_label)       # auto: 91 -> coco91
    # vcoco objects: background 0, person 1, ..., stop sign 12 (COCO id 13), cell phone 68 (COCO id 77)
    assert t[[0, 1, 12, 13, 77, 90]].tolist() == [-1, 1, -1, 12, 68, 80]
    assert sorted(t[t >= 0].tolist()) == list(range(1, 81))               # background never predicted


def test_coco80_and_coco91_to_hicodet_match_upt_tables(shared_data):
    m = hicodet_meta()                                                    # HICO alphabetical (person 49)
    t80 = detector_to_dataset("coco80", 80, m.objects, m.person_label)
    # shared coco80tohico80.json (fredzzhang/hicodet): 1-based COCO-80 index -> HICO object index
    ref = json.loads((shared_data / "hicodet" / "coco80tohico80.json").read_text())
    assert t80.tolist() == [ref[str(i + 1)] for i in range(80)]
    # fredzzhang/upt hicodet/coco91tohico80.json, a few entries: 1 -> 49, 13 -> 63, 77 -> 21, 90 -> 71
    t91 = detector_to_dataset("coco91", 91, m.objects, m.person_label)
    assert t91[[1, 13, 77, 90, 12]].tolist() == [49, 63, 21, 71, -1]


def test_errors_are_one_line():
    m = hicodet_meta()
    with pytest.raises(ConfigError, match="lists 2 classes but the detector has 3"):
        detector_to_dataset("person,cup", 3, m.objects, m.person_label)
    with pytest.raises(ConfigError, match="no detector class maps to the dataset's person"):
        detector_to_dataset("cup,dog", 2, m.objects, m.person_label)
    with pytest.raises(ConfigError, match="cannot tell"):
        detector_to_dataset("auto", 7, m.objects, m.person_label)


def test_map_detector_labels_by_hand():
    table = torch.tensor([2, -1, 0])                       # detector: cup, N/A, person
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 1, 2, 2])
    boxes = torch.arange(16.0).reshape(4, 4)
    hidden = torch.arange(8.0).reshape(4, 2)
    s, l, b, h = map_detector_labels(table, scores, labels, boxes, hidden)
    assert s.tolist() == pytest.approx([0.9, 0.7, 0.6]) and l.tolist() == [2, 0, 0]
    assert torch.equal(b, boxes[[0, 2, 3]]) and torch.equal(h, hidden[[0, 2, 3]])


def test_model_uses_the_mapping_for_persons_pairs_priors_and_labels(tiny_meta):
    # tiny_meta objects: person 0, ball 1, cup 2; valid verbs: ball {hold, kick}, cup {hold, drink}
    model = build_tiny(tiny_meta, "plain", detector_classes="cup,N/A,person").eval()
    images = tiny_images()
    with torch.no_grad():
        outs = model(images)
        det = model.detector(images)
    table = {0: 2, 2: 0}
    for b, (o, im) in enumerate(zip(outs, images)):
        sc, lb, bx = detr_boxes_and_scores(det["pred_logits"][b], det["pred_boxes"][b], im.shape[-2:])
        assert set(o["labels"].tolist()) <= {0, 2}            # no detector class is "ball"
        for box, label in zip(o["boxes"], o["labels"].tolist()):
            q = int((bx - box).abs().sum(1).argmin())         # the DETR query this box came from
            assert torch.allclose(bx[q], box) and table[int(lb[q])] == label
        assert len(o["pairs"]) > 0
        valid = {0: [], 2: [0, 2]}
        for (h, ob), v in zip(o["pairs"].tolist(), o["verb_scores"]):
            assert int(o["labels"][h]) == 0                   # subjects are detector class 2 = person
            off = [k for k in range(3) if k not in valid[int(o["labels"][ob])]]
            assert all(float(v[k]) == 0.0 for k in off)
