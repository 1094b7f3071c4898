"""``hoikit convert deformable``: Deformable DETR / H-Deformable-DETR files -> hoikit checkpoints."""
from __future__ import annotations

import argparse


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, help="official Deformable DETR / H-Deformable-DETR .pth, "
                        "PViC/hicodet H-DETR file, hoikit checkpoint or bare state dict")
    parser.add_argument("--out", required=True, help="hoikit checkpoint to write")
    parser.add_argument("--classes", default="generic", choices=["generic", "hicodet", "vcoco"],
                        help="class names stored in the checkpoint meta (must match the class rows)")


def run_cli(args) -> int:
    from ..convert.deformable import convert_deformable_checkpoint   # here: `hoikit --help` / `hoikit eval` must not import torch
    info = convert_deformable_checkpoint(args.src, args.out, args.classes)
    variant = "two-stage" if info["two_stage"] else ("box refine" if info["with_box_refine"] else "plain")
    print(f"source format: {info['format']}")
    print(f"backbone:      {info['backbone']}  levels: {info['num_feature_levels']}  variant: {variant}"
          + ("  mixed selection" if info.get("mixed_selection") else ""))
    print(f"num_classes:   {info['num_classes']} (sigmoid)")
    print(f"transformer:   d={info['hidden_dim']} heads={info['nheads']} enc={info['enc_layers']} "
          f"dec={info['dec_layers']} ffn={info.get('dim_feedforward')} queries={info['num_queries']}"
          f" (+{info.get('num_queries_one2many', 0)} one-to-many, dropped at inference)")
    print(f"wrote {info['out']}")
    return 0
