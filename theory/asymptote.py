"""Asymptotic compute-optimal exponents measured from local slopes, and where an exponent is weakly identified.

Local slopes of the frontier (:func:`theory.frontier.local_slopes`) drift towards their asymptote: the components
of :mod:`theory.phases` are power laws ``d^-p t^-q``; at the optimum two of them balance (exponent ``eta`` in f)
and the next one trails by ``omega = min_i (p_i xi + q_i (1 - xi)) - eta`` over the other terms, so the loss is
``f^-eta (A + B f^-omega + ...)`` and the local slopes follow

    s(f) = s_inf + c f^-omega                                   (finite-size correction model)

:func:`extrapolate` fits that model to the local slopes over their last ``decades`` decades (linear least squares
in ``(s_inf, c)`` at a given ``omega``). ``omega``: from the theory (:func:`correction_exponent`, when a trailing
term exists and its gap is at least ``OMEGA_MIN``), else profiled over ``[OMEGA_MIN, OMEGA_MAX]`` (the value of
least residual). The error combines, as the larger of them, (i) the standard error of ``s_inf`` from the
residuals, (ii) the spread of ``s_inf`` over the omegas whose residual sum of squares is within the profile's
2-sigma band (``RSS <= RSS_min (1 + 4 / (n - 3))``; the whole range when omega is profiled, else omega/2 .. 2
omega: the theory gives the leading correction only), and (iii) half the change of ``s_inf`` when only the
upper half of the window is fitted (drift the model does not capture), (iv) half the range of ``s_inf`` over
fits of the last 3, 4.5 and 6 decades, and (v) ``CORRECTION_TRUST = 1/2`` of the extrapolated correction
``|s_inf - s(f_max)|``: a non-monotone approach (two corrections of opposite sign, ladder wiggles) or a small
omega can carry a one-power model far from the data, so the step beyond the last local slope is never trusted to
better than half its size. Grid points of local slopes are correlated (overlapping windows), so (i) alone would
be optimistic; (ii)-(v) are systematic.

When the drift is not a decelerating approach (the drift per decade in the upper half of the window exceeds the
lower half's, a crossover still under way, or the profile runs to its smallest omega) the model does not apply:
the last slope is reported, with its drift over the last two decades as the error, and ``omega_source`` says so.

Weak identification (:func:`xi_interval`). At compute f, a size ``d = f^x`` costs a loss factor
``f^(eta - E(x))`` with ``E(x) = min_i (p_i x + q_i (1 - x))`` (concave, piecewise linear). The values of x whose
loss is within a relative ``rel_loss`` of the optimum at f form the interval ``E(x) >= eta - ln(1 + rel_loss) /
ln f``: a point interval where xi is sharp, a wide one where the loss is flat in xi (e.g. IVb near the IVa|IVb
line, where the interval of maximizers itself is not a point).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from .phases import component_exponents, exponents

OMEGA_MIN, OMEGA_MAX = 0.01, 2.0
CORRECTION_TRUST = 0.5  # the extrapolated correction s_inf - (last slope) is trusted to this fraction
WEAK_WIDTH = 0.02   # an xi interval wider than this (at 5% loss) is reported as weakly identified


def _envelope(terms, x):
    return min(p * x + q * (1.0 - x) for _, p, q in terms)


def correction_exponent(alpha: float, beta: float) -> Optional[float]:
    """Gap in the f-exponent between the balanced components and the next one at the optimum (``omega``), or
    None when every component is balanced, or the gap is below ``OMEGA_MIN`` (a near tie: no usable
    separation of scales)."""
    terms = component_exponents(alpha, beta)
    ex = exponents(alpha, beta)
    x = ex.xi
    gaps = [p * x + q * (1.0 - x) - ex.eta for name, p, q in terms if name not in ex.active]
    gaps = [g for g in gaps if g > 1e-9]
    if not gaps or min(gaps) < OMEGA_MIN:
        return None
    return float(min(gaps))


class Interval(NamedTuple):
    """x = ln d / ln f whose loss at ``flops`` is within ``rel_loss`` of the optimum; ``exponent_tol`` is the
    corresponding tolerance on the f-exponent."""
    low: float
    high: float
    flops: float
    rel_loss: float
    exponent_tol: float


def xi_interval(alpha: float, beta: float, *, flops: float = 1e12, rel_loss: float = 0.05) -> Interval:
    """The interval of xi that is identified at compute ``flops`` to within a relative loss ``rel_loss`` (see the
    module doc); ``low == high`` when the interval is a point to 1e-9."""
    if not (flops > 1):
        raise ValueError(f"flops must be > 1, got {flops}")
    if not (rel_loss > 0):
        raise ValueError(f"rel_loss must be > 0, got {rel_loss}")
    terms = component_exponents(alpha, beta)
    eta = exponents(alpha, beta).eta
    tol = math.log1p(rel_loss) / math.log(flops)
    # E(x) is concave and piecewise linear: the set {E >= eta - tol} is an interval; find its ends on [0, 1]
    # by bisection from the maximizer
    ex = exponents(alpha, beta)
    lo_in, hi_in = ex.xi_range
    level = eta - tol

    def edge(inside, outside):
        if _envelope(terms, outside) >= level:
            return outside
        for _ in range(200):
            mid = 0.5 * (inside + outside)
            if _envelope(terms, mid) >= level:
                inside = mid
            else:
                outside = mid
        return inside
    return Interval(edge(lo_in, 0.0), edge(hi_in, 1.0), float(flops), float(rel_loss), tol)


class Asymptote(NamedTuple):
    value: float          # extrapolated s_inf
    err: float            # see the module doc
    last: float           # the last local slope (largest compute)
    omega: float          # correction exponent used
    omega_source: str     # 'theory' or 'profile'
    window: tuple         # (f_lo, f_hi) of the fitted local slopes
    n: int                # points fitted


def _fit(lf, s, omega):
    """Least squares of s = s_inf + c exp(-omega lf): (s_inf, c, rss, se of s_inf)."""
    X = np.column_stack([np.ones_like(lf), np.exp(-omega * (lf - lf[-1]))])   # scaled: c is the gap at the end
    coef, _, _, _ = np.linalg.lstsq(X, s, rcond=None)
    r = s - X @ coef
    rss = float(r @ r)
    dof = max(1, len(s) - 2)
    cov = np.linalg.pinv(X.T @ X) * (rss / dof)
    return float(coef[0]), float(coef[1]), rss, float(math.sqrt(max(cov[0, 0], 0.0)))


def extrapolate(flops, slopes, *, omega: Optional[float] = None, decades: Optional[float] = None,
                min_points: int = 6) -> Asymptote:
    """Fit ``s(f) = s_inf + c f^-omega`` to local slopes ``slopes`` at ``flops`` (see the module doc).

    ``decades``: fit only the last ``decades`` decades of compute (default: all points). ``omega``: the
    correction exponent (e.g. :func:`correction_exponent`); None profiles it over [OMEGA_MIN, OMEGA_MAX].
    Raises ValueError when fewer than ``min_points`` finite points are available."""
    f = np.asarray(flops, dtype=np.float64)
    s = np.asarray(slopes, dtype=np.float64)
    if f.shape != s.shape or f.ndim != 1:
        raise ValueError(f"flops and slopes must be 1-d arrays of one length, got {f.shape} and {s.shape}")
    ok = np.isfinite(f) & np.isfinite(s) & (f > 0)
    f, s = f[ok], s[ok]
    order = np.argsort(f)
    f, s = f[order], s[order]
    if decades is not None:
        keep = f >= f[-1] / 10.0 ** decades
        f, s = f[keep], s[keep]
    if len(f) < min_points:
        raise ValueError(f"need at least {min_points} finite local slopes to extrapolate, got {len(f)}")
    if omega is not None and not (omega > 0):
        raise ValueError(f"omega must be > 0, got {omega}")
    lf = np.log(f)
    grid = np.geomspace(OMEGA_MIN, OMEGA_MAX, 80)
    if omega is None:
        band_omegas, source = grid, "profile"
    else:
        band_omegas, source = np.geomspace(omega / 2, omega * 2, 25), "theory"
    fits = [(w, *_fit(lf, s, w)) for w in band_omegas]
    if omega is None:
        omega, s_inf, _, _, se = min(fits, key=lambda t: t[3])
    else:
        s_inf, _, _, se = _fit(lf, s, omega)
    # no decelerating approach (a crossover still under way: the drift per decade grows, or the profile runs
    # to its smallest omega): the model does not apply; report the last slope, with the drift of the last
    # two decades as its error
    rate = lambda m: abs(np.polyfit(lf[m], s[m], 1)[0]) if m.sum() >= 3 else 0.0  # noqa: E731
    mid = 0.5 * (lf[0] + lf[-1])
    accelerating = rate(lf >= mid) > rate(lf < mid)
    if accelerating or (source == "profile" and omega <= 1.5 * OMEGA_MIN):
        late = lf >= lf[-1] - 2 * math.log(10)
        err = float(abs(np.polyfit(lf[late], s[late], 1)[0]) * 2 * math.log(10)) if late.sum() >= 3 else float("inf")
        return Asymptote(float(s[-1]), max(err, 1e-4), float(s[-1]), float("nan"), "none (drift not decelerating)",
                         (float(f[0]), float(f[-1])), len(f))
    rss_min = min(t[3] for t in fits)
    cut = rss_min * (1.0 + 4.0 / max(1, len(s) - 3)) + 1e-300
    band = [t[1] for t in fits if t[3] <= cut]
    spread = 0.5 * (max(band) - min(band)) if band else 0.0
    half = lf >= 0.5 * (lf[0] + lf[-1])
    split = 0.0
    if half.sum() >= 4:
        split = 0.5 * abs(_fit(lf[half], s[half], omega)[0] - s_inf)
    # windows of the last 3, 4.5, 6 decades: the model holds only asymptotically
    ests = [s_inf] + [_fit(lf[lf >= lf[-1] - dec * math.log(10)], s[lf >= lf[-1] - dec * math.log(10)], omega)[0]
                      for dec in (3.0, 4.5, 6.0) if np.sum(lf >= lf[-1] - dec * math.log(10)) >= min_points]
    windows = 0.5 * (max(ests) - min(ests))
    err = max(se, spread, split, windows, CORRECTION_TRUST * abs(s_inf - s[-1]))
    return Asymptote(s_inf, float(err), float(s[-1]), float(omega), source, (float(f[0]), float(f[-1])), len(f))


def frontier_record(alpha: float, beta: float, local, *, rel_loss: float = 0.05, decades: Optional[float] = None,
                    sgd: bool = True) -> dict:
    """The asymptote fields of a compute-optimal measurement (``plrf compute-optimal`` results.json):
    ``xi_asymptote``, ``xi_asymptote_err``, ``eta_asymptote``, ``eta_asymptote_err`` extrapolated (omega profiled;
    the theory's correction exponent is stored as ``omega_theory``) from the local slopes ``local`` (a :class:`theory.frontier.LocalSlopes`, e.g. the smooth parabola-vertex ones), the
    correction exponent used, ``xi_interval`` (theory, at the largest compute with local slopes, within
    ``rel_loss`` of the optimal loss; equal ends, the theory's xi, when it is narrower than ``WEAK_WIDTH``), and the boundaries the point lies on (with
    the phases on each side; comma-separated strings, empty when none) when it is within 1e-6 of one. NaN fields when there are too few local slopes. ``sgd=False`` (another optimizer): the
    correction exponent is profiled (the component theory is SGD's), the xi interval is SGD's."""
    from .phases import phase_point
    # omega profiled from the data: the theory's gap (omega_theory) is the leading correction of the idealised
    # component sum, but measured slopes also carry faster corrections (ladder, lr, finite window) whose
    # curvature a one-power model with a small fixed omega turns into a large spurious extrapolation (measured
    # at the seven named points to f = 1e15: III and IVa have omega_theory 0.06 and 0.03, and a fixed omega
    # carried the fit 0.03-0.09 away from both the last slope and the theory; the profiled fit stays within
    # 0.02 of the theory except where the drift is intrinsic, IVa's eta)
    th = correction_exponent(alpha, beta) if sgd else None
    omega = None
    out = {"omega_theory": th if th is not None else float("nan")}
    fmax = float("nan")
    for key in ("xi", "eta"):
        try:
            a = extrapolate(local.flops, getattr(local, key), omega=omega, decades=decades)
            out[f"{key}_asymptote"], out[f"{key}_asymptote_err"] = a.value, a.err
            out[f"{key}_omega"], out[f"{key}_asymptote_model"] = a.omega, a.omega_source
            fmax = a.window[1]
        except ValueError:
            out[f"{key}_asymptote"] = out[f"{key}_asymptote_err"] = out[f"{key}_omega"] = float("nan")
            out[f"{key}_asymptote_model"] = "too few local slopes"
    out["omega"], out["omega_source"] = out["eta_omega"], out["eta_asymptote_model"]
    iv = xi_interval(alpha, beta, flops=fmax if np.isfinite(fmax) and fmax > 1 else 1e12, rel_loss=rel_loss)
    sharp = iv.high - iv.low < WEAK_WIDTH
    out["xi_interval"] = [iv.low, iv.high] if not sharp else [exponents(alpha, beta).xi] * 2
    out["xi_interval_flops"], out["xi_interval_rel_loss"] = iv.flops, rel_loss
    out["xi_weakly_identified"] = not sharp
    pp = phase_point(alpha, beta)
    out["boundaries"], out["adjacent_phases"] = ",".join(pp.boundaries), ",".join(pp.adjacent)
    return out


def balance_at(alpha: float, beta: float, d: float, flops: float, lr: float, *, batch: int = 1,
               v: Optional[float] = None) -> dict:
    """Which loss components set the exponent at the largest compute reached: the two largest components of
    :func:`theory.components.components` at ``d`` (the compute-optimal size there) and ``steps = flops/(d B)``,
    their ratio, and the pair that balances in the asymptote (:func:`theory.phases.exponents`). When the two
    pairs differ, the measured slopes are still in a pre-asymptotic balance: the drift is explained by it.
    Returns strings (comma-separated pairs) and numbers; ``balance_pair`` is "n/a" outside the components'
    validity (e.g. a kernel norm >= 1)."""
    from .components import components
    active = ",".join(sorted(exponents(alpha, beta).active))
    out = {"asymptotic_pair": active, "balance_pair": "n/a", "balance_ratio": float("nan"),
           "balance_is_asymptotic": False, "balance_d": float(d), "balance_flops": float(flops)}
    try:
        steps = float(flops) / (float(d) * batch)
        c = components(alpha, beta, d, steps, lr, batch=batch, v=v)
    except (ValueError, FloatingPointError, ZeroDivisionError):
        return out
    vals = {"F0": c.amplification * float(c.F0[0]), "Fpp": c.amplification * float(c.Fpp[0]),
            "Fac": c.amplification * float(c.Fac[0]), "noise": float(c.noise[0])}
    top = sorted(vals, key=vals.get, reverse=True)[:2]
    out["balance_pair"] = ",".join(sorted(top))
    out["balance_ratio"] = vals[top[1]] / vals[top[0]] if vals[top[0]] > 0 else float("nan")
    out["balance_is_asymptotic"] = set(top) <= set(active.split(",")) or set(active.split(",")) <= set(top)
    return out
