"""Stability edges of one-pass SGD: closed forms, the summed Volterra kernel, and behaviour at the edges.

Independent references: the single-mode closed form of the stochastic edge, ``||Kr|| = sum_r Kr(r)`` summed
term by term in numpy (brentq for its root), and the engine's own exact recursion run near the edges
(its limit is checked against ``P* / (1 - ||Kr||)``, a formula it does not use).
"""
import re

import jax
import numpy as np
import pytest
from scipy.optimize import brentq

import plrf
from plrf import schedules as S
from plrf.simulate import BLOWUP, run
from plrf.spectrum import make_spectrum


def series_kernel_norm(spec, lr, B):
    """sum_{r >= 0} Kr(r), Kr(r) = (lr^2/B) sum_k n_k lam_k^2 g_k^r, summed directly (tail < 1e-17 relative)."""
    g = 1 - 2 * lr * spec.lam + lr ** 2 * spec.lam ** 2 * (B + 1) / B
    assert np.all((g > 0) & (g < 1))
    R = int(np.ceil(np.log(1e-17) / np.log(g.max()))) + 1
    total = np.zeros_like(g)
    gr = np.ones_like(g)
    for _ in range(R):
        total += gr
        gr *= g
    return float(lr ** 2 / B * np.sum(spec.n * spec.lam ** 2 * total))


def _spec40():
    rng = np.random.default_rng(0)
    return make_spectrum(np.linspace(0.05, 1.0, 40), rng.uniform(0.01, 0.1, 40), 0.2)


@pytest.mark.parametrize("B", [1, 4])
def test_kernel_norm_equals_summed_kernel(B):
    spec = _spec40()
    edges = plrf.stability_edges(spec, B)
    for f in (0.1, 0.5, 0.99):
        lr = f * edges.stochastic
        # geometric series summed to a 1e-17 tail vs the closed form: rel 1e-12
        assert plrf.kernel_norm(spec, lr, B) == pytest.approx(series_kernel_norm(spec, lr, B), rel=1e-12)
    lrs = np.array([0.1, 0.5]) * edges.stochastic
    assert plrf.kernel_norm(spec, lrs, B).shape == (2,)                 # vectorized over lr
    assert plrf.kernel_norm(spec, 1.01 * edges.full_batch, B) == np.inf  # some g_k >= 1


@pytest.mark.parametrize("B", [1, 4])
def test_edges_match_independent_references(B):
    spec = _spec40()
    e = plrf.stability_edges(spec, B)
    assert e.full_batch == pytest.approx(2 * B / ((B + 1) * 1.0), rel=1e-15)   # lam_max = 1
    root = brentq(lambda lr: series_kernel_norm(spec, lr, B) - 1, 1e-3 * e.full_batch, 0.999 * e.full_batch,
                  xtol=1e-16, rtol=1e-14)
    assert e.stochastic == pytest.approx(root, rel=1e-11)  # bisection to 1e-15 vs brentq on the series
    assert e.max_lr == min(e.full_batch, e.stochastic) == plrf.max_stable_lr(spec, B)
    assert plrf.kernel_norm(spec, e.stochastic, B) == pytest.approx(1.0, abs=1e-12)
    # trace-dominated spectrum: the stochastic edge is ~ 2B / tr K (slightly below it)
    small = make_spectrum(np.linspace(1e-3, 1e-2, 1000), np.full(1000, 1e-3), 0.1)
    st = plrf.stability_edges(small, B).stochastic
    assert 0.97 * 2 * B / small.trace < st < 2 * B / small.trace


@pytest.mark.parametrize("B, n", [(1, 1.0), (4, 1.0), (1, 3.0), (8, 0.25)])
def test_single_mode_closed_form(B, n):
    lam = 2.5
    spec = make_spectrum([lam], [1.0], 0.1, n=[n])
    e = plrf.stability_edges(spec, B)
    # (lr/B) n lam / (2 - lr lam (B+1)/B) = 1  <=>  lr = 2B / (lam (n + B + 1))
    assert e.stochastic == pytest.approx(2 * B / (lam * (n + B + 1)), rel=1e-13)
    assert e.full_batch == pytest.approx(2 * B / ((B + 1) * lam), rel=1e-15)
    assert e.max_lr == e.stochastic < e.full_batch    # with n > 0 the full-batch edge never binds


