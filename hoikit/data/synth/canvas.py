"""Drawing primitives, exact tight boxes, textured backgrounds and clutter for SynthHOI.

Every entity (person or object) is a list of :class:`Prim` drawn with PIL ``ImageDraw``. Its box is
measured, not guessed: the entity's primitives are drawn alone into a small mask and the mask's
bounding box is the tight (amodal) box of what is drawn, in continuous pixel coordinates
``(x1, y1, x2, y2)`` where a drawn pixel ``i`` covers ``[i, i + 1)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

Color = Tuple[int, int, int]


@dataclass
class Prim:
    """One drawing primitive.

    Attributes:
        kind: "line" (polyline, ``width``), "disc" (ellipse in box ``pts = [x0, y0, x1, y1]``),
            "ring" (ellipse outline of ``width``), "poly" (filled polygon), "rect" (filled box),
            "chord" (upper half-ellipse filled, box ``pts``).
        pts: flat list of coordinates.
        color: fill / stroke colour.
        width: stroke width in pixels (lines, rings).
    """

    kind: str
    pts: Sequence[float]
    color: Color
    width: float = 1.0

    def extent(self) -> Tuple[float, float, float, float]:
        """Conservative xyxy extent of the primitive (used to size the measuring mask)."""
        xs, ys = self.pts[0::2], self.pts[1::2]
        pad = self.width / 2 + 2 if self.kind in ("line", "ring") else 2
        return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad


def limb(p: Sequence[float], q: Sequence[float], width: float, color: Color) -> List[Prim]:
    """A thick segment with round caps: a line plus a disc of the line's width at each end."""
    r = width / 2
    return [Prim("line", [p[0], p[1], q[0], q[1]], color, width),
            Prim("disc", [p[0] - r, p[1] - r, p[0] + r, p[1] + r], color),
            Prim("disc", [q[0] - r, q[1] - r, q[0] + r, q[1] + r], color)]


def disc(c: Sequence[float], r: float, color: Color) -> Prim:
    return Prim("disc", [c[0] - r, c[1] - r, c[0] + r, c[1] + r], color)


def draw_prims(draw: ImageDraw.ImageDraw, prims: Sequence[Prim], dx: float = 0.0, dy: float = 0.0,
               mono: Optional[int] = None) -> None:
    """Draw primitives shifted by ``(dx, dy)``; ``mono`` replaces every colour (mask drawing)."""
    for p in prims:
        pts = [v + (dx if i % 2 == 0 else dy) for i, v in enumerate(p.pts)]
        col = p.color if mono is None else mono
        w = max(1, int(round(p.width)))
        if p.kind == "line":
            draw.line(pts, fill=col, width=w)
        elif p.kind == "disc":
            draw.ellipse(_box(pts), fill=col)
        elif p.kind == "ring":
            draw.ellipse(_box(pts), outline=col, width=w)
        elif p.kind == "poly":
            draw.polygon(pts, fill=col)
        elif p.kind == "rect":
            draw.rectangle(_box(pts), fill=col)
        elif p.kind == "chord":
            draw.chord(_box(pts), 180, 360, fill=col)
        else:
            raise ValueError(f"unknown primitive kind {p.kind!r}")


def _box(pts):
    x0, y0, x1, y1 = pts
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


