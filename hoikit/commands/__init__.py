"""CLI subcommands: one module per command, each with add_arguments(parser) and run(args)."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Dict, Iterable, Tuple

from ..errors import DataError


def add_module_subcommands(parser, dest: str, metavar: str, table: Dict[str, Tuple[str, str]]) -> None:
    """Add one sub-subcommand per entry of ``table`` (name -> (module, help)).

    Each module provides ``add_cli_arguments(parser)`` and ``run_cli(args) -> int``; the chosen
    module's ``run_cli`` is stored as ``args._sub_run`` (call it with :func:`run_module_subcommand`).
    """
    sub = parser.add_subparsers(dest=dest, metavar=metavar, required=True)
    for name, (module, help_text) in table.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_cli_arguments(p)
        p.set_defaults(_sub_run=mod.run_cli)


def run_module_subcommand(args) -> int:
    return args._sub_run(args)


def refuse_existing(paths: Iterable[Path], flags: str) -> None:
    """Refuse to replace a user's files: a one-line DataError naming the first of ``paths`` that
    exists (and how many more), unless none does. ``flags`` names the options that choose another
    place, e.g. ``"--out"``. Call it before any work, so that nothing is written when it raises."""
    there = [p for p in paths if p.exists()]
    if there:
        more = f" (and {len(there) - 1} more outputs)" if len(there) > 1 else ""
        raise DataError(f"{there[0]} is already there{more}; pass --overwrite to replace them or choose another "
                        f"{flags} (nothing was written)")
