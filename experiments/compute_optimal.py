"""Compute-optimal frontier for one (alpha, beta): d* ~ f^xi and P ~ f^-eta, measured vs predicted.

Theory curves (deterministic-equivalent spectrum + log-time Volterra solver, no sampling) over a geometric ladder
of d reaching d = 1e6 and beyond, their lower envelope and argmin d (Chinchilla approaches 1 and 2, flop window by
the rule of theory.frontier), the predicted exponents of the phase, the local slopes of d* and of the loss against
flops (finite-size drift), and eigen-SGD simulations (several seeds) overlaid for the smaller d.
Writes OUT/results.json, OUT/compute_optimal.png and OUT/cells/ (one cell per d: an interrupted run resumes).
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import options as opt

DEFAULT_OUT = "runs/compute-optimal"


def add_arguments(p):
    p.add_argument("--alpha", type=opt.positive_float, default=1.0, help="data spectrum exponent alpha > 0")
    p.add_argument("--beta", type=opt.real, default=0.7, help="target exponent beta (2(alpha+beta) > 1)")
    p.add_argument("--d-min", type=opt.big_int, default=16, help="smallest d of the ladder")
    p.add_argument("--d-max", type=opt.big_int, default=2 ** 22, help="largest d of the ladder (e.g. 4e6)")
    p.add_argument("--per-octave", type=opt.positive_float, default=1.0, help="ladder values per factor 2 in d")
    p.add_argument("--flops-max", type=opt.positive_float, default=1e14, help="largest compute f = d B steps")
    p.add_argument("--batch", type=opt.int_at_least(1), default=1, help="batch size B")
    p.add_argument("--c", type=opt.positive_float, default=0.5, help="lr = c / sum_{j<=v} j^{-2 alpha}")
    p.add_argument("--ratio", type=opt.positive_float, default=4.0, help="v/d when 2 alpha < 1 (> 1)")
    p.add_argument("--sim-d", type=opt.int_at_least(1), nargs="*", default=[64, 256, 1024],
                   help="d values simulated with eigen SGD and overlaid (none: no simulation)")
    p.add_argument("--sim-seeds", type=opt.int_at_least(1), default=8, help="SGD seeds per simulated d")
    p.add_argument("--sim-flops", type=opt.positive_float, default=3e7, help="compute budget of each simulation")
    p.add_argument("--seed", type=opt.int_at_least(0), default=0, help="base seed of the simulations")
    p.add_argument("--overwrite", action="store_true", help="discard results stored in OUT with other settings")
    opt.add_common(p, DEFAULT_OUT)


def config_of(args) -> dict:
    return dict(command="compute-optimal", alpha=args.alpha, beta=args.beta, d_min=args.d_min, d_max=args.d_max,
                per_octave=args.per_octave, flops_max=args.flops_max, batch=args.batch, c=args.c,
                ratio=args.ratio, sim_d=list(args.sim_d), sim_seeds=args.sim_seeds, sim_flops=args.sim_flops,
                seed=args.seed)


def fit_record(m) -> dict:
    """The numbers of a FrontierMeasurement, as stored in results.json."""
    f1, f2 = m.fit, m.fit2
    return dict(alpha=m.alpha, beta=m.beta, phase=m.phase, xi_theory=m.xi_theory, eta_theory=m.eta_theory,
                xi_measured=f1.xi, xi_err=f1.xi_err, eta_measured=f1.eta, eta_err=f1.eta_err,
                xi_parabola=f2.xi, xi_parabola_err=f2.xi_err, eta_parabola=f2.eta, eta_parabola_err=f2.eta_err,
                flop_window=list(f1.window), edge_limited=bool(f1.edge_limited),
                local_flops=f2.local.flops, local_xi=f2.local.xi, local_eta=f2.local.eta,
                local1_flops=f1.local.flops, local1_eta=f1.local.eta,
                xi_local_last=_last(f2.local.xi), eta_local_last=_last(f2.local.eta))


def _last(x):
    x = np.asarray(x)
    x = x[np.isfinite(x)]
    return float(x[-1]) if x.size else float("nan")


def simulate_small(alpha, beta, ds, *, seeds, flops, batch, c, ratio, seed, devices=None, quiet=True):
    """eigen SGD on sampled W (v = ratio*d... or 4d) for the small d, at the ladder's learning rate."""
    import jax

    import plrf
    from plrf.sweep import sweep
    from theory.ladder import ladder_lr
    out = []
    key = jax.random.key(seed)
    for d in ds:
        problem = plrf.Problem(alpha, beta, int(round(max(ratio, 4.0) * d)), int(d))
        spec = plrf.sample_spectrum(problem, key=jax.random.fold_in(jax.random.fold_in(key, 0), d))
        lr = ladder_lr(alpha, d, c=c, ratio=ratio)
        steps = max(2, int(flops // (d * batch)))
        res = sweep(spec, plrf.schedules.constant(lr), steps=steps, method="eigen", batches=(batch,),
                    key=jax.random.fold_in(jax.random.fold_in(key, 1), d), seeds=seeds, num=40, devices=devices,
                    quiet=quiet, desc=f"sim d={d}")
        L = res.loss[0, 0]
        out.append(dict(d=int(d), flops=(d * batch) * res.steps[1:].astype(float), loss_mean=L.mean(0)[1:],
                        loss_stderr=(L.std(0, ddof=1) / np.sqrt(L.shape[0]))[1:], lr=lr, v=problem.v))
    return out


def check_ladder(*, alpha, beta, d_min, d_max, flops_max, batch, ratio, d_max_option="--d-max"):
    """Checks shared with phase-diagram (messages name the option)."""
    if 2 * (alpha + beta) <= 1:
        raise ValueError(f"--alpha/--beta inadmissible: need 2(alpha + beta) > 1, got alpha={alpha}, beta={beta}")
    if d_max <= d_min:
        raise ValueError(f"{d_max_option} must be > --d-min = {d_min}, got {d_max}")
    if ratio <= 1:
        raise ValueError(f"--ratio must be > 1, got {ratio}")
    f_min = FLOPS_MIN_STEPS * d_min * batch
    if flops_max < f_min:
        raise ValueError(f"--flops-max must be >= {f_min:.3g} (= {FLOPS_MIN_STEPS} steps of the smallest rung, "
                         f"{FLOPS_MIN_STEPS} x d_min x B = {FLOPS_MIN_STEPS} x {d_min} x {batch}), got {flops_max:g}")


FLOPS_MIN_STEPS = 100   # the smallest rung runs at least this many steps (two decades of its loss curve)


def _validate(args):
    """Options checked before any work; returns the d ladder."""
    from theory.ladder import geometric_ladder

    from . import budget
    check_ladder(alpha=args.alpha, beta=args.beta, d_min=args.d_min, d_max=args.d_max, flops_max=args.flops_max,
                 batch=args.batch, ratio=args.ratio)
    ds = geometric_ladder(args.d_min, args.d_max, args.per_octave)
    budget.check(budget.ladder(ds, flops_max=args.flops_max, sims=args.sim_d, sim_seeds=args.sim_seeds,
                               sim_flops=args.sim_flops, batch=args.batch), args,
                 say=budget.teller(args, "compute-optimal"))
    return ds


def run(args):
    from plrf.progress import Progress
    from plrf.store import CellStore, write_json
    from theory.ladder import measure_frontier

    t0 = time.time()
    ds = _validate(args)
    config = config_of(args)
    os.makedirs(args.out, exist_ok=True)
    store = CellStore(args.out, config, overwrite=args.overwrite)
    with Progress(len(ds), desc="compute-optimal ladder", unit="d", quiet=args.quiet) as bar:
        m = measure_frontier(args.alpha, args.beta, ds, flops_max=args.flops_max, batch=args.batch, c=args.c,
                             ratio=args.ratio, store=store, progress=bar)
    sims = simulate_small(args.alpha, args.beta, args.sim_d, seeds=args.sim_seeds, flops=args.sim_flops,
                          batch=args.batch, c=args.c, ratio=args.ratio, seed=args.seed, devices=args.devices,
                          quiet=args.quiet) if args.sim_d else []
    rec = fit_record(m)
    results = dict(config=config, **rec, ladder=[int(d) for d in ds],
                   envelope_flops=m.fit.flops, envelope_loss=m.fit.envelope, argmin_d=m.fit.argmin_d,
                   parabola_d=m.fit2.argmin_d, parabola_loss=m.fit2.envelope,
                   curves=[dict(d=c.d, lr=c.lr, P_star=c.P_star, v=c.v, flops=c.flops, loss=c.loss) for c in m.curves],
                   simulations=sims)
    store.finish(wall_time=time.time() - t0, **{k: rec[k] for k in ("phase", "xi_theory", "eta_theory",
                                                                      "xi_measured", "eta_measured")})
    from plrf.store import read_json
    meta = read_json(os.path.join(args.out, "results.json"))
    meta.update(results)
    write_json(os.path.join(args.out, "results.json"), meta)
    plot(m, sims, os.path.join(args.out, "compute_optimal.png"))
    if not args.quiet:
        print(f"plrf compute-optimal: phase {m.phase}: xi = {m.fit.xi:.3f} ± {m.fit.xi_err:.3f} (theory "
              f"{m.xi_theory:.3f}), eta = {m.fit.eta:.3f} ± {m.fit.eta_err:.3f} (theory {m.eta_theory:.3f}); "
              f"wrote {args.out}/results.json and compute_optimal.png")
    return m


def plot(m, sims, path):
    import matplotlib as mpl

    from .plotting import new_figure, save
    fig, axes = new_figure(2, 2, width=5.6, height=4.3)
    ax = axes[0, 0]
    cmap = mpl.colormaps["viridis"]
    ds = np.array([c.d for c in m.curves], dtype=float)
    norm = mpl.colors.LogNorm(ds.min(), ds.max())
    for c in m.curves:
        ax.plot(c.flops, c.loss, color=cmap(norm(c.d)), lw=0.8, alpha=0.8)
    f1 = m.fit
    ok = np.isfinite(f1.envelope)
    ax.plot(f1.flops[ok], f1.envelope[ok], "k-", lw=2.2, alpha=0.5, label="envelope (compute-optimal)")
    w = f1.in_window
    if np.any(w):
        fw = f1.flops[w]
        ref = f1.envelope[w][len(fw) // 2]
        fm = fw[len(fw) // 2]
        ax.plot(fw, ref * (fw / fm) ** (-f1.eta), "r--", lw=1.4, label=rf"fit $\eta$={f1.eta:.3f}")
        ax.plot(fw, 1.6 * ref * (fw / fm) ** (-m.eta_theory), "b:", lw=1.6,
                label=rf"theory $\eta$={m.eta_theory:.3f} (offset)")
    for s in sims:
        ax.errorbar(s["flops"][::3], s["loss_mean"][::3], yerr=s["loss_stderr"][::3], fmt="o", ms=3,
                    color=cmap(norm(s["d"])), mec="k", mew=0.4, elinewidth=0.6)
    if sims:
        ax.plot([], [], "o", color="gray", mec="k", mew=0.4, ms=3, label="eigen SGD (mean ± s.e.)")
    ax.set(xscale="log", yscale="log", xlabel="compute $f = d\\,B\\,r$", ylabel="loss $P$",
           title=rf"{m.phase}: $\alpha$={m.alpha}, $\beta$={m.beta}: loss vs compute over a $d$ ladder")
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="$d$")
    ax.legend(fontsize=7, loc="lower left")

    ax = axes[0, 1]
    ax.plot(f1.flops, f1.argmin_d, "k-", drawstyle="steps-mid", lw=1, label="argmin $d$ (approach 1)")
    ax.plot(m.fit2.flops, m.fit2.argmin_d, "g-", lw=1.2, label="parabola vertex (approach 2)")
    if np.any(w):
        dm = np.exp(np.nanmean(np.log(f1.argmin_d[w])))
        fgm = np.exp(np.mean(np.log(fw)))
        ax.plot(fw, dm * (fw / fgm) ** f1.xi, "r--", label=rf"fit $\xi$={f1.xi:.3f}")
        ax.plot(fw, 1.6 * dm * (fw / fgm) ** m.xi_theory, "b:", lw=1.6, label=rf"theory $\xi$={m.xi_theory:.3f} (offset)")
        ax.axvspan(fw[0], fw[-1], color="orange", alpha=0.08, label="fit window")
    ax.set(xscale="log", yscale="log", xlabel="compute $f$", ylabel="compute-optimal $d^*$",
           title="compute-optimal model size")
    ax.legend(fontsize=7)

    for ax, key, th, lab in ((axes[1, 0], "xi", m.xi_theory, r"local $\xi = d\ln d^*/d\ln f$"),
                             (axes[1, 1], "eta", m.eta_theory, r"local $\eta = -d\ln P^*/d\ln f$")):
        for fit, name, st in ((m.fit2, "approach 2", "g-"), (m.fit, "approach 1", "k-")):
            if key == "xi" and fit is m.fit:
                continue  # the staircase argmin has no useful local slope
            ax.plot(fit.local.flops, getattr(fit.local, key), st, lw=1.3, label=name)
        ax.axhline(th, color="b", ls="--", lw=1.2, label=f"theory {th:.3f}")
        ax.set(xscale="log", xlabel="compute $f$", ylabel=lab, title="local slope vs compute (finite-size drift)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, path)
