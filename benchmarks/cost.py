"""Inference cost (RmLR Table 4, SG2HOI+ issue "Cost"): parameters, MACs and CPU latency per image.

    python benchmarks/cost.py --threads 2 --reps 12 --out benchmarks/results/cost.md
    python benchmarks/cost.py --quick                 # smoke run: 128 px, 3 repetitions

Models, all ResNet-50 with random weights (weights do not change the cost, except through the
number of detections that pass UPT's thresholds, which is planted, see below):

1. DETR-R50 alone (forward + DETR post-processing), 91 COCO classes as the V-COCO configs.
2. UPT-R50 = RmLR ``ablation=plain`` on that (frozen) DETR.
3. RmLR-R50 ``ablation=full`` at inference: DETR + IRE + UPT head + Eq. (9) fusion. The text
   branch (text encoder, cross-modal heads) is training-only; the run checks that the text
   encoder is never loaded and that no cross-modal parameter is touched.
4. SG2HOI+ R50 (``sg2hoi_r50_vcoco`` preset, VG150 + V-COCO heads, no CLIP directory): one stage,
   100 relation + 100 HOI queries, so its cost does not depend on detections.

MACs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts matrix products and
convolutions only (aten mm / addmm / bmm / baddbmm / convolution / scaled-dot-product attention),
FLOPs = 2 x multiply-adds; MACs = FLOPs / 2. Element-wise ops, softmax, norms, pooling, NMS are not
counted. The fused MHA fast path is switched off while counting (the counter cannot see inside it);
latency runs use PyTorch's default (fast path on). A "thop rule" count is given beside it: what
thop (Lyken17/pytorch-OpCounter ``profile``) reports, i.e. parameters and MACs of exact-type
``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` modules that ran, nothing for
``nn.MultiheadAttention`` (no rule: zero MACs, zero parameters), ``nn.Embedding`` or ``LayerNorm``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

# RmLR paper Table 4 (V-COCO, 800 x 800): (MACs G, params M, FPS)
PAPER_TABLE4 = {"DETR": (57.02, 36.59, 29.1), "UPT": (57.11, 36.86, 27.5), "RmLR": (57.22, 36.98, 27.2)}
#: planted detections: 3 humans + 6 objects pass UPT's 0.2 threshold (COCO ids: chair, cup, car,
#: dog, bottle, dining table); everything else predicts no-object
PLANT_HUMANS = 3
PLANT_OBJECTS = (62, 47, 3, 18, 44, 67)
PLANT_LOGIT_HUMAN, PLANT_LOGIT_OBJECT, NO_OBJECT_LOGIT = 8.0, 7.0, 8.0


# ---------------------------------------------------------------------------------- models
def build_models(backbone: str = "resnet50"):
    """``{name: module}`` of the four models plus the standalone DETR and the shared frozen one."""
    from hoikit.config import load_config
    from hoikit.data.metadata import vcoco_meta, vg150_meta
    from hoikit.models.detr import build_detr
    from hoikit.models.rmlr.build import build_rmlr
    from hoikit.models.sg2hoi.build import build_sg2hoi

    meta = vcoco_meta()
    cfg = load_config("rmlr_r50_vcoco", [f"model.detr.backbone={backbone}"])
    cfg.model.detr.checkpoint = ""
    detr = build_detr(cfg.model.detr).eval()                    # trained as DETR: layer2-4 + transformer
    shared = build_detr(cfg.model.detr, train_backbone=False)
    shared.load_state_dict(detr.state_dict())
    shared.freeze()                                              # UPT / RmLR: frozen detector
    cfg.model.rmlr.ablation = "plain"
    upt = build_rmlr(cfg, meta, detector=shared).eval()
    cfg.model.rmlr.ablation = "full"
    rmlr = build_rmlr(cfg, meta, detector=shared).eval()
    scfg = load_config("sg2hoi_r50_vcoco", [f"model.detr.backbone={backbone}"])
    scfg.model.detr.checkpoint, scfg.model.sg2hoi.clip_path = "", ""
    sg2hoi = build_sg2hoi(scfg, vg150_meta(), meta, task=scfg.train.task).eval()
    return dict(DETR=detr, UPT=upt, RmLR=rmlr, SG2HOI=sg2hoi), shared, meta


def runner(name: str, model: nn.Module, image: Tensor) -> Callable[[], object]:
    """One inference call on one image (outputs in transformed-image pixels)."""
    if name == "DETR":
        from hoikit.models.detr import postprocess_detections
        size = torch.tensor([[image.shape[2], image.shape[1]]])
        return lambda: postprocess_detections(model([image]), size)
    return lambda: model([image])


@torch.no_grad()
def plant_detections(detr: nn.Module, shared: nn.Module, image: Tensor) -> None:
    """Set ``class_embed`` and the last ``bbox_embed`` layer so that, on ``image``, queries 5, 15, ...
    give the planted humans / objects with separate boxes and every other query no-object.

    The decoder output ``hs [Q, D]`` (Q=100 < D+1) does not depend on these two layers, so
    ``[hs, 1] W = targets`` has an exact least-squares solution.
    """
    out = detr([image])
    hs = out["hs"][-1][0].double()
    layers = detr.bbox_embed.layers
    a = hs.float()
    for layer in layers[:-1]:
        a = torch.relu(layer(a))
    q, c1 = out["pred_logits"].shape[1:]
    logits = torch.zeros(q, c1, dtype=torch.float64)
    logits[:, -1] = NO_OBJECT_LOGIT
    boxes = torch.full((q, 4), 0.5, dtype=torch.float64)
    boxes[:, 2:] = 0.2
    labels = [1] * PLANT_HUMANS + list(PLANT_OBJECTS)           # COCO person = 1
    for i, lab in enumerate(labels):
        qi = 5 + 10 * i
        logits[qi, -1] = 0.0
        logits[qi, lab] = PLANT_LOGIT_HUMAN if lab == 1 else PLANT_LOGIT_OBJECT
        r, c = divmod(i, 3)                                      # 3 x 3 grid of separate boxes
        boxes[qi] = torch.tensor([0.2 + 0.3 * c, 0.2 + 0.3 * r, 0.22, 0.25])
    target_boxes = torch.logit(boxes)

    def solve(x: Tensor, y: Tensor, layer: nn.Linear):
        xa = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
        w = torch.linalg.lstsq(xa, y, driver="gelsd").solution
        layer.weight.copy_(w[:-1].T.float())
        layer.bias.copy_(w[-1].float())

    solve(hs, logits, detr.class_embed)
    solve(a.double(), target_boxes, layers[-1])
    shared.load_state_dict(detr.state_dict())


def count_pairs(model, image: Tensor) -> Tuple[int, int, int]:
    """(humans, objects, pairs) that UPT / RmLR build on ``image``."""
    out = model([image])[0]
    n_h = int((out["labels"] == model.human_idx).sum())
    return n_h, len(out["labels"]) - n_h, len(out["pairs"])


# ---------------------------------------------------------------------------------- parameters
class ParamTouch(TorchFunctionMode):
    """Records which parameters reach any torch function (= used by the forward pass)."""

    def __init__(self, params: Sequence[nn.Parameter]):
        super().__init__()
        self.ids = {id(p) for p in params}
        self.seen = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for x in pytree.tree_leaves((args, kwargs)):
            if isinstance(x, Tensor) and id(x) in self.ids:
                self.seen.add(id(x))
        return func(*args, **kwargs)


def param_counts(model: nn.Module, fn: Callable) -> Dict[str, object]:
    """total / trainable / frozen parameters and those the inference pass actually uses."""
    params = list({id(p): p for p in model.parameters()}.values())
    with ParamTouch(params) as mode:
        fn()
    used = [p for p in params if id(p) in mode.seen]
    unused_names = sorted({n.split(".")[0] for n, p in model.named_parameters() if id(p) not in mode.seen})
    n = lambda ps: sum(p.numel() for p in ps)                    # noqa: E731
    return dict(total=n(params), trainable=n(p for p in params if p.requires_grad),
                frozen=n(p for p in params if not p.requires_grad), used=n(used), unused_modules=unused_names)


# ---------------------------------------------------------------------------------- MACs
_CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def register_cpu_sdpa_flops() -> None:
    """Count ``F.scaled_dot_product_attention`` on CPU like on GPU (``2 * B * H * S_q * S_k * d``
    for ``q k^T`` and again for ``attn v``). torch 2.13's FlopCounterMode has formulas for the CUDA
    SDPA kernels only, so the CPU kernel (RmLR's IRE encoder; ``nn.MultiheadAttention`` with
    ``need_weights=False``) counted zero before run 4."""
    if _CPU_SDPA not in flop_counter.flop_registry:
        @flop_counter.register_flop_formula(_CPU_SDPA)
        def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def count_macs(model: nn.Module, fn: Callable) -> Dict[str, object]:
    """FlopCounterMode MACs (total, per op, per top-level child) and thop-rule MACs / parameters."""
    thop = {"macs": 0, "params": 0}
    seen_modules = set()

    def hook(m, inp, out):
        if type(m) is nn.Conv2d:
            thop["macs"] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif type(m) is nn.Linear:
            thop["macs"] += out.numel() * m.in_features
        if m not in seen_modules:                                # thop: parameters of modules that ran
            seen_modules.add(m)
            thop["params"] += sum(p.numel() for p in m.parameters())

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if type(m) in (nn.Conv2d, nn.Linear, nn.BatchNorm2d)]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:                     # the counter's module tracker hooks autograd otherwise
        p.requires_grad_(False)
    torch.backends.mha.set_fastpath_enabled(False)
    register_cpu_sdpa_flops()
    try:
        with FlopCounterMode(display=False, depth=None) as fc:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
        for p, f in flags:
            p.requires_grad_(f)
        for h in handles:
            h.remove()
    counts = fc.get_flop_counts()
    root = type(model).__name__
    children: Dict[str, int] = {}
    for k, v in counts.items():                                  # outermost recorded module per component
        parts = k.split(".")
        if parts[0] != root or len(parts) < 2 or any(".".join(parts[:i]) in counts for i in range(2, len(parts))):
            continue
        children[parts[1]] = children.get(parts[1], 0) + sum(v.values()) // 2
    return dict(total=fc.get_total_flops() // 2, per_op={str(k): v // 2 for k, v in counts["Global"].items()},
                children=children, counts=counts, thop_macs=thop["macs"], thop_params=thop["params"])


def conv1_check(counts: Dict, h: int, w: int) -> Tuple[int, int]:
    """(counted, hand) MACs of ResNet-50's stem conv 7x7/2, 3 -> 64, padding 3 on an h x w image:
    H_out * W_out * C_out * C_in * k * k."""
    key = next(k for k in counts if k.endswith("body.conv1"))
    ho, wo = (h + 2 * 3 - 7) // 2 + 1, (w + 2 * 3 - 7) // 2 + 1
    return sum(counts[key].values()) // 2, ho * wo * 64 * 3 * 7 * 7


# ---------------------------------------------------------------------------------- latency
def interleaved_latency(fns: Dict[str, Callable], reps: int, warmup: int):
    """Wall and CPU seconds per call; the order rotates every repetition (A B C D, B C D A, ...)."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for r in range(reps):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            c0, t0 = time.process_time(), time.perf_counter()
            fns[n]()
            wall[n].append(time.perf_counter() - t0)
            cpu[n].append(time.process_time() - c0)
    return wall, cpu


