"""experiments/schedule_frontier.py: the WSD ladder against direct references (slow: ~20 log-time solves)."""
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_wsd_ladder_against_exact_recursion_and_constant_limit():
    """Each WSD point is the exact expected loss of that schedule (plrf.expected_loss at the same spectrum, rtol
    1e-3: the log-time solver's tolerance); with a vanishing cooldown (1e-9 of T) a WSD point equals the constant-lr
    curve at the same step (1e-3); a 20% cooldown lowers the loss at every horizon >= 100 (annealing removes SGD
    noise at this lr, 0.5 of the ladder's scale)."""
    import plrf
    from experiments.schedule_frontier import curves_for
    from theory.ladder import _default_spectrum, data_dim, ladder_lr
    from theory.logtime_grad import shape_schedule
    const, wsd = curves_for(1.0, 0.7, d_min=16, d_max=32, flops_max=3e4, per_decade=2, say=lambda m: None)
    d, f, L = wsd[0]
    spec = _default_spectrum(1.0, 0.7, d, data_dim(1.0, d))
    lr = ladder_lr(1.0, d)
    for T, l in zip((f / d).astype(int), L):
        ref = plrf.expected_loss(spec, shape_schedule("wsd", lr, int(T), 0.2), steps=int(T)).final
        assert l == pytest.approx(ref, rel=1e-3), T
    _, f0, L0 = curves_for(1.0, 0.7, d_min=16, d_max=32, flops_max=3e4, per_decade=2, cooldown=1e-9,
                           say=lambda m: None)[1][0]
    dc, fc, Lc = const[0]
    np.testing.assert_allclose(L0, np.interp(f0, fc, Lc), rtol=1e-3)
    assert np.all(L[f / d >= 100] < np.interp(f[f / d >= 100], fc, Lc))
