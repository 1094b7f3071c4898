"""SynthHOI generation speed: wall and CPU time for a full default-size dataset.

    python benchmarks/synth_speed.py --train 2000 --test 500 --size 256 --workers 2

Prints a markdown table (and the rare-class count of the generated training split). The machine
is shared: CPU time (user + sys of this process and its workers) is the stable number; wall time
depends on what else runs.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from hoikit.data.synth import generate_synthhoi

    rows = []
    for w in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            c0, t0 = _cpu(), time.perf_counter()
            paths = generate_synthhoi(Path(tmp) / "d", args.train, args.test, args.seed, args.size, workers=w)
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            d = json.load(open(paths["hicodet_train"]))
            man = json.load(open(paths["manifest"]))
            rows.append((w, wall, cpu, man["pairs"]["train"], man["pairs"]["test"], len(d["rare"]), len(d["correspondence"])))
    n = args.train + args.test
    print(f"SynthHOI {args.train} train + {args.test} test images, {args.size} px, seed {args.seed}; "
          f"machine: {os.cpu_count()} CPUs (shared), python {sys.version.split()[0]}\n")
    print("| workers | wall s | CPU s (all processes) | ms CPU / image | train pairs | test pairs | rare / HOI classes |")
    print("|---|---|---|---|---|---|---|")
    for w, wall, cpu, ptr, pte, rare, c in rows:
        print(f"| {w} | {wall:.1f} | {cpu:.1f} | {1000 * cpu / n:.1f} | {ptr} | {pte} | {rare} / {c} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
