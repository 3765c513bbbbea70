"""Predictors of the PLRF loss under a learning-rate schedule, and their errors against the exact solution.

Convention (the project's): loss ``P`` without 1/2, SGD step without factor 2, batch ``B``; a schedule is a
closure ``step -> lr`` from :mod:`plrf.schedules`; the loss at grid step ``t`` is after ``t`` updates with
``lr_0 .. lr_{t-1}``. Intrinsic time ``tau(t) = sum_{r<t} lr_r`` (Qiu et al. 2025; Li et al. 2025).

Predictors (each takes ``(schedule, *, steps, grid)``, see :func:`compare`):
  * :func:`reference` - the exact expected loss (``plrf.expected_loss``, or any ``solver`` with its signature).
  * :func:`noise_ode` - the SGD-noise model in intrinsic time. From the exact per-mode recursion
    ``e_k(r+1) = (1 - eta lam_k)^2 e_k + (eta^2/B) lam_k Sigma_kk`` with the per-sample gradient-noise covariance
    ``Sigma = K P + (K delta)(K delta)^T`` (Gaussian fourth moments, see :func:`noise_trace`), to first order in
    ``eta`` (``d tau = eta``):
        ``de_k/dtau = -2 lam_k e_k + (eta(tau)/B) n_k lam_k^2 P(tau)``,   ``P = P* + sum_k e_k``,
    i.e. ``e_k = F_k + E_k`` with the gradient-flow signal ``F_k = w_k exp(-2 lam_k tau)`` and the noise energy
    ``dE_k/dtau = -2 lam_k E_k + (eta/B) n_k lam_k^2 P``. Exact as ``eta -> 0`` at fixed ``tau``: error O(eta) for
    ``B > 1``, O(eta^2) for ``B = 1`` (then ``(1 - eta lam)^2 + eta^2 lam^2 / B = e^{-2 eta lam} + O(eta^3)``).
  * :func:`adiabatic` - the rule of Qiu et al.: relaxed modes hold ``E_k = (eta/2B) Sigma_kk`` (the fixed point
    of the ODE above), so ``E = (eta/2B) Tr Sigma`` and, from a constant run at ``eta_peak`` at the same ``tau``,
        ``L(tau) = L_const(tau) + a (eta(tau) - eta_peak) Tr Sigma(tau) / B``,   ``a = 1/2``
    with ``Tr Sigma = P tr K + sum_k lam_k e_k`` per sample (``Sigma / B`` per minibatch). Qiu et al. write the
    1/2-loss ``L/2`` with the same gradient, whose noise energy is ``E/2 = (eta/4B) Tr Sigma``: ``a = 1/4`` there,
    their value. Also ``rule='equilibrium'``: the exact per-mode fixed point of the recursion instead of the
    small-eta one (:func:`equilibrium_fraction`), accurate at large lr.
  * :func:`fsl` - the functional scaling law of Li et al. (2025) in intrinsic time,
        ``L = L_M + e(tau) + int_0^tau K(tau - z) (e(z) + sigma^2) eta(z) dz``,
    with PLRF constants *derived* (not fitted) from the spectrum, see :func:`fsl_params`.
  * :func:`fit_tissue` (Tissue et al. 2024) and :func:`fit_multipower` (Luo et al. 2025): empirical laws fitted
    on a few runs (least squares in log-loss space), then ``fit.predict(schedule, steps=..., grid=...)``.

Cost: intrinsic time is an exact chunked cumulative sum of the per-step lr for ``steps <= EXACT_LIMIT``
(``2**24``, about 1 s); beyond, an Euler-Maclaurin sum (exact head of ``2**16`` steps, Gauss-Legendre panels
between the schedule's ``.breakpoints``), which assumes the closure smooth between breakpoints (relative error
below 1e-10 for the factories in :mod:`plrf.schedules`). The Tissue sum ``S2`` uses a closed form over a window
of ``~37/(1-lambda)`` steps per grid point; the multi-power sum bins its lr drops, graded back from each grid step
(exact per step up to 256 steps). No predictor here is O(steps) in memory; the analytic ones take about a
second at 1e9 steps, except :func:`adiabatic`, whose constant run comes from ``solver`` (the default
``plrf.expected_loss`` is O(steps d): pass a log-time solver or a measured ``const_curve`` for long runs).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Mapping, NamedTuple, Optional

import numpy as np
from scipy import optimize, signal, special

import plrf
from plrf import schedules as sch
from plrf.spectrum import Spectrum

from .volterra import check_batch as _check_batch, check_steps as _check_steps

EXACT_LIMIT = 2 ** 24     # exact per-step sums up to here
_CHUNK = 2 ** 20          # per-step lr evaluated in chunks of this size
_HEAD = 2 ** 16           # the first steps are always summed exactly (fast early structure)
_SHORT = 4096             # segments shorter than this are summed exactly
_SIZES = (256, 4096, 2 ** 16, _CHUNK)   # padded evaluation sizes
ADIABATIC_A = 0.5         # a in L = L_const + a (eta - eta_peak) Tr Sigma / B (our convention; 1/4 with a 1/2-loss)


class Prediction(NamedTuple):
    """A predicted loss curve on a step grid; ``noise`` is the SGD-noise part where the model has one."""
    steps: np.ndarray   # (n,) int64
    tau: np.ndarray     # (n,) intrinsic time sum_{r<t} lr_r
    loss: np.ndarray    # (n,)
    noiseless: Optional[np.ndarray] = None
    noise: Optional[np.ndarray] = None


# ---------------------------------------------------------------------------------------------------------
# schedules: per-step lr, intrinsic time

def _lr(schedule, steps) -> np.ndarray:
    """The schedule at (float) steps, evaluated on flat arrays padded to one of ``_SIZES`` (so the jnp closure
    sees at most four shapes, hence few compilations)."""
    s = np.asarray(steps, dtype=np.float64)
    flat = s.ravel()
    n = flat.size
    size = next((z for z in _SIZES if z >= n), _SIZES[-1])
    parts = []
    for c0 in range(0, max(n, 1), size):
        chunk = flat[c0:c0 + size]
        pad = np.concatenate([chunk, np.zeros(size - chunk.size)])
        parts.append(np.broadcast_to(np.asarray(schedule(pad), dtype=np.float64), pad.shape)[:chunk.size])
    v = np.concatenate(parts)[:n].reshape(s.shape)
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError("schedule must return finite learning rates >= 0")
    return np.array(v)


def _as_steps(steps, name="steps", allow_empty=False) -> np.ndarray:
    q = np.asarray(steps)
    if (q.size == 0 and not allow_empty) or not (np.issubdtype(q.dtype, np.integer)
                                                 or np.all(np.isfinite(q) & (q == np.round(q)))):
        raise ValueError(f"{name} must be a non-empty array of integers >= 0")
    q = q.astype(np.int64)
    if np.any(q < 0):
        raise ValueError(f"{name} must be >= 0, got min {q.min()}")
    return q


def _tau_exact(schedule, uq):
    out = np.zeros(uq.shape)
    acc, T = 0.0, int(uq[-1])
    for c0 in range(0, T, _CHUNK):
        c1 = min(c0 + _CHUNK, T)
        cs = acc + np.cumsum(_lr(schedule, np.arange(c0, c1)))
        sel = (uq > c0) & (uq <= c1)
        out[sel] = cs[uq[sel] - c0 - 1]
        acc = cs[-1]
    return out


_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)


def _panels(lo, hi, cp, cn, wmax):
    """Panel edges on ``[lo, hi]``: width <= half the distance to the cuts ``cp < lo``, ``cn > hi`` (graded toward
    possible singularities of the closure there) and <= ``wmax``."""
    edges = [lo]
    e = lo
    while e < hi:
        e = min(hi, e + max(1.0, min(0.5 * (e - cp), 0.5 * (cn - e - 1.0), wmax)))
        edges.append(e)
    return edges


def _smooth_sums(schedule, a, b, cp, cn, T):
    """``sum_{r=a}^{b-1} f(r)`` for long ranges where ``f`` is smooth on ``[a, b-1]``: Euler-Maclaurin, the
    integral by 16-point Gauss-Legendre on graded panels (:func:`_panels`, widths <= T/64)."""
    lo, hi = a.astype(np.float64), (b - 1).astype(np.float64)
    edges = [np.asarray(_panels(l_, h_, c0, c1, T / 64.0)) for l_, h_, c0, c1 in zip(lo, hi, cp, cn)]
    counts = np.array([e.size - 1 for e in edges])
    e0 = np.concatenate([e[:-1] for e in edges])
    e1 = np.concatenate([e[1:] for e in edges])
    mid, half = 0.5 * (e0 + e1), 0.5 * (e1 - e0)
    f = _lr(schedule, mid[:, None] + half[:, None] * _GL_X)
    panel = half * (f @ _GL_W)
    integral = np.add.reduceat(panel, np.concatenate([[0], np.cumsum(counts)[:-1]]))
    ends = _lr(schedule, np.stack([lo, lo + 1, lo + 2, hi - 2, hi - 1, hi], axis=1))
    d_lo = (-3 * ends[:, 0] + 4 * ends[:, 1] - ends[:, 2]) / 2
    d_hi = (3 * ends[:, 5] - 4 * ends[:, 4] + ends[:, 3]) / 2
    return integral + 0.5 * (ends[:, 0] + ends[:, 5]) + (d_hi - d_lo) / 12.0


def _exact_sums(schedule, a, b):
    """``sum_{r=a_i}^{b_i - 1} f(r)`` for short ranges, one vectorized evaluation."""
    out = np.zeros(a.shape)
    ne = b > a
    if not np.any(ne):
        return out
    a, lens = a[ne], (b - a)[ne]
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    vals = _lr(schedule, np.repeat(a - starts, lens) + np.arange(lens.sum()))
    out[ne] = np.add.reduceat(vals, starts)
    return out


def _tau_quad(schedule, uq):
    T = int(uq[-1])
    cuts = np.array(sorted({math.ceil(b) for b in getattr(schedule, "breakpoints", ()) if 0 < b < T} | {0, T}),
                    np.int64)
    bounds = np.unique(np.concatenate([[0, min(_HEAD, T)], cuts, uq]).astype(np.int64))
    a, b = bounds[:-1], bounds[1:]
    # pieces start and end at cuts (and at 0, T), where the closure may be singular (1 - sqrt, (1-u)^p): sum
    # _SHORT steps next to a cut exactly, Euler-Maclaurin in between with panels graded toward the cuts
    h = np.where(np.isin(a, cuts), _SHORT, 0)
    t = np.where(np.isin(b, cuts), _SHORT, 0)
    long_ = (b - a) > h + t + _SHORT
    seg = np.zeros(a.shape)
    seg[~long_] = _exact_sums(schedule, a[~long_], b[~long_])
    if np.any(long_):
        al, bl, hl, tl = a[long_], b[long_], h[long_], t[long_]
        k = np.searchsorted(cuts, al, side="right")
        cp, cn = cuts[k - 1].astype(np.float64), cuts[np.minimum(k, cuts.size - 1)].astype(np.float64)
        seg[long_] = (_exact_sums(schedule, al, al + hl) + _exact_sums(schedule, bl - tl, bl)
                      + _smooth_sums(schedule, al + hl, bl - tl, cp, cn, T))
    tau_b = np.concatenate([[0.0], np.cumsum(seg)])
    return tau_b[np.searchsorted(bounds, uq)]


def intrinsic_time(schedule, steps, *, exact_limit: int = EXACT_LIMIT) -> np.ndarray:
    """``tau(t) = sum_{r<t} schedule(r)`` at the given integer steps (any order, same shape).

    Exact chunked sums when ``max(steps) <= exact_limit`` (or the closure has no ``.breakpoints`` or is a
    ``from_array`` table); otherwise Euler-Maclaurin over pieces cut at the breakpoints (see module doc).
    """
    q = _as_steps(steps, allow_empty=True)
    if q.size == 0:
        return np.zeros(q.shape)
    uq, inv = np.unique(q.ravel(), return_inverse=True)
    if uq[-1] == 0:
        return np.zeros(q.shape)
    smooth_ok = hasattr(schedule, "breakpoints") and getattr(schedule, "name", "") != "array"
    if uq[-1] <= exact_limit or not smooth_ok:
        tau = _tau_exact(schedule, uq)
    else:
        tau = _tau_quad(schedule, uq)
    return tau[inv].reshape(q.shape)


def _grid(steps, grid, num=100):
    if grid is None:
        return plrf.log_grid(steps, num)
    g = _as_steps(grid, "grid")
    if g.ndim != 1 or g[0] != 0 or np.any(np.diff(g) <= 0) or g[-1] != steps:
        raise ValueError(f"grid must be strictly increasing integers from 0 to steps={steps}")
    return g


# ---------------------------------------------------------------------------------------------------------
# exact reference

def reference(spectrum: Spectrum, schedule, *, steps: int, batch: int = 1, grid=None,
              solver: Optional[Callable] = None) -> Prediction:
    """The exact expected loss: ``plrf.expected_loss`` or ``solver(spectrum, schedule, steps=, batch=, grid=)``
    (e.g. ``theory.logtime.solve_logtime``; it may return a Curve or an array of losses on ``grid``)."""
    steps, batch = _check_steps(steps), _check_batch(batch)
    g = _grid(steps, grid)
    solver = plrf.expected_loss if solver is None else solver
    out = solver(spectrum, schedule, steps=steps, batch=batch, grid=g)
    loss = np.asarray(getattr(out, "loss", out), dtype=np.float64)
    if loss.shape != g.shape:
        raise ValueError(f"solver returned {loss.shape} losses for a grid of {g.shape}")
    return Prediction(g, intrinsic_time(schedule, g), loss)


# ---------------------------------------------------------------------------------------------------------
# gradient-noise covariance

def noise_trace(spectrum: Spectrum, e, P=None) -> np.ndarray:
    """Expected trace of the per-sample gradient-noise covariance, ``Tr Sigma = P tr K + sum_k lam_k e_k``.

    Per sample ``g = x~ r`` with Gaussian features ``x~ ~ N(0, K)`` and residual ``r = <x~, delta> - eps``
    (``eps ~ N(0, P*)`` independent). Isserlis: ``E[g g^T] = K E[r^2] + 2 (K delta)(K delta)^T``, so
    ``Sigma = K P + (K delta)(K delta)^T`` and ``Tr Sigma = P tr K + ||K delta||^2``; averaged over the
    iterate, ``||K delta||^2 = sum_k lam_k e_k`` with ``e_k = lam_k <u_k, delta>^2``. ``e`` has the shape of
    ``spectrum.lam`` (leading batch axes allowed); ``P`` defaults to ``P* + sum_k e_k``.
    The minibatch covariance is ``Sigma / B``.
    """
    e = np.asarray(e, dtype=np.float64)
    if e.shape[-1:] != spectrum.lam.shape:
        raise ValueError(f"e must end with the spectrum length {spectrum.lam.shape}, got {e.shape}")
    P = spectrum.P_star + e.sum(axis=-1) if P is None else np.asarray(P, dtype=np.float64)
    return P * spectrum.trace + np.sum(spectrum.lam * e, axis=-1)


# ---------------------------------------------------------------------------------------------------------
# linear mode ODEs in intrinsic time: dy_j/dtau = -r_j y_j + q_j eta(tau) D(tau)

def _phi(r, h):
    """``phi0 = int_0^h e^{-r(h-s)} ds``, ``phi1 = int_0^h e^{-r(h-s)} s/h ds`` (stable for small r h)."""
    z = r * h
    E = np.exp(-z)
    phi0 = -np.expm1(-z) / r
    small = z < 1e-2
    zs = np.where(small, 1.0, z)
    ser = 0.5 - z / 6 + z * z / 24 - z ** 3 / 120 + z ** 4 / 720
    phi1 = h * np.where(small, ser, (zs - 1.0 + E) / (zs * zs))
    return E, phi0, phi1


def _nodes(schedule, steps, grid, n_log, n_lin):
    """Integer node steps: the grid, log- and uniformly spaced steps, and the breakpoints."""
    bps = [b for b in getattr(schedule, "breakpoints", ()) if 0 < b < steps]
    extra = [np.round(np.geomspace(1, steps, n_log)), np.round(np.linspace(0, steps, n_lin)),
             np.ceil(bps), np.floor(bps)]
    return np.unique(np.concatenate([grid] + [np.asarray(x, dtype=np.float64) for x in extra]).astype(np.int64))


def _refine(tau, eta_a, eta_b, drive, tau0, eps):
    """Split intervals longer than ``eps (tau + tau0)`` (lr and drive interpolated linearly in tau inside)."""
    h = np.diff(tau)
    m = np.maximum(1, np.ceil(h / (eps * (tau[:-1] + tau0)))).astype(np.int64)
    if np.all(m == 1):
        return tau, eta_a, eta_b, drive, np.arange(tau.size)
    f = [np.arange(k) / k for k in m]                        # sub-node fractions in [0, 1) per interval
    frac = np.concatenate(f)
    owner = np.repeat(np.arange(h.size), m)
    t_new = np.append(tau[owner] + frac * h[owner], tau[-1])
    ea = eta_a[owner] + frac * (eta_b[owner] - eta_a[owner])
    eb = eta_a[owner] + (frac + 1.0 / m[owner]) * (eta_b[owner] - eta_a[owner])
    d_new = np.interp(t_new, tau, drive) if drive.ndim == 1 else drive
    keep = np.append(np.concatenate([[0], np.cumsum(m)[:-1]]), owner.size)
    return t_new, ea, eb, d_new, keep


def _mode_ode(schedule, nodes, rates, q, y0, drive, feedback, weights=(), drive_fn=None, eps=0.02, tau0=None):
    """Exponential-trapezoid integrator (exact when ``eta D`` is linear in tau on each interval).

    ``D = drive + (sum_j y_j if feedback)``; ``drive`` is given at the nodes, or ``drive_fn(tau)`` is used.
    Intervals are split so that ``h <= eps (tau + tau0)``, by default ``tau0 = 1/max(rates)`` (D varies on the
    scale of the fastest relaxation early, on the scale of tau late). Returns tau at the nodes, ``sum_j y_j`` and
    ``sum_j W_j y_j`` for each weight vector ``W`` at every node.
    """
    tau_n = intrinsic_time(schedule, nodes)
    eta_a = _lr(schedule, nodes[:-1])                       # lr of the first step of each interval
    eta_b = _lr(schedule, nodes[1:] - 1)                    # lr of its last step (left limit at the node)
    drive = np.asarray(drive_fn(tau_n) if drive_fn is not None else drive, dtype=np.float64)
    tau0 = 1.0 / np.max(rates) if tau0 is None else tau0
    tau, eta_a, eta_b, c, keep = _refine(tau_n, eta_a, eta_b, drive, tau0, eps)
    if drive_fn is not None:
        c = np.asarray(drive_fn(tau), dtype=np.float64)
    y = np.array(y0, dtype=np.float64)
    S = np.empty(tau.size)
    Wout = [np.empty(tau.size) for _ in weights]
    S[0] = y.sum()
    for j, W in enumerate(weights):
        Wout[j][0] = W @ y
    for k in range(tau.size - 1):
        h = tau[k + 1] - tau[k]
        if h <= 0:
            S[k + 1] = S[k]
            for j, W in enumerate(weights):
                Wout[j][k + 1] = W @ y
            continue
        E, phi0, phi1 = _phi(rates, h)
        ga = eta_a[k] * (c[k] + (S[k] if feedback else 0.0))
        base = E * y + q * ((phi0 - phi1) * ga)
        qp = q * phi1
        if feedback:
            Q1 = qp.sum()
            Sb = (base.sum() + eta_b[k] * c[k + 1] * Q1) / (1.0 - eta_b[k] * Q1)
            gb = eta_b[k] * (c[k + 1] + Sb)
        else:
            gb = eta_b[k] * c[k + 1]
        y = base + qp * gb
        S[k + 1] = y.sum()
        for j, W in enumerate(weights):
            Wout[j][k + 1] = W @ y
    return tau_n, S[keep], [x[keep] for x in Wout]


def noise_ode(spectrum: Spectrum, schedule, *, steps: int, batch: int = 1, grid=None,
              n_log: int = 400, n_lin: int = 800, eps: float = 0.02) -> Prediction:
    """The per-mode SGD-noise model of Qiu et al. (2025) in intrinsic time, small-``eta`` limit of the exact
    recursion (module doc): ``de_k/dtau = -2 lam_k e_k + (eta(tau)/B) n_k lam_k^2 (P* + sum_j e_j)``,
    ``e_k(0) = w_k``. Returns ``loss = P``, ``noiseless = P* + sum_k w_k e^{-2 lam_k tau}`` (gradient flow) and
    ``noise = loss - noiseless``. Integrated on ``~n_log + n_lin`` step nodes (plus the grid and breakpoints),
    split so that ``h <= eps (tau + 1/(2 lam_max))``, with an exponential trapezoid rule (second order).
    """
    steps, batch = _check_steps(steps), _check_batch(batch)
    g = _grid(steps, grid)
    nodes = _nodes(schedule, steps, g, n_log, n_lin)
    lam, n, w = spectrum.lam, spectrum.n, spectrum.w
    drive = np.full(nodes.size, float(spectrum.P_star))
    tau, S, _ = _mode_ode(schedule, nodes, 2.0 * lam, n * lam * lam / batch, w, drive, True, eps=eps)
    idx = np.searchsorted(nodes, g)
    loss = spectrum.P_star + S[idx]
    flow = spectrum.P_star + np.exp(-2.0 * np.outer(tau[idx], lam)) @ w
    return Prediction(g, tau[idx], loss, flow, loss - flow)


def _noise_ode_parts(spectrum, schedule, steps, batch, g, n_log=400, n_lin=800):
    """``(tau, P, sum_k lam_k e_k)`` at the grid from the noise ODE (used by the adiabatic rule)."""
    nodes = _nodes(schedule, steps, g, n_log, n_lin)
    lam, n = spectrum.lam, spectrum.n
    drive = np.full(nodes.size, float(spectrum.P_star))
    tau, S, (S4,) = _mode_ode(schedule, nodes, 2.0 * lam, n * lam * lam / batch, spectrum.w, drive, True,
                              weights=(lam,))
    idx = np.searchsorted(nodes, g)
    return tau[idx], spectrum.P_star + S[idx], S4[idx]


# ---------------------------------------------------------------------------------------------------------
# adiabatic rule

def equilibrium_fraction(spectrum: Spectrum, lr, tau, batch: int = 1) -> np.ndarray:
    """``kappa(eta, tau) = sum_k n_k eta lam_k (1 - e^{-2 lam_k tau}) / (B (2 - eta lam_k (B+1)/B))``: the share of the
    loss held as SGD noise by modes in equilibrium at lr ``eta`` (exact per-mode fixed point of the recursion,
    ``e_k = kappa_k P``), each mode weighted by how far it has relaxed by ``tau``. As ``tau -> inf`` it is the
    kernel norm ``||Kr||`` of :func:`plrf.kernel_norm`; as ``eta -> 0``, ``eta tr K / (2B)`` (Qiu's ``a = 1/2``)."""
    lr, tau = np.broadcast_arrays(np.asarray(lr, dtype=np.float64), np.asarray(tau, dtype=np.float64))
    B = float(batch)
    lam, n = spectrum.lam, spectrum.n
    den = 2.0 - lr[..., None] * lam * (B + 1) / B
    if np.any(den <= 0):
        raise ValueError("lr past the full-batch edge eta lam_max (B+1)/B < 2")
    w = -np.expm1(-2.0 * tau[..., None] * lam)
    return np.sum(n * lr[..., None] * lam * w / (B * den), axis=-1)


def adiabatic(spectrum: Spectrum, schedule, *, steps: int, batch: int = 1, grid=None, peak: Optional[float] = None,
              rule: str = "qiu", a: float = ADIABATIC_A, trace: str = "self-consistent",
              solver: Optional[Callable] = None, const_curve=None, num_const: int = 400) -> Prediction:
    """Predict the loss under ``schedule`` from a constant run at ``peak`` at equal intrinsic time.

    ``rule='qiu'`` (Qiu et al. 2025): ``L(tau) = L_c(tau) + a (eta(tau) - peak) Tr Sigma(tau) / B`` with
    ``Tr Sigma = L tr K + sum_k lam_k e_k`` (:func:`noise_trace`) and ``a = 1/2`` (derived in the module doc; the
    small-eta value). ``trace='self-consistent'`` puts the predicted ``L`` in ``Tr Sigma`` (the rule is linear in
    ``L``: ``L = [L_c + c S4] / (1 - c tr K)``, ``c = a (eta - peak)/B``, ``S4 = sum_k lam_k e_k`` of the constant
    run from the noise ODE); ``'constant'`` uses ``L_c``.
    ``rule='equilibrium'``: every mode at its exact discrete fixed point for the current lr, weighted by its
    relaxation, ``L = L_c (1 - kappa(peak, tau)) / (1 - kappa(eta, tau))`` (:func:`equilibrium_fraction`); it
    keeps the O(eta lam) terms that ``a = 1/2`` drops.
    ``L_c``: ``const_curve=(steps, loss)`` of a run at constant ``peak`` (e.g. simulated), else the exact reference
    (``solver``); interpolated in ``log(1 + tau/peak)``. ``eta`` at grid step ``t`` is ``schedule(t - 1)``, the last
    lr used. Both rules assume the schedule changes slowly next to the relaxation time ``1/(2 lam_k)`` (in tau)
    of the modes that carry ``tr K``; they cannot follow the lag at the very end of a decay to zero.
    """
    steps, batch = _check_steps(steps), _check_batch(batch)
    if rule not in ("qiu", "equilibrium"):
        raise ValueError(f"rule must be 'qiu' or 'equilibrium', got {rule!r}")
    if trace not in ("self-consistent", "constant"):
        raise ValueError(f"trace must be 'self-consistent' or 'constant', got {trace!r}")
    g = _grid(steps, grid)
    peak = float(getattr(schedule, "peak", np.nan) if peak is None else peak)
    if not (np.isfinite(peak) and peak > 0):
        raise ValueError(f"peak must be a finite lr > 0 (schedule has no .peak), got {peak}")
    tau = intrinsic_time(schedule, g)
    n_c = max(int(math.ceil(tau[-1] / peak)) + 1, 2)
    const = sch.constant(peak)
    if const_curve is None:
        gc = plrf.log_grid(n_c, num_const)
        Lc_grid = reference(spectrum, const, steps=n_c, batch=batch, grid=gc, solver=solver).loss
    else:
        gc, Lc_grid = (np.asarray(x, dtype=np.float64) for x in const_curve)
        if gc.ndim != 1 or gc.shape != Lc_grid.shape or gc[-1] < n_c - 1 or np.any(Lc_grid <= 0):
            raise ValueError(f"const_curve must be (steps, loss) with positive losses reaching step {n_c - 1}")
    x, xt = np.log1p(gc), np.log1p(tau / peak)
    Lc = np.exp(np.interp(xt, x, np.log(Lc_grid)))
    eta = _lr(schedule, np.maximum(g - 1, 0))
    if rule == "equilibrium":
        L = Lc * (1.0 - equilibrium_fraction(spectrum, peak, tau, batch)) / \
            (1.0 - equilibrium_fraction(spectrum, eta, tau, batch))
        return Prediction(g, tau, L)
    gs = plrf.log_grid(n_c, num_const)
    _, _, S4c = _noise_ode_parts(spectrum, const, n_c, batch, gs)
    S4 = np.interp(xt, np.log1p(gs), S4c)
    c = a * (eta - peak) / batch
    if trace == "self-consistent":
        L = (Lc + c * S4) / (1.0 - c * spectrum.trace)
    else:
        L = Lc + c * (Lc * spectrum.trace + S4)
    return Prediction(g, tau, L)


# ---------------------------------------------------------------------------------------------------------
# functional scaling law (Li et al. 2025)

class FSLParams(NamedTuple):
    """``L = L_M + e(tau) + int K(tau-z) (e(z) + sigma2) eta(z) dz``, ``e = c_e (1 + tau/tau_e)^{-s}``,
    ``K(u) = c_K (1 + u/tau_K)^{-kappa}``."""
    L_M: float
    sigma2: float
    c_e: float
    tau_e: float
    s: float
    c_K: float
    tau_K: float
    kappa: float


def fsl_params(spectrum: Spectrum, *, alpha: float, beta: float, batch: int = 1) -> FSLParams:
    """PLRF -> FSL constants, *derived* (no fit). With ``lam_k ~ k^{-2 alpha}`` and ``w_k ~ k^{-2 alpha - 2 beta}``
    (the outliers of K, 2 alpha > 1), gradient flow gives
    ``sum_k w_k e^{-2 lam_k tau} ~ Gamma(s)/(2 alpha) (2 tau)^{-s}`` with ``s = (2 alpha + 2 beta - 1)/(2 alpha)``
    (so ``beta_FSL = 2 alpha`` and FSL's source exponent ``s`` is this one: the risk exponent; the mapping
    ``(2 beta - 1)/(2 alpha)`` is the exponent of ``||theta - theta*||^2`` instead), and the noise kernel
    ``K(u) = (1/B) sum_k n_k lam_k^2 e^{-2 lam_k u} ~ Gamma(kappa)/(2 alpha B) (2u)^{-kappa}``,
    ``kappa = 2 - 1/(2 alpha)``. Amplitudes match these tails and the exact values at 0:
    ``c_e = sum w``, ``c_K = sum n lam^2 / B``; ``L_M = sigma^2 = P*`` (in PLRF the limit loss is also the label
    noise SGD sees). Needs ``alpha > 1/4``.
    """
    batch = _check_batch(batch)
    if not (np.isfinite(alpha) and alpha > 0.25):
        raise ValueError(f"alpha must be > 1/4 for the FSL kernel (kappa = 2 - 1/(2 alpha) > 0), got {alpha}")
    if not (np.isfinite(beta) and 2 * (alpha + beta) > 1):
        raise ValueError(f"beta must satisfy 2(alpha + beta) > 1, got alpha={alpha}, beta={beta}")
    s = (2 * alpha + 2 * beta - 1) / (2 * alpha)
    kappa = 2 - 1 / (2 * alpha)
    c_e = float(np.sum(spectrum.w))
    c_K = float(np.sum(spectrum.n * spectrum.lam ** 2)) / batch
    tau_e = (special.gamma(s) * 2.0 ** -s / (2 * alpha * c_e)) ** (1 / s)
    tau_K = (special.gamma(kappa) * 2.0 ** -kappa / (2 * alpha * batch * c_K)) ** (1 / kappa)
    P_star = float(spectrum.P_star)
    return FSLParams(P_star, P_star, c_e, float(tau_e), float(s), c_K, float(tau_K), float(kappa))


def _powerlaw_as_exponentials(kappa, scale, u_max, per_unit=10.0):
    """``(1 + u/scale)^{-kappa} = sum_j omega_j e^{-rho_j u}`` (trapezoid in log x of the Laplace integral
    ``Gamma(kappa)^{-1} int x^{kappa-1} e^{-x(1+u/scale)} dx``), accurate to ~1e-9 relative for ``u <= u_max``."""
    x_lo = min(1e-3, 1e-11 ** (1.0 / kappa) * scale / max(u_max, 1e-300))   # lost mass ~ x_lo^kappa
    y = np.arange(np.log(x_lo), np.log(60.0), 1.0 / per_unit)
    x = np.exp(y)
    omega = (1.0 / per_unit) * np.exp(kappa * y - x - special.gammaln(kappa))
    return x / scale, omega


def fsl(spectrum: Spectrum, schedule, *, steps: int, batch: int = 1, grid=None, alpha: Optional[float] = None,
        beta: Optional[float] = None, kind: str = "powerlaw", params: Optional[FSLParams] = None,
        n_log: int = 400, n_lin: int = 800) -> Prediction:
    """The FSL convolution in intrinsic time. ``kind='powerlaw'``: the FSL forms with :func:`fsl_params`
    (derived constants; or ``params``); ``kind='spectral'``: the exact ``e(tau) = sum w e^{-2 lam tau}`` and
    ``K(u) = sum n lam^2 e^{-2 lam u}/B`` of this spectrum, so it differs from :func:`noise_ode` only by FSL's
    first-order driving ``e + sigma^2`` in place of the full ``P`` (no noise-on-noise feedback).
    """
    steps, batch = _check_steps(steps), _check_batch(batch)
    if kind not in ("powerlaw", "spectral"):
        raise ValueError(f"kind must be 'powerlaw' or 'spectral', got {kind!r}")
    g = _grid(steps, grid)
    nodes = _nodes(schedule, steps, g, n_log, n_lin)
    tau_g = intrinsic_time(schedule, g)
    if kind == "spectral":
        lam, w = spectrum.lam, spectrum.w
        e_fn = lambda t: np.exp(-2.0 * np.outer(t, lam)) @ w                      # noqa: E731
        rates, q = 2.0 * lam, spectrum.n * lam * lam / batch
        L_M = sigma2 = float(spectrum.P_star)
        tau0 = 0.5 / spectrum.lam_max
    else:
        if params is None:
            if alpha is None or beta is None:
                raise ValueError("kind='powerlaw' needs alpha and beta (or params)")
            params = fsl_params(spectrum, alpha=alpha, beta=beta, batch=batch)
        p = params
        e_fn = lambda t: p.c_e * (1.0 + np.asarray(t) / p.tau_e) ** (-p.s)          # noqa: E731
        rates, omega = _powerlaw_as_exponentials(p.kappa, p.tau_K, tau_g[-1])
        q = p.c_K * omega
        L_M, sigma2 = p.L_M, p.sigma2
        tau0 = min(p.tau_e, p.tau_K)
    _, S, _ = _mode_ode(schedule, nodes, rates, q, np.zeros_like(rates), None, False,
                        drive_fn=lambda t: sigma2 + e_fn(t), tau0=tau0)
    idx = np.searchsorted(nodes, g)
    clean = L_M + e_fn(tau_g)
    return Prediction(g, tau_g, clean + S[idx], clean, S[idx])


# ---------------------------------------------------------------------------------------------------------
# empirical laws: data handling

class _Data(NamedTuple):
    schedule: Callable
    steps: np.ndarray
    loss: np.ndarray


def _curves(curves) -> list:
    out = []
    for i, c in enumerate(curves):
        if len(c) == 2:
            s, cv = c
            st, lo = getattr(cv, "steps"), getattr(cv, "loss")
        elif len(c) == 3:
            s, st, lo = c
        else:
            raise ValueError(f"curves[{i}] must be (schedule, curve) or (schedule, steps, loss)")
        st, lo = _as_steps(st, f"curves[{i}] steps"), np.asarray(lo, dtype=np.float64)
        if st.shape != lo.shape or st.ndim != 1 or np.any(np.diff(st) <= 0):
            raise ValueError(f"curves[{i}]: steps and loss must be 1-d, equal length, steps increasing")
        if not np.all(np.isfinite(lo)) or np.any(lo <= 0):
            raise ValueError(f"curves[{i}]: losses must be finite and > 0")
        out.append(_Data(s, st, lo))
    if not out:
        raise ValueError("curves must hold at least one (schedule, curve)")
    return out


def _window(d: _Data, fit_from: float):
    keep = (d.steps >= max(1, fit_from * d.steps[-1]))
    if keep.sum() < 3:
        raise ValueError(f"fit_from={fit_from} leaves fewer than 3 points in a curve")
    return d.steps[keep], d.loss[keep]


# ---------------------------------------------------------------------------------------------------------
# Tissue et al. (2024)

def tissue_sums(schedule, steps, *, lam: float = 0.999, exact_limit: int = EXACT_LIMIT):
    """``S1(t) = sum_{r<t} eta_r`` and ``S2(t) = sum_{r=1}^{t-1} m_r``, ``m_r = lam m_{r-1} + (eta_{r-1} - eta_r)``,
    ``m_0 = 0`` (Tissue et al.'s sums in this project's 0-based step indexing). Up to ``exact_limit`` steps:
    the recursion itself (chunked ``lfilter``); beyond, the closed form
    ``S2(t) = [eta_0 - eta_{t-1} - sum_{r=1}^{t-1} (eta_{r-1} - eta_r) lam^{t-r}] / (1 - lam)`` with the last sum
    over a window of ``ceil(37/(1 - lam))`` steps (``lam^W < 1e-16``), O(window) per grid step.
    """
    if not (0 <= lam < 1):
        raise ValueError(f"lam must be in [0, 1), got {lam}")
    st = _as_steps(steps)
    S1 = intrinsic_time(schedule, st, exact_limit=exact_limit)
    T = int(st.max())
    S2 = np.zeros(st.shape, dtype=np.float64)
    if T < 2:
        return S1, S2
    if T <= exact_limit:
        uq = np.unique(st)
        out = np.zeros(uq.shape)
        m_prev, acc, e_prev = 0.0, 0.0, None
        for c0 in range(0, T, _CHUNK):                       # S2(t) for t in (c0, c1]: m_1 .. m_{t-1}
            c1 = min(c0 + _CHUNK, T)
            e = _lr(schedule, np.arange(c0, c1))
            delta = -np.diff(e, prepend=e[0] if e_prev is None else e_prev)  # Delta_r, r = c0..c1-1 (Delta_0 = 0)
            m, _ = signal.lfilter([1.0], [1.0, -lam], delta, zi=[lam * m_prev])
            cs = acc + np.cumsum(m)                           # sum_{r <= c0 + i} m_r
            sel = (uq > c0) & (uq <= c1)
            out[sel] = cs[uq[sel] - c0 - 1]
            m_prev, acc, e_prev = m[-1], cs[-1], e[-1]
        return S1, out[np.searchsorted(uq, st)]
    W = int(math.ceil(np.log(1e-16) / np.log(lam))) if lam > 0 else 1
    eta0 = float(_lr(schedule, 0))
    t = st.ravel()
    r0 = np.maximum(1, t - W)
    lens = np.where(t >= 2, t - r0 + 1, 0)                    # eta_{r0-1} .. eta_{t-1}
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    idx = np.repeat(r0 - 1 - starts, lens) + np.arange(lens.sum())
    e = _lr(schedule, idx)
    out = np.zeros(t.shape)
    for i in np.nonzero(lens)[0]:
        ei = e[starts[i]:starts[i] + lens[i]]
        decay = lam ** (t[i] - np.arange(r0[i], t[i], dtype=np.float64))
        out[i] = (eta0 - ei[-1] - np.dot(ei[:-1] - ei[1:], decay)) / (1.0 - lam)
    return S1, out.reshape(st.shape)


def tissue_law(L0, A, alpha, C, S1, S2):
    """``L = L0 + A S1^{-alpha} - C S2``."""
    return L0 + A * np.asarray(S1, dtype=np.float64) ** (-alpha) - C * np.asarray(S2, dtype=np.float64)


class TissueFit(NamedTuple):
    """Fitted ``L = L0 + A S1^{-alpha} - C S2`` (Tissue et al. 2024); ``rms`` = rms log-loss residual."""
    L0: float
    A: float
    alpha: float
    C: float
    lam: float
    rms: float

    def predict(self, schedule, *, steps: int, grid=None) -> Prediction:
        g = _grid(_check_steps(steps), grid)
        S1, S2 = tissue_sums(schedule, g, lam=self.lam)
        loss = np.full(g.shape, np.nan)
        pos = g >= 1
        loss[pos] = tissue_law(self.L0, self.A, self.alpha, self.C, S1[pos], S2[pos])
        loss[~pos] = np.inf                                  # the law diverges at S1 = 0
        return Prediction(g, S1, loss)


def _safe_log(x):
    return np.log(np.maximum(x, 1e-300))


def fit_tissue(curves, *, lam: float = 0.999, fit_from: float = 0.02, fit_lam: bool = False) -> TissueFit:
    """Fit Tissue et al.'s law on ``curves`` (e.g. a constant run and one decayed run): least squares on
    ``log L`` over steps ``>= fit_from * horizon`` of each curve, bounds ``0 <= L0 < min L``, ``A > 0``,
    ``0 < alpha <= 5``, ``C >= 0``; multi-start over ``(L0, alpha)`` with ``(A, C)`` from linear least squares.
    ``fit_lam=True`` also fits ``lam`` in [0.9, 0.99999] (costly: S2 is recomputed per evaluation).
    """
    data = _curves(curves)
    wins = [_window(d, fit_from) for d in data]
    y = np.concatenate([lo for _, lo in wins])
    Lmin = y.min()

    def sums(lam_):
        S = [tissue_sums(d.schedule, st, lam=lam_) for d, (st, _) in zip(data, wins)]
        return np.concatenate([s[0] for s in S]), np.concatenate([s[1] for s in S])

    S1, S2 = sums(lam)
    if np.any(S1 <= 0):
        raise ValueError("every fitted step needs a positive intrinsic time (lr > 0 before it)")

    def resid(p, S1_=None, S2_=None):
        L0, lA, al, C = p[:4]
        if fit_lam:
            S1_, S2_ = sums(p[4])
        return _safe_log(tissue_law(L0, np.exp(lA), al, C, S1_, S2_)) - np.log(y)

    best = None
    for f0 in (0.0, 0.5, 0.9):
        for al in (0.2, 0.5, 1.0, 2.0):
            L0 = f0 * Lmin
            M = np.stack([S1 ** (-al), -S2], axis=1) / y[:, None]
            (A, C), *_ = np.linalg.lstsq(M, (y - L0) / y, rcond=None)
            A, C = max(A, 1e-12 * Lmin), max(C, 0.0)
            p0 = [L0, np.log(A), al, C] + ([lam] if fit_lam else [])
            lo = [0.0, -np.inf, 1e-4, 0.0] + ([0.9] if fit_lam else [])
            hi = [Lmin * (1 - 1e-9), np.inf, 5.0, np.inf] + ([0.99999] if fit_lam else [])
            p0 = np.clip(p0, lo, hi)
            kw = {} if fit_lam else dict(S1_=S1, S2_=S2)
            try:
                r = optimize.least_squares(lambda p: resid(p, **kw), p0, bounds=(lo, hi), x_scale="jac",
                                           xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=4000)
            except ValueError:
                continue
            if best is None or r.cost < best.cost:
                best = r
            if fit_lam and best is not None:
                break
        if fit_lam and best is not None:
            break
    if best is None:
        raise ValueError("Tissue fit failed from every start")
    p = best.x
    return TissueFit(float(p[0]), float(np.exp(p[1])), float(p[2]), float(p[3]),
                     float(p[4]) if fit_lam else float(lam), float(np.sqrt(2 * best.cost / y.size)))


# ---------------------------------------------------------------------------------------------------------
# multi-power law (Luo et al. 2025)

class MPTerms(NamedTuple):
    """The lr drops seen by each grid step ``t_i`` (rows; zero-padded): ``delta`` (sum of ``eta_{r-1} - eta_r``
    over a bin of steps ``r < t_i``), ``eta`` (lr at the bin's representative step) and ``S = tau(t_i) - tau(r)``."""
    delta: np.ndarray   # (n_grid, m)
    eta: np.ndarray
    S: np.ndarray


def multipower_terms(schedule, grid, *, max_exact: int = 256, n_geo: int = 200, n_lin: int = 64) -> MPTerms:
    """Drop terms of the multi-power law at each grid step ``t``: every step ``1 <= r < t`` when
    ``t <= max_exact``; otherwise bins with edges graded geometrically back from ``t`` (``n_geo``), ``n_lin``
    uniform edges, and 1-step bins at the breakpoints; each bin carries its exact telescoped drop
    ``eta_{a-1} - eta_{b-1}`` and its midpoint as representative step (relative error ~ (bin ratio)^2 / 24)."""
    g = _as_steps(grid, "grid")
    rows = []
    bps = np.array([math.ceil(b) for b in getattr(schedule, "breakpoints", ()) if b > 0], dtype=np.int64)
    for t in g:
        t = int(t)
        if t < 2:
            rows.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
            continue
        if t <= max_exact:
            a = np.arange(1, t, dtype=np.int64)
            rows.append((a, a + 1))
            continue
        back = t - np.round(np.geomspace(1, t - 1, n_geo)).astype(np.int64)
        edges = np.concatenate([[1, t], back, bps, bps + 1, np.round(np.linspace(1, t, n_lin)).astype(np.int64)])
        edges = np.unique(edges[(edges >= 1) & (edges <= t)])
        rows.append((edges[:-1], edges[1:]))
    m = max(1, max(a.size for a, _ in rows))
    A = np.ones((g.size, m), np.int64)
    Bd = np.full((g.size, m), 2, np.int64)                     # padding bins [1, 2) with zero weight
    valid = np.zeros((g.size, m), bool)
    for i, (a, b) in enumerate(rows):
        A[i, :a.size], Bd[i, :a.size], valid[i, :a.size] = a, b, True
    delta = np.where(valid, _lr(schedule, A - 1) - _lr(schedule, Bd - 1), 0.0)
    r = (A + Bd - 1) // 2
    eta = _lr(schedule, r)
    S = intrinsic_time(schedule, g)[:, None] - intrinsic_time(schedule, r)
    return MPTerms(delta, eta, np.where(valid, S, 0.0))


def _mp_drop(C, beta, gamma, terms: MPTerms):
    """``sum_r delta_r [1 - (1 + C eta_r^{-gamma} S_r)^{-beta}]`` per grid row."""
    with np.errstate(divide="ignore", over="ignore"):
        x = C * np.where(terms.eta > 0, terms.eta, 1e-300) ** (-gamma) * terms.S
    G = -np.expm1(-beta * np.log1p(x))
    return np.sum(G * terms.delta, axis=1)


def multipower_law(L0, A, alpha, B, C, beta, gamma, S1, terms: MPTerms, s_w: float = 0.0):
    """``L(t) = L0 + A (S1 + S_W)^{-alpha} - B sum_r (eta_{r-1} - eta_r) [1 - (1 + C eta_r^{-gamma} S_r(t))^{-beta}]``,
    ``S_r(t) = tau(t) - tau(r) = sum_{q=r}^{t-1} eta_q`` over the drops at ``1 <= r < t`` (Luo et al. 2025,
    in 0-based steps: their ``eta_k`` is our ``eta_{k-1}``)."""
    S1 = np.asarray(S1, dtype=np.float64)
    return L0 + A * (S1 + s_w) ** (-alpha) - B * _mp_drop(C, beta, gamma, terms)


class MultiPowerFit(NamedTuple):
    """Fitted multi-power law (Luo et al. 2025); ``rms`` = rms log-loss residual."""
    L0: float
    A: float
    alpha: float
    B: float
    C: float
    beta: float
    gamma: float
    s_w: float
    rms: float

    def predict(self, schedule, *, steps: int, grid=None) -> Prediction:
        g = _grid(_check_steps(steps), grid)
        tau = intrinsic_time(schedule, g)
        loss = np.full(g.shape, np.inf)
        pos = tau + self.s_w > 0
        terms = multipower_terms(schedule, g[pos])
        loss[pos] = multipower_law(*self[:7], tau[pos], terms, self.s_w)
        return Prediction(g, tau, loss)


def fit_multipower(curves, *, fit_from: float = 0.02, s_w: float = 0.0, starts: int = 3) -> MultiPowerFit:
    """Fit the multi-power law on ``curves`` (a constant run plus decayed runs): least squares on ``log L`` over
    steps ``>= fit_from * horizon``; ``A, B, C`` fitted in log; bounds ``0 <= L0 < min L``, ``0 < alpha <= 5``,
    ``0 < beta <= 20`` (large beta: the exponential limit), ``0 <= gamma <= 3``; ``S_W`` fixed. Starts: a grid over
    ``(alpha, C, beta, gamma)`` with ``(L0, A, B)`` from weighted linear least squares (variable projection),
    the best ``starts`` of them refined.
    """
    data = _curves(curves)
    wins = [_window(d, fit_from) for d in data]
    y = np.concatenate([lo for _, lo in wins])
    Lmin = y.min()
    blocks = [(intrinsic_time(d.schedule, st), multipower_terms(d.schedule, st)) for d, (st, _) in zip(data, wins)]
    if any(np.any(tau + s_w <= 0) for tau, _ in blocks):
        raise ValueError("every fitted step needs a positive intrinsic time")
    S1 = np.concatenate([tau for tau, _ in blocks]) + s_w
    eta_pk = max(float(np.max(b[1].eta)) if b[1].eta.size else 0.0 for b in blocks) or \
        max(float(_lr(d.schedule, 0)) for d in data)

    def drops(C, be, ga):
        return np.concatenate([_mp_drop(C, be, ga, tm) for _, tm in blocks])

    def resid(p):
        L0, lA, al, lB, lC, be, ga = p
        return _safe_log(L0 + np.exp(lA) * S1 ** (-al) - np.exp(lB) * drops(np.exp(lC), be, ga)) - np.log(y)

    lo = [0.0, -60.0, 1e-4, -60.0, -60.0, 1e-3, 0.0]
    hi = [Lmin * (1 - 1e-9), 60.0, 5.0, 60.0, 60.0, 20.0, 3.0]
    cands = []
    for al in (0.3, 0.6, 1.0, 1.5):
        for lC in np.log(np.array([0.01, 1.0, 100.0]) / eta_pk):
            for be in (0.3, 0.7):
                for ga in (0.0, 0.5):
                    D = drops(np.exp(lC), be, ga)
                    M = np.stack([np.ones_like(y), S1 ** (-al), -D], axis=1) / y[:, None]
                    (L0, A, B), *_ = np.linalg.lstsq(M, np.ones_like(y), rcond=None)
                    p = np.clip([L0, np.log(max(A, 1e-300)), al, np.log(max(B, 1e-300)), lC, be, ga], lo, hi)
                    cands.append((float(np.sum(resid(p) ** 2)), p))
    cands.sort(key=lambda c: c[0])
    best = None
    for _, p0 in cands[:starts]:
        r = optimize.least_squares(resid, p0, bounds=(lo, hi), x_scale="jac", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                                   max_nfev=2000)
        if best is None or r.cost < best.cost:
            best = r
    L0, lA, al, lB, lC, be, ga = best.x
    return MultiPowerFit(float(L0), float(np.exp(lA)), float(al), float(np.exp(lB)), float(np.exp(lC)), float(be),
                         float(ga), float(s_w), float(np.sqrt(2 * best.cost / y.size)))


# ---------------------------------------------------------------------------------------------------------
# errors against the reference

class ErrorRow(NamedTuple):
    schedule: str
    predictor: str
    max_rel: float      # max over grid steps >= from_step of |pred - ref| / ref
    final_rel: float    # at the last step
    argmax_step: int


def theory_predictors(spectrum: Spectrum, *, batch: int = 1, alpha: Optional[float] = None,
                      beta: Optional[float] = None, solver: Optional[Callable] = None) -> Dict[str, Callable]:
    """The analytic predictors bound to a spectrum: ``noise-ode``, ``adiabatic`` (Qiu's rule),
    ``adiabatic-eq`` (the equilibrium rule), ``fsl-spectral`` and, when
    ``alpha, beta`` are given, ``fsl-powerlaw``. Each is ``f(schedule, *, steps, grid) -> Prediction``."""
    out = {
        "noise-ode": lambda s, *, steps, grid=None: noise_ode(spectrum, s, steps=steps, batch=batch, grid=grid),
        "adiabatic": lambda s, *, steps, grid=None: adiabatic(spectrum, s, steps=steps, batch=batch, grid=grid,
                                                             solver=solver),
        "adiabatic-eq": lambda s, *, steps, grid=None: adiabatic(spectrum, s, steps=steps, batch=batch, grid=grid,
                                                                rule="equilibrium", solver=solver),
        "fsl-spectral": lambda s, *, steps, grid=None: fsl(spectrum, s, steps=steps, batch=batch, grid=grid,
                                                          kind="spectral"),
    }
    if alpha is not None and beta is not None:
        out["fsl-powerlaw"] = lambda s, *, steps, grid=None: fsl(spectrum, s, steps=steps, batch=batch, grid=grid,
                                                                alpha=alpha, beta=beta)
    return out


def relative_errors(pred, ref, steps, *, from_step: int = 1):
    """``(max, final, argmax step)`` of ``|pred - ref| / ref`` over grid steps ``>= from_step``."""
    pred, ref, steps = (np.asarray(x) for x in (pred, ref, steps))
    keep = steps >= from_step
    if not keep.any():
        raise ValueError(f"from_step={from_step} is past the last grid step {steps[-1]}")
    rel = np.abs(pred[keep] - ref[keep]) / ref[keep]
    if not np.all(np.isfinite(rel)):
        rel = np.where(np.isfinite(rel), rel, np.inf)
    i = int(np.argmax(rel))
    return float(rel.max()), float(rel[-1]), int(steps[keep][i])


def compare(spectrum: Spectrum, schedules: Mapping[str, Callable], predictors: Mapping[str, Callable], *,
            steps: int, batch: int = 1, grid=None, solver: Optional[Callable] = None,
            from_step: int = 1) -> list:
    """Max and final relative errors of every predictor on every schedule against the exact reference.

    ``predictors``: name -> ``f(schedule, *, steps, grid)`` returning a :class:`Prediction` or losses on the grid
    (e.g. :func:`theory_predictors`, ``fit.predict``). Returns a list of :class:`ErrorRow`.
    """
    steps = _check_steps(steps)
    g = _grid(steps, grid)
    rows = []
    for sname, s in schedules.items():
        ref = reference(spectrum, s, steps=steps, batch=batch, grid=g, solver=solver).loss
        for pname, f in predictors.items():
            out = f(s, steps=steps, grid=g)
            rows.append(ErrorRow(sname, pname, *relative_errors(getattr(out, "loss", out), ref, g,
                                                                from_step=from_step)))
    return rows
