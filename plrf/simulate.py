"""One-pass SGD on PLRF: three simulators behind one entry point, losses on a log-spaced step grid.

Methods (all use the step ``theta <- theta - (eta_r/B) sum_i W^T x_i (<W^T x_i, theta> - y_i)``, theta_0 = 0):
  * ``features``: honest SGD, x in R^v sampled each step, O(B v d) per step (the reference);
  * ``eigen``:    SGD in K's eigenbasis with Gaussian features ``x~_k = sqrt(lam_k) g_k`` and label
                  ``y = <x~, c*> + sqrt(P*) eps`` (exact in distribution for SGD), O(B d) per step;
  * ``expected``: the exact expected-loss recursion, deterministic, O(d) per step:
                  ``e_k(r+1) = g_k(eta_r) e_k(r) + n_k (eta_r^2/B) lam_k^2 P(r)``, ``P(r) = P* + sum_k e_k(r)``,
                  ``g_k(eta) = 1 - 2 eta lam_k + eta^2 lam_k^2 (B+1)/B``, ``e_k(0) = w_k``;
                  with a constant lr it advances 16 steps per block, exactly (see :func:`plrf.runners.expected`).
The loss reported for ``features`` and ``eigen`` is the exact population risk of the current iterate.
Their Gaussian draws come from :mod:`plrf.rng` (``rng='plrf'``, default: Philox-4x32-10 + a ziggurat, ~2.7x
cheaper than ``jax.random.normal``) or from ``jax.random.normal(fold_in(key, r), ...)`` (``rng='jax'``).
Runs are recorded only at the grid steps, so 1e9 steps store ``len(grid)`` numbers.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from . import _x64  # noqa: F401
from .problem import Instance, feature_matrix
from .runners import BLOWUP, require_key, runner, vmap_runs  # noqa: F401  (BLOWUP re-exported)
from .optimizers import as_optimizer, schedule_of
from .spectrum import Spectrum
from .stability import check_lr, check_system

METHODS = ("expected", "eigen", "features")
RNGS = ("plrf", "jax")  # Gaussian draws: plrf.rng (Philox + ziggurat) or jax.random.normal


class Curve(NamedTuple):
    """Loss on a step grid. ``loss`` is the mean over seeds (the exact expectation for ``expected``)."""
    steps: np.ndarray          # (n,) int64 grid
    loss: np.ndarray           # (n,) mean over seeds
    stderr: np.ndarray         # (n,) standard error of the mean (zeros for one seed or ``expected``)
    per_seed: np.ndarray       # (seeds, n)
    diverged_step: np.ndarray  # (seeds,) first grid step whose loss blew up; -1 if none
    method: str
    readouts: Optional[dict] = None  # other read-outs (e.g. 'average'): name -> (mean, stderr, per_seed)

    @property
    def final(self) -> float:
        return float(self.loss[-1])


def log_grid(steps: int, num: int = 100, *, after=None, num_after: int = 16) -> np.ndarray:
    """Unique int64 steps ``0, ..., steps``, log-spaced (every step at the start), ``<= num + 1`` points; plus,
    with ``after`` (a schedule, an optimizer, or a sequence of steps), the steps right after every discontinuity
    (jump or kink of a schedule: its ``.breakpoints``): at a breakpoint ``b`` (the first step taken with the new
    rate is ``ceil(b)``) the grid gets ``ceil(b)`` and ``ceil(b) + 1, + 2, ...`` log-spaced up to the next
    breakpoint (``num_after`` points), so no transient falls between grid points."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 2:
        raise ValueError(f"num must be an integer >= 2, got {num!r}")
    g = np.unique(np.round(np.geomspace(1, steps, num)).astype(np.int64))
    g = np.concatenate([[0], g]).astype(np.int64)
    bps = discontinuities(after, steps)
    if bps.size:
        ends = np.append(bps[1:], steps)
        extra = [b + np.round(np.geomspace(1, max(e - b, 1), num_after)).astype(np.int64) for b, e in zip(bps, ends)]
        g = np.unique(np.concatenate([g, bps, *extra]))
        g = g[(g >= 0) & (g <= steps)]
    return g


def discontinuities(after, steps: int) -> np.ndarray:
    """Integer steps in ``(0, steps)`` where a rate first differs after a jump or kink: ``ceil`` of the
    ``.breakpoints`` of a schedule or of every hyper-parameter of an optimizer (or of a sequence of steps)."""
    from .optimizers import Optimizer, breakpoints
    if after is None:
        return np.zeros(0, dtype=np.int64)
    if isinstance(after, Optimizer):
        b = breakpoints(after)
    elif callable(after):
        b = getattr(after, "breakpoints", ())
    else:
        b = after
    b = np.ceil(np.asarray(b, dtype=np.float64).ravel())
    b = b[np.isfinite(b) & (b > 0) & (b < steps)]
    return np.unique(b.astype(np.int64))


