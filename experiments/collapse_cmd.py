"""Scaling collapse of compute-optimal loss curves across model sizes (Qiu et al. 2025) and how it breaks off-optimum.

Horizons: exact constant-lr loss-vs-compute curves over a ladder of d (deterministic-equivalent spectra,
:func:`theory.ladder.ladder_curves`) give ``T*(d) = (d / coef)^{1/xi} / (d B)``
(:func:`theory.collapse.compute_optimal_horizons`). For each size of a small ladder (one sampled W, v = 4d,
lr = :func:`theory.ladder.ladder_lr`), the chosen schedule is run to ``T(d)`` for each horizon family (optimal,
0.5x, 2x, ``T ~ d^{g +- 0.5}``, :func:`theory.collapse.off_optimal_horizons`): exact expected curves (log-time
solver: the noise-free spread across sizes) and eigen-SGD seeds (seed noise). ``L0`` is fitted as
``L = L0 + a c^{-b}`` on the compute-optimal frontier of the horizon ladder (:func:`theory.collapse.fit_L0`).
Normalized curves ``l(x) = (L(xT) - L0) / (L(T) - L0)``, ``Delta(x)`` and ``sigma(x)`` per family
(:func:`theory.collapse.decompose`). Writes OUT/results.json and OUT/collapse.png.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import options as opt

DEFAULT_OUT = "runs/collapse"
FAMILIES = ("optimal", "0.5x", "2x", "exp-0.5", "exp+0.5")
LATE = (0.3, 0.95)   # window of x = t/T where supercollapse (Delta < sigma) is assessed; l(1) = 1 by construction


def add_arguments(p):
    p.add_argument("--alpha", type=opt.positive_float, default=1.0, help="data spectrum exponent alpha > 1/2")
    p.add_argument("--beta", type=opt.real, default=0.7, help="target exponent beta (2(alpha+beta) > 1)")
    p.add_argument("--schedule", default="cosine", help="schedule name (plrf.schedules.by_name)")
    p.add_argument("--d", type=opt.int_at_least(2), nargs="+", default=[32, 64, 128, 256, 512],
                   help="model sizes of the collapse (>= 3)")
    p.add_argument("--h-min", type=opt.big_int, default=16, help="smallest d of the horizon ladder")
    p.add_argument("--h-max", type=opt.big_int, default=2048, help="largest d of the horizon ladder")
    p.add_argument("--h-flops", type=opt.positive_float, default=1e8, help="compute reached by the horizon ladder")
    p.add_argument("--c", type=opt.positive_float, default=0.5, help="lr = c / sum_j j^{-2 alpha}")
    p.add_argument("--batch", type=opt.int_at_least(1), default=1, help="batch size B")
    p.add_argument("--seeds", type=opt.int_at_least(2), default=32, help="eigen-SGD seeds per size and family")
    p.add_argument("--seed", type=opt.int_at_least(0), default=0, help="base seed (W and SGD)")
    p.add_argument("--num", type=opt.int_at_least(8), default=80, help="log-spaced steps recorded per run")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), metavar="NAME",
                   help="horizon families: " + ", ".join(FAMILIES))
    p.add_argument("--no-sim", action="store_true", help="exact curves only (no seed-noise floor sigma)")
    p.add_argument("--overwrite", action="store_true", help="discard results stored in OUT with other settings")
    opt.add_common(p, DEFAULT_OUT)


def _validate(args):
    from plrf.schedules import NAMES
    if args.schedule not in NAMES:
        raise ValueError(f"--schedule must be one of {', '.join(NAMES)}, got {args.schedule!r}")
    if 2 * args.alpha <= 1:
        raise ValueError(f"--alpha must be > 1/2 (the horizon ladder uses v = infinity), got {args.alpha}")
    bad = [f for f in args.families if f not in FAMILIES]
    if bad or not args.families or "optimal" not in args.families:
        raise ValueError(f"--families must include 'optimal' and be among {', '.join(FAMILIES)}, got {args.families}")
    ds = sorted(set(args.d))
    if len(ds) < 3:
        raise ValueError(f"--d needs at least 3 distinct sizes, got {args.d}")
    if args.h_max <= args.h_min:
        raise ValueError(f"--h-max must be > --h-min, got {args.h_max} <= {args.h_min}")
    from . import budget
    budget.check(budget.collapse(ds=ds, h_min=args.h_min, h_max=args.h_max, h_flops=args.h_flops, batch=args.batch,
                                 seeds=args.seeds, no_sim=args.no_sim), args, say=budget.teller(args, "collapse"))
    return np.array(ds)


def _grid(T, num):
    import plrf
    return np.union1d(plrf.log_grid(int(T), num), np.round(np.linspace(0, T, 41)).astype(np.int64))


def config_of(args, ds) -> dict:
    return dict(command="collapse", alpha=args.alpha, beta=args.beta, schedule=args.schedule, d=ds.tolist(),
                h_min=args.h_min, h_max=args.h_max, h_flops=args.h_flops, c=args.c, batch=args.batch,
                seeds=args.seeds, seed=args.seed, num=args.num, no_sim=bool(args.no_sim),
                families=[f for f in FAMILIES if f in args.families], late_window=list(LATE))


def run(args):
    from plrf.store import prepare_out

    t0 = time.time()
    ds = _validate(args)
    config = config_of(args, ds)
    with prepare_out(args.out, config, overwrite=args.overwrite) as out_dir:   # before any work; locks OUT
        return _run(args, ds, config, out_dir, t0)


def _run(args, ds, config, out_dir, t0):
    import jax

    import plrf
    from plrf.progress import Progress
    from plrf.sweep import sweep
    from theory import collapse as CL
    from theory.ladder import geometric_ladder, ladder_curves, ladder_lr
    from theory.logtime import solve_logtime

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    B = args.batch

    # 1. compute-optimal horizons from the theory ladder (constant lr)
    hds = geometric_ladder(args.h_min, args.h_max, 1.0)
    with Progress(len(hds), desc="horizon ladder", unit="d", quiet=args.quiet) as bar:
        hc = ladder_curves(args.alpha, args.beta, hds, flops_max=args.h_flops, batch=B, c=args.c, progress=bar)
    hor = CL.compute_optimal_horizons([(c.d, c.steps, c.loss) for c in hc], batch=B)
    T_opt = (ds / hor.coef) ** (1.0 / hor.xi) / (ds * B)
    # L0 as in Qiu et al.: L = L0 + a c^{-b} on the frontier (each ladder size at its own T*(d))
    inside = (hor.T >= 2) & (hor.T <= np.array([c.steps[-1] for c in hc]))
    L_end = np.array([np.exp(np.interp(np.log(T), np.log(c.steps), np.log(c.loss))) for c, T in zip(hc, hor.T)])
    L0fit = CL.fit_L0((hor.d * B * hor.T)[inside], L_end[inside])
    L0 = L0fit.L0
    t_h = time.time() - t0
    say(f"plrf collapse: horizons from {len(hds)} theory sizes in {t_h:.0f}s: d* ~ f^{hor.xi:.3f}, "
        f"T* ~ d^{hor.g:.3f}; L0 = {L0:.3e} (L = L0 + {L0fit.a:.3g} c^-{L0fit.b:.3f}, rms {L0fit.rms:.2e})")
    families = {k: v for k, v in CL.off_optimal_horizons(ds, T_opt, g=hor.g).items() if k in args.families}

    # 2. one sampled W per size; exact curves and eigen-SGD seeds for every family
    k_w, k_sgd = jax.random.split(jax.random.key(args.seed))
    specs, lrs = {}, {}
    for d in ds:
        specs[d] = plrf.sample_spectrum(plrf.Problem(args.alpha, args.beta, 4 * int(d), int(d)),
                                        key=jax.random.fold_in(k_w, int(d)))
        lrs[d] = ladder_lr(args.alpha, int(d), c=args.c)
    runs = {}
    t_sim = time.time()
    with Progress(len(families) * ds.size, desc="collapse runs", unit="run", quiet=args.quiet) as bar:
        for fi, (fam, Ts) in enumerate(families.items()):
            ex, sg = [], []
            for d, T in zip(ds, Ts):
                T = int(max(2, T))
                s = plrf.schedules.by_name(args.schedule, lrs[d], T)
                g = _grid(T, args.num)
                e = solve_logtime(specs[d], s, steps=T, batch=B, grid=g)
                ex.append((g, np.asarray(e.loss)))
                if not args.no_sim:
                    key = jax.random.fold_in(jax.random.fold_in(k_sgd, fi), int(d))
                    r = sweep(specs[d], s, steps=T, method="eigen", key=key, seeds=args.seeds, batches=(B,),
                              grid=g, devices=args.devices, block=min(args.seeds, 64), quiet=True)
                    sg.append((g, r.loss[0, 0]))
                bar.update()
            runs[fam] = (np.asarray(Ts), ex, sg)
    t_sim = time.time() - t_sim

    # 3. collapse statistics per family
    out = {}
    for fam, (Ts, ex, sg) in runs.items():
        x = _x_grid(Ts)
        rex = CL.collapse(ex, L0=L0, x=x)
        rec = dict(T=Ts, x=x, l_exact=rex.l[:, 0, :], delta_sizes=rex.delta)
        if sg:
            sp = CL.decompose(ex, sg, L0=L0, x=x)
            rs = CL.collapse(sg, L0=L0, x=x)
            rec.update(delta=sp.total, sigma=sp.sigma, delta_noise=sp.noise, l_mean_seeds=np.nanmean(rs.l, axis=1),
                       sim_final_mean=[float(np.mean(L[:, -1])) for _, L in sg])
        rec["exact_final"] = [float(lo[-1]) for _, lo in ex]
        rec["summary"] = _summary(rec)
        out[fam] = rec
    if list(families) != config["families"]:
        raise RuntimeError(f"horizon families {list(families)} != {config['families']}")
    exact_curves = {fam: [dict(steps=g, loss=lo) for g, lo in runs[fam][1]] for fam in runs}
    results = dict(timings=dict(horizons=t_h, runs=t_sim, total=time.time() - t0),
                   horizon_ladder=dict(d=hor.d, T=hor.T, xi=hor.xi, coef=hor.coef, g=hor.g),
                   T_opt=T_opt, lr={int(d): lrs[d] for d in ds},
                   P_star={int(d): float(specs[d].P_star) for d in ds},
                   L0=L0, L0_fit=L0fit._asdict(), families=out, exact_curves=exact_curves)
    out_dir.save(results, dataset(out, exact_curves, ds), wall_time=time.time() - t0)
    plot(runs, out, ds, config, hor, L0, out_dir.file("collapse.png"))
    if not args.quiet:
        for fam, rec in out.items():
            s = rec["summary"]
            line = (f"  {fam:>9}: T = {rec['T'].tolist()}; late x in [{LATE[0]}, {LATE[1]}]: Delta_sizes "
                    f"{s['delta_sizes_late']:.4f}")
            if "delta_late" in s:
                line += (f", Delta {s['delta_late']:.4f}, sigma {s['sigma_late']:.4f}, Delta < sigma at "
                         f"{s['frac_late_below_sigma']:.0%} of late x -> supercollapse: {s['supercollapse']}")
            say(line)
        say(f"wrote {args.out}/results.json and collapse.png in {time.time() - t0:.0f}s")
    return results


def dataset(out, exact_curves, ds):
    """Per (family, d): horizons, normalized exact curves, final losses; per family: Delta, sigma on the x grid
    of that family (dim ``x_i``; the x values are the variable ``x``); exact curves per (family, d, ``point``)."""
    import xarray as xr

    from plrf.store import stack_ragged
    fams = list(out)
    nx = max(len(out[f]["x"]) for f in fams)
    pad = lambda a: np.pad(np.asarray(a, float), [(0, 0)] * (np.ndim(a) - 1) + [(0, nx - np.shape(a)[-1])],  # noqa: E731
                           constant_values=np.nan)
    data = {"T": (("family", "d"), np.stack([np.asarray(out[f]["T"], float) for f in fams])),
            "exact_final": (("family", "d"), np.array([out[f]["exact_final"] for f in fams], float)),
            "x": (("family", "x_i"), np.stack([pad(out[f]["x"]) for f in fams])),
            "l_exact": (("family", "d", "x_i"), np.stack([pad(out[f]["l_exact"]) for f in fams])),
            "delta_sizes": (("family", "x_i"), np.stack([pad(out[f]["delta_sizes"]) for f in fams]))}
    if "delta" in out[fams[0]]:
        for k in ("delta", "sigma", "delta_noise"):
            data[k] = (("family", "x_i"), np.stack([pad(out[f][k]) for f in fams]))
        data["l_mean_seeds"] = (("family", "d", "x_i"), np.stack([pad(out[f]["l_mean_seeds"]) for f in fams]))
        data["sim_final_mean"] = (("family", "d"), np.array([out[f]["sim_final_mean"] for f in fams], float))
    n = max(len(c["steps"]) for f in fams for c in exact_curves[f])
    for k in ("steps", "loss"):
        rows = [stack_ragged([c[k] for c in exact_curves[f]]) for f in fams]
        data[f"exact_{k}"] = (("family", "d", "point"),
                              np.stack([np.pad(r.astype(float), [(0, 0), (0, n - r.shape[1])], constant_values=np.nan)
                                        for r in rows]))
    return xr.Dataset(data, coords={"family": fams, "d": np.asarray(ds)})


def replot(out_dir):
    """Redraw collapse.png from OUT/results.json (no recomputation)."""
    from types import SimpleNamespace as NS

    from plrf.store import read_json
    r = read_json(os.path.join(out_dir, "results.json"))
    cfg = r["config"]
    ds = np.asarray(cfg["d"])
    out = {}
    for fam, rec in r["families"].items():
        out[fam] = {k: (v if k == "summary" else np.asarray(v, dtype=float)) for k, v in rec.items()}
        out[fam]["T"] = np.asarray(rec["T"])
    ex = [(np.asarray(c["steps"]), np.asarray(c["loss"], dtype=float)) for c in r["exact_curves"]["optimal"]]
    runs = {"optimal": (out["optimal"]["T"], ex, [])}
    h = r["horizon_ladder"]
    hor = NS(d=np.asarray(h["d"]), T=np.asarray(h["T"], dtype=float), xi=h["xi"], coef=h["coef"], g=h["g"])
    plot(runs, out, ds, cfg, hor, r["L0"], os.path.join(out_dir, "collapse.png"))
    return ["collapse.png"]


def _x_grid(Ts):
    lo = min(2.0 / float(np.min(Ts)), 0.5)   # every curve has recorded steps from 1 on: x >= 1/T(d) for all d
    return np.union1d(np.geomspace(lo, 1.0, 48), np.linspace(max(lo, 0.05), 1.0, 39))


def _summary(rec):
    """Late-window means, where Delta < sigma, and the largest sizes-only spread before x = LATE[1]."""
    x = rec["x"]
    late = (x >= LATE[0]) & (x <= LATE[1])
    dz = rec["delta_sizes"]
    pre = x <= LATE[1]
    s = dict(delta_sizes_late=float(np.mean(dz[late])), delta_sizes_max=float(np.nanmax(dz[pre])),
             x_of_delta_sizes_max=float(x[pre][np.nanargmax(dz[pre])]))
    if "delta" in rec:
        below = rec["delta"][late] < rec["sigma"][late]
        xb = x[late][below]
        s.update(delta_late=float(np.mean(rec["delta"][late])), sigma_late=float(np.mean(rec["sigma"][late])),
                 frac_late_below_sigma=float(np.mean(below)), supercollapse=bool(np.all(below)),
                 x_below_sigma=[float(xb.min()), float(xb.max())] if xb.size else None,
                 ratio_late=float(np.mean(rec["delta"][late] / rec["sigma"][late])))
    return s


def _L0_text(L0, ref):
    """``L0`` for a label: a number, or "~ 0" when it is below 1e-6 of the smallest final loss ``ref``."""
    if not np.isfinite(L0):
        return "$L_0$ not fitted"
    if L0 < 1e-6 * ref:
        return rf"fitted $L_0 \approx 0$ (< $10^{{-6}}$ of the smallest final loss: pure power laws)"
    return f"fitted $L_0$ = {L0:.3g}"


def _late_text(s):
    """The late-window verdict of one family: mean Delta/sigma and where Delta < sigma."""
    return (rf"late $x\in[{LATE[0]:g}, {LATE[1]:g}]$: mean $\Delta/\sigma$ = {s['ratio_late']:.2f}, "
            rf"$\Delta<\sigma$ at {s['frac_late_below_sigma']:.0%} of $x$")


def plot(runs, out, ds, cfg, hor, L0, path):
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    from .plotting import new_figure, save
    fams = list(out)
    fig, axes = new_figure(5, 2, width=4.6, height=4.3)
    cmap = mpl.colormaps["viridis"]
    col = {d: cmap(0.9 * i / max(1, ds.size - 1)) for i, d in enumerate(ds)}
    Ts, ex, sg = runs["optimal"]
    ref = min(float(lo[-1]) for _, lo in ex)
    ax = axes[0, 0]
    for d, (st, lo) in zip(ds, ex):
        ax.plot(st[1:], lo[1:], color=col[d], label=f"d={d}, T*={int(Ts[list(ds).index(d)])}")
    if np.isfinite(L0) and L0 > 1e-3 * ref:
        ax.axhline(L0, color="gray", ls=":", lw=0.8, label=f"$L_0$={L0:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="SGD step $t$", ylabel="exact expected loss")
    ax.set_title(f"{cfg['schedule']} lr to the compute-optimal horizon\n$T^* \\propto d^{{{hor.g:.2f}}}$ "
                 f"(theory ladder, $d^* \\propto f^{{{hor.xi:.3f}}}$)", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower left")
    for ax, fam in ((axes[0, 1], "optimal"), (axes[0, 2], fams[-1] if len(fams) > 1 else "optimal")):
        rec = out[fam]
        x = rec["x"]
        for i, d in enumerate(ds):
            if "l_mean_seeds" in rec:
                ax.plot(x, rec["l_mean_seeds"][i], color=col[d], lw=0.9, ls="--")
            ax.plot(x, rec["l_exact"][i], color=col[d], lw=1.6, label=f"d={d}")
        h, lab = ax.get_legend_handles_labels()
        h.append(Line2D([], [], color="0.35", lw=1.6))
        lab.append("solid: exact expected loss")
        if "l_mean_seeds" in rec:
            h.append(Line2D([], [], color="0.35", lw=0.9, ls="--"))
            lab.append(f"dashed: mean of {cfg['seeds']} seeds")
        ax.set(xscale="log", yscale="log", xlabel="$x = t/T$", ylabel=r"$\ell(x) = (L(xT)-L_0)/(L(T)-L_0)$")
        ax.set_title(f"normalized curves, {fam} horizons", fontsize=10)
        ax.legend(h, lab, fontsize=7.5, loc="upper right")
    ax = axes[0, 3]
    x = out["optimal"]["x"]
    for i, fam in enumerate(fams):
        ax.plot(out[fam]["x"], out[fam]["delta_sizes"], color=f"C{i}", lw=2.2 if fam == "optimal" else 1.1,
                label=fam)
    if "sigma" in out["optimal"]:
        ax.plot(x, out["optimal"]["sigma"], "k:", lw=1.4, label=r"seed floor $\sigma(x)$ (optimal)")
    ax.set_ylim(bottom=1e-3)
    ax.set(xscale="log", yscale="log", xlabel="$x = t/T$", ylabel=r"$\Delta(x)$ of the exact curves")
    ax.set_title("noise-free spread across sizes,\nper horizon family", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower left")
    ax = axes[0, 4]
    ax.plot(hor.d, hor.T, "ko", ms=4, label="$T^*(d)$ from the theory ladder")
    for i, fam in enumerate(fams):
        ax.plot(ds, out[fam]["T"], "-", marker=".", color=f"C{i}", label=fam)
    ax.set(xscale="log", yscale="log", xlabel="$d$", ylabel="horizon $T(d)$ (steps)")
    ax.set_title("horizon families", fontsize=10)
    ax.legend(fontsize=7.5, loc="upper left")
    for ax in axes[1, len(fams):]:
        ax.set_visible(False)
    for j, fam in enumerate(fams[:5]):
        ax = axes[1, j]
        r = out[fam]
        if "delta" in r:
            ax.plot(r["x"], r["delta"], "k-", lw=1.5, label=r"$\Delta(x)$ (seeds)")
            ax.plot(r["x"], r["sigma"], "C3-", lw=1.3, label=r"seed floor $\sigma(x)$")
        ax.plot(r["x"], r["delta_sizes"], "C0--", lw=1.2, label=r"$\Delta$ of exact curves (sizes only)")
        ax.axvspan(*LATE, color="orange", alpha=0.1, label="late window")
        s = r["summary"]
        t = f"{fam} horizons"
        if "ratio_late" in s:
            t += "\n" + _late_text(s)
        ax.set_ylim(bottom=1e-3)
        ax.set(xscale="log", yscale="log", xlabel="$x = t/T$", ylabel=r"relative spread across sizes")
        ax.set_title(t, fontsize=9.5)
        ax.legend(fontsize=7.5, loc="lower left")
    for a in axes.flat:
        a.grid(alpha=0.3, which="major")
    fig.suptitle(rf"PLRF $\alpha$={cfg['alpha']}, $\beta$={cfg['beta']}, B={cfg['batch']}, {cfg['schedule']} lr, "
                 f"d = {ds.tolist()}, v = 4d, {cfg['seeds']} seeds; {_L0_text(L0, ref)}. Supercollapse: "
                 r"$\Delta(x) < \sigma(x)$ late in training", fontsize=12)
    fig.tight_layout()
    save(fig, path)
    return fig
