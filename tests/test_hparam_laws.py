"""theory.hparam_laws and `plrf hparam-laws` (issue 14 items 4-5): exponent fits on planted data, the optimal
batch against brute force on an independent numpy recursion, the critical batch on a planted McCandlish table,
the symbolic exponents against direct mode sums, the CLI's bad input and resume."""
import math

import numpy as np
import pytest

from tests.cli_util import load_results, run_cli
from theory import hparam_laws as H


def test_power_fit_recovers_planted_exponent():
    rng = np.random.default_rng(1)
    x = np.geomspace(1e3, 1e6, 13)
    y = 2.5 * x ** 0.43 * np.exp(0.05 * rng.standard_normal(x.size))
    f = H.power_fit(x, y)
    assert abs(f.slope - 0.43) < 3 * f.err          # within 3 standard errors
    assert 0.003 < f.err < 0.05                      # the noise (5% per point, 3 decades) sets it: ~0.01
    # noiseless: exact slope, zero residual error
    g = H.power_fit(x, 7.0 * x ** -1.2)
    assert g.slope == pytest.approx(-1.2, abs=1e-12) and g.se < 1e-12
    with pytest.raises(ValueError):
        H.power_fit([1.0, 2.0], [1.0, 2.0])


def test_optimal_batch_parabola_and_tolerance_batch():
    B = 2.0 ** np.arange(8)
    L = 1e-3 * np.exp(0.3 * (np.log(B) - np.log(11.0)) ** 2)   # minimum at B = 11 (between grid points)
    ob = H.optimal_batch(B, L, tol=0.1)
    assert not ob.at_edge and ob.B_star == pytest.approx(11.0, rel=1e-9)   # exact for a parabola in log B
    # largest B with L <= 1.1 min: (ln B - ln 11)^2 = ln(1.1)/0.3, interpolated linearly in log between 16, 32
    exact = 11.0 * math.exp(math.sqrt(math.log(1.1) / 0.3))
    assert ob.B_tol == pytest.approx(exact, rel=0.05)
    mono = H.optimal_batch(B, 1e-3 * (1 + B / 8.0))                       # increasing: B* = 1 at the edge
    assert mono.at_edge and mono.B_star == 1.0
    assert mono.B_tol == pytest.approx(8 * (1.1 * 1.125 - 1), rel=0.03)   # 1 + B/8 = 1.1 (1 + 1/8): B = 1.9


def test_critical_batch_on_planted_mccandlish_table():
    """L*(B, D) = (D / (1 + B/Bc))^-p  <=>  E(B) = E_min (1 + B/Bc) at any target: B_crit = Bc exactly."""
    Bc, p = 37.0, 0.8
    D = np.geomspace(1e2, 1e6, 33)
    B = 2.0 ** np.arange(10)
    table = (D[:, None] / (1 + B[None, :] / Bc)) ** -p
    cb = H.critical_batch(D, B, table, D0=1e4)
    assert cb.B_crit == pytest.approx(Bc, rel=0.02)         # the (log D, log L) interpolation is exact here
    assert cb.max_log_resid < 0.02
    assert np.isfinite(cb.samples).sum() >= 8


def test_symbolic_exponents_against_mode_sums():
    """Loss and B_simple exponents of the sympy derivation against direct population sums over modes
    (lam_j = j^-2a, w_j = j^-2a-2b, gradient flow e_j(s) = w_j exp(-2 s lam_j))."""
    a, b = 1.0, 0.7
    sym = H.symbolic_exponents(a, b)
    assert sym["loss_D"] == pytest.approx((2 * a + 2 * b - 1) / (2 * a))
    assert sym["B_edge_d"] == 0.0 and H.symbolic_exponents(0.4, 1.0)["B_edge_d"] == pytest.approx(0.2)
    j = np.arange(1, 1_000_001, dtype=np.float64)
    lam, w = j ** (-2 * a), j ** (-2 * a - 2 * b)
    s = np.array([3e2, 3e3])
    P = np.array([np.sum(w * np.exp(-2 * t * lam)) for t in s])
    G = np.array([np.sum(lam * w * np.exp(-2 * t * lam)) for t in s])
    slope_P = np.diff(np.log(P))[0] / np.diff(np.log(s))[0]
    slope_B = np.diff(np.log(P / G))[0] / np.diff(np.log(s))[0]
    assert slope_P == pytest.approx(-sym["loss_D"], abs=0.02)
    assert slope_B == pytest.approx(sym["B_simple_vs_s"], abs=0.02)
    assert sym["Bcrit_D_signal"] == pytest.approx(1.0)
    assert sym["expr"]["noise_limit"] == "2*B*trK/(eta*trK2)"


