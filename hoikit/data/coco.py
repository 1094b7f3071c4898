"""COCO instances JSON (``instances_train2017.json``) as detection-only samples.

DETR is trained on COCO detection annotations (every person and object of an image), not on the
boxes of HOI pairs; this reader gives the detector that data: ``hoikit train`` with
``model.arch: detr`` and ``data.format: coco`` trains DETR on any COCO-format file, and on SynthHOI
(``data.format: synth``) the detector reads SynthHOI's COCO file ``ROOT/vcoco/instances_<split>.json``
(every drawn person and object) unless ``data.synth_detector_boxes: hoi``.

Format facts (cocodataset.org "Data format"; facebookresearch/detr ``datasets/coco.py``):
``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations`` (``image_id``,
``category_id``, ``bbox = [x, y, w, h]`` in continuous pixels, ``iscrowd``), ``categories``
(``id``, ``name``), optional ``area`` (the segmentation area COCO's evaluation sizes by). DETR drops
``iscrowd = 1`` annotations from training targets and boxes with zero width or height; so do the
samples of this reader (crowd regions are not instances to match). The evaluation keeps what
pycocotools keeps: :meth:`COCODetectionReader.detection_targets` has every valid annotation of an
image, crowd regions flagged ``iscrowd`` and zero-size boxes included, with the file's ``area``
(:mod:`hoikit.eval.detection`).

Classes are the categories sorted by id (COCO's own order; ids need not be contiguous: COCO-2017
uses 1..90 with gaps), so a class index is a position in ``meta.objects``; ``meta.extra
["category_ids"]`` keeps the file's ids.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import DataError
from ..structures import Sample
from .metadata import DatasetMeta
from .reader_base import ProblemLog, check_boxes, load_json, require_keys


class COCODetectionReader:
    """COCO instances file -> :class:`~hoikit.structures.Sample` (boxes and labels, no pairs).

    Args:
        anno: the JSON file.
        images: image directory (``file_name`` is relative to it), optional.
        strict: raise DataError on the first problem; otherwise collect it in ``problems`` and drop
            the annotation at fault.
        name: DatasetMeta name (default "coco").

    Attributes:
        meta: DatasetMeta with ``objects`` = category names in id order, ``person_label`` = index of
            "person" (0 when there is none).
        image_ids: the file's image ids, in file order (the sample order).
    """

    def __init__(self, anno, images=None, strict: bool = True, name: str = "coco"):
        self.path = Path(anno)
        self.image_dir = Path(images) if images else None
        self.log = ProblemLog(self.path, strict)
        d = load_json(self.path)
        require_keys(d, ("images", "annotations", "categories"), self.path)
        cats = d["categories"]
        if not isinstance(cats, list) or not cats:
            raise DataError(f"{self.path}: 'categories' must be a non-empty list")
        for k, c in enumerate(cats):
            if not (isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)):
                raise DataError(f"{self.path}: categories[{k}]: expected {{'id': int, 'name': str}}, got {c!r}")
        cats = sorted(cats, key=lambda c: c["id"])
        ids = [c["id"] for c in cats]
        if len(set(ids)) != len(ids):
            raise DataError(f"{self.path}: 'categories' has duplicate ids")
        self._class_of = {cid: k for k, cid in enumerate(ids)}
        names = [c["name"] for c in cats]
        self.meta = DatasetMeta(name=name, objects=names,
                                person_label=names.index("person") if "person" in names else 0,
                                extra={"category_ids": ids})
        self.image_ids: List[int] = []
        self.filenames: List[str] = []
        self.sizes: List[tuple] = []
        position: Dict[int, int] = {}
        for i, im in enumerate(d["images"]):
            if not (isinstance(im, dict) and "id" in im and isinstance(im.get("file_name"), str)):
                raise DataError(f"{self.path}: images[{i}]: expected an object with 'id' and 'file_name'")
            if im["id"] in position:
                raise DataError(f"{self.path}: images[{i}]: duplicate image id {im['id']}")
            w, h = im.get("width"), im.get("height")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (w, h)):
                self.log.error(i, "width/height", f"expected positive numbers, got {w!r}, {h!r}")
                w, h = 0, 0
            position[im["id"]] = i
            self.image_ids.append(im["id"])
            self.filenames.append(im["file_name"])
            self.sizes.append((int(w), int(h)))
        per_image: Dict[int, list] = defaultdict(list)
        for k, a in enumerate(d["annotations"]):
            self._add(k, a, position, per_image)
        self._eval = [_eval_arrays(per_image.get(i, [])) for i in range(len(self.image_ids))]
        self._boxes: List[np.ndarray] = []
        self._labels: List[np.ndarray] = []
        for e in self._eval:   # training targets: DETR drops crowd regions and zero-size boxes
            keep = ~e["iscrowd"] & (e["boxes"][:, 2] > e["boxes"][:, 0]) & (e["boxes"][:, 3] > e["boxes"][:, 1])
            self._boxes.append(e["boxes"][keep].astype(np.float32))
            self._labels.append(e["labels"][keep])

    def _add(self, k: int, a, position: Dict[int, int], per_image: Dict[int, list]) -> None:
        where = f"annotations[{k}]"
        if not isinstance(a, dict):
            self.log.error(None, where, f"expected an object, got {type(a).__name__}")
            return
        i = position.get(a.get("image_id"))
        if i is None:
            self.log.error(None, where, f"image_id {a.get('image_id')!r} is not in 'images'")
            return
        c = self._class_of.get(a.get("category_id"))
        if c is None:
            self.log.error(i, f"{where}.category_id", f"{a.get('category_id')!r} is not in 'categories'")
            return
        bb = a.get("bbox")
        if not (isinstance(bb, list) and len(bb) == 4 and all(isinstance(v, (int, float)) for v in bb)):
            self.log.error(i, f"{where}.bbox", f"expected [x, y, w, h], got {bb!r}")
            return
        xyxy = np.array([[bb[0], bb[1], bb[0] + bb[2], bb[1] + bb[3]]], np.float32)
        size = self.sizes[i] if self.sizes[i][0] > 0 else None
        if not check_boxes(xyxy, self.log, i, f"{where}.bbox", size, shown=np.asarray([bb], np.float32))[0]:
            return
        area = a.get("area")
        if area is not None and not (isinstance(area, (int, float)) and not isinstance(area, bool) and area >= 0):
            self.log.error(i, f"{where}.area", f"expected a number >= 0, got {area!r}")
            return
        xyxy64 = [bb[0], bb[1], bb[0] + bb[2], bb[1] + bb[3]]   # float64 like pycocotools' JSON boxes
        per_image[i].append((xyxy64, c, bool(a.get("iscrowd", 0)), np.nan if area is None else float(area)))

    @property
    def problems(self):
        return self.log.problems

    def __len__(self) -> int:
        return len(self.image_ids)

    def detection_targets(self, index: int) -> Dict[str, np.ndarray]:
        """The evaluation ground truth of image ``index`` (:func:`hoikit.eval.detection.coco_detection_metrics`):
        ``boxes [N, 4]`` xyxy, ``labels [N]``, ``iscrowd [N]`` bool, ``area [N]`` (the file's ``area``,
        nan where it has none: the box area is used). Every valid annotation, crowd regions and
        zero-size boxes included, as pycocotools evaluates them; the sample's boxes are a subset."""
        if not 0 <= index < len(self.image_ids):
            raise IndexError(index)
        return {k: v.copy() for k, v in self._eval[index].items()}

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self.image_ids):
            raise IndexError(index)
        fn = self.filenames[index]
        return Sample(index=index, file_name=fn, size=self.sizes[index], boxes=self._boxes[index],
                      labels=self._labels[index], image_id=self.image_ids[index],
                      image_path=str(self.image_dir / fn) if self.image_dir else None)


def _eval_arrays(rows: list) -> Dict[str, np.ndarray]:
    """Rows ``(xyxy, class, iscrowd, area)`` of one image -> the arrays of ``detection_targets``."""
    return {"boxes": np.asarray([r[0] for r in rows], np.float64).reshape(-1, 4),
            "labels": np.asarray([r[1] for r in rows], np.int64),
            "iscrowd": np.asarray([r[2] for r in rows], bool),
            "area": np.asarray([r[3] for r in rows], np.float64)}
