"""SG2HOI+ on SynthHOI: joint training vs single-task (Table V) and the -HSS / -R2ITR ablations.

Rows (paper Tables V, VI, VIII; every row trained through :func:`hoikit.engine.trainer.fit`):

* ``joint``    - phase 1 SGG only for ``--sgg-epochs``, phase 2 joint with alternating SGG/HOI batches;
* ``hoi``      - Table V "HOI": the same phase 1, then HOI only on the frozen SGG part (``train.task=hoi``);
* ``sgg``      - Table V "SGG": the SGG part trained alone for all epochs (``train.task=sgg``);
* ``sgg_control`` - ``sgg`` with the joint run's phase switch after phase 1 (fresh optimizer, SGG part at
  ``train.sgg_lr``; ``train.sgg_control``): the joint run's SGG batches in its order, each at the joint
  run's learning rate for it, without the HOI batches between them (the HOI part's contribution alone);
* ``no_r2itr`` - -R2ITR (Table VIII): the HOI decoder reads f_en, no R2ITrans / feature transformation;
* ``no_hss``   - -HSS (Table VI): no BBSeg and no semantic-spatial map (phase 1 differs: trained in full).

Phase 1 depends only on the SGG part, so ``hoi``, ``sgg``, ``sgg_control`` and ``no_r2itr`` resume from the
joint run's end-of-phase-1 checkpoint instead of repeating it. For ``hoi`` and ``sgg`` this is exact (same
architecture, seed and batches: an uninterrupted run would replay the same arithmetic, see
tests/engine/test_engine_sg2hoi_phases.py); for ``no_r2itr`` the SGG part is the same and its HOI
part is built afresh (DETR-initialised HOI decoder, the rest random). Metrics come from the final evaluation
(SGDet on SynthHOI's VG150-format test split with its own zero-shot / long-tail lists; HICO-DET
protocol on its HICO-DET-format test split).

Every row starts from a SynthHOI detector (``--detr``; paper Section IV-D) through ``--preset``:
``synth_sg2hoi`` (the paper's DETR base, from hoikit/assets/synth_detr.pt, with ``model.sg2hoi.detr_proj``;
docs/method-notes-sg2hoi.md, "DETR initialisation") or ``synth_sg2hoi_deformable`` (the deformable base,
from hoikit/assets/synth_deformable.pt; "Deformable base").

Every (row, seed) writes ``OUT/<row>_s<seed>/result.json``; finished ones are skipped, so the grid can
be run in pieces. A killed run resumes exactly from its own ``last.pt`` (written every epoch, and every
``-- train.checkpoint_every=N`` steps) when the command is run again. Rows named in ``--curves`` are
evaluated after every epoch; their per-epoch SGDet R@50 and HOI mAP go into ``result.json`` ("curve"), the
report and a picture next to it. ``--report`` writes the Markdown table (mean +- std and min..max over seeds)::

    python benchmarks/synth_sg2hoi.py --rows joint hoi sgg no_r2itr no_hss --seeds 0 1 2   # the full grid
    python benchmarks/synth_sg2hoi.py --report /tmp/report.md       # writes /tmp/report.table.md
    python benchmarks/synth_sg2hoi.py --rows joint hoi --curves joint hoi --epochs 5 --sgg-epochs 1   # + curves
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_stats import curve_section as shared_curve_section, evaluations, paired_by_seed   # noqa: E402

ROWS = ("joint", "hoi", "sgg", "sgg_control", "no_r2itr", "no_hss")
SGG_KEYS = ("R@20", "R@50", "R@100", "mR@20", "mR@50", "mR@100", "ng-R@50", "zR@50")
HOI_KEYS = ("mAP_full", "mAP_rare", "mAP_non_rare")
CURVE_KEYS = ("R@50", "mR@50", "mAP_full", "mAP_rare", "mAP_non_rare")
HOI_PART = ("r2i.", "feature_transform.", "query_transform.", "hoi_decoder.")
#: rows trained as ``train.task=sgg``: their HOI part is never trained, so an HOI number of theirs means
#: nothing (the sgg_control seed-0 run of session 14 started before its HOI evaluation was dropped)
SGG_ROWS = ("sgg", "sgg_control")


def bench_config(args, row: str, seed: int, out: Path):
    """The configuration of one row: the ``--preset`` (synth_sg2hoi: DETR base; synth_sg2hoi_deformable:
    deformable base) with the benchmark's data size, schedule and seed."""
    from hoikit.config import load_config

    ov = [f"output_dir={out}", f"seed={seed}", f"data.root={args.root}", f"data.synth_train={args.train}",
          f"data.synth_test={args.test}", f"model.detr.checkpoint={args.detr}",
          f"train.epochs={args.epochs}", f"train.sgg_epochs={args.sgg_epochs}", f"train.batch_size={args.batch}",
          f"train.lr={args.lr}", f"train.lr_backbone={args.lr_backbone}", f"train.sgg_lr={args.lr_backbone}",
          f"train.eval_every={1 if row in args.curves else 100000}", "train.log_every=50", "train.task=joint"]
    if row == "hoi":
        ov.append("train.task=hoi")
    elif row == "sgg":
        ov.append("train.task=sgg")
    elif row == "sgg_control":
        ov += ["train.task=sgg", "train.sgg_control=true"]
    elif row == "no_r2itr":
        ov.append("model.sg2hoi.r2i=false")
    elif row == "no_hss":
        ov.append("model.sg2hoi.hss=none")
    return load_config(args.preset, ov + list(args.extra))


