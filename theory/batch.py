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
* ``B_hessian(t) = E tr(K Sigma) / E G^T K G = (E[P] tr K^2 + sum lam^3 M) / sum lam^3 M``: McCandlish's
  Hessian-weighted ``B_noise = tr(H Sigma) / G^T H G`` (H = K), the scale their quadratic model ties to the
  critical batch (``B_simple`` is it with H replaced by a multiple of I).
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

import math
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import plrf
from plrf import moments
from plrf import optimizers as O
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
    B_hessian: np.ndarray   # E tr(K Sigma) / E G^T K G (McCandlish's Hessian-weighted B_noise)


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
        return jnp.stack([P, jnp.sum(lam * lam * q), jnp.sum(lam * lam * mean * mean), jnp.sum(lam ** 3 * q)])

    def step(c, r):
        return moments.step(c, opt.system(jnp.asarray(r, jnp.float64)), lam, n, ts, P_star, B, True)

    out, _ = jax.jit(lambda: _run_steps(step, stats, state0, grid, P_star + jnp.sum(w)))()
    P, G2, EG2, GKG = (np.asarray(x) for x in out)
    tr_sigma = P * trK + G2
    tr_cov = P * trK + 2 * G2 - EG2
    trK2 = float(np.sum(spectrum.n * spectrum.lam ** 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return NoiseScale(grid, P, G2, EG2, tr_sigma, tr_cov, tr_sigma / G2, tr_cov / EG2,
                          (P * trK2 + GKG) / GKG)


def b_simple_initial(spectrum: Spectrum) -> float:
    """McCandlish's ``B_simple = tr Sigma / |G|^2`` at theta_0 = 0 (deterministic):
    ``1 + P(0) tr K / sum_k lam_k w_k`` (``G = -K theta*``, ``|G|^2 = sum lam_k w_k``)."""
    return float(1.0 + spectrum.P0 * spectrum.trace / np.sum(spectrum.lam * spectrum.w))


# ---------------------------------------------------------------------------------------------------------
# the batch-size frontier: steps S(B) and samples E(B) = B S(B) to reach a target loss, lr tuned per B

FAMILIES = ("sgd", "momentum", "nesterov", "dana-decaying")
MOMENTUM_FAMILIES = ("momentum", "nesterov")    # the families with a momentum mu (tunable: ``mus``)


def make_optimizer(family: str, lr, mu: float = 0.9, schedule: str = "constant", steps: int = 1,
                   dana: Optional[dict] = None):
    """``sgd``, heavy-ball ``momentum`` or ``nesterov`` (optax meaning, momentum ``mu``) with a constant or cosine
    (to zero over ``steps``) peak ``lr``; ``dana-decaying`` (constant only: its g3 already decays) with
    ``g2, g3 = lr x`` the base values ``dana`` (:func:`theory.hparam_laws.dana_base`; ``lr`` is their common
    scale, built by :func:`theory.hparam_laws.make_optimizer`)."""
    if family not in FAMILIES:
        raise ValueError(f"optimizer family must be one of {FAMILIES}, got {family!r}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    if family == "dana-decaying":
        if schedule != "constant":
            raise ValueError("dana-decaying: only a constant schedule (its g3 decays as (1 + t)^-kappa already)")
        from . import hparam_laws as H
        return H.make_optimizer(family, lr, dana=dana)
    sch = plrf.schedules.constant(lr) if schedule == "constant" else plrf.schedules.cosine(lr, steps)
    if family == "sgd":
        return O.sgd(sch)
    if family == "momentum":
        return O.momentum(sch, mu)
    return O.nesterov(sch, mu)


def max_lr(spectrum: Spectrum, family: str, batch: int, mu: float = 0.9, *, dana: Optional[dict] = None,
           steps: int = 1, cache: Optional[dict] = None) -> float:
    """The largest stable constant lr (supremum) of ``family`` at ``batch``: SGD's two edges
    (:func:`plrf.stability_edges`); heavy ball, Nesterov and DANA's common scale of (g2, g3) by
    :func:`theory.hparam_laws.max_lr` (bisection on the frozen system's radius and noise-feedback norm,
    :func:`plrf.stability.system_edges`; DANA at every probe step of a run of ``steps``)."""
    if family == "sgd":
        return plrf.stability_edges(spectrum, batch).max_lr
    from . import hparam_laws as H
    return H.max_lr(spectrum, family, int(batch), mu=mu, dana=dana, steps=int(steps), cache=cache)


def steps_to_target(curve_steps, curve_loss, target) -> float:
    """First crossing of ``target`` by a loss curve on a grid, interpolated linearly in (log step, log loss)
    between the bracketing grid points (continuous in the lr, so a scalar minimiser can tune it); inf if never."""
    s, L = np.asarray(curve_steps, dtype=np.float64), np.asarray(curve_loss, dtype=np.float64)
    below = np.flatnonzero(L <= target)
    if below.size == 0:
        return math.inf
    i = int(below[0])
    if i == 0:
        return 0.0
    s0, s1 = max(s[i - 1], 1.0), s[i]
    if L[i - 1] <= L[i] or s0 >= s1:
        return float(s1)
    f = (math.log(L[i - 1]) - math.log(target)) / (math.log(L[i - 1]) - math.log(L[i]))
    return float(math.exp(math.log(s0) + f * (math.log(s1) - math.log(s0))))


class BatchPoint(NamedTuple):
    batch: int
    steps: float        # S(B): steps to the target at the tuned lr (inf if unreachable within max_steps)
    samples: float      # E(B) = B S(B)
    lr: float           # tuned peak lr (DANA: the common scale of g2, g3)
    lr_max: float       # the stability bound at this B (and mu)
    lr_frac: float      # lr / lr_max
    mu: float = math.nan              # the momentum used (tuned with ``mus``); NaN for sgd and DANA
    steps_by_mu: Optional[np.ndarray] = None    # with ``mus``: S at each grid mu (lr tuned at each)
    lr_by_mu: Optional[np.ndarray] = None


def tune_batch(spectrum: Spectrum, target: float, batch: int, *, family: str = "sgd", mu: float = 0.9,
               schedule: str = "constant", max_steps: int = 10 ** 5, num: int = 400, frac_max: float = 0.99,
               xatol: float = 1e-3, dana: Optional[dict] = None, mus: Optional[Sequence[float]] = None,
               refine_mu: bool = False, mu_xatol: float = 0.05, cache: Optional[dict] = None) -> BatchPoint:
    """Tune the peak lr at ``batch`` to minimise the steps to ``target`` on the exact theory.

    constant: S(lr) = first crossing of the exact expected loss (:func:`steps_to_target` on a log grid of
    ``num`` points up to ``max_steps``), minimised over log lr in [1e-3, ``frac_max``] x the stability edge
    (:func:`max_lr`) by scipy's bounded scalar search (after a coarse scan of 12 points, which brackets the
    minimum: S(lr) can be flat at inf far from it). cosine: S is the smallest horizon T whose tuned cosine(lr, T)
    final loss reaches the target (bisection in log T over the tuned final losses).

    ``mus`` (heavy ball, Nesterov): mu tuned jointly -- the lr tuned as above at every mu of the grid (the
    stability edge at each), the fewest steps kept; ``refine_mu``: then the continuous optimum in ln(1 - mu)
    between the grid neighbours (:func:`theory.hparam_laws.refine_mu_search`, the lr re-tuned at each trial mu),
    kept when it needs fewer steps. ``dana``: DANA-decaying's base values, ``lr`` being their common scale
    (bounded at every probe step up to ``max_steps``; ``cache`` keeps those bounds across batches)."""
    kw = dict(family=family, schedule=schedule, max_steps=max_steps, num=num, frac_max=frac_max, xatol=xatol,
              dana=dana, cache=cache)
    if mus is None:
        return _tune_lr(spectrum, target, batch, mu=mu, **kw)
    if family not in MOMENTUM_FAMILIES:
        raise ValueError(f"tune_batch: mus (momentum tuning) needs a family in {MOMENTUM_FAMILIES}, got {family!r}")
    grid = np.asarray(mus, dtype=np.float64)
    pts = [_tune_lr(spectrum, target, batch, mu=float(m), **kw) for m in grid]
    S = np.array([p.steps for p in pts])
    j = int(np.argmin(S))
    best = pts[j]
    if refine_mu and math.isfinite(best.steps):
        from .hparam_laws import refine_mu_search
        seen = []

        def f(m):
            p = _tune_lr(spectrum, target, batch, mu=m, **kw)
            seen.append(p)
            return math.log(max(p.steps, 1e-300)) if math.isfinite(p.steps) else 1e3
        refine_mu_search(f, grid, j, mu_xatol=mu_xatol)
        cand = min(seen, key=lambda p: p.steps)
        if cand.steps < best.steps:
            best = cand
    return best._replace(steps_by_mu=S, lr_by_mu=np.array([p.lr for p in pts]))


def _tune_lr(spectrum, target, batch, *, family, mu, schedule, max_steps, num, frac_max, xatol, dana, cache):
    """:func:`tune_batch` at a fixed momentum ``mu``."""
    from scipy import optimize
    bound = max_lr(spectrum, family, batch, mu, dana=dana, steps=max_steps, cache=cache)
    top = bound * frac_max
    mu_used = float(mu) if family in MOMENTUM_FAMILIES else math.nan

    def point(steps, lr):
        return BatchPoint(batch, float(steps), float(batch * steps), lr, bound,
                          lr / bound if math.isfinite(lr) else math.nan, mu_used)
    if schedule == "constant":
        grid = plrf.log_grid(max_steps, num)

        def S(loglr):
            c = plrf.expected_loss(spectrum, make_optimizer(family, math.exp(loglr), mu, dana=dana),
                                   steps=max_steps, batch=batch, grid=grid, allow_unstable=True)   # bounded above
            return steps_to_target(c.steps, c.loss, target)
        lo, hi = math.log(top * 1e-3), math.log(top)
        xs = np.linspace(lo, hi, 12)
        vals = np.array([S(x) for x in xs])
        if not np.any(np.isfinite(vals)):
            return point(math.inf, math.nan)
        j = int(np.argmin(vals))
        a, b = xs[max(j - 1, 0)], xs[min(j + 1, xs.size - 1)]

        def finite_S(x):
            v = S(x)
            return v if np.isfinite(v) else 1e300
        res = optimize.minimize_scalar(finite_S, bounds=(a, b), method="bounded", options=dict(xatol=xatol))
        x, val = (res.x, res.fun) if res.fun <= vals[j] else (xs[j], vals[j])
        return point(val, math.exp(x))
    if schedule != "cosine":
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")

    def final(T):
        T = int(max(1, round(T)))

        def L(loglr):
            c = plrf.expected_loss(spectrum, make_optimizer(family, math.exp(loglr), mu, "cosine", T, dana=dana),
                                   steps=T, batch=batch, grid=np.array([0, T]), allow_unstable=True)
            return float(c.loss[-1]) if np.isfinite(c.loss[-1]) else 1e300
        lo, hi = math.log(top * 1e-3), math.log(top)
        res = optimize.minimize_scalar(L, bounds=(lo, hi), method="bounded", options=dict(xatol=xatol))
        return res.fun, math.exp(res.x)
    lo_T, hi_T = 1.0, float(max_steps)
    if final(hi_T)[0] > target:
        return point(math.inf, math.nan)
    while hi_T / lo_T > 1.02 and hi_T - lo_T > 1:
        mid = math.sqrt(lo_T * hi_T)
        lo_T, hi_T = (lo_T, mid) if final(mid)[0] <= target else (mid, hi_T)
    T = float(round(hi_T))
    return point(T, final(T)[1])


class TradeOff(NamedTuple):
    """McCandlish's ``(S/S_min - 1)(E/E_min - 1) = 1``, i.e. ``S(B) = S_min (1 + B_crit/B)``,
    ``E(B) = E_min (1 + B/B_crit)``, ``B_crit = E_min / S_min``."""
    S_min: float
    E_min: float
    B_crit: float
    B_crit_err: float       # standard error from the least-squares Jacobian (log B_crit, times B_crit)
    max_log_resid: float    # max |log S_measured - log S_fit| over the fitted points


def fit_tradeoff(batch, steps) -> TradeOff:
    """Least squares in log S of ``S(B) = S_min (1 + B_crit / B)`` over the finite points."""
    from scipy import optimize
    B, S = np.asarray(batch, dtype=np.float64), np.asarray(steps, dtype=np.float64)
    ok = np.isfinite(S) & (S > 0)
    B, S = B[ok], S[ok]
    if B.size < 3:
        raise ValueError(f"fit_tradeoff needs >= 3 finite points, got {B.size}")

    def resid(p):
        return p[0] + np.log1p(np.exp(p[1]) / B) - np.log(S)
    p0 = np.array([math.log(S.min()), math.log(np.sqrt(B.min() * B.max()))])
    r = optimize.least_squares(resid, p0)
    J = r.jac
    dof = max(B.size - 2, 1)
    s2 = float(np.sum(r.fun ** 2)) / dof
    try:
        cov = np.linalg.inv(J.T @ J) * s2
        err = float(np.sqrt(max(cov[1, 1], 0.0)))
    except np.linalg.LinAlgError:
        err = math.inf
    S_min, Bc = math.exp(r.x[0]), math.exp(r.x[1])
    return TradeOff(S_min, S_min * Bc, Bc, Bc * err, float(np.max(np.abs(r.fun))))


def noise_at_target(spectrum: Spectrum, target: float, point: BatchPoint, *, family="sgd", mu=0.9,
                    schedule="constant", num: int = 200, dana: Optional[dict] = None):
    """The exact noise scales (:func:`noise_scale`) of the tuned run at ``point`` at the step it reaches
    ``target`` (interpolated in log step): dict with B_simple, B_hessian, B_noise, step, and the whole curve.
    The momentum is the point's (tuned or fixed) when it has one, else ``mu``."""
    T = int(math.ceil(point.steps)) if schedule == "constant" else int(point.steps)
    T = max(T, 2)
    m = point.mu if math.isfinite(point.mu) else mu
    opt = make_optimizer(family, point.lr, m, schedule, T, dana=dana)
    ns = noise_scale(spectrum, opt, steps=T, batch=point.batch, num=num)
    at = {}
    for k in ("B_simple", "B_hessian", "B_noise"):
        y = np.asarray(getattr(ns, k))
        at[k] = float(np.exp(np.interp(math.log(max(point.steps, 1.0)), np.log(np.maximum(ns.steps, 1)),
                                       np.log(y))))
    at["step"] = float(point.steps)
    return at, ns
