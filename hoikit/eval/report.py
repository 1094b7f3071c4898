"""Printing metric tables and writing metric JSON, shared by the evaluators.

Tables print values that are already in percent with two decimals, as papers report them;
a missing value (None / NaN, e.g. the Rare mean of a dataset without rare classes) prints
as ``n/a``. JSON is written atomically (temp file + rename) with NaN mapped to ``null`` so
the file stays valid JSON.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np


def format_value(value: Optional[float], decimals: int = 2) -> str:
    """``12.3456 -> '12.35'``; None or NaN -> ``'n/a'``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{decimals}f}"


def format_table(title: str, rows: Mapping[str, Mapping[str, Optional[float]]],
                 columns: Sequence[str], headers: Optional[Mapping[str, str]] = None,
                 decimals: int = 2) -> str:
    """A plain-text table: one line per row, one column per metric.

    Args:
        title: text of the top-left cell (e.g. ``"HICO-DET mAP (%)"``).
        rows: ``{row label: {column key: value in percent}}``; a missing key prints ``n/a``.
        columns: column keys in print order.
        headers: optional ``{column key: header text}`` (default: the key).
        decimals: digits after the decimal point.

    Returns:
        The table as one string (no trailing newline).
    """
    headers = dict(headers or {})
    head = [headers.get(c, c) for c in columns]
    cells = [[format_value(r.get(c), decimals) for c in columns] for r in rows.values()]
    first = max([len(title)] + [len(k) for k in rows])
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(head)]
    lines = [title.ljust(first) + "  " + "  ".join(h.rjust(w) for h, w in zip(head, widths))]
    for label, row in zip(rows, cells):
        lines.append(label.ljust(first) + "  " + "  ".join(v.rjust(w) for v, w in zip(row, widths)))
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy scalars/arrays to Python types and NaN / inf to None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def write_json(path, obj: Dict, indent: int = 1) -> Path:
    """Write ``obj`` as JSON atomically (temp file in the same folder, then rename).

    Args:
        path: output file; parent folders are created.
        obj: metrics dict (numpy values and NaN allowed, see :func:`to_jsonable`).
        indent: JSON indent.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(to_jsonable(obj), f, indent=indent, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
