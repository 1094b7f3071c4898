"""Zero-shot settings: the shipped unseen lists (facts of GEN-VLKT's settings), GEN-VLKT's pair-dropping
rule on hand-made pairs and on the real HICO-DET test file, Unseen / Seen / Full mAP of a hand-made
case (evaluator, CLI, training-time evaluation), and the SynthHOI lists."""
import json
from collections import defaultdict

import numpy as np
import pytest

from hoikit.cli import main
from hoikit.data.hicodet import HICODetReader
from hoikit.data.synth import classes as C
from hoikit.data.zero_shot import SeenPairsReader, seen_pair_rows, unseen_hois
from hoikit.errors import ConfigError
from hoikit.eval.hicodet import HICODetEvaluator


# ---------------------------------------------------------------------------- the shipped lists
@pytest.fixture(scope="module")
def hico_file(shared_data):
    path = shared_data / "hicodet" / "instances_test2015.json"
    return path, json.loads(path.read_text())


@pytest.fixture(scope="module")
def hico_reader(hico_file):
    return HICODetReader(hico_file[0])


def test_hicodet_lists_have_the_published_sizes_and_meaning(hico_file):
    _, d = hico_file
    corr = np.asarray(d["correspondence"])
    sizes = {s: len(unseen_hois(s, 600)) for s in ("rf_uc", "nf_uc", "uo", "uv")}
    assert sizes == {"rf_uc": 120, "nf_uc": 120, "uo": 100, "uv": 84}
    # RF-UC takes rare classes first: all 120 are among HICO-DET's 138 rare classes; NF-UC none
    assert set(unseen_hois("rf_uc", 600)) <= set(d["rare"])
    assert not set(unseen_hois("nf_uc", 600)) & set(d["rare"])
    # UO = every class of 12 objects; UV = every class of 20 verbs
    uo = unseen_hois("uo", 600)
    objs = set(corr[uo, 1])
    assert len(objs) == 12 and set(uo) == set(np.flatnonzero(np.isin(corr[:, 1], list(objs))))
    uv = unseen_hois("uv", 600)
    verbs = set(corr[uv, 2])
    assert len(verbs) == 20 and set(uv) == set(np.flatnonzero(np.isin(corr[:, 2], list(verbs))))


def test_synth_lists_are_unseen_combinations_and_unseen_verbs():
    corr = np.asarray(C.CORRESPONDENCE)
    n = len(corr)
    rf = unseen_hois("rf_uc", n, "synth")
    seen = np.setdiff1d(np.arange(n), rf)
    # unseen *combinations*: every verb and every object of an unseen class is seen in another class
    assert set(corr[rf, 2]) <= set(corr[seen, 2]) and set(corr[rf, 1]) <= set(corr[seen, 1])
    # rare first: the unseen classes are the planner's rarest intents (weights in classes.py)
    weight = {(C.OBJ[i.obj], C.VERB[i.name]): i.weight for i in C.INTENTS if i.obj and i.name in C.VERB}
    w = np.array([weight.get((o, v), np.inf) for _, o, v in corr])
    assert set(rf) == set(np.argsort(w, kind="stable")[:len(rf)]) and len(rf) == 7
    uv = unseen_hois("uv", n, "synth")
    assert [C.VERBS[v] for v in sorted(set(corr[uv, 2]))] == ["kick", "push"]
    assert set(uv) == set(np.flatnonzero(np.isin(corr[:, 2], [C.VERB["kick"], C.VERB["push"]])))
    assert unseen_hois("uv", n) .tolist() == uv.tolist()          # picked by the class count
    with pytest.raises(ConfigError, match="'uo' is not defined for synth"):
        unseen_hois("uo", n)
    with pytest.raises(ConfigError, match="not one of"):
        unseen_hois("rare", 600)


