"""Statistics over training seeds shared by the SynthHOI benchmarks (synth_rmlr.py, synth_sg2hoi.py)."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np


def paired_by_seed(a: Dict[int, float], b: Dict[int, float]) -> Tuple[float, float, int]:
    """``a - b`` seed by seed over the seeds both have (``{seed: value}``): mean, sample std and count
    (mean NaN without a common seed, std NaN below two). Runs of one seed share the data order, so the
    paired difference removes the part of the seed noise that two rows share."""
    d = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])
    return (float(d.mean()) if len(d) else float("nan"), float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
            len(d))
