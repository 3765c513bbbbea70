"""Engine throughput, measured in one run: ``python benchmarks/engine.py [--sizes 256 1024 4096] [--repeats 3]``.

Prints one table:
  * steps/s of each simulator (``expected``, ``eigen``, ``features``) at d in {256, 1024, 4096}, v = 4d,
    B = 1, alpha = 1.0, beta = 0.7, constant lr = 0.5 / sum_j j^{-2 alpha} (the authors' step size);
  * the ratio eigen / features at d = 1024 (target >= 100x);
  * ``expected`` mode-steps/s (d x steps / s) in float64 (target >= 1e9 at d = 1024), constant and cosine;
  * ``eigen`` with ``rng='jax'`` (jax.random.normal, threefry) next to the default ``rng='plrf'`` (Philox + ziggurat);
  * 64-seed sweeps (vmapped seeds) against 64 single-seed runs (cost ratio, < 1 is a gain): ``eigen`` at every d,
    ``features`` at d <= 1024 (vmapping seeds turns its two matrix-vector products per step into matrix products).
Compile time is excluded: every configuration is run once first (compile + run, reported separately as
"first call"), then timed ``--repeats`` times with identical shapes and schedule objects; the best time is
kept (the machine may be shared, the load average is printed).
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import plrf
from plrf import schedules as S

STEPS = {  # n: runs of n and 2n steps are timed (~0.1-1 s each)
    "expected": {256: 2_000_000, 1024: 1_000_000, 4096: 250_000},
    "eigen": {256: 20_000, 1024: 10_000, 4096: 2_000},
    "features": {256: 2_000, 1024: 200, 4096: 8},
}


def timed(fn, repeats):
    """(best wall time, best process CPU time of ``repeats`` warm calls, wall time of the first call, which
    includes compilation). CPU time counts every thread of this process: robust to other processes' load,
    but it also counts idle-spinning XLA worker threads."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    best, best_cpu = np.inf, np.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return best, best_cpu, first


