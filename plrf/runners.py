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
import numpy as np

from . import _x64  # noqa: F401
from . import moments
from . import rng as rng_mod
from .optimizers import schedule_of

BLOWUP = 1e8  # a loss above BLOWUP * P(0) (or not finite) counts as diverged


def require_key(method: str, key) -> None:
    """Raise unless ``key`` is a typed PRNG key (the stochastic methods ``eigen`` and ``features`` need one)."""
    if key is None:
        raise ValueError(f"method={method!r} is stochastic: pass key=jax.random.key(seed)")
    rng_mod.check_key(key)


def runner(method: str, arrays, grid, *, opt, batch: int, dtype, rng: str = "plrf", width: int = 1):
    """``run(key, lr_scale, B) -> (losses (r, n_grid), first blown-up grid step or -1)``: one run of ``method``
    on ``arrays`` (from ``plrf.simulate._method_arrays``) with the optimizer ``opt`` (a
    :class:`plrf.optimizers.Optimizer`, traced: its hyper-parameter values are data) whose learning rates are
    multiplied by ``lr_scale``; ``r`` read-outs (row 0: the iterate).

    ``B`` is the batch of ``expected`` (may be traced: sweeps vmap over it; ``key`` is ignored there); ``eigen``
    and ``features`` use the static ``batch``. ``width`` is the number of runs vmapped together (it sizes the
    blocks of Gaussian draws, :func:`rng_block`)."""
    if method == "expected":
        lam, n, w, P_star = arrays
        return lambda key, s, B: expected(lam, n, w, P_star, opt.scale_lr(s), B, grid)
    if method == "eigen":
        lam, cstar, P_star = arrays
        return lambda key, s, B: eigen(lam, cstar, P_star, key, opt.scale_lr(s), grid, batch, dtype, rng, width)
    if method == "features":
        sigma = arrays[7] if len(arrays) > 7 else None
        return lambda key, s, B: features(*arrays[:7], key, opt.scale_lr(s), grid, batch, dtype, rng, sigma)
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
        P = jnp.atleast_1d(loss_fn(carry))
        bad = jnp.any(~jnp.isfinite(P) | (P > lim))
        div = jnp.where((div < 0) & bad, grid[i + 1], div)
        return (carry, div), jnp.where(div >= 0, jnp.inf, P)

    P_start = jnp.atleast_1d(loss_fn(carry0))
    (_, div), Ps = jax.lax.scan(interval, (carry0, jnp.asarray(-1, jnp.int64)), jnp.arange(grid.shape[0] - 1))
    return jnp.concatenate([P_start[None], Ps]).T, div


EXPECTED_BLOCK = 64      # most steps per block of the blocked exact recursion (see expected_block)
EXPECTED_BLOCK_MIN = 8   # fewest
EXPECTED_BLOCK_BYTES = 2 ** 20
EXPECTED_BLOCK_MAX = 2 ** 17  # above this many modes, blocking no longer pays (memory traffic of G, H)


def time_invariant(opt) -> bool:
    """Whether ``opt``'s per-mode system is the same at every step: the momentum family (SGD, heavy ball, Nesterov,
    ``gen_momentum``; constant weight decay and EMA rate included) with every hyper-parameter a constant (a
    scalar value and no schedule shape other than ``constant``). DANA's ``Delta(t)``, the uniform average's
    ``1/(t+1)`` and schedule-free's averaging weights depend on the step."""
    from .optimizers import _build_momentum_family
    if opt.build is not _build_momentum_family:
        return False
    for h in opt.h.values():
        if np.ndim(h.value) != 0:
            return False
        if h.shape is not None and getattr(h.shape, "name", None) != "constant":
            return False
    return True


