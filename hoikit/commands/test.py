"""``hoikit test --checkpoint CKPT [CONFIG] [key=value ...] [--split test] [--out DIR]``.

Runs a trained or converted hoikit checkpoint (``hoikit train``, ``hoikit convert upt``) over the
evaluation split of its dataset and scores it with the dataset's official protocol:

* HICO-DET / SynthHOI: ``DIR/detections.npz`` (``hoikit eval hicodet`` format), Default and
  Known-Object mAP (Full / Rare / Non-rare);
* V-COCO: ``DIR/detections.pkl`` (official s-gupta/v-coco records), role AP Scenario 1 / 2 and
  agent AP; needs ``data.vcoco_json``, ``data.coco_json`` and ``data.vcoco_ids``;
* scene graphs (SG2HOI+): ``DIR/scene_graphs.npz`` (``hoikit eval sgg`` format), R@K, mR@K, zR@K.

The data comes from the checkpoint's config; CONFIG (a YAML or preset) replaces its ``data`` and
``eval`` sections and dotted overrides change any key, e.g. ``data.test_anno=... data.test_images=...``.
Prints the tables and writes ``DIR/metrics.json``. Under ``torchrun --nproc_per_node N -m hoikit.cli
test ...`` the images are split across the processes and gathered on rank 0.
"""
from __future__ import annotations

DESCRIPTION = __doc__


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="hoikit checkpoint (hoikit train / convert)")
    parser.add_argument("config", nargs="?", default=None,
                        help="optional YAML file or preset whose data/eval sections replace the checkpoint's")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.test_anno=FILE data.test_images=DIR")
    parser.add_argument("--split", default="test", choices=["test", "train"], help="split to evaluate (default test)")
    parser.add_argument("--out", default="test_results", help="output directory (default ./test_results)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1, as UPT)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--skip-empty", action="store_true",
                        help="HICO-DET: skip the annotation file's `empty` images (UPT's evaluation)")


def run(args) -> int:
    from ..engine import distributed as D
    from ..engine.testing import run_test

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:   # no CONFIG given: the first positional is an override
        config, overrides = None, [config] + overrides
    try:
        run_test(args.checkpoint, config, overrides, args.split, args.out, args.batch_size, args.device,
                 args.skip_empty, report=print)
    finally:
        D.cleanup()
    return 0
