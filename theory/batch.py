"""Batch size, exactly: the gradient noise scale along a trajectory and the batch-size frontier.

Gradient noise scale (McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training")
--------------------------------------------------------------------------------------------------------
Per-sample gradient of one-pass SGD in K's eigenbasis (Gaussian features ``x~_k = sqrt(lam_k) z_k``, label
residual ``eps ~ N(0, P*)`` independent; label noise is in ``P*``): at the gradient point ``p``,
``delta = p - theta*``,  ``g = x~ (<x~, delta> - eps)``. Isserlis' theorem gives, conditionally on ``delta``:

    G(delta) = E[g | delta] = K delta                      (G_k = lam_k delta_k)
    E[g g^T | delta] = P(delta) K + 2 K delta delta^T K,   P(delta) = P* + delta^T K delta
    Sigma(delta) = Cov(g | delta) = P(delta) K + K delta delta^T K     (the per-sample, i.e. B = 1, covariance)
    tr Sigma(delta) = P(delta) tr K + |G(delta)|^2.

``Sigma`` is the covariance of ONE sample's gradient (a batch of B has ``Sigma / B``). Along a trajectory
``delta_t`` is itself random (SGD noise), and the exact moment recursion (:mod:`plrf.moments`) gives its first
moments ``m_k = E delta_k`` and second moments ``M_k = E delta_k^2`` (bin sums for binned spectra). Two exact
noise scales follow:

* ``B_simple(t) = E tr Sigma(delta_t) / E |G(delta_t)|^2
  = (E[P_t] tr K + sum_k lam_k^2 M_k) / sum_k lam_k^2 M_k`` — McCandlish's ``B_simple = tr Sigma / |G|^2`` with
  numerator and denominator averaged over the trajectory's randomness (ratio of expectations). At theta_0 = 0 it
  is deterministic: ``B_simple(0) = 1 + P(0) tr K / sum_k lam_k w_k``.
* ``B_noise(t) = tr Cov(g_t) / |E g_t|^2`` with the covariance over both the sample and the trajectory
  (the gradient an observer sees at step t, not knowing the seed):
  ``tr Cov(g_t) = E tr Sigma(delta_t) + tr Cov(G(delta_t)) = E[P_t] tr K + 2 sum lam_k^2 M_k - sum lam_k^2 m_k^2``,
  ``|E g_t|^2 = sum_k lam_k^2 m_k^2`` (for a bin, ``m_k`` is the mean per unit ``theta*`` times
  ``sqrt(sum theta*^2)``, so ``m_k^2`` is the bin sum of the squared means). The factor 2 is Isserlis'
  (``E[z^4] = 3``): a formula ``sum (lam P + lam^2 M) - |E g|^2`` misses the ``Cov_t(G)`` term.

Early on (``delta`` ~ deterministic) both agree; once SGD noise dominates ``E delta -> 0`` faster than its
spread, so ``B_noise`` grows without bound while ``B_simple`` stays finite (the quantity that sets the
critical batch in McCandlish's derivation is the conditional one).
The first moments are carried by forcing :func:`plrf.moments.step` (``forced=True``; with no weight decay the
forcing term is zero and ``m' = T m``).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import plrf
from plrf import moments
from plrf.optimizers import as_optimizer
from plrf.runners import _run_steps
from plrf.spectrum import Spectrum


class NoiseScale(NamedTuple):
    """Exact gradient-noise statistics on a step grid (per-sample, B = 1 covariance)."""
    steps: np.ndarray
    loss: np.ndarray        # E P at the gradient point (= the iterate's loss for SGD)
    grad_sq: np.ndarray     # E |G(delta_t)|^2 = sum lam^2 M
    mean_grad_sq: np.ndarray  # |E g_t|^2 = sum lam^2 m^2
    tr_sigma: np.ndarray    # E tr Sigma(delta_t) = E[P] tr K + E|G|^2
    tr_cov: np.ndarray      # tr Cov(g_t) over sample and trajectory
    B_simple: np.ndarray    # tr_sigma / grad_sq
    B_noise: np.ndarray     # tr_cov / mean_grad_sq


def noise_scale(spectrum: Spectrum, optimizer, *, steps: int, batch: int = 1, grid=None,
                num: int = 60) -> NoiseScale:
    """Exact ``B_simple(t)`` and ``B_noise(t)`` (module docstring) of ``optimizer`` (a schedule = SGD) run with
    batch ``batch`` on ``spectrum``, on ``grid`` (default ``plrf.log_grid(steps, num, after=optimizer)``)."""
    opt = as_optimizer(optimizer)
    if grid is None:
        grid = plrf.log_grid(steps, num, after=opt)
    grid = np.asarray(grid, dtype=np.int64)
    lam, n, w = (jnp.asarray(a, jnp.float64) for a in (spectrum.lam, spectrum.n, spectrum.w))
    P_star = jnp.asarray(spectrum.P_star, jnp.float64)
    trK = float(spectrum.trace)
    B = jnp.asarray(float(batch), jnp.float64)
    sys0 = opt.system(0.0)
    size = sys0.A.shape[0]
    ts = moments.theta_star(lam, w)
    state0 = moments.init(sys0, lam, w, True)

    def stats(c):
        mm, M = c
        ce = sys0.c_eval
        q = moments.quad(M, ce, size)                     # E delta_k^2 (bin sums) at the gradient point
        mean = sum(ce[i] * mm[i] for i in range(size))    # E delta_k (times sqrt(bin size) for a bin)
        P = P_star + jnp.sum(lam * q)
        return jnp.stack([P, jnp.sum(lam * lam * q), jnp.sum(lam * lam * mean * mean)])

    def step(c, r):
        return moments.step(c, opt.system(jnp.asarray(r, jnp.float64)), lam, n, ts, P_star, B, True)

    out, _ = jax.jit(lambda: _run_steps(step, stats, state0, grid, P_star + jnp.sum(w)))()
    P, G2, EG2 = (np.asarray(x) for x in out)
    tr_sigma = P * trK + G2
    tr_cov = P * trK + 2 * G2 - EG2
    with np.errstate(divide="ignore", invalid="ignore"):
        return NoiseScale(grid, P, G2, EG2, tr_sigma, tr_cov, tr_sigma / G2, tr_cov / EG2)


def b_simple_initial(spectrum: Spectrum) -> float:
    """McCandlish's ``B_simple = tr Sigma / |G|^2`` at theta_0 = 0 (deterministic):
    ``1 + P(0) tr K / sum_k lam_k w_k`` (``G = -K theta*``, ``|G|^2 = sum lam_k w_k``)."""
    return float(1.0 + spectrum.P0 * spectrum.trace / np.sum(spectrum.lam * spectrum.w))
