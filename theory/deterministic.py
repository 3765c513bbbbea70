"""Deterministic equivalent of the PLRF spectrum (eigenvalues of ``K = W^T D W`` and target weights).

Paquette, Paquette, Xiao, Pennington, "4+3 phases of compute-optimal neural scaling laws" (2024), sec. on the
deterministic equivalent; the equations below are re-derived here and checked against sampled W in tests.

``Khat = D^{1/2} W W^T D^{1/2} = (1/d) sum_{k<=d} x_k x_k^T`` with ``x_k ~ N(0, D)`` is a sample covariance,
and its resolvent ``R(z) = (Khat - z)^{-1}`` has the deterministic equivalent

    R(z) ~ diag_j 1/(lambda_j m(z) - z),     m(z) = 1 / (1 + (1/d) sum_{j<=v} lambda_j / (lambda_j m - z)),

``lambda_j = j^{-2 alpha}``, ``m -> 1`` as ``|z| -> inf`` (Khat also has an atom of mass v - d at 0). With
``q = z/m`` and ``Phi_s(q) = sum_{j<=v} j^{-s}/(1 - q j^{2a})``:

    m = 1 - Phi_0(q)/d,   i.e.  z = q (1 - Phi_0(q)/d)   (explicit inverse of q(z); see theory._resolvent).

Consequences used here (all Stieltjes transforms ``S(z) = int mu(dt)/(t - z)``):
  * eigenvalues of K (d of them):   ``d tr(K - z)^{-1}/d = -d m/z = -d/q``;
  * first moment ``t mu_K(dt)``:     ``d + z(-d/q) = Phi_0(q)``;
  * target measure ``mu_b = sum_k w_k delta_{lambda_k} + P* delta_0`` (spectral measure of D^{1/2} b for Khat;
    ``w_k = lambda_k <u_k, theta*>^2 = <uhat_k, D^{1/2} b>^2`` since ``theta* = K^{-1} W^T D b``):
    ``<R D^{1/2} b, D^{1/2} b> = Phi_{2 beta}(q) / m``; its atom at 0 is ``P* = Phi_{2b}(-1/tau)/tau`` where
    ``q(0) = -1/tau``, ``Phi_0(-1/tau) = d`` i.e. ``sum_j tau/(tau + j^{2a}) = d``.
  * support edges: critical points of the real map q -> z(q) (z' > 0 exactly off the support).

Binned spectrum: each isolated outlier (an interval of the support containing exactly one eigenvalue, near
``lambda_j``) is one bin whose weight and mean eigenvalue are contour integrals on a circle around the pole
``q = lambda_j``; the bulk is binned in log-eigenvalue with masses from integrals along paths in the upper
half q-plane (all singularities of the integrands are real), between the boundary values ``q(x_i + i0)``.
Cost grows like the number of bins (~ sqrt(d) outliers + 32 per decade), not like d: d = 1e7 takes seconds.

Checked (tests/test_deterministic.py): the fixed point against brute-force sums; sum rules (sum n = d,
sum w + P* = sum_j j^{-2a-2b}, sum n lam = sum_j j^{-2a}); the outliers by two independent contour routes;
P*, eigenvalue CDF (Kolmogorov distance), cumulative weights and expected-loss curves against means over
sampled W. v = d (allowed for 2 alpha > 1) has a hard edge at 0: P* = 0 and the last 1e-6 d eigenvalues
below ~1e-12 d^{-2a} are lumped into the lowest bin.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np
from scipy.optimize import brentq

from plrf.spectrum import Spectrum, make_spectrum
from ._resolvent import _GL_N, _GL_W, _GL_X, PowerSums, q_at, z_of_q

__all__ = ["Cumulative", "Density", "SpectrumEdges", "Stieltjes", "cumulative", "density", "deterministic_spectrum",
           "kappa", "p_star", "power_sum", "resolvent_m", "spectrum_edges", "stieltjes", "tau"]


# ------------------------------------------------------------------------------------------------
# validation and shared state

def _validate(alpha, beta, d, v):
    for name, val in (("alpha", alpha), ("beta", beta)):
        if isinstance(val, bool) or not isinstance(val, (int, float, np.integer, np.floating)) \
                or not math.isfinite(val):
            raise ValueError(f"{name} must be a finite real number, got {val!r}")
    alpha, beta = float(alpha), float(beta)
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if 2 * (alpha + beta) <= 1:
        raise ValueError(f"need 2(alpha + beta) > 1 (admissible region), got alpha={alpha}, beta={beta}")
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    d = int(d)
    if v is None:
        if 2 * alpha <= 1:
            raise ValueError(f"v = None (infinite) needs 2 alpha > 1, got alpha={alpha}; pass a finite v > d")
    else:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"v must be an integer or None, got {v!r}")
        v = int(v)
        if 2 * alpha <= 1 and v <= d:
            raise ValueError(f"2 alpha <= 1 needs a finite v > d, got v={v}, d={d}")
        if v < d:
            raise ValueError(f"v must be >= d (or None), got v={v} < d={d}")
    return alpha, beta, d, v


class _Model:
    """Evaluators shared by every quantity of one (alpha, d, v)."""

    def __init__(self, alpha, d, v):
        self.alpha, self.d, self.v = alpha, d, v
        self.a2 = 2 * alpha
        self.ps = PowerSums(alpha, v)
        self.trD = power_sum(self.a2, v)
        self.scale = 1.0 + self.trD / d          # >~ largest eigenvalue of K

    def z(self, q):
        return z_of_q(self.ps, self.d, np.asarray(q, dtype=np.complex128))

    def q(self, z):
        return q_at(self.ps, self.d, z, scale=self.scale)


def power_sum(s: float, v=None) -> float:
    """``sum_{j<=v} j^{-s}`` (v = None: infinite, needs s > 1): 96 terms + midpoint Euler-Maclaurin tail."""
    J = 96 if v is None else min(96, v)
    j = np.arange(1, J + 1, dtype=np.float64)
    out = float(np.sum(j ** -s))
    if v is not None and v <= J:
        return out
    X0 = J + 0.5
    d1 = lambda x: -s * x ** (-s - 1)                        # first derivative of x^-s
    d3 = lambda x: -s * (s + 1) * (s + 2) * x ** (-s - 3)    # third derivative
    if v is None:
        if s <= 1:
            raise ValueError(f"sum_j j^-s diverges for s = {s} <= 1 with v = inf")
        return out + X0 ** (1 - s) / (s - 1) + d1(X0) / 24 - 7 * d3(X0) / 5760
    V0 = v + 0.5
    integral = math.log(V0 / X0) if s == 1 else (V0 ** (1 - s) - X0 ** (1 - s)) / (1 - s)
    return out + integral - (d1(V0) - d1(X0)) / 24 + 7 * (d3(V0) - d3(X0)) / 5760


# ------------------------------------------------------------------------------------------------
# the fixed point, the limit level and the edges

def kappa(alpha: float) -> float:
    """``tau / d^{2 alpha}`` as ``d -> inf`` (v = inf, 2 alpha > 1): ``[(pi/(2a)) / sin(pi/(2a))]^{-2a}``.

    From ``sum_j tau/(tau + j^{2a}) ~ int_0^inf dx / (1 + x^{2a}/tau) = tau^{1/(2a)} (pi/(2a)) / sin(pi/(2a))``.
    """
    alpha = float(alpha)
    if not 2 * alpha > 1:
        raise ValueError(f"kappa needs 2 alpha > 1, got alpha={alpha}")
    c = math.pi / (2 * alpha)
    return (c / math.sin(c)) ** (-2 * alpha)


def _tau(model: _Model) -> float:
    d, v = model.d, model.v
    if v is not None and v == d:
        return math.inf

    def f(lt):
        return model.ps(np.array([-math.exp(-lt) + 0j]))[0].real - d
    lo = hi = model.a2 * math.log(d)
    while f(lo) > 0:
        lo -= 2.0
    while f(hi) < 0:
        hi += 2.0
    return math.exp(brentq(f, lo, hi, xtol=1e-13, rtol=1e-15))


def tau(alpha: float, d: int, *, v=None) -> float:
    """``tau`` solving ``sum_{j<=v} tau / (tau + j^{2 alpha}) = d`` (``q(0) = -1/tau``; inf when v = d).

    ``tau / d`` is the deterministic equivalent of ``tr K^{-1}``; for v = inf, ``tau ~ kappa d^{2 alpha}``.
    """
    alpha, _, d, v = _validate(alpha, 1.0, d, v)
    return _tau(_Model(alpha, d, v))


def _p_star(model: _Model, beta: float, t: float) -> float:
    if math.isinf(t):
        return 0.0
    return float(model.ps(np.array([-1.0 / t + 0j]), 2 * beta)[0].real / t)


def p_star(alpha: float, beta: float, d: int, *, v=None) -> float:
    """Deterministic equivalent of ``P* = ||D^{1/2}(W theta* - b)||^2``:

    ``P* = sum_{j<=v} j^{-2a-2b} / (1 + tau j^{-2a})`` (the atom at 0 of the target measure,
    ``lim_{z->0} -z <R(z) D^{1/2} b, D^{1/2} b>``), with ``tau`` from :func:`tau`.
    """
    alpha, beta, d, v = _validate(alpha, beta, d, v)
    model = _Model(alpha, d, v)
    return _p_star(model, beta, _tau(model))


def resolvent_m(z, alpha: float, d: int, *, v=None):
    """The fixed point ``m(z)`` (complex array; ``Im z >= 0``, ``z != 0``; real z gives ``m(x + i0)``).

    ``(1/d) tr (K - z)^{-1} ~ -m(z)/z``; ``R(z) = (Khat - z)^{-1} ~ diag_j 1/(j^{-2a} m(z) - z)``.
    """
    alpha, _, d, v = _validate(alpha, 1.0, d, v)
    z = np.asarray(z, dtype=np.complex128)
    if np.any(z.imag < 0) or np.any(z == 0):
        raise ValueError("z must satisfy Im z >= 0 and z != 0")
    model = _Model(alpha, d, v)
    return z / model.q(z)


class Stieltjes(NamedTuple):
    """Deterministic equivalents at z: ``m``, ``q = z/m``, ``s_K = (1/d) tr (K-z)^{-1} = -m/z`` and
    ``G_b = <R(z) D^{1/2} b, D^{1/2} b> = Phi_{2b}(q)/m``."""
    m: np.ndarray
    q: np.ndarray
    s_K: np.ndarray
    G_b: np.ndarray


def stieltjes(z, alpha: float, beta: float, d: int, *, v=None) -> Stieltjes:
    """Stieltjes transforms of the eigenvalue measure of K and of the target measure (see module doc)."""
    alpha, beta, d, v = _validate(alpha, beta, d, v)
    z = np.asarray(z, dtype=np.complex128)
    if np.any(z.imag < 0) or np.any(z == 0):
        raise ValueError("z must satisfy Im z >= 0 and z != 0")
    model = _Model(alpha, d, v)
    q = model.q(z)
    m = z / q
    return Stieltjes(m, q, -m / z, model.ps(q, 2 * beta) / m)


class Density(NamedTuple):
    """Densities at x > 0: ``count`` = eigenvalues of K per unit x (integrates to d), ``weight`` = target
    weights ``sum_k lambda_k <u_k, theta*>^2`` per unit x (integrates to ``P(0) - P*``)."""
    x: np.ndarray
    count: np.ndarray
    weight: np.ndarray


def density(x, alpha: float, beta: float, d: int, *, v=None) -> Density:
    """``count = (d/pi) Im(-1/q(x+i0))``, ``weight = (1/pi) Im G_b(x+i0)``. Isolated outliers are narrow bumps
    (width ~ lambda_j / sqrt(d)) of mass one: sample them finely or use :func:`deterministic_spectrum`."""
    x = np.asarray(x, dtype=np.float64)
    if np.any(~(x > 0)):
        raise ValueError("x must be > 0")
    st = stieltjes(x + 0j, alpha, beta, d, v=v)
    return Density(x, np.maximum(d * (-1 / st.q).imag / np.pi, 0.0), np.maximum(st.G_b.imag / np.pi, 0.0))


class SpectrumEdges(NamedTuple):
    """Support of the eigenvalue measure of K: ``[lower, upper]`` with ``n_isolated`` isolated outliers at the
    top, outlier j (1-based) in ``[outliers[j-1, 0], outliers[j-1, 1]]`` near ``j^{-2 alpha}``; the continuous
    bulk below ends at ``bulk_upper``. ``q_lower``, ``q_upper`` are the critical points of z(q)."""
    lower: float
    upper: float
    n_isolated: int
    bulk_upper: float
    outliers: np.ndarray
    tau: float
    q_lower: float
    q_upper: float


def _zprime_real(model, q):
    return model.z(np.asarray(q, dtype=np.complex128))[1].real


def _upper_edge(model):
    """q_+ > 1 minimizing z(q) on (1, inf) (z -> +inf at the pole q = 1 and as q -> inf)."""
    g = lambda t: _zprime_real(model, np.array([1 + math.exp(t)]))[0]
    lo = -0.5 * math.log(model.d) - 3
    while g(lo) > 0:
        lo -= 3
    hi = 0.0
    while g(hi) < 0:
        hi += 2
    t = brentq(g, lo, hi, xtol=1e-14, rtol=1e-15)
    q = 1 + math.exp(t)
    return q, float(model.z(np.array([q + 0j]))[0][0].real)


def _lower_edge(model, t_):
    """q_- in (-1/tau, 0) maximizing z(q) (z = 0 at q = -1/tau, z -> 0+ as q -> 0-)."""
    if math.isinf(t_):
        return 0.0, 0.0
    g = lambda s: _zprime_real(model, np.array([-math.exp(s)]))[0]
    hi = -math.log(t_)                              # q = -1/tau: z' > 0
    lo = hi - 1
    while g(lo) > 0:
        lo -= 1
    s = brentq(g, lo, hi - 1e-15 * max(1.0, abs(hi)), xtol=1e-14, rtol=1e-15)
    q = -math.exp(s)
    return q, float(model.z(np.array([q + 0j]))[0][0].real)


def _n_isolated(model):
    """Number of leading j with a gap of the support in (lambda_{j+1}, lambda_j), tested at q = (j+1/2)^{-2a}."""
    cap = model.d - 1 if model.v is None else min(model.d - 1, model.v - 1)
    n = min(cap, int(4 * (1 + model.a2) * math.sqrt(model.d)) + 10)
    while True:
        j = np.arange(1, n + 1, dtype=np.float64)
        zp = _zprime_real(model, (j + 0.5) ** -model.a2)
        bad = np.flatnonzero(~(zp > 0))
        if bad.size:
            return int(bad[0])
        if n >= cap:
            return n
        n = min(cap, 2 * n)


def _critical(model, lo, hi, want_min, iters=60):
    """Vectorized bisection for z'(q) = 0 on (lo, hi): z' < 0 at lo+ (want_min) or z' > 0 at lo+ (max)."""
    lo, hi = lo.copy(), hi.copy()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        zp = _zprime_real(model, mid)
        left = (zp < 0) if want_min else (zp > 0)
        lo, hi = np.where(left, mid, lo), np.where(left, hi, mid)
    q = 0.5 * (lo + hi)
    return q, model.z(q + 0j)[0].real


