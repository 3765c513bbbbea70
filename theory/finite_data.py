"""Deterministic equivalent of ridge regression on N samples, in the eigenbasis of K.

Features z with population covariance diag(lam) (d modes), labels y = <z, theta*> + eps, Var eps = P* + sigma^2
(the residual orthogonal to the features plus label noise), target weights w_k = lam_k theta*_k^2.
Ridge: theta = argmin (1/N) ||Z theta - y||^2 + ridge ||theta||^2 = (S + ridge I)^{-1} Z^T y / N, S = Z^T Z / N.

Standard anisotropic deterministic equivalent (Marchenko-Pastur self-consistency for the resolvent of S):
  kappa solves  kappa = ridge + (kappa / N) sum_k lam_k / (lam_k + kappa)
  df2 = sum_k lam_k^2 / (lam_k + kappa)^2
  population loss  P = (P* + sigma^2 + kappa^2 sum_k w_k / (lam_k + kappa)^2) / (1 - df2 / N)
  training loss    T = (ridge / kappa)^2 P
(no 1/2 anywhere; P includes the irreducible P* + sigma^2). Gradient-flow-in-time and the PLRF exponents are
not done yet.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq


def kappa(lam, ridge: float, N: int) -> float:
    lam = np.asarray(lam, np.float64)
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    if isinstance(N, bool) or int(N) != N or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    f = lambda k: k - ridge - (k / N) * np.sum(lam / (lam + k))  # noqa: E731
    if ridge == 0:
        if N >= lam.size:
            raise ValueError("ridge = 0 needs N < d (interpolation); use ridge > 0")
        lo = 1e-300
    else:
        lo = ridge
    hi = ridge + np.sum(lam) + 1.0
    return brentq(f, lo * (1 + 1e-12), hi, xtol=1e-300, rtol=1e-15, maxiter=500) if f(lo) < 0 else lo


def ridge_losses(lam, w, P_star: float, ridge: float, N: int, noise: float = 0.0):
    """(population loss, training loss) of ridge on N samples by the deterministic equivalent."""
    lam = np.asarray(lam, np.float64)
    w = np.asarray(w, np.float64)
    k = kappa(lam, ridge, N)
    df2 = np.sum(lam ** 2 / (lam + k) ** 2)
    P = (P_star + noise ** 2 + k ** 2 * np.sum(w / (lam + k) ** 2)) / (1 - df2 / N)
    return P, (ridge / k) ** 2 * P
