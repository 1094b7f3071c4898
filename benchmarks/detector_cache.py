"""Speed of ``model.rmlr.detector_cache`` (the frozen detector run per image, its outputs cached by image
bytes) in RmLR / UPT training on a small SynthHOI subset, cache off vs on, in one process.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/detector_cache.py --root /tmp/detcache_synth \\
        --train 80 --test 40 --out benchmarks/results/detector_cache.md

1. Steps: two models built from the same seed (``synth_rmlr``, ``--ablation``), one without the cache and
   one with it, take the same batches (same shuffled order, same random flips) for ``--epochs`` epochs;
   their training steps (forward + backward + AdamW step) alternate, off first on even steps and on first
   on odd ones, so machine load hits both alike. Per epoch: steps/s of each, and the detector's share of
   the step time (a forward hook times the detector's calls).
2. mAP (``--map``): ``hoikit train synth_rmlr`` on the same subset twice (cache off / on, same seed), the
   last evaluation's HOI mAP of each and the difference. The in-training evaluation of the cached model
   runs the detector one image at a time, as ``hoikit test`` (batch 1) does; the uncached one pads each
   evaluation batch.

The dataset is generated under ``--root`` when missing (``hoikit synth`` arguments: ``--train`` /
``--test`` images at 256 px, seed 0).
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]


def _config(args, cache: bool, extra=()):
    from hoikit.config import load_config

    return load_config("synth_rmlr", [f"data.root={args.root}", f"data.synth_train={args.train}",
                                      f"data.synth_test={args.test}", f"model.rmlr.ablation={args.ablation}",
                                      f"model.rmlr.detector_cache={str(cache).lower()}", *extra])


class DetectorTimer:
    """Forward pre/post hooks adding up the wall time of a module's calls."""

    def __init__(self, module: torch.nn.Module):
        self.total, self._t0 = 0.0, 0.0
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _start(self, *_):
        self._t0 = time.perf_counter()

    def _stop(self, *_):
        self.total += time.perf_counter() - self._t0


def time_steps(args) -> List[Dict]:
    """Per epoch and mode: steps, seconds in steps, seconds in the detector, final loss."""
    from hoikit.data.dataset import collate
    from hoikit.engine.datasets import build_training_data
    from hoikit.recipes import build_model

    cfgs = {m: _config(args, m == "on") for m in ("off", "on")}
    data = build_training_data(cfgs["off"], with_eval=False)
    models, opts, timers = {}, {}, {}
    for m, cfg in cfgs.items():
        torch.manual_seed(cfg.seed)
        models[m] = build_model(cfg, data.meta)
        models[m].train()
        opts[m] = torch.optim.AdamW([p for p in models[m].parameters() if p.requires_grad], lr=cfg.train.lr)
        timers[m] = DetectorTimer(models[m].detector)
    rows = []
    step = 0
    for epoch in range(1, args.epochs + 1):
        loader = DataLoader(data.train_set, batch_size=cfgs["off"].train.batch_size, shuffle=True,
                            collate_fn=collate, drop_last=True, generator=torch.Generator().manual_seed(epoch))
        stats = {m: dict(epoch=epoch, mode=m, steps=0, step_s=0.0, detector_s=0.0, loss=0.0) for m in models}
        for images, targets in loader:
            for m in (("off", "on") if step % 2 == 0 else ("on", "off")):
                det0 = timers[m].total
                t0 = time.perf_counter()
                torch.manual_seed(step)
                loss = sum(models[m](images, targets).values())
                opts[m].zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(models[m].parameters(), cfgs[m].train.clip_max_norm)
                opts[m].step()
                s = stats[m]
                s["step_s"] += time.perf_counter() - t0
                s["detector_s"] += timers[m].total - det0
                s["steps"] += 1
                s["loss"] = float(loss.detach())
            step += 1
        cache = models["on"].detector_cache
        stats["on"].update(hits=cache.hits, misses=cache.misses, rows=cache.num_rows, mb=cache.nbytes / 2 ** 20)
        rows += [stats["off"], stats["on"]]
        print(f"epoch {epoch}: " + ", ".join(f"{m} {stats[m]['steps'] / stats[m]['step_s']:.3f} steps/s" for m in models),
              flush=True)
    return rows


