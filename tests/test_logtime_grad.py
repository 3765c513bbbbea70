"""theory.logtime_grad: the replayed log-time solve equals the forward solve, and its gradient with respect to
the schedule's knots equals reverse mode through the exact recursion (independent implementation)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plrf
from theory import logtime_grad as LG
from theory import optimal_schedule as OS

pytestmark = pytest.mark.slow   # one ~30 s compilation of the replay's reverse mode


@pytest.fixture(scope="module")
def spec():
    return plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 256, 64), key=jax.random.key(0))


@pytest.mark.parametrize("space", ["ends"])
def test_replay_value_and_gradient_match_the_exact_recursion(spec, space):
    """T = 3000, 12 knots at random values in (0.2, 0.9) x 0.9 edge, rtol 1e-6: the replay equals the forward
    solve to 1e-12 (same formulas, same mesh), the exact recursion to 1e-8 (the solver's error), and its
    gradient the exact recursion's reverse-mode gradient to 1e-6 of the largest entry (5e-8 measured)."""
    T = 3000
    cap = 0.9 * plrf.max_stable_lr(spec, 1)
    u = OS.knot_positions(12, space, T)
    vals = cap * np.random.default_rng(0).uniform(0.2, 0.9, u.size)
    P, g, P_fwd = LG.loss_and_grad(spec, u, vals, steps=T, space=space, rtol=1e-6)
    assert P == pytest.approx(P_fwd, rel=1e-12)
    x = jnp.asarray(OS.step_coords(T, space))

    def exact(v):
        return OS.exact_loss(spec, plrf.optimizers.sgd(jnp.interp(x, jnp.asarray(u), v)), steps=T)[0]
    Pe, ge = jax.value_and_grad(exact)(jnp.asarray(vals))
    assert P == pytest.approx(float(Pe), rel=1e-8)
    ge = np.asarray(ge)
    assert np.max(np.abs(g - ge)) < 1e-6 * np.max(np.abs(ge))
    # and at 1e10 steps the same compiled replay runs (horizon traced) and agrees with its forward solve
    u10 = OS.knot_positions(12, space, 10 ** 10)
    P10, g10, P10_fwd = LG.loss_and_grad(spec, u10, np.full(u10.size, 0.5 * cap), steps=10 ** 10, space=space)
    assert P10 == pytest.approx(P10_fwd, rel=1e-6) and np.all(np.isfinite(g10)) and np.any(g10 != 0)


def test_optimize_logtime_matches_the_exact_optimum(spec):
    """T = 2e4, 16 knots ('ends'): the schedule optimised on log-time gradients reaches the loss of the one
    optimised on the exact recursion (theory.optimal_schedule.optimize) within 2e-4 (9e-5 measured at d = 256; rounds of 25 L-BFGS iterations, rtol 1e-4)."""
    T, K = 20000, 16
    fam = OS.ScheduleFamily(spec, steps=T, knots=K, space="ends")
    ref = OS.optimize(fam, maxiter=300).final_loss
    r = LG.optimize_logtime(spec, steps=T, knots=K, space="ends", rounds=4)
    assert r.loss == pytest.approx(ref, rel=2e-4)
    assert r.loss < r.rounds[0][2]
