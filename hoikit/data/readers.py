"""Reader factory: ``open_reader(format, anno, images)`` builds the reader of a dataset format.

    reader = open_reader("hicodet", "instances_test2015.json", images="hico_20160224_det/images/test2015")
    sample = reader[0]          # hoikit.structures.Sample, boxes xyxy in original pixels

The helpers the readers share (``ProblemLog``, ``load_json``, ``check_boxes``, ...) live in
reader_base.py, which the readers import; this module imports the readers.
"""
from __future__ import annotations

from ..errors import DataError
from .coco import COCODetectionReader
from .custom import CustomReader
from .hicodet import HICODetReader
from .reader_base import Problem, decode_image, load_json, load_npz  # noqa: F401  (re-exported: the public helpers)
from .vcoco import VCOCOReader
from .visual_genome import VisualGenomeReader

FORMATS = ("hicodet", "vcoco", "vg", "custom", "synth", "coco")


def open_reader(format: str, anno, images=None, **kw):
    """Build the reader of a dataset format.

    Args:
        format: "hicodet" (also "synth", whose HOI annotations use the HICO-DET format),
            "vcoco", "vg", "custom" or "coco" (detection only: COCO instances JSON).
        anno: the annotation file (for "vg": the ``VG-SGG-with-attri.h5``).
        images: image directory, optional.
        **kw: format-specific options (vg: ``dicts``, ``image_data``, ``split``;
            custom: ``classes``; all: ``strict``).
    """
    if format in ("hicodet", "synth"):
        if format == "synth":
            kw.setdefault("name", "synth")
        return HICODetReader(anno, images, **kw)
    if format == "vcoco":
        return VCOCOReader(anno, images, **kw)
    if format == "vg":
        return VisualGenomeReader(anno, kw.pop("dicts", None), kw.pop("image_data", None), images=images, **kw)
    if format == "custom":
        return CustomReader(anno, images, **kw)
    if format == "coco":
        return COCODetectionReader(anno, images, **kw)
    raise DataError(f"unknown dataset format '{format}' (expected one of {', '.join(FORMATS)})")