def start_point(run: Path, phase1: Optional[Path]) -> str:
    """Where a (row, seed) run starts: ``"own"`` (resume from its own ``last.pt``: it was killed, or
    stopped after the phase-1 copy), ``"phase1"`` (a copy of the joint run's end-of-phase-1 checkpoint)
    or ``"scratch"``."""
    if (run / "last.pt").is_file():
        return "own"
    return "phase1" if phase1 is not None else "scratch"


def read_curve(run: Path) -> List[Dict]:
    """:func:`evaluations` reduced to the :data:`CURVE_KEYS` that each evaluation has."""
    return [{"epoch": e["epoch"], **{k: e[k] for k in CURVE_KEYS if k in e}} for e in evaluations(run)]


def final_metrics(run: Path, epochs: int) -> Dict[str, float]:
    """The metrics of the (last) evaluation after epoch ``epochs`` (empty when there is none). For a run
    that was resumed from a checkpoint written after its final evaluation (killed before result.json, or
    result.json deleted): ``fit`` then has nothing left to do and returns no metrics."""
    done = [e for e in evaluations(run) if e["epoch"] == epochs]
    return {k: v for k, v in done[-1].items() if k != "epoch"} if done else {}


def copy_phase1(last: Path, phase1: Path) -> None:
    """Copy the joint run's end-of-phase-1 ``last`` to ``phase1`` atomically (another process may start from it)."""
    shutil.copyfile(last, phase1.with_suffix(".tmp"))
    phase1.with_suffix(".tmp").replace(phase1)


def recover_phase1(joint_run: Path, phase1: Path, sgg_epochs: int) -> bool:
    """Write ``phase1`` from the joint run's ``last.pt`` when that checkpoint is the end of phase 1 (epoch
    ``sgg_epochs``, iteration 0) and ``phase1`` is missing: the run was killed between writing that
    checkpoint and copying it, and a resumed run never passes that point again. Returns True if written."""
    from hoikit.io.checkpoint import load_checkpoint

    last = joint_run / "last.pt"
    if phase1.exists() or not last.is_file():
        return False
    ck = load_checkpoint(last)
    if ck.get("epoch") != sgg_epochs or ck.get("iteration") != 0:
        return False
    copy_phase1(last, phase1)
    return True


