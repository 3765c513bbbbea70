"""Throughput of sharded sweeps: eigen-method seed sweeps on 1 and 2 (forced host) devices, one table.

    python benchmarks/sweep.py [--d 256] [--steps 2000] [--seeds 16] [--blocks 1 8] [--repeats 3]

Each device count runs in its own interpreter (``XLA_FLAGS=--xla_force_host_platform_device_count=N`` must be
set before jax is imported). Per configuration: the first sweep compiles (one executable per device), the
next ``--repeats`` are timed and the best is kept. A cell is one (lr scale, seed) run. The baseline is
``plrf.simulate.run``, one vmapped call over all seeds on one device. On a 2-core CPU, "2 devices" are two
host threads sharing those cores: the ratio measures what sharding costs or gains there, not accelerator
scaling.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(args) -> None:
    import jax

    import plrf
    from plrf.simulate import run
    from plrf.sweep import sweep

    assert jax.device_count() == args.devices, jax.devices()
    p = plrf.Problem(1.0, 0.7, 4 * args.d, args.d)
    spec = plrf.sample_spectrum(p, key=jax.random.key(0))
    sch = plrf.schedules.cosine(0.5 * plrf.max_stable_lr(spec, 1), args.steps)
    key = jax.random.key(1)
    rows = []

    def cpu():
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    def timed(fn):
        t = time.perf_counter()
        fn()
        first = time.perf_counter() - t
        best, best_cpu = float("inf"), float("inf")
        for _ in range(args.repeats):
            t, c = time.perf_counter(), cpu()
            fn()
            best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, cpu() - c)
        return first, best, best_cpu

    for block in args.blocks:
        first, best, best_cpu = timed(lambda: sweep(spec, sch, steps=args.steps, method="eigen", key=key, seeds=args.seeds,
                                          devices=args.devices, block=block, quiet=True))
        rows.append({"what": "sweep", "devices": args.devices, "block": block, "first_s": first, "best_s": best,
                     "cpu_s": best_cpu, "cells_per_s": args.seeds / best})
    if args.devices == 1:
        first, best, best_cpu = timed(lambda: run(spec, sch, steps=args.steps, method="eigen", key=key, seeds=args.seeds))
        rows.append({"what": "run()", "devices": 1, "block": args.seeds, "first_s": first, "best_s": best,
                     "cpu_s": best_cpu, "cells_per_s": args.seeds / best})
    print(json.dumps(rows))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--blocks", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--devices", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    rows = []
    for n in (1, 2):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu",
               "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        cmd = [sys.executable, __file__, "--child", "--devices", str(n), "--d", str(args.d), "--steps",
               str(args.steps), "--seeds", str(args.seeds), "--repeats", str(args.repeats), "--blocks",
               *map(str, args.blocks)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        rows += json.loads(out.strip().splitlines()[-1])

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"eigen seed sweep: d={args.d}, v={4 * args.d}, steps={args.steps}, seeds={args.seeds}, batch=1; "
          f"{os.cpu_count()} CPU cores, load average {load:.1f} at the end")
    print(f"{'what':8} {'devices':>7} {'block':>5} {'1st call s':>10} {'best s':>8} {'cpu s':>7} {'cells/s':>8} "
          f"{'vs 1 device':>11}")
    base = {r["block"]: r["cells_per_s"] for r in rows if r["what"] == "sweep" and r["devices"] == 1}
    for r in rows:
        rel = r["cells_per_s"] / base[r["block"]] if r["what"] == "sweep" and r["block"] in base else float("nan")
        print(f"{r['what']:8} {r['devices']:>7} {r['block']:>5} {r['first_s']:>10.2f} {r['best_s']:>8.3f} "
              f"{r['cpu_s']:>7.3f} {r['cells_per_s']:>8.2f} {rel:>11.2f}")
    print("'1st call' includes compilation (one executable per device); 'best s' is wall time, 'cpu s' the "
          "process CPU time\nof that call (less sensitive to other load); 'vs 1 device' compares cells/s at the "
          "same block.")


if __name__ == "__main__":
    main()
