"""Compute-optimal exponents measured from loss curves over a ladder of model sizes d.

Input: curves ``[(d, flops, loss), ...]`` (``flops = d * B * steps``, increasing; loss > 0), one per ladder d.
Output: ``d*(f) ~ f^xi`` and ``P*(f) ~ f^{-eta}`` (Hoffmann et al. 2022, "Chinchilla", approaches 1 and 2; as used
for PLRF by Paquette et al. 2024, arXiv 2405.15074).

Common grid.  Every curve is interpolated linearly in (ln f, ln loss) on a common log-flop grid
(``per_decade`` points per decade over the union of the curves' ranges); outside its own range a curve is absent.

Approach 1 (:func:`fit_envelope`).  Envelope ``P*(f) = min_d P(f; d)``, argmin ``d*(f)`` = the ladder value that
attains it (a staircase).  Approach 2 (:func:`fit_parabola`).  At each grid flop, the parabola in ``ln d`` through
``ln P`` at the discrete argmin and its two ladder neighbours (or least squares over ``points`` ladder values);
its vertex gives a continuous ``d*(f)`` and ``P*(f)``; defined only where the argmin has a neighbour on both sides.

Window rule (``window=None``).  Grid flops where the discrete argmin index k satisfies
``1 + trim <= k <= n - 2 - trim`` (n ladder values): the minimum is bracketed by the ladder (strictly inside)
and, with the default ``trim = 1``, at least one more ladder step away from either edge, so that a continuous
optimum just outside the ladder cannot pull the fit.  The window is the longest contiguous run of such flops.
If it holds fewer than three distinct argmin values the rule is relaxed to ``trim = 0`` and an
:class:`EdgeWarning` is issued (the ladder is too narrow for the flop range); if even then the argmin never
leaves the edges, the fit is made over the flops where the relevant curves all exist, with a warning.  With an
explicit ``window=(f_lo, f_hi)`` a warning is issued whenever the argmin sits at a ladder edge inside it.

Fits and uncertainty.  Least squares of ``ln d*`` and ``ln P*`` against ``ln f`` over the window (for approach 1's
staircase ``d*``, one point per complete step at its ln-flop midpoint: a fit through all grid points of a
staircase of n steps is biased by the factor 1 - 1/n^2).  Two errors:
``se`` = standard error of the slope (grid points are interpolated and correlated, so it is optimistic) and
``split`` = ``|slope(lower half) - slope(upper half)|`` of the window (in ln f), which shows finite-size drift
(inf when a half has fewer than 2 points).  ``xi_err = max(xi_se, xi_split / 2)`` (same for eta).

Local slopes (:func:`local_slopes`).  Least-squares slope of ``ln y`` vs ``ln f`` over a sliding window of
``slope_window`` decades (default 1) centred on each grid flop; in a fit, y is restricted to the flops where the
argmin is strictly inside the ladder, and slopes are reported only at centres whose full window is available.  For approach 1, ``d*`` is a staircase: take a slope window of
at least two ladder steps (in flops) for a meaningful local xi; approach 2's vertex is smooth.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Sequence

import numpy as np

__all__ = ["EdgeWarning", "FrontierFit", "LocalSlopes", "common_grid", "fit_envelope", "fit_frontier",
           "fit_parabola", "loss_table", "local_slopes", "power_fit"]


class EdgeWarning(UserWarning):
    """The compute-optimal d sits at an edge of the ladder: the fitted exponents are biased."""


class LocalSlopes(NamedTuple):
    """Local exponents at ``flops`` (centres whose full slope window is available)."""
    flops: np.ndarray
    xi: np.ndarray    # d ln d* / d ln f
    eta: np.ndarray   # - d ln P* / d ln f
    window_decades: float


class PowerFit(NamedTuple):
    slope: float
    intercept: float
    se: float
    split: float      # |slope(lower half) - slope(upper half)|
    err: float        # max(se, split / 2)


class FrontierFit(NamedTuple):
    """Result of a frontier fit (see the module docstring for the definitions).

    flops/envelope/argmin_d/argmin_index are on the common grid; ``argmin_d`` and ``envelope`` are NaN (approach 2
    only) where the minimum is not bracketed by the ladder; ``argmin_index`` is -1 where no curve covers a flop.
    """
    method: str
    xi: float
    xi_err: float
    xi_se: float
    xi_split: float
    eta: float
    eta_err: float
    eta_se: float
    eta_split: float
    window: tuple
    in_window: np.ndarray
    flops: np.ndarray
    envelope: np.ndarray
    argmin_d: np.ndarray
    argmin_index: np.ndarray
    ladder: np.ndarray
    local: LocalSlopes
    edge_limited: bool


# ------------------------------------------------------------------------------------------- inputs and grid
def _check_curves(curves):
    if not isinstance(curves, Sequence) or len(curves) < 3:
        raise ValueError("curves must be a sequence of at least 3 (d, flops, loss) tuples")
    out = []
    for i, c in enumerate(curves):
        if len(c) != 3:
            raise ValueError(f"curves[{i}] must be a (d, flops, loss) tuple")
        d, f, l = c
        d = float(d)
        f = np.asarray(f, dtype=np.float64).ravel()
        l = np.asarray(l, dtype=np.float64).ravel()
        if not (math.isfinite(d) and d > 0):
            raise ValueError(f"curves[{i}]: d must be finite and > 0, got {d}")
        if f.shape != l.shape or f.size < 2:
            raise ValueError(f"curves[{i}]: flops and loss must have equal length >= 2")
        keep = f > 0   # the step-0 point (f = 0) has no place on a log axis
        f, l = f[keep], l[keep]
        if f.size < 2 or np.any(np.diff(f) <= 0):
            raise ValueError(f"curves[{i}]: flops must be strictly increasing with at least 2 positive values")
        if not (np.all(np.isfinite(l)) and np.all(l > 0)):
            raise ValueError(f"curves[{i}]: loss must be finite and > 0")
        out.append((d, f, l))
    out.sort(key=lambda c: c[0])
    ds = np.array([c[0] for c in out])
    if np.any(np.diff(ds) <= 0):
        raise ValueError("ladder values d must be distinct")
    return out


def common_grid(curves, per_decade: int = 20) -> np.ndarray:
    """Log-spaced flop grid over the union of the curves' flop ranges, ``per_decade`` points per decade."""
    curves = _check_curves(curves)
    if not (isinstance(per_decade, (int, np.integer)) and per_decade >= 2):
        raise ValueError(f"per_decade must be an integer >= 2, got {per_decade!r}")
    lo = min(c[1][0] for c in curves)
    hi = max(c[1][-1] for c in curves)
    n = max(3, int(math.ceil(per_decade * math.log10(hi / lo))) + 1)
    return np.logspace(math.log10(lo), math.log10(hi), n)


