"""--optimizer on plrf theory, compute-optimal and phase-diagram: the numbers equal an independent call of the
engine with the same optimizer, configurations of different optimizers are never mixed, unstable settings and bad
combinations exit 2 naming the option, and the figures are drawn (gain.png for a non-SGD phase diagram)."""
import numpy as np
import pytest

import plrf
from plrf import optimizers as O
from plrf import schedules as S
from theory.deterministic import deterministic_spectrum
from theory.ladder import ladder_curve, ladder_lr

from cli_util import is_png, load_results, run_cli


def _exit2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


THEORY = ["theory", "--alpha", 1.0, "--beta", 0.7, "--d", 100, "--steps", 5000, "--num", 20, "--quiet"]


def test_theory_optimizer_errors_before_work(tmp_path, capsys):
    out = tmp_path / "t"
    # an unstable momentum (effective step 5x the SGD default): exit 2 with the stability message
    err = _exit2([*THEORY, "--optimizer", "momentum", "--momentum", 0.9, "--lr", 0.5, "--out", out], capsys)
    assert "unstable" in err or "edge" in err
    assert "allow" not in err and "Lower --lr" in err      # theory has no --allow-unstable: no such advice
    err = _exit2([*THEORY, "--optimizer", "schedule-free", "--ema", 0.1, "--out", tmp_path / "v"], capsys)
    assert "--optimizer schedule-free takes neither --weight-decay nor --ema" in err


@pytest.mark.slow   # ~20 s: general log-time and exact-recursion programs
def test_theory_momentum_with_ema_equals_the_exact_recursion(tmp_path, capsys):
    out = tmp_path / "t"
    assert run_cli([*THEORY, "--optimizer", "momentum", "--momentum", 0.8, "--ema", 0.05, "--out", out]) == 0
    r = load_results(out)
    spec = deterministic_spectrum(1.0, 0.7, 100)
    lr = ladder_lr(1.0, 100) * 0.2                        # SGD default x (1 - mu): the same effective step
    assert r["config"]["lr"] == pytest.approx(lr) and r["sgd_lr"] == pytest.approx(lr / 0.2)
    steps = np.asarray(r["steps"])
    ex = plrf.expected_loss(spec, O.momentum(S.constant(lr), 0.8, ema=0.05), steps=5000,
                            grid=np.r_[0, steps])
    np.testing.assert_allclose(r["loss"], ex.loss[1:], rtol=1e-3)        # log-time solver vs exact recursion
    np.testing.assert_allclose(r["ema_loss"], ex.readouts["average"][0][1:], rtol=1e-3)
    assert r["components"] is None and "SGD formulas" in r["components_note"]
    assert is_png(out / "theory.png")
    # DANA (lr resolved from the spectrum, stored as peak_lr): the same command again resumes, it is not refused
    dana = [*THEORY, "--optimizer", "dana-decaying", "--out", tmp_path / "dana"]
    assert run_cli(dana) == 0 and run_cli(dana) == 0
    assert load_results(tmp_path / "dana")["peak_lr"] == pytest.approx(
        O.dana_defaults(spec.trace, 100, 1.0, 0.7)["g2"])
    # another optimizer into the same directory: refused before any work, naming the option
    err = _exit2([*THEORY, "--optimizer", "nesterov", "--momentum", 0.8, "--ema", 0.05, "--out", out], capsys)
    assert "different configuration" in err and "optimizer" in err


@pytest.mark.slow   # ~20 s: a ladder of general-optimizer log-time solves
def test_compute_optimal_momentum_rungs_and_no_mixing(tmp_path, capsys):
    out = tmp_path / "co"
    argv = ["compute-optimal", "--alpha", 1.0, "--beta", 0.7, "--d-min", 16, "--d-max", 256, "--flops-max", 1e7,
            "--sim-d", "--quiet", "--out", out]
    assert run_cli([*argv, "--optimizer", "momentum", "--momentum", 0.5]) == 0
    r = load_results(out)
    assert r["optimizer"] == "momentum" and r["config"]["momentum"] == 0.5
    # a rung equals theory.ladder.ladder_curve with the same optimizer (momentum at lr (1 - mu))
    c = ladder_curve(1.0, 0.7, 64, flops_max=1e7, optimizer_fn=lambda spec, lr, d: O.momentum(S.constant(lr * 0.5), 0.5))
    rung = [x for x in r["curves"] if x["d"] == 64][0]
    np.testing.assert_allclose(rung["loss"], c.loss, rtol=1e-12)
    sgd = ladder_curve(1.0, 0.7, 64, flops_max=1e7)
    assert np.max(np.abs(np.asarray(rung["loss"]) / sgd.loss - 1)) > 1e-3      # not the SGD curve
    for k in ("xi_asymptote", "eta_asymptote", "xi_interval"):
        assert k in r
    err = _exit2([*argv], capsys)                                              # plain SGD into the momentum run
    assert "different configuration" in err and "optimizer" in err


