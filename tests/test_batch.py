"""Batch size, exactly (theory/batch.py): the gradient noise scale against closed forms and Monte Carlo."""
import jax
import numpy as np
import pytest

import plrf
from plrf import optimizers as O
from plrf import schedules as S
from plrf.spectrum import make_spectrum
from theory.batch import b_simple_initial, noise_scale


@pytest.mark.parametrize("P_star,B", [(0.0, 1), (0.3, 1), (0.3, 4)])
def test_single_mode_closed_form(P_star, B):
    """One mode: E delta_t = -(1 - eta lam)^t theta*, e_t = lam E delta^2 obeys e' = rho e + (eta^2 lam^2/B) P*
    with rho = 1 - 2 eta lam + eta^2 lam^2 (B+2)/B; B_simple = 2 + P*/e, B_noise = ((P* + e) lam + 2 lam e) /
    (lam m)^2 - 1 (per-sample covariance, whatever the training batch B)."""
    lam, th, eta = 2.0, 0.7, 0.15
    spec = make_spectrum([lam], [lam * th ** 2], P_star)
    ns = noise_scale(spec, S.constant(eta), steps=40, batch=B, grid=np.arange(41))
    t = np.arange(41)
    rho = 1 - 2 * eta * lam + eta ** 2 * lam ** 2 * (B + 2) / B
    src = eta ** 2 * lam ** 2 * P_star / B
    e = lam * th ** 2 * rho ** t + (src * (1 - rho ** t) / (1 - rho) if P_star else 0.0)
    m = -(1 - eta * lam) ** t * th
    np.testing.assert_allclose(ns.loss, P_star + e, rtol=1e-12)
    np.testing.assert_allclose(ns.B_simple, 2 + P_star / e, rtol=1e-10)
    # tr Cov = (P* + e) lam + 2 lam e - lam^2 m^2, |E g|^2 = lam^2 m^2
    np.testing.assert_allclose(ns.B_noise, ((P_star + e) * lam + 2 * lam * e) / (lam * lam * m * m) - 1,
                               rtol=1e-10)
    assert ns.B_simple[0] == pytest.approx(b_simple_initial(spec), rel=1e-12)


def _mc_eigen(spec, eta, B, grid, seeds, rng):
    """Eigen SGD states delta = theta - theta* (numpy, all seeds at once) at the grid steps, then one fresh
    per-sample gradient per seed at each recorded state."""
    lam = spec.lam
    sq = np.sqrt(lam)
    ts = np.sqrt(spec.w / lam)
    noise = np.sqrt(spec.P_star)
    delta = np.tile(-ts, (seeds, 1))
    out = {}
    for r in range(grid[-1] + 1):
        if r in grid:
            x = rng.standard_normal((seeds, lam.size)) * sq
            g = x * (np.sum(x * delta, axis=1) - noise * rng.standard_normal(seeds))[:, None]
            out[r] = (delta.copy(), g)
        x = rng.standard_normal((seeds, B, lam.size)) * sq
        res = np.einsum("sbk,sk->sb", x, delta) - noise * rng.standard_normal((seeds, B))
        delta = delta - (eta / B) * np.einsum("sbk,sb->sk", x, res)
    return out


def _ratio(a, b):
    """mean(a)/mean(b) and its delta-method standard error."""
    ma, mb = a.mean(), b.mean()
    R = ma / mb
    var = (np.var(a) - 2 * R * np.cov(a, b)[0, 1] + R * R * np.var(b)) / (mb * mb * a.size)
    return R, float(np.sqrt(var))


