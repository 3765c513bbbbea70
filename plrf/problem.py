"""The PLRF problem: a validated description and sampled instances.

Model (Paquette, Paquette, Xiao, Pennington 2024, "4+3 phases of compute-optimal neural scaling laws"):
data ``x_j = j^{-alpha} z_j`` (j = 1..v, z ~ N(0, I_v)), target ``y = <x, b>`` with ``b_j = j^{-beta}``,
features ``W in R^{v x d}`` iid ``N(0, 1/d)``, prediction ``<W^T x, theta>`` and population loss
``P(theta) = ||D^{1/2} (W theta - b)||^2``, ``D = diag(j^{-2 alpha})`` (no factor 1/2).

Optional label noise ``sigma^2 = Problem.label_noise``: ``y = <x, b> + sigma eps``, ``eps ~ N(0, 1)``. For
Gaussian data this is the noiseless problem with ``P*`` replaced by ``P* + sigma^2`` (the residual orthogonal to
the features is independent Gaussian noise either way; see :func:`plrf.spectrum.with_label_noise`), so a sampled
instance's ``spectrum.P_star`` includes ``sigma^2`` and every reported risk is ``P(theta) + sigma^2``.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import _x64  # noqa: F401
from .rng import check_key
from .spectrum import Spectrum, check_label_noise, with_label_noise

CHUNK = 1024  # rows of W generated (and reduced) at a time


@dataclasses.dataclass(frozen=True)
class Problem:
    """A PLRF problem ``(alpha, beta, v, d)``.

    Admissible when ``alpha > 0`` and ``2 (alpha + beta) > 1`` (then ``P(0) = sum_j j^{-2 alpha - 2 beta}``
    stays finite as ``v -> inf``); ``v >= d >= 1`` integers. Below the high-dimensional line
    (``2 alpha < 1``) the spectrum depends on the ratio ``v/d``, which should be a fixed number above 1.
    ``label_noise`` is the label-noise variance ``sigma^2`` (``y = <x, b> + sigma eps``; default 0): sampled
    spectra carry it in ``P_star`` (exact for Gaussian data, :func:`plrf.spectrum.with_label_noise`).
    """

    alpha: float
    beta: float
    v: int
    d: int
    label_noise: float = 0.0

    def __post_init__(self):
        for name in ("alpha", "beta"):
            val = getattr(self, name)
            if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(val):
                raise ValueError(f"{name} must be a finite real number, got {val!r}")
        for name in ("v", "d"):
            val = getattr(self, name)
            if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "beta", float(self.beta))
        object.__setattr__(self, "v", int(self.v))
        object.__setattr__(self, "d", int(self.d))
        object.__setattr__(self, "label_noise", check_label_noise(self.label_noise))
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got alpha={self.alpha}")
        if 2 * (self.alpha + self.beta) <= 1:
            raise ValueError(
                f"inadmissible exponents: need 2(alpha + beta) > 1, got alpha={self.alpha}, beta={self.beta} "
                f"(2(alpha+beta) = {2 * (self.alpha + self.beta):.4g})")
        if self.v < self.d:
            raise ValueError(f"v must be >= d, got v={self.v} < d={self.d}")
        if 2 * self.alpha < 1 and self.v < 2 * self.d:
            warnings.warn(
                f"2*alpha = {2 * self.alpha:.3g} < 1: the spectrum depends on v/d = {self.v / self.d:.3g}; "
                "use a fixed ratio v/d > 1 (the literature uses 4 to 10) across a ladder of d.", stacklevel=3)

    @property
    def D(self) -> np.ndarray:
        """Diagonal of the data covariance, ``j^{-2 alpha}``, j = 1..v (float64)."""
        return np.arange(1, self.v + 1, dtype=np.float64) ** (-2 * self.alpha)

    @property
    def b(self) -> np.ndarray:
        """Target coefficients ``b_j = j^{-beta}`` (float64)."""
        return np.arange(1, self.v + 1, dtype=np.float64) ** (-self.beta)

    @property
    def P0(self) -> float:
        """``P(0) = sum_{j<=v} j^{-2 alpha - 2 beta}``."""
        return float(np.sum(np.arange(1, self.v + 1, dtype=np.float64) ** (-2 * self.alpha - 2 * self.beta)))

    @property
    def trace_D(self) -> float:
        """``sum_{j<=v} j^{-2 alpha}`` = E tr K; the authors' learning rates are c / trace_D."""
        return float(np.sum(self.D))

    def default_lr(self, c: float = 0.5) -> float:
        """The authors' step size ``c / sum_{j<=v} j^{-2 alpha}`` (c in 0.25..0.75)."""
        return c / self.trace_D

    def with_d(self, d: int) -> "Problem":
        """Same exponents at another ``d``, keeping the ratio ``v/d``."""
        return Problem(self.alpha, self.beta, int(round(self.v * d / self.d)), d, self.label_noise)


