"""Deterministic equivalent of the PLRF spectrum (theory.deterministic) against independent references:
direct (brute-force / mpmath) sums, the fixed-point equation evaluated by brute force, two independent
quadrature routes, closed-form asymptotics, and means over many sampled W (plrf.sample_spectrum).

Single sampled instances scatter by 5-10% at d = 1000: every sampled comparison uses a mean over many draws
with its standard error.
"""
import math

import jax
import mpmath as mp
import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import digamma as sp_digamma, polygamma

jax.config.update("jax_enable_x64", True)

import plrf  # noqa: E402
from theory import deterministic as det  # noqa: E402
from theory._resolvent import PowerSums, digamma, trigamma  # noqa: E402

# phases used against sampled W (v = 4d): 2a > 1 & 2b > 1, 2a < 1 (high-dimensional), 2b < 1
PHASES = [(1.0, 0.8), (0.4, 0.6), (1.0, 0.3)]
SLOW_PHASES = PHASES + [(0.35, 0.3), (0.7, 1.2)]
N_DRAWS = 16      # sampled W per phase at d = 300 (shared by the default tests)
N_SLOW = 40       # sampled W per phase at d = 1000 (shared by the slow tests)

_SAMPLES = {}


def sampled(alpha, beta, d, draws, seed=0):
    """``draws`` sampled spectra at v = 4d (cached per test process; keys folded from one root, never reused)."""
    k = (alpha, beta, d, draws, seed)
    if k not in _SAMPLES:
        prob = plrf.Problem(alpha, beta, 4 * d, d)
        root = jax.random.key(20250 + seed)
        _SAMPLES[k] = [plrf.sample_spectrum(prob, key=jax.random.fold_in(root, i)) for i in range(draws)]
    return _SAMPLES[k]


# ------------------------------------------------------------------------------------------------
# building blocks

def test_digamma_trigamma_complex():
    w = np.array([0.3 + 0.1j, 5.5 - 2j, -7.3 + 1e-3j, -1234.6 - 0.5j, 3e5 + 1j, 0.7 + 0j, -2.5 + 40j, 12 - 300j])
    # tolerance 1e-12 relative (reflection loses ~|w| eps near the negative axis)
    np.testing.assert_allclose(digamma(w), sp_digamma(w), rtol=1e-12)
    ref = np.array([complex(mp.polygamma(1, mp.mpc(x))) for x in w])
    np.testing.assert_allclose(trigamma(w), ref, rtol=1e-12)
    xr = np.array([0.3, 5.5, -7.3, 1e4])
    np.testing.assert_allclose(trigamma(xr + 0j).real, polygamma(1, xr), rtol=1e-13)


def _brute(q, s, a2, v):
    j = np.arange(1, v + 1, dtype=np.float64)
    u = 1 - q[:, None] * j[None, :] ** a2
    return np.sum(j ** -s / u, axis=1), np.sum(j ** (a2 - s) / u ** 2, axis=1)


@pytest.mark.parametrize("alpha,v", [(1.0, 30000), (0.3, 20000), (2.0, 10000)])
def test_power_sums_finite_v_vs_direct(alpha, v):
    """Phi_s(q) = sum_{j<=v} j^-s/(1 - q j^2a) and its q-derivative, q near poles, on both sides of the real
    axis' neighbourhood, negative and far: vs direct float64 sums (rtol 1e-8; the direct sum itself is
    conditioned to ~1e-10 next to a pole)."""
    a2 = 2 * alpha
    rng = np.random.default_rng(1)
    x = np.exp(rng.uniform(math.log(v ** -a2) + 1, 0.5, 12))
    q = np.concatenate([x * (1 + 1e-3j), x * (1 + 1e-8j), x * (1 + 1j), -x, x * np.exp(2.5j),
                        (np.array([1, 7, 48, 49, 50, 300, v - 1]) + 0.5) ** -a2 + 0j])
    ps = PowerSums(alpha, v)
    for s in (0.0, 0.7):
        f, df = ps(q, s, deriv=True)
        fb, dfb = _brute(q, s, a2, v)
        np.testing.assert_allclose(f, fb, rtol=1e-8)
        np.testing.assert_allclose(df, dfb, rtol=1e-6)   # derivative feeds Newton only


