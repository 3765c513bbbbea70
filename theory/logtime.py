"""Log-time solver for the exact expected loss of one-pass training on PLRF: any learning-rate schedule for SGD,
and every linear optimizer of :mod:`plrf.optimizers` (momentum, Nesterov, DANA, weight decay, averaging, ...).

Any optimizer (not plain SGD): per mode, ``z = (M packed, m theta*, theta*^2)`` (raw second moments, first
moments only with a forcing such as weight decay) follows ``z' = (I + E) z + b P_eval`` exactly
(:mod:`plrf.moments`); over an interval the system is frozen at its midpoint step and
``G^h - I`` and ``S_p = sum_{m<h} m^p G^m b`` (p <= 2) come from binary powering in deviation form (no
eigen-decomposition: complex and defective eigenvalues of momentum are no special case; slow modes keep their
digits), O(nz^3 log h) per mode. One powering loop per step-doubling attempt (halves of ``h1`` and
``h1`` or ``h1 + 1`` steps): constant hyper-parameters power the one system and compose the rest; time-varying
ones (DANA, schedules) power their three frozen systems side by side (the trip count is the number of binary
digits of ``h1``, traced: no recompilation). ``P_eval`` over the interval is the same quadratic model as for
SGD below and ``P_eval(r1)`` is solved for implicitly. Coefficients may change by at most ``LR_CHANGE``
(relative, entries of ``A - I``, ``u``, ``f``) across an interval; the step-doubling control (error summed over
the read-outs) catches the freezing error; exact chunks run :func:`plrf.moments.step`. Measured (d = 96-128,
2e4-1e5 steps, every step to 200 then a log grid): max relative error 2e-6 (momentum, Nesterov, SGD + wd/EMA)
and 2e-5 (DANA-decaying, DANA-constant) against ``plrf.expected_loss``.
Limitation (measured on DANA-decaying, d = 1e3, per mode against the exact recursion over one interval): the
midpoint freeze is second order for slow modes but first order for the fast and intermediate ones (their
error halves, not quarters, with the interval) and neither a per-mode freezing time, a Gauss two-point /
fourth-order Magnus freeze nor a signed error measure changed that by more than 1.4x; so time-varying optimizers
need ~40-130 intervals per decade of steps (constant ones ~15).

Plain SGD (m = 1, the specialised formulas, unchanged):

The per-mode recursion (theory.volterra)
    e_k(r+1) = g_k(eta_r) e_k(r) + c_k eta_r^2 P(r),   c_k = n_k lam_k^2 / B,   P(r) = P* + sum_k e_k(r)
is advanced over whole intervals ``[r0, r1 = r0 + h]`` at O(d) cost each, so the cost does not grow with the
number of steps (only with the number of intervals, ~ log(steps) / growth rate):
    e_k(r1) = A_k e_k(r0) + c_k sum_{m=0}^{h-1} G_k(m) Q(r1 - 1 - m),     Q(s) = eta_s^2 P(s),
with ``A_k = prod_s g_k(eta_s)`` and ``G_k(m)`` the decay over the last ``m`` steps. Within an interval:
  * ``x_k(eta) = -log g_k(eta)`` is known at three steps (r0, middle, r1 - 1); ``log A_k`` is the exact sum
    over the interval of the quadratic through them (exact for a constant lr);
  * ``G_k(m) ~ exp(-m x*_k)`` with ``x*_k = x_k(r1-1) + sigma_k (M2 - M1) / (2 M1)``, ``sigma_k`` the slope of
    ``x_k`` per step: exact for a constant lr, first-order correct in the lr slope for every mode (fast modes
    see the lr at the end of the interval, slow modes its average);
  * ``Q`` is the quadratic through ``Q(r1)`` (unknown), ``Q(r0)`` and the previous node (linear after a
    breakpoint), so ``sum_m G(m) Q(m)`` is a combination of the geometric moments
    ``M_p = sum_{m<h} m^p exp(-m x)``, p = 0..2, computed stably from phi(z) = (1 - e^-z)/z and its
    derivatives (series below z = 0.5);
  * ``e_k(r1)`` is then linear in ``P(r1)``, and ``P(r1) = P* + sum_k e_k(r1)`` is solved exactly
    (implicit, stable: the denominator is ``1 - (part of ||Kr||) > 0``).
Step-doubling error control: one ``h`` interval against two ``h/2`` intervals, accepted when
``sum_k |difference of e_k| / P < rtol`` (``rtol`` scaled by ``10 (1 - ||Kr||)`` when ``||Kr|| > 0.9`` at the
peak lr: errors feed back through ``1/(1 - ||Kr||)``); the two-half result is kept. ``h`` grows at most 2x per interval
and to at most ``r`` (log-spaced intervals); intervals land exactly on grid points and on the schedule's
``breakpoints`` (jumps, kinks) and on jumps found by scanning the schedule, after which ``h`` restarts small.
The lr may change by at most ``LR_CHANGE`` (relative) across an interval: the slope correction above is
first order, and near ``lr -> 0`` (end of a decay) the step-doubling estimate alone is not reliable (both
halves then share an O(1) error of the fast modes), so intervals shrink geometrically towards such points.
Intervals of ``h <= H_EXACT`` steps (the start, after every breakpoint) use the exact per-step recursion.

Accuracy (tests/test_logtime.py, benchmarks/theory.py): at the default ``rtol = 1e-4`` the relative error
against the exact recursion was <= 8e-5 at every step checked (6 phases, 13 schedules, batch 1-256, lr up to
0.99x the edge, 1e5-1e7 steps); it scales about linearly with ``rtol``. Cost: 100-350 intervals for 1e6-1e10
steps (about 1-2 ms each at d = 1e4 on 2 CPU cores), so 1e10 steps at d = 1e4 take 1-2 s.
Every interval costs ~ (spectrum entries): a large sampled spectrum can first be merged into log-eigenvalue bins
by :func:`plrf.spectrum.coarsen` (error ~ r^2/16 for relative bin width r; DANA-decaying at d = 1e4, 1e10 steps:
46 s -> 1.5 s at 100 bins per decade, 3.4e-5 from the full solve; benchmarks/theory.py --optimizers).
Caveats: the schedule is evaluated at non-integer steps (interval midpoints); a schedule that oscillates
on a short time scale forces short intervals (cost ~ steps / period); a plain closure's jumps are found by
a scan of 2 x 4096 points plus bisection (two jumps in one scan bracket: only the larger one is located,
the step-doubling control then has to catch the other).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from plrf import moments as pm, optimizers
from plrf.runners import time_invariant
from plrf.simulate import check_optimizer
from plrf.spectrum import Spectrum
from plrf.stability import check_lr, kernel_norm, system_edges

from .volterra import check_batch, check_grid, check_spectrum, check_steps, lead_lr, lr_function, peak_lr

jax.config.update("jax_enable_x64", True)

H_EXACT = 16       # intervals up to this many steps run the exact recursion
ZC = 0.5           # series branch of phi below this argument
_NSER = 18         # series terms (ZC^18 / 19! ~ 1e-23)
LR_CHANGE = 0.25   # largest relative lr change across one interval (refines towards lr -> 0)
RTOL = 1e-4        # default local tolerance (global error measured <= 1e-4, see tests)


class LogCurve(NamedTuple):
    """Loss on a step grid from :func:`solve_logtime`, with solver statistics."""
    steps: np.ndarray   # (n,) int64
    loss: np.ndarray    # (n,) float64
    lr: np.ndarray      # (n,) learning rate at the grid steps
    intervals: int      # accepted intervals (exact chunks included)
    evaluations: int    # interval evaluations (3 per step-doubling attempt)
    readouts: Optional[dict] = None  # further read-outs (e.g. 'average', schedule-free's 'z'): name -> losses

    @property
    def final(self) -> float:
        return float(self.loss[-1])


# ---------------------------------------------------------------------------------------------------------
# stable geometric moments

def _series_coeffs():
    f = math.factorial
    c0 = [(-1) ** n / f(n + 1) for n in range(_NSER)]
    c1 = [(-1) ** (n + 1) * (n + 1) / f(n + 2) for n in range(_NSER)]
    c2 = [(-1) ** n * (n + 1) * (n + 2) / f(n + 3) for n in range(_NSER)]
    return c0, c1, c2


_C0, _C1, _C2 = _series_coeffs()


def _horner(coeffs, z):
    acc = jnp.zeros_like(z) + coeffs[-1]
    for a in coeffs[-2::-1]:
        acc = acc * z + a
    return acc


def phis(z):
    """``phi(z) = (1 - e^-z)/z`` and its first two derivatives, stable for ``z >= 0`` (``phi(0) = 1``)."""
    z = jnp.asarray(z, dtype=jnp.float64)
    small = z < ZC
    zs = jnp.where(small, z, 0.0)
    zl = jnp.where(small, 1.0, z)
    em = jnp.expm1(-zl)
    E = 1.0 + em
    d0 = -em / zl
    d1 = (em + zl * E) / (zl * zl)
    d2 = (-2.0 * em - zl * E * (zl + 2.0)) / (zl * zl * zl)
    return (jnp.where(small, _horner(_C0, zs), d0), jnp.where(small, _horner(_C1, zs), d1),
            jnp.where(small, _horner(_C2, zs), d2))


def moments(x, h):
    """``M_p = sum_{m=0}^{h-1} m^p exp(-m x)`` for p = 0, 1, 2 (``x >= 0``, ``h >= 1``), without cancellation.

    ``M_0 = h phi(h x) / phi(x)`` and ``M_p = (-d/dx)^p M_0`` (quotient rule on phi and its derivatives).
    """
    N0, N1, N2 = phis(h * x)
    D0, D1, D2 = phis(x)
    N, Np, Npp = h * N0, h * h * N1, h * h * h * N2
    iD = 1.0 / D0
    M0 = N * iD
    M1 = (N * D1 * iD - Np) * iD
    M2 = (Npp - (2.0 * Np * D1 + N * D2) * iD + 2.0 * N * D1 * D1 * iD * iD) * iD
    return M0, M1, M2


# ---------------------------------------------------------------------------------------------------------
# kernels (jitted, independent of the schedule: lr values come in as numbers)

def _xrate(eta, lam, a2):
    """``x_k(eta) = -log g_k(eta)`` (``g = 1 - 2 eta lam + eta^2 a2``, ``a2 = lam^2 (B+1)/B``)."""
    return -jnp.log1p(eta * (eta * a2 - 2.0 * lam))


def _interval(e, P0, Q0, Qp, hp, hist, h, eta_a, eta_m, eta_b, eta1, lam, a2, c, P_star):
    """Advance ``e`` from ``r0`` to ``r1 = r0 + h`` (h >= 2): returns ``e(r1), P(r1)`` (see module doc)."""
    xa, xm, xb = _xrate(eta_a, lam, a2), _xrate(eta_m, lam, a2), _xrate(eta_b, lam, a2)
    log_A = h * xm + (xa + xb - 2.0 * xm) * (h * (h + 1.0) / (6.0 * (h - 1.0)))
    A = jnp.exp(-log_A)
    sigma = (xa - xb) / (h - 1.0)
    M0, M1, M2 = moments(xb, h)
    xs = jnp.maximum(xb + sigma * (M2 - M1) / (2.0 * M1), 0.0)
    M0, M1, M2 = jax.lax.cond(jnp.any(sigma != 0.0), lambda: moments(xs, h), lambda: (M0, M1, M2))
    # moments in t = m + 1 (t = 0 is r1, t = h is r0, t = h + hp is the previous node)
    T0, T1, T2 = M0, M0 + M1, M0 + 2.0 * M1 + M2
    H = h + hp
    w1q = (T2 - (2.0 * h + hp) * T1 + h * H * T0) / (h * H)
    w0q = (H * T1 - T2) / (h * hp)
    wpq = (T2 - h * T1) / (H * hp)
    w1l, w0l = (h * T0 - T1) / h, T1 / h
    w1 = jnp.where(hist, w1q, w1l)
    known = A * e + c * jnp.where(hist, w0q * Q0 + wpq * Qp, w0l * Q0)
    b = c * w1
    q1 = eta1 * eta1
    P1 = (P_star + jnp.sum(known)) / (1.0 - q1 * jnp.sum(b))
    return known + b * (q1 * P1), P1


@jax.jit
def _attempt(e, P0, Q0, Qp, hp, hist, h, h1, nodes, lam, a2, c, P_star):
    """Two halves (``h1``, ``h - h1``) and one ``h`` interval. ``nodes``: lr values (see :func:`_nodes`).

    Returns (e_half, P1_half, P_mid, err) with ``err = sum_k |e_full - e_half| / P1_half``. The three
    intervals run in one ``scan`` (a single compiled interval body).
    """
    h2 = h - h1
    # per interval: length, lr nodes (a, m, b, extrapolated end), previous-node spacing and presence
    hs = jnp.stack([h1, h2, h])
    lrs = jnp.stack([nodes[4:8], nodes[9:13], nodes[0:4]])
    hps = jnp.stack([hp, h1, hp])
    hists = jnp.stack([hist, True, hist])

    def body(carry, i):
        em, Pm = carry
        mid = i == 1  # the second half starts from the midpoint, with r0 as its previous node
        e_in, P_in = jnp.where(mid, em, e), jnp.where(mid, Pm, P0)
        Q_in, Qp_in = jnp.where(mid, nodes[8] ** 2 * Pm, Q0), jnp.where(mid, Q0, Qp)
        e1, P1 = _interval(e_in, P_in, Q_in, Qp_in, hps[i], hists[i], hs[i], lrs[i, 0], lrs[i, 1], lrs[i, 2],
                           lrs[i, 3], lam, a2, c, P_star)
        keep = i == 0
        return (jnp.where(keep, e1, em), jnp.where(keep, P1, Pm)), (e1, P1)

    (_, Pm), (es, Ps) = jax.lax.scan(body, (e, P0), jnp.arange(3))
    eh, Ph, ef, Pf = es[1], Ps[1], es[2], Ps[2]
    err = jnp.sum(jnp.abs(ef - eh)) / Ph
    err = jnp.where(jnp.isfinite(err) & (Ph > 0) & (Pm > 0) & (Pf > 0), err, jnp.inf)
    return eh, Ph, Pm, err


@jax.jit
def _exact(e, P, lrs, lam, a2, c, P_star):
    """``len(lrs)`` exact steps (lr = 0 pads are no-ops); returns ``e`` and ``P`` after each step."""
    def step(carry, eta):
        e, P = carry
        g = 1.0 - eta * (2.0 * lam) + eta * eta * a2
        e = g * e + (eta * eta * P) * c
        P = P_star + jnp.sum(e)
        return (e, P), P
    (e, _), Ps = jax.lax.scan(step, (e, P), lrs, unroll=4)
    return e, Ps


def _extrap(fa, fm, fb, H):
    """The quadratic through (0, fa), (H/2, fm), (H, fb) at H + 1."""
    return ((H + 2.0) * fa - 4.0 * (H + 1.0) * fm + (H + 1.0) * (H + 2.0) * fb) / (H * H)


def _node_steps(r0, h, h1):
    """Steps where the lr is needed by :func:`_attempt` (13 values)."""
    rm, r1 = r0 + h1, r0 + h
    h2 = h - h1
    return np.array([r0, r0 + (h - 1) / 2, r1 - 1, 0,
                     r0, r0 + (h1 - 1) / 2, rm - 1, 0,
                     rm,
                     rm, rm + (h2 - 1) / 2, r1 - 1, 0], dtype=np.float64)


def _nodes(lr, r0, h, h1):
    s = _node_steps(r0, h, h1)
    v = lr(s)
    h2 = h - h1
    v[3] = _extrap(v[0], v[1], v[2], h - 1.0)
    v[7] = _extrap(v[4], v[5], v[6], h1 - 1.0)
    v[12] = _extrap(v[9], v[10], v[11], h2 - 1.0)
    return np.maximum(v, 0.0)


# ---------------------------------------------------------------------------------------------------------
# breakpoints

def find_jumps(lr, steps: int, *, n_scan: int = 4096, rel: float = 1e-6) -> np.ndarray:
    """Integer steps ``b`` in ``(0, steps)`` where ``lr(b) != lr(b - 1)`` by a jump (not a smooth change).

    Scans a linear and a log grid, then bisects (vectorized) every bracket whose change exceeds
    ``rel * peak``; a bracket that keeps its change down to one step is a jump.
    """
    pts = np.unique(np.concatenate([np.linspace(0, steps, n_scan + 1).round(),
                                    np.geomspace(1, max(steps, 1), n_scan).round(), [0, steps]]))
    v = lr(pts)
    scale = max(float(np.max(np.abs(v))), 1e-300)
    dv = np.abs(np.diff(v))
    idx = np.nonzero(dv > rel * scale)[0]
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = pts[idx].copy(), pts[idx + 1].copy()
    vlo, vhi = v[idx].copy(), v[idx + 1].copy()
    # bisect each bracket towards the step of largest change: keep the half with the larger change
    while np.any(hi - lo > 1):
        mid = np.floor((lo + hi) / 2)
        mid = np.where(hi - lo > 1, mid, lo)
        vm = lr(mid)
        left = np.abs(vm - vlo) >= np.abs(vhi - vm)
        hi, vhi = np.where(left, mid, hi), np.where(left, vm, vhi)
        lo, vlo = np.where(left, lo, mid), np.where(left, vlo, vm)
    jump = np.abs(vhi - vlo)
    # a jump: a one-step change much larger than the smooth changes nearby (compare with 2 steps away)
    nb = np.abs(lr(np.minimum(hi + 1, steps)) - vhi) + np.abs(vlo - lr(np.maximum(lo - 1, 0)))
    keep = (jump > rel * scale) & (jump > 10.0 * nb)
    return np.unique(hi[keep].astype(np.int64))


def breakpoints(schedule, lr, steps: int) -> np.ndarray:
    """Integer steps in ``(0, steps)`` where the lr is not smooth: ``.breakpoints`` (if any) and scanned jumps."""
    b = np.asarray(getattr(schedule, "breakpoints", ()), dtype=np.float64).ravel()
    b = np.concatenate([np.floor(b), np.ceil(b), find_jumps(lr, steps)])
    b = np.unique(b[(b > 0) & (b < steps)]).astype(np.int64)
    return b


# ---------------------------------------------------------------------------------------------------------
# any linear optimizer: the per-mode moment map as one affine system  z' = (I + E) z + b P_eval

NBITS = 48         # interval lengths below 2^48 steps (binary powering)


_mm = pm.permode_mm
_mv = pm.permode_mv


def _bits(h) -> int:
    """Binary digits of the longest interval ``h`` (a Python number): the powering loop's trip count."""
    return max(1, int(h).bit_length())