def train_row(args, row: str, seed: int, joint_metas=None, phase1: Path = None, callback=None):
    """Train one (row, seed), or resume it (:func:`start_point`); returns (final metrics, seconds, metas,
    start point)."""
    from hoikit.data.dataset import collate
    from hoikit.io.checkpoint import load_checkpoint, save_checkpoint
    from hoikit.engine.datasets import build_training_data
    from hoikit.engine.trainer import fit, seed_everything
    from hoikit.config import to_dict
    from hoikit.recipes import build_model, meta_to_dict

    out = Path(args.out) / f"{row}_s{seed}"
    cfg = bench_config(args, row, seed, out)
    t0 = time.time()
    data = build_training_data(cfg)
    meta_hoi, meta_sgg = data.meta
    if row in SGG_ROWS:
        meta_hoi = joint_metas[0]          # same architecture as the joint model (HOI part unused)
    seed_everything(cfg.seed)
    model = build_model(cfg, (meta_hoi, meta_sgg))
    start = start_point(out, phase1)
    resume = start != "scratch"
    if start == "phase1":
        out.mkdir(parents=True, exist_ok=True)
        ck = load_checkpoint(phase1)
        if row == "no_r2itr":              # drop the modules -R2ITR does not have (HOI part: untrained in phase 1)
            own = model.state_dict()
            ck["model"] = {k: v for k, v in ck["model"].items() if k in own}
            ck["model"].update({k: v for k, v in own.items() if k.startswith(HOI_PART)})
        # the row's own config: the engine refuses to resume under a changed train.task or ablation
        # switch, but phase 1 (the SGG part alone) is the same computation for these rows (docstring)
        ck["config"] = to_dict(cfg)
        save_checkpoint(ck, out / "last.pt")
    state = fit(cfg, model, data.train_set, collate_fn=collate, meta=meta_to_dict("sg2hoi", (meta_hoi, meta_sgg)),
                evals=data.evals, primary_metric=data.primary, resume=resume, callback=callback)
    return row_metrics(state.metrics, out, cfg.train.epochs), time.time() - t0, (meta_hoi, meta_sgg), start


def row_metrics(fitted: Optional[Dict[str, float]], run: Path, epochs: int) -> Dict[str, float]:
    """The final metrics of a row: those ``fit`` returned, else (a run resumed after its final evaluation)
    :func:`final_metrics`; neither is an error naming the run directory."""
    metrics = dict(fitted or {}) or final_metrics(run, epochs)
    if not metrics:
        raise RuntimeError(f"{run}: training is complete but no final evaluation is recorded in eval.csv; "
                           f"delete {run} to train this row again")
    return metrics


def run_seed(args, seed: int) -> None:
    out = Path(args.out)
    phase1 = out / f"phase1_s{seed}.pt"
    metas = None
    for row in [r for r in ROWS if r in args.rows]:
        res_path = out / f"{row}_s{seed}" / "result.json"
        if res_path.exists():
            continue
        needs_p1 = row in ("hoi", "sgg", "sgg_control", "no_r2itr")
        # phase1: written at the end of the joint run's phase 1; not needed once the row has its own last.pt
        if needs_p1 and not phase1.exists() and not (res_path.parent / "last.pt").is_file():
            print(f"[{row} s{seed}] needs phase 1 of the joint run of seed {seed} first (add 'joint' to --rows)")
            continue
        callback = None
        if row == "joint":
            if recover_phase1(out / f"joint_s{seed}", phase1, args.sgg_epochs):
                print(f"[joint s{seed}] {phase1} written from the joint run's end-of-phase-1 checkpoint")
            def callback(event, state, _p1=phase1, _dir=out / f"joint_s{seed}"):
                if event == "checkpoint" and state.epoch == args.sgg_epochs and state.iteration == 0:
                    copy_phase1(_dir / "last.pt", _p1)
        if needs_p1 and metas is None:
            from hoikit.io.checkpoint import load_checkpoint
            from hoikit.recipes import meta_from_dict
            metas = meta_from_dict("sg2hoi", load_checkpoint(phase1 if phase1.exists() else
                                                             res_path.parent / "last.pt")["meta"])
        metrics, secs, m, start = train_row(args, row, seed, metas, phase1 if needs_p1 else None, callback)
        if row == "joint":
            metas = m
        # seconds: of this process (a resumed run's earlier time is not in it); start: see start_point
        res = {"row": row, "seed": seed, "seconds": round(secs, 1), "metrics": metrics, "start": start,
               "load_avg": round(os.getloadavg()[0], 2), "curve": read_curve(res_path.parent),
               "setup": {k: getattr(args, k) for k in ("preset", "train", "test", "detr", "epochs", "sgg_epochs", "batch", "lr",
                                                  "lr_backbone", "extra")}}
        res_path.parent.mkdir(parents=True, exist_ok=True)
        res_path.write_text(json.dumps(res, indent=1))
        print(f"[{row} s{seed}] {secs:.0f}s " + " ".join(f"{k}={metrics.get(k, float('nan')):.2f}"
                                                         for k in ("R@50", "mR@50", "mAP_full")), flush=True)


def _stat(values):
    v = [x for x in values if x == x]
    if not v:
        return "-"
    if len(v) == 1:           # one seed: no spread to show
        return f"{v[0]:.2f} (1)"
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f} ({min(v):.2f}..{max(v):.2f})"


