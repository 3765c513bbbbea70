"""Power sums behind the PLRF deterministic equivalent, and the solver for its fixed point.

Everything reduces to one family of sums over the data spectrum ``lambda_j = j^{-2 alpha}`` (j = 1..v):

    Phi_s(q) = sum_{j<=v} j^{-s} / (1 - q j^{2 alpha})          (q complex, off the poles q = lambda_j)

With ``q = z / m(z)`` the fixed point of the resolvent equivalent (see ``theory.deterministic``) reads
``m = 1 - Phi_0(q) / d``, i.e. ``z = q (1 - Phi_0(q) / d)``: ``z(q)`` is explicit, and solving the
fixed point is inverting it (Newton on ``q``).

Summation (O(J + quadrature nodes) per q, whatever v, including v = inf):
  * j <= J explicitly;
  * j > J: the summand ``f(x) = x^{-s} / (1 - q x^{2a})`` has one pole ``p = q^{-1/(2a)}`` near the positive
    axis (it sits within distance O(1) of the integers when z is near an isolated eigenvalue). Its pole part
    ``r/(x - p)`` (``r = -p^{1-s}/(2a)``) is summed exactly with digamma functions; the smooth remainder g by
    the midpoint Euler-Maclaurin formula ``sum_{j>J} g(j) = int_{J+1/2} g + g'(J+1/2)/24 - 7 g'''(J+1/2)/5760``
    (plus the mirror terms at v + 1/2), whose integral uses Gauss-Legendre panels in ``log x`` (a Taylor form
    of g next to the removed pole) and, for v = inf, the convergent large-x series beyond ``X1 = 30 |p|``.
"""
from __future__ import annotations

import math

import numpy as np

# ------------------------------------------------------------------------------------------------
# complex digamma / trigamma (vectorized; scipy has no complex polygamma)

_PSI_C = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12)
_PSI1_C = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6)
_SHIFT = 10


def _cot_pi(w):
    """cot(pi w), overflow-free for large |Im w| (w reduced by its nearest integer first)."""
    w = w - np.round(w.real)
    up = w.imag >= 0
    E = np.exp(np.where(up, 2j, -2j) * np.pi * w)          # |E| <= 1
    return np.where(up, -1j, 1j) * (1 + E) / (1 - E)


def _csc2_pi(w):
    """1 / sin^2(pi w), overflow-free."""
    w = w - np.round(w.real)
    up = w.imag >= 0
    E = np.exp(np.where(up, 2j, -2j) * np.pi * w)
    return -4 * E / (1 - E) ** 2


def digamma(w):
    """psi(w) for complex arrays: reflection for Re w < 1/2, shift by 10, asymptotic series (|err| ~ 1e-15)."""
    w = np.asarray(w, dtype=np.complex128)
    refl = w.real < 0.5
    x = np.where(refl, 1 - w, w)
    acc = np.zeros_like(x)
    for k in range(_SHIFT):
        acc -= 1 / (x + k)
    x = x + _SHIFT
    x2 = 1 / (x * x)
    ser = np.zeros_like(x)
    for c in reversed(_PSI_C):
        ser = (ser + c) * x2
    out = np.log(x) - 0.5 / x - ser + acc
    if np.any(refl):
        out = np.where(refl, out - np.pi * _cot_pi(np.where(refl, w, 0.5)), out)
    return out


def trigamma(w):
    """psi'(w) for complex arrays (reflection, shift, asymptotic series)."""
    w = np.asarray(w, dtype=np.complex128)
    refl = w.real < 0.5
    x = np.where(refl, 1 - w, w)
    acc = np.zeros_like(x)
    for k in range(_SHIFT):
        acc += 1 / (x + k) ** 2
    x = x + _SHIFT
    ix = 1 / x
    x2 = ix * ix
    ser = np.zeros_like(x)
    for c in reversed(_PSI1_C):
        ser = (ser + c) * x2
    out = ix + 0.5 * x2 + ser * ix + acc
    if np.any(refl):
        out = np.where(refl, np.pi ** 2 * _csc2_pi(np.where(refl, w, 0.5)) - out, out)
    return out


# ------------------------------------------------------------------------------------------------
# Gauss-Legendre panels in log x

_GL_N = 8
_ALT = 6             # extra explicit terms when a pole sits next to an Euler-Maclaurin endpoint
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_GL_N)


