"""Phase diagram of compute-optimal PLRF and its exponents ``d* ~ f^xi``, ``P(f; d*) ~ f^{-eta}``.

Paquette, Paquette, Xiao, Pennington, "4+3 Phases of Compute-Optimal Neural Scaling Laws" (arXiv 2405.15074).
One-pass SGD, batch B = 1, compute ``f = d t`` with ``t`` = steps; the learning rate is the authors'
``lr = c / sum_{j<=v} j^{-2a}`` with ``v/d`` fixed: constant in d when 2a > 1, ``lr ~ d^{-nu}``, ``nu = 1 - 2a``
when 2a < 1.  The shrinking lr is not optional: the stochastic stability edge ``kappa_K ~ lr tr(K)/2 < 1`` with
``tr K ~ d^{1-2a}`` forces ``nu >= 1 - 2a`` (a constant lr diverges at large d below the high-dimensional line).

Derivation (done in code, not typed in).  With ``s = 2 lr t`` the components of theory.components are power laws
``d^{-p} t^{-q}`` (their window ``1 << s << d^{2a}``):

    F_0    p = 2a - max(0, 1-2b)          q = 0
    F_pp   p = -nu c                      q = c = (2a+2b-1)/(2a)
    F_ac   p = 1                          q = 1 - 1/(2a)                (2a > 1 and 2b > 1 only)
    noise  p = nu (1 - g)                 q = g = 2 - 1/(2a)            (a > 1/4, 2b > 1)
           p = nu (1 - g + e)             q = g - e, e = (1-2b)/(2a)    (a > 1/4, 2b < 1; its partial-sum form)

Terms that do not decay in t (q <= 0) are bounded in the window by their value at ``s ~ d^{2a}``, which is
F_0-order, and are dropped; so are F_ac for 2a < 1 and the noise for a < 1/4 (both F_0-order levels).
With ``d = f^x``, ``t = f^{1-x}`` each term is ``f^{-(p x + q (1-x))}``; the loss is dominated by the largest term,
so ``eta = max_x min_i (p_i x + q_i (1 - x))`` and ``xi`` is the maximizer: a one-dimensional linear program whose
optimum balances two terms.  :func:`exponents` solves it numerically for any (alpha, beta); :func:`dominant_pair`
reads off the balancing pair at a representative point of each phase and :func:`symbolic_exponents` solves
``p_i x + q_i (1-x) = p_j x + q_j (1-x)`` for that pair with sympy.  tests/test_phases.py checks the result
against the numerical LP at random points of every phase and against a direct minimization over d of the sum
of the components (with their constants) at f = 1e20..1e30.

Result (agrees with the table of shared/notes/theory.md section 5 in every phase; no differences):

    Ia   2b < 1 < 2a          F_pp = F_0      xi = 1/(2a+1)                 eta = (2a+2b-1)/(2a+1)
    Ib   2b < 1, 2a < 1       F_pp = F_0 (=N) xi = 1/2                      eta = a + b - 1/2
    Ic   2b > 1, a < 1/4      F_pp = F_0      xi = (2a+2b-1)/(2(1-a)(2b-1)+4a)   eta = 2a xi
    II   1/2 < b < a          F_pp = F_ac     xi = b/(a+b)                  eta = (2a+2b-1)/(2(a+b))
    III  1/2 < a < b          noise = F_ac    xi = 1/2                      eta = 1 - 1/(4a)
    IVa  2b > 1, 1/4 < a < 1-1/sqrt2   F_pp = noise   xi = (b-a)/(2b(1-a)-a)   eta = (1-2a)(2a+2b-1)/(2(2b(1-a)-a))
    IVb  2b > 1, 1-1/sqrt2 < a < 1/2   noise = F_0    xi = 1/2              eta = a

Remarks found on the way: (i) Ib, Ic and IV depend on the shrinking lr (``nu = 1 - 2a`` enters F_pp and the
noise): e.g. with a constant lr Ib's balance would give Ia's xi = 1/(2a+1) instead of 1/2.  (ii) In Ic the noise is an F_0-order level (kernel flat, ``~ lr^2 v^{1-4a}``).  (iii) The
IVa/IVb split is not a three-term tie: at ``2a^2 - 4a + 1 = 0`` (a = 1 - 1/sqrt2) the noise exponent
``p = q`` makes the noise a function of f alone, the maximizer is a whole interval and xi jumps (0.5 ->
(b-a)/(2b(1-a)-a)) while eta is continuous.  (iv) eta is continuous across every boundary; xi across all but
IVa/IVb.  (v) Above the line the 2b < 1 noise never balances (it is ``O(kappa_K F_pp)``); below it (Ib) it ties
with F_pp and F_0 at the optimum, because every 2b < 1 component is F_0-order at the window edge
``s ~ d^{2a}`` where xi = 1/2 puts the optimum: the exponents are unchanged.  (vi) Direct minimization of the
sum of the components (constants included) at f = 1e20..1e30 reproduces the table within 0.005 at points
0.1 or more from a boundary, ~0.01 at 0.05 from one, but not in the thin IVa strip: there F_0 trails the
balanced pair by only 0.02-0.03 in the exponent and the slopes are still ~0.012 off (within 0.005 at
f = 1e40..1e60), so finite-size drift is intrinsic to IVa.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import sympy as sp
from scipy import optimize, special

__all__ = [
    "ALPHA", "BETA", "BOUNDARIES", "IV_SPLIT", "OPTIMIZERS", "PHASES", "Exponents", "PhasePoint", "classify",
    "component_exponents", "dominant_pair", "exponents", "minimize_numeric", "optimizer_components", "phase_point",
    "symbolic_exponents", "symbolic_exponents_at", "time_maps",
]

ALPHA, BETA = sp.symbols("alpha beta", positive=True)
IV_SPLIT = 1 - 1 / math.sqrt(2)
PHASES = ("Ia", "Ib", "Ic", "II", "III", "IVa", "IVb")
# representative interior points (used to identify the balancing pair; any interior point gives the same)
_REPRESENTATIVE = {"Ia": (1.0, 0.3), "Ib": (0.4, 0.3), "Ic": (0.15, 0.9), "II": (1.0, 0.7), "III": (0.7, 1.2),
                   "IVa": (0.27, 1.0), "IVb": (0.4, 1.0)}
# boundary name -> description (distances are computed by _distances)
BOUNDARIES = {
    "beta=1/2": "2 beta = 1 (target in/out of the 'easy' class; every alpha)",
    "alpha=1/2": "2 alpha = 1 (high-dimensional line; every beta)",
    "beta=alpha": "beta = alpha, alpha > 1/2 (II | III)",
    "alpha=1/4": "alpha = 1/4, beta > 1/2 (Ic | IVa)",
    "alpha=1-1/sqrt2": "alpha = 1 - 1/sqrt2, beta > 1/2 (IVa | IVb)",
    "admissible": "2(alpha + beta) = 1 (edge of the admissible region)",
}


def _check(alpha, beta):
    for name, val in (("alpha", alpha), ("beta", beta)):
        if not isinstance(val, (int, float, np.integer, np.floating)) or not math.isfinite(val):
            raise ValueError(f"{name} must be a finite real number, got {val!r}")
    return float(alpha), float(beta)


def _distances(a, b):
    """Euclidean distance of (a, b) to each boundary (segments: the restricted ones end at their corner)."""
    def seg_v(x0, y_lo):      # vertical line a = x0 for b >= y_lo
        return math.hypot(a - x0, max(0.0, y_lo - b))
    dist = {
        "beta=1/2": abs(b - 0.5) if a > 0 else math.hypot(a, b - 0.5),
        "alpha=1/2": abs(a - 0.5),
        "alpha=1/4": seg_v(0.25, 0.5),
        "alpha=1-1/sqrt2": seg_v(IV_SPLIT, 0.5),
        "admissible": abs(a + b - 0.5) / math.sqrt(2),
    }
    # beta = alpha for alpha >= 1/2: nearest point on the ray from (1/2, 1/2) along (1, 1)
    t = max(0.5, 0.5 * (a + b))
    dist["beta=alpha"] = math.hypot(a - t, b - t)
    return dist


def classify(alpha, beta) -> str:
    """Phase label of (alpha, beta): 'Ia','Ib','Ic','II','III','IVa','IVb' or 'inadmissible'.

    Inadmissible when ``alpha <= 0`` or ``2(alpha + beta) <= 1``.  On a boundary the label follows the
    conventions ``2b <= 1`` -> Ia/Ib side, ``2a >= 1`` -> upper side, ``b >= a`` -> III, ``a < 1/4`` -> Ic,
    ``a < 1 - 1/sqrt2`` -> IVa; use :func:`phase_point` to learn which boundary a point lies on.
    """
    a, b = _check(alpha, beta)
    if a <= 0 or 2 * (a + b) <= 1:
        return "inadmissible"
    if 2 * b <= 1:
        return "Ia" if 2 * a >= 1 else "Ib"
    if 2 * a >= 1:
        return "III" if b >= a else "II"
    if a < 0.25:
        return "Ic"
    return "IVa" if a < IV_SPLIT else "IVb"


class PhasePoint(NamedTuple):
    """Classification with boundary detection.

    phase: label from :func:`classify`; boundaries: names (keys of BOUNDARIES) within ``tol`` of the point;
    adjacent: the set of phase labels found within ``tol`` (more than one on a boundary); distances: all of them.
    """
    phase: str
    boundaries: tuple
    adjacent: tuple
    distances: dict


def phase_point(alpha, beta, tol=1e-6) -> PhasePoint:
    """Classify and report the boundaries within Euclidean distance ``tol`` in the (alpha, beta) plane."""
    a, b = _check(alpha, beta)
    if not (tol >= 0):
        raise ValueError(f"tol must be >= 0, got {tol}")
    dist = _distances(a, b)
    on = tuple(k for k, v in dist.items() if v <= tol)
    probes = {classify(a + dx, b + dy) for dx in (-tol, 0, tol) for dy in (-tol, 0, tol)} if on else set()
    adjacent = tuple(sorted(probes | {classify(a, b)}))
    return PhasePoint(classify(a, b), on, adjacent, dist)


# ------------------------------------------------------------------------------- component exponents (d, t)
def _region(phase):
    """Booleans (2a > 1, 2b > 1, 4a > 1) of a phase."""
    return {"Ia": (True, False, True), "Ib": (False, False, None), "Ic": (False, True, False),
            "II": (True, True, True), "III": (True, True, True), "IVa": (False, True, True),
            "IVb": (False, True, True)}[phase]


def _components_sym(hi_dim, easy, noise_ok, a=ALPHA, b=BETA):
    """Symbolic (name, p, q) of the components for a region (see the module docstring)."""
    nu = sp.Integer(0) if hi_dim else 1 - 2 * a
    c = (2 * a + 2 * b - 1) / (2 * a)
    g = 2 - 1 / (2 * a)
    e = (1 - 2 * b) / (2 * a)
    terms = [("F0", 2 * a - (0 if easy else 1 - 2 * b), sp.Integer(0)), ("Fpp", -nu * c, c)]
    if hi_dim and easy:
        terms.append(("Fac", sp.Integer(1), 1 - 1 / (2 * a)))
    if noise_ok:
        terms.append(("noise", nu * (1 - g), g) if easy else ("noise", nu * (1 - g + e), g - e))
    return terms


def component_exponents(alpha, beta):
    """Numeric ``[(name, p, q)]``: component ``~ d^{-p} t^{-q}`` at (alpha, beta), non-decaying terms dropped."""
    a, b = _check(alpha, beta)
    if classify(a, b) == "inadmissible":
        raise ValueError(f"(alpha, beta) = ({a}, {b}) is inadmissible: need alpha > 0 and 2(alpha+beta) > 1")
    names, fun = _numeric_components(2 * a > 1, 2 * b > 1, 4 * a > 1)
    out = []
    for name, (pv, qv) in zip(names, fun(a, b)):
        if name == "F0" or qv > 0:
            out.append((name, float(pv), float(qv)))
    return out


@lru_cache(maxsize=None)
def _numeric_components(hi_dim, easy, noise_ok):
    """Names and a lambdified ``(a, b) -> [(p, q), ...]`` of the symbolic components of a region (cached)."""
    terms = _components_sym(hi_dim, easy, noise_ok)
    return tuple(n for n, _, _ in terms), sp.lambdify((ALPHA, BETA), [(p, q) for _, p, q in terms], "math")


def _lp(terms):
    """max_x min_i (p_i x + q_i (1-x)) over x in [0, 1]: returns (x_lo, x_hi, value, active names).

    A term may also be ``(name, [(p, q), ...])``: its exponent is then the largest of its lines (the loss term
    under the best of several effective times, :func:`optimizer_components`)."""
    terms = [(t[0], list(t[1])) if len(t) == 2 else (t[0], [(t[1], t[2])]) for t in terms]
    lines = [ln for _, ls in terms for ln in ls]
    xs = {0.0, 1.0}
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            (pi, qi), (pj, qj) = lines[i], lines[j]
            den = (pi - qi) - (pj - qj)
            if abs(den) > 1e-15:
                x = (qj - qi) / den
                if 0.0 <= x <= 1.0:
                    xs.add(x)
    val_of = lambda ls, x: max(p * x + q * (1 - x) for p, q in ls)
    env = lambda x: min(val_of(ls, x) for _, ls in terms)
    vals = {x: env(x) for x in xs}
    best = max(vals.values())
    arg = sorted(x for x, v in vals.items() if v >= best - 1e-12)
    xm = 0.5 * (arg[0] + arg[-1])
    active = tuple(sorted(n for n, ls in terms if abs(val_of(ls, xm) - best) <= 1e-9))
    return arg[0], arg[-1], best, active


class Exponents(NamedTuple):
    """``d* ~ f^xi``, ``P ~ f^{-eta}``; ``xi_range`` is the maximizer interval (a point except at IVa|IVb)."""
    xi: float
    eta: float
    xi_range: tuple
    active: tuple


def exponents(alpha, beta, optimizer: str = "sgd") -> Exponents:
    """Compute-optimal (xi, eta) at any admissible (alpha, beta) by the linear program of the module docstring;
    ``optimizer`` other than ``"sgd"``: every term under the optimizer's effective times (:func:`time_maps`).

    On the IVa|IVb line the maximizer is an interval and ``xi`` is its midpoint (xi jumps there; eta does not).
    """
    lo, hi, val, active = _lp(optimizer_components(alpha, beta, optimizer))
    return Exponents(0.5 * (lo + hi), val, (lo, hi), active)


# ------------------------------------------------------------------ other optimizers: effective-time changes
OPTIMIZERS = ("sgd", "dana-decaying", "dana-constant")


def time_maps(optimizer: str, alpha):
    """The effective times of an optimizer as ``[(e, k)]``: ``tau ~ t^k / d^e`` (constants dropped); a component
    ``d^-p tau^-q`` then reads ``d^-(p - e q) t^-(k q)``, and the loss is set by the largest effective time, i.e.
    the largest exponent over the maps (:func:`optimizer_components`). ``alpha`` may be a sympy symbol.

    Derivation (ours: the paper's formulas were not available here; see below). For t >> delta,
    ``Delta_t = delta/(delta + t) ~ delta/t`` makes the momentum ``y_t`` a weighted sum of the last ~t gradients,
    ``y_t ~ t/(delta + 1) g`` for a slowly varying gradient g, so the ``g3_t y_t`` term is a gradient step with the
    growing learning rate ``eta_eff(t) = g3_t t/(delta + 1)``. Mode lambda is then learned at ``lambda tau(t) ~ 1``
    with ``tau(t) = g2 t + sum_{s<t} eta_eff(s)``:

    * SGD: ``tau = lr t``: ``(e, k) = (0, 1)``.
    * DANA-decaying, ``g3_t = g3 (1+t)^-kappa``, ``kappa = 1/(2 alpha)`` and ``g3 ~ g2 ~ 1/tr K``:
      ``tau ~ g2 t + g3 t^(2 - kappa)``: ``(0, 1)`` and ``(0, 2 - 1/(2 alpha))``. The second wins for large t
      iff 2 alpha > 1 (kappa < 1); below the high-dimensional line the momentum's steps are too small to matter and
      DANA-decaying has SGD's exponents.
    * DANA-constant, ``g3 ~ g2 / d``: ``tau ~ g2 (t + t^2/d)``: ``(0, 1)`` and ``(1, 2)``; the momentum takes over
      after ``t ~ d`` (the paper's figure caption puts DANA-constant's transition at ``t ~ 1/g3 ~ d``).

    The deterministic components (F_pp, F_ac) are functions of ``lambda tau`` per mode, so they follow exactly. The
    SGD-noise term keeps its SGD form in ``tau`` where the noise injected into the slow modes comes from the first
    steps (for SGD it is the kernel ``~ tau^-(2 - 1/(2 alpha))`` times the early excess loss); the noise injected
    later, at the growing rate ``eta_eff``, is at most a bounded fraction of the current loss when the kernel norm
    of the not-yet-learned modes, ``eta_eff(t) sum_{lambda tau(t) < 1} lambda``, stays bounded, which it does for
    ``kappa = 1/(2 alpha)`` (it falls like ``t^-(1 - kappa)^2``): it never sets the exponent. These are the
    assumptions of the prediction; the README compares it with the exponents measured on the exact theory.
    """
    if optimizer == "sgd":
        return [(0, 1)]
    if optimizer == "dana-decaying":
        return [(0, 1), (0, 2 - 1 / (2 * alpha))]
    if optimizer == "dana-constant":
        return [(0, 1), (1, 2)]
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def optimizer_components(alpha, beta, optimizer: str = "sgd"):
    """``[(name, [(p, q), ...])]``: each component of :func:`component_exponents` under every effective time of
    ``optimizer`` (:func:`time_maps`), as lines of the linear program."""
    maps = time_maps(optimizer, float(alpha))
    return [(n, [(p - e * q, k * q) for e, k in maps]) for n, p, q in component_exponents(alpha, beta)]


@lru_cache(maxsize=None)
def dominant_pair(phase, optimizer: str = "sgd") -> tuple:
    """The components of equal (largest) order at the compute-optimal point of ``phase``, found by the LP at a
    representative interior point, e.g. ``('F0', 'Fpp')``.

    In Ib three terms tie (F_0, F_pp and the 2b < 1 noise): below the high-dimensional line every 2b < 1 component
    is F_0-order at the window edge ``s ~ d^{2a}``, which is where ``xi = 1/2`` puts the optimum.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    active = exponents(*_REPRESENTATIVE[phase], optimizer).active
    if len(active) < 2:
        raise RuntimeError(f"expected balanced terms in phase {phase}, found {active}")
    return active


@lru_cache(maxsize=None)
def symbolic_exponents(phase, optimizer: str = "sgd"):
    """``(xi, eta)`` as sympy expressions in :data:`ALPHA`, :data:`BETA`, by balancing :func:`dominant_pair`.

    Solves ``p_i x + q_i (1 - x) = p_j x + q_j (1 - x)`` for ``x = xi`` and returns ``eta = p_i xi + q_i (1 - xi)``.
    For SGD the pair is the same throughout each phase; for another ``optimizer`` it is the pair at the phase's
    representative point, and the optimizer's own regions can split an SGD phase (DANA: F_0 = F_ac at large
    alpha in II and III), so use :func:`symbolic_exponents_at` for a given point.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    return symbolic_exponents_at(*_REPRESENTATIVE[phase], optimizer)[:2]


def symbolic_exponents_at(alpha, beta, optimizer: str = "sgd"):
    """``(xi, eta, pair)``: sympy expressions of the compute-optimal exponents valid around (alpha, beta), from
    the pair of components the LP balances there, each under the effective time (:func:`time_maps`) that sets it.
    With a tie of more than two terms the steepest rising and the steepest falling ones are balanced."""
    time_maps(optimizer, 1.0)                      # validates the name
    a0, b0 = _check(alpha, beta)
    ex = exponents(a0, b0, optimizer)
    active = ex.active
    if len(active) < 2:
        raise RuntimeError(f"expected balanced terms at ({a0}, {b0}), found {active}")
    terms = {n: (p, q) for n, p, q in _components_sym(2 * a0 > 1, 2 * b0 > 1, 4 * a0 > 1)}
    subs = {ALPHA: a0, BETA: b0}
    xm = ex.xi
    maps_num, maps_sym = time_maps(optimizer, a0), time_maps(optimizer, ALPHA)
    for n in active:                               # the effective time that sets the term at the optimum
        p, q = (float(v.subs(subs)) for v in terms[n])
        m = max(range(len(maps_num)), key=lambda i: (p - maps_num[i][0] * q) * xm + maps_num[i][1] * q * (1 - xm))
        e, k = maps_sym[m]
        terms[n] = (terms[n][0] - e * terms[n][1], k * terms[n][1])
    slope = {n: float((terms[n][0] - terms[n][1]).subs(subs)) for n in active}
    pair = (max(active, key=slope.get), min(active, key=slope.get))
    (pi, qi), (pj, qj) = terms[pair[0]], terms[pair[1]]
    x = sp.Symbol("x")
    sol = sp.solve(sp.Eq(pi * x + qi * (1 - x), pj * x + qj * (1 - x)), x)
    if len(sol) != 1:
        raise RuntimeError(f"balance of {pair} at ({a0}, {b0}) has no unique solution: {sol}")
    xi = sp.simplify(sol[0])
    eta = sp.simplify(pi * xi + qi * (1 - xi))
    return sp.factor(xi), sp.factor(eta), tuple(sorted(pair))


# ------------------------------------------------------------------------- direct numerical minimization
class NumericFrontier(NamedTuple):
    flops: np.ndarray
    d_opt: np.ndarray
    loss_opt: np.ndarray
    xi: float     # log-log slope of d_opt vs flops (least squares; NaN for a single flop value)
    eta: float    # minus the log-log slope of loss_opt (idem)


# the momentum's share of the effective time in minimize_numeric: g3 / (g2 (delta + 1)) with the authors' values
_MOMENTUM_SHARE = 0.5 / 9.0


def _log_tau(optimizer, a):
    """``log tau(d, t)`` of :func:`time_maps` with its constants (``tau = t + c t^k / d^e`` for the momentum's
    map), as a function of (log d, log t)."""
    if optimizer == "sgd":
        return lambda logd, logt: logt
    (_, _), (e, k) = time_maps(optimizer, a)
    c = math.log(_MOMENTUM_SHARE)
    return lambda logd, logt: float(np.logaddexp(logt, c + k * logt - e * logd))


def _asymptotic_loss(a, b, c_lr, ratio, optimizer="sgd"):
    """Sum of the leading components (with constants, B = 1) as a function of (log d, log t); for another
    optimizer, of (log d, log tau) with its effective time (:func:`time_maps`, :data:`_MOMENTUM_SHARE`)."""
    from . import components as C
    hi_dim, easy = 2 * a > 1, 2 * b > 1
    f0_1 = C.F0(a, b, 1.0, v=ratio) if not hi_dim else C.F0(a, b, 1.0)   # F_0 is a pure power of d at fixed v/d
    p0 = 2 * a - max(0.0, 1 - 2 * b)
    c = (2 * a + 2 * b - 1) / (2 * a)
    g = 2 - 1 / (2 * a)
    e = (1 - 2 * b) / (2 * a)
    cpp = special.gamma(c) / (2 * a)
    cac = special.zeta(2 * b) * special.gamma(1 - 1 / (2 * a)) / (2 * a) if (hi_dim and easy) else 0.0
    ckk = special.gamma(g) / (2 * a) if 4 * a > 1 else 0.0
    S0 = special.zeta(2 * b) if easy else special.gamma(1 - e) / e / (2 * a)

    def lr_of(logd):
        if hi_dim:
            return c_lr / special.zeta(2 * a)
        v = ratio * math.exp(logd)   # sum_{j<=v} j^{-2a} = v^{1-2a}/(1-2a) + zeta(2a) + O(v^{-2a})
        return c_lr / (v ** (1 - 2 * a) / (1 - 2 * a) + special.zeta(2 * a))

    log_tau = _log_tau(optimizer, a)

    def loss(logd, logt):
        lr = lr_of(logd)
        logs = math.log(2 * lr) + log_tau(logd, logt)
        val = f0_1 * math.exp(-p0 * logd) + cpp * math.exp(-c * logs)
        val += cac * math.exp(-logd - (1 - 1 / (2 * a)) * logs)
        if ckk:
            S = S0 if easy else S0 * math.exp(e * logs)
            val += ckk * lr * S / 2 * math.exp(-g * logs)
        return val
    return loss


def minimize_numeric(alpha, beta, flops=None, *, c_lr=0.5, ratio=4.0, optimizer="sgd") -> NumericFrontier:
    """Minimize the sum of the asymptotic components over d at each flop budget (B = 1, ``t = f/d``).
    ``optimizer`` other than SGD: the components at its effective time ``tau(d, t)`` instead of ``t``.

    lr = c_lr / sum_{j<=v} j^{-2a} with ``v = ratio d`` (v = inf when 2a > 1).  Independent of the LP: uses the
    components' constants and a bounded Brent search over ln d in (0, ln f).  Exponents by least squares.
    """
    a, b = _check(alpha, beta)
    if classify(a, b) == "inadmissible":
        raise ValueError(f"(alpha, beta) = ({a}, {b}) is inadmissible")
    if abs(2 * b - 1) < 1e-9 or abs(2 * a - 1) < 1e-9:
        raise ValueError("minimize_numeric needs 2*beta != 1 and 2*alpha != 1 (logarithmic cases)")
    if not ratio > 1:
        raise ValueError(f"ratio = v/d must be > 1, got {ratio}")
    flops = np.logspace(20, 30, 11) if flops is None else np.asarray(flops, dtype=np.float64)
    time_maps(optimizer, a)                        # validates the name
    loss = _asymptotic_loss(a, b, c_lr, ratio, optimizer)
    d_opt, l_opt = [], []
    for f in flops:
        lf = math.log(f)
        res = optimize.minimize_scalar(lambda x: math.log(loss(x, lf - x)), bounds=(0.0, lf), method="bounded",
                                       options={"xatol": 1e-10, "maxiter": 2000})
        d_opt.append(math.exp(res.x))
        l_opt.append(math.exp(res.fun))
    d_opt, l_opt = np.array(d_opt), np.array(l_opt)
    lf = np.log(flops) - np.mean(np.log(flops))
    xi = np.polyfit(lf, np.log(d_opt), 1)[0] if flops.size > 1 else math.nan
    eta = -np.polyfit(lf, np.log(l_opt), 1)[0] if flops.size > 1 else math.nan
    return NumericFrontier(flops, d_opt, l_opt, float(xi), float(eta))
