"""CLI subcommands: one module per command, each with add_arguments(parser) and run(args)."""
from __future__ import annotations

import importlib
from typing import Dict, Tuple


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
