"""Scaling laws of the hyper-parameters of one-pass training on PLRF, on the exact theory (issue 14, item 4).

For a problem (alpha, beta), a ladder of model sizes d (deterministic-equivalent binned spectra,
:func:`theory.deterministic.deterministic_spectrum`, so large d costs ~ its number of bins) and data budgets
D = B S (samples), every quantity is computed on the exact expected loss of a constant-lr run
(:func:`plrf.expected_loss`, blocked exact recursion, for S <= ``EXACT_MAX`` steps; the log-time solver
:func:`theory.logtime.solve_logtime` beyond):

* ``L*(B, D)``: the final loss after S = D/B steps at batch B (B = powers of two with S >= ``MIN_STEPS``), the
  constant peak lr tuned on the exact theory in ``[1e-3, frac_max] x`` the stability bound at B
  (:func:`theory.batch.max_lr`): bounded Brent search in log lr after a coarse bracketing scan;
* ``B*(D)``: the loss-minimising B at fixed D (:func:`optimal_batch`; parabola in (log B, log L) through the
  discrete argmin and its neighbours; ``at_edge`` when the argmin is the smallest or largest B);
* ``B_tol(D)``: the largest B whose tuned loss is within a factor ``1 + tol`` of the best at D (interpolated in
  log B) -- the "largest near-optimal batch", a finite answer when B* sits at the edge B = 1;
* ``B_crit(D)``: McCandlish's ``S = S_min (1 + B_crit/B)`` fitted (:func:`theory.batch.fit_tradeoff`) on the
  steps to the target ``L_target = min_B L*(B, D)`` (the best loss reached with D samples). Constant-lr tuning
  is dual: the fewest steps to a target with a tuned constant lr is the first S where the tuned envelope
  ``L*(B, B S)`` crosses it, so ``E(B)`` is read off the table ``L*(B, D')`` by interpolation in
  (log D', log L) (:func:`critical_batch`); the D grid extends past the reported budgets so large B can reach
  the target;
* ``eta*(D)``: the tuned peak lr at B* (the grid B nearest B*);
* ``lambda*(D)``: decoupled weight decay (``wd_t = lr_t lambda``, :mod:`plrf.optimizers`) tuned jointly with
  the lr at the grid B nearest B* (:func:`tune_weight_decay`: lambda = 0 and the lambdas of the Power Lines
  timescales ``tau = B / (eta lambda D) = 1 / (eta lambda S)`` in a grid, the lr re-tuned at each); tau at the
  optimum.

Fits (:func:`power_fit`): least squares on log-log, standard error from the residuals and a bootstrap over
points (resampled with replacement, ``n_boot`` draws); reported error = max of the two.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional, Sequence

import numpy as np

import plrf
from plrf import optimizers as O

EXACT_MAX = 1_000_000   # steps: the blocked exact recursion up to here, the log-time solver beyond
MIN_STEPS = 4         # a batch is used at budget D only if S = D/B >= MIN_STEPS
FAMILIES = ("sgd", "momentum", "nesterov", "dana-decaying")
MOMENTUM_FAMILIES = ("momentum", "nesterov")   # the families with a momentum mu (tunable)
MU_GRID = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)     # --tune-momentum: lr tuned at each, the best pair kept
DANA_EXACT_MAX = 20_000   # DANA (per-step recursion): the log-time solver beyond


def ladder_spectrum(alpha: float, beta: float, d: int, *, ratio: float = 4.0, label_noise: float = 0.0):
    """The binned deterministic-equivalent spectrum of the ladder (v = inf if 2 alpha > 1, else ratio d)."""
    from .deterministic import deterministic_spectrum
    from .ladder import data_dim
    return deterministic_spectrum(alpha, beta, int(d), v=data_dim(alpha, int(d), ratio), label_noise=label_noise)


def dana_base(spec, alpha: float) -> dict:
    """DANA-decaying's batch-1 defaults on ``spec`` (:func:`plrf.optimizers.dana_defaults`: ``g2 = 0.25/tr K``,
    ``g3 = 0.125/tr K``, ``delta = 8``, ``kappa = 1/(2 alpha)``); the tuned "lr" of DANA is a common scale of g2 and
    g3 (:meth:`plrf.optimizers.Optimizer.scale_lr`), delta and kappa stay at these values."""
    dd = O.dana_defaults(float(spec.trace), int(round(float(np.sum(spec.n)))), float(alpha), 0.0)
    return dict(g2=dd["g2"], g3=dd["g3_decaying"], delta=dd["delta"], kappa=dd["kappa"])


def make_optimizer(family: str, lr: float, *, mu: float = 0.9, weight_decay: float = 0.0,
                   dana: Optional[dict] = None):
    """Constant-lr ``sgd``, heavy-ball ``momentum`` or ``nesterov`` (optax meaning, momentum ``mu``), or
    ``dana-decaying`` with ``g2, g3 = lr x`` the defaults ``dana`` (:func:`dana_base`; ``lr`` is then the scale);
    decoupled weight decay ``wd_t = lr_t weight_decay`` (DANA: ``g2 weight_decay``)."""
    if family == "sgd":
        return O.sgd(plrf.schedules.constant(lr), weight_decay=weight_decay)
    if family == "momentum":
        return O.momentum(plrf.schedules.constant(lr), mu, weight_decay=weight_decay)
    if family == "nesterov":
        return O.nesterov(float(lr), mu, weight_decay=weight_decay)
    if family == "dana-decaying":
        if dana is None:
            raise ValueError("dana-decaying needs its base hyper-parameters (dana=dana_base(spec, alpha))")
        return O.dana_decaying(lr * dana["g2"], lr * dana["g3"], delta=dana["delta"], kappa=dana["kappa"],
                               weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {FAMILIES}, got {family!r}")


def final_loss(spec, family: str, lr: float, batch: int, steps: int, *, mu: float = 0.9,
               weight_decay: float = 0.0, dana: Optional[dict] = None) -> float:
    """The exact expected loss after ``steps`` constant-lr steps (inf if it blows up or is unstable). DANA (time-
    dependent coefficients, a per-step recursion) uses the log-time solver beyond ``DANA_EXACT_MAX`` steps."""
    steps = int(steps)
    opt = make_optimizer(family, lr, mu=mu, weight_decay=weight_decay, dana=dana)
    grid = np.array([0, steps])
    exact_max = DANA_EXACT_MAX if family == "dana-decaying" else EXACT_MAX
    try:
        if steps <= exact_max:
            v = float(plrf.expected_loss(spec, opt, steps=steps, batch=batch, grid=grid,
                                         allow_unstable=True).loss[-1])
        else:
            from .logtime import solve_logtime
            v = float(solve_logtime(spec, opt, steps=steps, batch=batch, grid=grid).loss[-1])
    except (ValueError, FloatingPointError):      # the log-time solver refuses an unstable optimizer
        return math.inf
    return v if np.isfinite(v) and v > 0 else math.inf


def _frozen_ok(spec, opt, batch, t=0.0) -> bool:
    from plrf.stability import system_edges
    rad, kn = system_edges(spec, opt.system(float(t)), batch)
    return rad < 1 and kn < 1


def _bisect_edge(ok, start: float, rtol: float = 1e-6) -> float:
    """Largest x with ``ok(x)`` (supremum; ``ok`` monotone), bracketed by doubling from ``start``."""
    lo, hi = 0.0, start
    while ok(hi):
        lo, hi = hi, hi * 2
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        if hi - lo <= rtol * hi:
            break
    return lo


def dana_probes(steps: int) -> np.ndarray:
    """Steps at which DANA's frozen map is checked for a run of ``steps``: 0 and the powers of 10 below."""
    k = int(math.floor(math.log10(max(int(steps), 1)) + 1e-12))
    return np.array([0] + [10 ** i for i in range(k + 1)], dtype=np.int64)


