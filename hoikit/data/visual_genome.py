"""Visual Genome, VG150 split (neural-motifs / Scene-Graph-Benchmark.pytorch files).

Files:
  * ``VG-SGG-with-attri.h5``: ``labels [N_obj, 1]`` (1..150), ``boxes_1024 [N_obj, 4]`` (cx, cy, w, h
    on the image rescaled so that its long side is 1024), ``img_to_first_box / img_to_last_box``
    (inclusive, -1 = none), ``predicates [N_rel, 1]`` (1..50), ``relationships [N_rel, 2]`` (GLOBAL
    object rows), ``img_to_first_rel / img_to_last_rel``, ``split`` (0 train, 2 test).
  * ``VG-SGG-dicts-with-attri.json``: ``idx_to_label``, ``idx_to_predicate`` (1-based keys).
  * ``image_data.json``: per image ``image_id, width, height`` (+ ``url``; a relative url is the image's
    path inside ``images``, else the file is ``<image_id>.jpg``). The public file has 108,077 entries;
    the h5 is aligned with it after dropping the four corrupt images 1592, 1722, 4616, 4617
    (Scene-Graph-Benchmark.pytorch ``load_image_filenames``); a file already of the h5's length is used as is.

Split (Scene-Graph-Benchmark.pytorch ``load_graphs``; its paths_catalog sets ``filter_empty_rels=True``
for every split): images without boxes are always dropped; images without relations are dropped
when ``filter_empty_rels`` (default True, also for test: 26,446 test images); ``test`` = split 2;
``val`` = the first ``num_val_im`` (5,000) remaining images of split 0, ``train`` = the rest.
SGB's train-time random de-duplication of relations is a sampling choice, not done here.

Conversion (once, here): labels and predicates become 0-based; boxes become xyxy in original pixels,
``box / 1024 * max(W, H)`` as in SGB ``get_groundtruth``; relations become per-image rows.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..errors import DataError
from ..structures import Sample, cxcywh_to_xyxy
from .metadata import DatasetMeta, vg150_meta
from .reader_base import ProblemLog, load_json

SPLITS = ("train", "val", "test")
SPLIT_FLAG = {"train": 0, "val": 0, "test": 2}
CORRUPT_IMAGE_IDS = (1592, 1722, 4616, 4617)  # SGB load_image_filenames
H5_KEYS = ("labels", "img_to_first_box", "img_to_last_box", "predicates", "relationships",
           "img_to_first_rel", "img_to_last_rel", "split")


def _indexed_names(table, path, key) -> List[str]:
    """``{"1": name, ...}`` -> names in index order (0-based list)."""
    try:
        items = sorted(((int(k), v) for k, v in table.items()), key=lambda kv: kv[0])
    except (AttributeError, ValueError):
        raise DataError(f"{path}: key '{key}' must map integer strings to names") from None
    if [k for k, _ in items] != list(range(1, len(items) + 1)):
        raise DataError(f"{path}: key '{key}' must have consecutive 1-based indices")
    return [v for _, v in items]


def meta_from_dicts(dicts, path="VG-SGG-dicts") -> DatasetMeta:
    """DatasetMeta from a VG-SGG-dicts JSON (objects and predicates 0-based)."""
    for key in ("idx_to_label", "idx_to_predicate"):
        if key not in dicts:
            raise DataError(f"{path}: missing key '{key}'")
    objects = _indexed_names(dicts["idx_to_label"], path, "idx_to_label")
    predicates = _indexed_names(dicts["idx_to_predicate"], path, "idx_to_predicate")
    packaged = vg150_meta()
    if objects == packaged.objects and predicates == packaged.predicates:
        return packaged
    person = objects.index("person") if "person" in objects else 0
    return DatasetMeta(name="vg150", objects=objects, predicates=predicates, person_label=person)


def _file_name(info: dict, image_dir: Optional[Path]) -> str:
    """Image file of an image_data entry, relative to ``image_dir``.

    ``<image_id>.jpg`` (the VG_100K layout); an image_data ``url`` that is a relative path (SynthHOI:
    ``images/<split>/<image_id>.jpg`` relative to the dataset root) is preferred when that file
    exists under ``image_dir`` (or when no file exists at all, so that messages name it).
    """
    plain = f"{int(info['image_id'])}.jpg"
    url = info.get("url")
    if not (isinstance(url, str) and url and "://" not in url and not url.startswith("/")):
        return plain
    if image_dir is not None and not (image_dir / url).is_file() and (image_dir / plain).is_file():
        return plain
    return url


class VisualGenomeReader:
    """VG150 scene graphs as :class:`~hoikit.structures.Sample` (``relations`` filled, ``hois`` empty).

    Args:
        h5: path of ``VG-SGG-with-attri.h5`` (or a SynthHOI file of the same layout).
        dicts: path of ``VG-SGG-dicts-with-attri.json``.
        image_data: path of ``image_data.json``.
        split: "train", "val" or "test".
        images: image directory (``<image_id>.jpg`` inside), optional.
        filter_empty_rels: drop images without relations (SGB default, all splits).
        num_val_im: size of the val split carved from the start of split 0.
        box_scale: long side of the image the h5 boxes refer to (1024 or 512).
        strict: raise DataError on the first problem; otherwise collect in ``problems``.
    """

    def __init__(self, h5, dicts, image_data, split: str = "test", images=None, filter_empty_rels: bool = True,
                 num_val_im: int = 5000, box_scale: int = 1024, strict: bool = True):
        if dicts is None or image_data is None:
            raise DataError("vg: both the dicts JSON (--dicts) and image_data.json (--image-data) are required")
        if split not in SPLITS:
            raise DataError(f"vg: unknown split '{split}' (expected one of {', '.join(SPLITS)})")
        self.path = Path(h5)
        self.split = split
        self.box_scale = box_scale
        self.image_dir = Path(images) if images else None
        self.log = ProblemLog(self.path, strict)
        self.meta = meta_from_dicts(load_json(dicts), dicts)
        arrays = self._load_h5(self.path, f"boxes_{box_scale}")
        infos = self._align_image_data(load_json(image_data), image_data, len(arrays["split"]))
        self._validate(arrays, len(infos))

        keep = (arrays["split"] == SPLIT_FLAG[split]) & (arrays["img_to_first_box"] >= 0)
        if filter_empty_rels:
            keep &= arrays["img_to_first_rel"] >= 0
        keep &= self._valid_images
        rows = np.nonzero(keep)[0]
        if split == "val":
            rows = rows[:num_val_im]
        elif split == "train":
            if len(rows) and len(rows) <= num_val_im:
                warnings.warn(f"{self.path}: the train split is empty: val (num_val_im={num_val_im}) takes all "
                              f"{len(rows)} split-0 images; pass a smaller num_val_im for a small dataset")
            rows = rows[num_val_im:]
        self.rows = rows  # h5 image rows of this split
        self._arrays = arrays
        self._infos = infos

    @property
    def problems(self):
        return self.log.problems

    # ------------------------------------------------------------------ loading and validation
    def _load_h5(self, path: Path, box_key: str) -> dict:
        if not path.is_file():
            raise DataError(f"{path}: annotation file not found")
        import h5py   # third-party, here: `hoikit --help` and `hoikit eval` do not load HDF5

        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise DataError(f"{path}: not a readable HDF5 file ({e})") from None
        with f:
            for key in H5_KEYS + (box_key,):
                if key not in f:
                    raise DataError(f"{path}: missing dataset '{key}'")
            out = {k: np.asarray(f[k][:]) for k in H5_KEYS}
            out["boxes"] = np.asarray(f[box_key][:], dtype=np.float64)
        out["labels"] = out["labels"].reshape(len(out["labels"]), -1)[:, 0].astype(np.int64)
        out["predicates"] = out["predicates"].reshape(len(out["predicates"]), -1)[:, 0].astype(np.int64)
        for k in ("img_to_first_box", "img_to_last_box", "img_to_first_rel", "img_to_last_rel", "split"):
            out[k] = out[k].reshape(-1).astype(np.int64)
        out["relationships"] = out["relationships"].astype(np.int64).reshape(-1, 2)
        n_img = len(out["split"])
        for k in ("img_to_first_box", "img_to_last_box", "img_to_first_rel", "img_to_last_rel"):
            if len(out[k]) != n_img:
                raise DataError(f"{path}: dataset '{k}' has {len(out[k])} rows but 'split' has {n_img}")
        if out["boxes"].shape != (len(out["labels"]), 4):
            raise DataError(f"{path}: dataset '{box_key}' has shape {list(out['boxes'].shape)}, "
                            f"expected [{len(out['labels'])}, 4] like 'labels'")
        if len(out["relationships"]) != len(out["predicates"]):
            raise DataError(f"{path}: 'relationships' has {len(out['relationships'])} rows but "
                            f"'predicates' has {len(out['predicates'])}")
        return out

    def _align_image_data(self, data, path, n_img: int) -> list:
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of images")
        if len(data) == n_img + len(CORRUPT_IMAGE_IDS):
            data = [d for d in data if not (isinstance(d, dict) and d.get("image_id") in CORRUPT_IMAGE_IDS)]
        if len(data) != n_img:
            raise DataError(f"{path}: {len(data)} images but the h5 has {n_img} "
                            f"(expected equal, or {len(CORRUPT_IMAGE_IDS)} more before dropping corrupt images)")
        for i, d in enumerate(data):
            for key in ("image_id", "width", "height"):
                if not isinstance(d, dict) or key not in d:
                    raise DataError(f"{path}: image {i}: missing key '{key}'")
            if not all(isinstance(d[k], (int, float)) and not isinstance(d[k], bool) and d[k] > 0
                       for k in ("width", "height")):
                raise DataError(f"{path}: image {i}: field 'width/height': invalid size {d['width']}x{d['height']}")
        return data

    def _validate(self, a: dict, n_img: int) -> None:
        """Vectorised checks over the global arrays; marks images with errors invalid."""
        self._valid_images = np.ones(n_img, dtype=bool)
        n_obj, n_rel = len(a["labels"]), len(a["predicates"])
        fb, lb, fr, lr = a["img_to_first_box"], a["img_to_last_box"], a["img_to_first_rel"], a["img_to_last_rel"]

        def bad(images, field, message_fn):
            for i in np.nonzero(images)[0]:
                self.log.error(int(i), field, message_fn(int(i)))
                self._valid_images[i] = False

        has_box, has_rel = fb >= 0, fr >= 0
        bad(has_box & ((lb < fb) | (lb >= n_obj)), "img_to_last_box",
            lambda i: f"box range [{fb[i]}, {lb[i]}] invalid for {n_obj} objects")
        bad(has_rel & ((lr < fr) | (lr >= n_rel)), "img_to_last_rel",
            lambda i: f"relation range [{fr[i]}, {lr[i]}] invalid for {n_rel} relations")
        bad(has_rel & ~has_box, "img_to_first_rel", lambda i: "relations but no boxes")
        # per-object and per-relation checks, reported against the owning image
        owner_obj = np.full(n_obj, -1, np.int64)
        for i in np.nonzero(has_box & self._valid_images)[0]:
            owner_obj[fb[i]:lb[i] + 1] = i
        owner_rel = np.full(n_rel, -1, np.int64)
        for i in np.nonzero(has_rel & self._valid_images)[0]:
            owner_rel[fr[i]:lr[i] + 1] = i
        n_cls, n_pred = len(self.meta.objects), len(self.meta.predicates)
        for j in np.nonzero((owner_obj >= 0) & ((a["labels"] < 1) | (a["labels"] > n_cls)))[0]:
            self._obj_error(owner_obj[j], "labels", j, f"label {a['labels'][j]} out of range [1, {n_cls}]")
        b = a["boxes"]
        for j in np.nonzero((owner_obj >= 0) & ~((b[:, 2] > 0) & (b[:, 3] > 0) & np.isfinite(b).all(1)))[0]:
            self._obj_error(owner_obj[j], f"boxes_{self.box_scale}", j, f"box {b[j].tolist()} has no positive width/height")
        for j in np.nonzero((owner_rel >= 0) & ((a["predicates"] < 1) | (a["predicates"] > n_pred)))[0]:
            self._obj_error(owner_rel[j], "predicates", j, f"predicate {a['predicates'][j]} out of range [1, {n_pred}]")
        rel = a["relationships"]
        img = np.maximum(owner_rel, 0)
        outside = (owner_rel >= 0) & ((rel < fb[img, None]) | (rel > lb[img, None])).any(1)
        for j in np.nonzero(outside)[0]:
            i = owner_rel[j]
            self._obj_error(i, "relationships", j, f"objects {rel[j].tolist()} outside the image's boxes [{fb[i]}, {lb[i]}]")

    def _obj_error(self, image: int, field: str, row: int, message: str) -> None:
        self.log.error(int(image), f"{field}[{row}]", message)
        self._valid_images[image] = False

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self.rows):
            raise IndexError(index)
        a, row = self._arrays, int(self.rows[index])
        info = self._infos[row]
        w, h = int(info["width"]), int(info["height"])
        first, last = a["img_to_first_box"][row], a["img_to_last_box"][row]
        boxes = a["boxes"][first:last + 1] / self.box_scale * max(w, h)  # SGB get_groundtruth
        labels = a["labels"][first:last + 1] - 1
        relations = np.zeros((0, 3), np.int64)
        if a["img_to_first_rel"][row] >= 0:
            fr, lr = a["img_to_first_rel"][row], a["img_to_last_rel"][row]
            pairs = a["relationships"][fr:lr + 1] - first  # global object rows -> per-image
            relations = np.column_stack([pairs, a["predicates"][fr:lr + 1] - 1])
        image_id = int(info["image_id"])
        file_name = _file_name(info, self.image_dir)
        return Sample(index=index, file_name=file_name, size=(w, h), boxes=cxcywh_to_xyxy(boxes),
                      labels=labels, relations=relations, image_id=image_id,
                      image_path=str(self.image_dir / file_name) if self.image_dir else None, task="sgg")

    def h5_row(self, index: int) -> int:
        """Row of image ``index`` in the h5 / image_data.json."""
        return int(self.rows[index])
