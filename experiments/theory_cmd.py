"""Analytic loss curve of one-pass SGD on PLRF with its asymptotic components and the dominant term per step.

No SGD is sampled. The exact expected loss ``P(r) = P* + sum_k e_k(r)`` (per-mode recursion, theory.volterra) is
computed by the log-time solver (:func:`theory.logtime.solve_logtime`, cost independent of ``--steps``) on the
deterministic-equivalent spectrum of ``K = W^T D W`` (:func:`theory.deterministic.deterministic_spectrum`) or on
one sampled ``W`` (``--spectrum sampled``: the same W as ``plrf curve --seed S`` at equal alpha, beta, d, v).
The asymptotic components of Paquette, Paquette, Xiao, Pennington, "4+3 Phases of Compute-Optimal Neural Scaling
Laws" (NeurIPS 2024), re-derived in :mod:`theory.components`,

    P(r) ~ (F_0 + F_pp(s) + F_ac(s)) / (1 - kappa) + N(s),    s = 2 sum_{u<r} eta_u  (= 2 eta r at constant lr),

are drawn against it, with ``kappa = ||Kr||`` the kernel norm of the spectrum at the peak lr. Choices: F_0 is
the deterministic-equivalent level (tau-sum, :func:`theory.components.F0_level`; the leading-order d-power is
stored as ``F0_asymptotic``), F_ac the finite-d sum (``finite_d=True``, accurate near 2 alpha = 1). For a
decaying schedule (an approximation): F_pp, F_ac and the noise are the constant-peak-lr forms at the intrinsic
time s, and F_0, F_pp, F_ac are amplified by ``1/(1 - kappa(eta_r))`` at the current lr (quasi-static: the loss
tends to P* as the lr decays to 0). The forms hold in the window 10 <= s <= d^(2 alpha)/10 (shaded outside).

Writes OUT/results.json (config, metadata, steps, loss, components, dominant term per step, P*, kernel norm,
stability edges), OUT/spectrum.npz (lam, n, w, P_star) and OUT/theory.png.
"""
from __future__ import annotations

import math
import os
import time
import warnings

import numpy as np

from . import options as opt
from .optim_options import add_optimizer_arguments

DEFAULT_OUT = "runs/theory"
WINDOW = (10.0, 0.1)   # asymptotic window: WINDOW[0] <= s <= WINDOW[1] * d^(2 alpha)
STYLE = {  # name -> (legend label, color, short label for the dominance strip)
    "F0": (r"$F_0$: limit level (det.-equiv. $\tau$-sum)", "C0", r"$F_0$"),
    "Fpp": (r"$F_{pp}$: population bias $\propto s^{-(2\alpha+2\beta-1)/(2\alpha)}$", "C1", r"$F_{pp}$"),
    "Fac": (r"$F_{ac}$: embedding distortion (finite-$d$ sum)", "C2", r"$F_{ac}$"),
    "noise": (r"SGD noise $\propto \eta\, s^{-(2-1/(2\alpha))}$", "C3", "noise"),
}

ABSENT = {"Fac": r"($F_{ac}$ absent: needs $2\alpha > 1$ and $2\beta > 1$)",
          "noise": r"(SGD noise not modelled for $\alpha \leq 1/4$: an $F_0$-order level)"}


# ---------------------------------------------------------------------------------------------------------
# options

def _data_dim(text):
    """``--v``: an integer >= 1 (1e5 forms accepted), ``inf``, or ``auto`` (None)."""
    t = text.strip().lower()
    if t == "auto":
        return None
    if t in ("inf", "infinity"):
        return math.inf
    return opt.big_int(text)


def _lr(text):
    """``--lr``: a number > 0 or ``auto`` (None)."""
    return None if text.strip().lower() == "auto" else opt.positive_float(text)


def _schedule_names():
    from plrf.schedules import NAMES
    return NAMES


