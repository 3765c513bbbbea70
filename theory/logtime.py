"""Log-time solver for the exact expected loss of one-pass SGD on PLRF, any learning-rate schedule.

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
Caveats: the schedule is evaluated at non-integer steps (interval midpoints); a schedule that oscillates
on a short time scale forces short intervals (cost ~ steps / period); a plain closure's jumps are found by
a scan of 2 x 4096 points plus bisection (two jumps in one scan bracket: only the larger one is located,
the step-doubling control then has to catch the other).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from plrf.spectrum import Spectrum
from plrf.stability import check_lr, kernel_norm

from .volterra import check_batch, check_grid, check_spectrum, check_steps, lr_function, peak_lr

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
# driver

def _bucket(n: int) -> int:
    """Smallest size >= n among 64, 96, 128, 192, ... (2^k and 1.5 * 2^k): at most 1/3 padding."""
    size = 64
    while size < n:
        size = size * 3 // 2 if (size & (size - 1)) == 0 else size * 4 // 3
    return size


def solve_logtime(spectrum: Spectrum, schedule, *, steps: int, batch: int = 1, grid=None, num: int = 100,
                  rtol: float = RTOL, max_intervals: int = 1_000_000) -> LogCurve:
    """The exact expected loss of one-pass SGD at the grid steps, at a cost independent of ``steps``.

    ``schedule``: closure step -> lr (plrf.schedules; ``.breakpoints`` used when present, and the schedule is
    scanned for jumps; any jnp-traceable closure works). ``grid``: int steps from 0 to ``steps`` (default
    ``plrf.log_grid(steps, num)``). ``rtol``: local tolerance per interval (step doubling); global relative
    error measured <= 0.8 rtol (module doc). Cost: O(d) per interval, ~100-350 intervals for 1e6-1e10 steps
    plus one per grid point. Raises ValueError for an unstable peak lr (plrf.check_lr).
    """
    spectrum, batch, steps = check_spectrum(spectrum), check_batch(batch), check_steps(steps)
    grid = check_grid(grid, steps, num)
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise ValueError(f"rtol must be in (0, 1), got {rtol}")
    lr = lr_function(schedule)
    peak = peak_lr(schedule, steps, lr)
    check_lr(spectrum, peak, batch)
    # near the stochastic edge errors feed back through 1/(1 - ||Kr||): tighten the local tolerance there
    rtol = rtol * min(1.0, 10.0 * (1.0 - float(kernel_norm(spectrum, peak, batch))))

    # pad to a bucket size with inert modes (lam = n = w = 0): one compilation serves a ladder of d
    size = _bucket(spectrum.lam.size)
    pad = lambda a: jnp.asarray(np.concatenate([a, np.zeros(size - a.size)]))
    lam = pad(spectrum.lam)
    B = float(batch)
    a2 = lam * lam * (B + 1.0) / B
    c = pad(spectrum.n) * lam * lam / B
    P_star = jnp.asarray(spectrum.P_star, dtype=jnp.float64)

    bps = np.append(breakpoints(schedule, lr, steps), steps)  # sentinel: steps is never crossed

    out = np.full(grid.size, np.nan)
    e = pad(spectrum.w)
    P = float(spectrum.P_star + np.sum(spectrum.w))
    out[0] = P
    r = 0
    Q = float(lr(np.array([0.0]))[0]) ** 2 * P
    hist, rp, Qp = False, 0, 0.0     # previous node (same smooth piece of the schedule)
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
            # exact steps (they may pass grid points, read off from P after each step, but not breakpoints)
            n = min(H_EXACT, next_bp - r)
            lrs = np.zeros(H_EXACT)
            lrs[:n] = lr(np.arange(r, r + n, dtype=np.float64))
            e, Ps = _exact(e, jnp.asarray(P), jnp.asarray(lrs), lam, a2, c, P_star)
            Ps = np.asarray(Ps)
            while gi < grid.size and grid[gi] <= r + n:
                out[gi] = Ps[grid[gi] - r - 1]
                gi += 1
            hist, rp, Qp = True, r, Q
            r, P = r + n, float(Ps[n - 1])
            n_int += 1
            if h <= H_EXACT and n == H_EXACT:
                h = 2 * H_EXACT
        else:
            h1 = hh // 2
            nodes = _nodes(lr, r, hh, h1)
            lo, hi = min(nodes[0], nodes[1], nodes[2]), max(nodes[0], nodes[1], nodes[2])
            if hi - lo > LR_CHANGE * hi:  # the lr changes too much for the first-order slope correction
                h = max(H_EXACT, int(hh * max(0.2, 0.8 * LR_CHANGE * hi / (hi - lo))))
                continue
            eh, Ph, Pm, err = _attempt(e, P, Q, Qp, float(max(r - rp, 1)), hist, float(hh), float(h1),
                                       jnp.asarray(nodes), lam, a2, c, P_star)
            err = float(err)
            n_eval += 3
            fac = 0.2 if not np.isfinite(err) else (2.0 if err == 0 else
                                                   min(2.0, max(0.2, 0.9 * (rtol / err) ** (1 / 3))))
            if not err <= rtol:
                h = max(H_EXACT, int(hh * fac))
                continue
            hist, rp, Qp = True, r + h1, nodes[8] ** 2 * float(Pm)
            e, P, r = eh, float(Ph), r + hh
            n_int += 1
            if hh == h or fac < 1:  # a clipped interval keeps the proposal unless it found a large error
                h = int(hh * fac) if hh == h else min(h, int(hh * fac))
            h = max(H_EXACT + 1, min(h, r))
            if r == next_grid:
                out[gi] = P
                gi += 1
        if r == next_bp:
            hist, h = False, H_EXACT
            bi += 1
        Q = float(lr(np.array([float(r)]))[0]) ** 2 * P
    return LogCurve(grid, out, lr(grid.astype(np.float64)), n_int, n_eval)
