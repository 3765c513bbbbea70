"""End-to-end runs of the ``plrf`` command line (experiments.cli.main) into tmp_path, its help and its errors.

References: the eigen-SGD mean against the exact expected loss (Monte Carlo, standard errors), the theory command's
log-time loss against the per-step recursion ``plrf.expected_loss`` on the same spectrum, closed-form sums for the
intrinsic time of schedules. Default run: about a minute (jit compilations dominate).
"""
import math

import jax
import numpy as np
import pytest

import plrf
from experiments import cli
from experiments.theory_cmd import intrinsic_time
from plrf.spectrum import Spectrum

jax.config.update("jax_enable_x64", True)

from cli_util import is_png as _is_png, load_results as _load, run_cli as _run  # noqa: E402


def _registered():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return list(sub.choices)


# ---------------------------------------------------------------------------------------------------------
# plrf curve

def test_curve_eigen_matches_expectation(tmp_path):
    out = tmp_path / "curve"
    assert _run(["curve", "--d", 32, "--steps", 300, "--seeds", 8, "--method", "eigen", "--num", 30,
                 "--out", out, "--quiet"]) == 0
    res = _load(out)
    for key in ("config", "timestamp", "versions", "steps", "loss_mean", "loss_stderr", "loss_expected", "P_star", "P0",
                "kernel_norm"):
        assert key in res, key
    cfg = res["config"]
    assert (cfg["command"], cfg["d"], cfg["v"], cfg["steps"], cfg["seeds"], cfg["method"]) == \
        ("curve", 32, 128, 300, 8, "eigen")
    assert res["x64"] is True and res["status"] == "complete"
    steps = np.asarray(res["steps"])
    mean, se, exp = (np.asarray(res[k], dtype=float) for k in ("loss_mean", "loss_stderr", "loss_expected"))
    assert steps[0] == 0 and steps[-1] == 300 and np.all(np.diff(steps) > 0)
    assert mean.shape == se.shape == exp.shape == steps.shape
    # step 0: theta = 0 for every seed, so the loss is P(0) = sum_{j<=v} j^{-2a-2b} exactly (1e-12 relative)
    P0 = np.sum(np.arange(1, 129, dtype=float) ** (-3.4))
    assert mean[0] == pytest.approx(P0, rel=1e-12) and exp[0] == pytest.approx(P0, rel=1e-12)
    # Monte Carlo: 8 seeds; the mean agrees with the exact expectation within 4 standard errors
    assert se[-1] > 0
    assert abs(mean[-1] - exp[-1]) < 4 * se[-1], (mean[-1], exp[-1], se[-1])
    assert exp[-1] < 0.2 * exp[0]  # and the run actually learned something
    assert _is_png(out / "curve.png")
    assert cfg["rng"] == "plrf"


@pytest.mark.slow   # a second compiled eigen program (~8 s); the default suite checks --rng plrf above
def test_curve_rng_jax_same_exact_curve_other_draws(tmp_path):
    # --rng jax: the same problem and seeds through jax.random.normal: other draws, the same exact curve
    argv = ["curve", "--d", 32, "--steps", 300, "--seeds", 8, "--method", "eigen", "--num", 30, "--quiet"]
    assert _run([*argv, "--out", tmp_path / "plrf"]) == 0
    res = _load(tmp_path / "plrf")
    exp, mean = (np.asarray(res[k], dtype=float) for k in ("loss_expected", "loss_mean"))
    out2 = tmp_path / "curve_jax"
    assert _run([*argv, "--rng", "jax", "--out", out2]) == 0
    res2 = _load(out2)
    assert res2["config"]["rng"] == "jax"
    np.testing.assert_array_equal(np.asarray(res2["loss_expected"], dtype=float), exp)
    mean2 = np.asarray(res2["loss_mean"], dtype=float)
    assert mean2[-1] != mean[-1] and abs(mean2[-1] - exp[-1]) < 4 * float(res2["loss_stderr"][-1])


# ---------------------------------------------------------------------------------------------------------
# plrf theory

