"""Optimal learning-rate (and momentum) schedules by differentiating the exact expected loss (issue 15).

The exact expected loss of any linear optimizer (:mod:`plrf.moments`, the recursion behind
``plrf.expected_loss``) is a smooth function of the optimizer's per-step hyper-parameters. This module

  * evaluates it as a **differentiable** function of per-step hyper-parameter arrays with **memory by
    checkpointing** (:func:`exact_loss`): the steps are scanned in blocks of ``m ~ sqrt(T)`` steps
    (``jax.lax.scan`` of ``jax.checkpoint``-ed blocks, each an inner ``lax.scan``); reverse mode keeps one carry
    per block and recomputes one block at a time, so memory is ``O((T/m + m) d s)`` (``s`` moment entries per
    mode) instead of ``O(T d s)``: ``T = 1e6``, ``d = 1024``, momentum (s = 3) needs ~ 50 MB of carries.
    The per-step hyper-parameters enter the scan as scanned inputs (``xs``), so their cotangents are per-step
    outputs of the reverse scan (a closed-over array read with a dynamic index would accumulate a full-length
    cotangent every step: O(T^2)).
  * parameterises schedules by ``K >= 2`` knots (:class:`ScheduleFamily`), piecewise-linear in ``t/T``
    (``space='linear'``), in ``log(1 + t)/log(T)`` (``space='log'``) or in ``t/T`` with extra knots log-spaced
    at both ends (``space='ends'``: warmups and end shapes resolved to single steps), positive and inside the stability edge
    by a smooth bound: ``lr_knot = cap * sigmoid(z)`` with ``cap = frac * plrf.max_stable_lr(spectrum, B)``
    (interpolation of the knot values keeps every step below ``cap``). Optimizers:

      - ``sgd``: ``lr_t``;
      - ``momentum`` (heavy ball, ``optax.sgd(lr, momentum=mu)``), ``mu_t = mu_max * sigmoid(y)`` and, with
        ``momentum_cap='effective'`` (default), the *effective* step ``lr_t / (1 - mu_t)`` bounded like SGD's lr,
        ``lr_t = eff_t (1 - mu_t)`` (the frozen heavy-ball map at ``(eff (1 - mu), mu)`` has a kernel norm no
        larger than SGD's at ``eff``, checked numerically by ``plrf.stability.system_edges`` in the tests); with
        ``momentum_cap='own'``, ``lr_t = frac * E(mu_t) * sigmoid(z)`` where ``E(mu)`` is heavy ball's own edge
        (the largest lr whose frozen map at momentum ``mu`` is stable, :func:`theory.hparam_laws.max_lr`),
        tabulated at 48 values of ``log(1 - mu)`` and interpolated linearly in ``log E`` (:meth:`ScheduleFamily.lr_edge`).
        At batch 1 the two caps are close (heavy ball's effective-step edge is 1.0-1.4x SGD's at every mu); at
        large batch the own edge allows effective steps up to ~``4/(lam_max (1 - mu))``, the room momentum needs
        to accelerate. Both schedules are optimised jointly;
      - ``dana-decaying``: ``g2_t`` bounded like SGD's lr, ``g3_t = g3_max * sigmoid(y)`` (the built-in
        ``(1 + t)^-kappa`` and ``Delta(t) = delta/(delta + t)`` of :func:`plrf.optimizers.dana_decaying` stay);

    with or without EMA averaging of the iterates (``ema``: a rate or ``'uniform'``; the loss is then read from
    the average).
  * optimises the free parameters with scipy's L-BFGS-B on jax gradients (:func:`optimize`), tunes the standard
    baselines (constant, cosine, linear, WSD with the cooldown fraction tuned; peak lr by bounded scalar
    minimisation in log lr) on the same exact theory (:func:`tune_baselines`), and re-evaluates every reported
    loss with ``plrf.expected_loss`` on the plain per-step arrays (not the optimiser's internal value).

Objective: ``log P(T)`` of the read-out (final loss), or the anytime objective
``sum_i w_i log P(t_i) / sum_i w_i`` over given horizons ``t_i`` (:class:`ScheduleFamily` ``horizons``).

**Closed form for one mode** (the test of :func:`optimize`; :func:`single_mode_optimal`). One mode with
eigenvalue ``lam``, batch ``B``, initial excess ``e_0 = w`` and floor ``P*`` (``P = P* + e``). The exact
recursion (:mod:`plrf.moments`, SGD) is ``e' = g(eta) e + (eta^2/B) lam^2 P`` with
``g = 1 - 2 eta lam + eta^2 lam^2 (B+1)/B``, i.e.

    e_{t+1} = F(e_t, eta_t),   F(e, eta) = e - 2 eta lam e + eta^2 lam^2 ((B+2) e + P*) / B.

``F`` is a convex quadratic in ``eta``, minimised at ``eta*(e) = B e / (lam ((B+2) e + P*))`` with value
``F*(e) = e (2 e + P*) / ((B+2) e + P*)``, and ``F*`` is increasing in ``e`` (``dF*/de > 0``). Dynamic
programming: the value function ``V_T(e) = P* + e`` is increasing; if ``V_{t+1}`` is increasing then
``V_t(e) = min_eta V_{t+1}(F(e, eta)) = V_{t+1}(F*(e))`` (minimise ``F`` first; ``F(e, eta) >= F*(e)`` and
``V_{t+1}`` is increasing), which is increasing again. So the **greedy** schedule ``eta_t = eta*(e_t)`` is
optimal for every horizon at once. With ``P* = 0`` it is the constant ``B / ((B+2) lam)`` and
``e_t = e_0 (2/(B+2))^t``; with ``P* > 0``, ``e_t -> P*/(B t)`` and ``eta_t -> 1/(lam t)``. It stays inside
the stability edge (``eta* <= B/((B+2) lam)``, half the single-mode stochastic edge ``2B/((B+2) lam)``).
"""
from __future__ import annotations

import math
import time
from typing import Dict, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import plrf
from plrf import moments
from plrf import optimizers as O
from plrf.spectrum import Spectrum

OPTIMIZERS = ("sgd", "momentum", "dana-decaying")
SPACES = ("linear", "log", "ends")
BASELINES = ("constant", "cosine", "linear", "wsd")
MOMENTUM_CAPS = ("effective", "own")   # heavy ball: lr/(1 - mu) below SGD's cap, or lr below its own edge at mu
EDGE_TABLE_POINTS = 48
UNROLL = 1      # steps per iteration of the inner scan