def add_arguments(p):
    p.add_argument("--alpha", type=opt.positive_float, default=1.0, help="data spectrum exponent alpha > 0")
    p.add_argument("--beta", type=opt.real, default=0.7, help="target exponent beta (2(alpha+beta) > 1)")
    p.add_argument("--d", type=opt.big_int, default=1024, help="number of parameters (features) d, e.g. 1e5")
    p.add_argument("--v", type=_data_dim, default="auto",
                   help="data dimension v > d, or inf; auto: inf when 2 alpha > 1, else 4d (4d with "
                        "--spectrum sampled, which needs a finite v)")
    p.add_argument("--lr", type=_lr, default="auto",
                   help="peak learning rate eta, below both stability edges; auto: theory.ladder.ladder_lr, "
                        "0.5 / sum_{j<=v} j^{-2 alpha} (the default of `plrf curve` when v is finite)")
    p.add_argument("--batch", type=opt.int_at_least(1), default=1, help="batch size B")
    p.add_argument("--steps", type=opt.big_int, default=10 ** 7,
                   help="number of SGD steps, e.g. 1e8 (the log-time solver's cost does not grow with it)")
    p.add_argument("--schedule", default="constant", choices=_schedule_names(), metavar="SCHEDULE",
                   help="learning-rate schedule: " + ", ".join(_schedule_names()))
    p.add_argument("--spectrum", default="deterministic", choices=("deterministic", "sampled"),
                   help="spectrum of K: deterministic equivalent (any d), or one sampled W (d up to a few 1000)")
    p.add_argument("--seed", type=opt.int_at_least(0), default=0,
                   help="seed of W for --spectrum sampled (same W as `plrf curve --seed`)")
    p.add_argument("--num", type=opt.int_at_least(8), default=120, help="points on the log-spaced step grid")
    p.add_argument("--overwrite", action="store_true", help="discard results stored in OUT with other settings")
    opt.add_label_noise(p)
    add_optimizer_arguments(p)
    opt.add_common(p, DEFAULT_OUT)
    for action in p._actions:  # the shared --devices option: accepted for uniformity of the CLI
        if action.dest == "devices":
            action.help = "accepted for uniformity with the other commands; unused (one device suffices)"


# ---------------------------------------------------------------------------------------------------------
# validation (before any heavy work; messages name the option)

def _resolve(args):
    """Checked (alpha, beta, d, v, lr-or-None); ``v`` None means infinite."""
    from theory.ladder import data_dim
    a, b, d = args.alpha, args.beta, args.d
    if 2 * (a + b) <= 1:
        raise ValueError(f"--alpha/--beta inadmissible: need 2(alpha + beta) > 1, got alpha={a}, beta={b} "
                         f"(2(alpha + beta) = {2 * (a + b):.4g})")
    v = args.v
    if v is None:
        v = 4 * d if args.spectrum == "sampled" else data_dim(a, d)
    elif math.isinf(v):
        if 2 * a <= 1:
            raise ValueError(f"--v inf needs 2 alpha > 1 (got alpha={a}); pass a finite --v > --d, e.g. {4 * d}")
        if args.spectrum == "sampled":
            raise ValueError("--v inf is impossible with --spectrum sampled (W has v rows); pass a finite --v")
        v = None
    if v is not None and v <= d:
        raise ValueError(f"--v must be > --d (the asymptotic components need v/d > 1), got v={v}, d={d}")
    if args.spectrum == "sampled" and d * (v or 0) > 2 ** 28:
        raise ValueError(f"--d/--v too large for --spectrum sampled (v*d = {d * v:.3g} > 2^28 entries of W); "
                         "use --spectrum deterministic")
    return a, b, d, v


def _default_lr(alpha, d, v):
    from theory.ladder import data_dim, ladder_lr
    if v == data_dim(alpha, d):
        return ladder_lr(alpha, d)
    from scipy import special
    tr = special.zeta(2 * alpha) if v is None else float(np.sum(np.arange(1, v + 1, dtype=np.float64) ** (-2 * alpha)))
    return 0.5 / float(tr)


def _spectrum(args, a, b, d, v):
    import plrf
    if args.spectrum == "deterministic":
        from theory.deterministic import deterministic_spectrum
        return deterministic_spectrum(a, b, d, v=v, label_noise=args.label_noise)
    import jax
    k_w, _ = jax.random.split(jax.random.key(args.seed))  # the W of `plrf curve --seed` (experiments/curve.py)
    return plrf.sample_spectrum(plrf.Problem(a, b, v, d, label_noise=args.label_noise), key=k_w)


