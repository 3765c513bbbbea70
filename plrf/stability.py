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
