"""theory.asymptote: extrapolated exponents on planted drifting local slopes, the theory's correction exponent
against a direct minimization of the component sum, and the interval of weakly identified xi."""
import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from theory.asymptote import correction_exponent, extrapolate, xi_interval
from theory.phases import component_exponents, exponents

F = np.logspace(4, 13, 181)   # 9 decades, 20 points per decade (the frontier's local-slope grid)


@pytest.mark.parametrize("omega, c, wiggle", [(0.15, 0.3, 0.0), (0.15, 0.3, 2e-3), (0.3, -0.2, 1e-3),
                                              (0.08, 0.1, 1e-3), (0.5, 0.05, 5e-4)])
def test_planted_drift_is_extrapolated(omega, c, wiggle):
    # s(f) = 0.5 + c f^-omega + a ladder-like wiggle (one period per octave): the last slope is off by up to
    # 0.01; the extrapolation recovers 0.5 within 0.005 (omega given) / 0.01 (omega profiled) and its error
    # bar covers the truth (2 err + 1e-3)
    s = 0.5 + c * F ** -omega + wiggle * np.sin(2 * np.pi * np.log2(F))
    for kw, tol in ((dict(omega=omega), 0.005), ({}, 0.01)):
        a = extrapolate(F, s, **kw)
        assert abs(a.value - 0.5) < tol, (kw, a)
        assert abs(a.value - 0.5) <= 2 * a.err + 1e-3, (kw, a)
        assert a.omega_source == ("theory" if kw else "profile") and a.last == s[-1] and a.n == F.size
    if abs(c) * F[-1] ** -omega > 3e-3:                 # the drift is visible: the last slope is not the answer
        assert abs(extrapolate(F, s, omega=omega).value - 0.5) < abs(s[-1] - 0.5) / 2


def test_extrapolate_window_and_errors():
    s = 0.4 + 0.2 * F ** -0.2
    a = extrapolate(F, s, decades=3)
    assert a.window[0] == pytest.approx(1e10) and a.n == 61 and abs(a.value - 0.4) < 1e-3
    s_bad = s.copy()
    s_bad[::2] = np.nan                                 # NaNs (no slope there) are skipped
    assert abs(extrapolate(F, s_bad, omega=0.2).value - 0.4) < 1e-6
    with pytest.raises(ValueError, match="at least 6 finite local slopes"):
        extrapolate(F[:4], s[:4])
    with pytest.raises(ValueError, match="omega must be > 0"):
        extrapolate(F, s, omega=0.0)
    with pytest.raises(ValueError, match="one length"):
        extrapolate(F, s[:-1])


def _lnP(terms, L):
    """ln min_x sum_i f^-(p_i x + q_i (1 - x)) at ln f = L (the component sum with unit constants)."""
    g = lambda x: np.log(sum(np.exp(-(p * x + q * (1 - x)) * L) for _, p, q in terms))  # noqa: E731
    return minimize_scalar(g, bounds=(0, 1), method="bounded", options=dict(xatol=1e-12)).fun


@pytest.mark.parametrize("ab, L1", [((1.0, 0.7), 60.0), ((0.8, 0.3), 60.0), ((0.7, 1.2), 100.0)])
def test_correction_exponent_vs_direct_minimization(ab, L1):
    # the local slope of the minimized component sum approaches eta as f^-omega: measured between
    # ln f = L1 and 2 L1 (f = 1e26 .. 1e87; the gap must stay above rounding), within 2%
    terms, eta = component_exponents(*ab), exponents(*ab).eta
    slope = lambda L: -(_lnP(terms, L + 0.5) - _lnP(terms, L - 0.5))   # noqa: E731
    d1, d2 = slope(L1) - eta, slope(2 * L1) - eta
    measured = -math.log(abs(d2 / d1)) / L1
    assert correction_exponent(*ab) == pytest.approx(measured, rel=0.02)


def test_correction_exponent_none_on_ties():
    assert correction_exponent(0.4, 0.35) is None        # Ib: F_0, F_pp and the noise tie at the optimum


def test_xi_interval():
    # sharp in II: a point at rel_loss -> 0, and |E(x) - eta| <= tol at its ends (independent evaluation of E)
    terms = component_exponents(1.0, 0.7)
    ex = exponents(1.0, 0.7)
    iv = xi_interval(1.0, 0.7, flops=1e12, rel_loss=0.05)
    assert iv.low < ex.xi < iv.high and iv.exponent_tol == pytest.approx(math.log(1.05) / math.log(1e12))
    for x in (iv.low, iv.high):
        E = min(p * x + q * (1 - x) for _, p, q in terms)
        assert E == pytest.approx(ex.eta - iv.exponent_tol, abs=1e-9)
    assert xi_interval(1.0, 0.7, rel_loss=1e-9).high - xi_interval(1.0, 0.7, rel_loss=1e-9).low < 1e-6
    # flat in IVb near the IVa|IVb line, and the whole maximizer interval on the line
    assert xi_interval(0.3, 0.6).high - xi_interval(0.3, 0.6).low > 5 * (iv.high - iv.low)
    line = xi_interval(1 - 2 ** -0.5, 1.0, rel_loss=1e-9)
    lo, hi = exponents(1 - 2 ** -0.5, 1.0).xi_range
    assert line.low == pytest.approx(lo, abs=1e-6) and line.high == pytest.approx(hi, abs=1e-6) and hi - lo > 0.05
    with pytest.raises(ValueError, match="rel_loss"):
        xi_interval(1.0, 0.7, rel_loss=0)


