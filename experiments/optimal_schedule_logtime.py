"""Optimal SGD schedules at horizons to 1e10 from gradients through the log-time solver, against tuned baselines.

    python -m experiments.optimal_schedule_logtime --out DIR [--d 1e5] [--horizons 1e6 1e8 1e10]

Writes DIR/results.json (one record per horizon, written after each) and DIR/optimal_schedule_logtime.png
(README "Optimal schedules"; 8-13 min per horizon on 2 shared cores at d = 1e5).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def run(alpha: float, beta: float, d: int, horizons, knots: int, out: str) -> list:
    from theory import logtime_grad as LG
    from theory.deterministic import deterministic_spectrum
    os.makedirs(out, exist_ok=True)
    spec = deterministic_spectrum(alpha, beta, d)
    recs = []
    for T in horizons:
        t0 = time.time()
        base = {name: LG.tune_baseline(spec, name, steps=T) for name in ("constant", "cosine", "linear")}
        base["wsd"] = min(LG.tune_baseline(spec, "wsd", steps=T, cooldown=c) + (c,) for c in (0.02, 0.05, 0.1, 0.2, 0.4))
        r = LG.optimize_logtime(spec, steps=T, knots=knots, space="ends",
                                init=LG.shape_schedule("wsd", base["wsd"][1], T, base["wsd"][2]))
        best = min(v[0] for v in base.values())
        recs.append(dict(alpha=alpha, beta=beta, d=d, T=T, loss=r.loss, P_star=float(spec.P_star), saving=1 - r.loss / best,
                         baselines={k: list(v) for k, v in base.items()}, rounds=r.rounds, u=r.u.tolist(),
                         values=r.values.tolist(), seconds=time.time() - t0))
        print(f"T = {T:.0e}: optimal {r.loss:.4e}, best baseline {best:.4e} (saving {recs[-1]['saving']:.2%}), "
              f"{time.time() - t0:.0f} s", flush=True)
        tmp = os.path.join(out, "results.json.tmp")
        with open(tmp, "w") as f:
            json.dump(recs, f)
        os.replace(tmp, os.path.join(out, "results.json"))
    plot(recs, os.path.join(out, "optimal_schedule_logtime.png"))
    return recs


def plot(recs, path, ymin: float = 1e-8):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from theory import logtime_grad as LG
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.6))
    for r in recs:
        T, u, v = r["T"], np.array(r["u"]), np.array(r["values"])
        steps = LG.knot_steps(u, T, "ends")
        peak, c = r["baselines"]["wsd"][1], r["baselines"]["wsd"][2]
        left, e = T - steps, steps >= T / 2
        line, = ax[0].plot(left[e], np.maximum(v[e], ymin), "o-", ms=3, label=f"T = {T:.0e}: optimal ({len(u)} knots)")
        L = np.geomspace(1, T / 2, 400)
        ax[0].plot(L, np.maximum(peak * np.clip(L / (c * T), 0, 1), ymin), "--", color=line.get_color(), lw=1,
                   label=f"T = {T:.0e}: tuned WSD (cooldown {c:g})")
        b = steps <= T / 2
        ax[1].plot(np.maximum(steps[b], 0.5), v[b], "o-", ms=3, color=line.get_color(), label=f"T = {T:.0e}")
    ax[0].set_xscale("log"); ax[0].set_yscale("log"); ax[0].set_ylim(ymin / 3, 2)
    ax[0].set_xlabel("steps left, T - t"); ax[0].set_ylabel("learning rate")
    ax[0].set_title(f"second half: the end (values below {ymin:g} drawn at {ymin:g})")
    ax[1].set_xscale("log"); ax[1].set_xlabel("step t (t = 0 drawn at 0.5)"); ax[1].set_ylabel("learning rate")
    ax[1].set_title("first half: the start")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    r0 = recs[0]
    fig.suptitle(f"Optimal SGD schedules from log-time gradients: alpha = {r0['alpha']:g}, beta = {r0['beta']:g}, "
                 f"d = {r0['d']:.0e} (deterministic equivalent), B = 1, lr cap 0.9 x edge")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=0.7)
    p.add_argument("--d", type=float, default=1e5)
    p.add_argument("--horizons", type=float, nargs="+", default=[1e6, 1e8, 1e10])
    p.add_argument("--knots", type=int, default=32)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if not (a.alpha > 0 and 2 * (a.alpha + a.beta) > 1):
        p.error("--alpha/--beta: need alpha > 0 and 2(alpha + beta) > 1")
    if not (16 <= a.d <= 1e9) or any(not (100 <= T <= 1e12) for T in a.horizons) or a.knots < 4:
        p.error("--d must be in [16, 1e9], --horizons in [100, 1e12], --knots >= 4")
    run(a.alpha, a.beta, int(a.d), [int(T) for T in a.horizons], a.knots, a.out)


if __name__ == "__main__":
    main()
