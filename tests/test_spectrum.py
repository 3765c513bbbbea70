"""plrf.spectrum.coarsen: what a merge keeps exactly, and the loss error it costs (second order in the bin width),
measured on the exact recursion against the uncoarsened spectrum."""
import numpy as np
import pytest

import plrf
from plrf import optimizers as O
from plrf.spectrum import coarsen


def _power_law(d, alpha=1.0, beta=0.7):
    k = np.arange(1, d + 1.0)
    return plrf.make_spectrum(k ** (-2 * alpha), k ** (-2 * alpha - 2 * beta), 1e-9)


def test_coarsen_keeps_count_trace_weight_and_head():
    spec = _power_law(5000)
    c = coarsen(spec, 40)
    assert len(c.lam) < len(spec.lam) / 5
    assert c.d == spec.d and c.P_star == spec.P_star
    assert c.trace == pytest.approx(spec.trace, rel=1e-13)          # -> the stability edge is unchanged
    assert np.sum(c.w) == pytest.approx(np.sum(spec.w), rel=1e-13)
    assert plrf.max_stable_lr(c) == pytest.approx(plrf.max_stable_lr(spec), rel=1e-6)
    # the head (eigenvalue ratios > 10^(1/40)) keeps one mode per bin, exactly
    head = spec.lam > 1e-2
    np.testing.assert_array_equal(np.sort(c.lam)[-head.sum():], np.sort(spec.lam[head]))
    # every bin's eigenvalue lies inside the range of the modes it merges: one decade holds at most 40 bins + 1
    per_dec = np.histogram(np.log10(c.lam), bins=np.arange(-8, 1))[0]
    assert per_dec.max() <= 41


def test_coarsen_fine_bins_is_identity_and_zero_modes():
    spec = plrf.make_spectrum([0.0, 0.0, 1e-3, 1e-2, 1.0], [0.1, 0.2, 0.3, 0.4, 0.5], 0.01)
    c = coarsen(spec, 10)
    np.testing.assert_array_equal(c.lam, [0.0, 1e-3, 1e-2, 1.0])
    np.testing.assert_array_equal(c.n, [2.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(c.w, [0.3, 0.3, 0.4, 0.5])


@pytest.mark.parametrize("bad", [0, -1.0, np.nan, np.inf, "100", True])
def test_coarsen_bad_per_decade(bad):
    with pytest.raises(ValueError, match="per_decade"):
        coarsen(_power_law(10), bad)


def test_coarsen_loss_error_is_second_order():
    """DANA-decaying (time-varying, two states) on lambda_k = k^-2, d = 2000, 2e4 steps, exact recursion: the max
    relative loss error of the coarsened spectrum falls ~4x when the bins halve (second order; measured 8.0e-4 at
    20 per decade, 2.1e-4 at 40, i.e. about r^2 / 16 with r the relative bin width) and stays below r^2 / 4."""
    spec = _power_law(2000)
    dd = O.dana_defaults(spec.trace, 2000, 1.0, 0.7)
    opt = O.dana_decaying(dd["g2"], dd["g3_decaying"], delta=dd["delta"], kappa=dd["kappa"])
    steps = 20000
    grid = plrf.log_grid(steps, 60)
    ref = np.asarray(plrf.expected_loss(spec, opt, steps=steps, grid=grid).loss)
    errs = {}
    for pd in (20, 40):
        c = coarsen(spec, pd)
        got = np.asarray(plrf.expected_loss(c, opt, steps=steps, grid=grid).loss)
        errs[pd] = float(np.max(np.abs(got / ref - 1)))
        r = 10 ** (1 / pd) - 1
        assert errs[pd] < r ** 2 / 4, (pd, errs[pd], r ** 2 / 4)
    assert 3.0 < errs[20] / errs[40] < 5.5, errs
