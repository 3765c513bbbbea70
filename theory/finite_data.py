"""Deterministic equivalent of ridge regression on N samples, in the eigenbasis of K.

Features z with population covariance diag(lam) (d modes), labels y = <z, theta*> + eps, Var eps = P* + sigma^2
(the residual orthogonal to the features plus label noise), target weights w_k = lam_k theta*_k^2.
Ridge: theta = argmin (1/N) ||Z theta - y||^2 + ridge ||theta||^2 = (S + ridge I)^{-1} Z^T y / N, S = Z^T Z / N.

Standard anisotropic deterministic equivalent (Marchenko-Pastur self-consistency for the resolvent of S):
  kappa solves  kappa = ridge + (kappa / N) sum_k lam_k / (lam_k + kappa)
  df2 = sum_k lam_k^2 / (lam_k + kappa)^2
  population loss  P = (P* + sigma^2 + kappa^2 sum_k w_k / (lam_k + kappa)^2) / (1 - df2 / N)
  training loss    T = (ridge / kappa)^2 P
(no 1/2 anywhere; P includes the irreducible P* + sigma^2).

Gradient flow and full-batch gradient descent on the N samples (``gd_losses``), theta_0 = 0:
  theta_t = f_t(S) S^+ r,  r = Z^T y / N,  residual filter h_t = 1 - f_t,
  h_t(s) = (1 - eta s)^t (GD, t steps of lr eta)   or   exp(-t s) (gradient flow, time t).
Exactly (in expectation over the label noise; the cross terms vanish),
  population  P(t) = P* + sigma^2 + theta*^T h(S) Sigma h(S) theta* + (sigma_e^2 / N) tr(Sigma f(S)^2 S^+)
  training    T(t) = theta*^T S h(S)^2 theta* + (sigma_e^2 / N) (tr_d h(S)^2 + N - d)
(sigma_e^2 = P* + sigma^2, Sigma = diag(lam); N - d counts the zero eigenvalues of the N x N Gram matrix minus
those of S, where h = 1). Each term is a contour integral phi(S) = (1/2 pi i) oint phi(z) (z - S)^{-1} dz on a
closed contour around the spectrum of S (including 0), evaluated with the deterministic equivalents
  (z - S)^{-1}                ~ (kappa/z) (Sigma + kappa)^{-1},   kappa = -z + (kappa/N) sum lam/(lam + kappa)
  (z1 - S)^{-1} Sigma (z2 - S)^{-1} ~ kappa1 kappa2 / (z1 z2) (Sigma + kappa1)^{-1} Sigma (Sigma + kappa2)^{-1}
                                     / (1 - (1/N) sum lam^2 / ((lam + kappa1)(lam + kappa2)))
(the one-point law for the bilinear forms, the two-point law for the bias term, which needs a double contour
integral; both reduce to the ridge formulas above at z1 = z2 = -ridge). kappa(z) is solved by Newton's method
with continuation along the contour, starting from the real ridge root at z = -delta. The contour is the
boundary of {|z| <= delta} union {delta <= |z| <= X, |arg z| <= pi/4}: two rays with Gauss-Legendre panels in
log|z| (32 nodes per decade), a small arc of radius delta = 0.05 / (eta t_max) (so |h| <= e^0.05 there) and a
large arc of radius X = 1.5 (sqrt(lam_max) + sqrt(tr Sigma / N))^2 beyond the spectrum of S. The quadrature
returns P(0) at t = 0 to < 1e-7 relative, changes by < 1e-9 relative when the nodes are doubled, and its
t -> inf limit equals the ridgeless closed form (ridge_losses) to 1e-6 at N > d and 1.4e-4 at N < d
(tests/test_finite_data.py); the remaining error is the deterministic-equivalent error
itself, O(1/N) relative, measured against exact full-batch GD on sampled (Z, y) in the tests (within the seed
standard error plus 3% at d = 200, N = 100..400). The lr must keep |1 - eta z| bounded on the contour
(eta X <~ 1.4, i.e. about eta <= 1 / ||S||); larger lr is refused.

Any linear optimizer of plrf.optimizers (``full_batch_losses``): started at theta_0 = 0 with zero auxiliary
state, every read-out (iterate, EMA / uniform average, schedule-free's x and z) is theta_t = q_t(S) r with q_t a
polynomial, so the formulas above hold with h_t(z) = 1 - z q_t(z) (``residual_filters``: the optimizer's per-mode
first-moment recursion at the complex eigenvalue z, h_t = -c_out . m_t, m' = (A + z u c_eval^T) m + f, m_0 = s0;
weight decay is the forcing f). The small arc has radius 0.05 / max_t q_t(0). Momentum's stable region is a thin
ellipse around the spectrum (imaginary half-width (1 - mu)/lr), so the rays are narrowed from pi/4 (halving, down
to pi/64) until |h_t| <= 1e4 on the contour and h_t^2, (1 - h_t)^2 are resolved on every panel; the result does
not depend on the contour (doubling the nodes changes it by < 1e-4 relative, 2.5e-5 measured at N = d; P(0) to
1e-6 on the narrowed contour). Agreement with exact full-batch training on sampled (Z, y) (heavy ball, momentum
+ EMA, DANA-decaying, schedule-free; d = 200, N = 100, 400): within 4 seed standard errors plus 3% (at most 3.0
s.e. measured).
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Tuple

import numpy as np
from scipy.optimize import brentq


def kappa(lam, ridge: float, N: int, n=None) -> float:
    """The ridge fixed point; ``n``: multiplicity of each eigenvalue (a binned spectrum), default 1."""
    lam = np.asarray(lam, np.float64)
    n = np.ones_like(lam) if n is None else np.asarray(n, np.float64)
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    if isinstance(N, bool) or int(N) != N or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    f = lambda k: k - ridge - (k / N) * np.sum(n * lam / (lam + k))  # noqa: E731
    if ridge == 0:
        if N >= np.sum(n):
            raise ValueError("ridge = 0 needs N < d (interpolation); use ridge > 0")
        lo = 1e-300
    else:
        lo = ridge
    hi = ridge + np.sum(n * lam) + 1.0
    return brentq(f, lo * (1 + 1e-12), hi, xtol=1e-300, rtol=1e-15, maxiter=500) if f(lo) < 0 else lo


def ridge_losses(lam, w, P_star: float, ridge: float, N: int, noise: float = 0.0, n=None):
    """(population loss, training loss) of ridge on N samples by the deterministic equivalent."""
    lam = np.asarray(lam, np.float64)
    w = np.asarray(w, np.float64)
    n = np.ones_like(lam) if n is None else np.asarray(n, np.float64)
    k = kappa(lam, ridge, N, n)
    df2 = np.sum(n * lam ** 2 / (lam + k) ** 2)
    P = (P_star + noise ** 2 + k ** 2 * np.sum(w / (lam + k) ** 2)) / (1 - df2 / N)
    return P, (ridge / k) ** 2 * P


# ---------------------------------------------------------------------------------------------------------
# gradient flow / full-batch GD in time


def _gl(a, b, n):
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (b - a) * x + 0.5 * (b + a), 0.5 * (b - a) * w


def contour(delta: float, X: float, per_decade: int = 32, arc: int = 48, big: int = 16, phi: float = np.pi / 4):
    """Nodes z and weights dz / (2 pi i) of a counter-clockwise contour around [0, X) (see the module doc)."""
    zs, ws = [], []
    # big arc, upper: psi in [0, phi]
    p, wp = _gl(0.0, phi, big)
    zs.append(X * np.exp(1j * p)); ws.append(1j * X * np.exp(1j * p) * wp)
    # upper ray, inward (u from log X down to log delta)
    dec = np.log10(X / delta)
    n_pan = max(1, int(np.ceil(dec * per_decade / 8)))
    edges = np.linspace(np.log(delta), np.log(X), n_pan + 1)
    us, wu = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        u, w = _gl(a, b, 8)
        us.append(u); wu.append(w)
    u, wu = np.concatenate(us), np.concatenate(wu)
    z = np.exp(u) * np.exp(1j * phi)
    zs.append(z[::-1]); ws.append((-z * wu)[::-1])
    # small arc through -delta: psi in [phi, 2 pi - phi]
    p, wp = _gl(phi, 2 * np.pi - phi, arc)
    zs.append(delta * np.exp(1j * p)); ws.append(1j * delta * np.exp(1j * p) * wp)
    # lower ray, outward
    z = np.exp(u) * np.exp(-1j * phi)
    zs.append(z); ws.append(z * wu)
    # big arc, lower: psi in [-phi, 0]
    p, wp = _gl(-phi, 0.0, big)
    zs.append(X * np.exp(1j * p)); ws.append(1j * X * np.exp(1j * p) * wp)
    z, w = np.concatenate(zs), np.concatenate(ws)
    return z, w / (2j * np.pi)


def kappa_complex(lam, z, N: int, start: int, n=None):
    """kappa(z) at the nodes z (ordered along a closed path), by Newton with continuation from node ``start``
    (a real negative z, where kappa is the real ridge root)."""
    lam = np.asarray(lam, np.float64)
    n = np.ones_like(lam) if n is None else np.asarray(n, np.float64)
    M = z.size
    out = np.empty(M, complex)
    k0 = complex(kappa(lam, -z[start].real, N, n))
    out[start] = k0

    dN = float(np.sum(n)) / N

    def newton(zz, k):
        for _ in range(100):
            # g = k + z - (k/N) sum n lam/(lam+k), written without the cancellation of k against k d/N
            # (N ~ d, z -> 0, where kappa ~ sqrt(|z|)); at d >> N that form cancels instead (k d/N against
            # k^2 sum q / N), and the direct form is used
            q = 1.0 / (lam + k)
            g = (zz + k * (1 - dN) + k * k * np.sum(n * q) / N if dN <= 2
                 else zz + k - k * np.sum(n * lam * q) / N)
            gp = 1 - np.sum(n * (lam * q) ** 2) / N
            dk = g / gp
            k = k - dk
            if abs(dk) <= 1e-13 * abs(k) or abs(g) <= 1e-13 * abs(zz):
                return k
            if not np.isfinite(k):
                break
        return None

    def march(z0, k, z1, depth=0):
        # Newton from the previous node's kappa; on failure, continue along substeps of the segment z0 -> z1
        r = newton(z1, k)
        if r is not None:
            return r
        if depth > 12:
            raise RuntimeError(f"kappa: Newton did not converge at z = {z1}")
        zm = 0.5 * (z0 + z1)
        return march(zm, march(z0, k, zm, depth + 1), z1, depth + 1)

    for direction in (1, -1):
        k = k0
        for step in range(1, M // 2 + 1):
            i = (start + direction * step) % M
            ip = (start + direction * (step - 1)) % M
            k = march(z[ip], k, z[i])
            out[i] = k
    return out


def _filters(times, z, kind, lr):
    t = np.asarray(times, np.float64)[:, None]
    if kind == "gd":
        L = np.log(1 - lr * z.astype(complex))[None, :]
        return np.exp(t * L)
    return np.exp(-t * z[None, :])


class GDLosses(NamedTuple):
    times: np.ndarray
    pop: np.ndarray
    train: np.ndarray
    bias: np.ndarray
    variance: np.ndarray


def _check_problem(lam, w, N, n):
    lam = np.asarray(lam, np.float64)
    w = np.asarray(w, np.float64)
    if lam.ndim != 1 or w.shape != lam.shape or np.any(lam <= 0) or np.any(w < 0):
        raise ValueError("lam must be a 1-d array of positive numbers and w a matching array >= 0")
    if isinstance(N, bool) or int(N) != N or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    n = np.ones_like(lam) if n is None else np.asarray(n, np.float64)
    if n.shape != lam.shape or np.any(n <= 0):
        raise ValueError("n must be an array of multiplicities > 0 matching lam")
    return lam, w, int(N), n


def _outer_radius(lam, N, n):
    """X: the radius of the large arc, beyond the spectrum of S (module doc)."""
    return 1.5 * (np.sqrt(lam.max()) + np.sqrt(np.sum(n * lam) / N)) ** 2


class _DE(NamedTuple):
    """The contour, kappa on it and the deterministic-equivalent kernels every filter shares."""
    z: np.ndarray            # (M,) nodes
    c: np.ndarray            # (M,) weights dz / (2 pi i)
    Bker: np.ndarray         # (M, M) two-point bias kernel
    one_sigma: np.ndarray    # (M,) tr Sigma (z - S)^{-1}
    theta_form: np.ndarray   # (M,) theta*^T (z - S)^{-1} theta*
    trace_form: np.ndarray   # (M,) tr (z - S)^{-1}
    d: float


def _contour_nodes(delta, X, per_decade, phi=np.pi / 4):
    z, c = contour(delta, X, per_decade=per_decade, phi=phi)
    start = int(np.argmin(np.abs(z + delta)))
    z[start] = -delta   # the node nearest -delta is moved onto the real axis: real start of the continuation
    return z, c, start


def _de_setup(lam, w, N, n, z, c, start) -> _DE:
    k = kappa_complex(lam, z, N, start, n)
    V = 1.0 / (lam[None, :] + k[:, None])                               # (M, d)
    pre = k / z                                                         # kappa / z
    num = (V * w) @ V.T
    den = 1.0 - ((V * (n * lam ** 2)) @ V.T) / N
    Bker = pre[:, None] * pre[None, :] * num / den
    one_sigma = pre * (V @ (n * lam))                                   # tr Sigma (z - S)^{-1}
    theta_form = pre * (V @ (w / lam))                                  # theta*^T (z - S)^{-1} theta*
    trace_form = pre * (V @ n)                                          # tr (z - S)^{-1}
    return _DE(z, c, Bker, one_sigma, theta_form, trace_form, float(np.sum(n)))


def _de_losses(H, de: _DE, P_star, noise, N):
    """(pop, train, bias, variance), each (n_t,), of the residual filter H (n_t, M) on the contour nodes: the
    contour formulas of the module docstring, the one implementation behind gd_losses and full_batch_losses."""
    z, c = de.z, de.c
    sig_e2 = float(P_star) + float(noise) ** 2
    A = H * c[None, :]
    bias = np.real(np.einsum("ti,ij,tj->t", A, de.Bker, A))
    F = 1.0 - H
    variance = sig_e2 / N * np.real((F ** 2 / z[None, :]) @ (c * de.one_sigma))
    train = (np.real((z[None, :] * H ** 2) @ (c * de.theta_form))
             + sig_e2 / N * (np.real((H ** 2) @ (c * de.trace_form)) + N - de.d))
    pop = P_star + noise ** 2 + bias + variance
    return pop, train, bias, variance


def gd_losses(lam, w, P_star: float, N: int, times, *, lr: Optional[float] = None, noise: float = 0.0,
              per_decade: int = 32, n=None) -> GDLosses:
    """Population and training loss of full-batch GD (``lr`` given: ``times`` = steps) or gradient flow
    (``lr=None``: ``times`` = continuous time) on N samples, by the deterministic equivalent (module doc).

    Vectorised over ``times`` (one contour, one kappa solve, one M x M bias kernel for all times). ``n``: the
    multiplicity of each eigenvalue (a binned spectrum such as theory.deterministic.deterministic_spectrum, whose
    ``w`` is the total weight of a bin), default 1: with the deterministic spectrum of K this is the two-level
    deterministic equivalent (W and the sample). Any other linear optimizer: :func:`full_batch_losses`."""
    lam, w, N, n = _check_problem(lam, w, N, n)
    times = np.atleast_1d(np.asarray(times, np.float64))
    if np.any(~np.isfinite(times)) or np.any(times < 0):
        raise ValueError("times must be finite and >= 0")
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0 (or None for gradient flow), got {lr!r}")
    X = _outer_radius(lam, N, n)
    tmax = max(float(times.max()), 1.0)
    delta = 0.05 / (tmax * (lr if lr is not None else 1.0))
    delta = min(delta, 1e-3 * X)
    z, c, start = _contour_nodes(delta, X, per_decade)
    if lr is not None:   # |h| on the contour, checked in logs before any exp can overflow
        logmag = float(np.max(times)) * float(np.max(np.log(np.abs(1 - lr * z))))
        if logmag > _LOG_HMAX:
            raise ValueError(f"lr = {lr:.4g} is too large for the contour method: |1 - lr z|^t reaches "
                             f"e^{logmag:.3g} on the contour (need lr <~ 1.4 / {X:.4g})")
    de = _de_setup(lam, w, N, n, z, c, start)
    H = _filters(times, z, "gd" if lr is not None else "gf", lr)     # (n_t, M)
    return GDLosses(times, *_de_losses(H, de, P_star, noise, N))


# ---------------------------------------------------------------------------------------------------------
# any linear optimizer of plrf.optimizers, full batch

_LOG_HMAX = float(np.log(1e4))   # |h_t(z)| allowed on the contour (GD: |1 - lr z|^t <= 1e4)
_RES_TOL = 1e-2                  # Legendre tail of h^2, (1 - h)^2 per panel (its square ~ the quadrature error)
_NARROW = 4                      # the contour's rays narrowed at most to angle pi/4 / 2^4 = pi/64
MAX_STEPPED = 2 ** 20            # steps of the step-by-step filter recursion (scheduled hyper-parameters)


class FullBatchLosses(NamedTuple):
    """Losses of full-batch training with an optimizer; the first five fields are those of the iterate
    (read-out 0), ``*_readouts`` hold every read-out of the optimizer (names in ``readouts``, row 0 = iterate)."""
    times: np.ndarray            # (n_t,) integer steps
    pop: np.ndarray              # (n_t,)
    train: np.ndarray
    bias: np.ndarray
    variance: np.ndarray
    readouts: Tuple[str, ...]
    pop_readouts: np.ndarray     # (r, n_t)
    train_readouts: np.ndarray
    bias_readouts: np.ndarray
    variance_readouts: np.ndarray
    tau: np.ndarray              # (r, n_t) q_t(0) = -h_t'(0): the effective time (GD: lr t)

    def readout(self, name: str):
        """``(pop, train)`` of the read-out ``name`` (e.g. ``'average'``)."""
        if name not in self.readouts:
            raise ValueError(f"readout must be one of {self.readouts}, got {name!r}")
        j = self.readouts.index(name)
        return self.pop_readouts[j], self.train_readouts[j]


def _as_opt(optimizer):
    from plrf.optimizers import Optimizer, as_optimizer
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, (bool, np.bool_)) or not (callable(optimizer) or isinstance(
            optimizer, (int, float, np.integer, np.floating))):
        raise ValueError("optimizer must be a plrf.optimizers.Optimizer, a learning rate lr > 0 or a schedule "
                         f"step -> lr, got {type(optimizer).__name__}")
    if not callable(optimizer) and not (np.isfinite(optimizer) and optimizer > 0):
        raise ValueError(f"optimizer: the learning rate lr must be a finite number > 0, got {optimizer!r}")
    return as_optimizer(optimizer)


def _describe(opt) -> str:
    """The optimizer with its hyper-parameters in the user's names (for error messages)."""
    def v(k, f=lambda x: x):
        hp = opt.h[k]
        val = np.asarray(hp.value)
        s = format(f(float(val)), ".4g") if val.ndim == 0 else f"array[{val.size}]"
        return s if hp.shape is None else f"{s} x {getattr(hp.shape, 'name', 'schedule')}"

    def zero(k):
        hp = opt.h.get(k)
        return hp is None or (hp.shape is None and np.ndim(hp.value) == 0 and float(hp.value) == 0)
    mu = (lambda x: 1.0 - x)
    if opt.name in ("momentum", "nesterov"):
        parts = [f"lr = {v('g3' if opt.name == 'momentum' else 'g2')}",
                 f"momentum = {v('delta', mu) if opt.h['delta'].shape is None else '1 - ' + v('delta')}"]
    elif opt.name == "sgd":
        parts = [f"lr = {v('g2')}"]
    elif opt.name == "schedule-free":
        parts = [f"lr = {v('lr')}", f"beta = {v('beta')}"]
    else:
        parts = [f"{k} = {v(k)}" for k in sorted(opt.h) if k not in ("wd", "rho")]
    parts += [f"{'ema' if k == 'rho' else k} = {v(k)}" for k in ("wd", "rho") if not zero(k)]
    return f"{opt.name} ({', '.join(parts)})"


