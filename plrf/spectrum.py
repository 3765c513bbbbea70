"""The one currency shared by engine and theory: a spectrum with target weights."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Spectrum(NamedTuple):
    """Eigen-data of ``K = W^T D W`` that fully determine one-pass SGD on the expected loss.

    lam:    eigenvalues ``lambda_k`` of ``K`` (float64, ascending, > 0)
    n:      how many eigenvalues each entry stands for (1 for a sampled instance, bin counts otherwise)
    w:      target weights ``sum over the entry of lambda_k <u_k, theta*>^2`` (the initial excess loss per mode)
    P_star: ``P(theta*)``, the best loss reachable with ``d`` features

    ``P(theta_0 = 0) = P_star + sum(w)``.
    """
    lam: np.ndarray
    n: np.ndarray
    w: np.ndarray
    P_star: np.ndarray

    @property
    def P0(self) -> float:
        return float(self.P_star + np.sum(self.w))

    @property
    def d(self) -> float:
        return float(np.sum(self.n))

    @property
    def trace(self) -> float:
        """``tr K = sum_k n_k lambda_k``."""
        return float(np.sum(self.n * self.lam))

    @property
    def lam_max(self) -> float:
        return float(np.max(self.lam))


def make_spectrum(lam, w, P_star, n=None) -> Spectrum:
    """Validated constructor (float64, ascending order)."""
    lam = np.asarray(lam, dtype=np.float64).ravel()
    w = np.asarray(w, dtype=np.float64).ravel()
    n = np.ones_like(lam) if n is None else np.asarray(n, dtype=np.float64).ravel()
    if not (lam.shape == w.shape == n.shape):
        raise ValueError(f"lam, w, n must have equal lengths, got {lam.shape}, {w.shape}, {n.shape}")
    for name, arr in (("lam", lam), ("w", w), ("n", n)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite")
    if np.any(lam < 0):
        raise ValueError("lam (eigenvalues of K) must be >= 0")
    if np.any(w < 0) or np.any(n < 0):
        raise ValueError("w and n must be >= 0")
    if not (np.isfinite(P_star) and P_star >= 0):
        raise ValueError(f"P_star must be finite and >= 0, got {P_star}")
    order = np.argsort(lam, kind="stable")
    return Spectrum(lam[order], n[order], w[order], np.float64(P_star))


def expand(spec: Spectrum) -> Spectrum:
    """Expand a binned spectrum (integer counts ``n``) into unit modes, splitting ``w`` equally."""
    counts = np.rint(spec.n).astype(np.int64)
    if not np.allclose(counts, spec.n):
        raise ValueError("expand needs integer counts n")
    lam = np.repeat(spec.lam, counts)
    w = np.repeat(spec.w / np.maximum(counts, 1), counts)
    return Spectrum(lam, np.ones_like(lam), w, spec.P_star)
