"""Labels from what is drawn: every verb and predicate is decided by geometry and pose.

Distances are fractions of the acting person's figure height ``h`` (see figures.py), so the rules
are scale-free. The planner stages interactions; these rules are the ground truth. A held ball and
a thrown ball sit in the same pair region and differ by arm angle and hand contact; looking at an
object and looking away differ by the head direction; kicking and standing next to a ball differ by
the leg angle and the foot touching the ball.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .classes import HOI_ID, OBJ, PERSON, PRED, VERB, VERB_PRIORITY, VERB_TO_PREDICATE
from .figures import LEG_W, Person
from .objects import Thing

CONTACT = 0.04        # a hand / foot touches an object when inside its box dilated by CONTACT * h
THROW_SHOULDER = 130  # throwing arm raised: upper-arm angle >= this (degrees, 180 = straight up)
THROW_REACH = 0.45    # a thrown object is within THROW_REACH * h of the throwing hand (not touching)
KICK_HIP = 30         # kicking leg raised forward: thigh angle >= this (degrees)
PUSH_FOREARM = (30, 135)  # pushing forearms point forward (figure-frame angle range)
PUSH_AHEAD = 0.1     # pushing hands are at least PUSH_AHEAD * h in front of the hip
SEAT_TOL = 0.05       # hip on a seat surface: |hip - seat| <= SEAT_TOL * h
SIT_HIP = 20          # sitting / riding thighs raised at least this much
SOLE_TOL = 0.03       # standing on a surface: soles within SOLE_TOL * h of its top
DRINK_DIST = 0.05     # cup within DRINK_DIST * h of the mouth
READ_DIST = 0.35      # book centre within READ_DIST * h of the head
LOOK_MAX = 1.3        # the gaze ray reaches LOOK_MAX * h
STAND_HIP, WALK_SPREAD = 8, 25  # V-COCO agent-only actions: straight legs / stride (degrees)
ADJACENT_GAP = 0.5    # "next to": horizontal gap below ADJACENT_GAP * narrower width
GROUND_TOL = 0.06     # "next to": bottoms within GROUND_TOL * image height
OVERLAP_MIN = 0.1     # "behind" / "in front of": intersection >= OVERLAP_MIN * smaller area

HOLDABLE = {"ball", "book", "box", "cup", "kite", "umbrella"}
THROWABLE, KICKABLE = {"ball", "book"}, {"ball", "box"}
CARRYABLE, PUSHABLE = {"ball", "box", "chair"}, {"box", "bicycle", "chair"}
SITTABLE, STANDABLE = {"chair", "box", "table"}, {"chair", "box", "table"}


@dataclass
class Labels:
    """Ground truth of one image (entity indices: people first, then objects).

    Attributes:
        boxes: int ``[N, 4]`` tight boxes, continuous pixels (x2, y2 exclusive).
        labels: ``[N]`` entity classes (classes.OBJECTS).
        hois: ``(human, object, verb)`` triplets, sorted.
        relations: ``(subject, object, predicate)``, one per ordered pair, sorted.
        agent_actions: per person index, the V-COCO agent-only actions ("stand", "walk").
    """

    boxes: np.ndarray
    labels: List[int]
    hois: List[Tuple[int, int, int]] = field(default_factory=list)
    relations: List[Tuple[int, int, int]] = field(default_factory=list)
    agent_actions: Dict[int, List[str]] = field(default_factory=dict)


def _inside(pt, box, pad: float) -> bool:
    return box[0] - pad <= pt[0] <= box[2] + pad and box[1] - pad <= pt[1] <= box[3] + pad


def _box_dist(pt, box) -> float:
    dx = max(box[0] - pt[0], 0.0, pt[0] - box[2])
    dy = max(box[1] - pt[1], 0.0, pt[1] - box[3])
    return float(np.hypot(dx, dy))


def ray_hit(origin, direction, box) -> Optional[float]:
    """Distance along a ray to an axis-aligned box (slab method), or None when it misses."""
    t0, t1 = 0.0, np.inf
    for a in range(2):
        if abs(direction[a]) < 1e-9:
            if not box[a] <= origin[a] <= box[a + 2]:
                return None
            continue
        u, v = (box[a] - origin[a]) / direction[a], (box[a + 2] - origin[a]) / direction[a]
        t0, t1 = max(t0, min(u, v)), min(t1, max(u, v))
    return t0 if t0 <= t1 else None


def gaze_target(p: Person, me: int, boxes: np.ndarray) -> Optional[int]:
    """Entity first hit by the person's gaze ray within LOOK_MAX * h (the own box is skipped)."""
    kp = p.keypoints()
    best, best_t = None, LOOK_MAX * p.height
    for j, b in enumerate(boxes):
        if j == me:
            continue
        t = ray_hit(kp["head"], p.pose.gaze(), b)
        if t is not None and t < best_t:
            best, best_t = j, t
    return best