def test_power_sums_infinite_v_vs_direct():
    """v = inf: vs a direct sum to N = 5e5 plus its (tiny, N >> |pole|) far tail; rtol 1e-9."""
    N = 500_000
    j = np.arange(1, N + 1, dtype=np.float64)
    for alpha, s in [(0.55, 0.0), (1.0, 0.0), (1.0, 1.4), (2.5, 0.3)]:
        a2 = 2 * alpha
        x = np.geomspace(1e4 ** -a2, 1.5, 7)
        q = np.concatenate([x * (1 + 1e-3j), -x, x * np.exp(2.0j)])
        X = N + 0.5
        ref = []
        for qq in q:
            tail = -sum(qq ** -(k + 1) * X ** (1 - s - a2 * (k + 1)) / (s + a2 * (k + 1) - 1) for k in range(6))
            ref.append(np.sum(j ** -s / (1 - qq * j ** a2)) + tail)
        np.testing.assert_allclose(PowerSums(alpha, None)(q, s), np.array(ref), rtol=1e-9)


def test_power_sums_pole_next_to_a_quadrature_node():
    """v = inf with the pole p within 3e-6 and 2e-9 (relative) of a Gauss-Legendre node, where f and its
    pole part cancel (Taylor branch): vs a direct sum to 5e5 + far tail, rtol 1e-9."""
    from theory._resolvent import _log_panels
    N = 500_000
    j = np.arange(1, N + 1.0)
    for alpha, s in [(1.0, 0.0), (0.8, 0.3)]:
        a2 = 2 * alpha
        ps = PowerSums(alpha, None)
        x, _ = _log_panels(ps.X0, 30 * 2000.3, ps.per_decade)       # nodes used when |p| ~ 2000 (X1 = 30|p|)
        t = np.log(x / ps.X0) / math.log(30 * 2000.3 / ps.X0)
        ti = t[np.argmin(np.abs(x - 2000.3))]
        for delta in (3e-6, -2e-9):
            p = ps.X0 * 30 ** (ti / (1 - ti)) * (1 + delta) ** (-1 / (1 - ti))    # node(p) = p (1 + delta)
            q = np.array([p ** -a2 + 0j, p ** -a2 * (1 + 1e-9j)])
            X = N + 0.5
            ref = [np.sum(j ** -s / (1 - qq * j ** a2))
                   - sum(qq ** -(k + 1) * X ** (1 - s - a2 * (k + 1)) / (s + a2 * (k + 1) - 1) for k in range(6))
                   for qq in q]
            np.testing.assert_allclose(ps(q, s), np.array(ref), rtol=1e-9)


def test_power_sum_helper():
    from scipy.special import zeta
    assert det.power_sum(2.0) == pytest.approx(math.pi ** 2 / 6, rel=1e-14)
    assert det.power_sum(1.3) == pytest.approx(zeta(1.3), rel=1e-13)
    for s, v in [(0.6, 4000), (-2.0, 777), (1.0, 12345)]:
        assert det.power_sum(s, v) == pytest.approx(np.sum(np.arange(1, v + 1.0) ** -s), rel=1e-12)


# ------------------------------------------------------------------------------------------------
# the fixed point