def max_lr(spec, family: str, batch: int, *, mu: float = 0.9, dana: Optional[dict] = None, steps: int = 1,
           cache: Optional[dict] = None) -> float:
    """The stability bound of the tuned lr at ``batch`` (:mod:`plrf.stability`): SGD's two edges; heavy ball and
    Nesterov: bisection on the frozen system's spectral radius and noise-feedback norm
    (:func:`plrf.stability.system_edges`); DANA: the largest common scale of (g2, g3) whose frozen map is stable
    at every step of :func:`dana_probes` (``steps``) -- the scale bound at each probe step is cached in ``cache``
    under ``(batch, t)``."""
    edges = plrf.stability_edges(spec, int(batch))
    if family == "sgd" or (family in ("momentum", "nesterov") and mu == 0):
        return edges.max_lr
    if family in ("momentum", "nesterov"):
        return _bisect_edge(lambda x: _frozen_ok(spec, make_optimizer(family, x, mu=mu), batch),
                            edges.max_lr)
    if family != "dana-decaying":
        raise ValueError(f"optimizer must be one of {FAMILIES}, got {family!r}")
    out = math.inf
    for t in dana_probes(steps):
        key = ("dana", int(batch), int(t))
        if cache is not None and key in cache:
            v = cache[key]
        else:
            start = edges.max_lr / (dana["g2"] + dana["g3"])      # t = 0 is SGD with lr g2 + g3
            v = _bisect_edge(lambda x: _frozen_ok(spec, make_optimizer(family, x, dana=dana), batch, t), start)
            if cache is not None:
                cache[key] = v
        out = min(out, v)
    return out


