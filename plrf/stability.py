"""Stability of one-pass SGD on PLRF: the full-batch edge and the stochastic (kernel-norm) edge.

From the exact per-mode recursion ``e_k(r+1) = g_k e_k(r) + n_k (eta^2/B) lam_k^2 P(r)`` with
``g_k = 1 - 2 eta lam_k + eta^2 lam_k^2 (B+1)/B``:
  * full-batch edge: every ``g_k < 1``  <=>  ``eta lam_max (B+1)/B < 2``;
  * stochastic edge: the Volterra kernel norm
    ``||Kr|| = sum_r Kr(r) = sum_k n_k (eta/B) lam_k / (2 - eta lam_k (B+1)/B) < 1``,
    roughly ``eta tr(K) / (2B) < 1`` when the trace dominates.
Then ``P(inf) = P* / (1 - ||Kr||)``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .spectrum import Spectrum


class StabilityEdges(NamedTuple):
    full_batch: float   # 2B / ((B+1) lam_max)
    stochastic: float   # lr where ||Kr|| = 1 (inf if never reached below the full-batch edge)
    max_lr: float       # min of the two: the largest stable constant learning rate (supremum)


def kernel_norm(spec: Spectrum, lr, batch: int = 1):
    """``||Kr|| = sum_k n_k (lr/B) lam_k / (2 - lr lam_k (B+1)/B)``; inf past the full-batch edge."""
    lr = np.asarray(lr, dtype=np.float64)
    B = float(batch)
    lam = spec.lam
    den = 2.0 - lr[..., None] * lam * (B + 1) / B
    terms = np.where(den > 0, spec.n * (lr[..., None] / B) * lam / np.where(den > 0, den, 1.0), np.inf)
    return np.sum(terms, axis=-1)


def limit_loss(spec: Spectrum, lr, batch: int = 1):
    """``P(inf) = P* / (1 - ||Kr||)`` for a stable constant learning rate."""
    kn = kernel_norm(spec, lr, batch)
    return np.where(kn < 1, spec.P_star / (1 - kn), np.inf)


def stability_edges(spec: Spectrum, batch: int = 1) -> StabilityEdges:
    """Both thresholds for a constant learning rate and batch ``batch``."""
    B = float(batch)
    full = 2.0 * B / ((B + 1.0) * spec.lam_max)
    lo, hi = 0.0, full
    if kernel_norm(spec, full * (1 - 1e-15), batch) < 1:
        stoch = np.inf
    else:
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if kernel_norm(spec, mid, batch) < 1:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-15 * hi:
                break
        stoch = lo
    return StabilityEdges(float(full), float(stoch), float(min(full, stoch)))


def max_stable_lr(spec: Spectrum, batch: int = 1) -> float:
    """The largest stable constant learning rate (both thresholds), see :func:`stability_edges`."""
    return stability_edges(spec, batch).max_lr


def check_lr(spec: Spectrum, peak_lr: float, batch: int = 1, *, allow_unstable: bool = False) -> None:
    """Refuse a peak learning rate at or past either stability edge, with the largest stable rate."""
    if not (np.isfinite(peak_lr) and peak_lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {peak_lr}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if allow_unstable:
        return
    edges = stability_edges(spec, batch)
    if peak_lr >= edges.max_lr:
        which = "full-batch edge eta*lam_max*(B+1)/B < 2" if edges.full_batch <= edges.stochastic \
            else "stochastic edge ||Kr|| < 1 (set by tr K / B)"
        raise ValueError(
            f"unstable learning rate: lr={peak_lr:.6g} with batch={batch} must be < {edges.max_lr:.6g} "
            f"(limited by the {which}; full-batch edge {edges.full_batch:.6g}, stochastic edge "
            f"{edges.stochastic:.6g}). Pass allow_unstable=True (CLI: --allow-unstable) to run anyway.")


# ---------------------------------------------------------------------------------------------------------
# any linear optimizer (plrf.optimizers): the frozen per-mode second-moment map

def system_edges(spec: Spectrum, sys, batch: int = 1):
    """For a system frozen at one step: ``(radius, kernel_norm)``.

    ``radius``: the largest spectral radius over modes of the per-mode second-moment map without the loss
    feedback, ``L_k(M) = T_k M T_k^T + (lam_k^2/B) u u^T (c^T M c)`` (``T_k = A + lam_k u c^T``, ``c = c_eval``);
    ``kernel_norm``: the noise-feedback norm ``sum_k (n_k lam_k^2/B) c^T (I - L_k)^{-1}[u u^T] c`` (inf when some
    radius >= 1). Stable iff both are < 1; for SGD they are ``max_k g_k`` and ``||Kr||``."""
    A, u, c = (np.asarray(x, dtype=np.float64) for x in (sys.A, sys.u, sys.c_eval))
    m = A.shape[0]
    lam, n, B = spec.lam, spec.n, float(batch)
    T = A[None] + lam[:, None, None] * np.outer(u, c)[None]                        # (d, m, m)
    L = np.einsum("kij,kab->kiajb", T, T).reshape(-1, m * m, m * m)                 # vec(T M T^T), row-major
    L = L + (lam ** 2 / B)[:, None, None] * np.outer(np.outer(u, u).ravel(), np.outer(c, c).ravel())[None]
    rad = np.max(np.abs(np.linalg.eigvals(L)), axis=1) if L.size else np.zeros(lam.size)
    radius = float(np.max(rad)) if rad.size else 0.0
    uu = np.broadcast_to(np.outer(u, u).ravel(), (lam.size, m * m))
    if radius > 1 + 1e-9:
        return radius, np.inf
    cc, wk = np.outer(c, c).ravel(), n * lam ** 2 / B
    x = np.zeros((lam.size, m * m))
    ok = rad < 1 - 1e-14   # solvable (a slow mode: ill-conditioned, but its share ~ lam / lr is negligible)
    if np.any(ok):
        x[ok] = np.linalg.solve(np.eye(m * m)[None] - L[ok], uu[ok][..., None])[..., 0]
    marg = ~ok & (wk > 0)
    if np.any(marg):
        # marginal modes (a coefficient at its limit, e.g. lr = 0 at the end of a decay, or a mode so slow that
        # its map is within 1e-14 of 1): the noise series sum_j L^j [u u^T] is summed by doubling (2^40 steps);
        # divergent unless the last doubling changed these modes' share of the kernel norm by < 1e-9 (a slow
        # mode's share is O(lam / lr): negligible even before its series has converged)
        xm, P = uu[marg].copy(), L[marg].copy()
        for _ in range(40):
            prev = xm
            xm = xm + np.einsum("kij,kj->ki", P, xm)
            P = P @ P
        with np.errstate(invalid="ignore", over="ignore"):
            share, share_prev = np.sum(wk[marg] * (xm @ cc)), np.sum(wk[marg] * (prev @ cc))
            if not (np.all(np.isfinite(xm)) and abs(share - share_prev) < 1e-9):
                return radius, np.inf
        x[marg] = xm
    kn = float(np.sum(wk * (x @ cc)))
    return radius, kn


def _show(v):
    """A hyper-parameter value for an error message: a number, or the list of a vector's entries (knots)."""
    a = np.asarray(v, dtype=np.float64)
    return float(a) if a.size == 1 else [float(x) for x in a.ravel()]