def test_noise_scale_against_monte_carlo():
    """Exact E|g|^2, E g, E|G(delta)|^2 and the two noise scales against eigen SGD states and fresh per-sample
    gradients (20000 seeds, d = 12, B = 2, 0.5 x the stability edge): every moment and B_simple within 4
    standard errors, B_noise within 20% (a ratio of two noisy estimates) where |E g|^2 is resolved."""
    inst = plrf.sample_instance(plrf.Problem(1.0, 0.7, 48, 12, label_noise=0.01), key=jax.random.key(0))
    spec = inst.spectrum
    B = 2
    eta = 0.5 * plrf.max_stable_lr(spec, B)
    grid = np.array([0, 1, 3, 10, 30, 100])
    ns = noise_scale(spec, S.constant(eta), steps=100, batch=B, grid=grid)
    mc = _mc_eigen(spec, eta, B, grid, 20000, np.random.default_rng(1))
    lam = spec.lam
    for i, r in enumerate(grid):
        delta, g = mc[r]
        g2 = np.sum(g * g, axis=1)
        trcov_exact = ns.tr_cov[i] + ns.mean_grad_sq[i]     # E|g|^2
        assert abs(g2.mean() - trcov_exact) < 4 * g2.std() / np.sqrt(g2.size), r
        G2 = np.sum((lam * delta) ** 2, axis=1)
        assert abs(G2.mean() - ns.grad_sq[i]) < 4 * G2.std() / np.sqrt(G2.size) + 1e-12 * G2.mean(), r
        # E g = K E delta, per component
        gm, gse = g.mean(axis=0), g.std(axis=0) / np.sqrt(g.shape[0])
        exact_mean = np.sqrt(ns.mean_grad_sq[i])
        assert abs(np.linalg.norm(gm) - exact_mean) < 4 * np.linalg.norm(gse), r
        # B_simple from the per-sample estimate E tr Sigma = E|g|^2 - E|G|^2 over E|G|^2 (delta-method s.e.)
        if r > 0:
            Bs, se = _ratio(g2 - G2, G2)
            assert abs(Bs - ns.B_simple[i]) < 4 * se, (r, Bs, se, ns.B_simple[i])
        if 0 < r <= 10:   # B_noise where |E g|^2 is resolved (it shrinks to the noise of the mean later)
            Bn = (g2.mean() - np.sum(gm ** 2)) / np.sum(gm ** 2)
            assert Bn == pytest.approx(ns.B_noise[i], rel=0.2), (r, Bn, ns.B_noise[i])


def test_momentum_noise_scale_runs_and_matches_loss():
    """Momentum: the loss carried by noise_scale (forced first moments) equals plrf.expected_loss."""
    spec = plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 64, 16), key=jax.random.key(2))
    opt = O.momentum(0.1 / spec.trace, 0.8)
    grid = plrf.log_grid(500, 20)
    ns = noise_scale(spec, opt, steps=500, batch=4, grid=grid)
    ex = plrf.expected_loss(spec, opt, steps=500, batch=4, grid=grid)
    np.testing.assert_allclose(ns.loss, ex.loss, rtol=1e-10)
    assert np.all(ns.B_noise >= ns.B_simple * 0.999)


@pytest.fixture(scope="module")
def frontier():
    from theory import batch as TB
    spec = plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 64, 16), key=jax.random.key(0))
    target = spec.P_star + 0.02 * (spec.P0 - spec.P_star)
    pts = [TB.tune_batch(spec, target, B, max_steps=2000, num=120) for B in (1, 2, 4, 8, 16, 32, 64, 128)]
    return spec, target, pts


def test_frontier_fits_mccandlish_and_bcrit_matches_noise_scale(frontier):
    """S(B), E(B) from the lr tuned per B on the exact theory follow (S/S_min - 1)(E/E_min - 1) = 1 within 5% (3.0% measured)
    at every B, and the fitted B_crit = E_min/S_min is within a factor 1.3 of the exact B_simple of the tuned
    run at the B nearest B_crit, at the step it reaches the target (within 1.6 of the Hessian-weighted one)."""
    from theory import batch as TB
    spec, target, pts = frontier
    S = np.array([p.steps for p in pts])
    assert np.all(np.isfinite(S)) and np.all(np.diff(S) < 0)       # more batch, fewer steps
    E = np.array([p.samples for p in pts])
    assert np.all(np.diff(E) > 0)                                   # ... and more samples
    fit = TB.fit_tradeoff([p.batch for p in pts], S)
    assert fit.max_log_resid < 0.05
    lhs = (S / fit.S_min - 1) * (E / fit.E_min - 1)
    assert np.all(np.abs(np.log(lhs)) < 0.5)   # the product is 1 where both factors are resolved
    near = min(pts, key=lambda p: abs(np.log(p.batch / fit.B_crit)))
    at, _ = TB.noise_at_target(spec, target, near)
    assert 1 / 1.3 < fit.B_crit / at["B_simple"] < 1.3
    assert 1 / 1.6 < fit.B_crit / at["B_hessian"] < 1.6
    # every tuned lr is strictly inside the stability bound
    assert all(0 < p.lr_frac < 1 for p in pts)