def _on_seat(p: Person, thing: Thing) -> bool:
    surf = thing.anchors.get("seat", thing.anchors.get("top"))
    if surf is None:
        return False
    hip, h = p.keypoints()["hip"], p.height
    thighs = min(p.pose.legs[0][0], p.pose.legs[1][0])
    return surf[0] <= hip[0] <= surf[1] and abs(hip[1] - surf[2]) <= SEAT_TOL * h and thighs >= SIT_HIP


def person_verbs(p: Person, thing: Thing, box, looked_at: bool) -> List[str]:
    """Verbs of person ``p`` on ``thing`` (drawn box ``box``), before the class-validity filter."""
    kp, h, name, pose = p.keypoints(), p.height, thing.name, p.pose
    pad = CONTACT * h
    hands = [_inside(kp[f"wrist{i}"], box, pad) for i in range(2)]
    verbs = []
    if looked_at:
        verbs.append("look_at")
    seated = _on_seat(p, thing)
    if seated:
        verbs.append("ride" if name == "bicycle" else "sit_on")
    top = thing.anchors.get("top")
    if top is not None and not seated:
        soles = [kp[f"foot{i}"] for i in range(2)]
        if all(top[0] - pad <= s[0] <= top[1] + pad and abs(s[1] + LEG_W * h / 2 - top[2]) <= SOLE_TOL * h for s in soles):
            verbs.append("stand_on")
    overhead = all(hands) and all(kp[f"wrist{i}"][1] < p.head_top() for i in range(2))
    forearm = [pose.arms[i][0] + pose.arms[i][1] for i in range(2)]
    ahead = all((kp[f"wrist{i}"][0] - kp["hip"][0]) * pose.facing > PUSH_AHEAD * h for i in range(2))
    pushing = (all(hands) and not seated and ahead
               and all(PUSH_FOREARM[0] <= a <= PUSH_FOREARM[1] for a in forearm))
    if overhead:
        verbs.append("carry")
    if pushing:
        verbs.append("push")
    if any(hands) and not (overhead or pushing or seated):
        verbs.append("hold")
    if not any(hands):
        for i in range(2):
            if pose.arms[i][0] >= THROW_SHOULDER and _box_dist(kp[f"wrist{i}"], box) <= THROW_REACH * h:
                verbs.append("throw")
                break
    for i in range(2):
        if pose.legs[i][0] >= KICK_HIP and not seated and _inside(kp[f"toe{i}"], box, pad):
            verbs.append("kick")
            break
    if any(hands) and name == "cup" and _box_dist(kp["mouth"], box) <= DRINK_DIST * h:
        verbs.append("drink_with")
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    if any(hands) and looked_at and np.linalg.norm(centre - kp["head"]) <= READ_DIST * h:
        verbs.append("read")
    end = thing.anchors.get("string_end")
    if end is not None and box[3] < p.head_top() and any(
            np.linalg.norm(np.asarray(end) - kp[f"wrist{i}"]) <= pad for i in range(2)):
        verbs.append("fly")
    return verbs


def agent_actions(p: Person, seated: bool) -> List[str]:
    """V-COCO agent-only actions from the leg pose: "stand" (straight legs) or "walk" (stride)."""
    (h0, k0), (h1, k1) = p.pose.legs
    if seated:
        return []
    if max(abs(h0), abs(h1)) < STAND_HIP and max(k0, k1) < 10:
        return ["stand"]
    if abs(h0 - h1) >= WALK_SPREAD and max(abs(h0), abs(h1)) < 35:
        return ["walk"]
    return []