@pytest.mark.parametrize("alpha,d,v", [(1.0, 400, 1600), (0.4, 300, 1200), (2.0, 200, 200)])
def test_fixed_point_residual_brute_force(alpha, d, v):
    """m(z) solves m = 1/(1 + (1/d) sum_j lam_j/(lam_j m - z)) (brute-force sum over j), on and near the real
    axis (bulk, outliers, gaps) and far away; residual < 1e-10 relative. Physical branch: Im s_K >= 0, m -> 1."""
    lam = np.arange(1, v + 1.0) ** (-2 * alpha)
    e = det.spectrum_edges(alpha, d, v=v)
    x_lo = e.lower * 0.5 if e.lower > 0 else e.upper * 1e-9
    x = np.concatenate([np.geomspace(x_lo, e.upper * 2, 60), e.outliers.ravel()])
    for z in (x + 0j, x * (1 + 1e-3j), x * (1 + 1j), np.array([1e3j, -5 + 1j, 1e4 + 1e4j])):
        m = det.resolvent_m(z, alpha, d, v=v)
        rhs = 1 / (1 + np.sum(lam[None, :] / (lam[None, :] * m[:, None] - z[:, None]), axis=1) / d)
        assert np.max(np.abs(m - rhs) / np.abs(m)) < 1e-10
        s_K = -m / z
        assert np.all(s_K.imag >= -1e-12 * np.abs(s_K))
    m_far = det.resolvent_m(np.array([1e8j]), alpha, d, v=v)
    assert abs(m_far[0] - 1) < 1e-6


def test_stieltjes_vs_sampled_mean():
    """(1/d) tr (K - z)^{-1} = -m/z and <R D^1/2 b, D^1/2 b> = Phi_2b/m vs the mean over 16 sampled W (d = 300)
    at z = x (1 + i): within 2% + 3 standard errors."""
    a, b, d = 1.0, 0.8, 300
    specs = sampled(a, b, d, N_DRAWS)
    x = np.geomspace(1e-5, 0.5, 6)
    z = x * (1 + 1j)
    st = det.stieltjes(z, a, b, d, v=4 * d)
    sK = np.array([np.mean(1 / (s.lam[None, :] - z[:, None]), axis=1) for s in specs])
    Gb = np.array([np.sum(s.w[None, :] / (s.lam[None, :] - z[:, None]), axis=1) - s.P_star / z for s in specs])
    for de, mc in ((st.s_K, sK), (st.G_b, Gb)):
        mean, se = mc.mean(0), mc.std(0, ddof=1) / math.sqrt(len(specs))
        assert np.all(np.abs(de - mean) <= 0.02 * np.abs(mean) + 3 * np.abs(se))


# ------------------------------------------------------------------------------------------------
# P*, tau, kappa, edges

@pytest.mark.parametrize("alpha,beta,d,v", [(1.0, 0.8, 500, 2000), (0.4, 0.6, 300, 1200), (1.5, 0.2, 1000, 1000)])
def test_tau_and_p_star_vs_direct_sums(alpha, beta, d, v):
    """tau from sum_j tau/(tau + j^2a) = d and P* = sum_j j^{-2a-2b}/(1 + tau j^-2a), both by brute-force
    sums + brentq; rtol 1e-10. (v = d: tau = inf, P* = 0.)"""
    j = np.arange(1, v + 1.0)
    if v == d:
        assert math.isinf(det.tau(alpha, d, v=v)) and det.p_star(alpha, beta, d, v=v) == 0.0
        return
    t = math.exp(brentq(lambda lt: np.sum(1 / (1 + j ** (2 * alpha) * math.exp(-lt))) - d, -50, 200, xtol=1e-15))
    assert det.tau(alpha, d, v=v) == pytest.approx(t, rel=1e-10)
    P = np.sum(j ** (-2 * alpha - 2 * beta) / (1 + t * j ** (-2 * alpha)))
    assert det.p_star(alpha, beta, d, v=v) == pytest.approx(P, rel=1e-10)
    assert det.deterministic_spectrum(alpha, beta, d, v=v).P_star == pytest.approx(P, rel=1e-10)


