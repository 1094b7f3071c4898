"""A toy model and dataset that exercise every source of randomness the engine must control
(shuffled order, augmentation through random/numpy/torch, dropout), plus a script entry point:

    python engine_toy.py OUT [--resume] [--kill-at STEP] [--nan-at STEP] [--raise-at STEP [--raise-rank R]]
                         [key=value ...]

Under ``torchrun`` each rank also writes ``OUT/rank<r>.pt`` with its final weights.
"""
from __future__ import annotations

import os
import random
import signal
import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from hoikit.recipes import RecipeBase

IMAGE = 8  # toy images are 3 x IMAGE x IMAGE


class ToyDataset(Dataset):
    """``n`` random images; the target is the mean intensity. Augmentation draws from all three RNGs."""

    def __init__(self, n: int = 24, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, IMAGE, IMAGE, generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        im = self.images[i].clone()
        if random.random() < 0.5:
            im = im.flip(-1)
        im = im * float(np.random.uniform(0.8, 1.2)) + 0.05 * torch.randn_like(im)
        size = torch.tensor([IMAGE, IMAGE])
        return im, {"value": im.mean().reshape(1), "index": i, "orig_size": size, "size": size}


def toy_collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


class ToyModel(nn.Module):
    """conv -> dropout -> linear regression of the image mean; ``nan_at`` poisons one training step,
    ``raise_at`` raises a TrainingError in that step's forward."""

    def __init__(self, nan_at: int = 0, raise_at: int = 0):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(4, 1)
        self.nan_at, self.raise_at, self.calls = nan_at, raise_at, 0

    def forward(self, images, targets=None):
        x = torch.stack(images)
        y = self.head(self.drop(self.backbone(x).relu().mean((2, 3))))
        if not self.training:
            return y
        self.calls += 1
        if self.calls == self.raise_at:
            from hoikit.errors import TrainingError
            raise TrainingError(f"toy failure in forward call {self.calls}")
        gt = torch.stack([t["value"] for t in targets])
        loss = ((y - gt) ** 2).mean()
        if self.calls == self.nan_at:
            loss = loss * float("nan")
        return {"loss_mse": loss}

    def postprocess(self, outputs, targets):
        return [float(v) for v in outputs.reshape(-1)]


class ToyEvaluator:
    """Negative mean absolute error between predictions and the clean image means."""

    def __init__(self, dataset: ToyDataset):
        self.dataset, self.err = dataset, []

    def add(self, index, pred):
        self.err.append(abs(pred - float(self.dataset.images[index].mean())))

    def compute(self):
        return {"neg_mae": -float(np.mean(self.err)), "images": float(len(self.err))}


def main(argv):
    torch.set_num_threads(1)
    from hoikit.config import load_config
    from hoikit.engine import distributed as D
    from hoikit.engine.trainer import fit, seed_everything

    out, rest = argv[0], argv[1:]
    resume = "--resume" in rest
    kill_at = int(rest[rest.index("--kill-at") + 1]) if "--kill-at" in rest else 0
    nan_at = int(rest[rest.index("--nan-at") + 1]) if "--nan-at" in rest else 0
    raise_at = int(rest[rest.index("--raise-at") + 1]) if "--raise-at" in rest else 0
    raise_rank = int(rest[rest.index("--raise-rank") + 1]) if "--raise-rank" in rest else 0
    overrides = [a for a in rest if "=" in a]
    cfg = load_config(None, [f"output_dir={out}", "train.epochs=3", "train.batch_size=4", "train.lr=0.01",
                             "train.lr_backbone=0.005", "train.log_every=2", "data.num_workers=0",
                             "train.clip_max_norm=0.5", "train.schedule=cosine", *overrides])
    info = D.init_distributed("cpu")
    seed_everything(cfg.seed)  # same initial weights on every rank
    model = ToyModel(nan_at=nan_at, raise_at=raise_at if info.rank == raise_rank else 0)
    train_set, test_set = ToyDataset(24, seed=1), ToyDataset(6, seed=2)

    def callback(event, state):
        if event == "step" and state.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    from hoikit.errors import HoikitError
    try:
        state = fit(cfg, model, train_set, collate_fn=toy_collate, eval_set=test_set,
                    make_evaluator=lambda: ToyEvaluator(test_set), primary_metric="neg_mae", resume=resume,
                    callback=callback, info=info)
    except HoikitError as e:
        print(f"hoikit: error: {e}", file=sys.stderr)
        return 2
    if info.distributed:
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, os.path.join(out, f"rank{info.rank}.pt"))
        D.cleanup()
    print(f"done step={state.step} best={state.best}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


class ToyHOIModel(nn.Module):
    """Fixed HOI output for predict tests: two boxes given in a 100 x 50 original frame, one pair,
    verb scores [0.9, 0.3, 0.05] (boxes rescaled to the transformed image and back)."""

    BOXES = np.array([[10, 5, 40, 45], [50, 20, 90, 40]], np.float32)   # original pixels (W=100, H=50)
    VERBS = np.array([[0.9, 0.3, 0.05]], np.float32)

    def __init__(self, meta):
        super().__init__()
        self.meta = meta
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, images, targets=None):
        return [{"size": (im.shape[-1], im.shape[-2])} for im in images]

    def postprocess(self, outputs, targets):
        from hoikit.structures import HOIPrediction

        preds = []
        for out, t in zip(outputs, targets):
            ow, oh = [float(v) for v in t["orig_size"]]
            assert (ow, oh) == (100.0, 50.0)
            preds.append(HOIPrediction(boxes=self.BOXES * float(self.scale), labels=np.array([0, 1]),
                                       box_scores=np.array([0.95, 0.8], np.float32), pairs=np.array([[0, 1]]),
                                       verb_scores=self.VERBS))
        return preds


class ToyHOIRecipe(RecipeBase):
    """A recipe whose model is :class:`ToyHOIModel` (fixed triplets); tests put it in the registry in
    place of a real family (``monkeypatch.setitem(RECIPES, "rmlr", ToyHOIRecipe())``)."""

    name = "rmlr"

    def build_model(self, cfg, meta, *, state_dict=None, inference=False):
        return ToyHOIModel(meta)
