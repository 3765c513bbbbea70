"""Label noise y = <x, b> + sigma eps: the exact theory with P* + sigma^2 against explicit noise in the simulators."""
import math

import jax
import numpy as np
import pytest

import plrf
from plrf import optimizers as O
from plrf import schedules as S
from plrf.spectrum import with_label_noise

SIGMA2 = 0.05


@pytest.fixture(scope="module")
def noisy():
    p = plrf.Problem(1.0, 0.7, 48, 16, label_noise=SIGMA2)
    return plrf.sample_instance(p, key=jax.random.key(3), keep_W=True)


def test_validation():
    for bad in (-1e-3, math.inf, math.nan, "x", True):
        with pytest.raises(ValueError, match="label_noise"):
            plrf.Problem(1.0, 0.7, 8, 4, label_noise=bad)
    from theory.deterministic import deterministic_spectrum
    with pytest.raises(ValueError, match="label_noise"):
        deterministic_spectrum(1.0, 0.7, 64, label_noise=-1.0)


def test_reduction_in_every_spectrum(noisy):
    clean = plrf.sample_instance(plrf.Problem(1.0, 0.7, 48, 16), key=jax.random.key(3))
    assert noisy.spectrum.P_star == pytest.approx(clean.spectrum.P_star + SIGMA2, rel=1e-14)
    np.testing.assert_array_equal(noisy.spectrum.w, clean.spectrum.w)
    assert noisy.problem.with_d(8).label_noise == SIGMA2
    from theory.deterministic import deterministic_spectrum
    a = deterministic_spectrum(1.0, 0.7, 256)
    b = deterministic_spectrum(1.0, 0.7, 256, label_noise=SIGMA2)
    assert b.P_star == pytest.approx(a.P_star + SIGMA2, rel=1e-14)
    # the log-time solver and the expected recursion see the same spectrum: P(t) - sigma^2 dynamics shift
    from theory.logtime import solve_logtime
    lr = 0.5 / b.trace
    ex = plrf.expected_loss(b, S.constant(lr), steps=2000)
    lt = solve_logtime(b, S.constant(lr), steps=2000)
    assert lt.loss[-1] == pytest.approx(ex.loss[-1], rel=1e-6)
    assert ex.loss[-1] > plrf.expected_loss(a, S.constant(lr), steps=2000).loss[-1] + SIGMA2


def _z(curve, exact):
    return np.max(np.abs(curve.loss[1:] - exact.loss[1:]) / curve.stderr[1:])


@pytest.mark.parametrize("method,opt_name", [("features", "sgd"), ("eigen", "sgd"),
                                            pytest.param("eigen", "momentum", marks=pytest.mark.slow)])
def test_explicit_noise_matches_exact(noisy, method, opt_name):
    """Monte Carlo with the noise drawn explicitly on y (features) or through P* (eigen) vs the exact
    recursion on the noiseless spectrum with P* + sigma^2, within standard errors."""
    steps, B = 200, 2
    lr = 0.4 / noisy.spectrum.trace
    opt = O.sgd(lr) if opt_name == "sgd" else O.momentum(0.5 * lr, 0.5)
    clean = plrf.sample_instance(plrf.Problem(1.0, 0.7, 48, 16), key=jax.random.key(3)).spectrum
    grid = plrf.log_grid(steps, 20)
    exact = plrf.expected_loss(with_label_noise(clean, SIGMA2), opt, steps=steps, batch=B, grid=grid)
    seeds = 128 if method == "features" else 1024
    mc = plrf.simulate(noisy, opt, steps=steps, batch=B, method=method, key=jax.random.key(11), seeds=seeds,
                       grid=grid)
    assert _z(mc, exact) < 4.0
    # and the noise matters: the noiseless exact curve is many standard errors away at the end
    assert (mc.loss[-1] - plrf.expected_loss(clean, opt, steps=steps, batch=B, grid=grid).loss[-1]) \
        > 10 * mc.stderr[-1]


@pytest.mark.slow
def test_cli_label_noise(tmp_path, capsys):
    """`plrf curve --label-noise` and `plrf theory --label-noise`: P* + sigma^2 in results, the option in the
    configuration only when nonzero, and a negative value is a user error naming the option."""
    from tests.cli_util import load_results, run_cli
    base = ["--d", 16, "--steps", 300, "--num", 12, "--quiet"]
    assert run_cli(["curve", *base, "--method", "expected", "--out", tmp_path / "c0"]) == 0
    assert run_cli(["curve", *base, "--method", "expected", "--label-noise", SIGMA2, "--out", tmp_path / "c1"]) == 0
    r0, r1 = load_results(tmp_path / "c0"), load_results(tmp_path / "c1")
    assert "label_noise" not in r0["config"] and r1["config"]["label_noise"] == SIGMA2
    assert r1["P_star"] == pytest.approx(r0["P_star"] + SIGMA2, rel=1e-12)
    assert r1["loss_expected"][-1] > r0["loss_expected"][-1] + SIGMA2
    assert run_cli(["theory", "--d", 256, "--steps", "1e4", "--num", 16, "--quiet", "--label-noise", SIGMA2,
                    "--out", tmp_path / "t1"]) == 0
    t1 = load_results(tmp_path / "t1")
    from theory.deterministic import deterministic_spectrum
    assert t1["config"]["label_noise"] == SIGMA2
    assert t1["P_star"] == pytest.approx(deterministic_spectrum(1.0, 0.7, 256).P_star + SIGMA2, rel=1e-10)
    with pytest.raises(SystemExit) as exc:
        run_cli(["curve", *base, "--label-noise", -1, "--out", tmp_path / "bad"])
    assert exc.value.code == 2
    assert "--label-noise" in capsys.readouterr().err