def paired(rows_a, rows_b, key: str):
    """``a - b`` of ``key`` over the seeds both rows have a value for: (mean, sample std, n) or None."""
    def values(rows):
        return {x["seed"]: v for x in rows for v in [x["metrics"].get(key, float("nan"))] if v == v}
    mean, std, n = paired_by_seed(values(rows_a), values(rows_b))
    return (mean, std, n) if n else None


def sgg_only(result: Dict) -> Dict:
    """``result`` without HOI metrics (every ``*mAP*`` key, final and per epoch) when its row is one of
    :data:`SGG_ROWS`."""
    if result.get("row") not in SGG_ROWS:
        return result
    keep = lambda d: {k: v for k, v in d.items() if "mAP" not in k}   # noqa: E731 -- also ko_mAP_*, role_mAP_*
    return {**result, "metrics": keep(result["metrics"]), "curve": [keep(c) for c in result.get("curve") or []]}


def report(args) -> str:
    """The Markdown table of OUT's results: every metric as mean +- std (min..max) over seeds, then per
    row the per-seed HOI mAP Full and SGDet R@50 and the row minus ``joint`` paired by seed."""
    results = [sgg_only(json.loads(p.read_text())) for p in sorted(Path(args.out).glob("*_s*/result.json"))]
    by_row = {r: sorted([x for x in results if x["row"] == r], key=lambda x: x["seed"]) for r in ROWS}
    setup = results[0]["setup"] if results else {}
    lines = ["| row | seeds | " + " | ".join(SGG_KEYS + HOI_KEYS) + " | train s/seed |",
             "|---|---|" + "---|" * (len(SGG_KEYS) + len(HOI_KEYS) + 1)]
    for row in ROWS:
        rs = by_row[row]
        if not rs:
            lines.append(f"| {row} | 0 | " + " | ".join(["not run"] * (len(SGG_KEYS) + len(HOI_KEYS))) + " | - |")
            continue
        cells = [_stat([x["metrics"].get(k, float("nan")) for x in rs]) for k in SGG_KEYS + HOI_KEYS]
        fresh = [x for x in rs if x.get("start") != "own"] or rs    # a resumed run's seconds miss its first part
        secs = statistics.mean(x["seconds"] for x in fresh)
        lines.append(f"| {row} | {','.join(str(x['seed']) for x in rs)} | " + " | ".join(cells) + f" | {secs:.0f} |")
    lines += ["", "| row | per-seed mAP Full | per-seed R@50 | row - joint, paired by seed: mAP Full | R@50 |",
              "|---|---|---|---|---|"]
    for row in ROWS:
        rs = by_row[row]
        if not rs:
            continue
        per = {k: ", ".join(f"s{x['seed']} {x['metrics'][k]:.2f}" for x in rs
                            if not math.isnan(x["metrics"].get(k, math.nan))) or "-"   # sgg rows: no HOI mAP
               for k in ("mAP_full", "R@50")}
        diffs = []
        for k in ("mAP_full", "R@50"):
            d = paired(rs, by_row["joint"], k) if row != "joint" else None
            diffs.append("-" if d is None else f"{d[0]:+.2f} ({d[2]})" if d[2] == 1
                         else f"{d[0]:+.2f} +- {d[1]:.2f} ({d[2]})")
        lines.append(f"| {row} | {per['mAP_full']} | {per['R@50']} | {diffs[0]} | {diffs[1]} |")
    if getattr(args, "report", None):
        lines += [""] + curve_section(results, Path(args.report).with_suffix(".curves.png"))
    return "setup: " + json.dumps(setup) + "\n\n" + "\n".join(lines) + "\n"


def curve_section(results: List[Dict], picture: Path) -> List[str]:
    """Per-epoch HOI mAP Full and SGDet R@50 of the rows that have curves (``seed_stats.curve_section``)."""
    curves = {r: [x["curve"] for x in results if x["row"] == r and x.get("curve")] for r in ROWS}
    return shared_curve_section(curves, (("mAP_full", "HOI mAP Full"), ("R@50", "SGDet R@50")), picture,
                                "SG2HOI+ on SynthHOI: test metrics after each epoch",
                                "epochs completed (the first --sgg-epochs: SGG only)")