def _check_theory(out, alpha, beta):
    """Shared checks: loss vs plrf.expected_loss on the stored spectrum, components, dominance, edges."""
    res = _load(out)
    cfg = res["config"]
    z = np.load(out / "spectrum.npz")
    spec = Spectrum(z["lam"], z["n"], z["w"], z["P_star"][()])
    steps = np.asarray(res["steps"], dtype=np.int64)
    loss = np.asarray(res["loss"], dtype=float)
    assert steps[0] >= 1 and steps[-1] == cfg["steps"] and np.all(np.diff(steps) > 0)
    # independent reference: the exact per-step recursion on the same spectrum; 1e-3 relative (the log-time
    # solver's documented global accuracy at its default rtol)
    ref = plrf.expected_loss(spec, plrf.schedules.by_name(cfg["schedule"]["name"], cfg["lr"], cfg["steps"]),
                             steps=cfg["steps"], batch=cfg["batch"], grid=np.concatenate([[0], steps]))
    np.testing.assert_allclose(loss, ref.loss[1:], rtol=1e-3)
    assert res["P0"] == pytest.approx(spec.P0, rel=1e-12)
    assert res["P_star"] == pytest.approx(float(spec.P_star), rel=1e-12) and res["P_star"] > 0
    kn = float(plrf.kernel_norm(spec, cfg["lr"], cfg["batch"]))
    assert res["kernel_norm"] == pytest.approx(kn, rel=1e-12) and 0 < kn < 1
    if cfg["schedule"]["name"] != "constant":
        return res, spec
    np.testing.assert_allclose(res["amplification"], 1 / (1 - kn), rtol=1e-12)  # constant lr
    edges = plrf.stability_edges(spec, cfg["batch"])
    assert res["stability_edges"]["max_lr"] == pytest.approx(edges.max_lr, rel=1e-12)
    assert edges.max_lr > cfg["lr"]
    # components: all four exist for 2a > 1, 2b > 1, positive and finite on every grid step
    comps = res["components"]
    assert set(comps) == {"F0", "Fpp", "Fac", "noise"} and all(res["present"].values())
    for name, vals in comps.items():
        vals = np.asarray(vals, dtype=float)
        assert vals.shape == steps.shape and np.all(np.isfinite(vals)) and np.all(vals > 0), name
    # F_pp at the last step against its closed form (constant lr: s = 2 eta r), times 1/(1 - kappa)
    s = 2 * cfg["lr"] * steps[-1]
    c = (2 * alpha + 2 * beta - 1) / (2 * alpha)
    fpp = math.gamma(c) / (2 * alpha) * s ** (-c) / (1 - kn)
    assert comps["Fpp"][-1] == pytest.approx(fpp, rel=1e-10)
    # s = 2 sum_{u<r} eta_u = 2 eta r (rounding of a cumulative sum of up to 1e5 terms: 1e-10)
    np.testing.assert_allclose(res["intrinsic_time"], 2 * cfg["lr"] * steps, rtol=1e-10)
    # the dominant term is the argmax of the four, per step
    stack = np.stack([np.asarray(comps[k], dtype=float) for k in ("F0", "Fpp", "Fac", "noise")])
    assert list(res["dominant"]) == [("F0", "Fpp", "Fac", "noise")[i] for i in np.argmax(stack, axis=0)]
    np.testing.assert_allclose(res["components_total"], stack.sum(axis=0), rtol=1e-12)
    assert _is_png(out / "theory.png")
    return res, spec


def test_theory_sampled_matches_expected_loss(tmp_path):
    out = tmp_path / "theory"
    d = 48
    assert _run(["theory", "--spectrum", "sampled", "--d", d, "--steps", "3e4", "--num", 40, "--seed", 3,
                 "--out", out, "--quiet"]) == 0
    res, spec = _check_theory(out, 1.0, 0.7)
    cfg = res["config"]
    assert (cfg["v"], cfg["spectrum"], cfg["seed"]) == (4 * d, "sampled", 3)
    # the default lr with a finite v: 0.5 / sum_{j<=v} j^{-2 alpha}, as `plrf curve` (plrf.Problem.default_lr)
    assert cfg["lr"] == pytest.approx(0.5 / np.sum(np.arange(1, 4 * d + 1.0) ** -2.0), rel=1e-12)
    # the stored spectrum is the W of `plrf curve --seed 3` (first half of split(key(3)))
    k_w, _ = jax.random.split(jax.random.key(3))
    ref = plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 4 * d, d), key=k_w)
    np.testing.assert_allclose(spec.lam, ref.lam, rtol=1e-10)
    np.testing.assert_allclose(spec.w, ref.w, rtol=1e-8, atol=1e-14)
    # a decaying schedule on the same W: loss against the per-step recursion (1e-3), intrinsic time in closed
    # form, s = 2 sum_{u<r} lr (1 + cos(pi u/T))/2 (1e-10), forcing amplified at the current lr
    out2 = tmp_path / "cosine"
    assert _run(["theory", "--spectrum", "sampled", "--d", d, "--steps", "3e4", "--num", 40, "--seed", 3,
                 "--schedule", "cosine", "--out", out2, "--quiet"]) == 0
    res2, _ = _check_theory(out2, 1.0, 0.7)
    T, lr, r = 30000, res2["config"]["lr"], np.asarray(res2["steps"])
    x = math.pi / (2 * T)
    s = lr * (r + np.sin(x * r) * np.cos(x * (r - 1)) / math.sin(x))
    np.testing.assert_allclose(res2["intrinsic_time"], s, rtol=1e-10)
    eta = lr * (1 + np.cos(math.pi * r / T)) / 2
    np.testing.assert_allclose(res2["amplification"], 1 / (1 - plrf.kernel_norm(spec, eta, 1)), rtol=1e-10)
    assert res2["amplification"][-1] == 1.0 and res2["loss"][-1] < res["loss"][-1]


