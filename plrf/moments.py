"""The exact expected loss of any linear optimizer (:mod:`plrf.optimizers`): first and raw second moments of
the per-mode state, closed exactly for Gaussian features.

For a mode (or a bin of ``n_k`` modes with equal eigenvalue ``lam_k``) with state ``s_k`` (m entries),
``T_k = A + lam_k u c_eval^T``, forcing ``a_k = f theta*_k`` and gradient noise ``xi_k``::

    m_k' = T_k m_k + a_k
    M_k' = T_k M_k T_k^T + T_k m_k a_k^T + a_k m_k^T T_k^T + a_k a_k^T + u u^T E[xi_k^2]
    E[xi_k^2] = (n_k lam_k P_eval + lam_k^2 c_eval^T M_k c_eval) / B,
    P_eval = P* + sum_k lam_k c_eval^T M_k c_eval,      P_out = P* + sum_k lam_k c_out^T M_k c_out

(``E[xi_k^2 | p] = (lam_k P(p) + lam_k^2 (p_k - theta*_k)^2) / B`` per mode, by Isserlis; cross-mode noise
correlations never enter a per-mode second moment). For a bin, ``M_k`` is the sum over its modes and
``theta*_k = sqrt(w_k / lam_k)`` (every deterministic term is a product of two theta*-proportional factors, so
the bin sum only needs ``sum theta*^2 = w_k / lam_k``). Initial state: ``m_k = s0 theta*_k``,
``M_k = s0 s0^T theta*_k^2``. For SGD (m = 1) this is ``e_k' = g_k e_k + n_k (eta^2/B) lam_k^2 P`` with
``e_k = lam_k M_k`` and ``g_k = 1 - 2 eta lam_k + eta^2 lam_k^2 (B+1)/B``.

Cost O(d m^3) per step: the state is kept as separate length-d arrays per entry (mode axis contiguous), so the
arithmetic is elementwise and SGD costs what a hand-written scalar recursion costs. The first moments are
carried only when the optimizer has a forcing (weight decay): without one, ``M`` closes by itself.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _x64  # noqa: F401


def theta_star(lam, w):
    """``theta*_k = sqrt(w_k / lam_k)`` per bin (0 where ``lam_k = 0``)."""
    pos = lam > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, w / jnp.where(pos, lam, 1.0), 0.0)), 0.0)


def init(sys0, lam, w, forced: bool):
    """Initial moments from the system at step 0 (its ``s0``)."""
    ts = theta_star(lam, w)
    size = sys0.s0.shape[0]
    mm = tuple(sys0.s0[i] * ts for i in range(size)) if forced else ()
    M = tuple(sys0.s0[i] * sys0.s0[j] * (ts * ts) for i in range(size) for j in range(i, size))
    return mm, M


def _idx(size):
    return {(i, j): k for k, (i, j) in enumerate((i, j) for i in range(size) for j in range(i, size))}


def _get(M, ix, i, j):
    return M[ix[(i, j)] if i <= j else ix[(j, i)]]


def quad(M, c, size):
    """``c^T M c`` per mode (``c`` a length-m array)."""
    ix = _idx(size)
    out = 0.0
    for i in range(size):
        for j in range(size):
            out = out + c[i] * c[j] * _get(M, ix, i, j)
    return out


def losses(M, sys, lam, P_star):
    """Losses of every read-out: ``P* + sum_k lam_k c_out^T M_k c_out`` (shape (r,))."""
    size = sys.A.shape[0]
    return jnp.stack([P_star + jnp.sum(lam * quad(M, sys.c_out[r], size)) for r in range(sys.c_out.shape[0])])


def step(state, sys, lam, n, ts, P_star, B, forced: bool):
    """One step of the exact moment recursion (module docstring)."""
    mm, M = state
    size = sys.A.shape[0]
    ix = _idx(size)
    A, u, f, ce = sys.A, sys.u, sys.f, sys.c_eval
    q = quad(M, ce, size)
    P_eval = P_star + jnp.sum(lam * q)
    noise = (n * lam * P_eval + lam * lam * q) / B
    # T_k = A + lam u c_eval^T, entries as (d,) arrays (or scalars where lam does not enter)
    T = [[A[i, j] + lam * (u[i] * ce[j]) for j in range(size)] for i in range(size)]
    # TM = T M (full m x m), then M' = TM T^T (upper triangle)
    TM = [[sum(T[i][k] * _get(M, ix, k, l) for k in range(size)) for l in range(size)] for i in range(size)]
    newM = []
    if forced:
        a = [f[i] * ts for i in range(size)]
        Tm = [sum(T[i][k] * mm[k] for k in range(size)) for i in range(size)]
    for i in range(size):
        for j in range(i, size):
            v = sum(TM[i][l] * T[j][l] for l in range(size)) + (u[i] * u[j]) * noise
            if forced:
                v = v + Tm[i] * a[j] + a[i] * Tm[j] + a[i] * a[j]
            newM.append(v)
    newm = tuple(Tm[i] + a[i] for i in range(size)) if forced else ()
    return newm, tuple(newM)


def is_forced(opt) -> bool:
    """Whether the optimizer has a forcing term (weight decay), i.e. needs first moments."""
    from .optimizers import _is_zero
    return "wd" in opt.h and not _is_zero(opt.h["wd"])


# ---------------------------------------------------------------------------------------------------------
# the same map, frozen (constant hyper-parameters) and linear in z = (M packed, m theta* [forced], theta*^2 [forced]):
# the log-time solver's propagators and the blocked exact recursion are built from it

def layout(m: int, forced: bool):
    """Packed upper-triangle pairs of ``M`` (the order of :mod:`plrf.moments`), their number ``q``, and the
    size of ``z = (M packed, m theta* [forced], theta*^2 [forced])``."""
    pairs = [(i, j) for i in range(m) for j in range(i, m)]
    q = len(pairs)
    return pairs, q, q + (m + 1 if forced else 0)


def pair_weights(c, pairs):
    """``c^T M c = sum_p w_p M_p`` on the packed upper triangle."""
    return [c[i] * c[j] * (1.0 if i == j else 2.0) for (i, j) in pairs]


def system_map(sys, lam, n, B, forced: bool):
    """The frozen per-mode moment map in deviation form: ``E = G - I`` (nz, nz, d), the loss-feedback injection
    ``b`` (nz, d) and the read-out rows (1 + r, nz, d): row 0 gives ``P_eval - P*``, rows 1.. each loss ``- P*``.

    ``z = (M packed, m theta*, theta*^2)``: ``M' = T M T^T + T m a^T + a m^T T^T + a a^T + (lam^2/B) u u^T
    c^T M c + b P_eval`` with ``a = f theta*``, ``m' = T m + a`` (:mod:`plrf.moments`) is linear in ``z``; ``E``
    is built from ``T - I`` so that slow modes (``G`` within 1e-10 of ``I``) keep their digits."""
    A, u, f, ce, co = sys.A, sys.u, sys.f, sys.c_eval, sys.c_out
    m = A.shape[0]
    pairs, q, nz = layout(m, forced)
    zero = jnp.zeros_like(lam)
    Td = [[(A[i, j] - (1.0 if i == j else 0.0)) + lam * (u[i] * ce[j]) for j in range(m)] for i in range(m)]
    T = [[Td[i][j] + (1.0 if i == j else 0.0) for j in range(m)] for i in range(m)]
    wce = pair_weights(ce, pairs)
    nl = lam * lam / B
    E = [[zero] * nz for _ in range(nz)]
    for p, (i, j) in enumerate(pairs):
        for p2, (k, l) in enumerate(pairs):
            v = Td[i][k] * T[j][l] + (Td[j][l] if i == k else 0.0)   # T_ik T_jl - d_ik d_jl
            if k != l:
                v = v + T[i][l] * T[j][k]
            E[p][p2] = v + nl * (u[i] * u[j]) * wce[p2]
        if forced:
            for k in range(m):
                E[p][q + k] = T[i][k] * f[j] + f[i] * T[j][k]
            E[p][q + m] = zero + f[i] * f[j]
    if forced:
        for i in range(m):
            for k in range(m):
                E[q + i][q + k] = Td[i][k]
            E[q + i][q + m] = zero + f[i]
    E = jnp.stack([jnp.stack([jnp.broadcast_to(x, lam.shape) for x in row]) for row in E])
    b = jnp.stack([n * lam / B * (u[i] * u[j]) for (i, j) in pairs] + [zero] * (nz - q))
    rows = [wce] + [pair_weights(co[r], pairs) for r in range(co.shape[0])]
    rows = jnp.stack([jnp.stack([lam * w for w in ws] + [zero] * (nz - q)) for ws in rows])
    return E, b, rows


def to_moments(z, ts, q, m, forced):
    """``z`` (nz, d) -> the ``(first moments, packed M)`` state of :func:`step` (``ts = theta*``)."""
    M = tuple(z[p] for p in range(q))
    safe = jnp.where(ts > 0, ts, 1.0)
    mm = tuple(jnp.where(ts > 0, z[q + i] / safe, 0.0) for i in range(m)) if forced else ()
    return mm, M


def from_moments(state, ts2, ts, forced):
    """The ``(first moments, packed M)`` state of :func:`step` -> ``z`` (nz, d) (``ts2 = theta*^2``)."""
    mm, M = state
    parts = list(M) + ([x * ts for x in mm] + [ts2] if forced else [])
    return jnp.stack(parts)


def permode_mm(X, Y):
    """Per-mode matrix product ``(X Y)[i, j, :] = sum_k X[i, k, :] Y[k, j, :]`` for (m, m, d) stacks, unrolled over
    the small index: XLA on CPU runs the broadcast-and-reduce form ``sum(X[:, :, None] * Y[None], axis=1)``
    quadratically in d (9 ms against 0.3 ms at d = 16384, m = 3)."""
    return sum(X[:, k, None, :] * Y[None, k, :, :] for k in range(X.shape[1]))


def permode_mv(X, v):
    """Per-mode matrix-vector product ``(X v)[i, :] = sum_k X[i, k, :] v[k, :]`` (unrolled, see permode_mm)."""
    return sum(X[:, k, :] * v[None, k, :] for k in range(X.shape[1]))
