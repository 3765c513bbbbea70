"""End-to-end runs of ``plrf schedules`` and ``plrf collapse`` (tiny sizes) into tmp_path, and their option errors.

References: the closed-form initial loss ``P(0) = sum_{j<=v} j^{-2a-2b}``, the closed-form WSD schedule, an
independent numpy per-mode recursion of the exact expected loss on the same sampled W (the exact curves, the
predictor error table, the collapse's final losses), the eigen-SGD mean against the exact expectation (Monte Carlo
z-scores), the definition of Delta (sample std / mean over sizes) recomputed from the stored normalized curves, the
definitions of the horizon families, and the figures' labels and legends (tests/figcheck.py).
"""

import jax
import numpy as np
import pytest

from experiments import cli

jax.config.update("jax_enable_x64", True)

from cli_util import is_png as _is_png, load_results as _load, run_cli as _run  # noqa: E402
from figcheck import record_figures  # noqa: E402


def numpy_expected_loss(spec, lrs, batch=1):
    """The exact expected loss by the per-mode recursion, in numpy (independent of plrf's engine):
    e_k(0) = w_k, e_k(u+1) = g_k(u) e_k(u) + (eta_u^2 lam_k^2 / B) P(u), P(u) = P* + sum_k n_k e_k(u),
    g_k(u) = 1 - 2 eta_u lam_k + eta_u^2 lam_k^2 (B+1)/B; ``lrs[u]`` is the lr of step u -> u+1."""
    lam, n, w = (np.asarray(a, dtype=np.float64) for a in (spec.lam, spec.n, spec.w))
    ps = float(spec.P_star)
    e, P = w / n, np.empty(len(lrs) + 1)
    for u, eta in enumerate(lrs):
        P[u] = ps + np.sum(n * e)
        e = (1 - 2 * eta * lam + eta ** 2 * lam ** 2 * (batch + 1) / batch) * e + eta ** 2 * lam ** 2 / batch * P[u]
    P[-1] = ps + np.sum(n * e)
    return P


