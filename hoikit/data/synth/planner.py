"""Scene planning: how many people and objects, their intents, poses and placements.

The planner only *tries* to stage interactions; rules.py labels what ends up drawn. Every random
choice comes from the image's own ``numpy.random.Generator`` so a scene depends only on
``(seed, split, index)``, never on worker scheduling.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from . import objects as O
from .canvas import Prim, clutter, jitter_color, random_color
from .classes import GAZE_AT_OBJECT, INTENTS, Intent, intent_weights
from .figures import FOREARM, SKIN, UPPER_ARM, Person, Pose, stand_on_ground

N_PEOPLE_P = np.array([0.35, 0.3, 0.2, 0.15])  # P(1..4 people)
MAX_OBJECTS = 6
FREE_OBJECT_P = 0.6          # chance of each extra (non-intent) object while below MAX_OBJECTS
ON_SUPPORT_P = 0.35          # chance a free small object is put on a table or box top
FRONT_CLUTTER_P = 0.25       # chance of foreground bushes that occlude legs
_WEIGHTS = {split: np.array(intent_weights(split)) for split in ("train", "test")}


@dataclass
class Scene:
    """A planned image: entities (people first, then things) with draw depths, plus clutter."""

    width: int
    height: int
    horizon: float
    persons: List[Person] = field(default_factory=list)
    things: List[O.Thing] = field(default_factory=list)
    depth: List[float] = field(default_factory=list)     # per entity, larger = nearer (drawn later)
    intents: List[Intent] = field(default_factory=list)  # per person (for statistics only)
    back: List[Prim] = field(default_factory=list)
    front: List[Prim] = field(default_factory=list)


def ik_arm(shoulder, target, h: float, facing: int):
    """Two-link inverse kinematics: ``(shoulder, elbow)`` angles that put the wrist on ``target``
    (or as close as the arm reaches), elbow bending forward-down."""
    l1, l2 = UPPER_ARM * h, FOREARM * h
    d = np.asarray(target, float) - np.asarray(shoulder, float)
    dist = float(np.clip(np.hypot(*d), 1e-6, (l1 + l2) * 0.999))
    base = np.degrees(np.arctan2(facing * d[0], d[1]))  # figure-frame angle of the shoulder->target line
    cos_in = np.clip((l1 ** 2 + dist ** 2 - l2 ** 2) / (2 * l1 * dist), -1, 1)
    a1 = np.degrees(np.arccos(cos_in))
    cos_el = np.clip((l1 ** 2 + l2 ** 2 - dist ** 2) / (2 * l1 * l2), -1, 1)
    return base - a1, 180.0 - np.degrees(np.arccos(cos_el))


def aim_gaze(person: Person, point) -> None:
    """Turn the head so the gaze ray passes through ``point``."""
    d = np.asarray(point, float) - person.keypoints()["head"]
    person.set_pose(gaze_facing=1 if d[0] >= 0 else -1,
                    gaze_pitch=float(np.clip(np.degrees(np.arctan2(d[1], abs(d[0]) + 1e-6)), -80, 80)))


def _legs_stand(rng):
    return [(rng.uniform(-4, 4), 0.0), (rng.uniform(-4, 4), 0.0)]


def _legs_walk(rng):
    return [(rng.uniform(18, 28), rng.uniform(0, 15)), (-rng.uniform(18, 28), rng.uniform(0, 10))]


def _arms_rest(rng):
    return [(rng.uniform(-25, 25), rng.uniform(0, 30)), (rng.uniform(-25, 25), rng.uniform(0, 30))]


@dataclass
class _Staging:
    """One person being posed for an intent: what every per-intent function reads."""

    rng: np.random.Generator
    person: Person
    obj: str        # the intent's object class ("" for idle)
    x: float        # image x of the person's slot
    ground: float   # image y of the ground line under the person
    h: float        # figure scale in pixels
    f: int          # facing: 1 right, -1 left

    def kp(self):
        """The person's keypoints after the latest pose change."""
        return self.person.keypoints()


# every per-intent function returns (thing or None, thing depth offset relative to the person)
DEFAULT_OFFSET = 0.01  # the object just in front of its person
# intents posed from a person standing at the slot (others place an object first or stand later)
STAND_FIRST = ("hold", "throw", "drink_with", "read", "fly", "carry", "push", "look_at", "next_to", "idle")