# ---------------------------------------------------------------------------- GEN-VLKT's dropping rule
def test_a_pair_with_an_unseen_annotation_loses_all_its_annotations():
    h = np.array([[0, 0, 10, 10]] * 4, np.float32)
    o = np.array([[5, 5, 20, 20], [5, 5, 20, 20], [30, 30, 40, 40], [5, 5, 20, 20]], np.float32)
    objects = np.array([1, 1, 1, 2])           # row 3: same boxes as pair 0 but another object class
    hoi = np.array([0, 7, 0, 3])               # class 7 unseen: pair (h, o0, 1) goes, rows 0 and 1
    keep = seen_pair_rows(h, o, objects, hoi, np.array([7, 9]))
    assert keep.tolist() == [False, False, True, True]


def _reference_drops(d, unseen):
    """Straight loop over the raw JSON: rows, pairs and images dropped by GEN-VLKT's rule."""
    unseen = set(int(u) for u in unseen)
    rows = pairs = images = 0
    for a in d["annotation"]:
        groups = defaultdict(list)
        for bh, bo, ob, hoi in zip(a["boxes_h"], a["boxes_o"], a["object"], a["hoi"]):
            groups[(tuple(bh), tuple(bo), ob)].append(hoi)
        bad = [g for g in groups.values() if unseen & set(g)]
        rows += sum(len(g) for g in bad)
        pairs += len(bad)
        images += bool(groups) and len(bad) == len(groups)
    return rows, pairs, images


@pytest.mark.parametrize("setting", ["rf_uc", "nf_uc", "uo", "uv"])
def test_dropped_pairs_on_the_real_test_file(hico_file, hico_reader, setting):
    _, d = hico_file
    reader = SeenPairsReader(hico_reader, setting)
    s = reader.stats
    rows, pairs, images = _reference_drops(d, reader.unseen)
    assert (s["annotations_dropped"], s["pairs_dropped"]) == (rows, pairs)
    empty_before = sum(1 for a in d["annotation"] if not a["hoi"])
    assert s["images_dropped"] == images + empty_before and len(reader) == len(d["annotation"]) - s["images_dropped"]
    all_hoi = np.concatenate([np.asarray(a["hoi"], np.int64) for a in d["annotation"]])
    assert s["annotations"] == len(all_hoi) and s["unseen_annotations"] == int(np.isin(all_hoi, reader.unseen).sum())
    assert rows >= s["unseen_annotations"] > 0         # (seen verbs of unseen pairs go too: hand-made test)
    left = np.concatenate([reader.pairs(i)["hoi"] for i in range(len(reader))])
    assert not np.isin(left, reader.unseen).any() and len(left) == len(all_hoi) - rows
    sample = reader[0]                                   # entities rebuilt from the kept pairs only
    assert sample.hois.shape[1] == 3 and sample.hois[:, :2].max() < len(sample.boxes)


# ---------------------------------------------------------------------------- Unseen / Seen / Full
BOX_H, BOX_O = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]
DETECTED = [11, 14, 0, 1, 2]      # perfect detections of these classes, none for the others


def _synth_anno(tmp_path):
    """35 images, image c holds one pair of SynthHOI class c."""
    corr = C.CORRESPONDENCE
    ann = [dict(boxes_h=[[1, 1, 10, 10]], boxes_o=[[21, 21, 40, 40]], hoi=[c], object=[o], verb=[v])
           for c, o, v in corr]
    d = dict(annotation=ann, filenames=[f"{c}.png" for c in range(len(corr))], size=[[64, 64]] * len(corr),
             empty=[], objects=C.OBJECTS, verbs=C.VERBS, correspondence=corr, rare=[])
    path = tmp_path / "synth_test.json"
    path.write_text(json.dumps(d))
    return path


def _detections():
    n = len(DETECTED)
    return dict(image=np.array(DETECTED), hoi=np.array(DETECTED), score=np.full(n, 0.9),
                box_h=np.array([BOX_H] * n), box_o=np.array([BOX_O] * n))


