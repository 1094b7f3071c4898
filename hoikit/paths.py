"""Locations of optional local resources (no downloads, ever)."""
from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """The real annotation files used by tests (``$HOIKIT_SHARED/data`` or ``../shared/data``)."""
    env = os.environ.get("HOIKIT_SHARED")
    if env:
        return Path(env) / "data"
    return Path(__file__).resolve().parents[2] / "shared" / "data"