class Tuned(NamedTuple):
    lr: float
    loss: float
    lr_max: float     # the stability bound at this batch
    nfev: int


def tune_lr(spec, family: str, batch: int, steps: int, *, mu: float = 0.9, weight_decay: float = 0.0,
            frac_max: float = 0.99, lr_max: Optional[float] = None, xatol: float = 0.02, scan: int = 7,
            dana: Optional[dict] = None) -> Tuned:
    """Minimise the final loss over the constant lr (DANA: the scale of g2, g3) in log space within
    ``[1e-3, frac_max] x lr_max`` (:func:`max_lr`): a ``scan``-point coarse scan brackets the minimum, then
    scipy's bounded Brent search (``xatol`` in ln lr)."""
    from scipy import optimize
    if lr_max is None:
        lr_max = max_lr(spec, family, int(batch), mu=mu, dana=dana, steps=steps)
    top = lr_max * frac_max
    n = [0]

    def f(x):
        n[0] += 1
        v = final_loss(spec, family, math.exp(x), batch, steps, mu=mu, weight_decay=weight_decay, dana=dana)
        return math.log(v) if math.isfinite(v) else 1e3
    xs = np.linspace(math.log(top * 1e-3), math.log(top), scan)
    vals = np.array([f(x) for x in xs])
    j = int(np.argmin(vals))
    a, b = xs[max(j - 1, 0)], xs[min(j + 1, scan - 1)]
    res = optimize.minimize_scalar(f, bounds=(a, b), method="bounded", options=dict(xatol=xatol))
    x, v = (res.x, res.fun) if res.fun <= vals[j] else (xs[j], vals[j])
    return Tuned(math.exp(x), math.exp(v) if v < 1e3 else math.inf, lr_max, n[0])


class TunedMu(NamedTuple):
    mu: float            # the best mu on the grid
    lr: float            # its tuned lr
    loss: float
    lr_max: float        # the stability bound at (batch, mu)
    mus: np.ndarray      # the grid
    losses: np.ndarray   # tuned (over lr) loss at each mu
    lrs: np.ndarray


def tune_lr_mu(spec, family: str, batch: int, steps: int, *, mus: Sequence[float] = MU_GRID,
               frac_max: float = 0.99, xatol: float = 0.02, scan: int = 7, weight_decay: float = 0.0,
               lr_max_cache: Optional[dict] = None, refine: bool = False, mu_xatol: float = 0.05) -> TunedMu:
    """Joint (mu, lr) tuning of heavy ball / Nesterov: the lr tuned (:func:`tune_lr`, bounded by the stability
    edge at (batch, mu)) at every mu of the grid ``mus``; the best pair is kept. ``refine``: then a continuous
    optimum, scipy's bounded Brent search in ``x = ln(1 - mu)`` (``mu_xatol`` in x) between the grid neighbours of
    the best grid mu (past the last one up to ``1 - (1 - mu_last)/10``, moved up by factors of 10 in ``1 - mu``
    while the optimum sits at that end, to ``1 - mu = 1e-6``), the lr re-tuned at every trial mu; the
    returned ``mu``, ``lr``, ``loss`` are the refined ones (never worse than the grid's best), ``mus``/``losses``
    stay the grid's."""
    if family not in MOMENTUM_FAMILIES:
        raise ValueError(f"tune_lr_mu: family must be one of {MOMENTUM_FAMILIES}, got {family!r}")
    res = []
    for m in mus:
        key = (int(batch), float(m))
        if lr_max_cache is not None and key in lr_max_cache:
            top = lr_max_cache[key]
        else:
            top = max_lr(spec, family, int(batch), mu=float(m))
            if lr_max_cache is not None:
                lr_max_cache[key] = top
        res.append(tune_lr(spec, family, batch, steps, mu=float(m), frac_max=frac_max, lr_max=top, xatol=xatol,
                           scan=scan, weight_decay=weight_decay))
    L = np.array([r.loss for r in res])
    j = int(np.argmin(L))
    grid = np.asarray(mus, dtype=np.float64)
    best = (float(mus[j]), res[j].lr, float(L[j]), res[j].lr_max)
    if refine and np.isfinite(L[j]):
        best = _refine_mu(spec, family, batch, steps, grid, j, best, frac_max=frac_max, xatol=xatol, scan=scan,
                          weight_decay=weight_decay, mu_xatol=mu_xatol)
    return TunedMu(*best[:3], best[3], grid, L, np.array([r.lr for r in res]))