def _powers(E, b, h, bits=NBITS):
    """``G^h - I`` and ``S_p = sum_{m<h} m^p G^m b`` (p = 0, 1, 2) for ``G = I + E``, by binary powering
    (most significant bit first: ``L -> 2L`` then ``L -> L + 1`` on a set bit, skipped on a zero bit), all in
    deviation form: ``S_p(2L) = S_p + G^L sum_j binom(p, j) L^(p-j) S_j``, ``G^(2L) - I = 2 E_L + E_L^2``.
    O(nz^3 log h) per mode; no eigen-decomposition (complex or defective eigenvalues of momentum are no special
    case). Only the low ``bits`` binary digits of ``h`` are read (``h < 2^bits``; a traced trip count: the
    leading zero digits would double exact zeros, so skipping them changes no number)."""
    hi = jnp.asarray(h).astype(jnp.int64)
    zero_v = jnp.zeros_like(b)

    def plus_one(c):
        EL, S0, S1, S2, L = c
        Gb = b + _mv(EL, b)
        return EL + E + _mm(EL, E), S0 + Gb, S1 + L * Gb, S2 + L * L * Gb, L + 1.0

    def body(k, c):
        EL, S0, S1, S2, L = c
        G = lambda v: v + _mv(EL, v)  # noqa: E731
        dbl = (2.0 * EL + _mm(EL, EL), S0 + G(S0), S1 + G(S1 + L * S0), S2 + G(S2 + 2.0 * L * S1 + L * L * S0),
               2.0 * L)
        return jax.lax.cond(((hi >> (NBITS - 1 - k)) & 1) == 1, plus_one, lambda c: c, dbl)

    init = (jnp.zeros_like(E), zero_v, zero_v, zero_v, jnp.zeros((), jnp.float64))
    # a Python int ``bits`` keeps the trip count static (a scan: reverse-differentiable, theory.logtime_grad_optim)
    lo = NBITS - bits if isinstance(bits, int) else NBITS - jnp.asarray(bits, jnp.int32)
    EL, S0, S1, S2, _ = jax.lax.fori_loop(lo, NBITS, body, init)
    return EL, S0, S1, S2


