"""``hoikit convert {detr,upt}``: turn released checkpoints into hoikit checkpoints.

Each converter module provides ``add_cli_arguments(parser)`` and ``run_cli(args) -> int``.
"""
from __future__ import annotations

import importlib

DESCRIPTION = "Convert official DETR / UPT / HuggingFace checkpoints into hoikit checkpoints (strict, key by key)."
CONVERTERS = {
    "detr": ("hoikit.models.checkpoints", "DETR: facebookresearch/detr, UPT detectors, HuggingFace, bare state dicts"),
    "upt": ("hoikit.models.rmlr.upt_checkpoint", "UPT: fredzzhang/upt model_state_dict (detector + interaction head)"),
}


def add_arguments(parser):
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name, (module, help_text) in CONVERTERS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_cli_arguments(p)
        p.set_defaults(_convert_run=mod.run_cli)


def run(args):
    return args._convert_run(args)