def expected_block(opt, modes: int) -> int:
    """Steps per block of the exact recursion: blocks for time-invariant optimizers (:func:`time_invariant`:
    constant hyper-parameters; see :func:`_expected_blocked`) and moderate numbers of modes; 0 = step by step."""
    if modes > EXPECTED_BLOCK_MAX or not time_invariant(opt):
        return 0
    nz = moments.layout(opt.size, moments.is_forced(opt))[2]
    # the block's two (m, nz d) matrices stay in cache: m nz d 8 bytes <= EXPECTED_BLOCK_BYTES (measured at
    # d = 1024: m = 64 for SGD, 32 for heavy ball, 16 with an EMA are the fastest)
    m = EXPECTED_BLOCK_BYTES // (8 * nz * max(int(modes), 1))
    if m < EXPECTED_BLOCK_MIN:   # the matrices would not stay in cache: stepping is faster (measured at d = 1e4)
        return 0
    m = 1 << (int(m).bit_length() - 1)
    return int(min(m, EXPECTED_BLOCK))


SUPERBLOCK_SUB = 128          # steps per sub-block of a superblock (:func:`_superblock_advance`), at most
SUPERBLOCK_COUNT = 8          # sub-blocks per superblock
SUPERBLOCK_BYTES = 2 ** 25    # its two (ms, nz d) matrices, per run (sweeps vmap runs: memory multiplies)
SUPERBLOCK_MIN_WIDTH = 1024   # nz d below which superblocks do not pay (their history costs J ms per step)


