"""Does a learning-rate schedule change the compute-optimal exponents? (issue 15, item 3.)

For one (alpha, beta) the ladder of theory curves of `plrf compute-optimal` (deterministic-equivalent spectrum,
log-time solver, SGD at the ladder's lr ``c / sum_{j<=v} j^-2alpha``) is compared with the same ladder trained with
warmup-free WSD at the same peak lr and a linear cooldown over the last ``cooldown`` fraction of each horizon T.
A constant lr gives the whole curve in one solve; WSD needs one solve per (d, T), T on a log grid
(``per_decade`` horizons per decade). Both ladders go through the same envelope fit (theory.frontier.fit_envelope):
xi, eta over the window and the local slopes.

    python -m experiments.schedule_frontier --out runs/schedule-frontier --points II III

The optimal schedule itself (theory.logtime_grad) is within 0.06-3.8% of the best tuned WSD at T = 1e6-1e10
(README, optimal schedules), so a change of exponent it could make over WSD is bounded by that drift (log of the
ratio's change over the decades of f, below 0.005 in eta); this script measures WSD against constant.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

from .phase_diagram import NAMED


def curves_for(alpha, beta, *, d_min=16, d_max=2 ** 17, flops_max=1e11, per_decade=4, cooldown=0.2, c=0.5,
               say=print):
    """``(constant, wsd)``: two lists of ``(d, flops, loss)`` over the ladder (see the module doc)."""
    from theory.ladder import _default_spectrum, data_dim, geometric_ladder, ladder_curve, ladder_lr
    from theory.logtime import solve_logtime
    from theory.logtime_grad import shape_schedule
    const, wsd = [], []
    for d in geometric_ladder(d_min, d_max, 1.0):
        d = int(d)
        t0 = time.time()
        spec = _default_spectrum(alpha, beta, d, data_dim(alpha, d))
        lc = ladder_curve(alpha, beta, d, flops_max=flops_max, c=c, spectrum=spec)
        const.append((d, lc.flops, lc.loss))
        lr = ladder_lr(alpha, d, c=c)
        T_max = flops_max / d
        Ts = np.unique(np.round(10 ** np.arange(1.0, math.log10(T_max) + 1e-9, 1.0 / per_decade)).astype(np.int64))
        losses = [solve_logtime(spec, shape_schedule("wsd", lr, int(T), cooldown), steps=int(T), num=8).final
                  for T in Ts]
        wsd.append((d, d * Ts.astype(np.float64), np.array(losses)))
        say(f"d = {d}: {Ts.size} WSD horizons up to {Ts[-1]:.1e} ({time.time() - t0:.1f} s)")
    return const, wsd


def compare(alpha, beta, **kw):
    from theory.frontier import common_grid, fit_envelope
    from theory.phases import exponents
    const, wsd = curves_for(alpha, beta, **kw)
    out = dict(alpha=alpha, beta=beta, **{k: v for k, v in kw.items() if k != "say"})
    th = exponents(alpha, beta)
    out["theory"] = dict(xi=float(th.xi), eta=float(th.eta))
    grid = common_grid(wsd, per_decade=8)      # one flop grid for both (WSD's horizons start at T = 10)
    for name, curves in (("constant", const), ("wsd", wsd)):
        # local slopes over two decades (one rung per octave prints a staircase into shorter windows), kept
        # inside the fit window (near the ladder's ends the argmin is not bracketed)
        fit = fit_envelope(curves, grid=grid, slope_window=2.0)
        lf = fit.local.flops
        keep = (lf >= fit.window[0]) & (lf <= fit.window[1])
        out[name] = dict(xi=fit.xi, xi_err=fit.xi_err, eta=fit.eta, eta_err=fit.eta_err,
                         window=[float(w) for w in fit.window],
                         local_flops=lf[keep].tolist(), local_xi=fit.local.xi[keep].tolist(),
                         local_eta=fit.local.eta[keep].tolist(),
                         env_flops=fit.flops.tolist(), envelope=fit.envelope.tolist(),
                         curves=[(int(d), np.asarray(f).tolist(), np.asarray(l).tolist()) for d, f, l in curves])
    return out


def ratio(r):
    """``(flops, WSD envelope / constant envelope)`` inside both fit windows (the envelope near the ladder's ends
    is not a compute-optimal loss)."""
    f = np.array(r["constant"]["env_flops"])
    e_c, e_w = np.array(r["constant"]["envelope"]), np.array(r["wsd"]["envelope"])
    lo = max(r["constant"]["window"][0], r["wsd"]["window"][0])
    hi = min(r["constant"]["window"][1], r["wsd"]["window"][1])
    ok = np.isfinite(e_c) & np.isfinite(e_w) & (f >= lo) & (f <= hi)
    return f[ok], e_w[ok] / e_c[ok]


def plot(results, path):
    from .plotting import new_figure, save
    fig, axes = new_figure(ncols=3, nrows=1, height=3.8, constrained_layout=True)
    axes = axes[0]
    cols = ["tab:blue", "tab:red", "tab:green", "tab:purple"]
    for i, (label, r) in enumerate(results.items()):
        col = cols[i % len(cols)]
        for name, ls in (("constant", "-"), ("wsd", "--")):
            q = r[name]
            lf = np.asarray(q["local_flops"])
            k = (lf >= 10 * q["window"][0]) & (lf <= q["window"][1] / 10)   # whole 2-decade slope window inside
            axes[0].plot(lf[k], np.asarray(q["local_eta"])[k], ls, color=col, label=f"{label} {name}")
            axes[1].plot(lf[k], np.asarray(q["local_xi"])[k], ls, color=col, label=f"{label} {name}")
        axes[0].axhline(r["theory"]["eta"], color=col, lw=0.8, ls=":")
        axes[1].axhline(r["theory"]["xi"], color=col, lw=0.8, ls=":")
        axes[2].plot(*ratio(r), "-", color=col, label=label)
    for ax, yl, t in ((axes[0], r"local $\eta$", r"loss exponent (dotted: constant-lr theory)"),
                      (axes[1], r"local $\xi$", r"$d^*$ exponent (dotted: constant-lr theory)"),
                      (axes[2], "WSD envelope / constant envelope", "compute-optimal loss ratio")):
        ax.set_xscale("log")
        ax.set_xlabel("compute f")
        ax.set_ylabel(yl)
        ax.set_title(t, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Compute-optimal frontier: constant lr (solid) vs WSD, 20% linear cooldown, same peak (dashed)",
                 fontsize=10)
    save(fig, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", nargs="+", default=["II", "III"], choices=sorted(NAMED))
    ap.add_argument("--d-max", type=int, default=2 ** 17)
    ap.add_argument("--flops-max", type=float, default=1e11)
    ap.add_argument("--per-decade", type=int, default=4)
    ap.add_argument("--cooldown", type=float, default=0.2)
    ap.add_argument("--out", required=True)
    ap.add_argument("--replot", action="store_true", help="redraw OUT's figure from OUT/results.json")
    a = ap.parse_args(argv)
    for bad, msg in ((not 64 <= a.d_max <= 2 ** 24, f"--d-max must be in [64, 2^24], got {a.d_max}"),
                     (not a.flops_max >= 1e3 * a.d_max, f"--flops-max must be >= 1e3 x --d-max, got {a.flops_max:g}"),
                     (not 1 <= a.per_decade <= 8, f"--per-decade must be in 1..8, got {a.per_decade}"),
                     (not 0 < a.cooldown < 1, f"--cooldown must be in (0, 1), got {a.cooldown}")):
        if bad:
            ap.error(msg)        # exit 2, before any work
    if a.replot:
        if not os.path.isfile(os.path.join(a.out, "results.json")):
            ap.error(f"--replot: {os.path.join(a.out, 'results.json')} does not exist (run without --replot first)")
        with open(os.path.join(a.out, "results.json")) as fh:
            plot(json.load(fh)["results"], os.path.join(a.out, "schedule_frontier.png"))
        return
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    results = {}
    for p in a.points:
        al, be = NAMED[p]
        results[p] = compare(al, be, d_max=a.d_max, flops_max=a.flops_max, per_decade=a.per_decade,
                             cooldown=a.cooldown, say=lambda m, p=p: print(f"{p}: {m}", flush=True))
        r = results[p]
        print(f"{p} ({al}, {be}): eta constant {r['constant']['eta']:.3f} +- {r['constant']['eta_err']:.3f}, "
              f"WSD {r['wsd']['eta']:.3f} +- {r['wsd']['eta_err']:.3f}, theory {r['theory']['eta']:.3f}; "
              f"xi {r['constant']['xi']:.3f} / {r['wsd']['xi']:.3f} / {r['theory']['xi']:.3f}", flush=True)
    tmp = os.path.join(a.out, "results.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(dict(results=results, wall_time=time.time() - t0), fh)
    os.replace(tmp, os.path.join(a.out, "results.json"))
    plot(results, os.path.join(a.out, "schedule_frontier.png"))
    print(f"wrote {a.out}/results.json and schedule_frontier.png ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
