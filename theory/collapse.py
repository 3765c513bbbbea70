"""Scaling collapse of loss curves across model sizes (Qiu, Xiao, Wilson, Pennington, Agarwala, ICML 2025).

For sizes ``d`` trained for horizons ``T(d)`` (compute-optimal: ``T*(d)``), with an irreducible loss ``L0``:
    ``l(x) = (L(x T) - L0) / (L(T) - L0)``,  ``x = t / T`` in (0, 1],
each seed normalized by its own final loss; curves are interpolated linearly in ``log t`` onto a common x grid.
    ``Delta(x) = std_{d, seed}[l(x)] / mean_{d, seed}[l(x)]``                 (spread of the collapse)
    ``sigma(x) = mean_d( std_seed[L(xT) - L0] / mean_seed[L(xT) - L0] )``      (seed-noise floor)
(sample standard deviations, ``ddof = 1``). Supercollapse: ``Delta(x) < sigma(x)`` late in training.
``L0`` is fitted as ``L = L0 + a c^{-b}`` on the final losses against compute ``c = d B T`` (:func:`fit_L0`,
:func:`endpoint_L0`).
:func:`decompose` separates the noise-free spread across sizes (from exact expected curves) from seed noise.
:func:`compute_optimal_horizons` finds ``T*(d)`` from loss-vs-compute curves; :func:`off_optimal_horizons`
gives the suboptimal ladders under which the collapse should break (``0.5x``, ``2x``, exponent ``g* +- 0.5``).
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Sequence

import numpy as np
from scipy import optimize


class CollapseResult(NamedTuple):
    x: np.ndarray          # (n_x,) common grid of t / T
    l: np.ndarray          # (n_d, n_seed, n_x) normalized curves (NaN where a size has fewer seeds)
    mean: np.ndarray       # (n_x,) mean of l over (d, seed)
    delta: np.ndarray      # (n_x,) std over (d, seed) of l / mean
    sigma: np.ndarray      # (n_x,) seed-noise floor averaged over d (NaN with one seed)
    sigma_d: np.ndarray    # (n_d, n_x)
    L0: float


class Spread(NamedTuple):
    """``total``: Delta of the seeded curves; ``sizes``: Delta of the exact expected curves (no seed noise);
    ``noise``: std over (d, seed) of ``l_seed - l_exact(d)``, over the mean of l; ``sigma``: the seed floor."""
    x: np.ndarray
    total: np.ndarray
    sizes: np.ndarray
    noise: np.ndarray
    sigma: np.ndarray


class L0Fit(NamedTuple):
    """``L = L0 + a c^{-b}``; ``rms`` = rms residual of ``log L``."""
    L0: float
    a: float
    b: float
    rms: float


class Horizons(NamedTuple):
    d: np.ndarray          # sizes
    T: np.ndarray          # compute-optimal horizons T*(d) = f*(d) / (d B) (float steps)
    xi: float              # d* ~ coef * f^xi
    coef: float
    g: float               # T* ~ d^g, g = 1/xi - 1
    f: np.ndarray          # compute grid
    d_star: np.ndarray     # (refined) argmin over d at each f (NaN where no size covers f)
    interior: np.ndarray   # bool: argmin strictly inside the ladder (used in the fit)


# ---------------------------------------------------------------------------------------------------------

def _curve_arrays(curves, horizons):
    out = []
    for i, c in enumerate(curves):
        if len(c) != 2:
            raise ValueError(f"curves[{i}] must be (steps, loss) with loss of shape (n,) or (n_seed, n)")
        st, lo = np.asarray(c[0], dtype=np.float64), np.asarray(c[1], dtype=np.float64)
        lo = lo[None, :] if lo.ndim == 1 else lo
        if st.ndim != 1 or lo.ndim != 2 or lo.shape[1] != st.size or st.size < 2 or np.any(np.diff(st) <= 0):
            raise ValueError(f"curves[{i}]: steps must be increasing (n,), loss (n,) or (n_seed, n)")
        if not np.all(np.isfinite(lo)):
            raise ValueError(f"curves[{i}]: losses must be finite")
        out.append((st, lo))
    if not out:
        raise ValueError("curves must hold at least one (steps, loss)")
    if horizons is None:
        T = np.array([st[-1] for st, _ in out])
    else:
        T = np.asarray(horizons, dtype=np.float64)
        if T.shape != (len(out),) or np.any(~np.isfinite(T)) or np.any(T <= 0):
            raise ValueError(f"horizons must be {len(out)} positive numbers, got {horizons!r}")
    for i, ((st, _), Ti) in enumerate(zip(out, T)):
        pos = st[st > 0]
        if pos.size < 2 or Ti > st[-1] * (1 + 1e-12) or Ti <= pos[0]:
            raise ValueError(f"horizons[{i}] = {Ti} must lie within the positive steps of curves[{i}]")
    return out, T


def _default_x(curves, T, num=64):
    lo = max(st[st > 0][0] / Ti for (st, _), Ti in zip(curves, T))
    return np.geomspace(lo, 1.0, num)


def _interp_logt(st, lo, t):
    """Loss (n_seed, n_t) at steps t, linear in log(step) between recorded positive steps."""
    pos = st > 0
    ls, lt = np.log(st[pos]), np.log(t)
    if np.any(lt < ls[0] - 1e-12) or np.any(lt > ls[-1] + 1e-12):
        raise ValueError("x grid reaches outside a curve's recorded steps")
    return np.stack([np.interp(lt, ls, row[pos]) for row in lo])


def _std_over_mean(a, axis):
    """Sample std (ddof = 1) over ``axis`` ignoring NaNs, divided by the mean; NaN where < 2 values."""
    n = np.sum(np.isfinite(a), axis=axis)
    mean = np.nanmean(a, axis=axis)
    ss = np.nansum((a - np.expand_dims(mean, axis)) ** 2, axis=axis)
    std = np.where(n > 1, np.sqrt(ss / np.maximum(n - 1, 1)), np.nan)
    return std / mean, mean


def raw_at(curves, horizons=None, x=None):
    """Losses at ``x T(d)`` (list over sizes of arrays (n_seed, n_x)), at ``T(d)`` (list of (n_seed,)), x, T."""
    cv, T = _curve_arrays(curves, horizons)
    x = _default_x(cv, T) if x is None else np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < 1 or np.any(x <= 0) or np.any(x > 1 + 1e-12):
        raise ValueError("x must be a 1-d grid in (0, 1]")
    at_x = [_interp_logt(st, lo, x * Ti) for (st, lo), Ti in zip(cv, T)]
    at_T = [_interp_logt(st, lo, np.array([Ti]))[:, 0] for (st, lo), Ti in zip(cv, T)]
    return at_x, at_T, x, T


def collapse(curves: Sequence, *, L0: float, horizons=None, x=None) -> CollapseResult:
    """Normalized curves and the collapse statistics (module doc).

    ``curves``: one ``(steps, loss)`` per size, ``loss`` of shape ``(n,)`` or ``(n_seed, n)``; ``horizons``: T per
    size (default: each curve's last step); ``x``: grid in (0, 1] (default: 64 log-spaced points from the
    earliest x every curve covers). The denominator of each seed is its own ``L(T) - L0``.
    """
    if not np.isfinite(L0):
        raise ValueError(f"L0 must be finite, got {L0}")
    raw, Lend, x, T = raw_at(curves, horizons, x)
    if any(np.any(e - L0 <= 0) for e in Lend):
        raise ValueError(f"every final loss must exceed L0 = {L0}")
    ns = max(r.shape[0] for r in raw)
    l = np.full((len(raw), ns, x.size), np.nan)
    sig_d = np.full((len(raw), x.size), np.nan)
    for i, (r, e) in enumerate(zip(raw, Lend)):
        l[i, :r.shape[0]] = (r - L0) / (e - L0)[:, None]
        if r.shape[0] > 1:
            sig_d[i] = np.std(r - L0, axis=0, ddof=1) / np.mean(r - L0, axis=0)
    flat = l.reshape(-1, x.size)
    delta, mean = _std_over_mean(flat, axis=0)
    sigma = np.nanmean(sig_d, axis=0) if np.any(np.isfinite(sig_d)) else np.full(x.size, np.nan)
    return CollapseResult(x, l, mean, delta, sigma, sig_d, float(L0))


def decompose(exact_curves: Sequence, seed_curves: Sequence, *, L0: float, horizons=None, x=None) -> Spread:
    """Split the collapse spread: ``sizes`` from the exact expected curves (one per size, no seed noise),
    ``noise`` from each seed's deviation from its size's exact normalized curve, ``total`` from the seeds."""
    if len(exact_curves) != len(seed_curves):
        raise ValueError("exact_curves and seed_curves must list the same sizes")
    ex = collapse(exact_curves, L0=L0, horizons=horizons, x=x)
    sd = collapse(seed_curves, L0=L0, horizons=horizons, x=ex.x)
    dev = (sd.l - ex.l[:, :1, :]).reshape(-1, ex.x.size)
    n = np.sum(np.isfinite(dev), axis=0)
    noise = np.sqrt(np.nansum(dev ** 2, axis=0) / np.maximum(n - 1, 1)) / sd.mean
    return Spread(ex.x, sd.delta, ex.delta, noise, sd.sigma)


# ---------------------------------------------------------------------------------------------------------

def fit_L0(compute, loss) -> L0Fit:
    """Fit ``L = L0 + a c^{-b}`` to final losses ``loss`` at computes ``compute`` (least squares in ``log L``,
    ``0 <= L0 < min L``, ``a > 0``, ``0 < b <= 5``; starts from ``L0`` in {0, 0.5, 0.9, 0.99} x min L with
    ``(a, b)`` from a log-log line)."""
    c, y = np.asarray(compute, dtype=np.float64).ravel(), np.asarray(loss, dtype=np.float64).ravel()
    if c.shape != y.shape or c.size < 3:
        raise ValueError("compute and loss must be equal-length arrays with >= 3 points")
    if np.any(~np.isfinite(c)) or np.any(c <= 0) or np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("compute and loss must be finite and > 0")
    lc = np.log(c / np.exp(np.mean(np.log(c))))              # centred log compute
    ymin = y.min()

    def resid(p):
        return np.log(np.maximum(p[0] + np.exp(p[1]) * np.exp(-p[2] * lc), 1e-300)) - np.log(y)

    best = None
    for f in (0.0, 0.5, 0.9, 0.99):
        L0 = f * ymin
        slope, icpt = np.polyfit(lc, np.log(y - L0), 1)
        p0 = np.clip([L0, icpt, max(-slope, 1e-3)], [0, -700, 1e-4], [ymin * (1 - 1e-12), 700, 5.0])
        r = optimize.least_squares(resid, p0, bounds=([0, -700, 1e-4], [ymin * (1 - 1e-12), 700, 5.0]),
                                   x_scale="jac", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=5000)
        if best is None or r.cost < best.cost:
            best = r
    L0, la, b = best.x
    a = np.exp(la) * np.exp(b * np.mean(np.log(c)))           # undo the centring: a c^{-b}
    return L0Fit(float(L0), float(a), float(b), float(np.sqrt(2 * best.cost / y.size)))


def endpoint_L0(curves: Sequence, d, *, batch: int = 1, horizons=None) -> L0Fit:
    """:func:`fit_L0` on the endpoints: mean over seeds of ``L(T(d))`` against compute ``c = d B T(d)``."""
    _, at_T, _, T = raw_at(curves, horizons, x=[1.0])
    d = np.asarray(d, dtype=np.float64)
    if d.shape != T.shape or np.any(d <= 0):
        raise ValueError(f"d must list {T.size} positive sizes, got {d!r}")
    return fit_L0(d * batch * T, [np.mean(e) for e in at_T])


def compute_optimal_horizons(curves: Sequence, *, batch: int = 1, f=None, num: int = 200,
                             f_window=None) -> Horizons:
    """``T*(d)`` from loss-vs-compute curves: ``curves`` = one ``(d, steps, loss)`` per size (loss averaged over
    seeds). On a log grid of compute ``f = d B t``, ``d*(f)`` is the argmin over the sizes whose curve covers
    ``f`` (loss interpolated linearly in log f), refined by a parabola in ``log d`` through the argmin and its
    two neighbours; the argmins strictly inside the ladder (within ``f_window`` if given) are fitted as
    ``d* = coef f^xi``, inverted to ``f*(d) = (d / coef)^{1/xi}`` and ``T*(d) = f*(d) / (d B)``.
    """
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    rows = []
    for i, c in enumerate(curves):
        if len(c) != 3:
            raise ValueError(f"curves[{i}] must be (d, steps, loss)")
        d, st, lo = float(c[0]), np.asarray(c[1], dtype=np.float64), np.asarray(c[2], dtype=np.float64)
        keep = st > 0
        if d <= 0 or st.ndim != 1 or st.shape != lo.shape or keep.sum() < 2 or np.any(lo[keep] <= 0):
            raise ValueError(f"curves[{i}]: need d > 0 and matching 1-d steps/loss with positive losses")
        rows.append((d, np.log(d * batch * st[keep]), np.log(lo[keep])))
    rows.sort(key=lambda r: r[0])
    if len(rows) < 3:
        raise ValueError("need at least 3 sizes to locate an interior argmin")
    ds = np.array([r[0] for r in rows])
    ld = np.log(ds)
    if f is None:
        f = np.geomspace(np.exp(min(r[1][0] for r in rows)), np.exp(max(r[1][-1] for r in rows)), num)
    f = np.asarray(f, dtype=np.float64)
    lf = np.log(f)
    Lmat = np.full((ds.size, f.size), np.nan)
    for i, (_, lx, ly) in enumerate(rows):
        inside = (lf >= lx[0] - 1e-12) & (lf <= lx[-1] + 1e-12)
        Lmat[i, inside] = np.interp(lf[inside], lx, ly)
    d_star = np.full(f.size, np.nan)
    interior = np.zeros(f.size, bool)
    for j in range(f.size):
        cov = np.nonzero(np.isfinite(Lmat[:, j]))[0]
        if cov.size == 0:
            continue
        k = cov[np.argmin(Lmat[cov, j])]
        d_star[j] = ds[k]
        if k in (0, ds.size - 1) or not (np.isfinite(Lmat[k - 1, j]) and np.isfinite(Lmat[k + 1, j])):
            continue
        x3, y3 = ld[k - 1:k + 2], Lmat[k - 1:k + 2, j]
        a2, a1, _ = np.polyfit(x3, y3, 2)
        if a2 > 0:
            d_star[j] = np.exp(np.clip(-a1 / (2 * a2), x3[0], x3[2]))
            interior[j] = True
    use = interior.copy()
    if f_window is not None:
        use &= (f >= f_window[0]) & (f <= f_window[1])
    if use.sum() < 2:
        raise ValueError("fewer than 2 compute values have an interior argmin over d; widen the ladder of d")
    xi, lcoef = np.polyfit(lf[use], np.log(d_star[use]), 1)
    coef = float(np.exp(lcoef))
    T = (ds / coef) ** (1.0 / xi) / (ds * batch)
    return Horizons(ds, T, float(xi), coef, float(1.0 / xi - 1.0), f, d_star, interior)


def off_optimal_horizons(d, T_opt, *, g: Optional[float] = None, factors=(0.5, 2.0),
                         exponent_shifts=(-0.5, 0.5)) -> Dict[str, np.ndarray]:
    """Horizon ladders (integer steps >= 1): ``optimal``, ``{f}x`` = f T*(d), and ``exp{s:+}`` =
    ``T*(d_0) (d / d_0)^{g + s}`` anchored at the geometric-mean size ``d_0`` (``T*(d_0)`` interpolated in log-log),
    ``g`` the exponent of ``T* ~ d^g`` (fitted from ``T_opt`` if not given)."""
    d, T_opt = np.asarray(d, dtype=np.float64), np.asarray(T_opt, dtype=np.float64)
    if d.shape != T_opt.shape or d.ndim != 1 or d.size < 2 or np.any(d <= 0) or np.any(T_opt <= 0):
        raise ValueError("d and T_opt must be equal-length positive 1-d arrays with >= 2 sizes")
    order = np.argsort(d)
    ld, lT = np.log(d[order]), np.log(T_opt[order])
    if g is None:
        g = float(np.polyfit(ld, lT, 1)[0])
    d0 = float(np.exp(np.mean(ld)))
    T0 = float(np.exp(np.interp(np.log(d0), ld, lT)))
    out = {"optimal": T_opt}
    for fct in factors:
        out[f"{fct:g}x"] = fct * T_opt
    for s in exponent_shifts:
        out[f"exp{s:+g}"] = T0 * (d / d0) ** (g + s)
    return {k: np.maximum(1, np.round(v)).astype(np.int64) for k, v in out.items()}