def _numpy_final_losses(spec, lrs, B, S):
    """Independent reference: SGD's exact per-mode recursion in numpy, vectorised over lrs."""
    lam, n, w = (np.asarray(x, dtype=np.float64) for x in (spec.lam, spec.n, spec.w))
    eta = np.asarray(lrs, dtype=np.float64)[:, None]
    g = 1 - 2 * eta * lam + eta ** 2 * lam ** 2 * (B + 1) / B
    e = np.broadcast_to(w, g.shape).copy()
    for _ in range(S):
        P = spec.P_star + e.sum(axis=1, keepdims=True)
        e = g * e + n * (eta ** 2 / B) * lam ** 2 * P
    P = spec.P_star + e.sum(axis=1)
    return np.where(np.isfinite(P) & (P < 1e6), P, np.inf)


@pytest.mark.slow
def test_optimal_batch_against_brute_force():
    """One cell (d = 64, D = 256): the tuned loss at every B and the optimal B against a brute-force lr grid on a
    numpy recursion of the same spectrum."""
    spec = H.ladder_spectrum(1.0, 0.7, 64)
    D = 256
    c = H.cell(spec, D, b_max=16, factor=2)
    brute = []
    for B, S, top in zip(c["batch"], c["steps"], c["lr_max"]):
        lrs = np.geomspace(top * 1e-3, top * 0.99, 400)
        brute.append(np.min(_numpy_final_losses(spec, lrs, int(B), int(S))))
    brute = np.array(brute)
    np.testing.assert_allclose(c["loss"], brute, rtol=3e-3)    # Brent in log lr vs a 400-point grid
    assert np.all(c["loss"] >= brute * (1 - 1e-9) * (1 - 3e-3))
    assert int(np.argmin(c["loss"])) == int(np.argmin(brute))
    ob = H.optimal_batch(c["batch"], c["loss"])
    assert ob.B_star == c["batch"][int(np.argmin(brute))]


def test_weight_decay_does_not_help_constant_lr_sgd():
    """From theta_0 = 0, decoupled weight decay pulls toward the start: the jointly tuned optimum is lambda = 0,
    and each lambda > 0 is worse (its own tuned lr)."""
    spec = H.ladder_spectrum(1.0, 0.7, 64)
    wd = H.tune_weight_decay(spec, "sgd", 4, 64, lambdas=[1e-3, 1e-2])
    assert wd.lam_star == 0.0 and math.isinf(wd.tau) and wd.gain == 1.0
    assert np.all(wd.loss[1:] > wd.loss[0] * 1.001)


