"""Benchmark: V-COCO evaluation of 500,000 detection records over 4,946 images.

Synthetic ground truth of the real test size (4,946 images, 1-8 COCO persons each, a quarter of
them unannotated, random actions and role boxes) and detections around it (jittered persons plus
false positives, scores with ties and NaNs). Measures hoikit.eval.vcoco.evaluate (both scenarios +
agent AP) and the .npz load, and reports peak memory (ru_maxrss).

    python benchmarks/eval_vcoco.py [--images 4946] [--records 500000] [--out benchmarks/results/eval_vcoco.md]
"""
import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hoikit.eval import vcoco
from hoikit.eval.vcoco_records import (ACTIONS, VCOCODetections, action_role_columns, official_roles,
                                       load_detections, save_detections)


def synthetic_gt(n_images, rng):
    roles = official_roles()
    n_cols = len(action_role_columns(roles))
    npers = rng.integers(1, 9, n_images)
    start = np.r_[0, np.cumsum(npers)]
    n = int(start[-1])
    xy = rng.uniform(0, 500, (n, 2))
    boxes = np.c_[xy, xy + rng.uniform(30, 200, (n, 2))].astype(np.float32)
    acts = (rng.random((n, len(ACTIONS))) < 0.15).astype(np.int8)
    acts[rng.random(n) < 0.25] = -1
    rb = np.where(rng.random((n, n_cols, 1)) < 0.8, rng.uniform(0, 600, (n, n_cols, 4)), -1).astype(np.float32)
    rb[..., 2:] = np.where(rb[..., 2:] >= 0, rb[..., :2] + 40, -1)
    ids = np.arange(1, n_images + 1) * 7
    return vcoco.VCOCOGroundTruth(ids, start, boxes, acts, rb, roles), n_cols


def synthetic_dets(gt, n_records, n_cols, rng):
    n_img = len(gt.image_ids)
    img = np.sort(rng.integers(0, n_img, n_records))
    person = gt.person_start[img] + (rng.random(n_records) * np.diff(gt.person_start)[img]).astype(np.int64)
    box = gt.person_boxes[person] + rng.normal(0, 10, (n_records, 4)).astype(np.float32)
    fp = rng.random(n_records) < 0.3
    box[fp] = rng.uniform(0, 600, (int(fp.sum()), 4))
    agent = rng.random((n_records, len(ACTIONS))).astype(np.float32)
    agent[rng.random(agent.shape) < 0.2] = 0.5  # score ties
    agent[rng.random(agent.shape) < 0.05] = np.nan
    role_s = rng.random((n_records, n_cols)).astype(np.float32)
    role_b = gt.role_boxes[person] + rng.normal(0, 10, (n_records, n_cols, 4)).astype(np.float32)
    perm = rng.permutation(n_records)  # records in no particular image order
    return VCOCODetections(gt.image_ids[img][perm], box[perm], agent[perm], role_b[perm], role_s[perm])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4946)
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    gt, n_cols = synthetic_gt(args.images, rng)
    dets = synthetic_dets(gt, args.records, n_cols, rng)
    t0 = time.perf_counter()
    res = vcoco.evaluate(gt, dets)
    t_eval = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        save_detections(dets, Path(tmp) / "d.npz")
        t0 = time.perf_counter()
        load_detections(Path(tmp) / "d.npz")
        t_load = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = ["# V-COCO evaluator benchmark", "",
             f"Command: `python benchmarks/eval_vcoco.py --images {args.images} --records {args.records} "
             f"--seed {args.seed}{' --out ' + args.out if args.out else ''}`", "",
             f"Machine: {platform.processor() or platform.machine()}, shared 2-core CPU, numpy {np.__version__}, "
             "1 thread", "",
             "| what | value |", "|---|---|",
             f"| images / persons | {args.images} / {len(gt.person_boxes)} |",
             f"| detection records | {args.records:,} |",
             f"| evaluate (agent AP + role AP S1 + S2, 77 rankings) | {t_eval:.2f} s |",
             f"| load .npz detections | {t_load:.2f} s |",
             f"| peak memory (process max RSS) | {peak:.0f} MiB |",
             f"| role mAP S1 / S2, agent mAP (synthetic, sanity only) | {100 * res['scenario_1']['mean_role_ap']:.2f} / "
             f"{100 * res['scenario_2']['mean_role_ap']:.2f}, {100 * res['mean_agent_ap']:.2f} |", "",
             "Target (issue 3): under 20 s. The official vsrl_eval.py scans every record for every image "
             "(O(images x records)); the spec reports ~30 s for 4.5k records and hours for ~500k."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    sys.exit(main())