def _stage_hold(s: _Staging):
    rng, p, h, f = s.rng, s.person, s.h, s.f
    p.set_pose(arms=[(rng.uniform(20, 75), rng.uniform(0, 50)), p.pose.arms[1]])
    w = s.kp()["wrist0"]
    thing = None
    if s.obj == "umbrella":
        p.set_pose(arms=[(rng.uniform(70, 110), rng.uniform(40, 80)), p.pose.arms[1]])
        thing = O.umbrella(rng, s.kp()["wrist0"], 0.6 * h, f)
    elif s.obj == "ball":
        r = 0.07 * h
        thing = O.ball(rng, w + (f * 0.5 * r, 0.4 * r), r)
    elif s.obj == "cup":
        thing = O.cup(rng, w + (f * 0.02 * h, 0.0), 0.09 * h)
    elif s.obj == "book":
        thing = O.book(rng, w + (f * 0.05 * h, 0.02 * h), 0.16 * h, 0.12 * h)
    elif s.obj == "box":
        bw = 0.26 * h
        thing = O.box(rng, w[0] + f * 0.08 * h, w[1] + 0.5 * bw, bw, 0.8 * bw)
    elif s.obj == "kite":
        thing = O.kite(rng, w + (f * 0.04 * h, -0.08 * h), 0.22 * h)
    return thing, DEFAULT_OFFSET


def _stage_throw(s: _Staging):
    rng, h = s.rng, s.h
    s.person.set_pose(arms=[(rng.uniform(150, 200), rng.uniform(-10, 30)), (rng.uniform(40, 80), rng.uniform(0, 20))],
                      legs=_legs_walk(rng))
    stand_on_ground(s.person, s.x, s.ground)
    k = s.kp()
    d = k["wrist0"] - k["elbow0"]
    d /= np.linalg.norm(d)
    size = 0.07 * h if s.obj == "ball" else 0.08 * h
    c = k["wrist0"] + d * (size + rng.uniform(0.1, 0.25) * h)
    thing = O.ball(rng, c, size) if s.obj == "ball" else O.book(rng, c, 2 * size, 1.5 * size)
    return thing, DEFAULT_OFFSET


def _stage_foot(s: _Staging, kick: bool):
    """``kick`` (the object at the raised toe) or ``next_to`` (on the ground, a gap in front)."""
    rng, h, f, ground = s.rng, s.h, s.f, s.ground
    if kick:
        s.person.set_pose(legs=[(rng.uniform(40, 70), rng.uniform(0, 20)), (rng.uniform(-12, -2), 0.0)])
    else:
        s.person.set_pose(legs=_legs_stand(rng))
    stand_on_ground(s.person, s.x, ground)
    toe = s.kp()["toe0"]
    gap = 0.0 if kick else rng.uniform(0.08, 0.25) * h
    if s.obj == "ball":
        r = 0.07 * h
        cy = toe[1] if kick else ground - r
        return O.ball(rng, (toe[0] + f * (0.6 * r + gap), cy), r), DEFAULT_OFFSET
    bw = 0.24 * h
    return O.box(rng, toe[0] + f * (bw / 2 - 0.01 * h + gap), ground, bw, 0.8 * bw), -0.01


def _stage_kick(s: _Staging):
    return _stage_foot(s, kick=True)


def _stage_next_to(s: _Staging):
    return _stage_foot(s, kick=False)


def _stage_sit_on(s: _Staging):
    rng, p, h, f, x = s.rng, s.person, s.h, s.f, s.x
    if s.obj == "chair":
        thing = O.chair(rng, x, s.ground, 0.55 * h, -f)
    elif s.obj == "box":
        thing = O.box(rng, x, s.ground, 0.3 * h, 0.25 * h)
    else:
        thing = O.table(rng, x, s.ground, 0.5 * h, 0.38 * h)
    x0, x1, sy = thing.anchors.get("seat", thing.anchors["top"])
    p.set_pose(legs=[(rng.uniform(75, 100), rng.uniform(70, 100)) for _ in range(2)], lean=rng.uniform(-5, 10))
    p.move(x - f * 0.1 * (x1 - x0) - p.hip[0], sy - 0.025 * h - p.hip[1])
    return thing, -0.01


