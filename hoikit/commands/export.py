"""``hoikit export --checkpoint CKPT --format onnx --out DIR``.

``onnx``: DETR (``model.arch=detr``) and UPT / RmLR (``model.arch=rmlr``) as ONNX graphs plus a
``manifest.json`` (docs/onnx.md); run them with ``hoikit predict IMAGE --onnx DIR``. Needs the
extra ``pip install 'hoikit[onnx]'``.
"""
from __future__ import annotations

DESCRIPTION = __doc__
FORMATS = ("onnx",)


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="hoikit checkpoint (hoikit train / demo / convert)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="export format")
    parser.add_argument("--out", required=True, help="new (or empty) output directory")


def run(args) -> int:
    if args.format == "onnx":
        from ..deploy.onnx_export import export_onnx

        manifest = export_onnx(args.checkpoint, args.out)
        print(f"wrote {manifest.parent} (ONNX graphs + {manifest.name}); run: hoikit predict IMAGE --onnx {args.out}")
    return 0
