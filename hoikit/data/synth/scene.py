"""One SynthHOI image: plan, draw, measure boxes, label.

    image, labels = make_image(seed=0, split="train", index=7, size=256)

The image depends only on ``(seed, split, index, size)``: each image has its own random generator
seeded with ``numpy.random.SeedSequence([seed, split_code, index])``.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .canvas import background, draw_prims, tight_box
from .planner import Scene, plan_scene
from .rules import Labels, label_scene

SPLIT_CODE = {"train": 0, "test": 1}
MIN_BOX = 3          # entities whose visible box is thinner than this (pixels) are dropped
PORTRAIT_P = 0.2     # chance of a portrait image (otherwise landscape or square)
ASPECT = (0.7, 1.0)  # short side / long side


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODE[split], int(index)]))


def _measure(scene: Scene) -> Tuple[Scene, np.ndarray]:
    """Tight boxes of every entity; drop entities (almost) outside the image."""
    W, H = scene.width, scene.height
    keep_p, keep_t, boxes, depth = [], [], [], []
    n_p = len(scene.persons)
    for k, ent in enumerate(scene.persons + scene.things):
        bb = tight_box(ent.prims(), W, H) if k < n_p else tight_box(ent.prims, W, H)
        if bb is None or bb[2] - bb[0] < MIN_BOX or bb[3] - bb[1] < MIN_BOX:
            continue
        (keep_p if k < n_p else keep_t).append((ent, bb, scene.depth[k]))
    scene.persons = [e for e, _, _ in keep_p]
    scene.things = [e for e, _, _ in keep_t]
    scene.depth = [d for _, _, d in keep_p + keep_t]
    boxes = np.array([b for _, b, _ in keep_p + keep_t], dtype=np.int64).reshape(-1, 4)
    return scene, boxes


def render(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Draw background, back clutter, entities far to near, foreground occluders."""
    img = background(rng, scene.width, scene.height, scene.horizon)
    draw = ImageDraw.Draw(img)
    draw_prims(draw, scene.back)
    ents: List = scene.persons + scene.things
    order = sorted(range(len(ents)), key=lambda k: (scene.depth[k], k))
    for k in order:
        e = ents[k]
        if k < len(scene.persons):
            draw_prims(draw, e.prims())
        else:
            draw_prims(draw, e.prims)
            draw_prims(draw, e.loose)
    draw_prims(draw, scene.front)
    return img


def image_size(rng: np.random.Generator, size: int) -> Tuple[int, int]:
    """``(W, H)`` with long side ``size``."""
    short = int(round(size * rng.uniform(*ASPECT)))
    return (short, size) if rng.random() < PORTRAIT_P else (size, short)


def make_image(seed: int, split: str, index: int, size: int) -> Tuple[Image.Image, Labels, Scene]:
    """Generate one image with its labels.

    Returns:
        (RGB image, Labels with boxes ``[N, 4]`` int continuous xyxy, the measured Scene)
    """
    rng = image_rng(seed, split, index)
    W, H = image_size(rng, size)
    scene = plan_scene(rng, W, H, split)
    scene, boxes = _measure(scene)
    labels = label_scene(scene.persons, scene.things, boxes, scene.depth, H)
    return render(scene, rng), labels, scene
