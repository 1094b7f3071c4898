"""``hoikit convert detr``: DETR files (official, UPT detectors, Hugging Face, bare) -> hoikit checkpoints."""
from __future__ import annotations

import argparse


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, help="DETR file: official .pth, UPT .pth, HuggingFace "
                        ".bin/.safetensors, hoikit checkpoint or bare state dict; or a HuggingFace DETR "
                        "model directory (config.json + model.safetensors; its id2label names are kept)")
    parser.add_argument("--out", required=True, help="hoikit checkpoint to write")
    parser.add_argument("--classes", default=None, choices=["generic", "hicodet", "vcoco"],
                        help="class names stored in the checkpoint meta (must match num_classes); default: the "
                        "source's names (HuggingFace id2label) when it has them, else generic class_<i>")
    parser.add_argument("--dc5", action="store_true", default=None,
                        help="the file is a DC5 model (weights cannot tell; official files say so in args)")


def run_cli(args) -> int:
    from ..convert.detr import convert_detr_checkpoint   # here: `hoikit --help` / `hoikit eval` must not import torch
    info = convert_detr_checkpoint(args.src, args.out, args.classes, args.dc5)
    dc5 = ("yes" if info["dilation"] else "no") + ("" if info["dilation_known"] else " (assumed; pass --dc5 if not)")
    print(f"source format: {info['format']}")
    print(f"backbone:      {info['backbone']}  DC5: {dc5}")
    print(f"num_classes:   {info['num_classes']} (+1 no-object)")
    names = info.get("meta_objects", [])
    print(f"class names:   {', '.join(names[:6])}{', ...' if len(names) > 6 else ''}")
    print(f"transformer:   d={info['hidden_dim']} heads={info['nheads']} enc={info['enc_layers']} "
          f"dec={info['dec_layers']} ffn={info.get('dim_feedforward')} queries={info['num_queries']}")
    print(f"wrote {info['out']}")
    return 0