@pytest.mark.slow   # ~2-3 min of CPU (1024-seed table, scans); the bad-option checks stay in the default suite
def test_schedules_end_to_end(tmp_path, monkeypatch):
    figs = record_figures(monkeypatch)
    out = tmp_path / "sch"
    assert _run(["schedules", "--d", 32, "--steps", 300, "--seeds", 16, "--schedules", "constant", "wsd-linear",
                 "--num", 20, "--lr-frac", 0.25, "--scan-cooldowns", 0.1, 0.3, "--scan-lr-fracs", 0.3, 0.6,
                 "--out", out, "--quiet"]) == 0
    res = _load(out)
    for key in ("config", "timestamp", "steps", "schedules", "max_abs_z", "agreement_3sigma", "error_table",
                "fits", "wsd_cooldown_scan", "lr_scan", "peak_lr", "max_stable_lr"):
        assert key in res, key
    assert res["x64"] is True and res["status"] == "complete"
    steps = np.asarray(res["steps"])
    assert steps[0] == 0 and steps[-1] == 300 and np.all(np.diff(steps) > 0)
    assert {240, 241, 242, 243} <= set(steps.tolist())   # the steps right after the cooldown starts (issue 13)
    assert res["peak_lr"] == pytest.approx(0.25 * res["max_stable_lr"], rel=1e-12)
    P0 = np.sum(np.arange(1, 129, dtype=float) ** (-3.4))  # v = 4d = 128, closed form
    for name in ("constant", "wsd-linear"):
        s = res["schedules"][name]
        mean, se, ex = (np.asarray(s[k], dtype=float) for k in ("sim_mean", "sim_stderr", "exact"))
        # step 0: theta = 0 for every seed: both equal P(0) (1e-12 relative)
        assert mean[0] == pytest.approx(P0, rel=1e-12) and ex[0] == pytest.approx(P0, rel=1e-12)
        # the stored z-scores and max |z| are (mean - exact)/se at steps >= 1 (1e-9)
        z = (mean[1:] - ex[1:]) / se[1:]
        assert res["max_abs_z"][name] == pytest.approx(np.max(np.abs(z)), rel=1e-9)
        assert s["agreement"]["n_points"] == steps.size - 1
        assert res["agreement_3sigma"][name] == bool(np.all(np.abs(z) <= 3))
        ag = s["agreement"]   # the bootstrap band: a finite critical value above the pointwise max over noise
        assert ag["seeds"] == 16 and ag["band"] > 1 and 0 < ag["p_value"] <= 1 and ag["expected_over"] >= 0
        assert res["agreement_band"][name] == (ag["max_abs_z"] <= ag["band"])
        # Monte Carlo (16 seeds; the per-seed loss is right-skewed, so single points may reach |z| ~ 5):
        # the bulk of the grid agrees: median |z| < 1.5 (Gaussian: 0.67) and <= 10% of points beyond 3
        assert np.median(np.abs(z)) < 1.5 and np.mean(np.abs(z) > 3) <= 0.1, z
        assert ex[-1] < 0.2 * ex[0]
    # closed-form WSD: lr_t = peak min(1, (T - t) / (0.2 T)), recorded at step t - 1 (the last lr used)
    lr = np.asarray(res["schedules"]["wsd-linear"]["lr"], dtype=float)
    t = np.maximum(steps - 1, 0).astype(float)
    assert np.allclose(lr, res["peak_lr"] * np.clip((300 - t) / 60.0, 0, 1), rtol=1e-12, atol=0)
    # error table: the adiabatic rules reproduce the constant run they are built from (1e-6, interpolation
    # at shared nodes); every row present; relative errors finite
    rows = {(r["schedule"], r["predictor"]): r for r in res["error_table"]}
    assert len(rows) == 2 * 7
    assert rows["constant", "adiabatic (a=1/2)"]["max_rel"] < 1e-6
    assert rows["constant", "equilibrium"]["max_rel"] < 1e-6
    # the exact curves and every entry of the error table against the numpy recursion on the same sampled W
    # (the spectrum of plrf.sample_spectrum with the command's key; closed-form lr of each schedule): the
    # stored exact curve to 1e-10 relative, the max / final relative errors of every predictor to 1e-8
    import plrf
    spec = plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 128, 32), key=jax.random.split(jax.random.key(0))[0])
    assert float(spec.P_star) + float(np.sum(spec.w)) == pytest.approx(P0, rel=1e-10)
    u = np.arange(300, dtype=float)
    closed = {"constant": np.full(300, res["peak_lr"]), "wsd-linear": res["peak_lr"] * np.clip((300 - u) / 60, 0, 1)}
    from_step = res["error_from_step"]
    assert from_step == 3   # err_from 0.01 of 300 steps
    late = steps >= from_step
    for name, lrs in closed.items():
        ref = numpy_expected_loss(spec, lrs)[steps]
        np.testing.assert_allclose(res["schedules"][name]["exact"], ref, rtol=1e-10)
        for pn, pred in res["schedules"][name]["predictions"].items():
            rel = np.abs(np.asarray(pred, dtype=float) / ref - 1)
            row = rows[name, pn]
            assert row["max_rel"] == pytest.approx(np.max(rel[late]), rel=1e-8, abs=1e-12), (name, pn)
            assert row["final_rel"] == pytest.approx(rel[-1], rel=1e-8, abs=1e-12), (name, pn)
    # scans: the exact optimum is the argmin of the exact losses; a law's choice cannot beat it (regret >= 0)
    for scan, vals in (("wsd_cooldown_scan", [0.1, 0.3]), ("lr_scan", [0.3, 0.6])):
        sc = res[scan]
        assert sc["values"] == vals
        ex = np.asarray(sc["exact"])
        assert sc["exact_opt"]["value"] == vals[int(np.argmin(ex))]
        for law in ("tissue", "multipower"):
            o = sc[f"{law}_opt"]
            assert o["exact_loss_at"] == ex[vals.index(o["value"])] and o["regret"] >= 0
    text = (out / "table.md").read_text()
    assert "wsd-linear" in text and "multi-power (fit)" in text
    assert _is_png(out / "schedules.png") and _is_png(out / "wsd_scan.png")
    assert figs == {"schedules.png": [], "wsd_scan.png": []}   # labelled axes, legends hiding no data