def _combine(pa, pc, a):
    """The powers of length ``a + c`` from those of lengths ``a`` (``pa``) and ``c`` (``pc``):
    ``G^(a+c) - I = E_a + E_c + E_a E_c``, ``S_p(a + c) = S_p(a) + G^a sum_j binom(p, j) a^(p-j) S_j(c)``."""
    Ea, S0a, S1a, S2a = pa
    Ec, S0c, S1c, S2c = pc
    G = lambda v: v + _mv(Ea, v)  # noqa: E731
    return (Ea + Ec + _mm(Ea, Ec), S0a + G(S0c), S1a + G(S1c + a * S0c), S2a + G(S2c + 2.0 * a * S1c + a * a * S0c))


def _sys_solve(z, Q0, Qp, hp, hist, h, powers, rows, P_star):
    """Advance ``z`` over ``h`` steps given the interval's powers (:func:`_powers`); ``P_eval`` over the interval
    is the quadratic through ``P(r1)`` (unknown: solved for), ``P(r0) = Q0`` and the previous node ``Qp`` (``hp``
    steps before r0; linear without one) exactly as for SGD. Returns ``z(r1), P_eval(r1)`` and the losses."""
    EL, S0, S1, S2 = powers
    T0, T1, T2 = S0, S0 + S1, S0 + 2.0 * S1 + S2
    H = h + hp
    w1q = (T2 - (2.0 * h + hp) * T1 + h * H * T0) / (h * H)
    w0q = (H * T1 - T2) / (h * hp)
    wpq = (T2 - h * T1) / (H * hp)
    w1l, w0l = (h * T0 - T1) / h, T1 / h
    known = z + _mv(EL, z) + jnp.where(hist, w0q * Q0 + wpq * Qp, w0l * Q0)
    bb = jnp.where(hist, w1q, w1l)
    P1 = (P_star + jnp.sum(rows[0] * known)) / (1.0 - jnp.sum(rows[0] * bb))
    z1 = known + bb * P1
    return z1, P1, P_star + jnp.sum(rows[1:] * z1[None], axis=(1, 2))


