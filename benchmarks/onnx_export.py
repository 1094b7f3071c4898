"""ONNX export of the SynthHOI models: parity with PyTorch and CPU latency, onnxruntime vs PyTorch.

    python benchmarks/onnx_export.py --detr hoikit/assets/synth_detr.pt --rmlr runs/synth_rmlr/best.pt \\
        --sizes 256 512 --images 20 --repeats 3 --out benchmarks/results/onnx_export.md
    python benchmarks/onnx_export.py --detr "" --deformable hoikit/assets/synth_deformable.pt \\
        --deformable-nms 0.5 --rmlr-random-head --data data/synthhoi --out benchmarks/results/onnx_export_deformable.md

``--deformable``: the Deformable DETR detector as shipped (``nms_thresh`` of its config), and with
``--deformable-nms T`` also a copy whose config sets ``model.detr.nms_thresh = T`` (the class-wise NMS
runs inside the ONNX graph). ``--rmlr-random-head``: when no trained RmLR on the Deformable detector is
at hand, the ``synth_rmlr`` preset (full RmLR on ``hoikit/assets/synth_deformable.pt``) with its
interaction head at random initialisation (seed 0): real detections and pairs, untrained verb scores
(parity and latency only). ``--data DIR``: the SynthHOI test images read from ``DIR/images/test``
(``hoikit demo`` / ``generate_synthhoi`` output) instead of drawn in memory.

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
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _pil_images(n: int, size: int, data: str):
    """The first ``n`` SynthHOI test images: from ``data/images/test`` (sorted) or drawn at ``size``."""
    from PIL import Image

    from hoikit.data.synth.scene import make_image

    if not data:
        return [make_image(0, "test", i, size)[0] for i in range(n)]
    files = sorted((Path(data) / "images" / "test").iterdir())[:n]
    if len(files) < n:
        raise SystemExit(f"{data}/images/test: {len(files)} images, --images asks for {n}")
    return [Image.open(f).convert("RGB") for f in files]


def _tensors(predictor, size: int, n: int, data: str = ""):
    from hoikit.data.dataset import build_transforms

    cfg_data = dataclasses.replace(predictor.cfg.data, test_scale=size, max_size=size)
    tr = build_transforms(cfg_data, train=False)
    empty = dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64),
                 hois=torch.zeros(0, 3, dtype=torch.int64), relations=torch.zeros(0, 3, dtype=torch.int64))
    return [tr(im, empty)[0] for im in _pil_images(n, size, data)]


def with_nms(ckpt: str, thresh: float, out: Path) -> str:
    """A copy of a Deformable DETR checkpoint whose config sets ``model.detr.nms_thresh``."""
    from hoikit.io.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(ckpt)
    state["config"]["model"]["detr"]["nms_thresh"] = thresh
    save_checkpoint(state, out)
    return str(out)


def rmlr_random_head(out: Path) -> str:
    """The ``synth_rmlr`` preset (full RmLR on the shipped Deformable DETR) with a randomly
    initialised interaction head (seed 0), saved as a checkpoint."""
    from hoikit.config import load_config, to_dict
    from hoikit.data.metadata import DatasetMeta
    from hoikit.data.synth.classes import CORRESPONDENCE, OBJECTS, VERBS
    from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
    from hoikit.recipes import build_model, meta_to_dict

    meta = DatasetMeta(name="synth", objects=list(OBJECTS), verbs=list(VERBS), person_label=OBJECTS.index("person"),
                       correspondence=np.asarray(CORRESPONDENCE))
    cfg = load_config("synth_rmlr")
    torch.manual_seed(0)
    model = build_model(cfg, meta, inference=True)
    save_checkpoint(model_checkpoint(model, to_dict(cfg), meta_to_dict("rmlr", meta)), out)
    return str(out)


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


def bench(name: str, ckpt: str, sizes, n: int, repeats: int, data: str = ""):
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
            images = _tensors(predictor, size, n, data)
            worst, exact, t_torch, t_ort, pairs, dets = {}, True, [], [], 0, 0
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
                    if "pred_logits" in ours:   # Deformable DETR: the network's raw outputs too
                        raw = predictor.model.detr([im])
                        exact &= _compare(ours, {k: raw[k][0] for k in ("pred_logits", "pred_boxes")}, worst)
                    dets += len(ours["boxes"])
                    if len(ours["boxes"]):   # boxes relative to the input's long side
                        rel = np.abs(ours["boxes"] - ref["boxes"].numpy()).max() / max(im.shape[-2:])
                        worst["boxes/size"] = max(worst.get("boxes/size", 0.0), float(rel))
                    pairs += len(ours.get("pairs", ()))
            shape = "x".join(str(s) for s in images[0].shape[-2:])
            rows.append(dict(model=name, size=size, shape=shape, images=n, dets=dets, pairs=pairs, exact=exact,
                             worst=worst,
                             torch_ms=1e3 * statistics.median(t_torch), ort_ms=1e3 * statistics.median(t_ort),
                             export_s=export_s))
    return rows


def table(rows) -> str:
    lines = ["| model | input (long side) | images | detections | pairs | labels / pairs equal | max abs diff | "
             "PyTorch ms/img | onnxruntime ms/img | speed-up |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = ", ".join(f"{k} {v:.1e}" for k, v in sorted(r["worst"].items()))
        lines.append(f"| {r['model']} | {r['size']} | {r['images']} | {r['dets']} | {r['pairs']} | "
                     f"{'yes' if r['exact'] else 'NO'} | "
                     f"{diff} | {r['torch_ms']:.1f} | {r['ort_ms']:.1f} | {r['torch_ms'] / r['ort_ms']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detr", default="hoikit/assets/synth_detr.pt", help="a DETR checkpoint ('' = none)")
    ap.add_argument("--rmlr", default="", help="a SynthHOI UPT / RmLR checkpoint (hoikit train synth_rmlr)")
    ap.add_argument("--deformable", default="", help="a Deformable DETR checkpoint (hoikit/assets/synth_deformable.pt)")
    ap.add_argument("--deformable-nms", type=float, default=0.0,
                    help="> 0: also the --deformable checkpoint with model.detr.nms_thresh set to this value")
    ap.add_argument("--rmlr-random-head", action="store_true",
                    help="RmLR of the synth_rmlr preset on the shipped Deformable DETR, head at random init")
    ap.add_argument("--data", default="", help="SynthHOI root whose images/test are read (default: drawn in memory)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    runs = [(f"DETR ({Path(args.detr).name})", args.detr)] if args.detr else []
    if args.rmlr:
        runs.append((f"RmLR ({Path(args.rmlr).name})", args.rmlr))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.deformable:
            runs.append((f"Deformable DETR ({Path(args.deformable).name})", args.deformable))
            if args.deformable_nms > 0:
                runs.append((f"Deformable DETR ({Path(args.deformable).name}, NMS {args.deformable_nms:g})",
                             with_nms(args.deformable, args.deformable_nms, Path(tmp) / "nms.pt")))
        if args.rmlr_random_head:
            from hoikit.config import load_config

            runs.append((f"RmLR (synth_rmlr, random head) on {Path(load_config('synth_rmlr').model.detr.checkpoint).name}",
                         rmlr_random_head(Path(tmp) / "rmlr_random_head.pt")))
        for name, ckpt in runs:
            rows += bench(name, ckpt, args.sizes, args.images, args.repeats, args.data)
    text = table(rows)
    print(text)
    if args.out:
        cmd = "python benchmarks/onnx_export.py " + shlex.join(sys.argv[1:])
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
