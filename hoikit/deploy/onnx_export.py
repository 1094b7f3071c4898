"""``export_onnx(checkpoint, out_dir)``: a hoikit checkpoint -> a directory of ONNX graphs.

Layout (docs/onnx.md)::

    DIR/manifest.json        format, arch, graph files and their inputs / outputs, the full config
                             (evaluation transforms), the class tables (meta)
    DIR/detector.onnx        arch=detr: image -> boxes, scores, labels (Deformable DETR: after top-k
                             and the optional class-wise NMS, plus the raw pred_logits, pred_boxes)
    DIR/proposals.onnx       arch=rmlr (UPT / RmLR): image -> proposals + image features
    DIR/interaction.onnx     arch=rmlr: proposals -> pairs, verb_scores

Uses the TorchScript-based exporter (``dynamo=False``): it needs only ``onnx``, traces the
fixed-control-flow graphs of :mod:`hoikit.deploy.graphs` with dynamic axes, and is what
torch 2.1 - 2.13 all provide. Existing files in ``DIR`` are never overwritten.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Dict, Union

import torch

from ..config import to_dict
from ..engine.inference import model_from_checkpoint
from ..errors import CheckpointError, ConfigError
from ..models.deformable_detr import DeformableDETR
from ..recipes import meta_to_dict
from .graphs import DeformableDETRGraph, DETRGraph, InteractionGraph, ProposalGraph

MANIFEST = "manifest.json"
FORMAT = "hoikit-onnx"
FORMAT_VERSION = 1
OPSET = 17
EXAMPLE_SIZE = 64          # side of the example image that drives tracing (all axes are dynamic)
# Deformable DETR: a larger example, so that no level is a degenerate 1 x 1 map while tracing
DEFORMABLE_EXAMPLE_SIZE = 128


def require_onnx():
    """Import ``onnx``; a one-line ConfigError naming the extra when it is missing."""
    try:
        import onnx  # optional dependency (extra 'onnx')
    except ImportError:
        raise ConfigError("ONNX export needs the 'onnx' extra: pip install 'hoikit[onnx]' "
                          "(or pip install onnx onnxruntime)") from None
    return onnx


def _export(module: torch.nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_axes) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # tracer warnings about Python ints / len() concern branches the graphs never take
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes, do_constant_folding=True)


def _example_image(detector: torch.nn.Module) -> torch.Tensor:
    side = DEFORMABLE_EXAMPLE_SIZE if isinstance(detector, DeformableDETR) else EXAMPLE_SIZE
    return torch.zeros(1, 3, side, side)


def _example_proposals(model, n: int = 3) -> tuple:
    """Proposals (two humans and an object, or one human and two objects) for tracing the
    interaction graph; every axis is dynamic, only the shapes' ranks matter."""
    det = model.detector
    d = det.transformer.d_model if isinstance(det, DeformableDETR) else det.query_embed.weight.shape[1]
    c = model.detector.backbone.num_channels
    other = (model.human_idx + 1) % max(len(model.meta.objects), 2)
    boxes = torch.tensor([[2.0, 2.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0], [8.0, 30.0, 40.0, 62.0]])[:n]
    labels = torch.tensor([model.human_idx, model.human_idx, other])[:n]
    g = torch.Generator().manual_seed(0)
    args = [boxes, torch.tensor([0.9, 0.8, 0.7])[:n], labels, torch.randn(n, d, generator=g), torch.randn(c, generator=g),
            torch.tensor([float(EXAMPLE_SIZE), float(EXAMPLE_SIZE)])]
    if hasattr(model, "ire"):
        ire = model.ire
        args += [torch.randn(ire.input_proj.out_channels, 4, 4, generator=g), torch.randn(ire.fc_g.out_features,
                                                                                        generator=g)]
    return tuple(args)


