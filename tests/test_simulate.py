"""The three simulators against each other and against independent references.

* Monte Carlo: the seed-mean of ``eigen`` (SGD in K's eigenbasis) and ``features`` (honest SGD through W)
  agrees with ``expected`` (the exact recursion) at every grid point, for a constant and a cosine schedule,
  batch 1 and 4. The Monte Carlo runs also reject deliberately wrong recursions (power check).
* ``expected`` equals an independent numpy unrolling of the discrete Volterra equation (constant lr) and of
  the per-mode recursion (schedules) to 1e-10 relative.
* Seeds: the same seed id gives the same curve in any seeds list.
"""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plrf
from plrf import schedules as S
from plrf.optimizers import as_optimizer
from plrf.runners import expected_block


def _block_size(schedule, modes):
    return expected_block(as_optimizer(schedule), modes)
from plrf.simulate import run
from plrf.spectrum import make_spectrum


def volterra_reference(spec, lr, B, R):
    """P(r) = F(r) + sum_{s<r} Kr(r-1-s) P(s), r = 0..R, written out in numpy (constant lr)."""
    g = 1 - 2 * lr * spec.lam + lr ** 2 * spec.lam ** 2 * (B + 1) / B
    G = g[:, None] ** np.arange(R + 1)[None, :]                      # (modes, R+1)
    F = float(spec.P_star) + spec.w @ G
    Kr = lr ** 2 / B * (spec.n * spec.lam ** 2) @ G
    P = np.empty(R + 1)
    for r in range(R + 1):
        P[r] = F[r] + np.dot(Kr[r - 1::-1], P[:r]) if r else F[0]
    return P


def recursion_reference(spec, lrs, B, noise=True, batch_factor=None):
    """e_k(r+1) = g_k(eta_r) e_k(r) + n_k (eta_r^2/B) lam_k^2 P(r) in numpy; optionally deliberately wrong."""
    lam, n = spec.lam, spec.n
    bf = (B + 1) / B if batch_factor is None else batch_factor
    e = spec.w.copy()
    P = [float(spec.P_star) + e.sum()]
    for eta in lrs:
        e = (1 - 2 * eta * lam + eta ** 2 * lam ** 2 * bf) * e + (noise * eta ** 2 / B) * n * lam ** 2 * P[-1]
        P.append(float(spec.P_star) + e.sum())
    return np.array(P)


# ------------------------------------------------------------------ Monte Carlo

MC_PROBLEM = plrf.Problem(1.0, 0.7, 128, 32)   # d = 32, v = 4d
MC_STEPS, MC_SEEDS = 600, 1000
# Threshold: 4 standard errors at each of the 19 grid points > 0 (step 0 is compared exactly). For Gaussian
# means, Bonferroni gives a false-alarm probability <= 19 * 6.3e-5 = 0.12% per case. The per-seed losses are
# skewed (a few modes dominate early), so the z-scores have heavier tails: with 1000 seeds, over 4 cases x 40
# independent keys (eigen), max_r |z| exceeded 3.5 in 3.1% of runs and 4 in 1 of 160 (0.6%). We accept a
# family-wise false-alarm rate of about 5% over the 8 cases; the key is fixed, so the test is deterministic.
Z_MAX = 4.0


@pytest.fixture(scope="module")
def mc_instance():
    return plrf.sample_instance(MC_PROBLEM, key=jax.random.key(2024))


# The default run keeps one case per method and both batch sizes and schedules across them (each case is a
# compiled program plus 6e5 seed-steps); the full 2 x 2 x 2 grid runs with -m slow.
DEFAULT_MC = {("eigen", "constant", 1), ("eigen", "cosine", 4), ("features", "cosine", 1)}


@pytest.mark.parametrize("method, sched_name, B", [
    pytest.param(m, s, b, marks=() if (m, s, b) in DEFAULT_MC else pytest.mark.slow)
    for m in ("eigen", "features") for s in ("constant", "cosine") for b in (1, 4)])
def test_monte_carlo_mean_matches_expected(mc_instance, method, sched_name, B):
    _monte_carlo_check(mc_instance, method, sched_name, B, "plrf")