@pytest.mark.parametrize("alpha", [0.75, 1.0, 2.0])
def test_kappa_asymptotics(alpha):
    """v = inf: sum_j tau/(tau + j^2a) = tau^{1/2a} C - 1/2 + O(tau^-1) (Euler-Maclaurin, f(0) = 1), so
    tau = kappa (d + 1/2)^{2a} up to O(d^{-2a}) relative; checked to 1e-6 at d = 1e4."""
    d = 10_000
    t = det.tau(alpha, d)
    assert t / (det.kappa(alpha) * (d + 0.5) ** (2 * alpha)) == pytest.approx(1.0, abs=1e-6)
    assert abs(t / (det.kappa(alpha) * d ** (2 * alpha)) - 1) > 1e-5     # the 1/2 shift is really there


@pytest.mark.parametrize("alpha,beta", PHASES)
def test_p_star_vs_sampled_d300(alpha, beta):
    """DE P* vs the mean of P* over 16 sampled W at d = 300, v = 4d: within 2% + 3 standard errors."""
    d = 300
    P = np.array([s.P_star for s in sampled(alpha, beta, d, N_DRAWS)])
    se = P.std(ddof=1) / math.sqrt(P.size)
    assert abs(det.p_star(alpha, beta, d, v=4 * d) - P.mean()) <= 0.02 * P.mean() + 3 * se


def test_edges_vs_sampled():
    """Sampled extreme eigenvalues (mean over 16 draws, d = 300, v = 4d) vs the DE edges: the smallest within
    5% of the lower edge (soft-edge fluctuations ~ d^{-2/3}); the top three outliers' means within 3 standard
    errors + 1% of the DE outlier locations, and inside the DE support intervals widened by 3 se."""
    a, b, d = 1.0, 0.8, 300
    specs = sampled(a, b, d, N_DRAWS)
    e = det.spectrum_edges(a, d, v=4 * d)
    lo = np.array([s.lam[0] for s in specs])
    assert abs(lo.mean() / e.lower - 1) < 0.05
    sp = det.deterministic_spectrum(a, b, d, v=4 * d)
    assert e.n_isolated >= 3 and np.allclose(sp.n[-e.n_isolated:], 1.0)
    for j in range(1, 4):
        top = np.array([s.lam[-j] for s in specs])
        se = top.std(ddof=1) / math.sqrt(top.size)
        assert abs(top.mean() - sp.lam[-j]) <= 0.01 * sp.lam[-j] + 3 * se
        assert e.outliers[j - 1, 0] <= sp.lam[-j] <= e.outliers[j - 1, 1]


# ------------------------------------------------------------------------------------------------
# the binned spectrum: internal consistency with independent routes

@pytest.mark.parametrize("alpha,beta,d,v", [(1.0, 0.8, 1000, None), (0.4, 0.6, 1000, 4000), (2.0, 0.3, 3000, None),
                                            (1.0, 0.3, 500, 500)])
def test_binned_spectrum_sum_rules(alpha, beta, d, v):
    """Sum rules with brute-force right-hand sides: sum n = d (before the final 1e-12 renormalization, via
    cumulative), sum w + P*(tau formula) = sum_j j^{-2a-2b} (rtol 1e-9; 1e-6 for v = d whose hard edge is cut
    at 1e-6 d eigenvalues), sum n lam = E tr K = sum_{j<=v} j^{-2a} (rtol 1e-9)."""
    sp = det.deterministic_spectrum(alpha, beta, d, v=v)
    vv = v if v is not None else 2_000_000
    j = np.arange(1, vv + 1.0)
    tail = 0.0 if v is not None else (vv + 0.5) ** (1 - 2 * alpha - 2 * beta) / (2 * alpha + 2 * beta - 1)
    M = np.sum(j ** (-2 * alpha - 2 * beta)) + tail
    trD = np.sum(j ** (-2 * alpha)) + (0.0 if v is not None else (vv + 0.5) ** (1 - 2 * alpha) / (2 * alpha - 1))
    rt = 1e-6 if v == d else 1e-9
    assert sp.d == pytest.approx(d, rel=1e-13)
    assert sp.P0 == pytest.approx(M, rel=rt)
    assert sp.trace == pytest.approx(trD, rel=max(rt, 1e-9))
    assert np.all(np.diff(sp.lam) > 0) and np.all(sp.lam > 0) and np.all(sp.w >= 0) and np.all(sp.n > 0)
    e = det.spectrum_edges(alpha, d, v=v)
    assert sp.lam[0] >= e.lower and sp.lam[-1] <= e.upper
    c = det.cumulative(np.array([e.upper * (1 - 1e-9)]), alpha, beta, d, v=v)
    assert c.count[0] == pytest.approx(d, rel=1e-9)


