"""SynthHOI scene graphs in the VG150 files of neural-motifs / Scene-Graph-Benchmark.pytorch.

* ``VG-SGG-with-attri.h5``: ``labels [N_obj, 1]`` (1-based), ``boxes_1024`` / ``boxes_512``
  (``cx, cy, w, h`` on the image rescaled so its long side is 1024 / 512, int32 like the real file),
  ``img_to_first_box`` / ``img_to_last_box`` (inclusive, -1 = none), ``predicates [N_rel, 1]``
  (1-based), ``relationships [N_rel, 2]`` (GLOBAL object rows), ``img_to_first_rel`` /
  ``img_to_last_rel``, ``split`` (0 train, 2 test), ``attributes [N_obj, 10]`` (zeros).
  Training images come first, then test images.
* ``VG-SGG-dicts-with-attri.json``: label_to_idx, idx_to_label, predicate_to_idx, idx_to_predicate
  (1-based), object_count / predicate_count (training split), empty attribute tables.
* ``image_data.json``: per h5 row ``image_id, width, height, url`` (url = image path relative to the
  dataset root; its basename is ``<image_id>.jpg`` as Scene-Graph-Benchmark expects).
* ``zeroshot_triplets.json``: (subject, object, predicate) label triplets of the test split never seen
  in training, layout of the shipped VG150 list. ``longtail_split.json``: head / body / tail predicates
  by training frequency, in the proportions of the VG150 split (7 / 21 / 22 of 50).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Dict, List

import h5py
import numpy as np

from .classes import OBJECTS, PREDICATES
from .records import write_json

SPLIT_FLAG = {"train": 0, "test": 2}
LONGTAIL_FRACTIONS = (7 / 50, 21 / 50)  # head, body share of the VG150 long-tail split


def _scaled_cxcywh(box, width: int, height: int, long_side: int) -> List[int]:
    s = long_side / max(width, height)
    x1, y1, x2, y2 = box
    return [int(round((x1 + x2) / 2 * s)), int(round((y1 + y2) / 2 * s)),
            max(1, int(round((x2 - x1) * s))), max(1, int(round((y2 - y1) * s)))]


def write_h5(records: List[Dict], path: Path) -> Path:
    labels, b1024, b512, first_box, last_box = [], [], [], [], []
    rels, preds, first_rel, last_rel, split = [], [], [], [], []
    for r in records:
        base = len(labels)
        n = len(r["labels"])
        labels += [lab + 1 for lab in r["labels"]]
        b1024 += [_scaled_cxcywh(b, r["width"], r["height"], 1024) for b in r["boxes"]]
        b512 += [_scaled_cxcywh(b, r["width"], r["height"], 512) for b in r["boxes"]]
        first_box.append(base if n else -1)
        last_box.append(base + n - 1 if n else -1)
        k = len(preds)
        for s, o, p in r["relations"]:
            rels.append([base + s, base + o])
            preds.append(p + 1)
        first_rel.append(k if r["relations"] else -1)
        last_rel.append(len(preds) - 1 if r["relations"] else -1)
        split.append(SPLIT_FLAG[r["split"]])
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", libver="earliest", track_order=False) as f:
        f.create_dataset("labels", data=np.asarray(labels, np.int64).reshape(-1, 1), track_times=False)
        f.create_dataset("boxes_1024", data=np.asarray(b1024, np.int32).reshape(-1, 4), track_times=False)
        f.create_dataset("boxes_512", data=np.asarray(b512, np.int32).reshape(-1, 4), track_times=False)
        f.create_dataset("img_to_first_box", data=np.asarray(first_box, np.int32), track_times=False)
        f.create_dataset("img_to_last_box", data=np.asarray(last_box, np.int32), track_times=False)
        f.create_dataset("predicates", data=np.asarray(preds, np.int64).reshape(-1, 1), track_times=False)
        f.create_dataset("relationships", data=np.asarray(rels, np.int32).reshape(-1, 2), track_times=False)
        f.create_dataset("img_to_first_rel", data=np.asarray(first_rel, np.int32), track_times=False)
        f.create_dataset("img_to_last_rel", data=np.asarray(last_rel, np.int32), track_times=False)
        f.create_dataset("split", data=np.asarray(split, np.int32), track_times=False)
        f.create_dataset("attributes", data=np.zeros((len(labels), 10), np.int64), track_times=False)
    return path


def dicts(records: List[Dict]) -> Dict:
    train = [r for r in records if r["split"] == "train"]
    obj_count = Counter(OBJECTS[lab] for r in train for lab in r["labels"])
    pred_count = Counter(PREDICATES[p] for r in train for _, _, p in r["relations"])
    return {"label_to_idx": {n: i + 1 for i, n in enumerate(OBJECTS)},
            "idx_to_label": {str(i + 1): n for i, n in enumerate(OBJECTS)},
            "predicate_to_idx": {n: i + 1 for i, n in enumerate(PREDICATES)},
            "idx_to_predicate": {str(i + 1): n for i, n in enumerate(PREDICATES)},
            "object_count": {n: obj_count.get(n, 0) for n in OBJECTS},
            "predicate_count": {n: pred_count.get(n, 0) for n in PREDICATES},
            "attribute_count": {}, "idx_to_attribute": {}, "attribute_to_idx": {}}


def triplets(records: List[Dict], split: str) -> set:
    return {(r["labels"][s] + 1, r["labels"][o] + 1, p + 1) for r in records if r["split"] == split
            for s, o, p in r["relations"]}


def zeroshot(records: List[Dict]) -> Dict:
    z = sorted(triplets(records, "test") - triplets(records, "train"))
    return {"columns": "['subject_label', 'object_label', 'predicate_label']",
            "note": "SynthHOI test triplets never seen in training; labels are 1-based VG-style indices "
                    "into VG-SGG-dicts-with-attri.json", "triplets": [list(t) for t in z]}


def longtail(records: List[Dict]) -> Dict:
    """Predicates sorted by training frequency (ties by index) and cut 7/50 : 21/50 : rest."""
    counts = Counter(p for r in records if r["split"] == "train" for _, _, p in r["relations"])
    order = sorted(range(len(PREDICATES)), key=lambda p: (-counts.get(p, 0), p))
    n_head = int(round(len(order) * LONGTAIL_FRACTIONS[0]))
    n_body = int(round(len(order) * LONGTAIL_FRACTIONS[1]))
    groups = {"head": order[:n_head], "body": order[n_head:n_head + n_body], "tail": order[n_head + n_body:]}
    out = {"source": "SynthHOI: predicates by training frequency, VG150 proportions (7/21/22 of 50); "
                     "indices are 1-based predicate ids"}
    out.update({g: [p + 1 for p in ps] for g, ps in groups.items()})
    out["names"] = {g: [PREDICATES[p] for p in ps] for g, ps in groups.items()}
    return out


def write_vg(records: List[Dict], out: Path) -> Dict[str, Path]:
    """Write the h5, dicts, image_data, zero-shot and long-tail files into ``out``."""
    image_data = [{"image_id": r["image_id"], "width": r["width"], "height": r["height"],
                   "url": f"images/{r['split']}/{r['file_name']}"} for r in records]
    return {"vg_h5": write_h5(records, out / "VG-SGG-with-attri.h5"),
            "vg_dicts": write_json(out / "VG-SGG-dicts-with-attri.json", dicts(records)),
            "vg_image_data": write_json(out / "image_data.json", image_data),
            "vg_zeroshot": write_json(out / "zeroshot_triplets.json", zeroshot(records)),
            "vg_longtail": write_json(out / "longtail_split.json", longtail(records))}