def _sys_powers(r0, h, h1, bits, opt, lam, n, B, forced, constant, whole=True):
    """The powers of the two halves (``h1``, ``h2 = h - h1``, ``h2 - h1`` in {0, 1}) and, with ``whole``, of the
    whole interval, each system frozen at its midpoint, and the read-out rows: ``(p1, p2, pw, rows)``.

    One powering loop of length ``h1`` serves all three: with constant hyper-parameters on the one system
    (``h2`` and ``h`` then follow by :func:`_combine`); otherwise on the three frozen systems side by side along
    the mode axis, the second then advanced by one step when ``h2 = h1 + 1`` and the third doubled (and
    advanced by one step when ``h`` is odd). ``bits``: binary digits of ``h1``."""
    h2 = h - h1
    d = lam.shape[0]
    step = lambda p, E, b, L: _combine(p, (E, b, jnp.zeros_like(b), jnp.zeros_like(b)), L)  # noqa: E731
    pick = lambda c, a, o: jax.tree.map(lambda x, y: jnp.where(c, x, y), a, o)  # noqa: E731
    pw = None
    if constant:
        E, b, rows = pm.system_map(opt.system(r0), lam, n, B, forced)
        p1 = _powers(E, b, h1, bits)
        p2 = pick(h2 > h1, step(p1, E, b, h1), p1)
        pw = _combine(p1, p2, h1) if whole else None
    else:
        times = (r0 + (h1 - 1.0) / 2.0, r0 + h1 + (h2 - 1.0) / 2.0) + ((r0 + (h - 1.0) / 2.0,) if whole else ())
        maps = [pm.system_map(opt.system(t), lam, n, B, forced) for t in times]
        rows = maps[0][2]
        allp = _powers(jnp.concatenate([m[0] for m in maps], axis=-1),
                       jnp.concatenate([m[1] for m in maps], axis=-1), h1, bits)
        ps = [tuple(x[..., i * d:(i + 1) * d] for x in allp) for i in range(len(maps))]
        p1 = ps[0]
        p2 = pick(h2 > h1, step(ps[1], maps[1][0], maps[1][1], h1), ps[1])
        if whole:
            p3 = _combine(ps[2], ps[2], h1)
            pw = pick(h > 2.0 * h1, step(p3, maps[2][0], maps[2][1], 2.0 * h1), p3)
    return p1, p2, pw, rows