def check_system(spec: Spectrum, opt, batch: int, grid, *, allow_unstable: bool = False) -> None:
    """Refuse an optimizer whose frozen per-mode map (:func:`system_edges`) is unstable at some step of
    ``grid`` (radius >= 1 or kernel norm >= 1), naming the step, the optimizer and its hyper-parameter values
    there. Coefficients that decay towards a marginal map (DANA's ``Delta(t) -> 0``) are checked at the
    steps where they are evaluated; a radius within 1e-9 of 1 counts as marginal, not unstable."""
    if allow_unstable:
        return
    steps = np.unique(np.asarray(grid, dtype=np.int64))
    probe = steps if steps.size <= 64 else steps[np.unique(np.linspace(0, steps.size - 1, 64).round().astype(int))]
    seen = set()   # a system met before (constant hyper-parameters: every step) is not checked again
    # every probe step in one evaluation
    systems = jax.tree.map(np.asarray, jax.vmap(opt.system)(jnp.asarray(probe, jnp.float64)))
    for i, t in enumerate(probe):
        sys = jax.tree.map(lambda a: a[i], systems)
        key = tuple(np.asarray(x, np.float64).tobytes() for x in sys)
        if key in seen:
            continue
        seen.add(key)
        radius, kn = system_edges(spec, sys, batch)
        if radius >= 1 + 1e-9 or kn >= 1:
            vals = {k: _show(v) for k, v in opt.values(float(t)).items()}
            which = (f"the per-mode second-moment map has spectral radius {radius:.6g} >= 1 (full-batch edge)"
                     if radius >= 1 + 1e-9 else f"the noise-feedback kernel norm is {kn:.6g} >= 1 (stochastic edge)")
            raise ValueError(
                f"unstable optimizer {opt.name} with batch={batch} at step {int(t)}: {which}; hyper-parameters "
                f"there: {vals}. Lower the learning rates (g2/g3/lr) or pass allow_unstable=True "
                f"(CLI: --allow-unstable).")