class CachedDetector(nn.Module):
    """Stands in for the frozen DETR inside UPT / RmLR: returns one precomputed output dict, so the
    interaction head alone can be timed many times (the head's inputs are those of the full run)."""

    def __init__(self, detector: nn.Module, output: Dict):
        super().__init__()
        self.class_embed = detector.class_embed
        self.output = output

    def forward(self, images):
        return self.output


def head_latency(models: Dict[str, nn.Module], shared: nn.Module, image: Tensor, reps: int, warmup: int):
    """Interleaved wall seconds of what UPT / RmLR add to the detector, on the detector's output for
    ``image``: the UPT head, the RmLR head (IRE + UPT head + Eq. 9 fusion), the IRE encoder (Eq. 4)
    as run now and through PyTorch's fused ``nn.TransformerEncoder`` eval path (runs 1-3)."""
    upt, rmlr = models["UPT"], models["RmLR"]
    out = shared([image])
    feats, fmask, pos = out["features"], out["mask"], out["pos"]
    ire = rmlr.ire

    def stock_encoder():                                   # the IRE's Eq. (4) as runs 1-3 executed it
        x = ire.input_proj(feats) + pos
        return nn.TransformerEncoder.forward(ire.encoder, x.flatten(2).transpose(1, 2),
                                             src_key_padding_mask=fmask.flatten(1))

    cached = CachedDetector(shared, out)
    upt._modules["detector"] = rmlr._modules["detector"] = cached
    try:
        fns = {"UPT head": lambda: upt([image]), "RmLR head": lambda: rmlr([image]),
               "IRE encoder (SDPA)": lambda: ire.encode(feats, fmask, pos),
               "IRE encoder (stock fused)": stock_encoder,
               "IRE input_proj": lambda: ire.input_proj(feats)}
        wall, _ = interleaved_latency(fns, reps, warmup)
    finally:
        upt._modules["detector"] = rmlr._modules["detector"] = shared
    return wall