def export_rmlr(model, out: Path) -> Dict[str, dict]:
    """Trace the two UPT / RmLR graphs into ``out``; returns their manifest entries."""
    if model.detections != "detr":
        raise ConfigError("model.rmlr.detections=oracle reads ground-truth boxes (analysis only) and cannot be exported")
    image = _example_image(model.detector)
    proposals = ProposalGraph(model).eval()
    per_n = {k: {0: "N"} for k in ("boxes", "scores", "labels", "hidden")}
    maps = {"encoded": {1: "h", 2: "w"}} if proposals.has_ire else {}
    _export(proposals, (image,), out / "proposals.onnx", ["image"], proposals.output_names(),
            {"image": {2: "H", 3: "W"}, **per_n, **maps})
    inter = InteractionGraph(model).eval()
    _export(inter, _example_proposals(model), out / "interaction.onnx", inter.input_names(), ["pairs", "verb_scores"],
            {**per_n, **maps, "pairs": {0: "P"}, "verb_scores": {0: "P"}})
    return {"proposals": {"file": "proposals.onnx", "inputs": ["image"], "outputs": proposals.output_names()},
            "interaction": {"file": "interaction.onnx", "inputs": inter.input_names(),
                            "outputs": ["pairs", "verb_scores"]}}


def export_detr(detector, out: Path) -> Dict[str, dict]:
    """Trace DETR or Deformable DETR (``model.arch = detr``) + its post-processing into
    ``out/detector.onnx``.

    Args:
        detector: :class:`~hoikit.models.detr.DETRDetector` or its Deformable subclass, eval mode.
    """
    if isinstance(detector.detr, DeformableDETR):
        graph = DeformableDETRGraph(detector).eval()
        names, axes = graph.OUTPUTS, {"boxes": {0: "K"}, "scores": {0: "K"}, "labels": {0: "K"},
                                      "pred_logits": {0: "Q"}, "pred_boxes": {0: "Q"}}
        # documentation of what the graph does after the network (docs/onnx.md)
        post = {"topk": graph.max_detections, "nms_thresh": graph.nms_thresh, "nms": "in-graph"}
    else:
        graph, names, axes, post = DETRGraph(detector.detr).eval(), ["boxes", "scores", "labels"], {}, {}
    _export(graph, (_example_image(detector.detr),), out / "detector.onnx", ["image"], names,
            {"image": {2: "H", 3: "W"}, **axes})
    entry = {"file": "detector.onnx", "inputs": ["image"], "outputs": names}
    return {"detector": {**entry, "postprocess": post} if post else entry}


def export_onnx(checkpoint: Union[str, os.PathLike], out_dir: Union[str, os.PathLike]) -> Path:
    """Export a hoikit checkpoint (``model.arch`` detr or rmlr, i.e. DETR, UPT or RmLR) to ONNX.

    Args:
        checkpoint: a hoikit checkpoint (training or inference).
        out_dir: new or empty directory.

    Returns:
        the path of ``manifest.json``.
    """
    require_onnx()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: output directory is not empty (nothing is overwritten; choose a new --out)")
    model, cfg, meta = model_from_checkpoint(checkpoint)
    model.eval()
    arch = cfg.model.arch
    out.mkdir(parents=True, exist_ok=True)
    if arch == "rmlr":
        graphs = export_rmlr(model, out)
    elif arch == "detr":
        graphs = export_detr(model, out)
    else:
        raise CheckpointError(f"{checkpoint}: model.arch '{arch}' has no ONNX export (detr and rmlr/UPT do)")
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "arch": arch, "opset": OPSET, "graphs": graphs,
                "source": str(checkpoint), "config": to_dict(cfg), "meta": meta_to_dict(arch, meta)}
    if arch == "rmlr":
        manifest["human_idx"] = int(model.human_idx)
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=1))
    return path


def export_onnx_files(checkpoint: Union[str, os.PathLike], out_dir: Union[str, os.PathLike]) -> dict:
    """:func:`export_onnx` for ``hoikit export --format onnx``: ``{name: written path}`` (the manifest
    and every graph it lists)."""
    manifest = export_onnx(checkpoint, out_dir)
    graphs = sorted(p for p in Path(manifest).parent.glob("*.onnx"))
    return {"manifest": manifest, **{p.stem: p for p in graphs}}
