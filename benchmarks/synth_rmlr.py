"""SynthHOI benchmark of RmLR (issue 4, "Measured"): detector COCO AP50, UPT (plain) vs RmLR HOI mAP
Full / Rare / Non-rare over several training seeds, and the Table 2 ablation rows.

    python benchmarks/synth_rmlr.py --detector hoikit/assets/synth_detr.pt --seeds 0 1 2 \\
        --ablations plain full wo_cl wo_rm wo_wa wo_sa wo_irm_kt wo_ire_kt

Every run is ``hoikit train synth_rmlr`` on the same SynthHOI dataset (default size: 2,000 / 500
images, seed 0, ``data/synthhoi``) with the frozen detector ``--detector``; only ``seed`` (weights
init, data order, augmentation) and ``model.rmlr.ablation`` change. Extra ``key=value`` overrides
after ``--`` go to every run. Each finished run leaves ``OUT/<ablation>_s<seed>/result.json``, so an
interrupted benchmark continues where it stopped. The Markdown report lists mean and sample standard
deviation over seeds, every per-seed value, and which requested rows are still missing. Text below
a line ``## Analysis`` in an existing report is kept.

``--detections oracle`` (analysis only, not a paper setting; docs/method-notes-rmlr.md) trains and
evaluates every run with ``model.rmlr.detections=oracle``: the ground-truth entities are the
proposals, so the mAP measures the interaction head alone. Those runs live in ``OUT/oracle/`` and get
their own report section; the report always shows both sections from whatever runs are finished.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

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
    instance) of ``detector`` on the test split at
    synth_detr's test scale, and how many ground-truth HOI pairs its detections can reach: both the
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

    from hoikit.io.checkpoint import load_checkpoint

    kind = load_checkpoint(detector).get("config", {}).get("model", {}).get("detr", {}).get("type", "detr")
    preset = "synth_deformable" if kind == "deformable" else "synth_detr"   # the detector's own dimensions
    over = [] if nms_thresh is None or kind != "deformable" else [f"model.detr.nms_thresh={nms_thresh}"]
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


def evaluate_run(cfg, checkpoint: Path) -> Dict[str, float]:
    """HICO-DET mAP (engine HOIEvaluation) of the weights in ``checkpoint`` on the test split."""
    import torch

    from hoikit.data.dataset import collate
    from hoikit.io.checkpoint import load_checkpoint, load_model_state
    from hoikit.engine.datasets import build_training_data
    from hoikit.engine.trainer import evaluate
    from hoikit.recipes import build_model

    data = build_training_data(cfg)
    model = build_model(cfg, data.meta)
    load_model_state(model, load_checkpoint(checkpoint)["model"], str(checkpoint))
    loader = torch.utils.data.DataLoader(data.eval_set, batch_size=cfg.train.batch_size, collate_fn=collate)
    return evaluate(model, loader, data.make_evaluator, torch.device("cpu"))


def run_dir(args, detections: str, ablation: str, seed: int) -> Path:
    """``OUT/<ablation>_s<seed>`` (DETR detections, as before the switch) or ``OUT/oracle/...``."""
    base = Path(args.out) if detections == "detr" else Path(args.out) / detections
    return base / f"{ablation}_s{seed}"


def finished(args, detections: str) -> List[Dict]:
    """Cached results of the requested (seed, ablation) runs with ``detections``."""
    files = (run_dir(args, detections, a, s) / "result.json" for s in args.seeds for a in args.ablations)
    return [json.loads(f.read_text()) for f in files if f.is_file()]


def run_one(ablation: str, seed: int, args, extra: List[str]) -> Dict:
    """Train and evaluate one (ablation, seed); cached in ``run_dir(...)/result.json``."""
    out = run_dir(args, args.detections, ablation, seed)
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    from hoikit.training import train
    from hoikit.config import load_config

    cfg = load_config("synth_rmlr", [f"data.root={args.data}", f"model.detr.checkpoint={args.detector}",
                                     f"model.rmlr.ablation={ablation}", f"seed={seed}", f"output_dir={out}",
                                     f"train.max_steps={args.max_steps}",
                                     f"model.rmlr.detections={args.detections}"] + extra)
    t, c = time.time(), _cpu_s()
    state, _ = train(cfg, with_eval=False)
    train_wall, train_cpu = time.time() - t, _cpu_s() - c
    metrics = evaluate_run(cfg, out / "last.pt")
    res = {"ablation": ablation, "seed": seed, "detections": args.detections, "steps": state.step, "train_wall_s": round(train_wall, 1),
           "train_cpu_s": round(train_cpu, 1), "cpu_s": round(_cpu_s() - c, 1),
           **{k: float(metrics[k]) for k in KEYS}}
    done.write_text(json.dumps(res, indent=1))
    return res


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
    """Seeds, count, mean CPU seconds, and per key the mean / sample std / per-seed values of runs ``rs``
    (sorted by seed)."""
    s = {"seeds": [r["seed"] for r in rs], "n": len(rs), "cpu_s": float(np.mean([r["cpu_s"] for r in rs]))}
    for k in keys:
        v = np.array([r[k] for r in rs])
        s[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                "values": v.tolist()}
    return s


def _rows(summary: Dict) -> List[str]:
    """Markdown table of one detections mode + the full - plain line."""
    lines = ["| model (Table 2 row) | seeds | Full | Rare | Non-rare | CPU s / run (train + eval) | per-seed Full |",
             "|---|---|---|---|---|---|---|"]
    for a in [r for r in ALL_ROWS if r in summary]:
        s = summary[a]
        cells = [f"{s[k]['mean']:.2f} +- {s[k]['std']:.2f}" for k in KEYS]
        per = ", ".join(f"{v:.2f}" for v in s["mAP_full"]["values"])
        lines.append(f"| {a} | {s['n']} | " + " | ".join(cells) + f" | {s['cpu_s']:.0f} | {per} |")
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
                    "--seeds " + " ".join(map(str, args.seeds)),
                    f"--max-steps {args.max_steps}", "--ablations " + " ".join(args.ablations)]
                   + ([f"--detections {args.detections}"] if args.detections != "detr" else [])
                   + (["--"] + extra if extra else []))
    lines = ["# RmLR on SynthHOI", "", f"Command: `{cmd}`", "",
             f"Dataset: SynthHOI in `{args.data}` (default: 2,000 train / 500 test images, 256 px, generator seed 0); "
             f"frozen detector `{args.detector}`. Seeds are training seeds (init, data order) on the same dataset. "
             f"Each run: synth_rmlr.yaml (+ the overrides after `--`), "
             + (f"{args.max_steps} optimizer steps" if args.max_steps else "all `train.epochs` epochs")
             + " of batch 8, then the "
             "HICO-DET evaluation of the final weights on the test split. "
             "mAP: official HICO-DET protocol (default setting), %; mean +- sample std over seeds.", "",
             f"Detector on the test split (engine DetectionEvaluation: COCO protocol, pycocotools; every drawn "
             f"instance): AP50 **{det['AP50']:.2f}**, AP {det['AP']:.2f}" + (
                 f"; AP50 per class: " + ", ".join(f"{k} {v:.1f}" for k, v in det["per_class"].items())
                 + f". Test pairs reachable through its detections (person and object of the right class at "
                 f"IoU >= 0.5, score >= 0.2; the HOI recall ceiling): **{det['reachable']:.1f} %** of "
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="hoikit/assets/synth_detr.pt")
    ap.add_argument("--data", default="data/synthhoi", help="SynthHOI root (generated at default size when missing)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ablations", nargs="+", default=ALL_ROWS, choices=ALL_ROWS)
    ap.add_argument("--out", default="runs/bench_synth_rmlr")
    ap.add_argument("--results", default="benchmarks/results/synth_rmlr.md")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=125, help="optimizer steps per run (batch 8; 0 = one epoch)")
    ap.add_argument("--report-only", action="store_true", help="only collect finished runs and write the report")
    ap.add_argument("--detections", choices=DETECTIONS, default="detr",
                    help="model.rmlr.detections of every run: detr (paper) | oracle (ground-truth boxes, analysis "
                         "only; runs in OUT/oracle, own report section)")
    ap.add_argument("extra", nargs="*", help="overrides for every run (after --)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    det_file = out / "detector.json"
    det = json.loads(det_file.read_text()) if det_file.is_file() else {}
    if det.get("metric") != DETECTOR_METRIC:   # missing, or cached by the former VOC all-point AP50
        det = detector_ap(args.detector, args.data)
        det_file.write_text(json.dumps(det))
    print(f"detector AP50 {det['AP50']:.2f}")
    # seed-major order: every row gets its first seed before any row gets a second one
    for seed in [] if args.report_only else args.seeds:
        for a in args.ablations:
            r = run_one(a, seed, args, args.extra)
            print(f"{a} seed {seed} ({args.detections}): " + ", ".join(f"{k} {r[k]:.2f}" for k in KEYS)
                  + f" ({r['cpu_s']:.0f} CPU s)")
    # both sections from the finished runs of the request (the other mode's runs are only read)
    summaries = {m: summarise(finished(args, m), ALL_ROWS) for m in DETECTIONS}
    missing = {m: [a for a in args.ablations if a not in summaries[m]] for m in DETECTIONS}
    text = report(summaries, det, args, args.extra, missing)
    path = Path(args.results)
    if path.is_file() and "## Analysis" in path.read_text():
        text += "\n" + path.read_text()[path.read_text().index("## Analysis"):]
    path.write_text(text)
    print(text)
    (out / "summary.json").write_text(json.dumps({"detector": det, "rows": summaries["detr"],
                                                  "oracle_rows": summaries["oracle"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
