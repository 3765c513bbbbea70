"""Gradients of the exact expected loss with respect to the learning-rate schedule at horizons up to 1e10 steps,
through the log-time solver (plain SGD), and schedule optimisation on them (issue 15, item 1).

The log-time solver (:mod:`theory.logtime`) advances the per-mode recursion over a few hundred adaptive intervals
whatever the horizon. Its step-size control is host-side (step doubling), so it is not differentiable as such.
Here a forward solve records its accepted steps (``solve_logtime(..., trace=...)``: exact chunks and
two-half intervals with their lengths and previous-node spacing), and :func:`replay` re-executes exactly those
steps as one ``jax.lax.scan`` with the schedule's knot values traced: the same formulas
(:func:`theory.logtime._interval` and the exact per-step recursion), so its value equals the forward solve's
(tested to 1e-12) and ``jax.grad`` of it is the exact derivative of the discretised solution on that mesh. The mesh
itself depends on the schedule only through the error control, so this gradient differs from the derivative of
the exact recursion by the solver's discretisation error (relative tolerance ``rtol``, 1e-4 by default):
measured against reverse mode through the exact recursion (:func:`theory.optimal_schedule.exact_loss`) at
``T = 1e4``-``1e5`` in the tests.

Schedules: piecewise-linear in a step coordinate through ``K`` knots (:func:`theory.optimal_schedule.knot_positions`,
``space`` = ``linear`` (``t/(T-1)``), ``log`` (``log(1+t)/log T``) or ``ends`` (``t/(T-1)`` with knots log-spaced
towards both ends, so a warmup and the end shape are resolved at ``T = 1e10``)); knot values bounded by
``cap sigmoid(z)`` with ``cap = frac x plrf.max_stable_lr`` as in :class:`theory.optimal_schedule.ScheduleFamily`.

:func:`optimize_logtime` alternates a forward solve (a new mesh) with L-BFGS-B (scipy) on the replay at that fixed
mesh (a smooth function of the knots), ``rounds`` times; the reported loss is the forward solve's at the optimum.
"""
from __future__ import annotations

import math
import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from plrf.spectrum import Spectrum

from .logtime import H_EXACT, RTOL, _extrap, _interval, _node_steps, solve_logtime
from .optimal_schedule import SPACES, _inv_sigmoid, knot_positions

jax.config.update("jax_enable_x64", True)

PAD = 256  # replay lengths are padded to a multiple of this (one compilation serves many meshes)


def coord(s, steps: int, space: str):
    """The step coordinate in [0, 1] of (float) steps ``s`` (jnp): ``s/(T-1)`` or ``log(1+s)/log T``."""
    xp = np if isinstance(s, np.ndarray) and not isinstance(steps, jax.Array) else jnp
    if space in ("linear", "ends"):
        return s / xp.maximum(steps - 1.0, 1.0)
    if space == "log":
        return xp.log1p(s) / xp.log(steps * 1.0)
    raise ValueError(f"space must be one of {SPACES}, got {space!r}")


def knot_steps(u, steps: int, space: str) -> np.ndarray:
    """The (float) steps at the knot coordinates ``u`` (inverse of :func:`coord`)."""
    u = np.asarray(u, np.float64)
    return u * max(steps - 1, 1) if space in ("linear", "ends") else np.expm1(u * math.log(steps))


def knot_schedule(u, values, steps: int, space: str):
    """The schedule closure ``step -> lr``: piecewise linear through ``(u_j, values_j)`` in :func:`coord`
    (traceable: ``values`` may be traced). With concrete values it carries ``.host``, the same function in numpy,
    which the forward solver calls instead of compiling each new schedule."""
    uj, vj = jnp.asarray(u, jnp.float64), jnp.asarray(values, jnp.float64)

    def lr(s):
        return jnp.interp(coord(jnp.asarray(s, jnp.float64), steps, space), uj, vj)
    if not isinstance(values, jax.core.Tracer):
        un, vn = np.asarray(u, np.float64), np.asarray(values, np.float64)
        lr.host = lambda s: np.interp(np.asarray(coord(np.asarray(s, np.float64), steps, space)), un, vn)
    return lr


