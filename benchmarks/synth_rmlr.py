"""SynthHOI benchmark of RmLR (issues 4 and 14): detector COCO AP50, UPT (plain) vs RmLR HOI mAP
Full / Rare / Non-rare over several training seeds, the Table 2 ablation rows, per-verb AP and
training curves.

    python benchmarks/synth_rmlr.py --seeds 0 1 2 --epochs 4 --lr-drop 3 --jobs 2 \\
        --ablations plain full wo_cl wo_rm wo_wa wo_sa wo_irm_kt wo_ire_kt

Every run is ``hoikit train synth_rmlr`` on the same SynthHOI dataset (default size: 2,000 / 500
images, seed 0, ``data/synthhoi``) with the frozen detector ``--detector`` (default: the 256 px
Deformable DETR ``synth_deformable.pt``, Table 2's; images at the scale the detector file was trained
at); only ``seed`` (weights init, data order, augmentation) and ``model.rmlr.ablation`` change. Extra
``key=value`` overrides after ``--`` go to every run. Each finished run leaves
``OUT/<ablation>_s<seed>/result.json`` (mAPs, per-verb AP, the load average); an interrupted run resumes exactly from its ``last.pt`` (same thread count). The rows of
``--curves`` (default plain and full) are also evaluated after every epoch: their mAP-per-epoch
curves go into the report and ``<results>_curves.png``. The Markdown report lists mean and sample
standard deviation over seeds, every per-seed value, the per-verb AP of plain vs full, and which
requested rows are still missing. Text below a line ``## Analysis`` in an existing report is kept.

``--jobs N`` runs N trainings at once, each pinned to its own core with ``--threads`` threads.
Several instances may share one ``OUT`` (e.g. one per session): a worker holds an exclusive
``flock`` on its run's ``lock`` file while it trains, so a run is never trained twice at once, and
a run whose process died (killed, machine stopped) is simply taken up and resumed by the next
instance.

``--detections oracle`` (analysis only, not a paper setting; docs/method-notes-rmlr.md) trains and
evaluates every run with ``model.rmlr.detections=oracle``: the ground-truth entities are the
proposals, so the mAP measures the interaction head alone. Those runs live in ``OUT/oracle/`` and get
their own report section; the report always shows both sections from whatever runs are finished.

The results of the previous DETR detector (2 epochs, constant lr) are kept in
benchmarks/results/synth_rmlr.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_pool import TAKEN, hold_lock, run_pool   # noqa: E402  one process per run, flock per run
from seed_stats import curve_section as shared_curve_section, evaluations, mean_std_cell, paired_by_seed   # noqa: E402
from synth_rmlr_verbs import POSE_VERBS, verb_means   # noqa: E402  per-verb AP of a run

ALL_ROWS = ["plain", "wo_cl", "wo_rm", "wo_wa", "wo_sa", "wo_irm_kt", "wo_ire_kt", "full"]
KEYS = ["mAP_full", "mAP_rare", "mAP_non_rare"]
DETECTIONS = ["detr", "oracle"]
DETECTOR_METRIC = "coco-pycocotools"   # detector.json made by an older metric is recomputed


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


REACHABLE_AT = (0.05, 0.1, 0.2)   # box score thresholds reported besides synth_rmlr's own


def detector_ap(detector: str, data_root: str, score_thresh=None, nms_thresh=None) -> Dict[str, float]:
    """COCO box AP / AP50 and per-class AP50 (engine's DetectionEvaluation: pycocotools, every drawn
    instance) of ``detector`` on the test split at the scale it was trained at
    (``detector_input_overrides``), and how many ground-truth HOI pairs its detections can reach: both the
    person and the object found with the right class, IoU >= 0.5 (the HICO-DET rule) and score >=
    ``score_thresh`` (None: synth_rmlr's ``box_score_thresh``). HOI recall cannot exceed ``reachable``;
    ``reachable_at`` has the same share at the scores of :data:`REACHABLE_AT`.
    ``nms_thresh``: Deformable DETR's class-wise NMS (``model.detr.nms_thresh``; None = the preset's)."""
    import numpy as np
    import torch

    from hoikit.config import load_config
    from hoikit.data.dataset import collate, synth_paths
    from hoikit.data.readers import open_reader
    from hoikit.engine.datasets import build_training_data
    from hoikit.engine.testing import collect_predictions
    from hoikit.recipes import build_model
    from hoikit.ops import box_iou

    from hoikit.io.checkpoint import detector_input_overrides, load_checkpoint

    ck = load_checkpoint(detector)
    kind = ck.get("config", {}).get("model", {}).get("detr", {}).get("type", "detr")
    preset = "synth_deformable" if kind == "deformable" else "synth_detr"   # the detector's own dimensions
    over = [] if nms_thresh is None or kind != "deformable" else [f"model.detr.nms_thresh={nms_thresh}"]
    over += detector_input_overrides(ck)                # the scale the detector was trained at
    cfg = load_config(preset, [f"data.root={data_root}", f"model.detr.checkpoint={detector}"] + over)
    data = build_training_data(cfg)
    model = build_model(cfg, data.meta)
    loader = torch.utils.data.DataLoader(data.eval_set, batch_size=8, collate_fn=collate)
    preds = collect_predictions(model, loader, torch.device("cpu"))
    ev = data.make_evaluator()
    for i in sorted(preds):
        ev.add(i, preds[i])
    ev.compute()
    if score_thresh is None:
        score_thresh = load_config("synth_rmlr").model.rmlr.box_score_thresh
    hoi = open_reader("synth", synth_paths(data_root, "test")[0])
    rare = set(hoi.meta.rare)
    lut = {(int(o), int(v)): int(h) for h, o, v in hoi.meta.correspondence}

    def reachable(thresh: float) -> Dict[str, list]:
        found = {"all": [], "rare": []}
        for i in range(len(hoi)):
            s, p = hoi[i], preds[i]
            keep = p["scores"] >= thresh
            boxes, labels = torch.as_tensor(p["boxes"][keep]), p["labels"][keep]
            iou = box_iou(torch.as_tensor(s.boxes), boxes)[0].numpy() if len(boxes) else np.zeros((len(s.boxes), 0))
            hit = [bool(((iou[e] >= 0.5) & (labels == s.labels[e])).any()) for e in range(len(s.boxes))]
            for h, o, v in s.hois:
                ok = hit[h] and hit[o]
                found["all"].append(ok)
                if lut[(int(s.labels[o]), int(v))] in rare:
                    found["rare"].append(ok)
        return found

    found = reachable(score_thresh)
    return {"metric": DETECTOR_METRIC, "AP": ev.results["AP"], "AP50": ev.results["AP50"],
            "per_class": ev.results["per_class_AP50"], "score_thresh": score_thresh,
            "reachable": 100 * float(np.mean(found["all"])), "pairs": len(found["all"]),
            "reachable_rare": 100 * float(np.mean(found["rare"])) if found["rare"] else float("nan"),
            "pairs_rare": len(found["rare"]),
            "reachable_at": {t: 100 * float(np.mean(reachable(t)["all"])) for t in REACHABLE_AT}}


def evaluate_run(cfg, checkpoint: Path) -> Dict:
    """HICO-DET mAP (engine HOIEvaluation, the trainer's evaluation) of the weights in ``checkpoint``
    on the test split, plus ``per_verb``: the mean AP of each verb's HOI classes."""
    import torch

    from hoikit.data.dataset import collate
    from hoikit.io.checkpoint import load_checkpoint, load_model_state
    from hoikit.engine.datasets import build_training_data
    from hoikit.engine.testing import collect_predictions
    from hoikit.recipes import build_model, get_recipe

    data = build_training_data(cfg)
    model = build_model(cfg, data.meta)
    load_model_state(model, load_checkpoint(checkpoint)["model"], str(checkpoint))
    loader = torch.utils.data.DataLoader(data.eval_set, batch_size=cfg.train.batch_size, collate_fn=collate)
    # the recipe's forward, as the trainer's evaluation (oracle detections read the targets in eval too)
    preds = collect_predictions(model, loader, torch.device("cpu"), recipe=get_recipe(cfg.model.arch))
    ev = data.make_evaluator()
    for i in sorted(preds):
        ev.add(i, preds[i])
    metrics: Dict = dict(ev.compute())
    metrics["per_verb"] = verb_means(ev.results["per_class"], list(data.meta.verbs))
    return metrics


def run_dir(args, detections: str, ablation: str, seed: int) -> Path:
    """``OUT/<ablation>_s<seed>`` (detector detections) or ``OUT/oracle/...``."""
    base = Path(args.out) if detections == "detr" else Path(args.out) / detections
    return base / f"{ablation}_s{seed}"


def finished(args, detections: str) -> List[Dict]:
    """Cached results of the requested (seed, ablation) runs with ``detections``."""
    files = (run_dir(args, detections, a, s) / "result.json" for s in args.seeds for a in args.ablations)
    return [json.loads(f.read_text()) for f in files if f.is_file()]


def overrides(args, ablation: str, seed: int) -> List[str]:
    """The config overrides of one run (before the user's extra ones)."""
    out = run_dir(args, args.detections, ablation, seed)
    from hoikit.io.checkpoint import detector_input_overrides

    sched = ([f"train.epochs={args.epochs}", f"train.lr_drop={args.lr_drop}"] if args.epochs else [])
    # images at the frozen detector's own scale (256 px for synth_deformable.pt, the Table 2 detector)
    return ([f"data.root={args.data}", f"model.detr.checkpoint={args.detector}",
             *detector_input_overrides(args.detector), f"model.rmlr.ablation={ablation}",
             f"seed={seed}", f"output_dir={out}", f"train.max_steps={args.max_steps}",
             f"model.rmlr.detections={args.detections}",
             f"train.eval_every={1 if ablation in args.curves else 0}"] + sched)


def read_curve(run: Path) -> List[Dict]:
    """The per-epoch evaluations the trainer wrote (``seed_stats.evaluations``): epochs completed, mAP Full /
    Rare / Non-rare."""
    return [{"epoch": e["epoch"], **{k: e[k] for k in KEYS}} for e in evaluations(run) if "mAP_full" in e]


def run_one(ablation: str, seed: int, args, extra: List[str]) -> Dict:
    """Train (or resume) and evaluate one (ablation, seed) in this process; cached in
    ``run_dir(...)/result.json``."""
    out = run_dir(args, args.detections, ablation, seed)
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    from hoikit.training import train
    from hoikit.config import load_config

    cfg = load_config("synth_rmlr", overrides(args, ablation, seed) + extra)
    resumed = (out / "last.pt").is_file()
    t, c = time.time(), _cpu_s()
    state, _ = train(cfg, resume=resumed, with_eval=ablation in args.curves)   # resume is exact
    train_wall, train_cpu = time.time() - t, _cpu_s() - c
    metrics = evaluate_run(cfg, out / "last.pt")
    res = {"ablation": ablation, "seed": seed, "detections": args.detections, "steps": state.step,
           "epochs": args.epochs, "lr_drop": args.lr_drop, "resumed": resumed,
           "train_wall_s": round(train_wall, 1), "train_cpu_s": round(train_cpu, 1),
           "cpu_s": round(_cpu_s() - c, 1), "load_avg": round(os.getloadavg()[0], 2),
           **{k: float(metrics[k]) for k in KEYS}, "per_verb": metrics["per_verb"], "curve": read_curve(out)}
    done.write_text(json.dumps(res, indent=1))
    return res


def worker(ablation: str, seed: int, args, extra: List[str]) -> int:
    """One run in this process under the run's lock (:func:`run_pool.hold_lock`). Returns
    :data:`TAKEN` when another process holds it."""
    if hold_lock(run_dir(args, args.detections, ablation, seed)) is None:
        return TAKEN
    import torch

    torch.set_num_threads(args.threads)
    r = run_one(ablation, seed, args, extra)
    print(f"{ablation} seed {seed} ({args.detections}): " + ", ".join(f"{k} {r[k]:.2f}" for k in KEYS)
          + f" ({r['cpu_s']:.0f} CPU s)", flush=True)
    return 0


def summarise(results: List[Dict], rows: List[str]) -> Dict[str, Dict]:
    """Per ablation: mean / sample std of every key and the per-seed values."""
    out = {}
    for a in rows:
        rs = sorted((r for r in results if r["ablation"] == a), key=lambda r: r["seed"])
        if not rs:
            continue
        out[a] = seed_stats(rs, KEYS)
    return out


def seed_stats(rs: List[Dict], keys: List[str]) -> Dict:
    """Seeds, count, mean CPU seconds (of the runs trained in one go), and per key the mean / sample std / per-seed values of runs ``rs``
    (sorted by seed)."""
    whole = [r for r in rs if not r.get("resumed")] or rs   # a resumed run's process saw only part of it
    s = {"seeds": [r["seed"] for r in rs], "n": len(rs), "cpu_s": float(np.mean([r["cpu_s"] for r in whole]))}
    for k in keys:
        v = np.array([r[k] for r in rs])
        s[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                "values": v.tolist()}
    return s


def paired_difference(summary: Dict, row: str, base: str = "plain", key: str = "mAP_full") -> Dict:
    """``row - base`` of ``key`` seed by seed, over the seeds both rows have: mean, sample std and count.
    Runs of one seed share the data order and flips, so the paired difference removes the part of the
    seed noise that the rows share."""
    a, b = summary[row], summary[base]
    mean, std, n = paired_by_seed(dict(zip(a["seeds"], a[key]["values"])), dict(zip(b["seeds"], b[key]["values"])))
    return {"mean": mean, "std": std, "n": n}


def _rows(summary: Dict) -> List[str]:
    """Markdown table of one detections mode + the full - plain line."""
    lines = ["| model (Table 2 row) | seeds | Full | Rare | Non-rare | row - plain (mAP Full), paired by seed: mean +- std (n) | "
             "CPU s / run (train + eval) | per-seed Full |",
             "|---|---|---|---|---|---|---|---|"]
    for a in [r for r in ALL_ROWS if r in summary]:
        s = summary[a]
        cells = [mean_std_cell(s[k]["values"], with_n=False) for k in KEYS]   # one seed: "value (1)"
        per = ", ".join(f"{v:.2f}" for v in s["mAP_full"]["values"])
        pd = paired_difference(summary, a) if "plain" in summary and a != "plain" else None
        if not (pd and pd["n"]):
            paired = "-"
        elif pd["n"] == 1:                 # one common seed: no spread to show
            paired = f"{pd['mean']:+.2f} (1)"
        else:
            paired = f"{pd['mean']:+.2f} +- {pd['std']:.2f} ({pd['n']})"
        lines.append(f"| {a} | {s['n']} | " + " | ".join(cells) + f" | {paired} | {s['cpu_s']:.0f} | {per} |")
    if "plain" in summary and "full" in summary:
        p, f = summary["plain"], summary["full"]
        lines += ["", "full - plain (mean of seeds): " + ", ".join(
            f"{k[4:]} {f[k]['mean'] - p[k]['mean']:+.2f} (spread: plain {p[k]['std']:.2f}, full {f[k]['std']:.2f})"
            for k in KEYS)]
    return lines


def report(summaries: Dict[str, Dict], det: Dict, args, extra: List[str], missing: Dict[str, List[str]]) -> str:
    """Markdown report: the DETR-detection table, then (when any oracle run is finished, or oracle
    runs were requested) the oracle-detection table."""
    cmd = " ".join(["python benchmarks/synth_rmlr.py", f"--detector {args.detector}", f"--data {args.data}",
                    "--seeds " + " ".join(map(str, args.seeds)), f"--epochs {args.epochs} --lr-drop {args.lr_drop}"]
                   + ([f"--max-steps {args.max_steps}"] if args.max_steps else [])
                   + ["--curves " + " ".join(args.curves), f"--threads {args.threads} --jobs {args.jobs}",
                      "--ablations " + " ".join(args.ablations)]
                   + ([f"--detections {args.detections}"] if args.detections != "detr" else [])
                   + (["--"] + extra if extra else []))
    lines = ["# RmLR on SynthHOI", "", f"Command: `{cmd}`", "",
             f"Dataset: SynthHOI in `{args.data}` (default: 2,000 train / 500 test images, 256 px, generator seed 0); "
             f"frozen detector `{args.detector}`. Seeds are training seeds (init, data order) on the same dataset. "
             f"Each run: synth_rmlr.yaml (+ the overrides after `--`), "
             + (f"{args.epochs} epochs with the lr x0.1 after epoch {args.lr_drop}" if args.epochs else "the preset's epochs")
             + (f" (stopped at {args.max_steps} optimizer steps)" if args.max_steps else "")
             + " (batch 8 unless overridden), then the "
             "HICO-DET evaluation of the final weights on the test split. "
             "mAP: official HICO-DET protocol (default setting), %; mean +- sample std over seeds.", "",
             f"Detector on the test split (engine DetectionEvaluation: COCO protocol, pycocotools; every drawn "
             f"instance): AP50 **{det['AP50']:.2f}**, AP {det['AP']:.2f}" + (
                 f"; AP50 per class: " + ", ".join(f"{k} {v:.1f}" for k, v in det["per_class"].items())
                 + f". Test pairs reachable through its detections (person and object of the right class at "
                 f"IoU >= 0.5, score >= {det['score_thresh']:g}, the HOI model's box score threshold; the HOI "
                 f"recall ceiling): **{det['reachable']:.1f} %** of "
                 f"{det['pairs']}, rare classes {det['reachable_rare']:.1f} % of {det['pairs_rare']}"
                 if "reachable" in det else ""), ""]
    lines += _rows(summaries.get("detr", {}))
    if missing.get("detr"):
        lines += ["", "Not run (rows of the request with no finished seed): " + ", ".join(missing["detr"])]
    if summaries.get("oracle") or args.detections == "oracle":
        lines += ["", "## Oracle detections (ground-truth boxes; analysis only, not a paper setting)", "",
                  "Same runs with `model.rmlr.detections=oracle` (runs in `OUT/oracle/`): in training and "
                  "evaluation the proposals are each image's ground-truth entities (score 1), each with the "
                  "DETR token of the query Hungarian-matched to its box, so detection recall is out of the "
                  "comparison and the mAP measures the interaction head (docs/method-notes-rmlr.md).", ""]
        lines += _rows(summaries.get("oracle", {}))
        if missing.get("oracle"):
            lines += ["", "Not run (rows of the request with no finished seed): " + ", ".join(missing["oracle"])]
    return "\n".join(lines) + "\n"


def verb_picture(by_row: Dict[str, List[Dict[str, float]]], verbs: List[str], picture: Path) -> None:
    """Bars of each verb's AP, one per row (mean over seeds, a dot per seed); pose verbs starred."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.8), dpi=100)
    width = 0.8 / len(by_row)
    for i, (r, pvs) in enumerate(by_row.items()):
        x = np.arange(len(verbs)) + (i - (len(by_row) - 1) / 2) * width
        vals = [[pv[v] for pv in pvs if v in pv] for v in verbs]
        ax.bar(x, [np.mean(v) for v in vals], width, color=f"C{i}", alpha=0.7, label=f"{r} ({len(pvs)} seeds)")
        for xi, v in zip(x, vals):
            ax.plot([xi] * len(v), v, "k.", ms=3)
    ax.set_xticks(np.arange(len(verbs)))
    ax.set_xticklabels([v + ("*" if v in POSE_VERBS else "") for v in verbs], rotation=30, ha="right")
    ax.set_ylabel("AP (%), mean of the verb's classes")
    ax.set_title("Per-verb AP on the SynthHOI test split (* = decided by the pose inside a fixed box pair)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(picture)
    plt.close(fig)


def verb_section(results: List[Dict], rows=("plain", "full"), picture: Optional[Path] = None) -> List[str]:
    """Markdown table: per-verb AP (mean +- std over seeds) of two rows and their difference; verbs
    decided by the pose inside a fixed box pair are starred. ``picture``: also draw it there."""
    by_row = {r: [x["per_verb"] for x in results if x["ablation"] == r and "per_verb" in x] for r in rows}
    if not all(by_row.values()):
        return []
    verbs = sorted({v for pv in by_row[rows[0]] for v in pv})
    lines = [f"| verb | {rows[0]} | {rows[1]} | {rows[1]} - {rows[0]} | seed std ({rows[0]}, {rows[1]}) |",
             "|---|---|---|---|---|"]
    for v in verbs:
        vals = [np.array([pv[v] for pv in by_row[r] if v in pv]) for r in rows]
        sd = [x.std(ddof=1) if len(x) > 1 else float("nan") for x in vals]
        lines.append(f"| {v}{'*' if v in POSE_VERBS else ''} | {vals[0].mean():.1f} | {vals[1].mean():.1f} | "
                     f"{vals[1].mean() - vals[0].mean():+.1f} | {sd[0]:.1f}, {sd[1]:.1f} |")
    n = [len(by_row[r]) for r in rows]
    shown = ""
    if picture is not None:
        verb_picture(by_row, verbs, picture)
        shown = f" ![per-verb AP]({picture.name})"
    return [f"Per-verb AP (%, mean of each verb's HOI classes with test instances; mean over {n[0]} / {n[1]} "
            f"seeds). Starred verbs change with the pose inside a fixed box pair ({', '.join(POSE_VERBS)}; "
            f"docs/synthhoi.md): where re-mining should help, if it helps anywhere.{shown}", ""] + lines


def curve_section(results: List[Dict], rows: List[str], picture: Path) -> List[str]:
    """mAP Full per epoch of the curve rows (``seed_stats.curve_section``)."""
    curves = {r: [x["curve"] for x in results if x["ablation"] == r and x.get("curve")] for r in rows}
    return shared_curve_section(curves, (("mAP_full", "HICO-DET mAP Full"),), picture,
                                "RmLR on SynthHOI: test mAP after each epoch")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="hoikit/assets/synth_deformable.pt")
    ap.add_argument("--data", default="data/synthhoi", help="SynthHOI root (generated at default size when missing)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ablations", nargs="+", default=ALL_ROWS, choices=ALL_ROWS)
    ap.add_argument("--out", default="runs/bench_synth_rmlr_deformable")
    ap.add_argument("--results", default="benchmarks/results/synth_rmlr_deformable.md")
    ap.add_argument("--epochs", type=int, default=4, help="train.epochs of every run (0 = the preset's)")
    ap.add_argument("--lr-drop", type=int, default=3, help="train.lr_drop (epochs before the x0.1 step)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop every run after this many steps (0 = no limit)")
    ap.add_argument("--curves", nargs="*", default=["plain", "full"], choices=ALL_ROWS,
                    help="rows evaluated after every epoch (training curves)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (separate processes, one core each)")
    ap.add_argument("--report-only", action="store_true", help="only collect finished runs and write the report")
    ap.add_argument("--detections", choices=DETECTIONS, default="detr",
                    help="model.rmlr.detections of every run: detr (the detector's boxes, paper) | oracle "
                         "(ground-truth boxes, analysis only; runs in OUT/oracle, own report section)")
    ap.add_argument("--one", nargs=2, metavar=("ABLATION", "SEED"), help=argparse.SUPPRESS)
    ap.add_argument("extra", nargs="*", help="overrides for every run (after --)")
    args = ap.parse_args(argv)
    if args.one:   # worker: one run in this process
        return worker(args.one[0], int(args.one[1]), args, args.extra)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    det_file = out / "detector.json"
    det = json.loads(det_file.read_text()) if det_file.is_file() else {}
    if det.get("metric") != DETECTOR_METRIC:   # missing, or cached by the former VOC all-point AP50
        det = detector_ap(args.detector, args.data)
        det_file.write_text(json.dumps(det))
    print(f"detector AP50 {det['AP50']:.2f}", flush=True)
    # seed-major order: every row gets its first seed before any row gets a second one
    todo = [(a, seed) for seed in args.seeds for a in args.ablations]
    pending = [] if args.report_only else [
        t for t in todo if not (run_dir(args, args.detections, *t) / "result.json").is_file()]
    base = [sys.executable, __file__] + [x for k, v in vars(args).items() if k in FORWARD
                                         for x in ([f"--{k.replace('_', '-')}"] + [str(i) for i in v]
                                                   if isinstance(v, list) else [f"--{k.replace('_', '-')}", str(v)])]
    run_pool(pending, lambda t: base + ["--one", t[0], str(t[1]), "--"] + args.extra,
             lambda t: run_dir(args, args.detections, *t), lambda t: f"{t[0]} seed {t[1]} ({args.detections})",
             args.jobs, args.threads, on_finish=lambda: write_report(args, det))
    print(write_report(args, det))
    return 0


FORWARD = ("detector", "data", "out", "epochs", "lr_drop", "max_steps", "curves", "threads", "detections")


def write_report(args, det: Dict) -> str:
    """Both detection sections from the finished runs of the request (the other mode's runs are only
    read), the per-verb and curve sections, and ``summary.json`` in OUT."""
    out = Path(args.out)
    runs = {m: finished(args, m) for m in DETECTIONS}
    summaries = {m: summarise(runs[m], ALL_ROWS) for m in DETECTIONS}
    missing = {m: [a for a in args.ablations if a not in summaries[m]] for m in DETECTIONS}
    text = report(summaries, det, args, args.extra, missing)
    path = Path(args.results)
    extra_lines: List[str] = []
    for m in DETECTIONS:
        tag = "" if m == "detr" else "_" + m
        verbs = verb_section(runs[m], picture=path.with_name(f"{path.stem}_verbs{tag}.png"))
        curves = curve_section(runs[m], args.curves, path.with_name(f"{path.stem}_curves{tag}.png"))
        if verbs or curves:
            extra_lines += ["", f"## Per-verb AP and training curves ({'detector' if m == 'detr' else m} boxes)", ""]
            extra_lines += verbs + ([""] if verbs and curves else []) + curves
    text += "\n".join(extra_lines) + ("\n" if extra_lines else "")
    if path.is_file() and "## Analysis" in path.read_text():
        text += "\n" + path.read_text()[path.read_text().index("## Analysis"):]
    path.write_text(text)
    (out / "summary.json").write_text(json.dumps({"detector": det, "rows": summaries["detr"],
                                                  "oracle_rows": summaries["oracle"]}, indent=1))
    return text


if __name__ == "__main__":
    raise SystemExit(main())
