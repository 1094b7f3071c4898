"""V-COCO detection records: the official per-person layout, file I/O and the pair converter.

The official evaluator (s-gupta/v-coco ``vsrl_eval.py``) reads a pickle holding a list of
records, one per detected person (a pair-based model writes one per pair)::

    {"image_id": int, "person_box": [x1, y1, x2, y2],
     "<action>_agent": score,                       # 26 actions
     "<action>_<role>": [x1, y1, x2, y2, score]}    # 25 action-roles

NaN score = no prediction; an all-zero or all-NaN role box = "no object". Boxes use the
official V-COCO convention (COCO ``x2 = x + w - 1``, +1-pixel IoU), not hoikit's continuous one.
Inside hoikit the records become :class:`VCOCODetections` (column arrays), which is also what
the fast ``.npz`` format stores (docs/formats.md).
"""
from __future__ import annotations

import gc
import json
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..data.metadata import load_class_file
from ..data.reader_base import load_json, load_npz
from ..errors import DataError

# s-gupta/v-coco vcoco_<split>.json action/role table (also hoikit/classes/vcoco.json).
ACTIONS: Tuple[str, ...] = (
    "hold", "stand", "sit", "ride", "walk", "look", "hit", "eat", "jump", "lay", "talk_on_phone",
    "carry", "throw", "catch", "cut", "run", "work_on_computer", "ski", "surf", "skateboard", "smile",
    "drink", "kick", "point", "read", "snowboard")


def official_roles() -> List[List[str]]:
    """Role names per action (agent first), in the official order, from hoikit/classes/vcoco.json."""
    table = {a["action_name"]: a["role_name"] for a in load_class_file("vcoco")["official_actions"]}
    return [list(table[a]) for a in ACTIONS]


def action_role_columns(roles: Sequence[Sequence[str]]) -> List[Tuple[int, int, str]]:
    """The 25 action-role columns ``(action id, role slot 0/1, "action-role")`` in official order."""
    return [(a, r, f"{ACTIONS[a]}-{roles[a][r + 1]}") for a in range(len(roles))
            for r in range(len(roles[a]) - 1)]


# the columns of VCOCODetections, also the arrays of the .npz format (docs/formats.md)
NPZ_KEYS = ("image_id", "person_box", "agent_scores", "role_boxes", "role_scores")


@dataclass
class VCOCODetections:
    """Detection records as columns (N records; C = 25 action-role columns).

    Attributes:
        image_id: int64 ``[N]`` COCO image ids.
        person_box: float32 ``[N, 4]`` agent boxes (official V-COCO coordinates).
        agent_scores: float32 ``[N, 26]`` ``<action>_agent`` scores, NaN = no prediction.
        role_boxes: float32 ``[N, C, 4]`` role-object boxes per action-role column.
        role_scores: float32 ``[N, C]`` role scores, NaN = no prediction.
    """

    image_id: np.ndarray
    person_box: np.ndarray
    agent_scores: np.ndarray
    role_boxes: np.ndarray
    role_scores: np.ndarray

    def __post_init__(self):
        self.image_id = np.asarray(self.image_id, dtype=np.int64).reshape(-1)
        n = len(self.image_id)
        self.person_box = np.asarray(self.person_box, dtype=np.float32).reshape(n, 4)
        self.agent_scores = np.asarray(self.agent_scores, dtype=np.float32).reshape(n, len(ACTIONS))
        self.role_scores = np.asarray(self.role_scores, dtype=np.float32).reshape(n, -1)
        self.role_boxes = np.asarray(self.role_boxes, dtype=np.float32).reshape(n, self.role_scores.shape[1], 4)

    def __len__(self) -> int:
        return len(self.image_id)

    @staticmethod
    def concatenate(parts: Sequence["VCOCODetections"]) -> "VCOCODetections":
        return VCOCODetections(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in NPZ_KEYS})


def _record_keys() -> Tuple[List[str], List[str]]:
    """The 26 ``<action>_agent`` and 25 ``<action>_<role>`` record keys, in column order."""
    roles = official_roles()
    return ([f"{a}_agent" for a in ACTIONS],
            [f"{ACTIONS[a]}_{roles[a][k + 1]}" for a, k, _ in action_role_columns(roles)])