def test_theory_deterministic_matches_expected_loss(tmp_path):
    det = pytest.importorskip("theory.deterministic")
    if not hasattr(det, "deterministic_spectrum"):
        pytest.skip("theory.deterministic.deterministic_spectrum not written yet")
    out = tmp_path / "theory"
    assert _run(["theory", "--alpha", 0.8, "--beta", 0.9, "--d", 300, "--steps", "1e5", "--batch", 2,
                 "--num", 40, "--out", out, "--quiet"]) == 0
    res, spec = _check_theory(out, 0.8, 0.9)
    assert res["config"]["v"] == "inf" and res["config"]["spectrum"] == "deterministic"
    assert spec.d == pytest.approx(300, rel=1e-6)  # the bins count d eigenvalues


def test_intrinsic_time_closed_forms():
    """``2 sum_{u<r} eta_u`` past 2^20 steps (trapezoid branch) against closed-form sums; 1e-9 relative."""
    T, peak = 3_000_000, 0.3
    r = np.array([1, 10, 12345, 1_000_000, 2_400_000, 2_400_001, 2_700_000, T])
    cos = plrf.schedules.cosine(peak, T)
    # sum_{u<r} cos(pi u / T) = sin(pi r / 2T) cos(pi (r - 1) / 2T) / sin(pi / 2T)
    x = math.pi / (2 * T)
    csum = np.sin(x * r) * np.cos(x * (r - 1)) / math.sin(x)
    np.testing.assert_allclose(intrinsic_time(cos, r), peak * (r + csum), rtol=1e-9)
    drops = plrf.schedules.eight_one_one(peak, T)  # peak, then /sqrt(10) from 0.8 T, /10 from 0.9 T
    b1, b2 = 2_400_000, 2_700_000
    exact = peak * (np.minimum(r, b1) + np.clip(r - b1, 0, b2 - b1) * 10 ** -0.5 + np.clip(r - b2, 0, None) * 0.1)
    np.testing.assert_allclose(intrinsic_time(drops, r), 2 * exact, rtol=1e-9)


# ---------------------------------------------------------------------------------------------------------
# help and errors

def test_help_of_every_command_mentions_defaults(capsys):
    names = _registered()
    assert {"curve", "theory"} <= set(names)
    with pytest.raises(SystemExit) as e:
        _run(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert all(n in text for n in names)
    for name in names:
        with pytest.raises(SystemExit) as e:
            _run([name, "--help"])
        assert e.value.code == 0, name
        text = capsys.readouterr().out
        assert ("--out" in text or name == "plot") and "(default:" in text, name   # plot: positional DIR
    with pytest.raises(SystemExit):
        _run(["theory", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for snippet in ("--spectrum {deterministic,sampled}", "(default: deterministic)", "(default: constant)",
                    "(default: 10000000)", "1e8", "inf when 2 alpha > 1, else 4d", "ladder_lr"):
        assert snippet in text, snippet


# (argv, substring of the error of `plrf curve`, of `plrf theory`): each names the option or parameter
BAD = [
    (["--alpha", "-1"], "argument --alpha: must be > 0", "argument --alpha: must be > 0"),
    (["--alpha", "0.2", "--beta", "0.1"], "need 2(alpha + beta) > 1", "--alpha/--beta inadmissible"),
    (["--d", "32", "--v", "16"], "--v must be >= --d", "--v must be > --d"),
    (["--d", "32", "--lr", "5"], "unstable learning rate: lr=5", "--lr 5 with --batch 1 is at or above"),
    (["--steps", "0"], "argument --steps", "argument --steps"),
    (["--batch", "0"], "argument --batch", "argument --batch"),
]


@pytest.mark.parametrize("command", ["curve", "theory"])
@pytest.mark.parametrize("argv, curve_msg, theory_msg", BAD)
def test_bad_options_exit_2_naming_the_option(command, argv, curve_msg, theory_msg, tmp_path, capsys):
    extra = ["--spectrum", "sampled"] if command == "theory" else ["--method", "expected"]
    if "--steps" not in argv:
        extra += ["--steps", "50"]
    with pytest.raises(SystemExit) as e:
        _run([command, *argv, *extra, "--out", tmp_path / "x", "--quiet"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"plrf {command}: error:" in err and (curve_msg if command == "curve" else theory_msg) in err, err
    assert not (tmp_path / "x" / "results.json").exists()


@pytest.mark.parametrize("argv, name", [
    (["--v", "32", "--d", "32"], "--v must be > --d"),
    (["--lr", "0.9", "--d", "32"], "--lr 0.9 with --batch 1 is at or above the stability edge"),
    (["--alpha", "0.4", "--beta", "1", "--v", "inf"], "--v inf needs 2 alpha > 1"),
    (["--v", "inf"], "--v inf is impossible with --spectrum sampled"),
    (["--schedule", "nope"], "--schedule"),
    (["--num", "3"], "--num"),
])
def test_theory_specific_errors(argv, name, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _run(["theory", *argv, "--spectrum", "sampled", "--steps", "100", "--out", tmp_path, "--quiet"])
    assert e.value.code == 2
    assert name in capsys.readouterr().err
