"""One-pass SGD on PLRF: three simulators behind one entry point, losses on a log-spaced step grid.

Methods (all use the step ``theta <- theta - (eta_r/B) sum_i W^T x_i (<W^T x_i, theta> - y_i)``, theta_0 = 0):
  * ``features``: honest SGD, x in R^v sampled each step, O(B v d) per step (the reference);
  * ``eigen``:    SGD in K's eigenbasis with Gaussian features ``x~_k = sqrt(lam_k) g_k`` and label
                  ``y = <x~, c*> + sqrt(P*) eps`` (exact in distribution for SGD), O(B d) per step;
  * ``expected``: the exact expected-loss recursion, deterministic, O(d) per step:
                  ``e_k(r+1) = g_k(eta_r) e_k(r) + n_k (eta_r^2/B) lam_k^2 P(r)``, ``P(r) = P* + sum_k e_k(r)``,
                  ``g_k(eta) = 1 - 2 eta lam_k + eta^2 lam_k^2 (B+1)/B``, ``e_k(0) = w_k``;
                  with a constant lr it advances 16 steps per block, exactly (see :func:`_expected`).
The loss reported for ``features`` and ``eigen`` is the exact population risk of the current iterate.
Their Gaussian draws come from :mod:`plrf.rng` (``rng='plrf'``, default: Philox-4x32-10 + an exact ziggurat,
~2x cheaper than ``jax.random.normal``) or from ``jax.random.normal(fold_in(key, r), ...)`` (``rng='jax'``).
Runs are recorded only at the grid steps, so 1e9 steps store ``len(grid)`` numbers.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import jax.scipy.linalg  # noqa: F401  (solve_triangular for the blocked recursion)
import numpy as np

from . import _x64  # noqa: F401
from . import rng as _rng
from .problem import Instance, feature_matrix
from .spectrum import Spectrum
from .stability import check_lr

METHODS = ("expected", "eigen", "features")
RNGS = ("plrf", "jax")  # Gaussian draws: plrf.rng (Philox + exact ziggurat) or jax.random.normal
BLOWUP = 1e8  # a loss above BLOWUP * P(0) (or not finite) counts as diverged


class Curve(NamedTuple):
    """Loss on a step grid. ``loss`` is the mean over seeds (the exact expectation for ``expected``)."""
    steps: np.ndarray          # (n,) int64 grid
    loss: np.ndarray           # (n,) mean over seeds
    stderr: np.ndarray         # (n,) standard error of the mean (zeros for one seed or ``expected``)
    per_seed: np.ndarray       # (seeds, n)
    diverged_step: np.ndarray  # (seeds,) first grid step whose loss blew up; -1 if none
    method: str

    @property
    def final(self) -> float:
        return float(self.loss[-1])


def log_grid(steps: int, num: int = 100) -> np.ndarray:
    """Unique int64 steps ``0, ..., steps``, log-spaced (every step at the start), ``<= num + 1`` points."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 2:
        raise ValueError(f"num must be an integer >= 2, got {num!r}")
    g = np.unique(np.round(np.geomspace(1, steps, num)).astype(np.int64))
    return np.concatenate([[0], g]).astype(np.int64)


def _check_grid(grid, steps):
    grid = np.asarray(grid, dtype=np.int64)
    if grid.ndim != 1 or grid.size < 2 or grid[0] != 0 or np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be a strictly increasing 1-d array of steps starting at 0")
    if steps is not None and grid[-1] != steps:
        raise ValueError(f"grid must end at steps={steps}, got {grid[-1]}")
    return grid


# ---------------------------------------------------------------------------------------------------------
# steppers: (carry, r) -> carry ; loss(carry) -> P

def _advance(step_fn, carry, r0, r1, unroll):
    """Apply ``step_fn`` for steps r0..r1-1 (dynamic bounds), ``unroll`` steps per loop iteration."""
    n = r1 - r0
    nblk = n // unroll

    def block(i, c):
        r = r0 + i * unroll
        for u in range(unroll):
            c = step_fn(c, r + u)
        return c
    carry = jax.lax.fori_loop(0, nblk, block, carry)
    return jax.lax.fori_loop(r0 + nblk * unroll, r1, lambda r, c: step_fn(c, r), carry)