def label_scene(persons: Sequence[Person], things: Sequence[Thing], boxes: np.ndarray, depth: Sequence[float],
                height: int) -> Labels:
    """All labels of one image. ``boxes [N, 4]`` and ``depth [N]`` list people first, then things."""
    n_p = len(persons)
    labels = [PERSON] * n_p + [t.label for t in things]
    out = Labels(boxes=boxes, labels=labels)
    rel: Dict[Tuple[int, int], int] = {}
    for i, p in enumerate(persons):
        target = gaze_target(p, i, boxes)
        seated_any = False
        for j, t in enumerate(things):
            e = n_p + j
            verbs = person_verbs(p, t, boxes[e], target == e)
            seated_any |= ("sit_on" in verbs or "ride" in verbs)
            valid = [v for v in verbs if (t.label, VERB[v]) in HOI_ID]
            out.hois += [(i, e, VERB[v]) for v in sorted(set(valid))]
            if valid:
                best = min(valid, key=VERB_PRIORITY.index)
                rel[(i, e)] = PRED[VERB_TO_PREDICATE[best]]
        if target is not None and target < n_p:
            rel[(i, target)] = PRED["looking at"]
        out.agent_actions[i] = agent_actions(p, seated_any)
    ents = [("person", None)] * n_p + [(t.name, t) for t in things]
    n = len(ents)
    b = boxes.astype(float)
    for s in range(n):
        for o in range(n):
            if s == o or (s, o) in rel:
                continue
            pred = _spatial(s, o, ents, b, persons, height)
            if pred is not None:
                rel[(s, o)] = PRED[pred]
    for s in range(n):          # symmetric relations, once per unordered pair, subject = lower index
        for o in range(s + 1, n):
            if (s, o) in rel or (o, s) in rel:
                continue
            inter = (min(b[s, 2], b[o, 2]) - max(b[s, 0], b[o, 0])) * (min(b[s, 3], b[o, 3]) - max(b[s, 1], b[o, 1]))
            area = min((b[s, 2] - b[s, 0]) * (b[s, 3] - b[s, 1]), (b[o, 2] - b[o, 0]) * (b[o, 3] - b[o, 1]))
            overlap = (min(b[s, 2], b[o, 2]) > max(b[s, 0], b[o, 0])) and (min(b[s, 3], b[o, 3]) > max(b[s, 1], b[o, 1]))
            if overlap and inter >= OVERLAP_MIN * area and depth[s] != depth[o]:
                rel[(s, o)] = PRED["in front of" if depth[s] > depth[o] else "behind"]
                continue
            gap = max(b[s, 0], b[o, 0]) - min(b[s, 2], b[o, 2])
            narrow = min(b[s, 2] - b[s, 0], b[o, 2] - b[o, 0])
            if abs(b[s, 3] - b[o, 3]) <= GROUND_TOL * height and gap <= ADJACENT_GAP * narrow and not overlap:
                rel[(s, o)] = PRED["next to"]
    out.hois.sort()
    out.relations = sorted((s, o, p) for (s, o), p in rel.items())
    return out


def _spatial(s: int, o: int, ents, b: np.ndarray, persons, height: int) -> Optional[str]:
    """Directed spatial predicate of subject ``s`` w.r.t. object ``o`` ("on", "under", "above")."""
    tol = 0.02 * height + 1
    (ns, ts), (no, to) = ents[s], ents[o]
    cx = (b[s, 0] + b[s, 2]) / 2
    if ns != "person" and to is not None and "top" in to.anchors:
        x0, x1, y = to.anchors["top"]
        if x0 <= cx <= x1 and abs(b[s, 3] - y) <= tol and b[s, 1] < y:
            return "on"
    if ns == "person" and no in ("umbrella", "kite"):
        head = persons[s].keypoints()["head"]
        if b[o, 3] <= persons[s].head_top() + tol and b[o, 0] <= head[0] <= b[o, 2]:
            return "under"
    if ns != "person":
        gap = b[o, 1] - b[s, 3]
        hov = min(b[s, 2], b[o, 2]) - max(b[s, 0], b[o, 0])
        if 0 < gap <= max(b[s, 3] - b[s, 1], b[o, 3] - b[o, 1]) and hov >= 0.3 * min(b[s, 2] - b[s, 0], b[o, 2] - b[o, 0]):
            return "above"
    return None