def expected_superblock(opt, modes: int):
    """``(ms, J)`` for :func:`_superblock_advance` when the blocked exact recursion should advance whole
    superblocks of ``J ms`` steps with matrix-matrix products, else ``None``: time-invariant optimizers with
    ``nz d >= SUPERBLOCK_MIN_WIDTH`` moment entries, ``ms`` the largest power of two <= ``SUPERBLOCK_SUB`` whose
    two ``(ms, nz d)`` matrices fit ``SUPERBLOCK_BYTES`` (at least 32). Measured at d = 1024 and 1e4
    (benchmarks/optimizers.py)."""
    if not time_invariant(opt):
        return None
    nz = moments.layout(opt.size, moments.is_forced(opt))[2]
    width = nz * max(int(modes), 1)
    if width < SUPERBLOCK_MIN_WIDTH:
        return None
    ms = min(SUPERBLOCK_SUB, SUPERBLOCK_BYTES // (16 * width))
    if ms < min(32, SUPERBLOCK_SUB):  # 16-row superblocks were slower than stepping at d = 1e4 (measured)
        return None
    return 1 << (int(ms).bit_length() - 1), SUPERBLOCK_COUNT


def expected(lam, n, w, P_star, opt, batch, grid):
    """The exact moment recursion of :mod:`plrf.moments` for ``opt``, losses of every read-out on ``grid``.
    Time-invariant optimizers (:func:`time_invariant`) take the blocked exact path (:func:`_expected_blocked`,
    with superblocks of matrix-matrix products where :func:`expected_superblock` says they pay).

    A concrete ``grid`` (a numpy or jax array, not a tracer: a direct call, e.g. under ``jax.grad`` with respect
    to hyper-parameter values) takes :func:`_run_steps`, which reverse-mode differentiation can go through
    (the engine's programs trace the grid and keep :func:`_run_grid`)."""
    B = jnp.asarray(batch, jnp.float64)
    concrete = not isinstance(grid, jax.core.Tracer)
    block = 0 if concrete else expected_block(opt, lam.shape[0])
    sup = None if concrete else expected_superblock(opt, lam.shape[0])
    if block or sup:
        return _expected_blocked(lam, n, w, P_star, opt, B, grid, block or 1, sup)
    forced = moments.is_forced(opt)
    sys0 = opt.system(0.0)
    ts = moments.theta_star(lam, w)
    state0 = moments.init(sys0, lam, w, forced)
    P0 = P_star + jnp.sum(w)

    def step(c, r):
        return moments.step(c, opt.system(jnp.asarray(r, jnp.float64)), lam, n, ts, P_star, B, forced)

    loss = lambda c: moments.losses(c[1], sys0, lam, P_star)  # noqa: E731
    if concrete:
        return _run_steps(step, loss, state0, grid, P0)
    return _run_grid(step, loss, state0, grid, P0, unroll=4)


def _run_steps(step_fn, loss_fn, carry0, grid, P0):
    """:func:`_run_grid` for a concrete grid, differentiable in reverse mode: one ``lax.scan`` of static length
    ``grid[-1]`` over the steps (``fori_loop`` with the traced interval bounds of :func:`_run_grid` is not),
    losses evaluated (``lax.cond``) only after the steps that end on a grid point. Reverse mode keeps one
    carry per step."""
    grid = np.asarray(grid, dtype=np.int64)
    R = int(grid[-1])
    lim = BLOWUP * P0
    P_start = jnp.atleast_1d(loss_fn(carry0))
    on_grid = np.zeros(R, dtype=bool)
    on_grid[grid[1:] - 1] = True

    def body(c, x):
        r, rec = x
        c = step_fn(c, r)
        P = jax.lax.cond(rec, lambda c: jnp.atleast_1d(loss_fn(c)).astype(P_start.dtype),
                         lambda c: jnp.zeros_like(P_start), c)
        return c, P
    _, Ps = jax.lax.scan(body, carry0, (jnp.arange(R), jnp.asarray(on_grid)))
    Ps = Ps[grid[1:] - 1]
    bad = jnp.any(~jnp.isfinite(Ps) | (Ps > lim), axis=1)
    div = jnp.where(jnp.any(bad), jnp.asarray(grid[1:])[jnp.argmax(bad)], -1)
    Ps = jnp.where((jnp.cumsum(bad) > 0)[:, None], jnp.inf, Ps)
    return jnp.concatenate([P_start[None], Ps]).T, div


def _expected_blocked(lam, n, w, P_star, opt, B, grid, block, superblock=None):
    """A time-invariant optimizer (:func:`time_invariant`), ``block = m`` steps at a time, exactly.

    With the frozen map of :func:`plrf.moments.system_map`, ``z' = G z + b P``, ``P = P* + r_0 . z`` (``z``: the
    per-mode moments, ``nz`` numbers per mode; SGD: ``nz = 1``, ``G = g``, ``b = n (eta^2/B) lam^2``), the
    losses of a block solve the Volterra system ``P_j = P* + (R z)_j + sum_{i<j} Kr(j-1-i) P_i`` with
    ``R_j = r_0 G^j`` and ``Kr(t) = r_0 G^t b`` summed over modes, i.e. ``P = A (P* 1 + R z)``,
    ``A = (I - T)^{-1}`` (``T`` strictly lower Toeplitz), then ``z <- G^m z + sum_i G^(m-1-i) b P_i``. Per
    block: two ``(nz d) x m`` matrix-vector products and one per-mode ``nz x nz`` product instead of ``m`` steps
    of :func:`plrf.moments.step`.

    ``superblock = (ms, J)`` (:func:`expected_superblock`) first advances ``S = J ms`` steps at a time with
    matrix-matrix products (:func:`_superblock_advance`); the remainder of an interval takes blocks of ``m``, then
    single steps."""
    forced = moments.is_forced(opt)
    sys0 = opt.system(0.0)
    E, b, rows = moments.system_map(sys0, lam, n, B, forced)       # (nz, nz, d), (nz, d), (1 + r, nz, d)
    nz = E.shape[0]
    G = E + jnp.eye(nz, dtype=jnp.float64)[:, :, None]
    ts = moments.theta_star(lam, w)
    z0 = moments.from_moments(moments.init(sys0, lam, w, forced), ts * ts, ts, forced)
    r0 = rows[0]
    mv = moments.permode_mv
    # the pieces of an m-step block are the first (R, A) and last (H) rows of those of any longer block: the
    # blocks' and the superblocks' sub-blocks (ms) come from one solve at the longer of the two
    ms = superblock[0] if superblock is not None else block
    top = max(ms, block)
    Rt, Ht, At = _block_solve(G, b, r0, top)

    def pieces(m):
        return Rt[:m], Ht[top - m:], At[:m, :m]
    R, H, A = pieces(block)
    AP = P_star * jnp.sum(A, axis=1)
    AR = A @ R                                                      # (m, nz d): P = AP + AR z
    Gm = _permode_power(G, block)
    P0 = P_star + jnp.sum(r0 * z0)
    shape = z0.shape

    def step(carry, r):
        z, P = carry
        z = mv(G, z) + b * P
        return z, P_star + jnp.sum(r0 * z)

    def blk(i, carry):
        z = carry[0]
        P = AP + AR @ z.reshape(-1)
        z = mv(Gm, z) + (P @ H).reshape(shape)
        return z, P_star + jnp.sum(r0 * z)

    sup = None
    if superblock is not None:     # G^ms by squaring on from G^m (or G^m's chain passes through it): m, ms powers of 2
        Gs = _permode_power(Gm, ms // block) if ms >= block else _permode_power(G, ms)
        sup = _superblock_advance(G, b, r0, P_star, *superblock, pieces=pieces(ms), Gs=Gs)

    def advance(carry, r0_, r1):
        if sup is not None:
            S = superblock[0] * superblock[1]
            ns = (r1 - r0_) // S
            carry = jax.lax.fori_loop(0, ns, lambda i, c: sup(c), carry)
            r0_ = r0_ + ns * S
        nb = (r1 - r0_) // block
        carry = jax.lax.fori_loop(0, nb, blk, carry)
        return jax.lax.fori_loop(r0_ + nb * block, r1, lambda r, cr: step(cr, r), carry)

    def losses(carry):
        return P_star + jnp.sum(rows[1:] * carry[0][None], axis=(1, 2))
    return _run_grid(step, losses, (z0, P0), grid, P0, unroll=1, advance=advance)


def _permode_power(G, m: int):
    """``G^m`` per mode (``m`` a power of two: repeated squaring)."""
    X = G
    for _ in range(int(m).bit_length() - 1):
        X = moments.permode_mm(X, X)
    return X


def _block_solve(G, b, r0, m: int):
    """The pieces of an ``m``-step block of :func:`_expected_blocked`: ``R`` (m, nz d) with ``R_j = r_0 G^j``,
    ``H`` (m, nz d) with ``H_i = G^(m-1-i) b`` and ``A = (I - T)^{-1}`` (m, m), ``T_ji = Kr(j-1-i)`` (i < j).
    ``A`` is unit lower-triangular Toeplitz: its first column solves ``a_0 = 1``,
    ``a_j = sum_{k<j} Kr(j-1-k) a_k`` (forward substitution in XLA: jax's batched LAPACK triangular solve blocks
    its worker threads and deadlocked when several host devices ran blocks concurrently on 2 cores)."""
    nz = G.shape[0]

    def left(r, _):        # r_0 G^j, j = 0..m-1
        return sum(r[k, None, :] * G[k] for k in range(nz)), r

    def right(v, _):       # G^j b, j = 0..m-1
        return moments.permode_mv(G, v), v
    _, R = jax.lax.scan(left, r0, None, length=m)                   # R: (m, nz, d)
    _, Gb = jax.lax.scan(right, b, None, length=m)                  # Gb[j] = G^j b
    H = Gb[::-1].reshape(m, -1)
    Kr = jnp.sum(R * b[None], axis=(1, 2))
    j = jnp.arange(m)
    lag = j[:, None] - 1 - j[None, :]

    def col(jj, a):
        return a.at[jj].set(jnp.sum(jnp.where(j < jj, Kr[jnp.clip(jj - 1 - j, 0, m - 1)], 0.0) * a))
    a = jax.lax.fori_loop(1, m, col, jnp.zeros(m, jnp.float64).at[0].set(1.0))
    A = jnp.where(lag >= -1, a[jnp.clip(lag + 1, 0, m - 1)], 0.0)
    return R.reshape(m, -1), H, A


def _superblock_advance(G, b, r0, P_star, ms: int, J: int, pieces=None, Gs=None):
    """``carry -> carry`` over ``S = J ms`` steps of ``z' = G z + b P``, ``P = P* + r_0 . z``, exactly, with
    matrix-matrix products (the blocks of :func:`_expected_blocked` are matrix-vector products, memory-bound).

    From ``z`` at the start: ``X_j = G^(j ms) z`` (j < J) by per-mode powers, the free losses of all ``S`` steps
    ``F = R X`` in one ``(ms, nz d) x (nz d, J)`` product; the kernel ``Kr(l) = r_0 G^l b``, ``l < S``, comes once
    from ``R (G^(j ms) b)_j``. The sub-blocks ``j = 0..J-1`` of ``ms`` losses then solve
    ``P_j = A (P* + F_j + h_j)`` in order, ``A`` as in :func:`_block_solve`, with the history
    ``h_j = sum_{j' < j} Toep(j - j') P_j'``, ``Toep(delta)_{i i'} = Kr(delta ms + i - 1 - i')``. Finally
    ``z <- G^S z + sum_j G^((J-1-j) ms) (H^T P_j)`` (one more ``(nz d, ms) x (ms, J)`` product and a Horner
    sum). About ``4 nz`` multiply-adds per mode-step in matrix products plus ``S`` per step in the history.
    ``pieces`` (:func:`_block_solve` at ``ms``) and ``Gs = G^ms``: when the caller has them already."""
    nz, _, d = G.shape
    mv = moments.permode_mv
    R, H, A = _block_solve(G, b, r0, ms) if pieces is None else pieces
    Gs = _permode_power(G, ms) if Gs is None else Gs

    def powers(v):           # (G^(j ms) v)_{j<J} and G^(J ms) v
        def pw(x, _):
            return mv(Gs, x), x
        last, X = jax.lax.scan(pw, v, None, length=J)
        return X.reshape(J, -1), last
    Xb, _ = powers(b)
    Kr = (R @ Xb.T).T.reshape(-1)                                   # Kr(l), l = 0..S-1
    i = jnp.arange(ms)
    delta = jnp.arange(J)[:, None, None]
    lag = delta * ms + i[None, :, None] - 1 - i[None, None, :]
    Toep = jnp.where(delta > 0, Kr[jnp.clip(lag, 0, J * ms - 1)], 0.0)   # (J, ms, ms); Toep(0) = 0

    def advance(carry):
        z = carry[0]
        X, zS = powers(z)
        F = R @ X.T                                                 # (ms, J): F[i, j] = r_0 G^(j ms + i) z

        def sub(j, c):
            hist, Pm = c
            Pj = A @ (P_star + F[:, j] + hist[j])
            seg = jax.lax.dynamic_slice(hist, (j, 0), (J, ms)) + Toep @ Pj
            return jax.lax.dynamic_update_slice(hist, seg, (j, 0)), Pm.at[j].set(Pj)
        _, Pm = jax.lax.fori_loop(0, J, sub, (jnp.zeros((2 * J, ms)), jnp.zeros((J, ms))))
        Y = (Pm @ H).reshape(J, nz, d)                              # Y_j = sum_i G^(ms-1-i) b P_(j ms + i)
        acc, _ = jax.lax.scan(lambda a, y: (mv(Gs, a) + y, None), jnp.zeros_like(z), Y)
        z = zS + acc
        return z, P_star + jnp.sum(r0 * z)
    return advance


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


def _apply(sys, s, g, cstar, dtype):
    """``s' = A s + u g + f theta*`` on a state given as a tuple of per-entry arrays."""
    A, u, f = (x.astype(dtype) for x in (sys.A, sys.u, sys.f))
    size = len(s)
    return tuple(sum(A[i, j] * s[j] for j in range(size)) + u[i] * g + f[i] * cstar for i in range(size))


def _dot(c, s, dtype):
    c = c.astype(dtype)
    return sum(c[i] * s[i] for i in range(len(s)))


def batch_step(sys, s, x, eps, cstar, dtype):
    """One step of any linear optimizer on one batch: the gradient ``g = (1/B) x^T (x (p - theta*) - eps)`` at the
    evaluation point ``p - theta* = c_eval . s`` (``x``: the ``(B, d)`` features, ``eps``: the ``(B,)`` label
    residuals ``y - <x, theta*>``), then ``s' = A s + u g + f theta*``. Shared by :func:`eigen` (fresh Gaussian
    batches) and :mod:`plrf.finite_data` (batches of a stored sample)."""
    resid = x @ _dot(sys.c_eval, s, dtype) - eps
    g = (x.T @ resid) / x.shape[0]
    return _apply(sys, s, g, cstar, dtype)


def eigen(lam, cstar, P_star, key, opt, grid, batch, dtype, rng="plrf", width=1):
    """Any linear optimizer in K's eigenbasis: state entries (iterate, momentum, average, ...) as arrays (d,);
    the gradient ``g = (1/B) sum_i x_i (<x_i, p - theta*> - sqrt(P*) eps_i)``, ``x_i = sqrt(lam) z_i``, at the
    evaluation point ``p`` (``c_eval``). Step r draws ``z`` of shape ``(B, d + 1)`` (see :func:`_draws`); the
    draws of up to 64 consecutive steps are generated in one vectorized call (the same numbers, less time: the
    float64 normals cost far more than the arithmetic)."""
    lam, cstar = lam.astype(dtype), cstar.astype(dtype)
    sq, noise = jnp.sqrt(lam), jnp.sqrt(P_star).astype(dtype)
    d = lam.shape[0]
    draw = _draws(key, (batch, d + 1), rng, dtype)
    sys0 = opt.system(0.0)

    def update(s, z, r):
        return batch_step(opt.system(jnp.asarray(r, jnp.float64)), s, z[:, :d] * sq, noise * z[:, d], cstar, dtype)

    def step(s, r):
        return update(s, draw(r), r)

    m = rng_block(batch, d, width)

    def advance(s, r0, r1):
        # ceil((r1 - r0) / m) blocks; the draws of a block come from one call site (the generator is the
        # costly part of the compiled program), a last partial block skips the steps past r1
        nb = (r1 - r0 + m - 1) // m

        def full(s, zs, rs):
            return jax.lax.scan(lambda s, zr: (update(s, *zr), None), s, (zs, rs))[0]

        def partial(s, zs, rs):
            return jax.lax.scan(lambda s, zr: (jax.lax.cond(zr[1] < r1, lambda s: update(s, *zr), lambda s: s, s),
                                               None), s, (zs, rs))[0]

        def blk(i, s):
            rs = r0 + i * m + jnp.arange(m)
            return jax.lax.cond(rs[-1] < r1, full, partial, s, draw(rs), rs)
        return jax.lax.fori_loop(0, nb, blk, s)

    def loss(s):
        return jnp.stack([P_star + jnp.sum(lam * _dot(sys0.c_out[k], s, dtype) ** 2).astype(jnp.float64)
                          for k in range(sys0.c_out.shape[0])])

    s0 = tuple(sys0.s0[i].astype(dtype) * cstar for i in range(sys0.s0.shape[0]))
    return _run_grid(step, loss, s0, grid, loss(s0)[0], unroll=1, advance=advance if m > 1 else None)


def _optax_reference(opt):
    """The optimizer as an optax transformation (+ the EMA rate or None) for the features path: optax itself
    for sgd, momentum, nesterov (decoupled weight decay: ``add_decayed_weights`` after the lr scaling, as in
    AdamW; EMA: ``optax.ema`` fed the iterates) and schedule-free; the x-space family update for DANA (no optax
    counterpart)."""
    import optax
    h = opt.h
    rho = h.get("rho")
    wd = h.get("wd")
    tail = [optax.add_decayed_weights(lambda t: -wd(t))] if wd is not None else []
    if opt.name == "sgd":
        tx = optax.chain(optax.scale_by_learning_rate(lambda t: h["g2"](t)), *tail)
    elif opt.name in ("momentum", "nesterov"):
        lr = h["g3"] if opt.name == "momentum" else h["g2"]
        mu = 1.0 - h["delta"](0)
        tx = optax.chain(optax.trace(decay=mu, nesterov=opt.name == "nesterov"),
                         optax.scale_by_learning_rate(lambda t: lr(t)), *tail)
    elif opt.name == "schedule-free":
        tx = optax.contrib.schedule_free_sgd(lambda t: h["lr"](t), b1=h["beta"](0), weight_lr_power=0.0)
    else:
        tx = _family_transform(opt)
    return tx, rho


def _family_transform(opt):
    """The momentum family written directly in parameter space (an optax-style ``GradientTransformation``):
    ``y = (1 - Delta) y + g1 g``; update ``-(g2 g + g3 y) - wd theta``."""
    import optax

    def init(params):
        return (jnp.zeros_like(params), jnp.zeros((), jnp.int64))

    def update(g, state, params):
        y, t = state
        v = opt.values(t.astype(jnp.float64))
        if opt.name.startswith("dana"):
            tt = t.astype(jnp.float64)
            v["delta"] = v["delta"] / (v["delta"] + tt)
            v["g3"] = v["g3"] * (1.0 + tt) ** (-v["kappa"])
        g1, g3, D = v.get("g1", 0.0), v.get("g3", 0.0), v.get("delta", 1.0)
        y = (1.0 - D) * y + g1 * g
        upd = -(v["g2"] * g + g3 * y) - v.get("wd", 0.0) * params
        return upd, (y, t + 1)
    return optax.GradientTransformation(init, update)


def features(W, sqrtD, b, lam, U, theta_star, P_star, key, opt, grid, batch, dtype, rng="plrf", sigma=None):
    """Honest SGD-family training: x in R^v sampled each step, the optimizer run by optax where it has it
    (:func:`_optax_reference`), the loss of the iterate (and of the EMA average when set) read exactly.

    ``sigma`` (None: no label noise) draws explicit label noise ``y = <x, b> + sigma eps`` (one more normal per
    sample, after the v of x); ``P_star`` must then include ``sigma^2`` (the risk on noisy labels)."""
    import optax
    W, sqrtD, b = W.astype(dtype), sqrtD.astype(dtype), b.astype(dtype)
    v, d = W.shape
    draw = _draws(key, (batch, v + (sigma is not None)), rng, dtype)
    tx, rho = _optax_reference(opt)
    # a constant EMA rate: optax.ema(decay = 1 - rho) fed the iterates (zeros init = theta_0, no debiasing);
    # a scheduled rate (e.g. 'uniform'): avg' = (1 - rho_t) avg + rho_t theta'
    const_rho = rho is not None and rho.shape is None and np.ndim(rho.value) == 0
    ema = optax.ema(decay=1.0 - rho.value, debias=False) if const_rho else None

    def step(c, r):
        theta, st, avg, est = c
        z = draw(r)
        x = z[:, :v] * sqrtD
        f = x @ W
        resid = f @ theta - x @ b
        if sigma is not None:
            resid = resid - sigma.astype(dtype) * z[:, v]
        g = (f.T @ resid) / batch
        upd, st = tx.update(g, st, theta)
        theta = optax.apply_updates(theta, upd.astype(dtype))
        if ema is not None:
            avg, est = ema.update(theta, est)
        elif rho is not None:
            R = rho(jnp.asarray(r, jnp.float64)).astype(dtype)
            avg = (1.0 - R) * avg + R * theta
        return theta, st, avg, est

    def one(th):
        delta = (th.astype(jnp.float64) - theta_star) @ U
        return P_star + jnp.sum(lam * delta * delta)

    def out(theta, st):
        if opt.name == "schedule-free":   # the iterate is x (optax's eval params), z is read too
            x = optax.contrib.schedule_free_eval_params(st, theta)
            return x, st.z
        return theta, None

    def loss(c):
        theta, st, avg, _ = c
        main, other = out(theta, st)
        Ls = [one(main)] + ([one(avg)] if rho is not None else []) + ([one(other)] if other is not None else [])
        return jnp.stack(Ls)

    t0 = jnp.zeros(d, dtype)
    c0 = (t0, tx.init(t0), t0, ema.init(t0) if ema is not None else ())
    return _run_grid(step, loss, c0, grid, loss(c0)[0], unroll=1)