def _run_grid(step_fn, loss_fn, carry0, grid, P0, unroll, advance=None):
    """Scan over grid intervals; returns losses at grid steps and the first blown-up grid step.

    ``advance(carry, r0, r1)`` replaces the step-by-step loop when given (blocked constant-lr recursion)."""
    lim = BLOWUP * P0
    if advance is None:
        advance = functools.partial(_advance, step_fn, unroll=unroll)

    def interval(state, i):
        carry, div = state
        carry = advance(carry, grid[i], grid[i + 1])
        P = loss_fn(carry)
        bad = ~jnp.isfinite(P) | (P > lim)
        div = jnp.where((div < 0) & bad, grid[i + 1], div)
        return (carry, div), jnp.where(div >= 0, jnp.inf, P)

    P_start = loss_fn(carry0)
    (_, div), Ps = jax.lax.scan(interval, (carry0, jnp.asarray(-1, jnp.int64)), jnp.arange(grid.shape[0] - 1))
    return jnp.concatenate([P_start[None], Ps]), div


EXPECTED_BLOCK = 16      # steps per block of the constant-lr recursion (see _expected)
EXPECTED_BLOCK_MAX = 2 ** 17  # above this many modes, blocking no longer pays (memory traffic of G, H)


def _block_size(schedule, modes: int) -> int:
    """Steps per block for ``_expected``: blocks only for constant schedules and moderate numbers of modes."""
    if getattr(schedule, "name", None) != "constant" or modes > EXPECTED_BLOCK_MAX:
        return 0
    return EXPECTED_BLOCK if modes <= 2 ** 14 else EXPECTED_BLOCK // 2


def _expected(lam, n, w, P_star, lr_scale, batch, grid, schedule, block=0):
    """The exact recursion. With ``block = m > 0`` (constant lr only) it advances ``m`` steps at a time,
    exactly: with ``G[k, j] = g_k^j`` and ``c_k = n_k (eta^2/B) lam_k^2``, the block's losses solve the
    Volterra system ``P_j = P* + (G^T e)_j + sum_{i<j} Kr(j-1-i) P_i`` (``Kr(t) = sum_k c_k g_k^t``), i.e.
    ``P = A (P* 1 + G^T e)`` with ``A = (I - T)^{-1}`` (T strictly lower Toeplitz; all terms positive, no
    cancellation), then ``e <- g^m e + c * (H P)``, ``H[k, i] = g_k^{m-1-i}``. Per block: two ``d x m``
    matrix-vector products instead of ``m`` loop iterations (3-4x faster on CPU at d ~ 1e3)."""
    B = jnp.asarray(batch, jnp.float64)
    a1, a2, a3 = 2.0 * lam, lam * lam * (B + 1.0) / B, n * lam * lam / B
    P0 = P_star + jnp.sum(w)

    if not block:
        def step(c, r):
            e, P = c
            eta = lr_scale * schedule(r)
            g = 1.0 - eta * a1 + eta * eta * a2
            e = g * e + (eta * eta * P) * a3
            return e, P_star + jnp.sum(e)
        return _run_grid(step, lambda c: c[1], (w, P0), grid, P0, unroll=8)

    eta = lr_scale * schedule(0)  # constant schedule: g and c computed once
    g, c = 1.0 - eta * a1 + eta * eta * a2, (eta * eta) * a3
    j = jnp.arange(block)
    G = g[:, None] ** j[None, :]                       # (modes, m): g^j
    gm = g * G[:, -1]                                  # g^m
    Kr = c @ G                                         # Kr(t), t = 0..m-1
    lag = j[:, None] - 1 - j[None, :]
    T = jnp.where(lag >= 0, Kr[jnp.clip(lag, 0, block - 1)], 0.0)
    eye = jnp.eye(block, dtype=jnp.float64)
    A = jax.scipy.linalg.solve_triangular(eye - T, eye, lower=True, unit_diagonal=True)
    AP = P_star * jnp.sum(A, axis=1)
    cH = c[:, None] * G[:, ::-1]                       # c_k g_k^{m-1-i}

    def step(carry, r):
        e, P = carry
        e = g * e + c * P
        return e, P_star + jnp.sum(e)

    def blk(i, carry):
        e = carry[0]
        e = gm * e + cH @ (AP + A @ (e @ G))
        return e, P_star + jnp.sum(e)

    def advance(carry, r0, r1):
        nb = (r1 - r0) // block
        carry = jax.lax.fori_loop(0, nb, blk, carry)
        return jax.lax.fori_loop(r0 + nb * block, r1, lambda r, cr: step(cr, r), carry)

    return _run_grid(step, lambda cr: cr[1], (w, P0), grid, P0, unroll=1, advance=advance)


