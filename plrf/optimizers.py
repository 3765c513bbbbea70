"""Linear optimizers as small per-mode linear systems: one description from which every simulator, the exact
moment recursion, the log-time solver and the stability rules are derived.

In K's eigenbasis with Gaussian features ``x~_k = sqrt(lam_k) z_k`` a batch gradient at the evaluation point
``p`` is ``g_k = lam_k (p_k - theta*_k) + xi_k`` with ``E[xi_k] = 0`` and
``E[xi_k^2] = (lam_k P(p) + lam_k^2 (p_k - theta*_k)^2) / B``. An optimizer whose update is linear in the
gradient keeps, per mode, a state ``s_k`` in R^m (iterate, momentum buffer, average, ... written in
coordinates shifted by theta*) with

    p_k - theta*_k = c_eval . s_k                       (where the gradient is taken)
    s_k(t+1) = A(t) s_k(t) + u(t) g_k(t) + f(t) theta*_k (f: constant forcing per unit theta*, e.g. weight decay)
    theta_k - theta*_k = c_out . s_k                    (what a loss is read from; one row per read-out)

``A``, ``u``, ``f``, ``c_eval``, ``c_out`` do not depend on the mode: the mode enters only through
``T_k = A + lam_k u c_eval^T`` (:mod:`plrf.moments`). A :class:`System` holds them at one step; an
:class:`Optimizer` holds the hyper-parameters (traced arrays: a new value does not recompile, ``jax.grad``
flows through them) and a static builder ``hyper-parameter values at step t -> System``.

The momentum family (issue 12; our gradient convention, no factor 2; ``y_{-1} = 0``, ``theta_0 = 0``)::

    y_t       = (1 - Delta_t) y_{t-1} + g1_t g_t
    theta_t+1 = theta_t - g2_t g_t - g3_t y_t - wd_t theta_t        (decoupled weight decay)
    avg_t+1   = (1 - rho_t) avg_t + rho_t theta_t+1,  avg_0 = theta_0  (EMA without debiasing; rho_t = 1/(t+1):
                                                                      the uniform average of theta_1..theta_t+1)

with the gradient at ``p_t = theta_t``. In shifted coordinates ``e = theta - theta*``, ``a = avg - theta*``::

    e' = (1 - wd) e - g3 (1 - Delta) y - (g2 + g3 g1) g - wd theta*
    y' = (1 - Delta) y + g1 g
    a' = (1 - rho) a + rho e'

Named instances (optax meaning of the hyper-parameters):
    sgd(lr)                 g2 = lr                                           (state: e)
    momentum(lr, mu)        optax.sgd(lr, momentum=mu): Delta = 1 - mu, g1 = 1, g3 = lr     (state: e, y)
    nesterov(lr, mu)        optax.sgd(lr, momentum=mu, nesterov=True): g2 = lr, g3 = lr mu, Delta = 1 - mu, g1 = 1
    dana_decaying(g2, g3, delta, kappa)   g1 = 1, g3(t) = g3 (1 + t)^-kappa, Delta(t) = delta / (delta + t)
    dana_constant(g2, g3, delta)          g1 = 1, g3 constant (dimension-adapted: ~ 1/d), Delta(t) = delta/(delta+t)
    gen_momentum(g1=, g2=, g3=, delta=, weight_decay=0, ema=None)  the family itself (numbers or schedules)
    schedule_free(lr, beta) Defazio et al. 2024 = optax.contrib.schedule_free_sgd(lr, b1=beta, weight_lr_power=0):
                            z' = z - lr g(y),  x' = (1 - c) x + c z',  c_t = 1/(t+1),  gradient at
                            y = (1 - beta) z + beta x, loss read at x                       (state: z, x)

DANA (Ferbach, Everett, Gidel, E. Paquette, C. Paquette 2025): the paper's Gen-Mom-SGD is the family above with
``gamma_i = g_i`` and ``Delta(t)``; the authors' public code schedules ``Delta(t) = (1 + t/delta)^-1`` (our
``delta/(delta + t)``; the notes' ``delta/(1 + t)`` has the same large-t law but Delta(0) = delta), DANA-decaying
``g3(t) = g3 (1 + t)^(-1/(2 alpha))`` and DANA-constant ``g3 = g3~ g2 / d``. :func:`dana_defaults` gives the
values of the authors' PLRF comparison script (batch 1: ``g2 = 0.25 / tr K``, ``g3 = 0.125 / tr K``, DANA-constant
``g3 = 0.125 / (tr K d)``, ``delta = 8``, ``kappa = 1/(2 alpha)``). The larger values of one of their notebooks
(``g2 = 0.5/tr K``, ``g3 = 1/tr K``) are refused by :func:`plrf.stability.check_system` at small d: with
``Delta(0) = 1`` the first step is SGD with lr ``g2 + g3 = 1.5/tr K``, past the stochastic edge (kernel norm 5.0 at
d = 1000). Their ODE solves the same moments in
continuous time (``benchmarks/optimizers.py`` compares).

Conventions for users: ``weight_decay=L`` on a named optimizer means ``wd_t = lr_t L`` with ``lr_t`` its
learning-rate argument (decoupled, as in AdamW: the decay never enters the momentum buffer); in
:func:`gen_momentum` the value is ``wd_t`` itself. ``ema=R`` is the rate ``rho = R`` (optax decay ``1 - R``),
started at ``theta_0``, without debiasing; ``ema='uniform'`` is ``rho_t = 1/(t+1)``.

Hyper-parameters: a number (a traced scalar), a 1-d array (per-step values ``v[min(t, len - 1)]``, traced: what
``jax.grad`` over a whole schedule needs) or a schedule closure from :mod:`plrf.schedules` (its shape is static:
the engine maps equal schedules to one compiled program, see :func:`plrf.schedules.canonical`).
A bare schedule passed where an optimizer is accepted means ``sgd(schedule)``.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _x64  # noqa: F401
from .schedules import canonical

NAMES = ("sgd", "momentum", "nesterov", "dana-constant", "dana-decaying", "schedule-free")


class System(NamedTuple):
    """The per-mode linear system at one step (arrays; ``m`` = state size, ``r`` = read-outs)."""
    A: jax.Array        # (m, m) transition without the gradient
    u: jax.Array        # (m,)   gradient injection
    f: jax.Array        # (m,)   forcing per unit theta*_k
    c_eval: jax.Array   # (m,)   gradient point: p_k - theta*_k = c_eval . s_k
    c_out: jax.Array    # (r, m) read-outs (row 0: the iterate the optimizer outputs)
    s0: jax.Array       # (m,)   initial state per unit theta*_k (theta_0 = 0: -1 on iterate-like states)


# ---------------------------------------------------------------------------------------------------------
# hyper-parameters: value (traced) x shape (static)

@jax.tree_util.register_pytree_node_class
class Hyper:
    """One hyper-parameter as a function of the step: ``value(t) * shape(t)``.

    ``value``: a traced scalar, or a traced 1-d array read as ``value[min(t, len - 1)]``; ``shape``: a static
    schedule closure (``None``: 1)."""

    def __init__(self, value, shape: Optional[Callable] = None):
        self.value = value
        self.shape = shape

    def __call__(self, t):
        v = jnp.asarray(self.value, dtype=jnp.float64)
        if v.ndim == 1:
            i = jnp.clip(jnp.floor(jnp.asarray(t, jnp.float64)), 0, v.shape[0] - 1).astype(jnp.int32)
            v = v[i]
        if self.shape is not None:
            v = v * jnp.asarray(self.shape(t), dtype=jnp.float64)
        return v

    def tree_flatten(self):
        return (self.value,), self.shape

    @classmethod
    def tree_unflatten(cls, shape, children):
        return cls(children[0], shape)

    def peak(self, steps: Optional[int] = None) -> float:
        """Largest value over steps ``0..steps`` (eager; for stability checks and messages)."""
        v = np.asarray(self.value, dtype=np.float64)
        if self.shape is None:
            return float(np.max(v))
        p = getattr(self.shape, "peak", None)
        if v.ndim == 0 and p is not None and np.isfinite(p):
            return float(v) * float(p)
        n = (steps if steps is not None else (v.size if v.ndim else 4096))
        at = np.unique(np.concatenate([np.arange(min(n, 4096) + 1), np.linspace(0, n, 4097).round()]))
        return float(np.max(np.asarray(jax.vmap(self)(jnp.asarray(at)))))

    def describe(self):
        v = np.asarray(self.value)
        val = float(v) if v.ndim == 0 else f"array[{v.size}]"
        if self.shape is None:
            return val
        return {"value": val, "schedule": getattr(self.shape, "config", getattr(self.shape, "__name__", "custom"))}


def hyper(name: str, x, *, lo: float = 0.0, hi: float = math.inf) -> Hyper:
    """A validated :class:`Hyper` from a number, a 1-d array or a schedule closure."""
    if isinstance(x, Hyper):
        return x
    if callable(x):
        unit = getattr(x, "unit", None)   # a named schedule: its scale is traced data, its shape static
        if unit is not None:
            return Hyper(np.float64(x.scale), canonical(unit))
        return Hyper(np.float64(1.0), canonical(x))
    if isinstance(x, (bool, np.bool_)) or x is None:
        raise ValueError(f"{name} must be a number, a 1-d array or a schedule, got {x!r}")
    if isinstance(x, jax.core.Tracer):
        return Hyper(x)
    a = np.asarray(x, dtype=np.float64) if not isinstance(x, jax.Array) else np.asarray(x)
    if a.ndim > 1 or a.size == 0:
        raise ValueError(f"{name} must be a number, a 1-d array or a schedule, got an array of shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < lo) or np.any(a > hi):
        rng = f"[{lo}, {hi}]" if math.isfinite(hi) else f">= {lo}"
        raise ValueError(f"{name} must be finite and in {rng}, got {x!r}")
    return Hyper(a.astype(np.float64))   # numpy: stays concrete when built inside jit (zero tests, float(L))


# ---------------------------------------------------------------------------------------------------------
# the optimizer description

@jax.tree_util.register_pytree_node_class
class Optimizer:
    """A linear optimizer: ``name``, hyper-parameters ``h`` (name -> :class:`Hyper`, traced), a static builder
    ``build(values: dict of scalars, t) -> System`` and the names of its state entries and read-outs.

    ``lr_names`` are the hyper-parameters that scale with a learning-rate multiplier (``scale_lr``; the sweeps'
    ``lr_scales``); ``config`` describes it for results files."""

    def __init__(self, name: str, h: Dict[str, Hyper], build: Callable, states: Tuple[str, ...],
                 readouts: Tuple[str, ...], lr_names: Tuple[str, ...], extra: tuple = ()):
        self.name, self.h, self.build = name, dict(h), build
        self.states, self.readouts, self.lr_names, self.extra = tuple(states), tuple(readouts), tuple(lr_names), extra

    # pytree: hyper-parameters are children, everything else static
    def tree_flatten(self):
        keys = tuple(sorted(self.h))
        return tuple(self.h[k] for k in keys), (self.name, keys, self.build, self.states, self.readouts,
                                                self.lr_names, self.extra)

    @classmethod
    def tree_unflatten(cls, aux, children):
        name, keys, build, states, readouts, lr_names, extra = aux
        return cls(name, dict(zip(keys, children)), build, states, readouts, lr_names, extra)

    @property
    def size(self) -> int:
        return len(self.states)

    def values(self, t) -> Dict[str, jax.Array]:
        return {k: v(t) for k, v in self.h.items()}

    def system(self, t) -> System:
        """The per-mode linear system at step ``t`` (traced or not)."""
        return self.build(self.values(t), t, self.extra)

    def scale_lr(self, s) -> "Optimizer":
        """The same optimizer with its learning rates (``lr_names``) multiplied by ``s`` (may be traced)."""
        h = {k: (Hyper(v.value * s, v.shape) if k in self.lr_names else v) for k, v in self.h.items()}
        return Optimizer(self.name, h, self.build, self.states, self.readouts, self.lr_names, self.extra)

    def peak(self, name: str, steps: Optional[int] = None) -> float:
        return self.h[name].peak(steps)

    @property
    def config(self) -> dict:
        return {"name": self.name, **{k: v.describe() for k, v in sorted(self.h.items())}}

    def __repr__(self):
        return f"Optimizer({self.config})"


def _stack(rows):
    return jnp.stack([jnp.stack([jnp.asarray(x, jnp.float64) for x in row]) for row in rows])


def _vec(xs):
    return jnp.stack([jnp.asarray(x, jnp.float64) for x in xs])


def _build_momentum_family(h, t, extra):
    """States ``e`` [, ``y``] [, ``a``] (see the module docstring)."""
    mom, avg = extra
    g2, wd = h["g2"], h["wd"]
    one, zero = jnp.ones((), jnp.float64), jnp.zeros((), jnp.float64)
    if mom:
        g1, g3, D = h["g1"], h["g3"], h["delta"]
        keep = 1.0 - D
        A = [[1.0 - wd, -g3 * keep], [zero, keep]]
        u = [-(g2 + g3 * g1), g1]
        f = [-wd, zero]
    else:
        A, u, f = [[1.0 - wd]], [-g2], [-wd]
    m = len(u)
    if avg:
        rho = h["rho"]
        A = [row + [zero] for row in A] + [[rho * a for a in A[0]] + [1.0 - rho]]
        u = u + [rho * u[0]]
        f = f + [rho * f[0]]
    size = len(u)
    c_eval = [one] + [zero] * (size - 1)
    c_out = [c_eval] + ([[zero] * m + [one]] if avg else [])
    s0 = [-one] + ([zero] if mom else []) + ([-one] if avg else [])
    return System(_stack(A), _vec(u), _vec(f), _vec(c_eval), _stack(c_out), _vec(s0))


def _rho(ema):
    if ema is None:
        return None
    if isinstance(ema, str):
        if ema != "uniform":
            raise ValueError(f"ema must be a rate in (0, 1], 'uniform' or None, got {ema!r}")
        return Hyper(jnp.asarray(1.0, jnp.float64), canonical(_uniform_rate()))
    r = hyper("ema", ema, lo=0.0, hi=1.0)
    if r.shape is None and not isinstance(r.value, jax.core.Tracer) and np.any(np.asarray(r.value) <= 0):
        raise ValueError(f"ema must be a rate in (0, 1], 'uniform' or None, got {ema!r}")
    return r


_UNIFORM = None


def _uniform_rate():
    global _UNIFORM
    if _UNIFORM is None:
        def uniform(t):
            return 1.0 / (jnp.asarray(t, jnp.float64) + 1.0)
        uniform.peak, uniform.config, uniform.key, uniform.name = 1.0, {"name": "uniform"}, ("uniform",), "uniform"
        uniform.breakpoints, uniform.total = (), None
        _UNIFORM = uniform
    return _UNIFORM


def gen_momentum(*, g1=0.0, g2=0.0, g3=0.0, delta=1.0, weight_decay=0.0, ema=None, name: str = "gen-momentum",
                 lr_names=("g2", "g3")) -> Optimizer:
    """The momentum family (module docstring): numbers, 1-d per-step arrays or schedules for every
    coefficient; ``weight_decay`` is ``wd_t`` itself; ``ema`` a rate ``rho``, ``'uniform'`` or None."""
    h = {"g1": hyper("g1", g1), "g2": hyper("g2", g2), "g3": hyper("g3", g3),
         "delta": hyper("delta", delta, lo=0.0, hi=2.0), "wd": hyper("weight_decay", weight_decay, lo=0.0, hi=1.0)}
    mom = not (_is_zero(h["g1"]) or _is_zero(h["g3"]))
    if not mom:
        h = {"g2": h["g2"], "wd": h["wd"]}
    states = ("iterate",) + (("momentum",) if mom else ())
    readouts = ("iterate",)
    rho = _rho(ema)
    if rho is not None:
        h["rho"] = rho
        states, readouts = states + ("average",), readouts + ("average",)
    return Optimizer(name, h, _build_momentum_family, states, readouts,
                     tuple(k for k in lr_names if k in h) + (("wd",) if "wd" in h and "wd" in lr_names else ()),
                     (mom, rho is not None))


def _is_zero(hp: Hyper) -> bool:
    if hp.shape is not None or isinstance(hp.value, jax.core.Tracer):
        return False
    return bool(np.all(np.asarray(hp.value) == 0))


def _wd_of(lr, weight_decay):
    """``wd_t = lr_t L`` for a named optimizer (``lr`` a number, array or schedule)."""
    if callable(weight_decay):
        raise ValueError("weight_decay of a named optimizer must be a number L (wd_t = lr_t L); "
                         "use gen_momentum(weight_decay=schedule) for a schedule of wd_t itself")
    if isinstance(weight_decay, jax.core.Tracer):      # a traced value (jax.grad): no concrete checks
        L = weight_decay
    else:
        L = float(hyper("weight_decay", weight_decay).value)
        if L == 0:
            return 0.0
    h = hyper("lr", lr)
    return Hyper(h.value * L, h.shape)


def sgd(lr, *, weight_decay=0.0, ema=None) -> Optimizer:
    """Plain SGD: ``theta <- theta - lr_t g - lr_t L theta`` (``weight_decay = L``), optional EMA read-out."""
    return gen_momentum(g2=lr, weight_decay=_wd_of(lr, weight_decay), ema=ema, name="sgd",
                        lr_names=("g2", "wd"))


def momentum(lr, mu, *, weight_decay=0.0, ema=None) -> Optimizer:
    """Heavy ball as ``optax.sgd(lr, momentum=mu)``: ``y = mu y + g``, ``theta -= lr y`` (+ ``lr L theta``)."""
    mu = hyper("momentum", mu, lo=0.0, hi=1.0)
    return gen_momentum(g1=1.0, g2=0.0, g3=lr, delta=Hyper(1.0 - mu.value, None) if mu.shape is None else
                        _one_minus(mu), weight_decay=_wd_of(lr, weight_decay), ema=ema, name="momentum",
                        lr_names=("g3", "wd"))


def nesterov(lr, mu, *, weight_decay=0.0, ema=None) -> Optimizer:
    """``optax.sgd(lr, momentum=mu, nesterov=True)``: ``y = mu y + g``, ``theta -= lr (g + mu y)``."""
    mu = hyper("momentum", mu, lo=0.0, hi=1.0)
    if mu.shape is not None:
        raise ValueError("nesterov: momentum must be a number or an array (g3 = lr * momentum)")
    h = hyper("lr", lr)
    return gen_momentum(g1=1.0, g2=h, g3=Hyper(h.value * mu.value, h.shape), delta=Hyper(1.0 - mu.value),
                        weight_decay=_wd_of(lr, weight_decay), ema=ema, name="nesterov", lr_names=("g2", "g3", "wd"))


def _one_minus(h: Hyper) -> Hyper:
    shape = h.shape

    def one_minus(t):
        return 1.0 - h.value * shape(t)
    one_minus.key = ("one-minus", getattr(shape, "key", id(shape)))
    return Hyper(jnp.asarray(1.0, jnp.float64), canonical(one_minus))


def _power_decay(kappa: float, scale: float = 1.0, name: str = "power"):
    """``t -> (1 + t / scale)^-kappa`` as a canonical schedule closure (static exponent)."""
    def decay(t):
        return (1.0 + jnp.asarray(t, jnp.float64) / scale) ** (-kappa)
    decay.peak, decay.total, decay.breakpoints, decay.name = 1.0, None, (), name
    decay.config = {"name": name, "kappa": kappa, "scale": scale}
    decay.key = (name, float(kappa), float(scale))
    return canonical(decay)


def _build_dana(h, t, extra):
    """DANA: the momentum family with ``Delta(t) = delta / (delta + t)`` and ``g3(t) = g3 (1+t)^-kappa``."""
    tt = jnp.asarray(t, jnp.float64)
    h = dict(h)
    h["delta"] = h["delta"] / (h["delta"] + tt)
    h["g3"] = h["g3"] * (1.0 + tt) ** (-h["kappa"])
    return _build_momentum_family(h, t, extra)


def _dana(name, g2, g3, delta, kappa, g1, weight_decay, ema):
    if not (isinstance(delta, (int, float, np.integer, np.floating)) and delta > 0 and math.isfinite(delta)):
        raise ValueError(f"delta must be a finite number > 0, got {delta!r}")
    base = gen_momentum(g1=g1, g2=g2, g3=g3, delta=0.5, weight_decay=_wd_of(g2, weight_decay), ema=ema)
    h = dict(base.h)
    h["delta"] = Hyper(jnp.asarray(float(delta), jnp.float64))
    h["kappa"] = hyper("kappa", kappa, lo=0.0)
    return Optimizer(name, h, _build_dana, base.states, base.readouts, ("g2", "g3", "wd"), base.extra)


def dana_decaying(g2, g3, *, delta: float, kappa: float, g1=1.0, weight_decay=0.0, ema=None) -> Optimizer:
    """DANA-decaying: ``g1``, ``g2`` constant (or schedules), ``g3(t) = g3 (1+t)^-kappa``,
    ``Delta(t) = delta/(delta + t)`` (authors' choice ``kappa = 1/(2 alpha)``; :func:`dana_defaults`)."""
    return _dana("dana-decaying", g2, g3, delta, kappa, g1, weight_decay, ema)


def dana_constant(g2, g3, *, delta: float, g1=1.0, weight_decay=0.0, ema=None) -> Optimizer:
    """DANA-constant: ``g3`` constant (dimension-adapted, ~ 1/d), ``Delta(t) = delta/(delta + t)``."""
    return _dana("dana-constant", g2, g3, delta, 0.0, g1, weight_decay, ema)


def dana_defaults(trace: float, d: int, alpha: float, beta: float) -> dict:
    """The authors' comparison-script values for batch 1 (module docstring): ``g2 = 0.25/tr K``,
    ``g3 = 0.125/tr K`` (decaying) or ``0.125/(tr K d)`` (constant), ``delta = 8``, ``kappa = 1/(2 alpha)``.
    ``beta`` is accepted for symmetry (their other notebooks set ``delta = 4 + (alpha + beta)/alpha``)."""
    return {"g2": 0.25 / trace, "g3_decaying": 0.125 / trace, "g3_constant": 0.125 / (trace * d),
            "delta": 8.0, "kappa": 1.0 / (2.0 * alpha)}


def _build_schedule_free(h, t, extra):
    lr, b = h["lr"], h["beta"]
    c = 1.0 / (jnp.asarray(t, jnp.float64) + 1.0)
    zero, one = jnp.zeros((), jnp.float64), jnp.ones((), jnp.float64)
    A = [[one, zero], [c, 1.0 - c]]
    u = [-lr, -c * lr]
    return System(_stack(A), _vec(u), _vec([zero, zero]), _vec([1.0 - b, b]), _stack([[zero, one], [one, zero]]),
                  _vec([-one, -one]))


def schedule_free(lr, beta=0.9) -> Optimizer:
    """Schedule-free SGD (Defazio et al. 2024) with uniform averaging, ``optax.contrib.schedule_free_sgd(lr,
    b1=beta, weight_lr_power=0)``: read-outs ``iterate`` (x, the averaged output) and ``z`` (the SGD sequence)."""
    b = hyper("beta", beta, lo=0.0, hi=1.0)
    if b.shape is None and not isinstance(b.value, jax.core.Tracer) and np.any(np.asarray(b.value) <= 0):
        raise ValueError(f"beta must be in (0, 1], got {beta!r}")
    return Optimizer("schedule-free", {"lr": hyper("lr", lr), "beta": b}, _build_schedule_free, ("z", "x"),
                     ("iterate", "z"), ("lr",))


def as_optimizer(opt_or_schedule) -> Optimizer:
    """An :class:`Optimizer` as it is; a bare schedule closure (or a number) means ``sgd(it)``."""
    if isinstance(opt_or_schedule, Optimizer):
        return opt_or_schedule
    if callable(opt_or_schedule) or isinstance(opt_or_schedule, (int, float, np.floating, np.integer)):
        return sgd(opt_or_schedule)
    raise TypeError(f"expected a plrf.optimizers.Optimizer or a schedule step -> lr, got "
                    f"{type(opt_or_schedule).__name__}")


def schedule_of(opt: Optimizer):
    """The learning-rate schedule of plain SGD without averaging or weight decay (the fast SGD paths), else None."""
    if opt.name != "sgd" or set(opt.h) != {"g2", "wd"} or not _is_zero(opt.h["wd"]):
        return None
    return opt.h["g2"]


def breakpoints(opt: Optimizer) -> Tuple[float, ...]:
    """Steps where some coefficient jumps or kinks (the union of its schedules' ``.breakpoints``)."""
    out = set()
    for hp in opt.h.values():
        out.update(getattr(hp.shape, "breakpoints", ()) if hp.shape is not None else ())
        v = np.asarray(hp.value) if not isinstance(hp.value, jax.core.Tracer) else np.zeros(())
        if v.ndim == 1 and v.size > 1:
            jumps = np.nonzero(np.diff(v))[0] + 1
            if jumps.size <= 64:
                out.update(float(j) for j in jumps)
    return tuple(sorted(out))