# ---------------------------------------------------------------------------------------------------------
# computation

def intrinsic_time(schedule, at) -> np.ndarray:
    """``s(r) = 2 sum_{u<r} eta_u`` at the integer steps ``at`` (twice :func:`theory.schedule_laws.intrinsic_time`)."""
    from theory.schedule_laws import intrinsic_time as tau
    return 2.0 * tau(schedule, np.asarray(at, dtype=np.int64))


def theory_curve(spec, schedule, *, alpha, beta, d, v, batch, steps, num, label_noise=0.0):
    """Exact loss (log-time solver) and the components on ``plrf.log_grid(steps, num)`` without step 0.

    ``label_noise = sigma^2`` (already in ``spec.P_star``) is added to the F0 level: the irreducible loss is
    ``P* + sigma^2`` (the other components are the noiseless asymptotic formulas)."""
    import plrf
    from theory import components as C
    from theory.logtime import solve_logtime

    curve = solve_logtime(spec, schedule, steps=steps, batch=batch, num=num)
    r = np.asarray(curve.steps)[1:]
    loss = np.asarray(curve.loss)[1:]
    peak = float(schedule.peak)
    s = intrinsic_time(schedule, r)
    kn = float(plrf.kernel_norm(spec, peak, batch))
    present_ac = 2 * alpha > 1 and 2 * beta > 1
    with warnings.catch_warnings():  # the window is recorded and drawn instead (see `in_window`)
        warnings.simplefilter("ignore")
        dom = C.dominant_terms(alpha, beta, d, np.maximum(s, 1e-300) / (2 * peak), peak, batch=batch, v=v,
                               kernel_norm=kn, finite_d=present_ac)
    comp = dom.components
    f0_asym = float(comp.F0[0])
    # the F0 level (more accurate than the leading-order F0: relative O(d^-|1-2b|)) plus the label noise
    f0 = C.F0_level(alpha, beta, d, v=v) + label_noise
    # forcing terms amplified by 1/(1 - kappa(eta_r)) at the current lr (quasi-static; = the peak-lr factor
    # of theory.components for a constant lr), the noise as theory.components gives it at the peak lr
    lr_r = np.asarray(curve.lr)[1:]
    kn_r = np.asarray(plrf.kernel_norm(spec, lr_r, batch), dtype=np.float64)
    amp = 1.0 / (1.0 - kn_r)
    values = {"F0": amp * f0, "Fpp": amp * comp.Fpp, "Fac": amp * comp.Fac, "noise": np.asarray(comp.noise)}
    stack = np.stack([values[k] for k in C.COMPONENTS])
    total = stack.sum(axis=0)
    dominant = np.array(C.COMPONENTS)[np.argmax(stack, axis=0)]
    lo, hi = WINDOW[0], WINDOW[1] * float(d) ** (2 * alpha)
    return dict(steps=r, loss=loss, lr=lr_r, intrinsic_time=s, values=values, total=total,
                dominant=dominant, share=stack.max(axis=0) / total, present=comp.present, amplification=amp,
                kernel_norm=kn, kernel_norm_at_step=kn_r, F0_level=f0, F0_asymptotic=f0_asym, window=(lo, hi),
                in_window=(s >= lo) & (s <= hi), intervals=curve.intervals, P0=float(curve.loss[0]))


def run(args):
    import plrf
    from plrf.store import prepare_out

    t0 = time.time()
    a, b, d, v = _resolve(args)
    from . import budget
    budget.check(budget.theory(d=d, v=v, spectrum=args.spectrum, num=args.num, batch=args.batch,
                               cost=budget.optimizer_cost(args)), args,
                 say=budget.teller(args, "theory"))
    from .optim_options import check_args, config_entries, default_lr_factor
    check_args(args)
    dana = args.optimizer.startswith("dana")
    lr = args.lr if args.lr is not None else (None if dana else _default_lr(a, d, v) * default_lr_factor(args))
    config = dict(command="theory", alpha=a, beta=b, d=d, v=("inf" if v is None else v), lr=lr, batch=args.batch,
                  steps=args.steps, schedule=args.schedule, spectrum=args.spectrum,
                  seed=(args.seed if args.spectrum == "sampled" else None), num=args.num,
                  flops_per_step=d * args.batch)
    config.update(opt.label_noise_config(args))
    config.update(config_entries(args))   # empty for plain SGD: its runs keep the configuration they always had
    schedule = plrf.schedules.by_name(args.schedule, lr, args.steps) if lr is not None else None
    if schedule is not None:
        config["schedule"] = schedule.config
    with prepare_out(args.out, config, overwrite=args.overwrite) as out_dir:   # before any work; locks OUT
        return _run(args, config, out_dir, t0, (a, b, d, v, lr, schedule))


