"""Scaling-collapse statistics (theory/collapse.py) against hand computations and exactly self-similar curves.

References: values worked out by hand below (sample std, ddof = 1); curves built as L0 + d^{-a} f(t/T(d)),
whose normalized forms coincide exactly; planted power laws for the L0 fit and the compute-optimal frontier
(closed-form argmin d* = (a A / (b C))^{1/(a+b)} f^{b/(a+b)}).
"""
import numpy as np
import pytest

from theory import collapse as C


def _hand_curves():
    steps = np.array([1.0, 2.0, 4.0])
    d1 = np.array([[3.0, 2.0, 1.5], [3.0, 2.2, 1.6]])
    d2 = np.array([[5.0, 3.0, 2.0], [5.0, 2.8, 1.8]])
    return [(steps, d1), (steps, d2)]


def test_delta_and_sigma_match_hand_computation():
    r = C.collapse(_hand_curves(), L0=1.0, x=[0.5, 1.0])
    # x = 0.5 (t = 2): l = 1/0.5, 1.2/0.6, 2/1, 1.8/0.8 = 2, 2, 2, 2.25
    np.testing.assert_allclose(r.l[:, :, 0], [[2.0, 2.0], [2.0, 2.25]], rtol=1e-14)
    np.testing.assert_allclose(r.mean, [2.0625, 1.0], rtol=1e-14)
    # sample std of (2, 2, 2, 2.25) = 0.125 ; at x = 1 every l is 1
    np.testing.assert_allclose(r.delta, [0.125 / 2.0625, 0.0], atol=1e-15)
    # sigma(x=0.5): d1 (1, 1.2): sqrt(0.02)/1.1 ; d2 (2, 1.8): sqrt(0.02)/1.9 ; x = 1: sqrt(0.005)/0.55, sqrt(0.02)/0.9
    s = np.sqrt(0.02)
    np.testing.assert_allclose(r.sigma_d, [[s / 1.1, np.sqrt(0.005) / 0.55], [s / 1.9, s / 0.9]], rtol=1e-13)
    np.testing.assert_allclose(r.sigma, [(s / 1.1 + s / 1.9) / 2, (np.sqrt(0.005) / 0.55 + s / 0.9) / 2], rtol=1e-13)


def test_interpolation_is_linear_in_log_step():
    steps = np.array([1.0, 10.0, 100.0, 1000.0])
    loss = 10.0 - np.log(steps)                 # linear in log t: interpolation is exact
    r = C.collapse([(steps, loss)], L0=0.0, x=[0.003, 0.05, 1.0])
    t = np.array([3.0, 50.0, 1000.0])
    np.testing.assert_allclose(r.l[0, 0], (10 - np.log(t)) / (10 - np.log(1000.0)), rtol=1e-14)
    assert np.isnan(r.sigma).all() and np.isnan(r.delta).all()   # one curve: no spread defined


def _self_similar(ds, x_pts, L0=0.2, a=0.5, seeds=1, integer=False):
    f = lambda u: (1 + 30 * u) ** -0.6 + 0.05 * np.exp(-3 * u)   # noqa: E731
    out, T = [], []
    for d in ds:
        Td = 50.0 * d ** 0.8
        st = np.unique(np.round(x_pts * Td)) if integer else x_pts * Td
        L = L0 + d ** -a * f(st / Td)
        out.append((st, np.tile(L, (seeds, 1))))
        T.append(st[-1])
    return out, np.array(T)


def test_self_similar_curves_collapse_exactly():
    x = np.geomspace(1e-3, 1.0, 100)
    curves, T = _self_similar([100, 400, 1600], x, seeds=3)
    r = C.collapse(curves, L0=0.2, x=x)
    assert np.max(np.abs(r.delta)) < 1e-13        # Delta = 0 to round-off
    assert np.max(np.abs(r.sigma)) < 1e-13        # identical seeds: no floor
    # wrong L0: the normalized curves no longer coincide (the sizes have different amplitudes d^{-a})
    assert np.max(C.collapse(curves, L0=0.1, x=x).delta) > 1e-2
    # integer log-spaced grids: only the log-step interpolation error remains (< 1e-3 here)
    curves_i, _ = _self_similar([100, 400, 1600], np.geomspace(1e-3, 1.0, 400), integer=True)
    assert np.max(C.collapse(curves_i, L0=0.2, x=np.geomspace(0.01, 1.0, 50)).delta) < 1e-3