RNG_BLOCK_ELEMS = 2 ** 16  # normals drawn per call when SGD steps draw theirs in blocks (see _rng_block)


def _rng_block(batch: int, d: int, width: int = 1) -> int:
    """Steps whose Gaussian draws are generated in one call. One run (``width = 1``): up to 64, about 2^16
    numbers per call (0.5 MB of float64 draws in flight). ``width`` runs vmapped together (seeds, lr scales):
    16 while a step's draws over all runs stay under 2^15 numbers, else 1 (larger blocks fall out of cache;
    measured on this CPU for 64 seeds: d = 1024 runs 1.4x faster with 1 than with 64, d = 256 1.5x faster
    with 8-64 than with 3)."""
    per_step = width * batch * (d + 1)
    if width == 1:
        return int(max(1, min(64, RNG_BLOCK_ELEMS // per_step)))
    return 16 if per_step < 2 ** 15 else 1


def _draws(key, shape, rng, dtype):
    """``draws(steps)``: the standard normals of the given steps, shape ``steps.shape + shape``; step r's draws
    depend on (key, r) only. ``rng='plrf'``: :func:`plrf.rng.normal` (key -> Philox key once per run);
    ``rng='jax'``: ``jax.random.normal(fold_in(key, r), shape)``."""
    n = int(np.prod(shape))
    if rng == "plrf":
        pkey = _rng.run_key(key)
        return lambda rs: _rng.normal(pkey, rs, n).reshape(jnp.shape(rs) + tuple(shape)).astype(dtype)
    one = lambda r: jax.random.normal(jax.random.fold_in(key, r), shape, dtype=dtype)  # noqa: E731
    return lambda rs: one(rs) if jnp.ndim(rs) == 0 else jax.vmap(one)(rs)


def _eigen(lam, cstar, P_star, key, lr_scale, grid, schedule, batch, dtype, rng="plrf", width=1):
    """SGD in K's eigenbasis. Step r draws ``z`` of shape ``(B, d + 1)`` (see :func:`_draws`); the draws of up to
    64 consecutive steps are generated in one vectorized call (the same numbers, less time: the float64 normals
    cost far more than the SGD arithmetic)."""
    lam, cstar = lam.astype(dtype), cstar.astype(dtype)
    sq, noise = jnp.sqrt(lam), jnp.sqrt(P_star).astype(dtype)
    d = lam.shape[0]
    draw = _draws(key, (batch, d + 1), rng, dtype)

    def update(c, z, r):
        x = z[:, :d] * sq
        resid = x @ (c - cstar) - noise * z[:, d]
        eta = (lr_scale * schedule(r)).astype(dtype)
        return c - (eta / batch) * (x.T @ resid)

    def step(c, r):
        return update(c, draw(r), r)

    m = _rng_block(batch, d, width)

    def advance(c, r0, r1):
        nb = (r1 - r0) // m

        def blk(i, c):
            rs = r0 + i * m + jnp.arange(m)
            zs = draw(rs)
            return jax.lax.scan(lambda c, zr: (update(c, *zr), None), c, (zs, rs))[0]
        c = jax.lax.fori_loop(0, nb, blk, c)
        return jax.lax.fori_loop(r0 + nb * m, r1, lambda r, c: step(c, r), c)

    def loss(c):
        return P_star + jnp.sum(lam * (c - cstar) ** 2).astype(jnp.float64)

    c0 = jnp.zeros(d, dtype)
    return _run_grid(step, loss, c0, grid, loss(c0), unroll=1, advance=advance if m > 1 else None)


def _features(W, sqrtD, b, lam, U, theta_star, P_star, key, lr_scale, grid, schedule, batch, dtype, rng="plrf"):
    W, sqrtD, b = W.astype(dtype), sqrtD.astype(dtype), b.astype(dtype)
    v, d = W.shape
    draw = _draws(key, (batch, v), rng, dtype)

    def step(theta, r):
        x = draw(r) * sqrtD
        f = x @ W
        resid = f @ theta - x @ b
        eta = (lr_scale * schedule(r)).astype(dtype)
        return theta - (eta / batch) * (f.T @ resid)

    def loss(theta):
        delta = (theta.astype(jnp.float64) - theta_star) @ U
        return P_star + jnp.sum(lam * delta * delta)

    t0 = jnp.zeros(d, dtype)
    return _run_grid(step, loss, t0, grid, loss(t0), unroll=1)


@functools.partial(jax.jit, static_argnames=("method", "schedule", "batch", "dtype", "rng"))
def _simulate_jit(arrays, keys, lr_scales, grid, *, method, schedule, batch, dtype, rng):
    """vmapped over lr_scales (outer) and keys (inner). Returns (n_lr, n_seed, n_grid), (n_lr, n_seed)."""
    if method == "expected":
        lam, n, w, P_star = arrays
        block = _block_size(schedule, lam.shape[0])
        f = jax.vmap(lambda s: _expected(lam, n, w, P_star, s, batch, grid, schedule, block))
        P, div = f(lr_scales)
        return P[:, None, :], div[:, None]
    if method == "eigen":
        lam, cstar, P_star = arrays
        width = keys.shape[0] * lr_scales.shape[0]   # runs vmapped together
        run = lambda k, s: _eigen(lam, cstar, P_star, k, s, grid, schedule, batch, dtype, rng, width)
    else:
        run = lambda k, s: _features(*arrays, k, s, grid, schedule, batch, dtype, rng)
    return jax.vmap(lambda s: jax.vmap(lambda k: run(k, s))(keys))(lr_scales)


def check_rng(rng) -> str:
    if rng not in RNGS:
        raise ValueError(f"rng must be one of {RNGS}, got {rng!r}")
    return rng


def seed_keys(key, seeds) -> jax.Array:
    """Keys for seed ids: ``fold_in(key, seed)``. The same seed id gives the same key in any sweep."""
    ids = np.arange(seeds) if np.ndim(seeds) == 0 else np.asarray(seeds)
    if ids.ndim != 1 or ids.size < 1 or not np.issubdtype(ids.dtype, np.integer) or np.any(ids < 0) \
            or np.any(ids >= 2 ** 32):
        raise ValueError(f"seeds must be a count >= 1 or a 1-d array of non-negative seed ids, got {seeds!r}")
    return jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.asarray(ids, jnp.uint32))


def _method_arrays(source, method):
    spec = source.spectrum if isinstance(source, Instance) else source
    if not isinstance(spec, Spectrum):
        raise TypeError(f"expected a Spectrum or an Instance, got {type(source).__name__}")
    if method == "expected":
        return spec, (jnp.asarray(spec.lam), jnp.asarray(spec.n), jnp.asarray(spec.w), jnp.asarray(spec.P_star))
    if method == "eigen":
        if not np.allclose(spec.n, 1.0):
            raise ValueError("method='eigen' needs unit multiplicities n "
                             "(use plrf.spectrum.expand on a binned spectrum)")
        # |<u_k, theta*>| (w_k = lam_k <u_k, theta*>^2; 0 on a zero eigenvalue); signs are irrelevant for
        # Gaussian features
        cstar = np.sqrt(np.divide(spec.w, spec.lam, out=np.zeros_like(spec.w), where=spec.lam > 0))
        return spec, (jnp.asarray(spec.lam), jnp.asarray(cstar), jnp.asarray(spec.P_star))
    if method == "features":
        if not isinstance(source, Instance):
            raise ValueError("method='features' needs an Instance (it samples x in R^v through W)")
        p = source.problem
        W = source.W if source.W is not None else feature_matrix(p, key=source.key)
        return spec, tuple(jnp.asarray(a) for a in (W, np.sqrt(p.D), p.b, spec.lam, source.U,
                                                     source.theta_star, spec.P_star))
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _peak(schedule, grid) -> float:
    """``schedule.peak``; for an untagged closure, its maximum over every step (over the grid past 2^22 steps)."""
    peak = getattr(schedule, "peak", None)
    if peak is not None and np.isfinite(peak):
        return float(peak)
    at = np.arange(grid[-1] + 1) if grid[-1] <= 2 ** 22 else grid
    vals = np.asarray(schedule(jnp.asarray(at)), dtype=np.float64)
    if not np.all(np.isfinite(vals)) or np.any(vals < 0):
        raise ValueError("schedule must return finite learning rates >= 0")
    return float(np.max(vals))


def run(source: Union[Spectrum, Instance], schedule, *, steps: int, batch: int = 1, method: str = "expected",
        key: Optional[jax.Array] = None, seeds: Union[int, Sequence[int]] = 1, lr_scales=(1.0,),
        grid=None, num: int = 100, allow_unstable: bool = False, dtype=jnp.float64, rng: str = "plrf"):
    """Raw runs: losses of shape ``(n_lr, n_seed, n_grid)`` and blow-up steps ``(n_lr, n_seed)``.

    ``lr_scales`` multiplies the schedule (vmapped); seeds are vmapped. See :func:`simulate`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    grid = _check_grid(log_grid(steps, num) if grid is None else grid, steps)
    lr_scales = np.atleast_1d(np.asarray(lr_scales, dtype=np.float64))
    if lr_scales.ndim != 1 or np.any(~np.isfinite(lr_scales)) or np.any(lr_scales <= 0):
        raise ValueError(f"lr_scales must be finite and > 0, got {lr_scales}")
    if dtype not in (jnp.float64, jnp.float32, np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    check_rng(rng)
    spec, arrays = _method_arrays(source, method)
    peak = _peak(schedule, grid)
    check_lr(spec, float(peak * lr_scales.max()), int(batch), allow_unstable=allow_unstable)
    if method == "expected":
        keys = jnp.zeros((1,), jnp.uint32)  # unused
    else:
        if key is None:
            raise ValueError(f"method={method!r} is stochastic: pass key=jax.random.key(seed)")
        _rng.check_key(key)
        keys = seed_keys(key, seeds)
    P, div = _simulate_jit(arrays, keys, jnp.asarray(lr_scales), jnp.asarray(grid), method=method,
                           schedule=schedule, batch=int(batch), dtype=jnp.dtype(dtype).type,
                           rng=rng)
    return grid, np.asarray(P), np.asarray(div)


def _curve(grid, P, div, method) -> Curve:
    n = P.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):
        mean = P.mean(axis=0)
        se = P.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    se = np.where(np.isfinite(mean), se, np.inf)  # a diverged seed: mean and stderr inf, never NaN
    return Curve(grid, mean, se, P, div, method)


def simulate(source: Union[Spectrum, Instance], schedule, *, steps: int, batch: int = 1,
             method: str = "eigen", key: Optional[jax.Array] = None, seeds: Union[int, Sequence[int]] = 1,
             grid=None, num: int = 100, allow_unstable: bool = False, dtype=jnp.float64,
             rng: str = "plrf") -> Curve:
    """Run one-pass SGD for ``steps`` steps with ``schedule`` (a closure step -> lr) and batch ``batch``.

    ``source`` is a :class:`Spectrum` (methods ``expected``, ``eigen``) or an :class:`Instance` (all three).
    ``seeds`` is a count or a list of seed ids; seed ``s`` uses ``fold_in(key, s)`` for every method, so the
    same seed gives the same curve whatever else is run alongside. The peak learning rate is checked
    against both stability edges first (:func:`plrf.stability.check_lr`). A run that blows up anyway
    (``allow_unstable=True``) reports the grid step where it did in ``diverged_step`` and ``inf`` after it.
    ``rng`` chooses the Gaussian generator of ``eigen``/``features`` (:data:`RNGS`; see the module docstring).
    """
    grid, P, div = run(source, schedule, steps=steps, batch=batch, method=method, key=key, seeds=seeds,
                       grid=grid, num=num, allow_unstable=allow_unstable, dtype=dtype, rng=rng)
    return _curve(grid, P[0], div[0], method)


def expected_loss(spectrum: Spectrum, schedule, *, steps: int, batch: int = 1, grid=None, num: int = 100,
                  allow_unstable: bool = False) -> Curve:
    """The exact expected loss of one-pass SGD (deterministic), see :func:`simulate` ``method='expected'``."""
    return simulate(spectrum, schedule, steps=steps, batch=batch, method="expected", grid=grid, num=num,
                    allow_unstable=allow_unstable)
