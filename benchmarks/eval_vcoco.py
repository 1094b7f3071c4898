"""Benchmark: V-COCO evaluation of 500,000 detection records over 4,946 images.

Synthetic ground truth of the real test size (4,946 images, 1-8 COCO persons each, a quarter of
them unannotated, random actions and role boxes) and detections around it (jittered persons plus
false positives, scores with ties and NaNs). Measures hoikit.eval.vcoco.evaluate (both scenarios +
agent AP), its peak traced memory (tracemalloc, numpy buffers included), the .npz load and the
load of official record files (.pkl / .json, ``--load-records`` records).

With ``--baseline REV`` the evaluator and loader of git revision REV are imported from
``git show`` as temporary modules and timed in the same run, interleaved with the current ones
(the machine is shared, so only same-run ratios are meaningful); their results must be identical.

    python benchmarks/eval_vcoco.py [--images 4946] [--records 500000] [--baseline REV] [--out FILE]
"""
import argparse
import importlib.util
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from hoikit.eval import vcoco
from hoikit.eval import vcoco_records
from hoikit.eval.vcoco_records import (ACTIONS, VCOCODetections, action_role_columns, official_roles,
                                       load_detections, save_detections)

ROOT = Path(__file__).resolve().parents[1]


def import_revision(rev: str, module: str, tmp: Path):
    """hoikit.eval.<module> as of git revision ``rev``, as a sibling module (relative imports work)."""
    text = subprocess.run(["git", "show", f"{rev}:hoikit/eval/{module}.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    path = tmp / f"{module}_baseline.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"hoikit.eval._{module}_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


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


def flat_results(res):
    """All APs of an evaluate() result as one float64 vector (for bit-identity checks)."""
    vals = list(res["agent_ap"].values()) + [res["mean_agent_ap"]]
    for s in (1, 2):
        r = res[f"scenario_{s}"]
        vals += list(r["role_ap"].values()) + [r["mean_role_ap"], r["mean_role_ap_no_point"]]
    return np.array(vals, np.float64)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def traced_peak(fn, *args):
    """Peak traced allocation (MiB) during fn(*args), numpy buffers included."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4946)
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved timing rounds")
    ap.add_argument("--baseline", default=None, help="git revision whose evaluator/loader to time alongside")
    ap.add_argument("--load-records", type=int, default=100_000, help="records in the .pkl/.json load test (0: skip)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    gt, n_cols = synthetic_gt(args.images, rng)
    dets = synthetic_dets(gt, args.records, n_cols, rng)
    tmp_dir = tempfile.TemporaryDirectory()
    tmp = Path(tmp_dir.name)
    old = old_rec = None
    if args.baseline:
        old, old_rec = import_revision(args.baseline, "vcoco", tmp), import_revision(args.baseline, "vcoco_records", tmp)
    t_new, t_old = [], []
    for _ in range(args.repeats):  # interleaved: baseline, current, baseline, current, ...
        if old is not None:
            t, res_old = timed(old.evaluate, gt, dets)
            t_old.append(t)
        t, res = timed(vcoco.evaluate, gt, dets)
        t_new.append(t)
    rows = [("images / persons", f"{args.images} / {len(gt.person_boxes)}"),
            ("detection records", f"{args.records:,}"),
            ("evaluate, current (agent AP + role AP S1 + S2), per round",
             ", ".join(f"{t:.2f} s" for t in t_new)),
            ("evaluate peak traced memory, current", f"{traced_peak(vcoco.evaluate, gt, dets):.0f} MiB")]
    if old is not None:
        same = np.array_equal(flat_results(res), flat_results(res_old), equal_nan=True)
        rows += [(f"evaluate, baseline {args.baseline}, per round", ", ".join(f"{t:.2f} s" for t in t_old)),
                 (f"evaluate peak traced memory, baseline", f"{traced_peak(old.evaluate, gt, dets):.0f} MiB"),
                 ("speed-up (median baseline / median current)",
                  f"{statistics.median(t_old) / statistics.median(t_new):.1f}x"),
                 (f"results identical to baseline (all {len(flat_results(res))} APs and means, bitwise)", str(same))]
        if not same:
            print("MISMATCH between baseline and current results", file=sys.stderr)
    save_detections(dets, tmp / "d.npz")
    rows.append(("load .npz detections", f"{timed(load_detections, tmp / 'd.npz')[0]:.2f} s"))
    if args.load_records:
        part = VCOCODetections(*(getattr(dets, k)[:args.load_records] for k in
                                 ("image_id", "person_box", "agent_scores", "role_boxes", "role_scores")))
        for suffix in (".pkl", ".json"):
            path = tmp / f"d{suffix}"
            save_detections(part, path)
            size = path.stat().st_size / 2 ** 20
            t_cur, t_base = [], []
            for _ in range(args.repeats):
                if old_rec is not None:
                    t, base_d = timed(old_rec.load_detections, path)
                    t_base.append(t)
                t, cur_d = timed(load_detections, path)
                t_cur.append(t)
            text = ", ".join(f"{t:.2f} s" for t in t_cur)
            if old_rec is not None:
                same = all(np.array_equal(getattr(cur_d, k), getattr(base_d, k), equal_nan=True) for k in
                           ("image_id", "person_box", "agent_scores", "role_boxes", "role_scores"))
                text += (f" (baseline {', '.join(f'{t:.2f} s' for t in t_base)}; "
                         f"{statistics.median(t_base) / statistics.median(t_cur):.1f}x; identical: {same})")
            rows.append((f"load {suffix} records ({args.load_records:,} records, {size:.0f} MiB), per round", text))
            path.unlink()
    rows.append(("role mAP S1 / S2, agent mAP (synthetic, sanity only)",
                 f"{100 * res['scenario_1']['mean_role_ap']:.2f} / {100 * res['scenario_2']['mean_role_ap']:.2f}, "
                 f"{100 * res['mean_agent_ap']:.2f}"))
    cmd = " ".join(["python benchmarks/eval_vcoco.py"] + sys.argv[1:])
    lines = ["# V-COCO evaluator benchmark", "", f"Command: `{cmd}`", "",
             f"Machine: {platform.processor() or platform.machine()}, shared 2-core CPU, numpy {np.__version__}, "
             f"load average at start / end: {LOAD0} / {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}", "",
             "| what | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [
             "", "Target (issue 3): under 20 s. The official vsrl_eval.py scans every record for every image "
             "(O(images x records)); the spec reports ~30 s for 4.5k records and hours for ~500k."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    tmp_dir.cleanup()


LOAD0 = " ".join(f"{x:.1f}" for x in __import__("os").getloadavg())

if __name__ == "__main__":
    sys.exit(main())