def tight_box(prims: Sequence[Prim], width: int, height: int) -> Optional[Tuple[int, int, int, int]]:
    """Tight box of the pixels the primitives cover inside a ``width x height`` image.

    Returns:
        ``(x1, y1, x2, y2)`` integer continuous-pixel box (x2, y2 exclusive), or None when nothing
        of the entity is inside the image.
    """
    ext = np.array([p.extent() for p in prims])
    x0 = max(int(np.floor(ext[:, 0].min())), 0)
    y0 = max(int(np.floor(ext[:, 1].min())), 0)
    x1 = min(int(np.ceil(ext[:, 2].max())) + 1, width)
    y1 = min(int(np.ceil(ext[:, 3].max())) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw_prims(ImageDraw.Draw(mask), prims, -x0, -y0, mono=255)
    bb = mask.getbbox()
    if bb is None:
        return None
    return bb[0] + x0, bb[1] + y0, bb[2] + x0, bb[3] + y0


def jitter_color(rng: np.random.Generator, base: Color, amount: int = 40) -> Color:
    """``base`` with independent uniform noise of +-amount per channel (colour variation)."""
    c = np.clip(np.asarray(base) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return int(c[0]), int(c[1]), int(c[2])


def random_color(rng: np.random.Generator, lo: int = 30, hi: int = 230) -> Color:
    c = rng.integers(lo, hi, 3)
    return int(c[0]), int(c[1]), int(c[2])


def background(rng: np.random.Generator, width: int, height: int, horizon: float) -> Image.Image:
    """Sky above ``horizon`` (pixel row), textured ground below: gradient + one of stripes,
    checks, blotches or plain noise, with random colours.

    Returns:
        RGB image ``height x width``.
    """
    ys = np.arange(height, dtype=np.float32)[:, None]   # [H, 1]
    xs = np.arange(width, dtype=np.float32)[None, :]    # [1, W]
    sky_top, sky_bottom = np.array(random_color(rng, 120, 250)), np.array(random_color(rng, 150, 255))
    t = np.clip(ys / max(horizon, 1.0), 0, 1)[..., None]                 # [H, 1, 1]
    sky = (sky_top * (1 - t) + sky_bottom * t).astype(np.float32)      # [H, 1, 3]
    g0, g1 = np.array(random_color(rng, 40, 200)), np.array(random_color(rng, 40, 200))
    kind = int(rng.integers(4))
    period = float(rng.uniform(6, 24)) * max(width, height) / 256
    if kind == 0:    # stripes at a random angle
        a = rng.uniform(0, np.pi)
        m = np.sin((xs * np.cos(a) + ys * np.sin(a)) * (2 * np.pi / period)) > 0
    elif kind == 1:  # checks
        m = ((np.floor(xs / period) + np.floor(ys / period)) % 2) > 0
    elif kind == 2:  # blotches: a product of two random sinusoids
        f = rng.uniform(0.5, 2.0, 2) * 2 * np.pi / (period * 3)
        m = np.sin(xs * f[0] + rng.uniform(0, 6.3)) * np.sin(ys * f[1] + rng.uniform(0, 6.3)) > 0
    else:            # plain
        m = np.zeros((1, 1), bool)
    ground = np.where(m[..., None], g1, g0).astype(np.float32)          # [H or 1, W or 1, 3]
    img = np.where((ys >= horizon)[..., None], ground, sky)
    img = np.broadcast_to(img, (height, width, 3)) + rng.standard_normal((height, width, 3), dtype=np.float32) * 8
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def clutter(rng: np.random.Generator, width: int, height: int, n: int, scale: float) -> List[Prim]:
    """``n`` unannotated distractor shapes (polygons, rings, sticks) of size ~``scale`` pixels."""
    out: List[Prim] = []
    for _ in range(n):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        s = scale * rng.uniform(0.3, 1.0)
        col = random_color(rng)
        kind = int(rng.integers(3))
        if kind == 0:
            k = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = s * rng.uniform(0.4, 1.0, k)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).ravel().tolist()
            out.append(Prim("poly", pts, col))
        elif kind == 1:
            out.append(Prim("ring", [cx - s, cy - s * 0.6, cx + s, cy + s * 0.6], col, max(1.0, s / 6)))
        else:
            a = rng.uniform(0, np.pi)
            out.append(Prim("line", [cx, cy, cx + s * 1.5 * np.cos(a), cy + s * 1.5 * np.sin(a)], col, max(1.0, s / 5)))
    return out