@pytest.mark.parametrize("alpha,beta,d,v", [(1.0, 0.8, 1000, None), (0.4, 0.6, 1000, 4000), (2.0, 0.3, 1000, None)])
def test_outliers_two_routes(alpha, beta, d, v):
    """Isolated outliers: weights from residues on circles around q = lambda_j (deterministic_spectrum) vs path
    integrals between the gap points (cumulative): rtol 1e-8; each outlier holds exactly one eigenvalue."""
    sp = det.deterministic_spectrum(alpha, beta, d, v=v)
    e = det.spectrum_edges(alpha, d, v=v)
    J = e.n_isolated
    assert J >= 5
    gaps = np.concatenate([[e.upper * 1.001], 0.5 * (e.outliers[1:, 1] + e.outliers[:-1, 0]),
                           [0.5 * (e.outliers[-1, 0] + e.bulk_upper)]])      # above outlier 1, between, below J
    c = det.cumulative(gaps, alpha, beta, d, v=v)
    np.testing.assert_allclose(-np.diff(c.count), 1.0, atol=1e-8)
    np.testing.assert_allclose(-np.diff(c.weight), sp.w[-J:][::-1], rtol=1e-8)


def test_density_vs_cumulative():
    """Pointwise density (Im of the boundary value q(x + i0)) integrated by Simpson vs the contour-integral
    masses of cumulative, over bulk intervals: rtol 1e-6 (Simpson error)."""
    from scipy.integrate import simpson
    for a, b, d, v in [(1.0, 0.8, 300, 1200), (0.4, 0.4, 300, 1200)]:
        e = det.spectrum_edges(a, d, v=v)
        x1, x2 = e.lower * 3, e.lower * 6
        xx = np.linspace(x1, x2, 801)
        dens = det.density(xx, a, b, d, v=v)
        c = det.cumulative(np.array([x1, x2]), a, b, d, v=v)
        assert simpson(dens.count, x=xx) == pytest.approx(np.diff(c.count)[0], rel=1e-6)
        assert simpson(dens.weight, x=xx) == pytest.approx(np.diff(c.weight)[0], rel=1e-6)


# ------------------------------------------------------------------------------------------------
# against sampled W: distribution of eigenvalues and the loss curve

def _ks(alpha, beta, d, draws):
    """Kolmogorov distance (an upper bound, from a fine grid and monotonicity) between the pooled empirical
    eigenvalue CDF of ``draws`` sampled W and the DE counting function."""
    specs = sampled(alpha, beta, d, draws)
    lam = np.sort(np.concatenate([s.lam for s in specs]))
    e = det.spectrum_edges(alpha, d, v=4 * d)
    g = [np.geomspace(e.lower * 0.9, e.upper * 1.1, int(300 * math.log10(e.upper * 1.1 / (e.lower * 0.9))))]
    g += [np.linspace(lo, hi, 9) for lo, hi in e.outliers]
    g = np.unique(np.concatenate(g))
    F = det.cumulative(g, alpha, beta, d, v=4 * d).count / d
    Fe = np.searchsorted(lam, g, side="right") / lam.size
    Fl = np.searchsorted(lam, g, side="left") / lam.size
    # on [g_k, g_{k+1}) both CDFs are monotone: bound sup |F_emp - F_DE| by the values at the ends
    return max(np.max(Fl[1:] - F[:-1]), np.max(F[1:] - Fe[:-1]), np.max(np.abs(Fe - F)))