def _stage_ride(s: _Staging):
    rng, p, h, f = s.rng, s.person, s.h, s.f
    thing = O.bicycle(rng, s.x, s.ground, 0.9 * h, f)
    x0, x1, sy = thing.anchors["seat"]
    p.set_pose(legs=[(rng.uniform(40, 60), rng.uniform(50, 80)), (rng.uniform(25, 45), rng.uniform(30, 60))],
               lean=rng.uniform(15, 30))
    p.move((x0 + x1) / 2 - p.hip[0], sy - 0.025 * h - p.hip[1])
    bar = thing.anchors["handlebar"]
    p.set_pose(arms=[ik_arm(s.kp()["shoulder"], bar, h, f), ik_arm(s.kp()["shoulder"], bar, h, f)])
    return thing, -0.01


def _stage_carry(s: _Staging):
    rng, h, f = s.rng, s.h, s.f
    s.person.set_pose(arms=[(rng.uniform(160, 178), rng.uniform(-8, 8)), (rng.uniform(160, 178), rng.uniform(-8, 8))])
    k = s.kp()
    top = min(k["wrist0"][1], k["wrist1"][1]) + 0.02 * h
    cx = (k["wrist0"][0] + k["wrist1"][0]) / 2
    if s.obj == "box":
        thing = O.box(rng, cx, top, 0.3 * h, 0.22 * h)
    elif s.obj == "chair":
        thing = O.chair(rng, cx, top + 0.02 * h, 0.45 * h, -f)
    else:
        thing = O.ball(rng, (cx, top - 0.09 * h), 0.1 * h)
    return thing, DEFAULT_OFFSET


def _stage_push(s: _Staging):
    rng, h, f, ground = s.rng, s.h, s.f, s.ground
    s.person.set_pose(lean=rng.uniform(10, 25), legs=_legs_walk(rng))
    stand_on_ground(s.person, s.x, ground)
    sh = s.kp()["shoulder"]
    near = sh[0] + f * rng.uniform(0.17, 0.22) * h   # where the hands meet the object
    if s.obj == "bicycle":
        thing = O.bicycle(rng, 0, ground, 0.9 * h, f)
        thing.move(near - thing.anchors["handlebar"][0], 0)
        targets = [np.asarray(thing.anchors["handlebar"])] * 2
    elif s.obj == "chair":  # hands on the top of the backrest, which faces the person
        size = rng.uniform(0.5, 0.6) * h
        t = max(1.5, 0.05 * size)
        thing = O.chair(rng, near - f * 1.4 * t + f * 0.225 * size, ground, size, -f)
        top = ground - 0.45 * size - 0.5 * size
        targets = [np.array([near, top]), np.array([near, top + 0.02 * h])]
    else:                 # a crate about as tall as the shoulders, hands at chest height
        bh = ground - sh[1] + rng.uniform(0.0, 0.06) * h
        thing = O.box(rng, near + f * 0.2 * h, ground, 0.4 * h, bh)
        targets = [np.array([near, sh[1] + 0.05 * h]), np.array([near, sh[1] + 0.09 * h])]
    s.person.set_pose(arms=[ik_arm(sh, targets[0], h, f), ik_arm(sh, targets[1], h, f)])
    return thing, DEFAULT_OFFSET


def _stage_drink_with(s: _Staging):
    rng, p, h, f = s.rng, s.person, s.h, s.f
    k = s.kp()
    p.set_pose(arms=[ik_arm(k["shoulder"], k["mouth"] + (f * 0.05 * h, 0.03 * h), h, f), p.pose.arms[1]],
               gaze_facing=f, gaze_pitch=rng.uniform(-15, 10))
    return O.cup(rng, s.kp()["wrist0"] + (f * 0.02 * h, -0.02 * h), 0.09 * h), DEFAULT_OFFSET


def _stage_read(s: _Staging):
    h, f = s.h, s.f
    k = s.kp()
    target = k["head"] + (f * 0.2 * h, 0.12 * h)
    s.person.set_pose(arms=[ik_arm(k["shoulder"], target, h, f), ik_arm(k["shoulder"], target + (0, 0.02 * h), h, f)])
    return O.book(s.rng, target + (f * 0.03 * h, 0), 0.16 * h, 0.12 * h), DEFAULT_OFFSET