def loss_table(curves, grid) -> np.ndarray:
    """``ln loss`` of each curve (rows, ascending d) on ``grid`` (columns), by linear interpolation in
    (ln f, ln loss); ``+inf`` where the grid flop is outside that curve's range."""
    curves = _check_curves(curves)
    lg = np.log(np.asarray(grid, dtype=np.float64))
    tab = np.full((len(curves), lg.size), np.inf)
    for i, (_, f, l) in enumerate(curves):
        lf = np.log(f)
        inside = (lg >= lf[0] - 1e-12) & (lg <= lf[-1] + 1e-12)
        tab[i, inside] = np.interp(lg[inside], lf, np.log(l))
    return tab


# --------------------------------------------------------------------------------------------- fitting core
def _slope(x, y):
    """Least-squares slope of y on x (centred, so large ln f values do not hurt the conditioning)."""
    xc = x - x.mean()
    return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


def power_fit(x, y) -> PowerFit:
    """Least squares ``ln y = slope ln x + intercept`` with slope standard error and half-window split."""
    lx, ly = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    n = lx.size
    if n < 3:
        raise ValueError(f"need at least 3 points for a power-law fit, got {n}")
    sxx = np.sum((lx - lx.mean()) ** 2)
    sl = _slope(lx, ly) if sxx > 0 else 0.0
    coef = (sl, ly.mean() - sl * lx.mean())
    resid = ly - coef[0] * lx - coef[1]
    se = math.sqrt(np.sum(resid ** 2) / max(n - 2, 1) / sxx) if sxx > 0 else math.inf
    mid = 0.5 * (lx.min() + lx.max())
    lo, hi = lx <= mid, lx >= mid
    if lo.sum() >= 2 and hi.sum() >= 2 and np.ptp(lx[lo]) > 0 and np.ptp(lx[hi]) > 0:
        split = abs(_slope(lx[lo], ly[lo]) - _slope(lx[hi], ly[hi]))
    else:
        split = math.inf
    return PowerFit(float(coef[0]), float(coef[1]), float(se), float(split), float(max(se, split / 2)))


