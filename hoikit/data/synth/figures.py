"""Articulated people: pose (joint angles), forward kinematics, keypoints and drawing.

Angles are in degrees in the figure's own frame: 0 points straight down (gravity), +90 points
forward (the way the body faces), 180 straight up, beyond 180 up and behind. ``dir(a)`` maps an angle
to an image-space unit vector ``(facing * sin a, cos a)`` (image y grows downward).

Segment lengths are fractions of the person's scale ``height`` (the standing height in pixels):
a standing figure spans about ``height`` pixels from the top of the head to the soles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from .canvas import Color, Prim, disc, limb

# Body proportions (fractions of the figure height).
HEAD_R = 0.075
NECK = 0.03
TORSO = 0.29
UPPER_ARM = 0.15
FOREARM = 0.14
THIGH = 0.22
SHIN = 0.22
FOOT = 0.06
ARM_W = 0.045
LEG_W = 0.055
TORSO_W = 0.13

SKIN = [(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 30)]


def unit(angle_deg: float, facing: int) -> np.ndarray:
    """Image-space unit vector of a figure-frame angle (0 = down, 90 = forward)."""
    a = np.deg2rad(angle_deg)
    return np.array([facing * np.sin(a), np.cos(a)])


@dataclass
class Pose:
    """Joint angles of one figure.

    Attributes:
        facing: +1 body faces right, -1 faces left.
        lean: torso angle from vertical, degrees (+ = leaning forward).
        arms: ``[(shoulder, elbow), (shoulder, elbow)]`` for the near and the far arm; shoulder is the
            upper-arm angle (0 down, 90 forward, 180 up), elbow the forearm's extra rotation forward.
        legs: ``[(hip, knee), (hip, knee)]``; hip is the thigh angle (0 down, 90 forward), knee bends
            the shin back (shin angle = hip - knee).
        gaze_facing: +1 / -1, the side the face looks to (may differ from ``facing``).
        gaze_pitch: degrees, + = looking down, - = up.
        kind: "stand", "walk", "sit", "ride", "kick" ... (the pose template; informational).
    """

    facing: int = 1
    lean: float = 0.0
    arms: List[Tuple[float, float]] = field(default_factory=lambda: [(10.0, 10.0), (-10.0, 10.0)])
    legs: List[Tuple[float, float]] = field(default_factory=lambda: [(3.0, 0.0), (-3.0, 0.0)])
    gaze_facing: int = 1
    gaze_pitch: float = 0.0
    kind: str = "stand"

    def gaze(self) -> np.ndarray:
        """Unit gaze vector in image space."""
        p = np.deg2rad(self.gaze_pitch)
        return np.array([self.gaze_facing * np.cos(p), np.sin(p)])


@dataclass
class Person:
    """A posed figure placed in the image.

    Attributes:
        hip: image position of the hip joint ``(x, y)``.
        height: figure scale in pixels.
        pose: the joint angles.
        skin, shirt, pants: colours.
    """

    hip: np.ndarray
    height: float
    pose: Pose
    skin: Color = SKIN[1]
    shirt: Color = (40, 90, 200)
    pants: Color = (50, 50, 60)
    _kp: Dict[str, np.ndarray] = field(default=None, init=False, repr=False)  # keypoints() cache

    def set_pose(self, **changes) -> None:
        """Change fields of :attr:`pose` (``arms=...``, ``legs=...``, ``lean=...``, ``gaze_facing=...``,
        ...); the keypoints follow. Change the pose through this method, not by writing ``pose``'s
        fields directly, which would leave :meth:`keypoints` returning the old figure."""
        for name, value in changes.items():
            if not hasattr(self.pose, name):
                raise AttributeError(f"Pose has no field '{name}'")
            setattr(self.pose, name, value)
        self._kp = None

    def keypoints(self) -> Dict[str, np.ndarray]:
        """Forward kinematics. Keys: hip, shoulder, head (centre), mouth, elbow0/1, wrist0/1,
        knee0/1, foot0/1 (ankle), toe0/1; all ``[2]`` image coordinates."""
        if self._kp is not None:
            return self._kp
        h, f, p = self.height, self.pose.facing, self.pose
        up = np.array([f * np.sin(np.deg2rad(p.lean)), -np.cos(np.deg2rad(p.lean))])
        # torso direction, from the hip towards the shoulders
        kp = {"hip": np.asarray(self.hip, float)}
        kp["shoulder"] = kp["hip"] + TORSO * h * up
        kp["head"] = kp["shoulder"] + (NECK + HEAD_R) * h * up
        g = p.gaze()
        kp["mouth"] = kp["head"] + HEAD_R * h * (0.75 * g + np.array([0.0, 0.35]))
        for i, (sh, el) in enumerate(p.arms):
            kp[f"elbow{i}"] = kp["shoulder"] + UPPER_ARM * h * unit(sh, f)
            kp[f"wrist{i}"] = kp[f"elbow{i}"] + FOREARM * h * unit(sh + el, f)
        for i, (hp, kn) in enumerate(p.legs):
            kp[f"knee{i}"] = kp["hip"] + THIGH * h * unit(hp, f)
            kp[f"foot{i}"] = kp[f"knee{i}"] + SHIN * h * unit(hp - kn, f)
            kp[f"toe{i}"] = kp[f"foot{i}"] + np.array([f * FOOT * h, 0.0])
        self._kp = kp
        return kp

    def move(self, dx: float, dy: float) -> None:
        self.hip = np.asarray(self.hip, float) + (dx, dy)
        self._kp = None

    def sole_y(self) -> float:
        """Lowest image y of the feet (where the figure touches the ground)."""
        kp = self.keypoints()
        return max(kp["foot0"][1], kp["foot1"][1]) + LEG_W * self.height / 2

    def head_top(self) -> float:
        return self.keypoints()["head"][1] - HEAD_R * self.height

    def prims(self) -> List[Prim]:
        """Primitives back to front: far arm and leg, torso, near leg and arm, head with face."""
        kp, h, p = self.keypoints(), self.height, self.pose
        far_shirt = tuple(int(c * 0.75) for c in self.shirt)
        far_pants = tuple(int(c * 0.75) for c in self.pants)
        out: List[Prim] = []
        for i, (shirt, pants) in ((1, (far_shirt, far_pants)), (0, (self.shirt, self.pants))):
            out += limb(kp["hip"], kp[f"knee{i}"], LEG_W * h, pants)
            out += limb(kp[f"knee{i}"], kp[f"foot{i}"], LEG_W * h, pants)
            out += limb(kp[f"foot{i}"], kp[f"toe{i}"], LEG_W * h * 0.8, (30, 30, 30))
            if i == 1:  # far arm behind the torso
                out += self._arm(1, far_shirt)
                out += limb(kp["hip"], kp["shoulder"], TORSO_W * h, self.shirt)
        out += self._arm(0, self.shirt)
        out += limb(kp["shoulder"], kp["shoulder"] + (kp["head"] - kp["shoulder"]) * 0.5, 0.05 * h, self.skin)
        out += self._head()
        return out

    def _arm(self, i: int, sleeve: Color) -> List[Prim]:
        kp, h = self.keypoints(), self.height
        return (limb(kp["shoulder"], kp[f"elbow{i}"], ARM_W * h, sleeve)
                + limb(kp[f"elbow{i}"], kp[f"wrist{i}"], ARM_W * h * 0.9, self.skin)
                + [disc(kp[f"wrist{i}"], ARM_W * h * 0.7, self.skin)])

    def _head(self) -> List[Prim]:
        """Head disc, hair on the back of the head, an eye and a nose on the gaze side: the face
        direction is visible, so looking at an object differs from looking away inside the box."""
        kp, h, p = self.keypoints(), self.height, self.pose
        c, r, g = kp["head"], HEAD_R * h, p.gaze()
        n = np.array([g[1], -g[0]]) if p.gaze_facing > 0 else np.array([-g[1], g[0]])  # "up" of the face
        hair = c - 0.35 * r * g + 0.25 * r * n
        nose_base1, nose_base2 = c + 0.8 * r * g + 0.25 * r * n, c + 0.8 * r * g - 0.2 * r * n
        tip = c + 1.35 * r * g - 0.05 * r * n
        eye = c + 0.45 * r * g + 0.3 * r * n
        return [disc(c, r, self.skin), disc(hair, 0.75 * r, (40, 25, 15)),
                Prim("poly", [*nose_base1, *tip, *nose_base2], self.skin),
                disc(eye, max(0.9, 0.2 * r), (20, 20, 20))]


def stand_on_ground(person: Person, x: float, ground_y: float) -> Person:
    """Move ``person`` so its hip is at ``x`` and its soles touch ``ground_y``."""
    person.move(x - person.hip[0], ground_y - person.sole_y())
    return person