@pytest.mark.parametrize("method", ["eigen", pytest.param("features", marks=pytest.mark.slow)])
def test_monte_carlo_with_jax_normals(mc_instance, method):
    # rng='jax' (jax.random.normal, threefry) passes the same checks
    _monte_carlo_check(mc_instance, method, "cosine", 4, "jax")


def _monte_carlo_check(mc_instance, method, sched_name, B, rng):
    spec = mc_instance.spectrum
    lr = 0.5 * plrf.max_stable_lr(spec, B)
    sched = S.constant(lr) if sched_name == "constant" else S.cosine(lr, MC_STEPS)
    grid = plrf.log_grid(MC_STEPS, 20)
    assert 19 <= len(grid) <= 21
    src = mc_instance if method == "features" else spec
    c = plrf.simulate(src, sched, steps=MC_STEPS, batch=B, method=method, key=jax.random.key(7), seeds=MC_SEEDS,
                      grid=grid, rng=rng)
    ex = plrf.expected_loss(spec, sched, steps=MC_STEPS, batch=B, grid=grid)
    np.testing.assert_array_equal(c.steps, grid)
    np.testing.assert_array_equal(ex.steps, grid)
    assert c.per_seed.shape == (MC_SEEDS, len(grid)) and np.all(c.diverged_step == -1)
    # step 0: theta_0 = 0 for every seed, loss P(0) (different float summation orders: rel 1e-12)
    np.testing.assert_allclose(c.per_seed[:, 0], ex.loss[0], rtol=1e-12)
    np.testing.assert_allclose(ex.loss[0], spec.P0, rtol=1e-13)
    z = (c.loss[1:] - ex.loss[1:]) / c.stderr[1:]
    assert np.all(np.abs(z) < Z_MAX), f"max |z| = {np.abs(z).max():.2f} at step {grid[1 + np.abs(z).argmax()]}"
    # power: the same data reject the recursion without the SGD-noise term and with (B+1)/B replaced by 1
    lrs = np.asarray(sched(jnp.arange(MC_STEPS)))
    for wrong, needed in [(recursion_reference(spec, lrs, B, noise=False), 10.0),
                          (recursion_reference(spec, lrs, B, batch_factor=1.0), Z_MAX + 1)]:
        assert np.max(np.abs(c.loss[1:] - wrong[grid[1:]]) / c.stderr[1:]) > needed
    # and the numpy recursion reproduces expected (1e-11 relative)
    np.testing.assert_allclose(recursion_reference(spec, lrs, B)[grid], ex.loss, rtol=1e-11)


@pytest.mark.parametrize("method", ["eigen", "features"])
def test_same_seed_same_curve(mc_instance, method):
    spec = mc_instance.spectrum
    src = mc_instance if method == "features" else spec
    sched = S.cosine(0.5 * plrf.max_stable_lr(spec, 2), 200)
    kw = dict(steps=200, batch=2, method=method, key=jax.random.key(3), num=30)
    # every call runs 4 seeds (one compiled program); seed 5 sits at other places among other seeds
    many = plrf.simulate(src, sched, seeds=[0, 9, 5, 2], **kw)
    other = plrf.simulate(src, sched, seeds=[5, 1, 3, 7], **kw)
    # identical random streams; vmapped matmuls may round differently: rel 1e-12
    np.testing.assert_allclose(many.per_seed[2], other.per_seed[0], rtol=1e-12)
    count = plrf.simulate(src, sched, seeds=4, **kw)
    np.testing.assert_allclose(count.per_seed[[0, 2]], many.per_seed[[0, 3]], rtol=1e-12)   # seeds 0 and 2
    np.testing.assert_allclose(count.per_seed[[1, 3]], other.per_seed[[1, 2]], rtol=1e-12)  # seeds 1 and 3
    assert np.abs(many.per_seed[0, -1] / many.per_seed[1, -1] - 1) > 1e-6   # different seeds differ
    other_key = plrf.simulate(src, sched, seeds=[5, 1, 3, 7], **{**kw, "key": jax.random.key(4)})
    assert np.all(np.abs(other_key.per_seed[:, -1] / other.per_seed[:, -1] - 1) > 1e-6)
    # (the single-run path, seeds=[5] alone, is checked against a sweep in tests/test_sweep.py)


