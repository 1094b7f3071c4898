"""Writes the version-1 checkpoint fixtures of tests/test_checkpoints_v1.py with the code of the commit
named in README.md (run it against that commit's source, not against a later one):

    git archive <commit> | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old OMP_NUM_THREADS=1 python tests/data/checkpoints_v1/write_v1.py tests/data/checkpoints_v1

For each family the library saves (DETR detector, Deformable DETR detector, RmLR plain = UPT, SG2HOI+):
``<name>.pt.xz`` (a tiny hoikit checkpoint as ``save_checkpoint`` wrote it, xz-compressed; random weights rounded by
:func:`coarsen` so they compress) and ``<name>.expected.pt`` (the eval forward
outputs of the model rebuilt from that file by ``hoikit.load`` on the fixed input of :func:`fixed_image`,
flattened to ``{"path/to/tensor": tensor}``, plus the ``predict`` result as JSON text).
"""
import json
import lzma
import sys
from pathlib import Path

import numpy as np
import torch

TINY_DETR = ["model.arch=detr", "model.detr.backbone=tiny", "model.detr.hidden_dim=16", "model.detr.nheads=2", "model.detr.enc_layers=1",
             "model.detr.dec_layers=1", "model.detr.dim_feedforward=32", "model.detr.num_queries=6",
             "model.detr.num_classes=3", "data.test_scale=48", "data.max_size=64"]
TINY_DEFORMABLE = ["model.arch=detr", "model.detr.type=deformable", "model.detr.backbone=small_res", "model.detr.hidden_dim=16",
                   "model.detr.nheads=2", "model.detr.enc_layers=1", "model.detr.dec_layers=2",
                   "model.detr.dim_feedforward=32", "model.detr.num_queries=6", "model.detr.num_classes=3",
                   "model.detr.num_feature_levels=2", "model.detr.enc_n_points=2", "model.detr.dec_n_points=2",
                   "model.detr.with_box_refine=true", "model.detr.two_stage=true", "data.test_scale=48",
                   "data.max_size=64"]
TINY_RMLR = TINY_DETR + ["model.arch=rmlr", "model.rmlr.ablation=plain", "model.rmlr.representation_size=32",
                         "model.rmlr.box_score_thresh=0.0"]
TINY_SG2HOI = ["model.arch=sg2hoi", "model.detr.backbone=tiny", "model.sg2hoi.variant=rand", "model.sg2hoi.hss=det",
               "model.sg2hoi.hidden_dim=16", "model.sg2hoi.seg_dim=8", "model.sg2hoi.nheads=2",
               "model.sg2hoi.dim_feedforward=32", "model.sg2hoi.dropout=0.0", "model.sg2hoi.enc_layers=1",
               "model.sg2hoi.rel_dec_layers=1", "model.sg2hoi.r2i_layers=1", "model.sg2hoi.transform_layers=1",
               "model.sg2hoi.hoi_dec_layers=1", "model.sg2hoi.num_rel_queries=4", "model.sg2hoi.num_hoi_queries=4",
               "model.sg2hoi.seg_convs=1", "data.test_scale=48", "data.max_size=64"]
FAMILIES = {"detr": TINY_DETR, "deformable": TINY_DEFORMABLE, "rmlr_plain": TINY_RMLR, "sg2hoi": TINY_SG2HOI}


def metas():
    from hoikit.data.metadata import DatasetMeta

    hoi = DatasetMeta(name="toy", objects=["person", "bicycle", "cup"], verbs=["ride", "hold", "look at"],
                      person_label=0, correspondence=[[0, 1, 0], [1, 1, 1], [2, 2, 1], [3, 2, 2]], rare=[3])
    sgg = DatasetMeta(name="vg-toy", objects=["person", "bicycle", "cup"], predicates=["on", "near"])
    return hoi, sgg


@torch.no_grad()
def coarsen(model) -> None:
    """Round every floating-point weight to 2 significant bits of its tensor's scale and, in weights over 4096
    values, keep only the first 1/32 of the input channels (scaled up by sqrt(32)): still random, every tensor
    different, but the compressed fixture is small (Deformable DETR's small_res backbone alone has 2M weights)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point() and t.numel() > 4096 and t.dim() >= 2:
            keep = max(1, t.shape[1] // 32)
            t[:, keep:] = 0
            t.mul_((t.shape[1] / keep) ** 0.5)
        if t.is_floating_point() and t.numel() > 1 and t.abs().max() > 0:
            step = 2.0 ** (torch.floor(torch.log2(t.abs().max())).item() - 2)
            t.copy_((t / step).round() * step)


def fixed_image() -> np.ndarray:
    """The fixed input: a 40 x 56 RGB uint8 image from a seeded generator."""
    return (np.random.default_rng(7).random((40, 56, 3)) * 255).astype(np.uint8)


def flatten(obj, prefix="out") -> dict:
    """Every tensor (or numeric numpy array) in nested dicts / lists / tuples, keyed by its path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj.detach().cpu()}
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        return {prefix: torch.from_numpy(np.ascontiguousarray(obj))}
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}"))
    return out


@torch.no_grad()
def forward_outputs(predictor) -> dict:
    """The eval forward of a :class:`~hoikit.engine.inference.Predictor`'s model on :func:`fixed_image`."""
    from PIL import Image

    tensor, _ = predictor.preprocess(Image.fromarray(fixed_image()))
    return flatten(predictor.model.eval()([tensor]))


def main(out_dir: str) -> None:
    import hoikit
    from hoikit.config import load_config, to_dict
    from hoikit.io.checkpoint import model_checkpoint, save_checkpoint
    from hoikit.recipes import build_model, meta_to_dict

    out = Path(out_dir)
    hoi, sgg = metas()
    for name, overrides in FAMILIES.items():
        cfg = load_config(None, overrides)
        meta = (hoi, sgg) if cfg.model.arch == "sg2hoi" else hoi
        torch.manual_seed(0)
        model = build_model(cfg, meta)
        coarsen(model)
        if cfg.model.arch == "rmlr":
            with torch.no_grad():   # spread the random detector's queries and classes so human-object pairs exist
                w = model.detector.class_embed.weight
                w[0] = (w[1] + w[2]) / 2
                model.detector.class_embed.bias.copy_(torch.tensor([0.25, 0.0, 0.0, -2.0]))
                model.detector.query_embed.weight.mul_(8.0)
        path = out / f"{name}.pt"
        save_checkpoint(model_checkpoint(model, to_dict(cfg), meta_to_dict(cfg.model.arch, meta)), path)
        predictor = hoikit.load(str(path))
        expected = forward_outputs(predictor)
        expected["predict_json"] = json.dumps(predictor.predict(fixed_image(), threshold=0.0), sort_keys=True)
        torch.save(expected, out / f"{name}.expected.pt")
        with open(path, "rb") as f, lzma.open(f"{path}.xz", "wb", preset=9 | lzma.PRESET_EXTREME) as g:
            g.write(f.read())
        path.unlink()
        print(f"{path}.xz: {Path(f'{path}.xz').stat().st_size} bytes, {len(expected) - 1} output tensors")


if __name__ == "__main__":
    main(sys.argv[1])
