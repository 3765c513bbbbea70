"""Gradients of the exact expected loss with respect to the schedule through the log-time solver for heavy-ball
momentum, DANA-decaying and iterate averaging (issue 15, items 1-2, horizons up to 1e10): the optimizer-family
twin of :mod:`theory.logtime_grad` (plain SGD).

A forward solve of the frozen per-mode moment system (:func:`theory.logtime.solve_logtime`, ``trace=``) records its
accepted steps: exact chunks (start step, length) and two-half intervals (start, length ``h``, first half ``h1``,
previous-node spacing and presence). :func:`replay` re-executes exactly those steps as one ``jax.lax.scan`` with
the schedule's knot values traced, calling the forward solve's own functions: :func:`theory.logtime._sys_exact`
(the exact recursion :func:`plrf.moments.step`) for the chunks, :func:`theory.logtime._sys_powers` with
``whole=False`` (the two frozen halves: :func:`plrf.moments.system_map`, binary powering
:func:`theory.logtime._powers`, its trip count made static so that reverse mode applies) and
:func:`theory.logtime._sys_halves` (the implicit ``P_eval`` solves) for the intervals. Blocks of rows are
rematerialised (``jax.checkpoint``): reverse mode stores one carry per block. Its value equals the forward
solve's (tested to 1e-12) and ``jax.grad`` of it is the exact derivative of the discretised solution on that mesh,
which differs from the derivative of the exact recursion by
the solver's discretisation error (local tolerance ``rtol``).

Schedules (:class:`Family`): piecewise linear in the step coordinate of :func:`theory.logtime_grad.coord` through
``K`` knots (:func:`theory.optimal_schedule.knot_positions`), with the knot values, knot coordinates and horizon
all traced hyper-parameters of one optimizer (:func:`knotted`): a new schedule or horizon does not recompile the
forward solver or the replay. Optimizers, as in :class:`theory.optimal_schedule.ScheduleFamily`:

  * ``momentum``: heavy ball ``optax.sgd(lr, momentum=mu)``; the schedule is the effective step
    ``eff_t = lr_t / (1 - mu)`` (bounded like SGD's lr), ``mu`` constant (``lr_t = eff_t (1 - mu)``);
  * ``dana-decaying``: the ``g2`` and ``g3`` schedules jointly (``g3`` times the built-in ``(1 + t)^-kappa``,
    ``Delta(t) = delta/(delta + t)``), ``g2 <= frac x`` the edge, ``g3 <= g3_max``;
  * ``sgd`` with ``ema`` (a rate or ``'uniform'``): the lr schedule, the loss read from the average.

:func:`optimize` alternates a forward solve (a new mesh) with L-BFGS-B (scipy) on the replay at that mesh, as
:func:`theory.logtime_grad.optimize_logtime`; :func:`solve_horizon` is one horizon end to end with tuned
baselines (the record of :func:`theory.logtime_grad.solve_horizon_logtime`).
"""
from __future__ import annotations

import math
import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from plrf import moments as pm
from plrf import optimizers as O
from plrf.spectrum import Spectrum

from .logtime import H_EXACT, NBITS, RTOL, _bucket, _sys_exact, _sys_halves, _sys_powers, solve_logtime
from .logtime_grad import coord, knot_steps, sample_steps
from .optimal_schedule import SPACES, _inv_sigmoid, knot_positions

jax.config.update("jax_enable_x64", True)

OPTIMIZERS = ("momentum", "dana-decaying", "sgd")
BLOCK = 64   # rows per replay block: their interval powers are computed side by side (vmapped)
BASELINES = ("constant", "cosine", "linear", "wsd")


# ---------------------------------------------------------------------------------------------------------
# knotted optimizers: the knots are traced hyper-parameters (arrays), the interpolation is in the (static) builder

@jax.tree_util.register_pytree_node_class
class Knots(O.Hyper):
    """A (K,) array hyper-parameter constant in time (knot values or coordinates of a :func:`knotted` schedule);
    stored as (1, K) so that the per-step readers of :class:`plrf.optimizers.Hyper` arrays (jump scans,
    breakpoints) leave it alone."""

    def __call__(self, t):
        return jnp.asarray(self.value, jnp.float64)[0]