def test_eigen_float32_and_untagged_schedule(mc_instance):
    spec = mc_instance.spectrum
    lr = 0.5 * plrf.max_stable_lr(spec)
    ex = plrf.expected_loss(spec, S.constant(lr), steps=300, num=15)
    c = plrf.simulate(spec, lambda r: lr + 0.0 * r, steps=300, key=jax.random.key(8), seeds=1000, num=15,
                      dtype=jnp.float32)
    z = (c.loss[1:] - ex.loss[1:]) / c.stderr[1:]
    assert np.all(np.abs(z) < Z_MAX)               # float32 rounding is far below the Monte Carlo error
    np.testing.assert_allclose(c.loss[0], ex.loss[0], rtol=1e-6)   # float32 P(0)
    with pytest.raises(ValueError, match=r"must be <"):   # an untagged schedule's peak is evaluated too
        plrf.simulate(spec, lambda r: 2 * plrf.max_stable_lr(spec) + 0.0 * r, steps=300, key=jax.random.key(8))


# ------------------------------------------------------------------ exact recursion vs references

@pytest.mark.parametrize("B", [1, 4])
def test_expected_equals_volterra_binned(B):
    rng = np.random.default_rng(1)
    lam = np.sort(rng.uniform(0.01, 1.0, 25))
    spec = make_spectrum(lam, rng.uniform(0, 0.2, 25), 0.07, n=rng.integers(1, 6, 25))   # counts n != 1
    lr = 0.8 * plrf.max_stable_lr(spec, B)
    R = 1500
    ref = volterra_reference(spec, lr, B, R)
    every = plrf.expected_loss(spec, S.constant(lr), steps=R, batch=B, grid=np.arange(R + 1))
    np.testing.assert_allclose(every.loss, ref, rtol=1e-10)   # every step
    logg = plrf.expected_loss(spec, S.constant(lr), steps=R, batch=B, num=40)   # long intervals (unrolled)
    np.testing.assert_allclose(logg.loss, ref[logg.steps], rtol=1e-10)
    assert logg.final == pytest.approx(ref[-1], rel=1e-10) and np.all(logg.stderr == 0)
    # the constant schedule takes the blocked path; an untagged closure the step-by-step one
    assert _block_size(S.constant(lr), 25) > 0 and _block_size(lambda r: lr + 0 * r, 25) == 0
    plain = plrf.expected_loss(spec, lambda r: lr + 0.0 * r, steps=R, batch=B, num=40)
    np.testing.assert_allclose(plain.loss, ref[plain.steps], rtol=1e-10)


@pytest.mark.parametrize("modes", [2_000, 20_000, 200_000])
def test_blocked_equals_stepwise_many_modes(modes):
    # blocks while the block's matrices stay in cache (64 steps at 2000 modes), none at 20000 and above: the
    # constant-lr runs (blocked where it applies) equal the plain-closure runs (always step by step), 1e-12
    j = np.arange(1.0, modes + 1)
    spec = make_spectrum(j ** -1.5, j ** -2.0, 0.01)   # power law: tr K ~ 2.6, loss dominated by the top modes
    lr = 0.7 * plrf.max_stable_lr(spec)
    assert _block_size(S.constant(lr), modes) == (64 if modes <= 2_000 else 0)
    a = plrf.expected_loss(spec, S.constant(lr), steps=300, num=10)
    b = plrf.expected_loss(spec, lambda r: lr + 0.0 * r, steps=300, num=10)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)
    assert a.final < 0.9 * a.loss[0]   # it moved


def test_expected_equals_volterra_sampled(mc_instance):
    spec = plrf.sample_spectrum(plrf.Problem(0.4, 0.6, 256, 64), key=jax.random.key(1))
    lr = 0.9 * plrf.max_stable_lr(spec)
    R = 2000
    c = plrf.expected_loss(spec, S.constant(lr), steps=R, grid=np.unique(np.r_[0, np.arange(1, R + 1, 37), R]))
    np.testing.assert_allclose(c.loss, volterra_reference(spec, lr, 1, R)[c.steps], rtol=1e-10)


