"""Behaviour parity of a refactor: tiny runs of every model family (DETR, Deformable DETR, RmLR,
SG2HOI+ with a phase switch) trained, evaluated, tested and used for one prediction, written as
hashes and metrics to a JSON file. Run it once with the old tree and once with the new one on
PYTHONPATH, then compare the two files (``--compare OLD NEW``):

    git archive <old-commit> | tar -x -C /tmp/oldtree
    PYTHONPATH=/tmp/oldtree OMP_NUM_THREADS=1 python benchmarks/refactor_parity.py /tmp/old.json
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/refactor_parity.py /tmp/new.json
    python benchmarks/refactor_parity.py --compare /tmp/old.json /tmp/new.json

Uses only names both trees have (``hoikit.config.load_config``, ``hoikit.engine.testing.run_test``,
``hoikit.load``) and ``train`` / ``load_checkpoint`` from where the tree has them (``hoikit.training`` /
``hoikit.io.checkpoint``, before that ``hoikit.commands.train`` / ``hoikit.engine.checkpoint``).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import io
import json
import os
import sys

import torch

WORK = "/tmp/hoikit_refactor_parity"
COMMON = [f"data.root={WORK}/synth", "data.synth_train=16", "data.synth_test=6", "data.synth_size=128",
          "data.scales=[128]", "data.test_scale=128", "data.max_size=160", "train.batch_size=4", "train.device=cpu",
          "data.num_workers=0", "train.log_every=1"]
RUNS = {"detr": ("synth_detr", ["train.epochs=1", "model.detr.checkpoint="]),
        "deformable": ("synth_deformable", ["train.epochs=1"]),
        "rmlr": ("synth_rmlr", ["train.epochs=1", "model.rmlr.ablation=wo_cl"]),
        "sg2hoi": ("synth_sg2hoi", ["train.epochs=2", "train.sgg_epochs=1"])}


def _hash_state(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].float().numpy().tobytes())
    return h.hexdigest()


def run_family(name: str, tag: str) -> dict:
    import hoikit
    from hoikit.config import load_config
    from hoikit.engine.testing import run_test
    try:
        from hoikit.io.checkpoint import load_checkpoint
        from hoikit.training import train
    except ImportError:   # the OLD tree of a comparison, before train() / the checkpoint module moved (4000a68)
        train = importlib.import_module("hoikit.commands.train").train
        load_checkpoint = importlib.import_module("hoikit.engine.checkpoint").load_checkpoint

    preset, overrides = RUNS[name]
    cfg = load_config(preset, COMMON + overrides + [f"output_dir={WORK}/{tag}_{name}"])
    with contextlib.redirect_stdout(io.StringIO()):
        state, _ = train(cfg)
        summary = run_test(f"{cfg.output_dir}/last.pt", out_dir=f"{cfg.output_dir}/test", device="cpu")
    image = sorted(os.listdir(f"{WORK}/synth/images/test"))[0]
    pred = hoikit.load(f"{cfg.output_dir}/last.pt").predict(f"{WORK}/synth/images/test/{image}", threshold=0.0)
    pred.pop("image", None)
    return {"weights": _hash_state(load_checkpoint(f"{cfg.output_dir}/last.pt")["model"]), "steps": state.step,
            "eval": state.metrics, "test": summary["metrics"],
            "prediction": hashlib.sha256(json.dumps(pred, sort_keys=True).encode()).hexdigest(),
            "triplets": len(pred["triplets"]), "detections": len(pred["detections"]),
            "relations": len(pred.get("scene_graph", {}).get("relations", []))}


def compare(old_path: str, new_path: str) -> int:
    old, new = json.load(open(old_path)), json.load(open(new_path))
    print("| family | steps | weights | eval metrics | test metrics | prediction | primary test metric |")
    print("|---|---|---|---|---|---|---|")
    same_all = True
    for name in old:
        a, b = old[name], new.get(name, {})
        same = {k: json.dumps(a[k], sort_keys=True) == json.dumps(b.get(k), sort_keys=True) for k in a}
        same_all &= all(same.values())
        primary = next(k for k in ("mAP_full", "AP50") if k in a["test"])
        print(f"| {name} | {a['steps']} | {'same' if same['weights'] else 'DIFFERENT'} | "
              f"{'same' if same['eval'] else 'DIFFERENT'} | {'same' if same['test'] else 'DIFFERENT'} | "
              f"{'same' if same['prediction'] else 'DIFFERENT'} | {primary} {a['test'][primary]:.4f} |")
    return 0 if same_all else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--families", nargs="*", default=list(RUNS))
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    torch.set_num_threads(1)
    tag = hashlib.sha256(sys.path[0].encode() + os.environ.get("PYTHONPATH", "").encode()).hexdigest()[:8]
    results = {name: run_family(name, tag) for name in args.families}
    json.dump(results, open(args.out, "w"), indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
