"""The SynthHOI detector against the detector issue's targets: COCO AP / AP50 (pycocotools, every drawn
instance of the 500 default test images), per-class AP50 and the share of test HOI pairs whose human and
object both have a detection of the right class with IoU >= 0.5 and score >= 0.2.

    python benchmarks/synth_detector.py --detector hoikit/assets/synth_deformable.pt \\
        --data data/synthhoi --out benchmarks/results/synth_detector.md

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
    ap.add_argument("--detector", default="hoikit/assets/synth_deformable.pt")
    ap.add_argument("--data", default="data/synthhoi")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    t0 = time.time()
    r = detector_ap(args.detector, args.data)
    rows = [("COCO AP (IoU 0.50:0.95)", r["AP"], None), ("COCO AP50", r["AP50"], TARGETS["AP50"])]
    rows += [(f"AP50 {name}", v, TARGETS.get(name)) for name, v in r["per_class"].items()]
    rows.append((f"test HOI pairs reachable (of {r['pairs']})", r["reachable"], TARGETS["reachable"]))
    rows.append((f"rare pairs reachable (of {r['pairs_rare']})", r["reachable_rare"], None))
    lines = ["| metric | value | target | met |", "|---|---|---|---|"]
    for name, v, t in rows:
        lines.append(f"| {name} | {v:.2f} | {'' if t is None else f'>= {t:g}'} | "
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
