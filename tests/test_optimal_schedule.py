"""Optimal schedules from the exact theory (:mod:`theory.optimal_schedule`, issue 15).

1. The checkpointed, differentiable exact loss equals ``plrf.expected_loss`` (every read-out, every recorded
   step; rtol 1e-12) for SGD, heavy ball with per-step lr and momentum, DANA-decaying, EMA and uniform averaging.
2. Its gradient with respect to the free schedule parameters equals central finite differences (relative
   1e-6 on a random direction and on single knots), float64, for SGD (t/T knots), SGD with uniform averaging
   (log-t knots), heavy ball (lr and momentum jointly), DANA (g2 and g3) and the anytime objective.
3. Memory: the compiled value-and-gradient program at T = 1e6 steps, d = 1024 modes needs < 200 MB of
   temporaries (storing every step's carry would need T d 8 bytes = 8 GB).
4. One mode: the greedy schedule of the module docstring is optimal (independent check: scipy minimisation of
   a plain numpy recursion over every per-step lr, T = 6) and the L-BFGS optimiser on the exact loss recovers
   it with one knot per step (relative 1e-5 per step; final loss to 1e-12).
5. On a PLRF spectrum the optimised schedule beats every tuned baseline (constant, cosine, linear, WSD with the
   cooldown fraction tuned), all losses re-evaluated by ``plrf.expected_loss``.
6. The heavy-ball bound (effective step ``eff = lr/(1 - mu)`` below SGD's edge) keeps the frozen map stable
   (``plrf.stability.system_edges``) for mu in [0, 0.99]; with ``momentum_cap='own'`` the interpolated edge
   ``E(mu)`` equals the bisection edge to 0.5% at random mu, every step of a random schedule has a stable frozen
   map, gradients match central differences, and at B = 16 the optimum beats the effective-step-capped one.
"""
import jax
import numpy as np
import pytest

import plrf
from plrf import optimizers as O
from plrf.stability import system_edges
from theory.optimal_schedule import (ScheduleFamily, exact_loss, fit_shape, optimize, single_mode_optimal,
                                     tune_baselines)


def _spectrum(d=16, alpha=1.0, beta=0.7):
    k = np.arange(1, d + 1, dtype=np.float64)
    lam = k ** (-2 * alpha)
    return plrf.make_spectrum(lam, lam * k ** (-2 * beta), 1e-3)


SPEC = _spectrum()
T = 120


@pytest.mark.parametrize("case", [pytest.param("sgd", marks=pytest.mark.slow), "sgd-ema", "momentum",
                                  pytest.param("dana", marks=pytest.mark.slow)])
def test_exact_loss_equals_expected_loss(case):
    t = np.arange(T)
    lr = 0.5 * (1 + np.cos(np.pi * t / T)) / 2
    mu = np.linspace(0.3, 0.9, T)
    opt = {"sgd": lambda: O.sgd(lr), "sgd-ema": lambda: O.sgd(lr, ema="uniform"),
           "momentum": lambda: O.momentum(lr * (1 - mu), mu, ema=0.1),
           "dana": lambda: O.dana_decaying(0.5 * lr, 0.05, delta=8.0, kappa=0.5)}[case]()
    ref = plrf.expected_loss(SPEC, opt, steps=T, num=12)
    P, Ps = exact_loss(SPEC, opt, steps=T, record=ref.steps[1:], block=11)   # 11 does not divide 120: padding
    np.testing.assert_allclose(float(P[0]), ref.loss[-1], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(Ps[:, 0]), ref.loss[1:], rtol=1e-12)
    if ref.readouts:
        np.testing.assert_allclose(np.asarray(Ps[:, 1]), ref.readouts["average"][0][1:], rtol=1e-12)


GRAD_CASES = {
    "sgd": dict(optimizer="sgd"),
    "sgd-ema-log": dict(optimizer="sgd", ema="uniform", space="log"),
    "momentum": dict(optimizer="momentum"),
    "dana": dict(optimizer="dana-decaying", alpha=1.0),
    "anytime": dict(optimizer="sgd", horizons=[10, 40, T], weights=[1.0, 2.0, 3.0]),
}