def _sys_halves(z, P0, Qp, hp, hist, h, h1, p1, p2, rows, P_star):
    """The two halves from their powers: ``z``, ``P_eval`` and the losses at the end, and ``P_eval`` at the
    midpoint: ``(z_half, P_half, P_mid, losses)``."""
    zm, Pm, _ = _sys_solve(z, P0, Qp, hp, hist, h1, p1, rows, P_star)
    zh, Ph, Lh = _sys_solve(zm, Pm, P0, h1, True, h - h1, p2, rows, P_star)
    return zh, Ph, Pm, Lh


def _sys_intervals(z, P0, Qp, hp, hist, r0, h, h1, bits, opt, lam, n, B, P_star, forced, constant):
    """Two halves (``h1``, ``h2 = h - h1``) and one whole interval (:func:`_sys_powers`); returns the two-half
    result, ``P`` at the midpoint, the losses and the step-doubling error
    ``sum_k sum_rows |row . (z_whole - z_half)| / P``. (:mod:`theory.logtime_grad_optim` replays the accepted
    two-half steps with :func:`_sys_powers` and :func:`_sys_halves`.)"""
    p1, p2, pw, rows = _sys_powers(r0, h, h1, bits, opt, lam, n, B, forced, constant)
    zh, Ph, Pm, Lh = _sys_halves(z, P0, Qp, hp, hist, h, h1, p1, p2, rows, P_star)
    zf, Pf, _ = _sys_solve(z, P0, Qp, hp, hist, h, pw, rows, P_star)
    err = jnp.sum(jnp.abs(jnp.sum(rows * (zf - zh)[None], axis=1))) / Ph
    ok = jnp.isfinite(err) & (Ph > 0) & (Pm > 0) & (Pf > 0) & jnp.all(jnp.isfinite(Lh))
    return zh, Ph, Pm, Lh, jnp.where(ok, err, jnp.inf)