def _build_knotted(h, t, extra):
    """``h[target] *= interp(coord(t), u, knots)`` for each knotted schedule, then the base optimizer's builder."""
    base_build, base_extra, space, sched = extra
    x = coord(jnp.asarray(t, jnp.float64), h["knot_T"], space)
    out = {k: v for k, v in h.items() if not k.startswith("knot_")}
    for name, targets in sched:
        s = jnp.interp(x, h["knot_u"], h[f"knot_{name}"])
        for tg in targets:
            out[tg] = out[tg] * s
    return base_build(out, t, base_extra)


def knotted(base: O.Optimizer, sched, u, values: dict, steps, space: str) -> O.Optimizer:
    """``base`` with hyper-parameters multiplied by piecewise-linear schedules: ``sched`` is a tuple of
    ``(name, targets)``; ``values[name]`` the (K,) knot values (numbers or traced), ``u`` the (K,) knot coordinates
    and ``steps`` the horizon of :func:`theory.logtime_grad.coord` (traced or not)."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    h = dict(base.h)
    K = int(np.shape(u)[0])
    as2 = lambda a: (a.reshape(1, -1) if isinstance(a, jax.Array)  # noqa: E731
                     else np.asarray(a, np.float64).reshape(1, -1))
    h["knot_u"] = Knots(as2(u))
    h["knot_T"] = O.Hyper(steps if isinstance(steps, jax.Array) else np.float64(steps))
    for name, _ in sched:
        v = values[name]
        if int(np.shape(v)[0]) != K:
            raise ValueError(f"{name}: {np.shape(v)[0]} knot values for {K} knots")
        h[f"knot_{name}"] = Knots(as2(v))
    return O.Optimizer(base.name, h, _build_knotted, base.states, base.readouts, (),
                       (base.build, base.extra, space, tuple((n, tuple(t)) for n, t in sched)))


class Family(NamedTuple):
    """What is optimised (static description; numbers are plain floats)."""
    optimizer: str          # momentum | dana-decaying | sgd
    space: str
    mu: float = 0.9         # heavy ball's (constant) momentum
    delta: float = 8.0      # DANA's Delta(t) = delta / (delta + t)
    kappa: float = 0.5      # DANA's g3 decay (1 + t)^-kappa
    ema: object = None      # None, a rate in (0, 1] or 'uniform' (the loss is read from the average)

    @property
    def names(self):
        return {"momentum": ("eff",), "dana-decaying": ("g2", "g3"), "sgd": ("lr",)}[self.optimizer]

    @property
    def readout(self) -> int:
        return 1 if self.ema is not None else 0

    def base(self, shape=None, peak=1.0, g3=1.0) -> O.Optimizer:
        """The optimizer with unit schedules (``shape``: an optional static lr shape closure, times ``peak``)."""
        lr = O.Hyper(np.float64(peak), shape)
        if self.optimizer == "momentum":
            return O.momentum(O.Hyper(np.float64(peak * (1.0 - self.mu)), shape), self.mu, ema=self.ema)
        if self.optimizer == "dana-decaying":   # a baseline shape scales g2 and g3 together
            return O.dana_decaying(lr, O.Hyper(np.float64(g3), shape), delta=self.delta, kappa=self.kappa,
                                   ema=self.ema)
        return O.sgd(lr, ema=self.ema)

    @property
    def sched(self):
        return {"momentum": (("eff", ("g3",)),), "dana-decaying": (("g2", ("g2",)), ("g3", ("g3",))),
                "sgd": (("lr", ("g2",)),)}[self.optimizer]

    def optimizer_of(self, u, values: dict, steps) -> O.Optimizer:
        return knotted(self.base(), self.sched, u, values, steps, self.space)


def family(optimizer: str, spectrum: Spectrum, *, space: str = "ends", mu: float = 0.9, alpha: float = 1.0,
           ema=None, dana: Optional[dict] = None) -> Family:
    """A :class:`Family` with DANA's ``delta`` and ``kappa`` from :func:`plrf.optimizers.dana_defaults` (as the
    exact path, :class:`theory.optimal_schedule.ScheduleFamily`)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if optimizer == "sgd" and ema is None:
        raise ValueError("optimizer 'sgd' without ema: use theory.logtime_grad (the specialised SGD replay)")
    if not (0 <= mu < 1):
        raise ValueError(f"mu must be in [0, 1), got {mu!r}")
    dd = O.dana_defaults(spectrum.trace, int(round(spectrum.d)), alpha, 0.0)
    dd = {"delta": dd["delta"], "kappa": dd["kappa"], **(dana or {})}
    return Family(optimizer, space, float(mu), float(dd["delta"]), float(dd["kappa"]), ema)


