"""Custom HOI data in the one-stage JSON of QPIC / CDN / GEN-VLKT (``hico_trainval_annotations.json``).

A JSON list of images::

    {"file_name": "a.jpg", ["width": W, "height": H,]
     "annotations": [{"bbox": [x1, y1, x2, y2], "category_id": c}, ...],
     "hoi_annotation": [{"subject_id": i, "object_id": j, "category_id": v}, ...]}

``bbox`` is continuous xyxy in original pixels (used as is); ``subject_id`` / ``object_id`` index
``annotations``; ``object_id = -1`` (no object, as in QPIC's V-COCO files) is left out with a warning.

Class names come from ``objects`` / ``verbs`` arguments or a classes JSON
``{"objects": [...], "verbs": [...], ["object_ids": [...], "verb_ids": [...], "correspondence", "rare"]}``.
``object_ids`` / ``verb_ids`` give the ``category_id`` the file uses for each name (QPIC's HICO files use
COCO ids 1..90 and verbs 1..117); by default ``category_id`` is the 0-based position in the list.
Without names the ids found in the file become the classes. Without a ``correspondence`` table the
(object, verb) combinations present in the file are the HOI classes, and ``rare`` (< 10 instances,
the HICO-DET definition) is counted on the file.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import DataError
from ..structures import Sample
from .metadata import RARE_THRESHOLD, DatasetMeta
from .reader_base import ProblemLog, as_array, check_boxes, header_size, load_json

def _id_map(ids: Sequence[int], what: str, path) -> Dict[int, int]:
    m = {int(c): k for k, c in enumerate(ids)}
    if len(m) != len(ids):
        raise DataError(f"{path}: '{what}' has duplicate ids")
    return m


def _positive_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _is_id(v) -> bool:
    """A category id that can be looked up (a JSON list or object would not even hash)."""
    return isinstance(v, (int, float, str)) and not isinstance(v, bool)


class CustomReader:
    """QPIC-style JSON as :class:`~hoikit.structures.Sample`.

    Args:
        anno: the annotation JSON (a list of images).
        images: image directory, optional.
        classes: optional classes JSON (see module docstring).
        objects, verbs: class names (override the classes file).
        strict: raise DataError on the first problem; otherwise collect it in ``problems``.
    """

    def __init__(self, anno, images=None, classes=None, objects: Optional[List[str]] = None,
                 verbs: Optional[List[str]] = None, strict: bool = True):
        self.path = Path(anno)
        self.image_dir = Path(images) if images else None
        self.log = ProblemLog(self.path, strict)
        data = load_json(self.path)
        if not isinstance(data, list):
            raise DataError(f"{self.path}: expected a JSON list of images, got {type(data).__name__}")
        table = load_json(classes) if classes else {}
        if not isinstance(table, dict):
            raise DataError(f"{classes}: expected a JSON object with 'objects' and 'verbs'")
        found_o, found_v = self._scan_ids(data)
        objects = list(objects or table.get("objects") or [])
        verbs = list(verbs or table.get("verbs") or [])
        # ids the file uses per name: explicit, else the 0-based position; no names: the ids found
        obj_ids = table.get("object_ids") or (range(len(objects)) if objects else found_o)
        verb_ids = table.get("verb_ids") or (range(len(verbs)) if verbs else found_v)
        objects = objects or [str(c) for c in found_o]
        verbs = verbs or [str(c) for c in found_v]
        if len(obj_ids) != len(objects) or len(verb_ids) != len(verbs):
            raise DataError(f"{classes}: 'object_ids'/'verb_ids' must have one id per name")
        self._obj_map, self._verb_map = _id_map(obj_ids, "object_ids", classes), _id_map(verb_ids, "verb_ids", classes)
        self.filenames: List[str] = []
        self.sizes: List[tuple] = []
        self._samples = [self._parse(i, a) for i, a in enumerate(data)]
        self.meta = self._build_meta(objects, verbs, table)

    @property
    def problems(self):
        return self.log.problems

    @property
    def empty(self):
        return [i for i, s in enumerate(self._samples) if not len(s["hois"])]

    @staticmethod
    def _scan_ids(data):
        objs, verbs = set(), set()
        for a in data:
            if isinstance(a, dict):
                for ids, key in ((objs, "annotations"), (verbs, "hoi_annotation")):
                    items = a.get(key) if isinstance(a.get(key), list) else []  # else reported by _parse
                    ids.update(x["category_id"] for x in items if isinstance(x, dict) and _is_id(x.get("category_id")))
        clean = lambda s: sorted(int(c) for c in s if isinstance(c, (int, float)))  # noqa: E731
        return clean(objs), clean(verbs)

    def _parse(self, i: int, a) -> dict:
        out = dict(boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64), hois=np.zeros((0, 3), np.int64))
        if not isinstance(a, dict) or "file_name" not in a:
            self.log.error(i, "file_name", "missing key")
            self.filenames.append(f"<image {i}>")
            self.sizes.append((0, 0))
            return out
        self.filenames.append(str(a["file_name"]))
        size = None
        if "width" in a and "height" in a:
            if _positive_number(a["width"]) and _positive_number(a["height"]):
                size = (int(a["width"]), int(a["height"]))
            else:
                self.log.error(i, "width/height", f"expected positive numbers, got {a['width']!r} x {a['height']!r}")
        if size is None and self.image_dir is not None:
            size = header_size(self.image_dir / a["file_name"])
        self.sizes.append(size or (0, 0))
        for k in ("annotations", "hoi_annotation"):
            if not isinstance(a.get(k), list):
                self.log.error(i, k, "missing key or not a list")
                return out
        boxes, labels = [], []
        for j, b in enumerate(a["annotations"]):
            if not isinstance(b, dict) or "bbox" not in b or "category_id" not in b:
                self.log.error(i, f"annotations[{j}]", "needs 'bbox' and 'category_id'")
                return out
            box = as_array([b["bbox"]], (4,), np.float32, self.log, i, f"annotations[{j}].bbox")
            if box is None or not check_boxes(box, self.log, i, f"annotations[{j}].bbox", size).all():
                return out
            if not _is_id(b["category_id"]) or b["category_id"] not in self._obj_map:
                self.log.error(i, f"annotations[{j}].category_id", f"unknown object category {b['category_id']!r}")
                return out
            boxes.append(box[0])
            labels.append(self._obj_map[b["category_id"]])
        hois = []
        for j, h in enumerate(a["hoi_annotation"]):
            if not isinstance(h, dict) or any(k not in h for k in ("subject_id", "object_id", "category_id")):
                self.log.error(i, f"hoi_annotation[{j}]", "needs 'subject_id', 'object_id' and 'category_id'")
                continue
            s, o, v = h["subject_id"], h["object_id"], h["category_id"]
            if o == -1:
                self.log.warning(i, f"hoi_annotation[{j}].object_id", "-1 (no object): pair left out")
                continue
            bad = [k for k, x in (("subject_id", s), ("object_id", o)) if not (isinstance(x, int) and 0 <= x < len(boxes))]
            if bad:
                self.log.error(i, f"hoi_annotation[{j}].{bad[0]}",
                               f"index {h[bad[0]]!r} out of range [0, {len(boxes)})")
                continue
            if not _is_id(v) or v not in self._verb_map:
                self.log.error(i, f"hoi_annotation[{j}].category_id", f"unknown verb category {v!r}")
                continue
            hois.append((s, o, self._verb_map[v]))
        return dict(boxes=np.asarray(boxes, np.float32).reshape(-1, 4), labels=np.asarray(labels, np.int64),
                    hois=np.asarray(hois, np.int64).reshape(-1, 3))

    def _build_meta(self, objects, verbs, table) -> DatasetMeta:
        counts = Counter((int(s["labels"][o]), int(v)) for s in self._samples for _, o, v in s["hois"])
        if "correspondence" in table:
            corr = np.asarray(table["correspondence"], np.int64).reshape(-1, 3)
        else:
            corr = np.asarray([(k, o, v) for k, (o, v) in enumerate(sorted(counts))], np.int64).reshape(-1, 3)
        rare = table.get("rare")
        if rare is None:
            rare = [int(k) for k, o, v in corr if counts[(int(o), int(v))] < RARE_THRESHOLD]
        subjects = Counter(int(s["labels"][h]) for s in self._samples for h, _, _ in s["hois"])
        person = objects.index("person") if "person" in objects else (subjects.most_common(1)[0][0] if subjects else 0)
        return DatasetMeta(name="custom", objects=objects, verbs=verbs, person_label=person,
                           correspondence=corr, rare=rare)

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self._samples):
            raise IndexError(index)
        s, fn = self._samples[index], self.filenames[index]
        return Sample(index=index, file_name=fn, size=self.sizes[index], boxes=s["boxes"], labels=s["labels"],
                      hois=s["hois"], image_path=str(self.image_dir / fn) if self.image_dir else None, task="hoi")