@pytest.mark.slow   # ~2.5 min of CPU (theory ladder + SGD families)
def test_collapse_end_to_end(tmp_path, monkeypatch):
    figs = record_figures(monkeypatch)
    out = tmp_path / "col"
    assert _run(["collapse", "--d", 16, 24, 32, "--h-min", 8, "--h-max", 128, "--h-flops", 1e6, "--seeds", 6,
                 "--num", 20, "--families", "optimal", "2x", "exp+0.5", "--out", out, "--quiet"]) == 0
    res = _load(out)
    import plrf
    k_w = jax.random.split(jax.random.key(0))[0]
    specs = {d: plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 4 * d, d), key=jax.random.fold_in(k_w, d))
             for d in (16, 24, 32)}
    lr0 = 0.5 / (np.pi ** 2 / 6)

    def cosine_lrs(T):
        return lr0 * 0.5 * (1 + np.cos(np.pi * np.arange(T) / T))

    for key in ("config", "timestamp", "horizon_ladder", "T_opt", "L0", "L0_fit", "families"):
        assert key in res, key
    assert set(res["families"]) == {"optimal", "2x", "exp+0.5"}
    T_opt = np.asarray(res["T_opt"])
    hl = res["horizon_ladder"]
    ds = np.array([16, 24, 32.0])
    # T*(d) = (d / coef)^{1/xi} / d (B = 1), increasing in d
    assert np.allclose(T_opt, (ds / hl["coef"]) ** (1 / hl["xi"]) / ds, rtol=1e-12)
    assert np.all(np.diff(T_opt) > 0) and hl["g"] == pytest.approx(1 / hl["xi"] - 1, rel=1e-12)
    fam = res["families"]
    assert fam["optimal"]["T"] == np.maximum(1, np.round(T_opt)).astype(int).tolist()
    assert fam["2x"]["T"] == np.maximum(1, np.round(2 * T_opt)).astype(int).tolist()
    # exp+0.5: T ~ d^{g + 1/2} (rounded to integers: ratio within 1/T_min)
    Te = np.asarray(fam["exp+0.5"]["T"], dtype=float)
    assert np.log(Te[-1] / Te[0]) / np.log(2.0) == pytest.approx(hl["g"] + 0.5, abs=2.0 / Te[0] / np.log(2))
    for name, r in fam.items():
        x = np.asarray(r["x"])
        l = np.asarray(r["l_exact"], dtype=float)
        assert l.shape == (3, x.size) and x[-1] == 1.0 and np.all((x > 0) & (x <= 1))
        assert np.allclose(l[:, -1], 1.0, rtol=1e-12)  # normalized by the final loss
        # Delta of the exact curves = sample std (ddof=1) / mean over sizes (1e-10)
        assert np.allclose(r["delta_sizes"], l.std(0, ddof=1) / l.mean(0), rtol=1e-10, atol=1e-14)
        for k in ("delta", "sigma", "delta_noise"):
            a = np.asarray(r[k], dtype=float)
            assert a.shape == x.shape and np.all(np.isfinite(a[:-1])), k
        # the exact final losses against the numpy recursion on the same sampled W per size (v = 4d, key
        # fold_in(split(key(0))[0], d)), cosine lr from lr0 = 0.5 / zeta(2) to 0 over T(d): within 1e-12
        # relative (measured 2.2e-16: at these horizons the log-time solver steps exactly)
        ref = np.array([numpy_expected_loss(specs[d], cosine_lrs(T))[-1] for d, T in zip(ds.astype(int), r["T"])])
        ex = np.asarray(r["exact_final"])
        np.testing.assert_allclose(ex, ref, rtol=1e-12)
        # Monte Carlo: the mean of 6 seeds at T against the exact expectation, in standard errors estimated from
        # the stored per-seed relative spread sigma(x = 1) (averaged over sizes): |z| <= 4 at every size (a
        # normal z exceeds 4 with probability 6e-5; the margin covers the s.e. being estimated from the same 6
        # right-skewed seeds; measured max |z| 1.41, sigma(1) = 0.19-0.56)
        sim = np.asarray(r["sim_final_mean"])
        z = (sim / ref - 1) / (np.asarray(r["sigma"], dtype=float)[-1] / np.sqrt(6))
        assert np.all(np.abs(z) <= 4), z
    assert 0 <= res["L0"] < min(min(r["exact_final"]) for r in fam.values())
    assert _is_png(out / "collapse.png")
    assert figs == {"collapse.png": []}   # labelled axes, legends hiding no data