_CHUNK = 4096


@functools.lru_cache(maxsize=None)
def _systems_jit():
    import jax
    import jax.numpy as jnp

    @jax.jit
    def f(opt, t0):
        sy = jax.vmap(opt.system)(t0 + jnp.arange(_CHUNK, dtype=jnp.float64))
        return sy.A, sy.u, sy.f, sy.c_eval
    return f


def _systems(opt, t0: int):
    """numpy ``(A, u, f, c_eval)`` of steps t0 .. t0 + _CHUNK - 1, stacked on axis 0 (one compiled vmapped
    evaluation per kind of optimizer; hyper-parameter values are traced)."""
    import jax.numpy as jnp
    return tuple(np.asarray(a) for a in _systems_jit()(opt, jnp.asarray(float(t0), jnp.float64)))


def _check_form(opt, A, f, ce, co, s0):
    """theta_t = q_t(S) r needs the unshifted dynamics x = s - s0 theta* free of theta*: A s0 + f = s0, the
    gradient point and every read-out iterate-like (c . s0 = -1)."""
    bad = (np.max(np.abs(np.einsum("tij,j->ti", A, s0) + f - s0[None, :])) > 1e-12
           or np.max(np.abs(ce @ s0 + 1.0)) > 1e-12 or np.max(np.abs(co @ s0 + 1.0)) > 1e-12)
    if bad:
        raise ValueError(f"optimizer {opt.name}: its per-mode system is not of the form theta_t = q_t(S) r "
                         "(A s0 + f = s0, c . s0 = -1); the full-batch contour theory does not apply")


