"""Detector class ids -> dataset object ids, built from class names.

A frozen DETR predicts classes in its own index space, which is not always the dataset's:

* UPT's HICO-DET detectors (fredzzhang/hicodet ``class`` branch, what UPT/PViC use; see
  ``/work/shared/specs/data-formats.md``) predict the **80 contiguous COCO classes** in COCO order
  (person = 0), while HICO-DET's ``main`` branch files list objects alphabetically (person = 49).
* COCO DETR (facebookresearch/detr, UPT's V-COCO detectors) predicts **COCO category ids**:
  ``num_classes = 91``, index = category id, person = 1, with unused ids (0 and the ten gaps
  12, 26, 29, 30, 45, 66, 68, 69, 71, 83; e.g. fredzzhang/upt ``hicodet/coco91tohico80.json`` has
  no entry for them), while hoikit's V-COCO tables (fredzzhang/vcoco ``objects``) have 81 names:
  background 0, person 1, then the 80 COCO classes **contiguously** (stop sign = 12, not 13).

``model.rmlr.detector_classes`` names the detector's class list: ``auto`` (same size as the
dataset's objects: identity; 91: ``coco91``; otherwise an error), ``dataset`` (identity),
``coco80``, ``coco91``, or a comma-separated list of names. Names are matched to the dataset's
object names case-insensitively with ``_`` = space; a detector class without a dataset object
(``N/A``, or an object the dataset lacks) maps to -1 and its detections are dropped.
"""
from __future__ import annotations

from typing import List, Sequence

import torch

from ...data.metadata import load_class_file
from ...errors import ConfigError

#: COCO category ids that no class uses (COCO has 80 classes over ids 1..90).
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
NO_CLASS = "N/A"


def coco80_names() -> List[str]:
    """The 80 COCO class names in contiguous order (person first), from hoikit/classes/vcoco.json
    (fredzzhang/vcoco ``objects`` without its background entry)."""
    objects = list(load_class_file("vcoco")["objects"])
    if objects[0] != "background" or len(objects) != 81:
        raise ConfigError("hoikit/classes/vcoco.json: 'objects' must be background + 80 COCO classes")
    return objects[1:]


def coco91_names() -> List[str]:
    """Names indexed by COCO category id 0..90 (``N/A`` at 0 and at the unused ids)."""
    names = [NO_CLASS] * 91
    it = iter(coco80_names())
    for cid in range(1, 91):
        if cid not in COCO_UNUSED_IDS:
            names[cid] = next(it)
    return names


def _norm(name: str) -> str:
    return " ".join(str(name).replace("_", " ").lower().split())


def detector_class_names(spec: str, num_classes: int, objects: Sequence[str]) -> List[str]:
    """The detector's class names for ``model.rmlr.detector_classes = spec``.

    Args:
        spec: ``auto`` | ``dataset`` | ``coco80`` | ``coco91`` | comma-separated names.
        num_classes: the detector's foreground classes (``class_embed`` rows - 1).
        objects: the dataset's object names.
    """
    spec = (spec or "auto").strip()
    if spec == "auto":
        if num_classes == len(objects):
            spec = "dataset"
        elif num_classes == 91:
            spec = "coco91"
        else:
            raise ConfigError(f"model.rmlr.detector_classes: 'auto' cannot tell the detector's {num_classes} classes "
                              f"from the dataset's {len(objects)} objects; set coco80 | coco91 | dataset | name,name,...")
    if spec == "dataset":
        names = list(objects)
    elif spec == "coco80":
        names = coco80_names()
    elif spec == "coco91":
        names = coco91_names()
    else:
        names = [n.strip() for n in spec.split(",")]
    if len(names) != num_classes:
        raise ConfigError(f"model.rmlr.detector_classes: '{spec if len(spec) < 40 else spec[:37] + '...'}' lists "
                          f"{len(names)} classes but the detector has {num_classes}")
    return names


def detector_to_dataset(spec: str, num_classes: int, objects: Sequence[str], person_label: int) -> torch.Tensor:
    """Lookup table detector class -> dataset object id (-1 = no such object).

    Returns:
        int64 ``[num_classes]``.

    Raises:
        ConfigError: the list has the wrong length, or no detector class is the dataset's person.
    """
    index = {}
    for i, n in enumerate(objects):
        index.setdefault(_norm(n), i)
    names = detector_class_names(spec, num_classes, objects)
    table = torch.tensor([index.get(_norm(n), -1) if n != NO_CLASS else -1 for n in names], dtype=torch.int64,
                         device="cpu")  # real values even while a model is built on the meta device
    ids = table[table >= 0]
    if len(ids.unique()) != len(ids):
        dup = int(ids[[int((ids == v).sum()) > 1 for v in ids.tolist()].index(True)])
        raise ConfigError(f"model.rmlr.detector_classes: several detector classes map to object '{objects[dup]}'")
    if not bool((table == int(person_label)).any()):
        raise ConfigError(f"model.rmlr.detector_classes: no detector class maps to the dataset's person "
                          f"'{objects[person_label]}' (detector classes: {', '.join(names[:5])}, ...)")
    return table