def _run(args, config, out_dir, t0, resolved):
    import xarray as xr

    import plrf
    from plrf import store

    a, b, d, v, lr, schedule = resolved
    spec = _spectrum(args, a, b, d, v)
    from .optim_options import plain_sgd
    if not plain_sgd(args):
        return _run_optimizer(args, config, out_dir, t0, spec, (a, b, d, v, lr))
    edges = plrf.stability_edges(spec, args.batch)
    if schedule.peak >= edges.max_lr:
        which = "full-batch" if edges.full_batch <= edges.stochastic else "stochastic (||Kr|| = 1)"
        raise ValueError(f"--lr {schedule.peak:.6g} with --batch {args.batch} is at or above the stability edge "
                         f"{edges.max_lr:.6g} ({which}; full-batch edge {edges.full_batch:.6g}, stochastic edge "
                         f"{edges.stochastic:.6g}) of this spectrum")
    out = theory_curve(spec, schedule, alpha=a, beta=b, d=d, v=v, batch=args.batch, steps=args.steps,
                       num=args.num, label_noise=args.label_noise)
    limit = float(plrf.limit_loss(spec, lr, args.batch)) if schedule.config["name"] == "constant" else None
    flops = (d * args.batch) * out["steps"].astype(np.float64)
    results = dict(
        steps=out["steps"], flops=flops, loss=out["loss"],
        lr=out["lr"], intrinsic_time=out["intrinsic_time"],
        components={k: out["values"][k] for k in ("F0", "Fpp", "Fac", "noise")},
        components_note="each as it enters the loss: (F0, Fpp, Fac) times amplification = 1/(1 - kernel norm at "
                        "the lr of the step), noise at the peak lr; absent ones are 0 (see present)",
        components_total=out["total"], components_over_loss=out["total"] / out["loss"],
        present=out["present"], dominant=out["dominant"], dominant_share=out["share"], in_window=out["in_window"],
        window_intrinsic_time=list(out["window"]), amplification=out["amplification"],
        P_star=float(spec.P_star), P0=out["P0"], F0_level=out["F0_level"], F0_asymptotic=out["F0_asymptotic"],
        kernel_norm=out["kernel_norm"], kernel_norm_at_step=out["kernel_norm_at_step"], limit_loss=limit,
        stability_edges=dict(full_batch=edges.full_batch, stochastic=edges.stochastic, max_lr=edges.max_lr),
        spectrum_size=int(spec.lam.size), solver_intervals=out["intervals"])
    names = ("F0", "Fpp", "Fac", "noise")
    data = xr.Dataset(
        {"loss": ("step", out["loss"]), "flops": ("step", flops), "lr": ("step", out["lr"]),
         "intrinsic_time": ("step", out["intrinsic_time"]),
         "components": (("component", "step"), np.stack([out["values"][k] for k in names])),
         "present": ("component", np.array([bool(out["present"][k]) for k in names])),
         "components_total": ("step", out["total"]), "dominant": ("step", np.asarray(out["dominant"]).astype(str)),
         "dominant_share": ("step", out["share"]), "in_window": ("step", out["in_window"]),
         "amplification": ("step", out["amplification"]), "kernel_norm_at_step": ("step", out["kernel_norm_at_step"]),
         "lam": ("mode", np.asarray(spec.lam)), "n": ("mode", np.asarray(spec.n)), "w": ("mode", np.asarray(spec.w))},
        coords={"step": out["steps"], "component": list(names)})
    out_dir.save(results, data, wall_time=time.time() - t0)
    store.save_npz(out_dir.file("spectrum.npz"), lam=spec.lam, n=spec.n, w=spec.w, P_star=np.float64(spec.P_star))
    plot(out, config, out_dir.file("theory.png"))
    if not args.quiet:
        runs = _runs(out["dominant"])
        seq = " -> ".join(f"{name} (r <= {out['steps'][j - 1]:.3g})" for name, i, j in runs)
        print(f"plrf theory: final loss {out['loss'][-1]:.6g} at r = {args.steps:.3g} (P* {float(spec.P_star):.4g}, "
              f"kernel norm {out['kernel_norm']:.3g}); dominant: {seq}; wrote {args.out}/results.json, "
              f"spectrum.npz and theory.png")
    return results


