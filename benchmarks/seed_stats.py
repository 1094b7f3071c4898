"""Statistics over training seeds shared by the SynthHOI benchmarks (synth_rmlr.py, synth_sg2hoi.py): the
seed-paired difference of two rows, the per-epoch evaluations a run wrote, and the curve section of a
report (a mean +- std table over seeds and its picture)."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np


def paired_by_seed(a: Dict[int, float], b: Dict[int, float]) -> Tuple[float, float, int]:
    """``a - b`` seed by seed over the seeds both have (``{seed: value}``): mean, sample std and count
    (mean NaN without a common seed, std NaN below two). Runs of one seed share the data order, so the
    paired difference removes the part of the seed noise that two rows share."""
    d = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])
    return (float(d.mean()) if len(d) else float("nan"), float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
            len(d))


def evaluations(run: Path) -> List[Dict[str, float]]:
    """The run's per-epoch evaluations from the trainer's ``eval.csv`` (``hoikit.viz.plots.read_csv``; the
    file's ``epoch`` is 0-based): ``epoch`` = epochs completed, then every metric that has a value. No file:
    an empty list."""
    from hoikit.viz.plots import read_csv

    return [{"epoch": int(r["epoch"]) + 1, **{k: float(v) for k, v in r.items() if k not in ("epoch", "step") and v}}
            for r in read_csv(Path(run) / "eval.csv")]


def mean_std_cell(values: Sequence[float], with_n: bool = True) -> str:
    """``mean +- sample std (n)`` (without `` (n)`` when ``with_n`` is false: a table with a seeds column);
    ``-`` for no value, ``value (1)`` for one (no spread to show)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f} (1)"
    cell = f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"
    return f"{cell} ({len(values)})" if with_n else cell


def mean_points(seed_curves: List[List[Dict]], epochs: Sequence[int], key: str) -> List[Tuple[int, float]]:
    """``(epoch, mean over seeds)`` of ``key`` at the epochs where EVERY seed has a value: a mean line
    through epochs that some seeds lack (one seed evaluated per epoch, three only at the end) would show a
    jump that is only the change of seeds. NaN counts as missing."""
    out = []
    for e in epochs:
        per_seed = [[p[key] for p in c if p["epoch"] == e and key in p and p[key] == p[key]] for c in seed_curves]
        if per_seed and all(per_seed):                 # the last value of each seed (a re-evaluated epoch)
            out.append((e, statistics.mean(v[-1] for v in per_seed)))
    return out


def curve_section(curves: Mapping[str, List[List[Dict]]], keys: Sequence[Tuple[str, str]], picture: Path,
                  title: str, xlabel: str = "epochs completed") -> List[str]:
    """Per-epoch curves of several rows over seeds: ``curves[row]`` is one list of ``{"epoch": e, key: value}``
    points per seed (rows without a seed are left out). Returns markdown lines (a table with one column per
    row and ``keys`` entry, ``mean +- std (seeds)`` per epoch) and writes ``picture`` (one panel per key; a
    thick mean line and a thin line per seed). ``keys``: (metric, label in %)."""
    curves = {r: cs for r, cs in curves.items() if cs}
    if not curves:
        return []
    epochs = sorted({p["epoch"] for cs in curves.values() for c in cs for p in c})

    def values(cs, e, k):
        return [p[k] for c in cs for p in c if p["epoch"] == e and k in p]

    lines = ["| epochs completed | " + " | ".join(f"{r} {name}" for r in curves for _, name in keys) + " |",
             "|---" * (len(keys) * len(curves) + 1) + "|"]
    for e in epochs:
        lines.append(f"| {e} | " + " | ".join(mean_std_cell(values(cs, e, k)) for cs in curves.values()
                                              for k, _ in keys) + " |")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys) + 1, 4), dpi=100, squeeze=False)
    for ax, (k, name) in zip(axes[0], keys):
        for i, (r, cs) in enumerate(curves.items()):
            for c in cs:
                pts = [(p["epoch"], p[k]) for p in c if k in p]
                ax.plot([x for x, _ in pts], [y for _, y in pts], color=f"C{i}", alpha=0.3, lw=1, marker=".", ms=4)
            pts = mean_points(cs, epochs, k)
            if not pts:                    # no epoch where every seed has this metric (an HOI-only row's R@50)
                continue
            ax.plot([e for e, _ in pts], [m for _, m in pts], color=f"C{i}", lw=2, marker="o",
                    label=f"{r} (mean of {len(cs)} seed{'s' if len(cs) > 1 else ''})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{name} (%)")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(picture)
    plt.close(fig)
    return [", ".join(name for _, name in keys) + " on the test split after each epoch (mean +- std, number "
            f"of seeds); thin lines in the picture are single seeds: ![curves]({Path(picture).name})", ""] + lines