@pytest.mark.parametrize("argv, option", [
    (["schedules", "--schedules", "constant", "bogus"], "--schedules"),
    (["schedules", "--lr-frac", "1.5"], "--lr-frac"),
    (["schedules", "--lr-frac", "1"], "--lr-frac"),
    (["schedules", "--cooldown", "0"], "--cooldown"),
    (["schedules", "--seeds", "1"], "--seeds"),
    (["collapse", "--schedule", "nope"], "--schedule"),
    (["collapse", "--d", "32", "64"], "--d"),
    (["collapse", "--alpha", "0.4"], "--alpha"),
    (["collapse", "--families", "2x"], "--families"),
])
def test_bad_options_exit_2(argv, option, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        _run(argv + ["--out", tmp_path / "x", "--quiet"])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


@pytest.mark.slow   # ~1 min: three eigen programs with momentum and the scans on the log-time solver
def test_schedules_with_momentum_and_ema(tmp_path, monkeypatch):
    """``plrf schedules --optimizer momentum --ema``: the exact curves are those of ``plrf.expected_loss`` with
    optax-convention heavy ball on the same sampled W (the engine itself is checked against independent
    recursions in test_optimizers), eigen heavy ball agrees with them (simultaneous bootstrap band), the peak is
    lr_frac x (1 - mu) x SGD's edge, no SGD predictor is reported, and the figures pass the label checks."""
    import plrf
    from plrf import optimizers as O
    figs = record_figures(monkeypatch)
    out = tmp_path / "hb"
    assert _run(["schedules", "--d", 32, "--steps", 400, "--seeds", 64, "--schedules", "constant", "step-8-1-1",
                 "--num", 20, "--optimizer", "momentum", "--momentum", 0.8, "--ema", 0.02,
                 "--scan-cooldowns", 0.1, 0.3, "--scan-lr-fracs", 0.3, 0.6, "--out", out, "--quiet"]) == 0
    res = _load(out)
    cfg = res["config"]
    assert (cfg["optimizer"], cfg["momentum"], cfg["ema"]) == ("momentum", 0.8, 0.02)
    assert res["peak_lr"] == pytest.approx(0.5 * 0.2 * res["max_stable_lr"], rel=1e-12)
    assert res["error_table"] == [] and "SGD formulas" in res["predictors_note"]
    k_w, _ = jax.random.split(jax.random.key(0))
    spec = plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 128, 32), key=k_w)
    steps = np.asarray(res["steps"])
    for name in ("constant", "step-8-1-1"):
        s = res["schedules"][name]
        sch = plrf.schedules.by_name(name, res["peak_lr"], 400)
        ref = plrf.expected_loss(spec, O.momentum(sch, 0.8, ema=0.02), steps=400, grid=steps)
        np.testing.assert_allclose(np.asarray(s["exact"], dtype=float), ref.loss, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(s["exact_average"], dtype=float), ref.readouts["average"][0],
                                   rtol=1e-10)
        assert s["agreement"]["within_band"], s["agreement"]
        assert s["predictions"] == {}
    assert res["wsd_cooldown_scan"]["readout"] == "average" and "tissue" not in res["wsd_cooldown_scan"]
    assert set(figs) == {"schedules.png", "wsd_scan.png"} and all(v == [] for v in figs.values()), figs
    assert _is_png(out / "schedules.png") and _is_png(out / "wsd_scan.png")


def test_schedules_schedule_free_with_ema_exits_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        _run(["schedules", "--optimizer", "schedule-free", "--ema", "0.1", "--out", tmp_path / "x", "--quiet"])
    assert exc.value.code == 2
    assert "--ema" in capsys.readouterr().err and not (tmp_path / "x" / "results.json").exists()


@pytest.mark.slow   # ~1-2 min: an L-BFGS optimisation and two eigen programs
def test_schedules_optimal_row(tmp_path):
    """``--schedules ... optimal``: the schedule of theory.optimal_schedule on the run's W, simulated and
    predicted like the others; its exact final loss is the optimiser's (re-evaluated by plrf.expected_loss), lower
    than the constant lr's, and the stored knots rebuild the per-step lr (replot) exactly."""
    from experiments.schedules_cmd import _optimal_from_info
    out = tmp_path / "opt"
    assert _run(["schedules", "--d", 32, "--steps", 300, "--seeds", 64, "--schedules", "constant", "optimal",
                 "--num", 20, "--scan-cooldowns", 0.1, 0.3, "--scan-lr-fracs", 0.3, 0.6, "--out", out,
                 "--quiet"]) == 0
    res = _load(out)
    info, S = res["optimal_schedule"], res["schedules"]
    assert S["optimal"]["exact"][-1] == pytest.approx(info["final_loss"], rel=1e-10)
    assert S["optimal"]["exact"][-1] < 0.9 * S["constant"]["exact"][-1]
    steps = np.asarray(res["steps"])
    lr = _optimal_from_info(info, 300)
    np.testing.assert_allclose(np.asarray(S["optimal"]["lr"]), lr[np.maximum(steps - 1, 0)], rtol=1e-12)
    assert np.max(lr) <= info["cap"] * (1 + 1e-12)
    assert S["optimal"]["agreement"]["within_band"]
    assert {r["predictor"] for r in res["error_table"] if r["schedule"] == "optimal"} >= {"noise-ode", "equilibrium"}


def test_schedules_optimal_row_is_sgd_only(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        _run(["schedules", "--schedules", "optimal", "--optimizer", "momentum", "--out", tmp_path / "x", "--quiet"])
    assert exc.value.code == 2 and "optimal" in capsys.readouterr().err