@pytest.mark.slow
def test_compute_optimal_with_averaging_measures_the_average(tmp_path):
    """`--ema R`: the rungs are the average's loss (theory.ladder.readout_of), and the eigen-SGD dots too, each
    against the exact loss of the average on its own sampled W (z-scores within 5: 64 seeds)."""
    out = tmp_path / "co"
    assert run_cli(["compute-optimal", "--alpha", 1.0, "--beta", 0.7, "--d-min", 16, "--d-max", 128,
                    "--flops-max", 1e6, "--sim-d", 16, "--sim-seeds", 64, "--sim-flops", 2e4, "--ema", 0.05,
                    "--quiet", "--out", out]) == 0
    r = load_results(out)
    assert r["optimizer"] == "sgd+ema=0.05" and r["config"]["readout"] == "average"
    fn = lambda spec, lr, d: O.sgd(S.constant(lr), ema=0.05)  # noqa: E731
    c = ladder_curve(1.0, 0.7, 32, flops_max=1e6, optimizer_fn=fn)
    rung = [x for x in r["curves"] if x["d"] == 32][0]
    np.testing.assert_allclose(rung["loss"], c.loss, rtol=1e-12)
    it = ladder_curve(1.0, 0.7, 32, flops_max=1e6, optimizer_fn=lambda spec, lr, d: O.sgd(S.constant(lr)))
    assert np.max(np.abs(c.loss / it.loss - 1)) > 1e-2                           # the average, not the iterate
    sim = r["simulations"][0]
    assert sim["max_abs_z"] < 5


@pytest.mark.slow   # ~30 s: two ladders
def test_phase_diagram_gain_figure(tmp_path):
    out = tmp_path / "pd"
    assert run_cli(["phase-diagram", "--alphas", 1.0, "--betas", 0.7, "--no-named", "--d-max", 256,
                    "--flops-max", 1e7, "--optimizer", "momentum", "--momentum", 0.5, "--quiet", "--out", out]) == 0
    rec = load_results(out)["points"][0]
    assert rec["optimizer"] == "momentum"
    assert rec["eta_gain"] == pytest.approx(rec["eta_measured"] - rec["sgd_eta_measured"], abs=1e-12)
    assert abs(rec["eta_gain"]) < 0.05          # heavy ball at SGD's effective step: SGD's exponents (issue 12)
    assert is_png(out / "gain.png")
    assert sorted(run_cli_plot(out)) == ["gain.png", "local_slopes.png", "measured_vs_theory.png", "phase_diagram.png"]


@pytest.mark.slow   # ~30 s: two ladders
def test_phase_diagram_dana_gain_with_prediction(tmp_path):
    from theory.phases import exponents
    out = tmp_path / "pd"
    assert run_cli(["phase-diagram", "--alphas", 1.0, "--betas", 0.7, "--no-named", "--d-max", 256,
                    "--flops-max", 1e7, "--optimizer", "dana-decaying", "--quiet", "--out", out]) == 0
    rec = load_results(out)["points"][0]
    pred = exponents(1.0, 0.7, "dana-decaying")
    assert rec["eta_predicted"] == pytest.approx(pred.eta, abs=1e-12) and rec["xi_predicted"] == pytest.approx(
        pred.xi, abs=1e-12)
    assert rec["eta_predicted"] - rec["eta_theory"] == pytest.approx(0.878 - 0.706, abs=2e-3)  # predicted gain
    assert rec["eta_gain"] > 0.03               # DANA-decaying already outscales SGD on this tiny ladder
    assert is_png(out / "gain.png")


@pytest.mark.slow   # two ladders
def test_phase_diagram_sgd_with_averaging_is_not_plain_sgd(tmp_path):
    """`--ema uniform` with the default --optimizer sgd runs the averaged iterate's ladder next to SGD's (it was
    once taken for plain SGD and silently ignored): tagged `sgd+ema=uniform`, and the two curves differ."""
    out = tmp_path / "pd"
    assert run_cli(["phase-diagram", "--alphas", 1.0, "--betas", 0.7, "--no-named", "--d-max", 256,
                    "--flops-max", 1e7, "--ema", "uniform", "--quiet", "--out", out]) == 0
    rec = load_results(out)["points"][0]
    assert rec["optimizer"] == "sgd+ema=uniform"
    assert "sgd_eta_measured" in rec and rec["eta_measured"] != rec["sgd_eta_measured"]


def run_cli_plot(out):
    from experiments.phase_diagram import replot
    return replot(out)
