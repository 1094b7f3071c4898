"""``hoikit convert upt``: UPT files (fredzzhang/upt ``model_state_dict``) -> hoikit checkpoints."""
from __future__ import annotations

import argparse


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, help="UPT checkpoint (.pth with model_state_dict)")
    parser.add_argument("--out", required=True, help="hoikit checkpoint to write")
    parser.add_argument("--classes", default="auto", choices=["auto", "hicodet", "vcoco"],
                        help="dataset tables stored in the checkpoint (auto: from the number of verbs)")
    parser.add_argument("--detector-classes", default="auto",
                        help="the detector's class list (auto: UPT's, 80 = coco80 (COCO order, person 0), "
                        "91 = coco91 (COCO category ids)); or dataset | coco80 | coco91 | name,name,...")


def run_cli(args) -> int:
    from ..convert.upt import convert_upt_checkpoint   # here: `hoikit --help` / `hoikit eval` must not import torch
    info = convert_upt_checkpoint(args.src, args.out, args.classes, args.detector_classes)
    d = info["detr"]
    print(f"source format: upt ({info['num_tensors']} tensors, all matched)")
    print(f"detector:      DETR {d['backbone']} num_classes={d['num_classes']} (+1) queries={d['num_queries']}")
    print(f"interaction:   {info['num_verbs']} verbs ({info['dataset']}), pair token {info['representation_size']}, "
          f"{info['num_coop_layers']} cooperative layers")
    print(f"classes:       detector classes {info['detector_classes']} -> {info['dataset']} objects (by name)")
    print(f"wrote {info['out']}")
    return 0
