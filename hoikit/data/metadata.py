"""Class metadata shipped inside the package.

A trained model names its outputs from these tables without the dataset present.
Sources: HICO-DET tables from fredzzhang/hicodet (``instances_test2015.json``,
HICO alphabetical object order); V-COCO from fredzzhang/vcoco and s-gupta/v-coco;
VG150 from ``VG-SGG-dicts-with-attri.json`` (1-based there, 0-based here).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Dict, List, Optional

import numpy as np


RARE_THRESHOLD = 10  # HICO-DET: a rare HOI class has fewer than 10 training instances


@dataclass
class DatasetMeta:
    """Names and tables a model needs to interpret its outputs.

    Attributes:
        name: dataset family ("hicodet", "vcoco", "vg150", "synth", "custom").
        objects: object class names, index = class id.
        verbs: verb (interaction) names, index = verb id.
        person_label: class id of "person" in ``objects``.
        correspondence: int64 ``[C, 3]`` rows ``(hoi, object, verb)``; empty when
            the dataset has no HOI classes.
        rare: HOI class ids with fewer than ``RARE_THRESHOLD`` (10) training instances.
        predicates: relation predicate names (0-based, no background).
        extra: anything format-specific (e.g. V-COCO role tables).
    """

    name: str
    objects: List[str]
    verbs: List[str] = field(default_factory=list)
    person_label: int = 0
    correspondence: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    rare: List[int] = field(default_factory=list)
    predicates: List[str] = field(default_factory=list)
    extra: Dict = field(default_factory=dict)

    def __post_init__(self):
        self.correspondence = np.asarray(self.correspondence, dtype=np.int64).reshape(-1, 3)

    @property
    def num_hois(self) -> int:
        return len(self.correspondence)

    def object_to_verbs(self) -> List[List[int]]:
        """For each object class, the verbs that form a valid HOI class with it."""
        table: List[List[int]] = [[] for _ in self.objects]
        for _, o, v in self.correspondence:
            table[int(o)].append(int(v))
        return table

    def hoi_name(self, hoi: int) -> str:
        _, o, v = self.correspondence[hoi]
        return f"{self.verbs[v]} {self.objects[o]}"

    def to_dict(self) -> Dict:
        return dict(name=self.name, objects=list(self.objects), verbs=list(self.verbs),
                    person_label=int(self.person_label), correspondence=self.correspondence.tolist(),
                    rare=[int(r) for r in self.rare], predicates=list(self.predicates), extra=self.extra)

    @classmethod
    def from_dict(cls, d: Dict) -> "DatasetMeta":
        return cls(**d)


@lru_cache(maxsize=None)
def load_class_file(name: str) -> Dict:
    """Read ``hoikit/classes/<name>.json`` from the installed package."""
    with resources.files("hoikit").joinpath("classes", f"{name}.json").open("r") as f:
        return json.load(f)


def hicodet_meta(objects: Optional[List[str]] = None) -> DatasetMeta:
    """HICO-DET metadata. ``objects`` re-orders object ids (e.g. the COCO-80 order of a
    ``class``-branch file); correspondence rows are remapped by object name."""
    d = load_class_file("hicodet")
    corr = np.asarray(d["correspondence"], dtype=np.int64)
    names = d["objects"]
    if objects is not None and list(objects) != list(names):
        pos = {n: i for i, n in enumerate(objects)}
        corr = corr.copy()
        corr[:, 1] = [pos[names[o]] for o in corr[:, 1]]
        names = list(objects)
    return DatasetMeta(name="hicodet", objects=list(names), verbs=list(d["verbs"]),
                       person_label=names.index("person"), correspondence=corr, rare=list(d["rare"]),
                       extra={"prompts": d["prompts"]})


def vcoco_meta() -> DatasetMeta:
    """V-COCO metadata in fredzzhang/vcoco's training layout (24 action-role classes,
    81 objects with background at 0, person = 1)."""
    d = load_class_file("vcoco")
    return DatasetMeta(name="vcoco", objects=list(d["objects"]), verbs=list(d["classes"]), person_label=1,
                       extra={"action_to_object": d["action_to_object"], "official_actions": d["official_actions"],
                              "phrases": d["phrases"], "plural_objects": d["plural_objects"]})


def vg150_meta() -> DatasetMeta:
    d = load_class_file("vg150")
    objs = list(d["objects"])
    return DatasetMeta(name="vg150", objects=objs, predicates=list(d["predicates"]),
                       person_label=objs.index("person") if "person" in objs else 0,
                       extra={"longtail_split": d["longtail_split"]})