@pytest.mark.parametrize("case", ["sgd", "momentum",
                                  pytest.param("sgd-ema-log", marks=pytest.mark.slow),
                                  pytest.param("dana", marks=pytest.mark.slow),
                                  pytest.param("anytime", marks=pytest.mark.slow)])
def test_gradient_matches_central_differences(case):
    fam = ScheduleFamily(SPEC, steps=T, knots=64, **GRAD_CASES[case])
    rng = np.random.default_rng(1)
    z = fam.params_from_knots(lr=0.5 * fam.cap, g2=0.5 * fam.cap, mu=0.5 * fam.mu_max, g3=0.5 * fam.g3_max)
    z = z + 0.3 * rng.standard_normal(fam.n_params)
    v, g = fam.value_and_grad(z)
    f = jax.jit(fam.objective)
    h = 1e-5
    d = rng.standard_normal(fam.n_params)
    fd = (float(f(z + h * d)) - float(f(z - h * d))) / (2 * h)
    assert abs(fd - g @ d) <= 1e-6 * abs(g @ d)
    for i in (1, fam.knots // 2, fam.n_params - 2):   # single knots (the last lr knot and one mu / g3 knot)
        e = np.zeros_like(z)
        e[i] = h
        fdi = (float(f(z + e)) - float(f(z - e))) / (2 * h)
        assert abs(fdi - g[i]) <= 1e-6 * abs(g[i]) + 1e-12 * np.max(np.abs(g)), (i, fdi, g[i])
    assert np.isclose(v, float(f(z)), rtol=1e-13)


def test_checkpointed_memory_at_a_million_steps():
    spec = _spectrum(d=1024)
    fam = ScheduleFamily(spec, steps=10 ** 6, knots=64)
    z = fam.params_from_knots(lr=0.5 * fam.cap)
    compiled = jax.jit(jax.value_and_grad(fam.objective)).lower(z).compile()
    mem = compiled.memory_analysis()
    assert mem.temp_size_in_bytes < 200e6, mem.temp_size_in_bytes   # every carry stored: 8.2e9 bytes


def _numpy_final(lrs, lam, w, P_star, B):
    e = w
    for eta in lrs:
        e = e - 2 * eta * lam * e + eta ** 2 * lam ** 2 * ((B + 2) * e + P_star) / B
    return P_star + e


@pytest.mark.parametrize("B,P_star", [(1, 0.05), (3, 0.2), (1, 0.0)])
def test_single_mode_greedy_is_optimal(B, P_star):
    """Independent of the dynamic-programming argument: minimise the plain recursion over all 6 lrs."""
    from scipy.optimize import minimize
    lam, w, steps = 2.0, 1.0, 6
    eta, e = single_mode_optimal(lam, w, P_star, steps, B)
    best = min((minimize(lambda x: _numpy_final(x, lam, w, P_star, B), x0, method="Nelder-Mead",
                         options=dict(xatol=1e-12, fatol=1e-15, maxiter=20000, maxfev=20000))
                for x0 in (np.full(steps, 0.05), np.full(steps, 0.3), np.linspace(0.4, 0.01, steps))),
               key=lambda r: r.fun)
    assert np.isclose(P_star + e[-1], _numpy_final(eta, lam, w, P_star, B), rtol=1e-14)
    assert P_star + e[-1] <= best.fun * (1 + 1e-12)
    np.testing.assert_allclose(best.x, eta, rtol=2e-3)   # Nelder-Mead's own accuracy on a flat minimum
    if P_star == 0:
        np.testing.assert_allclose(eta, B / ((B + 2) * lam), rtol=1e-14)


def test_optimizer_recovers_single_mode_closed_form():
    lam, w, P_star, B, steps = 1.0, 1.0, 0.01, 4, 64
    spec = plrf.make_spectrum([lam], [w], P_star)
    fam = ScheduleFamily(spec, steps=steps, knots=steps, batch=B)      # one knot per step
    res = optimize(fam, maxiter=1000)
    eta, e = single_mode_optimal(lam, w, P_star, steps, B)
    np.testing.assert_allclose(res.arrays["lr"], eta, rtol=1e-5)
    np.testing.assert_allclose(res.final_loss, P_star + e[-1], rtol=1e-12)
    # the closed form is 1/t-like at the end: eta_t -> 1/(lam t) once e_t << P*
    assert 0.4 < eta[-1] * lam * steps < 2.5


@pytest.mark.slow
def test_optimizer_recovers_single_mode_closed_form_batch_one():
    lam, w, P_star, steps = 1.0, 1.0, 0.01, 64
    spec = plrf.make_spectrum([lam], [w], P_star)
    fam = ScheduleFamily(spec, steps=steps, knots=steps, batch=1)
    res = optimize(fam, maxiter=1000)
    eta, e = single_mode_optimal(lam, w, P_star, steps, 1)
    np.testing.assert_allclose(res.arrays["lr"], eta, rtol=1e-5)
    np.testing.assert_allclose(res.final_loss, P_star + e[-1], rtol=1e-12)


def test_optimized_schedule_beats_tuned_baselines():
    from theory.deterministic import deterministic_spectrum
    spec = deterministic_spectrum(1.0, 0.7, 32)
    fam = ScheduleFamily(spec, steps=300, knots=64)
    base = tune_baselines(fam, cooldowns=(0.1, 0.2, 0.4))
    res = optimize(fam, maxiter=400)
    best = min(b.final_loss for b in base.values())
    assert res.final_loss < best * (1 - 5e-3), (res.final_loss, {k: b.final_loss for k, b in base.items()})
    # the re-evaluated losses agree with the optimiser's internal ones (two implementations of one recursion)
    np.testing.assert_allclose(res.final_loss, np.exp(res.objective), rtol=1e-10)
    assert np.all(res.arrays["lr"] > 0) and np.all(res.arrays["lr"] <= fam.cap * (1 + 1e-12))
    shape = fit_shape(res.arrays["lr"])
    assert shape.delta > 0.3 and shape.peak < fam.cap


def test_heavy_ball_bound_is_stable():
    spec = _spectrum(d=64)
    fam = ScheduleFamily(spec, optimizer="momentum", steps=10, frac=0.99)
    for mu in (0.0, 0.5, 0.9, 0.99):
        sysm = O.momentum(fam.cap * (1 - mu), mu).system(0.0)
        radius, kn = system_edges(spec, sysm, 1)
        _, kn_sgd = system_edges(spec, O.sgd(fam.cap).system(0.0), 1)
        assert radius < 1 and kn < 1, (mu, radius, kn)
        assert kn <= kn_sgd * (1 + 1e-9), (mu, kn, kn_sgd)


SPEC64 = _spectrum(d=64)


@pytest.fixture(scope="module")
def own16():
    """Heavy ball bounded by its own edge at B = 16 (the edge table is built once: 48 bisections)."""
    return ScheduleFamily(SPEC64, optimizer="momentum", steps=T, batch=16, knots=12, momentum_cap="own")


def test_own_momentum_edge_table_and_stability(own16):
    from theory.hparam_laws import max_lr
    fam = own16
    rng = np.random.default_rng(3)
    for mu in np.concatenate([rng.uniform(0, 0.99, 4), [0.0, 0.99]]):
        ref = max_lr(SPEC64, "momentum", 16, mu=float(mu)) if mu > 0 else plrf.max_stable_lr(SPEC64, 16)
        assert abs(float(fam.lr_edge(mu)) / ref - 1) < 5e-3, (mu, float(fam.lr_edge(mu)), ref)
    # at B = 16 the own edge allows effective steps far past SGD's edge (the room momentum needs)
    assert fam.eff_cap(0.9) > 3 * fam.cap
    z = rng.standard_normal(fam.n_params) * 2.0
    a = {k: np.asarray(v) for k, v in fam.per_step(z).items()}
    np.testing.assert_allclose(a["eff"], a["lr"] / (1 - a["mu"]), rtol=1e-12)
    assert np.all(a["mu"] < fam.mu_max) and np.all(a["lr"] > 0)
    for t in range(0, T, 7):    # every probed step: frozen map stable (the table's interpolation is below 0.5%)
        radius, kn = system_edges(SPEC64, O.momentum(a["lr"][t], a["mu"][t]).system(0.0), 16)
        assert radius < 1 and kn < 1, (t, a["lr"][t], a["mu"][t], radius, kn)
    # knots -> parameters -> knots
    kv = {k: np.asarray(v) for k, v in fam.knot_values(z).items()}
    np.testing.assert_allclose(fam.params_from_knots(**kv), z, rtol=1e-8, atol=1e-8)


def test_own_momentum_gradient(own16):
    fam = own16
    rng = np.random.default_rng(4)
    z = fam.params_from_knots(lr=0.5 * fam.cap, mu=0.5 * fam.mu_max) + 0.3 * rng.standard_normal(fam.n_params)
    v, g = fam.value_and_grad(z)
    f = jax.jit(fam.objective)
    h, d = 1e-5, rng.standard_normal(fam.n_params)
    fd = (float(f(z + h * d)) - float(f(z - h * d))) / (2 * h)
    assert abs(fd - g @ d) <= 1e-6 * abs(g @ d), (fd, g @ d)


@pytest.mark.slow   # ~10 s: two L-BFGS runs
def test_own_momentum_beats_effective_cap_at_batch_16(own16):
    fam = own16
    own = optimize(fam, maxiter=150)
    eff = optimize(ScheduleFamily(SPEC64, optimizer="momentum", steps=T, batch=16, knots=12), maxiter=150)
    ref = plrf.expected_loss(SPEC64, O.momentum(own.arrays["lr"], own.arrays["mu"]), steps=T, batch=16, num=8)
    np.testing.assert_allclose(own.final_loss, ref.loss[-1], rtol=1e-12)
    # measured: 2.8x lower excess loss P - P* (1.4e-4 against 3.9e-4 over P* = 1e-3)
    P_star = float(SPEC64.P_star)
    assert own.final_loss - P_star < 0.5 * (eff.final_loss - P_star), (own.final_loss, eff.final_loss)
    assert np.max(own.arrays["eff"]) > 1.5 * fam.cap


# ---------------------------------------------------------------------------------------------------------
# the command line: plrf optimal-schedule

@pytest.mark.slow   # ~30-60 s: two horizons (three compiled programs each), the horizon-free tuning, figures, twice
def test_cli_tiny_run_resume_and_replot(tmp_path):
    from cli_util import is_png, load_results, run_cli
    from theory.deterministic import deterministic_spectrum
    out = tmp_path / "opt"
    argv = ["optimal-schedule", "--d", 16, "--steps", "60,120", "--knots", 8, "--space", "linear", "--maxiter", 40,
            "--horizon-free", "--out", out, "--quiet"]
    assert run_cli(argv) == 0
    res = load_results(out)
    assert res["status"] == "complete" and res["config"]["command"] == "optimal-schedule"
    assert res["steps"] == [60, 120] and len(res["horizons"]) == 2
    lr = np.asarray(res["lr"])
    assert lr.shape == (120,) and np.all(lr > 0) and np.all(lr <= res["cap"] * (1 + 1e-12))
    assert len(res["knots"]["lr"]) == 8 and set(res["baselines"]) == {"constant", "cosine", "linear", "wsd"}
    # independent re-evaluation of the stored schedule on the same (deterministic) spectrum
    spec = deterministic_spectrum(1.0, 0.7, 16, v=64)
    ref = plrf.expected_loss(spec, O.sgd(lr), steps=120, num=10)
    np.testing.assert_allclose(res["final_loss"], ref.loss[-1], rtol=1e-12)
    assert res["final_loss"] < min(res["baselines"].values())
    assert {"peak", "delta", "decay_fraction"} <= set(res["shape"])
    assert "peak_slope" in res["laws"] and res["predictions"]["li_nu_expr"] == "beta/(alpha + beta)"
    hf = res["horizon_free"]
    assert set(hf) == {"power+average", "power", "constant+average", "power+tail-average", "constant+tail-average"}
    for r in hf.values():      # ratios against the per-horizon optima just computed
        np.testing.assert_allclose(np.asarray(r["losses"]) / [h["final_loss"] for h in res["horizons"]], r["ratio"],
                                   rtol=1e-12)
    for name in ("optimal_schedule.png", "optimal_schedule_loss.png", "optimal_schedule_laws.png"):
        assert is_png(out / name)
        (out / name).unlink()
    # resumed from the cells: the same numbers, no recomputation
    assert run_cli(argv) == 0
    assert load_results(out)["final_loss"] == res["final_loss"]
    (out / "optimal_schedule.png").unlink()
    assert run_cli(["plot", out, "--quiet"]) == 0 and is_png(out / "optimal_schedule.png")


@pytest.mark.parametrize("argv,needle", [
    (["--frac", "1.5"], "--frac"),
    (["--steps", "1e7"], "--steps"),            # above 1e6 needs --solver logtime
    (["--steps", "100", "--knots", "500"], "--knots"),
    (["--W-file", "missing.npy"], "--W-file"),
    (["--alpha", "0.2", "--beta", "0.1"], "--beta"),
    (["--steps", "2e10", "--solver", "logtime"], "--steps"),
    (["--solver", "logtime", "--objective", "anytime"], "--objective"),
    (["--solver", "logtime", "--optimizer", "momentum", "--objective", "anytime"], "--objective"),
    (["--solver", "logtime", "--optimizer", "momentum", "--momentum", "1"], "--momentum"),
    (["--solver", "fast"], "--solver"),
    (["--horizon-free", "--optimizer", "momentum"], "--horizon-free"),
    (["--horizon-free", "--solver", "logtime"], "--horizon-free"),
    (["--momentum-cap", "own"], "--momentum-cap"),                        # needs --optimizer momentum
    (["--momentum-cap", "own", "--optimizer", "momentum", "--solver", "logtime"], "--momentum-cap"),
])
def test_cli_bad_option_exits_2_naming_it(tmp_path, capsys, argv, needle):
    from cli_util import run_cli
    out = tmp_path / "bad"
    with pytest.raises(SystemExit) as e:
        run_cli(["optimal-schedule", "--d", 16, *argv, "--out", out, "--quiet"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert not (out / "results.json").exists()


# ---------------------------------------------------------------------------------------------------------
# Monte Carlo: eigen SGD under the optimised schedule

@pytest.mark.slow   # ~10 s: an L-BFGS run and the eigen simulator's compilation
def test_eigen_sgd_under_optimal_schedule_matches_prediction():
    import jax
    spec = plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 64, 16), key=jax.random.key(3))   # unit multiplicities
    steps = 200
    fam = ScheduleFamily(spec, steps=steps, knots=16)
    res = optimize(fam, maxiter=80)
    grid = plrf.log_grid(steps, 16)
    exact = plrf.expected_loss(spec, O.sgd(res.arrays["lr"]), steps=steps, grid=grid)
    mc = plrf.simulate(spec, O.sgd(res.arrays["lr"]), steps=steps, method="eigen", key=jax.random.key(7),
                       seeds=400, grid=grid)
    z = (mc.loss[1:] - exact.loss[1:]) / mc.stderr[1:]
    assert np.all(np.abs(z) < 4), z
    assert np.isclose(exact.loss[-1], res.final_loss, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# long horizons: fit_shape on samples, unresolved horizons, the log-time twin of solve_horizon

def test_fit_shape_on_samples_equals_per_step_fit():
    """The shape fitted on the samples a long log-time horizon stores (theory.logtime_grad.sample_steps) equals
    the per-step fit of the same schedule: end exponent to 2% (the window's points are weighted differently),
    peak exactly, decay fractions to the sample spacing near the 50%/90% crossings."""
    from theory.logtime_grad import sample_steps
    steps = 200_000
    t = np.arange(steps, dtype=float)
    s = 1 - t / steps
    lr = 0.3 * np.minimum(1.0, (s / 0.4) ** 1.7) * np.minimum(1.0, (t + 1) / 50)   # warmup, stable, power decay
    full = fit_shape(lr)
    ts = sample_steps(steps)
    part = fit_shape(np.interp(ts, t, lr), t=ts, steps=steps)
    assert abs(full.delta - 1.7) < 0.02 and abs(part.delta - full.delta) < 0.02 * full.delta
    assert part.peak == full.peak
    spacing = steps / (ts.size / 2)
    for k in ("decay_fraction", "decay_fraction_90"):
        assert abs(getattr(part, k) - getattr(full, k)) <= spacing / steps, k
    with pytest.raises(ValueError, match="steps="):
        fit_shape(lr[:10], t=ts[:10])


def test_fit_laws_leave_out_unresolved_horizons():
    """A horizon marked resolved=False enters the tables but not the slopes (planted power laws)."""
    from theory.optimal_schedule import fit_laws
    T = np.array([1e3, 1e4, 1e5, 1e6])
    recs = [dict(steps=int(t), final_loss=1e-3 + 2.0 * t ** -0.8, P_star=1e-3, edge=1.0,
                 shape=dict(peak=0.5 * t ** -0.1, delta=2.0, delta_err=0.1, decay_fraction=0.1, decay_fraction_90=0.2),
                 resolved=bool(t < 1e6)) for t in T]
    recs[-1]["final_loss"] = 5e-3          # a floor artefact that would spoil the fit
    laws = fit_laws(recs)
    assert laws["resolved"] == [True, True, True, False]
    np.testing.assert_allclose(laws["excess_slope"], -0.8, rtol=1e-10)
    np.testing.assert_allclose(laws["peak_slope"], -0.1, rtol=1e-10)
    np.testing.assert_allclose(laws["excess_slope_last"], -0.8, rtol=1e-10)


@pytest.mark.slow   # ~60-120 s: the log-time replay's compilation and ~200 forward log-time solves
def test_logtime_horizon_matches_exact_optimiser():
    """theory.logtime_grad.solve_horizon_logtime against the exact-recursion optimiser at T = 3000 (d = 16): the
    optimum's loss agrees to 0.3% (different knot grids and stopping rules), the log-time losses of its schedule and
    of each tuned baseline equal plrf.expected_loss of the same per-step schedule (rel. 1e-3: the solver's
    tolerance), and the optimum beats every tuned baseline."""
    from theory.logtime_grad import shape_schedule, solve_horizon_logtime
    steps = 3000
    rec = solve_horizon_logtime(SPEC, steps=steps, knots=16, maxiter=25, rounds=6, cooldowns=(0.1, 0.3))
    ex = optimize(ScheduleFamily(SPEC, steps=steps, knots=16, space="ends"), maxiter=200)
    assert abs(rec["final_loss"] / ex.final_loss - 1) < 3e-3, (rec["final_loss"], ex.final_loss)
    ref = plrf.expected_loss(SPEC, O.sgd(rec["arrays"]["lr"]), steps=steps, num=10).loss[-1]
    np.testing.assert_allclose(rec["final_loss"], ref, rtol=1e-3)
    for name, b in rec["baselines"].items():
        lr = shape_schedule(name, b["peak"], steps, b["cooldown"] or 0.2).host(np.arange(steps))
        np.testing.assert_allclose(b["final_loss"], plrf.expected_loss(SPEC, O.sgd(lr), steps=steps, num=10).loss[-1],
                                   rtol=1e-3, err_msg=name)
        assert rec["final_loss"] < b["final_loss"], name
    assert rec["resolved"] and rec["sample_lr"].size == rec["sample_steps"].size
    np.testing.assert_allclose(rec["curve_loss"][-1], rec["final_loss"], rtol=1e-12)


def _sgd_uniform_average_numpy(spec, lr, batch=1, c=1.0):
    """Independent per-mode second moments of SGD with an average (numpy, written from the definitions:
    e = theta - theta*, a = avg - theta*, g = lam e + xi with E xi^2 = (lam P + lam^2 E e^2)/B, a_{t+1} =
    (1 - rho_t) a_t + rho_t e_{t+1}, rho_t = c/(t+c); c = 1: the uniform average): the losses of the iterate and
    of the average after each step."""
    lam, n, w, P_star = (np.asarray(x, float) for x in (spec.lam, spec.n, spec.w, spec.P_star))
    ee = w / lam            # E e^2 at theta_0 = 0
    ea, aa = ee.copy(), ee.copy()
    Pi, Pa = [], []
    for t, eta in enumerate(lr):
        P = float(np.sum(n * lam * ee)) + P_star
        q = 1 - eta * lam
        ee_new = q * q * ee + eta * eta * (lam * P + lam * lam * ee) / batch
        ea_old = q * ea                              # E[e' a] (the noise is independent of a)
        rho = c / (t + c)
        aa = (1 - rho) ** 2 * aa + 2 * rho * (1 - rho) * ea_old + rho * rho * ee_new
        ea = (1 - rho) * ea_old + rho * ee_new
        ee = ee_new
        Pi.append(float(np.sum(n * lam * ee)) + P_star)
        Pa.append(float(np.sum(n * lam * aa)) + P_star)
    return np.array(Pi), np.array(Pa)


@pytest.mark.slow   # ~30-60 s: three L-BFGS runs through the differentiable exact loss (one compilation each)
def test_horizon_free_schedules_against_numpy_recursion():
    """theory.optimal_schedule.horizon_free: the reported losses of the tuned power-law schedule (average or last
    iterate) equal an independent numpy recursion (rel. 1e-10), and the tuning is a local optimum of the stated
    objective (no +-5% move of the peak or +-0.05 of gamma inside the bounds lowers it by more than 1e-9)."""
    from theory.optimal_schedule import GAMMA_MAX, horizon_free
    horizons, targets = [30, 100, 300], [2e-2, 1e-2, 5e-3]
    cap = 0.9 * plrf.max_stable_lr(SPEC, 1)
    for variant, col in (("power+average", 1), ("power", 0), ("constant+average", 1), ("power+tail-average", 1)):
        r = horizon_free(SPEC, horizons, targets, variant=variant)
        c = r["c"] if r["c"] is not None else 1.0

        def objective(peak, gamma):
            lr = peak * (1 + np.arange(300) / r["t0"]) ** -gamma
            P = _sgd_uniform_average_numpy(SPEC, lr, c=c)[col]
            return float(np.mean(np.log(P[np.asarray(horizons) - 1] / targets))), P
        best, P = objective(r["peak"], r["gamma"])
        np.testing.assert_allclose(r["losses"], P[np.asarray(horizons) - 1], rtol=1e-10, err_msg=variant)
        np.testing.assert_allclose(r["ratio"], np.asarray(r["losses"]) / targets, rtol=1e-12)
        assert 0 < r["peak"] <= cap * (1 + 1e-12) and 0 <= r["gamma"] <= GAMMA_MAX and 1 <= r["t0"] <= 300 * (1 + 1e-9)
        assert (r["c"] is None) == (variant != "power+tail-average") and (r["c"] is None or 1 <= r["c"] <= 1000)
        if variant == "constant+average":
            assert r["gamma"] == 0.0
        moves = [(r["peak"] * f, r["gamma"]) for f in (0.95, 1.05) if r["peak"] * f <= cap]
        if variant != "constant+average":
            moves += [(r["peak"], g) for g in (r["gamma"] - 0.05, r["gamma"] + 0.05) if 0 <= g <= GAMMA_MAX]
        for pk, g in moves:
            assert objective(pk, g)[0] >= best - 1e-9, (variant, pk, g)


def test_momentum_schedule_comparison_fit_and_errors(tmp_path, capsys):
    """experiments.momentum_schedule: the excess exponent of a planted P = P* + c T^-0.7 is -0.7 (1e-12); a missing
    run directory is a usage error naming it (exit 2), not a traceback."""
    from experiments.momentum_schedule import excess_fit, main
    T = np.array([1e2, 1e3, 1e4, 1e5])
    s, se = excess_fit(T, 1e-3 + 2.0 * T ** -0.7, 1e-3)
    assert abs(s + 0.7) < 1e-12 and se < 1e-10
    with pytest.raises(SystemExit) as e:
        main([f"SGD={tmp_path / 'nothing'}", "--out", str(tmp_path / "f.png")])
    assert e.value.code == 2 and "nothing" in capsys.readouterr().err


def test_dana_frozen_stability_is_enforced():
    """DANA's g3 cap does not bound the joint (g2, g3) edge: with g2 cooled to ~0 at the end and g3 held, the frozen
    map at late steps is past its stochastic edge (kernel norm 1.23 at t = 1e4, d = 4096; checked here at d = 256,
    T = 1e5), so ``frozen_stable`` rejects it (the optimiser treats it as +inf) and accepts the same g3 with g2 held;
    the baselines shape g3 with g2 (a cooled WSD stays stable)."""
    from theory.deterministic import deterministic_spectrum
    from theory.optimal_schedule import _baseline_arrays, unit_shape
    spec = deterministic_spectrum(1.0, 0.7, 256)
    fam = ScheduleFamily(spec, optimizer="dana-decaying", steps=100_000, knots=16, alpha=1.0)
    g2 = np.full(fam.knots, 0.5 * fam.cap)
    cooled = g2.copy()
    cooled[-3:] = 1e-9 * fam.cap
    g3 = 0.5 * fam.g3_max
    assert fam.frozen_stable(fam.params_from_knots(g2=g2, g3=g3))
    assert not fam.frozen_stable(fam.params_from_knots(g2=cooled, g3=g3))
    shape = unit_shape("wsd", fam.steps, 0.1)
    a = _baseline_arrays(fam, shape, 0.5 * fam.cap, 0.9, g3)
    np.testing.assert_allclose(a["g3"], g3 * shape, rtol=0)
    from plrf.stability import check_system
    check_system(spec, fam.build(a), 1, np.array([0, 10, 1000, 50_000, 99_999]))   # raises if unstable
    with pytest.raises(ValueError, match="unstable optimizer dana-decaying"):   # g2 cooled, g3 held: past an edge
        check_system(spec, fam.build({"g2": a["g2"], "g3": np.full(fam.steps, g3)}), 1, np.array([99_999]))


@pytest.mark.slow   # ~20-40 s: the edge table, one horizon with its baselines, the figures
def test_cli_momentum_cap_own(tmp_path):
    """`--momentum-cap own` end to end: the config records it, the stored per-step schedule re-evaluates to the
    reported loss with an independent call of plrf.expected_loss, every step's lr is below 0.9x heavy ball's own
    edge at that mu (bisection, 1% slack for the interpolated table), and the log-scale schedule figure is drawn."""
    from cli_util import is_png, load_results, run_cli
    from theory.deterministic import deterministic_spectrum
    from theory.hparam_laws import max_lr
    out = tmp_path / "own"
    assert run_cli(["optimal-schedule", "--d", 16, "--batch", 16, "--steps", 60, "--knots", 8, "--maxiter", 30,
                    "--optimizer", "momentum", "--momentum-cap", "own", "--out", out, "--quiet"]) == 0
    res = load_results(out)
    assert res["config"]["momentum_cap"] == "own"
    lr, mu = np.asarray(res["lr"]), np.asarray(res["mu"])
    spec = deterministic_spectrum(1.0, 0.7, 16, v=64)
    ref = plrf.expected_loss(spec, O.momentum(lr, mu), steps=60, batch=16, num=8)
    np.testing.assert_allclose(res["final_loss"], ref.loss[-1], rtol=1e-12)
    for t in (0, 20, 40, 59):
        edge = max_lr(spec, "momentum", 16, mu=float(mu[t])) if mu[t] > 0 else plrf.max_stable_lr(spec, 16)
        assert lr[t] <= 0.9 * edge * 1.01, (t, lr[t], mu[t], edge)
    assert np.max(np.asarray(res["eff"])) > res["cap"]      # past SGD's cap: the room the own edge gives at B = 16
    assert is_png(out / "optimal_schedule.png")
