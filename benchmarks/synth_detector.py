"""The SynthHOI detector against the detector issue's targets: COCO AP / AP50 (pycocotools, every drawn
instance of the 500 default test images), per-class AP50 and the share of test HOI pairs whose human and
object both have a detection of the right class with IoU >= 0.5 and a score above the HOI model's box
score threshold (``synth_rmlr.yaml``'s ``box_score_thresh``; also at 0.05 / 0.1 / 0.2), with Deformable
DETR's official post-processing (top-100, no NMS) and with the class-wise NMS the preset uses
(``model.detr.nms_thresh``, 0.5).

    python benchmarks/synth_detector.py --detector hoikit/assets/synth_deformable_384.pt \\
        --data data/synthhoi --out benchmarks/results/synth_detector.md [--nms 0 0.5]

The data directory must hold the default SynthHOI (``hoikit synth --out data/synthhoi``: seed 0,
2,000 / 500 images, 256 px); it is generated when missing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth_rmlr import detector_ap  # noqa: E402

TARGETS = {"AP50": 60.0, "person": 90.0, "ball": 40.0, "cup": 40.0, "book": 40.0, "reachable": 80.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="hoikit/assets/synth_deformable_384.pt")
    ap.add_argument("--data", default="data/synthhoi")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--nms", type=float, nargs="+", default=[0.0, 0.5],
                    help="class-wise NMS thresholds to report (0 = official top-100; one column each)")
    args = ap.parse_args(argv)
    t0 = time.time()
    runs = [detector_ap(args.detector, args.data, nms_thresh=n) for n in args.nms]
    names = ["COCO AP (IoU 0.50:0.95)", "COCO AP50"] + [f"AP50 {c}" for c in runs[0]["per_class"]]
    r0 = runs[0]
    names += [f"test HOI pairs reachable at score >= {r0['score_thresh']:g} (synth_rmlr; of {r0['pairs']})",
              f"rare pairs reachable (of {r0['pairs_rare']})"]
    names += [f"test HOI pairs reachable at score >= {t:g}" for t in r0["reachable_at"]]
    targets = [None, TARGETS["AP50"]] + [TARGETS.get(c) for c in r0["per_class"]] + [TARGETS["reachable"], None]
    targets += [None] * len(r0["reachable_at"])
    values = [[r["AP"], r["AP50"], *r["per_class"].values(), r["reachable"], r["reachable_rare"],
               *r["reachable_at"].values()] for r in runs]
    head = " | ".join("no NMS (official)" if n == 0 else f"NMS {n:g}" for n in args.nms)
    lines = [f"| metric | {head} | target | met (last column) |", "|---|" + "---|" * (len(runs) + 2)]
    for i, (name, t) in enumerate(zip(names, targets)):
        v = values[-1][i]
        cells = " | ".join(f"{vals[i]:.2f}" for vals in values)
        lines.append(f"| {name} | {cells} | {'' if t is None else f'>= {t:g}'} | "
                     f"{'' if t is None else ('yes' if v >= t else 'no')} |")
    load = os.getloadavg()
    text = (f"Detector `{args.detector}` on `{args.data}` (test split), {time.time() - t0:.0f} s, load average "
            f"{load[0]:.1f}.\n\n" + "\n".join(lines) + "\n")
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
