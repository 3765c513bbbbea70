"""Learning-rate schedules: closures ``step -> lr`` valid under jit, vmap and scan.

Each factory validates its arguments eagerly and returns a pure function of the (int or float) step that
uses only ``jnp`` operations. The returned closure carries metadata used by the engine and the theory:
``.peak`` (largest lr it takes, for stability checks), ``.total`` (horizon or None), ``.breakpoints``
(steps where the lr jumps or kinks, for adaptive solvers), ``.name`` and ``.config`` (for results files), and
``.key`` (the frozen config, or None for compositions with user closures): :func:`canonical` maps equal
schedules to one object so the engine's compiled programs are reused; ``.scale`` (the factory's learning-rate
argument) and ``.unit`` (the same schedule at scale 1, every lr-valued argument divided by the scale; None for
user closures and joins): an optimizer stores ``scale`` as a traced value and ``unit`` as the static shape, so
the same schedule at another peak learning rate does not recompile.

With ``u = step / total`` clipped to [0, 1]:
    constant           lr = peak
    cosine             lr = floor + (peak - floor) (1 + cos(pi * periods * u)) / 2   (periods = 3: non-monotone)
    linear             lr = end + (peak - end) (1 - u)
    polynomial         lr = end + (peak - end) (1 - u)^power
    one_minus_power    lr = end + (peak - end) (1 - u^power)                     (power = 2: "1 - u^2")
    exponential        lr = peak * 2^(-step / half_life)
    inverse_time       lr = peak / (1 + step / timescale)^power
    step_drops         lr = peak * factors[i] after the i-th boundary fraction  ("8-1-1": 0.8, 0.9; 1/sqrt10, 1/10)
    wsd                constant, then a cooldown over the last fraction c with shape linear (1 - u'),
                       cosine ((1 + cos pi u')/2) or 1-sqrt (1 - sqrt(u')), u' in [0, 1] across the cooldown
    warmup(s, n)       s(step) * min(1, (step + 1) / n)   (linear warmup, composable with any schedule)
    join([s0, s1], [n])  s0(step) for step < n, then s1(step - n)
    from_array(a)      lr = a[min(step, len(a) - 1)]
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np

Schedule = Callable  # step -> lr

WSD_SHAPES = ("linear", "cosine", "1-sqrt")


def _real(x):
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _pos(name, x):
    if not (_real(x) and math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}")
    return float(x)


def _nonneg(name, x, upper=None):
    ok = _real(x) and math.isfinite(x) and x >= 0
    if ok and upper is not None:
        ok = x <= upper
    if not ok:
        rng = f"[0, {upper}]" if upper is not None else ">= 0"
        raise ValueError(f"{name} must be a finite number in {rng}, got {x!r}")
    return float(x)


def _steps(name, n):
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    return int(n)


def _frac(name, x, open_left=True):
    lo_ok = x > 0 if open_left else x >= 0
    if not (_real(x) and math.isfinite(x) and lo_ok and x <= 1):
        raise ValueError(f"{name} must be a fraction in {'(0' if open_left else '[0'}, 1], got {x!r}")
    return float(x)


def _freeze(x):
    """A hashable copy of a config value (numbers, strings, None, tuples/lists, dicts); TypeError otherwise."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, (tuple, list)):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    raise TypeError(type(x).__name__)


def _tag(fn, name, peak, total, breakpoints=(), *, keyed=True, scale=None, unit=None, **config):
    """Attach the metadata. ``scale``: the factory's learning-rate argument (default ``peak``); ``unit``: a thunk
    building the same schedule at ``scale = 1`` (every lr-valued argument divided by ``scale``), or None when the
    schedule is not a multiple of one (user closures, joins): see :attr:`unit` in the module doc."""
    fn.name, fn.peak, fn.total = name, float(peak), total
    fn.scale = float(peak if scale is None else scale)
    fn.unit = None if unit is None else (fn if fn.scale == 1.0 else unit())
    fn.breakpoints = tuple(sorted(float(b) for b in breakpoints))
    fn.config = dict(name=name, peak=float(peak), total=total, **config)
    try:   # the config determines the function: equal keys, equal schedules (see canonical)
        fn.key = _freeze(fn.config) if keyed else None
    except TypeError:
        fn.key = None
    return fn


_INTERNED: dict = {}


def canonical(schedule: Schedule) -> Schedule:
    """The first schedule seen with the same ``.key`` (same factory, same arguments), else ``schedule`` itself.

    The engine's jitted entry points take the schedule as a static argument, hashed by identity; passing the
    canonical object lets an equal schedule built again (a re-run notebook cell, a CLI loop) reuse the compiled
    program instead of recompiling. User closures (no ``.key``) are returned unchanged."""
    key = getattr(schedule, "key", None)
    if key is None:
        return schedule
    return _INTERNED.setdefault(key, schedule)


def _u(step, total):
    return jnp.clip(jnp.asarray(step, dtype=jnp.float64) / total, 0.0, 1.0)


def constant(lr: float) -> Schedule:
    lr = _pos("lr", lr)

    def schedule(step):
        return jnp.full(jnp.shape(step), lr, dtype=jnp.float64)
    return _tag(schedule, "constant", lr, None, unit=lambda: constant(1.0))


