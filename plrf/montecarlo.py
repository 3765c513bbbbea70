"""Monte Carlo means against an exact curve: pointwise z-scores and a simultaneous bootstrap-t band.

For per-seed losses ``L[s, t]`` (n seeds, grid points t) and an exact expectation ``P(t)``:

* pointwise: ``z(t) = (mean_s L - P(t)) / se(t)``, ``se = std_s(L, ddof=1) / sqrt(n)``;
* simultaneous: the bootstrap-t distribution of ``M = max_t |z(t)|`` under the null, from resampling seeds
  with replacement: ``z*_b(t) = (mean*_b(t) - mean(t)) / se*_b(t)``, ``M*_b = max_t |z*_b(t)|``. The band
  ``|z(t)| <= c`` with ``c`` the ``level`` quantile of ``M*`` holds at every grid point at once with probability
  ``level`` (Efron & Tibshirani 1993, ch. 12; bootstrap-t is second-order accurate for skewed means). The
  p-value is ``(1 + #{M*_b >= M}) / (1 + n_boot)``.

Why both: SGD losses along one run are strongly correlated across the grid and, with multiplicative noise,
right-skewed with power-law tails (Kesten-type), so "|z| <= 3 at each of ~100 grid points" is a family of
correlated tests whose false-alarm rate under a correct model is neither 0.27% nor 100 x 0.27%; the bootstrap
gives the expected number of exceedances (``expected_over``) and the level-``level`` simultaneous bound.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _x64  # noqa: F401
from .rng import check_key


class Agreement(NamedTuple):
    """Simulated mean vs exact curve on a grid (points with ``se > 1e-12 |mean|`` only: step 0 is deterministic)."""
    z: np.ndarray            # (n_grid,) pointwise z-scores (nan where se = 0)
    max_abs_z: float
    argmax_step: int
    n_points: int            # grid points compared
    n_over: int              # points with |z| > z_limit
    expected_over: float     # bootstrap mean number of points with |z*| > z_limit (its null expectation)
    band: float              # simultaneous critical value c (level quantile of max |z*|)
    p_value: float           # P(max |z*| >= max |z|) under the bootstrap null
    within: bool             # every |z| <= z_limit (the pointwise rule)
    within_band: bool        # max |z| <= band (the simultaneous rule at ``level``)
    level: float
    z_limit: float
    seeds: int

    def as_dict(self) -> dict:
        d = self._asdict()
        d.pop("z")
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}


@functools.partial(jax.jit, static_argnames=("n",))
def _resample_counts(keys, *, n):
    """How often each of n seeds is drawn in one resample with replacement, per key: (len(keys), n)."""
    return jax.vmap(lambda k: jnp.bincount(jax.random.randint(k, (n,), 0, n), length=n))(keys)


def agreement(per_seed, exact, steps, *, key: jax.Array, level: float = 0.9973, n_boot: int = 2000,
              z_limit: float = 3.0, chunk: int = 250) -> Agreement:
    """Compare ``per_seed`` losses (n_seeds, n_grid) with ``exact`` (n_grid,) at ``steps`` (n_grid,).

    ``key`` (typed JAX key) draws the bootstrap resamples; ``level`` in (0, 1); ``n_boot >= 100``.
    """
    L = np.asarray(per_seed, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    steps = np.asarray(steps)
    if L.ndim != 2 or L.shape[0] < 2:
        raise ValueError(f"per_seed must have shape (n_seeds >= 2, n_grid), got {L.shape}")
    if exact.shape != (L.shape[1],) or steps.shape != (L.shape[1],):
        raise ValueError(f"exact and steps must have shape ({L.shape[1]},), got {exact.shape} and {steps.shape}")
    if not np.all(np.isfinite(L)):
        raise ValueError("per_seed has non-finite losses (a diverged run): no standard error")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    check_key(key)
    n = L.shape[0]
    mean = L.mean(0)
    se = L.std(0, ddof=1) / np.sqrt(n)
    ok = se > 1e-12 * np.abs(mean)   # points deterministic up to rounding (step 0: theta = 0 for all seeds) are skipped
    if not np.any(ok):
        raise ValueError("no grid point has a positive standard error (identical seeds?)")
    z = np.full(mean.shape, np.nan)
    z[ok] = (mean[ok] - exact[ok]) / se[ok]
    zo = np.abs(z[ok])
    i = int(np.argmax(np.where(ok, np.abs(np.nan_to_num(z)), -1.0)))

    # bootstrap-t of max |z| under the null (centred at the sample mean)
    Lc = L[:, ok] - mean[ok]
    Lc2 = Lc * Lc
    maxes, overs = [], []
    counts_of = functools.partial(_resample_counts, n=n)
    keys = jax.random.split(key, n_boot)
    for start in range(0, n_boot, chunk):
        c = np.asarray(counts_of(keys[start:start + chunk]), dtype=np.float64)     # (b, n) resample counts
        m1 = c @ Lc / n
        var = np.maximum(c @ Lc2 / n - m1 * m1, 0.0) * n / (n - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            zb = np.abs(m1) / np.sqrt(var / n)
        zb = np.where(var > 0, zb, 0.0)
        maxes.append(zb.max(1))
        overs.append(np.sum(zb > z_limit, axis=1))
    maxes, overs = np.concatenate(maxes), np.concatenate(overs)
    band = float(np.quantile(maxes, level))
    M = float(zo.max())
    return Agreement(z=z, max_abs_z=M, argmax_step=int(steps[i]), n_points=int(ok.sum()),
                     n_over=int(np.sum(zo > z_limit)), expected_over=float(overs.mean()), band=band,
                     p_value=float((1 + np.sum(maxes >= M)) / (1 + n_boot)), within=bool(M <= z_limit),
                     within_band=bool(M <= band), level=float(level), z_limit=float(z_limit), seeds=int(n))
