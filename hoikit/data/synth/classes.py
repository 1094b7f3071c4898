"""SynthHOI class tables: entities, verbs, HOI classes, scene-graph predicates, V-COCO actions.

Everything a writer or a rule needs to name is defined here once. Index orders are the ones written
into the dataset files (HICO-DET ``objects`` / ``verbs`` / ``correspondence``; VG dicts are the
same names 1-based; V-COCO objects get ``background`` at 0 so ``person`` = 1).

The intent table is the generator's *plan*: a person is posed and an object placed to perform an
intent, drawn with the frequencies below (long-tailed on purpose: the smallest weights give the
HICO-DET "rare" classes, fewer than 10 training instances at 2,000 training images). The labels are
NOT taken from the plan: ``rules.py`` decides every verb and predicate from the drawn geometry and
pose, so an intent that fails (occluded hand, object moved) simply yields what is drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

# Entities. HICO-DET lists "person" among its objects; so does SynthHOI (index 0).
OBJECTS: List[str] = ["person", "ball", "bicycle", "book", "box", "chair", "cup", "kite", "table", "umbrella"]
PERSON = 0
OBJ = {name: i for i, name in enumerate(OBJECTS)}

# Verbs (HICO-DET style names) and the geometric rule that decides each (see rules.py).
VERBS: List[str] = ["carry", "drink_with", "fly", "hold", "kick", "look_at", "push", "read", "ride",
                    "sit_on", "stand_on", "throw"]
VERB = {name: i for i, name in enumerate(VERBS)}

# Valid (verb, object) interaction classes: HOI id = row index, HICO-DET's correspondence order
# (sorted by object, then verb, as in fredzzhang/hicodet).
_VALID: Dict[str, List[str]] = {
    "ball": ["carry", "hold", "kick", "look_at", "throw"],
    "bicycle": ["look_at", "push", "ride"],
    "book": ["hold", "look_at", "read", "throw"],
    "box": ["carry", "hold", "kick", "look_at", "push", "sit_on", "stand_on"],
    "chair": ["carry", "look_at", "push", "sit_on", "stand_on"],
    "cup": ["drink_with", "hold", "look_at"],
    "kite": ["fly", "hold", "look_at"],
    "table": ["look_at", "sit_on", "stand_on"],
    "umbrella": ["hold", "look_at"],
}
HOIS: List[Tuple[int, int]] = [(OBJ[o], VERB[v]) for o in OBJECTS[1:] for v in _VALID[o]]  # (object, verb)
HOI_ID: Dict[Tuple[int, int], int] = {ov: i for i, ov in enumerate(HOIS)}
CORRESPONDENCE: List[List[int]] = [[i, o, v] for i, (o, v) in enumerate(HOIS)]  # [hoi, object, verb]

# Scene-graph predicates (0-based here; 1-based in the VG files). Spatial ones come from box
# geometry between any two entities; functional ones are the person's verb on that object.
PREDICATES: List[str] = ["on", "under", "above", "next to", "behind", "in front of", "holding", "throwing",
                         "kicking", "looking at", "sitting on", "riding", "carrying", "drinking from",
                         "reading", "flying", "pushing", "standing on"]
PRED = {name: i for i, name in enumerate(PREDICATES)}
VERB_TO_PREDICATE = {"hold": "holding", "throw": "throwing", "kick": "kicking", "look_at": "looking at",
                     "sit_on": "sitting on", "ride": "riding", "carry": "carrying", "drink_with": "drinking from",
                     "read": "reading", "fly": "flying", "push": "pushing", "stand_on": "standing on"}
# One predicate per ordered pair (VG150 style): the most specific verb wins.
VERB_PRIORITY: List[str] = ["ride", "sit_on", "stand_on", "carry", "push", "kick", "throw", "drink_with", "read",
                            "fly", "hold", "look_at"]

# V-COCO style actions: every verb with its role ("instr" = the thing used, as in V-COCO's
# ride/sit/drink), plus two agent-only actions decided by the leg pose.
VCOCO_ROLE = {"carry": "obj", "drink_with": "instr", "fly": "instr", "hold": "obj", "kick": "obj", "look_at": "obj",
              "push": "obj", "read": "obj", "ride": "instr", "sit_on": "instr", "stand_on": "instr", "throw": "obj"}
VCOCO_AGENT_ONLY: List[str] = ["stand", "walk"]
VCOCO_ACTIONS: List[str] = sorted(VERBS + VCOCO_AGENT_ONLY)


@dataclass(frozen=True)
class Intent:
    """What the planner tries to draw for one person: a pose template and maybe an object."""

    name: str            # pose template in planner.py
    obj: str = ""        # object class the pose acts on ("" = none)
    weight: float = 1.0  # relative frequency (long tail)


INTENTS: List[Intent] = [
    Intent("hold", "ball", 55), Intent("hold", "cup", 30), Intent("hold", "book", 30), Intent("hold", "box", 22),
    Intent("hold", "umbrella", 40), Intent("hold", "kite", 0.25),
    Intent("throw", "ball", 45), Intent("throw", "book", 0.18),
    Intent("kick", "ball", 40), Intent("kick", "box", 0.1),
    Intent("sit_on", "chair", 45), Intent("sit_on", "box", 0.5), Intent("sit_on", "table", 0.4),
    Intent("ride", "bicycle", 40),
    Intent("carry", "box", 25), Intent("carry", "chair", 0.6), Intent("carry", "ball", 1.0),  # carry ball mostly fails
    Intent("push", "box", 0.25), Intent("push", "bicycle", 15), Intent("push", "chair", 0.2),
    Intent("drink_with", "cup", 28), Intent("read", "book", 22), Intent("fly", "kite", 25),
    Intent("stand_on", "box", 0.7), Intent("stand_on", "table", 0.6), Intent("stand_on", "chair", 0.45),
    Intent("look_at", "bicycle", 8), Intent("look_at", "table", 6), Intent("look_at", "chair", 5),
    Intent("next_to", "ball", 25),   # foot beside the ball, leg down: no kick
    Intent("next_to", "box", 10),
    Intent("idle", "", 60),          # standing or walking, gaze anywhere
]

# Tail intents (weight below TAIL_WEIGHT) are drawn TEST_TAIL_BOOST times more often in the test
# split. With the default 2,000 / 500 images (4 : 1) a tail class then has about as many test as
# training instances, so every HOI class is measured (HICO-DET's test set also covers all of its
# 600 classes) while the training split keeps ~9 of 35 classes rare (< 10 instances; HICO-DET: 138 / 600).
TAIL_WEIGHT = 2.5
TEST_TAIL_BOOST = 8.0


def intent_weights(split: str) -> List[float]:
    """Normalised intent probabilities for ``split`` ("train" or "test"; see TEST_TAIL_BOOST)."""
    boost = TEST_TAIL_BOOST if split == "test" else 1.0
    w = [i.weight * (boost if i.weight < TAIL_WEIGHT else 1.0) for i in INTENTS]
    total = sum(w)
    return [x / total for x in w]


# Probability that the planner turns the head toward the intent's object (the rest look elsewhere;
# rules.py still labels look_at whenever the drawn gaze ray hits an object).
GAZE_AT_OBJECT = {"hold": 0.55, "throw": 0.7, "kick": 0.6, "sit_on": 0.2, "ride": 0.1, "carry": 0.0, "push": 0.4,
                  "drink_with": 0.0, "read": 1.0, "fly": 0.85, "stand_on": 0.3, "look_at": 0.9, "next_to": 0.35,
                  "idle": 0.0}
