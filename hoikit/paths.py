"""Locations of optional local resources and of the files shipped in the package (no downloads, ever)."""
from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """The real annotation files used by tests (``$HOIKIT_SHARED/data`` or ``../shared/data``)."""
    env = os.environ.get("HOIKIT_SHARED")
    if env:
        return Path(env) / "data"
    return Path(__file__).resolve().parents[2] / "shared" / "data"


PACKAGE_DIR = Path(__file__).resolve().parent
# relative prefixes that name a folder shipped in the package: the README's paths
# (``configs/`` is a link to ``hoikit/configs/`` in a source checkout)
PACKAGED_PREFIXES = {("hoikit", "assets"): ("assets",), ("hoikit", "configs"): ("configs",), ("configs",): ("configs",)}


def packaged(path) -> Path:
    """``path`` as given when it exists (an explicit file always wins); else, for a relative path
    under ``hoikit/assets/``, ``hoikit/configs/`` or ``configs/`` (written as from the repository root),
    the file shipped in the installed package, when it is there. Any other path is returned unchanged.

        packaged("hoikit/assets/synth_detr.pt")   # works from any directory
    """
    p = Path(path)
    if str(path) == "" or p.exists() or p.is_absolute():
        return p
    for prefix, inside in PACKAGED_PREFIXES.items():
        if p.parts[:len(prefix)] == prefix and len(p.parts) > len(prefix):
            cand = PACKAGE_DIR.joinpath(*inside, *p.parts[len(prefix):])
            if cand.exists():
                return cand
    return p