def test_tuned_lr_against_brute_force(frontier):
    """At one batch the scipy-tuned S(B) is within 1% of the minimum over a fine lr grid (brute force on the
    exact recursion), and never above it by more than the grid spacing allows."""
    from theory import batch as TB
    spec, target, pts = frontier
    p = pts[3]
    grid = plrf.log_grid(2000, 120)
    lrs = np.geomspace(0.2, 0.99, 60) * p.lr_max
    S = [TB.steps_to_target(*(lambda c: (c.steps, c.loss))(
        plrf.expected_loss(spec, O.sgd(lr), steps=2000, batch=p.batch, grid=grid)), target) for lr in lrs]
    assert p.steps <= min(S) * 1.01


@pytest.mark.slow
def test_cli_batch(tmp_path):
    """`plrf batch` on a tiny problem: results.json holds the sizes, steps_to_target, B_crit and
    B_noise_initial (= 1 + P(0) tr K / sum lam w on the W of `plrf curve --seed 0`), the figure is a PNG, and
    `plrf plot` redraws it."""
    from tests.cli_util import is_png, load_results, run_cli
    out = tmp_path / "batch"
    assert run_cli(["batch", "--d", 16, "--batch-max", 64, "--max-steps", 2000, "--num", 80, "--quiet",
                    "--out", out]) == 0
    r = load_results(out)
    assert r["batch"] == [1, 2, 4, 8, 16, 32, 64] and len(r["steps_to_target"]) == 7
    assert r["fit_max_log_resid"] < 0.05 and 1 < r["B_crit"] < 64
    k_w, _ = jax.random.split(jax.random.key(0))
    spec = plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 64, 16), key=k_w)
    assert r["B_noise_initial"] == pytest.approx(b_simple_initial(spec), rel=1e-10)
    assert 1 / 1.3 < r["B_crit"] / r["noise_at_target"]["B_simple"] < 1.3
    assert is_png(out / "batch.png")
    assert run_cli(["plot", out, "--quiet"]) == 0


@pytest.mark.slow
def test_monte_carlo_at_three_batches_around_bcrit(frontier):
    """Eigen SGD at the tuned lr of the three batch sizes nearest B_crit agrees with the exact curves within
    4 standard errors (2048 seeds), up to the horizon the target needs."""
    from theory import batch as TB
    spec, target, pts = frontier
    fit = TB.fit_tradeoff([p.batch for p in pts], [p.steps for p in pts])
    order = sorted(pts, key=lambda p: abs(np.log(p.batch / fit.B_crit)))[:3]
    for p in order:
        T = int(np.ceil(p.steps)) + 1
        grid = plrf.log_grid(T, 12)
        exact = plrf.expected_loss(spec, O.sgd(p.lr), steps=T, batch=p.batch, grid=grid)
        mc = plrf.simulate(spec, O.sgd(p.lr), steps=T, batch=p.batch, method="eigen", key=jax.random.key(5),
                           seeds=2048, grid=grid)
        z = np.abs(mc.loss[1:] - exact.loss[1:]) / mc.stderr[1:]
        assert np.max(z) < 4.0, (p.batch, z)
        assert exact.loss[-1] <= target * 1.05
