"""Problem validation, sampled instances and the exact reductions of section 2 of the theory notes.

References used here are independent of the engine: mpmath sums, Euler-Maclaurin / integral bounds for
zeta tails, dense ``W^T D W`` built in one go, least squares on ``D^{1/2} W``, and ``||D^{1/2}(W theta - b)||^2``
evaluated from its definition.
"""
import math
import warnings

import jax
import mpmath
import numpy as np
import pytest

import plrf
from plrf.problem import CHUNK, population_risk_direct
from plrf.spectrum import expand, make_spectrum


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("kwargs, pattern", [
    (dict(alpha=0.0, beta=1.0, v=10, d=5), r"^alpha must be > 0"),
    (dict(alpha=-1.0, beta=2.0, v=10, d=5), r"^alpha must be > 0"),
    (dict(alpha=0.25, beta=0.25, v=10, d=5), r"2\(alpha \+ beta\) > 1"),   # boundary 2(a+b) = 1 excluded
    (dict(alpha=0.3, beta=0.1, v=10, d=5), r"2\(alpha \+ beta\) > 1"),
    (dict(alpha=1.0, beta=0.7, v=4, d=5), r"^v must be >= d"),
    (dict(alpha=1.0, beta=0.7, v=10.0, d=5), r"^v must be an integer"),
    (dict(alpha=1.0, beta=0.7, v=10, d=2.5), r"^d must be an integer"),
    (dict(alpha=1.0, beta=0.7, v="10", d=5), r"^v must be an integer"),
    (dict(alpha=1.0, beta=0.7, v=10, d=0), r"^d must be an integer >= 1"),
    (dict(alpha=float("nan"), beta=0.7, v=10, d=5), r"^alpha must be a finite"),
    (dict(alpha=float("inf"), beta=0.7, v=10, d=5), r"^alpha must be a finite"),
    (dict(alpha=1.0, beta=float("nan"), v=10, d=5), r"^beta must be a finite"),
    (dict(alpha=1.0, beta=-float("inf"), v=10, d=5), r"^beta must be a finite"),
    (dict(alpha=np.float64("nan"), beta=0.7, v=10, d=5), r"^alpha must be a finite"),
    (dict(alpha=True, beta=0.7, v=10, d=5), r"^alpha must be a finite"),
    (dict(alpha=1.0, beta=False, v=10, d=5), r"^beta must be a finite"),
    (dict(alpha=1.0, beta=0.7, v=True, d=1), r"^v must be an integer"),
    (dict(alpha=1.0, beta=0.7, v=10, d=np.bool_(True)), r"^d must be an integer"),
])
def test_invalid_problem_raises_naming_parameter(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        plrf.Problem(**kwargs)


def test_valid_problem_normalizes_types():
    p = plrf.Problem(np.float32(1.5), 1, np.int64(40), np.int32(10))
    assert (type(p.alpha), type(p.beta), type(p.v), type(p.d)) == (float, float, int, int)
    assert p.with_d(20) == plrf.Problem(1.5, 1.0, 80, 20)  # keeps v/d = 4
    with pytest.raises(Exception):  # frozen
        p.alpha = 2.0


def test_high_dimensional_warning():
    # 2 alpha < 1 and v < 2d: warned (the spectrum depends on v/d)
    with pytest.warns(UserWarning, match=r"v/d"):
        plrf.Problem(0.4, 0.5, 100, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plrf.Problem(0.4, 0.5, 128, 64)   # v = 2d: fine
        plrf.Problem(0.6, 0.5, 64, 64)    # 2 alpha > 1: v = d fine


def test_instance_from_W_checks():
    p = plrf.Problem(1.0, 0.7, 12, 4)
    rng = np.random.default_rng(0)
    W = rng.normal(size=(12, 4)) / 2
    with pytest.raises(ValueError, match=r"^W must have shape \(v, d\) = \(12, 4\)"):
        plrf.instance_from_W(p, W.T)
    with pytest.raises(ValueError, match=r"^W must have shape"):
        plrf.instance_from_W(p, W[:11])
    for bad in (np.nan, np.inf, -np.inf):
        Wb = W.copy()
        Wb[3, 2] = bad
        with pytest.raises(ValueError, match=r"^W must be finite"):
            plrf.instance_from_W(p, Wb)
    Wb = W.copy()
    Wb[:, 1] = 0.0  # rank d - 1: K singular
    with pytest.raises(ValueError, match=r"singular"):
        plrf.instance_from_W(p, Wb)


def test_typed_key_required():
    p = plrf.Problem(1.0, 0.7, 12, 4)
    raw = jax.random.PRNGKey(0)  # legacy uint32 key: refused
    for fn in (plrf.sample_instance, plrf.sample_spectrum, plrf.feature_matrix):
        with pytest.raises(TypeError, match=r"key must be a typed PRNG key"):
            fn(p, key=raw)
        with pytest.raises(TypeError):  # key is keyword-only
            fn(p, jax.random.key(0))
    spec = plrf.sample_spectrum(p, key=jax.random.key(0))
    with pytest.raises(TypeError, match=r"key must be a typed PRNG key"):
        plrf.simulate(spec, plrf.schedules.constant(0.1), steps=3, key=raw)
    with pytest.raises(ValueError, match=r"key=jax.random.key"):
        plrf.simulate(spec, plrf.schedules.constant(0.1), steps=3)  # eigen is stochastic: key needed


# ------------------------------------------------------------------ P(0) and sums

def _mp_sum(s, v):
    mpmath.mp.dps = 30
    return float(mpmath.fsum(mpmath.mpf(j) ** (-s) for j in range(1, v + 1)))


@pytest.mark.parametrize("alpha, beta, v", [(1.0, 0.7, 1000), (0.3, 0.45, 777), (2.0, -1.2, 50)])
def test_P0_and_trace_exact_for_finite_v(alpha, beta, v):
    p = plrf.Problem(alpha, beta, v, 10)
    # 30-digit sums; float64 pairwise summation of <= 1000 positive terms: rel. error << 1e-13
    assert p.P0 == pytest.approx(_mp_sum(2 * alpha + 2 * beta, v), rel=1e-13)
    assert p.trace_D == pytest.approx(_mp_sum(2 * alpha, v), rel=1e-13)
    assert p.default_lr(0.25) == pytest.approx(0.25 / p.trace_D, rel=1e-15)
    np.testing.assert_allclose(p.D * p.b ** 2, np.arange(1, v + 1) ** (-2.0 * alpha - 2 * beta), rtol=1e-14)


@pytest.mark.parametrize("alpha, beta", [(1.0, 0.7), (0.3, 0.3)])
def test_P0_approaches_zeta(alpha, beta):
    s = 2 * alpha + 2 * beta
    zeta = float(mpmath.zeta(s))
    for v in (10 ** 4, 10 ** 6):
        P0 = plrf.Problem(alpha, beta, v, 1).P0
        tail = zeta - P0
        # rigorous integral bounds on sum_{j > v} j^-s: int_{v+1}^inf <= tail <= int_v^inf (+ float slack 1e-12)
        lo, hi = (v + 1) ** (1 - s) / (s - 1), v ** (1 - s) / (s - 1)
        assert lo - 1e-12 <= tail <= hi + 1e-12
        # Euler-Maclaurin: tail = v^{1-s}/(s-1) - v^{-s}/2 + s v^{-s-1}/12 + O(v^{-s-3}); float64 error ~ 1e-13
        em = v ** (1 - s) / (s - 1) - v ** (-s) / 2 + s * v ** (-s - 1) / 12
        assert P0 + em == pytest.approx(zeta, rel=1e-12)


# ------------------------------------------------------------------ exact reductions on a sampled W

PROBLEMS = [plrf.Problem(1.0, 0.7, 1500, 64),   # v not a multiple of CHUNK = 1024
            plrf.Problem(0.4, 0.5, 2600, 48)]   # high-dimensional side (2 alpha < 1), v/d > 2


@pytest.fixture(scope="module", params=range(len(PROBLEMS)))
def inst_W(request):
    p = PROBLEMS[request.param]
    assert p.v % CHUNK != 0
    key = jax.random.key(11)
    return plrf.sample_instance(p, key=key), plrf.feature_matrix(p, key=key)


def test_W_distribution_and_rows_independent_of_v(inst_W):
    inst, W = inst_W
    p = inst.problem
    assert W.shape == (p.v, p.d) and W.dtype == np.float64
    # entries N(0, 1/d): mean and variance of sqrt(d) W within 5 standard errors (n ~ 1e5 entries)
    z = W.ravel() * math.sqrt(p.d)
    assert abs(z.mean()) < 5 / math.sqrt(z.size)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / z.size)
    # the same rows whatever v is (chunks are keyed by their index): exact equality
    W2 = plrf.feature_matrix(plrf.Problem(p.alpha, p.beta, p.v + 700, p.d), key=inst.key)
    np.testing.assert_array_equal(W2[: p.v], W)


def test_chunked_K_matches_dense(inst_W):
    inst, W = inst_W
    p, spec = inst.problem, inst.spectrum
    K = W.T @ (p.D[:, None] * W)  # W^T D W in one go
    lam = np.linalg.eigvalsh(K)
    # eigenvalues: absolute error ~ 1e-15 * lam_max (accumulation order differs), checked at 1e-12 * lam_max
    np.testing.assert_allclose(spec.lam, lam, rtol=0, atol=1e-12 * lam[-1])
    assert np.all(spec.lam > 0) and np.all(np.diff(spec.lam) >= 0)
    np.testing.assert_array_equal(spec.n, np.ones(p.d))
    assert spec.d == p.d and spec.trace == pytest.approx(np.trace(K), rel=1e-12)
    # eigenvectors diagonalize the dense K (1e-12 * lam_max), orthonormal (1e-12)
    np.testing.assert_allclose(inst.U.T @ K @ inst.U, np.diag(spec.lam), rtol=0, atol=1e-12 * lam[-1])
    np.testing.assert_allclose(inst.U.T @ inst.U, np.eye(p.d), rtol=0, atol=1e-12)


def test_theta_star_P_star_and_weights(inst_W):
    inst, W = inst_W
    p, spec = inst.problem, inst.spectrum
    sD = np.sqrt(p.D)
    theta_ls = np.linalg.lstsq(sD[:, None] * W, sD * p.b, rcond=None)[0]  # least squares (SVD), independent
    # cond(D^{1/2} W) <= ~ d^alpha ~ 100: relative agreement 1e-9
    np.testing.assert_allclose(inst.theta_star, theta_ls, rtol=1e-9, atol=1e-9 * np.abs(theta_ls).max())
    P_star_ref = population_risk_direct(p, W, theta_ls)
    assert spec.P_star == pytest.approx(P_star_ref, rel=1e-10)
    assert 0 < spec.P_star < p.P0
    # w_k = lam_k <u_k, theta*>^2, and P(0) = P* + sum w = sum_j j^{-2a-2b} (rel 1e-10)
    np.testing.assert_allclose(spec.w, spec.lam * (inst.U.T @ theta_ls) ** 2, rtol=1e-8, atol=1e-14 * p.P0)
    assert spec.P0 == pytest.approx(p.P0, rel=1e-10)
    assert spec.P0 == pytest.approx(population_risk_direct(p, W, np.zeros(p.d)), rel=1e-10)


def test_population_risk_matches_definition(inst_W):
    inst, W = inst_W
    p = inst.problem
    assert float(plrf.population_risk(inst, inst.theta_star)) == pytest.approx(float(inst.spectrum.P_star), rel=1e-12)
    rng = np.random.default_rng(5)
    thetas = inst.theta_star + rng.normal(size=(6, p.d)) * np.abs(inst.theta_star).mean()
    got = plrf.population_risk(inst, thetas)  # batched over a leading axis
    ref = np.array([population_risk_direct(p, W, t) for t in thetas])
    np.testing.assert_allclose(got, ref, rtol=1e-10)  # (theta - theta*)^T K (theta - theta*) + P* identity
    assert float(plrf.population_risk(inst, np.zeros(p.d))) == pytest.approx(p.P0, rel=1e-10)


def test_instance_from_W_and_keep_W_agree(inst_W):
    inst, W = inst_W
    p = inst.problem
    other = plrf.instance_from_W(p, W)
    # same W, same accumulation order: equal to 1e-13 relative
    np.testing.assert_allclose(other.spectrum.lam, inst.spectrum.lam, rtol=1e-13)
    np.testing.assert_allclose(other.spectrum.w, inst.spectrum.w, rtol=1e-10, atol=1e-15 * p.P0)
    assert other.key is None and other.W is not None
    kept = plrf.sample_instance(p, key=inst.key, keep_W=True)
    np.testing.assert_array_equal(kept.W, W)
    assert inst.W is None
    spec = plrf.sample_spectrum(p, key=inst.key)
    np.testing.assert_array_equal(spec.lam, inst.spectrum.lam)
    # a different key gives a different W
    assert not np.allclose(plrf.sample_spectrum(p, key=jax.random.key(12)).lam, spec.lam)


# ------------------------------------------------------------------ Spectrum helpers

def test_make_spectrum_and_expand():
    s = make_spectrum([3.0, 1.0, 2.0], [0.3, 0.1, 0.2], 0.5, n=[1, 2, 3])
    np.testing.assert_array_equal(s.lam, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(s.w, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(s.n, [2, 3, 1])
    assert s.P0 == pytest.approx(1.1, rel=1e-15) and s.d == 6.0 and s.trace == pytest.approx(11.0, rel=1e-15)
    assert s.lam_max == 3.0
    e = expand(s)
    np.testing.assert_array_equal(e.lam, [1, 1, 2, 2, 2, 3])
    assert e.P0 == pytest.approx(s.P0, rel=1e-15) and e.d == 6
    for args, pattern in [(([1.0, 2.0], [0.1], 0.0), "equal lengths"), (([np.nan], [0.1], 0.0), "^lam must be finite"),
                          (([-1.0], [0.1], 0.0), "^lam"), (([1.0], [-0.1], 0.0), "^w and n"),
                          (([1.0], [0.1], -1.0), "^P_star"), (([1.0], [0.1], np.inf), "^P_star")]:
        with pytest.raises(ValueError, match=pattern):
            make_spectrum(*args)
    with pytest.raises(ValueError, match="integer counts"):
        expand(make_spectrum([1.0], [0.1], 0.0, n=[1.5]))