@pytest.mark.parametrize("argv, needle", [
    (["--ds", "100"], "--ds needs at least 2"),
    (["--ds", "100", "2000000"], "--ds: each d must be in [2, 1000000]"),
    (["--budgets", "1e5", "1e3"], "--budgets D_MIN D_MAX: need 16 <= D_MIN < D_MAX"),
    (["--batch-factor", "17"], "--batch-factor must be in 2..16"),
    (["--tol", "2"], "--tol must be in (0, 1]"),
    (["--extend", "3"], "--extend must be in [0, 2]"),
    (["--alpha", "0.2", "--beta", "0.1"], "2(alpha + beta) > 1"),
    (["--budgets", "100", "200", "--per-decade", "1"], "need >= 3 to fit exponents"),
    (["--tune-momentum"], "--tune-momentum applies to --optimizer momentum or nesterov"),
    (["--optimizer", "dana-decaying", "--tune-momentum"], "--tune-momentum applies to --optimizer momentum"),
    (["--optimizer", "nesterov", "--mu-grid", "0", "0.9"], "--mu-grid needs --tune-momentum"),
    (["--optimizer", "momentum", "--refine-momentum"], "--refine-momentum needs --tune-momentum"),
    (["--optimizer", "momentum", "--tune-momentum", "--mu-grid", "0", "1.0"], "--mu-grid: need >= 2 distinct"),
    (["--optimizer", "nesterov", "--tune-momentum", "--mu-grid", "0.5"], "--mu-grid: need >= 2 distinct"),
    (["--optimizer", "adam"], "--optimizer: invalid choice"),
])
def test_cli_bad_input_exit_2(tmp_path, capsys, argv, needle):
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        run_cli(["hparam-laws", *argv, "--out", out])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not out.exists()          # refused before any work


@pytest.mark.slow
def test_cli_resume_and_refuse_other_config(tmp_path, capsys, monkeypatch):
    from figcheck import record_figures
    found = record_figures(monkeypatch)          # labelled axes, legends hiding no data (tests/figcheck.py)
    out = tmp_path / "o"
    argv = ["hparam-laws", "--ds", "32", "64", "--budgets", "64", "1024", "--per-decade", "1", "--extend", "0.5",
            "--batch-max", "64", "--wd-taus", "10", "--out", out]
    assert run_cli(argv) == 0
    r1 = load_results(out)
    first = capsys.readouterr().err
    assert "[1/" in first and "resumed" not in first
    assert (out / "hparam_laws.png").exists() and found == {"hparam_laws.png": []}
    assert run_cli(argv) == 0
    second = capsys.readouterr().err
    assert second.count("resumed") == len(r1["ds"]) * len(r1["budgets_all"])
    r2 = load_results(out)
    assert r2["fits_D"] == r1["fits_D"] and r2["per_d"][0]["rows"][1]["B_crit"] == r1["per_d"][0]["rows"][1]["B_crit"]
    assert set(r1["fits_D"]) >= {"B_crit", "B_tol", "lr_star"}
    assert r1["weight_decay_helps"] is False
    with pytest.raises(SystemExit) as e:                                   # another configuration: refused
        run_cli([*argv[:-2], "--tol", "0.2", "--out", out])
    assert e.value.code == 2
    assert "--out" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# momentum families (item 1-2 of the momentum brief): independent numpy recursions from the optax definitions

def _numpy_momentum_losses(spec, lrs, mu, B, S, nesterov=False):
    """Exact expected loss of heavy ball / Nesterov in numpy, vectorised over ``lrs``, written from the optax
    updates (our gradient g = K(theta - theta*) + xi per mode, no factor 2):
    heavy ball ``y' = mu y + g, theta' = theta - lr y'``; Nesterov ``y' = mu y + g, theta' = theta - lr (g + mu y')``.
    Per mode, with x = theta - theta* and a = lam x + xi: ``(x, y)' = T (x, y) + u xi`` with
    heavy ball ``T = [[1 - lr lam, -lr mu], [lam, mu]], u = (-lr, 1)``; Nesterov
    ``T = [[1 - lr (1+mu) lam, -lr mu^2], [lam, mu]], u = (-lr (1+mu), 1)``; E xi^2 = (lam P + lam^2 E x^2)/B
    (Gaussian features). The second moments M = E[s s^T] weighted by lam and summed per bin:
    ``M' = T M T^T + u u^T (n lam^2 P + lam^2 Mxx) / B``, ``P = P* + sum Mxx``, ``Mxx(0) = w``."""
    lam, n, w = (np.asarray(x, dtype=np.float64)[None, :] for x in (spec.lam, spec.n, spec.w))
    lr = np.asarray(lrs, dtype=np.float64)[:, None]
    c = lr * (1 + mu) if nesterov else lr
    T11, T12, T21, T22 = 1 - c * lam, -lr * mu ** 2 if nesterov else -lr * mu, lam, mu
    u1, u2 = -c, 1.0
    xx = np.broadcast_to(w, (lr.shape[0], w.shape[1])).copy()
    xy = np.zeros_like(xx)
    yy = np.zeros_like(xx)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(S):
            P = spec.P_star + xx.sum(axis=1, keepdims=True)
            V = (n * lam ** 2 * P + lam ** 2 * xx) / B
            xx, xy, yy = (T11 * T11 * xx + 2 * T11 * T12 * xy + T12 * T12 * yy + u1 * u1 * V,
                          T11 * T21 * xx + (T11 * T22 + T12 * T21) * xy + T12 * T22 * yy + u1 * u2 * V,
                          T21 * T21 * xx + 2 * T21 * T22 * xy + T22 * T22 * yy + u2 * u2 * V)
        P = spec.P_star + xx.sum(axis=1)
    return np.where(np.isfinite(P) & (P < 1e6), P, np.inf)