def pair_recall(model, dataset, n: int) -> dict:
    """Localisation ceiling of a one-stage HOI model on the first ``n`` images of ``dataset``: the share
    of ground-truth HOI pairs for which some HOI query has a human box and an object box at IoU >= 0.5
    (``both``), also with the right object label (``labelled``), and the shares with at least a human /
    an object box at IoU >= 0.5 in any query (``human`` / ``object``). A (human, object) pair counts
    once however many verbs it has; ``both_triplets`` / ``labelled_triplets`` weight each pair by its
    number of annotated HOI triplets (how the session-8 numbers were counted). ``model``: eval-mode SG2HOI+."""
    from hoikit.ops import box_iou
    hits = {"human": 0, "object": 0, "both": 0, "labelled": 0, "both_triplets": 0, "labelled_triplets": 0}
    pairs = triplets = 0
    for idx in range(min(n, len(dataset))):
        img, t = dataset[idx]
        with torch.no_grad():
            out = model([img])[0]["hoi"]
        ho = t["hois"][:, :2]
        for h, o in torch.unique(ho, dim=0).tolist():
            ih = box_iou(out["human_boxes"], t["boxes"][h:h + 1])[0][:, 0] >= 0.5
            io = box_iou(out["obj_boxes"], t["boxes"][o:o + 1])[0][:, 0] >= 0.5
            verbs = int(((ho[:, 0] == h) & (ho[:, 1] == o)).sum())
            both, labelled = bool((ih & io).any()), bool((ih & io & (out["obj_labels"] == t["labels"][o])).any())
            pairs, triplets = pairs + 1, triplets + verbs
            hits["human"] += int(ih.any())
            hits["object"] += int(io.any())
            hits["both"] += int(both)
            hits["labelled"] += int(labelled)
            hits["both_triplets"] += verbs * both
            hits["labelled_triplets"] += verbs * labelled
    share = {k: 100.0 * v / max(triplets if k.endswith("_triplets") else pairs, 1) for k, v in hits.items()}
    return {"pairs": pairs, "triplets": triplets, **share}


def pair_recall_of(checkpoint: str, n: int) -> dict:
    """:func:`pair_recall` of a benchmark run's checkpoint on its test split."""
    from hoikit.data.dataset import HOIDataset, build_transforms
    from hoikit.engine.datasets import open_reader
    from hoikit.engine.inference import model_from_checkpoint
    model, cfg, _ = model_from_checkpoint(checkpoint)
    return pair_recall(model.eval(), HOIDataset(open_reader(cfg.data, "test"), build_transforms(cfg.data, train=False)), n)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="data/synthhoi_bench", help="SynthHOI directory (generated when missing)")
    p.add_argument("--out", default="runs/bench_sg2hoi")
    p.add_argument("--rows", nargs="+", default=["joint", "hoi"], choices=ROWS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--preset", default="synth_sg2hoi", choices=("synth_sg2hoi", "synth_sg2hoi_deformable"),
                   help="the DETR base (the paper's) or the deformable base (hoikit/models/sg2hoi/deformable.py)")
    p.add_argument("--detr", default=None,
                   help="detector to initialise from (Sec. IV-D); default: the preset's "
                        "(hoikit/assets/synth_detr.pt | synth_deformable.pt); '' = from scratch (DETR base only)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--sgg-epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4, help="HOI part / phase-1 SGG part")
    p.add_argument("--lr-backbone", type=float, default=5e-5, help="backbone and the phase-2 SGG part")
    p.add_argument("--curves", nargs="*", default=[], choices=ROWS,
                   help="rows evaluated after every epoch (curves in result.json and the report)")
    p.add_argument("--report", default=None, help="write the Markdown table of OUT's results here and exit")
    p.add_argument("--pair-recall", default=None, metavar="CHECKPOINT",
                   help="print the localisation ceiling of a run's checkpoint (pair_recall) and exit")
    p.add_argument("--images", type=int, default=100, help="--pair-recall: test images to use")
    p.add_argument("extra", nargs="*", help="config overrides for every row, after --")
    args = p.parse_args(argv)
    if args.pair_recall:
        torch.set_num_threads(1)
        print(json.dumps(pair_recall_of(args.pair_recall, args.images)))
        return 0
    if args.detr is None:
        args.detr = ("hoikit/assets/synth_deformable.pt" if args.preset == "synth_sg2hoi_deformable"
                     else "hoikit/assets/synth_detr.pt")
    torch.set_num_threads(1)
    if args.report:
        text = report(args)
        print(text)
        Path(args.report).with_suffix(".table.md").write_text(text)
        return 0
    for seed in args.seeds:
        run_seed(args, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
