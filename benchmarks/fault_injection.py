"""Fault injection: kill ``hoikit train`` at random steps, resume, compare the final weights bit for bit.

For each preset (RmLR ``synth_rmlr`` with its default text-encoder cache, SG2HOI+ ``synth_sg2hoi``
across its SGG -> joint phase switch) at tiny sizes: one uninterrupted run, then ``--trials`` runs
that are SIGKILLed right after a random optimizer step (benchmarks/kill_train.py; ``--kills`` random
steps per trial, each in the part of the run not trained yet) and resumed with
``hoikit train PRESET --resume`` (no override repeated) until they finish. Every tensor of the final
``last.pt`` (model and optimizer state) must EQUAL the uninterrupted run's.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/fault_injection.py --out benchmarks/results/fault_injection.md

Prints a markdown table (one row per trial) and writes it to ``--out``.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hoikit.io.checkpoint import load_checkpoint  # noqa: E402

DATA = ["data.synth_train=12", "data.synth_test=3", "data.synth_size=64", "data.scales=[64]", "data.max_size=64",
        "data.test_scale=64", "train.batch_size=4", "train.log_every=1", "train.warmup_iters=2",
        "train.checkpoint_every=2"]
PRESETS = {  # preset: (overrides, total optimizer steps)
    "synth_rmlr": (["train.epochs=3", "model.rmlr.representation_size=64", "model.rmlr.cml_dim=64",
                    "model.rmlr.ire_dim=32", "model.rmlr.ire_ffn=64", "model.rmlr.detections=oracle"], 9),
    "synth_sg2hoi": (["train.epochs=3", "train.sgg_epochs=1", "train.eval_every=1", "model.sg2hoi.dropout=0.1"], 15),
}


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def _run(args, expect_kill: bool = False) -> None:
    p = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=_env(), capture_output=True, text=True)
    ok = p.returncode == (-9 if expect_kill else 0)
    if not ok:
        raise SystemExit(f"{' '.join(map(str, args))}: exit {p.returncode}\n{p.stderr[-3000:]}")


def compare(a: dict, b: dict):
    """(differing model tensors, model tensors, differing optimizer tensors, max |a - b| over the model)."""
    bad = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    diff = max([float((a["model"][k].double() - b["model"][k].double()).abs().max()) for k in bad] or [0.0])
    opt = 0
    for i, sa in a["optimizer"]["state"].items():
        for k, v in sa.items():
            opt += not torch.equal(torch.as_tensor(v), torch.as_tensor(b["optimizer"]["state"][i][k]))
    return len(bad), len(a["model"]), opt, diff


def trial(preset: str, overrides, total: int, out: Path, rng: random.Random, kills: int):
    """One killed-and-resumed run; returns (kill steps, resumed-from steps)."""
    kill_steps, resumed_from, done = [], [], 0

    def command():  # a fresh start until a checkpoint exists, then --resume alone
        start = ["--resume"] if (out / "last.pt").exists() else list(overrides)
        return ["train", preset, *start, "--output-dir", out]

    for _ in range(kills):
        if done >= total - 1:
            break
        k = rng.randint(done + 1, total - 1)
        _run([ROOT / "benchmarks" / "kill_train.py", "--kill-at", k, *command()], expect_kill=True)
        kill_steps.append(k)
        done = load_checkpoint(out / "last.pt")["step"] if (out / "last.pt").exists() else 0
        resumed_from.append(done)
    _run(["-m", "hoikit.cli", *command()])
    return kill_steps, resumed_from


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--kills", type=int, default=2, help="random kills per trial")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--presets", nargs="*", default=list(PRESETS))
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    rows, all_equal, t0 = [], True, time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from hoikit.data.synth import generate_synthhoi

        generate_synthhoi(tmp / "synth", 12, 3, seed=3, size=64, workers=1)
        for preset in args.presets:
            extra, total = PRESETS[preset]
            overrides = [f"data.root={tmp / 'synth'}", *DATA, *extra]
            _run(["-m", "hoikit.cli", "train", preset, *overrides, "--output-dir", tmp / preset / "full"])
            ref = load_checkpoint(tmp / preset / "full" / "last.pt")
            for i in range(args.trials):
                out = tmp / preset / f"trial{i}"
                kills, starts = trial(preset, overrides, total, out, rng, args.kills)
                got = load_checkpoint(out / "last.pt")
                nbad, n, obad, diff = compare(ref, got)
                equal = nbad == 0 and obad == 0 and got["step"] == ref["step"] == total
                all_equal &= equal
                rows.append(f"| {preset} | {i + 1} | {', '.join(map(str, kills))} | {', '.join(map(str, starts))} | "
                            f"{got['step']}/{total} | {nbad} of {n} | {obad} | {diff:.3g} | {'yes' if equal else 'NO'} |")
                print(rows[-1], flush=True)
    head = ["| preset | trial | killed after step | resumed from step | final step | model tensors differing | "
            "optimizer tensors differing | max abs diff | bit-identical |", "|---|---|---|---|---|---|---|---|---|"]
    table = "\n".join(head + rows)
    summary = (f"{sum(r.endswith('yes |') for r in rows)} of {len(rows)} trials bit-identical "
               f"({time.time() - t0:.0f} s wall)")
    print(summary)
    if args.out:
        Path(args.out).write_text(f"{table}\n\n{summary}\n")
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
