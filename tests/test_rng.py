"""plrf.rng: Philox-4x32-10 against Random123's known answers; the ziggurat's tables; the normals' distribution
(moments, chi-square, tails, correlations) against closed forms; purity in (key, step)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from plrf import rng

# rng.normal is always called under jit by the simulators; calling it eagerly dispatches (and compiles) every
# one of its ~200 operations for each new shape, which made these tests take minutes. The checks below run the
# jitted generator (n and stream static), i.e. the compiled program the simulators use.
normal = jax.jit(rng.normal, static_argnames=("n", "stream"))
philox = jax.jit(rng.philox4x32, static_argnames=("rounds",))

# Random123's published known-answer vectors for philox4x32_10 (counter, key, output)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr, key, out", KAT)
def test_philox_known_answers(ctr, key, out):
    got = rng.philox4x32([np.uint32(c) for c in ctr], [np.uint32(k) for k in key])
    assert tuple(int(g) for g in got) == out
    # vectorized: the same answer in every lane of a broadcast counter
    lanes = rng.philox4x32([jnp.full(3, c, jnp.uint32) for c in ctr], [np.uint32(k) for k in key])
    assert all(np.all(np.asarray(g) == o) for g, o in zip(lanes, out))


def test_ziggurat_tables():
    X, F, v = rng._X, rng._F, rng._V
    assert X.shape == (rng.LAYERS + 1,) and X[-1] == 0.0 and np.all(np.diff(X) < 0)
    assert rng.R == pytest.approx(3.6541528853610088, rel=1e-12)   # Marsaglia & Tsang's r for 256 layers
    assert X[1] == rng.R
    # every layer i >= 1 has area X_i (f(X_{i+1}) - f(X_i)) = v; the base strip X_0 f(r) = v = r f(r) + tail
    areas = X[1:-1] * (F[2:] - F[1:-1])
    np.testing.assert_allclose(areas, v, rtol=1e-10)
    assert X[0] * F[1] == pytest.approx(v, rel=1e-14)
    tail = math.sqrt(math.pi / 2) * math.erfc(rng.R / math.sqrt(2))
    assert v == pytest.approx(rng.R * F[1] + tail, rel=1e-14)
    # total area 256 v = the half-Gaussian's sqrt(pi/2) plus the rejection area; fast fraction ~98.5%
    assert rng.LAYERS * v > math.sqrt(math.pi / 2)
    assert 0.98 < rng.FAST_FRACTION < 0.99


@pytest.fixture(scope="module")
def draws():
    pk = rng.run_key(jax.random.key(11))
    f = jax.jit(lambda s: rng.normal(pk, s, 500_000))
    return np.concatenate([np.asarray(f(jnp.arange(4) + 10 * b)).ravel() for b in range(4)])   # 8e6 normals


def test_normal_moments_and_histogram(draws):
    z, n = draws, draws.size
    # moments of N(0, 1) with their sampling errors: E z = 0 (1/n), E z^2 = 1 (2/n), E z^3 = 0 (15/n), E z^4 = 3 (96/n)
    for k, mean, var in [(1, 0.0, 1.0), (2, 1.0, 2.0), (3, 0.0, 15.0), (4, 3.0, 96.0)]:
        assert abs(np.mean(z ** k) - mean) < 4.5 * math.sqrt(var / n), k
    # chi-square over 82 bins (edges at -5..5 in steps of 1/8): false-alarm probability 1e-4
    edges = np.concatenate([[-np.inf], np.linspace(-5, 5, 81), [np.inf]])
    counts = np.histogram(z, edges)[0]
    expect = n * np.diff(stats.norm.cdf(edges))
    chi2 = np.sum((counts - expect) ** 2 / expect)
    assert stats.chi2.sf(chi2, len(expect) - 1) > 1e-4, chi2


@pytest.mark.parametrize("a", [1.0, 2.5, rng.R, 4.0, 4.5])
def test_normal_tail_frequencies(draws, a):
    # beyond r every draw came through the slow path (a tail draw of the base strip); beyond 1, 2.5 the wedges
    n = draws.size
    p = 2 * stats.norm.sf(a)
    k = np.sum(np.abs(draws) > a)
    assert abs(k - n * p) < 4.5 * math.sqrt(n * p * (1 - p)), (k, n * p)


def test_normal_sign_symmetry_and_correlations(draws):
    z, n = draws, draws.size
    assert abs(np.mean(z > 0) - 0.5) < 4.5 * 0.5 / math.sqrt(n)
    # neighbours within a step (same Philox block / pair), across steps, and |z| neighbours: uncorrelated
    w = z.reshape(-1, 500_000)
    for a, b in [(z[:-1], z[1:]), (z[:-2], z[2:]), (w[:-1].ravel(), w[1:].ravel()),
                 (np.abs(z[:-1]), np.abs(z[1:]))]:
        assert abs(np.corrcoef(a, b)[0, 1]) < 4.5 / math.sqrt(a.size)


def test_normal_is_a_pure_function_of_key_and_step():
    pk = rng.run_key(jax.random.key(3))
    block = np.asarray(normal(pk, jnp.array([5, 6, 7]), 1001))
    assert block.shape == (3, 1001)
    np.testing.assert_array_equal(block[1], np.asarray(normal(pk, 6, 1001)))
    np.testing.assert_array_equal(np.asarray(normal(pk, jnp.array([[7]]), 1001))[0, 0], block[2])
    # vmap over keys = one key at a time
    keys = jax.random.split(jax.random.key(4), 3)
    steps = jnp.array([5, 6, 7])     # the shapes of `block`: the single-key calls reuse its compiled program
    vm = np.asarray(jax.jit(jax.vmap(lambda k: rng.normal(rng.run_key(k), steps, 1001)))(keys))
    for i in range(3):
        np.testing.assert_array_equal(vm[i], np.asarray(normal(rng.run_key(keys[i]), steps, 1001)))
    # different steps, keys and streams differ; steps beyond 2^32 use the high counter word
    other = [normal(pk, 8, 1001), normal(rng.run_key(jax.random.key(5)), 6, 1001),
             normal(pk, 6, 1001, stream=2), normal(pk, 6 + 2 ** 32, 1001)]
    for o in other:
        assert abs(np.corrcoef(np.asarray(o), block[1])[0, 1]) < 0.15


def test_slow_path_overflow_gives_the_same_numbers(monkeypatch):
    # with the slow-path buffer forced to its minimum (8 slots), the while loop takes several passes: the
    # numbers must not change (every pass computes the same function of the same bits; a differently compiled
    # program may round ndtri/exp differently in the last bit: 1e-14); 12000 draws have ~180 slow ones, so ~20
    # passes
    # (each side is a fresh function under jit, so it is traced with the FAST_FRACTION in force at the call)
    pk = rng.run_key(jax.random.key(6))
    ref = np.asarray(jax.jit(lambda k, s: rng.normal(k, s, 4000))(pk, jnp.arange(3)))
    monkeypatch.setattr(rng, "FAST_FRACTION", 1.0)
    small = np.asarray(jax.jit(lambda k, s: rng.normal(k, s, 4000))(pk, jnp.arange(3)))
    np.testing.assert_allclose(small, ref, rtol=1e-14, atol=0)


def test_draws_follow_the_documented_layout_exactly():
    # an independent numpy/scipy reading of the documented algorithm, draw by draw. Draw e of step r: word e // q
    # of Philox block (e mod q, stream 0, r), q = ceil(n / 4); layer = bits 0-7, sign = bit 8,
    # u = (bits 9-31 + 1/2) 2^-23, x = u X_layer, returned as +-x iff u < X_{layer+1} / X_layer. Otherwise fresh
    # bits (Philox block (e, stream 1, r): ua from words 0-1, ub from words 2-3, 53 bits each): layer 0 -> the tail
    # draw +-(-Phi^-1(ua Phi(-r))); a wedge -> +-x if f_i + ua (f_{i+1} - f_i) < exp(-x^2/2), else Phi^-1(ub)
    from scipy.special import ndtri
    pk = rng.run_key(jax.random.key(12))
    n, steps = 20001, np.array([3, 2 ** 33 + 5])
    z = np.asarray(normal(pk, jnp.asarray(steps), n))
    q = -(-n // 4)
    unit = lambda hi, lo: (((hi << 32) | lo) >> 11).astype(np.float64) * 2.0 ** -53 + 2.0 ** -54  # noqa: E731
    counts = np.zeros(4, int)   # fast, tail, wedge kept, wedge redrawn
    for s, row in zip(steps, z):
        ctr = [np.uint32(0), np.uint32(s & 0xFFFFFFFF), np.uint32(s >> 32)]
        words = philox([np.arange(q, dtype=np.uint32)] + ctr, [pk[0], pk[1]])
        w = np.concatenate([np.asarray(o) for o in words])[:n].astype(np.uint64)
        i = (w & 255).astype(int)
        u = ((w >> 9).astype(np.float64) + 0.5) * 2.0 ** -23
        x = np.where((w >> 8) & 1, -1.0, 1.0) * u * rng._X[i]
        fast = u < rng._X[i + 1] / rng._X[i]
        o = [np.asarray(a).astype(np.uint64) for a in
             philox([np.arange(n, dtype=np.uint32), np.uint32(1)] + ctr[1:], [pk[0], pk[1]])]
        ua, ub = unit(o[0], o[1]), unit(o[2], o[3])
        F = rng._F
        keep = F[i] + ua * (F[np.minimum(i + 1, rng.LAYERS)] - F[i]) < np.exp(-0.5 * x * x)
        tail = np.sign(x) * -ndtri(ua * 0.5 * math.erfc(rng.R / math.sqrt(2)))
        expect = np.where(fast, x, np.where(i == 0, tail, np.where(keep, x, ndtri(ub))))
        np.testing.assert_array_equal(row[fast], x[fast])                   # the rectangle: bit for bit
        np.testing.assert_allclose(row, expect, rtol=1e-13, atol=0)         # the slow path: up to ndtri rounding
        counts += [fast.sum(), np.sum(~fast & (i == 0)), np.sum(~fast & (i > 0) & keep),
                   np.sum(~fast & (i > 0) & ~keep)]
    assert np.all(counts[1:] > 0), counts   # every branch was exercised (40002 draws: ~10 tail draws, ~600 wedges)


def test_normal_ks_against_the_normal_cdf(draws):
    # Kolmogorov-Smirnov over all 8e6 draws: sensitive to cdf errors of ~5e-4, far above the 23-bit grid's 1e-7
    assert stats.kstest(draws, "norm").pvalue > 1e-4
