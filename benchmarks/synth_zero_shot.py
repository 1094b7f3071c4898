"""SynthHOI zero-shot benchmark (issue 15, part 3): RmLR (full) vs UPT (plain) under SynthHOI's
rare-first unseen-combination (``rf_uc``) and unseen-verb (``uv``) settings, several training seeds.

    python benchmarks/synth_zero_shot.py --settings rf_uc uv --models plain full --seeds 0 1 2 \\
        --epochs 3 --lr-drop 2 [--jobs 2]

Every run is ``hoikit train synth_rmlr`` on the default SynthHOI files (2,000 / 500 images, seed 0,
``data/synthhoi``) on a frozen Deformable detector (default the 256 px ``synth_deformable.pt``), with
``data.zero_shot=<setting>``: the training split loses every pair of an unseen class (hoikit/data/zero_shot.py, lists in
``hoikit/classes/zero_shot.json``, key ``synth``; docs/synthhoi.md). Only ``seed``,
``model.rmlr.ablation`` and the setting change between runs. The final weights are scored on the
whole test split with the official HICO-DET protocol (Default setting), split into Unseen / Seen /
Full classes as the zero-shot papers report them.

Each finished run leaves ``OUT/<setting>/<model>_s<seed>/result.json``; an interrupted benchmark
continues where it stopped. ``--jobs 2`` runs two trainings at once (one thread each, one per core).
Several instances may share one ``OUT`` (say one per core, or a later session's): a run process holds
a ``flock`` on its run's ``lock`` file while it trains (benchmarks/run_pool.py), so a run is never
trained twice at once and a run whose process died is taken up and resumed by the next instance
(older directories may hold a ``claimed`` file of the former scheme; it is ignored). The Markdown
report lists mean +- sample std over seeds, the per-seed values and the rows
still missing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hoikit.data.synth.classes import HOIS, OBJECTS, VERBS   # noqa: E402
from run_pool import TAKEN, hold_lock, run_pool   # noqa: E402  one process per run, flock per run
from synth_rmlr import _cpu_s, evaluate_run, seed_stats   # noqa: E402  the Table 2 benchmark's evaluation and statistics

SETTINGS = ["rf_uc", "uv"]
MODELS = ["plain", "full"]
KEYS = ["mAP_unseen", "mAP_seen", "mAP_full"]
NAMES = {"plain": "UPT (plain)", "full": "RmLR (full)"}


def run_dir(args, setting: str, model: str, seed: int) -> Path:
    return Path(args.out) / setting / f"{model}_s{seed}"


def overrides(args, setting: str, model: str, seed: int) -> List[str]:
    from hoikit.io.checkpoint import detector_input_overrides

    return [f"data.root={args.data}", f"model.detr.checkpoint={args.detector}",
            *detector_input_overrides(args.detector), f"data.zero_shot={setting}",
            f"model.rmlr.ablation={model}", f"seed={seed}", f"output_dir={run_dir(args, setting, model, seed)}",
            f"train.epochs={args.epochs}", f"train.lr_drop={args.lr_drop}", "train.eval_every=0"]


def run_one(args, setting: str, model: str, seed: int) -> Dict:
    """Train and evaluate one run in this process; cached in ``run_dir(...)/result.json``."""
    out = run_dir(args, setting, model, seed)
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    import torch

    from hoikit.config import load_config
    from hoikit.training import train

    torch.set_num_threads(args.threads)
    cfg = load_config("synth_rmlr", overrides(args, setting, model, seed))
    t, c = time.time(), _cpu_s()
    state, _ = train(cfg, resume=(out / "last.pt").is_file(), with_eval=False)   # resume is exact
    train_wall = time.time() - t
    metrics = evaluate_run(cfg, out / "last.pt")
    res = {"setting": setting, "model": model, "seed": seed, "steps": state.step,
           "epochs": args.epochs, "lr_drop": args.lr_drop, "train_wall_s": round(train_wall, 1),
           "cpu_s": round(_cpu_s() - c, 1), "load_avg": round(os.getloadavg()[0], 2),
           **{k: float(metrics[k]) for k in KEYS}}
    done.write_text(json.dumps(res, indent=1))
    return res


def summarise(results: List[Dict]) -> Dict:
    out = {}
    for r in results:
        out.setdefault((r["setting"], r["model"]), []).append(r)
    return {key: seed_stats(sorted(rs, key=lambda r: r["seed"]), KEYS) for key, rs in out.items()}


def report(args, summ: Dict, missing: List[str]) -> str:
    cmd = " ".join(["python benchmarks/synth_zero_shot.py", "--settings", *args.settings, "--models", *args.models,
                    "--seeds", *map(str, args.seeds), f"--epochs {args.epochs}", f"--lr-drop {args.lr_drop}",
                    f"--jobs {args.jobs}"])
    zs = json.loads((Path(__file__).resolve().parents[1] / "hoikit" / "classes" / "zero_shot.json").read_text())["synth"]
    lines = ["# Zero-shot HOI detection on SynthHOI: RmLR vs UPT", "",
             f"Command: `{cmd}`", "",
             f"Each run: `hoikit train synth_rmlr` with `data.zero_shot=<setting>` (the training split loses every "
             f"pair of an unseen class), {args.epochs} epochs of batch 8 on the default 2,000 training images, lr "
             f"5e-4 dropped 10x after epoch {args.lr_drop}, on the frozen Deformable detector "
             f"(`{args.detector}`, box score >= 0.05); then the official HICO-DET protocol (Default setting) "
             f"on the 500 test images, split into the setting's Unseen / Seen classes. Seeds are training "
             f"seeds (init, data order) on the same dataset. mAP in %, mean +- sample std over seeds. "
             f"{args.jobs} run(s) at a time, one thread each, on the shared 2-core machine.", "",
             "Unseen classes (SynthHOI's own lists, `hoikit/classes/zero_shot.json`): "
             + "; ".join(f"`{k}` {len(zs[k])} of {zs['num_hois']} HOI classes" for k in args.settings)
             + (f" (unseen verbs: {', '.join(VERBS[v] for v in zs['uv_verbs'])})" if "uv" in args.settings else "")
             + "; the classes: " + "; ".join(f"`{k}` " + ", ".join(f"{VERBS[HOIS[c][1]]} {OBJECTS[HOIS[c][0]]}"
                                                                   for c in zs[k]) for k in args.settings) + ".", ""]
    for setting in args.settings:
        lines += [f"## {setting}", "",
                  "| model | seeds | Unseen | Seen | Full | CPU s / run | per-seed Unseen | per-seed Full |",
                  "|---|---|---|---|---|---|---|---|"]
        for m in args.models:
            s = summ.get((setting, m))
            if not s:
                continue
            cells = " | ".join(f"{s[k]['mean']:.2f} +- {s[k]['std']:.2f}" for k in KEYS)
            per_u = ", ".join(f"{v:.2f}" for v in s["mAP_unseen"]["values"])
            per_f = ", ".join(f"{v:.2f}" for v in s["mAP_full"]["values"])
            lines.append(f"| {NAMES.get(m, m)} | {s['n']} | {cells} | {s['cpu_s']:.0f} | {per_u} | {per_f} |")
        if (setting, "plain") in summ and (setting, "full") in summ:
            p, f = summ[(setting, "plain")], summ[(setting, "full")]
            lines += ["", "full - plain (mean of seeds): " + ", ".join(
                f"{k[4:]} {f[k]['mean'] - p[k]['mean']:+.2f} (seed std: plain {p[k]['std']:.2f}, full {f[k]['std']:.2f})"
                for k in KEYS)]
        lines.append("")
    if missing:
        lines += ["Not finished: " + ", ".join(missing), ""]
    return "\n".join(lines)


def _keep_analysis(path: Path, text: str) -> str:
    if path.is_file() and "## Analysis" in path.read_text():
        return text + "\n" + path.read_text()[path.read_text().index("## Analysis"):]
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="hoikit/assets/synth_deformable.pt")
    ap.add_argument("--data", default="data/synthhoi")
    ap.add_argument("--settings", nargs="+", default=SETTINGS, choices=SETTINGS)
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr-drop", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (separate processes, one core each)")
    ap.add_argument("--out", default="runs/bench_synth_zero_shot")
    ap.add_argument("--results", default="benchmarks/results/synth_zero_shot.md")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--one", nargs=3, metavar=("SETTING", "MODEL", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:   # worker: one run in this process
        s, m, seed = args.one
        if hold_lock(run_dir(args, s, m, int(seed))) is None:
            return TAKEN
        print(json.dumps(run_one(args, s, m, int(seed))))
        return 0
    todo = [(s, m, seed) for seed in args.seeds for s in args.settings for m in args.models]

    def write() -> str:
        results = [json.loads((run_dir(args, *t) / "result.json").read_text()) for t in todo
                   if (run_dir(args, *t) / "result.json").is_file()]
        missing = [f"{s}/{m}/s{seed}" for s, m, seed in todo if not (run_dir(args, s, m, seed) / "result.json").is_file()]
        text = _keep_analysis(Path(args.results), report(args, summarise(results), missing))
        Path(args.results).write_text(text)
        return text

    if not args.report_only:
        pending = [t for t in todo if not (run_dir(args, *t) / "result.json").is_file()]
        base = [sys.executable, __file__, "--detector", args.detector, "--data", args.data, "--out", args.out,
                "--epochs", str(args.epochs), "--lr-drop", str(args.lr_drop), "--threads", str(args.threads)]
        run_pool(pending, lambda t: base + ["--one", t[0], t[1], str(t[2])], lambda t: run_dir(args, *t),
                 lambda t: f"{t[0]} {t[1]} seed {t[2]}", args.jobs, args.threads, on_finish=write)
    print(write())
    return 0


if __name__ == "__main__":
    sys.exit(main())
