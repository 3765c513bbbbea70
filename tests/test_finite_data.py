import jax
import numpy as np
import pytest

import plrf
from plrf.finite_data import draw_sample, simulate_finite


@pytest.fixture(scope="module")
def inst():
    return plrf.sample_instance(plrf.Problem(alpha=1.0, beta=0.7, v=64, d=16), key=jax.random.key(3))


def test_one_epoch_large_N_matches_exact_one_pass(inst):
    spec = inst.spectrum
    lr = 0.5 / spec.trace
    steps = 1000
    fc = simulate_finite(spec, lr, samples=steps, steps=steps, key=jax.random.key(0), seeds=64, num=20)
    ex = plrf.expected_loss(spec, plrf.schedules.constant(lr), steps=steps, grid=fc.steps)
    z = (fc.pop - ex.loss) / np.maximum(fc.pop_stderr, 1e-300)
    assert np.all(np.abs(z[1:]) < 4.5), z
    assert abs(np.mean(z[1:])) < 2.5
    assert fc.pop[0] == pytest.approx(spec.P0, rel=1e-12)


def test_full_batch_gd_matches_numpy_closed_form(inst):
    spec = inst.spectrum
    N, steps = 40, 200
    lr = 0.5 / spec.lam_max
    key = jax.random.key(7)
    fc = simulate_finite(spec, lr, samples=N, steps=steps, batch=N, key=key, seeds=1, num=20)
    # the same sample, drawn independently of the run's loop (same key derivation)
    kdata, _ = jax.random.split(jax.random.fold_in(key, 0))
    lam = np.asarray(spec.lam)
    ts = np.sqrt(spec.w / lam)
    Z, y = (np.asarray(a) for a in draw_sample(jax.numpy.asarray(lam), jax.numpy.asarray(ts),
                                                   float(spec.P_star), 0.0, N, kdata))
    S = Z.T @ Z / N
    r = Z.T @ y / N
    ev, U = np.linalg.eigh(S)
    c = U.T @ r
    for t, pop, train in zip(fc.steps, fc.pop_per_seed[0], fc.train_per_seed[0]):
        # theta_t = (I - (I - eta S)^t) S^+ r  (and 0 on the null space of S)
        f = np.where(ev > 1e-14, (1 - (1 - lr * ev) ** t) / np.where(ev > 1e-14, ev, 1), lr * t)
        theta = U @ (f * c)
        P = spec.P_star + np.sum(lam * (theta - ts) ** 2)
        T = np.mean((Z @ theta - y) ** 2)
        assert abs(pop - P) <= 1e-10 * P
        assert abs(train - T) <= 1e-10 * max(T, 1e-3)


def test_replacement_vs_reshuffle_small_lr(inst):
    spec = inst.spectrum
    lr = 0.05 / spec.trace
    kw = dict(samples=50, steps=500, key=jax.random.key(11), seeds=64, num=10)
    a = simulate_finite(spec, lr, sampling="reshuffle", **kw)
    b = simulate_finite(spec, lr, sampling="replacement", **kw)
    # same samples per seed (same data key), only the order differs: at small lr both follow gradient flow on
    # the empirical loss, so the difference is within its paired standard error
    diff = a.pop_per_seed - b.pop_per_seed
    se = diff.std(0, ddof=1) / np.sqrt(diff.shape[0])
    assert np.all(np.abs(diff.mean(0)[1:]) <= 4.5 * se[1:] + 1e-12)


@pytest.mark.parametrize("kw, name", [
    (dict(samples=0), "samples"), (dict(steps=0), "steps"), (dict(batch=100), "batch"),
    (dict(sampling="cyclic"), "sampling"), (dict(noise=-1.0), "noise"), (dict(seeds=0), "seeds"),
    (dict(lr=-1.0), "lr"), (dict(key=0), "key"), (dict(samples=10**7, max_bytes=10**6), "samples"),
])
def test_bad_inputs(inst, kw, name):
    args = dict(lr=0.1, samples=10, steps=10, key=jax.random.key(0))
    args.update(kw)
    lr = args.pop("lr")
    with pytest.raises(ValueError, match=name):
        simulate_finite(inst.spectrum, lr, **args)


@pytest.mark.parametrize("ridge", [1e-3, 1e-2, 1e-1])
def test_ridge_deterministic_equivalent_vs_numpy(ridge):
    from theory.finite_data import ridge_losses
    inst = plrf.sample_instance(plrf.Problem(alpha=1.0, beta=0.7, v=800, d=200), key=jax.random.key(5))
    spec = inst.spectrum
    lam, ts = np.asarray(spec.lam), np.sqrt(spec.w / spec.lam)
    N, seeds = 200, 40
    rng = np.random.default_rng(0)
    P, T = [], []
    for _ in range(seeds):
        Z = rng.standard_normal((N, lam.size)) * np.sqrt(lam)
        y = Z @ ts + np.sqrt(spec.P_star) * rng.standard_normal(N)
        th = np.linalg.solve(Z.T @ Z / N + ridge * np.eye(lam.size), Z.T @ y / N)
        P.append(spec.P_star + np.sum(lam * (th - ts) ** 2))
        T.append(np.mean((Z @ th - y) ** 2))
    Pth, Tth = ridge_losses(lam, spec.w, float(spec.P_star), ridge, N)
    for m, th in ((np.array(P), Pth), (np.array(T), Tth)):
        se = m.std(ddof=1) / np.sqrt(seeds)
        # tolerance: 4 standard errors of the seed mean plus a 3% finite-size (1/N) allowance
        assert abs(m.mean() - th) <= 4 * se + 0.03 * th, (m.mean(), th, se)
