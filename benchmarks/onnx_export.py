"""ONNX export of the SynthHOI models: parity with PyTorch and CPU latency, onnxruntime vs PyTorch.

    python benchmarks/onnx_export.py --detr hoikit/assets/synth_detr.pt --rmlr runs/synth_rmlr/best.pt \\
        --sizes 256 512 --images 20 --repeats 3 --out benchmarks/results/onnx_export.md

Each checkpoint is exported with :func:`hoikit.deploy.onnx_export.export_onnx` into a temporary
directory. For every input size S the SynthHOI test images (seed 0, long side S) go through the
evaluation transforms with ``test_scale = S``; per image the PyTorch model's eval forward and
:class:`hoikit.deploy.onnx_runtime.OnnxModel` run on the same tensor. Parity: largest absolute
difference of every float output (boxes in pixels, and relative to the input's long side, scores,
verb scores) and equality of labels and pairs. Latency: median wall time per image, 1 thread each (``torch.set_num_threads(1)``,
onnxruntime ``intra_op_num_threads=1``), the two runtimes interleaved image by image so that the
shared machine's load affects both alike; warm-up excluded.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _tensors(predictor, size: int, n: int):
    from hoikit.data.dataset import build_transforms
    from hoikit.data.synth.scene import make_image

    data = dataclasses.replace(predictor.cfg.data, test_scale=size, max_size=size)
    tr = build_transforms(data, train=False)
    empty = dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64),
                 hois=torch.zeros(0, 3, dtype=torch.int64), relations=torch.zeros(0, 3, dtype=torch.int64))
    return [tr(make_image(0, "test", i, size)[0], empty)[0] for i in range(n)]


def _compare(ours: dict, ref: dict, worst: dict) -> bool:
    """Update the worst absolute difference per key; False when an integer output differs."""
    same = True
    for k, v in ref.items():
        if k == "size":
            continue
        v = v.detach().numpy()
        if ours[k].shape != v.shape:
            return False
        if v.dtype.kind in "iub":
            same &= bool((ours[k] == v).all())
        elif v.size:
            worst[k] = max(worst.get(k, 0.0), float(np.abs(ours[k] - v).max()))
    return same


def bench(name: str, ckpt: str, sizes, n: int, repeats: int):
    from hoikit.deploy.onnx_export import export_onnx
    from hoikit.deploy.onnx_runtime import OnnxModel
    from hoikit.engine.inference import Predictor

    predictor = Predictor.from_checkpoint(ckpt)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        export_onnx(ckpt, Path(tmp) / "onnx")
        export_s = time.perf_counter() - t0
        onnx = OnnxModel(Path(tmp) / "onnx", threads=1)
        for size in sizes:
            images = _tensors(predictor, size, n)
            worst, exact, t_torch, t_ort, pairs = {}, True, [], [], 0
            with torch.no_grad():
                predictor.model([images[0]]), onnx(images[0])          # warm-up
                for im in images:
                    for r in range(repeats):
                        t = time.perf_counter()
                        ref = predictor.model([im])[0]
                        t_torch.append(time.perf_counter() - t)
                        t = time.perf_counter()
                        ours = onnx(im)
                        t_ort.append(time.perf_counter() - t)
                    exact &= _compare(ours, ref, worst)
                    if len(ours["boxes"]):   # boxes relative to the input's long side
                        rel = np.abs(ours["boxes"] - ref["boxes"].numpy()).max() / max(im.shape[-2:])
                        worst["boxes/size"] = max(worst.get("boxes/size", 0.0), float(rel))
                    pairs += len(ours.get("pairs", ()))
            shape = "x".join(str(s) for s in images[0].shape[-2:])
            rows.append(dict(model=name, size=size, shape=shape, images=n, pairs=pairs, exact=exact, worst=worst,
                             torch_ms=1e3 * statistics.median(t_torch), ort_ms=1e3 * statistics.median(t_ort),
                             export_s=export_s))
    return rows


def table(rows) -> str:
    lines = ["| model | input (long side) | images | pairs | labels / pairs equal | max abs diff | "
             "PyTorch ms/img | onnxruntime ms/img | speed-up |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = ", ".join(f"{k} {v:.1e}" for k, v in sorted(r["worst"].items()))
        lines.append(f"| {r['model']} | {r['size']} | {r['images']} | {r['pairs']} | {'yes' if r['exact'] else 'NO'} | "
                     f"{diff} | {r['torch_ms']:.1f} | {r['ort_ms']:.1f} | {r['torch_ms'] / r['ort_ms']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detr", default="hoikit/assets/synth_detr.pt")
    ap.add_argument("--rmlr", default="", help="a SynthHOI UPT / RmLR checkpoint (hoikit train synth_rmlr)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = bench("DETR (synth_detr.pt)", args.detr, args.sizes, args.images, args.repeats)
    if args.rmlr:
        rows += bench(f"RmLR ({Path(args.rmlr).name})", args.rmlr, args.sizes, args.images, args.repeats)
    text = table(rows)
    print(text)
    if args.out:
        cmd = "python benchmarks/onnx_export.py " + " ".join(sys.argv[1:])
        load = os.getloadavg()
        exports = ", ".join(f"{r['model']}: {r['export_s']:.0f} s" for r in rows[::len(args.sizes)])
        Path(args.out).write_text(
            "# ONNX export: parity and CPU latency (onnxruntime vs PyTorch)\n\n"
            f"Command: `OMP_NUM_THREADS=1 taskset -c 1 {cmd}`\n\n"
            f"Machine: 2 shared CPU cores, 1 thread per runtime, load average at the end "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (a detector training job runs on the other core). "
            f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, export "
            f"{exports}.\n\n"
            + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
