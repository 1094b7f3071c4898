"""Detection-training transforms on ``(PIL image, target)`` pairs (no torchvision).

``target`` holds ``boxes`` float32 ``[N, 4]`` xyxy in pixels of the current image, ``labels`` int64 ``[N]``,
``hois`` int64 ``[K, 3]`` (human, object, verb) and ``relations`` int64 ``[R, 3]`` (subject, object,
predicate) indexing ``boxes`` (torch tensors). Every geometric transform moves the boxes with the image.

UPT's training pipeline (fredzzhang/upt ``hicodet.py``, after DETR ``make_coco_transforms``): horizontal
flip, colour jitter 0.4, then with probability 0.5 either a multi-scale resize (shorter side in
480..800, longer side <= 1333) or resize [400, 500, 600] -> random crop 384..600 -> multi-scale resize.
UPT's crop kept pairs whose human or object had left the crop (pointing at removed boxes); here
:func:`keep_entities` removes the entities and every pair or relation that references them, and
renumbers the rest.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageEnhance

# ImageNet statistics (the backbones' pretraining normalisation)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Target = Dict[str, torch.Tensor]


def _uniform(low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand(()).item())


def _randint(low: int, high: int) -> int:
    """Uniform integer in ``[low, high]`` (inclusive) from torch's RNG (seeded per DataLoader worker)."""
    return int(torch.randint(low, high + 1, ()).item())


def keep_entities(target: Target, keep: torch.Tensor) -> Target:
    """Keep the entities where ``keep`` is True; drop every pair/relation that references a removed one.

    Args:
        target: dict with ``boxes [N, 4]``, ``labels [N]``, optional ``hois [K, 3]``, ``relations [R, 3]``.
        keep: bool ``[N]``.
    Returns:
        a new target; indices in ``hois`` / ``relations`` renumbered to the kept entities.
    """
    keep = keep.bool()
    new_index = torch.full((len(keep),), -1, dtype=torch.int64)
    new_index[keep] = torch.arange(int(keep.sum()))
    out = dict(target)
    out["boxes"] = target["boxes"][keep]
    out["labels"] = target["labels"][keep]
    for key in ("hois", "relations"):
        if key in target and len(target[key]):
            rows = target[key]
            idx = new_index[rows[:, :2]]
            valid = (idx >= 0).all(1)
            out[key] = torch.cat([idx[valid], rows[valid, 2:]], 1)
    return out


def resize_target(target: Target, scale_w: float, scale_h: float) -> Target:
    """A copy of ``target`` with ``boxes [N, 4]`` xyxy scaled by ``(scale_w, scale_h)``."""
    out = dict(target)
    out["boxes"] = target["boxes"] * torch.tensor([scale_w, scale_h, scale_w, scale_h], dtype=torch.float32)
    return out


def resized_size(size: Tuple[int, int], shorter: int, max_size: Optional[int]) -> Tuple[int, int]:
    """Output ``(W, H)`` with the shorter side ``shorter`` and the longer side at most ``max_size``.

    As DETR ``get_size_with_aspect_ratio``, except that the reduced shorter side is
    ``floor(max_size * short / long)`` instead of ``round(...)``: DETR's rounding can give a long side
    a few pixels above ``max_size`` (e.g. 1000x200 -> 1335x267); flooring keeps it capped.
    """
    w, h = size
    short, long = min(w, h), max(w, h)
    if max_size is not None and long / short * shorter > max_size:
        shorter = max(1, int(max_size * short / long))
    if w <= h:
        return shorter, max(1, int(shorter * h / w))
    return max(1, int(shorter * w / h)), shorter


class Compose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


class RandomResize:
    """Resize so the shorter side is a random choice of ``scales``, longer side <= ``max_size``.

    Boxes scale by the exact image factors ``(W'/W, H'/H)``.
    """

    def __init__(self, scales: Sequence[int], max_size: Optional[int] = None):
        self.scales, self.max_size = list(scales), max_size

    def __call__(self, image: Image.Image, target: Target):
        shorter = self.scales[_randint(0, len(self.scales) - 1)]
        new_w, new_h = resized_size(image.size, shorter, self.max_size)
        w, h = image.size
        return image.resize((new_w, new_h), Image.BILINEAR), resize_target(target, new_w / w, new_h / h)