def _weight_check(alpha, beta, d, draws):
    """Cumulative target weight (sum of w_k over lambda_k <= x) at bulk points and in the gaps between the top
    outliers: DE vs the mean over draws. Returns |DE - mean|, mean, standard error. (Inside an isolated outlier
    the DE bump is a semicircle-like law of width ~4 lambda_j/sqrt(d), not the Gaussian law of the sampled
    outlier, so pointwise CDFs there are not compared; its mean and weight are, via the loss curve.)"""
    specs = sampled(alpha, beta, d, draws)
    e = det.spectrum_edges(alpha, d, v=4 * d)
    k = min(e.n_isolated, 4)
    g = np.concatenate([np.geomspace(e.lower * 1.2, e.bulk_upper * 0.5, 10),
                        0.5 * (e.outliers[1:k, 1] + e.outliers[:k - 1, 0])])
    c = det.cumulative(g, alpha, beta, d, v=4 * d)
    W = np.array([np.cumsum(s.w)[np.searchsorted(s.lam, g, side="right") - 1] * (g >= s.lam[0]) for s in specs])
    return np.abs(c.weight - W.mean(0)), W.mean(0), W.std(0, ddof=1) / math.sqrt(draws)


@pytest.mark.parametrize("alpha,beta", PHASES)
def test_eigenvalue_cdf_and_weights_d300(alpha, beta):
    """d = 300, v = 4d, 16 sampled W: Kolmogorov distance between the pooled eigenvalue CDF and the DE counting
    function < 1% (measured 0.2-0.3%); cumulative target weights within 2% + 3 standard errors."""
    assert _ks(alpha, beta, 300, N_DRAWS) < 0.01
    dev, mean, se = _weight_check(alpha, beta, 300, N_DRAWS)
    assert np.all(dev <= 0.02 * mean + 3 * se)


def _curve_check(alpha, beta, d, draws, num=60):
    """Expected loss (plrf.expected_loss) on the DE spectrum vs the mean over sampled spectra, constant
    lr = 0.5 / sum_{j<=v} j^{-2a}, over the whole curve up to ~2/(lr x_-) steps (<= 1e6)."""
    v = 4 * d
    lr = 0.5 / det.power_sum(2 * alpha, v)
    e = det.spectrum_edges(alpha, d, v=v)
    steps = int(min(1e6, math.ceil(2.0 / (lr * e.lower))))
    grid = plrf.log_grid(steps, num=num)
    sched = plrf.schedules.constant(lr)
    # the log-time solver on both sides (relative error <= 1e-4 against the exact recursion, tests/test_logtime.py;
    # far below the 2% tested here) instead of 1e6 exact steps per spectrum
    from theory.logtime import solve_logtime

    def curve(spec):
        return np.asarray(solve_logtime(spec, sched, steps=steps, grid=grid).loss)
    de = curve(det.deterministic_spectrum(alpha, beta, d, v=v))
    C = np.array([curve(s) for s in sampled(alpha, beta, d, draws)])
    mean, se = C.mean(0), C.std(0, ddof=1) / math.sqrt(draws)
    return np.abs(de - mean), mean, se


@pytest.mark.parametrize("alpha,beta", PHASES)
def test_loss_curve_vs_sampled_d300(alpha, beta):
    """Expected-loss curve on the DE spectrum vs the mean over 16 sampled spectra (d = 300, v = 4d): within
    2% + 3 standard errors at every grid step."""
    dev, mean, se = _curve_check(alpha, beta, 300, N_DRAWS)
    assert np.all(dev <= 0.02 * mean + 3 * se)


