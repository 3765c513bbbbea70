"""The exact expected loss of one-pass SGD on PLRF as a discrete Volterra equation.

Per mode (Paquette, Paquette, Xiao, Pennington 2024, "4+3 phases"; exact given ``W``, see notes section 2):
    e_k(r+1) = g_k(eta_r) e_k(r) + n_k (eta_r^2 / B) lam_k^2 P(r),      e_k(0) = w_k,
    P(r) = P* + sum_k e_k(r),      g_k(eta) = 1 - 2 eta lam_k + eta^2 lam_k^2 (B+1)/B.
Unrolling the linear recursion for a constant ``eta`` (``g_k^j`` is the decay over ``j`` steps):
    e_k(r) = g_k^r w_k + sum_{s<r} g_k^(r-1-s) n_k (eta^2/B) lam_k^2 P(s)
so that
    P(r) = F(r) + sum_{s<r} Kr(r-1-s) P(s),
    F(r)  = P* + sum_k w_k g_k^r                         (forcing: the noiseless, full-batch loss)
    Kr(r) = (eta^2/B) sum_k n_k lam_k^2 g_k^r            (kernel: SGD noise fed back into the loss).
The step ``s`` enters ``P(r)`` through ``Kr(r - 1 - s)``: ``P(s)`` is injected at step ``s`` and then decays
over the ``r - 1 - s`` later steps.  ``||Kr|| = sum_r Kr(r) = sum_k n_k (eta/B) lam_k / (2 - eta lam_k (B+1)/B)``
and, when ``||Kr|| < 1``, ``P(inf) = P* / (1 - ||Kr||)`` (plrf.stability).  Past the stochastic edge the loss
grows like ``rho^r`` with ``sum_k n_k (eta^2/B) lam_k^2 / (rho - g_k) = 1`` (renewal equation, ``rho > 1``).

Solvers here: :func:`solve_exact` (the per-step recursion of :mod:`plrf.moments`, any schedule or linear
optimizer of :mod:`plrf.optimizers`, O(d) per step for SGD) and
:func:`solve_volterra_direct` (the O(steps^2) unrolled sum, an independent reference for small runs).
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

import plrf
from plrf import moments as pm, optimizers as _opt
from plrf.simulate import check_optimizer
from plrf.spectrum import Spectrum
from plrf.stability import check_lr, kernel_norm as _kernel_norm, limit_loss as _limit_loss

jax.config.update("jax_enable_x64", True)

CHUNK = 1 << 15  # steps per jitted scan in solve_exact


class Curve(NamedTuple):
    """Loss on a step grid. ``lr`` is the learning rate at the grid steps."""
    steps: np.ndarray  # (n,) int64
    loss: np.ndarray   # (n,) float64
    lr: np.ndarray     # (n,) float64
    readouts: Optional[dict] = None  # further read-outs (the average, schedule-free's z): name -> losses

    @property
    def final(self) -> float:
        return float(self.loss[-1])


# ---------------------------------------------------------------------------------------------------------
# validation helpers (shared with theory.logtime)

def check_spectrum(spectrum) -> Spectrum:
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"spectrum must be a plrf.Spectrum, got {type(spectrum).__name__}")
    return spectrum


def check_batch(batch) -> int:
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    return int(batch)


def check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return int(steps)


def check_grid(grid, steps: int, num: int = 100, after=None) -> np.ndarray:
    """``grid`` (strictly increasing int steps from 0 to ``steps``) or ``plrf.log_grid(steps, num, after=after)``
    (``after``: the schedule or optimizer, whose discontinuities the default grid follows)."""
    if grid is None:
        return plrf.log_grid(steps, num, after=after)
    g = np.asarray(grid)
    if g.ndim != 1 or g.size < 2 or not np.all(np.isfinite(g)) or np.any(g != np.round(g)):
        raise ValueError("grid must be a 1-d array of at least 2 integer steps")
    g = g.astype(np.int64)
    if g[0] != 0 or g[-1] != steps or np.any(np.diff(g) <= 0):
        raise ValueError(f"grid must increase strictly from 0 to steps={steps}")
    return g


def lr_function(schedule):
    """A numpy callable ``steps (float64 array) -> lr (float64 array)`` from a schedule closure (jitted)."""
    if not callable(schedule):
        raise TypeError("schedule must be a callable step -> lr")
    host = getattr(schedule, "host", None)   # a numpy twin of the closure (no compilation per new schedule)
    jitted = jax.jit(schedule) if host is None else host

    def lr(steps):
        s = np.asarray(steps, dtype=np.float64)
        flat = s.ravel()
        n = max(16, 1 << int(flat.size - 1).bit_length())  # padded to a power of two: few compilations
        padded = np.zeros(n)
        padded[:flat.size] = flat
        val = np.broadcast_to(np.asarray(jitted(jnp.asarray(padded)), dtype=np.float64), (n,))
        out = val[:flat.size].reshape(s.shape)
        if not np.all(np.isfinite(out)) or np.any(out < 0):
            raise ValueError("schedule returned a non-finite or negative learning rate")
        return np.array(out)
    return lr


def peak_lr(schedule, steps: int, lr=None) -> float:
    """``schedule.peak`` if present, else the max over a log + linear scan of ``[0, steps]``."""
    peak = getattr(schedule, "peak", None)
    if peak is not None and np.isfinite(peak):
        return float(peak)
    lr = lr or lr_function(schedule)
    probe = np.unique(np.concatenate([np.arange(min(steps, 4096)), np.linspace(0, steps, 4097).round(),
                                      np.geomspace(1, steps, 2049).round()]))
    return float(np.max(lr(probe)))


# ---------------------------------------------------------------------------------------------------------
# forcing, kernel, norms

def decay_factor(spectrum: Spectrum, lr, batch: int = 1) -> np.ndarray:
    """``g_k = 1 - 2 lr lam_k + lr^2 lam_k^2 (B+1)/B`` (shape ``lr.shape + (len(lam),)``)."""
    lr = np.asarray(lr, dtype=np.float64)[..., None]
    lam, B = spectrum.lam, float(batch)
    return 1.0 - 2.0 * lr * lam + lr * lr * lam * lam * (B + 1.0) / B


def _log_g(spectrum, lr, batch):
    lr = np.asarray(lr, dtype=np.float64)[..., None]
    lam, B = spectrum.lam, float(batch)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log1p(lr * lam * (-2.0 + lr * lam * (B + 1.0) / B))


def forcing(spectrum: Spectrum, lr: float, r, *, batch: int = 1) -> np.ndarray:
    """``F(r) = P* + sum_k w_k g_k^r`` at steps ``r`` (array), constant ``lr``."""
    spectrum, batch = check_spectrum(spectrum), check_batch(batch)
    r = np.asarray(r, dtype=np.float64)
    lg = _log_g(spectrum, lr, batch)
    return spectrum.P_star + np.sum(spectrum.w * np.exp(r[..., None] * lg), axis=-1)


def kernel(spectrum: Spectrum, lr: float, r, *, batch: int = 1) -> np.ndarray:
    """``Kr(r) = (lr^2/B) sum_k n_k lam_k^2 g_k^r`` at steps ``r`` (array), constant ``lr``."""
    spectrum, batch = check_spectrum(spectrum), check_batch(batch)
    r = np.asarray(r, dtype=np.float64)
    lg = _log_g(spectrum, lr, batch)
    c = spectrum.n * spectrum.lam ** 2 * (lr * lr / batch)
    return np.sum(c * np.exp(r[..., None] * lg), axis=-1)


def kernel_norm(spectrum: Spectrum, lr, *, batch: int = 1):
    """``||Kr|| = sum_{r>=0} Kr(r) = sum_k n_k (lr/B) lam_k / (2 - lr lam_k (B+1)/B)`` (plrf.stability)."""
    return _kernel_norm(check_spectrum(spectrum), lr, check_batch(batch))


def limit(spectrum: Spectrum, lr, *, batch: int = 1):
    """``P(inf) = P* / (1 - ||Kr||)`` (inf when ``||Kr|| >= 1``)."""
    return _limit_loss(check_spectrum(spectrum), lr, check_batch(batch))


def growth_factor(spectrum: Spectrum, lr: float, *, batch: int = 1) -> float:
    """Past the stochastic edge (``||Kr|| > 1``, all ``g_k < 1``): the ``rho > 1`` with
    ``sum_k n_k (lr^2/B) lam_k^2 / (rho - g_k) = 1``, so ``P(r) ~ C rho^r``. Returns 1.0 when ``||Kr|| <= 1``."""
    spectrum, batch = check_spectrum(spectrum), check_batch(batch)
    g = decay_factor(spectrum, lr, batch)
    if np.any(g >= 1):
        raise ValueError("growth_factor needs lr below the full-batch edge (all g_k < 1)")
    c = spectrum.n * spectrum.lam ** 2 * (lr * lr / batch)
    f = lambda rho: np.sum(c / (rho - g)) - 1.0
    if f(1.0) <= 0:
        return 1.0
    lo, hi = 1.0, 2.0
    while f(hi) > 0:
        hi = 2 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
        if hi - lo < 1e-16 * hi:
            break
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------------------------------------
# exact per-step recursion

@functools.partial(jax.jit, static_argnames=("forced", "count"))
def _scan_chunk(state, r0, nvalid, opt, lam, n, ts, B, P_star, forced, count):
    """``nvalid <= count`` steps of :func:`plrf.moments.step` from step ``r0`` (the rest of the chunk leaves the
    state unchanged); returns the state and the losses of every read-out after each step."""
    def step(st, i):
        r = (r0 + i).astype(jnp.float64)
        new = pm.step(st, opt.system(r), lam, n, ts, P_star, B, forced)
        st = jax.tree.map(lambda a, b: jnp.where(i < nvalid, a, b), new, st)
        return st, pm.losses(st[1], opt.system(r + 1.0), lam, P_star)
    return jax.lax.scan(step, state, jnp.arange(count), unroll=8)


def lead_lr(opt, steps) -> np.ndarray:
    """The learning-rate-like hyper-parameter of ``opt`` (``g2``/``lr``, else ``g3``) at ``steps``."""
    for k in ("g2", "lr", "g3"):
        if k in opt.h and (k != "g2" or "g3" not in opt.h or not _opt._is_zero(opt.h["g2"])):
            return np.asarray(jax.vmap(opt.h[k])(jnp.asarray(steps, jnp.float64)), dtype=np.float64)
    return np.full(np.shape(steps), np.nan)


def solve_exact(spectrum: Spectrum, optimizer, *, steps: int, batch: int = 1, grid=None, num: int = 100,
                allow_unstable: bool = False) -> Curve:
    """The exact expected loss by the per-step recursion of :mod:`plrf.moments` (O(d m^3) per step, jitted scans
    of ``CHUNK`` steps, so long runs and blow-ups past ``plrf.simulate``'s ``BLOWUP`` are followed as they are).

    ``optimizer``: a :class:`plrf.optimizers.Optimizer` or a schedule closure (SGD with it). The same numbers as
    ``plrf.expected_loss`` (same recursion); losses of further read-outs (the average, ...) in ``readouts``.
    """
    spectrum, batch, steps = check_spectrum(spectrum), check_batch(batch), check_steps(steps)
    grid = check_grid(grid, steps, num, after=optimizer)
    opt = _opt.as_optimizer(optimizer)
    if isinstance(optimizer, _opt.Optimizer):
        check_optimizer(spectrum, opt, batch, grid, allow_unstable=allow_unstable)
        lrs = lead_lr(opt, grid)
    else:
        lr = lr_function(optimizer)
        check_lr(spectrum, peak_lr(optimizer, steps, lr), batch, allow_unstable=allow_unstable)
        lrs = lr(grid.astype(np.float64))
    lam, n, w = (jnp.asarray(a, jnp.float64) for a in (spectrum.lam, spectrum.n, spectrum.w))
    P_star = jnp.asarray(spectrum.P_star, dtype=jnp.float64)
    B = jnp.asarray(float(batch))
    forced = pm.is_forced(opt)
    ts = pm.theta_star(lam, w)
    sys0 = opt.system(0.0)
    state = pm.init(sys0, lam, w, forced)
    out = np.empty((grid.size, len(opt.readouts)))
    out[0] = np.asarray(pm.losses(state[1], sys0, lam, P_star))
    count = min(CHUNK, max(16, 1 << int(steps - 1).bit_length()))
    gi = 1
    for r0 in range(0, steps, count):
        k = min(count, steps - r0)
        state, Ls = _scan_chunk(state, jnp.asarray(r0, jnp.int64), jnp.asarray(k), opt, lam, n, ts, B, P_star,
                                forced, count)
        hi = np.searchsorted(grid, r0 + k, side="right")
        if hi > gi:
            out[gi:hi] = np.asarray(Ls)[grid[gi:hi] - r0 - 1]
            gi = hi
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(out), out, np.inf)
    extra = {name: out[:, j] for j, name in enumerate(opt.readouts) if j > 0}
    return Curve(grid, out[:, 0], lrs, extra or None)


def solve_volterra_direct(spectrum: Spectrum, lr: float, *, steps: int, batch: int = 1) -> np.ndarray:
    """``P(0..steps)`` from ``P(r) = F(r) + sum_{s<r} Kr(r-1-s) P(s)`` by direct O(steps^2) summation.

    ``F`` and ``Kr`` are built in closed form (``g_k^r = exp(r log g_k)``); a reference for small ``steps``.
    """
    spectrum, batch, steps = check_spectrum(spectrum), check_batch(batch), check_steps(steps)
    check_lr(spectrum, float(lr), batch)
    if steps > 20000:
        raise ValueError(f"steps must be <= 20000 for the O(steps^2) direct sum, got {steps}")
    r = np.arange(steps + 1)
    F = forcing(spectrum, lr, r, batch=batch)
    K = kernel(spectrum, lr, r, batch=batch)
    P = np.empty(steps + 1)
    for t in range(steps + 1):
        # sum_{s<t} Kr(t-1-s) P(s): K[t-1], ..., K[0] against P[0], ..., P[t-1]
        P[t] = F[t] + np.dot(K[t - 1::-1], P[:t]) if t else F[0]
    return P
