"""``hoikit synth``: generate a SynthHOI dataset (HICO-DET, V-COCO and VG150 formats)."""
from __future__ import annotations

import time

DESCRIPTION = """Generate SynthHOI, the embedded procedural HOI / scene-graph dataset (docs/synthhoi.md).

Writes DIR/images/{train,test}/, DIR/hicodet/, DIR/vcoco/, DIR/vg/ and DIR/synthhoi.json.
The same arguments give byte-identical annotation files.

example:  hoikit synth --out data/synth --train 2000 --test 500 --seed 0 --size 256 --workers 2"""


def add_arguments(parser):
    parser.add_argument("--out", required=True, help="dataset directory to write")
    parser.add_argument("--train", type=int, default=2000, help="number of training images (default 2000)")
    parser.add_argument("--test", type=int, default=500, help="number of test images (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=256, help="long side of the images in pixels (default 256)")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes (default 1)")
    parser.add_argument("--image-format", choices=("jpg", "png"), default="jpg", help="image files (default jpg)")


def run(args) -> int:
    from hoikit.data.synth import generate_synthhoi

    t0 = time.perf_counter()
    paths = generate_synthhoi(args.out, args.train, args.test, seed=args.seed, size=args.size,
                              workers=args.workers, image_format=args.image_format)
    print(f"SynthHOI: {args.train} train + {args.test} test images ({args.size} px, seed {args.seed}) "
          f"in {time.perf_counter() - t0:.1f} s")
    for key in ("hicodet_train", "hicodet_test", "vcoco_gt_test", "coco_test", "vg_h5", "manifest"):
        print(f"  {key:14s} {paths[key]}")
    return 0
