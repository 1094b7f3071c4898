"""HICO-DET in fredzzhang/hicodet JSON (the format of UPT, PViC and SynthHOI).

Keys: ``annotation`` (per image ``boxes_h, boxes_o`` N x 4 xyxy 1-based inclusive, ``hoi, object,
verb``), ``filenames``, ``size`` ([W, H]), ``empty``, and optionally ``objects``, ``verbs``,
``correspondence`` ([hoi, object, verb]), ``rare``, ``non_rare``.

The object order is read from the file's ``objects`` list, never assumed: the ``main`` branch uses
HICO's alphabetical order (person = 49), the ``class`` branch COCO-80 order (person = 0); HOI and
verb indices are identical in both. SynthHOI writes its own (smaller) tables in this format, so the
:class:`DatasetMeta` is built from the file; only a file without ``objects`` falls back to the
packaged HICO-DET tables.

Boxes: 1-based inclusive pixels -> continuous ``(x1 - 1, y1 - 1, x2, y2)`` (docs/architecture.md).
A human or object box that appears identically in several pairs becomes one entity.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..errors import DataError
from ..structures import Sample
from .metadata import DatasetMeta, hicodet_meta
from .reader_base import (ProblemLog, check_boxes, check_range, empty_pairs, load_json, merge_entities, pair_arrays,
                          require_keys)

PAIR_KEYS = ("boxes_h", "boxes_o", "hoi", "object", "verb")


def meta_from_file(d: Dict, path, name: Optional[str] = None) -> DatasetMeta:
    """DatasetMeta from the tables stored in a HICO-DET-format file (fallback: packaged HICO-DET)."""
    if "objects" not in d:
        return hicodet_meta()
    objects = list(d["objects"])
    if "person" not in objects:
        raise DataError(f"{path}: key 'objects' has no 'person' class")
    packaged = hicodet_meta(objects) if sorted(objects) == sorted(hicodet_meta().objects) else None
    verbs = list(d.get("verbs", packaged.verbs if packaged else []))
    if "correspondence" in d:
        corr = np.asarray(d["correspondence"], dtype=np.int64)
        if corr.ndim != 2 or corr.shape[1] != 3 or (len(corr) and not (corr[:, 0] == np.arange(len(corr))).all()):
            raise DataError(f"{path}: key 'correspondence' must be rows [hoi, object, verb] with hoi = row index")
        if len(corr) and (corr[:, 1].max() >= len(objects) or corr[:, 2].max() >= max(len(verbs), 1) or corr.min() < 0):
            raise DataError(f"{path}: key 'correspondence' refers to an object or verb index out of range")
    elif packaged is not None:
        corr = packaged.correspondence
    else:
        raise DataError(f"{path}: missing key 'correspondence' (required when 'objects' is not HICO-DET's)")
    rare = list(d["rare"]) if "rare" in d else (list(packaged.rare) if packaged else [])
    is_hico = packaged is not None and verbs == packaged.verbs and len(corr) == packaged.num_hois
    return DatasetMeta(name=name or ("hicodet" if is_hico else "synth"), objects=objects, verbs=verbs,
                       person_label=objects.index("person"), correspondence=corr, rare=[int(r) for r in rare],
                       extra=dict(packaged.extra) if is_hico else {})


class HICODetReader:
    """HICO-DET-format annotations as :class:`~hoikit.structures.Sample`.

    Args:
        anno: the JSON file.
        images: image directory (file names from ``filenames``), optional.
        strict: raise DataError on the first problem; otherwise collect it in ``problems`` and drop
            the pairs at fault.
        name: DatasetMeta name override (e.g. "synth").

    Attributes:
        filenames, sizes (``[(W, H)]``), empty: as in the file.
    """

    def __init__(self, anno, images=None, strict: bool = True, name: Optional[str] = None):
        self.path = Path(anno)
        self.image_dir = Path(images) if images else None
        self.log = ProblemLog(self.path, strict)
        d = load_json(self.path)
        require_keys(d, ("annotation", "filenames", "size"), self.path)
        self.meta = meta_from_file(d, self.path, name)
        ann, self.filenames, sizes = d["annotation"], list(d["filenames"]), d["size"]
        if len(self.filenames) != len(ann) or len(sizes) != len(ann):
            raise DataError(f"{self.path}: 'annotation', 'filenames' and 'size' have different lengths "
                            f"({len(ann)}, {len(self.filenames)}, {len(sizes)})")
        self.empty = [int(i) for i in d.get("empty", [])]
        self.sizes = []
        for i, s in enumerate(sizes):
            if not (isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in s)):
                self.log.error(i, "size", f"expected [W, H] with positive values, got {s!r}")
                s = (0, 0)
            self.sizes.append((int(s[0]), int(s[1])))
        self._samples = [self._parse(i, a) for i, a in enumerate(ann)]
        listed_pairs = [len(a.get("hoi", [])) if isinstance(a, dict) and isinstance(a.get("hoi"), list) else 0 for a in ann]
        empty_set = set(self.empty)
        for i in self.empty:
            if not 0 <= i < len(ann):
                self.log.error(None, "empty", f"image index {i} out of range [0, {len(ann)})")
            elif listed_pairs[i]:
                self.log.warning(i, "empty", "listed in 'empty' but has pairs")
        for i, n in enumerate(listed_pairs):
            if not n and i not in empty_set:
                self.log.warning(i, "empty", "has no pairs but is not listed in 'empty'")

    @property
    def problems(self):
        return self.log.problems

    def _parse(self, i: int, a) -> dict:
        """Validated raw pair arrays of image ``i`` (boxes converted to continuous xyxy)."""
        if not isinstance(a, dict):
            self.log.error(i, "annotation", f"expected an object, got {type(a).__name__}")
            return empty_pairs(PAIR_KEYS)
        arrs = pair_arrays(a, PAIR_KEYS, "hoi", self.log, i)
        if arrs is None:
            return empty_pairs(PAIR_KEYS)
        n = len(arrs["hoi"])
        m = self.meta
        size = self.sizes[i] if self.sizes[i][0] > 0 else None
        ok = np.ones(n, bool)
        for k in ("boxes_h", "boxes_o"):  # 1-based inclusive: x2 >= x1 is a box of width >= 1
            raw, arrs[k] = arrs[k], arrs[k] - np.array([1, 1, 0, 0], np.float32)
            ok &= check_boxes(arrs[k], self.log, i, k, size, shown=raw)
        ok &= check_range(arrs["hoi"], m.num_hois, self.log, i, "hoi")
        ok &= check_range(arrs["object"], len(m.objects), self.log, i, "object")
        ok &= check_range(arrs["verb"], len(m.verbs), self.log, i, "verb")
        corr = m.correspondence
        for j in np.nonzero(ok)[0]:
            h, o, v = arrs["hoi"][j], arrs["object"][j], arrs["verb"][j]
            if corr[h, 1] != o or corr[h, 2] != v:
                self.log.error(i, f"hoi[{j}]", f"hoi {h} is (object {corr[h, 1]}, verb {corr[h, 2]}) in "
                               f"'correspondence' but the pair has object {o}, verb {v}")
                ok[j] = False
        return {k: v[ok] for k, v in arrs.items()}

    def __len__(self) -> int:
        return len(self._samples)

    def pairs(self, index: int) -> dict:
        """Raw pairs of image ``index``: ``boxes_h, boxes_o`` float32 ``[K, 4]`` (continuous xyxy),
        ``hoi, object, verb`` int64 ``[K]``, in file order."""
        return self._samples[index]

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self._samples):
            raise IndexError(index)
        p = self._samples[index]
        boxes, labels, hi, oi = merge_entities(p["boxes_h"], p["boxes_o"], p["object"], self.meta.person_label)
        fn = self.filenames[index]
        return Sample(index=index, file_name=fn, size=self.sizes[index], boxes=boxes, labels=labels,
                      hois=np.stack([hi, oi, p["verb"]], 1) if len(hi) else np.zeros((0, 3), np.int64),
                      image_path=str(self.image_dir / fn) if self.image_dir else None, task="hoi")