class RandomHorizontalFlip:
    """Mirror the image with probability ``p``: ``x1' = W - x2, x2' = W - x1``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image: Image.Image, target: Target):
        if torch.rand(()).item() >= self.p:
            return image, target
        return hflip(image, target)


def hflip(image: Image.Image, target: Target):
    """Mirror the image; ``boxes [N, 4]`` xyxy become ``(W - x2, y1, W - x1, y2)``."""
    w = image.size[0]
    out = dict(target)
    b = target["boxes"]
    out["boxes"] = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1) if len(b) else b
    return image.transpose(Image.FLIP_LEFT_RIGHT), out


class ColorJitter:
    """Random brightness, contrast and saturation factors in ``[1 - s, 1 + s]``, applied in random order."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4):
        self.ops = [(ImageEnhance.Brightness, brightness), (ImageEnhance.Contrast, contrast),
                    (ImageEnhance.Color, saturation)]

    def __call__(self, image: Image.Image, target: Target):
        for k in torch.randperm(len(self.ops)).tolist():
            enhancer, s = self.ops[k]
            if s > 0:
                image = enhancer(image).enhance(_uniform(max(0.0, 1 - s), 1 + s))
        return image, target


def crop(image: Image.Image, target: Target, region: Tuple[int, int, int, int]):
    """Crop ``region = (left, top, width, height)``; boxes are shifted and clipped to the crop.

    An entity whose clipped box has zero width or height is removed together with every pair and
    relation that references it (:func:`keep_entities`).
    """
    left, top, cw, ch = region
    b = target["boxes"] - torch.tensor([left, top, left, top], dtype=torch.float32)
    b = torch.stack([b[:, 0].clamp(0, cw), b[:, 1].clamp(0, ch), b[:, 2].clamp(0, cw), b[:, 3].clamp(0, ch)], 1) \
        if len(b) else b
    out = dict(target)
    out["boxes"] = b
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]) if len(b) else torch.zeros(0, dtype=torch.bool)
    return image.crop((left, top, left + cw, top + ch)), keep_entities(out, keep)


class RandomSizeCrop:
    """Crop a random region with sides in ``[min_size, min(side, max_size)]`` (DETR RandomSizeCrop)."""

    def __init__(self, min_size: int, max_size: int):
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, image: Image.Image, target: Target):
        w, h = image.size
        cw = _randint(min(w, self.min_size), min(w, self.max_size))
        ch = _randint(min(h, self.min_size), min(h, self.max_size))
        region = (_randint(0, w - cw), _randint(0, h - ch), cw, ch)
        return crop(image, target, region)


class RandomSelect:
    """Apply ``first`` with probability ``p``, else ``second``."""

    def __init__(self, first: Callable, second: Callable, p: float = 0.5):
        self.first, self.second, self.p = first, second, p

    def __call__(self, image, target):
        return (self.first if torch.rand(()).item() < self.p else self.second)(image, target)


class ToTensorNormalize:
    """PIL RGB image -> FloatTensor ``[3, H, W]``, ``(x / 255 - mean) / std``."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Image.Image, target: Target):
        arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1)
        return (x - self.mean) / self.std, target


def make_transforms(train: bool, scales: List[int], max_size: int, test_scale: int, hflip: bool = True,
                    color_jitter: float = 0.4, random_crop: bool = True,
                    crop_resize: Sequence[int] = (400, 500, 600), crop_size: Tuple[int, int] = (384, 600)) -> Compose:
    """UPT / DETR pipeline. Test time: resize the shorter side to ``test_scale`` (long side <= max_size).

    Args:
        scales: shorter-side choices of the multi-scale resize.
        crop_resize, crop_size: the crop branch's pre-resize choices and crop side range (DETR values,
            scaled down by the caller for small images).
    """
    if not train:
        return Compose([RandomResize([test_scale], max_size), ToTensorNormalize()])
    ops: List[Callable] = []
    if hflip:
        ops.append(RandomHorizontalFlip(0.5))
    if color_jitter > 0:
        ops.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    resize = RandomResize(scales, max_size)
    if random_crop:
        ops.append(RandomSelect(resize, Compose([RandomResize(list(crop_resize)), RandomSizeCrop(*crop_size),
                                                 RandomResize(scales, max_size)])))
    else:
        ops.append(resize)
    ops.append(ToTensorNormalize())
    return Compose(ops)