def _stage_fly(s: _Staging):
    rng, p, h, f = s.rng, s.person, s.h, s.f
    p.set_pose(arms=[(rng.uniform(110, 160), rng.uniform(0, 20)), p.pose.arms[1]])
    w = s.kp()["wrist0"]
    size = 0.2 * h
    c = w + (f * rng.uniform(0.3, 0.7) * h, -rng.uniform(0.45, 0.8) * h)
    c[1] = max(min(c[1], p.head_top() - 1.15 * size), 0.45 * size)  # above the head, inside the image
    return O.kite(rng, c, size, string_to=w), DEFAULT_OFFSET


def _stage_stand_on(s: _Staging):
    rng, h, f, x = s.rng, s.h, s.f, s.x
    if s.obj == "box":
        thing = O.box(rng, x, s.ground, 0.35 * h, 0.22 * h)
    elif s.obj == "table":
        thing = O.table(rng, x, s.ground, 0.5 * h, 0.3 * h)
    else:
        thing = O.chair(rng, x, s.ground, 0.5 * h, -f)
    s.person.set_pose(legs=_legs_stand(rng), arms=[(rng.uniform(30, 100), rng.uniform(0, 20)) for _ in range(2)])
    stand_on_ground(s.person, x, thing.anchors["top"][2])
    return thing, -0.01


def _stage_look_at(s: _Staging):
    rng, h, f, ground = s.rng, s.h, s.f, s.ground
    dx = f * rng.uniform(0.35, 0.8) * h
    thing = {"bicycle": lambda: O.bicycle(rng, s.x + dx, ground, 0.9 * h, -f if rng.random() < 0.5 else f),
             "table": lambda: O.table(rng, s.x + dx, ground, 0.5 * h, 0.38 * h),
             "chair": lambda: O.chair(rng, s.x + dx, ground, 0.55 * h, f)}[s.obj]()
    return thing, -0.02


def _stage_idle(s: _Staging):
    return None, DEFAULT_OFFSET


# intent name -> its staging function (every name of classes.INTENTS, plus "idle")
STAGING = {"hold": _stage_hold, "throw": _stage_throw, "kick": _stage_kick, "next_to": _stage_next_to,
           "sit_on": _stage_sit_on, "ride": _stage_ride, "carry": _stage_carry, "push": _stage_push,
           "drink_with": _stage_drink_with, "read": _stage_read, "fly": _stage_fly, "stand_on": _stage_stand_on,
           "look_at": _stage_look_at, "idle": _stage_idle}


def stage(rng, intent: Intent, x: float, ground: float, h: float, W: int, H: int):
    """Pose one person for ``intent`` at ``(x, ground)`` with scale ``h``.

    Returns:
        (person, thing or None, thing depth offset relative to the person: + in front, - behind)
    """
    f = 1 if rng.random() < 0.5 else -1
    pose = Pose(facing=f, arms=_arms_rest(rng), legs=_legs_stand(rng) if rng.random() < 0.6 else _legs_walk(rng),
                gaze_facing=f if rng.random() < 0.7 else -f, gaze_pitch=rng.uniform(-30, 40), kind=intent.name)
    p = Person(np.array([x, 0.0]), h, pose, skin=jitter_color(rng, SKIN[int(rng.integers(len(SKIN)))], 10),
               shirt=random_color(rng), pants=random_color(rng, 20, 160))
    if intent.name in STAND_FIRST:
        stand_on_ground(p, x, ground)
    thing, off = STAGING[intent.name](_Staging(rng, p, intent.obj, x, ground, h, f))
    if thing is not None and rng.random() < GAZE_AT_OBJECT.get(intent.name, 0.0):
        pts = np.array([v for pr in thing.prims for v in zip(pr.pts[0::2], pr.pts[1::2])])
        aim_gaze(p, (pts.min(0) + pts.max(0)) / 2)
    return p, thing, off