def test_nesterov_final_loss_against_numpy_recursion():
    """The Nesterov family (plrf.optimizers.nesterov through theory.hparam_laws.final_loss) against the numpy
    recursion from the optax definition at one (lr, mu, B): same numbers to 1e-10 (one compiled program; heavy
    ball's equality is checked in the slow test below)."""
    spec = H.ladder_spectrum(1.0, 0.7, 24)
    mu, B, S = 0.7, 3, 40
    lr = 0.6 * 2 * B / ((B + 1) * (1 + mu) * float(spec.lam_max))     # below Nesterov's edge (~ SGD's / (1 + mu))
    ref = _numpy_momentum_losses(spec, [lr], mu, B, S, nesterov=True)[0]
    got = H.final_loss(spec, "nesterov", lr, B, S, mu=mu)
    assert got == pytest.approx(ref, rel=1e-10)
    assert ref < 0.5 * spec.P_star + 0.5 * float(np.sum(spec.w))      # it learned something: not a trivial match
    hb = _numpy_momentum_losses(spec, [lr], mu, B, S)[0]
    assert abs(hb - ref) > 1e-3 * ref          # heavy ball differs at the same (lr, mu): Nesterov's terms matter


@pytest.mark.slow
def test_tuned_momentum_against_brute_force():
    """Heavy ball, mu tuned jointly with the lr (tune_lr_mu) at a tiny case: the loss at each mu and the chosen
    (mu*, lr*) against a brute-force 300-point lr grid per mu on the independent numpy recursion, each lr grid
    bounded by the same stability edge; and that edge is a real edge (the numpy recursion grows past it)."""
    spec = H.ladder_spectrum(1.0, 0.7, 24)
    B, S, mus = 2, 48, (0.0, 0.5, 0.8, 0.95)
    lr = 0.5 * H.max_lr(spec, "momentum", B, mu=0.8)                 # exact equality at one point first
    assert H.final_loss(spec, "momentum", lr, B, S, mu=0.8) == pytest.approx(
        _numpy_momentum_losses(spec, [lr], 0.8, B, S)[0], rel=1e-10)
    t = H.tune_lr_mu(spec, "momentum", B, S, mus=mus, xatol=0.01)
    brute, brute_lr = [], []
    for mu in mus:
        top = H.max_lr(spec, "momentum", B, mu=mu)
        lrs = np.geomspace(top * 1e-3, top * 0.99, 300)
        L = _numpy_momentum_losses(spec, lrs, mu, B, S)
        brute.append(L.min())
        brute_lr.append(lrs[int(np.argmin(L))])
        # past the edge the long-run second moments grow: 4000 steps at 1.05 x the edge blow up, 0.95 x do not
        far = _numpy_momentum_losses(spec, [0.95 * top, 1.05 * top], mu, B, 4000)
        assert np.isfinite(far[0]) and far[0] < 1.0 and not (far[1] < 1.0)
    brute = np.array(brute)
    np.testing.assert_allclose(t.losses, brute, rtol=2e-3)            # Brent vs a 300-point grid in log lr
    j = int(np.argmin(brute))
    assert t.mu == mus[j] and t.loss == pytest.approx(brute[j], rel=2e-3)
    assert t.lr == pytest.approx(brute_lr[j], rel=0.05)
    assert t.mu > 0 and brute[j] < brute[0] * 0.99                    # momentum helps here (not a trivial mu* = 0)


