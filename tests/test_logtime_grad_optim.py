"""theory.logtime_grad_optim: the replayed log-time solve of the moment system (heavy ball, DANA-decaying, averaging)
equals the forward solve, and its gradient with respect to the schedule's knots equals reverse mode through the
exact recursion (theory.optimal_schedule.exact_loss, independent of the log-time solver) and a central finite
difference of forward solves."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plrf
from theory import logtime_grad_optim as LO
from theory import optimal_schedule as OS


@pytest.fixture(scope="module")
def spec():
    return plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 256, 64), key=jax.random.key(0))


def _exact_of(fam, u, steps):
    """The knot schedule as per-step arrays of the plain optimizer (the exact path's parameterisation)."""
    x = jnp.asarray(OS.step_coords(steps, fam.space))

    def opt(values):
        s = {k: jnp.interp(x, jnp.asarray(u), jnp.asarray(v)) for k, v in values.items()}
        if fam.optimizer == "momentum":
            return plrf.optimizers.momentum(s["eff"] * (1.0 - fam.mu), fam.mu, ema=fam.ema)
        if fam.optimizer == "dana-decaying":
            return plrf.optimizers.dana_decaying(s["g2"], s["g3"], delta=fam.delta, kappa=fam.kappa, ema=fam.ema)
        return plrf.optimizers.sgd(s["lr"], ema=fam.ema)
    return opt


# ---------------------------------------------------------------------------------------------------------
# cheap: the knotted optimizer and the mesh

def test_knotted_optimizer_is_the_interpolated_schedule(spec):
    """At integer steps the knotted heavy ball / DANA systems equal those of the plain optimizers built from the
    per-step interpolated arrays (the exact path's parameterisation), to 1e-15."""
    T = 200
    u = OS.knot_positions(12, "ends", T)
    rng = np.random.default_rng(1)
    for name in ("momentum", "dana-decaying"):
        fam = LO.family(name, spec, space="ends", mu=0.8, alpha=1.0)
        vals = {k: rng.uniform(0.1, 0.5, u.size) / spec.trace for k in fam.names}
        knot = fam.optimizer_of(u, vals, T)
        plain = _exact_of(fam, u, T)(vals)
        for t in (0, 1, 7, 99, 150, 199):
            a, b = knot.system(float(t)), plain.system(float(t))
            for x, y in zip(a, b):
                np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-15, atol=1e-18)


def test_unstable_knotted_baseline_is_refused_not_crashed(spec):
    """A knotted DANA baseline past its stability edge is a ValueError naming the knot values (the baseline tuner
    counts it as +inf); formatting the knots once raised a TypeError that ended `plrf optimal-schedule`."""
    fam = LO.family("dana-decaying", spec, space="ends", alpha=1.0)
    opt = LO.baseline_optimizer(fam, "wsd", 50.0 / spec.trace, 1000, g3=0.125 / spec.trace)
    with pytest.raises(ValueError, match="unstable optimizer .*knot_g2"):
        plrf.expected_loss(spec, opt, steps=1000)
    cap = plrf.max_stable_lr(spec)
    loss, peak = LO.tune_baseline(fam, spec, "wsd", steps=1000, cap=50.0 / spec.trace, g3=0.125 / spec.trace)
    assert np.isfinite(loss) and peak < 50.0 / spec.trace and peak > 1e-3 * cap


def test_mesh_rows_blocks_and_trip_counts():
    """A trace becomes rows padded to a power of two >= 256; each block of BLOCK rows gets the trip-count class of
    its longest first half (8 binary digits per class), and ``bits`` covers the largest."""
    trace = [(0, 0, 16, 0, 0.0, False)] + [(1, 16 + 40 * i, 40, 20, 16.0, True) for i in range(100)]
    trace += [(1, 5000 + 3000 * i, 3000, 1500, 40.0, True) for i in range(200)]
    m = LO.mesh_of(trace)
    assert m.kind.shape == (512,) and m.rows == 301
    assert list(m.kind[:3]) == [0, 1, 1] and np.all(m.kind[301:] == 2)
    assert m.n[0] == 16 and m.h[1] == 40 and m.h1[1] == 20 and m.hp[1] == 16.0 and m.hist[1]
    # rows 0..63 (h1 = 20: 5 digits) -> class 0; rows 64..127 hold h1 = 1500 (11 digits) from row 101 -> class 1
    assert np.all(m.cls[:64] == 0) and np.all(m.cls[64:128] == 1) and m.bits == 16
    assert np.all(m.cls.reshape(-1, LO.BLOCK) == m.cls.reshape(-1, LO.BLOCK)[:, :1])


def test_family_rejects_bad_options(spec):
    with pytest.raises(ValueError, match="optimizer"):
        LO.family("adam", spec)
    with pytest.raises(ValueError, match="ema"):
        LO.family("sgd", spec)
    with pytest.raises(ValueError, match="mu"):
        LO.family("momentum", spec, mu=1.0)


# ---------------------------------------------------------------------------------------------------------
# slow: the replay's value and gradient (one ~20-40 s compilation of its reverse mode per family)

@pytest.mark.slow
@pytest.mark.parametrize("name,ema,tol,fd_tol", [("momentum", None, 2e-6, 1e-4), ("dana-decaying", None, 2e-6, 1e-4),
                                                 ("momentum", "uniform", 2e-4, 1e-3)])