def measure(d, label, call, steps, repeats):
    """Time ``call(steps)`` and ``call(2 * steps)``: end-to-end steps/s of the longer run (wall and CPU), and
    the marginal rate ``steps / (t(2n) - t(n))`` that excludes per-call overhead (stability check, copies)."""
    t1, _, first = timed(lambda: call(steps), repeats)
    t2, c2, _ = timed(lambda: call(2 * steps), repeats)
    marginal = steps / (t2 - t1) if t2 > t1 else np.inf
    return dict(d=d, method=label, steps=2 * steps, best=t2, first=first, overhead=max(0.0, 2 * t1 - t2),
                sps=2 * steps / t2, cpu_sps=2 * steps / c2, marginal=marginal)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rows, extra, sweeps = [], {}, []
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start; float64; compile time excluded (warm-up call first)")
    key = jax.random.key(0)
    for d in args.sizes:
        p = plrf.Problem(1.0, 0.7, 4 * d, d)
        t0 = time.perf_counter()
        inst = plrf.sample_instance(p, key=jax.random.key(d))
        t_sample = time.perf_counter() - t0
        spec, lr = inst.spectrum, p.default_lr(0.5)
        sched = S.constant(lr)
        for method in ("expected", "eigen", "features"):
            steps = STEPS[method].get(d, max(2, STEPS[method][1024] * 1024 // d))
            src = inst if method == "features" else spec
            if method == "features":  # materialize W once (not part of the per-step cost)
                src = inst._replace(W=plrf.feature_matrix(p, key=inst.key))
            kw = dict(method=method, num=20) | ({} if method == "expected" else dict(key=key))
            run = lambda n, src=src, kw=kw: plrf.simulate(src, sched, steps=n, **kw)  # noqa: E731
            rows.append(measure(d, method, run, steps, args.repeats))
            if method == "eigen" and d == 1024:   # the jax.random.normal generator, for comparison
                rows.append(measure(d, "eigen/rng=jax", lambda n: plrf.simulate(spec, sched, steps=n, rng="jax", **kw),
                                    steps, args.repeats))
            if method == "expected" and d == 1024:  # a non-constant schedule: per-step lr evaluation
                cos = S.cosine(lr, 2 * steps)
                rows.append(measure(d, "expected/cosine", lambda n: plrf.simulate(spec, cos, steps=n, **kw), steps,
                                    args.repeats))
        extra[f"sample_instance d={d}"] = t_sample
        del src, run  # frees W before the next size
        # 64-seed sweep vs 64 single-seed runs (same steps; per-call overhead included, as a user would pay it)
        methods = ("eigen", "features") if d <= 1024 else ("eigen",)
        for method in methods:
            steps = {"eigen": 2_000 * 1024 // d, "features": 20}[method]
            src = spec if method == "eigen" else inst._replace(W=plrf.feature_matrix(p, key=inst.key))
            kw = dict(steps=steps, method=method, key=key, num=20)
            one = timed(lambda src=src: plrf.simulate(src, sched, seeds=[0], **kw), args.repeats)[0]
            many = timed(lambda src=src: plrf.simulate(src, sched, seeds=64, **kw), args.repeats)[0]
            sweeps.append((d, method, steps, one, many, many / (64 * one)))
        del src  # frees W before the next size
    print(f"\n{'d':>6} {'method':<16} {'steps':>9} {'best s':>8} {'first s':>8} {'overhead s':>10} "
          f"{'steps/s':>10} {'/CPU-s':>10} {'marginal':>10} {'mode-steps/s':>12}")
    for r in rows:
        print(f"{r['d']:>6} {r['method']:<16} {r['steps']:>9} {r['best']:>8.3f} {r['first']:>8.3f} "
              f"{r['overhead']:>10.3f} {r['sps']:>10.4g} {r['cpu_sps']:>10.4g} {r['marginal']:>10.4g} {r['d'] * r['sps']:>12.4g}")
    print("(steps/s: end-to-end wall clock of the timed run; /CPU-s: per process CPU second; marginal: steps /"
          " (t(2n) - t(n)), per-call overhead removed; mode-steps/s = d x steps/s; first: compile + run)")
    by = {(r["d"], r["method"]): r["sps"] for r in rows}
    print()
    if (1024, "eigen") in by and (1024, "features") in by:
        r = by[(1024, "eigen")] / by[(1024, "features")]
        rr = {k: [x for x in rows if x["d"] == 1024 and x["method"] == k][0] for k in ("eigen", "features")}
        print(f"eigen / features steps/s at d = 1024: {r:.0f}x end-to-end, "
              f"{rr['eigen']['marginal'] / rr['features']['marginal']:.0f}x marginal, "
              f"{rr['eigen']['cpu_sps'] / rr['features']['cpu_sps']:.0f}x per CPU-s (target >= 100x)")
    if (1024, "expected") in by:
        print(f"expected mode-steps/s at d = 1024 (float64, constant lr): {1024 * by[(1024, 'expected')]:.3g} "
              f"(target >= 1e9); cosine schedule: {1024 * by[(1024, 'expected/cosine')]:.3g}")
    if (1024, "eigen/rng=jax") in by:
        print(f"eigen steps/s at d = 1024: rng='plrf' / rng='jax' = {by[(1024, 'eigen')] / by[(1024, 'eigen/rng=jax')]:.2f}x; "
              f"eigen(rng='jax') / features = {by[(1024, 'eigen/rng=jax')] / by[(1024, 'features')]:.0f}x")
    print(f"\n{'d':>6} {'method':<9} {'steps':>6} {'1 seed s':>9} {'64 seeds s':>11} {'64-seed sweep / 64 single runs':>31}")
    for d, method, steps, one, many, ratio in sweeps:
        print(f"{d:>6} {method:<9} {steps:>6} {one:>9.4f} {many:>11.3f} {ratio:>31.2f}")
    print()
    for k, val in extra.items():
        print(f"{k}: {val:.3g}" + (" s" if k.startswith("sample") else ""))
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