@pytest.mark.parametrize("sched", [S.cosine(1.0, 700, floor=0.05), S.wsd(1.0, 700, shape="1-sqrt"),
                                   S.eight_one_one(1.0, 700), S.warmup(S.exponential(1.0, half_life=200.0), 50),
                                   S.join([S.constant(0.6), S.linear(1.0, 300)], [333]),
                                   S.from_array(np.linspace(1.0, 0.1, 500))], ids=lambda s: s.name)
@pytest.mark.parametrize("B", [1, 3])
def test_expected_with_schedule_equals_recursion(mc_instance, sched, B):
    spec = mc_instance.spectrum
    scale = 0.9 * plrf.max_stable_lr(spec, B) / sched.peak
    R = 700
    lrs = scale * np.asarray(sched(jnp.arange(R)))       # step r uses eta_r = schedule(r)
    ref = recursion_reference(spec, lrs, B)
    grid, P, div = run(spec, sched, steps=R, batch=B, lr_scales=[scale], num=50)
    np.testing.assert_allclose(P[0, 0], ref[grid], rtol=1e-11)   # same recursion, different summation order
    assert div[0, 0] == -1


def test_lr_scales_are_independent_runs(mc_instance):
    # expected: each lr scale equals the independent numpy recursion of the scaled schedule (per-step and the
    # blocked constant-lr path)
    spec = mc_instance.spectrum
    top = plrf.max_stable_lr(spec)
    sched = S.wsd(top, 400, cooldown=0.3)
    scales = [0.5, 0.9]
    grid, P, div = run(spec, sched, steps=400, lr_scales=scales, num=20)
    assert P.shape == (2, 1, len(grid)) and div.shape == (2, 1)
    lrs = np.asarray(sched(jnp.arange(400)))
    for i, s in enumerate(scales):
        np.testing.assert_allclose(P[i, 0], recursion_reference(spec, s * lrs, 1)[grid], rtol=1e-11)
    grid, P, div = run(spec, S.constant(top), steps=400, batch=3, lr_scales=scales, num=20)   # blocked path
    for i, s in enumerate(scales):
        np.testing.assert_allclose(P[i, 0], recursion_reference(spec, np.full(400, s * top), 3)[grid], rtol=1e-11)


@pytest.mark.slow   # two eigen programs (~15 s of compiles); sweeps check the same property by default
def test_lr_scales_are_independent_eigen_runs(mc_instance):
    spec = mc_instance.spectrum
    top = plrf.max_stable_lr(spec)
    sched = S.wsd(top, 400, cooldown=0.3)
    grid, P, div = run(spec, sched, steps=400, lr_scales=[0.5, 0.9], num=20, method="eigen", key=jax.random.key(0),
                       seeds=2)
    one = plrf.simulate(spec, S.wsd(0.5 * top, 400, cooldown=0.3), steps=400, num=20, key=jax.random.key(0), seeds=2)
    np.testing.assert_allclose(P[0], one.per_seed, rtol=1e-12)


# ------------------------------------------------------------------ grids and argument checks

def test_log_grid():
    for steps, num in [(1, 2), (7, 100), (1000, 20), (10 ** 9, 100)]:
        g = plrf.log_grid(steps, num)
        assert g.dtype == np.int64 and g[0] == 0 and g[-1] == steps and np.all(np.diff(g) > 0)
        assert len(g) <= num + 1
    np.testing.assert_array_equal(plrf.log_grid(7, 100), np.arange(8))   # every step when they are few
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"^steps must be an integer"):
            plrf.log_grid(bad)
    for bad in (1, 2.5):
        with pytest.raises(ValueError, match=r"^num must be an integer"):
            plrf.log_grid(10, bad)