def spectrum_edges(alpha: float, d: int, *, v=None) -> SpectrumEdges:
    """Edges of the deterministic-equivalent spectrum of K from the critical points of ``z(q)`` (real q):
    off the support exactly where ``z'(q) > 0``. Lower edge ~ d^{-2 alpha}, upper edge ~ 1 + O(d^{-1/2})."""
    alpha, _, d, v = _validate(alpha, 1.0, d, v)
    model = _Model(alpha, d, v)
    t_ = _tau(model)
    ql, xl = _lower_edge(model, t_)
    qu, xu = _upper_edge(model)
    J = _n_isolated(model)
    a2 = model.a2
    if J == 0:
        return SpectrumEdges(xl, xu, 0, xu, np.zeros((0, 2)), t_, ql, qu)
    j = np.arange(1, J + 1, dtype=np.float64)
    lam, lam1 = j ** -a2, (j + 1) ** -a2
    qe = (j + 0.5) ** -a2
    # gap j (between outliers j and j+1): z'(qe) > 0; local min in (lam_{j+1}, qe), local max in (qe, lam_j)
    _, zmin = _critical(model, lam1 * (1 + 1e-12), qe, want_min=True)
    _, zmax = _critical(model, qe, lam * (1 - 1e-12), want_min=False)
    upper = np.concatenate([[xu], zmin[:-1]])
    out = np.stack([zmax, upper], axis=1)
    return SpectrumEdges(xl, xu, J, float(zmin[-1]), out, t_, ql, qu)


