"""Compute-optimal frontier for one (alpha, beta): d* ~ f^xi and P ~ f^-eta, measured vs predicted.

Theory curves (deterministic-equivalent spectrum + log-time Volterra solver, no sampling) over a geometric ladder
of d reaching d = 1e6 and beyond, their lower envelope and argmin d (Chinchilla approaches 1 and 2, flop window by
the rule of theory.frontier), the predicted exponents of the phase, the local slopes of d* and of the loss against
flops (finite-size drift), and eigen-SGD simulations (several seeds) overlaid for the smaller d.
Writes OUT/results.json, OUT/compute_optimal.png and OUT/cells/ (one cell per d: an interrupted run resumes).
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from . import options as opt
from .optim_options import add_optimizer_arguments

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
    add_optimizer_arguments(p)
    opt.add_common(p, DEFAULT_OUT)


def config_of(args) -> dict:
    from .optim_options import config_entries
    return dict(**config_entries(args), command="compute-optimal", alpha=args.alpha, beta=args.beta, d_min=args.d_min, d_max=args.d_max,
                per_octave=args.per_octave, flops_max=args.flops_max, batch=args.batch, c=args.c,
                ratio=args.ratio, sim_d=list(args.sim_d), sim_seeds=args.sim_seeds, sim_flops=args.sim_flops,
                seed=args.seed)


def predicted_exponents(alpha, beta, optimizer: str) -> dict:
    """``xi_predicted``, ``eta_predicted`` for an optimizer other than SGD with a prediction
    (:data:`theory.phases.OPTIMIZERS`: the DANAs): the compute-optimal exponents under its effective time
    (:func:`theory.phases.time_maps`; our derivation, the paper's formulas were not available). Empty for other
    optimizers (their theory columns are SGD's)."""
    from theory.phases import OPTIMIZERS, exponents
    base = optimizer.split("+")[0]
    if base == "sgd" or base not in OPTIMIZERS:
        return {}
    e = exponents(alpha, beta, base)
    return dict(xi_predicted=e.xi, eta_predicted=e.eta, prediction="effective-time change of the SGD components "
                "(theory.phases.time_maps)")


def fit_record(m, optimizer: str = "sgd") -> dict:
    """The numbers of a FrontierMeasurement, as stored in results.json: the two fits, the local slopes, and the
    extrapolated asymptotes with the weakly identified xi interval and the boundaries
    (:func:`theory.asymptote.frontier_record`, from the smooth parabola-vertex local slopes)."""
    from theory.asymptote import frontier_record
    f1, f2 = m.fit, m.fit2
    return dict(**frontier_record(m.alpha, m.beta, f2.local, sgd=optimizer == "sgd"), **_balance(m),
                **predicted_exponents(m.alpha, m.beta, optimizer),
                optimizer=optimizer,alpha=m.alpha, beta=m.beta, phase=m.phase, xi_theory=m.xi_theory, eta_theory=m.eta_theory,
                xi_measured=f1.xi, xi_err=f1.xi_err, eta_measured=f1.eta, eta_err=f1.eta_err,
                xi_parabola=f2.xi, xi_parabola_err=f2.xi_err, eta_parabola=f2.eta, eta_parabola_err=f2.eta_err,
                flop_window=list(f1.window), edge_limited=bool(f1.edge_limited),
                local_flops=f2.local.flops, local_xi=f2.local.xi, local_eta=f2.local.eta,
                local1_flops=f1.local.flops, local1_eta=f1.local.eta,
                xi_local_last=_last(f2.local.xi), eta_local_last=_last(f2.local.eta))


def _balance(m) -> dict:
    """The components that balance at the largest compute with a bracketed optimum (theory.asymptote.balance_at)
    vs the asymptotic pair: explains a drift of the local slopes."""
    from theory.asymptote import balance_at
    d, f = np.asarray(m.fit2.argmin_d, dtype=float), np.asarray(m.fit2.flops, dtype=float)
    ok = np.isfinite(d)
    if not np.any(ok):
        return {}
    dstar, fmax = float(d[ok][-1]), float(f[ok][-1])
    near = min(m.curves, key=lambda c: abs(math.log(c.d / dstar)))
    return balance_at(m.alpha, m.beta, dstar, fmax, near.lr, batch=int(round(near.flops[0] / (near.d * near.steps[0]))),
                      v=near.v)


def _last(x):
    x = np.asarray(x)
    x = x[np.isfinite(x)]
    return float(x[-1]) if x.size else float("nan")


def simulate_small(alpha, beta, ds, *, seeds, flops, batch, c, ratio, seed, devices=None, quiet=True,
                   optimizer_fn=None):
    """eigen SGD on sampled W (v = max(ratio, 4) d) for the small d, at the ladder's learning rate (or the
    optimizer ``optimizer_fn(spectrum, lr, d)``, as on the ladder), with the like-for-like reference: the exact
    expected loss on the same sampled W, the same v and the same optimizer (``loss_exact``; the ladder's theory
    curves use v = infinity when 2 alpha > 1, which sits above these dots), the z-scores of the seed mean against
    it, the seed median (the per-seed loss is right-skewed near the edge: the mean of a few seeds sits low more
    often than not) and the learning rate as a fraction of that W's stability edge."""
    import jax

    import plrf
    from plrf.sweep import sweep
    from theory.ladder import ladder_lr, readout_of
    out = []
    key = jax.random.key(seed)
    for d in ds:
        problem = plrf.Problem(alpha, beta, int(round(max(ratio, 4.0) * d)), int(d))
        spec = plrf.sample_spectrum(problem, key=jax.random.fold_in(jax.random.fold_in(key, 0), d))
        lr = ladder_lr(alpha, d, c=c, ratio=ratio)
        steps = max(2, int(flops // (d * batch)))
        optimizer = plrf.schedules.constant(lr) if optimizer_fn is None else optimizer_fn(spec, lr, int(d))
        sim_key = jax.random.fold_in(jax.random.fold_in(key, 1), d)
        name = "iterate" if optimizer_fn is None else readout_of(optimizer)
        if name == "iterate":
            res = sweep(spec, optimizer, steps=steps, method="eigen", batches=(batch,), key=sim_key, seeds=seeds,
                        num=40, devices=devices, quiet=quiet, desc=f"sim d={d}")
            L, grid = res.loss[0, 0], res.steps
        else:   # the average's loss, as on the ladder (plrf.simulate reports every read-out)
            c = plrf.simulate(spec, optimizer, steps=steps, batch=batch, method="eigen", key=sim_key, seeds=seeds,
                              num=40)
            L, grid = c.readouts[name][2], c.steps
        ex = plrf.expected_loss(spec, optimizer, steps=steps, batch=batch, grid=grid)
        exact = np.asarray(ex.loss if name == "iterate" else ex.readouts[name][0])[1:]   # (mean, stderr, per seed)
        mean, se = L.mean(0)[1:], (L.std(0, ddof=1) / np.sqrt(L.shape[0]))[1:]
        z = np.where(se > 0, (mean - exact) / np.where(se > 0, se, 1.0), 0.0)
        out.append(dict(d=int(d), flops=(d * batch) * grid[1:].astype(float), loss_mean=mean,
                        loss_stderr=se, loss_median=np.median(L, axis=0)[1:], loss_exact=exact, lr=lr, v=problem.v,
                        lr_frac=float(lr / plrf.max_stable_lr(spec, batch)), max_abs_z=float(np.max(np.abs(z)))))
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
    from .optim_options import check_args
    check_args(args)
    ds = geometric_ladder(args.d_min, args.d_max, args.per_octave)
    budget.check(budget.ladder(ds, flops_max=args.flops_max, sims=args.sim_d, sim_seeds=args.sim_seeds,
                               sim_flops=args.sim_flops, batch=args.batch, cost=budget.optimizer_cost(args)), args,
                 say=budget.teller(args, "compute-optimal"))
    return ds


def run(args):
    from plrf.store import prepare_out

    t0 = time.time()
    ds = _validate(args)
    config = config_of(args)
    with prepare_out(args.out, config, overwrite=args.overwrite) as out:   # before any work; locks OUT
        return _run(args, config, out, t0, ds)


def _run(args, config, out, t0, ds):
    from plrf.progress import Progress
    from theory.ladder import measure_frontier

    from .optim_options import ladder_optimizer_fn
    store = out.cells()
    fn = ladder_optimizer_fn(args, args.alpha, args.beta)
    with Progress(len(ds), desc="compute-optimal ladder", unit="d", quiet=args.quiet) as bar:
        m = measure_frontier(args.alpha, args.beta, ds, flops_max=args.flops_max, batch=args.batch, c=args.c,
                             ratio=args.ratio, store=store, progress=bar, optimizer_fn=fn)
    sims = simulate_small(args.alpha, args.beta, args.sim_d, seeds=args.sim_seeds, flops=args.sim_flops,
                          batch=args.batch, c=args.c, ratio=args.ratio, seed=args.seed, devices=args.devices,
                          quiet=args.quiet, optimizer_fn=fn) if args.sim_d else []
    from .optim_options import label
    rec = fit_record(m, label(args))
    results = dict(**rec, ladder=[int(d) for d in ds],
                   envelope_flops=m.fit.flops, envelope_loss=m.fit.envelope, argmin_d=m.fit.argmin_d,
                   in_window=m.fit.in_window, parabola_flops=m.fit2.flops, parabola_d=m.fit2.argmin_d,
                   parabola_loss=m.fit2.envelope, local1_xi=m.fit.local.xi,
                   curves=[dict(d=c.d, lr=c.lr, P_star=c.P_star, v=c.v, flops=c.flops, loss=c.loss) for c in m.curves],
                   simulations=sims)
    out.save(results, dataset(m, sims), wall_time=time.time() - t0)
    plot(m, sims, out.file("compute_optimal.png"), optimizer=rec["optimizer"])
    if not args.quiet:
        print(f"plrf compute-optimal: phase {m.phase}: xi = {m.fit.xi:.3f} ± {m.fit.xi_err:.3f} (theory "
              f"{m.xi_theory:.3f}), eta = {m.fit.eta:.3f} ± {m.fit.eta_err:.3f} (theory {m.eta_theory:.3f}); "
              f"wrote {args.out}/results.json and compute_optimal.png")
    return m


def dataset(m, sims):
    """The envelope fits on their compute grid, the local slopes and the simulations (the ladder's curves are
    the cells: ``plrf.load`` merges both)."""
    import xarray as xr

    from plrf.store import records_dataset
    f1, f2 = m.fit, m.fit2
    ds = xr.Dataset({"envelope_loss": ("compute", f1.envelope), "argmin_d": ("compute", f1.argmin_d),
                     "in_window": ("compute", f1.in_window), "parabola_d": ("compute", f2.argmin_d),
                     "parabola_loss": ("compute", f2.envelope),
                     "local_xi": ("local_compute", f2.local.xi), "local_eta": ("local_compute", f2.local.eta),
                     "local1_xi": ("local1_compute", f1.local.xi), "local1_eta": ("local1_compute", f1.local.eta)},
                    coords={"compute": f1.flops, "local_compute": f2.local.flops, "local1_compute": f1.local.flops})
    if not np.array_equal(f1.flops, f2.flops):
        raise RuntimeError("the two frontier fits use different compute grids")
    if sims:
        keys = ("flops", "loss_mean", "loss_stderr", "loss_median", "loss_exact")
        sd = records_dataset(sims, "sim_d", dims={k: "sim_point" for k in keys})
        sd = sd.assign_coords(sim_d=sd["d"].values).drop_vars("d").rename(
            {**{k: f"sim_{k}" for k in keys}, "lr": "sim_lr", "v": "sim_v", "lr_frac": "sim_lr_frac",
             "max_abs_z": "sim_max_abs_z"})
        ds = ds.merge(sd)
    return ds


def replot(out_dir):
    """Redraw compute_optimal.png from OUT/results.json (no recomputation)."""
    from types import SimpleNamespace as NS

    from plrf.store import read_json
    r = read_json(os.path.join(out_dir, "results.json"))
    A = lambda x: np.asarray(x, dtype=float)  # noqa: E731
    curves = [NS(d=c["d"], v=c.get("v"), flops=A(c["flops"]), loss=A(c["loss"])) for c in r["curves"]]
    fit = NS(flops=A(r["envelope_flops"]), envelope=A(r["envelope_loss"]), argmin_d=A(r["argmin_d"]),
             in_window=np.asarray(r["in_window"], dtype=bool), xi=r["xi_measured"], eta=r["eta_measured"],
             local=NS(flops=A(r["local1_flops"]), xi=A(r["local1_xi"]), eta=A(r["local1_eta"])))
    fit2 = NS(flops=A(r["parabola_flops"]), envelope=A(r["parabola_loss"]), argmin_d=A(r["parabola_d"]),
              xi=r["xi_parabola"], eta=r["eta_parabola"],
              local=NS(flops=A(r["local_flops"]), xi=A(r["local_xi"]), eta=A(r["local_eta"])))
    m = NS(alpha=r["alpha"], beta=r["beta"], phase=r["phase"], xi_theory=r["xi_theory"],
           eta_theory=r["eta_theory"], curves=curves, fit=fit, fit2=fit2)
    sims = [dict(s, **{k: A(s[k]) for k in ("flops", "loss_mean", "loss_stderr", "loss_exact") if k in s})
            for s in r.get("simulations", [])]
    plot(m, sims, os.path.join(out_dir, "compute_optimal.png"), optimizer=r.get("optimizer", "sgd"))
    return ["compute_optimal.png"]


SIM_MARKERS = "osD^vP"


def plot(m, sims, path, optimizer="sgd"):
    import matplotlib as mpl

    from theory.asymptote import extrapolate

    from .plotting import new_figure, save
    fig, axes = new_figure(2, 2, width=5.8, height=5.0)
    th_name = "theory" if optimizer == "sgd" else "SGD theory"
    ax = axes[0, 0]
    cmap = mpl.colormaps["viridis"]
    ds = np.array([c.d for c in m.curves], dtype=float)
    norm = mpl.colors.LogNorm(ds.min(), ds.max())
    for c in m.curves:
        ax.plot(c.flops, c.loss, color=cmap(norm(c.d)), lw=0.8, alpha=0.8)
    f1 = m.fit
    ok = np.isfinite(f1.envelope)
    ax.plot(f1.flops[ok], f1.envelope[ok], "-", color="k", lw=2.0, label="envelope (compute-optimal loss)",
            zorder=4)
    w = f1.in_window
    if np.any(w):
        fw = f1.flops[w]
        ref = f1.envelope[w][len(fw) // 2]
        fm = fw[len(fw) // 2]
        ax.plot(fw, 0.4 * ref * (fw / fm) ** (-f1.eta), "r--", lw=1.4,
                label=rf"fit $\eta$={f1.eta:.3f} (offset $\times 0.4$)", zorder=5)
        ax.plot(fw, 2.5 * ref * (fw / fm) ** (-m.eta_theory), "b:", lw=1.6,
                label=rf"{th_name} $\eta$={m.eta_theory:.3f} (offset $\times 2.5$)", zorder=5)
    for i, s in enumerate(sims):
        extra = f", lr {s['lr_frac']:.2f} x its edge, v={s['v']}" if "lr_frac" in s else ""
        ax.errorbar(s["flops"][::3], s["loss_mean"][::3], yerr=s["loss_stderr"][::3],
                    fmt=SIM_MARKERS[i % len(SIM_MARKERS)], ms=5, color=cmap(norm(s["d"])), mec="w", mew=0.6,
                    elinewidth=0.8, zorder=6,
                    label=f"eigen {'SGD' if optimizer == 'sgd' else optimizer} d={s['d']} (mean ± s.e.{extra})")
        if "loss_exact" in s:
            ax.plot(s["flops"], s["loss_exact"], color=cmap(norm(s["d"])), lw=2.4, ls=(0, (1, 1)), zorder=5,
                    label="exact expected loss on each simulated W (same v, same lr)" if i == 0 else "_")
    ax.set(xscale="log", yscale="log", xlabel="compute $f = d\\,B\\,r$", ylabel="loss $P$",
           title=rf"{m.phase}: $\alpha$={m.alpha}, $\beta$={m.beta}: loss vs compute over a $d$ ladder"
                 + ("" if optimizer == "sgd" else f", {optimizer}"))
    ax.title.set_fontsize(10)
    v0 = getattr(m.curves[0], "v", None) if m.curves else None
    vlab = "v = ∞" if v0 is None else f"v = {v0 / m.curves[0].d:g} d"
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"$d$ (theory ladder, {vlab})")
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)

    ax = axes[0, 1]
    ax.plot(f1.flops, f1.argmin_d, "k-", drawstyle="steps-mid", lw=1, label="argmin $d$ (approach 1)")
    ax.plot(m.fit2.flops, m.fit2.argmin_d, "g-", lw=1.2, label="parabola vertex (approach 2)")
    if np.any(w):
        dm = np.exp(np.nanmean(np.log(f1.argmin_d[w])))
        fgm = np.exp(np.mean(np.log(fw)))
        ax.plot(fw, 0.4 * dm * (fw / fgm) ** f1.xi, "r--", label=rf"fit $\xi$={f1.xi:.3f} (offset $\times 0.4$)")
        ax.plot(fw, 2.5 * dm * (fw / fgm) ** m.xi_theory, "b:", lw=1.6,
                label=rf"{th_name} $\xi$={m.xi_theory:.3f} (offset $\times 2.5$)")
        ax.axvspan(fw[0], fw[-1], color="orange", alpha=0.08, label="fit window")
    ax.set(xscale="log", yscale="log", xlabel="compute $f$", ylabel="compute-optimal $d^*$",
           title=r"compute-optimal model size $d^*(f)$")
    ax.legend(fontsize=7, loc="upper left")

    for ax, key, th, lab, ttl in (
            (axes[1, 0], "xi", m.xi_theory, r"local $\xi = d\ln d^*/d\ln f$",
             r"local $\xi$ vs compute (finite-size drift)"),
            (axes[1, 1], "eta", m.eta_theory, r"local $\eta = -d\ln P^*/d\ln f$",
             r"local $\eta$ vs compute (finite-size drift)")):
        for fit, name, st in ((m.fit2, "approach 2 (parabola vertex)", "g-"), (m.fit, "approach 1 (argmin d)", "k-")):
            if key == "xi" and fit is m.fit:
                continue  # the staircase argmin has no useful local slope
            ax.plot(fit.local.flops, getattr(fit.local, key), st, lw=1.3, label=name)
        ax.axhline(th, color="b", ls="--", lw=1.2, label=f"{th_name} {th:.3f}")
        pred = predicted_exponents(m.alpha, m.beta, optimizer).get(f"{key}_predicted")
        if pred is not None:   # DANA: the effective-time prediction (theory.phases.time_maps)
            ax.axhline(pred, color="darkorange", ls="-.", lw=1.4,
                       label=f"{optimizer} prediction {pred:.3f} (effective time)")
        try:   # the extrapolated asymptote (theory.asymptote, the numbers of results.json), right of the data
            a = extrapolate(m.fit2.local.flops, getattr(m.fit2.local, key))   # omega profiled (frontier_record)
            elab = (rf"extrapolated {a.value:.3f} $\pm$ {a.err:.3f} ($\omega$={a.omega:.2f}, {a.omega_source})"
                    if a.omega_source == "profile" else
                    rf"last slope {a.value:.3f} $\pm$ drift {a.err:.3f} (not decelerating: no extrapolation)")
            ax.errorbar([a.window[1] * 3.0], [a.value], yerr=[a.err], fmt="D", color="m", ms=5, capsize=3,
                        label=elab)
        except ValueError:
            pass
        if np.size(m.fit2.local.flops) or np.size(m.fit.local.flops):
            ax.set_xscale("log")
        else:   # a narrow ladder: no window of local slopes (say so instead of an empty log axis)
            ax.text(0.5, 0.5, "no local slopes: the ladder is too narrow\n(widen --d-min/--d-max or raise --flops-max)",
                    transform=ax.transAxes, ha="center", va="center", fontsize=8)
        ax.set(xlabel="compute $f$", ylabel=lab, title=ttl)
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, path)
    return fig