def cosine(peak: float, total: int, *, floor: float = 0.0, periods: float = 1.0) -> Schedule:
    peak, total = _pos("peak", peak), _steps("total", total)
    floor = _nonneg("floor", floor, upper=peak)
    periods = _pos("periods", periods)

    def schedule(step):
        return floor + (peak - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * periods * _u(step, total)))
    return _tag(schedule, "cosine", peak, total, (total,), floor=floor, periods=periods,
                unit=lambda: cosine(1.0, total, floor=floor / peak, periods=periods))


def polynomial(peak: float, total: int, *, power: float = 1.0, end: float = 0.0) -> Schedule:
    peak, total = _pos("peak", peak), _steps("total", total)
    power, end = _pos("power", power), _nonneg("end", end, upper=peak)

    def schedule(step):
        return end + (peak - end) * (1.0 - _u(step, total)) ** power
    return _tag(schedule, "polynomial", peak, total, (total,), power=power, end=end,
                unit=lambda: polynomial(1.0, total, power=power, end=end / peak))


def linear(peak: float, total: int, *, end: float = 0.0) -> Schedule:
    s = polynomial(peak, total, power=1.0, end=end)
    return _tag(s, "linear", s.peak, s.total, s.breakpoints, end=end, unit=lambda: linear(1.0, total, end=end / peak))


def one_minus_power(peak: float, total: int, *, power: float = 2.0, end: float = 0.0) -> Schedule:
    peak, total = _pos("peak", peak), _steps("total", total)
    power, end = _pos("power", power), _nonneg("end", end, upper=peak)

    def schedule(step):
        return end + (peak - end) * (1.0 - _u(step, total) ** power)
    return _tag(schedule, "one_minus_power", peak, total, (total,), power=power, end=end,
                unit=lambda: one_minus_power(1.0, total, power=power, end=end / peak))


def exponential(peak: float, *, half_life: float) -> Schedule:
    peak, half_life = _pos("peak", peak), _pos("half_life", half_life)

    def schedule(step):
        return peak * jnp.exp2(-jnp.asarray(step, dtype=jnp.float64) / half_life)
    return _tag(schedule, "exponential", peak, None, half_life=half_life,
                unit=lambda: exponential(1.0, half_life=half_life))


def inverse_time(peak: float, *, timescale: float, power: float = 1.0) -> Schedule:
    peak, timescale, power = _pos("peak", peak), _pos("timescale", timescale), _pos("power", power)

    def schedule(step):
        return peak / (1.0 + jnp.asarray(step, dtype=jnp.float64) / timescale) ** power
    return _tag(schedule, "inverse_time", peak, None, timescale=timescale, power=power,
                unit=lambda: inverse_time(1.0, timescale=timescale, power=power))


def step_drops(peak: float, total: int, *, fractions: Sequence[float] = (0.8, 0.9),
               factors: Sequence[float] = (10 ** -0.5, 0.1)) -> Schedule:
    peak, total = _pos("peak", peak), _steps("total", total)
    fractions, factors = tuple(fractions), tuple(factors)
    if len(fractions) != len(factors) or not fractions:
        raise ValueError(f"fractions and factors must be non-empty and of equal length, got {fractions}, {factors}")
    for f in fractions:
        _frac("fractions", f)
    if list(fractions) != sorted(fractions):
        raise ValueError(f"fractions must increase, got {fractions}")
    for f in factors:
        _pos("factors", f)
    bounds = np.array([round(f * total) for f in fractions], dtype=np.float64)
    mult = np.array((1.0,) + factors)

    def schedule(step):
        idx = jnp.searchsorted(jnp.asarray(bounds), jnp.asarray(step, dtype=jnp.float64), side="right")
        return peak * jnp.asarray(mult)[idx]
    return _tag(schedule, "step_drops", peak * max(mult), total, bounds, fractions=fractions, factors=factors,
                scale=peak, unit=lambda: step_drops(1.0, total, fractions=fractions, factors=factors))


def eight_one_one(peak: float, total: int) -> Schedule:
    """Drops to ``1/sqrt(10)`` at 80% and ``1/10`` at 90% of training."""
    s = step_drops(peak, total)
    return _tag(s, "8-1-1", s.peak, total, s.breakpoints, scale=s.scale, unit=lambda: eight_one_one(1.0, total))


def wsd(peak: float, total: int, *, cooldown: float = 0.2, shape: str = "linear", end: float = 0.0) -> Schedule:
    """Warmup-stable-decay without warmup (compose with :func:`warmup`): constant, then a cooldown."""
    peak, total = _pos("peak", peak), _steps("total", total)
    cooldown, end = _frac("cooldown", cooldown), _nonneg("end", end, upper=peak)
    if shape not in WSD_SHAPES:
        raise ValueError(f"shape must be one of {WSD_SHAPES}, got {shape!r}")
    start = total * (1.0 - cooldown)
    span = total - start

    def schedule(step):
        up = jnp.clip((jnp.asarray(step, dtype=jnp.float64) - start) / span, 0.0, 1.0)
        if shape == "linear":
            f = 1.0 - up
        elif shape == "cosine":
            f = 0.5 * (1.0 + jnp.cos(jnp.pi * up))
        else:
            f = 1.0 - jnp.sqrt(up)
        return end + (peak - end) * f
    return _tag(schedule, f"wsd-{shape}", peak, total, (start, total), cooldown=cooldown, shape=shape, end=end,
                unit=lambda: wsd(1.0, total, cooldown=cooldown, shape=shape, end=end / peak))


