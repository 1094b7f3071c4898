"""AP helpers against hand-computed PR curves and the MATLAB threshold doubles."""
import math

import numpy as np
import pytest
import torch

from hoikit.eval.ap import (VOC11_THRESHOLDS, matlab_colon, mean_ap, precision_recall, voc_ap_11point,
                            voc_ap_all_point)


def test_thresholds_are_matlab_colon_doubles():
    # torch.linspace reproduces MATLAB's symmetric colon construction (spec, "Exactness details").
    expected = torch.linspace(0, 1, 11, dtype=torch.float64).numpy()
    assert VOC11_THRESHOLDS.tolist() == expected.tolist()  # bitwise, not approx
    assert VOC11_THRESHOLDS[3] == 3 * 0.1 and VOC11_THRESHOLDS[3] != 0.3
    assert VOC11_THRESHOLDS[6] == 0.6 and VOC11_THRESHOLDS[7] == 0.7
    # the two common wrong choices differ exactly where the spec says
    assert np.arange(0, 1.1, 0.1)[6] != VOC11_THRESHOLDS[6]
    assert [i / 10 for i in range(11)][3] != VOC11_THRESHOLDS[3]


def test_matlab_colon_other_ranges():
    assert matlab_colon(0, 1, 4).tolist() == [0, 1, 2, 3, 4]
    assert matlab_colon(0.0, 0.25, 1.0).tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError):
        matlab_colon(0, 0.3, 1)


def test_precision_recall_hand():
    rec, prec = precision_recall([1, 0, 1, 1, 0], npos=4)
    assert rec.tolist() == [0.25, 0.25, 0.5, 0.75, 0.75]
    assert np.allclose(prec, [1, 1 / 2, 2 / 3, 3 / 4, 3 / 5], rtol=0, atol=1e-15)


def test_11point_vs_all_point_hand_curve():
    # ranked tp = 1 0 1 1 0, npos 4: rec .25 .25 .5 .75 .75, prec 1 .5 .667 .75 .6
    rec, prec = precision_recall([1, 0, 1, 1, 0], npos=4)
    # 11-point: t = 0, .1, .2 -> 1; t = .3 ... .7 -> .75; t = .8, .9, 1 -> 0
    assert voc_ap_11point(rec, prec) == pytest.approx((3 * 1 + 5 * 0.75) / 11, abs=1e-15)
    # all-point: envelope 1 | .75 | .75 | 0 over recall steps .25 each
    assert voc_ap_all_point(rec, prec) == pytest.approx(0.25 * 1 + 0.25 * 0.75 + 0.25 * 0.75, abs=1e-15)


def test_matlab_threshold_trap_recall_3_of_10_and_3_of_5():
    # recall exactly 3/10 does NOT reach t3 = 0.30000000000000004: thresholds 0, .1, .2 only
    rec, prec = precision_recall([1, 1, 1], npos=10)
    assert voc_ap_11point(rec, prec) == pytest.approx(3 / 11, abs=1e-15)
    # recall exactly 3/5 DOES reach t6 = 0.6: thresholds 0 ... .6 -> 7 of 11
    rec, prec = precision_recall([1, 1, 1], npos=5)
    assert voc_ap_11point(rec, prec) == pytest.approx(7 / 11, abs=1e-15)
    # recall exactly 7/10 reaches t7 = 0.7: 8 of 11
    rec, prec = precision_recall([1] * 7, npos=10)
    assert voc_ap_11point(rec, prec) == pytest.approx(8 / 11, abs=1e-15)


def test_11point_literal_and_fast_paths_agree():
    rng = np.random.default_rng(0)
    for _ in range(50):
        tp = rng.random(rng.integers(1, 40)) < 0.4
        npos = int(tp.sum()) + int(rng.integers(0, 5)) or 1
        rec, prec = precision_recall(tp, npos)
        literal = 0.0
        for t in torch.linspace(0, 1, 11, dtype=torch.float64).tolist():
            m = rec >= t
            literal = literal + (prec[m].max() if m.any() else 0.0) / 11
        assert voc_ap_11point(rec, prec) == literal


def test_edge_cases():
    assert voc_ap_11point([], []) == 0.0
    assert voc_ap_all_point([], []) == 0.0
    rec, prec = precision_recall([0, 0], npos=0)  # no ground truth: NaN recall reaches nothing
    assert np.isnan(rec).all() and voc_ap_11point(rec, prec) == 0.0
    rec, prec = precision_recall([1, 1], npos=2)
    assert voc_ap_11point(rec, prec) == pytest.approx(1.0, abs=1e-15)
    assert voc_ap_all_point(rec, prec) == 1.0
    assert math.isnan(mean_ap([]))
    assert mean_ap([0.5, 1.0]) == 0.75
    with pytest.raises(ValueError):
        voc_ap_11point([0.1], [1, 1])
