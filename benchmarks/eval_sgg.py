"""Benchmark: SGDet recall on 26,446 images x 100 pairs with 51-column predicate scores.

Synthetic ground truth of the VG150 test size (26,446 images, 5-25 objects, 1-12 relations each)
and predictions around it (jittered boxes, 100 pairs with a [100, 51] score matrix per image), in
the concatenated NPZ layout (hoikit.eval.sgg_io). Measures hoikit.eval.sgg.evaluate (R, ng-R, mR,
ng-mR, zR, ng-zR, head/body/tail at K = 20/50/100) and peak memory (ru_maxrss).

    python benchmarks/eval_sgg.py [--images 26446] [--out benchmarks/results/eval_sgg.md]
"""
import argparse
import platform
import resource
import time
from pathlib import Path

import numpy as np

from hoikit.eval import sgg
from hoikit.eval.sgg_io import iter_npz_arrays
from hoikit.structures import Sample

PAIRS, P = 100, 50


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=26446)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    gts, boxes, labels, scores, pairs = [], [], [], [], []
    for i in range(args.images):
        n = int(rng.integers(5, 26))
        xy = rng.uniform(0, 800, (n, 2))
        b = np.c_[xy, xy + rng.uniform(10, 300, (n, 2))].astype(np.float32)
        lab = rng.integers(0, 150, n)
        r = int(rng.integers(1, 13))
        rel = np.c_[rng.integers(0, n, (r, 2)), rng.integers(0, P, r)]
        gts.append(Sample(i, f"{i}.jpg", (1100, 1100), boxes=b, labels=lab, relations=rel))
        boxes.append(b + rng.normal(0, 6, b.shape).astype(np.float32))
        labels.append(np.where(rng.random(n) < 0.7, lab, rng.integers(0, 150, n)))
        scores.append(rng.random(n).astype(np.float32))
        pr = rng.integers(0, n, (PAIRS, 2))
        pr[:r] = rel[:, :2]
        pairs.append(pr)
    ps = rng.random((args.images * PAIRS, P + 1), dtype=np.float32)
    arrays = dict(image=np.arange(args.images), boxes=np.concatenate(boxes), labels=np.concatenate(labels),
                  scores=np.concatenate(scores), pairs=np.concatenate(pairs), predicate_scores=ps,
                  box_offsets=np.r_[0, np.cumsum([len(b) for b in boxes])],
                  pair_offsets=np.arange(args.images + 1) * PAIRS)
    t0 = time.perf_counter()
    res = sgg.evaluate(iter_npz_arrays(arrays), gts, num_predicates=P, zeroshot=sgg.load_zeroshot(),
                       longtail=sgg.load_longtail())
    t_eval = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = ["# Scene-graph (SGDet) evaluator benchmark", "",
             f"Command: `python benchmarks/eval_sgg.py --images {args.images} --seed {args.seed}"
             f"{' --out ' + args.out if args.out else ''}`", "",
             f"Machine: {platform.machine()}, shared 2-core CPU, numpy {np.__version__}, 1 thread", "",
             "| what | value |", "|---|---|",
             f"| images x pairs | {args.images:,} x {PAIRS} (predicate scores {args.images * PAIRS:,} x {P + 1}) |",
             f"| evaluate (R, ng-R, mR, ng-mR, zR, ng-zR, head/body/tail @20/50/100) | {t_eval:.2f} s |",
             f"| peak memory (process max RSS, includes the synthetic inputs) | {peak:.0f} MiB |",
             f"| R@100 / ng-R@100 / mR@100 (synthetic, sanity only) | {100 * res['R@100']:.2f} / "
             f"{100 * res['ng-R@100']:.2f} / {100 * res['mR@100']:.2f} |", "",
             "Target (issue 3): under 60 s."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