class Mesh(NamedTuple):
    """A forward solve's accepted steps as arrays (``n`` rows, padded with ``kind = 2`` no-ops)."""
    kind: np.ndarray        # 0 exact chunk, 1 two-half interval, 2 padding
    r_new: np.ndarray       # step reached after the row
    exact_steps: np.ndarray  # (n, H_EXACT) steps of an exact chunk
    exact_mask: np.ndarray   # (n, H_EXACT) which of them are taken
    node_steps: np.ndarray   # (n, 13) lr nodes of an interval (theory.logtime._node_steps)
    h: np.ndarray
    h1: np.ndarray
    hp: np.ndarray
    hist: np.ndarray
    rows: int               # real rows (before padding)


def mesh_of(trace) -> Mesh:
    n = len(trace)
    m = max(PAD, -(-n // PAD) * PAD)
    kind = np.full(m, 2, np.int32)
    r_new = np.zeros(m)
    ex = np.zeros((m, H_EXACT))
    exm = np.zeros((m, H_EXACT), bool)
    nodes = np.zeros((m, 13))
    # (non-interval rows: h = 4, h1 = 2 keep the unused node extrapolation finite, so its zero cotangent stays 0)
    h, h1, hp, hist = np.full(m, 4.0), np.full(m, 2.0), np.ones(m), np.zeros(m, bool)
    for i, (k, r, a, b, p, hs) in enumerate(trace):
        kind[i] = k
        if k == 0:
            ex[i, :a] = np.arange(r, r + a)
            exm[i, :a] = True
            r_new[i] = r + a
        else:
            nodes[i] = _node_steps(r, a, b)
            h[i], h1[i], hp[i], hist[i] = a, b, p, hs
            r_new[i] = r + a
    return Mesh(kind, r_new, ex, exm, nodes, h, h1, hp, hist, n)


def _spec(spectrum: Spectrum, batch: int):
    lam = jnp.asarray(spectrum.lam, jnp.float64)
    B = float(batch)
    return dict(lam=lam, a2=lam * lam * (B + 1.0) / B, c=jnp.asarray(spectrum.n, jnp.float64) * lam * lam / B,
                P_star=jnp.asarray(spectrum.P_star, jnp.float64), e0=jnp.asarray(spectrum.w, jnp.float64))


def replay(values, mesh: Mesh, u, spec: dict, *, steps: int, space: str):
    """The final expected loss ``P(T)`` of SGD with knot values ``values``, on the fixed ``mesh`` (traceable)."""
    lr = knot_schedule(u, values, steps, space)
    lam, a2, c, P_star, e0 = spec["lam"], spec["a2"], spec["c"], spec["P_star"], spec["e0"]
    lr_ex = jnp.where(mesh.exact_mask, lr(jnp.asarray(mesh.exact_steps)), 0.0)   # lr = 0: a no-op step
    v = lr(jnp.asarray(mesh.node_steps))
    h, h1 = jnp.asarray(mesh.h), jnp.asarray(mesh.h1)
    v = v.at[:, 7].set(_extrap(v[:, 4], v[:, 5], v[:, 6], h1 - 1.0))
    v = v.at[:, 12].set(_extrap(v[:, 9], v[:, 10], v[:, 11], h - h1 - 1.0))
    v = jnp.maximum(v, 0.0)
    q_lr = lr(jnp.asarray(mesh.r_new))

    def exact(carry, x):
        e, P, Q, Qp = carry

        def one(ep, eta):
            e, P = ep
            e = (1.0 - eta * (2.0 * lam) + eta * eta * a2) * e + (eta * eta * P) * c
            return (e, P_star + jnp.sum(e)), None
        (e1, P1), _ = jax.lax.scan(one, (e, P), x["lr_ex"])
        return e1, P1, x["q"] ** 2 * P1, Q

    def interval(carry, x):
        e, P, Q, Qp = carry
        n = x["nodes"]
        # the two halves (h1, h - h1) in one inner scan (one compiled interval body, as in _attempt); the
        # second starts at the midpoint with Q = lr(mid)^2 P(mid) and the first's start as its previous node
        halves = dict(h=jnp.stack([x["h1"], x["h"] - x["h1"]]), hp=jnp.stack([x["hp"], x["h1"]]),
                      hist=jnp.stack([x["hist"], True]), lr=jnp.stack([n[4:8], n[9:13]]))

        def half(c4, y):
            e, P, Qi, Qpi = c4
            e1, P1 = _interval(e, P, Qi, Qpi, y["hp"], y["hist"], y["h"], y["lr"][0], y["lr"][1], y["lr"][2],
                               y["lr"][3], lam, a2, c, P_star)
            return (e1, P1, n[8] ** 2 * P1, Qi), None
        (e1, P1, _, Qm), _ = jax.lax.scan(half, (e, P, Q, Qp), halves)
        return e1, P1, x["q"] ** 2 * P1, Qm

    def pad(carry, x):
        return carry

    def body(carry, x):
        return jax.lax.switch(x["kind"], (exact, interval, pad), carry, x), None

    P0 = P_star + jnp.sum(e0)
    carry0 = (e0, P0, lr(jnp.zeros(()))[()] ** 2 * P0, jnp.zeros((), jnp.float64))
    xs = dict(kind=jnp.asarray(mesh.kind), lr_ex=lr_ex, nodes=v, q=q_lr, h=h, h1=h1, hp=jnp.asarray(mesh.hp),
              hist=jnp.asarray(mesh.hist))
    (_, P, _, _), _ = jax.lax.scan(body, carry0, xs)
    return P


def _vg(steps: int, space: str):
    """``(log P(T), d log P(T) / d values)`` of :func:`replay` for horizon ``steps``: one compilation per ``space``
    (and mesh / spectrum shape); the horizon is traced."""
    if space not in _VG:
        def f(values, mesh, u, spec, T):
            return jnp.log(replay(values, mesh, u, spec, steps=T, space=space))
        _VG[space] = jax.jit(jax.value_and_grad(f))
    g = _VG[space]
    return lambda values, mesh, u, spec: g(values, mesh, u, spec, jnp.asarray(float(steps)))


_VG: dict = {}


def forward(spectrum: Spectrum, u, values, *, steps: int, space: str = "ends", batch: int = 1, rtol: float = RTOL,
            num: int = 40):
    """The forward log-time solve of the knot schedule and its mesh: ``(LogCurve, Mesh)``."""
    trace: list = []
    curve = solve_logtime(spectrum, knot_schedule(u, np.asarray(values, np.float64), steps, space), steps=steps,
                          batch=batch, num=num, rtol=rtol, trace=trace)
    return curve, mesh_of(trace)


def loss_and_grad(spectrum: Spectrum, u, values, *, steps: int, space: str = "ends", batch: int = 1,
                  rtol: float = RTOL):
    """``(P(T), dP(T)/d values)`` at horizons up to ~1e10: a forward log-time solve, then reverse mode through its
    replay (module docstring). Also returns the forward solve's final loss (equal to the replay's)."""
    curve, mesh = forward(spectrum, u, values, steps=steps, space=space, batch=batch, rtol=rtol)
    lv, g = _vg(steps, space)(jnp.asarray(values, jnp.float64), _jmesh(mesh), jnp.asarray(u, jnp.float64),
                              _spec(spectrum, batch))
    P = math.exp(float(lv))
    return P, P * np.asarray(g), curve.final


def _jmesh(mesh: Mesh) -> Mesh:
    return mesh._replace(rows=0)   # rows is bookkeeping, not part of the traced pytree's values


class LogtimeOptimum(NamedTuple):
    u: np.ndarray            # knot coordinates
    values: np.ndarray       # knot lrs
    loss: float              # forward log-time solve at the optimum
    rounds: list             # per round: (mesh rows, L-BFGS iterations, loss before, loss after)
    seconds: float


def optimize_logtime(spectrum: Spectrum, *, steps: int, knots: int = 32, space: str = "ends", batch: int = 1,
                     frac: float = 0.9, init: Optional[np.ndarray] = None, rounds: int = 12, maxiter: int = 25,
                     rtol: float = RTOL, tol: float = 1e-7) -> LogtimeOptimum:
    """Minimise ``P(T)`` over SGD knot schedules (bounded by ``frac x`` the stability edge) with gradients through
    the log-time solver: up to ``rounds`` x (forward solve -> mesh, at most ``maxiter`` L-BFGS-B iterations on the
    replay at that mesh), until a round improves the forward loss by less than ``tol`` (relative). A mesh is
    only trusted near the schedule it was made for, hence few iterations per round; a step that makes the
    replay non-finite is refused (value 1e30) so the line search backs off."""
    import plrf
    from scipy.optimize import minimize
    from scipy.special import expit
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if not (0 < frac < 1):
        raise ValueError(f"frac must be in (0, 1), got {frac!r}")
    t0 = time.time()
    cap = frac * plrf.max_stable_lr(spectrum, batch)
    u = knot_positions(knots, space, steps)
    if init is None:
        vals = np.full(u.size, 0.5 * cap)
    elif callable(init):    # a schedule closure: its values at the knots' steps
        vals = np.asarray(init(np.asarray(knot_steps(u, steps, space))), np.float64)
    else:
        vals = np.broadcast_to(np.asarray(init, np.float64), u.shape)
    vals = np.clip(vals, 1e-6 * cap, (1 - 1e-6) * cap)
    z = _inv_sigmoid(vals / cap)
    spec, uj = _spec(spectrum, batch), jnp.asarray(u, jnp.float64)
    vg = _vg(steps, space)
    log = []
    curve, mesh = forward(spectrum, u, cap * expit(z), steps=steps, space=space, batch=batch, rtol=rtol)
    it = maxiter
    for _ in range(rounds):
        jm = _jmesh(mesh)
        before = curve.final

        def f(zz):
            s = expit(zz)
            lv, g = vg(jnp.asarray(cap * s), jm, uj, spec)
            lv, g = float(lv), np.asarray(g) * cap * s * (1 - s)
            if not (math.isfinite(lv) and np.all(np.isfinite(g))):
                return 1e30, np.zeros_like(zz)
            return lv, g
        res = minimize(f, z, jac=True, method="L-BFGS-B", options=dict(maxiter=it, gtol=1e-12, ftol=1e-14))
        z_new = res.x
        curve_new, mesh_new = forward(spectrum, u, cap * expit(z_new), steps=steps, space=space, batch=batch, rtol=rtol)
        log.append((mesh.rows, int(res.nit), float(before), float(curve_new.final)))
        if not curve_new.final < before:      # the replay's gain did not survive re-meshing: a shorter round
            it //= 2
            if it < 2:
                break
            continue
        z, curve, mesh = z_new, curve_new, mesh_new
        if before - curve.final < tol * before:
            break
    return LogtimeOptimum(u, cap * expit(z), curve.final, log, time.time() - t0)


# ---------------------------------------------------------------------------------------------------------
# tuned baselines at the same horizons (forward log-time solves)

def shape_schedule(name: str, peak: float, steps: int, cooldown: float = 0.2):
    """Baseline shapes as schedule closures with a numpy twin (``.host``) and their kinks (``.breakpoints``):
    ``constant``; ``cosine`` ``peak (1 + cos(pi t/T))/2``; ``linear`` ``peak (1 - t/T)``; ``wsd`` ``peak`` up to
    ``(1 - cooldown) T``, then linear to 0 at ``T``."""
    T = float(steps)

    def unit(s, xp):
        t = s / T
        if name == "constant":
            return xp.ones_like(t)
        if name == "cosine":
            return 0.5 * (1.0 + xp.cos(math.pi * xp.clip(t, 0.0, 1.0)))
        if name == "linear":
            return xp.clip(1.0 - t, 0.0, 1.0)
        if name == "wsd":
            return xp.clip((1.0 - t) / cooldown, 0.0, 1.0)
        raise ValueError(f"baseline must be one of {BASELINES}, got {name!r}")

    def lr(s):
        return peak * unit(jnp.asarray(s, jnp.float64), jnp)
    lr.host = lambda s: peak * unit(np.asarray(s, np.float64), np)
    lr.breakpoints = (np.array([(1.0 - cooldown) * T]) if name == "wsd" else np.array([]))
    return lr


BASELINES = ("constant", "cosine", "linear", "wsd")


def tune_baseline(spectrum: Spectrum, name: str, *, steps: int, batch: int = 1, frac: float = 0.9,
                  cooldown: float = 0.2, rtol: float = RTOL):
    """``(final loss, peak)`` of the baseline with its peak lr tuned (bounded scalar search in log peak over
    ``[1e-3, 1] x frac x`` the stability edge) on forward log-time solves."""
    import plrf
    cap = frac * plrf.max_stable_lr(spectrum, batch)

    def f(lp):
        c = solve_logtime(spectrum, shape_schedule(name, math.exp(lp), steps, cooldown), steps=steps, batch=batch,
                          num=20, rtol=rtol)
        return math.log(c.final)
    x, v = scan_then_bounded(f, math.log(cap * 1e-3), math.log(cap))
    return math.exp(v), math.exp(x)


def scan_then_bounded(f, lo: float, hi: float, scan: int = 7, xatol: float = 1e-3):
    """``(x, f(x))`` minimising ``f`` on ``[lo, hi]``: a ``scan``-point grid brackets the minimum, then scipy's
    bounded scalar search between the best point's neighbours (the grid's best is kept if the search does worse)."""
    from scipy.optimize import minimize_scalar
    xs = np.linspace(lo, hi, scan)
    vals = [f(x) for x in xs]
    j = int(np.argmin(vals))
    a, b = xs[max(j - 1, 0)], xs[min(j + 1, xs.size - 1)]
    res = minimize_scalar(f, bounds=(a, b), method="bounded", options=dict(xatol=xatol))
    return (float(res.x), float(res.fun)) if res.fun <= vals[j] else (float(xs[j]), float(vals[j]))


# ---------------------------------------------------------------------------------------------------------
# one horizon end to end (the log-time twin of theory.optimal_schedule.solve_horizon)

def sample_steps(steps: int, n: int = 2048, extra=()) -> np.ndarray:
    """Steps at which a schedule of horizon ``steps`` is stored when per-step arrays are too long: ``n/2`` uniform
    in ``[0, T-1]``, ``n/2`` with ``T - 1 - t`` log-spaced from 1 to ``T`` (the end shape down to single steps),
    and ``extra`` (e.g. the knots); sorted integers."""
    T = int(steps)
    uni = np.linspace(0.0, T - 1.0, n // 2)
    end = (T - 1.0) - np.geomspace(1.0, T, n // 2) + 1.0
    s = np.concatenate([uni, end, np.asarray(extra, np.float64).ravel()])
    return np.unique(np.clip(np.round(s), 0, T - 1))


def solve_horizon_logtime(spectrum: Spectrum, *, steps: int, knots: int = 64, space: str = "ends", batch: int = 1,
                          frac: float = 0.9, init=None, maxiter: int = 25, rounds: int = 12,
                          cooldowns=(0.02, 0.05, 0.1, 0.2, 0.4, 0.7), num: int = 100, lr_limit: int = 100_000,
                          rtol: float = RTOL) -> dict:
    """Optimise one horizon of plain SGD with gradients through the log-time solver and tune the baselines
    (constant, cosine, linear, WSD with the cooldown fraction tuned over ``cooldowns``) on forward log-time solves:
    the record of :func:`theory.optimal_schedule.solve_horizon` (same keys), for horizons up to ~1e10.
    ``resolved`` is False when the best baseline's excess loss ``P - P*`` is below ``10 rtol P``: schedules then
    differ by less than the solver's accuracy (a horizon at the floor ``P*``), and ``saving`` is not meaningful.

    Differences: every loss is a forward log-time solve (local tolerance ``rtol``) instead of
    ``plrf.expected_loss``; per-step arrays (``arrays['lr']``) only up to ``lr_limit`` steps, the schedule always
    sampled at :func:`sample_steps` (``sample_steps``/``sample_lr``) and given by its knots (``knot_steps``); the
    shape is fitted on those samples. ``init``: warm start (knot values, or a schedule closure); default: the
    tuned WSD. ``iterations``: L-BFGS iterations summed over the re-mesh rounds."""
    import plrf
    from .optimal_schedule import fit_shape
    t0 = time.time()
    T = int(steps)
    edge = float(plrf.max_stable_lr(spectrum, batch))
    base = {}
    for name in ("constant", "cosine", "linear"):
        loss, peak = tune_baseline(spectrum, name, steps=T, batch=batch, frac=frac, rtol=rtol)
        base[name] = dict(final_loss=loss, peak=peak, cooldown=None)
    wsd = min((tune_baseline(spectrum, "wsd", steps=T, batch=batch, frac=frac, cooldown=c, rtol=rtol) + (c,)
               for c in cooldowns), key=lambda r: r[0])
    base["wsd"] = dict(final_loss=wsd[0], peak=wsd[1], cooldown=wsd[2])
    t_base = time.time() - t0
    if init is None:
        init = shape_schedule("wsd", wsd[1], T, wsd[2]).host
    r = optimize_logtime(spectrum, steps=T, knots=knots, space=space, batch=batch, frac=frac, init=init,
                         rounds=rounds, maxiter=maxiter, rtol=rtol)
    sched = knot_schedule(r.u, r.values, T, space)
    grid = plrf.log_grid(T, num)
    curve = solve_logtime(spectrum, sched, steps=T, batch=batch, grid=grid, rtol=rtol)
    ks = knot_steps(r.u, T, space)
    ts = sample_steps(T, extra=np.round(ks))
    lr_s = sched.host(ts)
    shape = fit_shape(lr_s, t=ts, steps=T)
    rec = dict(steps=T, final_loss=float(curve.final), objective_loss=float(r.loss),
               arrays={"lr": sched.host(np.arange(T))} if T <= lr_limit else {},
               knots={"lr": np.asarray(r.values)}, knot_steps=ks, z=np.asarray(r.values),
               sample_steps=ts, sample_lr=lr_s, shape=shape._asdict(),
               iterations=int(sum(x[1] for x in r.rounds)), evaluations=int(sum(x[1] + 1 for x in r.rounds)),
               optimize_seconds=r.seconds, message=f"{len(r.rounds)} re-mesh rounds (log-time replay, L-BFGS-B)",
               curve_steps=np.asarray(curve.steps), curve_loss=np.asarray(curve.loss),
               edge=edge, cap=frac * edge,
               P_star=float(spectrum.P_star), baseline_seconds=t_base, baselines=base)
    rec["baseline_curves"] = {
        k: np.asarray(solve_logtime(spectrum, shape_schedule(k, b["peak"], T, b["cooldown"] or 0.2), steps=T,
                                    batch=batch, grid=grid, rtol=rtol).loss) for k, b in base.items()}
    best = min(base, key=lambda k: base[k]["final_loss"])
    bl = base[best]["final_loss"]
    P_star = float(spectrum.P_star)
    rec.update(best_baseline=best, saving=1.0 - rec["final_loss"] / bl,
               excess_saving=1.0 - (rec["final_loss"] - P_star) / (bl - P_star), seconds=time.time() - t0,
               tolerance=float(rtol), resolved=bool(bl - P_star > 10.0 * rtol * bl))
    return rec
