"""``hoikit convert {detr,deformable,upt}``: turn released checkpoints into hoikit checkpoints.

Each converter module provides ``add_cli_arguments(parser)`` and ``run_cli(args) -> int``.
"""
from __future__ import annotations

from . import add_module_subcommands, run_module_subcommand

DESCRIPTION = "Convert official DETR / UPT / HuggingFace checkpoints into hoikit checkpoints (strict, key by key)."
CONVERTERS = {
    "detr": ("hoikit.commands.convert_detr", "DETR: facebookresearch/detr, UPT detectors, HuggingFace, bare state dicts"),
    "deformable": ("hoikit.commands.convert_deformable", "Deformable DETR / H-Deformable-DETR (official, PViC), "
                   "plain, box refine, two-stage"),
    "upt": ("hoikit.commands.convert_upt", "UPT: fredzzhang/upt model_state_dict (detector + interaction head)"),
}


def add_arguments(parser):
    add_module_subcommands(parser, "kind", "KIND", CONVERTERS)


run = run_module_subcommand