def replot(out_dir):
    """Redraw theory.png from OUT/results.json (no recomputation)."""
    from plrf.store import read_json
    r = read_json(os.path.join(out_dir, "results.json"))
    A = lambda x: np.asarray(x, dtype=float)  # noqa: E731
    if "optimizer" in r["config"]:
        plot_optimizer(r, r["config"], os.path.join(out_dir, "theory.png"))
        return ["theory.png"]
    out = dict(steps=np.asarray(r["steps"], dtype=np.int64), loss=A(r["loss"]),
               values={k: A(v) for k, v in r["components"].items()}, present=r["present"],
               total=A(r["components_total"]), intrinsic_time=A(r["intrinsic_time"]),
               window=tuple(r["window_intrinsic_time"]), kernel_norm=r["kernel_norm"],
               dominant=np.asarray(r["dominant"]))
    config = dict(r["config"])
    if config.get("v") == float("inf"):
        config["v"] = "inf"   # read_json turns the string back into a float; the figure prints infinity
    plot(out, config, os.path.join(out_dir, "theory.png"))
    return ["theory.png"]


def _run_optimizer(args, config, out_dir, t0, spec, resolved):
    """Any optimizer of plrf.optimizers other than plain SGD: its exact expected loss (and the averaged iterate's,
    with --ema) by the log-time solver, next to plain SGD at the same effective learning rate. The asymptotic
    components are SGD formulas: not drawn (the output says so)."""
    import xarray as xr

    import plrf
    from plrf import store
    from theory.logtime import solve_logtime

    from .optim_options import build_optimizer, effective_lr
    a, b, d, v, lr = resolved
    trace = spec.trace
    if lr is None:   # DANA: g2 of the authors' comparison script on this spectrum (stored as peak_lr)
        lr = plrf.optimizers.dana_defaults(trace, d, a, b)["g2"]
    schedule = plrf.schedules.by_name(args.schedule, lr, args.steps)
    optimizer = build_optimizer(args, schedule, trace=trace, d=d, alpha=a, beta=b)
    curve = solve_logtime(spec, optimizer, steps=args.steps, batch=args.batch, num=args.num)  # checks stability
    steps = np.asarray(curve.steps)[1:]
    eff = effective_lr(args, lr)
    sgd = solve_logtime(spec, plrf.schedules.by_name(args.schedule, eff, args.steps), steps=args.steps,
                        batch=args.batch, grid=np.asarray(curve.steps))
    flops = (d * args.batch) * steps.astype(np.float64)
    results = dict(steps=steps, flops=flops, loss=np.asarray(curve.loss)[1:], lr=np.asarray(curve.lr)[1:],
                   sgd_loss=np.asarray(sgd.loss)[1:], sgd_lr=eff, peak_lr=lr, P_star=float(spec.P_star),
                   P0=float(curve.loss[0]), optimizer_config=optimizer.config, spectrum_size=int(spec.lam.size),
                   solver_intervals=int(curve.intervals),
                   components=None, components_note="the asymptotic components are SGD formulas (theory.components)"
                   f": not computed for --optimizer {args.optimizer}")
    data = {"loss": ("step", results["loss"]), "flops": ("step", flops), "lr": ("step", results["lr"]),
            "sgd_loss": ("step", results["sgd_loss"])}
    if curve.readouts and "average" in curve.readouts:
        results["ema_loss"] = np.asarray(curve.readouts["average"])[1:]
        data["ema_loss"] = ("step", results["ema_loss"])
    out_dir.save(results, xr.Dataset(data, coords={"step": steps}), wall_time=time.time() - t0)
    store.save_npz(out_dir.file("spectrum.npz"), lam=spec.lam, n=spec.n, w=spec.w, P_star=np.float64(spec.P_star))
    plot_optimizer(results, config, out_dir.file("theory.png"))
    if not args.quiet:
        ema = f", EMA {results['ema_loss'][-1]:.6g}" if "ema_loss" in results else ""
        print(f"plrf theory: {args.optimizer} final loss {results['loss'][-1]:.6g}{ema} at r = {args.steps:.3g} "
              f"(SGD at the same effective lr {eff:.3g}: {results['sgd_loss'][-1]:.6g}; P* {float(spec.P_star):.4g}); "
              f"{results['components_note']}; wrote {args.out}/results.json, spectrum.npz and theory.png")
    return results