def local_slopes(flops, y, window_decades: float = 1.0):
    """Sliding least-squares slope of ``ln y`` vs ``ln f`` over ``window_decades`` decades.

    Returns ``(centres, slopes)`` at the grid points whose full window lies inside the finite part of y.
    """
    if not (window_decades > 0):
        raise ValueError(f"window_decades must be > 0, got {window_decades}")
    f = np.asarray(flops, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y) & (y > 0)
    lf = np.log10(f)
    half = window_decades / 2
    step = float(np.max(np.diff(lf))) if lf.size > 1 else 0.0
    centres, slopes = [], []
    for i in np.flatnonzero(ok):
        sel = (lf >= lf[i] - half - 1e-12) & (lf <= lf[i] + half + 1e-12)
        idx = np.flatnonzero(sel)
        # the whole window must be defined: y finite on it and the grid reaches both of its ends (to one step)
        if not np.all(ok[idx[0]:idx[-1] + 1]) or idx.size < 3:
            continue
        if lf[idx[0]] > lf[i] - half + step or lf[idx[-1]] < lf[i] + half - step:
            continue
        if (idx[0] > 0 and not ok[idx[0] - 1] and lf[idx[0]] > lf[i] - half + 1e-9) or \
           (idx[-1] < lf.size - 1 and not ok[idx[-1] + 1] and lf[idx[-1]] < lf[i] + half - 1e-9):
            continue
        centres.append(f[i])
        slopes.append(_slope(np.log(f[sel]), np.log(y[sel])))
    return np.array(centres), np.array(slopes)


def _longest_run(mask):
    best, start, cur = (0, -1), None, 0
    for i, m in enumerate(np.append(mask, False)):
        if m and start is None:
            start = i
        elif not m and start is not None:
            if i - start > best[0]:
                best = (i - start, start)
            start = None
    out = np.zeros_like(mask)
    if best[0] > 0:
        out[best[1]:best[1] + best[0]] = True
    return out


def _select_window(k, n, flops, window, trim, need_neighbours):
    """Boolean mask of grid flops used for the fits, and whether the edge warning fired."""
    covered = k >= 0
    edge = covered & ((k == 0) | (k == n - 1))
    if window is not None:
        lo, hi = (float(w) for w in window)
        if not (0 < lo < hi):
            raise ValueError(f"window must be (f_lo, f_hi) with 0 < f_lo < f_hi, got {window}")
        mask = covered & (flops >= lo) & (flops <= hi)
        if need_neighbours:
            mask &= ~edge
        fired = bool(np.any(edge & (flops >= lo) & (flops <= hi)))
        if fired:
            warnings.warn(f"the argmin sits at the edge of the ladder inside the window [{lo:.3g}, {hi:.3g}]: "
                          "the exponents are biased; widen the ladder or narrow the window", EdgeWarning,
                          stacklevel=3)
        return mask, fired
    if trim < 0:
        raise ValueError(f"trim must be >= 0, got {trim}")
    for t in ((trim, 0) if trim > 0 else (0,)):
        mask = _longest_run(covered & (k >= 1 + t) & (k <= n - 2 - t))
        if np.unique(k[mask]).size >= 3:
            if t != trim:
                warnings.warn(f"the argmin sits near the edge of the ladder over most flops: window trimmed by "
                              f"{t} instead of {trim} ladder steps; the ladder is too narrow", EdgeWarning,
                              stacklevel=3)
            return mask, t != trim
    warnings.warn("the argmin sits at the edge of the ladder over (almost) the whole flop range: the ladder is "
                  "too narrow for these flops; exponents are edge-limited and biased", EdgeWarning, stacklevel=3)
    mask = covered & ~edge if need_neighbours else covered.copy()
    if np.unique(k[mask]).size < 2 and not need_neighbours:
        mask = covered.copy()
    return mask, True