def _log_panels(x0: float, x1: float, per_decade: float):
    """Nodes and weights for int_{x0}^{x1} g(x) dx, Gauss-Legendre panels uniform in log x."""
    L = math.log(x1 / x0)
    n = max(1, math.ceil(L / math.log(10) * per_decade))
    edges = math.log(x0) + L * np.arange(n + 1) / n
    mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * (edges[1:] - edges[:-1])
    u = (mid[:, None] + half[:, None] * _GL_X[None, :]).ravel()
    x = np.exp(u)
    return x, (half[:, None] * _GL_W[None, :]).ravel() * x


class PowerSums:
    """Evaluator of ``Phi_s(q) = sum_{j<=v} j^{-s} / (1 - q j^{2a})`` and ``dPhi_s/dq`` (v may be inf).

    ``a2 = 2 alpha``; ``v = None`` means v = inf (needs a2 + s > 1). ``J`` explicit terms, then the tail as
    described in the module docstring. Accurate to ~1e-10 relative (checked against direct sums in tests).
    """

    def __init__(self, alpha: float, v=None, *, J: int = 48, per_decade: float = 4.0, chunk: int = 2048):
        self.a2 = 2.0 * float(alpha)
        self.v = None if v is None else int(v)
        self.J = int(J) if self.v is None else min(int(J), self.v)
        self.per_decade = per_decade
        self.chunk = chunk
        j = np.arange(1, self.J + 1, dtype=np.float64)
        self._j = j
        self._ja = j ** self.a2
        self.tail = self.v is None or self.v > self.J
        self.X0 = self.J + 0.5
        if self.v is not None and self.tail:
            self._fin_nodes = _log_panels(self.X0, self.v + 0.5, per_decade)

    # -------------------------------------------------------------------------------------------
    def __call__(self, q, s: float = 0.0, deriv: bool = False):
        """``Phi_s(q)`` (and ``dPhi_s/dq`` when ``deriv``), complex arrays of q's shape."""
        q = np.asarray(q, dtype=np.complex128)
        shape = q.shape
        q = q.ravel()
        out = np.empty_like(q)
        dout = np.empty_like(q) if deriv else None
        for lo in range(0, q.size, self.chunk):
            sl = slice(lo, lo + self.chunk)
            r = self._eval_safe(q[sl], float(s), deriv)
            if deriv:
                out[sl], dout[sl] = r
            else:
                out[sl] = r
        if deriv:
            return out.reshape(shape), dout.reshape(shape)
        return out.reshape(shape)

    def _eval_safe(self, q, s, deriv):
        """``_eval``, except for q whose pole p sits within 2 of an Euler-Maclaurin endpoint (J + 1/2 or
        v + 1/2): those use J + 6 explicit terms, or v + 6 terms minus the six extra ones."""
        if not self.tail:
            return self._eval(q, s, deriv)
        p = np.exp(-np.log(q) / self.a2)
        nearJ = np.abs(p - self.X0) < 2.0
        nearV = np.zeros_like(nearJ) if self.v is None else np.abs(p - (self.v + 0.5)) < 2.0
        if not (np.any(nearJ) or np.any(nearV)):
            return self._eval(q, s, deriv)
        ok = ~(nearJ | nearV)
        res = self._eval(np.where(ok, q, -1.0), s, deriv)
        res = list(res) if deriv else [res]
        if np.any(nearJ):
            if getattr(self, "_altJ", None) is None:
                self._altJ = PowerSums(self.a2 / 2, self.v, J=self.J + _ALT, per_decade=self.per_decade)
            alt = self._altJ._eval(q[nearJ], s, deriv)
            alt = list(alt) if deriv else [alt]
            for k in range(len(res)):
                res[k][nearJ] = alt[k]
        if np.any(nearV):
            if getattr(self, "_altV", None) is None:
                self._altV = PowerSums(self.a2 / 2, self.v + _ALT, J=self.J, per_decade=self.per_decade)
            qv = q[nearV]
            alt = self._altV._eval(qv, s, deriv)
            alt = list(alt) if deriv else [alt]
            jx = np.arange(self.v + 1, self.v + _ALT + 1, dtype=np.float64)
            u = 1.0 - qv[:, None] * jx[None, :] ** self.a2
            alt[0] = alt[0] - np.sum(jx ** -s / u, axis=1)
            if deriv:
                alt[1] = alt[1] - np.sum(jx ** (self.a2 - s) / (u * u), axis=1)
            for k in range(len(res)):
                res[k][nearV] = alt[k]
        return tuple(res) if deriv else res[0]

    def _eval(self, q, s, deriv):
        a2 = self.a2
        js = self._j ** (-s)
        u = 1.0 - q[:, None] * self._ja[None, :]
        phi = np.sum(js / u, axis=1)
        dphi = np.sum(js * self._ja / (u * u), axis=1) if deriv else None
        if not self.tail:
            return (phi, dphi) if deriv else phi
        J, X0 = self.J, self.X0
        logq = np.log(q)
        p = np.exp(-logq / a2)
        sub = np.abs(logq.imag) < 0.5 * np.pi * a2          # genuine pole with Re p > 0
        if self.v is not None:
            V0 = self.v + 0.5
            sub &= np.abs(p) < 4 * V0
        r = np.where(sub, -np.exp((1 - s) * np.log(p)) / a2, 0)
        p_q = -p / (a2 * q)
        r_q = -(1 - s) * r / (a2 * q)
        c = float(J + 1)
        # exact sums of the pole part over j = J+1..v
        psiJ = digamma(np.where(sub, J + 1 - p, 1.0))
        if self.v is None:
            psi_far = _digamma_real(J + 1 + c)
            S_h = r * (psi_far - psiJ)
        else:
            psiV = digamma(np.where(sub, self.v + 1 - p, 1.0))
            S_h = r * (psiV - psiJ)
        if deriv:
            tJ = trigamma(np.where(sub, J + 1 - p, 1.0))
            if self.v is None:
                dS_h = r_q * (psi_far - psiJ) + r * tJ * p_q
            else:
                tV = trigamma(np.where(sub, self.v + 1 - p, 1.0))
                dS_h = r_q * (psiV - psiJ) + r * p_q * (tJ - tV)
        # quadrature of the smooth remainder g = f - h
        if self.v is None:
            pmax = float(np.max(np.abs(p))) if p.size else 1.0
            X1 = max(30.0 * pmax, 30.0 * X0)

            x, wq = _log_panels(X0, X1, self.per_decade)
        else:
            x, wq = self._fin_nodes
        xa = x ** a2
        xs = x ** (-s)
        U = 1.0 - q[:, None] * xa[None, :]
        dxp = x[None, :] - p[:, None]
        f = xs / U
        h = r[:, None] / dxp
        if self.v is None:
            h = h - r[:, None] / (x[None, :] + c)
        g = f - h
        e = dxp / p[:, None]
        near = sub[:, None] & (np.abs(e) < 1e-4)      # f and h cancel to O(1) next to the pole: Taylor
        if np.any(near):
            c2 = -s - (a2 - 1) / 2
            c3 = s * (s + 1) / 2 - (a2 - 1) * (a2 - 2) / 6 - c2 * (a2 - 1) / 2
            pms = np.broadcast_to((p ** (-s) / a2)[:, None], near.shape)[near]
            g[near] = -pms * (c2 + c3 * e[near])
            if self.v is None:
                g[near] += (np.broadcast_to(r[:, None], near.shape) / (x[None, :] + c))[near]
        I = (g * wq).sum(axis=1)          # (not @: BLAS threads stall on a busy machine)
        if deriv:
            fq = (xs * xa) / (U * U)
            hq = r_q[:, None] / dxp + (r * p_q)[:, None] / (dxp * dxp)
            if self.v is None:
                hq = hq - r_q[:, None] / (x[None, :] + c)
            gq = fq - hq
            if np.any(near):
                pq_ = np.broadcast_to((p_q * p ** (-s - 1) / a2 * (s * c2 + c3))[:, None], near.shape)[near]
                gq[near] = pq_
                if self.v is None:
                    gq[near] += (np.broadcast_to(r_q[:, None], near.shape) / (x[None, :] + c))[near]
            dI = (gq * wq).sum(axis=1)
        # Euler-Maclaurin endpoint terms and the analytic far tail
        cc = c if self.v is None else None
        em = self._em(X0, q, p, r, s, cc)
        if deriv:
            dem = self._em(X0, q, p, r, s, cc, dq=(p_q, r_q))
        if self.v is None:
            I += self._far_tail(q, s, X1) - r * np.log((X1 + c) / (X1 - p))
            if deriv:
                dI += self._far_tail(q, s, X1, deriv=True) - r_q * np.log((X1 + c) / (X1 - p)) - r * p_q / (X1 - p)
        else:
            em -= self._em(V0, q, p, r, s, None)
            if deriv:
                dem -= self._em(V0, q, p, r, s, None, dq=(p_q, r_q))
        phi = phi + S_h + I + em
        if deriv:
            return phi, dphi + dS_h + dI + dem
        return phi

    def _em(self, x, q, p, r, s, c, dq=None):
        """Midpoint Euler-Maclaurin endpoint term ``g'(x)/24 - 7 g'''(x)/5760`` (g''' by differences of g')."""
        g0 = self._gprime(x, q, p, r, s, c, dq)
        g3 = self._gprime(x + 1, q, p, r, s, c, dq) - 2 * g0 + self._gprime(x - 1, q, p, r, s, c, dq)
        return g0 / 24 - 7 * g3 / 5760

    def _gprime(self, x, q, p, r, s, c, dq=None):
        """d/dx of the remainder g = f - h at the real point x (its q-derivative when ``dq = (p_q, r_q)``)."""
        a2 = self.a2
        xa = x ** a2
        U = 1.0 - q * xa
        if dq is None:
            fp = x ** (-s - 1) * (-s / U + a2 * q * xa / (U * U))
            hp = -r / (x - p) ** 2
            if c is not None:
                hp = hp + r / (x + c) ** 2
            return fp - hp
        p_q, r_q = dq
        fp = x ** (-s - 1) * xa * ((a2 - s) / (U * U) + 2 * a2 * q * xa / (U * U * U))
        hp = -r_q / (x - p) ** 2 - 2 * r * p_q / (x - p) ** 3
        if c is not None:
            hp = hp + r_q / (x + c) ** 2
        return fp - hp

    def _far_tail(self, q, s, X1, deriv=False):
        """int_{X1}^inf x^{-s}/(1 - q x^{2a}) dx = -sum_k q^{-k-1} X1^{1-s-2a(k+1)} / (s + 2a(k+1) - 1)."""
        a2 = self.a2
        iq = 1.0 / q
        t = iq / X1 ** a2                      # |t| <= 30^{-a2}
        nterm = max(4, math.ceil(17 / (a2 * math.log10(30.0))) + 1)
        out = np.zeros_like(q)
        tk = np.ones_like(q)
        for k in range(nterm):
            tk = tk * t
            coef = X1 ** (1 - s) / (s + a2 * (k + 1) - 1)
            if deriv:
                out += (k + 1) * tk * iq * coef
            else:
                out -= tk * coef
        return out


