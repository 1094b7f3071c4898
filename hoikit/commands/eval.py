"""``hoikit eval {hicodet,vcoco,sgg}``: dispatches to the protocol modules in hoikit.eval.

Each protocol module ``hoikit.eval.<name>`` provides ``add_cli_arguments(parser)`` and
``run_cli(args) -> int``.
"""
from __future__ import annotations

import importlib

DESCRIPTION = "Evaluate detections with the official protocols (exact numbers, fast)."
PROTOCOLS = {
    "hicodet": "HICO-DET mAP (Default / Known-Object; Full / Rare / Non-rare)",
    "vcoco": "V-COCO role AP (Scenario 1 / 2) and agent AP",
    "sgg": "Scene graph detection recall: R@K, ng-R@K, mR@K, zR@K, head/body/tail",
}


def add_arguments(parser):
    sub = parser.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    for name, help_text in PROTOCOLS.items():
        try:
            mod = importlib.import_module(f"hoikit.eval.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"hoikit.eval.{name}":
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_cli_arguments(p)
        p.set_defaults(_protocol_run=mod.run_cli)


def run(args):
    return args._protocol_run(args)