def plot_optimizer(r, config, path):
    """Loss of the optimizer (and of its average) against plain SGD at the same effective lr."""
    from .plotting import new_figure, save
    fig, axes = new_figure(1, 1, width=6.4, height=4.4)
    ax = axes[0, 0]
    s = np.asarray(r["steps"], dtype=np.float64)
    name = config["optimizer"]
    extra = [(f"beta {config['momentum']:g}" if name == "schedule-free" else f"mu {config['momentum']:g}")
             if name in ("momentum", "nesterov", "schedule-free") else None,
             f"weight decay {config['weight_decay']:g}" if config.get("weight_decay") else None,
             f"EMA rate {config['ema']}" if config.get("ema") is not None else None]
    label = name + (" (" + ", ".join(e for e in extra if e) + ")" if any(extra) else "")
    ax.loglog(s, np.asarray(r["loss"], dtype=float), "-", color="k", lw=2.0, label=f"{label}: iterate")
    if "ema_loss" in r:
        ax.loglog(s, np.asarray(r["ema_loss"], dtype=float), "-", color="C3", lw=1.6, label=f"{label}: average")
    ax.loglog(s, np.asarray(r["sgd_loss"], dtype=float), "--", color="C0", lw=1.4,
              label=rf"plain SGD at the same effective lr $\eta$ = {r['sgd_lr']:.3g}")
    ax.axhline(r["P_star"], color="0.5", ls=":", lw=1.0, label=r"$P^*$ (best loss of the model)")
    ax.set(xlabel="steps $r$", ylabel=r"expected population loss $\mathbb{E}\,P(\theta_r)$")
    v = config["v"]
    vtxt = r"\infty" if v == "inf" or (isinstance(v, float) and math.isinf(v)) else f"{v:g}"
    ax.set_title(rf"PLRF theory (exact, log-time solver): $\alpha$={config['alpha']:g}, $\beta$={config['beta']:g}, "
                 rf"$d$={config['d']:g}, $v={vtxt}$, $B$={config['batch']}, {config['schedule'] if isinstance(config['schedule'], str) else config['schedule']['name']} lr"
                 "\n(asymptotic components: SGD only, not drawn)", fontsize=9)
    fb = config["flops_per_step"]
    top = ax.secondary_xaxis("top", functions=(lambda x: x * fb, lambda f: f / fb))
    top.set_xlabel(r"compute $f = d\,B\,r$", fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    save(fig, path)
    return fig


# ---------------------------------------------------------------------------------------------------------
# figure

def _runs(names):
    """Maximal runs ``(name, i, j)`` of equal consecutive entries ``names[i:j]``."""
    out, i = [], 0
    for j in range(1, len(names) + 1):
        if j == len(names) or names[j] != names[i]:
            out.append((str(names[i]), i, j))
            i = j
    return out


def plot(out, config, path):
    from matplotlib.patches import Patch

    from .plotting import new_figure, save
    fig, axes = new_figure(1, 2, width=6.4, height=2.6, sharex=True,
                           gridspec_kw=dict(height_ratios=[14, 1], hspace=0.04))
    ax, strip = axes[0, 0], axes[1, 0]
    fig.set_size_inches(6.4, 5.2)
    r, loss, vals = out["steps"].astype(np.float64), out["loss"], out["values"]
    ax.loglog(r, loss, "-", color="k", lw=2.2, label="exact expected loss (log-time Volterra solver)", zorder=5)
    for name, (label, color, _) in STYLE.items():
        if out["present"][name]:  # zeros (noise clipped at s ~ 1, outside its window) are not drawn
            ax.loglog(r, np.where(vals[name] > 0, vals[name], np.nan), "--", color=color, lw=1.4, label=label)
        else:
            ax.plot([], [], " ", label=ABSENT[name])
    ax.loglog(r, out["total"], ":", color="0.35", lw=1.4, label="sum of components")
    ymin, ymax = float(np.min(loss)), float(np.max(loss))
    ax.set_ylim(ymin / 4, ymax * 2.5)
    ax.set_xlim(r[0], r[-1])
    # the asymptotic window 10 <= s <= d^(2 alpha)/10, shaded outside
    s = out["intrinsic_time"]
    lo, hi = out["window"]
    shade = dict(color="0.5", alpha=0.12, lw=0)
    handles, labels = ax.get_legend_handles_labels()
    if lo >= hi:  # d^(2 alpha) < 100: no window at all
        ax.axvspan(r[0], r[-1], **shade)
        handles.append(Patch(**shade))
        labels.append(r"no window $10 \leq s \leq d^{2\alpha}/10$: components indicative")
    else:
        ls = np.log(np.maximum(s, 1e-300))
        r_lo = math.exp(np.interp(math.log(lo), ls, np.log(r))) if s[0] < lo else None
        r_hi = math.exp(np.interp(math.log(hi), ls, np.log(r))) if s[-1] > hi else None
        if r_lo is not None:
            ax.axvspan(r[0], r_lo, **shade)
        if r_hi is not None:
            ax.axvspan(r_hi, r[-1], **shade)
        if r_lo is not None or r_hi is not None:
            handles.append(Patch(**shade))
            labels.append(r"outside $10 \leq s \leq d^{2\alpha}/10$ (components indicative)")
    const = config["schedule"]["name"] == "constant"
    kn = out["kernel_norm"]
    title = (rf"components $\times\,1/(1-\kappa)$, $\kappa = \|K\| = {kn:.3g}$; $s = 2\eta r$" if const else
             r"$F$'s $\times\,1/(1-\kappa(\eta_r))$, noise at peak $\eta$; $s = 2\sum_{u<r}\eta_u$")
    ax.legend(handles, labels, fontsize=7, title=title, title_fontsize=7, loc="upper right", framealpha=0.9)
    ax.set_ylabel(r"expected population loss $\mathbb{E}\,P(\theta_r)$")
    ax.grid(True, which="major", alpha=0.3)
    v = config["v"]
    vtxt = r"\infty" if v == "inf" else f"{v:g}"
    spec = "deterministic equivalent" if config["spectrum"] == "deterministic" else f"sampled W (seed {config['seed']})"
    ax.set_title(rf"PLRF theory: $\alpha$={config['alpha']:g}, $\beta$={config['beta']:g}, $d$={config['d']:g}, "
                 rf"$v={vtxt}$, $\eta$={config['lr']:.3g}, $B$={config['batch']}, {config['schedule']['name']} lr"
                 f"\nspectrum of $K$: {spec}", fontsize=9)
    fb = config["flops_per_step"]
    top = ax.secondary_xaxis("top", functions=(lambda x: x * fb, lambda f: f / fb))
    top.set_xlabel(r"compute $f = d\,B\,r$", fontsize=8)
    top.tick_params(labelsize=7)
    # dominance strip: which (amplified) component is largest, between midpoints of the log grid
    edges = np.concatenate([[r[0]], np.sqrt(r[1:] * r[:-1]), [r[-1]]])
    for name, i, j in _runs(out["dominant"]):
        color = STYLE[name][1]
        x0, x1 = edges[i], edges[j]
        strip.axvspan(x0, x1, color=color, alpha=0.85, lw=0)
        if math.log(x1 / x0) > 0.09 * math.log(r[-1] / r[0]):
            strip.text(math.sqrt(x0 * x1), 0.5, STYLE[name][2], ha="center", va="center", fontsize=7,
                       color="white", fontweight="bold")
    strip.set_xscale("log")
    strip.set_yticks([])
    strip.set_ylabel("dominant", rotation=0, ha="right", va="center", fontsize=7)
    strip.set_xlabel(r"SGD steps $r$")
    save(fig, path)
    return fig