def _digamma_real(x: float) -> float:
    from scipy.special import digamma as _dg
    return float(_dg(x))


# ------------------------------------------------------------------------------------------------
# the fixed point: z = q (1 - Phi_0(q)/d), solved for q by Newton with continuation in Im z

def z_of_q(ps: PowerSums, d: float, q):
    """``z(q) = q (1 - Phi_0(q)/d)`` and ``z'(q) = 1 - Phi_0/d - q Phi_0'/d`` (explicit inverse of q(z))."""
    phi, dphi = ps(q, 0.0, deriv=True)
    return q * (1 - phi / d), 1 - phi / d - q * dphi / d


def newton_q(ps: PowerSums, d: float, z, q0, *, tol: float = 1e-12, maxit: int = 12):
    """Newton on ``H(q) = q (1 - Phi_0(q)/d) - z`` from ``q0``; steps that leave the closed upper half plane
    are halved (the physical root has Im q >= 0 when Im z >= 0). Converged when ``|step| <= tol |q|``, or
    when below ``1e-9 |q|`` the steps stop shrinking (the noise floor of Phi). Returns (q, converged)."""
    z = np.asarray(z, dtype=np.complex128)
    q = np.array(q0, dtype=np.complex128)
    done = np.zeros(q.shape, dtype=bool)
    act = np.arange(q.size)
    zf, qf = z.ravel(), q.ravel()
    donef = done.ravel()
    prev = np.full(qf.shape, np.inf)
    for _ in range(maxit):
        if act.size == 0:
            break
        qa, za = qf[act], zf[act]
        zq, dz = z_of_q(ps, d, qa)
        step = (zq - za) / dz
        qn = qa - step
        for _h in range(6):                       # stay in the closed upper half plane
            bad = qn.imag < -1e-12 * np.abs(qn)
            if not np.any(bad):
                break
            step = np.where(bad, 0.5 * step, step)
            qn = qa - step
        ok = np.isfinite(qn)
        qf[act] = np.where(ok, qn, qa)
        ast = np.abs(step)
        conv = ok & ((ast <= tol * np.abs(qn)) | ((ast <= 1e-9 * np.abs(qn)) & (ast > 0.3 * prev[act])))
        prev[act] = ast
        donef[act[conv]] = True
        act = act[~conv & ok]
    return qf.reshape(q.shape), donef.reshape(q.shape)