def caps(fam: Family, spectrum: Spectrum, batch: int = 1, frac: float = 0.9, g3_max: Optional[float] = None) -> dict:
    """Upper bounds of each knotted schedule: ``frac x plrf.max_stable_lr`` for the lr-like one, DANA's g3 cap
    ``g3_max`` (default twice the authors' ``0.125 / tr K``, as the exact path)."""
    import plrf
    cap = frac * float(plrf.max_stable_lr(spectrum, batch))
    g3 = float(g3_max) if g3_max is not None else 2.0 * 0.125 / float(spectrum.trace)
    return {"eff": cap, "lr": cap, "g2": cap, "g3": g3}


# ---------------------------------------------------------------------------------------------------------
# mesh and replay

class Mesh(NamedTuple):
    """A forward solve's accepted steps (``n`` rows padded with ``kind = 2`` no-ops)."""
    kind: np.ndarray     # 0 exact chunk, 1 two-half interval, 2 padding
    r0: np.ndarray       # start step (int64)
    n: np.ndarray        # exact chunk length
    h: np.ndarray
    h1: np.ndarray
    hp: np.ndarray
    hist: np.ndarray
    cls: np.ndarray      # per row: trip-count class of its block of BLOCK rows (0: 8 binary digits, 1: 16, ...)
    rows: int            # real rows
    bits: int            # static powering trip count (>= binary digits of every h1)


def _rows_bucket(n: int) -> int:
    size = 256
    while size < n:
        size *= 2
    return size


