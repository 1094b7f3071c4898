"""SynthHOI objects: shapes, colours and the named anchor points the rules measure.

Each maker returns a :class:`Thing` (an entity that is not a person). ``anchors`` hold the
functional geometry used by rules.py: ``top`` / ``seat`` surfaces ``(x0, x1, y)``, ``handle`` and
``handlebar`` points, and for a kite the ``string_end`` (the lower end of its string, when drawn).
``loose`` primitives (a kite string) are drawn but are not part of the entity's box.
Sizes are in pixels; the planner derives them from the person scale.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .canvas import Color, Prim, disc, jitter_color, limb
from .classes import OBJ

BASE_COLORS: Dict[str, List[Color]] = {
    "ball": [(230, 60, 40), (250, 200, 30), (60, 160, 60), (240, 240, 240), (230, 120, 30)],
    "bicycle": [(200, 30, 30), (30, 30, 30), (30, 90, 200), (20, 140, 90)],
    "book": [(150, 40, 40), (30, 60, 140), (40, 110, 50), (200, 150, 40)],
    "box": [(180, 130, 80), (150, 100, 60), (200, 170, 120)],
    "chair": [(120, 70, 30), (90, 90, 100), (180, 50, 50), (40, 40, 40)],
    "cup": [(240, 240, 240), (200, 40, 40), (40, 90, 190), (230, 200, 60)],
    "kite": [(220, 30, 60), (250, 180, 0), (30, 160, 220), (150, 60, 200)],
    "table": [(140, 90, 50), (100, 70, 40), (200, 200, 200)],
    "umbrella": [(30, 30, 30), (200, 30, 40), (30, 60, 180), (240, 200, 20), (100, 40, 140)],
}


@dataclass
class Thing:
    """A drawn object.

    Attributes:
        name: class name (key of classes.OBJ).
        prims: primitives that make up the object (its box).
        anchors: functional geometry for the rules (see module docstring).
        loose: primitives drawn with the object but outside its box (kite string).
    """

    name: str
    prims: List[Prim]
    anchors: Dict[str, Sequence[float]] = field(default_factory=dict)
    loose: List[Prim] = field(default_factory=list)

    @property
    def label(self) -> int:
        return OBJ[self.name]

    def move(self, dx: float, dy: float) -> None:
        for p in self.prims + self.loose:
            p.pts = [v + (dx if i % 2 == 0 else dy) for i, v in enumerate(p.pts)]
        for k, a in self.anchors.items():
            a = list(a)
            if len(a) == 2:    # point
                self.anchors[k] = (a[0] + dx, a[1] + dy)
            else:              # surface (x0, x1, y)
                self.anchors[k] = (a[0] + dx, a[1] + dx, a[2] + dy)


def _color(rng, name):
    base = BASE_COLORS[name]
    return jitter_color(rng, base[int(rng.integers(len(base)))], 30)


def ball(rng, center, r) -> Thing:
    c = _color(rng, "ball")
    stripe = jitter_color(rng, (30, 30, 30), 20)
    cx, cy = center
    return Thing("ball", [disc(center, r, c), Prim("line", [cx - 0.7 * r, cy - 0.5 * r, cx + 0.7 * r, cy + 0.5 * r],
                                                    stripe, max(1.0, r / 4))])


def cup(rng, center, h) -> Thing:
    """A cup centred at ``center`` (body height ``h``), handle on a random side."""
    c = _color(rng, "cup")
    cx, cy = center
    w = 0.8 * h
    side = 1 if rng.random() < 0.5 else -1
    body = Prim("poly", [cx - w / 2, cy - h / 2, cx + w / 2, cy - h / 2, cx + 0.35 * w, cy + h / 2,
                         cx - 0.35 * w, cy + h / 2], c)
    hx = cx + side * (w / 2 + 0.15 * h)
    handle = Prim("ring", [hx - 0.2 * h, cy - 0.25 * h, hx + 0.2 * h, cy + 0.15 * h], c, max(1.0, 0.1 * h))
    return Thing("cup", [handle, body], {"top": (cx - w / 2, cx + w / 2, cy - h / 2)})


def book(rng, center, w, h) -> Thing:
    c = _color(rng, "book")
    cx, cy = center
    pages = Prim("rect", [cx - w / 2 + 0.12 * w, cy - h / 2 + 0.08 * h, cx + w / 2, cy + h / 2 - 0.08 * h],
                 (245, 240, 225))
    cover = Prim("rect", [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], c)
    spine = Prim("line", [cx - w / 2 + 0.06 * w, cy - h / 2, cx - w / 2 + 0.06 * w, cy + h / 2], (20, 20, 20),
                 max(1.0, 0.05 * w))
    return Thing("book", [cover, pages, spine], {"top": (cx - w / 2, cx + w / 2, cy - h / 2)})


def box(rng, x, bottom, w, h) -> Thing:
    """A cardboard box standing on ``bottom`` (image y), centred at ``x``."""
    c = _color(rng, "box")
    dark = tuple(int(v * 0.7) for v in c)
    x0, x1, y0 = x - w / 2, x + w / 2, bottom - h
    return Thing("box", [Prim("rect", [x0, y0, x1, bottom], c),
                         Prim("line", [x, y0, x, bottom], dark, max(1.0, 0.06 * w)),
                         Prim("line", [x0, y0 + 0.15 * h, x1, y0 + 0.15 * h], dark, max(1.0, 0.04 * h))],
                 {"top": (x0, x1, y0)})


def chair(rng, x, bottom, size, back_side: int) -> Thing:
    """A side-view chair: seat at 0.45 size, backrest on ``back_side`` (+1 right, -1 left)."""
    c = _color(rng, "chair")
    w, seat_y = 0.45 * size, bottom - 0.45 * size
    t = max(1.5, 0.05 * size)
    x0, x1 = x - w / 2, x + w / 2
    xb = x1 if back_side > 0 else x0
    prims = [Prim("rect", [x0, seat_y - t, x1, seat_y + t], c)]
    prims += limb((x0 + t, seat_y), (x0 + t, bottom - t / 2), t * 1.2, c)
    prims += limb((x1 - t, seat_y), (x1 - t, bottom - t / 2), t * 1.2, c)
    prims += limb((xb - back_side * t, seat_y), (xb - back_side * t, seat_y - 0.5 * size), t * 1.4, c)
    return Thing("chair", prims, {"seat": (x0, x1, seat_y - t), "top": (x0, x1, seat_y - t)})


def table(rng, x, bottom, w, h) -> Thing:
    c = _color(rng, "table")
    t = max(2.0, 0.1 * h)
    x0, x1, y0 = x - w / 2, x + w / 2, bottom - h
    prims = [Prim("rect", [x0, y0, x1, y0 + t], c)]
    prims += limb((x0 + 0.12 * w, y0 + t), (x0 + 0.12 * w, bottom - t / 3), t * 0.7, c)
    prims += limb((x1 - 0.12 * w, y0 + t), (x1 - 0.12 * w, bottom - t / 3), t * 0.7, c)
    return Thing("table", prims, {"top": (x0, x1, y0), "seat": (x0, x1, y0)})


def bicycle(rng, x, bottom, size, facing: int) -> Thing:
    """Side-view bicycle of wheelbase ``0.6 size`` facing ``facing``; anchors: seat, handlebar."""
    c = _color(rng, "bicycle")
    r = 0.19 * size
    t = max(1.0, 0.035 * size)
    fx, bx = x + facing * 0.3 * size, x - facing * 0.3 * size  # front / back wheel centres
    wy = bottom - r - t / 2
    crank = np.array([x, wy])
    seat = np.array([x - facing * 0.08 * size, wy - 0.42 * size])
    bar = np.array([fx - facing * 0.06 * size, wy - 0.46 * size])
    prims = [Prim("ring", [fx - r, wy - r, fx + r, wy + r], (25, 25, 25), 2 * t),
             Prim("ring", [bx - r, wy - r, bx + r, wy + r], (25, 25, 25), 2 * t)]
    prims += limb((bx, wy), crank, t, c) + limb(crank, seat, t, c) + limb(seat, (bx, wy), t, c)
    prims += limb(crank, bar + (0, 0.08 * size), t, c) + limb(seat + (0, 0.04 * size), bar + (0, 0.08 * size), t, c)
    prims += limb(bar, (fx, wy), t, c)
    prims += limb(seat - (0.06 * size, 0), seat + (0.06 * size, 0), 1.8 * t, (20, 20, 20))
    prims += limb(bar, bar + (facing * 0.05 * size, -0.02 * size), 1.5 * t, (20, 20, 20))
    s = 0.07 * size
    return Thing("bicycle", prims, {"seat": (seat[0] - s, seat[0] + s, seat[1] - 0.9 * t), "handlebar": tuple(bar)})


def kite(rng, center, size, string_to: Optional[Sequence[float]] = None) -> Thing:
    """A diamond kite with a zig-zag tail; a string to ``string_to`` when given (loose primitive)."""
    c = _color(rng, "kite")
    cx, cy = center
    w, h = 0.6 * size, size
    top, left, right, low = (cx, cy - 0.4 * h), (cx - w / 2, cy - 0.1 * h), (cx + w / 2, cy - 0.1 * h), (cx, cy + 0.6 * h)
    prims = [Prim("poly", [*top, *right, *low, *left], c),
             Prim("line", [*top, *low], (30, 30, 30), max(1.0, 0.03 * size)),
             Prim("line", [*left, *right], (30, 30, 30), max(1.0, 0.03 * size))]
    tail, y, k = [low[0], low[1]], low[1], 1
    for _ in range(4):
        y += 0.12 * h
        tail += [cx + k * 0.08 * size, y]
        k = -k
    prims.append(Prim("line", tail, jitter_color(rng, (240, 240, 240), 15), max(1.0, 0.025 * size)))
    anchors, loose = {"bridle": low}, []
    if string_to is not None:
        loose = [Prim("line", [*low, *string_to], (60, 60, 60), 1.0)]
        anchors["string_end"] = tuple(string_to)
    return Thing("kite", prims, anchors, loose)


def umbrella(rng, handle, size, facing: int) -> Thing:
    """An open umbrella whose handle is at ``handle``; the canopy is ``size`` wide, above it."""
    c = _color(rng, "umbrella")
    hx, hy = handle
    shaft_top = (hx, hy - 0.6 * size)
    t = max(1.0, 0.03 * size)
    prims = [Prim("chord", [hx - size / 2, shaft_top[1] - 0.3 * size, hx + size / 2, shaft_top[1] + 0.3 * size], c)]
    prims += limb(shaft_top, (hx, hy), t, (60, 60, 60))
    prims += limb((hx, hy), (hx - facing * 0.06 * size, hy + 0.04 * size), t, (60, 60, 60))
    return Thing("umbrella", prims, {"handle": (hx, hy), "canopy": (hx - size / 2, hx + size / 2, shaft_top[1] + 0.3 * size)})