_sys_attempt = jax.jit(_sys_intervals, static_argnames=("forced", "constant"))


@functools.partial(jax.jit, static_argnames=("forced", "count"))
def _sys_exact(z, r0, nvalid, opt, lam, n, ts, B, P_star, forced, count):
    """``nvalid <= count`` steps of the exact recursion :func:`plrf.moments.step` from step ``r0``; returns ``z``
    and, after each step, ``P_eval`` and the losses of every read-out."""
    m = opt.size
    _, q, _ = pm.layout(m, forced)
    state = pm.to_moments(z, ts, q, m, forced)

    def step(st, i):
        r = (r0 + i).astype(jnp.float64)
        new = pm.step(st, opt.system(r), lam, n, ts, P_star, B, forced)
        st = jax.tree.map(lambda a, b: jnp.where(i < nvalid, a, b), new, st)
        nxt = opt.system(r + 1.0)
        P = P_star + jnp.sum(lam * pm.quad(st[1], nxt.c_eval, m))
        return st, (P, pm.losses(st[1], nxt, lam, P_star))

    state, (Ps, Ls) = jax.lax.scan(step, state, jnp.arange(count))
    return pm.from_moments(state, z[q + m] if forced else None, ts, forced), Ps, Ls


@jax.jit
def _coef_change(opt, ta, tb):
    """Largest relative change between steps ``ta`` and ``tb`` of an entry of ``A - I``, ``u`` or ``f``."""
    def flat(s):
        return jnp.concatenate([(s.A - jnp.eye(s.A.shape[0])).ravel(), s.u, s.f])
    a, b = flat(opt.system(ta)), flat(opt.system(tb))
    scale = jnp.maximum(jnp.abs(a), jnp.abs(b))
    return jnp.max(jnp.where(scale > 0, jnp.abs(b - a) / jnp.where(scale > 0, scale, 1.0), 0.0))


# ---------------------------------------------------------------------------------------------------------
# the two kernels of the one driver

class _SGDKernel:
    """Plain SGD (no weight decay, no average): the specialised m = 1 formulas above (any lr schedule)."""
    readouts = ("iterate",)

    def __init__(self, spectrum, lr, batch, size):
        pad = lambda a: jnp.asarray(np.concatenate([a, np.zeros(size - a.size)]))  # noqa: E731
        self.lr = lr
        self.lam = pad(spectrum.lam)
        B = float(batch)
        self.a2 = self.lam * self.lam * (B + 1.0) / B
        self.c = pad(spectrum.n) * self.lam * self.lam / B
        self.P_star = jnp.asarray(spectrum.P_star, dtype=jnp.float64)
        self.state = pad(spectrum.w)
        self.P = float(spectrum.P_star + np.sum(spectrum.w))
        self.L0 = np.array([self.P])

    def q(self, r, P):
        return float(self.lr(np.array([float(r)]))[0]) ** 2 * P

    def exact(self, e, P, r, n):
        lrs = np.zeros(H_EXACT)
        lrs[:n] = self.lr(np.arange(r, r + n, dtype=np.float64))
        e, Ps = _exact(e, jnp.asarray(P), jnp.asarray(lrs), self.lam, self.a2, self.c, self.P_star)
        Ps = np.asarray(Ps)
        return e, Ps, Ps[:, None]

    def attempt(self, e, P, Q, Qp, hp, hist, r, hh, h1):
        nodes = _nodes(self.lr, r, hh, h1)
        lo, hi = min(nodes[0], nodes[1], nodes[2]), max(nodes[0], nodes[1], nodes[2])
        if hi - lo > LR_CHANGE * hi:  # the lr changes too much for the first-order slope correction
            return max(0.2, 0.8 * LR_CHANGE * hi / (hi - lo))
        eh, Ph, Pm, err = _attempt(e, P, Q, Qp, hp, hist, float(hh), float(h1), jnp.asarray(nodes), self.lam,
                                   self.a2, self.c, self.P_star)
        Ph = float(Ph)
        return eh, Ph, nodes[8] ** 2 * float(Pm), float(err), np.array([Ph])


