"""Cost of the deterministic-equivalent spectrum: ``theory.deterministic.deterministic_spectrum`` for a ladder of d.

    python benchmarks/deterministic.py [--alpha 1.0] [--beta 0.8] [--v-ratio R] [--max-d 1e7]

Prints a table (seconds, bins, isolated outliers, sum rules). The cost should grow like the number of bins
(~ sqrt(d) isolated outliers + 32 bins per decade of the bulk), not like d. ``--v-ratio`` uses v = R d
(required when 2 alpha <= 1); otherwise v = inf.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from theory.deterministic import deterministic_spectrum, power_sum  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=0.8)
    ap.add_argument("--v-ratio", type=float, default=None, help="v = ratio * d (default: v = inf)")
    ap.add_argument("--max-d", type=float, default=1e7)
    ap.add_argument("--budget", type=float, default=120.0, help="skip the next d once a run takes longer (s)")
    args = ap.parse_args(argv)
    if args.v_ratio is None and 2 * args.alpha <= 1:
        ap.error("2 alpha <= 1 needs a finite v: pass --v-ratio (e.g. 4)")
    vtxt = "inf" if args.v_ratio is None else f"{args.v_ratio:g} d"
    print(f"deterministic_spectrum(alpha={args.alpha}, beta={args.beta}, v={vtxt})")
    print(f"{'d':>10} {'seconds':>9} {'bins':>6} {'outliers':>9} {'|sum n/d - 1|':>14} {'|P0/M - 1|':>11} {'P*':>11}")
    d, last = 1000, 0.0
    while d <= args.max_d and last < args.budget:
        v = None if args.v_ratio is None else int(round(args.v_ratio * d))
        t0 = time.perf_counter()
        sp = deterministic_spectrum(args.alpha, args.beta, d, v=v)
        last = time.perf_counter() - t0
        M = power_sum(2 * args.alpha + 2 * args.beta, v)
        print(f"{d:>10d} {last:>9.2f} {len(sp.lam):>6d} {int(np.sum(sp.n == 1.0)):>9d} {abs(sp.d / d - 1):>14.1e} "
              f"{abs(sp.P0 / M - 1):>11.1e} {sp.P_star:>11.3e}", flush=True)
        d *= 10


if __name__ == "__main__":
    main()