class Instance(NamedTuple):
    """One draw of ``W``: the spectrum of ``K = W^T D W`` and what the simulators need.

    ``U`` holds the eigenvectors (columns, ascending eigenvalues), ``theta_star = K^{-1} W^T D b``.
    ``W`` is kept only when asked (or user-supplied); ``key`` regenerates it (see :func:`feature_matrix`).
    """
    problem: Problem
    spectrum: Spectrum
    U: np.ndarray
    theta_star: np.ndarray
    W: Optional[np.ndarray]
    key: Optional[jax.Array]


def _w_chunk(key, i, d):
    """Rows [i*CHUNK, (i+1)*CHUNK) of W: the same rows whatever v is."""
    return jax.random.normal(jax.random.fold_in(key, i), (CHUNK, d), dtype=jnp.float64) / jnp.sqrt(d)


_w_chunk_jit = jax.jit(_w_chunk, static_argnums=2)


def _chunks(problem: Problem, key=None, W=None):
    """Yield (rows slice, W rows) over v, generated from ``key`` or sliced from ``W``."""
    for i in range(-(-problem.v // CHUNK)):
        lo, hi = i * CHUNK, min((i + 1) * CHUNK, problem.v)
        if W is not None:
            yield lo, hi, np.asarray(W[lo:hi], dtype=np.float64)
        else:
            yield lo, hi, np.asarray(_w_chunk_jit(key, i, problem.d))[: hi - lo]


def feature_matrix(problem: Problem, *, key) -> np.ndarray:
    """Materialize the ``v x d`` feature matrix drawn from ``key`` (float64)."""
    check_key(key)
    return np.concatenate([w for _, _, w in _chunks(problem, key=key)], axis=0)


def _build(problem: Problem, key=None, W=None, keep_W=False) -> Instance:
    D, b = problem.D, problem.b
    d = problem.d
    K = np.zeros((d, d))
    h = np.zeros(d)
    for lo, hi, Wc in _chunks(problem, key, W):
        Dc = D[lo:hi]
        K += Wc.T @ (Dc[:, None] * Wc)
        h += Wc.T @ (Dc * b[lo:hi])
    K = 0.5 * (K + K.T)
    lam, U = np.linalg.eigh(K)
    if lam[0] <= 0:
        raise ValueError(f"K = W^T D W is singular (smallest eigenvalue {lam[0]:.3g}); W must have rank d")
    proj = U.T @ h
    theta_star = U @ (proj / lam)
    w = proj ** 2 / lam
    # P* computed directly as ||D^{1/2}(W theta* - b)||^2 (no cancellation against P(0)).
    P_star = 0.0
    for lo, hi, Wc in _chunks(problem, key, W):
        r = Wc @ theta_star - b[lo:hi]
        P_star += float(np.sum(D[lo:hi] * r * r))
    spec = with_label_noise(Spectrum(lam=lam, n=np.ones(d), w=w, P_star=np.float64(P_star)),
                            problem.label_noise)
    keepW = W if W is not None else (feature_matrix(problem, key=key) if keep_W else None)
    return Instance(problem, spec, U, theta_star, keepW, key)


def sample_instance(problem: Problem, *, key, keep_W: bool = False) -> Instance:
    """Draw ``W`` from ``key`` and compute, in float64, the spectrum of ``K``, ``theta*`` and ``P*``
    (``P_star`` includes the label noise ``problem.label_noise``).

    ``K`` is accumulated over chunks of ``CHUNK`` rows, so ``W`` is never held unless ``keep_W``.
    """
    check_key(key)
    return _build(problem, key=key, keep_W=keep_W)


def instance_from_W(problem: Problem, W) -> Instance:
    """An instance from a user-supplied feature matrix ``W`` of shape ``(v, d)``."""
    W = np.asarray(W, dtype=np.float64)
    if W.shape != (problem.v, problem.d):
        raise ValueError(f"W must have shape (v, d) = ({problem.v}, {problem.d}), got {W.shape}")
    if not np.all(np.isfinite(W)):
        raise ValueError("W must be finite (found NaN or inf)")
    return _build(problem, W=W)


def sample_spectrum(problem: Problem, *, key) -> Spectrum:
    """The :class:`Spectrum` of one sampled ``W`` (see :func:`sample_instance`)."""
    return sample_instance(problem, key=key).spectrum


def population_risk(instance: Instance, theta) -> np.ndarray:
    """Exact ``P(theta) = (theta - theta*)^T K (theta - theta*) + P*`` (theta may be batched on leading axes)."""
    delta = (np.asarray(theta, dtype=np.float64) - instance.theta_star) @ instance.U
    return instance.spectrum.P_star + np.sum(instance.spectrum.lam * delta ** 2, axis=-1)


def population_risk_direct(problem: Problem, W, theta) -> float:
    """``||D^{1/2}(W theta - b)||^2`` evaluated from its definition (reference for tests)."""
    r = np.asarray(W, dtype=np.float64) @ np.asarray(theta, dtype=np.float64) - problem.b
    return float(np.sum(problem.D * r * r))
