"""Optional dependencies ("extras" in pyproject.toml) and the one-line error when one is missing.

    av = require("av", extra="video", purpose="reading and writing videos")

raises ``MissingExtraError: reading and writing videos needs the 'video' extra: pip install "hoikit[video]"
(from a checkout: pip install -e ".[video]")`` when PyAV is not installed; the CLI prints it as one line.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import HoikitError


class MissingExtraError(HoikitError):
    """An optional dependency is not installed. Message names the extra to install."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``.

    Args:
        module: importable name (``"av"``). extra: the pyproject extra that installs it (``"video"``).
        purpose: what needs it, starting the message (``"reading videos"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{purpose} needs the '{extra}' extra (module '{module}' is not installed): "
                                f"pip install \"hoikit[{extra}]\" (from a checkout: pip install -e \".[{extra}]\")") from None