def _refine_mu(spec, family, batch, steps, mus, j, best, *, frac_max, xatol, scan, weight_decay, mu_xatol):
    """The continuous mu optimum of :func:`tune_lr_mu` (``refine``) around grid index ``j``."""
    seen = {}

    def f(mu):
        t = tune_lr(spec, family, batch, steps, mu=mu, frac_max=frac_max, xatol=xatol, scan=scan,
                    weight_decay=weight_decay)
        seen[mu] = (mu, t.lr, t.loss, t.lr_max)
        return math.log(t.loss) if math.isfinite(t.loss) else 1e3
    refine_mu_search(f, mus, j, mu_xatol=mu_xatol)
    cand = seen[min(seen, key=lambda m: seen[m][2])]
    return cand if cand[2] < best[2] else best


def refine_mu_search(objective, mus, j, *, mu_xatol: float = 0.05) -> None:
    """Scipy's bounded Brent search of ``objective(mu)`` (a finite number, smaller is better; the caller records
    what it needs) in ``x = ln(1 - mu)`` (``mu_xatol`` in x) between the grid neighbours of ``mus[j]`` (past the
    last grid value up to ``1 - (1 - mu_last)/10``, moved up by factors of 10 in ``1 - mu`` while the optimum sits
    at that end, to ``1 - mu = 1e-6``). Shared by :func:`tune_lr_mu` and :func:`theory.batch.tune_batch`."""
    from scipy import optimize
    order = np.sort(np.asarray(mus, dtype=np.float64))
    k = int(np.searchsorted(order, mus[j]))
    lo = order[k - 1] if k > 0 else order[k]
    hi = order[k + 1] if k + 1 < order.size else 1.0 - (1.0 - order[k]) / 10.0

    def f(x):
        return objective(1.0 - math.exp(x))
    # x = ln(1 - mu) decreases with mu: the bracket is (ln(1 - hi), ln(1 - lo)); an optimum at the top of a
    # bracket past the grid moves the bracket up by another factor 10 in 1 - mu (up to 1 - mu = 1e-6)
    while True:
        res = optimize.minimize_scalar(f, bounds=(math.log(1.0 - hi), math.log(1.0 - lo)), method="bounded",
                                       options=dict(xatol=mu_xatol))
        past = k + 1 >= order.size or hi > order[-1]
        if not (past and res.x < math.log(1.0 - hi) + 2 * mu_xatol and 1.0 - hi > 1e-6):
            break
        lo, hi = 1.0 - math.exp(res.x), 1.0 - (1.0 - hi) / 10.0


def batches_for(D: float, b_max: int, factor: int = 2, s_max: Optional[float] = None) -> np.ndarray:
    """Powers of ``factor`` from 1 with ``MIN_STEPS <= S = D/B`` (``<= s_max`` if given) and ``B <= b_max``."""
    out, B = [], 1
    while B <= b_max and D / B >= MIN_STEPS:
        if s_max is None or D / B <= s_max:
            out.append(B)
        B *= factor
    return np.array(out, dtype=np.int64)