class _SystemKernel:
    """Any optimizer of :mod:`plrf.optimizers`: the frozen per-mode moment map (module docstring)."""

    def __init__(self, spectrum, opt, batch, size):
        d = spectrum.lam.size
        # padded modes copy a real eigenvalue (no degenerate maps) and carry n = w = 0 (no contribution)
        padv = lambda a, fill: jnp.asarray(np.concatenate([a, np.full(size - d, fill)]))  # noqa: E731
        self.opt = opt
        self.readouts = opt.readouts
        self.forced = pm.is_forced(opt)
        self.lam = padv(spectrum.lam, float(spectrum.lam[-1]) if d else 1.0)
        self.n = padv(spectrum.n, 0.0)
        w = padv(spectrum.w, 0.0)
        self.B = jnp.asarray(float(batch))
        self.P_star = jnp.asarray(spectrum.P_star, dtype=jnp.float64)
        self.ts = pm.theta_star(self.lam, w)
        sys0 = opt.system(0.0)
        mm, M = pm.init(sys0, self.lam, w, self.forced)
        m = opt.size
        self.state = pm.from_moments((mm, M), self.ts * self.ts, self.ts, self.forced)
        self.P = float(self.P_star + jnp.sum(self.lam * pm.quad(M, sys0.c_eval, m)))
        self.L0 = np.asarray(pm.losses(M, sys0, self.lam, self.P_star))
        self.constant = time_invariant(opt)

    def q(self, r, P):
        return P

    def exact(self, z, P, r, n):
        z, Ps, Ls = _sys_exact(z, jnp.asarray(r, jnp.int64), jnp.asarray(n), self.opt, self.lam, self.n, self.ts,
                               self.B, self.P_star, self.forced, H_EXACT)
        return z, np.asarray(Ps), np.asarray(Ls)

    def attempt(self, z, P, Q, Qp, hp, hist, r, hh, h1):
        if not self.constant:
            ch = float(_coef_change(self.opt, float(r), float(r + hh - 1)))
            if ch > LR_CHANGE:
                return max(0.2, 0.8 * LR_CHANGE / ch)
        zh, Ph, Pm, Lh, err = _sys_attempt(z, P, Qp, hp, hist, float(r), float(hh), float(h1), _bits(h1),
                                           self.opt, self.lam, self.n, self.B, self.P_star, self.forced,
                                           self.constant)
        return zh, float(Ph), float(Pm), float(err), np.asarray(Lh)


# ---------------------------------------------------------------------------------------------------------
# driver

def _bucket(n: int) -> int:
    """Smallest size >= n among 64, 96, 128, 192, ... (2^k and 1.5 * 2^k): at most 1/3 padding."""
    size = 64
    while size < n:
        size = size * 3 // 2 if (size & (size - 1)) == 0 else size * 4 // 3
    return size


def _hyper_jumps(opt, steps: int) -> np.ndarray:
    """Breakpoints of every time-varying hyper-parameter: declared ones and jumps found by scanning."""
    out = [np.asarray(optimizers.breakpoints(opt), dtype=np.float64)]
    for hp in opt.h.values():
        if hp.shape is not None or np.ndim(hp.value) == 1:
            out.append(find_jumps(lr_function(hp), steps).astype(np.float64))
    b = np.concatenate(out) if out else np.zeros(0)
    b = np.concatenate([np.floor(b), np.ceil(b)])
    return np.unique(b[(b > 0) & (b < steps)]).astype(np.int64)