def test_resume_refuses_other_optimizer_config(tmp_path, capsys):
    """An OUT holding cells of (momentum, --tune-momentum) refuses nesterov and momentum without
    --tune-momentum (exit 2 naming --out and the differing option), before any work."""
    from experiments import cli, hparam_cmd
    from plrf.store import prepare_out
    out = tmp_path / "o"
    base = ["hparam-laws", "--ds", "32", "64", "--budgets", "64", "1024", "--per-decade", "1", "--no-wd"]
    args = cli.build_parser().parse_args([*base, "--optimizer", "momentum", "--tune-momentum", "--out", str(out)])
    ds = hparam_cmd.validate(args)
    with prepare_out(out, hparam_cmd.config_of(args, ds)) as o:
        o.cells().put(dict(d=32, D=64), dict(loss=np.array([1.0])))
    for other, needle in ((["--optimizer", "nesterov", "--tune-momentum"], "optimizer"),
                          (["--optimizer", "momentum"], "tune_momentum")):
        with pytest.raises(SystemExit) as e:
            run_cli([*base, *other, "--out", out])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--out" in err and needle in err and "Traceback" not in err
    assert sorted(p.name for p in (out / "cells").iterdir() if p.suffix == ".npz").__len__() == 1


@pytest.mark.slow
def test_refined_momentum_against_brute_force():
    """The continuous mu optimum (tune_lr_mu(refine=True): Brent in ln(1 - mu) between the grid neighbours, lr
    re-tuned at each trial mu) against a brute-force 61 x 300 (mu, lr) grid on the independent numpy recursion
    (each lr grid bounded by the stability edge at its mu): loss within 2e-3, mu* within 0.03 (the brute grid's
    spacing is 0.01, the loss is flat in mu to 1e-4 over +-0.02 here), and never worse than the coarse grid."""
    spec = H.ladder_spectrum(1.0, 0.7, 24)
    B, S, mus = 2, 48, (0.0, 0.5, 0.8, 0.95)
    r = H.tune_lr_mu(spec, "momentum", B, S, mus=mus, xatol=0.01, refine=True)
    assert r.loss <= float(np.min(r.losses))
    assert r.mu not in mus                                           # it moved off the grid
    best, best_mu = np.inf, None
    for mu in np.linspace(0.2, 0.8, 61):
        top = H.max_lr(spec, "momentum", B, mu=float(mu))
        L = _numpy_momentum_losses(spec, np.geomspace(top * 1e-3, top * 0.99, 300), float(mu), B, S)
        if L.min() < best:
            best, best_mu = float(L.min()), float(mu)
    assert r.loss == pytest.approx(best, rel=2e-3)
    assert abs(r.mu - best_mu) < 0.03, (r.mu, best_mu)


def test_plot_without_any_finite_critical_batch(tmp_path, monkeypatch):
    """Two batches per budget (--batch-max 4 --batch-factor 4) leave B_crit unfitted (NaN) everywhere: the figure
    is still written, labelled, with the empty panel saying so (this raised 'Data cannot be log-scaled')."""
    from figcheck import record_figures

    from experiments.hparam_cmd import plot
    found = record_figures(monkeypatch)
    rows = [dict(D=D, B_crit=float("nan"), B_tol=4.0, B_star=4.0, lr_star=0.1 / D ** 0.5) for D in (1e3, 1e4, 1e5)]
    r = dict(per_d=[dict(d=100, rows=rows)], fits_D={})
    config = dict(alpha=1.0, beta=0.7, tol=0.1, optimizer="nesterov", tune_momentum=True, wd_taus=None)
    fig = plot(r, config, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0
    assert found == {"h.png": []}
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("no finite value" in t for t in texts)
    assert fig.axes[0].get_yscale() == "linear" and fig.axes[2].get_yscale() == "log"
