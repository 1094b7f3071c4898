"""The SG2HOI+ Table V / VI / VIII grid of ``synth_sg2hoi.py`` on one GPU, every run at once, inside a deadline.

A CPU core needs about 2 h for one joint run of the 1 + 3 epoch schedule, so the 3-seed grid (joint, hoi,
no_r2itr, no_hss) is ~20 core-hours. A lent GPU machine has 16 cores and one GPU for a few minutes: this
script starts one ``synth_sg2hoi.py`` process per (row, seed), all sharing the GPU, the ``hoi`` and
``no_r2itr`` rows as soon as their seed's joint run has written ``phase1_s<seed>.pt`` (the same phase-1
sharing as on the CPU), and at the deadline stops what is still running and packs every run's
``eval.csv`` / ``log.csv`` / ``result.json`` (per-epoch curves included) into one archive.

The GPU machine has no copy of the offline text encoder (MiniLM, 88 MB, over what can be sent there), and
SG2HOI+ uses it only while building the model (text-initialised classifiers and the semantic-spatial map's
class table, with no CLIP). ``encode-texts`` encodes every prompt the grid's models ask for *here*, with
the real encoder, into a small file; ``one`` replaces the encoder by a lookup in that file (an unknown
prompt is an error), so the GPU runs start from the same text tables as the CPU runs.

    # here: the text tables (and a hash of the generated data, to compare with the GPU machine's)
    python benchmarks/gpu_sg2hoi_grid.py encode-texts --root data/synthhoi --out runs/gpu_carry/texts.pt
    # there (see benchmarks/results/synth_sg2hoi.md, "GPU grid", for the exact device command)
    python benchmarks/gpu_sg2hoi_grid.py grid --texts runs/gpu_carry/texts.pt --root data/synthhoi \\
        --out runs/gpu_grid --seeds 0 1 2 --deadline 500 --pack $OUT/grid.tar.gz
    # here again: the report of the unpacked runs
    python benchmarks/synth_sg2hoi.py --out runs/gpu_grid --report /tmp/gpu_grid.md

Throughput seen on one H200 (session 12): the 12 processes shared the GPU at 99 % utilisation, 1.2 steps/s
each, ~14 steps/s together; the full grid (~17,000 steps) needs ~25 min, more than one 10-minute call.
``--rows joint hoi --no-curves`` (Table V: ~7,400 steps) is about 10 minutes at that rate.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Dict, List

import torch

HERE = Path(__file__).resolve().parent
ROWS = ("joint", "no_hss", "hoi", "no_r2itr")       # phase-1 writers first
NEEDS_PHASE1 = ("hoi", "no_r2itr")


def bench_args(args) -> List[str]:
    """The ``synth_sg2hoi.py`` arguments every row of the grid shares."""
    return ["--preset", "synth_sg2hoi_deformable", "--root", args.root, "--out", args.out, "--train", str(args.train),
            "--test", str(args.test), "--epochs", str(args.epochs), "--sgg-epochs", str(args.sgg_epochs),
            "--curves", *(args.rows if args.curves else ()), "--", *args.extra]


def data_hash(root: Path) -> str:
    """sha256 over every file of a SynthHOI directory (relative path and bytes), in path order."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        data = p.read_bytes()
        h.update(str(p.relative_to(root)).encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def encode_texts(args) -> int:
    """Build every row's model once here with the real offline encoder, recording each prompt it encodes."""
    sys.path.insert(0, str(HERE))
    import synth_sg2hoi
    from hoikit.engine.datasets import build_training_data
    from hoikit.models.sg2hoi import semantics
    from hoikit.recipes import build_model

    table: Dict[str, torch.Tensor] = {}
    real = semantics.offline_text_encoder

    def recording(text_cfg):
        enc = real(text_cfg)

        def encode(prompts):
            out = enc(prompts)
            for p, e in zip(prompts, out):
                table[p] = e.detach().clone()
            return out
        return encode

    semantics.offline_text_encoder = recording
    ns = argparse.Namespace(root=args.root, train=2000, test=500, detr="hoikit/assets/synth_deformable.pt",
                            epochs=4, sgg_epochs=1, batch=8, lr=2e-4, lr_backbone=5e-5, curves=[],
                            preset="synth_sg2hoi_deformable", extra=[])
    for row in ROWS:
        cfg = synth_sg2hoi.bench_config(ns, row, 0, Path("/tmp/unused"))
        data = build_training_data(cfg)
        build_model(cfg, data.meta)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(table, args.out)
    digest = data_hash(Path(args.root))
    Path(args.out).with_suffix(".data_sha256").write_text(digest + "\n")
    print(f"{len(table)} prompts -> {args.out}; data sha256 {digest}")
    return 0


def install_lookup(path: str) -> None:
    """Replace the offline text encoder of SG2HOI+ by a lookup in the ``encode-texts`` file."""
    from hoikit.models.sg2hoi import semantics

    table = torch.load(path)

    def lookup(text_cfg):
        def encode(prompts):
            missing = [p for p in prompts if p not in table]
            if missing:
                raise KeyError(f"{path}: prompt {missing[0]!r} was not encoded (run encode-texts again)")
            return torch.stack([table[p] for p in prompts])
        return encode

    semantics.offline_text_encoder = lookup


def one(args) -> int:
    install_lookup(args.texts)
    sys.path.insert(0, str(HERE))
    import synth_sg2hoi
    return synth_sg2hoi.main(args.rest)


def grid(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    procs: Dict[str, subprocess.Popen] = {}
    logs = []
    pending = [(row, s) for row in ROWS if row in args.rows for s in args.seeds]
    if any(r in NEEDS_PHASE1 for r, _ in pending) and "joint" not in args.rows:
        print("note: hoi / no_r2itr start from phase1_s<seed>.pt, which only a joint run writes", flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")

    def start(row: str, seed: int) -> None:
        log = open(out / f"{row}_s{seed}.log", "w")
        logs.append(log)
        cmd = [sys.executable, __file__, "one", "--texts", args.texts, "--", "--rows", row, "--seeds", str(seed),
               *bench_args(args)]
        procs[f"{row}_s{seed}"] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        print(f"[{time.time() - t0:6.0f}s] start {row}_s{seed}", flush=True)

    last_pack = t0
    while time.time() - t0 < args.deadline:
        if args.pack and time.time() - last_pack > 60:      # what is packed survives a killed command
            pack(out, args.pack)
            last_pack = time.time()
        for row, seed in list(pending):
            if row in NEEDS_PHASE1 and not (out / f"phase1_s{seed}.pt").exists():
                joint = procs.get(f"joint_s{seed}")
                if joint is not None and joint.poll() is not None:      # the joint run ended without phase 1
                    pending.remove((row, seed))
                    print(f"[{time.time() - t0:6.0f}s] skip {row}_s{seed}: joint_s{seed} exited "
                          f"{joint.returncode} without phase1_s{seed}.pt", flush=True)
                continue
            pending.remove((row, seed))
            start(row, seed)
        running = [k for k, p in procs.items() if p.poll() is None]
        if not running and not pending:
            break
        time.sleep(2)
    for k, p in procs.items():
        if p.poll() is None:
            p.terminate()
            print(f"[{time.time() - t0:6.0f}s] deadline: stopped {k}", flush=True)
        else:
            print(f"[{time.time() - t0:6.0f}s] {k} exited {p.returncode}", flush=True)
    for k, p in procs.items():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            print(f"[{time.time() - t0:6.0f}s] killed {k} (no exit 30 s after the stop)", flush=True)
    for log in logs:
        log.close()
    if args.pack:
        pack(out, args.pack)
        print(f"packed -> {args.pack}")
    summary(out, args.seeds, args.rows)
    return 0


def pack(out: Path, target: str) -> None:
    """The runs' csv / json / log files (no checkpoints) into the .tar.gz ``target``, replaced atomically."""
    tmp = Path(target + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for f in sorted(out.rglob("*")):
            if f.is_file() and f.suffix in (".csv", ".json", ".log"):
                tar.add(f, arcname=str(f.relative_to(out.parent)))
    tmp.replace(target)


def summary(out: Path, seeds, rows=ROWS) -> None:
    """One line per run: the epochs evaluated and the last HOI mAP Full / SGDet R@50."""
    sys.path.insert(0, str(HERE))
    from seed_stats import evaluations
    print("run            evaluated epochs  mAP_full  R@50")
    for row in [r for r in ROWS if r in rows]:
        for s in seeds:
            ev = evaluations(out / f"{row}_s{s}") if (out / f"{row}_s{s}").is_dir() else []
            last = ev[-1] if ev else {}
            print(f"{row + '_s' + str(s):<14} {','.join(str(e['epoch']) for e in ev):<17} "
                  f"{last.get('mAP_full', float('nan')):8.2f} {last.get('R@50', float('nan')):6.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode-texts", help="encode the grid's prompts here, with the real text encoder")
    e.add_argument("--root", default="data/synthhoi")
    e.add_argument("--out", default="runs/gpu_carry/texts.pt")
    o = sub.add_parser("one", help="one synth_sg2hoi.py call with the looked-up text tables")
    o.add_argument("--texts", required=True)
    o.add_argument("rest", nargs=argparse.REMAINDER)
    g = sub.add_parser("grid", help="every (row, seed) at once, stopped at --deadline seconds")
    g.add_argument("--texts", required=True)
    g.add_argument("--root", default="data/synthhoi")
    g.add_argument("--out", default="runs/gpu_grid")
    g.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    g.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS,
                   help="e.g. 'joint hoi' for Table V alone (6 runs for 3 seeds instead of 12)")
    g.add_argument("--no-curves", dest="curves", action="store_false",
                   help="evaluate once at the end instead of after every epoch (saves 3 evaluations per run)")
    g.add_argument("--train", type=int, default=2000)
    g.add_argument("--test", type=int, default=500)
    g.add_argument("--epochs", type=int, default=4)
    g.add_argument("--sgg-epochs", type=int, default=1)
    g.add_argument("--deadline", type=float, default=500.0, help="seconds")
    g.add_argument("--pack", default="", help="write the runs' csv / json / log files to this .tar.gz")
    g.add_argument("extra", nargs="*", help="config overrides for every run, after --")
    args = p.parse_args(argv)
    if args.cmd == "one" and args.rest[:1] == ["--"]:
        args.rest = args.rest[1:]
    return {"encode-texts": encode_texts, "one": one, "grid": grid}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