def test_unseen_seen_full_of_a_hand_made_case(tmp_path):
    # unseen rf_uc = {11, 14, 16, 21, 23, 28, 31}: AP 1 on 11 and 14, 0 on the other 5 -> 2/7;
    # seen: AP 1 on 0, 1, 2 of 28 -> 3/28; full 5/35
    assert unseen_hois("rf_uc", 35).tolist() == [11, 14, 16, 21, 23, 28, 31]
    ev = HICODetEvaluator(_synth_anno(tmp_path), zero_shot="rf_uc")
    zs = ev.evaluate(**_detections())["zero_shot"]["default"]
    assert zs == pytest.approx({"unseen": 100 * 2 / 7, "seen": 100 * 3 / 28, "full": 100 * 5 / 35})


def test_eval_cli_and_training_evaluation_report_unseen_seen(tmp_path, capsys):
    from hoikit.eval.adapters import HOIEvaluation

    anno = _synth_anno(tmp_path)
    np.savez(tmp_path / "det.npz", **_detections())
    assert main(["eval", "hicodet", "--pred", str(tmp_path / "det.npz"), "--anno", str(anno),
                 "--zero-shot", "rf_uc", "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "RF-UC mAP (%)" in out and "Unseen (7)" in out and "Seen (28)" in out
    line = next(l for l in out.splitlines() if l.startswith("Default") and "28.57" in l)
    assert line.split()[1:] == ["28.57", "10.71", "14.29"]
    assert json.loads((tmp_path / "m.json").read_text())["zero_shot"]["setting"] == "rf_uc"
    ev = HOIEvaluation(str(anno), zero_shot="rf_uc")
    det = _detections()
    for i in range(len(DETECTED)):
        ev.add(int(det["image"][i]), {k: det[k][i:i + 1] for k in ("hoi", "score", "box_h", "box_o")})
    m = ev.compute()
    assert m["mAP_unseen"] == pytest.approx(100 * 2 / 7) and m["mAP_seen"] == pytest.approx(100 * 3 / 28)


# ---------------------------------------------------------------------------- SynthHOI end to end
def test_synthhoi_training_data_drops_unseen_verbs_and_evaluates_unseen_seen(tmp_path):
    from hoikit.config import load_config
    from hoikit.data.synth import generate_synthhoi
    from hoikit.engine.datasets import build_training_data

    root = tmp_path / "synth"
    generate_synthhoi(root, 40, 6, seed=1, size=80, workers=1)
    cfg = load_config("synth_rmlr", [f"data.root={root}", "data.zero_shot=uv"])
    data = build_training_data(cfg)
    reader = data.train_set.reader
    full = HICODetReader(root / "hicodet" / "instances_train.json")   # SynthHOI's HICO-DET file
    assert isinstance(reader, SeenPairsReader) and reader.stats["unseen_annotations"] > 0
    unseen_verbs = {C.VERB["kick"], C.VERB["push"]}
    kept_verbs = {int(v) for i in range(len(reader)) for v in reader[i].hois[:, 2]}
    all_verbs = {int(v) for i in range(len(full)) for v in full[i].hois[:, 2]}
    assert unseen_verbs & all_verbs and not unseen_verbs & kept_verbs and kept_verbs
    assert len(reader) + reader.stats["images_dropped"] == len(full)
    metrics = data.make_evaluator()
    assert metrics.ev.unseen.tolist() == unseen_hois("uv", len(C.CORRESPONDENCE)).tolist()
    assert {"mAP_unseen", "mAP_seen", "mAP_full"} <= set(metrics.compute())


def test_zero_shot_on_another_architecture_is_a_config_error(tmp_path):
    from hoikit.config import load_config
    from hoikit.recipes.common import seen_pairs_reader

    cfg = load_config("synth_detr", ["data.zero_shot=rf_uc"])
    with pytest.raises(ConfigError, match="data.zero_shot: 'rf_uc' needs model.arch=rmlr"):
        seen_pairs_reader(cfg, None)
