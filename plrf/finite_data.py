"""Multi-epoch SGD on a finite sample of N points, simulated in the eigenbasis of ``K = W^T D W``.

Per seed ``s`` (key ``fold_in(key, s)``) one sample is drawn once and stored:
features ``Z = G diag(sqrt(lam))`` (``N x d``, ``G`` standard Gaussian: exact in distribution for the features
``W^T x`` in K's eigenbasis), labels ``y = Z theta* + eps + xi`` with ``eps ~ N(0, P*)`` (the part of
``<x, b>`` orthogonal to the features, independent of them) and optional label noise ``xi ~ N(0, sigma^2)``.
``theta*_k = sqrt(w_k / lam_k)`` (the sign is immaterial: the law of the sample is invariant under sign flips
of a mode). Then SGD (our convention: ``theta_0 = 0``, ``theta <- theta - (eta/B) sum_i z_i (<z_i, theta> - y_i)``,
no factor 2) is run over the stored sample, batches of ``B`` taken

- ``sampling="reshuffle"``: from a stream of fresh random permutations of the N points, one per epoch (a batch
  may straddle two epochs when B does not divide N);
- ``sampling="replacement"``: B indices drawn uniformly with replacement at every step.

Reported on a log-spaced step grid: the population loss ``P* + sigma^2 + sum_k lam_k (theta_k - theta*_k)^2``
(exact given theta; ``sigma^2`` is the label noise a fresh test label carries) and the training loss
``(1/N) sum_i (<z_i, theta> - y_i)^2`` on the stored sample (no 1/2).

Memory per run: ``8 N (d + 2)`` bytes for the sample plus ``4 steps B`` bytes for the reshuffled index stream;
times the number of seeds (vmapped). Work per run: ``O(steps B d + n_grid N d)``. Problems larger than
``max_bytes`` (default 2 GB) are refused before any work. Only plain SGD (constant learning rate or a schedule
``step -> lr``) is implemented here; the optimizers of ``plrf.optimizers`` are not wired in yet.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .spectrum import Spectrum
from .simulate import log_grid

SAMPLINGS = ("reshuffle", "replacement")
MAX_BYTES = 2 * 1024 ** 3


class FiniteCurve(NamedTuple):
    steps: np.ndarray        # (n,) grid
    pop: np.ndarray          # (n,) mean population loss over seeds
    pop_stderr: np.ndarray   # (n,)
    train: np.ndarray        # (n,) mean training loss over seeds
    train_stderr: np.ndarray
    pop_per_seed: np.ndarray    # (seeds, n)
    train_per_seed: np.ndarray  # (seeds, n)


def _int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    return int(value)


def memory_bytes(d: int, samples: int, steps: int, batch: int, seeds: int, sampling: str = "reshuffle") -> int:
    """Bytes held by one call: the samples (features and labels) and the index stream, for all seeds."""
    per = 8 * samples * (d + 2) + 8 * d
    if sampling == "reshuffle":
        per += 4 * steps * batch
    return int(per * seeds)


def _check_key(key):
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise ValueError("key must be a typed key (jax.random.key(seed)), got " + type(key).__name__)


def draw_sample(lam, theta_star, P_star, noise, samples, key):
    """One stored sample: ``(Z, y)`` with ``Z`` of shape ``(N, d)`` (see module docstring)."""
    kz, ke = jax.random.split(key)
    d = lam.shape[0]
    Z = jax.random.normal(kz, (samples, d), dtype=jnp.float64) * jnp.sqrt(lam)
    e = jax.random.normal(ke, (samples, 2), dtype=jnp.float64)
    y = Z @ theta_star + jnp.sqrt(P_star) * e[:, 0] + noise * e[:, 1]
    return Z, y


def simulate_finite(spectrum: Spectrum, lr, *, samples: int, steps: int, key, batch: int = 1,
                    sampling: str = "reshuffle", noise: float = 0.0, seeds: int = 1, grid=None, num: int = 60,
                    max_bytes: int = MAX_BYTES) -> FiniteCurve:
    """Multi-epoch SGD on ``samples`` stored points; see the module docstring.

    lr: a number > 0 (constant) or a schedule ``step -> lr``. ``noise``: label-noise standard deviation sigma.
    """
    if not isinstance(spectrum, Spectrum):
        raise ValueError("spectrum must be a plrf.Spectrum")
    if not np.allclose(spectrum.n, 1.0):
        raise ValueError("spectrum must have unit counts n (a sampled instance; use plrf.spectrum.expand)")
    lam = np.asarray(spectrum.lam, np.float64)
    if np.any(lam <= 0):
        raise ValueError("spectrum.lam must be > 0 (drop zero modes)")
    d = lam.shape[0]
    samples = _int("samples", samples, 1)
    steps = _int("steps", steps, 1)
    batch = _int("batch", batch, 1)
    seeds = _int("seeds", seeds, 1)
    if batch > samples:
        raise ValueError(f"batch must be in [1, samples={samples}], got {batch}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if not (isinstance(noise, (int, float, np.floating)) and np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    if callable(lr):
        lr_fn = lr
    else:
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) or not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0 or a schedule, got {lr!r}")
        lr_val = float(lr)
        lr_fn = lambda t: lr_val  # noqa: E731
    _check_key(key)
    need = memory_bytes(d, samples, steps, batch, seeds, sampling)
    if need > max_bytes:
        raise ValueError(f"samples/steps/seeds: the run needs about {need / 1e9:.2f} GB "
                         f"(8 N (d+2) + 4 steps B bytes per seed), over the limit max_bytes = {max_bytes / 1e9:.2f} GB")
    grid = log_grid(steps, num) if grid is None else np.unique(np.asarray(grid, np.int64))
    if grid[0] < 0 or grid[-1] > steps:
        raise ValueError(f"grid must lie in [0, steps={steps}]")

    theta_star = jnp.asarray(np.sqrt(spectrum.w / lam))
    lam_j = jnp.asarray(lam)
    P_star = float(spectrum.P_star)
    starts = jnp.asarray(np.concatenate([[0], grid[:-1]]), jnp.int64)
    ends = jnp.asarray(grid, jnp.int64)
    n_epochs = -(-steps * batch // samples)

    def run(k):
        kdata, korder = jax.random.split(k)
        Z, y = draw_sample(lam_j, theta_star, P_star, noise, samples, kdata)
        if sampling == "reshuffle":
            perms = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(korder, e), samples))(
                jnp.arange(n_epochs))
            stream = perms.reshape(-1)[: steps * batch].astype(jnp.int32)

        def indices(t):
            if sampling == "reshuffle":
                return jax.lax.dynamic_slice(stream, (t * batch,), (batch,))
            return jax.random.randint(jax.random.fold_in(korder, t), (batch,), 0, samples)

        def step(t, theta):
            idx = indices(t)
            Zb, yb = Z[idx], y[idx]
            g = Zb.T @ (Zb @ theta - yb) / batch
            return theta - lr_fn(t) * g

        def seg(theta, se):
            theta = jax.lax.fori_loop(se[0], se[1], step, theta)
            pop = P_star + noise ** 2 + jnp.sum(lam_j * (theta - theta_star) ** 2)
            train = jnp.mean((Z @ theta - y) ** 2)
            return theta, (pop, train)

        _, (pop, train) = jax.lax.scan(seg, jnp.zeros(d, jnp.float64), (starts, ends))
        return pop, train

    keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(seeds))
    pop, train = jax.jit(jax.vmap(run))(keys)
    pop, train = np.asarray(pop), np.asarray(train)

    def se(a):
        return a.std(0, ddof=1) / np.sqrt(a.shape[0]) if a.shape[0] > 1 else np.zeros(a.shape[1])

    return FiniteCurve(np.asarray(grid), pop.mean(0), se(pop), train.mean(0), se(train), pop, train)
