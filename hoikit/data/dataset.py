"""Torch dataset over any reader, its collate function, and the config -> reader/transform builders.

    reader = build_reader(cfg.data, "train")
    ds = HOIDataset(reader, build_transforms(cfg.data, train=True))
    loader = DataLoader(ds, batch_size=2, collate_fn=collate)
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from ..structures import Sample
from .reader_base import decode_image
from .readers import open_reader
from .synth import generate_synthhoi
from .transforms import Compose, ToTensorNormalize, make_transforms

# DETR / UPT crop branch for 800-px training scales: resize to [400, 500, 600], crop 384..600.
# For other scale lists these sizes are scaled by max(scales) / DETR_MAX_SCALE.
DETR_MAX_SCALE = 800
DETR_CROP_RESIZE = (400, 500, 600)
DETR_CROP_SIZE = (384, 600)


class UnreadableImage(DataError):
    """An image file that is missing or cannot be decoded (message: file, index, decoder's message)."""


def load_image(sample: Sample) -> Image.Image:
    """Decode the sample's image as RGB; a missing or undecodable file is a one-line
    :class:`UnreadableImage` with the decoder's message."""
    if not sample.image_path:
        raise DataError(f"image {sample.index} ('{sample.file_name}'): no image directory was given")
    path = Path(sample.image_path)
    if not path.is_file():
        raise UnreadableImage(f"{path}: image {sample.index} not found")
    image, why = decode_image(path)
    if image is None:
        raise UnreadableImage(f"{path}: image {sample.index} cannot be read ({why})")
    return image


def sample_to_target(sample: Sample) -> Dict[str, torch.Tensor]:
    """Tensor copies of a sample's ``boxes [N, 4]``, ``labels [N]``, ``hois [K, 3]``, ``relations [R, 3]``,
    and its reader's ``task`` (``"sgg"`` | ``"hoi"``, a str) when the reader sets one."""
    target = dict(boxes=torch.from_numpy(sample.boxes.copy()), labels=torch.from_numpy(sample.labels.copy()),
                  hois=torch.from_numpy(sample.hois.copy()), relations=torch.from_numpy(sample.relations.copy()))
    if sample.task is not None:
        target["task"] = sample.task
    return target


class HOIDataset(Dataset):
    """``(image, target)`` pairs of a reader (docs/architecture.md, "Batches").

    Args:
        reader: any hoikit reader (``__len__``, ``__getitem__ -> Sample``).
        transforms: callable ``(PIL image, target) -> (FloatTensor [3, H, W], target)``; default:
            normalisation only.
        skip_unreadable: True: a missing or undecodable image is logged (a warning with the decoder's
            message) and the next readable index is returned in its place (deterministic, so resume
            stays exact). False: stop with the :class:`UnreadableImage` line, which points to
            ``data.skip_unreadable``. None (default; evaluation sets: an evaluation must not silently
            score another image set): stop, without that hint.

    Returns per item:
        image: FloatTensor ``[3, H, W]``, normalised.
        target: ``boxes [N, 4]`` xyxy pixels of the transformed image, ``labels [N]``, ``hois [K, 3]``,
        ``relations [R, 3]``, ``orig_size`` LongTensor ``(W, H)``, ``size`` LongTensor ``(W, H)`` of the
        transformed image, ``index`` (int), ``task`` (str: ``"sgg"`` | ``"hoi"``, the kind of dataset the
        image comes from, from the reader; absent for detection data).
    """

    def __init__(self, reader, transforms: Optional[Callable] = None, skip_unreadable: Optional[bool] = None):
        self.reader = reader
        self.transforms = transforms or ToTensorNormalize()
        self.meta = reader.meta
        self.skip_unreadable = skip_unreadable

    def __len__(self) -> int:
        return len(self.reader)

    def _readable(self, index: int) -> Tuple[int, Sample, Image.Image]:
        """``(index, sample, decoded image)``; with ``skip_unreadable`` the next readable index's
        (wrapping around) when the image of ``index`` cannot be read."""
        n = len(self.reader)
        for k in range(n if self.skip_unreadable else 1):
            sample = self.reader[(index + k) % n]
            try:
                return (index + k) % n, sample, load_image(sample)
            except UnreadableImage as e:
                if not self.skip_unreadable:
                    hint = "" if self.skip_unreadable is None else " (data.skip_unreadable=true skips such images)"
                    raise UnreadableImage(f"{e}{hint}") from None
                warnings.warn(f"skipped: {e}")
        raise DataError(f"{Path(sample.image_path).parent}: none of the {n} images can be read")

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Dict]:
        index, sample, image = self._readable(index)
        target = sample_to_target(sample)
        w, h = image.size
        recorded = tuple(sample.size)
        if recorded != (0, 0) and recorded != (w, h):
            # annotation boxes refer to the recorded size (e.g. a few wrong VG image_data entries)
            warnings.warn(f"{sample.image_path}: image {index} is {w}x{h} but the annotation says "
                          f"{recorded[0]}x{recorded[1]}; boxes rescaled")
            sx, sy = w / recorded[0], h / recorded[1]
            target["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
        image, target = self.transforms(image, target)
        target["orig_size"] = torch.tensor([w, h], dtype=torch.int64)
        target["size"] = torch.tensor([image.shape[-1], image.shape[-2]], dtype=torch.int64)
        target["index"] = index
        return image, target


def collate(batch: List[Tuple[torch.Tensor, Dict]]) -> Tuple[List[torch.Tensor], List[Dict]]:
    """``[(image, target), ...]`` -> ``(images: list of [3, H_i, W_i], targets: list of dict)``.

    Images keep their own sizes; models pad them with ``models.detr.nested_tensor_from_images``.
    """
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


def build_transforms(cfg, train: bool) -> Compose:
    """Transforms of a :class:`~hoikit.config.DataConfig` (UPT pipeline, see data/transforms.py)."""
    k = max(cfg.scales) / DETR_MAX_SCALE if cfg.scales else 1.0
    crop_resize = tuple(max(1, int(round(s * k))) for s in DETR_CROP_RESIZE)
    crop_size = tuple(max(1, int(round(s * k))) for s in DETR_CROP_SIZE)
    return make_transforms(train, list(cfg.scales), cfg.max_size, cfg.test_scale, hflip=cfg.hflip,
                           color_jitter=cfg.color_jitter, random_crop=cfg.random_crop,
                           crop_resize=crop_resize, crop_size=crop_size)


def synth_paths(root, split: str) -> Tuple[Path, Path]:
    """(annotation, image dir) of a SynthHOI split: ``ROOT/hicodet/instances_<split>.json``, ``ROOT/images/<split>``."""
    root = Path(root)
    return root / "hicodet" / f"instances_{split}.json", root / "images" / split


def build_reader(cfg, split: str, strict: bool = True, **kw):
    """Reader of a :class:`~hoikit.config.DataConfig` split ("train" or "test"; vg also "val").

    ``format == "synth"`` reads ``cfg.root`` in SynthHOI's layout (explicit ``train_anno`` /
    ``test_anno`` paths win) and generates the dataset there first when it does not exist yet.
    ``**kw`` goes to the reader (e.g. vg ``num_val_im`` for a small dataset, ``filter_empty_rels``).
    """
    if split not in ("train", "test", "val"):
        raise DataError(f"unknown split '{split}' (expected train, test or val)")
    if cfg.format == "vg":
        return open_reader("vg", cfg.vg_h5, images=cfg.vg_images or None, dicts=cfg.vg_dicts,
                           image_data=cfg.vg_image_data, split=split, strict=strict, **kw)
    if split == "val":
        raise DataError(f"format '{cfg.format}' has no 'val' split (use train or test)")
    anno = cfg.train_anno if split == "train" else cfg.test_anno
    images = cfg.train_images if split == "train" else cfg.test_images
    if cfg.format == "synth" and not anno:
        if not cfg.root:
            raise DataError("data.root: required for format 'synth' (the SynthHOI directory)")
        anno_path, image_dir = synth_paths(cfg.root, split)
        if not anno_path.is_file():
            _generate_synth(cfg)
        anno, images = str(anno_path), images or str(image_dir)
    if not anno:
        raise DataError(f"data.{split}_anno: no annotation file given for format '{cfg.format}'")
    return open_reader(cfg.format, anno, images or None, strict=strict, **kw)


def _generate_synth(cfg) -> None:
    generate_synthhoi(cfg.root, cfg.synth_train, cfg.synth_test, cfg.synth_seed, cfg.synth_size)
