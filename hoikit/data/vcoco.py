"""V-COCO training annotations in fredzzhang/vcoco JSON (``instances_vcoco_{train,test}.json``).

Keys: ``annotations`` (per image ``boxes_h, boxes_o`` N x 4, ``actions`` (indices into ``classes``),
``objects`` (indices into ``objects``), ``file_name``), ``classes`` (24 "action role" names),
``objects`` (81 names, background at 0, person = 1), ``images`` (COCO ids), ``action_to_object``.

Box convention, checked on the shared files (train 12,800 boxes, test 24,804): every box has
x2 >= x1 and y2 >= y1, the largest x2 and y2 are exactly 640 (COCO's maximum image side) and values
such as 403.03999999999996 = 197.91 + 205.13 betray a float ``x + w``. So the file already holds
continuous xyxy (COCO xywh converted with ``x + w``, no -1): it is used as is.

The file records no image size: ``Sample.size`` is read from the image header when the image
directory is known (cheap: PIL does not decode the pixels), else it is ``(0, 0)`` (unknown).
This file is for training; the official evaluation ground truth (s-gupta vcoco JSON + COCO
instances) is read by hoikit.eval.vcoco.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..errors import DataError
from ..structures import Sample
from .metadata import DatasetMeta, vcoco_meta
from .reader_base import (ProblemLog, check_boxes, check_range, empty_pairs, header_size, load_json, merge_entities,
                          pair_arrays, require_keys)

PAIR_KEYS = ("boxes_h", "boxes_o", "actions", "objects")


def meta_from_file(d: Dict, path) -> DatasetMeta:
    """The packaged V-COCO meta when the file's tables match it, else one built from the file."""
    packaged = vcoco_meta()
    classes, objects = d.get("classes"), d.get("objects")
    if classes is None and objects is None:
        return packaged
    if classes == packaged.verbs and objects == packaged.objects:
        return packaged
    if not isinstance(objects, list) or "person" not in objects:
        raise DataError(f"{path}: key 'objects' must be a list of names containing 'person'")
    if not isinstance(classes, list):
        raise DataError(f"{path}: key 'classes' must be a list of action names")
    return DatasetMeta(name="synth", objects=list(objects), verbs=list(classes), person_label=objects.index("person"),
                       extra={"action_to_object": d.get("action_to_object", [])})


class VCOCOReader:
    """fredzzhang/vcoco JSON as :class:`~hoikit.structures.Sample` (hois = (human, object, action)).

    Args:
        anno: ``instances_vcoco_<split>.json``.
        images: image directory (``file_name`` inside), optional.
        strict: raise DataError on the first problem; otherwise collect it in ``problems``.
    """

    def __init__(self, anno, images=None, strict: bool = True):
        self.path = Path(anno)
        self.image_dir = Path(images) if images else None
        self.log = ProblemLog(self.path, strict)
        d = load_json(self.path)
        require_keys(d, ("annotations",), self.path)
        self.meta = meta_from_file(d, self.path)
        ann = d["annotations"]
        self.image_ids = list(d.get("images", [None] * len(ann)))
        if len(self.image_ids) != len(ann):
            raise DataError(f"{self.path}: 'images' has {len(self.image_ids)} entries but 'annotations' has {len(ann)}")
        self.filenames = []
        self._samples = [self._parse(i, a) for i, a in enumerate(ann)]
        self._sizes: Dict[int, tuple] = {}

    @property
    def problems(self):
        return self.log.problems

    @property
    def empty(self):
        return [i for i, p in enumerate(self._samples) if not len(p["actions"])]

    def _parse(self, i: int, a) -> dict:
        if not isinstance(a, dict) or "file_name" not in a:
            self.log.error(i, "file_name", "missing key")
            self.filenames.append(f"<image {i}>")
            return empty_pairs(PAIR_KEYS)
        self.filenames.append(str(a["file_name"]))
        arrs = pair_arrays(a, PAIR_KEYS, "actions", self.log, i)
        if arrs is None:
            return empty_pairs(PAIR_KEYS)
        ok = check_boxes(arrs["boxes_h"], self.log, i, "boxes_h") & check_boxes(arrs["boxes_o"], self.log, i, "boxes_o")
        ok &= check_range(arrs["actions"], len(self.meta.verbs), self.log, i, "actions")
        ok &= check_range(arrs["objects"], len(self.meta.objects), self.log, i, "objects", low=1)  # 0 = background
        return {k: v[ok] for k, v in arrs.items()}

    def __len__(self) -> int:
        return len(self._samples)

    def pairs(self, index: int) -> dict:
        """Raw pairs of image ``index``: ``boxes_h, boxes_o`` float32 ``[K, 4]``, ``actions, objects`` ``[K]``."""
        return self._samples[index]

    def image_size(self, index: int) -> tuple:
        """``(W, H)`` from the image header, or ``(0, 0)`` when no image is available."""
        if index not in self._sizes:
            found = header_size(self.image_dir / self.filenames[index]) if self.image_dir else None
            self._sizes[index] = found or (0, 0)  # missing/unreadable: reported by data check / HOIDataset
        return self._sizes[index]

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self._samples):
            raise IndexError(index)
        p = self._samples[index]
        boxes, labels, hi, oi = merge_entities(p["boxes_h"], p["boxes_o"], p["objects"], self.meta.person_label)
        fn = self.filenames[index]
        image_id: Optional[int] = self.image_ids[index]
        return Sample(index=index, file_name=fn, size=self.image_size(index), boxes=boxes, labels=labels,
                      hois=np.stack([hi, oi, p["actions"]], 1) if len(hi) else np.zeros((0, 3), np.int64),
                      image_id=None if image_id is None else int(image_id),
                      image_path=str(self.image_dir / fn) if self.image_dir else None, task="hoi")