class _FilterTooLarge(ValueError):
    """The residual filter exceeds the allowed size on the contour (full_batch_losses then narrows it)."""


def _too_large(opt, logmag, t, X):
    return _FilterTooLarge(f"{_describe(opt)} is too aggressive for the contour method: the residual filter |h_t(z)| "
                      f"reaches e^{logmag:.3g} on the contour (|z| <= {X:.4g}, step {t}); lower the learning "
                      "rate or the momentum")


def _power_apply(G, v, k: int):
    """``G^k v`` per node (G (M, p, p), v (M, p)) by binary powering."""
    P = G
    while k:
        if k & 1:
            v = np.einsum("mij,mj->mi", P, v)
        k >>= 1
        if k:
            P = P @ P
    return v


def residual_filters(optimizer, z, steps, *, X: Optional[float] = None):
    """The residual filters h_t(z) of full-batch training with ``optimizer`` from theta_0 = 0 (zero auxiliary
    state), for every read-out: ``(H, tau)`` with ``H`` of shape (r, len(steps), len(z)) (complex) and
    ``tau[j, i] = q_t(0) = -h_t'(0)`` (r, len(steps)).

    theta_t^(j) = q_t(S) r with h_t(s) = 1 - s q_t(s): per eigen-direction of S with eigenvalue s the optimizer is
    its per-mode system with eigenvalue s, and in coordinates shifted by the least-squares solution its
    first moment m' = (A + s u c_eval^T) m + f, m_0 = s0 (theta* = 1) gives h_t(s) = -c_out[j] . m_t (the
    unshifted state x = m - s0 is linear in r and starts at 0 because A s0 + f = s0, checked). Evaluated at
    complex s = z, vectorised over the nodes: constant hyper-parameters of the momentum family by binary powering
    of the per-node (m+1) x (m+1) matrix [[A + z u c_eval^T, f], [0, 1]] (any t), otherwise step by step with
    the per-step systems (at most MAX_STEPPED steps). ``X``: when given, |h_t(z)| is checked in logs before any
    overflow (spectral radius of the per-node matrix, or the state's size while stepping) and after (|h| <= 1e4,
    the GD condition |1 - lr z|^t <= 1e4): a ValueError names the optimizer and its hyper-parameters."""
    opt = _as_opt(optimizer)
    z = np.atleast_1d(np.asarray(z, complex))
    steps = np.atleast_1d(np.asarray(steps))
    if steps.ndim != 1 or np.any(~np.isfinite(steps)) or np.any(steps < 0) or np.any(steps != np.round(steps)):
        raise ValueError("steps must be integers >= 0 (full-batch steps)")
    steps = steps.astype(np.int64)
    sys0 = opt.system(0.0)
    s0, co = np.asarray(sys0.s0), np.asarray(sys0.c_out)
    r, ms, M, nt = co.shape[0], s0.size, z.size, steps.size
    order = np.argsort(steps, kind="stable")
    tmax = int(steps.max())
    H = np.empty((r, nt, M), complex)
    tau = np.empty((r, nt))
    from plrf.runners import time_invariant
    if time_invariant(opt):
        A, u, f, ce = (np.asarray(a) for a in (sys0.A, sys0.u, sys0.f, sys0.c_eval))
        _check_form(opt, A[None], f[None], ce[None], co, s0)
        T = A[None] + z[:, None, None] * np.outer(u, ce)[None]
        if X is not None and tmax > 0:
            logmag = tmax * float(np.log(np.max(np.abs(np.linalg.eigvals(T)))))
            if logmag > _LOG_HMAX:
                raise _too_large(opt, logmag, tmax, X)
        G = np.zeros((M, ms + 1, ms + 1), complex)
        G[:, :ms, :ms], G[:, :ms, ms], G[:, ms, ms] = T, f[None, :], 1.0
        G0 = np.zeros((1, ms + 1, ms + 1))               # z = 0, unshifted, r = 1: x' = A x - u
        G0[0, :ms, :ms], G0[0, :ms, ms], G0[0, ms, ms] = A, -u, 1.0
        v = np.concatenate([np.broadcast_to(s0, (M, ms)), np.ones((M, 1))], axis=1).astype(complex)
        v0 = np.zeros((1, ms + 1))
        v0[0, ms] = 1.0
        t = 0
        for i in order:
            k = int(steps[i]) - t
            v, v0, t = _power_apply(G, v, k), _power_apply(G0, v0, k), int(steps[i])
            H[:, i, :] = -(v[:, :ms] @ co.T).T
            tau[:, i] = co @ v0[0, :ms]
    else:
        if tmax > MAX_STEPPED:
            raise ValueError(f"steps: {_describe(opt)} has step-dependent hyper-parameters, computed step by "
                             f"step up to {MAX_STEPPED} steps; got {tmax}")
        m = np.broadcast_to(s0[:, None], (ms, M)).astype(complex)
        x0 = np.zeros(ms)
        at = {}
        for i in order:
            at.setdefault(int(steps[i]), []).append(i)
        for i in at.get(0, []):
            H[:, i, :] = -(co @ m)
            tau[:, i] = co @ x0
        t = 0
        while t < tmax:
            t1 = min(t + _CHUNK, tmax)
            A, u, f, ce = (a[: t1 - t] for a in _systems(opt, t))
            _check_form(opt, A, f, ce, co, s0)
            forced = bool(np.any(f != 0))
            uc = u[:, :, None]
            for k in range(t1 - t):
                m = A[k] @ m + uc[k] * (z * (ce[k] @ m))
                if forced:
                    m += f[k][:, None]
                x0 = A[k] @ x0 - u[k]
                if X is not None and (k & 63) == 63:
                    big = float(np.max(np.abs(m)))
                    if not big < 1e12:
                        raise _too_large(opt, float(np.log(big)), t + k + 1, X)
                for i in at.get(t + k + 1, ()):
                    H[:, i, :] = -(co @ m)
                    tau[:, i] = co @ x0
            t = t1
    if X is not None and nt and M:
        with np.errstate(divide="ignore"):
            logmag = float(np.max(np.log(np.abs(H))))
        if not logmag <= _LOG_HMAX:
            raise _too_large(opt, logmag, tmax, X)
    return H, tau