def cell(spec, D: float, *, family: str = "sgd", mu: float = 0.9, b_max: int = 4096, factor: int = 2,
         frac_max: float = 0.99, lr_max_cache: Optional[dict] = None, xatol: float = 0.05, scan: int = 5,
         s_max: Optional[float] = None, mus: Optional[Sequence[float]] = None, dana: Optional[dict] = None,
         refine_mu: bool = False) -> dict:
    """One (d, D) cell: tuned lr and final loss at every batch of :func:`batches_for`. Steps ``S = round(D/B)``
    (the samples actually used are ``B S``); ``s_max`` drops the batches with more steps (the budgets past the
    reported ones only serve the large batches' B_crit targets). ``mus`` (momentum families): mu tuned jointly
    on this grid (:func:`tune_lr_mu`, continuous optimum with ``refine_mu``; ``mu``, ``loss_by_mu``, ``lr_by_mu``
    in the result); otherwise mu fixed.
    ``dana``: DANA's base values (:func:`dana_base`), the lr being their scale."""
    B = batches_for(D, b_max, factor, s_max)
    lrs, losses, tops, S, mu_best, by_mu, lr_by_mu = [], [], [], [], [], [], []
    for b in B:
        key = int(b)
        s = max(1, int(round(D / b)))
        if mus is not None:
            t = tune_lr_mu(spec, family, key, s, mus=mus, frac_max=frac_max, xatol=xatol, scan=scan,
                           lr_max_cache=lr_max_cache, refine=refine_mu)
            mu_best.append(t.mu)
            by_mu.append(t.losses)
            lr_by_mu.append(t.lrs)
        else:
            if family == "dana-decaying":
                top = max_lr(spec, family, key, dana=dana, steps=s, cache=lr_max_cache)
            else:
                ck = (key, float(mu))
                if lr_max_cache is not None and ck in lr_max_cache:
                    top = lr_max_cache[ck]
                else:
                    top = max_lr(spec, family, key, mu=mu)
                    if lr_max_cache is not None:
                        lr_max_cache[ck] = top
            t = tune_lr(spec, family, key, s, mu=mu, frac_max=frac_max, lr_max=top, xatol=xatol, scan=scan,
                        dana=dana)
        lrs.append(t.lr)
        losses.append(t.loss)
        tops.append(t.lr_max)
        S.append(s)
    out = dict(batch=B, steps=np.array(S, dtype=np.int64), lr=np.array(lrs), loss=np.array(losses),
               lr_max=np.array(tops))
    if mus is not None:
        out.update(mu=np.array(mu_best), loss_by_mu=np.array(by_mu).reshape(len(B), len(mus)),
                   lr_by_mu=np.array(lr_by_mu).reshape(len(B), len(mus)), mus=np.asarray(mus, dtype=np.float64))
    return out


class OptimalBatch(NamedTuple):
    B_star: float      # continuous argmin (parabola in log B), = the grid argmin at an edge
    index: int         # grid argmin
    at_edge: bool      # the grid argmin is the smallest or the largest batch
    loss: float        # min loss (grid)
    B_tol: float       # largest B with loss <= (1 + tol) min (interpolated in log B)


def optimal_batch(batch, loss, tol: float = 0.1) -> OptimalBatch:
    """Loss-minimising batch at fixed D on a batch grid (see the module docstring)."""
    B = np.asarray(batch, dtype=np.float64)
    L = np.asarray(loss, dtype=np.float64)
    ok = np.isfinite(L)
    if ok.sum() < 1:
        raise ValueError("optimal_batch: no finite loss")
    L = np.where(ok, L, np.inf)
    j = int(np.argmin(L))
    edge = j == 0 or j == B.size - 1 or not (np.isfinite(L[j - 1]) and np.isfinite(L[j + 1]))
    Bs = B[j]
    if not edge:
        x, y = np.log(B[j - 1:j + 2]), np.log(L[j - 1:j + 2])
        c = np.polyfit(x, y, 2)
        if c[0] > 0:
            Bs = float(np.exp(np.clip(-c[1] / (2 * c[0]), x[0], x[2])))
    thr = (1 + tol) * L[j]
    k = j
    while k + 1 < B.size and L[k + 1] <= thr:
        k += 1
    if k + 1 < B.size and np.isfinite(L[k + 1]):
        f = (math.log(thr) - math.log(L[k])) / (math.log(L[k + 1]) - math.log(L[k]))
        Bt = float(np.exp(np.log(B[k]) + f * (np.log(B[k + 1]) - np.log(B[k]))))
    else:
        Bt = float(B[k])
    return OptimalBatch(float(Bs), j, bool(edge), float(L[j]), Bt)