def solve_logtime(spectrum: Spectrum, optimizer, *, steps: int, batch: int = 1, grid=None, num: int = 100,
                  rtol: float = RTOL, max_intervals: int = 1_000_000, trace: Optional[list] = None) -> LogCurve:
    """The exact expected loss of one-pass training at the grid steps, at a cost independent of ``steps``.

    ``optimizer``: a :class:`plrf.optimizers.Optimizer`, or a schedule closure step -> lr meaning SGD with it
    (``.breakpoints`` used when present, and every time-varying coefficient is scanned for jumps; any
    jnp-traceable closure works). Plain SGD runs the specialised m = 1 interval formulas; every other optimizer
    (weight decay, averaging, momentum, Nesterov, DANA, schedule-free) the frozen per-mode moment map
    (module docstring). ``grid``: int steps from 0 to ``steps`` (default ``plrf.log_grid(steps, num,
    after=optimizer)``: log-spaced plus the steps right after every breakpoint).
    ``rtol``: local tolerance per interval (step doubling). Losses of further read-outs (the average,
    schedule-free's z) are in ``LogCurve.readouts``. Raises ValueError for an unstable optimizer (the checks of
    ``plrf.expected_loss``). ``trace``: a list that receives the accepted steps of the solve
    (:mod:`theory.logtime_grad` (plain SGD) and :mod:`theory.logtime_grad_optim` (any optimizer) replay them to
    differentiate the loss with respect to the schedule).
    """
    spectrum, batch, steps = check_spectrum(spectrum), check_batch(batch), check_steps(steps)
    grid = check_grid(grid, steps, num, after=optimizer)
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise ValueError(f"rtol must be in (0, 1), got {rtol}")
    opt = optimizers.as_optimizer(optimizer)
    size = _bucket(spectrum.lam.size)  # padded: one compilation serves a ladder of d
    sched = optimizers.schedule_of(opt)
    if sched is not None:
        schedule = optimizer if callable(optimizer) and not isinstance(optimizer, optimizers.Optimizer) else sched
        lr = lr_function(schedule)
        peak = peak_lr(schedule, steps, lr) if schedule is optimizer else sched.peak(steps)
        check_lr(spectrum, peak, batch)
        # near the stochastic edge errors feed back through 1/(1 - ||Kr||): tighten the local tolerance there
        rtol = rtol * min(1.0, 10.0 * (1.0 - float(kernel_norm(spectrum, peak, batch))))
        kern = _SGDKernel(spectrum, lr, batch, size)
        bps = np.union1d(breakpoints(schedule, lr, steps), _hyper_jumps(opt, steps))  # sgd(s) = s
        lr_grid = lr(grid.astype(np.float64))
    else:
        check_optimizer(spectrum, opt, batch, grid)
        at = [0.0] if time_invariant(opt) else np.unique(np.geomspace(1, steps, 5).round())
        kn = max(system_edges(spectrum, opt.system(float(t)), batch)[1] for t in at)
        rtol = rtol * min(1.0, 10.0 * (1.0 - float(kn)))
        kern = _SystemKernel(spectrum, opt, batch, size)
        bps = _hyper_jumps(opt, steps)
        lr_grid = lead_lr(opt, grid)
    out, n_int, n_eval = _drive(kern, steps, grid, np.append(bps, steps), rtol, max_intervals, trace)
    extra = {name: out[:, k] for k, name in enumerate(kern.readouts) if k > 0}
    return LogCurve(grid, out[:, 0], lr_grid, n_int, n_eval, extra or None)


def _drive(kern, steps, grid, bps, rtol, max_intervals, trace=None):
    """The interval loop (``bps`` ends with the sentinel ``steps``): exact chunks of ``H_EXACT`` steps at the
    start and after breakpoints, step-doubled intervals elsewhere, landing on grid points and breakpoints.
    ``trace``: appends ``(0, r, n, 0, 0, False)`` per exact chunk of ``n`` steps from ``r`` and
    ``(1, r, h, h1, hp, hist)`` per accepted interval (two halves ``h1``, ``h - h1``; previous node ``hp`` steps
    back, used when ``hist``)."""
    out = np.full((grid.size, len(kern.readouts)), np.nan)
    state, P = kern.state, kern.P
    out[0] = kern.L0
    r = 0
    Q = kern.q(0, P)
    hist, rp, Qp = False, 0, 0.0     # previous node (same smooth piece of the coefficients)
    h = H_EXACT                      # proposed interval length
    bi = 0                           # index of the next breakpoint
    gi = 1                           # next grid index to fill
    n_int = n_eval = 0
    while r < steps:
        if n_int + n_eval > max_intervals:
            raise RuntimeError(f"solve_logtime: more than {max_intervals} intervals (rtol={rtol} too small?)")
        next_bp, next_grid = int(bps[bi]), int(grid[gi])
        hh = min(h, next_bp - r, next_grid - r)
        if hh <= H_EXACT:
            # exact steps (they may pass grid points, read off after each step, but not breakpoints)
            n = min(H_EXACT, next_bp - r)
            state, Ps, Ls = kern.exact(state, P, r, n)
            if trace is not None:
                trace.append((0, r, n, 0, 0.0, False))
            while gi < grid.size and grid[gi] <= r + n:
                out[gi] = Ls[grid[gi] - r - 1]
                gi += 1
            hist, rp, Qp = True, r, Q
            r, P = r + n, float(Ps[n - 1])
            n_int += 1
            if h <= H_EXACT and n == H_EXACT:
                h = 2 * H_EXACT
        else:
            h1 = hh // 2
            res = kern.attempt(state, P, Q, Qp, float(max(r - rp, 1)), hist, r, hh, h1)
            if not isinstance(res, tuple):  # coefficients change too fast: shrink
                h = max(H_EXACT, int(hh * res))
                continue
            sh, Ph, Qm, err, Lh = res
            n_eval += 3
            fac = 0.2 if not np.isfinite(err) else (2.0 if err == 0 else
                                                   min(2.0, max(0.2, 0.9 * (rtol / err) ** (1 / 3))))
            if not err <= rtol:
                h = max(H_EXACT, int(hh * fac))
                continue
            if trace is not None:
                trace.append((1, r, hh, h1, float(max(r - rp, 1)), bool(hist)))
            hist, rp, Qp = True, r + h1, Qm
            state, P, r = sh, Ph, r + hh
            n_int += 1
            if hh == h or fac < 1:  # a clipped interval keeps the proposal unless it found a large error
                h = int(hh * fac) if hh == h else min(h, int(hh * fac))
            h = max(H_EXACT + 1, min(h, r))
            if r == next_grid:
                out[gi] = Lh
                gi += 1
        if r == next_bp:
            hist, h = False, H_EXACT
            bi += 1
        Q = kern.q(r, P)
    return out, n_int, n_eval