def train_map(args, cache: bool) -> Dict[str, float]:
    """``hoikit train synth_rmlr`` on the subset; the last evaluation row's mAP columns and the wall time."""
    out = Path(args.work) / f"cache_{'on' if cache else 'off'}"
    cmd = [sys.executable, "-m", "hoikit.cli", "train", "synth_rmlr", f"data.root={args.root}",
           f"data.synth_train={args.train}", f"data.synth_test={args.test}", f"model.rmlr.ablation={args.ablation}",
           f"model.rmlr.detector_cache={str(cache).lower()}", f"train.epochs={args.epochs}", "--output-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"detector_cache.py: {' '.join(cmd)} failed: {done.stderr[-2000:]}")
    with open(out / "eval.csv") as f:
        last = list(csv.DictReader(f))[-1]
    res = {k: float(v) for k, v in last.items() if k.startswith("mAP")}
    res["wall_s"] = time.perf_counter() - t0
    return res


def report(args, rows: List[Dict], maps: Dict[str, Dict], load: tuple) -> str:
    cfg = _config(args, True)      # the preset's detector and image scale, as the runs used
    lines = ["# Detector cache: RmLR training steps with `model.rmlr.detector_cache` off vs on", "",
             f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} taskset -c 1 python "
             f"benchmarks/detector_cache.py {' '.join(sys.argv[1:])}`  ",
             f"Machine: 2 CPU cores shared with other jobs (load average {load[0]:.1f} at start, {load[1]:.1f} at end), "
             f"torch {torch.__version__}, {torch.get_num_threads()} thread(s).  ",
             f"Model: `synth_rmlr` (Deformable DETR detector `{cfg.model.detr.checkpoint}`), ablation "
             f"`{args.ablation}`, batch 8, SynthHOI subset of {args.train} training images ({cfg.data.test_scale} px, "
             f"horizontal flips only). Off and on steps interleaved on the same batches.", "",
             "| epoch | cache | steps | steps/s | s / step | detector s / step | detector share | on / off speed-up | "
             "cache hits / misses | cached rows (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for off, on in zip(rows[0::2], rows[1::2]):
        for r in (off, on):
            rate = r["steps"] / r["step_s"]
            speed = f"**{(on['steps'] / on['step_s']) / (off['steps'] / off['step_s']):.2f}x**" if r is on else ""
            cache = f"{r['hits']} / {r['misses']}" if "hits" in r else ""
            mem = f"{r['rows']} ({r['mb']:.1f})" if "rows" in r else ""
            lines.append(f"| {r['epoch']} | {r['mode']} | {r['steps']} | {rate:.3f} | {r['step_s'] / r['steps']:.2f} | "
                         f"{r['detector_s'] / r['steps']:.2f} | {r['detector_s'] / r['step_s']:.0%} | {speed} | {cache} | {mem} |")
    lines += ["", "Hits / misses are cumulative. Epoch 1 fills the cache (the detector runs per image: every image "
              "misses); from epoch 2 on an image is served from the cache whenever it comes with the same flip as "
              "an earlier epoch (about half of them in epoch 2, all of them once both versions were seen).",
              "", f"Loss of the last step: off {rows[-2]['loss']:.6f}, on {rows[-1]['loss']:.6f} (the values "
              "differ only through the detector's padding: per image vs padded batch)."]
    if maps:
        keys = sorted(k for k in maps["off"] if k.startswith("mAP"))
        lines += ["", f"## Final mAP, `hoikit train synth_rmlr` for {args.epochs} epochs, cache off vs on", "",
                  "| metric | off | on | on - off |", "|---|---|---|---|"]
        for k in keys:
            lines.append(f"| {k} | {maps['off'][k]:.4f} | {maps['on'][k]:.4f} | {maps['on'][k] - maps['off'][k]:+.4f} |")
        lines.append(f"| whole command (s, not interleaved) | {maps['off']['wall_s']:.0f} | {maps['on']['wall_s']:.0f} | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="/tmp/detcache_synth", help="SynthHOI directory (generated when missing)")
    p.add_argument("--train", type=int, default=80)
    p.add_argument("--test", type=int, default=40)
    p.add_argument("--ablation", default="full")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--map", action="store_true", help="also train both ways with hoikit train and compare mAP")
    p.add_argument("--work", default="/tmp/detcache_runs", help="output directories of the --map runs")
    p.add_argument("--out", default="", help="Markdown report to write")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    load0 = os.getloadavg()[0]
    rows = time_steps(args)
    maps = {m: train_map(args, m == "on") for m in ("off", "on")} if args.map else {}
    text = report(args, rows, maps, (load0, os.getloadavg()[0]))
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