def _momentum_edge_table(spectrum: Spectrum, batch: int, mu_max: float):
    """``(q, log E)``: heavy ball's frozen-map lr edge ``E(mu)`` (:func:`theory.hparam_laws.max_lr`, bisection
    to 1e-6) at ``EDGE_TABLE_POINTS`` values of ``q = -log(1 - mu)`` evenly spaced on ``[0, -log(1 - mu_max)]``
    (``mu = 0``: SGD's edge)."""
    from .hparam_laws import max_lr
    q = np.linspace(0.0, -math.log1p(-mu_max), EDGE_TABLE_POINTS)
    mus = -np.expm1(-q)
    E = np.array([max_lr(spectrum, "momentum", batch, mu=float(m)) for m in mus])
    return q, np.log(E)


# ---------------------------------------------------------------------------------------------------------
# the exact loss, differentiable, with memory by checkpointing

def block_size(steps: int) -> int:
    """Steps per checkpointed block: ``ceil(sqrt(steps))`` (at least 1)."""
    return max(1, int(math.ceil(math.sqrt(steps))))


def _spec_arrays(spectrum: Spectrum):
    return (jnp.asarray(spectrum.lam, jnp.float64), jnp.asarray(spectrum.n, jnp.float64),
            jnp.asarray(spectrum.w, jnp.float64), jnp.asarray(spectrum.P_star, jnp.float64))


def per_step_values(opt: O.Optimizer, steps: int) -> Dict[str, jax.Array]:
    """Every hyper-parameter of ``opt`` at steps ``0..steps-1`` as (steps,) arrays (traced values stay traced)."""
    t = jnp.arange(steps, dtype=jnp.float64)
    out = {}
    for k, h in opt.h.items():
        v = jnp.asarray(h.value, jnp.float64)
        if h.shape is None and v.ndim == 1 and v.shape[0] == steps:
            out[k] = v
        else:
            out[k] = jnp.broadcast_to(jax.vmap(h)(t), (steps,))
    return out