# ------------------------------------------------------------------------------------------------
# masses between points of the real axis: contour integrals in the q-plane

_K_CIRCLE = 64          # trapezoid points on the circle around an isolated outlier's pole (33 evaluated)
_VERT_PER_DECADE = 10   # Gauss-Legendre nodes per decade on the vertical legs of the paths
_HORIZ_NODES = 8        # Gauss-Legendre nodes on each horizontal leg
_BULK_PER_DECADE = 32   # default bulk bins per decade of eigenvalue


def _fields(model, beta, P0, q):
    """Integrands ``S(z(q)) z'(q)`` in the q-plane for the three measures: counts ``-d/q + d/z``, first moment
    ``Phi_0``, target weights ``Phi_2b/m + P*/z`` (the atom of mu_b at 0 removed; the added ``c/z`` terms
    integrate to zero over x > 0 and remove large far fields near either end of the spectrum)."""
    d = model.d
    phi, dphi = model.ps(q, 0.0, deriv=True)
    phib = model.ps(q, 2 * beta)
    m = 1 - phi / d
    z = q * m
    zp = m - q * dphi / d
    return phi * zp / z, phi * zp, (phib / m + P0 / z) * zp


def _outliers(model, beta, J):
    """Count, first moment and target weight of the isolated outliers j = 1..J: ``-(1/2 pi i) oint S z' dq`` on
    the circle ``|q - lambda_j| = rho_j`` (trapezoid rule, geometric convergence). The circle must enclose the
    pole ``lambda_j`` and the zero of m in (lambda_{j+1}, lambda_j) (Phi_0 = d there; it lies within ~lambda_j/d
    of lambda_j), and nothing else; ``ok`` checks it (Phi_0 < d where the circle meets the real axis)."""
    a2, d = model.a2, model.d
    j = np.arange(1, J + 1, dtype=np.float64)
    lam = j ** -a2
    gap_above = np.where(j > 1, np.maximum(j - 1, 1) ** -a2 - lam, np.inf)
    rho = 0.5 * np.minimum(lam - (j + 1) ** -a2, gap_above)
    K = _K_CIRCLE
    e = np.exp(2j * np.pi * np.arange(K // 2 + 1) / K)
    q = lam[:, None] + rho[:, None] * e[None, :]
    phi, dphi = model.ps(q, 0.0, deriv=True)
    phib = model.ps(q, 2 * beta)
    m = 1 - phi / d
    zp = m - q * dphi / d
    wts = np.full(K // 2 + 1, 2.0)
    wts[0] = wts[-1] = 1.0

    def mass(F):   # -(1/2 pi i) oint F dq with F(conj q) = conj F(q): half the circle suffices
        return -np.sum(wts * (F * rho[:, None] * e[None, :]).real, axis=1) / K
    ok = (phi[:, -1].real < d) & (phi[:, 0].real < d)
    return mass(-d / q * zp), mass(phi * zp), mass(phib * zp / m), ok


def _sigma(model, t_, q):
    """Scale below which nothing happens near q: Im q, or for real q a quarter of the distance to the nearest
    singular point (poles lambda_k, 0, -1/tau; the zeros of m sit next to the poles)."""
    q = np.asarray(q, dtype=np.complex128)
    sig = np.maximum(q.imag, 1e-6 * np.abs(q))
    real = q.imag <= 0
    if np.any(real):
        x = q.real[real]
        jf = np.where(x > 0, np.abs(x) ** (-1 / model.a2), np.inf)
        k = np.floor(jf)
        pos = np.where(x > 0, np.minimum(np.abs(x - np.maximum(k, 1) ** -model.a2), np.abs(x - (k + 1) ** -model.a2)),
                       np.inf)
        neg = np.minimum(np.abs(x), np.abs(x + 1 / t_) if math.isfinite(t_) else np.inf)
        sig[real] = 0.25 * np.minimum(pos, neg)
    return sig


def _vertical(model, beta, P0, q0, sigma, h):
    """``int_0^h F(q0 + i s) i ds`` for the three integrands (all points at once): Gauss-Legendre panels in
    ``log(s + sigma)``, the same number per point (at least ``_VERT_PER_DECADE`` nodes per decade)."""
    lo, hi = np.log(sigma), np.log(sigma + h)
    npan = max(1, int(math.ceil(_VERT_PER_DECADE / _GL_N * float(np.max(hi - lo)) / math.log(10))))
    t = (np.arange(npan)[:, None] + 0.5 * (1 + _GL_X[None, :])).ravel() / npan          # in (0, 1)
    wt = np.tile(_GL_W, npan) / (2 * npan)
    y = np.exp(lo[:, None] + (hi - lo)[:, None] * t[None, :])
    wq = wt[None, :] * (hi - lo)[:, None] * y
    Fn, F1, Fb = _fields(model, beta, P0, q0[:, None] + 1j * (y - sigma[:, None]))
    return 1j * np.stack([(Fn * wq).sum(1), (F1 * wq).sum(1), (Fb * wq).sum(1)])


def _chain_masses(model, beta, P0, t_, q):
    """Masses (count, first moment, target weight) between consecutive real points ``x_i = z(q_i)``, where
    ``q_i = q(x_i + i0)`` are boundary values (closed upper half q-plane, ascending x):
    ``(1/pi) Im int S dz`` along ``q_i -> q_i + i|q_i| -> q_{i+1} + i|q_{i+1}| -> q_{i+1}``. Every singularity
    of the integrands is real, so this path is equivalent to the real segment ``[x_i, x_{i+1}] + i0``."""
    h = np.abs(q)
    A = _vertical(model, beta, P0, q, _sigma(model, t_, q), h)                       # (3, N+1)
    Q = q + 1j * h
    gx, gw = np.polynomial.legendre.leggauss(_HORIZ_NODES)
    mid, half = 0.5 * (Q[1:] + Q[:-1]), 0.5 * (Q[1:] - Q[:-1])
    Fn, F1, Fb = _fields(model, beta, P0, mid[:, None] + half[:, None] * gx[None, :])
    B = np.stack([(Fn * gw).sum(1), (F1 * gw).sum(1), (Fb * gw).sum(1)]) * half[None, :]
    return (A[:, :-1] - A[:, 1:] + B).imag / np.pi


class _Frame(NamedTuple):
    """Everything deterministic_spectrum and cumulative share for one (alpha, beta, d, v)."""
    model: _Model
    tau: float
    P_star: float
    n_isolated: int
    q_bot: complex      # boundary value at the bottom of the bulk (real q_- for v > d)
    x_bot: float
    q_top: float        # real q at the top edge of the bulk (a critical point of z)
    x_top: float


def _frame(alpha, beta, d, v) -> _Frame:
    model = _Model(alpha, d, v)
    a2 = model.a2
    t_ = _tau(model)
    J = _n_isolated(model)
    if J:      # the top edge of the bulk: local min of z(q) in (lambda_{J+1}, (J + 1/2)^{-2a})
        qj = np.array([(J + 1.0) ** -a2 * (1 + 1e-12)])
        q_top = float(_critical(model, qj, np.array([(J + 0.5) ** -a2]), want_min=True)[0][0])
    else:      # the top edge of the whole spectrum
        q_top = _upper_edge(model)[0]
    if math.isinf(t_):
        # v = d: hard edge at 0 (z ~ -q^2 S/d, S = sum_j j^{2a}, count below x ~ (2/pi) sqrt(d S x));
        # stop where 1e-6 d eigenvalues remain below (m ~ 1e-6 is still resolved in float64)
        x_bot = (0.5e-6 * math.pi) ** 2 * d / power_sum(-a2, v)
        q_bot = complex(model.q(np.array([x_bot + 0j]))[0])
    else:
        q_bot = complex(_lower_edge(model, t_)[0])
        x_bot = float(model.z(np.array([q_bot]))[0][0].real)
    x_top = float(model.z(np.array([q_top + 0j]))[0][0].real)
    return _Frame(model, t_, _p_star(model, beta, t_), J, q_bot, x_bot, q_top, x_top)


# ------------------------------------------------------------------------------------------------
# public: binned spectrum and cumulative distributions

def deterministic_spectrum(alpha: float, beta: float, d: int, *, v=None, n_bins: Optional[int] = None,
                           label_noise: float = 0.0) -> Spectrum:
    """Binned deterministic-equivalent :class:`plrf.Spectrum` of PLRF (counts ``n`` sum to d).

    Isolated outliers (near ``j^{-2 alpha}``, one eigenvalue each, separated by gaps of the support) get one bin
    each with ``n = 1`` and their mean eigenvalue and target weight (residues at ``q = lambda_j``); the continuous
    bulk below gets ``n_bins`` bins uniform in log-eigenvalue (default 32 per decade), ``lam`` = mean eigenvalue
    of the bin. ``P_star`` from the tau formula (:func:`p_star`). Cost ~ (number of bins), not ~ d.
    v = None means v = inf (needs 2 alpha > 1); 2 alpha <= 1 needs a finite v > d.
    ``label_noise = sigma^2`` (labels ``y = <x, b> + sigma eps``) adds ``sigma^2`` to ``P_star``: for Gaussian data
    the residual orthogonal to the features is independent Gaussian noise either way, so the dynamics are the
    noiseless ones with ``P* + sigma^2`` (:func:`plrf.spectrum.with_label_noise`).
    """
    from plrf.spectrum import check_label_noise, with_label_noise
    label_noise = check_label_noise(label_noise)
    alpha, beta, d, v = _validate(alpha, beta, d, v)
    if n_bins is not None and (isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer))
                               or n_bins < 1):
        raise ValueError(f"n_bins must be an integer >= 1 or None, got {n_bins!r}")
    fr = _frame(alpha, beta, d, v)
    model, J = fr.model, fr.n_isolated
    if J:
        n_o, mom_o, w_o, ok = _outliers(model, beta, J)
        if not np.all(ok):
            raise RuntimeError(f"deterministic_spectrum: outlier contour check failed at j = "
                               f"{int(np.flatnonzero(~ok)[0]) + 1} (alpha={alpha}, d={d}, v={v}); please report")
    if n_bins is None:
        n_bins = max(4, int(math.ceil(_BULK_PER_DECADE * math.log10(fr.x_top / fr.x_bot))))
    xe = np.geomspace(fr.x_bot, fr.x_top, n_bins + 1)
    qe = np.empty(n_bins + 1, dtype=np.complex128)
    qe[0], qe[-1] = fr.q_bot, fr.q_top
    qe[1:-1] = model.q(xe[1:-1] + 0j)
    n_b, mom_b, w_b = _chain_masses(model, beta, fr.P_star, fr.tau, qe)
    if math.isinf(fr.tau):     # v = d: the mass below x_bot (~1e-6 eigenvalues) goes to the lowest bin
        n_b[0] += max(0.0, d - J - np.sum(n_b))
        w_b[0] += max(0.0, power_sum(model.a2 + 2 * beta, v) - np.sum(w_b) - (np.sum(w_o) if J else 0.0))
    # assemble (ascending eigenvalues: bulk bins, then outliers j = J..1)
    n_b = n_b * ((d - J) / np.sum(n_b))          # conservation holds to ~1e-12: make sum(n) = d exactly
    n = np.concatenate([n_b, np.ones(J)])
    mom = np.concatenate([mom_b, mom_o[::-1]]) if J else mom_b
    w = np.concatenate([w_b, w_o[::-1]]) if J else w_b
    if np.any(n <= 0) or np.any(w < -1e-12 * (np.sum(np.abs(w)) + fr.P_star)):
        raise RuntimeError("deterministic_spectrum: quadrature failed (negative bin mass); please report "
                           f"alpha={alpha}, beta={beta}, d={d}, v={v}")
    return with_label_noise(make_spectrum(mom / n, np.maximum(w, 0.0), fr.P_star, n), label_noise)


class Cumulative(NamedTuple):
    """At each x: ``count`` = eigenvalues of K in (0, x], ``weight`` = target weights of those eigenvalues
    (``weight -> P(0) - P*`` above the spectrum), deterministic equivalents."""
    x: np.ndarray
    count: np.ndarray
    weight: np.ndarray


def cumulative(x, alpha: float, beta: float, d: int, *, v=None, per_decade: int = 64) -> Cumulative:
    """Deterministic-equivalent counting function and cumulative target weight at the points ``x`` (> 0).

    Path integrals between consecutive points of a chain made of ``x``, a log grid (``per_decade``), and the gap
    points between isolated outliers (exact integers there)."""
    alpha, beta, d, v = _validate(alpha, beta, d, v)
    x = np.asarray(x, dtype=np.float64)
    if np.any(~(x > 0)):
        raise ValueError("x must be > 0")
    fr = _frame(alpha, beta, d, v)
    model, J, a2 = fr.model, fr.n_isolated, 2 * alpha
    total_w = power_sum(a2 + 2 * beta, v) - fr.P_star
    q_hi = 2 * _upper_edge(model)[0] - 1                  # real q above the whole spectrum
    x_hi = float(model.z(np.array([q_hi + 0j]))[0][0].real)
    inside = (x > fr.x_bot) & (x < x_hi)
    xs = np.unique(x[inside])
    # chain: x_bot, a log grid, the gap points (real q) above the bulk and between outliers, xs, x_hi
    jg = np.arange(1, J + 1, dtype=np.float64)
    qg = np.concatenate([[q_hi], (jg + 0.5) ** -a2])
    xg = model.z(qg + 0j)[0].real
    grid = np.geomspace(fr.x_bot, x_hi, max(2, int(math.ceil(per_decade * math.log10(x_hi / fr.x_bot)))))
    xc = np.concatenate([[fr.x_bot], grid[1:-1], xg, xs])
    qc = np.concatenate([[fr.q_bot], np.full(grid.size - 2, np.nan), qg, np.full(xs.size, np.nan)])
    order = np.argsort(xc, kind="stable")
    xc, qc = xc[order], qc[order]
    keep = np.concatenate([[True], np.diff(xc) > 1e-13 * xc[1:]])
    xc, qc = xc[keep], qc[keep]
    unk = np.isnan(qc)
    qc[unk] = model.q(xc[unk] + 0j)
    n_c, _, w_c = _chain_masses(model, beta, fr.P_star, fr.tau, qc)
    N = np.concatenate([[0.0], np.cumsum(n_c)])
    W = np.concatenate([[0.0], np.cumsum(w_c)])
    count = np.where(x >= x_hi, float(d), 0.0)
    weight = np.where(x >= x_hi, total_w, 0.0)
    idx = np.searchsorted(xc, x[inside])
    idx = np.minimum(idx, xc.size - 1)
    hit = np.isclose(xc[idx], x[inside], rtol=1e-13, atol=0)
    if not np.all(hit):
        raise RuntimeError("cumulative: chain lookup failed")
    count[inside], weight[inside] = N[idx], W[idx]
    if math.isinf(fr.tau):
        count[inside] += d - N[-1]  # v = d: mass below x_bot (tiny) assigned there
    return Cumulative(x, count, weight)
