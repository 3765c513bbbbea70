"""One run of each simulator, a pure function of (key, lr scale): the internal API of :mod:`plrf.simulate` and
:mod:`plrf.sweep`, which vmap it over seeds, lr scales and batch sizes.

:func:`runner` returns ``run(key, lr_scale, B) -> (losses on the grid, first blown-up grid step or -1)``;
the step, the recursions and their costs are described in :mod:`plrf.simulate`. Steppers are
``(carry, r) -> carry`` with a ``loss(carry)``; :func:`_run_grid` scans them over the grid intervals.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.linalg  # noqa: F401  (solve_triangular for the blocked recursion)
import numpy as np

from . import _x64  # noqa: F401
from . import rng as rng_mod

BLOWUP = 1e8  # a loss above BLOWUP * P(0) (or not finite) counts as diverged


def require_key(method: str, key) -> None:
    """Raise unless ``key`` is a typed PRNG key (the stochastic methods ``eigen`` and ``features`` need one)."""
    if key is None:
        raise ValueError(f"method={method!r} is stochastic: pass key=jax.random.key(seed)")
    rng_mod.check_key(key)


def runner(method: str, arrays, grid, *, schedule, batch: int, dtype, rng: str = "plrf", width: int = 1):
    """``run(key, lr_scale, B)``: one run of ``method`` on ``arrays`` (from ``plrf.simulate._method_arrays``).

    ``B`` is the batch of ``expected`` (may be traced: sweeps vmap over it; ``key`` is ignored there); ``eigen``
    and ``features`` use the static ``batch``. ``width`` is the number of runs vmapped together (it sizes the
    blocks of Gaussian draws, :func:`rng_block`)."""
    if method == "expected":
        lam, n, w, P_star = arrays
        m = expected_block(schedule, lam.shape[0])
        return lambda key, s, B: expected(lam, n, w, P_star, s, B, grid, schedule, m)
    if method == "eigen":
        lam, cstar, P_star = arrays
        return lambda key, s, B: eigen(lam, cstar, P_star, key, s, grid, schedule, batch, dtype, rng, width)
    if method == "features":
        return lambda key, s, B: features(*arrays, key, s, grid, schedule, batch, dtype, rng)
    raise ValueError(f"unknown method {method!r}")


def vmap_runs(f, *xs):
    """``vmap(f)(*xs)`` over the leading axis; when it has length 1, ``f`` is called once and the axis added (a
    size-1 vmap costs eigen ~15% on CPU). Used for every run axis of :mod:`plrf.simulate` and :mod:`plrf.sweep`."""
    if xs[0].shape[0] == 1:
        return jax.tree.map(lambda a: a[None], f(*(x[0] for x in xs)))
    return jax.vmap(f)(*xs)


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


EXPECTED_BLOCK = 16      # steps per block of the constant-lr recursion (see expected)
EXPECTED_BLOCK_MAX = 2 ** 17  # above this many modes, blocking no longer pays (memory traffic of G, H)


def expected_block(schedule, modes: int) -> int:
    """Steps per block for ``_expected``: blocks only for constant schedules and moderate numbers of modes."""
    if getattr(schedule, "name", None) != "constant" or modes > EXPECTED_BLOCK_MAX:
        return 0
    return EXPECTED_BLOCK if modes <= 2 ** 14 else EXPECTED_BLOCK // 2


def expected(lam, n, w, P_star, lr_scale, batch, grid, schedule, block=0):
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


RNG_BLOCK_ELEMS = 2 ** 16  # normals drawn per call when SGD steps draw theirs in blocks (see rng_block)


def rng_block(batch: int, d: int, width: int = 1) -> int:
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
        pkey = rng_mod.run_key(key)
        return lambda rs: rng_mod.normal(pkey, rs, n).reshape(jnp.shape(rs) + tuple(shape)).astype(dtype)
    one = lambda r: jax.random.normal(jax.random.fold_in(key, r), shape, dtype=dtype)  # noqa: E731
    return lambda rs: one(rs) if jnp.ndim(rs) == 0 else jax.vmap(one)(rs)


def eigen(lam, cstar, P_star, key, lr_scale, grid, schedule, batch, dtype, rng="plrf", width=1):
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

    m = rng_block(batch, d, width)

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


def features(W, sqrtD, b, lam, U, theta_star, P_star, key, lr_scale, grid, schedule, batch, dtype, rng="plrf"):
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