def test_log_grid_follows_discontinuities():
    # every step right after a jump or kink is on the default grid: the first step taken with the new rate
    # (ceil of the breakpoint) and log-spaced steps after it up to the next breakpoint
    T = 16000
    step = S.join([S.constant(0.5), S.constant(0.05), S.constant(0.005)], [8000, 12000])
    g = plrf.log_grid(T, 20, after=step)
    for b in (8000, 12000):
        assert {b, b + 1, b + 2, b + 3} <= set(g.tolist())
    assert g[0] == 0 and g[-1] == T and np.all(np.diff(g) > 0)
    np.testing.assert_array_equal(plrf.log_grid(T, 20, after=S.constant(0.5)), plrf.log_grid(T, 20))
    wsd = S.wsd(0.5, 1000, cooldown=0.2)                     # a kink at 800 (the horizon itself adds nothing)
    assert {800, 801, 802} <= set(plrf.log_grid(1000, 20, after=wsd).tolist())
    opt = plrf.optimizers.momentum(step, 0.9)                # an optimizer's schedules, and plain step lists
    np.testing.assert_array_equal(plrf.log_grid(T, 20, after=opt), g)
    np.testing.assert_array_equal(plrf.log_grid(T, 20, after=[7999.5, 12000]), g)
    # the engine's default grid is this one: the loss right after the drop is reported
    c = plrf.expected_loss(make_spectrum([0.2, 1.0], [0.1, 0.3], 0.05), step, steps=T, num=20)
    assert 8001 in c.steps.tolist() and 12001 in c.steps.tolist()


@pytest.mark.parametrize("kw, pattern", [
    (dict(method="sgd"), r"^method must be one of"),
    (dict(batch=0), r"^batch must be an integer"),
    (dict(batch=2.0), r"^batch must be an integer"),
    (dict(steps=0), r"^steps must be an integer"),
    (dict(grid=[0, 5, 3, 10]), r"^grid must be a strictly increasing"),
    (dict(grid=[1, 5, 10]), r"^grid must be a strictly increasing"),
    (dict(grid=[0, 5, 9]), r"^grid must end at steps=10"),
    (dict(seeds=[-1, 2]), r"^seeds must be"),
    (dict(seeds=0), r"^seeds must be"),
    (dict(seeds=[0.5, 1.0]), r"^seeds must be"),
    (dict(seeds=[2 ** 32]), r"^seeds must be"),
    (dict(dtype=jnp.float16), r"^dtype must be"),
    (dict(rng="threefry"), r"^rng must be one of"),
])
def test_simulate_argument_checks(mc_instance, kw, pattern):
    spec = mc_instance.spectrum
    args = dict(steps=10, key=jax.random.key(0))
    args.update(kw)
    with pytest.raises(ValueError, match=pattern):
        plrf.simulate(spec, S.constant(0.1), **args)


def test_method_source_checks(mc_instance):
    spec = mc_instance.spectrum
    with pytest.raises(ValueError, match=r"method='features' needs an Instance"):
        plrf.simulate(spec, S.constant(0.1), steps=5, method="features", key=jax.random.key(0))
    binned = make_spectrum([0.1, 0.5], [0.1, 0.1], 0.01, n=[2, 3])
    with pytest.raises(ValueError, match=r"method='eigen' needs unit multiplicities"):
        plrf.simulate(binned, S.constant(0.1), steps=5, key=jax.random.key(0))
    with pytest.raises(TypeError, match=r"Spectrum or an Instance"):
        plrf.simulate(np.ones(3), S.constant(0.1), steps=5, method="expected")
    with pytest.raises(ValueError, match=r"^lr_scales must be"):
        run(spec, S.constant(0.1), steps=5, lr_scales=[1.0, -1.0])


def test_zero_eigenvalue_mode_is_inert():
    # a zero eigenvalue (w = 0 there) stays at zero excess loss in every method: no 0/0
    spec = make_spectrum([0.0, 0.2, 1.0], [0.0, 0.1, 0.3], 0.05)
    lr = 0.5 * plrf.max_stable_lr(spec)
    ex = plrf.expected_loss(spec, S.constant(lr), steps=50, num=10)
    ref = recursion_reference(spec, np.full(50, lr), 1)
    np.testing.assert_allclose(ex.loss, ref[ex.steps], rtol=1e-12)
    c = plrf.simulate(spec, S.constant(lr), steps=50, num=10, key=jax.random.key(0), seeds=4)
    assert np.all(np.isfinite(c.per_seed)) and c.loss[0] == pytest.approx(spec.P0, rel=1e-14)