def warmup(schedule: Schedule, steps: int) -> Schedule:
    """Linear warmup in front of any schedule: ``schedule(step) * min(1, (step + 1) / steps)``."""
    steps = _steps("steps", steps)

    def warm(step):
        s = jnp.asarray(step, dtype=jnp.float64)
        return schedule(step) * jnp.minimum(1.0, (s + 1.0) / steps)
    bps = (steps,) + tuple(getattr(schedule, "breakpoints", ()))
    inner_unit = getattr(schedule, "unit", None)
    return _tag(warm, "warmup+" + getattr(schedule, "name", "custom"), getattr(schedule, "peak", np.nan),
                getattr(schedule, "total", None), bps, keyed=getattr(schedule, "key", None) is not None, warmup=steps,
                inner=getattr(schedule, "config", None), scale=getattr(schedule, "scale", None),
                unit=None if inner_unit is None else (lambda: warmup(inner_unit, steps)))


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """``schedules[i]`` on ``[boundaries[i-1], boundaries[i])``, called with the step since its start."""
    schedules, boundaries = list(schedules), list(boundaries)
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(f"join needs len(schedules) == len(boundaries) + 1, got {len(schedules)} schedules "
                         f"and {len(boundaries)} boundaries")
    if not all(callable(s) for s in schedules):
        raise ValueError("schedules must be callables step -> lr")
    if any(isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, np.integer)) or b < 1 for b in boundaries) \
            or any(b1 <= b0 for b0, b1 in zip(boundaries, boundaries[1:])):
        raise ValueError(f"boundaries must be strictly increasing integers >= 1, got {boundaries}")
    boundaries = [int(b) for b in boundaries]
    starts = [0] + boundaries

    def joined(step):
        s = jnp.asarray(step, dtype=jnp.float64)
        out = schedules[0](s)
        for sch, b in zip(schedules[1:], boundaries):
            out = jnp.where(s >= b, sch(s - b), out)
        return out
    bps = list(boundaries)
    for sch, st in zip(schedules, starts):
        bps += [st + b for b in getattr(sch, "breakpoints", ())]
    peaks = [float(getattr(s, "peak", np.nan)) for s in schedules]
    peak = max(peaks) if all(np.isfinite(peaks)) else np.nan  # nan: unknown, the engine evaluates it
    return _tag(joined, "join", peak, None, bps, keyed=all(getattr(s, "key", None) is not None for s in schedules),
                boundaries=boundaries, parts=[getattr(s, "config", None) for s in schedules])


def from_array(lrs) -> Schedule:
    """An arbitrary user schedule: ``lr = lrs[min(floor(step), len - 1)]``."""
    arr = np.asarray(lrs, dtype=np.float64).ravel()
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("lrs must be a non-empty array of finite values >= 0")
    table = jnp.asarray(arr)
    n = arr.size

    def schedule(step):
        i = jnp.clip(jnp.floor(jnp.asarray(step, dtype=jnp.float64)), 0, n - 1).astype(jnp.int64)
        return table[i]
    jumps = np.nonzero(np.diff(arr))[0] + 1
    bps = jumps if jumps.size <= 64 else ()
    return _tag(schedule, "array", float(arr.max()), n, bps, length=n,
                sha256=hashlib.sha256(arr.tobytes()).hexdigest())


NAMES = ("constant", "cosine", "linear", "quadratic", "one-minus-u2", "exponential", "inverse-time",
         "step-8-1-1", "wsd-linear", "wsd-cosine", "wsd-1-sqrt", "cosine-3")


def by_name(name: str, peak: float, total: int, **kw) -> Schedule:
    """Named schedules used by the CLI and the experiments (``kw`` forwarded to the factory)."""
    if name == "constant":
        return constant(peak)
    if name == "cosine":
        return cosine(peak, total, **kw)
    if name == "cosine-3":
        return cosine(peak, total, periods=3.0, **kw)
    if name == "linear":
        return linear(peak, total, **kw)
    if name == "quadratic":
        return polynomial(peak, total, power=2.0, **kw)
    if name == "one-minus-u2":
        return one_minus_power(peak, total, power=2.0, **kw)
    if name == "exponential":
        return exponential(peak, half_life=kw.pop("half_life", total / 10), **kw)
    if name == "inverse-time":
        return inverse_time(peak, timescale=kw.pop("timescale", total / 100), **kw)
    if name == "step-8-1-1":
        return eight_one_one(peak, total)
    if name.startswith("wsd-"):
        return wsd(peak, total, shape=name[4:], **kw)
    raise ValueError(f"schedule must be one of {NAMES}, got {name!r}")
