"""``hoikit data check``: validate a dataset before a long run and print its statistics."""
from __future__ import annotations

import json
from pathlib import Path

DESCRIPTION = """Validate a dataset and print its statistics.

  hoikit data check --format hicodet --anno instances_test2015.json [--images DIR] [--json OUT]
  hoikit data check --format vg --anno VG-SGG-with-attri.h5 --dicts VG-SGG-dicts-with-attri.json \\
                    --image-data image_data.json --split test

Every problem is one line naming the file, the image index and the field. Exit status: 0 when
there is no error (warnings allowed), 1 when there are errors, 2 when the file cannot be read at all."""


def add_arguments(parser):
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = sub.add_parser("check", help="validate annotations (and images) and print statistics",
                       description=DESCRIPTION, formatter_class=parser.formatter_class)
    p.add_argument("--format", required=True, choices=["hicodet", "vcoco", "vg", "custom", "synth", "coco"],
                   help="annotation format (synth = SynthHOI's HICO-DET-format file; coco = COCO instances, detection only)")
    p.add_argument("--anno", required=True, help="annotation file (vg: VG-SGG-with-attri.h5)")
    p.add_argument("--images", help="image directory: decode every image in full (finds missing, truncated and "
                                    "corrupt files)")
    p.add_argument("--workers", type=int, default=0, help="threads decoding images (default: one per CPU)")
    p.add_argument("--dicts", help="vg: VG-SGG-dicts-with-attri.json")
    p.add_argument("--image-data", help="vg: image_data.json")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="vg: split (default test)")
    p.add_argument("--keep-empty-rels", action="store_true",
                   help="vg: keep images without relations (default: dropped, as Scene-Graph-Benchmark)")
    p.add_argument("--classes", help="custom: classes JSON {objects, verbs, [object_ids, verb_ids]}")
    p.add_argument("--json", metavar="OUT", help="write statistics and all problems as JSON")
    p.add_argument("--max-problems", type=int, default=20, help="problems printed (default 20)")


def run(args) -> int:
    from ..data.check import check_dataset

    kw = {}
    if args.format == "vg":
        kw = dict(dicts=args.dicts, image_data=args.image_data, split=args.split,
                  filter_empty_rels=not args.keep_empty_rels)
    elif args.format == "custom" and args.classes:
        kw = dict(classes=args.classes)
    if args.workers < 0:
        from ..errors import HoikitError

        raise HoikitError(f"--workers {args.workers}: must be >= 0 (0 = one per CPU)")
    report = check_dataset(args.format, args.anno, args.images, workers=args.workers, **kw)
    print(report.format(args.max_problems))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=1))
    return 1 if report.num_errors else 0