@pytest.mark.slow   # clears the jit caches of its worker: every later test there recompiles
def test_eigen_block_drawn_normals_equal_stepwise(mc_instance, monkeypatch):
    # the eigen method draws the normals of up to 64 steps in one call; the numbers are those of step-by-step
    # draws fold_in(key, r), so the curves agree to rounding (1e-12 relative; bit-identical on CPU so far)
    sim = importlib.import_module("plrf.runners")
    spec = mc_instance.spectrum
    lr = 0.5 * plrf.max_stable_lr(spec, 2)
    assert sim.rng_block(2, spec.lam.size) == 64 and sim.rng_block(64, 4096) == 1
    assert sim.rng_block(1, 1024, 64) == 1 and sim.rng_block(1, 255, 4) == 16
    kw = dict(steps=333, batch=2, key=jax.random.key(9), seeds=3, num=25)   # 333: blocks plus remainders
    blocked = plrf.simulate(spec, S.cosine(lr, 333), **kw)
    calls = []
    monkeypatch.setattr(sim, "rng_block", lambda batch, d, width=1: calls.append(d) or 1)
    jax.clear_caches()                                  # an equal schedule would reuse the compiled program
    stepwise = plrf.simulate(spec, S.cosine(lr, 333), **kw)
    assert calls                                                            # the step-by-step path was traced
    np.testing.assert_allclose(blocked.per_seed, stepwise.per_seed, rtol=1e-12)


def test_equal_schedules_reuse_the_compiled_program(mc_instance):
    # schedules are static jit arguments (hashed by identity); plrf.schedules.canonical maps an equal schedule
    # (same factory, same arguments) to the first one seen, so building it again does not recompile
    sim = importlib.import_module("plrf.simulate")
    spec = mc_instance.spectrum
    lr = 0.3 * plrf.max_stable_lr(spec, 1)
    kw = dict(steps=40, num=8, method="expected")   # the program cache is the same for every method
    first = plrf.simulate(spec, S.warmup(S.cosine(lr, 40, floor=0.1 * lr), 5), **kw)
    size = sim._simulate_jit._cache_size()
    again = plrf.simulate(spec, S.warmup(S.cosine(lr, 40, floor=0.1 * lr), 5), **kw)
    assert sim._simulate_jit._cache_size() == size
    np.testing.assert_array_equal(again.per_seed, first.per_seed)
    plrf.simulate(spec, S.warmup(S.cosine(lr, 40, floor=0.2 * lr), 5), **kw)   # another floor: a new program
    assert sim._simulate_jit._cache_size() == size + 1
    # another peak of the same shape (floor in proportion): the scale is traced data, the program is reused,
    # and the numbers are those of the scaled schedule (an independent numpy recursion)
    half = plrf.simulate(spec, S.warmup(S.cosine(0.5 * lr, 40, floor=0.05 * lr), 5), **kw)
    assert sim._simulate_jit._cache_size() == size + 1
    lrs = np.asarray(S.warmup(S.cosine(0.5 * lr, 40, floor=0.05 * lr), 5)(jnp.arange(40)))
    np.testing.assert_allclose(half.loss, recursion_reference(spec, lrs, 1)[half.steps], rtol=1e-11)
    c = plrf.simulate(spec, S.constant(0.5 * lr), **kw)
    plrf.simulate(spec, S.constant(0.25 * lr), **kw)
    assert sim._simulate_jit._cache_size() == size + 2 and c.loss[-1] > 0
    # arrays are keyed by their contents; user closures and compositions with them are never merged
    a, b = S.from_array(np.full(40, lr)), S.from_array(np.r_[np.full(20, lr), np.full(20, lr / 2)])
    assert a.key != b.key and S.canonical(S.from_array(np.full(40, lr))) is S.canonical(a)
    user = lambda r: lr + 0.0 * r  # noqa: E731
    assert S.canonical(user) is user and S.warmup(user, 5).key is None
    assert S.join([a, user], [10]).key is None and S.join([a, b], [10]).key is not None