def exact_loss(spectrum: Spectrum, opt: O.Optimizer, *, steps: int, batch: int = 1, record=None,
               block: Optional[int] = None):
    """The exact expected losses of every read-out of ``opt`` after ``steps`` steps (shape (r,)), and, with
    ``record`` (sorted steps in ``1..steps``), the losses at those steps too (shape (len(record), r)).

    Differentiable in reverse mode with respect to the optimizer's hyper-parameter values (per-step arrays of
    length ``steps`` or scalars); memory O((steps/block + block) x state) by checkpointing (module docstring).
    The same recursion as ``plrf.expected_loss`` (``plrf.moments.step``), not a re-derivation."""
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    m = block_size(steps) if block is None else int(block)
    nb = -(-steps // m)
    pad = nb * m - steps
    lam, n, w, P_star = _spec_arrays(spectrum)
    B = jnp.asarray(float(batch), jnp.float64)
    forced = moments.is_forced(opt)
    sys0 = opt.system(0.0)
    ts = moments.theta_star(lam, w)
    state0 = moments.init(sys0, lam, w, forced)
    vals = per_step_values(opt, steps)
    keys = tuple(sorted(vals))

    def padded(a):
        return jnp.concatenate([a, jnp.broadcast_to(a[-1], (pad,))]) if pad else a
    xs = {k: padded(vals[k]).reshape(nb, m) for k in keys}
    tt = jnp.arange(nb * m, dtype=jnp.float64).reshape(nb, m)
    live = jnp.asarray(np.arange(nb * m) < steps).reshape(nb, m)
    rec = None
    if record is not None:
        record = np.asarray(record, dtype=np.int64)
        if record.ndim != 1 or record.size == 0 or np.any(record < 1) or np.any(record > steps):
            raise ValueError(f"record must be steps in [1, {steps}], got {record}")
        flag = np.zeros(nb * m, dtype=bool)
        flag[record - 1] = True            # the loss after step t-1 is the loss at step t
        rec = jnp.asarray(flag).reshape(nb, m)
    build, extra = opt.build, opt.extra
    r_out = sys0.c_out.shape[0]

    def loss_of(state):
        return moments.losses(state[1], sys0, lam, P_star)

    def body(state, x):
        v, t, ok = x[0], x[1], x[2]
        sys = build(v, t, extra)
        new = moments.step(state, sys, lam, n, ts, P_star, B, forced)
        new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
        if rec is None:
            return new, None
        P = jax.lax.cond(x[3], loss_of, lambda s: jnp.zeros((r_out,), jnp.float64), new)
        return new, P

    @jax.checkpoint
    def run_block(state, xb):
        return jax.lax.scan(body, state, xb, unroll=UNROLL)

    xs_all = (xs, tt, live) + ((rec,) if rec is not None else ())
    final, ys = jax.lax.scan(run_block, state0, xs_all)
    P_final = loss_of(final)
    if rec is None:
        return P_final
    ys = ys.reshape(nb * m, r_out)[jnp.asarray(record - 1)]
    return P_final, ys


# ---------------------------------------------------------------------------------------------------------
# schedule parameterisation

def knot_positions(knots: int, space: str = "linear", steps: Optional[int] = None) -> np.ndarray:
    """Knot coordinates in [0, 1] (increasing, ``knots`` of them): uniform ``j/(K-1)`` for ``linear`` and
    ``log``; for ``ends`` (coordinate ``t/(T-1)``), half uniform and a quarter each log-spaced at both ends
    (``t`` and ``T-1-t`` geometric from 1 to T/4), so a warmup and the end shape ``(1 - t/T)^delta`` are resolved
    down to single steps; knots closer than one step are merged (then fewer than ``knots``)."""
    K = int(knots)
    if space != "ends":
        return np.linspace(0.0, 1.0, K)
    if steps is None:
        raise ValueError("space='ends' needs steps")
    q = max(K // 4, 1)
    n_end = max(float(steps - 1), 1.0)
    geo = np.geomspace(1.0, max(0.25 * n_end, 1.0), q) / n_end
    u = np.concatenate([np.linspace(0.0, 1.0, K - 2 * q), geo, 1.0 - geo])
    u = np.unique(np.clip(np.round(u * n_end), 0, n_end)) / n_end      # knots on steps, merged
    return u


def step_coords(steps: int, space: str) -> np.ndarray:
    """The coordinate of steps ``0..steps-1`` in [0, 1]: ``t/(T-1)`` (``linear``, ``ends``) or
    ``log(1+t)/log(T)`` (``log``); with ``knots == steps`` and ``linear`` every step is a knot."""
    t = np.arange(steps, dtype=np.float64)
    if steps == 1:
        return np.zeros(1)
    if space in ("linear", "ends"):
        return t / (steps - 1)
    if space == "log":
        return np.log1p(t) / math.log(steps)
    raise ValueError(f"space must be one of {SPACES}, got {space!r}")


def _inv_sigmoid(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


class ScheduleFamily:
    """Free parameters -> optimizer with per-step hyper-parameter arrays, for one spectrum and horizon.

    ``frac``: the lr (SGD's lr, heavy ball's effective step, DANA's g2) stays below ``frac`` times
    ``plrf.max_stable_lr(spectrum, batch)``; ``mu_max``: momentum cap; ``g3_max``: DANA's g3 cap (default
    twice the authors' value ``0.125 / tr K``); ``dana``: dict of ``delta``, ``kappa`` (default
    ``plrf.optimizers.dana_defaults``); ``ema``: averaging (rate or ``'uniform'``; the loss is read from the
    average); ``horizons``/``weights``: the anytime objective (default: the final loss only)."""

    def __init__(self, spectrum: Spectrum, *, optimizer: str = "sgd", steps: int, batch: int = 1, knots: int = 64,
                 space: str = "linear", frac: float = 0.9, mu_max: float = 0.99, g3_max: Optional[float] = None,
                 alpha: Optional[float] = None, dana: Optional[dict] = None, ema=None,
                 horizons: Optional[Sequence[int]] = None, weights: Optional[Sequence[float]] = None,
                 block: Optional[int] = None, momentum_cap: str = "effective"):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
            raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
        if isinstance(knots, bool) or not isinstance(knots, (int, np.integer)) or knots < 2:
            raise ValueError(f"knots must be an integer >= 2, got {knots!r}")
        if not (0 < frac < 1):
            raise ValueError(f"frac must be in (0, 1), got {frac!r}")
        if not (0 < mu_max < 1):
            raise ValueError(f"mu_max must be in (0, 1), got {mu_max!r}")
        self.spectrum, self.optimizer, self.steps, self.batch = spectrum, optimizer, int(steps), int(batch)
        self.knots, self.space, self.frac, self.mu_max, self.ema = int(knots), space, float(frac), float(mu_max), ema
        if momentum_cap not in MOMENTUM_CAPS:
            raise ValueError(f"momentum_cap must be one of {MOMENTUM_CAPS}, got {momentum_cap!r}")
        if momentum_cap == "own" and optimizer != "momentum":
            raise ValueError(f"momentum_cap='own' needs optimizer='momentum', got {optimizer!r}")
        self.momentum_cap = momentum_cap
        self.edge = plrf.max_stable_lr(spectrum, self.batch)
        self.cap = self.frac * self.edge
        if momentum_cap == "own":
            self.edge_q, self.edge_logE = _momentum_edge_table(spectrum, self.batch, self.mu_max)
        self.u = knot_positions(self.knots, space, self.steps)
        self.knots = int(self.u.size)            # 'ends' merges knots closer than a step
        self.x = step_coords(self.steps, space)
        self.block = block
        trace = spectrum.trace
        dd = O.dana_defaults(trace, int(round(spectrum.d)), alpha if alpha else 1.0, 0.0)
        self.dana = {"delta": dd["delta"], "kappa": dd["kappa"], **(dana or {})}
        if optimizer == "dana-decaying" and alpha is None and (dana is None or "kappa" not in dana):
            raise ValueError("dana-decaying needs alpha (kappa = 1/(2 alpha)) or dana={'kappa': ...}")
        self.g3_max = float(g3_max) if g3_max is not None else 2.0 * dd["g3_decaying"]
        if horizons is None:
            self.horizons, self.weights = None, None
        else:
            h = np.unique(np.asarray(horizons, dtype=np.int64))
            if h.size == 0 or h[0] < 1 or h[-1] > steps:
                raise ValueError(f"horizons must be steps in [1, {steps}]")
            wts = np.ones(h.size) if weights is None else np.asarray(weights, dtype=np.float64)
            if wts.shape != h.shape or np.any(wts < 0) or not np.any(wts > 0):
                raise ValueError("weights must be >= 0, one per horizon, not all 0")
            self.horizons, self.weights = h, wts / wts.sum()
        self.readout = 1 if ema is not None else 0
        self._vg = None
        self._loss_of_arrays = None
        self._probes = None

    # -- parameters
    @property
    def names(self):
        return {"sgd": ("lr",), "momentum": ("lr", "mu"), "dana-decaying": ("g2", "g3")}[self.optimizer]

    @property
    def n_params(self) -> int:
        return len(self.names) * self.knots

    def lr_edge(self, mu):
        """Heavy ball's own lr edge ``E(mu)`` (``momentum_cap='own'``): the tabulated frozen-map edge,
        interpolated linearly in ``log E`` against ``log(1 - mu)`` (jnp; traced ``mu``)."""
        q = -jnp.log1p(-jnp.asarray(mu, jnp.float64))
        return jnp.exp(jnp.interp(q, jnp.asarray(self.edge_q), jnp.asarray(self.edge_logE)))

    def eff_cap(self, mu: float) -> float:
        """The bound of heavy ball's effective step ``lr/(1 - mu)`` at a fixed ``mu`` (the baselines' peak bound);
        SGD's lr cap for the other optimizers."""
        if self._own():
            return float(self.frac * self.lr_edge(mu)) / (1.0 - float(mu))
        return self.cap

    def params_from_knots(self, **knot_values) -> np.ndarray:
        """Free parameters from knot values (``lr=`` (SGD's lr, heavy ball's *effective* step, DANA's ``g2=``),
        ``mu=``, ``g3=``), each a number or (K,) array inside its bound."""
        vals = {name: np.broadcast_to(np.asarray(knot_values[name], dtype=np.float64), (self.knots,))
                for name in self.names}
        out = []
        for name in self.names:
            capv = {"lr": self.cap, "g2": self.cap, "mu": self.mu_max, "g3": self.g3_max}[name]
            if name == "lr" and self._own():
                mu = vals["mu"]
                capv = self.frac * np.asarray(self.lr_edge(mu)) / (1.0 - mu)
            out.append(_inv_sigmoid(vals[name] / capv))
        return np.concatenate(out)

    def _fractions(self, z):
        z = jnp.asarray(z, jnp.float64).reshape(len(self.names), self.knots)
        return {name: jax.nn.sigmoid(z[i]) for i, name in enumerate(self.names)}

    def _own(self) -> bool:
        return self.optimizer == "momentum" and self.momentum_cap == "own"

    def knot_values(self, z) -> Dict[str, jax.Array]:
        """Knot values of each schedule (bounded by the sigmoids; heavy ball's ``lr`` is its effective step)."""
        fr = self._fractions(z)
        if self._own():
            mu = self.mu_max * fr["mu"]
            return {"lr": self.frac * self.lr_edge(mu) * fr["lr"] / (1.0 - mu), "mu": mu}
        caps = {"lr": self.cap, "g2": self.cap, "mu": self.mu_max, "g3": self.g3_max}
        return {name: caps[name] * v for name, v in fr.items()}

    def per_step(self, z) -> Dict[str, jax.Array]:
        """Per-step arrays (length T): ``lr`` (the optimizer's own lr; heavy ball: ``eff (1 - mu)``), ``mu``,
        ``eff`` (heavy ball's effective step), ``g2``, ``g3`` as applicable."""
        x, u = jnp.asarray(self.x), jnp.asarray(self.u)
        if self._own():     # the fraction of the own edge and mu interpolated per step, then lr = frac E(mu) s
            fr = self._fractions(z)
            mu = jnp.interp(x, u, self.mu_max * fr["mu"])
            lr = self.frac * self.lr_edge(mu) * jnp.interp(x, u, fr["lr"])
            return {"lr": lr, "mu": mu, "eff": lr / (1.0 - mu)}
        kv = self.knot_values(z)
        s = {k: jnp.interp(x, u, v) for k, v in kv.items()}
        if self.optimizer == "momentum":
            s["eff"] = s["lr"]
            s["lr"] = s["eff"] * (1.0 - s["mu"])
        return s

    def build(self, arrays) -> O.Optimizer:
        """The plrf optimizer with these per-step arrays (traced or numpy)."""
        if self.optimizer == "sgd":
            return O.sgd(arrays["lr"], ema=self.ema)
        if self.optimizer == "momentum":
            return O.momentum(arrays["lr"], arrays["mu"], ema=self.ema)
        return O.dana_decaying(arrays["g2"], arrays["g3"], delta=self.dana["delta"], kappa=self.dana["kappa"],
                               ema=self.ema)

    def optimizer_of(self, z) -> O.Optimizer:
        return self.build(self.per_step(z))

    def frozen_stable(self, z) -> bool:
        """Whether the frozen map of the schedule ``z`` is stable at the probe steps (``plrf.stability.check_system``
        on ``plrf.log_grid`` with 4 steps per decade, and the last step). Only DANA needs it: its g3 cap does not
        bound the joint (g2_t, g3_t) edge -- with g2_t -> 0 the momentum is undamped and the frozen kernel norm
        grows with t (1.23 at t = 1e4 for g3 = 0.076, d = 4096); the other optimizers' bounds keep every step
        inside their edge."""
        if self.optimizer != "dana-decaying":
            return True
        from plrf.stability import check_system
        if self._probes is None:
            num = 4 * max(1, math.ceil(math.log10(self.steps)))
            g = plrf.log_grid(self.steps, num)
            self._probes = np.unique(np.concatenate([g[g < self.steps], [self.steps - 1]]))
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in self.per_step(z).items()}
        try:
            check_system(self.spectrum, self.build(arrays), self.batch, self._probes)
        except ValueError:
            return False
        return True

    # -- objective
    def objective_of_optimizer(self, opt):
        """``log P(T)`` of the read-out, or the anytime average of ``log P(t_i)``."""
        kw = dict(steps=self.steps, batch=self.batch, block=self.block)
        if self.horizons is None:
            P = exact_loss(self.spectrum, opt, **kw)[self.readout]
            return jnp.log(P)
        _, Ps = exact_loss(self.spectrum, opt, record=self.horizons, **kw)
        return jnp.sum(jnp.asarray(self.weights) * jnp.log(Ps[:, self.readout]))

    def objective(self, z):
        return self.objective_of_optimizer(self.optimizer_of(z))

    def value_and_grad(self, z):
        """``(objective, gradient)`` as numpy (compiled once per family)."""
        if self._vg is None:
            self._vg = jax.jit(jax.value_and_grad(self.objective))
        v, g = self._vg(jnp.asarray(z, jnp.float64))
        return float(v), np.asarray(g, dtype=np.float64)

    def objective_of_arrays(self, arrays) -> float:
        """The objective of plain per-step arrays (the same compiled program for every call)."""
        if self._loss_of_arrays is None:
            self._loss_of_arrays = jax.jit(lambda a: self.objective_of_optimizer(self.build(a)))
        return float(self._loss_of_arrays({k: jnp.asarray(v, jnp.float64) for k, v in arrays.items()}))


# ---------------------------------------------------------------------------------------------------------
# optimisation

class Optimum(NamedTuple):
    z: np.ndarray                 # free parameters
    knots: Dict[str, np.ndarray]  # knot values of each schedule
    arrays: Dict[str, np.ndarray]  # per-step arrays (lr, mu, eff, g2, g3 as applicable)
    objective: float              # the optimiser's objective (log loss) at the optimum
    final_loss: float             # re-evaluated with plrf.expected_loss on the plain per-step arrays
    iterations: int
    evaluations: int
    seconds: float
    message: str


def optimize(fam: ScheduleFamily, z0=None, *, maxiter: int = 500, gtol: float = 1e-10, ftol: float = 1e-15,
             verbose: bool = False) -> Optimum:
    """Minimise the family's objective with scipy L-BFGS-B on jax gradients (no hand-written optimiser).
    ``z0``: start (default: every schedule at half its cap; momentum 0.5 mu_max). Non-finite objective
    values (a step past an edge) and DANA schedules whose frozen map is unstable at a probe step
    (:meth:`ScheduleFamily.frozen_stable`) are returned as +1e30 with a zero gradient so the line search backs off."""
    from scipy.optimize import minimize
    t0 = time.time()
    if z0 is None:
        z0 = fam.params_from_knots(lr=0.5 * fam.cap, g2=0.5 * fam.cap, mu=0.5 * fam.mu_max, g3=0.5 * fam.g3_max)
    count = [0]

    def f(z):
        count[0] += 1
        v, g = fam.value_and_grad(z)
        if not (np.isfinite(v) and np.all(np.isfinite(g))) or not fam.frozen_stable(z):
            return 1e30, np.zeros_like(z)
        if verbose and count[0] % 25 == 0:
            print(f"  eval {count[0]}: objective {v:.10g}, |grad| {np.max(np.abs(g)):.3g}")
        return v, g
    res = minimize(f, np.asarray(z0, dtype=np.float64), jac=True, method="L-BFGS-B",
                   options=dict(maxiter=maxiter, maxfun=2 * maxiter + 50, gtol=gtol, ftol=ftol, maxcor=30))
    z = np.asarray(res.x)
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in fam.per_step(z).items()}
    knots = {k: np.asarray(v, dtype=np.float64) for k, v in fam.knot_values(z).items()}
    final = evaluate(fam, arrays)
    return Optimum(z, knots, arrays, float(res.fun), final, int(res.nit), count[0], time.time() - t0,
                   str(res.message))


def loss_curve(fam: ScheduleFamily, arrays, *, num: int = 100):
    """``(steps, loss)`` of the read-out on ``plrf.log_grid(T, num)`` (the same grid for every schedule of a
    horizon: one compiled program), from ``plrf.expected_loss`` on the plain per-step arrays (numpy; plrf's
    stability check applies: an unstable schedule raises)."""
    opt = fam.build({k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})
    curve = plrf.expected_loss(fam.spectrum, opt, steps=fam.steps, batch=fam.batch,
                               grid=plrf.log_grid(fam.steps, num))
    loss = curve.readouts["average"][0] if fam.readout else curve.loss
    return np.asarray(curve.steps), np.asarray(loss)


def evaluate(fam: ScheduleFamily, arrays, *, num: int = 100) -> float:
    """The final loss of the read-out, re-evaluated with ``plrf.expected_loss`` (:func:`loss_curve`)."""
    return float(loss_curve(fam, arrays, num=num)[1][-1])


# ---------------------------------------------------------------------------------------------------------
# baselines

def unit_shape(name: str, steps: int, cooldown: float = 0.2) -> np.ndarray:
    """Per-step unit-peak shape of a baseline from :mod:`plrf.schedules` at steps ``0..steps-1``."""
    from plrf import schedules as S
    if name == "constant":
        return np.ones(steps)
    f = {"cosine": lambda: S.cosine(1.0, steps), "linear": lambda: S.linear(1.0, steps),
         "wsd": lambda: S.wsd(1.0, steps, cooldown=cooldown)}[name]()
    return np.asarray(jax.vmap(f)(jnp.arange(steps)), dtype=np.float64)


class Baseline(NamedTuple):
    name: str
    peak: float            # tuned peak (SGD lr; heavy ball: effective step; DANA: g2)
    cooldown: Optional[float]
    objective: float
    final_loss: float      # re-evaluated with plrf.expected_loss
    arrays: Dict[str, np.ndarray]


def _baseline_arrays(fam: ScheduleFamily, shape: np.ndarray, peak: float, mu: float, g3: float):
    lr = peak * shape
    if fam.optimizer == "sgd":
        return {"lr": lr}
    if fam.optimizer == "momentum":
        return {"lr": lr * (1.0 - mu), "mu": np.full(fam.steps, mu), "eff": lr}
    # DANA: g3 follows the same shape (cooling g2 alone leaves the momentum almost undamped at the end, a frozen map
    # past its stochastic edge at long horizons; as the log-time path, theory.logtime_grad_optim)
    return {"g2": lr, "g3": g3 * shape}


def tune_peak(fam: ScheduleFamily, shape: np.ndarray, *, mu: float = 0.9, g3: Optional[float] = None,
              lo: float = 1e-4, xtol: float = 1e-4):
    """``(peak, objective)``: the peak minimising the objective for a fixed shape, by bounded scalar
    minimisation (scipy) in ``log peak`` over ``[lo * cap, cap]`` after a coarse scan (the objective can be
    flat or multimodal in log peak near an edge)."""
    from scipy.optimize import minimize_scalar
    g3 = 0.5 * fam.g3_max if g3 is None else g3

    def obj(lp):
        v = fam.objective_of_arrays(_baseline_arrays(fam, shape, math.exp(lp), mu, g3))
        return v if np.isfinite(v) else 1e30
    cap = fam.eff_cap(mu)
    grid = np.linspace(math.log(lo * cap), math.log(cap), 17)
    vals = np.array([obj(x) for x in grid])
    i = int(np.argmin(vals))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    if a == b:
        return math.exp(grid[i]), float(vals[i])
    res = minimize_scalar(obj, bounds=(a, b), method="bounded", options=dict(xatol=xtol))
    if res.fun <= vals[i]:
        return math.exp(res.x), float(res.fun)
    return math.exp(grid[i]), float(vals[i])


def tune_baselines(fam: ScheduleFamily, *, names=BASELINES, cooldowns=(0.05, 0.1, 0.2, 0.3, 0.5, 0.7),
                   mu: float = 0.9, g3: Optional[float] = None, reevaluate: bool = True) -> Dict[str, Baseline]:
    """Each baseline with its peak tuned (and WSD's cooldown fraction tuned on ``cooldowns``, then refined by
    bounded scalar minimisation between the neighbours of the best grid value); ``final_loss`` re-evaluated
    with ``plrf.expected_loss``. Heavy ball keeps ``mu`` fixed (the peak is its effective step), DANA ``g3``."""
    from scipy.optimize import minimize_scalar
    out = {}
    g3 = 0.5 * fam.g3_max if g3 is None else g3
    for name in names:
        if name != "wsd":
            shape = unit_shape(name, fam.steps)
            peak, val = tune_peak(fam, shape, mu=mu, g3=g3)
            cd = None
        else:
            tried = {}

            def over_c(c):
                if c not in tried:
                    tried[c] = tune_peak(fam, unit_shape("wsd", fam.steps, c), mu=mu, g3=g3)
                return tried[c][1]
            vals = [over_c(c) for c in cooldowns]
            i = int(np.argmin(vals))
            lo_c = cooldowns[i - 1] if i > 0 else 0.5 * cooldowns[0]
            hi_c = cooldowns[i + 1] if i + 1 < len(cooldowns) else 1.0
            minimize_scalar(over_c, bounds=(lo_c, hi_c), method="bounded", options=dict(xatol=0.01))
            cd = min(tried, key=lambda c: tried[c][1])
            peak, val = tried[cd]
            shape = unit_shape("wsd", fam.steps, cd)
        arrays = _baseline_arrays(fam, shape, peak, mu, g3)
        final = evaluate(fam, arrays) if reevaluate else float(math.exp(val))
        out[name] = Baseline(name, float(peak), cd, float(val), final, arrays)
    return out


# ---------------------------------------------------------------------------------------------------------
# the single-mode closed form (module docstring)

# ---------------------------------------------------------------------------------------------------------
# horizon-free schedules (Meterez et al. 2026): one power-law lr with iterate averaging against every horizon

HORIZON_FREE = {   # variant -> (free decay exponent, averaging: None, "uniform" or "tail")
    "power+average": (True, "uniform"),      # lr_t = peak (1 + t/t0)^-gamma, loss of the uniform average
    "power": (True, None),                   # the same schedule, loss of the last iterate
    "constant+average": (False, "uniform"),  # gamma = 0: constant lr, loss of the uniform average
    "power+tail-average": (True, "tail"),    # the average with rho_t = c/(t + c), c >= 1 tuned (forgets early steps)
    "constant+tail-average": (False, "tail"),
}
GAMMA_MAX = 1.5
C_MAX = 1000.0     # the tail average's c: rho_t = c/(t + c); c = 1 is the uniform average


def power_lr(peak, gamma, t0, steps: int):
    """``peak (1 + t/t0)^-gamma`` at steps ``0..steps-1`` (jnp; traced parameters)."""
    t = jnp.arange(steps, dtype=jnp.float64)
    return peak * (1.0 + t / t0) ** (-gamma)


def horizon_free(spectrum: Spectrum, horizons, targets, *, variant: str = "power+average", batch: int = 1,
                 frac: float = 0.9, maxiter: int = 100) -> dict:
    """One schedule for every horizon: ``lr_t = peak (1 + t/t0)^-gamma`` (``peak <= frac x`` the stability edge,
    ``0 <= gamma <= 1.5``, ``1 <= t0 <= max(horizons)``), the loss read from the uniform average of the iterates
    (``plrf.optimizers.sgd(lr, ema='uniform')``), from a tail average (``ema`` rate ``rho_t = c/(t + c)``,
    ``1 <= c <= 1000`` tuned: weights growing like ``t^(c-1)``, a window that is a fixed fraction of the run, the
    "half-life proportional to t" averaging of Meterez et al.) or the last iterate (``variant``,
    :data:`HORIZON_FREE`), tuned
    once to minimise ``mean_i log(P(T_i) / targets_i)`` (``targets``: e.g. the per-horizon optimal losses) by
    L-BFGS-B on jax gradients through :func:`exact_loss` (every horizon read off one run to ``max(horizons)``).
    Returns ``peak``, ``gamma``, ``t0``, ``losses`` (per horizon), ``ratio`` (``losses / targets``), ``seconds``.
    A ratio near 1 at every horizon is the claim of Meterez et al. (2026) that a horizon-free power-law lr with
    weight averaging matches the best horizon-aware schedule."""
    from scipy.optimize import minimize
    from scipy.special import expit
    if variant not in HORIZON_FREE:
        raise ValueError(f"variant must be one of {tuple(HORIZON_FREE)}, got {variant!r}")
    T = np.asarray(sorted(int(h) for h in horizons), np.int64)
    tg = np.asarray(targets, np.float64)
    if T.size < 1 or tg.shape != T.shape or np.any(tg <= 0):
        raise ValueError("horizon_free: targets must be positive, one per horizon")
    free_gamma, averaging = HORIZON_FREE[variant]
    average = averaging is not None
    t0 = time.time()
    steps = int(T[-1])
    cap = frac * plrf.max_stable_lr(spectrum, batch)
    col = 1 if average else 0
    log_tg = jnp.asarray(np.log(tg))

    def unpack(z):
        peak = cap * jax.nn.sigmoid(z[0])
        gamma = GAMMA_MAX * jax.nn.sigmoid(z[1]) if free_gamma else jnp.float64(0.0)
        return peak, gamma, jnp.exp(z[2]), jnp.exp(z[3])

    def ema_of(c):
        if averaging == "tail":
            return c / (jnp.arange(steps, dtype=jnp.float64) + c)
        return "uniform"

    @jax.jit
    def vg(z):
        def f(z):
            peak, gamma, tz, c = unpack(z)
            opt = O.sgd(power_lr(peak, gamma, tz, steps), ema=ema_of(c))
            _, P = exact_loss(spectrum, opt, steps=steps, batch=batch, record=T)
            return jnp.mean(jnp.log(P[:, col]) - log_tg)
        return jax.value_and_grad(f)(z)

    def fun(z):
        v, g = vg(jnp.asarray(z))
        v, g = float(v), np.asarray(g)
        return (v, g) if math.isfinite(v) and np.all(np.isfinite(g)) else (1e30, np.zeros_like(g))
    bounds = [(-20, 20), (-20, 20) if free_gamma else (0, 0), (0.0, math.log(steps)),
              (0.0, math.log(C_MAX)) if averaging == "tail" else (0, 0)]
    best = None
    for z0 in ([2.0, -0.5, math.log(10.0), 1.0], [2.0, 0.5, 0.5 * math.log(steps), 2.5]):
        if not free_gamma:
            z0[1] = 0.0
        if averaging != "tail":
            z0[3] = 0.0
        r = minimize(fun, np.asarray(z0), jac=True, method="L-BFGS-B", bounds=bounds,
                     options=dict(maxiter=maxiter, ftol=1e-13, gtol=1e-10))
        if best is None or r.fun < best.fun:
            best = r
    peak, gamma, tz, c = (float(x) for x in unpack(jnp.asarray(best.x)))
    ema = np.asarray(ema_of(c)) if averaging == "tail" else "uniform"
    P = plrf.expected_loss(spectrum, O.sgd(np.asarray(power_lr(peak, gamma, tz, steps)), ema=ema),
                           steps=steps, batch=batch, grid=np.concatenate([[0], T]))
    losses = np.asarray(P.readouts["average"][0] if average else P.loss)[1:]
    return dict(variant=variant, peak=peak, gamma=gamma, t0=tz, c=c if averaging == "tail" else None,
                peak_over_cap=peak / cap, horizons=T.tolist(),
                losses=losses.tolist(), ratio=(losses / tg).tolist(), iterations=int(best.nit),
                seconds=time.time() - t0)


def single_mode_optimal(lam: float, w: float, P_star: float, steps: int, batch: int = 1):
    """``(eta_t for t < steps, e_t for t <= steps)``: the greedy = optimal schedule of one mode (module
    docstring) and its excess losses ``e_t = P_t - P*``."""
    B = float(batch)
    e = np.empty(steps + 1)
    eta = np.empty(steps)
    e[0] = w
    for t in range(steps):
        eta[t] = B * e[t] / (lam * ((B + 2.0) * e[t] + P_star))
        e[t + 1] = e[t] * (2.0 * e[t] + P_star) / ((B + 2.0) * e[t] + P_star)
    return eta, e


# ---------------------------------------------------------------------------------------------------------
# shape fits (laws)

class Shape(NamedTuple):
    peak: float            # max lr
    peak_step: int
    delta: float           # end shape lr ~ (1 - t/T)^delta, fitted on 1 - t/T in [end_lo, end_hi]
    delta_err: float
    decay_fraction: float  # (T - last step with lr >= 0.5 peak) / T
    decay_fraction_90: float  # the same at 0.9 peak
    end_window: tuple


def fit_shape(lr: np.ndarray, *, end_lo: float = 0.02, end_hi: float = 0.3, t=None, steps: Optional[int] = None) -> Shape:
    """Fit the end shape ``lr_t ~ c (1 - t/T)^delta`` by least squares of ``log lr`` against
    ``log(1 - t/T)`` on ``1 - t/T in [end_lo, end_hi]`` (the last steps, where a piecewise-linear knot grid is
    coarse, excluded), and the decay fractions.

    ``lr``: every step ``0..T-1``; or, with ``t`` (increasing steps) and ``steps = T``, samples at those steps
    (horizons too long for per-step arrays: the decay fractions are then exact to the sample spacing near the
    end, and the fit uses the samples in the window)."""
    lr = np.asarray(lr, dtype=np.float64)
    if t is None:
        T = lr.size
        t = np.arange(T)
    else:
        t = np.asarray(t, dtype=np.float64)
        if steps is None or t.shape != lr.shape:
            raise ValueError("fit_shape: samples need steps= and t of lr's shape")
        T = int(steps)
    s = 1.0 - t / T
    sel = (s >= end_lo) & (s <= end_hi) & (lr > 0)
    if sel.sum() >= 3:
        X = np.log(s[sel])
        Y = np.log(lr[sel])
        A = np.vstack([X, np.ones_like(X)]).T
        coef, res, *_ = np.linalg.lstsq(A, Y, rcond=None)
        resid = Y - A @ coef
        dof = max(sel.sum() - 2, 1)
        cov = np.linalg.inv(A.T @ A) * float(resid @ resid) / dof
        delta, err = float(coef[0]), float(math.sqrt(max(cov[0, 0], 0.0)))
    else:
        delta, err = float("nan"), float("nan")
    ip = int(np.argmax(lr))
    peak = float(lr[ip])

    def frac_below(level):
        above = np.nonzero(lr >= level * peak)[0]
        return float((T - 1 - t[above[-1]]) / T) if above.size else 1.0
    return Shape(peak, int(t[ip]), delta, err, frac_below(0.5), frac_below(0.9), (end_lo, end_hi))


def power_fit(x, y):
    """``(slope, slope_err)`` of ``log y`` against ``log x`` (least squares)."""
    X, Y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    A = np.vstack([X, np.ones_like(X)]).T
    coef, *_ = np.linalg.lstsq(A, Y, rcond=None)
    if X.size <= 2:
        return float(coef[0]), float("nan")
    resid = Y - A @ coef
    cov = np.linalg.inv(A.T @ A) * float(resid @ resid) / (X.size - 2)
    return float(coef[0]), float(math.sqrt(max(cov[0, 0], 0.0)))


# ---------------------------------------------------------------------------------------------------------
# one horizon, end to end; laws across horizons; published predictions

def anytime_horizons(steps: int, num: int = 32) -> np.ndarray:
    """The horizons of the anytime objective: ``num`` log-spaced steps from ``min(10, T)`` to ``T``."""
    return np.unique(np.round(np.geomspace(min(10, steps), steps, num)).astype(np.int64))


def solve_horizon(fam: ScheduleFamily, *, z0=None, maxiter: int = 300, baselines: bool = True, mu: float = 0.9,
                  cooldowns=(0.05, 0.1, 0.2, 0.3, 0.5, 0.7), num: int = 100) -> dict:
    """Optimise one horizon and tune the baselines; every loss re-evaluated by ``plrf.expected_loss``.
    Returns a plain dict (numbers and numpy arrays): ``steps``, ``final_loss``, ``objective_loss`` (the
    optimiser's own ``exp(objective)``), ``arrays`` (per-step), ``knots``, ``z``, ``shape`` (fit_shape),
    ``baselines`` (name -> dict of ``final_loss``, ``peak``, ``cooldown``), ``best_baseline``, ``saving``
    (``1 - final/best``), ``excess_saving`` (the same for ``P - P*``), ``curve_steps``/``curve_loss`` of the
    optimum and of each baseline, iterations and seconds."""
    t0 = time.time()
    res = optimize(fam, z0, maxiter=maxiter)
    lr_main = res.arrays["eff"] if fam.optimizer == "momentum" else res.arrays[fam.names[0]]
    shape = fit_shape(lr_main)
    cs, cl = loss_curve(fam, res.arrays, num=num)
    rec = dict(steps=fam.steps, final_loss=float(cl[-1]), objective_loss=float(math.exp(res.objective)),
               arrays=res.arrays, knots=res.knots, z=res.z, shape=shape._asdict(), iterations=res.iterations,
               evaluations=res.evaluations, optimize_seconds=res.seconds, message=res.message,
               curve_steps=cs, curve_loss=cl, edge=fam.edge, cap=fam.cap, P_star=float(fam.spectrum.P_star))
    if baselines:
        t1 = time.time()
        base = tune_baselines(fam, mu=mu, cooldowns=cooldowns)
        rec["baseline_seconds"] = time.time() - t1
        rec["baselines"] = {k: dict(final_loss=b.final_loss, peak=b.peak, cooldown=b.cooldown) for k, b in base.items()}
        rec["baseline_curves"] = {k: loss_curve(fam, b.arrays, num=num)[1] for k, b in base.items()}
        rec["baseline_lr"] = {k: (b.arrays["eff"] if fam.optimizer == "momentum" else b.arrays[fam.names[0]])
                              for k, b in base.items()}
        best = min(base, key=lambda k: base[k].final_loss)
        bl = base[best].final_loss
        P_star = float(fam.spectrum.P_star)
        rec.update(best_baseline=best, saving=1.0 - res.final_loss / bl,
                   excess_saving=1.0 - (res.final_loss - P_star) / (bl - P_star))
    rec["seconds"] = time.time() - t0
    return rec


def predictions(alpha: float, beta: float) -> dict:
    """Published exponents mapped to PLRF, derived symbolically (sympy).

    Li et al. 2026 (functional scaling laws; abstract and theorem statements as published): source exponent
    ``s``, capacity ``b_F``; easy iff ``s >= 1 - 1/b_F``; then ``eta* = eta_peak (1 - z/N)^(2 b_F - 1)``,
    ``eta_peak ~ N^-nu`` with ``nu = (s b_F - b_F + 1)/(s b_F + 1)`` and the (minimax) loss rate
    ``N^-(s b_F/(s b_F + 1))``; hard: WSD with a vanishing decay fraction and ``E ~ N^-s``. PLRF -> FSL as in
    ``theory.schedule_laws.fsl_params``: ``b_F = 2 alpha``, ``s = (2 alpha + 2 beta - 1)/(2 alpha)``. Their
    setting has label noise ``sigma^2 > 0`` and infinitely many features; in PLRF the noise floor is ``P*(d)``
    (it enters the gradient noise like label noise) and the spectrum stops at d modes, so these are the
    exponents of the window where the loss is near ``P*`` while fewer than d modes are learned.

    Noiseless window (our derivation, not from the papers): while ``P >> P*`` the gradient noise is
    proportional to the loss itself, so a constant lr scales the noise and the signal alike; the best peak does
    not depend on T (``xi = 0``) and the loss follows the signal term, ``(eta T)^-s`` (Li et al.'s hard-regime
    rate, the PLRF ``F_pp`` exponent ``1 + (2 beta - 1)/(2 alpha)``).

    Bordelon & Mori 2026: ``eta* ~ T^-xi (1 - t/T)^delta`` (easy) and WSD with a T-independent peak (hard);
    their formulas for ``xi``, ``delta`` and the phase boundary were not accessible here (abstract only):
    reported as None."""
    import sympy as sp
    a, b = sp.symbols("alpha beta", positive=True)
    bF = 2 * a
    s = (2 * a + 2 * b - 1) / (2 * a)
    nu = sp.simplify((s * bF - bF + 1) / (s * bF + 1))
    rate = sp.simplify(s * bF / (s * bF + 1))
    delta = sp.simplify(2 * bF - 1)
    margin = sp.simplify(s - (1 - 1 / bF))
    sub = {a: alpha, b: beta}
    easy = bool(float(margin.subs(sub)) >= 0)
    return dict(
        li_mapping=dict(capacity=str(bF), source=str(sp.simplify(s))),
        li_easy_condition=f"{sp.simplify(margin)} >= 0",
        li_easy=easy,
        li_delta=float(delta.subs(sub)) if easy else None, li_delta_expr=str(delta),
        li_nu=float(nu.subs(sub)) if easy else 0.0, li_nu_expr=str(nu),
        li_loss_exponent=float(rate.subs(sub)) if easy else float(s.subs(sub)),
        li_loss_exponent_expr=str(rate) if easy else str(sp.simplify(s)),
        noiseless_xi=0.0, noiseless_loss_exponent=float(s.subs(sub)), noiseless_loss_exponent_expr=str(sp.simplify(s)),
        bordelon_mori_xi=None, bordelon_mori_delta=None,
        bordelon_mori_note="formulas not accessible (abstract only): eta* ~ T^-xi (1 - t/T)^delta (easy), "
                           "WSD with T-independent peak and vanishing decay fraction (hard)")


def fit_laws(records: Sequence[dict]) -> dict:
    """Across horizons (>= 2 records): slopes of ``log peak``, ``log P(T)`` and ``log(P(T) - P*)`` against
    ``log T`` (over all horizons and over the last two: a local slope), the end exponents and decay fractions
    per horizon. Horizons marked ``resolved = False`` (log-time solves at the floor, see
    :func:`theory.logtime_grad.solve_horizon_logtime`) are listed but left out of the slopes."""
    recs = sorted(records, key=lambda r: r["steps"])
    T = np.array([r["steps"] for r in recs], dtype=float)
    peak = np.array([r["shape"]["peak"] for r in recs])
    P = np.array([r["final_loss"] for r in recs])
    exc = P - np.array([r["P_star"] for r in recs])
    out = dict(steps=T.astype(int).tolist(), peak=peak.tolist(), final_loss=P.tolist(), excess=exc.tolist(),
               delta=[r["shape"]["delta"] for r in recs], delta_err=[r["shape"]["delta_err"] for r in recs],
               decay_fraction=[r["shape"]["decay_fraction"] for r in recs],
               decay_fraction_90=[r["shape"]["decay_fraction_90"] for r in recs],
               peak_over_edge=(peak / np.array([r["edge"] for r in recs])).tolist(),
               saving=[r.get("saving") for r in recs], excess_saving=[r.get("excess_saving") for r in recs],
               resolved=[r.get("resolved", True) for r in recs])
    use = np.array(out["resolved"], bool)
    if len(recs) >= 2:
        for name, y in (("peak", peak), ("loss", P), ("excess", exc)):
            ok = (y > 0) & use
            s, e = power_fit(T[ok], y[ok]) if ok.sum() >= 2 else (float("nan"), float("nan"))
            out[f"{name}_slope"], out[f"{name}_slope_err"] = s, e
            j = np.nonzero(ok)[0]
            out[f"{name}_slope_last"] = float(np.log(y[j[-1]] / y[j[-2]]) / np.log(T[j[-1]] / T[j[-2]])) \
                if j.size >= 2 else float("nan")
        base = [min(r["baselines"].values(), key=lambda b: b["final_loss"])["final_loss"]
                for r in recs if "baselines" in r]
        if len(base) == len(recs):
            bexc = np.array(base) - np.array([r["P_star"] for r in recs])
            out["best_baseline_loss"] = base
            ok = (bexc > 0) & use
            out["best_baseline_excess_slope"] = power_fit(T[ok], bexc[ok])[0] if ok.sum() >= 2 else float("nan")
    return out