def test_frontier_record():
    from theory.asymptote import WEAK_WIDTH, frontier_record
    from theory.frontier import LocalSlopes
    f = np.logspace(4, 12, 161)
    om = correction_exponent(1.0, 0.7)
    r = frontier_record(1.0, 0.7, LocalSlopes(f, 0.4118 + 0.1 * f ** -om, 0.7059 + 0.2 * f ** -om, 1.0))
    assert r["xi_asymptote"] == pytest.approx(0.4118, abs=1e-3) and r["eta_asymptote"] == pytest.approx(0.7059, abs=1e-3)
    assert r["omega_source"] == "profile" and r["omega"] == pytest.approx(om, rel=0.1)
    assert r["omega_theory"] == pytest.approx(om)
    assert r["xi_interval"] == [exponents(1.0, 0.7).xi] * 2 and not r["xi_weakly_identified"] and r["boundaries"] == ""
    weak = frontier_record(0.3, 0.6, LocalSlopes(f, 0.55 + 0 * f, 0.3 + 0 * f, 1.0))   # IVb near the IVa line
    assert weak["xi_weakly_identified"] and weak["xi_interval"][1] - weak["xi_interval"][0] > WEAK_WIDTH
    edge = frontier_record(0.7, 0.7, LocalSlopes(f, 0.5 + 0 * f, 0.64 + 0 * f, 1.0))     # on the II|III boundary
    assert edge["boundaries"] == "beta=alpha" and edge["adjacent_phases"] == "II,III"
    short = frontier_record(1.0, 0.7, LocalSlopes(f[:3], f[:3] * 0, f[:3] * 0, 1.0))
    assert np.isnan(short["xi_asymptote"]) and np.isnan(short["eta_asymptote_err"])


def test_crossover_still_under_way_is_not_extrapolated():
    # a drift that accelerates (a crossover centred past the data, as IVb's noise = F_0 balance): no power-law
    # approach to fit; the last slope is reported with the drift of its last two decades as the error
    s = 0.62 - 0.12 / (1 + np.exp(-(np.log10(F) - 14.0)))
    a = extrapolate(F, s)
    assert a.omega_source.startswith("none") and a.value == s[-1] and np.isnan(a.omega)
    late = F >= F[-1] / 100
    drift = abs(np.polyfit(np.log(F[late]), s[late], 1)[0]) * 2 * math.log(10)
    assert a.err == pytest.approx(drift, rel=1e-9) and a.err > 0.01


def test_balance_at_names_the_pre_asymptotic_pair():
    # II at f = 1e16, d* = 5.3e6: F_pp and F_ac balance, as in the asymptote; IVa (v = 4d, the ladder lr) is
    # pre-asymptotic (at the d = 1.3e8 ladder's end, f = 8.9e13, F_0 and the noise lead: its eta drift)
    from theory.asymptote import balance_at
    from theory.components import Fac, Fpp
    from theory.ladder import ladder_lr
    lr = ladder_lr(1.0, 5_300_000)
    b = balance_at(1.0, 0.7, 5.3e6, 1e16, lr)
    assert b["balance_pair"] == "Fac,Fpp" == b["asymptotic_pair"] and b["balance_is_asymptotic"]
    steps = 1e16 / 5.3e6
    ratio = float(Fac(1.0, 0.7, 5.3e6, steps, lr)) / float(Fpp(1.0, 0.7, steps, lr))
    assert b["balance_ratio"] == pytest.approx(min(ratio, 1 / ratio), rel=1e-9)
    d = 1e5                                       # IVa at d = 1e5, f = d^(1/xi): F_0 still leads by ~80x
    iva = balance_at(0.27, 1.0, d, d ** (1 / 0.613), ladder_lr(0.27, int(d)), v=4 * d)
    assert iva["asymptotic_pair"] == "Fpp,noise" and iva["balance_pair"] == "F0,Fpp"
    assert not iva["balance_is_asymptotic"] and iva["balance_ratio"] < 0.05


@pytest.mark.slow   # ~40-80 s: two deterministic-equivalent ladders over d = 2^10 .. 2^20
def test_finer_ladder_removes_the_local_slope_wiggles():
    """Ic (0.2, 0.8): with one rung per octave the parabola-vertex local slopes oscillate with the ladder period
    (the loss at fixed compute has a corner in ln d about one octave wide, which a 3-point parabola does not
    resolve); four rungs per octave take the oscillation down by more than 10x (measured: peak-to-peak of the
    detrended local xi 0.023 -> 0.0006 on d = 2^12 .. 2^22, f <= 1e12); the mean local xi over the window moves
    by 0.010 (0.564 -> 0.574: the window holds a non-integer number of ladder periods)."""
    from theory.ladder import geometric_ladder, measure_frontier

    def wiggle(per_octave):
        m = measure_frontier(0.2, 0.8, geometric_ladder(2 ** 10, 2 ** 20, per_octave), flops_max=1e10)
        f, xi = m.fit2.local.flops, m.fit2.local.xi
        sel = (f > 1e7) & (f < 1e9)
        x = np.log10(f[sel])
        res = xi[sel] - np.polyval(np.polyfit(x, xi[sel], 2), x)
        return np.ptp(res), np.mean(xi[sel])
    w1, m1 = wiggle(1)
    w4, m4 = wiggle(4)
    assert w1 > 0.01 and w4 < w1 / 10, (w1, w4)
    assert abs(m1 - m4) < 0.02, (m1, m4)