def _check_grid(grid, steps):
    grid = np.asarray(grid, dtype=np.int64)
    if grid.ndim != 1 or grid.size < 2 or grid[0] != 0 or np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be a strictly increasing 1-d array of steps starting at 0")
    if steps is not None and grid[-1] != steps:
        raise ValueError(f"grid must end at steps={steps}, got {grid[-1]}")
    return grid


@functools.partial(jax.jit, static_argnames=("method", "batch", "dtype", "rng"))
def _simulate_jit(arrays, keys, lr_scales, grid, opt, *, method, batch, dtype, rng):
    """vmapped over lr_scales (outer) and keys (inner). Returns (n_lr, n_seed, r, n_grid), (n_lr, n_seed).

    ``opt`` (a :class:`plrf.optimizers.Optimizer`) is traced: new hyper-parameter values reuse the program."""
    width = keys.shape[0] * lr_scales.shape[0]   # runs vmapped together
    run = runner(method, arrays, grid, opt=opt, batch=batch, dtype=dtype, rng=rng, width=width)
    if method == "expected":
        P, div = vmap_runs(lambda s: run(None, s, batch), lr_scales)
        return P[:, None], div[:, None]
    return vmap_runs(lambda s: vmap_runs(lambda k: run(k, s, batch), keys), lr_scales)


def check_rng(rng) -> str:
    if rng not in RNGS:
        raise ValueError(f"rng must be one of {RNGS}, got {rng!r}")
    return rng


def seed_keys(key, seeds) -> jax.Array:
    """Keys for seed ids: ``fold_in(key, seed)``. The same seed id gives the same key in any sweep."""
    ids = np.arange(seeds) if np.ndim(seeds) == 0 else np.asarray(seeds)
    if ids.ndim != 1 or ids.size < 1 or not np.issubdtype(ids.dtype, np.integer) or np.any(ids < 0) \
            or np.any(ids >= 2 ** 32):
        raise ValueError(f"seeds must be a count >= 1 or a 1-d array of non-negative seed ids, got {seeds!r}")
    return _fold_in_all(key, jnp.asarray(ids, jnp.uint32))


_fold_in_all = jax.jit(jax.vmap(jax.random.fold_in, (None, 0)))   # one dispatch (eager vmap: ~1 ms per call)


def _method_arrays(source, method):
    spec = source.spectrum if isinstance(source, Instance) else source
    if not isinstance(spec, Spectrum):
        raise TypeError(f"expected a Spectrum or an Instance, got {type(source).__name__}")
    if method == "expected":
        return spec, (jnp.asarray(spec.lam), jnp.asarray(spec.n), jnp.asarray(spec.w), jnp.asarray(spec.P_star))
    if method == "eigen":
        if not np.allclose(spec.n, 1.0):
            raise ValueError("method='eigen' needs unit multiplicities n "
                             "(use plrf.spectrum.expand on a binned spectrum)")
        # |<u_k, theta*>| (w_k = lam_k <u_k, theta*>^2; 0 on a zero eigenvalue); signs are irrelevant for
        # Gaussian features
        cstar = np.sqrt(np.divide(spec.w, spec.lam, out=np.zeros_like(spec.w), where=spec.lam > 0))
        return spec, (jnp.asarray(spec.lam), jnp.asarray(cstar), jnp.asarray(spec.P_star))
    if method == "features":
        if not isinstance(source, Instance):
            raise ValueError("method='features' needs an Instance (it samples x in R^v through W)")
        p = source.problem
        W = source.W if source.W is not None else feature_matrix(p, key=source.key)
        arrays = tuple(jnp.asarray(a) for a in (W, np.sqrt(p.D), p.b, spec.lam, source.U,
                                                source.theta_star, spec.P_star))
        # label noise is drawn explicitly on y (spec.P_star already includes sigma^2 for the reported risk)
        sigma2 = getattr(p, "label_noise", 0.0)
        return spec, arrays + ((jnp.asarray(np.sqrt(sigma2)),) if sigma2 > 0 else ())
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _peak(schedule, grid) -> float:
    """``schedule.peak``; for an untagged closure, its maximum over every step (over the grid past 2^22 steps)."""
    peak = getattr(schedule, "peak", None)
    if peak is not None and np.isfinite(peak):
        return float(peak)
    at = np.arange(grid[-1] + 1) if grid[-1] <= 2 ** 22 else grid
    vals = np.asarray(schedule(jnp.asarray(at)), dtype=np.float64)
    if not np.all(np.isfinite(vals)) or np.any(vals < 0):
        raise ValueError("schedule must return finite learning rates >= 0")
    return float(np.max(vals))


def check_optimizer(spec, opt, batch: int, grid, scale: float = 1.0, *, allow_unstable: bool = False) -> None:
    """SGD: the peak lr against both edges (:func:`plrf.stability.check_lr`); any other optimizer: the frozen
    per-mode second-moment map and the noise-feedback kernel norm at the grid steps
    (:func:`plrf.stability.check_system`)."""
    lr = schedule_of(opt)
    if lr is not None:
        peak = _peak(lr.shape, grid) * float(np.max(lr.value)) if lr.shape is not None else float(np.max(lr.value))
        check_lr(spec, float(peak * scale), int(batch), allow_unstable=allow_unstable)
        return
    check_system(spec, opt.scale_lr(scale), int(batch), grid, allow_unstable=allow_unstable)