def _records_fast(records: Sequence[Dict], agent_keys: List[str], role_keys: List[str]) -> VCOCODetections:
    """Columns of well-formed records (every key present, plain numbers / 4- or 5-sequences).

    One C-level ``itemgetter`` pass per key group and ``np.fromiter`` over the flattened values
    (same float -> float32 rounding as ``np.array``); anything unexpected raises and the caller
    falls back to :func:`_records_checked`.
    """
    n = len(records)
    image_id = np.array(list(map(itemgetter("image_id"), records)), dtype=np.int64).reshape(n)
    boxes = list(map(itemgetter("person_box"), records))
    roles = list(map(itemgetter(*role_keys), records))
    if set(map(len, boxes)) - {4} or set(map(len, chain.from_iterable(roles))) - {5}:
        raise ValueError("box length")
    person_box = np.fromiter(chain.from_iterable(boxes), np.float32, count=4 * n).reshape(n, 4)
    agent = np.fromiter(chain.from_iterable(map(itemgetter(*agent_keys), records)), np.float32,
                        count=len(agent_keys) * n).reshape(n, len(agent_keys))
    role = np.fromiter(chain.from_iterable(chain.from_iterable(roles)), np.float32,
                       count=5 * len(role_keys) * n).reshape(n, len(role_keys), 5)
    return VCOCODetections(image_id, person_box, agent, role[..., :4], role[..., 4])


def _records_checked(records: Sequence[Dict], agent_keys: List[str], role_keys: List[str],
                     source: str) -> VCOCODetections:
    """Column by column with ``np.array``; a missing score key counts as NaN; names a bad record."""
    n = len(records)
    nan5 = [np.nan] * 5
    columns = [("image_id", None, np.int64, ()), ("person_box", None, np.float32, (4,))]
    columns += [(k, np.nan, np.float32, ()) for k in agent_keys] + [(k, nan5, np.float32, (5,)) for k in role_keys]
    out = []
    for key, default, dtype, shape in columns:
        try:
            vals = [r[key] if default is None else r.get(key, default) for r in records]
            out.append(np.array(vals, dtype=dtype).reshape((n,) + shape))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            bad = 0  # first record that fails alone (or 0 when only the mix fails)
            for i, r in enumerate(records):
                try:
                    np.array(r[key] if default is None else r.get(key, default), dtype=dtype).reshape(shape)
                except (KeyError, TypeError, ValueError, AttributeError):
                    bad = i
                    break
            raise DataError(f"{source}: record {bad}: malformed V-COCO detection ({key!r}: {type(e).__name__}: "
                            f"{e}); expected image_id, person_box[4], <action>_agent, <action>_<role>[5]") from None
    image_id, person_box = out[0], out[1]
    agent = np.stack(out[2:2 + len(agent_keys)], 1) if n else np.zeros((0, len(agent_keys)), np.float32)
    role = np.stack(out[2 + len(agent_keys):], 1) if n else np.zeros((0, len(role_keys), 5), np.float32)
    return VCOCODetections(image_id, person_box, agent, role[..., :4], role[..., 4])


def records_to_detections(records: Sequence[Dict], source: str = "records") -> VCOCODetections:
    """Official records -> :class:`VCOCODetections`. A missing key counts as NaN (no prediction)."""
    agent_keys, role_keys = _record_keys()
    if len(records) and all(isinstance(r, dict) for r in records):
        try:
            return _records_fast(records, agent_keys, role_keys)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # missing keys (= NaN) or a malformed record: the checked path decides
    return _records_checked(records, agent_keys, role_keys, source)


def detections_to_records(dets: VCOCODetections) -> List[Dict]:
    """Inverse of :func:`records_to_detections` (plain Python floats, JSON-ready)."""
    agent_keys, role_keys = _record_keys()
    ids, boxes, agent = dets.image_id.tolist(), dets.person_box.tolist(), dets.agent_scores.tolist()
    role = np.concatenate([dets.role_boxes, dets.role_scores[..., None]], 2).tolist()  # [N, C, 5]
    out = []
    for i in range(len(dets)):
        rec = {"image_id": ids[i], "person_box": boxes[i]}
        rec.update(zip(agent_keys, agent[i]))
        rec.update(zip(role_keys, role[i]))
        out.append(rec)
    return out