def med_iqr(xs: List[float]) -> Tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return statistics.median(xs), q[0], q[2]


# ---------------------------------------------------------------------------------- report
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["512x512", "800x800", "512x683"], help="HxW inputs")
    ap.add_argument("--reps", type=int, default=12, help="timed repetitions per model and size")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--head-reps", type=int, default=20,
                    help="timed repetitions of the UPT / RmLR heads on a cached detector output")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--quick", action="store_true", help="smoke run: 128x128, 3 repetitions, 1 warm-up")
    ap.add_argument("--out", default="", help="also write the markdown report here")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.reps, args.warmup, args.head_reps = ["128x128"], 3, 1, 3
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import logging
    logging.getLogger("hoikit").setLevel(logging.ERROR)          # SG2HOI+ "no CLIP" notice

    lines: List[str] = []
    say = lambda s="": (print(s, flush=True), lines.append(s))  # noqa: E731
    t_build = time.perf_counter()
    models, shared, meta = build_models(args.backbone)
    rmlr = models["RmLR"]
    loads = []
    real_loader = rmlr.text_loader
    rmlr.text_loader = lambda: (loads.append(1), real_loader())[1]
    say(f"Command: `python benchmarks/cost.py {' '.join(argv if argv is not None else sys.argv[1:])}`  ")
    say(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), "
        f"torch {torch.__version__}, torch.set_num_threads({args.threads}), batch 1, float32, "
        f"torch.inference_mode(); models built in {time.perf_counter() - t_build:.0f} s.\n")

    names = list(models)
    param_rows, mac_rows, lat_rows, checks, head_rows = {}, [], [], [], []
    with torch.inference_mode():
        for si, size in enumerate(args.sizes):
            h, w = (int(v) for v in size.lower().split("x"))
            g = torch.Generator().manual_seed(h * 10000 + w)
            image = torch.randn(3, h, w, generator=g)
            plant_detections(models["DETR"], shared, image)
            pairs = {n: count_pairs(models[n], image) for n in ("UPT", "RmLR")}
            fns = {n: runner(n, models[n], image) for n in names}
            if si == 0:
                for n in names:
                    param_rows[n] = param_counts(models[n], fns[n])
            macs = {n: count_macs(models[n], fns[n]) for n in names}
            got, hand = conv1_check(macs["DETR"]["counts"], h, w)
            checks.append((size, got, hand))
            mac_rows.append((size, macs, pairs))
            wall, cpu = interleaved_latency(fns, args.reps, args.warmup)
            lat_rows.append((size, wall, cpu))
            head_rows.append((size, head_latency(models, shared, image, args.head_reps, args.warmup)))
            print(f"[{time.perf_counter() - t_build:.0f} s] {size} done", file=sys.stderr, flush=True)

    M = 1e6
    say("## Parameters (M)\n")
    say("| model | total built | trainable | frozen | used at inference | thop rule | paper (Table 4) |")
    say("|---|---|---|---|---|---|---|")
    for n in names:
        p, paper = param_rows[n], PAPER_TABLE4.get(n)
        say(f"| {n} | {p['total'] / M:.2f} | {p['trainable'] / M:.2f} | {p['frozen'] / M:.2f} | {p['used'] / M:.2f} "
            f"| {mac_rows[-1][1][n]['thop_params'] / M:.2f} | {paper[1] if paper else '-'} |")
    say()
    heads = sum(p.numel() for m in (models["DETR"].class_embed, models["DETR"].bbox_embed) for p in m.parameters())
    say(f"thop rule for DETR without its prediction heads (class_embed + bbox_embed, {heads / M:.3f} M): "
        f"{(mac_rows[-1][1]['DETR']['thop_params'] - heads) / M:.2f} M.  ")
    say("Modules with parameters never used at inference: " + "; ".join(
        f"{n}: {', '.join(param_rows[n]['unused_modules']) or 'none'}" for n in names) + ".  ")
    say(f"RmLR text encoder loaded during the run: {'YES' if loads or rmlr._text_encoder is not None else 'no'} "
        f"(loader calls: {len(loads)}).\n")

    say("## MACs (G) per image (FlopCounterMode: matmul + conv, FLOPs / 2)\n")
    say("| input HxW | " + " | ".join(names) + " | RmLR / DETR | UPT+RmLR pairs (humans, objects) |")
    say("|---|" + "---|" * (len(names) + 2))
    for size, macs, pairs in mac_rows:
        say(f"| {size} | " + " | ".join(f"{macs[n]['total'] / 1e9:.2f}" for n in names)
            + f" | {macs['RmLR']['total'] / macs['DETR']['total']:.3f} | "
            + ", ".join(f"{k}: {v[2]} ({v[0]} h, {v[1]} o)" for k, v in pairs.items()) + " |")
    say()
    size, macs, _ = mac_rows[-1]
    for s_, m_, _ in mac_rows:
        say(f"thop-rule MACs (G) at {s_}: " + ", ".join(f"{n} {m_[n]['thop_macs'] / 1e9:.2f}" for n in names) + ".  ")
    for n in names:
        say(f"{n} at {size}, by top-level module (G): " + ", ".join(
            f"{k} {v / 1e9:.3f}" for k, v in sorted(macs[n]["children"].items(), key=lambda kv: -kv[1]) if v) + ".  ")
    say(f"DETR at {size}, by op (G): " + ", ".join(f"{k} {v / 1e9:.3f}" for k, v in macs['DETR']['per_op'].items()) + ".\n")
    say("Hand check, ResNet-50 conv1 (7x7/2, 3->64, pad 3): " + "; ".join(
        f"{s}: counted {g:,} = hand {hd:,} {'OK' if g == hd else 'MISMATCH'}" for s, g, hd in checks) + ".\n")

    say(f"## CPU latency per image (ms): median [IQR], {args.reps} interleaved repetitions, {args.warmup} warm-up\n")
    say("| input HxW | " + " | ".join(names) + " | RmLR / DETR (medians) | RmLR / DETR (per-rep median) "
        "| RmLR / DETR (minima) | UPT / DETR | SG2HOI / RmLR | CPU-time RmLR / DETR |")
    say("|---|" + "---|" * (len(names) + 6))
    for size, wall, cpu in lat_rows:
        cells = []
        for n in names:
            m, q1, q3 = med_iqr(wall[n])
            cells.append(f"{1000 * m:.0f} [{1000 * q1:.0f}-{1000 * q3:.0f}]")
        md = {n: statistics.median(wall[n]) for n in names}
        paired = statistics.median(r / d for r, d in zip(wall["RmLR"], wall["DETR"]))
        best = min(wall["RmLR"]) / min(wall["DETR"])
        cpu_ratio = statistics.median(cpu["RmLR"]) / statistics.median(cpu["DETR"])
        say(f"| {size} | " + " | ".join(cells) + f" | {md['RmLR'] / md['DETR']:.3f} | {paired:.3f} | {best:.3f} | "
            f"{md['UPT'] / md['DETR']:.3f} | {md['SG2HOI'] / md['RmLR']:.3f} | {cpu_ratio:.3f} |")
    say()
    say(f"### What UPT / RmLR add to the detector (ms): median [IQR], {args.head_reps} interleaved repetitions "
        "on a cached detector output\n")
    heads = list(head_rows[0][1])
    say("| input HxW | " + " | ".join(heads) + " | DETR (above) | RmLR head / DETR | UPT head / DETR "
        "| 1 + (RmLR head) / DETR |")
    say("|---|" + "---|" * (len(heads) + 4))
    for (size, hw), (_, wall, _) in zip(head_rows, lat_rows):
        d = statistics.median(wall["DETR"])
        cells = []
        for n in heads:
            m, q1, q3 = med_iqr(hw[n])
            cells.append(f"{1000 * m:.1f} [{1000 * q1:.1f}-{1000 * q3:.1f}]")
        r, u = statistics.median(hw["RmLR head"]), statistics.median(hw["UPT head"])
        say(f"| {size} | " + " | ".join(cells) + f" | {1000 * d:.0f} | {r / d:.3f} | {u / d:.3f} | {1 + r / d:.3f} |")
    say()
    say("Paper Table 4 (V-COCO, 800x800, GPU FPS): " + ", ".join(
        f"{k}: {v[0]} GMACs, {v[1]} M params, {v[2]} FPS" for k, v in PAPER_TABLE4.items())
        + f"; RmLR / DETR latency = 29.1 / 27.2 = {29.1 / 27.2:.3f}, MACs {57.22 / 57.02:.4f}.")
    if args.out:
        with open(args.out, "w") as f:
            f.write("# Inference cost: DETR, UPT, RmLR, SG2HOI+ (ResNet-50)\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