def test_decompose_separates_sizes_from_seed_noise():
    x = np.geomspace(1e-2, 1.0, 40)
    exact, _ = _self_similar([100, 400, 1600], x)
    eps = np.array([0.1, -0.1, 0.05, -0.05])      # per-seed amplitudes, mean 0
    seeded = []
    for st, L in exact:
        dev = (L[0] - 0.2)[None, :] * eps[:, None] * (1 - st / st[-1])[None, :]
        seeded.append((st, L[0][None, :] + dev))
    sp = C.decompose(exact, seeded, L0=0.2, x=x)
    assert np.max(np.abs(sp.sizes)) < 1e-13      # exact curves collapse exactly
    # l_seed = l_exact (1 + eps (1 - x)): noise(x) = sqrt(sum eps^2 / (n - 1)) (1 - x) over 12 curves (mean eps = 0)
    expect = np.sqrt(3 * np.sum(eps ** 2) / 11) * (1 - x)
    np.testing.assert_allclose(sp.noise, expect, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sp.total, expect, rtol=1e-12, atol=1e-15)
    # a seed factor constant in time is removed by the per-seed normalization, not by the floor sigma
    flat = [(st, L[0][None, :] + (L[0] - 0.2)[None, :] * eps[:, None]) for st, L in exact]
    sp2 = C.decompose(exact, flat, L0=0.2, x=x)
    assert np.max(np.abs(sp2.total)) < 1e-13
    np.testing.assert_allclose(sp2.sigma, np.std(eps, ddof=1) * np.ones_like(x), rtol=1e-12)


def test_fit_L0_recovers_planted_value():
    c = np.geomspace(1e5, 1e11, 9)
    for L0, a, b in ((0.13, 4.0, 0.27), (0.0, 2.0, 0.5), (1.5, 30.0, 0.2)):
        fit = C.fit_L0(c, L0 + a * c ** -b)
        # noise-free power law: 1e-8 relative (absolute for L0 = 0)
        assert abs(fit.L0 - L0) < 1e-8 * max(L0, 1e-2), (fit, L0)
        assert abs(fit.b - b) < 1e-8 * b and abs(fit.a - a) < 1e-6 * a
    with pytest.raises(ValueError, match="finite and > 0"):
        C.fit_L0([1, 2, 3], [1, -1, 1])
    # endpoints of self-similar curves with T = 50 d^0.8: L(T) - L0 = f(1) d^-0.5 = f(1) (c / 50)^(-0.5/1.8)
    ds = [100, 400, 1600, 6400]
    curves, T = _self_similar(ds, np.geomspace(1e-3, 1.0, 50), L0=0.2, seeds=2)
    fit = C.endpoint_L0(curves, ds, batch=3)
    assert abs(fit.L0 - 0.2) < 1e-8 and abs(fit.b - 0.5 / 1.8) < 1e-8


def test_compute_optimal_horizons_recover_planted_frontier():
    a, b, A, Cc, L0 = 0.6, 0.4, 1.0, 2.0, 0.05
    ds = np.geomspace(2 ** 5, 2 ** 15, 21)
    t = np.geomspace(1, 1e9, 300)
    curves = [(d, t, L0 + A * d ** -a + Cc * t ** -b) for d in ds]     # B = 1: f = d t
    h = C.compute_optimal_horizons(curves, batch=1, num=300)
    xi = b / (a + b)
    coef = (a * A / (b * Cc)) ** (1 / (a + b))
    # parabolic refinement over a ladder with ratio 1.41: xi to 1e-2, the prefactor to 5%
    assert abs(h.xi - xi) < 1e-2 and abs(h.coef / coef - 1) < 0.05, (h.xi, h.coef, coef)
    T_true = (ds / coef) ** (1 / xi) / ds
    assert np.max(np.abs(h.T / T_true - 1)) < 0.1
    assert abs(h.g - (1 / xi - 1)) < 0.07
    # interior argmins only: the smallest and largest d are never the refined optimum
    assert h.interior.any() and np.all(h.d_star[h.interior] > ds[0]) and np.all(h.d_star[h.interior] < ds[-1])


def test_off_optimal_horizons():
    d = np.array([100.0, 400.0, 1600.0])
    T = 10.0 * d ** 1.5
    out = C.off_optimal_horizons(d, T)
    np.testing.assert_array_equal(out["optimal"], np.round(T))
    np.testing.assert_array_equal(out["0.5x"], np.round(0.5 * T))
    np.testing.assert_array_equal(out["2x"], np.round(2 * T))
    # anchored at d0 = 400 (geometric mean), exponents 1.5 -+ 0.5
    np.testing.assert_array_equal(out["exp-0.5"], np.round(10 * 400 ** 1.5 * (d / 400) ** 1.0))
    np.testing.assert_array_equal(out["exp+0.5"], np.round(10 * 400 ** 1.5 * (d / 400) ** 2.0))


def test_collapse_input_validation():
    with pytest.raises(ValueError, match="exceed L0"):
        C.collapse(_hand_curves(), L0=1.7, x=[0.5, 1.0])
    with pytest.raises(ValueError, match="horizons"):
        C.collapse(_hand_curves(), L0=1.0, horizons=[4.0, 8.0])
    with pytest.raises(ValueError, match="x must be"):
        C.collapse(_hand_curves(), L0=1.0, x=[0.5, 1.5])
    with pytest.raises(ValueError, match="outside"):
        C.collapse(_hand_curves(), L0=1.0, x=[0.1, 1.0])
    with pytest.raises(ValueError, match="at least 3 sizes"):
        C.compute_optimal_horizons([(1, [1, 2], [1, 0.5]), (2, [1, 2], [1, 0.5])])
