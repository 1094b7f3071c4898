"""``hoikit export --checkpoint CKPT --format FORMAT --out DIR``: a trained model in a deployable form.

Formats:
  dir   config.yaml + model.safetensors + classes.json, loadable without pickle by hoikit.load(DIR),
        hoikit predict --checkpoint DIR and hoikit test --checkpoint DIR (docs/formats.md, "Model directories")
  onnx  DETR or Deformable DETR (``model.arch=detr``) and UPT / RmLR (``model.arch=rmlr``) as ONNX graphs plus a
        ``manifest.json`` (docs/onnx.md); run them with ``hoikit predict IMAGE --onnx DIR``. Needs the
        extra ``pip install 'hoikit[onnx]'``.
"""
from __future__ import annotations

import importlib

DESCRIPTION = __doc__
# format -> (module, function(checkpoint, out) -> {name: written path}, help)
EXPORTERS = {
    "dir": ("hoikit.engine.inference", "export_model_dir", "model directory: config.yaml, model.safetensors, classes.json"),
    "onnx": ("hoikit.deploy.onnx_export", "export_onnx_files", "ONNX graphs + manifest.json (onnxruntime runner: "
             "hoikit predict --onnx DIR)"),
}


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="hoikit checkpoint (hoikit train / demo / convert) or model directory")
    parser.add_argument("--format", required=True, choices=sorted(EXPORTERS),
                        help="; ".join(f"{k}: {v[2]}" for k, v in EXPORTERS.items()))
    parser.add_argument("--out", required=True, help="output directory (must not exist or be empty)")


def run(args) -> int:
    module, function, _ = EXPORTERS[args.format]
    written = getattr(importlib.import_module(module), function)(args.checkpoint, args.out)
    for path in written.values():
        print(f"wrote {path}")
    return 0
