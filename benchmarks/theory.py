"""Benchmark of the log-time solver (theory.logtime) against the exact per-step recursion (theory.volterra).

    PYTHONPATH=. python benchmarks/theory.py            # (or python -m benchmarks.theory) d = 1e3 (1e6 steps) and d = 1e4 (1e7 steps; 1e10 timed)
    PYTHONPATH=. python benchmarks/theory.py --quick    # d = 1e3 only, 1e5 steps
    PYTHONPATH=. python benchmarks/theory.py --optimizers   # momentum, momentum + EMA, DANA-decaying at d = 1e4:
                                                         # error vs the exact recursion (1e5 steps), 1e10 steps timed,
                                                         # full and coarsened to 100 bins per decade

Spectra: d = 1e3 is one sampled W (alpha = 1, beta = 0.7, v = 4d); d = 1e4 is the power-law spectrum
``lam_k = k^-2alpha, w_k = k^(-2alpha-2beta)`` (sampling W at d = 1e4, v = 4e4 costs minutes). lr = 0.9 x the
largest stable lr. Errors: max relative error over a log grid (100 points) plus a linear grid (100 points).
Times are wall-clock on a warm jit cache (the first call of each shape compiles: reported separately).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

# this file is named like the ``theory`` package: drop its own directory from the path when run as a script
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import jax  # noqa: E402
import numpy as np  # noqa: E402

import plrf  # noqa: E402
from plrf import schedules as S  # noqa: E402
from plrf.spectrum import coarsen  # noqa: E402
from theory import logtime, volterra  # noqa: E402


def _grid(steps):
    return np.union1d(plrf.log_grid(steps, 100), np.linspace(0, steps, 101).round().astype(np.int64))


def _timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def spectra(quick: bool):
    out = [("sampled a=1 b=0.7 v=4d", plrf.sample_spectrum(plrf.Problem(1.0, 0.7, 4000, 1000), key=jax.random.key(0)),
            10 ** 5 if quick else 10 ** 6)]
    if not quick:
        k = np.arange(1, 10001.0)
        out.append(("power law a=1 b=0.7", plrf.make_spectrum(k ** -2.0, k ** -3.4, 1e-9), 10 ** 7))
    return out


def optimizers(rtol, per_decade=100.0):
    """The log-time solver for optimizers other than SGD on the d = 1e4 power-law spectrum: max relative error
    against the exact recursion (plrf.expected_loss; the blocked path for the constant ones) over 1e5 steps, and
    the time of 1e10 steps (first call with compilation, then warm); then the same on the spectrum coarsened to
    ``per_decade`` bins per decade of eigenvalue (plrf.spectrum.coarsen, 499 entries for 10^4 modes at 100)."""
    from plrf import optimizers as O
    k = np.arange(1, 10001.0)
    spec = plrf.make_spectrum(k ** -2.0, k ** -3.4, 1e-9)
    edge = plrf.max_stable_lr(spec)
    dd = O.dana_defaults(float(np.sum(spec.lam)), 10000, 1.0, 0.7)
    cases = {"momentum 0.9": O.momentum(0.05 * edge, 0.9), "momentum 0.9 + EMA 1e-3": O.momentum(0.05 * edge, 0.9,
                                                                                                  ema=1e-3),
             "dana-decaying": O.dana_decaying(dd["g2"], dd["g3_decaying"], delta=dd["delta"], kappa=dd["kappa"]),
             "dana-constant": O.dana_constant(dd["g2"], dd["g3_constant"], delta=dd["delta"])}
    coarse = coarsen(spec, per_decade)
    big_grid = plrf.log_grid(10 ** 10, 200)
    rows = []
    for name, opt in cases.items():
        steps = 10 ** 5
        grid = _grid(steps)
        ex, t_ex = _timed(plrf.expected_loss, spec, opt, steps=steps, grid=grid)
        lt, t_lt1 = _timed(logtime.solve_logtime, spec, opt, steps=steps, grid=grid, rtol=rtol)
        err = float(np.max(np.abs(lt.loss / ex.loss - 1)))
        big, t_big1 = _timed(logtime.solve_logtime, spec, opt, steps=10 ** 10, grid=big_grid, rtol=rtol)
        big, t_big = _timed(logtime.solve_logtime, spec, opt, steps=10 ** 10, grid=big_grid, rtol=rtol)
        rows.append((name, err, t_ex, t_lt1, t_big1, t_big, big.intervals))
        print(f"  {name}: max rel err {err:.2e} over 1e5 steps (exact {t_ex:.1f} s); 1e10 steps {t_big:.2f} s warm, "
              f"{t_big1:.1f} s first call, {big.intervals} intervals", flush=True)
        # the same on the coarsened spectrum: error against the full spectrum's exact recursion (1e5 steps) and
        # against the full spectrum's log-time curve (1e10 steps, 200 log-spaced points)
        lc = logtime.solve_logtime(coarse, opt, steps=steps, grid=grid, rtol=rtol)
        err_c = float(np.max(np.abs(lc.loss / ex.loss - 1)))
        bc, t_bc1 = _timed(logtime.solve_logtime, coarse, opt, steps=10 ** 10, grid=big_grid, rtol=rtol)
        bc, t_bc = _timed(logtime.solve_logtime, coarse, opt, steps=10 ** 10, grid=big_grid, rtol=rtol)
        err_big = float(np.max(np.abs(bc.loss / big.loss - 1)))
        rows.append((f"{name}, coarsened ({len(coarse.lam)} entries)", err_c, np.nan, np.nan, t_bc1, t_bc,
                     bc.intervals, err_big))
        print(f"  {name}, coarsened to {per_decade:g}/decade ({len(coarse.lam)} entries): max rel err {err_c:.2e} "
              f"against the full exact recursion over 1e5 steps, {err_big:.2e} against the full log-time curve to "
              f"1e10; 1e10 steps {t_bc:.2f} s warm, {t_bc1:.1f} s first call, {bc.intervals} intervals "
              f"({t_big / t_bc:.0f}x faster)", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--optimizers", action="store_true", help="only the optimizer rows (d = 1e4)")
    ap.add_argument("--rtol", type=float, default=logtime.RTOL)
    ap.add_argument("--per-decade", type=float, default=100.0, help="--optimizers: bins per decade of the coarsened "
                    "spectrum (plrf.spectrum.coarsen)")
    args = ap.parse_args(argv)
    if args.optimizers:
        return optimizers(args.rtol, args.per_decade)
    rows = []
    for label, spec, steps in spectra(args.quick):
        lr = 0.9 * plrf.max_stable_lr(spec)
        grid = _grid(steps)
        first = True
        for name, sch in (("constant", S.constant(lr)), ("wsd-linear 20%", S.wsd(lr, steps, cooldown=0.2))):
            if first:  # compile once (shapes depend on d only)
                _, t_compile = _timed(logtime.solve_logtime, spec, sch, steps=steps, grid=grid, rtol=args.rtol)
                first = False
            lt, t_lt = _timed(logtime.solve_logtime, spec, sch, steps=steps, grid=grid, rtol=args.rtol)
            ex, t_ex = _timed(volterra.solve_exact, spec, sch, steps=steps, grid=grid)
            err = np.abs(lt.loss / ex.loss - 1)
            rows.append((label, int(spec.d), f"{steps:.0e}", name, t_lt, t_ex, float(err.max()),
                         int(grid[np.argmax(err)]), lt.intervals, lt.evaluations))
            print(f"  {label} {name}: logtime {t_lt:.2f}s (first call {t_compile:.1f}s), exact {t_ex:.1f}s, "
                  f"max rel err {err.max():.2e}", flush=True)
        if spec.d >= 10000:
            for name, sch in (("constant", S.constant(lr)), ("wsd-linear 20%", S.wsd(lr, 10 ** 10, cooldown=0.2)),
                              ("cosine", S.cosine(lr, 10 ** 10)), ("8-1-1", S.eight_one_one(lr, 10 ** 10))):
                lt, t_lt = _timed(logtime.solve_logtime, spec, sch, steps=10 ** 10, rtol=args.rtol)
                rows.append((label, int(spec.d), "1e+10", name, t_lt, np.nan, np.nan, -1, lt.intervals,
                             lt.evaluations))
                print(f"  {label} {name} 1e10 steps: {t_lt:.2f}s", flush=True)
    print()
    print(f"{'spectrum':24s} {'d':>6s} {'steps':>6s} {'schedule':15s} {'logtime s':>9s} {'exact s':>8s} "
          f"{'max rel err':>11s} {'at step':>9s} {'intervals':>9s} {'evals':>6s}")
    for r in rows:
        ex = f"{r[5]:8.1f}" if np.isfinite(r[5]) else f"{'-':>8s}"
        er = f"{r[6]:11.2e}" if np.isfinite(r[6]) else f"{'-':>11s}"
        at = f"{r[7]:9d}" if r[7] >= 0 else f"{'-':>9s}"
        print(f"{r[0]:24s} {r[1]:6d} {r[2]:>6s} {r[3]:15s} {r[4]:9.2f} {ex} {er} {at} {r[8]:9d} {r[9]:6d}")
    return rows


if __name__ == "__main__":
    main()