def test_full_batch_edge_binds_when_top_mode_carries_no_weight():
    # n = 0 for lam_max: ||Kr|| stays < 1 up to the full-batch edge, which then binds
    spec = make_spectrum([0.1, 1.0], [0.1, 0.1], 0.05, n=[1.0, 0.0])
    e = plrf.stability_edges(spec)
    assert e.stochastic == np.inf and e.max_lr == e.full_batch == pytest.approx(1.0, rel=1e-15)
    with pytest.raises(ValueError, match=r"full-batch edge"):
        plrf.check_lr(spec, 1.001)
    c = plrf.expected_loss(spec, S.constant(1.02), steps=3000, allow_unstable=True)   # g_top = 1.0404 > 1
    assert c.diverged_step[0] > 0 and not np.any(np.isnan(c.loss))
    c = plrf.expected_loss(spec, S.constant(0.98), steps=3000)
    assert c.diverged_step[0] == -1 and np.isfinite(c.final)


@pytest.mark.parametrize("B", [1, 4])
def test_below_edge_converges_to_limit_above_diverges(B):
    spec = _spec40()
    edge = plrf.stability_edges(spec, B).stochastic
    for f in (0.9, 0.97):
        lr = f * edge
        c = plrf.expected_loss(spec, S.constant(lr), steps=100_000, batch=B, num=30)
        lim = plrf.limit_loss(spec, lr, B)
        assert lim == pytest.approx(spec.P_star / (1 - series_kernel_norm(spec, lr, B)), rel=1e-11)
        # the exact recursion after 1e5 steps (slowest decay time ~ 1e3 steps): at its limit within 1e-9
        assert c.final == pytest.approx(lim, rel=1e-9)
        assert c.diverged_step[0] == -1
    # just above the stochastic edge, while every g_k < 1 (the full-batch edge is 10x further): diverges
    lr = 1.03 * edge
    g = 1 - 2 * lr * spec.lam + lr ** 2 * spec.lam ** 2 * (B + 1) / B
    assert np.all(g < 1)
    c = plrf.expected_loss(spec, S.constant(lr), steps=100_000, batch=B, num=30, allow_unstable=True)
    assert c.diverged_step[0] > 0
    after = c.steps >= c.diverged_step[0]
    assert np.all(np.isinf(c.loss[after])) and np.all(np.isfinite(c.loss[~after]))
    assert not np.any(np.isnan(c.loss)) and not np.any(np.isnan(c.stderr))
    assert np.all(np.diff(c.loss[~after][-5:]) > 0)                  # growing before the blow-up
    assert plrf.limit_loss(spec, lr, B) == np.inf


def test_simulate_refuses_unstable_lr_naming_largest_stable_rate():
    p = plrf.Problem(1.0, 0.7, 128, 32)
    spec = plrf.sample_spectrum(p, key=jax.random.key(3))
    key = jax.random.key(0)
    for B in (1, 4):
        top = plrf.max_stable_lr(spec, B)
        msg = re.escape(f"must be < {top:.6g}")
        for sched, kw in [(S.constant(1.01 * top), {}), (S.constant(top), {}),   # at the edge: refused too
                          (S.cosine(1.2 * top, 100), {}), (S.constant(0.6 * top), dict(lr_scales=[1.0, 1.7]))]:
            with pytest.raises(ValueError, match=msg):
                run(spec, sched, steps=100, batch=B, key=key, **kw)
            if not kw:
                with pytest.raises(ValueError, match=r"allow_unstable=True"):
                    plrf.expected_loss(spec, sched, steps=100, batch=B)
        # just below: accepted (the check is shared by every method; 'expected' spares an eigen compile)
        plrf.simulate(spec, S.constant(0.99 * top), steps=10, batch=B, method="expected")