def _unresolved(H, delta, X, per_decade, big=16) -> float:
    """Resolution of the filters on the lower half of the contour (the upper is its mirror: real coefficients):
    the largest sum of the two highest Legendre coefficients of h^2 and (1 - h)^2 over the 8-node panels of the
    lower ray and the 16-node half of the large arc (the layout of :func:`contour`); ~1e-4 for GD at pi/4, O(1)
    where h_t oscillates with modulus ~1."""
    n_pan = max(1, int(np.ceil(np.log10(X / delta) * per_decade / 8)))
    M = H.shape[-1]
    lo = M - big - 8 * n_pan
    out = 0.0
    for sl, n in ((slice(lo, M - big), 8), (slice(M - big, M), big)):
        x, _ = np.polynomial.legendre.leggauss(n)
        Vi = np.linalg.inv(np.polynomial.legendre.legvander(x, n - 1))
        h = H[..., sl].reshape(H.shape[:-1] + (-1, n))
        for f in (h ** 2, (1 - h) ** 2):
            a = np.einsum("jk,...k->...j", Vi, f)
            out = max(out, float(np.max(np.abs(a[..., -2:]).sum(-1))))
    return out


def full_batch_losses(lam, w, P_star: float, N: int, steps, optimizer, *, noise: float = 0.0,
                      per_decade: int = 32, n=None) -> FullBatchLosses:
    """Population and training loss of full-batch training on N samples with any linear optimizer of
    :mod:`plrf.optimizers` (momentum, Nesterov, DANA, schedule-free, weight decay, EMA / uniform average;
    constant or scheduled hyper-parameters; a bare lr or schedule means ``sgd(it)``), at the integer ``steps``,
    for every read-out of the optimizer, by the deterministic equivalent: the contour formulas of the module
    docstring (shared with :func:`gd_losses`) with the residual filter h_t of :func:`residual_filters` in place
    of (1 - lr z)^t. The small arc has radius 0.05 / max_t q_t(0) (GD: 0.05 / (lr t_max), so |h| <= e^0.05
    there); optimizers whose filter exceeds 1e4 on the contour are refused (ValueError naming them)."""
    lam, w, N, n = _check_problem(lam, w, N, n)
    opt = _as_opt(optimizer)
    steps = np.atleast_1d(np.asarray(steps, np.float64))
    if steps.ndim != 1 or np.any(~np.isfinite(steps)) or np.any(steps < 0) or np.any(steps != np.round(steps)):
        raise ValueError("steps must be integers >= 0 (full-batch steps)")
    X = _outer_radius(lam, N, n)
    # the effective time q_t(0) (a pass at z = 0 only), then the contour and the filters on it
    _, tau = residual_filters(opt, [0.0], np.concatenate([steps, [1.0]]))
    tmax = float(np.max(np.abs(tau)))
    delta = min(0.05 / tmax, 1e-3 * X) if tmax > 0 and np.isfinite(tmax) else 1e-3 * X
    # rays at angle phi = pi/4 as for GD. Momentum's stable region (both roots of the per-step map inside the
    # unit circle) is an ellipse around the spectrum much thinner than GD's disc (imaginary half-width (1 - mu)/lr
    # against 1/lr): where the rays leave it |h_t| grows, and close to its boundary h_t oscillates with modulus
    # ~1 (t turns along the ray), which the nodes cannot resolve. The rays are brought closer to the real axis
    # (phi halved, down to pi/64) until |h_t| <= 1e4 on the contour and h_t^2, (1 - h_t)^2 are resolved on every
    # panel (Legendre tail <= _RES_TOL)
    last = ""
    for k in range(_NARROW + 1):
        phi = np.pi / 4 / 2 ** k
        z, c, start = _contour_nodes(delta, X, per_decade, phi)
        try:
            H, tau = residual_filters(opt, z, steps, X=X)
        except _FilterTooLarge as err:
            last = str(err)
            continue
        res = _unresolved(H, delta, X, per_decade)
        if res <= _RES_TOL:
            break
        last = (f"{_describe(opt)} is too aggressive for the contour method: its residual filter h_t oscillates "
                f"faster on the contour than the quadrature resolves (Legendre tail {res:.2g} > {_RES_TOL:g}); "
                "lower the learning rate or the momentum")
    else:
        raise ValueError(f"{last} (contour rays narrowed down to angle pi/{4 * 2 ** _NARROW})")
    de = _de_setup(lam, w, N, n, z, c, start)
    out = np.array([_de_losses(H[j], de, P_star, noise, N) for j in range(H.shape[0])])   # (r, 4, n_t)
    return FullBatchLosses(steps, out[0, 0], out[0, 1], out[0, 2], out[0, 3], tuple(opt.readouts),
                           out[:, 0], out[:, 1], out[:, 2], out[:, 3], tau)


