"""The seven named points of the phase diagram to their asymptote: one `plrf compute-optimal` run per point over a
ladder d = 64 .. 2^32 (4.3e9, deterministic equivalent, four rungs per octave: one prints the ladder's period into
the local slopes of Ic and IVa) up to f = 1e18, then the local-slope figure and the table
of last local slope, extrapolated asymptote (theory.asymptote) and theory.

    python -m experiments.asymptotes --out runs/asymptotes          # about 80 min on 2 shared cores; resumable

Each point is an ordinary `plrf compute-optimal` directory (OUT/<phase>/), so a killed run resumes from its cells;
the figure is OUT/local_slopes.png, the table OUT/table.md.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from .phase_diagram import NAMED, plot_local_slopes

POINTS = {k: v for k, v in NAMED.items() if k != "II|III"}
# points the project was not tuned on (issue 13): near boundaries and deep inside phases
MORE = {f"({a}, {b})": (a, b) for a, b in [(0.55, 0.55), (0.6, 0.9), (0.3, 0.6), (1.4, 0.45), (0.33, 0.45)]}
SETS = {"named": POINTS, "more": MORE}
LADDER = ["--d-min", "64", "--d-max", str(2 ** 32), "--per-octave", "4", "--flops-max", "1e18", "--sim-d"]


def _dir(label):
    return label.replace("(", "p").replace(")", "").replace(", ", "-")


def records(out, points=POINTS):
    from plrf.store import read_json
    recs = []
    for label in points:
        r = read_json(os.path.join(out, _dir(label), "results.json"))
        r["label"] = label
        recs.append(r)
    return recs


def table(recs) -> str:
    rows = ["| phase | (alpha, beta) | local slopes over f | xi last | xi asymptote | xi theory | eta last | "
            "eta asymptote | eta theory | balance at the largest f (ratio) / asymptotic |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        f = np.asarray(r["local_flops"], dtype=float)

        def asym(k):
            note = "" if r[f"{k}_asymptote_model"] == "profile" else " (last; drift not decelerating)"
            return f"{r[f'{k}_asymptote']:.3f} ± {r[f'{k}_asymptote_err']:.3f}{note}"
        label = r["label"] if r["label"] in POINTS else f"{r['label']} {r.get('phase', '')}"
        rows.append(f"| {label} | ({r['alpha']}, {r['beta']}) | {f.min():.0e} – {f.max():.0e} | "
                    f"{r['xi_local_last']:.3f} | {asym('xi')} | {r['xi_theory']:.3f} | {r['eta_local_last']:.3f} | "
                    f"{asym('eta')} | {r['eta_theory']:.3f} | {r.get('balance_pair', 'n/a')} "
                    f"({r.get('balance_ratio', float('nan')):.2f}) / {r.get('asymptotic_pair', '')} |")
    return "\n".join(rows)


def main(argv=None):
    from . import cli
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/asymptotes", help="output directory (one subdirectory per phase)")
    p.add_argument("--points", choices=sorted(SETS), default="named",
                   help="named: one point per phase; more: five points the project was not tuned on")
    args = p.parse_args(argv)
    points = SETS[args.points]
    for label, (a, b) in points.items():
        rc = cli.main(["compute-optimal", "--alpha", str(a), "--beta", str(b), *LADDER,
                       "--out", os.path.join(args.out, _dir(label)), "--quiet"])
        if rc:
            return rc
    recs = records(args.out, points)
    plot_local_slopes(recs, os.path.join(args.out, "local_slopes.png"),
                      which="named points" if args.points == "named" else "five more points")
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table(recs) + "\n")
    print(table(recs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