def test_validation():
    with pytest.raises(ValueError, match="alpha"):
        det.deterministic_spectrum(0.0, 1.0, 10)
    with pytest.raises(ValueError, match="2\\(alpha \\+ beta\\)"):
        det.deterministic_spectrum(0.3, 0.1, 10, v=40)
    with pytest.raises(ValueError, match="d must be"):
        det.deterministic_spectrum(1.0, 1.0, 0)
    with pytest.raises(ValueError, match="v must be >= d"):
        det.deterministic_spectrum(1.0, 1.0, 10, v=5)
    with pytest.raises(ValueError, match="needs 2 alpha > 1"):
        det.deterministic_spectrum(0.4, 1.0, 10)                 # v = inf below the high-dimensional line
    with pytest.raises(ValueError, match="v > d"):
        det.deterministic_spectrum(0.4, 1.0, 10, v=10)
    with pytest.raises(ValueError, match="n_bins"):
        det.deterministic_spectrum(1.0, 1.0, 10, n_bins=0)
    with pytest.raises(ValueError, match="Im z"):
        det.resolvent_m(np.array([1 - 1j]), 1.0, 10)
    with pytest.raises(ValueError, match="x must be"):
        det.density(np.array([-1.0]), 1.0, 1.0, 10)


def test_large_d_cost_does_not_scale_with_d():
    """d = 1e6 (v = inf): bins ~ outliers (~sqrt d) + 32/decade, far fewer than d; sum rules still hold."""
    sp = det.deterministic_spectrum(1.0, 0.8, 1_000_000)
    assert len(sp.lam) < 2000
    assert sp.d == pytest.approx(1e6, rel=1e-13)
    assert sp.P0 == pytest.approx(det.power_sum(3.6), rel=1e-9)
    assert np.all(np.diff(sp.lam) > 0)


# ------------------------------------------------------------------------------------------------
# slow: d = 1000

@pytest.mark.slow
@pytest.mark.parametrize("alpha,beta", SLOW_PHASES)
def test_eigenvalue_cdf_ks_d1000(alpha, beta):
    """Kolmogorov distance, pooled 40 sampled W at d = 1000 vs the DE counting function: < 1%; cumulative target
    weights within 2% + 3 standard errors."""
    assert _ks(alpha, beta, 1000, N_SLOW) < 0.01
    dev, mean, se = _weight_check(alpha, beta, 1000, N_SLOW)
    assert np.all(dev <= 0.02 * mean + 3 * se)


@pytest.mark.slow
@pytest.mark.parametrize("alpha,beta", SLOW_PHASES)
def test_p_star_vs_sampled_d1000(alpha, beta):
    """DE P* vs the mean over 40 sampled W at d = 1000 (v = 4d): within 2% + 3 standard errors."""
    P = np.array([s.P_star for s in sampled(alpha, beta, 1000, N_SLOW)])
    se = P.std(ddof=1) / math.sqrt(P.size)
    assert abs(det.p_star(alpha, beta, 1000, v=4000) - P.mean()) <= 0.02 * P.mean() + 3 * se


@pytest.mark.slow
@pytest.mark.parametrize("alpha,beta", SLOW_PHASES)
def test_loss_curve_vs_sampled_d1000(alpha, beta):
    """Expected-loss curve on the DE spectrum vs the mean over 40 sampled spectra (d = 1000, v = 4d): within
    2% + 3 standard errors over the whole curve."""
    dev, mean, se = _curve_check(alpha, beta, 1000, N_SLOW, num=80)
    assert np.all(dev <= 0.02 * mean + 3 * se)


@pytest.mark.slow
def test_d1e7_runs():
    """The target size: d = 1e7 (v = inf) in well under a minute; sum rules hold."""
    sp = det.deterministic_spectrum(1.0, 0.8, 10_000_000)
    assert sp.d == pytest.approx(1e7, rel=1e-13)
    assert sp.P0 == pytest.approx(det.power_sum(3.6), rel=1e-9)
