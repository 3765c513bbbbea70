"""Tests of theory.frontier on synthetic loss surfaces with exactly known compute-optimal exponents.

P(d, t) = A d^{-a1} + B t^{-a2}, t = f/d (B = 1 batch): minimizing over d at fixed f gives exactly
d* = (a1 A / (a2 B))^{1/(a1+a2)} f^{a2/(a1+a2)}, so xi = a2/(a1+a2) and eta = a1 a2/(a1+a2).
"""
import math
import warnings

import numpy as np
import pytest
from scipy import optimize

from theory import frontier as FR


def synthetic_curves(a1, a2, *, A=1.0, B=1.0, C=0.0, a3=None, ladder=2.0 ** np.arange(5, 21), tmax=1e9,
                     noise=0.0, seed=0, npts=300):
    """Curves (d, f = d t, P) with optional multiplicative log-normal noise and a third term C t^{-a3}."""
    rng = np.random.default_rng(seed)
    out = []
    t = np.logspace(0, math.log10(tmax), npts)
    for d in ladder:
        P = A * d ** -a1 + B * t ** -a2 + (C * t ** -a3 if C else 0.0)
        out.append((d, d * t, P * np.exp(noise * rng.standard_normal(t.size))))
    return out


CASES = [(0.5, 0.8), (1.0, 0.5), (0.3, 1.5)]


@pytest.mark.parametrize("a1,a2", CASES)
@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_recovers_planted_exponents(a1, a2, noise):
    xi, eta = a2 / (a1 + a2), a1 * a2 / (a1 + a2)
    curves = synthetic_curves(a1, a2, noise=noise, seed=int(100 * a1 + 10 * a2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FR.EdgeWarning)    # a 16-value ladder over these flops: no edge warning
        f1 = FR.fit_frontier(curves, approach=1)
        f2 = FR.fit_frontier(curves, approach=2)
    # tolerances: approach 1 (staircase of ladder ratio 2): xi within 0.006 clean, 0.03 with 1% noise;
    # approach 2 (parabola vertex): xi within 0.003 clean, 0.006 with noise; eta within 0.002 for both
    tol1, tol2 = (0.006, 0.003) if noise == 0 else (0.03, 0.006)
    assert abs(f1.xi - xi) < tol1 and abs(f2.xi - xi) < tol2
    assert abs(f1.eta - eta) < 0.002 and abs(f2.eta - eta) < 0.002
    # the reported uncertainties are not absurd: the error is within 3 sigma + 0.002 (approach 1, 2)
    assert abs(f1.xi - xi) < 3 * f1.xi_err + 0.002 and abs(f2.xi - xi) < 3 * f2.xi_err + 0.002
    assert 0 < f2.xi_err < 0.05 and 0 < f1.eta_err < 0.01
    # window rule: the argmin is at least two ladder steps from either edge inside the window
    n = len(curves)
    assert np.all(f1.argmin_index[f1.in_window] >= 2) and np.all(f1.argmin_index[f1.in_window] <= n - 3)
    assert f1.window[0] < f1.window[1] and not f1.edge_limited


def test_envelope_and_argmin_arrays_against_direct_minimum():
    # envelope = min over the ladder of the exact loss (interpolation error of 300-point log curves < 1e-3)
    a1, a2 = 0.5, 0.8
    curves = synthetic_curves(a1, a2)
    fit = FR.fit_envelope(curves)
    ladder = np.array([c[0] for c in curves])
    f = fit.flops[fit.in_window]
    exact = np.min(ladder[:, None] ** -a1 + (f[None, :] / ladder[:, None]) ** -a2, axis=0)
    np.testing.assert_allclose(fit.envelope[fit.in_window], exact, rtol=1e-3)
    # approach 2's vertex is near the exact continuous optimum (parabola through 3 points of ratio 2: < 3%)
    fit2 = FR.fit_parabola(curves)
    f2 = fit2.flops[fit2.in_window]
    d_exact = (a1 / a2) ** (1 / (a1 + a2)) * f2 ** (a2 / (a1 + a2))
    np.testing.assert_allclose(fit2.argmin_d[fit2.in_window], d_exact, rtol=0.03)


def test_local_slopes_follow_exact_crossover():
    # three terms: A d^{-0.5} + t^{-0.8} + 1e3 t^{-1.6}: the balance crosses over from xi = 1.6/2.1 to 0.8/1.3,
    # so the local slope drifts; compare approach 2's local slopes with the exact d ln d*/d ln f over the same
    # 1-decade window (d* by direct minimization): within 0.01
    curves = synthetic_curves(0.5, 0.8, C=1e3, a3=1.6, ladder=2.0 ** np.arange(2, 26), tmax=1e10)
    fit = FR.fit_parabola(curves, slope_window=1.0)
    assert fit.local.flops.size > 50

    def d_opt(f):
        loss = lambda x: math.log(math.exp(-0.5 * x) + (f / math.exp(x)) ** -0.8 + 1e3 * (f / math.exp(x)) ** -1.6)
        return math.exp(optimize.minimize_scalar(loss, bounds=(0, math.log(f)), method="bounded",
                                                 options={"xatol": 1e-10}).x)
    sample = fit.local.flops[:: max(1, fit.local.flops.size // 8)]
    for fc, xi_loc in zip(sample, fit.local.xi[:: max(1, fit.local.flops.size // 8)]):
        ff = np.logspace(math.log10(fc) - 0.5, math.log10(fc) + 0.5, 11)
        exact = np.polyfit(np.log(ff), np.log([d_opt(x) for x in ff]), 1)[0]
        assert abs(xi_loc - exact) < 0.01
    # and the drift itself is visible: early vs late local xi differ by > 0.05
    assert fit.local.xi[:5].mean() - fit.local.xi[-5:].mean() > 0.05


def test_edge_warning_when_ladder_too_narrow():
    curves = synthetic_curves(0.5, 0.8, ladder=2.0 ** np.arange(5, 8))
    with pytest.warns(FR.EdgeWarning, match="edge of the ladder"):
        fit = FR.fit_frontier(curves, approach=1)
    assert fit.edge_limited
    assert abs(fit.xi - 0.8 / 1.3) > 0.1     # and the estimate is indeed badly biased


def test_edge_warning_with_explicit_window_touching_edge():
    curves = synthetic_curves(0.5, 0.8)
    with pytest.warns(FR.EdgeWarning, match="inside the window"):
        FR.fit_frontier(curves, approach=2, window=(1e2, 1e6))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FR.EdgeWarning)
        fit = FR.fit_frontier(curves, approach=2, window=(1e4, 1e8))    # argmin interior throughout
    assert fit.window[0] >= 1e4 and fit.window[1] <= 1e8
    assert abs(fit.xi - 0.8 / 1.3) < 0.005


def test_power_fit_and_input_validation():
    x = np.logspace(0, 4, 41)
    pf = FR.power_fit(x, 3 * x ** 0.7)
    assert abs(pf.slope - 0.7) < 1e-12 and pf.se < 1e-10 and pf.split < 1e-10
    with pytest.raises(ValueError, match="at least 3"):
        FR.fit_frontier(synthetic_curves(0.5, 0.8)[:2])
    bad = synthetic_curves(0.5, 0.8)
    bad[3] = (bad[3][0], bad[3][1], -bad[3][2])
    with pytest.raises(ValueError, match="loss must be finite and > 0"):
        FR.fit_frontier(bad)
    with pytest.raises(ValueError, match="approach"):
        FR.fit_frontier(synthetic_curves(0.5, 0.8), approach=3)