def _staircase_fit(flops, dstar, k, sel):
    """Approach-1 xi: regress ln d_k on the ln-flop midpoint of each complete step of the argmin staircase.

    A least-squares line through all grid points of a staircase of n equal steps has slope (1 - 1/n^2) times
    the true one (about -0.5% with n = 14); the step midpoints do not have this bias.  A step is complete when
    the grid points just before and after it (inside the covered flops) carry other argmins.  Falls back to
    the plain regression over grid points when fewer than 3 complete steps are available.
    """
    idx = np.flatnonzero(sel)
    runs, start = [], idx[0]
    for a, b in zip(idx[:-1], idx[1:]):
        if b != a + 1 or k[b] != k[a]:
            runs.append((start, a))
            start = b
    runs.append((start, idx[-1]))
    lf = np.log(flops)
    mids, vals = [], []
    for i0, i1 in runs:
        before = i0 - 1 >= 0 and k[i0 - 1] >= 0 and k[i0 - 1] != k[i0]
        after = i1 + 1 < k.size and k[i1 + 1] >= 0 and k[i1 + 1] != k[i1]
        if before and after:
            mids.append(0.5 * (lf[i0 - 1] + lf[i0] + lf[i1] + lf[i1 + 1]) / 2)   # transitions at half grid steps
            vals.append(dstar[i0])
    if len(mids) < 3:
        return power_fit(flops[sel], dstar[sel])
    return power_fit(np.exp(mids), np.array(vals))


def _finish(method, flops, env, dstar, k, ladder, mask, fired, slope_window):
    sel = mask & np.isfinite(env) & np.isfinite(dstar)
    if sel.sum() < 3:
        raise ValueError(f"fewer than 3 usable flops in the fit window ({sel.sum()}); widen the ladder or the flops")
    if method == "envelope":
        fd = _staircase_fit(flops, dstar, k, sel)
    else:
        fd = power_fit(flops[sel], dstar[sel])
    fl = power_fit(flops[sel], env[sel])
    inner = (k >= 1) & (k <= ladder.size - 2)   # local slopes only where the argmin is strictly inside the ladder
    lc, lx = local_slopes(flops, np.where(inner & np.isfinite(dstar), dstar, np.nan), slope_window)
    lc2, le = local_slopes(flops, np.where(inner & np.isfinite(env), env, np.nan), slope_window)
    common = np.intersect1d(lc, lc2)
    local = LocalSlopes(common, lx[np.isin(lc, common)], -le[np.isin(lc2, common)], float(slope_window))
    win = (float(flops[sel].min()), float(flops[sel].max()))
    return FrontierFit(method, fd.slope, fd.err, fd.se, fd.split, -fl.slope, fl.err, fl.se, fl.split, win, sel,
                       flops, env, dstar, k, ladder, local, fired)


def _table(curves, grid, per_decade):
    curves = _check_curves(curves)
    flops = common_grid(curves, per_decade) if grid is None else np.asarray(grid, dtype=np.float64)
    if np.any(flops <= 0) or np.any(np.diff(flops) <= 0):
        raise ValueError("grid must be strictly increasing positive flops")
    tab = loss_table(curves, flops)
    ladder = np.array([c[0] for c in curves])
    covered = np.isfinite(tab).any(axis=0)
    k = np.where(covered, np.argmin(tab, axis=0), -1)
    return curves, flops, tab, ladder, k