class CriticalBatch(NamedTuple):
    target: float
    batch: np.ndarray
    samples: np.ndarray   # E(B) to the target (inf where the D grid does not reach it)
    steps: np.ndarray     # S(B) = E(B) / B
    B_crit: float
    B_crit_err: float
    S_min: float
    E_min: float
    max_log_resid: float


def samples_to_target(D_grid, loss_of_D, target) -> float:
    """First D at which the tuned envelope ``loss_of_D`` (on ``D_grid``, fixed B) reaches ``target``,
    interpolated in (log D, log L); inf if never."""
    from .batch import steps_to_target
    D = np.asarray(D_grid, dtype=np.float64)
    L = np.asarray(loss_of_D, dtype=np.float64)
    ok = np.isfinite(L)
    if ok.sum() == 0:
        return math.inf
    D, L = D[ok], L[ok]
    if L[0] <= target:        # reached at the first budget: extrapolate is not allowed, report it as is
        return float(D[0]) if L[0] == target else math.inf
    return steps_to_target(D, L, target)


def critical_batch(D_grid, batch_grid, table, D0: float) -> CriticalBatch:
    """McCandlish's B_crit at the target reached with ``D0`` samples (module docstring). ``table[i, k]`` is the
    tuned loss at ``D_grid[i]`` and ``batch_grid[k]`` (NaN/inf where the batch is not used at that D)."""
    from .batch import fit_tradeoff
    D = np.asarray(D_grid, dtype=np.float64)
    T = np.asarray(table, dtype=np.float64)
    i0 = int(np.argmin(np.abs(np.log(D / D0))))
    target = float(np.nanmin(np.where(np.isfinite(T[i0]), T[i0], np.nan)))
    Bg = np.asarray(batch_grid, dtype=np.float64)
    E = np.array([samples_to_target(D, T[:, k], target) for k in range(Bg.size)])
    # the best batch at D0 reaches the target at D0 by construction; its first crossing is exactly D0
    k0 = int(np.nanargmin(np.where(np.isfinite(T[i0]), T[i0], np.nan)))
    E[k0] = D[i0]
    S = E / Bg
    fit = fit_tradeoff(Bg, S)
    return CriticalBatch(target, Bg, E, S, fit.B_crit, fit.B_crit_err, fit.S_min, fit.E_min, fit.max_log_resid)


class WeightDecay(NamedTuple):
    lambdas: np.ndarray    # 0 first, then the scanned lambdas
    taus: np.ndarray       # B / (lr lambda D) = 1 / (lr lambda S) at each (inf at lambda = 0), with its tuned lr
    loss: np.ndarray       # tuned (over lr) final loss at each lambda
    lr: np.ndarray         # tuned lr at each lambda
    lam_star: float        # the best lambda on the grid (0 if weight decay never helps)
    lr_star: float
    gain: float            # loss(lambda = 0) / loss(lambda*) >= 1
    tau: float             # B / (lr* lambda* D) = 1 / (lr* lambda* S) (inf at lambda* = 0)