def q_at(ps: PowerSums, d: float, z, *, scale: float, per_decade: float = 4.0, y_floor: float = 1e-10,
         slope: float = 1.0):
    """``q(z) = z / m(z)`` on the physical sheet for ``Im z >= 0``, by continuation in Im z.

    A point with ``x > 0`` and ``y < slope x`` starts on the ray ``t (1 + i slope)`` (solved once, sequentially
    from ``|z| = 30 scale`` where m ~ 1, 8 points per decade, and interpolated); other points start at
    ``x + i max(30 scale, 2y)``. Each then descends its vertical line geometrically (``per_decade`` steps per
    decade, linear extrapolation of m in log y as predictor, Newton corrector, failed steps split) down to
    ``max(y, y_floor |x|)``, and takes one last Newton step to ``y`` itself (``y = 0``: ``q(x + i0)``).
    """
    z = np.asarray(z, dtype=np.complex128)
    shape = z.shape
    z = z.ravel()
    x, y = z.real, z.imag
    if np.any(y < 0):
        raise ValueError("q_at needs Im z >= 0")
    ray = (x > 0) & (y < slope * x)
    y0 = np.where(ray, slope * x, np.maximum(30.0 * scale, 2 * y))
    z0 = x + 1j * y0
    q0 = np.empty_like(z)
    if np.any(~ray):
        q0[~ray] = _advance(ps, d, z0[~ray], z0[~ray], z0[~ray], z0[~ray].copy())
    if np.any(ray):
        q0[ray] = _ray_start(ps, d, x[ray], slope, scale)
    y_end = np.minimum(np.maximum(y, y_floor * np.maximum(np.abs(x), 1e-300)), y0)
    K = max(1, int(math.ceil(per_decade * float(np.max(np.log10(y0 / y_end))))))
    zc, q = z0, q0
    m_prev = m_cur = zc / q
    lt, le = np.log(y0), np.log(y_end)
    for k in range(1, K + 1):
        zk = x + 1j * np.exp(lt + (le - lt) * k / K)
        m_pred = 2 * m_cur - m_prev if k > 1 else m_cur
        q_new = _advance(ps, d, zc, q, zk, zk / m_pred)
        m_prev, m_cur = m_cur, zk / q_new
        zc, q = zk, q_new
    fin = y < y_end
    if np.any(fin):
        q[fin] = _advance(ps, d, zc[fin], q[fin], z[fin], q[fin])
    return q.reshape(shape)


