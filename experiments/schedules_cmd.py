"""Learning-rate schedules on one PLRF problem: eigen-SGD seeds vs the exact expected loss vs approximate predictors.

One sampled W (v = 4d by default), peak lr = ``lr_frac * plrf.max_stable_lr``. Per schedule: eigen SGD
(:func:`plrf.sweep.sweep`, mean +- standard error over seeds), the exact expected loss (:func:`plrf.expected_loss`,
the per-step recursion), and the predictors of :mod:`theory.schedule_laws`: noise ODE, Qiu's adiabatic rule
(a = 1/2), the equilibrium rule, the FSL (spectral and power-law constants), and the Tissue and multi-power laws
fitted on the exact constant and cosine curves. Compares the seed mean with the exact curve
(:func:`plrf.montecarlo.agreement`): ``|mean - exact| / stderr`` at every grid point (the 3-sigma rule), the
number of points over 3 expected under a correct model, and a simultaneous 99.73% bootstrap-t band over the whole
grid (the family-wise version of "3 sigma"). Tabulates max / final relative errors of every predictor, and scans the WSD cooldown fraction and the peak
lr at the fixed horizon with the exact theory (:func:`theory.logtime.solve_logtime`) and with the fitted laws.
Writes OUT/results.json, OUT/table.md, OUT/schedules.png and OUT/wsd_scan.png.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from . import options as opt

DEFAULT_OUT = "runs/schedules"
DEFAULT_SCHEDULES = ("constant", "cosine", "linear", "wsd-linear", "wsd-cosine", "wsd-1-sqrt", "step-8-1-1",
                     "cosine-3")
FIT_ON = ("constant", "cosine")
OPTIMAL = "optimal"   # the schedule minimising the exact final loss (theory.optimal_schedule), SGD only
Z_LIMIT = 3.0


def add_arguments(p):
    p.add_argument("--alpha", type=opt.positive_float, default=1.0, help="data spectrum exponent alpha > 0")
    p.add_argument("--beta", type=opt.real, default=0.7, help="target exponent beta (2(alpha+beta) > 1)")
    p.add_argument("--d", type=opt.int_at_least(2), default=256, help="number of parameters (features) d")
    p.add_argument("--v", type=opt.int_at_least(2), default=None, help="data dimension v >= d (default 4d)")
    p.add_argument("--batch", type=opt.int_at_least(1), default=1, help="batch size B")
    p.add_argument("--steps", type=opt.big_int, default=10_000, help="horizon (number of SGD steps), e.g. 1e4")
    p.add_argument("--lr-frac", type=opt.fraction, default=0.5,
                   help="peak lr as a fraction in (0, 1) of plrf.max_stable_lr of the sampled spectrum")
    p.add_argument("--seeds", type=opt.int_at_least(2), default=1024, help="eigen-SGD seeds per schedule (>= 2)")
    p.add_argument("--seed", type=opt.int_at_least(0), default=0, help="base seed (W and the SGD keys)")
    p.add_argument("--schedules", nargs="+", default=list(DEFAULT_SCHEDULES), metavar="NAME",
                   help="schedules (plrf.schedules.by_name names, and 'optimal': the SGD schedule minimising the "
                        "exact final loss, theory.optimal_schedule)")
    p.add_argument("--cooldown", type=opt.fraction, default=0.2, help="cooldown fraction of the wsd-* schedules")
    p.add_argument("--num", type=opt.int_at_least(4), default=60,
                   help="log-spaced grid points (plus 41 uniformly spaced ones)")
    p.add_argument("--err-from", type=opt.fraction, default=0.01,
                   help="relative errors are taken over steps >= err_from * steps")
    p.add_argument("--scan-cooldowns", type=opt.fraction, nargs="+",
                   default=[0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5],
                   help="WSD (linear) cooldown fractions scanned at the peak lr")
    p.add_argument("--scan-lr-fracs", type=opt.fraction, nargs="+",
                   default=[0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95],
                   help="peak lr fractions of the max stable lr scanned for WSD (linear, --cooldown)")
    p.add_argument("--mp-starts", type=opt.int_at_least(1), default=1,
                   help="multi-start refinements of the multi-power fit")
    p.add_argument("--overwrite", action="store_true", help="discard results stored in OUT with other settings")
    from .optim_options import add_optimizer_arguments
    add_optimizer_arguments(p)
    opt.add_common(p, DEFAULT_OUT)


def _validate(args):
    from plrf.schedules import NAMES
    bad = [s for s in args.schedules if s not in NAMES and s != OPTIMAL]
    if bad:
        raise ValueError(f"--schedules: unknown {bad}; valid names: {', '.join(NAMES)}, {OPTIMAL}")
    if len(set(args.schedules)) != len(args.schedules):
        raise ValueError(f"--schedules: duplicate names in {args.schedules}")
    for name, vals in (("--lr-frac", [args.lr_frac]), ("--scan-lr-fracs", args.scan_lr_fracs)):
        if any(x >= 1 for x in vals):
            raise ValueError(f"{name} must be < 1 (a fraction of the max stable lr), got {vals}")
    if args.v is not None and args.v < args.d:
        raise ValueError(f"--v must be >= --d, got v={args.v} < d={args.d}")
    if args.steps < 10:
        raise ValueError(f"--steps must be >= 10, got {args.steps}")
    from .optim_options import check_args, plain_sgd
    check_args(args)
    if OPTIMAL in args.schedules and not plain_sgd(args):
        raise ValueError(f"--schedules {OPTIMAL}: the optimal schedule row is computed for plain SGD only "
                         "(use plrf optimal-schedule --optimizer for momentum and DANA)")
    from . import budget
    v = args.v if args.v is not None else 4 * args.d
    budget.check(budget.schedules(d=args.d, v=v, batch=args.batch, seeds=args.seeds, steps=args.steps,
                                  n_schedules=len(args.schedules),
                                  n_exact=len(set(args.schedules) | set(FIT_ON)) + 1, num=args.num,
                                  cost=budget.optimizer_cost(args)), args,
                 say=budget.teller(args, "schedules"))


def _optimal(spec, steps, batch):
    """The SGD schedule minimising the exact final loss (theory.optimal_schedule: 64 knots, 'ends' spacing, inside
    0.9 of the edge, L-BFGS-B) and what replot needs to rebuild it (its knots)."""
    from theory.optimal_schedule import ScheduleFamily, optimize
    fam = ScheduleFamily(spec, steps=steps, batch=batch, knots=64, space="ends")
    res = optimize(fam, maxiter=300)
    info = dict(space=fam.space, knots_u=fam.u.tolist(), knots_lr=np.asarray(res.knots["lr"]).tolist(),
                cap=fam.cap, final_loss=res.final_loss, iterations=res.iterations, message=res.message)
    return res.arrays["lr"], info


def _optimal_from_info(info, steps):
    """The per-step lr of the stored optimal schedule (the same interpolation as ScheduleFamily.per_step)."""
    from theory.optimal_schedule import step_coords
    return np.interp(step_coords(steps, info["space"]), np.asarray(info["knots_u"]), np.asarray(info["knots_lr"]))


def _make(name, peak, steps, cooldown, optimal_lr=None):
    import plrf
    if name == OPTIMAL:
        return plrf.schedules.from_array(optimal_lr)
    kw = dict(cooldown=cooldown) if name.startswith("wsd-") else {}
    return plrf.schedules.by_name(name, peak, steps, **kw)


def _opt_label(cfg) -> str:
    """'SGD' or the optimizer with its options, for titles and messages."""
    if "optimizer" not in cfg:
        return "SGD"
    lab = cfg["optimizer"]
    if cfg["optimizer"] in ("momentum", "nesterov", "schedule-free"):
        lab += f" (mu {cfg['momentum']:g})" if cfg["optimizer"] != "schedule-free" else f" (beta {cfg['momentum']:g})"
    if cfg.get("weight_decay"):
        lab += f", weight decay {cfg['weight_decay']:g}"
    if cfg.get("ema") is not None:
        lab += f", EMA {cfg['ema']}"
    return lab


NO_PREDICTORS = ("the approximate predictors (noise ODE, adiabatic, equilibrium, FSL, Tissue, multi-power) are "
                 "SGD formulas: with another optimizer only the exact theory and eigen simulation are compared")


def _finish_optimizer(args, config, out, t0, st):
    """The rest of a run with an optimizer other than plain SGD: the WSD scans on the exact theory of that
    optimizer (log-time solver), no predictors and no fitted laws (NO_PREDICTORS)."""
    import plrf
    spec, T, B, peak, lr_max = st["spec"], args.steps, args.batch, st["peak"], st["lr_max"]
    names, optimizer = st["names"], st["optimizer"]
    from .optim_options import default_lr_factor
    t_scan = time.time()
    scan_c = _scan(spec, [optimizer(plrf.schedules.wsd(peak, T, cooldown=c)) for c in args.scan_cooldowns],
                   args.scan_cooldowns, T, B, None, None)
    scan_lr = _scan(spec, [optimizer(plrf.schedules.wsd(f * lr_max * default_lr_factor(args), T,
                                                        cooldown=args.cooldown)) for f in args.scan_lr_fracs],
                    args.scan_lr_fracs, T, B, None, None)
    t_scan = time.time() - t_scan
    grid, scheds, exact, sim, zinfo = st["grid"], st["scheds"], st["exact"], st["sim"], st["zinfo"]
    results = dict(
        timings=dict(total=time.time() - t0, sgd=st["t_sim"], predictors=0.0, scans=t_scan),
        max_stable_lr=lr_max, peak_lr=peak, P_star=float(spec.P_star), P0=float(spec.P0), steps=grid,
        optimizer_config={n: optimizer(scheds[n]).config for n in names},
        schedules={n: dict(config=scheds[n].config, lr=np.asarray(scheds[n](np.maximum(grid - 1, 0))),
                           exact=exact[n], sim_mean=sim[n]["mean"], sim_stderr=sim[n]["stderr"], z=sim[n]["z"],
                           agreement=zinfo[n], predictions={},
                           **({"exact_average": st["exact_avg"][n]} if n in st["exact_avg"] else {}))
                   for n in names},
        max_abs_z={n: zinfo[n]["max_abs_z"] for n in names},
        agreement_3sigma={n: zinfo[n]["within"] for n in names},
        agreement_band={n: zinfo[n]["within_band"] for n in names},
        error_table=[], error_from_step=max(1, int(round(args.err_from * T))), predictors_note=NO_PREDICTORS,
        fits=None, wsd_cooldown_scan=scan_c, lr_scan=scan_lr)
    out.save(results, dataset(results, names, []), wall_time=time.time() - t0)
    md = _table_md([], names, [], results["error_from_step"], zinfo, scan_c, scan_lr, config, peak, lr_max)
    with open(out.file("table.md"), "w") as f:
        f.write(md)
    _draw(grid, names, scheds, exact, sim, {}, [], config, peak, scan_c, scan_lr, out.root, st["exact_avg"])
    if not args.quiet:
        print(md)
        print(f"wrote {args.out}/results.json, table.md, schedules.png, wsd_scan.png in {time.time() - t0:.0f}s",
              flush=True)
    return results


def _sgd(spec, schedule, *, args, key, grid):
    """Mean and standard error over seeds of the eigen-SGD loss at the grid."""
    import jax

    from plrf.sweep import sweep
    ndev = args.devices or len(jax.devices())
    block = max(1, min(64, math.ceil(args.seeds / ndev)))  # vmap the seeds: far less per-step overhead on CPU
    res = sweep(spec, schedule, steps=args.steps, method="eigen", key=key, seeds=args.seeds,
                batches=(args.batch,), grid=grid, devices=args.devices, block=block, quiet=True)
    L = res.loss[0, 0]
    if np.any(res.diverged[0, 0] >= 0):
        raise ValueError(f"the eigen simulation blew up for schedule {schedule.name}; lower --lr-frac")
    return L


def skewness(L) -> float:
    """Largest sample skewness of the per-seed losses over the grid points with spread (heavy right tails)."""
    c = L - L.mean(0)
    sd = np.sqrt(np.mean(c * c, axis=0))
    ok = sd > 0
    return float(np.max(np.mean(c[:, ok] ** 3, axis=0) / sd[ok] ** 3)) if np.any(ok) else 0.0


def config_of(args) -> dict:
    from .optim_options import config_entries
    v = args.v if args.v is not None else 4 * args.d
    return config_entries(args) | dict(command="schedules", alpha=args.alpha, beta=args.beta, d=args.d, v=v, batch=args.batch,
                steps=args.steps, lr_frac=args.lr_frac, seeds=args.seeds, seed=args.seed,
                schedules=list(args.schedules), cooldown=args.cooldown, num=args.num, err_from=args.err_from,
                scan_cooldowns=list(args.scan_cooldowns), scan_lr_fracs=list(args.scan_lr_fracs),
                mp_starts=args.mp_starts, fit_on=list(FIT_ON))


def run(args):
    from plrf.store import prepare_out

    t0 = time.time()
    _validate(args)
    config = config_of(args)
    with prepare_out(args.out, config, overwrite=args.overwrite) as out:   # before any work; locks OUT
        return _run(args, config, out, t0)


def _run(args, config, out, t0):
    import jax

    import plrf
    from plrf.progress import Progress
    from theory import schedule_laws as SL

    v = config["v"]
    problem = plrf.Problem(args.alpha, args.beta, v, args.d)
    k_w, k_sgd = jax.random.split(jax.random.key(args.seed))
    spec = plrf.sample_spectrum(problem, key=k_w)
    lr_max = float(plrf.max_stable_lr(spec, args.batch))
    from .optim_options import build_optimizer, default_lr_factor, plain_sgd
    sgd = plain_sgd(args)
    # momentum/Nesterov: the peak lr is lr_frac x (1 - mu) x SGD's edge (the same effective step lr / (1 - mu))
    peak = args.lr_frac * lr_max * default_lr_factor(args)
    T = args.steps
    names = list(args.schedules)
    optimal_lr, optimal_info = (None, None)
    if OPTIMAL in names:
        optimal_lr, optimal_info = _optimal(spec, T, args.batch)
    scheds = {n: _make(n, peak, T, args.cooldown, optimal_lr)
              for n in dict.fromkeys(names + (list(FIT_ON) if sgd else []))}
    trace = float(spec.trace)

    def optimizer(schedule):   # the schedule itself for plain SGD; otherwise the optimizer driven by it
        return schedule if sgd else build_optimizer(args, schedule, trace=trace, d=args.d, alpha=args.alpha,
                                                    beta=args.beta)
    # one grid for every schedule: log-spaced, 41 uniform points, and the steps right after every schedule's
    # discontinuities (a step-decay drop, a cooldown start: the transients the error table must see)
    grid = np.union1d(plrf.log_grid(T, args.num), np.linspace(0, T, 41).astype(np.int64))
    for sch in scheds.values():
        grid = np.union1d(grid, plrf.log_grid(T, args.num, after=sch))
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(f"plrf schedules: d={args.d}, v={v}, B={args.batch}, {T} steps, {_opt_label(config)}, peak lr {peak:.4g} "
        f"({args.lr_frac:g} x{'' if sgd else ' ' + format(default_lr_factor(args), 'g') + ' x'} max stable "
        f"{lr_max:.4g}), {args.seeds} seeds")

    # exact expected loss (per-step recursion) and eigen SGD
    from plrf.montecarlo import agreement
    k_boot = jax.random.fold_in(k_sgd, 2 ** 20)   # bootstrap resamples (not a seed of any run)
    curves = {n: plrf.expected_loss(spec, optimizer(s), steps=T, batch=args.batch, grid=grid)
              for n, s in scheds.items()}
    exact = {n: c.loss for n, c in curves.items()}
    # the averaged iterate's exact loss (--ema): reported next to the iterate's; the simulation checks the iterate
    exact_avg = {n: c.readouts["average"][0] for n, c in curves.items() if c.readouts and "average" in c.readouts}
    sim, zinfo = {}, {}
    t_sim = time.time()
    from plrf.schedules import NAMES
    with Progress(len(names), desc="eigen SGD", unit="schedule", quiet=args.quiet) as bar:
        for n in names:
            idx = NAMES.index(n) if n in NAMES else len(NAMES)   # 'optimal' after the named ones
            key = jax.random.fold_in(k_sgd, idx)   # a schedule's seeds do not depend on the others
            L = _sgd(spec, optimizer(scheds[n]), args=args, key=key, grid=grid)
            m, se = L.mean(0), L.std(0, ddof=1) / math.sqrt(L.shape[0])
            ag = agreement(L, exact[n], grid, key=jax.random.fold_in(k_boot, idx), z_limit=Z_LIMIT)
            zinfo[n] = dict(ag.as_dict(), skewness=skewness(L))
            sim[n] = dict(mean=m, stderr=se, z=ag.z)
            bar.update()
    t_sim = time.time() - t_sim
    say(f"exact + eigen SGD: {time.time() - t0:.0f}s")

    # predictors (SGD formulas: skipped for other optimizers, and said so in the results)
    t_pred = time.time()
    if not sgd:
        return _finish_optimizer(args, config, out, t0, dict(
            spec=spec, grid=grid, names=names, scheds=scheds, exact=exact, exact_avg=exact_avg, sim=sim,
            zinfo=zinfo, peak=peak, lr_max=lr_max, optimizer=optimizer, t_sim=t_sim))
    Tc = T + 2  # the adiabatic rule reads the constant run up to step ceil(tau(T) / peak) + 1 (rounding)
    const_grid = np.union1d(np.append(grid, Tc), plrf.log_grid(Tc, 400))
    const_curve = (const_grid, plrf.expected_loss(spec, plrf.schedules.constant(peak), steps=Tc, batch=args.batch,
                                                  grid=const_grid).loss)
    B = args.batch
    preds = {
        "noise-ode": lambda s, **kw: SL.noise_ode(spec, s, batch=B, **kw),
        "adiabatic (a=1/2)": lambda s, **kw: SL.adiabatic(spec, s, batch=B, const_curve=const_curve, **kw),
        "equilibrium": lambda s, **kw: SL.adiabatic(spec, s, batch=B, rule="equilibrium",
                                                     const_curve=const_curve, **kw),
        "fsl-spectral": lambda s, **kw: SL.fsl(spec, s, batch=B, kind="spectral", **kw),
        "fsl-powerlaw": lambda s, **kw: SL.fsl(spec, s, batch=B, alpha=args.alpha, beta=args.beta, **kw),
    }
    fit_curves = [(scheds[n], grid, exact[n]) for n in FIT_ON]
    tissue = SL.fit_tissue(fit_curves)
    mpow = SL.fit_multipower(fit_curves, starts=args.mp_starts)
    preds["tissue (fit)"] = tissue.predict
    preds["multi-power (fit)"] = mpow.predict
    from_step = max(1, int(round(args.err_from * T)))
    pred_loss, rows = {}, []
    for n in names:
        for pn, f in preds.items():
            lo = np.asarray(f(scheds[n], steps=T, grid=grid).loss, dtype=np.float64)
            pred_loss[n, pn] = lo
            rows.append(SL.ErrorRow(n, pn, *SL.relative_errors(lo, exact[n], grid, from_step=from_step)))
    t_pred = time.time() - t_pred
    say(f"predictors: {t_pred:.0f}s")

    # scans at the fixed horizon: WSD (linear) cooldown fraction at the peak lr; peak lr at --cooldown
    t_scan = time.time()
    scan_c = _scan(spec, [plrf.schedules.wsd(peak, T, cooldown=c) for c in args.scan_cooldowns],
                   args.scan_cooldowns, T, B, tissue, mpow)
    scan_lr = _scan(spec, [plrf.schedules.wsd(f * lr_max, T, cooldown=args.cooldown) for f in args.scan_lr_fracs],
                    args.scan_lr_fracs, T, B, tissue, mpow)
    t_scan = time.time() - t_scan

    table = [r._asdict() for r in rows]
    results = dict(
        timings=dict(total=time.time() - t0, sgd=t_sim, predictors=t_pred, scans=t_scan),
        max_stable_lr=lr_max, peak_lr=peak, P_star=float(spec.P_star), P0=float(spec.P0), steps=grid,
        schedules={n: dict(config=scheds[n].config, lr=np.asarray(scheds[n](np.maximum(grid - 1, 0))),
                           exact=exact[n], sim_mean=sim[n]["mean"], sim_stderr=sim[n]["stderr"], z=sim[n]["z"],
                           agreement=zinfo[n], predictions={pn: pred_loss[n, pn] for pn in preds})
                   for n in names},
        max_abs_z={n: zinfo[n]["max_abs_z"] for n in names},
        agreement_3sigma={n: zinfo[n]["within"] for n in names},
        agreement_band={n: zinfo[n]["within_band"] for n in names},
        error_table=table, error_from_step=from_step,
        fits=dict(tissue=tissue._asdict(), multipower=mpow._asdict(), fit_on=list(FIT_ON)),
        wsd_cooldown_scan=scan_c, lr_scan=scan_lr,
        **({"optimal_schedule": optimal_info} if optimal_info else {}))
    out.save(results, dataset(results, names, list(preds)), wall_time=time.time() - t0)
    md = _table_md(rows, names, list(preds), from_step, zinfo, scan_c, scan_lr, config, peak, lr_max)
    with open(out.file("table.md"), "w") as f:
        f.write(md)
    _draw(grid, names, scheds, exact, sim, pred_loss, list(preds), config, peak, scan_c, scan_lr, out.root)
    say(md)
    say(f"wrote {args.out}/results.json, table.md, schedules.png, wsd_scan.png in {time.time() - t0:.0f}s")
    return results


def dataset(results, names, pnames):
    """Curves per (schedule, step), predictions per (schedule, predictor, step), errors, and the two scans."""
    import xarray as xr
    S = results["schedules"]
    err = {(r["schedule"], r["predictor"]): r for r in results["error_table"]}
    st = lambda key: np.stack([np.asarray(S[n][key], dtype=float) for n in names])  # noqa: E731
    data = {k: (("schedule", "step"), st(k)) for k in ("lr", "exact", "sim_mean", "sim_stderr", "z")}
    nstep = len(results["steps"])
    data["prediction"] = (("schedule", "predictor", "step"),
                          np.array([[S[n]["predictions"][p] for p in pnames] for n in names],
                                   dtype=float).reshape(len(names), len(pnames), nstep))
    for k in ("max_rel", "final_rel"):
        data[k] = (("schedule", "predictor"), np.array([[err[n, p][k] for p in pnames] for n in names],
                                                       dtype=float).reshape(len(names), len(pnames)))
    if names and all("exact_average" in S[n] for n in names):
        data["exact_average"] = (("schedule", "step"), st("exact_average"))
    for k in ("max_abs_z", "band", "p_value", "skewness"):
        data[k] = ("schedule", np.array([S[n]["agreement"][k] for n in names], dtype=float))
    for scan, dim in (("wsd_cooldown_scan", "cooldown"), ("lr_scan", "lr_frac")):
        for k in ("exact", "tissue", "multipower"):
            if k not in results[scan]:
                continue
            data[f"{scan}_{k}"] = (dim, np.asarray(results[scan][k], dtype=float))
    return xr.Dataset(data, coords={"schedule": names, "predictor": pnames, "step": results["steps"],
                                    "cooldown": results["wsd_cooldown_scan"]["values"],
                                    "lr_frac": results["lr_scan"]["values"]})


def _draw(grid, names, scheds, exact, sim, pred_loss, pnames, config, peak, scan_c, scan_lr, root, exact_avg=None):
    plot_schedules(grid, names, scheds, exact, sim, pred_loss, pnames, config, peak,
                   os.path.join(root, "schedules.png"), exact_avg=exact_avg)
    plot_scans(scan_c, scan_lr, config, os.path.join(root, "wsd_scan.png"))
    return ["schedules.png", "wsd_scan.png"]


def replot(out_dir):
    """Redraw schedules.png and wsd_scan.png from OUT/results.json (no recomputation; the schedules are rebuilt
    from their configuration)."""
    from plrf.store import read_json
    r = read_json(os.path.join(out_dir, "results.json"))
    cfg, peak = r["config"], r["peak_lr"]
    names = list(cfg["schedules"])
    S = r["schedules"]
    pnames = list(S[names[0]]["predictions"]) if names else []
    A = lambda x: np.asarray(x, dtype=float)  # noqa: E731
    opt_lr = _optimal_from_info(r["optimal_schedule"], cfg["steps"]) if OPTIMAL in names else None
    scheds = {n: _make(n, peak, cfg["steps"], cfg["cooldown"], opt_lr) for n in names}
    exact = {n: A(S[n]["exact"]) for n in names}
    sim = {n: dict(mean=A(S[n]["sim_mean"]), stderr=A(S[n]["sim_stderr"])) for n in names}
    pred = {(n, p): A(S[n]["predictions"][p]) for n in names for p in pnames}
    avg = {n: A(S[n]["exact_average"]) for n in names if "exact_average" in S[n]}
    return _draw(np.asarray(r["steps"], dtype=np.int64), names, scheds, exact, sim, pred, pnames, cfg, peak,
                 r["wsd_cooldown_scan"], r["lr_scan"], out_dir, avg)


def _scan(spec, schedules, values, T, B, tissue, mpow):
    """Final loss at T for each schedule: exact (log-time solver) and the two fitted laws; the optima."""
    from theory.logtime import solve_logtime
    g = np.array([0, T])
    curves = [solve_logtime(spec, s, steps=T, batch=B, grid=g) for s in schedules]
    # with averaging (--ema) the optimum is the averaged iterate's (what one would deploy)
    avg = bool(curves[0].readouts) and "average" in curves[0].readouts
    ex = np.array([(c.readouts["average"] if avg else c.loss)[-1] for c in curves])
    out = dict(values=list(values), exact=ex, readout="average" if avg else "iterate")
    i = int(np.argmin(ex))
    out["exact_opt"] = dict(value=float(values[i]), loss=float(ex[i]))
    for name, fit in (("tissue", tissue), ("multipower", mpow)):
        if fit is None:     # another optimizer than SGD: no fitted laws
            continue
        lo = np.array([fit.predict(s, steps=T, grid=g).loss[-1] for s in schedules])
        j = int(np.nanargmin(np.where(np.isfinite(lo), lo, np.inf)))
        out[name] = lo
        out[f"{name}_opt"] = dict(value=float(values[j]), predicted_loss=float(lo[j]), exact_loss_at=float(ex[j]),
                                  regret=float(ex[j] / ex[i] - 1.0))
    return out


def _table_md(rows, names, pnames, from_step, zinfo, scan_c, scan_lr, cfg, peak, lr_max):
    err = {(r.schedule, r.predictor): r for r in rows}
    L = [f"# plrf schedules: alpha={cfg['alpha']}, beta={cfg['beta']}, d={cfg['d']}, v={cfg['v']}, "
         f"B={cfg['batch']}, T={cfg['steps']}, {_opt_label(cfg)}, peak lr {peak:.4g} "
         f"({cfg['lr_frac']:g} x max stable SGD lr {lr_max:.4g}"
         f"{'' if 'optimizer' not in cfg or cfg['optimizer'] not in ('momentum', 'nesterov') else ' x (1 - mu)'})", ""]
    if pnames:
        L += [f"Relative error |pred - exact| / exact: max over steps >= {from_step} / final (step {cfg['steps']}). "
              f"Tissue and multi-power are fitted on the exact {' + '.join(FIT_ON)} curves.", "",
              "| predictor | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    else:
        L += [f"No predictor rows: {NO_PREDICTORS}."]
    for pn in pnames:
        L.append(f"| {pn} | " + " | ".join(f"{err[n, pn].max_rel:.2%} / {err[n, pn].final_rel:.2%}"
                                           for n in names) + " |")
    L += ["", f"eigen simulation ({cfg['seeds']} seeds) vs exact: z = (mean - exact) / stderr at every grid point; points "
          "over 3 (observed / expected under a correct model, bootstrap); simultaneous 99.73% bootstrap-t band c "
          "for max |z| over the grid, its p-value; largest skewness of the per-seed loss:", "",
          "| schedule | max abs z | at step | abs z > 3: observed / expected / points | band c | p | within band "
          "| skewness |", "|---|---|---|---|---|---|---|---|"]
    for n in names:
        z = zinfo[n]
        L.append(f"| {n} | {z['max_abs_z']:.2f} | {z['argmax_step']} | {z['n_over']} / {z['expected_over']:.1f} / "
                 f"{z['n_points']} | {z['band']:.2f} | {z['p_value']:.2f} | {'yes' if z['within_band'] else 'NO'} "
                 f"| {z['skewness']:.1f} |")
    L += ["", "Optima at the fixed horizon (final loss):", ""]
    if "tissue_opt" not in scan_c:
        L += ["| scan | exact optimum |", "|---|---|"]
        for lab, s in (("WSD-linear cooldown fraction", scan_c),
                       ("WSD peak lr / max stable SGD lr" + (" / (1 - mu)" if cfg.get("optimizer") in ("momentum", "nesterov") else ""), scan_lr)):
            L.append(f"| {lab} | {s['exact_opt']['value']:g} (loss {s['exact_opt']['loss']:.4e}) |")
        return "\n".join(L) + "\n"
    L += ["| scan | exact optimum | Tissue optimum (exact loss there, regret) | multi-power optimum (exact loss, regret) |",
          "|---|---|---|---|"]
    for lab, s in (("WSD-linear cooldown fraction", scan_c), ("WSD peak lr / max stable", scan_lr)):
        e, t, m = s["exact_opt"], s["tissue_opt"], s["multipower_opt"]
        L.append(f"| {lab} | {e['value']:g} (loss {e['loss']:.4e}) | {t['value']:g} ({t['exact_loss_at']:.4e}, "
                 f"{t['regret']:+.2%}) | {m['value']:g} ({m['exact_loss_at']:.4e}, {m['regret']:+.2%}) |")
    return "\n".join(L) + "\n"


STYLES = {"noise-ode": ("C0", "-"), "adiabatic (a=1/2)": ("C1", "-"), "equilibrium": ("C2", "-"),
          "fsl-spectral": ("C4", "-"), "fsl-powerlaw": ("C5", ":"), "tissue (fit)": ("C6", "--"),
          "multi-power (fit)": ("C8", "--")}


def plot_schedules(grid, names, scheds, exact, sim, pred_loss, pnames, cfg, peak, path, exact_avg=None):
    """Per schedule (one column): loss (log-log); prediction / exact - 1 (log x, clipped points marked at the
    edge); the lr schedule in linear time; the second half of training in linear time (the decay phase)."""
    from matplotlib.gridspec import GridSpec
    from matplotlib.patches import Patch

    from .plotting import clip_handle, mark_clipped, plt, save
    ncol = min(4, len(names))
    nblk = math.ceil(len(names) / ncol)
    blk = 11.2
    lim = 0.3
    hb = cfg.get("optimizer") in ("momentum", "nesterov")
    what = "SGD" if "optimizer" not in cfg else "simulation"
    title = (rf"PLRF $\alpha$={cfg['alpha']}, $\beta$={cfg['beta']}, d={cfg['d']}, v={cfg['v']}, "
             f"B={cfg['batch']}, T={cfg['steps']}, {_opt_label(cfg)}, peak lr {peak:.3g} ({cfg['lr_frac']:g} × "
             f"max stable{' SGD lr × (1 − mu)' if hb else ''}), {cfg['seeds']} seeds, wsd cooldown "
             f"{cfg['cooldown']:g}. Per schedule: loss; " + ("prediction / exact − 1 (" if pnames else "(") +
             f"grey: {what} mean / exact − 1, ± s.e. band; axis clipped at ±{lim:g}); lr; loss over the second "
             "half in linear time")
    import textwrap
    lines = textwrap.wrap(title, width=int(48 * ncol))
    extra = 0.2 * (len(lines) - 1)          # inches for the title's extra lines
    height = blk * nblk + 1.6 + extra
    fig = plt.figure(figsize=(4.4 * ncol, height))
    # rows per block: loss, deviation, gap, lr (linear t), gap, second-half loss (linear t), spacer
    ratios = [3, 2, 0.55, 1.1, 0.5, 2.4, 0.9] * nblk
    gs = GridSpec(7 * nblk - 1, ncol, figure=fig, height_ratios=ratios[:-1], hspace=0.1, wspace=0.34,
                  top=1 - (1.6 + extra) / height, bottom=0.035, left=0.07, right=0.985)
    s = grid[1:]
    T = int(grid[-1])
    tt = np.arange(0, T + 1)
    half = s >= T / 2
    handles = None
    for i, n in enumerate(names):
        b, c = divmod(i, ncol)
        ax = fig.add_subplot(gs[7 * b, c])
        ax2 = fig.add_subplot(gs[7 * b + 1, c], sharex=ax)
        ax3 = fig.add_subplot(gs[7 * b + 3, c])
        ax4 = fig.add_subplot(gs[7 * b + 5, c])
        m, se, ex = sim[n]["mean"][1:], sim[n]["stderr"][1:], exact[n][1:]
        ax.fill_between(s, m - se, m + se, color="0.55", alpha=0.45, lw=0,
                        label=f"eigen {'SGD' if 'optimizer' not in cfg else cfg['optimizer']} mean ± s.e.")
        ax.plot(s, ex, "k-", lw=1.6, label="exact expected loss")
        if exact_avg and n in exact_avg:
            ax.plot(s, exact_avg[n][1:], color="C3", ls="--", lw=1.2, label="exact loss of the averaged iterate")
        ax2.fill_between(s, -se / ex, se / ex, color="0.55", alpha=0.45, lw=0)
        ax2.plot(s, m / ex - 1, color="0.3", lw=0.8)
        mark_clipped(ax2, s, m / ex - 1, -lim, lim, "0.3", ms=3)
        ax4.fill_between(s[half], (m - se)[half], (m + se)[half], color="0.55", alpha=0.45, lw=0)
        ax4.plot(s[half], ex[half], "k-", lw=1.6)
        lo4, hi4 = np.min(np.minimum(ex, m - se)[half]), np.max(np.maximum(ex, m + se)[half])
        lo4, hi4 = lo4 / 1.25, hi4 * 1.25
        for pn in pnames:
            col, ls = STYLES.get(pn, (None, "-"))
            p = pred_loss[n, pn][1:]
            ax.plot(s, p, color=col, ls=ls, lw=1.0, label=pn)
            mark_clipped(ax, s, p, 0.7 * ex.min(), 1.5 * ex.max(), col, ms=3)
            ax2.plot(s, p / ex - 1, color=col, ls=ls, lw=1.0)
            mark_clipped(ax2, s, p / ex - 1, -lim, lim, col, ms=3)
            ax4.plot(s[half], p[half], color=col, ls=ls, lw=1.0)
            mark_clipped(ax4, s[half], p[half], lo4, hi4, col, ms=3)
        ax2.axhline(0, color="k", lw=0.7)
        ax.set(xscale="log", yscale="log", ylabel="loss $P$")
        ax.set_title(n, fontsize=12)
        ax.set_ylim(0.7 * ex.min(), 1.5 * ex.max())
        ax2.set_ylim(-lim, lim)
        ax2.set_yticks([-0.2, 0, 0.2])
        ax2.set(xlabel="step $t$ (log)", ylabel="pred / exact − 1" if pnames else "sim / exact − 1")
        lr = np.asarray(scheds[n](tt[:-1]), dtype=float) / peak   # lr of step t -> t + 1
        ax3.plot(tt[1:], lr, "k-", lw=1.0)
        ax3.axvspan(T / 2, T, color="C0", alpha=0.08, lw=0)
        ax3.set(xlim=(0, T), ylim=(-0.05, max(1.12, 1.05 * float(np.max(lr)))), xlabel="SGD step $t$ (linear)", ylabel=r"$\eta_t/\eta_{peak}$")
        ax4.set(xlim=(T / 2, T), yscale="log", ylim=(lo4, hi4), xlabel="SGD step $t$ (linear, second half)",
                ylabel="loss $P$")
        for a in (ax, ax2, ax3, ax4):
            a.grid(alpha=0.3, which="major")
            a.xaxis.label.set_size(9)
            a.yaxis.label.set_size(9)
        plt.setp(ax.get_xticklabels(), visible=False)
        ax.xaxis.label.set_visible(False)
        ax3.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax4.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        if handles is None:
            handles = ax.get_legend_handles_labels()
    h, lab = handles
    h = list(h) + [clip_handle(), Patch(color="C0", alpha=0.15, label="second half (bottom panel)")]
    lab = list(lab) + [h[-2].get_label(), h[-1].get_label()]
    fig.legend(h, lab, loc="upper center", ncol=6, fontsize=9, bbox_to_anchor=(0.5, 1 - (0.55 + extra) / height),
               frameon=False)
    fig.suptitle("\n".join(lines), y=1 - 0.12 / height, fontsize=11, va="top")
    save(fig, path)
    return fig


def plot_scans(scan_c, scan_lr, cfg, path):
    """Final loss against the WSD cooldown fraction and the peak lr: exact theory and the two fitted laws, with
    the optimum each one picks (drawn at the exact loss it gives; distinct markers, so coinciding optima stay
    visible)."""
    from .plotting import new_figure, save
    fig, axes = new_figure(2, 1, width=5.6, height=4.3)
    marks = {"tissue": dict(marker="o", ms=15, mfc="none", mew=2.0), "multipower": dict(marker="D", ms=6, mew=0.6)}
    hb = cfg.get("optimizer") in ("momentum", "nesterov")
    unit = "max stable SGD lr × (1 − mu)" if hb else "max stable lr"
    who = ""
    if "optimizer" in cfg:
        fig.suptitle(f"{_opt_label(cfg)}: final loss of the "
                     f"{'averaged iterate' if scan_c.get('readout') == 'average' else 'iterate'}", fontsize=10)
    for ax, sc, xl, ttl in ((axes[0, 0], scan_c, "cooldown fraction of the horizon",
                             f"{who}WSD-linear at peak lr {cfg['lr_frac']:g} × {unit}"),
                            (axes[0, 1], scan_lr, f"peak lr / ({unit})",
                             f"{who}WSD-linear, cooldown {cfg['cooldown']:g}")):
        x = np.asarray(sc["values"])
        ax.plot(x, sc["exact"], "ko-", ms=4, label="exact theory")
        e = sc["exact_opt"]
        ax.plot([e["value"]], [e["loss"]], "*", color="k", ms=15, zorder=5, label=f"exact optimum {e['value']:g}")
        for key, col, lab in (("tissue", "C6", "Tissue (fit)"), ("multipower", "C8", "multi-power (fit)")):
            if key not in sc:   # another optimizer than SGD: no fitted laws
                continue
            y = np.asarray(sc[key], dtype=float)
            ax.plot(x, y, "s--", color=col, ms=3.5, lw=1, label=f"{lab}: predicted final loss")
            o = sc[f"{key}_opt"]
            kw = dict(marks[key])
            kw.update(mec=col) if key == "tissue" else kw.update(color=col, mec="k")
            ax.plot([o["value"]], [o["exact_loss_at"]], ls="none", zorder=6 if key == "multipower" else 4,
                    label=f"{lab} optimum {o['value']:g}, at its exact loss (regret {o['regret']:+.1%})", **kw)
        ax.set(yscale="log", xlabel=xl, ylabel=f"final loss at T = {cfg['steps']}", title=ttl)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    fig.tight_layout()
    save(fig, path)
    return fig
