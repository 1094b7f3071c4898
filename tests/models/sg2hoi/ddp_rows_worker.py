"""Worker of tests/models/sg2hoi/test_ddp_rows.py, run under ``torchrun --nproc_per_node 2``:

    python ddp_rows_worker.py OUT CLIP_DIR [ROW ...]

For every SG2HOI+ row (FULL, Table I variants, Table V tasks, Tables VI-VIII ablations) it builds the
tiny model with the same seed on both ranks and trains it with the engine's ``fit`` (DDP wrapping,
phases, alternating SGG / HOI batches) for 2 optimizer steps, batch 1 per rank. Rank 0 writes
``OUT/rows.json``: per row the steps taken, whether every parameter is equal on both ranks, the
largest difference, and how many parameters moved. A row whose training raises is recorded with
its error (one line) and the remaining rows still run.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import Dataset

# row -> (model.sg2hoi switches, train.task, train.sgg_epochs, train.epochs): every run is 2 steps
ROWS = {
    "FULL": ({"variant": "pool"}, "joint", 0, 1),
    "I:rand": ({"variant": "rand"}, "joint", 0, 1),
    "I:clip": ({"variant": "clip"}, "joint", 0, 1),
    "I:cls": ({"variant": "cls"}, "joint", 0, 1),
    "V:sgg": ({"variant": "pool"}, "sgg", 0, 2),
    "V:hoi_after_sgg": ({"variant": "pool"}, "hoi", 1, 2),         # phase sgg, then hoi_frozen
    "V:hoi": ({"variant": "pool"}, "hoi", 0, 2),
    "VI:-HSS": ({"variant": "pool", "hss": "none"}, "joint", 0, 1),
    "VI:HSSD": ({"variant": "pool", "hss": "det"}, "joint", 0, 1),
    "VI:HSSG": ({"variant": "pool", "hss": "glove"}, "joint", 0, 1),
    "VII:-VLpool": ({"variant": "pool", "vl_distill": "none"}, "joint", 0, 1),
    "VII:VLl2": ({"variant": "pool", "vl_loss": "l2"}, "joint", 0, 1),
    "VIII:-FETR": ({"variant": "pool", "feature_transform": False}, "joint", 0, 1),
    "VIII:-QUTR": ({"variant": "pool", "query_transform": False}, "joint", 0, 1),
    "VIII:-R2ITR": ({"variant": "pool", "r2i": False}, "joint", 0, 1),
    "VIII:RELQ": ({"variant": "pool", "relq": True}, "joint", 0, 1),
}


def tiny_metas():
    """The (SGG, HOI) metadata of the SG2HOI+ test fixtures (conftest.py's ``metas``)."""
    from hoikit.data.metadata import DatasetMeta

    spec = importlib.util.spec_from_file_location("sg2hoi_test_fixtures", Path(__file__).with_name("conftest.py"))
    fx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fx)
    return (DatasetMeta(name="vg-tiny", objects=fx.OBJECTS_SGG, predicates=fx.PREDICATES),
            DatasetMeta(name="hoi-tiny", objects=fx.OBJECTS_HOI, verbs=fx.VERBS, person_label=0,
                        correspondence=[[0, 1, 0], [1, 2, 1], [2, 1, 1]]))


class Pairs(Dataset):
    """The two (image, target) pairs of a tiny batch as a map-style dataset."""

    def __init__(self, batch):
        self.images, self.targets = batch

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], {**self.targets[i], "index": i}


def train_row(row: str, out: str, clip_dir: str, info):
    from hoikit.data.dataset import collate
    from hoikit.engine.phases import PhasedTrainingSet
    from hoikit.engine.trainer import fit, seed_everything
    from hoikit.models.sg2hoi.build import build_sg2hoi
    from hoikit.recipes.sg2hoi import phase_for_epoch
    from sg2hoi_tiny import hoi_batch, sgg_batch, tiny_cfg

    switches, task, sgg_epochs, epochs = ROWS[row]
    cfg = tiny_cfg(clip_dir, **switches)
    t = cfg.train
    t.task, t.sgg_epochs, t.epochs, t.batch_size, t.device, t.log_every = task, sgg_epochs, epochs, 1, "cpu", 100
    t.lr = t.sgg_lr = t.lr_backbone = 1e-3
    cfg.model.sg2hoi.clip_cls_lr = 1e-3
    cfg.data.num_workers = 0
    cfg.output_dir = os.path.join(out, row.replace(":", "_"))
    meta_sgg, meta_hoi = tiny_metas()
    parts = {}
    if task != "hoi" or sgg_epochs > 0:
        parts["sgg"] = Pairs(sgg_batch())
    if task != "sgg":
        parts["hoi"] = Pairs(hoi_batch())
    train_set = PhasedTrainingSet(parts, lambda e: phase_for_epoch(cfg, e),
                                  {"sgg": ("sgg",), "joint": ("sgg", "hoi"), "hoi": ("hoi",), "hoi_frozen": ("hoi",)})
    seed_everything(cfg.seed)                       # the same initial weights on both ranks
    model = build_sg2hoi(cfg, meta_sgg if "sgg" in parts or task == "joint" else None,
                         meta_hoi if task != "sgg" else None, task=cfg.train.task)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    state = fit(cfg, model, train_set, collate_fn=collate, info=info)
    return state.step, {n: p.detach().clone() for n, p in model.named_parameters()}, start


def main(argv):
    torch.set_num_threads(1)
    from hoikit.engine import distributed as D

    out, clip_dir, rows = argv[0], argv[1], argv[2:] or list(ROWS)
    info = D.init_distributed("cpu")
    report = {}
    for row in rows:
        try:
            steps, params, start = train_row(row, out, clip_dir, info)
        except Exception as e:  # noqa: BLE001  recorded, the next row still runs
            report[row] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            if info.distributed:       # a failed collective leaves the group unusable: stop here
                break
            continue
        both = D.all_gather_objects(params)
        diff = max(float((both[0][n] - both[1][n]).abs().max()) for n in params) if len(both) == 2 else float("nan")
        moved = sum(int(not torch.equal(params[n], start[n])) for n in params)
        report[row] = {"steps": steps, "equal": all(torch.equal(both[0][n], both[-1][n]) for n in params),
                       "max_diff": diff, "moved": moved, "params": len(params), "world": info.world_size}
    if info.is_main:
        with open(os.path.join(out, "rows.json"), "w") as f:
            json.dump(report, f, indent=1)
    D.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