def fit_envelope(curves, *, grid=None, per_decade: int = 20, window=None, trim: int = 1,
                 slope_window: float = 1.0) -> FrontierFit:
    """Chinchilla approach 1: lower envelope over d and its staircase argmin, power-law fits in the window.

    At each grid flop the envelope is the minimum over the curves present there (an argmin is only trusted
    where its two ladder neighbours are present too; flops where they are not are left out of the auto window).
    """
    curves, flops, tab, ladder, k = _table(curves, grid, per_decade)
    n = len(ladder)
    env = np.where(k >= 0, np.exp(np.min(tab, axis=0)), np.nan)
    dstar = np.where(k >= 0, ladder[np.maximum(k, 0)], np.nan)
    # a bracketed argmin also needs its neighbours' curves to exist at that flop
    kk = np.clip(k, 1, n - 2)
    nb = (k >= 1) & (k <= n - 2) & np.isfinite(tab[kk - 1, np.arange(k.size)]) & np.isfinite(tab[kk + 1, np.arange(k.size)])
    k_eff = np.where((k >= 1) & (k <= n - 2) & ~nb, -1, k)
    mask, fired = _select_window(k_eff, n, flops, window, trim, need_neighbours=False)
    return _finish("envelope", flops, env, dstar, k, ladder, mask, fired, slope_window)


def fit_parabola(curves, *, grid=None, per_decade: int = 20, window=None, trim: int = 1,
                 slope_window: float = 1.0, points: int = 3) -> FrontierFit:
    """Chinchilla approach 2: per grid flop, a parabola of ln P vs ln d around the discrete argmin.

    ``points`` (3 or 5) ladder values centred on the argmin (5 falls back to 3 near the edges).  The vertex is
    kept inside the fitted ladder span; a non-convex parabola falls back to the discrete argmin.
    """
    if points not in (3, 5):
        raise ValueError(f"points must be 3 or 5, got {points!r}")
    curves, flops, tab, ladder, k = _table(curves, grid, per_decade)
    n = len(ladder)
    ld = np.log(ladder)
    env = np.full(flops.size, np.nan)
    dstar = np.full(flops.size, np.nan)
    for i, ki in enumerate(k):
        if ki < 1 or ki > n - 2:
            continue
        h = 2 if (points == 5 and 2 <= ki <= n - 3 and np.all(np.isfinite(tab[ki - 2:ki + 3, i]))) else 1
        x, y = ld[ki - h:ki + h + 1], tab[ki - h:ki + h + 1, i]
        if not np.all(np.isfinite(y)):
            continue
        xm = x.mean()
        A, B, C = np.polyfit(x - xm, y, 2)
        if A > 0:
            xv = min(max(xm - B / (2 * A), x[0]), x[-1])
            yv = A * (xv - xm) ** 2 + B * (xv - xm) + C
        else:
            xv, yv = ld[ki], tab[ki, i]
        dstar[i], env[i] = math.exp(xv), math.exp(yv)
    k_eff = np.where(np.isfinite(dstar) | (k < 1) | (k > n - 2), k, -1)
    mask, fired = _select_window(k_eff, n, flops, window, trim, need_neighbours=True)
    return _finish("parabola", flops, env, dstar, k, ladder, mask, fired, slope_window)


def fit_frontier(curves, *, approach: int = 1, **kw) -> FrontierFit:
    """``approach=1``: :func:`fit_envelope`; ``approach=2``: :func:`fit_parabola` (keywords passed on)."""
    if approach == 1:
        return fit_envelope(curves, **kw)
    if approach == 2:
        return fit_parabola(curves, **kw)
    raise ValueError(f"approach must be 1 or 2, got {approach!r}")