def mesh_of(trace) -> Mesh:
    n = len(trace)
    m = _rows_bucket(n)
    kind = np.full(m, 2, np.int32)
    r0, ln = np.zeros(m, np.int64), np.ones(m, np.int64)
    h, h1, hp, hist = np.full(m, 4.0), np.full(m, 2.0), np.ones(m), np.zeros(m, bool)
    for i, (k, r, a, b, p, hs) in enumerate(trace):
        kind[i], r0[i] = k, r
        if k == 0:
            ln[i] = a
        else:
            h[i], h1[i], hp[i], hist[i] = a, b, p, hs
    nd = np.array([int(x).bit_length() for x in h1])
    blk = np.repeat(np.max(nd.reshape(-1, BLOCK), axis=1), BLOCK)
    cls = ((blk - 1) // 8).astype(np.int32)
    bits = min(NBITS, 8 * (int(cls.max()) + 1))
    return Mesh(kind, r0, ln, h, h1, hp, hist, cls, n, bits)


def _spec(spectrum: Spectrum, batch: int) -> dict:
    """Spectrum arrays padded as the forward solver pads them (copies of the last eigenvalue, n = w = 0)."""
    d = spectrum.lam.size
    size = _bucket(d)
    padv = lambda a, fill: jnp.asarray(np.concatenate([a, np.full(size - d, fill)]))  # noqa: E731
    return dict(lam=padv(spectrum.lam, float(spectrum.lam[-1]) if d else 1.0), n=padv(spectrum.n, 0.0),
                w=padv(spectrum.w, 0.0), B=jnp.asarray(float(batch)),
                P_star=jnp.asarray(spectrum.P_star, dtype=jnp.float64))


def replay(opt: O.Optimizer, mesh: Mesh, spec: dict, *, forced: bool, bits: int):
    """The read-out losses at the end of the ``mesh`` (shape (r,)) of ``opt`` (traceable: its knot values may be
    traced): the forward solve's accepted steps, re-executed with its own functions (module docstring).

    The powers of an interval do not depend on the state, so those of a block of :data:`BLOCK` rows are computed
    side by side (``vmap`` of :func:`theory.logtime._sys_powers`, a static trip count: the block's class, a
    multiple of 8 binary digits up to ``bits``, chosen by ``lax.switch``), then the rows are
    scanned (:func:`theory.logtime._sys_halves`, :func:`theory.logtime._sys_exact`); each block is
    rematerialised in reverse mode."""
    lam, n, w, B, P_star = spec["lam"], spec["n"], spec["w"], spec["B"], spec["P_star"]
    ts = pm.theta_star(lam, w)
    sys0 = opt.system(0.0)
    mm, M = pm.init(sys0, lam, w, forced)
    z0 = pm.from_moments((mm, M), ts * ts, ts, forced)
    P0 = P_star + jnp.sum(lam * pm.quad(M, sys0.c_eval, opt.size))
    L0 = pm.losses(M, sys0, lam, P_star)

    def powers(x, nb):
        p1, p2, _, rows = _sys_powers(x["r0"].astype(jnp.float64), x["h"], x["h1"], nb, opt, lam, n, B, forced,
                                      False, whole=False)
        return p1, p2, rows
    classes = tuple(range(8, bits + 1, 8))   # a block's trip count: the class of its longest h1

    def exact(carry, x):
        z, P, Qp, L = carry
        z1, Ps, Ls = _sys_exact(z, x["r0"], x["n"], opt, lam, n, ts, B, P_star, forced=forced, count=H_EXACT)
        return z1, Ps[x["n"] - 1], P, Ls[x["n"] - 1]

    def interval(carry, x):
        z, P, Qp, L = carry
        p1, p2, rows = x["pw"]
        return _sys_halves(z, P, Qp, x["hp"], x["hist"], x["h"], x["h1"], p1, p2, rows, P_star)

    def pad(carry, x):
        return carry

    # (branches rematerialised: a switch's reverse mode otherwise stores every branch's residuals, zero-filled)
    branches = (jax.checkpoint(exact), jax.checkpoint(interval), pad)

    def row(carry, x):
        return jax.lax.switch(x["kind"], branches, carry, x), None

    @jax.checkpoint
    def block(carry, xb):
        fns = [jax.checkpoint(lambda x, nb=nb: jax.vmap(lambda y: powers(y, nb))(x)) for nb in classes]
        xb = dict(xb, pw=jax.lax.switch(xb["cls"][0], fns, xb))
        return jax.lax.scan(row, carry, xb)[0], None

    m = mesh.kind.shape[0]
    xs = dict(kind=jnp.asarray(mesh.kind), r0=jnp.asarray(mesh.r0), n=jnp.asarray(mesh.n), h=jnp.asarray(mesh.h),
              h1=jnp.asarray(mesh.h1), hp=jnp.asarray(mesh.hp), hist=jnp.asarray(mesh.hist),
              cls=jnp.asarray(mesh.cls))
    xs = jax.tree.map(lambda a: a.reshape((m // BLOCK, BLOCK) + a.shape[1:]), xs)
    (_, _, _, L), _ = jax.lax.scan(block, (z0, P0, jnp.zeros((), jnp.float64), L0), xs)
    return L


def _arrays(mesh: Mesh) -> dict:
    return dict(kind=mesh.kind, r0=mesh.r0, n=mesh.n, h=mesh.h, h1=mesh.h1, hp=mesh.hp, hist=mesh.hist, cls=mesh.cls)


_VG: dict = {}


def _vg(fam: Family, forced: bool, bits: int):
    """``(log L_readout(T), gradient w.r.t. the knot values)`` of :func:`replay`, compiled once per family, bits
    and shapes (knot coordinates and horizon traced)."""
    key = (fam, forced, bits)
    if key not in _VG:
        def f(values, mesh_arrays, u, spec, T):
            opt = fam.optimizer_of(u, values, T)
            mesh = Mesh(**mesh_arrays, rows=0, bits=bits)
            return jnp.log(replay(opt, mesh, spec, forced=forced, bits=bits)[fam.readout])
        _VG[key] = jax.jit(jax.value_and_grad(f))
    return _VG[key]


def forward(fam: Family, spectrum: Spectrum, u, values: dict, *, steps: int, batch: int = 1, rtol: float = RTOL,
            num: int = 40, grid=None):
    """The forward log-time solve of the knotted optimizer and its mesh: ``(LogCurve, Mesh)``."""
    trace: list = []
    opt = fam.optimizer_of(np.asarray(u, np.float64), {k: np.asarray(v, np.float64) for k, v in values.items()},
                           float(steps))
    curve = solve_logtime(spectrum, opt, steps=steps, batch=batch, num=num, grid=grid, rtol=rtol, trace=trace)
    return curve, mesh_of(trace)


def final_of(fam: Family, curve) -> float:
    """The final loss of the family's read-out on a forward solve."""
    return float(curve.loss[-1] if fam.readout == 0 else curve.readouts["average"][-1])


def loss_and_grad(fam: Family, spectrum: Spectrum, u, values: dict, *, steps: int, batch: int = 1,
                  rtol: float = RTOL):
    """``(L(T), dL(T)/d values (dict), forward L(T))``: a forward log-time solve, then reverse mode through its
    replay; ``L`` is the read-out's final loss (the average's with ``ema``)."""
    curve, mesh = forward(fam, spectrum, u, values, steps=steps, batch=batch, rtol=rtol)
    forced = pm.is_forced(fam.base())
    lv, g = _vg(fam, forced, mesh.bits)({k: jnp.asarray(v, jnp.float64) for k, v in values.items()}, _arrays(mesh),
                                        jnp.asarray(u, jnp.float64), _spec(spectrum, batch),
                                        jnp.asarray(float(steps)))
    L = math.exp(float(lv))
    return L, {k: L * np.asarray(v) for k, v in g.items()}, final_of(fam, curve)


# ---------------------------------------------------------------------------------------------------------
# optimisation

class Optimum(NamedTuple):
    u: np.ndarray
    values: dict             # knot values per schedule
    loss: float              # forward log-time solve at the optimum
    rounds: list             # per round: (mesh rows, L-BFGS iterations, loss before, loss after)
    seconds: float


def optimize(fam: Family, spectrum: Spectrum, *, steps: int, knots: int = 32, batch: int = 1, frac: float = 0.9,
             init: Optional[dict] = None, rounds: int = 12, maxiter: int = 25, rtol: float = RTOL, tol: float = 1e-7,
             g3_max: Optional[float] = None) -> Optimum:
    """Minimise the read-out's final loss over knot schedules bounded by :func:`caps` (sigmoids), with gradients
    through the log-time solver: up to ``rounds`` x (forward solve -> mesh, at most ``maxiter`` L-BFGS-B
    iterations on the replay at that mesh), until a round improves the forward loss by less than ``tol``
    (relative); a round whose gain does not survive re-meshing is retried with half the iterations, as
    :func:`theory.logtime_grad.optimize_logtime`. ``init``: name -> knot values (arrays or numbers) or a
    schedule closure ``steps -> value`` per name; default: half of each cap."""
    from scipy.optimize import minimize
    from scipy.special import expit
    if not (0 < frac < 1):
        raise ValueError(f"frac must be in (0, 1), got {frac!r}")
    t0 = time.time()
    cp = caps(fam, spectrum, batch, frac, g3_max)
    names = fam.names
    u = knot_positions(knots, fam.space, steps)
    K = u.size
    ks = knot_steps(u, steps, fam.space)
    vals = {}
    for nm in names:
        v = (init or {}).get(nm, 0.5 * cp[nm])
        v = np.asarray(v(ks), np.float64) if callable(v) else np.broadcast_to(np.asarray(v, np.float64), (K,))
        vals[nm] = np.clip(v, 1e-6 * cp[nm], (1 - 1e-6) * cp[nm])
    cvec = np.concatenate([np.full(K, cp[nm]) for nm in names])
    z = _inv_sigmoid(np.concatenate([vals[nm] for nm in names]) / cvec)

    def unpack(zz):
        v = cvec * expit(zz)
        return {nm: v[i * K:(i + 1) * K] for i, nm in enumerate(names)}
    spec, uj, Tj = _spec(spectrum, batch), jnp.asarray(u, jnp.float64), jnp.asarray(float(steps))
    forced = pm.is_forced(fam.base())
    log = []
    curve, mesh = forward(fam, spectrum, u, unpack(z), steps=steps, batch=batch, rtol=rtol)
    it = maxiter
    for _ in range(rounds):
        vg, ma = _vg(fam, forced, mesh.bits), _arrays(mesh)
        before = final_of(fam, curve)

        def f(zz):
            s = expit(zz)
            lv, g = vg({k: jnp.asarray(v) for k, v in unpack(zz).items()}, ma, uj, spec, Tj)
            lv = float(lv)
            g = np.concatenate([np.asarray(g[nm]) for nm in names]) * cvec * s * (1 - s)
            if not (math.isfinite(lv) and np.all(np.isfinite(g))):
                return 1e30, np.zeros_like(zz)
            return lv, g
        res = minimize(f, z, jac=True, method="L-BFGS-B", options=dict(maxiter=it, gtol=1e-12, ftol=1e-14))
        try:
            curve_new, mesh_new = forward(fam, spectrum, u, unpack(res.x), steps=steps, batch=batch, rtol=rtol)
            after = final_of(fam, curve_new)
        except ValueError:              # the new schedule left the stable region of the forward checks
            curve_new, mesh_new, after = None, None, math.inf
        log.append((mesh.rows, int(res.nit), float(before), float(after)))
        if not after < before:
            it //= 2
            if it < 2:
                break
            continue
        z, curve, mesh = res.x, curve_new, mesh_new
        if before - after < tol * before:
            break
    return Optimum(u, unpack(z), final_of(fam, curve), log, time.time() - t0)


# ---------------------------------------------------------------------------------------------------------
# baselines: the shapes of theory.logtime_grad.shape_schedule, peak (effective step / g2) tuned, mu or g3 fixed

def _unit_cosine(steps: int):
    T = float(steps)

    def unit(s):
        return 0.5 * (1.0 + jnp.cos(math.pi * jnp.clip(jnp.asarray(s, jnp.float64) / T, 0.0, 1.0)))
    unit.key, unit.peak, unit.breakpoints, unit.name = ("logtime-grad-optim-cosine", T), 1.0, (), "cosine"
    unit.config = {"name": "cosine", "total": T}
    return O.canonical(unit)


def baseline_optimizer(fam: Family, name: str, peak: float, steps: int, *, cooldown: float = 0.2,
                       g3: float = 0.0) -> O.Optimizer:
    """The baseline ``name`` (constant, cosine, linear, wsd: the shapes of
    :func:`theory.logtime_grad.shape_schedule`) at ``peak`` for the family's lr-like schedule; DANA's ``g3`` at
    ``g3`` (times its built-in decay) follows the same shape: cooling g2 alone leaves DANA's momentum with
    almost no damping at the end (``Delta_t ~ delta/t``), and at T = 1e6 on d = 1e5 that frozen map is unstable
    (radius 1 + 3e-5). Piecewise-linear shapes are knotted optimizers on three knots in ``t/(T-1)`` (one
    compilation for every peak, cooldown and horizon), cosine a static shape."""
    T = float(steps)
    if name == "cosine":
        return fam.base(_unit_cosine(steps), peak, g3)
    e = T / max(T - 1.0, 1.0)           # coordinate of step T (where linear and WSD reach 0)
    knots = {"constant": ([0.0, 0.5, 1.0], [1.0, 1.0, 1.0]), "linear": ([0.0, 0.5 * e, e], [1.0, 0.5, 0.0]),
             "wsd": ([0.0, (1.0 - cooldown) * e, e], [1.0, 1.0, 0.0])}
    if name not in knots:
        raise ValueError(f"baseline must be one of {BASELINES}, got {name!r}")
    u, v = (np.asarray(a, np.float64) for a in knots[name])
    lin = Family(fam.optimizer, "linear", fam.mu, fam.delta, fam.kappa, fam.ema)
    base = lin.base(None, 1.0, g3)
    lead = fam.names[0]
    if fam.optimizer == "dana-decaying":
        return knotted(base, lin.sched, u, {lead: peak * v, "g3": v}, T, "linear")
    return knotted(base, lin.sched[:1], u, {lead: peak * v}, T, "linear")


def tune_baseline(fam: Family, spectrum: Spectrum, name: str, *, steps: int, cap: float, batch: int = 1,
                  cooldown: float = 0.2, g3: float = 0.0, rtol: float = RTOL):
    """``(final loss, peak)``: the peak tuned by a 7-point scan of ``log peak`` over ``[1e-3, 1] x cap`` and a
    bounded scalar search (scipy) between the neighbours of the best (as
    :func:`theory.logtime_grad.tune_baseline`); an unstable peak counts as +inf."""
    from .logtime_grad import scan_then_bounded

    def f(lp):
        try:
            c = solve_logtime(spectrum, baseline_optimizer(fam, name, math.exp(lp), steps, cooldown=cooldown, g3=g3),
                              steps=steps, batch=batch, num=20, rtol=rtol)
        except ValueError:
            return math.inf
        v = final_of(fam, c)
        return math.log(v) if v > 0 and math.isfinite(v) else math.inf
    x, v = scan_then_bounded(f, math.log(cap * 1e-3), math.log(cap))
    return math.exp(v), math.exp(x)


def solve_horizon(fam: Family, spectrum: Spectrum, *, steps: int, knots: int = 32, batch: int = 1, frac: float = 0.9,
                  maxiter: int = 25, rounds: int = 12, cooldowns=(0.02, 0.05, 0.1, 0.2, 0.4, 0.7), num: int = 100,
                  lr_limit: int = 100_000, rtol: float = RTOL, rtol_opt: Optional[float] = None,
                  g3_max: Optional[float] = None, init=None) -> dict:
    """One horizon end to end for the family (the record of :func:`theory.logtime_grad.solve_horizon_logtime`,
    same keys): tuned baselines (constant, cosine, linear, WSD with the cooldown tuned over ``cooldowns``; the
    peak of the lr-like schedule tuned; heavy ball's ``mu`` fixed, DANA's ``g3`` peak fixed at half its cap, its
    shape that of g2) on forward log-time solves, then :func:`optimize` warm-started from the best tuned WSD
    (DANA: g2 and g3 both WSD-shaped).
    ``arrays``/``sample_lr`` hold the lr-like schedule (heavy ball: ``eff``, and ``lr = eff (1 - mu)``; DANA:
    ``g2`` and ``g3``). ``rtol_opt``: the local tolerance of the optimisation's meshes (default ``rtol``; a
    looser one makes fewer rows: the time-varying system needs ~1/rtol intervals across a decay), also used to
    tune the baselines' peaks (and WSD's cooldown); every reported loss is a forward solve at ``rtol``."""
    import plrf
    from .logtime_grad import shape_schedule
    from .optimal_schedule import fit_shape
    t0 = time.time()
    T = int(steps)
    edge = float(plrf.max_stable_lr(spectrum, batch))
    cp = caps(fam, spectrum, batch, frac, g3_max)
    lead = fam.names[0]
    g3 = 0.5 * cp["g3"] if fam.optimizer == "dana-decaying" else 0.0
    r_opt = rtol if rtol_opt is None else rtol_opt
    tb = dict(steps=T, cap=cp[lead], batch=batch, g3=g3, rtol=r_opt)
    base = {}
    for name in ("constant", "cosine", "linear"):
        loss, peak = tune_baseline(fam, spectrum, name, **tb)
        base[name] = dict(final_loss=loss, peak=peak, cooldown=None)
    wsd = min((tune_baseline(fam, spectrum, "wsd", cooldown=c, **tb) + (c,) for c in cooldowns), key=lambda r: r[0])
    base["wsd"] = dict(final_loss=wsd[0], peak=wsd[1], cooldown=wsd[2])
    t_base = time.time() - t0
    if init is None:
        init = {lead: shape_schedule("wsd", wsd[1], T, wsd[2]).host}
        if fam.optimizer == "dana-decaying":   # the baselines' shape on g3 too (baseline_optimizer)
            init["g3"] = shape_schedule("wsd", g3, T, wsd[2]).host
    r = optimize(fam, spectrum, steps=T, knots=knots, batch=batch, frac=frac, init=init, rounds=rounds,
                 maxiter=maxiter, rtol=r_opt, g3_max=g3_max)
    grid = plrf.log_grid(T, num)
    curve, _ = forward(fam, spectrum, r.u, r.values, steps=T, batch=batch, rtol=rtol, grid=grid)
    ks = knot_steps(r.u, T, fam.space)
    ts = sample_steps(T, extra=np.round(ks))

    def host(nm, s):
        return np.interp(np.asarray(coord(np.asarray(s, np.float64), T, fam.space)), r.u, r.values[nm])
    lr_s = host(lead, ts)
    shape = fit_shape(lr_s, t=ts, steps=T)
    arrays = {}
    if T <= lr_limit:
        allt = np.arange(T)
        arrays = {nm: host(nm, allt) for nm in fam.names}
        if fam.optimizer == "momentum":
            arrays["lr"] = arrays["eff"] * (1.0 - fam.mu)
            arrays["mu"] = np.full(T, fam.mu)
    rec = dict(steps=T, final_loss=final_of(fam, curve), objective_loss=float(r.loss), arrays=arrays,
               knots={nm: np.asarray(v) for nm, v in r.values.items()}, knot_steps=ks,
               z=np.concatenate([np.asarray(r.values[nm]) for nm in fam.names]),
               sample_steps=ts, sample_lr=lr_s, shape=shape._asdict(),
               iterations=int(sum(x[1] for x in r.rounds)), evaluations=int(sum(x[1] + 1 for x in r.rounds)),
               optimize_seconds=r.seconds,
               message=f"{len(r.rounds)} re-mesh rounds (log-time replay of the moment system, L-BFGS-B)",
               curve_steps=np.asarray(curve.steps),
               curve_loss=np.asarray(curve.loss if fam.readout == 0 else curve.readouts["average"]),
               edge=edge, cap=cp[lead], P_star=float(spectrum.P_star), baseline_seconds=t_base, baselines=base)

    def bcurve(k, b):
        c = solve_logtime(spectrum, baseline_optimizer(fam, k, b["peak"], T, cooldown=b["cooldown"] or 0.2, g3=g3),
                          steps=T, batch=batch, grid=grid, rtol=rtol)
        return np.asarray(c.loss if fam.readout == 0 else c.readouts["average"])
    rec["baseline_curves"] = {k: bcurve(k, b) for k, b in base.items()}
    for k, b in base.items():      # every reported loss at rtol (the peaks were tuned at rtol_opt)
        b["final_loss"] = float(rec["baseline_curves"][k][-1])
    best = min(base, key=lambda k: base[k]["final_loss"])
    bl = base[best]["final_loss"]
    P_star = float(spectrum.P_star)
    rec.update(best_baseline=best, saving=1.0 - rec["final_loss"] / bl,
               excess_saving=1.0 - (rec["final_loss"] - P_star) / (bl - P_star), seconds=time.time() - t0,
               tolerance=float(rtol), tolerance_optimisation=float(rtol if rtol_opt is None else rtol_opt),
               rounds=[list(x) for x in r.rounds], resolved=bool(bl - P_star > 10.0 * rtol * bl))
    return rec
