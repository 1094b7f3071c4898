"""Per-verb HICO-DET AP of finished ``benchmarks/synth_rmlr.py`` runs: where does RmLR differ from UPT?

    python benchmarks/synth_rmlr_verbs.py --out runs/bench_rmlr2 --detections oracle --seeds 0 1 2 \
        --rows plain full --results benchmarks/results/synth_rmlr_verbs.md

Re-evaluates each run's ``last.pt`` (``OUT/<row>_s<seed>`` or ``OUT/oracle/<row>_s<seed>``) on the
test split with the engine's HOIEvaluation (official HICO-DET protocol, default setting) and
averages the per-HOI-class APs of each verb (classes without test instances are left out), then
over seeds. SynthHOI decides some verbs by pose inside an unchanged box pair (hold vs throw: arm
angle; kick vs standing next to the ball: leg; look_at: head direction; docs/synthhoi.md), which is
what RmLR's re-mined interaction features are meant to see and DETR's tokens lose (RmLR Fig. 1).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

import numpy as np

# verbs whose label changes with the pose inside a fixed pair of boxes (docs/synthhoi.md, "How labels
# are decided": hold/throw, kick/next-to, look_at/nothing are the pairs the generator stages on purpose)
POSE_VERBS = ("hold", "throw", "kick", "look_at")


def per_verb_ap(run: Path) -> Dict[str, float]:
    """Mean AP (%) of the HOI classes of each verb for the weights in ``run/last.pt``."""
    import torch

    from hoikit.config import from_dict
    from hoikit.data.dataset import collate
    from hoikit.io.checkpoint import load_checkpoint, load_model_state
    from hoikit.engine.datasets import build_training_data
    from hoikit.engine.testing import collect_predictions
    from hoikit.recipes import build_model, get_recipe

    ck = load_checkpoint(run / "last.pt")
    cfg = from_dict(ck["config"])
    data = build_training_data(cfg)
    model = build_model(cfg, data.meta)
    load_model_state(model, ck["model"], str(run / "last.pt"))
    loader = torch.utils.data.DataLoader(data.eval_set, batch_size=cfg.train.batch_size, collate_fn=collate)
    preds = collect_predictions(model, loader, torch.device("cpu"), recipe=get_recipe(cfg.model.arch))
    ev = data.make_evaluator()
    for i in sorted(preds):
        ev.add(i, preds[i])
    ev.compute()
    return verb_means(ev.results["per_class"], data.meta.verbs)


def verb_means(per_class: List[Dict], verbs: List[str]) -> Dict[str, float]:
    """Mean AP (%) of each verb's HOI classes, from the HICO-DET evaluator's ``per_class`` entries
    (``verb`` index, ``npos``, ``ap`` in %); classes without test instances are left out."""
    by_verb: Dict[str, List[float]] = {}
    for c in per_class:
        if c["npos"] > 0:
            by_verb.setdefault(verbs[c["verb"]], []).append(c["ap"])
    return {v: float(np.mean(a)) for v, a in sorted(by_verb.items())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the --out directory of benchmarks/synth_rmlr.py")
    ap.add_argument("--detections", default="detr", choices=["detr", "oracle"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", nargs="+", default=["plain", "full"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", help="write the Markdown table here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    base = Path(args.out) if args.detections == "detr" else Path(args.out) / args.detections
    cache = base / "per_verb.json"
    table = json.loads(cache.read_text()) if cache.is_file() else {}
    for row in args.rows:
        for s in args.seeds:
            key = f"{row}_s{s}"
            if key not in table and (base / key / "last.pt").is_file():
                table[key] = per_verb_ap(base / key)
                cache.write_text(json.dumps(table, indent=1))
                print(key, {k: round(v, 1) for k, v in table[key].items()})
    verbs = sorted({v for r in table.values() for v in r})
    head = "| verb | " + " | ".join(f"{r} (mean ± std over seeds)" for r in args.rows)
    lines = [f"# Per-verb AP of the SynthHOI RmLR runs ({args.detections} detections)", "",
             f"Command: `python benchmarks/synth_rmlr_verbs.py --out {args.out} --detections {args.detections} "
             f"--seeds {' '.join(map(str, args.seeds))} --rows {' '.join(args.rows)}`", "",
             "Mean HICO-DET AP (%, default setting) of each verb's HOI classes on the 500 test images; "
             f"verbs marked * change with the pose inside a fixed box pair ({', '.join(POSE_VERBS)}).", "",
             head + (" | difference |" if len(args.rows) == 2 else " |"),
             "|---" * (len(args.rows) + 1 + (len(args.rows) == 2)) + "|"]
    for v in verbs:
        cells, means = [], []
        for r in args.rows:
            vals = [table[f"{r}_s{s}"][v] for s in args.seeds if f"{r}_s{s}" in table and v in table[f"{r}_s{s}"]]
            means.append(np.mean(vals) if vals else np.nan)
            cells.append(f"{np.mean(vals):.1f} ± {np.std(vals, ddof=1) if len(vals) > 1 else float('nan'):.1f}"
                         if vals else "-")
        diff = [f"{means[1] - means[0]:+.1f}"] if len(args.rows) == 2 else []
        lines.append(f"| {v}{'*' if v in POSE_VERBS else ''} | " + " | ".join(cells + diff) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        Path(args.results).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