def tune_weight_decay(spec, family: str, batch: int, steps: int, *, taus: Sequence[float] = (100.0, 10.0, 1.0),
                      lambdas: Optional[Sequence[float]] = None, mu: float = 0.9, frac_max: float = 0.99,
                      lr_max: Optional[float] = None, xatol: float = 0.1, scan: int = 5,
                      dana: Optional[dict] = None) -> WeightDecay:
    """Joint (lr, lambda) tuning. The lr is tuned (:func:`tune_lr`) at lambda = 0, giving ``lr0``; the scanned
    weight decays are ``lambda = 1 / (tau lr0 S)`` for the Power Lines timescales ``taus`` (fractions of the run
    over which weight decay averages; so the scan has the same meaning at every budget), or ``lambdas`` if
    given; the lr is re-tuned at each. The best pair on the grid is the optimum, refined by a bounded search in
    log lambda when it is interior."""
    from scipy import optimize
    if lr_max is None:
        lr_max = max_lr(spec, family, int(batch), mu=mu, dana=dana, steps=steps)

    def tuned(x):
        return tune_lr(spec, family, batch, steps, mu=mu, weight_decay=float(x), frac_max=frac_max, lr_max=lr_max,
                       xatol=xatol, scan=scan, dana=dana)
    t0 = tuned(0.0)
    if lambdas is None:
        lambdas = sorted(1.0 / (float(t) * t0.lr * steps) for t in taus)
    lam = np.concatenate([[0.0], np.asarray(lambdas, dtype=np.float64)])
    res = [t0] + [tuned(x) for x in lam[1:]]
    L = np.array([t.loss for t in res])
    lr = np.array([t.lr for t in res])
    with np.errstate(divide="ignore"):
        tau_grid = 1.0 / (lr * lam * steps)
    j = int(np.argmin(L))
    lam_s, lr_s, L_s = float(lam[j]), float(lr[j]), float(L[j])
    if 0 < j < lam.size - 1 and lam[j - 1] > 0:    # interior optimum on the log grid: refine
        r = optimize.minimize_scalar(lambda x: tuned(math.exp(x)).loss,
                                     bounds=(math.log(lam[j - 1]), math.log(lam[j + 1])), method="bounded",
                                     options=dict(xatol=0.05))
        if r.fun < L_s:
            lam_s = math.exp(r.x)
            t = tuned(lam_s)
            lr_s, L_s = t.lr, t.loss
    tau = math.inf if lam_s == 0 else 1.0 / (lr_s * lam_s * steps)
    return WeightDecay(lam, tau_grid, L, lr, lam_s, lr_s, float(L[0] / L_s), tau)


class PowerFit(NamedTuple):
    slope: float
    intercept: float
    se: float          # from the residuals
    boot: float        # bootstrap standard deviation of the slope
    err: float         # max(se, boot)
    n: int