# ---------------------------------------------------------------------------------------------------------
# effective data of K epochs


def population_gf(lam, w, P_star: float, times, noise: float = 0.0) -> np.ndarray:
    """Population loss of gradient flow on the population loss (infinite data), theta_0 = 0:
    ``P* + sigma^2 + sum_k w_k exp(-2 lam_k t)``; the lr -> 0 limit of one-pass SGD at time t = lr x steps."""
    lam, w = np.asarray(lam, np.float64), np.asarray(w, np.float64)
    t = np.atleast_1d(np.asarray(times, np.float64))
    return P_star + noise ** 2 + np.exp(-2 * np.outer(t, lam)) @ w


def population_gf_time(lam, w, P_star: float, loss: float, noise: float = 0.0) -> float:
    """The time at which population gradient flow reaches ``loss`` (inf if never: loss <= P* + sigma^2)."""
    from scipy.optimize import brentq as _brentq
    floor = P_star + noise ** 2
    P0 = floor + float(np.sum(w))
    if loss >= P0:
        return 0.0
    if loss <= floor * (1 + 1e-12) or loss - floor <= 1e-15 * P0:
        return np.inf
    f = lambda s: float(population_gf(lam, w, P_star, [np.exp(s)], noise)[0]) - loss  # noqa: E731
    lo, hi = np.log(1e-6 / np.max(lam)), np.log(10.0 / np.min(lam))
    while f(hi) > 0:
        hi += 5.0
        if hi > np.log(1e300):
            return np.inf
    return float(np.exp(_brentq(f, lo, hi, xtol=1e-12, rtol=1e-12)))


