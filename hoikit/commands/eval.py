"""``hoikit eval {hicodet,vcoco,sgg}``: score a detection file with an official protocol.

Argument parsing and printing only; the protocols are computed by :mod:`hoikit.eval.hicodet`,
:mod:`hoikit.eval.vcoco` and :mod:`hoikit.eval.sgg`, which return result dicts.
"""
from __future__ import annotations

import time

from ..data.visual_genome import VisualGenomeReader
from ..data.zero_shot import SETTINGS
from ..eval import hicodet, sgg, vcoco
from ..eval.hicodet_io import DETECTION_KEYS, load_detections
from ..eval.report import write_json
from ..eval.sgg_io import load_prediction_arrays

DESCRIPTION = "Evaluate detections with the official protocols (exact numbers, fast)."


def add_hicodet_arguments(parser) -> None:
    """Arguments of ``hoikit eval hicodet``."""
    parser.add_argument("--pred", required=True, help="detections: .npz (arrays image, hoi, score, box_h, "
                        "box_o) or .json ({\"detections\": [...]}); see docs/formats.md")
    parser.add_argument("--anno", required=True, help="HICO-DET-format annotation file, e.g. instances_test2015.json")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the metrics (percent) to this JSON file")
    parser.add_argument("--zero-shot", default="", choices=["", *SETTINGS], metavar="SETTING",
                        help="also report Unseen / Seen / Full mAP of a zero-shot setting: rf_uc | nf_uc | uo | uv")
    parser.add_argument("--skip-empty", action="store_true",
                        help="drop detections in the file's `empty` images (UPT) instead of counting them as FP")


def run_hicodet(args) -> int:
    """``hoikit eval hicodet``: print the table, optionally write JSON. Errors raise DataError."""
    t0 = time.perf_counter()
    evaluator = hicodet.HICODetEvaluator(args.anno, skip_empty=args.skip_empty, zero_shot=args.zero_shot)
    det = load_detections(args.pred)
    results = evaluator.evaluate(*(det[k] for k in DETECTION_KEYS), source=str(args.pred))
    print(hicodet.format_results(results))
    s = results["setting"]
    print(f"{s['num_detections']} detections, {s['num_classes']} classes, "
          f"empty images {'skipped' if s['skip_empty'] else 'counted (official)'}, "
          f"{time.perf_counter() - t0:.2f} s")
    if args.json:
        print(f"wrote {write_json(args.json, results)}")
    return 0


def add_vcoco_arguments(parser) -> None:
    """Arguments of ``hoikit eval vcoco``."""
    parser.add_argument("--pred", required=True, help="detections: official records .pkl/.json, or columns .npz")
    parser.add_argument("--vcoco-json", required=True, help="s-gupta/v-coco vcoco_<split>.json")
    parser.add_argument("--coco", required=True, help="COCO-format instances with all persons of the split")
    parser.add_argument("--ids", required=True, help="<split>.ids (COCO image ids, evaluation order)")
    parser.add_argument("--json", default=None, help="write the results here (percent)")


def run_vcoco(args) -> int:
    """``hoikit eval vcoco``: print the per-role table, optionally write the results (percent) as JSON."""
    gt = vcoco.load_ground_truth(args.vcoco_json, args.coco, args.ids)
    res = vcoco.evaluate(gt, vcoco.load_detections(args.pred))
    print(vcoco.format_table(res))
    if args.json:
        print(f"wrote {write_json(args.json, vcoco.results_percent(res))}")
    return 0


def add_sgg_arguments(parser) -> None:
    """Arguments of ``hoikit eval sgg``."""
    parser.add_argument("--pred", required=True, help="predictions .json or .npz (docs/formats.md)")
    parser.add_argument("--anno", required=True, help="VG-SGG-with-attri.h5 (or SynthHOI's VG-format h5)")
    parser.add_argument("--dicts", required=True, help="VG-SGG-dicts-with-attri.json")
    parser.add_argument("--image-data", required=True, help="image_data.json")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--zeroshot", default=None, help="zero-shot triplets JSON (default: VG150 list)")
    parser.add_argument("--longtail", default=None, help="head/body/tail split JSON (default: VG150 split)")
    parser.add_argument("--json", default=None, help="write the results here (percent)")


def run_sgg(args) -> int:
    """``hoikit eval sgg``: print the recall table, optionally write the results (percent) as JSON."""
    reader = VisualGenomeReader(args.anno, args.dicts, args.image_data, split=args.split)
    res = sgg.evaluate(load_prediction_arrays(args.pred, len(reader)), reader,
                       num_predicates=len(reader.meta.predicates), zeroshot=sgg.load_zeroshot(args.zeroshot),
                       longtail=sgg.load_longtail(args.longtail))
    print(sgg.format_results(res))
    if args.json:
        print(f"wrote {write_json(args.json, sgg.results_percent(res))}")
    return 0


# protocol -> (help, add arguments, run)
PROTOCOLS = {
    "hicodet": ("HICO-DET mAP (Default / Known-Object; Full / Rare / Non-rare)", add_hicodet_arguments, run_hicodet),
    "vcoco": ("V-COCO role AP (Scenario 1 / 2) and agent AP", add_vcoco_arguments, run_vcoco),
    "sgg": ("Scene graph detection recall: R@K, ng-R@K, mR@K, zR@K, head/body/tail", add_sgg_arguments, run_sgg),
}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    for name, (help_text, add, run_protocol) in PROTOCOLS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(_protocol_run=run_protocol)


def run(args) -> int:
    return args._protocol_run(args)
