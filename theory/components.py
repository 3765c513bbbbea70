"""Asymptotic loss components of PLRF under one-pass SGD with a constant learning rate.

Paquette, Paquette, Xiao, Pennington, "4+3 Phases of Compute-Optimal Neural Scaling Laws" (NeurIPS 2024,
arXiv 2405.15074). Conventions of the project: loss without 1/2, SGD step without factor 2, batch-averaged
step ``theta <- theta - (eta/B) sum_i ...``; ``eta`` (``lr``) is the per-step learning rate, ``r`` the step count,
``s = 2 eta r`` the intrinsic time (per-mode decay ``g_k^r ~ exp(-s lambda_k)``, ``lambda_k ~ k^{-2 alpha}``).

In the window ``1 << s << d^{2 alpha}`` the expected loss is, to leading order,

    P(r) ~ (F_0 + F_pp(r) + F_ac(r)) / (1 - kappa_K) + N(r),

with (all constants derived here and checked in tests/test_components.py against independent sums):

* ``F_0 = P*`` (limit level).  ``P* ~ sum_j j^{-2b} / (j^{2a} + tau)``, ``sum_j tau/(tau + j^{2a}) = d`` (det.
  equivalent).  Leading order, ``v = inf`` (needs ``2a > 1``): ``tau = kappa d^{2a}``,
  ``kappa = [(pi/2a)/sin(pi/2a)]^{-2a}`` and
    2b > 1:  ``F_0 = zeta(2b) / tau``                                          ~ d^{-2a}
    2b < 1:  ``F_0 = tau^{(1-2a-2b)/(2a)} (pi/2a) / sin(pi (1-2b)/(2a))``      ~ d^{1-2a-2b}
    2b = 1:  ``F_0 = (ln(tau)/(2a) + gamma_E) / tau``.
  Finite ``v`` (any ``a``; required when ``2a < 1``): ``tau = T v^{2a}`` with
  ``2F1(1, 1/2a; 1 + 1/2a; -1/T) = d/v`` and for 2b < 1 ``F_0 = v^{1-2a-2b} 2F1(1, e; 1+e; -1/T) / (T (1-2b))``,
  ``e = (1-2b)/(2a)``; for 2b = 1 ``F_0 = (ln v + gamma_E - ln(1 + 1/T)/(2a)) / tau``.
  So ``F_0 ~ d^{-2a + max(0, 1-2b)}``; relative corrections ``O(d^{-|1-2b|})`` (slow near 2b = 1: use
  :func:`F0_level`, the numerically solved tau-sum, there).
* ``F_pp(r) = (2a)^{-1} Gamma(1 + (2b-1)/(2a)) s^{-(2a+2b-1)/(2a)}`` (population bias), the Mellin asymptotics of
  ``sum_j j^{-2a-2b} exp(-s j^{-2a})``; holds for ``1 << s`` and ``s^{1/(2a)} << d``.
* ``F_ac(r) = zeta(2b) Gamma(1 - 1/(2a)) / (2a d) s^{-(1 - 1/(2a))}`` (feature-embedding distortion), only for
  ``2a > 1`` and ``2b > 1``.  Derivation: in the forcing ``<R(z) D^{1/2} b, D^{1/2} b>`` with
  ``R ~ diag(1/(j^{-2a} m(z) - z))``, the first-order term in ``1 - m(z)`` is ``zeta(2b) (1 - m(z))`` and
  ``1 - m(z) = int lambda mu_K(d lambda)/(lambda - z)`` (from ``(1/d) tr (K - z)^{-1} = -m(z)/z``), so
  ``F_ac(r) = (zeta(2b)/d) sum_k lambda_k g_k^r``: each eigenvector of K carries an extra isotropic target weight
  ``zeta(2b) lambda_k / d``.  With ``lambda_k ~ k^{-2a}``, k <= d, the Gamma form follows.  Holds for
  ``1 << s << d^{2a}``; the relative error from the cut at k = d is ``~ (s/d^{2a})^{1 - 1/(2a)}``.  When 2a < 1
  the same sum is of order ``d^{-2a}`` (an F_0-order level); when 2b < 1 it is ``O(F_pp s^{1/(2a)}/d)``: absent.
* ``K_pp(r) = (eta^2/B) (2a)^{-1} Gamma(2 - 1/(2a)) s^{-(2 - 1/(2a))}``: the Volterra kernel
  ``Kr(r) = (eta^2/B) sum_k lambda_k^2 g_k^r`` of the exact recursion, for ``a > 1/4`` and ``1 << s << d^{2a}``.
* ``N(r)`` (SGD noise).  ``P = F + Kr * P`` (discrete convolution).  With ``F = F_0 + G``, ``G`` summable
  (2b > 1) and ``Kr`` regularly varying, renewal theory for subexponential kernels gives
  ``P(r) = F(r)/(1 - kappa_K) + Kr(r) sum_u G(u) / (1 - kappa_K)^2 + o(.)``, ``kappa_K = sum_r Kr(r)``.  Per mode
  ``sum_u g_k^u = 1/(1 - g_k)``, hence ``sum_u G(u) = sum_k w_k/(1 - g_k) ~ Q_eta / (2 eta)`` with
  ``Q_eta = sum_j j^{-2b} / (1 - eta c_B j^{-2a})``, ``c_B = (B+1)/(2B)`` (``= zeta(2b) + O(eta)``).  Keeping the
  partial sum ``sum_{u<r} G(u)`` to second order (Mellin) replaces ``Q_eta`` by
  ``S(s) = Q_eta + (2a)^{-1} Gamma(1-e)/e s^{e}``, ``e = (1-2b)/(2a)`` (valid for both signs of e, log form at
  2b = 1; ``zeta`` analytically continued when 2b < 1).  So

      N(r) = K_pp(r) S(s) / (2 eta (1 - kappa_K)^2) ~ (eta/(4aB)) zeta(2b) Gamma(2 - 1/(2a)) s^{-(2 - 1/(2a))}.

  ``kappa_K ~ (eta/(2B)) sum_{j<=v} j^{-2a}/(1 - eta c_B j^{-2a})`` (about ``eta tr(K)/(2B)``).  For 2b > 1 this is a
  new power law (it beats F_pp when a < b); for 2b < 1 it is ``o(F_pp)``.  Checked against the exact
  recursion on a power-law spectrum (tests).  For ``a < 1/4`` the kernel is flat in r (``~ eta^2 v^{1-4a}/B``) and
  the noise is an F_0-order level: not given here.

References for the sums: Mellin transform asymptotics, ``int_0^inf x^{-p} exp(-s x^{-2a}) dx
= (2a)^{-1} Gamma((p-1)/(2a)) s^{-(p-1)/(2a)}``.

Status versus shared/notes/theory.md section 4: F_0 (with kappa), F_pp, F_ac and K_pp constants confirmed; the
notes' "noise ~ K_pp/eta times a constant" is made precise: the constant is ``S(s)/2 -> zeta(2b)/2``, with the
factor ``(1 - kappa_K)^{-2}`` (and ``(1 - kappa_K)^{-1}`` on the forcing), which is not small for the authors'
lr (``kappa_K ~ c/2``).  Caveat found: the Gamma form of F_ac converges as ``(s/d^{2a})^{1-1/(2a)}``, uselessly
slowly near 2a = 1 (a = 0.7, d = 1000: off by 1.5-3x); ``finite_d=True`` fixes it.  With it, the sum of the
components matches the exact expected loss of sampled instances (d = 1000, v = 4d, lr = 0.5/tr D) within
2-15% for s in [30, 3e4] at (0.7, 1.2), (1.0, 0.7), (0.6, 1.5) (slow test).
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from scipy import integrate, optimize, special

__all__ = [
    "COMPONENTS", "Components", "Dominance", "F0", "F0_level", "Fac", "Fpp", "Kpp", "components",
    "dominant_terms", "kernel_norm_population", "kappa", "noise", "plot_components", "tau_asymptotic",
]

COMPONENTS = ("F0", "Fpp", "Fac", "noise")
EULER_GAMMA = float(np.euler_gamma)


# ----------------------------------------------------------------------------------------------- validation
def _check_ab(alpha, beta):
    for name, val in (("alpha", alpha), ("beta", beta)):
        if not isinstance(val, (int, float, np.integer, np.floating)) or not math.isfinite(val):
            raise ValueError(f"{name} must be a finite real number, got {val!r}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if 2 * (alpha + beta) <= 1:
        raise ValueError(f"(alpha, beta) inadmissible: need 2(alpha + beta) > 1, got {2 * (alpha + beta):.4g}")
    return float(alpha), float(beta)


def _pos_array(name, x, allow_zero=False):
    arr = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(arr) | ((arr < 0) if allow_zero else (arr <= 0))
    if np.any(bad):
        raise ValueError(f"{name} must be finite and {'>= 0' if allow_zero else '> 0'}, got {x!r}")
    return arr


def _check_lr(lr, batch):
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    lr = float(_pos_array("lr", lr))
    c_B = (batch + 1) / (2 * batch)
    if lr * c_B >= 1:  # mode j = 1 (lambda ~ 1) must contract: g_1 < 1
        raise ValueError(f"lr must be < 2B/(B+1) = {1 / c_B:.4g} (full-batch edge for lambda_max ~ 1), got {lr}")
    return lr, c_B


def _check_v(alpha, d, v):
    if v is None:
        if 2 * alpha <= 1:
            raise ValueError(f"v is required when 2*alpha <= 1 (got alpha={alpha}); use a fixed ratio v/d > 1")
        return None
    v = _pos_array("v", v)
    if np.any(v < np.asarray(d)):
        raise ValueError(f"v must be >= d, got v={v} and d={d}")
    return v


def _out(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


# ----------------------------------------------------------------------------------------- numerical sums
def _em_sum(f, upper=np.inf, n0=4096):
    """``sum_{j=1}^{upper} f(j)`` for smooth slowly varying f: exact below n0, midpoint-rule integral above.

    The tail ``sum_{j>=n0} f(j) ~ int_{n0-1/2}^{upper+1/2} f`` has relative error ``~ f''/(24 f) ~ n0^{-2}``.
    """
    if upper < n0:
        j = np.arange(1, int(upper) + 1, dtype=np.float64)
        return float(np.sum(f(j)))
    j = np.arange(1, n0, dtype=np.float64)
    head = float(np.sum(f(j)))
    lo = math.log(n0 - 0.5)
    hi = math.log(upper + 0.5) if np.isfinite(upper) else np.inf
    g = lambda u: float(f(np.float64(math.exp(u)))) * math.exp(u)
    tail = 0.0
    while lo < hi:  # integrate in u = ln x over blocks of 4 e-folds until the remainder is negligible
        top = min(lo + 4.0, hi)
        part, _ = integrate.quad(g, lo, top, limit=200, epsabs=0, epsrel=1e-12)
        tail += part
        lo = top
        if not np.isfinite(hi) and abs(part) <= 1e-15 * abs(head + tail):
            break
        if lo > 700:
            raise ValueError("sum does not converge (terms decay too slowly)")
    return head + tail


# ------------------------------------------------------------------------------------------------ F_0 level
def kappa(alpha) -> float:
    """``kappa = [(pi/(2a)) / sin(pi/(2a))]^{-2a}``: ``tau = kappa d^{2a}`` when v = inf (needs 2a > 1)."""
    if not (np.isfinite(alpha) and 2 * alpha > 1):
        raise ValueError(f"kappa needs 2*alpha > 1, got alpha={alpha}")
    x = math.pi / (2 * alpha)
    return (x / math.sin(x)) ** (-2 * alpha)


def _T_of_ratio(alpha, rho):
    """``T`` with ``int_0^1 T/(T + x^{2a}) dx = 2F1(1, 1/2a; 1+1/2a; -1/T) = 1/rho`` (``rho = v/d > 1``)."""
    if rho <= 1:
        raise ValueError(f"v/d must be > 1 for the asymptotic level, got {rho}")
    h = 1 / (2 * alpha)

    def frac(y):  # 2F1(1, h; 1+h; -y); scipy returns inf at h = 1 for large y, where it is log(1+y)/y
        return math.log1p(y) / y if abs(h - 1.0) < 1e-12 else special.hyp2f1(1.0, h, 1.0 + h, -y)
    fun = lambda lt: frac(math.exp(-lt)) - 1.0 / rho
    return math.exp(optimize.brentq(fun, -200.0, 200.0, xtol=1e-14, rtol=1e-13))


def tau_asymptotic(alpha, d, *, v=None):
    """Leading-order ``tau(d)`` of the equation ``sum_{j<=v} tau/(tau + j^{2a}) = d``.

    v None (2a > 1): ``kappa d^{2a}``; otherwise ``T v^{2a}`` with T from the 2F1 equation at ``v/d``.
    """
    alpha = float(alpha)
    d = _pos_array("d", d)
    v = _check_v(alpha, d, v)
    if v is None:
        return _out(kappa(alpha) * d ** (2 * alpha))
    d_b, v_b = np.broadcast_arrays(d, v)
    T = np.vectorize(lambda dd, vv: _T_of_ratio(alpha, vv / dd))(d_b, v_b)
    return _out(T * v_b ** (2 * alpha))


def F0(alpha, beta, d, *, v=None):
    """Limit level ``P*`` to leading order, ``~ d^{-2a + max(0, 1-2b)}`` (formulas in the module docstring).

    Holds for d -> inf at fixed ``v/d`` (or v = inf when 2a > 1); relative error ``O(d^{-|1-2b|})``.
    """
    a, b = _check_ab(alpha, beta)
    d = _pos_array("d", d)
    v = _check_v(a, d, v)
    tau = np.asarray(tau_asymptotic(a, d, v=v))
    if abs(2 * b - 1) < 1e-12:
        if v is None:
            return _out((np.log(tau) / (2 * a) + EULER_GAMMA) / tau)
        T = tau / v ** (2 * a)
        return _out((np.log(v) + EULER_GAMMA - np.log1p(1 / T) / (2 * a)) / tau)
    if 2 * b > 1:
        return _out(special.zeta(2 * b) / tau)
    e = (1 - 2 * b) / (2 * a)
    if v is None:
        return _out(tau ** (e - 1) * (math.pi / (2 * a)) / math.sin(math.pi * e))
    T = tau / v ** (2 * a)
    integral = special.hyp2f1(1.0, e, 1.0 + e, -1 / T) / (T * (1 - 2 * b))
    return _out(v ** (1 - 2 * a - 2 * b) * integral)


def F0_level(alpha, beta, d, *, v=None) -> float:
    """Deterministic-equivalent level ``sum_{j<=v} j^{-2b}/(j^{2a} + tau)``, tau solved numerically (float d).

    Not asymptotic in d (sums by :func:`_em_sum`, relative accuracy ~1e-8); v None means v = inf (2a > 1).
    """
    a, b = _check_ab(alpha, beta)
    d = float(_pos_array("d", d))
    v = _check_v(a, d, v)
    upper = np.inf if v is None else float(v)
    if upper == d:
        raise ValueError("v must be > d for a finite tau (at v = d, tau = inf)")
    count = lambda lt: _em_sum(lambda j: 1.0 / (1.0 + j ** (2 * a) * math.exp(-lt)), upper) - d
    lt0 = 2 * a * math.log(d)
    lo, hi = lt0 - 10, lt0 + 10
    while count(lo) > 0:
        lo -= 10
    while count(hi) < 0:
        hi += 10
    tau = math.exp(optimize.brentq(count, lo, hi, xtol=1e-13, rtol=1e-12))
    return _em_sum(lambda j: j ** (-2 * b) / (j ** (2 * a) + tau), upper)


# ------------------------------------------------------------------------------- time-dependent components
def _s(steps, lr):
    steps = _pos_array("steps", steps)
    return 2.0 * lr * steps


def Fpp(alpha, beta, steps, lr):
    """Population bias ``(2a)^{-1} Gamma(1 + (2b-1)/(2a)) s^{-(2a+2b-1)/(2a)}``, ``s = 2 lr steps``.

    Holds for ``1 << s`` and ``s^{1/(2a)} << d`` (modes ``j ~ s^{1/(2a)}`` resolved); independent of the batch.
    """
    a, b = _check_ab(alpha, beta)
    lr = float(_pos_array("lr", lr))
    s = _s(steps, lr)
    c = (2 * a + 2 * b - 1) / (2 * a)
    return _out(special.gamma(c) / (2 * a) * s ** (-c))


def Fac(alpha, beta, d, steps, lr, *, v=None, finite_d=False):
    """Feature-embedding distortion ``zeta(2b) Gamma(1 - 1/(2a)) / (2a d) s^{-(1 - 1/(2a))}``.

    Only for ``2a > 1`` and ``2b > 1`` (ValueError otherwise; see the module docstring for why it is absent or
    F_0-order there).  Holds for ``1 << s << d^{2a}`` with relative error ``~ (s/d^{2a})^{1 - 1/(2a)}``, which
    is never small in practice when 2a is close to 1 (a = 0.6: 20% needs s < 1e-4 d^{1.2}).  ``finite_d=True``
    returns instead the sum before the Gamma asymptotics, ``(zeta(2b)/d) sum_{j<=d} j^{-2a} exp(-s j^{-2a})``
    (exact below j = 4096, incomplete-Gamma midpoint integral above).  ``v`` (finite target) replaces zeta(2b)
    by its partial sum.
    """
    a, b = _check_ab(alpha, beta)
    if not (2 * a > 1 and 2 * b > 1):
        raise ValueError(f"F_ac exists only for 2*alpha > 1 and 2*beta > 1, got alpha={a}, beta={b}")
    d = _pos_array("d", d)
    lr = float(_pos_array("lr", lr))
    s = _s(steps, lr)
    z = special.zeta(2 * b) if v is None else special.zeta(2 * b) - special.zeta(2 * b, np.asarray(v) + 1.0)
    h = 1 - 1 / (2 * a)
    if not finite_d:
        return _out(z * special.gamma(h) / (2 * a * d) * s ** (-h))
    if np.ndim(d) != 0:
        raise ValueError("finite_d=True needs a scalar d")
    d = float(d)
    n0 = int(min(d, 4096))
    j = np.arange(1, n0 + 1, dtype=np.float64)
    s_col = np.atleast_1d(s)[:, None]
    head = np.sum(j ** (-2 * a) * np.exp(-s_col * j ** (-2 * a)), axis=1)
    tail = np.zeros_like(head)
    if d > n0:   # sum_{n0 < j <= d} ~ int_{n0+1/2}^{d+1/2} x^{-2a} e^{-s x^{-2a}} dx (incomplete Gamma)
        sv = np.atleast_1d(s)
        u_hi, u_lo = sv * (n0 + 0.5) ** (-2 * a), sv * (d + 0.5) ** (-2 * a)
        tail = special.gamma(h) / (2 * a) * sv ** (-h) * (special.gammainc(h, u_hi) - special.gammainc(h, u_lo))
    out = z / d * (head + tail)
    return _out(out if np.ndim(s) else out[0])


def Kpp(alpha, steps, lr, *, batch=1):
    """Kernel ``(lr^2/B) (2a)^{-1} Gamma(2 - 1/(2a)) s^{-(2 - 1/(2a))}``, for ``a > 1/4``, ``1 << s << d^{2a}``."""
    a = float(alpha)
    if not (np.isfinite(a) and 4 * a > 1):
        raise ValueError(f"K_pp needs alpha > 1/4, got alpha={alpha}")
    lr, _ = _check_lr(lr, batch)
    s = _s(steps, lr)
    g = 2 - 1 / (2 * a)
    return _out(lr ** 2 / batch * special.gamma(g) / (2 * a) * s ** (-g))


def kernel_norm_population(alpha, lr, *, batch=1, v=None) -> float:
    """``kappa_K = sum_r Kr(r) ~ (lr/(2B)) sum_{j<=v} j^{-2a} / (1 - lr c_B j^{-2a})``, ``c_B = (B+1)/(2B)``.

    Population spectrum ``lambda_j = j^{-2a}`` for ``tr K`` (its expectation); v needed when 2a <= 1.
    """
    a = float(alpha)
    lr, c_B = _check_lr(lr, batch)
    v = _check_v(a, 1.0, v)
    upper = np.inf if v is None else float(v)
    return lr / (2 * batch) * _em_sum(lambda j: j ** (-2 * a) / (1 - lr * c_B * j ** (-2 * a)), upper)


def _Q(a, b, lr, c_B):
    """``zeta(2b) + sum_j j^{-2b} [1/(1 - lr c_B j^{-2a}) - 1]`` (zeta continued to 2b < 1)."""
    corr = _em_sum(lambda j: j ** (-2 * b) * (lr * c_B * j ** (-2 * a)) / (1 - lr * c_B * j ** (-2 * a)))
    return float(special.zeta(2 * b)) + corr


def noise(alpha, beta, steps, lr, *, batch=1, v=None, kernel_norm=None):
    """SGD-noise part of the loss ``N(r) = K_pp(r) S(s) / (2 lr (1 - kappa_K)^2)`` (module docstring).

    ``S(s) = Q_lr + (2a)^{-1} Gamma(1-e)/e s^e``, ``e = (1-2b)/(2a)`` (``S -> zeta(2b)`` as lr -> 0, s -> inf
    when 2b > 1).  Leading order ``(lr/(4aB)) zeta(2b) Gamma(2 - 1/(2a)) s^{-(2-1/(2a))}``.
    Holds for ``a > 1/4``, ``1/lr << r`` and ``s << d^{2a}``; a new power law only when 2b > 1.
    ``kernel_norm`` defaults to :func:`kernel_norm_population` (pass ``plrf.kernel_norm(spec, lr)`` for an instance).
    For 2b < 1 the two-term ``S(s)`` can be negative at ``s ~ 1`` (outside the window); it is clipped at 0 there.
    """
    a, b = _check_ab(alpha, beta)
    lr, c_B = _check_lr(lr, batch)
    kn = kernel_norm_population(a, lr, batch=batch, v=v) if kernel_norm is None else float(kernel_norm)
    if not (0 <= kn < 1):
        raise ValueError(f"kernel norm must be in [0, 1) (stochastic stability edge), got {kn:.4g}")
    s = _s(steps, lr)
    e = (1 - 2 * b) / (2 * a)
    if abs(e) < 1e-9:   # 2b = 1: S = (ln s + gamma_E)/(2a) + gamma_E + (the lr correction of Q)
        corr = _em_sum(lambda j: (1 / j) * (lr * c_B * j ** (-2 * a)) / (1 - lr * c_B * j ** (-2 * a)))
        S = (np.log(s) + EULER_GAMMA) / (2 * a) + EULER_GAMMA + corr
    else:
        S = _Q(a, b, lr, c_B) + special.gamma(1 - e) / e / (2 * a) * s ** e
    S = np.maximum(S, 0.0)  # S(s) is a partial sum of positive terms; the two-term form can dip below 0 at s ~ 1
    return _out(Kpp(a, steps, lr, batch=batch) * S / (2 * lr * (1 - kn) ** 2))


# --------------------------------------------------------------------------------------------- combination
class Components(NamedTuple):
    """The four asymptotic components at ``steps`` (arrays), the factor ``1/(1 - kappa_K)`` and their sum.

    ``total = amplification * (F0 + Fpp + Fac) + noise``.  Absent components are 0 (``present`` says which).
    """
    steps: np.ndarray
    F0: np.ndarray
    Fpp: np.ndarray
    Fac: np.ndarray
    noise: np.ndarray
    amplification: float
    total: np.ndarray
    present: dict


def components(alpha, beta, d, steps, lr, *, batch=1, v=None, kernel_norm=None, finite_d=False) -> Components:
    """All components at the given steps (window ``1 << 2 lr steps << d^{2a}``; see module docstring).

    F_ac is 0 unless 2a > 1 and 2b > 1; the noise is 0 when ``a <= 1/4`` (F_0-order level, not modelled).
    ``finite_d`` selects the finite-d sum for F_ac (see :func:`Fac`; advisable when 2a is close to 1).
    """
    a, b = _check_ab(alpha, beta)
    d = float(_pos_array("d", d))
    steps = np.atleast_1d(_pos_array("steps", steps))
    lr, _ = _check_lr(lr, batch)
    kn = kernel_norm_population(a, lr, batch=batch, v=v) if kernel_norm is None else float(kernel_norm)
    if not (0 <= kn < 1):
        raise ValueError(f"kernel norm must be in [0, 1) (stochastic stability edge), got {kn:.4g}")
    zeros = np.zeros_like(steps)
    present = {"F0": True, "Fpp": True, "Fac": bool(2 * a > 1 and 2 * b > 1), "noise": bool(4 * a > 1)}
    f0 = np.full_like(steps, F0(a, b, d, v=v))
    fpp = np.asarray(Fpp(a, b, steps, lr)) * np.ones_like(steps)
    fac = (np.asarray(Fac(a, b, d, steps, lr, v=v, finite_d=finite_d)) * np.ones_like(steps)
           if present["Fac"] else zeros)
    nz = (np.asarray(noise(a, b, steps, lr, batch=batch, v=v, kernel_norm=kn)) * np.ones_like(steps)
          if present["noise"] else zeros)
    amp = 1.0 / (1.0 - kn)
    return Components(steps, f0, fpp, fac, nz, amp, amp * (f0 + fpp + fac) + nz, present)


class Dominance(NamedTuple):
    """``values[name]`` as they enter the loss (amplified), ``largest`` name(s), ``share`` = largest/total."""
    values: dict
    largest: object
    share: np.ndarray
    components: Components


def dominant_terms(alpha, beta, d, steps, lr, *, batch=1, v=None, kernel_norm=None,
                   finite_d=False) -> Dominance:
    """Which term dominates the loss at (d, steps, lr): components and the name of the largest.

    ``largest`` is a str for scalar ``steps``, else an array of str.  Warns when ``2 lr steps`` is outside the
    window ``[10, d^{2a}/10]`` where the asymptotic forms hold.
    """
    comp = components(alpha, beta, d, steps, lr, batch=batch, v=v, kernel_norm=kernel_norm, finite_d=finite_d)
    s = 2 * float(lr) * comp.steps
    if np.any(s < 10) or np.any(s > float(d) ** (2 * alpha) / 10):
        warnings.warn(f"2*lr*steps outside the window [10, d^(2 alpha)/10] = [10, {float(d) ** (2 * alpha) / 10:.3g}]"
                      "; the asymptotic components are only indicative there", stacklevel=2)
    amp = comp.amplification
    vals = {"F0": amp * comp.F0, "Fpp": amp * comp.Fpp, "Fac": amp * comp.Fac, "noise": comp.noise}
    stack = np.stack([vals[k] for k in COMPONENTS])
    idx = np.argmax(stack, axis=0)
    names = np.array(COMPONENTS)[idx]
    share = stack.max(axis=0) / comp.total
    scalar = np.ndim(steps) == 0
    return Dominance(vals, str(names[0]) if scalar else names, share[0] if scalar else share, comp)


def plot_components(ax, alpha, beta, d, steps, lr, *, batch=1, v=None, kernel_norm=None, finite_d=False,
                    curve=None, curve_label="loss"):
    """Draw the four (amplified) components and their sum on log-log ``ax`` vs steps.

    ``curve`` optional ``(steps, loss)`` arrays (e.g. an exact expected loss) drawn on top.  Returns ``ax``.
    """
    comp = components(alpha, beta, d, steps, lr, batch=batch, v=v, kernel_norm=kernel_norm, finite_d=finite_d)
    amp = comp.amplification
    styles = {"F0": ("F$_0$ (limit)", "C0"), "Fpp": ("F$_{pp}$ (population bias)", "C1"),
              "Fac": ("F$_{ac}$ (embedding distortion)", "C2"), "noise": ("SGD noise", "C3")}
    for name in COMPONENTS:
        if not comp.present[name]:
            continue
        y = getattr(comp, name) * (amp if name != "noise" else 1.0)
        ax.loglog(comp.steps, y, "--", color=styles[name][1], label=styles[name][0])
    ax.loglog(comp.steps, comp.total, "-", color="k", lw=1, alpha=0.6, label="sum of components")
    if curve is not None:
        cs, cl = (np.asarray(c, dtype=np.float64) for c in curve)
        m = cs > 0
        ax.loglog(cs[m], cl[m], "-", color="C4", lw=2, label=curve_label)
    ax.set_xlabel("steps r")
    ax.set_ylabel("loss")
    ax.set_title(f"alpha={alpha:g}, beta={beta:g}, d={d:g}, lr={lr:.3g}")
    ax.legend(fontsize="small")
    return ax