def effective_data(lam, w, P_star: float, N: int, epochs, *, c: float = 0.5, noise: float = 0.0,
                   per_decade: int = 32):
    """Effective-data multiplier E(K, N) of K epochs on N samples, in the small-lr (gradient-flow) limit.

    SGD with batch 1 and lr ``c / tr Sigma``: one epoch on N samples is gradient-flow time tau_N = c N / tr Sigma,
    K epochs on the stored sample follow gradient flow on the empirical loss to time K tau_N (the mean SGD
    dynamics; the loss L_N(K tau_N) from :func:`gd_losses`), and one pass over n fresh samples follows gradient
    flow on the population loss to time c n / tr Sigma (:func:`population_gf`). E(K, N) = n / N where the
    one-pass loss with n samples equals L_N(K tau_N); E = inf if the one-pass curve never gets that low.
    Returns (E, L_K) arrays over ``epochs``.
    """
    lam, w = np.asarray(lam, np.float64), np.asarray(w, np.float64)
    K = np.atleast_1d(np.asarray(epochs, np.float64))
    if np.any(K <= 0):
        raise ValueError("epochs must be > 0")
    if not (np.isfinite(c) and c > 0):
        raise ValueError(f"c must be a finite number > 0, got {c!r}")
    tau_N = c * N / lam.sum()
    L = gd_losses(lam, w, P_star, N, K * tau_N, noise=noise, per_decade=per_decade).pop
    E = np.array([population_gf_time(lam, w, P_star, l, noise) / tau_N for l in L])
    return E, L


