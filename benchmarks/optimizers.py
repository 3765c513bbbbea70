"""Optimizer benchmark, measured in one run: ``python benchmarks/optimizers.py [--quick]`` (from the repo root).

Prints:
  * exact moment recursion (plrf.moments through plrf.runners.expected, jitted, warm) mode-steps/s at d = 1024 for
    sgd (constant lr: blocked path; cosine: per step), momentum, nesterov, dana-decaying and momentum + EMA
    (3 states; target >= 3e8 mode-steps/s for 3-state optimizers), and momentum + EMA without the superblocks
    (``plrf.runners._superblock_advance``) for their gain within the run; the rate is the marginal one,
    ``d n / (t(2n) - t(n))``;
  * eigen momentum vs features momentum steps/s at d = 1024 (target ratio >= 50x);
  * first-call compile time of an eigen simulation (target < 5 s) and a second call with other lr / momentum values
    (the jit cache of ``plrf.simulate`` must not grow);
  * the authors' ODE (``/work/shared/peers/power_law_rf``, Apache-2.0, imported, not copied) side by side with
    plrf's exact recursion for SGD and DANA-decaying on one sampled spectrum (d = 1000, alpha 1, beta 0.7):
    max and median relative error over a log grid from step 1, and wall time (their solver jitted with static
    horizon and dt; compile excluded).
Their ODE returns twice the risk in a 1/2-loss convention: with ``risk_infinity = P*/2`` and
``rho_init = <u_k, theta*>^2 = w_k / lam_k`` its output is our loss P. Hyper-parameter mapping (ours -> theirs,
functions of the step t): SGD(lr): g1 = g3 = delta = 0, g2 = lr. DANA-decaying(g2, g3, delta, kappa), g1 = 1:
g1(t) = 1, g2(t) = g2, g3(t) = g3 (1 + t)^-kappa, delta(t) = delta / (delta + t) (= their (1 + t/delta)^-1).
The machine is shared: the load average is printed and the key ratios are measured twice.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import importlib

import plrf
from plrf import optimizers as O
from plrf import runners
from plrf import schedules as S

PEERS = os.environ.get("PLRF_PEERS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                                   "shared", "peers"))


def _best(fn, repeats=2):
    fn()
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _spectrum(d):
    k = np.arange(1, d + 1, dtype=np.float64)
    return plrf.spectrum.make_spectrum(k ** -2.0, k ** (-2.0 - 1.4), 0.0)


def recursion_rates(d, n, repeats):
    """Marginal mode-steps/s of the exact recursion (jitted runners.expected, no stability check, warm)."""
    spec = _spectrum(d)
    lam, nn, w = (jnp.asarray(a) for a in (spec.lam, spec.n, spec.w))
    lr = 0.5 / float(np.sum(spec.lam))
    dd = O.dana_defaults(float(np.sum(spec.lam)), d, 1.0, 0.7)
    opts = {
        "sgd constant (blocked)": O.sgd(lr),
        "sgd cosine (per step)": O.sgd(S.cosine(lr, 4 * n)),
        "momentum (2 states)": O.momentum(0.1 * lr, 0.9),
        "nesterov (2 states)": O.nesterov(0.1 * lr, 0.9),
        "dana-decaying (2 states)": O.dana_decaying(dd["g2"], dd["g3_decaying"], delta=dd["delta"], kappa=dd["kappa"]),
        "momentum+ema (3 states)": O.momentum(0.1 * lr, 0.9, ema=0.01),
    }
    opts["momentum+ema, blocks only (no superblocks)"] = opts["momentum+ema (3 states)"]
    out = {}
    for name, o in opts.items():
        saved = runners.SUPERBLOCK_MIN_WIDTH
        if "no superblocks" in name:        # the matrix-vector blocks alone: the ratio of the superblocks' gain
            runners.SUPERBLOCK_MIN_WIDTH = 1 << 62
        try:
            f = jax.jit(lambda o, g: runners.expected(lam, nn, w, 0.0, o, 1, g)[0])   # traced here: the setting holds
            ts = []
            for N in (n, 2 * n):
                g = jnp.asarray(plrf.log_grid(N, 20))
                ts.append(_best(lambda: jax.block_until_ready(f(o, g)), repeats))
        finally:
            runners.SUPERBLOCK_MIN_WIDTH = saved
        out[name] = (d * n / (ts[1] - ts[0]) if ts[1] > ts[0] else np.inf, d * 2 * n / ts[1])
    return out


def eigen_vs_features(d, steps_e, steps_f, repeats):
    p = plrf.Problem(1.0, 0.7, 4 * d, d)
    inst = plrf.sample_instance(p, key=jax.random.key(d))
    inst = inst._replace(W=plrf.feature_matrix(p, key=inst.key))
    opt = O.momentum(0.1 * p.default_lr(0.5), 0.9)
    key = jax.random.key(0)
    te = _best(lambda: plrf.simulate(inst.spectrum, opt, steps=steps_e, method="eigen", key=key, num=20), repeats)
    tf = _best(lambda: plrf.simulate(inst, opt, steps=steps_f, method="features", key=key, num=20), repeats)
    return steps_e / te, steps_f / tf


def compile_check(d):
    """First call of an eigen simulation (compile + run, fresh cache for this shape) and a second call with other
    lr / momentum values: its time and whether the jit cache grew."""
    _sim = importlib.import_module("plrf.simulate")  # the module (plrf.simulate is also the function)
    spec = _spectrum(d)
    lr = 0.5 / float(np.sum(spec.lam))
    key = jax.random.key(1)
    size0 = _sim._simulate_jit._cache_size()
    t = time.perf_counter()
    plrf.simulate(spec, O.momentum(0.1 * lr, 0.9), steps=1000, method="eigen", key=key, num=20)
    first = time.perf_counter() - t
    size1 = _sim._simulate_jit._cache_size()
    t = time.perf_counter()
    plrf.simulate(spec, O.momentum(0.07 * lr, 0.8), steps=1000, method="eigen", key=key, num=20)
    second = time.perf_counter() - t
    size2 = _sim._simulate_jit._cache_size()
    return first, second, size1 - size0, size2 - size1


def versus_ode(steps, dt):
    sys.path.insert(0, os.path.abspath(PEERS))
    from power_law_rf.ode import DanaHparams, ODEInputs, ode_resolvent_log_implicit
    alpha, beta, d = 1.0, 0.7, 1000
    spec = plrf.sample_spectrum(plrf.Problem(alpha, beta, 4 * d, d), key=jax.random.key(0))
    lam, w, Ps = np.asarray(spec.lam), np.asarray(spec.w), float(spec.P_star)
    trK = float(np.sum(lam))
    grid = np.unique(np.round(np.logspace(0, np.log10(steps), 100)).astype(np.int64))
    grid0 = np.concatenate([[0], grid])
    dd = O.dana_defaults(trK, d, alpha, beta)
    eta = 0.5 / trK
    ours = {"sgd": O.sgd(eta),
            "dana-decaying": O.dana_decaying(dd["g2"], dd["g3_decaying"], delta=dd["delta"], kappa=dd["kappa"])}
    g2, g3, delta, kappa = dd["g2"], dd["g3_decaying"], dd["delta"], dd["kappa"]
    theirs = {"sgd": DanaHparams(g1=lambda t: 0.0 * t, g2=lambda t: eta + 0.0 * t, g3=lambda t: 0.0 * t,
                                 delta=lambda t: 0.0 * t),
              "dana-decaying": DanaHparams(g1=lambda t: 1.0 + 0.0 * t, g2=lambda t: g2 + 0.0 * t,
                                           g3=lambda t: g3 * (1.0 + t) ** (-kappa),
                                           delta=lambda t: delta / (delta + t))}
    inputs = ODEInputs(jnp.asarray(lam), jnp.asarray(w / lam), jnp.zeros(d), jnp.zeros(d), Ps / 2.0)
    rows = []
    for name in ours:
        t = time.perf_counter()
        ref = plrf.expected_loss(spec, ours[name], steps=int(steps), grid=grid0, allow_unstable=True).loss[1:]
        t_ours_first = time.perf_counter() - t
        t_ours = _best(lambda: plrf.expected_loss(spec, ours[name], steps=int(steps), grid=grid0,
                                                  allow_unstable=True), 1)
        hp = theirs[name]
        def solve(inp, hp=hp):  # static horizon/dt: their jnp.log(t_max) must stay concrete under jit
            with jax.ensure_compile_time_eval():
                return ode_resolvent_log_implicit(inp, hp, 1, d, float(steps), dt)
        ode = jax.jit(solve)
        out = jax.block_until_ready(ode(inputs))
        t_ode = _best(lambda: jax.block_until_ready(ode(inputs)), 1)
        tt, P = (np.asarray(a, np.float64) for a in out)
        Pi = np.exp(np.interp(np.log1p(grid), np.log1p(tt), np.log(P)))
        err = np.abs(Pi / ref - 1.0)
        rows.append((name, float(err.max()), int(grid[np.argmax(err)]), float(np.median(err)), t_ours, t_ours_first,
                     t_ode))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (1e5 ODE steps, fewer recursion steps)")
    args = ap.parse_args(argv)
    q = args.quick
    print(f"jax {jax.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; float64")
    first, second, grow1, grow2 = compile_check(1024)
    print(f"\neigen simulation (momentum, d = 1024, rng='plrf'): first call (compile + run) {first:.2f} s "
          f"(target < 5 s); "
          f"second call with other lr/momentum {second:.3f} s, jit cache entries added: first {grow1}, second {grow2} "
          f"(target 0)")
    n = 20_000 if q else 100_000
    for rep in (1, 2):
        rates = recursion_rates(1024, n, 1 if q else 2)
        print(f"\nexact recursion at d = 1024, run {rep} (n = {n} and {2 * n} steps; load {os.getloadavg()[0]:.1f})")
        print(f"{'optimizer':<28} {'marginal mode-steps/s':>22} {'end-to-end':>12}")
        for name, (marg, e2e) in rates.items():
            print(f"{name:<28} {marg:>22.3g} {e2e:>12.3g}")
        print("(target >= 3e8 mode-steps/s for 3-state optimizers)")
    for rep in (1, 2):
        se, sf = eigen_vs_features(1024, 2_000 if q else 10_000, 40 if q else 200, 1 if q else 2)
        print(f"\neigen vs features, momentum, d = 1024, v = 4096, run {rep}: eigen {se:.4g} steps/s, features "
              f"{sf:.4g} steps/s, ratio {se / sf:.0f}x (target >= 50x; load {os.getloadavg()[0]:.1f})")
    steps = 100_000 if q else 1_000_000
    dt = 1e-3
    rows = versus_ode(steps, dt)
    print(f"\nauthors' ODE vs plrf exact recursion: sampled spectrum d = 1000, v = 4000, alpha 1, beta 0.7, batch 1, "
          f"{steps:.0e} steps, ODE dt = {dt} (log time), errors over {100} log-spaced steps from 1")
    print(f"{'optimizer':<15} {'ODE max rel err':>16} {'at step':>8} {'ODE median':>11} {'plrf s':>8} "
          f"{'plrf 1st s':>10} {'ODE s':>7}")
    for name, mx, at, med, to, tof, tode in rows:
        print(f"{name:<15} {mx:>16.3g} {at:>8d} {med:>11.3g} {to:>8.2f} {tof:>10.2f} {tode:>7.2f}")
    print("(plrf: exact discrete recursion, the reference; plrf 1st: with compile and stability check; "
          "ODE: jitted, warm)")
    print(f"\nload average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
