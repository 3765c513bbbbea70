"""Multi-epoch training on a finite sample of N points, simulated in the eigenbasis of ``K = W^T D W``, with any
linear optimizer of :mod:`plrf.optimizers`.

Per seed ``s`` (key ``fold_in(key, s)``, split into a data key and an order key) one sample is drawn once and
stored: features ``Z = G diag(sqrt(lam))`` (``N x d``, ``G`` standard Gaussian: exact in distribution for the
features ``W^T x`` in K's eigenbasis), labels ``y = Z theta* + eps`` with ``eps = sqrt(P*) e_1 + sigma e_2``
(``P*``: the part of ``<x, b>`` orthogonal to the features, independent of them; ``sigma``: optional label noise
``noise``). ``theta*_k = sqrt(w_k / lam_k)`` (the sign is immaterial: the law of the sample is invariant under
sign flips of a mode). Batches of ``B`` indices ``I_t`` are taken

- ``sampling="reshuffle"``: from a stream of fresh random permutations of the N points, one per epoch (a batch
  may straddle two epochs when B does not divide N);
- ``sampling="replacement"``: B indices drawn uniformly with replacement at every step.

The optimizer (an :class:`plrf.optimizers.Optimizer`: sgd, momentum, nesterov, DANA, schedule-free, with weight
decay and an EMA; a bare learning rate or schedule ``step -> lr`` means ``sgd(it)``) is its per-mode linear
system ``(A, u, f, c_eval, c_out, s0)`` at step t (``opt.system(t)``), with the state ``s`` in coordinates
shifted by theta* (``s_0 = s0 theta*``: ``theta_0 = 0``). On the sample the gradient is the empirical batch
gradient at the evaluation point ``p = theta* + c_eval . s`` (our convention: no factor 2)::

    g_t = (1/B) sum_{i in I_t} z_i (<z_i, p> - y_i) = (1/B) sum_{i in I_t} z_i (<z_i, c_eval . s> - eps_i)
    s(t+1) = A(t) s(t) + u(t) g_t + f(t) theta*

(the step of :func:`plrf.runners.batch_step`, shared with the one-pass eigen simulator, which draws fresh
``z_i`` instead). For plain SGD this is ``theta <- theta - (eta_t/B) sum_i z_i (<z_i, theta> - y_i)``.

Reported on a log-spaced step grid for every read-out ``theta^(j) - theta* = c_out[j] . s`` (row 0: the iterate;
others: the EMA ``average``, schedule-free's ``z``): the population loss
``P* + sigma^2 + sum_k lam_k (theta^(j)_k - theta*_k)^2`` (exact given theta; ``sigma^2`` is the label noise a
fresh test label carries) and the training loss ``(1/N) sum_i (<z_i, theta^(j)> - y_i)^2`` on the stored sample
(no 1/2). A run whose loss exceeds ``plrf.runners.BLOWUP`` times its initial loss (or is not finite) reports
``inf`` from that grid step on (``diverged_step``).

Stability: the optimizer is checked before any work as for one-pass training with batch B
(:func:`plrf.simulate.check_optimizer`: SGD against both edges, any other optimizer by its frozen per-mode
second-moment map). That is the edge on fresh data; multi-epoch training on the sample is governed by the
sample covariance, whose top eigenvalue exceeds ``lam_max`` (by about ``(1 + sqrt(d/N))^2`` when the spectrum
is flat), so a rate close to the edge may still diverge (``allow_unstable=True`` skips the check).

Hyper-parameter values, the spectrum, ``P*``, ``sigma`` and the grid values are traced: new values reuse the
compiled program (static: ``samples``, ``steps``, ``batch``, ``sampling``, the optimizer's kind and the number
of seeds and grid points).

Memory per run: ``8 N (d + 2)`` bytes for the sample plus ``4 steps B`` bytes for the reshuffled index stream;
times the number of seeds (vmapped). Work per run: ``O(steps B d + n_grid r N d)``. Problems larger than
``max_bytes`` (default 2 GB) are refused before any work.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _x64  # noqa: F401
from .optimizers import Optimizer, as_optimizer
from .runners import _dot, _run_grid, batch_step, vmap_runs
from .spectrum import Spectrum
from .simulate import check_optimizer, log_grid

SAMPLINGS = ("reshuffle", "replacement")
MAX_BYTES = 2 * 1024 ** 3


class FiniteCurve(NamedTuple):
    """Population and training loss on a step grid. The first seven fields are those of the iterate (read-out
    0); ``*_readouts`` hold every read-out of the optimizer (names in ``readouts``; row 0 = the iterate)."""
    steps: np.ndarray        # (n,) grid
    pop: np.ndarray          # (n,) mean population loss over seeds (iterate)
    pop_stderr: np.ndarray   # (n,)
    train: np.ndarray        # (n,) mean training loss over seeds (iterate)
    train_stderr: np.ndarray
    pop_per_seed: np.ndarray    # (seeds, n)
    train_per_seed: np.ndarray  # (seeds, n)
    readouts: Tuple[str, ...] = ("iterate",)
    pop_readouts: Optional[np.ndarray] = None            # (r, n) mean over seeds
    pop_readouts_stderr: Optional[np.ndarray] = None     # (r, n)
    train_readouts: Optional[np.ndarray] = None          # (r, n)
    train_readouts_stderr: Optional[np.ndarray] = None   # (r, n)
    pop_readouts_per_seed: Optional[np.ndarray] = None   # (seeds, r, n)
    train_readouts_per_seed: Optional[np.ndarray] = None  # (seeds, r, n)
    diverged_step: Optional[np.ndarray] = None           # (seeds,) first grid step that blew up; -1 if none

    def readout(self, name: str):
        """``(pop, pop_stderr, train, train_stderr)`` of the read-out ``name`` (e.g. ``'average'``)."""
        if name not in self.readouts:
            raise ValueError(f"readout must be one of {self.readouts}, got {name!r}")
        j = self.readouts.index(name)
        return (self.pop_readouts[j], self.pop_readouts_stderr[j], self.train_readouts[j],
                self.train_readouts_stderr[j])


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


def _draw(lam, theta_star, P_star, noise, samples, key):
    """``(Z, eps)``: the features ``(N, d)`` and the label residuals ``y - Z theta*`` ``(N,)`` of one sample."""
    kz, ke = jax.random.split(key)
    d = lam.shape[0]
    Z = jax.random.normal(kz, (samples, d), dtype=jnp.float64) * jnp.sqrt(lam)
    e = jax.random.normal(ke, (samples, 2), dtype=jnp.float64)
    return Z, jnp.sqrt(P_star) * e[:, 0] + noise * e[:, 1]


def draw_sample(lam, theta_star, P_star, noise, samples, key):
    """One stored sample: ``(Z, y)`` with ``Z`` of shape ``(N, d)`` (see module docstring)."""
    Z, eps = _draw(lam, theta_star, P_star, noise, samples, key)
    return Z, Z @ theta_star + eps


def _n_epochs(samples, steps, batch):
    return -(-steps * batch // samples)


def _index_fn(korder, samples: int, steps: int, batch: int, sampling: str):
    """``indices(t)``: the ``(batch,)`` sample indices of step ``t`` (see the module docstring)."""
    if sampling == "reshuffle":
        perms = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(korder, e), samples))(
            jnp.arange(_n_epochs(samples, steps, batch)))
        stream = perms.reshape(-1)[: steps * batch].astype(jnp.int32)
        return lambda t: jax.lax.dynamic_slice(stream, (t * batch,), (batch,))
    return lambda t: jax.random.randint(jax.random.fold_in(korder, t), (batch,), 0, samples)


def draw_run(spectrum: Spectrum, *, key, seed: int, samples: int, steps: int, batch: int = 1,
             sampling: str = "reshuffle", noise: float = 0.0):
    """The sample and the index stream of seed ``seed`` of :func:`simulate_finite` (same ``key``, ``samples``,
    ``steps``, ``batch``, ``sampling``, ``noise``): numpy ``(Z (N, d), y (N,), indices (steps, batch))``, for
    references outside the simulator."""
    _check_key(key)
    lam = np.asarray(spectrum.lam, np.float64)
    out = _draw_run_jit(jnp.asarray(lam), jnp.asarray(np.sqrt(np.asarray(spectrum.w, np.float64) / lam)),
                        jnp.asarray(float(spectrum.P_star)), jnp.asarray(float(noise)),
                        jax.random.fold_in(key, seed), samples=samples, steps=steps, batch=batch, sampling=sampling)
    return tuple(np.asarray(a) for a in out)


@functools.partial(jax.jit, static_argnames=("samples", "steps", "batch", "sampling"))
def _draw_run_jit(lam, ts, P_star, noise, key, *, samples, steps, batch, sampling):
    kdata, korder = jax.random.split(key)
    Z, y = draw_sample(lam, ts, P_star, noise, samples, kdata)
    return Z, y, jax.vmap(_index_fn(korder, samples, steps, batch, sampling))(jnp.arange(steps))


def _run(lam, cstar, P_star, noise, key, grid, opt, samples, steps, batch, sampling):
    """One seed: losses ``(2 r, n_grid)`` (population of the r read-outs, then training) and the blow-up step."""
    kdata, korder = jax.random.split(key)
    Z, eps = _draw(lam, cstar, P_star, noise, samples, kdata)
    indices = _index_fn(korder, samples, steps, batch, sampling)
    sys0 = opt.system(0.0)
    f64 = jnp.float64

    def step(s, t):
        idx = indices(t)
        return batch_step(opt.system(jnp.asarray(t, f64)), s, Z[idx], eps[idx], cstar, f64)

    def losses(s):
        es = [_dot(sys0.c_out[j], s, f64) for j in range(sys0.c_out.shape[0])]
        pop = [P_star + noise ** 2 + jnp.sum(lam * e * e) for e in es]
        train = [jnp.mean((Z @ e - eps) ** 2) for e in es]
        return jnp.stack(pop + train)

    s0 = tuple(sys0.s0[i] * cstar for i in range(sys0.s0.shape[0]))
    return _run_grid(step, losses, s0, grid, P_star + noise ** 2 + jnp.sum(lam * cstar * cstar), unroll=1)


@functools.partial(jax.jit, static_argnames=("samples", "steps", "batch", "sampling"))
def _finite_jit(lam, cstar, P_star, noise, keys, grid, opt, *, samples, steps, batch, sampling):
    """vmapped over the seed keys: ``(seeds, 2 r, n_grid)``, ``(seeds,)``. ``opt`` is traced (its values)."""
    return vmap_runs(lambda k: _run(lam, cstar, P_star, noise, k, grid, opt, samples, steps, batch, sampling), keys)


def _optimizer(optimizer) -> Optimizer:
    if isinstance(optimizer, Optimizer):
        return optimizer
    if callable(optimizer):
        return as_optimizer(optimizer)
    if isinstance(optimizer, (bool, np.bool_)) or not isinstance(optimizer, (int, float, np.integer, np.floating)):
        raise ValueError("optimizer must be a plrf.optimizers.Optimizer, a learning rate lr > 0 or a schedule "
                         f"step -> lr, got {type(optimizer).__name__}")
    if not (np.isfinite(optimizer) and optimizer > 0):
        raise ValueError(f"optimizer: the learning rate lr must be a finite number > 0, got {optimizer!r}")
    return as_optimizer(float(optimizer))


def _stats(a):
    """Mean and standard error over axis 0; inf (never NaN) where a seed diverged."""
    n = a.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):
        mean = a.mean(0)
        se = a.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, np.where(np.isfinite(mean), se, np.inf)


def simulate_finite(spectrum: Spectrum, optimizer, *, samples: int, steps: int, key, batch: int = 1,
                    sampling: str = "reshuffle", noise: float = 0.0, seeds: int = 1, grid=None, num: int = 60,
                    max_bytes: int = MAX_BYTES, allow_unstable: bool = False) -> FiniteCurve:
    """Multi-epoch training on ``samples`` stored points with ``optimizer``; see the module docstring.

    optimizer: a :class:`plrf.optimizers.Optimizer`, a learning rate > 0 (constant SGD) or a schedule
    ``step -> lr`` (SGD). ``noise``: label-noise standard deviation sigma. ``grid``: the steps to report (0 is
    always run from; default ``log_grid(steps, num)``). ``allow_unstable``: skip the stability check."""
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
    if isinstance(noise, bool) or not (isinstance(noise, (int, float, np.integer, np.floating))
                                       and np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    opt = _optimizer(optimizer)
    _check_key(key)
    need = memory_bytes(d, samples, steps, batch, seeds, sampling)
    if need > max_bytes:
        raise ValueError(f"samples/steps/seeds: the run needs about {need / 1e9:.2f} GB "
                         f"(8 N (d+2) + 4 steps B bytes per seed), over the limit max_bytes = {max_bytes / 1e9:.2f} GB")
    grid = log_grid(steps, num, after=opt) if grid is None else np.unique(np.asarray(grid, np.int64))
    if grid.ndim != 1 or grid.size == 0 or grid[0] < 0 or grid[-1] > steps:
        raise ValueError(f"grid must be steps in [0, steps={steps}]")
    check_optimizer(spectrum, opt, batch, grid, allow_unstable=allow_unstable)
    run_grid = grid if grid[0] == 0 else np.concatenate([[0], grid])   # every run starts at step 0

    theta_star = jnp.asarray(np.sqrt(np.asarray(spectrum.w, np.float64) / lam))
    keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(seeds))
    L, div = _finite_jit(jnp.asarray(lam), theta_star, jnp.asarray(float(spectrum.P_star)),
                         jnp.asarray(float(noise)), keys, jnp.asarray(run_grid, jnp.int64), opt,
                         samples=samples, steps=steps, batch=batch, sampling=sampling)
    L = np.asarray(L)[:, :, run_grid.size - grid.size:]
    r = L.shape[1] // 2
    pop, train = L[:, :r], L[:, r:]                      # (seeds, r, n)
    pm, ps = _stats(pop)
    tm, ts = _stats(train)
    return FiniteCurve(np.asarray(grid), pm[0], ps[0], tm[0], ts[0], pop[:, 0], train[:, 0],
                       tuple(opt.readouts), pm, ps, tm, ts, pop, train, np.asarray(div))
