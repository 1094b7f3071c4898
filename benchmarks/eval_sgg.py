"""Benchmark: SGDet recall on 26,446 images x 100 pairs with 51-column predicate scores.

Synthetic ground truth of the VG150 test size (26,446 images, 5-25 objects, 1-12 relations each)
and predictions around it (jittered boxes, 100 pairs with a [100, 51] score matrix per image), in
the concatenated NPZ layout (hoikit.eval.sgg_io). Measures hoikit.eval.sgg.evaluate (R, ng-R, mR,
ng-mR, zR, ng-zR, head/body/tail at K = 20/50/100) on the arrays dict (what ``hoikit eval sgg`` passes
for a .npz) and on per-image objects (``iter_npz_arrays``), wall and CPU time, and peak memory
(ru_maxrss; tracemalloc peak of the array path).

    python benchmarks/eval_sgg.py [--images 26446] [--runs 3] [--baseline /tmp/sgg_before.py]
        [--out benchmarks/results/eval_sgg.md]

``--baseline`` times an earlier ``hoikit/eval/sgg.py`` in the same run, interleaved (e.g.
``git show 97ba054:hoikit/eval/sgg.py > /tmp/sgg_before.py``, the per-image loop before issue 16).
"""
import argparse
import importlib.util
import os
import platform
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np

from hoikit.eval import sgg
from hoikit.eval.sgg_io import iter_npz_arrays
from hoikit.structures import Sample

PAIRS, P = 100, 50


def load_baseline(path):
    """An earlier version of hoikit/eval/sgg.py as a module (its relative imports made absolute)."""
    src = Path(path).read_text().replace("from ..", "from hoikit.").replace("from .", "from hoikit.eval.")
    spec = importlib.util.spec_from_loader("sgg_baseline", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(src, str(path), "exec"), module.__dict__)
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=26446)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline", default=None, help="an earlier hoikit/eval/sgg.py to time in the same run")
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
    load_start = os.getloadavg()[0]
    zs, lt = sgg.load_zeroshot(), sgg.load_longtail()
    runs = {"arrays": lambda: sgg.evaluate(arrays, gts, num_predicates=P, zeroshot=zs, longtail=lt),
            "objects": lambda: sgg.evaluate(iter_npz_arrays(arrays), gts, num_predicates=P, zeroshot=zs, longtail=lt)}
    if args.baseline:
        before = load_baseline(args.baseline)
        runs["baseline"] = lambda: before.evaluate(iter_npz_arrays(arrays), gts, num_predicates=P, zeroshot=zs,
                                                   longtail=lt)
    times, results = {k: [] for k in runs}, {}
    for _ in range(args.runs):                     # interleaved
        for name, fn in runs.items():
            w, c = time.perf_counter(), time.process_time()
            results[name] = fn()
            times[name].append((time.perf_counter() - w, time.process_time() - c))
    assert all(r == results["arrays"] for r in results.values()), "implementations disagree"
    res = results["arrays"]
    tracemalloc.start()
    sgg.evaluate(arrays, gts, num_predicates=P, zeroshot=zs, longtail=lt)
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inputs_mib = sum(v.nbytes for v in arrays.values()) / 2**20

    def cell(name):
        w = sorted(t[0] for t in times[name])
        c = sorted(t[1] for t in times[name])
        return f"**{w[0]:.2f} s** (median {w[len(w) // 2]:.2f} s of {len(w)}) | {c[0]:.2f} s"
    lines = ["# Scene-graph (SGDet) evaluator benchmark", "",
             f"Command: `OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/eval_sgg.py --images {args.images} "
             f"--seed {args.seed} --runs {args.runs}{' --baseline ' + args.baseline if args.baseline else ''}"
             f"{' --out ' + args.out if args.out else ''}`", "",
             f"Machine: {platform.machine()}, 2 CPU cores shared with other jobs (load average {load_start:.1f} at "
             f"start, {os.getloadavg()[0]:.1f} at end), numpy {np.__version__}, 1 thread", "",
             f"Input: {args.images:,} images x {PAIRS} pairs (predicate scores {args.images * PAIRS:,} x {P + 1}); "
             "all metrics: R, ng-R, mR, ng-mR, zR, ng-zR, head/body/tail @20/50/100.", "",
             "| `hoikit.eval.sgg.evaluate` on | wall time | CPU time |", "|---|---|---|",
             f"| the concatenated arrays (NPZ layout; `hoikit eval sgg` on a .npz) | {cell('arrays')} |",
             f"| per-image `SceneGraphPrediction` objects (`iter_npz_arrays`) | {cell('objects')} |",
             *([f"| baseline `{args.baseline}` (per-image objects) | {cell('baseline')} |"] if args.baseline else []),
             "",
             f"Peak memory: {traced:.0f} MiB allocated during one evaluation of the arrays (tracemalloc; the inputs "
             f"themselves are {inputs_mib:.0f} MiB); process max RSS {peak:.0f} MiB (includes the synthetic inputs "
             "and ground truth).  ",
             f"R@100 / ng-R@100 / mR@100 (synthetic, sanity only): {100 * res['R@100']:.2f} / "
             f"{100 * res['ng-R@100']:.2f} / {100 * res['mR@100']:.2f}; every row gives identical results.", "",
             "Wall time depends on the shared machine's load (above); CPU time is this process's own.",
             "Before issue 16 (per-image loop): 20.49 s wall, 729 MiB max RSS (load ~8)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