# ----------------------------------------------------------------------------- pair converter
def pairs_to_detections(predictions, image_ids: Sequence[int], classes: Sequence[str] = None,
                        continuous_to_inclusive: bool = True) -> VCOCODetections:
    """hoikit pair detections -> official records (one record per pair).

    Convention: ``<action>_<role>`` = object box + the pair's score of the training class
    "action role" (fredzzhang layout, hoikit/classes/vcoco.json ``classes``); ``<action>_agent``
    = the maximum of the pair's scores over that action's classes. Actions and action-roles
    without a training class (stand, walk, run, smile, point) get NaN (= no prediction).

    Args:
        predictions: list of :class:`hoikit.structures.HOIPrediction` (``verb_scores [P, 24]``).
        image_ids: COCO image id of each prediction.
        classes: the 24 "action role" names; default hoikit/classes/vcoco.json.
        continuous_to_inclusive: hoikit boxes are continuous pixels; the official GT uses
            ``x2 = x + w - 1``, so subtract 1 from x2, y2 (never below x1, y1).
    """
    classes = list(classes or load_class_file("vcoco")["classes"])
    roles = official_roles()
    col_of = {f"{ACTIONS[a]} {roles[a][k + 1]}": c for c, (a, k, _) in enumerate(action_role_columns(roles))}
    if len(predictions) != len(image_ids):
        raise DataError(f"pairs_to_detections: {len(predictions)} predictions but {len(image_ids)} image ids")
    cls_col = np.array([col_of.get(c, -1) for c in classes])
    if (cls_col < 0).any():
        raise DataError(f"pairs_to_detections: class {classes[int(np.argmax(cls_col < 0))]!r} is not a V-COCO action-role")
    cls_action = np.array([ACTIONS.index(c.split()[0]) for c in classes])
    parts = []
    for idx, (pred, img) in enumerate(zip(predictions, image_ids)):
        pairs = np.asarray(pred.pairs, dtype=np.int64).reshape(-1, 2)
        scores = np.asarray(pred.verb_scores, dtype=np.float32).reshape(len(pairs), -1)
        if scores.shape[1] != len(classes):
            raise DataError(f"pairs_to_detections: prediction {idx} has {scores.shape[1]} verb scores, "
                            f"expected {len(classes)}")
        boxes = np.asarray(pred.boxes, dtype=np.float32).reshape(-1, 4).copy()
        if continuous_to_inclusive:
            boxes[:, 2:] = np.maximum(boxes[:, 2:] - 1, boxes[:, :2])
        n = len(pairs)
        agent = np.full((n, len(ACTIONS)), np.nan, np.float32)
        role_s = np.full((n, len(col_of)), np.nan, np.float32)
        role_b = np.zeros((n, len(col_of), 4), np.float32)
        for c in range(len(classes)):
            role_s[:, cls_col[c]] = scores[:, c]
            role_b[:, cls_col[c]] = boxes[pairs[:, 1]]
            agent[:, cls_action[c]] = np.fmax(agent[:, cls_action[c]], scores[:, c])
        parts.append(VCOCODetections(np.full(n, int(img)), boxes[pairs[:, 0]], agent, role_b, role_s))
    if not parts:
        return VCOCODetections(np.zeros(0), np.zeros((0, 4)), np.zeros((0, 26)), np.zeros((0, 25, 4)), np.zeros((0, 25)))
    return VCOCODetections.concatenate(parts)


# ----------------------------------------------------------------------------- files
class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays/scalars only (no arbitrary code)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("copy_reg", "_reconstructor"),
               ("copyreg", "_reconstructor"), ("__builtin__", "object"), ("builtins", "object")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"{self.source}: pickle refers to {module}.{name}; only lists, dicts and numpy "
                            "arrays are accepted")
        return super().find_class(module, name)


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector: parsing millions of records creates millions of
    containers and the collector would rescan all of them again and again (no cycles here)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_detections(path) -> VCOCODetections:
    """Read detections from ``.pkl`` (official records), ``.json`` (records) or ``.npz`` (columns)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return VCOCODetections(**load_npz(path, NPZ_KEYS))
    if not path.is_file():
        raise DataError(f"{path}: detections file not found")
    with _gc_paused():
        if suffix == ".json":
            records = load_json(path, "detections file")
        else:
            with open(path, "rb") as f:
                unpickler = _SafeUnpickler(f, encoding="latin1")
                unpickler.source = str(path)
                try:
                    records = unpickler.load()
                except (pickle.UnpicklingError, EOFError) as e:
                    raise DataError(f"{path}: not a readable pickle ({e})") from None
        if isinstance(records, dict) and "detections" in records:
            records = records["detections"]
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a list of detection records, got {type(records).__name__}")
        return records_to_detections(records, str(path))


def save_detections(dets: VCOCODetections, path) -> None:
    """Write ``.npz`` (columns), ``.json`` or ``.pkl`` (official records) by suffix."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        np.savez(path, **{k: getattr(dets, k) for k in NPZ_KEYS})
    elif path.suffix.lower() == ".json":
        path.write_text(json.dumps(detections_to_records(dets)))  # NaN written as JSON NaN
    else:
        with open(path, "wb") as f:
            pickle.dump(detections_to_records(dets), f, protocol=2)