def test_allow_unstable_reports_divergence_without_nan():
    p = plrf.Problem(1.0, 0.7, 128, 32)
    spec = plrf.sample_spectrum(p, key=jax.random.key(3))
    lr = 1.5 * plrf.max_stable_lr(spec, 1)
    c = plrf.simulate(spec, S.constant(lr), steps=20_000, key=jax.random.key(1), seeds=6, allow_unstable=True)
    assert np.all(c.diverged_step >= 0)
    for arr in (c.loss, c.stderr, c.per_seed):
        assert not np.any(np.isnan(arr))
    assert np.isinf(c.final) and np.isinf(c.stderr[-1])
    # divergence is flagged at the first grid step whose loss exceeds BLOWUP * P(0) (or is not finite)
    for s in range(6):
        row, k = c.per_seed[s], int(np.searchsorted(c.steps, c.diverged_step[s]))
        assert np.all(np.isinf(row[k:])) and np.all(row[:k] <= BLOWUP * spec.P0)
    ce = plrf.expected_loss(spec, S.constant(lr), steps=20_000, allow_unstable=True)
    assert ce.diverged_step[0] >= 0 and not np.any(np.isnan(ce.loss))


@pytest.mark.parametrize("lr, B, pattern", [(0.0, 1, r"^lr must be"), (float("nan"), 1, r"^lr must be"),
                                            (-1.0, 1, r"^lr must be"), (0.1, 0, r"^batch must be"),
                                            (0.1, True, r"^batch must be"), (0.1, 2.0, r"^batch must be")])
def test_check_lr_arguments(lr, B, pattern):
    with pytest.raises(ValueError, match=pattern):
        plrf.check_lr(_spec40(), lr, B)


def test_system_edges_on_huge_deterministic_spectra_match_sgd():
    # a d = 2^20 deterministic-equivalent spectrum has modes with lam ~ 1e-13 whose per-mode map is within
    # 1e-12 of 1: the general noise-feedback norm still equals SGD's closed form ||Kr|| (1e-7 relative), and
    # heavy ball at the same effective step is stable (it was reported as inf before)
    from plrf import optimizers as O
    from theory.deterministic import deterministic_spectrum
    from theory.ladder import ladder_lr
    spec = deterministic_spectrum(1.0, 0.7, 2 ** 20)
    lr = ladder_lr(1.0, 2 ** 20)
    _, kn = plrf.stability.system_edges(spec, O.sgd(lr).system(0.0), 1)
    assert kn == pytest.approx(float(plrf.kernel_norm(spec, lr, 1)), rel=1e-7)
    _, kn_m = plrf.stability.system_edges(spec, O.momentum(0.1 * lr, 0.9).system(0.0), 1)
    assert 0 < kn_m < 1


def test_ladder_lr_large_v_without_the_explicit_sum():
    """Below the high-dimensional line the ladder's lr is c / sum_{j<=v} j^-2alpha with v = 4d: past 2^22 terms it
    is summed by Euler-Maclaurin (the explicit sum took 16 GB at d = 2^29 and the OOM killer ended the run); equal
    to the explicit float64 sum to 1e-14 just past the switch, and d = 2^29 costs no memory."""
    from theory import ladder as L
    for alpha in (0.2, 0.4, 0.49):
        d = L._EXPLICIT_SUM // 4 + 1
        v = L.data_dim(alpha, d)
        ref = 0.5 / float(np.sum(np.arange(1, v + 1, dtype=np.float64) ** (-2 * alpha)))
        assert L.ladder_lr(alpha, d) == pytest.approx(ref, rel=1e-14)
    from scipy import special
    v = 2.0 ** 31                     # d = 2^29: sum_{j<=v} j^-0.8 = v^0.2/0.2 + zeta(0.8) + v^-0.8/2 + ...
    assert L.ladder_lr(0.4, 2 ** 29) == pytest.approx(0.5 / (v ** 0.2 / 0.2 + special.zeta(0.8)), rel=1e-7)
