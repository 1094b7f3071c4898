"""Training curves from a run directory's ``log.csv`` / ``eval.csv`` (matplotlib, Agg backend)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Optional


def read_csv(path: Path) -> List[Dict[str, str]]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _series(rows, key):
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if v not in (None, ""):
            xs.append(float(r["step"]))
            ys.append(float(v))
    return xs, ys


def plot_training_curves(run_dir: Path, out: Optional[Path] = None) -> Optional[Path]:
    """Loss terms and learning rate over steps, and evaluation metrics, into one PNG.

    Returns:
        the PNG path, or None when the run has no logged rows yet.
    """
    import matplotlib  # heavy dependency: only when a plot is drawn

    matplotlib.use("Agg")   # before pyplot is imported: no display needed
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    train, evals = read_csv(run_dir / "log.csv"), read_csv(run_dir / "eval.csv")
    if not train:
        return None
    out = Path(out or run_dir / "curves.png")
    n = 3 if evals else 2
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.6))
    loss_keys = [k for k in train[0] if k.startswith("loss")]
    for k in loss_keys:
        axes[0].plot(*_series(train, k), label=k, lw=2 if k == "loss" else 1)
    axes[0].set(title="training loss", xlabel="step", yscale="symlog")
    axes[0].legend(fontsize=7)
    axes[1].plot(*_series(train, "lr"))
    axes[1].set(title="learning rate (first group)", xlabel="step")
    if evals:
        for k in [k for k in evals[0] if k not in ("epoch", "step")][:6]:
            axes[2].plot(*_series(evals, k), marker="o", label=k)
        axes[2].set(title="evaluation", xlabel="step")
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
