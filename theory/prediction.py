"""A prediction object built once per spectrum and queried interactively (neural-tangents style).

    pred = Prediction(spectrum, batch=1)          # or predict(spectrum, batch=1)
    pred.loss(schedules.cosine(0.5, 10**9), 10**9)  # LogCurve on plrf.log_grid(1e9)
    pred.loss(schedule, np.array([0, 10, 1000]))   # ... or on the given steps (sorted, any ints >= 0)
    pred.forcing(r, lr), pred.kernel(r, lr)       # F(r), Kr(r) of the Volterra equation (constant lr)
    pred.kernel_norm(lr), pred.limit(lr)          # ||Kr|| and P(inf) = P*/(1 - ||Kr||)
    pred.edges()                                  # full-batch and stochastic stability edges

Formulas: theory.volterra (Paquette, Paquette, Xiao, Pennington 2024); solver: theory.logtime.
Asymptotic loss components live in theory.components.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from plrf.spectrum import Spectrum
from plrf.stability import StabilityEdges, stability_edges

from . import logtime, volterra


class Prediction:
    """Exact expected-loss predictions for one spectrum and batch size (immutable; arrays cached)."""

    __slots__ = ("spectrum", "batch", "_edges")

    def __init__(self, spectrum: Spectrum, *, batch: int = 1):
        self.spectrum = volterra.check_spectrum(spectrum)
        self.batch = volterra.check_batch(batch)
        self._edges: Optional[StabilityEdges] = None

    def __repr__(self) -> str:
        return (f"Prediction(d={self.spectrum.d:g}, entries={self.spectrum.lam.size}, batch={self.batch}, "
                f"P0={self.spectrum.P0:.4g}, P*={float(self.spectrum.P_star):.4g})")

    def loss(self, schedule, steps, *, rtol: float = logtime.RTOL, num: int = 100) -> logtime.LogCurve:
        """Expected loss under ``schedule`` (closure step -> lr): ``steps`` an int (grid ``plrf.log_grid(steps,
        num)``) or an array of steps (returned in sorted order, duplicates removed)."""
        if np.ndim(steps) == 0:
            return logtime.solve_logtime(self.spectrum, schedule, steps=volterra.check_steps(steps),
                                         batch=self.batch, num=num, rtol=rtol)
        s = np.asarray(steps)
        if s.size == 0 or np.any(~np.isfinite(s)) or np.any(s != np.round(s)) or np.any(s < 0):
            raise ValueError("steps must be a non-empty array of integers >= 0")
        s = np.unique(s.astype(np.int64))
        if s[-1] < 1:
            raise ValueError("steps must contain a step >= 1")
        grid = np.union1d([0], s)
        curve = logtime.solve_logtime(self.spectrum, schedule, steps=int(grid[-1]), batch=self.batch,
                                      grid=grid, rtol=rtol)
        keep = np.isin(grid, s)
        return curve._replace(steps=grid[keep], loss=curve.loss[keep], lr=curve.lr[keep])

    def forcing(self, r, lr: float) -> np.ndarray:
        """``F(r) = P* + sum_k w_k g_k^r`` (constant ``lr``)."""
        return volterra.forcing(self.spectrum, lr, r, batch=self.batch)

    def kernel(self, r, lr: float) -> np.ndarray:
        """``Kr(r) = (lr^2/B) sum_k n_k lam_k^2 g_k^r`` (constant ``lr``)."""
        return volterra.kernel(self.spectrum, lr, r, batch=self.batch)

    def kernel_norm(self, lr):
        """``||Kr|| = sum_k n_k (lr/B) lam_k / (2 - lr lam_k (B+1)/B)``."""
        return volterra.kernel_norm(self.spectrum, lr, batch=self.batch)

    def limit(self, lr):
        """``P(inf) = P* / (1 - ||Kr||)`` (inf past the stochastic edge)."""
        return volterra.limit(self.spectrum, lr, batch=self.batch)

    def edges(self) -> StabilityEdges:
        """Full-batch edge ``2B/((B+1) lam_max)``, stochastic edge (``||Kr|| = 1``) and their minimum."""
        if self._edges is None:
            self._edges = stability_edges(self.spectrum, self.batch)
        return self._edges


def predict(spectrum: Spectrum, *, batch: int = 1) -> Prediction:
    """Shorthand for :class:`Prediction`."""
    return Prediction(spectrum, batch=batch)
