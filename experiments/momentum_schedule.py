"""Does an optimal momentum schedule change the loss exponent? Several `plrf optimal-schedule` runs side by side
(same problem and batch, different optimizers or caps):

    python -m experiments.momentum_schedule "SGD=runs/os-sgd-B64" "heavy ball, own edge=runs/os-hb-own-B64" \
        --out docs/figures/momentum_schedule.png

For each run: the optimal final loss P(T) and its excess P(T) - P* over the horizons, the fitted exponent of the
excess over T (least squares in log-log over the horizons, with its standard error), and the momentum schedule
of the longest horizon when the run has one. Prints a markdown table; writes the figure.
"""
from __future__ import annotations

import argparse
import math
import os

import numpy as np


def load(spec: str):
    """``LABEL=DIR`` -> (label, results.json of DIR)."""
    from plrf.store import read_json
    if "=" not in spec:
        raise ValueError(f"expected LABEL=DIR, got {spec!r}")
    label, d = spec.rsplit("=", 1)
    path = os.path.join(d, "results.json")
    if not os.path.exists(path):
        raise ValueError(f"{path}: no results.json (run plrf optimal-schedule --out {d} first)")
    return label, read_json(path)


def excess_fit(T, P, P_star):
    """Slope of log(P - P*) on log T and its standard error (:func:`theory.frontier.power_fit`; nan with fewer
    than 3 horizons)."""
    from theory.frontier import power_fit
    T, E = np.asarray(T, float), np.asarray(P, float) - P_star
    if T.size < 3:
        return math.nan, math.nan
    fit = power_fit(T, E)
    return fit.slope, fit.se


def table(runs) -> str:
    hs = sorted({h["steps"] for _, r in runs for h in r["horizons"]})
    head = "| run | " + " | ".join(f"P(T = {T:.0e})" for T in hs) + " | excess exponent over T | P* |"
    rows = [head, "|" + "---|" * (len(hs) + 3)]
    for label, r in runs:
        by = {h["steps"]: h["final_loss"] for h in r["horizons"]}
        T = sorted(by)
        s, se = excess_fit(T, [by[t] for t in T], r["P_star"])
        cells = [f"{by[t]:.3e}" if t in by else "-" for t in hs]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {s:.2f} ± {se:.2f} | {r['P_star']:.2e} |")
    return "\n".join(rows)


def plot(runs, path):
    from .plotting import new_figure, save
    fig, axes = new_figure(ncols=2, width=5.4, height=4.0)
    ax, ax2 = axes[0]
    for i, (label, r) in enumerate(runs):
        col = f"C{i}"
        T = np.array([h["steps"] for h in r["horizons"]], float)
        P = np.array([h["final_loss"] for h in r["horizons"]])
        s, se = excess_fit(T, P, r["P_star"])
        ax.loglog(T, P - r["P_star"], "o-", color=col, label=f"{label}: slope {s:.2f}")
        top = r["horizons"][-1]
        if top.get("mu") is not None:
            t = np.arange(1, len(top["mu"]) + 1)
            ax2.loglog(t, 1.0 - np.asarray(top["mu"]), color=col, lw=1.2,
                       label=f"{label}: 1 - mu_t, T = {top['steps']:.0e}")
    for m in sorted({r["config"]["mu_max"] for _, r in runs if r["horizons"][-1].get("mu") is not None}):
        ax2.axhline(1.0 - m, color="0.5", ls=":", lw=0.9, label=f"cap: 1 - mu_max = {1 - m:.2g}")
    c = runs[0][1]["config"]
    ax.set_xlabel("horizon T (steps)")
    ax.set_ylabel("optimal final excess loss P(T) - P*")
    ax.set_title("optimal schedules: excess loss vs horizon", fontsize=9)
    ax.legend(fontsize=7)
    ax2.set_xlabel("step t")
    ax2.set_ylabel("1 - mu_t (1 = no momentum)")
    ax2.set_title("optimal momentum schedule (longest horizon)", fontsize=9)
    ax2.set_ylim(top=2.0)
    if ax2.lines:
        ax2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)   # below: no curve hidden
    fig.suptitle(f"PLRF alpha = {c['alpha']}, beta = {c['beta']}, d = {c['d']}, B = {c['batch']}", fontsize=10)
    save(fig, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=DIR of plrf optimal-schedule results (same problem)")
    p.add_argument("--out", required=True, help="figure path (.png)")
    args = p.parse_args(argv)
    try:
        runs = [load(s) for s in args.runs]
    except ValueError as e:
        p.error(str(e))
    keys = ("alpha", "beta", "d", "batch", "v")
    ref = {k: runs[0][1]["config"].get(k) for k in keys}
    for label, r in runs[1:]:
        got = {k: r["config"].get(k) for k in keys}
        if got != ref:
            raise SystemExit(f"{label}: another problem ({got} vs {ref}); compare like with like")
    plot(runs, args.out)
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
