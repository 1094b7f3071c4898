"""Cost of the detector evaluation (COCO protocol, pycocotools) that runs after every detector epoch,
and the COCO metrics of a detector checkpoint on SynthHOI's test split.

    python benchmarks/detection_eval.py --images 500 --dets 100 --repeat 3 \\
        [--detector hoikit/assets/synth_detr.pt --data data/synthhoi]

Part 1 (synthetic): ``--images`` images with 3-11 ground-truth boxes of 10 classes each and ``--dets``
detections per image (noisy copies of the ground truth, 30 % with a random class, uniform scores):
the shape of a 100-query DETR's output. Times :func:`hoikit.eval.detection.coco_detection_metrics`
(CPU seconds of this process and wall seconds; CPU time is what a shared machine cannot inflate).

Part 2 (``--detector``): the checkpoint's predictions on the test split (every drawn instance,
synth_detr's test scale), the metrics, and the CPU time of the metric step alone on them.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Dict, List, Tuple

import numpy as np

from hoikit.eval.detection import coco_detection_metrics, format_detection_metrics


def synthetic(images: int, dets: int, classes: int = 10, seed: int = 0) -> Tuple[List[Dict], List[Dict]]:
    """Ground truth and DETR-like detections (``dets`` per image) of ``images`` images."""
    rng = np.random.default_rng(seed)
    gts, out = [], []
    for _ in range(images):
        n = int(rng.integers(3, 12))
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(8, 120, (n, 2))], 1)
        labels = rng.integers(0, classes, n)
        gts.append({"boxes": boxes, "labels": labels})
        src = rng.integers(0, n, dets)
        out.append({"boxes": boxes[src] + rng.normal(0, 6, (dets, 4)),
                    "labels": np.where(rng.random(dets) < 0.7, labels[src], rng.integers(0, classes, dets)),
                    "scores": rng.random(dets)})
    return gts, out


def timed(fn, repeat: int):
    """(result, [cpu seconds], [wall seconds]) of ``repeat`` calls."""
    cpu, wall = [], []
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return result, cpu, wall


def detector_predictions(detector: str, data_root: str):
    """(ground truth, {index: prediction}, class names) of ``detector`` on SynthHOI's test split."""
    import torch

    from hoikit.config import load_config
    from hoikit.data.dataset import collate
    from hoikit.engine.datasets import build_training_data
    from hoikit.engine.testing import collect_predictions
    from hoikit.recipes import build_model

    cfg = load_config("synth_detr", [f"data.root={data_root}", f"model.detr.checkpoint={detector}"])
    data = build_training_data(cfg)
    loader = torch.utils.data.DataLoader(data.eval_set, batch_size=8, collate_fn=collate)
    preds = collect_predictions(build_model(cfg, data.meta), loader, torch.device("cpu"))
    ev = data.make_evaluator()
    return ev.ground_truth, preds, ev.class_names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--dets", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--detector", default="", help="also evaluate this detector checkpoint on SynthHOI test")
    ap.add_argument("--data", default="data/synthhoi", help="SynthHOI root for --detector")
    args = ap.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    gts, dets = synthetic(args.images, args.dets)
    m, cpu, wall = timed(lambda: coco_detection_metrics(gts, dets, [str(k) for k in range(10)]), args.repeat)
    print(f"| synthetic | images | detections | CPU s (min / median) | wall s (min / median) | AP50 |")
    print(f"|---|---|---|---|---|---|")
    print(f"| pycocotools | {args.images} | {args.images * args.dets} | {min(cpu):.2f} / {np.median(cpu):.2f} "
          f"| {min(wall):.2f} / {np.median(wall):.2f} | {m['AP50']:.2f} |")
    if args.detector:
        gt, preds, names = detector_predictions(args.detector, args.data)
        m, cpu, wall = timed(lambda: coco_detection_metrics(gt, preds, names), args.repeat)
        n = sum(len(p["scores"]) for p in preds.values())
        print(f"\n{args.detector} on {len(gt)} test images ({n} detections); metric step: CPU s "
              f"{min(cpu):.2f} (min of {args.repeat}), wall s {min(wall):.2f}")
        print(format_detection_metrics(m))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
