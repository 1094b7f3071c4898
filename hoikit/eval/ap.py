"""Average precision as the official detection tools compute it.

Two interpolations are in use by the HOI benchmarks:

* VOC2007 **11-point** AP (HICO-DET, official ``ywchao/ho-rcnn``
  ``evaluation/VOCevaldet_bboxpair.m``): ``AP = sum_t max(prec[rec >= t]) / 11`` for
  ``t`` in MATLAB's ``0:0.1:1``. The thresholds are the doubles MATLAB's colon operator
  produces, which are *not* ``i / 10``: see :func:`matlab_colon` and
  ``../shared/specs/evaluation.md`` ("Exactness details").
* VOC2010+ **all-point** AP (V-COCO, official ``s-gupta/v-coco`` ``vsrl_eval.py``
  ``voc_ap``): area under the monotone precision envelope, summed at recall changes.

Both functions take the cumulative recall / precision arrays of one class in ranked order
(see :func:`precision_recall`) and return a Python float in [0, 1].
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np


def matlab_colon(start: float, step: float, stop: float) -> np.ndarray:
    """The float64 values of MATLAB's ``start:step:stop``.

    MATLAB builds a range symmetrically: with ``n = round((stop - start) / step)``
    intervals, the first half is ``start + k * step`` and the second half
    ``stop - k * step`` (``k`` counted from the end), so ``0:0.1:1`` holds
    ``0.30000000000000004`` (= 3 * 0.1) but exactly ``0.6`` (= 1 - 0.4) and ``0.7``
    (= 1 - 3 * 0.1). These equal ``torch.linspace(0, 1, 11, dtype=torch.float64)``.

    Args:
        start: first value.
        step: increment (> 0).
        stop: last value; must be reached within rounding (``(stop - start) / step``
            within 1e-10 of an integer), as in every use in this package.

    Returns:
        float64 array ``[n + 1]``.
    """
    ratio = (stop - start) / step
    n = int(round(ratio))
    if step <= 0 or abs(ratio - n) > 1e-10:
        raise ValueError(f"matlab_colon({start}, {step}, {stop}): stop must be start + n * step, step > 0")
    k = np.arange(n + 1, dtype=np.float64)
    half = n // 2
    out = np.empty(n + 1, dtype=np.float64)
    out[: half + 1] = start + k[: half + 1] * step
    out[half + 1:] = stop - (n - k[half + 1:]) * step
    return out


# The 11 recall thresholds of VOCevaldet_bboxpair.m (`for t = 0:0.1:1`).
VOC11_THRESHOLDS: np.ndarray = matlab_colon(0.0, 0.1, 1.0)


def precision_recall(tp: np.ndarray, npos: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cumulative recall and precision of ranked detections.

    Matches the official arithmetic: ``rec = cumsum(tp) / npos`` and
    ``prec = cumsum(tp) ./ (cumsum(fp) + cumsum(tp))`` with ``fp = 1 - tp``, in float64.
    With ``npos == 0`` recall is NaN (0/0) as in MATLAB, so no threshold is reached.

    Args:
        tp: ``[D]`` 0/1 (or bool) true-positive flags in ranked order (best first).
        npos: number of ground-truth instances of the class.

    Returns:
        ``(rec, prec)``, two float64 arrays ``[D]``.
    """
    tp = np.asarray(tp, dtype=np.float64).reshape(-1)
    ctp = np.cumsum(tp)
    rank = np.arange(1, len(tp) + 1, dtype=np.float64)  # cumsum(fp) + cumsum(tp), exact integers
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = ctp / np.float64(npos)
    prec = ctp / rank
    return rec, prec


def voc_ap_11point(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC2007 11-point interpolated AP, exactly as ``VOCevaldet_bboxpair.m``.

    ``ap = 0; for t = 0:0.1:1: p = max(prec(rec >= t)) (0 if empty); ap = ap + p / 11``.
    Accumulated in the same order as MATLAB so the double result is bit-identical.

    Args:
        rec: ``[D]`` cumulative recall (NaN entries never reach a threshold).
        prec: ``[D]`` cumulative precision.

    Returns:
        AP in [0, 1].
    """
    rec = np.asarray(rec, dtype=np.float64).reshape(-1)
    prec = np.asarray(prec, dtype=np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"voc_ap_11point: rec {rec.shape} and prec {prec.shape} differ")
    if len(rec) == 0:
        return 0.0
    # max(prec(rec >= t)) = suffix maximum of prec at the first index with rec >= t when rec
    # is non-decreasing (always, for cumulative recall); the literal mask handles any input.
    ap = 0.0
    monotone = not np.isnan(rec).any() and bool(np.all(rec[1:] >= rec[:-1]))
    if monotone:
        suffix_max = np.maximum.accumulate(prec[::-1])[::-1]
        first = np.searchsorted(rec, VOC11_THRESHOLDS, side="left")
        for f in first:
            p = float(suffix_max[f]) if f < len(rec) else 0.0
            ap = ap + p / 11
        return ap
    for t in VOC11_THRESHOLDS:
        mask = rec >= t
        p = float(prec[mask].max()) if mask.any() else 0.0
        ap = ap + p / 11
    return ap


def voc_ap_all_point(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC2010+ all-point AP, as ``voc_ap`` in V-COCO's ``vsrl_eval.py``.

    ``mrec = [0, rec, 1]``, ``mpre = [0, prec, 0]``; ``mpre`` is made non-increasing from
    the right (precision envelope); ``AP = sum_i (mrec[i+1] - mrec[i]) * mpre[i+1]`` over
    the indices ``i`` where recall changes. The input dtype is kept as the official code
    keeps it (``np.concatenate`` with Python floats; float32 input promotes to float64).

    Args:
        rec: ``[D]`` cumulative recall in ranked order.
        prec: ``[D]`` cumulative precision in ranked order.

    Returns:
        AP in [0, 1] (NaN recall, from npos = 0, gives NaN like the official code).
    """
    rec = np.asarray(rec).reshape(-1)
    prec = np.asarray(prec).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"voc_ap_all_point: rec {rec.shape} and prec {prec.shape} differ")
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the official right-to-left max loop
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def mean_ap(aps) -> float:
    """Plain mean of per-class APs (NaN if there are none), as MATLAB's ``mean(AP)``."""
    aps = np.asarray(aps, dtype=np.float64).reshape(-1)
    return float(aps.mean()) if len(aps) else math.nan
