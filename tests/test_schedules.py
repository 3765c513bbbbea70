"""Learning-rate schedules: values at ends and boundaries against their closed forms, jit/vmap, argument checks.

Tolerances: values are compared to hand-written closed forms at 1e-14 relative (a few float64 roundings).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plrf import schedules as S

TOL = dict(rtol=1e-14, atol=1e-16)   # for numpy assert_allclose
APX = dict(rel=1e-14, abs=1e-16)   # for pytest.approx


def at(s, step):
    return float(s(step))


def test_constant():
    s = S.constant(0.3)
    assert at(s, 0) == 0.3 and at(s, 10 ** 9) == 0.3
    np.testing.assert_array_equal(np.asarray(s(jnp.arange(5))), np.full(5, 0.3))
    assert (s.peak, s.total, s.name) == (0.3, None, "constant")


def test_cosine_ends_floor_and_midpoint():
    s = S.cosine(1.0, 100, floor=0.1)
    assert at(s, 0) == pytest.approx(1.0, **APX)
    assert at(s, 50) == pytest.approx(0.1 + 0.9 * 0.5, **APX)          # (1 + cos(pi/2))/2 = 1/2
    assert at(s, 100) == pytest.approx(0.1, **APX)                     # the floor at the end
    assert at(s, 250) == pytest.approx(0.1, **APX)                     # and beyond (u clipped to 1)
    assert at(s, 25) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2, **APX)
    s3 = S.cosine(2.0, 90, periods=3.0)                                # non-monotone 0.5(1 + cos 3 pi u)
    assert at(s3, 30) == pytest.approx(0.0, abs=1e-15)
    assert at(s3, 60) == pytest.approx(2.0, **APX)
    assert at(s3, 90) == pytest.approx(0.0, abs=1e-15)
    assert (s.peak, s.total, s.breakpoints) == (1.0, 100, (100.0,))


def test_polynomial_linear_one_minus_power():
    lin = S.linear(2.0, 10, end=0.5)
    assert at(lin, 0) == 2.0 and at(lin, 10) == pytest.approx(0.5, **APX)
    assert at(lin, 4) == pytest.approx(0.5 + 1.5 * 0.6, **APX)
    q = S.polynomial(1.0, 10, power=2.0)
    assert at(q, 5) == pytest.approx(0.25, **APX) and at(q, 10) == 0.0
    o = S.one_minus_power(1.0, 10, power=2.0)                           # 1 - u^2
    assert at(o, 5) == pytest.approx(0.75, **APX) and at(o, 10) == 0.0 and at(o, 0) == 1.0


def test_exponential_and_inverse_time():
    e = S.exponential(1.0, half_life=10.0)
    assert at(e, 0) == 1.0 and at(e, 10) == pytest.approx(0.5, **APX) and at(e, 30) == pytest.approx(0.125, **APX)
    it = S.inverse_time(1.0, timescale=4.0, power=0.5)
    assert at(it, 12) == pytest.approx(0.5, **APX)                     # (1 + 3)^{-1/2}


def test_step_drops_exactly_at_80_and_90_percent():
    s = S.eight_one_one(1.0, 1000)
    vals = np.asarray(s(jnp.array([0, 799, 800, 899, 900, 1000, 5000])))
    np.testing.assert_allclose(vals, [1, 1, 10 ** -0.5, 10 ** -0.5, 0.1, 0.1, 0.1], **TOL)
    assert s.breakpoints == (800.0, 900.0) and s.name == "8-1-1"
    g = S.step_drops(0.5, 10, fractions=(0.5,), factors=(0.2,))
    assert at(g, 4) == 0.5 and at(g, 5) == pytest.approx(0.1, **APX)
    assert at(g, 4.999) == 0.5                                        # float steps: drop at the boundary itself


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_wsd_start_and_end_of_cooldown(shape):
    s = S.wsd(1.0, 1000, cooldown=0.2, shape=shape, end=0.1)
    assert at(s, 0) == 1.0 and at(s, 800) == pytest.approx(1.0, **APX)   # stable phase up to the cooldown start
    assert at(s, 1000) == pytest.approx(0.1, **APX) and at(s, 2000) == pytest.approx(0.1, **APX)
    assert at(s, 801) < 1.0
    assert s.breakpoints == (800.0, 1000.0) and s.name == f"wsd-{shape}"
    f_mid = {"linear": 0.5, "cosine": 0.5, "1-sqrt": 1 - math.sqrt(0.5)}[shape]   # u' = 1/2 at step 900
    assert at(s, 900) == pytest.approx(0.1 + 0.9 * f_mid, **APX)


def test_wsd_1sqrt_shape():
    s = S.wsd(1.0, 100, cooldown=0.5, shape="1-sqrt")
    u = np.array([0.0, 0.04, 0.25, 0.49, 1.0])
    np.testing.assert_allclose(np.asarray(s(jnp.asarray(50 + 50 * u))), 1 - np.sqrt(u), rtol=1e-14, atol=1e-15)
    assert at(s, 62.5) == pytest.approx(0.5, **APX)                  # 1 - sqrt(1/4)


def test_warmup_ramp():
    s = S.warmup(S.constant(2.0), 10)
    np.testing.assert_allclose(np.asarray(s(jnp.arange(12))), 2.0 * np.minimum(1, (np.arange(12) + 1) / 10), **TOL)
    assert s.peak == 2.0 and s.breakpoints == (10.0,)
    w = S.warmup(S.cosine(1.0, 100), 5)                               # composes: product at every step
    np.testing.assert_allclose(float(w(3)), float(S.cosine(1.0, 100)(3)) * 0.8, **TOL)


def test_join():
    s = S.join([S.constant(1.0), S.linear(0.5, 10), S.constant(0.01)], [20, 30])
    vals = np.asarray(s(jnp.array([0, 19, 20, 25, 29, 30, 100])))
    np.testing.assert_allclose(vals, [1.0, 1.0, 0.5, 0.25, 0.05, 0.01, 0.01], **TOL)
    assert s.peak == 1.0 and 20 in s.breakpoints and 30 in s.breakpoints and 30.0 in s.breakpoints
    # an untagged part: peak unknown (nan), left to the engine to evaluate
    assert math.isnan(S.join([lambda r: 0.1 + 0 * r, S.constant(0.2)], [5]).peak)


def test_from_array():
    a = np.array([0.3, 0.2, 0.2, 0.1])
    s = S.from_array(a)
    np.testing.assert_array_equal(np.asarray(s(jnp.arange(7))), [0.3, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1])
    assert at(s, 1.7) == 0.2                                          # floor of a float step
    assert s.peak == 0.3 and s.total == 4 and s.breakpoints == (1.0, 3.0)


ALL = [S.constant(0.2), S.cosine(0.2, 50, floor=0.01), S.linear(0.2, 50), S.polynomial(0.2, 50, power=2.0),
       S.one_minus_power(0.2, 50), S.exponential(0.2, half_life=7.0), S.inverse_time(0.2, timescale=3.0),
       S.eight_one_one(0.2, 50), S.wsd(0.2, 50, shape="cosine"), S.wsd(0.2, 50, shape="1-sqrt"),
       S.warmup(S.wsd(0.2, 50), 5), S.join([S.constant(0.2), S.cosine(0.1, 20)], [30]),
       S.from_array(np.linspace(0.2, 0.0, 40))] + [S.by_name(n, 0.2, 50) for n in S.NAMES]


@pytest.mark.parametrize("s", ALL, ids=lambda s: s.name)
def test_jit_vmap_and_dtypes(s):
    steps = jnp.arange(0, 60)
    ref = np.array([float(s(int(r))) for r in range(60)])             # scalar python-int calls
    assert np.all(np.isfinite(ref)) and np.all(ref >= 0) and ref.max() <= s.peak * (1 + 1e-15)
    np.testing.assert_allclose(np.asarray(s(steps)), ref, **TOL)                    # array call
    np.testing.assert_allclose(np.asarray(jax.vmap(s)(steps)), ref, **TOL)          # vmap over steps
    np.testing.assert_allclose(np.asarray(jax.jit(s)(steps)), ref, **TOL)           # jit
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(s))(steps.astype(jnp.float64))), ref, **TOL)
    out = jax.lax.fori_loop(0, 60, lambda r, acc: acc + s(r), 0.0)                  # traced scalar step
    assert float(out) == pytest.approx(ref.sum(), rel=1e-13)
    assert s(steps).dtype == jnp.float64


@pytest.mark.parametrize("make, pattern", [
    (lambda: S.constant(0.0), r"^lr must be"),
    (lambda: S.constant(float("nan")), r"^lr must be"),
    (lambda: S.constant(True), r"^lr must be"),
    (lambda: S.cosine(-1.0, 10), r"^peak must be"),
    (lambda: S.cosine(1.0, 0), r"^total must be an integer"),
    (lambda: S.cosine(1.0, 10.5), r"^total must be an integer"),
    (lambda: S.cosine(1.0, 10, floor=2.0), r"^floor must be"),
    (lambda: S.cosine(1.0, 10, periods=0), r"^periods must be"),
    (lambda: S.polynomial(1.0, 10, power=-1), r"^power must be"),
    (lambda: S.linear(1.0, 10, end=-0.1), r"^end must be"),
    (lambda: S.exponential(1.0, half_life=0.0), r"^half_life must be"),
    (lambda: S.inverse_time(1.0, timescale=float("inf")), r"^timescale must be"),
    (lambda: S.step_drops(1.0, 10, fractions=(0.9, 0.8)), r"^fractions must increase"),
    (lambda: S.step_drops(1.0, 10, fractions=(0.5, 1.2)), r"^fractions must be a fraction"),
    (lambda: S.step_drops(1.0, 10, fractions=(0.5,), factors=(0.1, 0.2)), r"^fractions and factors"),
    (lambda: S.step_drops(1.0, 10, fractions=(0.5,), factors=(-0.1,)), r"^factors must be"),
    (lambda: S.wsd(1.0, 10, cooldown=0.0), r"^cooldown must be"),
    (lambda: S.wsd(1.0, 10, cooldown=1.5), r"^cooldown must be"),
    (lambda: S.wsd(1.0, 10, shape="sqrt"), r"^shape must be one of"),
    (lambda: S.warmup(S.constant(1.0), 0), r"^steps must be an integer"),
    (lambda: S.join([S.constant(1.0)], [5]), r"^join needs len\(schedules\)"),
    (lambda: S.join([S.constant(1.0), S.constant(0.5)], [2.5]), r"^boundaries must be"),
    (lambda: S.join([S.constant(1.0), S.constant(0.5), S.constant(0.1)], [5, 5]), r"^boundaries must be"),
    (lambda: S.join([S.constant(1.0), 0.5], [5]), r"^schedules must be callables"),
    (lambda: S.from_array([]), r"^lrs must be"),
    (lambda: S.from_array([0.1, -0.1]), r"^lrs must be"),
    (lambda: S.by_name("nope", 1.0, 10), r"^schedule must be one of"),
])
def test_argument_checks(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()