def free_object(rng, name: str, x: float, ground: float, h: float, H: int) -> O.Thing:
    """An object nobody acts on, on the ground (or in the sky for a kite)."""
    if name == "ball":
        r = 0.07 * h
        return O.ball(rng, (x, ground - r), r)
    if name == "cup":
        return O.cup(rng, (x, ground - 0.045 * h), 0.09 * h)
    if name == "book":
        return O.book(rng, (x, ground - 0.05 * h), 0.16 * h, 0.1 * h)
    if name == "box":
        return O.box(rng, x, ground, 0.3 * h, 0.25 * h)
    if name == "chair":
        return O.chair(rng, x, ground, 0.55 * h, 1 if rng.random() < 0.5 else -1)
    if name == "table":
        return O.table(rng, x, ground, 0.5 * h, 0.38 * h)
    if name == "bicycle":
        return O.bicycle(rng, x, ground, 0.9 * h, 1 if rng.random() < 0.5 else -1)
    if name == "kite":
        return O.kite(rng, (x, rng.uniform(0.15, 0.35) * H), 0.25 * h)
    return O.umbrella(rng, (x, ground - 0.05 * h), 0.6 * h, 1)


def plan_scene(rng: np.random.Generator, W: int, H: int, split: str = "train") -> Scene:
    """Sample a full scene: people with intents, their objects, free objects, clutter.

    ``split`` picks the intent frequencies (the test split oversamples the tail; classes.py).
    """
    scene = Scene(W, H, horizon=float(rng.uniform(0.3, 0.5) * H))
    n_people = int(rng.choice(4, p=N_PEOPLE_P)) + 1
    slots = (np.arange(n_people) + rng.uniform(0.2, 0.8, n_people)) / n_people * W
    rng.shuffle(slots)
    n_obj, person_depth, thing_depth = 0, [], []
    for i in range(n_people):
        intent = INTENTS[int(rng.choice(len(INTENTS), p=_WEIGHTS[split]))]
        if intent.obj and n_obj >= MAX_OBJECTS:
            intent = Intent("idle")
        ground = float(rng.uniform(scene.horizon + 0.3 * (H - scene.horizon), 0.97 * H))
        depth_scale = 0.6 + 0.4 * (ground - scene.horizon) / (H - scene.horizon)
        h = float(H * rng.uniform(0.5, 0.68) * depth_scale)
        person, thing, off = stage(rng, intent, float(slots[i]), ground, h, W, H)
        scene.persons.append(person)
        scene.intents.append(intent)
        person_depth.append(ground)
        if thing is not None:
            scene.things.append(thing)
            thing_depth.append(ground + off)
            n_obj += 1
    names = ["ball", "cup", "book", "box", "chair", "table", "bicycle", "kite", "umbrella"]
    while n_obj < MAX_OBJECTS and (n_obj == 0 or rng.random() < FREE_OBJECT_P):
        name = names[int(rng.integers(len(names)))]
        ground = float(rng.uniform(scene.horizon + 0.2 * (H - scene.horizon), 0.98 * H))
        h = float(H * 0.6 * (0.6 + 0.4 * (ground - scene.horizon) / (H - scene.horizon)))
        supports = [j for j, t in enumerate(scene.things) if t.name in ("table", "box")]
        depth = ground
        if name in ("ball", "cup", "book") and supports and rng.random() < ON_SUPPORT_P:
            j = supports[int(rng.integers(len(supports)))]
            x0, x1, y = scene.things[j].anchors["top"]
            h = (x1 - x0) * 1.4  # object size relative to its support
            thing = free_object(rng, name, float(rng.uniform(x0 + 0.2 * (x1 - x0), x1 - 0.2 * (x1 - x0))), y, h, H)
            depth = thing_depth[j] + 0.005
        else:
            thing = free_object(rng, name, float(rng.uniform(0.05, 0.95) * W), ground, h, H)
        scene.things.append(thing)
        thing_depth.append(depth)
        n_obj += 1
    scene.depth = person_depth + thing_depth
    scene.back = clutter(rng, W, H, int(rng.integers(2, 7)), 0.08 * max(W, H))
    if rng.random() < FRONT_CLUTTER_P:
        scene.front = _bushes(rng, W, H)
    return scene


def _bushes(rng, W: int, H: int) -> List[Prim]:
    """Green blobs along the bottom edge: foreground occluders."""
    out = []
    for _ in range(int(rng.integers(1, 4))):
        cx, r = rng.uniform(0, W), rng.uniform(0.04, 0.09) * H
        out.append(Prim("disc", [cx - 1.6 * r, H - 1.2 * r, cx + 1.6 * r, H + 0.8 * r],
                        jitter_color(rng, (40, 120, 40), 30)))
    return out
