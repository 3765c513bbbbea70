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


def run(args):
    import jax

    import plrf
    from plrf import store
    from plrf.progress import Progress
    from plrf.sweep import sweep
    from theory import collapse as CL
    from theory.ladder import geometric_ladder, ladder_curves, ladder_lr
    from theory.logtime import solve_logtime

    t0 = time.time()
    ds = _validate(args)
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
    config = dict(command="collapse", alpha=args.alpha, beta=args.beta, schedule=args.schedule, d=ds.tolist(),
                  h_min=args.h_min, h_max=args.h_max, h_flops=args.h_flops, c=args.c, batch=B, seeds=args.seeds,
                  seed=args.seed, num=args.num, no_sim=args.no_sim, families=list(families), late_window=list(LATE))
    results = dict(config=config, metadata=store.metadata(config, wall_time=time.time() - t0),
                   timings=dict(horizons=t_h, runs=t_sim, total=time.time() - t0),
                   horizon_ladder=dict(d=hor.d, T=hor.T, xi=hor.xi, coef=hor.coef, g=hor.g),
                   T_opt=T_opt, lr={int(d): lrs[d] for d in ds},
                   P_star={int(d): float(specs[d].P_star) for d in ds},
                   L0=L0, L0_fit=L0fit._asdict(), families=out)
    os.makedirs(args.out, exist_ok=True)
    store.write_json(os.path.join(args.out, "results.json"), results)
    plot(runs, out, ds, config, hor, L0, os.path.join(args.out, "collapse.png"))
    results["timings"]["total"] = time.time() - t0
    store.write_json(os.path.join(args.out, "results.json"), results)
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


def plot(runs, out, ds, cfg, hor, L0, path):
    import matplotlib as mpl

    from .plotting import new_figure, save
    fams = list(out)
    fig, axes = new_figure(5, 2, width=4.4, height=3.9)
    cmap = mpl.colormaps["viridis"]
    col = {d: cmap(i / max(1, ds.size - 1)) for i, d in enumerate(ds)}
    Ts, ex, sg = runs["optimal"]
    ax = axes[0, 0]
    for d, (st, lo) in zip(ds, ex):
        ax.plot(st[1:], lo[1:], color=col[d], label=f"d={d}, T*={int(Ts[list(ds).index(d)])}")
    if L0 > 1e-3 * min(lo[-1] for _, lo in ex):
        ax.axhline(L0, color="gray", ls=":", lw=0.8, label=f"$L_0$={L0:.2e}")
    ax.set(xscale="log", yscale="log", xlabel="SGD step $t$", ylabel="exact expected loss",
           title=f"{cfg['schedule']} to the compute-optimal horizon\n$T^* \\propto d^{{{hor.g:.2f}}}$ "
                 f"(theory ladder, $d^* \\propto f^{{{hor.xi:.3f}}}$)")
    ax.legend(fontsize=7)
    for ax, fam in ((axes[0, 1], "optimal"), (axes[0, 2], fams[-1] if len(fams) > 1 else "optimal")):
        rec = out[fam]
        x = rec["x"]
        for i, d in enumerate(ds):
            if "l_mean_seeds" in rec:
                ax.plot(x, rec["l_mean_seeds"][i], color=col[d], lw=0.9, ls="--")
            ax.plot(x, rec["l_exact"][i], color=col[d], lw=1.6, label=f"d={d}")
        ax.plot([], [], "k-", label="exact")
        if "l_mean_seeds" in rec:
            ax.plot([], [], "k--", lw=0.9, label=f"mean of {cfg['seeds']} seeds (each normalized)")
        ax.set(xscale="log", yscale="log", xlabel="$x = t/T$", ylabel=r"$\ell(x) = (L(xT)-L_0)/(L(T)-L_0)$",
               title=f"normalized curves, horizons: {fam}")
        ax.legend(fontsize=7)
    ax = axes[0, 3]
    x = out["optimal"]["x"]
    for i, fam in enumerate(fams):
        ax.plot(out[fam]["x"], out[fam]["delta_sizes"], color=f"C{i}", lw=2.2 if fam == "optimal" else 1.1,
                label=fam)
    if "sigma" in out["optimal"]:
        ax.plot(x, out["optimal"]["sigma"], "k:", lw=1.4, label=r"seed floor $\sigma(x)$ (optimal)")
    ax.set_ylim(bottom=1e-3)
    ax.set(xscale="log", yscale="log", xlabel="$x = t/T$", ylabel=r"$\Delta(x)$ of the exact curves",
           title="noise-free spread across sizes,\nper horizon family")
    ax.legend(fontsize=7)
    ax = axes[0, 4]
    ax.plot(hor.d, hor.T, "ko", ms=4, label="$T^*(d)$ from the theory ladder")
    for i, fam in enumerate(fams):
        ax.plot(ds, out[fam]["T"], "-", marker=".", color=f"C{i}", label=fam)
    ax.set(xscale="log", yscale="log", xlabel="$d$", ylabel="horizon $T(d)$", title="horizon families")
    ax.legend(fontsize=7)
    for ax in axes[1, len(fams):]:
        ax.set_visible(False)
    for j, fam in enumerate(fams[:5]):
        ax = axes[1, j]
        r = out[fam]
        if "delta" in r:
            ax.plot(r["x"], r["delta"], "k-", lw=1.5, label=r"$\Delta(x)$ (seeds)")
            ax.plot(r["x"], r["sigma"], "C3-", lw=1.3, label=r"seed floor $\sigma(x)$")
        ax.plot(r["x"], r["delta_sizes"], "C0--", lw=1.2, label=r"$\Delta$ of exact curves (sizes only)")
        ax.axvspan(*LATE, color="orange", alpha=0.08, label="late window")
        s = r["summary"]
        t = f"{fam}: T = {r['T'].tolist()}"
        if "supercollapse" in s:
            t += f"\nlate: $\\Delta/\\sigma$ = {s['ratio_late']:.2f}, supercollapse: {s['supercollapse']}"
        ax.set_ylim(bottom=1e-3)
        ax.set(xscale="log", yscale="log", xlabel="$x = t/T$", ylabel="relative spread", title=t)
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7)
    for a in axes.flat:
        a.grid(alpha=0.3, which="major")
    fig.suptitle(rf"PLRF $\alpha$={cfg['alpha']}, $\beta$={cfg['beta']}, B={cfg['batch']}, {cfg['schedule']} lr, "
                 f"d = {ds.tolist()}, v = 4d, {cfg['seeds']} seeds; fitted $L_0$ = {L0:.3e}", fontsize=11)
    fig.tight_layout()
    save(fig, path)
