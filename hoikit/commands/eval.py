"""``hoikit eval {hicodet,vcoco,sgg}``: dispatches to the protocol modules in hoikit.eval.

Each protocol module ``hoikit.eval.<name>`` provides ``add_cli_arguments(parser)`` and
``run_cli(args) -> int``.
"""
from __future__ import annotations

from . import add_module_subcommands, run_module_subcommand

DESCRIPTION = "Evaluate detections with the official protocols (exact numbers, fast)."
PROTOCOLS = {
    "hicodet": ("hoikit.eval.hicodet", "HICO-DET mAP (Default / Known-Object; Full / Rare / Non-rare)"),
    "vcoco": ("hoikit.eval.vcoco", "V-COCO role AP (Scenario 1 / 2) and agent AP"),
    "sgg": ("hoikit.eval.sgg", "Scene graph detection recall: R@K, ng-R@K, mR@K, zR@K, head/body/tail"),
}


def add_arguments(parser):
    add_module_subcommands(parser, "protocol", "PROTOCOL", PROTOCOLS)


run = run_module_subcommand