def run(source: Union[Spectrum, Instance], optimizer, *, steps: int, batch: int = 1, method: str = "expected",
        key: Optional[jax.Array] = None, seeds: Union[int, Sequence[int]] = 1, lr_scales=(1.0,),
        grid=None, num: int = 100, allow_unstable: bool = False, dtype=jnp.float64, rng: str = "plrf",
        readouts: bool = False):
    """Raw runs: ``(grid, losses (n_lr, n_seed, n_grid), blow-up steps (n_lr, n_seed))`` of the iterate; with
    ``readouts=True``, ``(grid, losses (n_lr, n_seed, n_readouts, n_grid), blow-up steps, optimizer)``.

    ``optimizer``: a :class:`plrf.optimizers.Optimizer` or a schedule (= SGD with it). ``lr_scales`` multiplies
    its learning rates (vmapped); seeds are vmapped. See :func:`simulate`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    grid = _check_grid(log_grid(steps, num, after=optimizer) if grid is None else grid, steps)
    lr_scales = np.atleast_1d(np.asarray(lr_scales, dtype=np.float64))
    if lr_scales.ndim != 1 or np.any(~np.isfinite(lr_scales)) or np.any(lr_scales <= 0):
        raise ValueError(f"lr_scales must be finite and > 0, got {lr_scales}")
    if dtype not in (jnp.float64, jnp.float32, np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    check_rng(rng)
    spec, arrays = _method_arrays(source, method)
    opt = as_optimizer(optimizer)     # schedules are canonical: an equal schedule reuses the compiled program
    check_optimizer(spec, opt, int(batch), grid, float(lr_scales.max()), allow_unstable=allow_unstable)
    if method == "expected":
        keys = jnp.zeros((1,), jnp.uint32)  # unused
    else:
        require_key(method, key)
        keys = seed_keys(key, seeds)
    P, div = _simulate_jit(arrays, keys, jnp.asarray(lr_scales), jnp.asarray(grid), opt, method=method,
                           batch=int(batch), dtype=jnp.dtype(dtype).type, rng=rng)
    if readouts:
        return grid, np.asarray(P), np.asarray(div), opt
    return grid, np.asarray(P)[:, :, 0], np.asarray(div)


def _stats(P):
    n = P.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):
        mean = P.mean(axis=0)
        se = P.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    se = np.where(np.isfinite(mean), se, np.inf)  # a diverged seed: mean and stderr inf, never NaN
    return mean, se


def _curve(grid, P, div, method, names=("iterate",)) -> Curve:
    """``P``: (seeds, readouts, n_grid); the first read-out is the curve, the others go to ``readouts``."""
    mean, se = _stats(P[:, 0])
    extra = {name: (*_stats(P[:, k]), P[:, k]) for k, name in enumerate(names) if k > 0}
    return Curve(grid, mean, se, P[:, 0], div, method, extra or None)


def simulate(source: Union[Spectrum, Instance], optimizer, *, steps: int, batch: int = 1,
             method: str = "eigen", key: Optional[jax.Array] = None, seeds: Union[int, Sequence[int]] = 1,
             grid=None, num: int = 100, allow_unstable: bool = False, dtype=jnp.float64,
             rng: str = "plrf") -> Curve:
    """Run ``optimizer`` (a :class:`plrf.optimizers.Optimizer`; a schedule closure step -> lr means SGD with it)
    for ``steps`` steps on fresh batches of ``batch`` samples. Extra read-outs (the EMA average, schedule-free's
    z) are in ``Curve.readouts``.

    ``source`` is a :class:`Spectrum` (methods ``expected``, ``eigen``) or an :class:`Instance` (all three).
    ``seeds`` is a count or a list of seed ids; seed ``s`` uses ``fold_in(key, s)`` for every method, so the
    same seed gives the same curve whatever else is run alongside. The peak learning rate is checked
    against both stability edges first (:func:`plrf.stability.check_lr`). A run that blows up anyway
    (``allow_unstable=True``) reports the grid step where it did in ``diverged_step`` and ``inf`` after it.
    ``rng`` chooses the Gaussian generator of ``eigen``/``features`` (:data:`RNGS`; see the module docstring).
    """
    grid, P, div, opt = run(source, optimizer, steps=steps, batch=batch, method=method, key=key, seeds=seeds,
                            grid=grid, num=num, allow_unstable=allow_unstable, dtype=dtype, rng=rng,
                            readouts=True)
    return _curve(grid, P[0], div[0], method, opt.readouts)


def expected_loss(spectrum: Spectrum, optimizer, *, steps: int, batch: int = 1, grid=None, num: int = 100,
                  allow_unstable: bool = False) -> Curve:
    """The exact expected loss of one-pass training with ``optimizer`` (deterministic), see :func:`simulate`
    ``method='expected'``."""
    return simulate(spectrum, optimizer, steps=steps, batch=batch, method="expected", grid=grid, num=num,
                    allow_unstable=allow_unstable)
