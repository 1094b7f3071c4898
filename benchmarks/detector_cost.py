"""Inference cost of Deformable DETR against DETR (detector issue): parameters, MACs, CPU latency.

    python benchmarks/detector_cost.py --threads 1 --reps 5 --out benchmarks/results/detector_cost.md

Both ResNet-50, official sizes (DETR: 100 queries, 6 + 6 layers, FFN 2048; Deformable DETR two-stage
with box refinement: 4 levels, 300 queries, 6 + 6 layers, FFN 1024), 91 classes, random weights,
forward + the official post-processing on one square image of 512 and 800 px.

MACs: ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions, attention; see
benchmarks/cost.py) plus, for Deformable DETR, the sampling that the counter cannot see (``grid_sample``
and the weighted sum): per deformable attention call ``B * Q * heads * levels * points * d_head * 5``
MACs (4 for the bilinear interpolation, 1 for the attention weight), counted by a forward hook.
Latency: interleaved repetitions (DETR, Deformable, Deformable, DETR, ...), median and IQR.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import count_macs, interleaved_latency, med_iqr  # noqa: E402

from hoikit.config import DETRConfig  # noqa: E402
from hoikit.models.deformable_detr import build_deformable_detr, postprocess_topk  # noqa: E402
from hoikit.models.detr import build_detr, postprocess_detections  # noqa: E402
from hoikit.models.ms_deform_attn import MSDeformAttn  # noqa: E402


def build():
    torch.manual_seed(0)
    detr = build_detr(DETRConfig(backbone="resnet50", num_classes=91)).eval()
    deform = build_deformable_detr(DETRConfig(type="deformable", backbone="resnet50", num_classes=91, hidden_dim=256,
                                              nheads=8, enc_layers=6, dec_layers=6, dim_feedforward=1024,
                                              num_queries=300, num_feature_levels=4, with_box_refine=True,
                                              two_stage=True)).eval()
    return {"DETR": (detr, postprocess_detections), "Deformable DETR": (deform, postprocess_topk)}


def runner(model, post, image):
    size = torch.tensor([[image.shape[-1], image.shape[-2]]])

    @torch.no_grad()
    def run():
        return post(model([image]), size)
    return run


def sampling_macs(model, fn) -> int:
    total = [0]

    def hook(m: MSDeformAttn, inp, out):
        b, q, _ = inp[0].shape
        total[0] += b * q * m.n_heads * m.n_levels * m.n_points * (m.d_model // m.n_heads) * 5

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, MSDeformAttn)]
    fn()
    for h in handles:
        h.remove()
    return total[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 800])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = build()
    lines = ["| size | model | params (M) | MACs (G) counted | + sampling (G) | latency median (s) | IQR (s) | ratio to DETR |",
             "|---|---|---|---|---|---|---|---|"]
    t0 = time.time()
    for size in args.sizes:
        image = torch.randn(3, size, size, generator=torch.Generator().manual_seed(size))
        fns = {n: runner(m, p, image) for n, (m, p) in models.items()}
        wall, _ = interleaved_latency(fns, args.reps, warmup=1)
        base = med_iqr(wall["DETR"])[0]
        for name, (model, _) in models.items():
            macs = count_macs(model, fns[name])["total"]
            extra = sampling_macs(model, fns[name]) if name != "DETR" else 0
            med, q1, q3 = med_iqr(wall[name])
            params = sum(p.numel() for p in model.parameters()) / 1e6
            lines.append(f"| {size} | {name} | {params:.2f} | {macs / 1e9:.2f} | {(macs + extra) / 1e9:.2f} | "
                         f"{med:.3f} | {q1:.3f}-{q3:.3f} | {med / base:.2f} |")
    load = os.getloadavg()
    text = "\n".join(lines) + (f"\n\n{args.reps} interleaved repetitions after 1 warm-up, {args.threads} thread(s), "
                               f"{platform.processor() or platform.machine()}, load average {load[0]:.1f} / "
                               f"{load[1]:.1f}; {time.time() - t0:.0f} s\n")
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