def power_fit(x, y, *, n_boot: int = 400, seed: int = 0) -> PowerFit:
    """``ln y = slope ln x + intercept`` by least squares over the finite positive points; standard error from
    the residuals and a bootstrap over points (``n_boot`` resamples with replacement, degenerate ones
    skipped)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    n = lx.size
    if n < 3 or np.ptp(lx) == 0:
        raise ValueError(f"power_fit needs >= 3 finite positive points at distinct x, got {n}")
    A = np.stack([lx, np.ones(n)], axis=1)
    coef, *_ = np.linalg.lstsq(A, ly, rcond=None)
    resid = ly - A @ coef
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    se = math.sqrt(float(np.sum(resid ** 2)) / max(n - 2, 1) / sxx)
    rng = np.random.default_rng(seed)
    slopes = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        if np.ptp(lx[idx]) == 0:
            continue
        slopes.append(np.polyfit(lx[idx], ly[idx], 1)[0])
    boot = float(np.std(slopes)) if len(slopes) > 1 else math.inf
    return PowerFit(float(coef[0]), float(coef[1]), float(se), boot, float(max(se, boot)), int(n))


# ----------------------------------------------------------------------------------------------------------
# symbolic counterparts (sympy) of the published claims, as far as PLRF can state them

def symbolic_exponents(alpha: float, beta: float) -> dict:
    """Exponents derived symbolically (sympy) for PLRF with population-limit mode sums (d -> inf), SGD:

    * ``loss_D``: the signal (population-bias) loss after intrinsic time ``s = eta S`` is
      ``sum_{j > J} j^{-2a-2b} ~ J^{-(2a+2b-1)}`` with ``J = s^{1/(2a)}`` the learned-mode threshold
      (``lam_j = j^{-2a}``); with the lr scaling linearly in B below the critical batch, ``s ~ D``:
      ``L ~ D^{-(2a+2b-1)/(2a)}``;
    * ``B_simple_vs_L`` (signal-dominated): McCandlish's ``B_simple - 1 = P tr K / |G|^2`` with
      ``|G|^2 = sum_j lam_j e_j`` dominated by the not-yet-learned modes ``j > J``
      (``sum_{j>J} j^{-4a-2b} ~ J^{-(4a+2b-1)}``): ``B_simple ~ J^{2a} ~ s``, i.e. ``B_simple ~ L^{-2a/(2a+2b-1)}``;
      with the critical batch = the noise scale at the target (README, batch section) and ``L ~ D^{-loss_D}``:
      ``Bcrit_D_signal = 1`` (B_crit ~ D) -- for a run whose SGD noise is negligible at the target (an annealed lr);
    * noise-balanced (a tuned *constant* lr, the case computed here): the learned modes sit at their stationary
      level ``e_k = (eta/B) lam_k P / (2 - eta lam_k (B+1)/B)``, so ``|G|^2 >= sum lam_k e_k ~ eta P tr K^2/(2B)``
      and ``B_simple - 1 -> 2 B tr K / (eta tr K^2)`` (``noise_limit``): ``B_crit x eta*(B)/B`` is constant, i.e.
      ``Bcrit_D_noise = -(D-exponent of the tuned lr at B = 1)`` (a measured input, not a constant);
    * ``B_edge_d``: the batch where the stochastic edge ``~ 2B/tr K`` meets the full-batch edge
      ``~ 2/lam_max``: ``B_edge = tr K / lam_max``, ``tr K = sum_{j <= v} j^{-2a}`` with ``v ~ d``:
      ``d^{max(0, 1 - 2a)}`` -- the PLRF counterpart of the 4+3 notebooks' ``B = d^kappa``;
    * ``Bcrit_d_at_fixed_D``: 0 while the loss at D is far above the capacity floor P*(d) (the threshold J is
      set by D, not d).
    Returns floats (and the sympy expressions as strings)."""
    import sympy as sp
    e = _symbolic()
    a, b = e["symbols"]
    subs = {a: sp.nsimplify(alpha), b: sp.nsimplify(beta)}
    return dict(loss_D=float(e["loss_D"].subs(subs)), B_simple_vs_s=float(e["B_simple_vs_s"].subs(subs)),
                B_simple_vs_L=float(e["B_simple_vs_L"].subs(subs)), Bcrit_D_signal=float(e["Bcrit_D"].subs(subs)),
                B_edge_d=float(e["kappa"].subs(subs)), Bcrit_d_at_fixed_D=0.0,
                expr=dict(loss_D=str(e["loss_D"]), B_simple_vs_L=str(e["B_simple_vs_L"]),
                          Bcrit_D_signal=str(e["Bcrit_D"]), noise_limit=str(e["noise"]), B_edge_d=str(e["kappa"])))


@functools.lru_cache(maxsize=1)
def _symbolic() -> dict:
    """The derivations of :func:`symbolic_exponents` in symbols (alpha, beta) (sympy; ~1 s, done once)."""
    import sympy as sp
    a, b, j, J, s = sp.symbols("alpha beta j J s", positive=True)
    eta, B, P, trK, trK2, Gs = sp.symbols("eta B P trK trK2 G_s", positive=True)
    P_tail = sp.integrate(j ** (-2 * a - 2 * b), (j, J, sp.oo), conds="none")   # needs 2a + 2b > 1
    G_tail = sp.integrate(j ** (-4 * a - 2 * b), (j, J, sp.oo), conds="none")

    def expo(expr, x):   # d log(expr) / d log(x) for a product of powers
        return sp.factor(sp.expand(sp.expand_log(sp.log(sp.powsimp(expr, force=True)), force=True).diff(x) * x))
    loss_D = -expo(P_tail.subs(J, s ** (1 / (2 * a))), s)   # L ~ s^-loss_D, s ~ D
    e_B_s = sp.factor(expo(P_tail / G_tail, J) / (2 * a))  # B_simple - 1 ~ P/|G|^2 ~ J^{2a} = s^{e_B_s}
    B_vs_L = sp.factor(e_B_s / (-loss_D))
    Bcrit_D = sp.factor(B_vs_L * (-loss_D))              # B ~ L^{B_vs_L}, L ~ D^{-loss_D}
    noise = sp.limit(P * trK / (Gs + eta * P * trK2 / (2 * B)), Gs, 0)   # B_simple - 1 with the signal part -> 0
    return dict(symbols=(a, b), loss_D=loss_D, B_simple_vs_s=e_B_s, B_simple_vs_L=B_vs_L, Bcrit_D=Bcrit_D,
                noise=noise, kappa=sp.Max(0, 1 - 2 * a))


def edge_batch(spec) -> float:
    """``tr K / lam_max``: where SGD's stochastic edge meets its full-batch edge."""
    return float(spec.trace / spec.lam_max)