def _ray_start(ps, d, x, slope, scale, per_decade=8.0):
    """q at ``x (1 + i slope)`` for x > 0: sequential continuation down the ray, interpolation, Newton."""
    c = 1 + 1j * slope
    t_max = 30.0 * scale / abs(c)
    t_min = min(float(np.min(x)), t_max) / 1.5
    n = max(2, int(math.ceil(per_decade * math.log10(t_max / t_min))) + 1)
    t = np.geomspace(t_max, t_min, n)
    zr = t * c
    qr = np.empty(n, dtype=np.complex128)
    qr[:1] = _advance(ps, d, zr[:1], zr[:1], zr[:1], zr[:1].copy())
    for k in range(1, n):
        mk = zr[k - 1] / qr[k - 1]
        if k > 1:
            mk = 2 * mk - zr[k - 2] / qr[k - 2]
        qr[k:k + 1] = _advance(ps, d, zr[k - 1:k], qr[k - 1:k], zr[k:k + 1], np.array([zr[k] / mk]))
    mr = zr / qr
    lt = np.log(t[::-1])
    lx = np.log(x)
    m0 = np.interp(lx, lt, mr[::-1].real) + 1j * np.interp(lx, lt, mr[::-1].imag)
    near = np.clip(np.searchsorted(-t, -x), 0, n - 1)           # a ray node at or above x (larger t)
    near = np.where(t[near] < x, np.maximum(near - 1, 0), near)
    zx = x * c
    return _advance(ps, d, zr[near], qr[near], zx, zx / m0)


def _advance(ps, d, z0, q0, z1, guess, depth=0):
    """q at z1 from the solution q0 at z0 (Newton from ``guess``; on failure split the step in two)."""
    q1, ok = newton_q(ps, d, z1, guess)
    if np.all(ok):
        return q1
    if depth > 8:
        raise RuntimeError(f"q_at: continuation failed near z = {z1[~ok][:3]}")
    bad = ~ok
    zm = z1[bad].real + 1j * np.sqrt(np.maximum(z0[bad].imag * z1[bad].imag, 0)) if np.all(z1[bad].imag > 0) \
        else 0.5 * (z0[bad] + z1[bad])
    qm = _advance(ps, d, z0[bad], q0[bad], zm, q0[bad], depth + 1)
    q1[bad] = _advance(ps, d, zm, qm, z1[bad], qm, depth + 1)
    return q1
