"""theory.volterra: exact recursion, unrolled Volterra sum, kernel norm, limit, stochastic edge."""
import jax
import numpy as np
import pytest

import plrf
from plrf import schedules as S
from theory import volterra as V

jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="module")
def spec():
    return plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 800, 200), key=jax.random.key(0))


@pytest.fixture(scope="module")
def spec_low():
    """2 alpha < 1, v = 4d: the stochastic edge is far below the full-batch edge."""
    return plrf.sample_spectrum(plrf.Problem(0.4, 0.3, 1200, 300), key=jax.random.key(3))


@pytest.fixture(scope="module")
def spec_fast():
    """A well-conditioned synthetic spectrum (lam in [1e-2, 1]) that converges within ~1e4 steps."""
    k = np.arange(1, 101.0)
    lam = np.geomspace(1.0, 1e-2, 100)
    return plrf.make_spectrum(lam, 0.3 * k ** -1.5, 0.05, n=np.full(100, 2.0))


@pytest.mark.parametrize("name, batch", [("constant", 1), ("8-1-1", 1), ("warmup-wsd", 1), ("cosine", 4)])
def test_exact_matches_engine(spec, name, batch):
    # same recursion as plrf.expected_loss, written independently: agreement to round-off (1e-10 asked)
    lr = 0.9 * plrf.max_stable_lr(spec, batch)
    sch = {"constant": S.constant(lr), "8-1-1": S.eight_one_one(lr, 3000), "cosine": S.cosine(lr, 3000),
           "warmup-wsd": S.warmup(S.wsd(lr, 3000), 100)}[name]
    a = V.solve_exact(spec, sch, steps=3000, batch=batch)
    b = plrf.expected_loss(spec, sch, steps=3000, batch=batch)
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-10, atol=0)
    np.testing.assert_allclose(a.lr, np.asarray(sch(a.steps)), rtol=1e-15)


@pytest.mark.parametrize("batch", [1, 3])
def test_direct_volterra_matches_recursion(spec, batch):
    # P(r) = F(r) + sum_{s<r} Kr(r-1-s) P(s) unrolled directly vs the per-mode recursion, every step (1e-10)
    lr = 0.9 * plrf.max_stable_lr(spec, batch)
    steps = 1500
    P = V.solve_volterra_direct(spec, lr, steps=steps, batch=batch)
    ex = V.solve_exact(spec, S.constant(lr), steps=steps, batch=batch, grid=np.arange(steps + 1))
    np.testing.assert_allclose(P, ex.loss, rtol=1e-10, atol=0)


def test_forcing_kernel_by_repeated_products(spec_fast):
    # F and Kr from exp(r log g) vs explicit powers g^r built by repeated multiplication (1e-12)
    lr, B = 0.7, 2
    g = 1 - 2 * lr * spec_fast.lam + lr ** 2 * spec_fast.lam ** 2 * (B + 1) / B
    r = np.arange(40)
    pw = np.cumprod(np.vstack([np.ones_like(g), np.tile(g, (39, 1))]), axis=0)  # pw[r] = g^r
    F = spec_fast.P_star + pw @ spec_fast.w
    K = pw @ (spec_fast.n * spec_fast.lam ** 2) * lr ** 2 / B
    np.testing.assert_allclose(V.forcing(spec_fast, lr, r, batch=B), F, rtol=1e-12)
    np.testing.assert_allclose(V.kernel(spec_fast, lr, r, batch=B), K, rtol=1e-12)


@pytest.mark.parametrize("batch", [1, 5])
def test_kernel_norm_brute_force(spec_fast, batch):
    # ||Kr|| closed form vs the explicit sum of Kr(r) over r < R, R = 40 / (1 - g_max) steps so that the tail
    # Kr(R)/(1 - g_max) is below e^-40 of the sum: agreement 1e-12
    lr = 0.8 * plrf.max_stable_lr(spec_fast, batch)
    R = int(40 / (1 - np.max(V.decay_factor(spec_fast, lr, batch))))
    brute = sum(np.sum(V.kernel(spec_fast, lr, np.arange(a, min(a + 50000, R)), batch=batch))
                for a in range(0, R, 50000))
    assert V.kernel_norm(spec_fast, lr, batch=batch) == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("batch", [1, 5])
def test_limit_is_long_time_recursion(spec_fast, batch):
    # P(inf) = P*/(1 - ||Kr||) vs the exact recursion after 8e4 steps (slowest mode decayed by g_max^8e4 < e^-57,
    # B = 1): agreement 1e-10
    lr = 0.8 * plrf.max_stable_lr(spec_fast, batch)
    c = V.solve_exact(spec_fast, S.constant(lr), steps=80000, batch=batch, num=10)
    assert c.final == pytest.approx(float(V.limit(spec_fast, lr, batch=batch)), rel=1e-10)
    assert float(V.kernel_norm(spec_fast, lr, batch=batch)) > 0.3  # the noise term is not negligible here


def test_stochastic_edge_blow_up(spec_low):
    ed = plrf.stability_edges(spec_low)
    assert ed.stochastic < 0.2 * ed.full_batch  # 2 alpha < 1: the trace sets the edge
    assert float(V.kernel_norm(spec_low, ed.stochastic)) == pytest.approx(1.0, abs=1e-12)
    steps = 200000
    # just below: the recursion settles at P*/(1 - ||Kr||) (relative 1e-8 after 2e5 steps)
    lr = 0.98 * ed.stochastic
    c = V.solve_exact(spec_low, S.constant(lr), steps=steps, num=50)
    assert c.final == pytest.approx(float(V.limit(spec_low, lr)), rel=1e-8)
    assert V.growth_factor(spec_low, lr) == 1.0
    # just above: exponential blow-up at the rate log(rho) of the renewal equation
    # sum_k n_k (lr^2/B) lam_k^2 / (rho - g_k) = 1 (slope of log P over the last 2e4 steps within 1%)
    lr = 1.02 * ed.stochastic
    c = V.solve_exact(spec_low, S.constant(lr), steps=steps, grid=np.array([0, steps - 20000, steps]),
                      allow_unstable=True)
    rho = V.growth_factor(spec_low, lr)
    slope = np.log(c.loss[2] / c.loss[1]) / 20000
    assert rho > 1 and slope == pytest.approx(np.log(rho), rel=1e-2)
    assert c.final > 1e20 * spec_low.P0


def test_full_batch_edge(spec):
    # at 1.01x the full-batch edge the top mode has g > 1; at 0.99x all g < 1
    ed = plrf.stability_edges(spec, 2)
    assert np.max(V.decay_factor(spec, 1.01 * ed.full_batch, 2)) > 1
    assert np.max(V.decay_factor(spec, 0.99 * ed.full_batch, 2)) < 1


def test_validation(spec):
    with pytest.raises(ValueError, match="unstable"):
        V.solve_exact(spec, S.constant(1.1 * plrf.max_stable_lr(spec)), steps=10)
    with pytest.raises(ValueError, match="batch"):
        V.solve_exact(spec, S.constant(0.1), steps=10, batch=0)
    with pytest.raises(ValueError, match="steps"):
        V.solve_exact(spec, S.constant(0.1), steps=0)
    with pytest.raises(ValueError, match="grid"):
        V.solve_exact(spec, S.constant(0.1), steps=10, grid=[0, 5, 4, 10])
    with pytest.raises(ValueError, match="steps"):
        V.solve_volterra_direct(spec, 0.1, steps=10 ** 6)
