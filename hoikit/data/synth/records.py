"""The per-image record every writer consumes, and small conversions shared by the writers.

A record is plain Python (picklable across worker processes, JSON-friendly):
``{"split", "index", "image_id", "file_name", "width", "height", "boxes": [[x1, y1, x2, y2], ...]
(int, continuous pixels, x2/y2 exclusive), "labels": [...], "hois": [[h, o, verb], ...],
"relations": [[s, o, predicate], ...], "agent_actions": {person: [...]}}``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

TEST_ID_BASE = 1_000_000  # image ids: train i -> i + 1, test i -> TEST_ID_BASE + i + 1


def image_id(split: str, index: int) -> int:
    return (0 if split == "train" else TEST_ID_BASE) + index + 1


def to_hicodet(box) -> List[float]:
    """Continuous ``(x1, y1, x2, y2)`` integer box -> HICO-DET 1-based inclusive pixel indices."""
    x1, y1, x2, y2 = box
    return [float(x1 + 1), float(y1 + 1), float(x2), float(y2)]


def to_coco(box) -> List[float]:
    """Continuous box -> COCO ``[x, y, w, h]``."""
    x1, y1, x2, y2 = box
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def write_json(path: Path, obj) -> Path:
    """Deterministic JSON (same object -> same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def split_records(records: List[Dict], split: str) -> List[Dict]:
    return [r for r in records if r["split"] == split]