def test_replay_matches_forward_exact_and_finite_difference(spec, name, ema, tol, fd_tol):
    """T = 1e4, 12 knots ('ends') at random values in (0.5, 0.8) x their caps, rtol 1e-4 (the default): the replay
    equals the forward solve to 1e-12 (same functions, same mesh); it equals the exact recursion's loss to 1e-6
    and its gradient the exact recursion's reverse-mode gradient to ``tol`` of the largest entry (measured:
    heavy ball 6e-9 / 4.8e-7, DANA 1.6e-9 / 9.5e-9 (g2), 5.1e-8 (g3), heavy ball read from the uniform average
    4.3e-7 / 5.4e-5),
    and a central finite difference of forward solves (each on its own mesh) at the largest-gradient knot to
    ``fd_tol`` (measured 1.4e-9 heavy ball, 2.6e-8 DANA, 2.3e-4 with the average, whose solver error is larger)."""
    T = 10_000
    fam = LO.family(name, spec, space="ends", mu=0.9, alpha=1.0, ema=ema)
    cp = LO.caps(fam, spec)
    u = OS.knot_positions(12, "ends", T)
    rng = np.random.default_rng(0)
    vals = {k: cp[k] * rng.uniform(0.5, 0.8, u.size) for k in fam.names}
    _, mesh = LO.forward(fam, spec, u, vals, steps=T)
    assert np.sum(mesh.kind == 1) >= 40          # intervals are replayed, not only exact chunks
    L, g, L_fwd = LO.loss_and_grad(fam, spec, u, vals, steps=T)
    assert L == pytest.approx(L_fwd, rel=1e-12)
    Le, ge = jax.value_and_grad(lambda v: OS.exact_loss(spec, _exact_of(fam, u, T)(v), steps=T)[fam.readout])(
        {k: jnp.asarray(v) for k, v in vals.items()})
    assert L == pytest.approx(float(Le), rel=1e-6)
    for k in fam.names:
        ref = np.asarray(ge[k])
        assert np.max(np.abs(g[k] - ref)) < tol * np.max(np.abs(ref)), k
    k = fam.names[0]
    j = int(np.argmax(np.abs(g[k])))
    step = 1e-4 * vals[k][j]

    def fwd(sign):
        v = dict(vals)
        v[k] = vals[k].copy()
        v[k][j] += sign * step
        c, _ = LO.forward(fam, spec, u, v, steps=T)
        return LO.final_of(fam, c)
    fd = (fwd(1) - fwd(-1)) / (2 * step)
    assert fd == pytest.approx(g[k][j], rel=fd_tol)


@pytest.mark.slow
def test_replay_at_1e10_steps(spec):
    """At T = 1e10 the same compiled program (horizon and knots traced) replays the forward solve of a heavy-ball
    WSD-like knot schedule to 1e-12 with a finite, non-zero gradient."""
    T = 10 ** 10
    fam = LO.family("momentum", spec, space="ends", mu=0.9)
    cap = LO.caps(fam, spec)["eff"]
    u = OS.knot_positions(12, "ends", T)
    v = np.where(u < 0.97, 0.8 * cap, 0.8 * cap * np.clip((1 - u) / 0.03, 0.02, 1))
    L, g, L_fwd = LO.loss_and_grad(fam, spec, u, {"eff": v}, steps=T)
    assert L == pytest.approx(L_fwd, rel=1e-12)
    assert np.all(np.isfinite(g["eff"])) and np.any(g["eff"] != 0)


@pytest.mark.slow
def test_cli_logtime_momentum_end_to_end(tmp_path):
    """`plrf optimal-schedule --solver logtime --optimizer momentum` (d = 16, T = 3000, 12 knots): the record of
    the SGD log-time path (per-step lr, eff and mu, knots, the four tuned baselines), an optimum no worse than the
    best tuned baseline (within the 1e-4 tolerance), and its final loss equal to plrf.expected_loss (the exact
    recursion) on the stored per-step arrays within 2e-4."""
    from cli_util import load_results, run_cli
    out = tmp_path / "os"
    assert run_cli(["optimal-schedule", "--solver", "logtime", "--optimizer", "momentum", "--d", 16, "--steps",
                    "3000", "--knots", 12, "--maxiter", 50, "--out", out, "--quiet"]) == 0
    res = load_results(out)
    h = res["horizons"][-1]
    assert set(h["baselines"]) == {"constant", "cosine", "linear", "wsd"}
    assert len(res["lr"]) == 3000 and len(res["eff"]) == 3000 and np.allclose(res["mu"], 0.9)
    np.testing.assert_allclose(res["lr"], np.asarray(res["eff"]) * 0.1, rtol=1e-12)
    assert h["final_loss"] <= min(h["baselines"].values()) * (1 + 1e-4)
    spec = plrf.Problem(1.0, 0.7, 64, 16)
    from theory.deterministic import deterministic_spectrum
    sp = deterministic_spectrum(spec.alpha, spec.beta, 16, v=64)
    ref = plrf.expected_loss(sp, plrf.optimizers.momentum(np.asarray(res["lr"]), 0.9), steps=3000).loss[-1]
    assert h["final_loss"] == pytest.approx(float(ref), rel=2e-4)
    for name in ("optimal_schedule.png", "optimal_schedule_loss.png", "optimal_schedule_laws.png"):
        assert (out / name).exists()