# ---------------------------------------------------------------------------------------------------------
# asymptotic exponents of the data-limited loss (sympy), against Bordelon-Atanasov-Pehlevan 2024


@functools.lru_cache(maxsize=None)
def data_exponents():
    """Exponents of the excess loss of PLRF trained by gradient flow on N samples (lam_j = j^-2alpha,
    w_j = j^-(2alpha+2beta); sympy expressions in alpha, beta), each the decay of one bottleneck with the others
    removed:

    - time t (infinite data): sum_j w_j exp(-2 lam_j t) ~ t^-chi_t, chi_t = (2alpha + 2beta - 1)/(2alpha)
      (the integral over j, substituting u = j^-2alpha t);
    - data N (t -> inf, d -> inf, ridgeless): the deterministic equivalent has kappa ~ N^-2alpha (kappa / N
      sum lam/(lam+kappa) = kappa: the modes above kappa, about kappa^-1/(2alpha) of them, fill the N samples),
      bias kappa^2 sum w/(lam+kappa)^2 ~ kappa^min(chi_t, 2) (the min: the sum converges at j ~ kappa^-1/2alpha
      unless 2beta - 1 > 2alpha, when the first modes dominate, the "saturation" of the DE), so
      chi_N = 2alpha min(chi_t, 2) = min(2alpha + 2beta - 1, 4alpha);
    - model size d (P*, from Paquette et al. 2024, not re-derived here; checked against the local slopes of
      theory.deterministic.p_star in the tests): chi_d = min(2alpha, 2alpha+2beta-1).

    Bordelon, Atanasov, Pehlevan (ICML 2024) use eigenvalues k^-b and target power lam_k (theta*_k)^2 = k^-a:
    the mapping is b = 2alpha, a = 2alpha + 2beta. Their L ~ t^-(a-1)/b and P^-m with m = min(a-1, 2b) are then
    chi_t and chi_N exactly; their model-size exponent N^-m differs from PLRF's chi_d when beta > 1/2 (PLRF
    features are a random projection of an infinite-dimensional x, their P* saturates at d^-2alpha).

    Maloney, Roberts, Sully (2022) take a latent spectrum i^-(1 + alpha_M) and a target isotropic in the latent
    space: PLRF with 2alpha = 1 + alpha_M and beta = 0. Their loss falls as N^-alpha_M with data and as
    d^-alpha_M with features (the N <-> d duality). Here both chi_N and chi_d equal 2alpha + 2beta - 1 (= alpha_M
    at beta = 0) whenever beta <= 1/2; for beta > 1/2 the duality breaks (chi_d = 2alpha < chi_N).
    With label noise sigma^2 > 0 the ridgeless limit overfits; gradient flow stopped at the best time balances the
    bias t^-chi_t against the variance sigma^2 t^(1/2alpha) / N (the modes learned by time t, over N): the best
    time grows as N^(2alpha/(2alpha+2beta)) and the excess as N^-chi_N_noisy, chi_N_noisy =
    (2alpha + 2beta - 1)/(2alpha + 2beta). Lin, Wu, Bartlett (NeurIPS 2025) use a spectrum of degree a and a signal
    of degree b (lam_i theta*_i^2 ~ i^-b), a > b > 1: a = 2alpha, b = 2alpha + 2beta (beta < 0). Their multi-pass
    SGD rate L^((1-b)/a) with L <~ N^(a/b) iterations, i.e. N^((1-b)/b) at the most iterations, is chi_N_noisy,
    and their one-pass rate N^((1-b)/a) is chi_t.
    Returns a dict of sympy expressions (keys chi_t, chi_N, chi_N_noisy, chi_d, bap_a, bap_b, bap_m, bap_t,
    mrs_alpha, lwb_a, lwb_b, lwb_multi, lwb_one, t_best_noisy).
    """
    import sympy as sp
    al, be = sp.symbols("alpha beta", positive=True)
    j, t, u = sp.symbols("j t u", positive=True)
    # time: int_1^inf j^-(2al+2be) exp(-2 j^-2al t) dj, substitute j = (t/u)^(1/2al): a power of t times an
    # integral over u independent of t
    integrand = (j ** (-2 * al - 2 * be)).subs(j, (t / u) ** (1 / (2 * al))) * sp.diff((t / u) ** (1 / (2 * al)), u)
    # at fixed u the integrand is a pure power of t: its exponent is t d/dt log(integrand)
    chi_t = -sp.simplify(t * sp.diff(sp.expand_log(sp.log(integrand), force=True), t))
    chi_N = sp.Min(2 * al * chi_t, 4 * al)
    chi_d = sp.Min(2 * al, 2 * al + 2 * be - 1)
    # noisy labels, best stopping time t = N^tau: bias t^-chi_t = variance t^(1/2al) / N
    tau = sp.Symbol("tau", positive=True)
    t_best = sp.solve(sp.Eq(-chi_t * tau, tau / (2 * al) - 1), tau)[0]
    chi_N_noisy = sp.simplify(chi_t * t_best)
    la, lb = 2 * al, 2 * al + 2 * be
    lwb = dict(lwb_a=la, lwb_b=lb, lwb_multi=(lb - 1) / lb, lwb_one=(lb - 1) / la)
    a, b = 2 * al + 2 * be, 2 * al
    return dict(alpha=al, beta=be, chi_t=sp.simplify(chi_t), chi_N=sp.simplify(chi_N), chi_d=chi_d, bap_a=a,
                bap_b=b, bap_m=sp.Min(a - 1, 2 * b), bap_t=(a - 1) / b, mrs_alpha=2 * al - 1,
                chi_N_noisy=chi_N_noisy, t_best_noisy=sp.simplify(t_best), **lwb)


