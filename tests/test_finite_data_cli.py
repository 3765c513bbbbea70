"""plrf data: fail-fast input checks (exit 2 naming the option) and a small run against its own references."""
import numpy as np
import pytest

from cli_util import is_png, load_results, run_cli


@pytest.mark.parametrize("argv, needle", [
    (["--batch", "64", "--samples", "32"], "--batch must be in [1, --samples = 32]"),
    (["--d", "5000"], "--d must be in [1, 4096]"),
    (["--alpha", "0.2", "--beta", "0.1"], "--alpha/--beta inadmissible"),
    (["--epochs", "100000000"], "--epochs"),
    (["--samples", "100000", "--d", "4096", "--seeds", "64"], "--samples/--seeds"),
    (["--lr", "100"], "--lr"),
    (["--seeds", "1"], "--seeds"),
    (["--optimizer", "momentum", "--lr", "5"], "--lr"),
    (["--optimizer", "schedule-free", "--ema", "uniform"], "--optimizer schedule-free"),
    (["--optimizer", "adam"], "--optimizer"),
])
def test_data_bad_input_exit_2(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        run_cli(["data", "--out", tmp_path / "o", "--quiet"] + argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "o" / "results.json").exists()


@pytest.mark.slow
def test_data_full_batch_run_matches_gd_theory_and_resumes(tmp_path, capsys):
    # B = N: the simulation is exact full-batch GD on each seed's sample, so the GD deterministic equivalent
    # must match the seed mean within 4 s.e. + 5% (its O(1/N) error at N = 64); the first step is exact
    out = tmp_path / "o"
    argv = ["data", "--d", "64", "--samples", "64", "--batch", "64", "--epochs", "64", "--seeds", "24",
            "--num", "12", "--out", out, "--quiet"]
    assert run_cli(argv) == 0
    r = load_results(out)
    assert r["status"] == "complete" and is_png(out / "data.png")
    pop, se = np.array(r["sim"]["pop"]), np.array(r["sim"]["pop_stderr"])
    gd = np.array(r["gd_theory"]["pop"])
    assert np.all(np.abs(pop - gd) <= 4 * se + 0.05 * gd), (pop, gd, se)
    assert pop[0] == pytest.approx(r["P0"], rel=1e-12)
    # multi-pass on 64 samples cannot beat one pass on 64 x 64 fresh samples (same lr, batch)
    assert r["final"]["pop_onepass"] < r["final"]["pop_sim"]
    # a rerun of the same configuration does not recompute; another configuration is refused (exit 2)
    assert run_cli(argv) == 0
    assert load_results(out)["sim"] == r["sim"]
    with pytest.raises(SystemExit) as e:
        run_cli([a if a != "24" else "12" for a in argv])
    assert e.value.code == 2


@pytest.mark.slow
def test_data_full_batch_momentum_matches_its_theory(tmp_path):
    # B = N with --optimizer momentum: the simulation is exact full-batch heavy ball on each seed's sample, so the
    # full-batch momentum deterministic equivalent must match the seed mean within 4 s.e. + 5% (its O(1/N) error
    # at N = 64, as for GD above); measured on the default problem (d = N = 128, 16 seeds): final population
    # 0.006192 +- 0.00033 against 0.006264
    out = tmp_path / "o"
    argv = ["data", "--d", "64", "--samples", "64", "--batch", "64", "--epochs", "64", "--seeds", "24",
            "--num", "12", "--optimizer", "momentum", "--out", out, "--quiet"]
    assert run_cli(argv) == 0
    r = load_results(out)
    pop, se = np.array(r["sim"]["pop"]), np.array(r["sim"]["pop_stderr"])
    th = np.array(r["gd_theory"]["pop"])
    assert r["gd_theory"]["optimizer"] == "momentum" and np.all(np.isfinite(th))
    assert np.all(np.abs(pop - th) <= 4 * se + 0.05 * th), (pop, th, se)
    assert r["final"]["pop_gd_theory"] == pytest.approx(th[-1]) and th[-1] < 0.1 * th[0]


@pytest.mark.slow
def test_data_optimizer_one_epoch_matches_exact_one_pass(tmp_path):
    # --optimizer momentum --ema uniform, one epoch at B = 1: every sample is seen once, so the reported loss (of
    # the uniform average) is one-pass training and its seed mean must match the exact one-pass curve of the same
    # optimizer's average (computed here independently of the command's stored curve) within 4 s.e.
    import jax

    import plrf
    from plrf import optimizers as O
    out = tmp_path / "o"
    argv = ["data", "--d", "16", "--samples", "256", "--batch", "1", "--epochs", "1", "--seeds", "128",
            "--optimizer", "momentum", "--ema", "uniform", "--num", "16", "--out", out, "--quiet"]
    assert run_cli(argv) == 0
    r = load_results(out)
    assert r["sim"]["readout"] == "average" and r["config"]["optimizer"] == "momentum"
    # the full-batch theory of the same optimizer (its average) is now drawn: present and finite
    th = r["gd_theory"]
    assert th["optimizer"] == "momentum+ema=uniform" and th["readout"] == "average"
    assert len(th["pop"]) == len(r["steps"]) and np.all(np.isfinite(th["pop"])) and np.all(np.isfinite(th["train"]))
    assert "full-batch momentum+ema=uniform" in th["note"] and "not included" in th["note"]
    assert th["pop"][0] == pytest.approx(r["P0"], rel=1e-5)
    problem = plrf.Problem(1.0, 0.7, 64, 16)
    k_w, _ = jax.random.split(jax.random.key(0))
    spec = plrf.spectrum.expand(plrf.sample_spectrum(problem, key=k_w))
    lr = 0.5 / spec.trace * (1 - 0.9)
    assert r["lr"] == pytest.approx(lr, rel=1e-12)
    ex = plrf.expected_loss(spec, O.momentum(lr, 0.9, ema="uniform"), steps=256, grid=np.asarray(r["steps"]))
    ref = np.asarray(ex.readouts["average"][0])
    pop, se = np.array(r["sim"]["pop"]), np.array(r["sim"]["pop_stderr"])
    z = (pop[1:] - ref[1:]) / se[1:]
    assert np.all(np.abs(z) < 4), z
    np.testing.assert_allclose(r["onepass_exact"]["pop"], ref, rtol=1e-10)


@pytest.mark.slow
def test_data_small_lr_sgd_follows_gd_theory(tmp_path):
    # at lr = 0.1 / tr K (B = 4) the SGD noise is small: the reshuffled multi-epoch SGD mean follows the GD
    # deterministic equivalent within 4 s.e. at every grid point (measured max 1.4 s.e., d = N = 128, 16 seeds)
    # and the measured effective-data multiplier after 64 epochs within 5% of the theory's (46.7 vs 47.1)
    out = tmp_path / "o"
    assert run_cli(["data", "--lr", "0.0632", "--out", out, "--quiet"]) == 0
    r = load_results(out)
    assert r["gd_z_max"] < 4.0
    assert r["E_sim"][-1] == pytest.approx(r["E_gd_theory"][-1], rel=0.05)
    assert r["E_sim"][-1] < 64


# ---------------------------------------------------------------------------------------------------------
# plrf data-frontier

TINY = ["data-frontier", "--samples", "8,32,128", "--ds", "8,16", "--computes", "1e2,1e3,1e4", "--epochs-max", "16",
        "--effective-d", "256", "--quiet"]


@pytest.mark.parametrize("argv, needle", [
    (["--samples", "0"], "argument --samples: each N must be an integer in [1"),
    (["--samples", "8,x"], "argument --samples: expected a comma-separated list"),
    (["--alpha", "0.1", "--beta", "0.1"], "--alpha/--beta inadmissible"),
    (["--ds", "1:4"], "argument --ds"),
    (["--ds", "8,1"], "argument --ds: each d must be an integer in [2"),
    (["--computes", "0:1e4"], "argument --computes"),
    (["--computes", "1e3,1e20"], "argument --computes: each compute f must be in [1"),
    (["--c", "2"], "--c must be in (0, 1]"),
    (["--epochs-max", "0"], "argument --epochs-max"),
    (["--epochs-max", "100000000"], "--epochs-max must be in [1, 2^24"),
    (["--effective-d", "100000"], "--effective-d must be in [2, 65536]"),
    (["--tol", "0"], "argument --tol"),
    (["--time-limit", "1e-6"], "--time-limit: estimated"),
])
def test_data_frontier_bad_input_exit_2(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        run_cli(["data-frontier", "--out", tmp_path / "o", "--quiet"] + argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert not (tmp_path / "o" / "results.json").exists()


def test_saturation_fits_name_the_law_that_generated_the_data():
    # the same two-parameter fits on planted saturation levels: a power law is recovered with its exponent and
    # wins; an a log N + b law is recovered and wins; the error bar of the power fit covers the planted slope
    from experiments.data_frontier_cmd import saturation_fits
    N = np.array([16, 64, 256, 1024, 4096.0])
    noise = np.exp(0.01 * np.array([1, -1, 0.5, -0.5, 0.2]))
    s = saturation_fits(N, 1.7 * N ** 0.97 * noise, alpha=1.0, saturated=[True, True, True, False, False])
    assert s["better"] == "power" and s["power"]["slope"] == pytest.approx(0.97, abs=0.01)
    assert abs(s["power"]["slope"] - 0.97) <= 3 * s["power"]["err"]
    assert s["power"]["rms_log_resid"] < 0.01 < s["log"]["rms_log_resid"]
    assert s["power_saturated_only"]["n"] == 3 and s["law_2alpha_minus_1"] == 1.0
    s = saturation_fits(N, (30 * np.log(N) + 5) * noise, alpha=1.0)
    assert s["better"] == "log" and s["log"]["a"] == pytest.approx(30, rel=0.05)
    assert s["log"]["b"] == pytest.approx(5, abs=3)


def test_stop_point_first_compute_over_tolerance():
    from experiments.data_frontier_cmd import stop_point
    C = np.array([1e2, 1e3, 1e4, 1e5])
    st = stop_point(C, [1.0, 1.05, 1.15, 2.0], np.array([0.5, 2, 8, 40.0]), np.array([8, 16, 32, 64]), 0.1)
    assert st["reached"] and st["compute"] == 1e4 and st["epochs"] == 8 and st["d"] == 32
    # ratio linear in log f between 1e3 (1.05) and 1e4 (1.15): 1.1 halfway, at f = 10^3.5
    assert st["compute_cross"] == pytest.approx(10 ** 3.5, rel=1e-12) and st["epochs_last_below"] == 2
    st = stop_point(C, [1.0, 1.01, 1.02, 1.05], np.array([0.5, 2, 8, 40.0]), np.array([8, 16, 32, 64]), 0.1)
    assert not st["reached"] and st["ratio_max"] == 1.05


def test_effective_cell_inverts_population_gradient_flow():
    # one E(K, N) cell at d = 256: E(1, N) is one pass up to the proxy's error at c = 0.1; E <= K; and E N
    # fresh samples of population gradient flow (written out here) reach the K-epoch loss, to 1e-6
    from experiments.data_frontier_cmd import effective_cell
    cfg = dict(alpha=1.0, beta=0.7, effective_d=256, epochs_max=64, c=0.1, per_decade=16)
    cell = effective_cell(cfg, 32)
    j = np.arange(1, 257.0)
    lam, w = j ** -2.0, j ** -3.4
    E, L, K = cell["E"], cell["loss"], cell["K"]
    assert list(K) == [1, 2, 4, 8, 16, 32, 64]
    assert 0.85 < E[0] <= 1.0 and np.all(E <= K) and np.all(np.diff(E) > 0)
    for Ek, Lk in zip(E, L):
        assert _gf(lam, w, 0.0, 0.1 * Ek * 32 / lam.sum()) == pytest.approx(Lk, rel=1e-6)


def _gf(lam, w, P_star, t, n=None):
    """Population gradient flow, written out independently: P* + sum_k w_k exp(-2 lam_k t)."""
    return P_star + float(np.sum(np.asarray(w) * np.exp(-2 * np.asarray(lam) * t)))


# the end-to-end runs take 5-10 s of CPU (two deterministic spectra at ~1.7 s each, the figures ~2 s per run): slow
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("df") / "o"
    argv = TINY + ["--out", out]
    assert run_cli(argv) == 0
    return out, argv, load_results(out)


@pytest.mark.slow
def test_data_frontier_tiny_run_against_references(tiny_run):
    from theory.deterministic import deterministic_spectrum
    from theory.finite_data import exponents, gd_losses
    out, _, r = tiny_run
    assert r["status"] == "complete" and r["cells"] == 6
    assert is_png(out / "data_frontier.png") and is_png(out / "effective_data.png")
    assert r["exponents"] == pytest.approx(exponents(1.0, 0.7))
    # E(K, N): K = 1 is worth one pass up to the gradient-flow proxy's error at c = 0.1 (0.9-1); never more than
    # K fresh passes; and E N is the fresh-sample count at which population gradient flow (written out here) reaches
    # the reported K-epoch loss: P* + sum w exp(-2 lam c E N / tr) = L_K to 1e-6
    e = r["effective"]
    j = np.arange(1, 257.0)
    lam, w = j ** -2.0, j ** -3.4
    for run in e["runs"]:
        E, L = np.array(run["E"]), np.array(run["loss"])
        assert 0.85 < E[0] <= 1.0, run["N"]
        assert np.all(E <= np.array(e["K"]) * (1 + 1e-9)), run["N"]
        for Ek, Lk in zip(E, L):
            t = 0.1 * Ek * run["N"] / lam.sum()
            assert _gf(lam, w, 0.0, t) == pytest.approx(Lk, rel=1e-6)
    # E_max grows with N (larger datasets can be repeated more)
    Em = [x["E_max"] for x in e["runs"]]
    assert Em[0] < Em[1] < Em[2]
    # the frontier: at f = 1e4 and N = 32 the reported best loss is the minimum over d = 8, 16 of direct
    # evaluations: gd_losses on the two-level deterministic spectrum beyond one epoch (f > d N), the
    # population gradient flow above within one epoch; the unlimited frontier the minimum of the latter
    f, N = 1e4, 32
    k = r["frontier"]["computes"].index(f)
    run = next(x for x in r["frontier"]["runs"] if x["N"] == N)
    direct, fresh = [], []
    for d in (8, 16):
        sp = deterministic_spectrum(1.0, 0.7, d, v=4 * d)
        lm, ww, nn = np.asarray(sp.lam), np.asarray(sp.w), np.asarray(sp.n)
        tau = 0.1 * f / (d * float(np.sum(nn * lm)))
        fresh.append(_gf(lm, ww, float(sp.P_star), tau))
        direct.append(float(gd_losses(lm, ww, float(sp.P_star), N, [tau], n=nn).pop[0]) if f > d * N else fresh[-1])
    assert run["loss_opt"][k] == pytest.approx(min(direct), rel=1e-10)
    assert run["d_opt"][k] == (8, 16)[int(np.argmin(direct))]
    assert run["epochs_opt"][k] == pytest.approx(f / (run["d_opt"][k] * N))
    assert r["frontier"]["loss_unlimited"][k] == pytest.approx(min(fresh), rel=1e-10)
    assert all(x >= 1 - 1e-12 for x in run["ratio"])    # repeating never beats fresh data


@pytest.mark.slow
def test_data_frontier_resume_redraw_and_refusal(tiny_run, monkeypatch, capsys):
    from experiments import data_frontier_cmd as dfc
    out, argv, r = tiny_run

    def boom(config, N):
        raise AssertionError("recomputed a stored cell")
    monkeypatch.setitem(dfc.COMPUTE, "effective", boom)
    monkeypatch.setitem(dfc.COMPUTE, "frontier", boom)
    assert run_cli(argv) == 0
    r2 = load_results(out)
    assert r2["sessions"] == 2
    for key in ("effective", "frontier", "exponents"):
        assert r2[key] == r[key]
    (out / "effective_data.png").unlink()
    assert run_cli(["plot", out, "--quiet"]) == 0 and is_png(out / "effective_data.png")
    # another configuration is refused, naming the option; --overwrite would be needed
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_cli(argv + ["--c", "0.05"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "(--c)" in err and "--overwrite" in err
