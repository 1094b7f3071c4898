"""SynthHOI in the HICO-DET format of fredzzhang/hicodet (``instances_{train,test}.json``).

Keys as in the real file: ``annotation`` (per image ``boxes_h``, ``boxes_o`` as 1-based inclusive
pixel indices stored as floats, ``hoi``, ``object``, ``verb``), ``filenames``, ``size`` ([W, H]),
``empty``, ``objects``, ``verbs``, ``correspondence`` ([hoi, object, verb]), ``rare``, ``non_rare``.
Rare = HOI classes with fewer than ``RARE_THRESHOLD`` instances in the *training* split, the HICO-DET
definition (Chao et al., WACV 2018), so both split files carry the same lists.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from .classes import CORRESPONDENCE, HOI_ID, OBJECTS, VERBS
from .records import split_records, to_hicodet, write_json

RARE_THRESHOLD = 10


def hoi_counts(records: List[Dict]) -> np.ndarray:
    """Instances per HOI class ``[C]`` over ``records``."""
    counts = np.zeros(len(CORRESPONDENCE), np.int64)
    for r in records:
        for h, o, v in r["hois"]:
            counts[HOI_ID[(r["labels"][o], v)]] += 1
    return counts


def rare_split(train_records: List[Dict]) -> Tuple[List[int], List[int]]:
    counts = hoi_counts(train_records)
    rare = [int(i) for i in np.nonzero(counts < RARE_THRESHOLD)[0]]
    return rare, [i for i in range(len(counts)) if i not in set(rare)]


def hicodet_dict(records: List[Dict], rare: List[int], non_rare: List[int]) -> Dict:
    annotation, empty = [], []
    for k, r in enumerate(records):
        b, lab = r["boxes"], r["labels"]
        a = {"boxes_h": [], "boxes_o": [], "hoi": [], "object": [], "verb": []}
        for h, o, v in r["hois"]:
            a["boxes_h"].append(to_hicodet(b[h]))
            a["boxes_o"].append(to_hicodet(b[o]))
            a["hoi"].append(HOI_ID[(lab[o], v)])
            a["object"].append(lab[o])
            a["verb"].append(v)
        if not r["hois"]:
            empty.append(k)
        annotation.append(a)
    return {"annotation": annotation, "filenames": [r["file_name"] for r in records],
            "size": [[r["width"], r["height"]] for r in records], "empty": empty, "objects": list(OBJECTS),
            "verbs": list(VERBS), "correspondence": CORRESPONDENCE, "rare": rare, "non_rare": non_rare}


def write_hicodet(records: List[Dict], out: Path) -> Dict[str, Path]:
    """Write ``out/instances_train.json`` and ``out/instances_test.json``."""
    rare, non_rare = rare_split(split_records(records, "train"))
    paths = {}
    for split in ("train", "test"):
        paths[f"hicodet_{split}"] = write_json(out / f"instances_{split}.json",
                                               hicodet_dict(split_records(records, split), rare, non_rare))
    return paths
