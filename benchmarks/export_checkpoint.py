"""Slim a training checkpoint into a shippable inference checkpoint (hoikit/assets/).

    python benchmarks/export_checkpoint.py runs/synth_detr/last.pt hoikit/assets/synth_detr.pt [--fp16]

Keeps ``format``, ``version``, ``config``, ``meta`` and ``model`` (docs/architecture.md,
"Checkpoints"); drops optimizer, scheduler, scaler and RNG states. ``--fp16`` stores floating
tensors as float16 (loading copies them back into the float32 parameters). The training position
(epoch, step) is kept under ``source``. Training-only modules (the DETR per-cell memory head,
``dense_head.*``) are dropped and ``model.detr.dense_loss_coef`` set to 0, and the rows of H-DETR's
one-to-many queries are cut from ``query_embed`` (``model.detr.num_queries_one2many`` set to 0) and
DN-DETR's denoising modules (``dn_label_embed``, DETR's ``dn_box_embed``) are dropped (``model.detr.dn_number`` set to 0),
so a shipped detector is DETR's / Deformable DETR's own state dict. An RmLR checkpoint loses its
training-only cross-modal modules (``cml_ire.*``, ``cml_irm.*``: inference builds have none), so it
serves ``hoikit test`` / ``predict`` / ``demo``, not a resumed training.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from hoikit.io.checkpoint import load_checkpoint, model_checkpoint, save_checkpoint
from hoikit.models.rmlr.model import RmLR


def _is_dn_key(key: str) -> bool:
    """A training-only DN-DETR parameter of the detector (``detr.dn_label_embed.weight``, DETR's
    ``detr.dn_box_embed.*``; also under an HOI model's ``detector.`` / ``detr.`` prefix)."""
    return any(part in ("dn_label_embed", "dn_box_embed") for part in key.split("."))


def export(src: Path, out: Path, fp16: bool = False) -> Path:
    ck = load_checkpoint(src)
    # training-only modules are not shipped: DETRDetector's per-cell memory head (losses/dense.py)
    # and DN-DETR's label embedding of the denoising queries (hoikit/models/denoising.py)
    model = {k: (v.half() if fp16 and v.is_floating_point() else v) for k, v in ck["model"].items()
             if not k.startswith("dense_head.") and not _is_dn_key(k)}
    config = copy.deepcopy(ck["config"])
    detr = config.get("model", {}).get("detr", {})
    if "dense_loss_coef" in detr:
        detr["dense_loss_coef"] = 0.0
    q2 = int(detr.get("num_queries_one2many", 0) or 0)
    if q2 > 0:   # H-DETR one-to-many queries are training-only: keep the one-to-one rows
        q1 = int(detr["num_queries"])
        for k in [k for k in model if k.endswith("query_embed.weight") and k.startswith(("detr.", "detector."))]:
            model[k] = model[k][:q1].clone()
        detr["num_queries_one2many"] = 0
    if "dn_number" in detr:
        detr["dn_number"] = 0
    if config.get("model", {}).get("arch") == "rmlr":
        # RmLR's cross-modal modules (Sec. 3.4) only distil into training; an inference build has none
        model = {k: v for k, v in model.items() if not k.startswith(RmLR.TRAINING_ONLY)}
    if detr.get("checkpoint") and config.get("model", {}).get("arch") == "detr":
        detr["checkpoint"] = ""        # every DETR weight is in this file (the init path was for training)
    slim = {"format": ck["format"], "version": ck["version"], "config": config, "meta": ck["meta"],
            "model": model, "source": {"path": str(src), "epoch": int(ck.get("epoch", -1)),
                                       "step": int(ck.get("step", -1)), "fp16": bool(fp16)}}
    assert set(model_checkpoint(torch.nn.Module(), {}, {})) <= set(slim)  # same layout as an inference checkpoint
    return save_checkpoint(slim, out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--fp16", action="store_true")
    args = ap.parse_args(argv)
    p = export(args.src, args.out, args.fp16)
    print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