def exponents(alpha: float, beta: float) -> dict:
    """The exponents of :func:`data_exponents` as floats."""
    e = data_exponents()
    sub = {e["alpha"]: alpha, e["beta"]: beta}
    return {k: float(v.subs(sub)) for k, v in e.items() if k not in ("alpha", "beta")}


# ---------------------------------------------------------------------------------------------------------
# compute-optimal frontier under a data budget (gradient-flow limit)


class DataFrontier(NamedTuple):
    computes: np.ndarray     # (nC,) compute f = d x K x N (batch 1: d B steps)
    ds: np.ndarray           # (nd,) model sizes searched
    loss: np.ndarray         # (nd, nC) population loss of each d at each compute, N samples
    loss_fresh: np.ndarray   # (nd, nC) the same with unlimited fresh data (population gradient flow)
    d_opt: np.ndarray        # (nC,) best d on the grid with N samples
    loss_opt: np.ndarray
    epochs_opt: np.ndarray   # K = f / (d_opt N)
    d_opt_fresh: np.ndarray
    loss_opt_fresh: np.ndarray


@functools.lru_cache(maxsize=64)
def _det_spectrum(alpha: float, beta: float, d: int, v: int):
    """theory.deterministic.deterministic_spectrum, cached (about 1.7 s each, shared by every N of a frontier)."""
    from theory.deterministic import deterministic_spectrum
    return deterministic_spectrum(alpha, beta, d, v=v)


def data_frontier(alpha: float, beta: float, N: int, computes, ds, *, c: float = 0.5, v_ratio: int = 4,
                  noise: float = 0.0) -> DataFrontier:
    """Compute-optimal frontier of PLRF trained on N samples (as many epochs as the compute allows), in the
    small-lr limit: SGD with batch 1 and lr c / tr K for f / d steps is gradient flow to time c f / (d tr K) on
    the empirical loss (:func:`gd_losses`, with the two-level deterministic spectrum of K at each d, v = v_ratio
    d), against the same with unlimited fresh data (population gradient flow); up to one epoch (f <= d N) the
    loss is the fresh-data one. The best d on the grid ``ds`` per compute; the epochs at the optimum
    K = f / (d N) show where repetition stops paying. The proxy's error grows with c (E(1, N) of
    :func:`effective_data` is 0.9 at c = 0.1, 0.7 at c = 0.5 for N = 16)."""
    computes = np.atleast_1d(np.asarray(computes, np.float64))
    ds = np.asarray(ds, np.int64)
    L, Lf = [], []
    for d in ds:
        sp = _det_spectrum(float(alpha), float(beta), int(d), int(v_ratio * d))
        lam, w, n = np.asarray(sp.lam), np.asarray(sp.w), np.asarray(sp.n)
        tr = float(np.sum(n * lam))
        tau = c * computes / (d * tr)
        fresh = population_gf(lam, w, float(sp.P_star), tau, noise)
        reuse = gd_losses(lam, w, float(sp.P_star), N, tau, noise=noise, n=n).pop
        # up to one epoch every sample is fresh: the one-pass loss exactly (the gradient-flow proxy of the
        # empirical loss would overfit a partial epoch)
        L.append(np.where(computes <= d * N, fresh, reuse))
        Lf.append(fresh)
    L, Lf = np.array(L), np.array(Lf)
    i, j = L.argmin(0), Lf.argmin(0)
    cols = np.arange(computes.size)
    return DataFrontier(computes, ds, L, Lf, ds[i], L[i, cols], computes / (ds[i] * N), ds[j], Lf[j, cols])
