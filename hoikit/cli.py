"""The ``hoikit`` command line.

Each subcommand lives in ``hoikit/commands/<name>.py`` and provides
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports happen inside ``run``
so that ``hoikit --help`` is instant. Every :class:`HoikitError` is printed as one
line (``hoikit: error: ...``) with exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from . import __version__
from .errors import HoikitError

# name -> one-line help. Order = order in --help.
COMMANDS = {
    "demo": "the main job: SynthHOI -> train detector + RmLR -> evaluate -> pictures",
    "synth": "generate a SynthHOI dataset (HICO-DET, V-COCO and VG150 formats)",
    "data": "validate a dataset and print its statistics (hoikit data check ...)",
    "train": "train a model from a YAML config with dotted overrides",
    "eval": "evaluate detections with the official HICO-DET / V-COCO / scene-graph protocols",
    "predict": "run a trained model on images (JSON + pictures)",
    "test": "evaluate a checkpoint on its dataset's test split (evaluator files + official metrics)",
    "convert": "convert DETR / UPT checkpoints into hoikit checkpoints",
    "export": "export a trained model (model directory: config.yaml + model.safetensors + classes; ONNX graphs)",
    "analyze": "analyses (DETR token similarity, Fig. 1 / Appendix E)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hoikit", description="HOI detection and scene graph generation toolkit "
                                     "(RmLR, SG2HOI+, official evaluators, SynthHOI).")
    parser.add_argument("--version", action="version", version=f"hoikit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        mod = importlib.import_module(f"hoikit.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=getattr(mod, "DESCRIPTION", help_text),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def one_line(err: BaseException) -> str:
    """The user-facing line of an error.

    torch's DataLoader re-raises a worker's exception with the same type but a message of
    "Caught X in DataLoader worker process N. Original Traceback ..."; the original message is the
    last line of that text, after the exception class name.
    """
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        name = type(err).__name__
        for prefix in (f"hoikit.errors.{name}: ", f"{name}: "):
            if last.startswith(prefix):
                return last[len(prefix):]
        return last
    return text.splitlines()[0] if text else type(err).__name__


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except HoikitError as e:
        print(f"hoikit: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hoikit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
