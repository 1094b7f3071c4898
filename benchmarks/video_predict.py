"""Video inference throughput of ``hoikit predict clip.mp4`` (hoikit.engine.video.predict_video) on CPU.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/video_predict.py --frames 48 --rounds 2 \
        --out benchmarks/results/video_predict.md

The clip: ``--frames`` SynthHOI test images (seed 0, 256 px, resized to 256 x 192), written at 10 frames/s
with PyAV. The model: the ``synth_rmlr`` preset (UPT head, ``ablation=plain``) on the shipped SynthHOI detector
``hoikit/assets/synth_detr.pt``, head weights random (speed does not depend on them, except through the number
of detections above ``box_score_thresh``, the same in every configuration). Each configuration runs the whole
command path (decode, batched forward, drawing, H.264 encoding, JSON); configurations are interleaved over
``--rounds`` (after one untimed warm-up run) so that load on the shared core affects them alike; the table gives
the best and median frames/s.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import hoikit
from hoikit.config import load_config, to_dict
from hoikit.data.metadata import DatasetMeta
from hoikit.data.synth.classes import CORRESPONDENCE, OBJECTS, VERBS
from hoikit.data.synth.scene import make_image
from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
from hoikit.engine.video import predict_video
from hoikit.extras import require
from hoikit.recipes import build_model, meta_to_dict

CONFIGS = [("batch 1, every frame", 1, 1), ("batch 8, every frame", 8, 1), ("batch 8, --every 2", 8, 2)]


def write_clip(path: Path, n: int) -> Path:
    av = require("av", extra="video", purpose="this benchmark")
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 256, 192, "yuv420p"
        for i in range(n):
            frame = np.asarray(make_image(0, "test", i, 256)[0].convert("RGB").resize((256, 192)))
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def synth_checkpoint(path: Path) -> Path:
    meta = DatasetMeta(name="synth", objects=OBJECTS, verbs=VERBS, person_label=0, correspondence=CORRESPONDENCE)
    cfg = load_config("synth_rmlr", ["model.rmlr.ablation=plain"])
    torch.manual_seed(0)
    model = build_model(cfg, meta, inference=True)
    save_checkpoint(model_checkpoint(model, to_dict(cfg), meta_to_dict("rmlr", meta)), path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    tmp = Path(tempfile.mkdtemp(prefix="hoikit_video_bench_"))
    clip = write_clip(tmp / "clip.mp4", args.frames)
    predictor = hoikit.load(str(synth_checkpoint(tmp / "rmlr.pt")))
    predict_video(predictor, clip, tmp / "warmup", max_frames=8, batch_size=8)   # untimed: first-call costs
    fps = {name: [] for name, _, _ in CONFIGS}
    frames = {}
    for r in range(args.rounds):
        for name, batch, every in CONFIGS:
            s = predict_video(predictor, clip, tmp / f"out_{r}_{batch}_{every}", threshold=0.2, every=every,
                              batch_size=batch)
            fps[name].append(s["frames_per_second"])
            frames[name] = s["frames_predicted"]
            print(f"round {r + 1} {name}: {s['frames_predicted']} frames, {s['frames_per_second']:.2f} frames/s",
                  file=sys.stderr)
    load = os.getloadavg()
    lines = ["# Video inference throughput (`hoikit predict clip.mp4`, CPU)", "",
             f"Command: `OMP_NUM_THREADS={torch.get_num_threads()} taskset -c 1 python benchmarks/video_predict.py "
             f"--frames {args.frames} --rounds {args.rounds} --out {args.out or '...'}`", "",
             f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} thread(s); load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
             "(the core is shared: configurations interleaved after an untimed warm-up).", "",
             f"Clip: {args.frames} SynthHOI frames, 256 x 192, 10 frames/s; model: synth_rmlr (UPT head) on the "
             "shipped SynthHOI detector. frames/s = predicted frames / wall time of the whole path "
             "(decode, forward, drawing at 640 px, H.264 encoding, JSON).", "",
             "| configuration | frames predicted | best frames/s | median frames/s |", "|---|---:|---:|---:|"]
    for name, _, _ in CONFIGS:
        lines.append(f"| {name} | {frames[name]} | {max(fps[name]):.2f} | {statistics.median(fps[name]):.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
