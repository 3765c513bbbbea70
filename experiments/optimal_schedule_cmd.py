"""Optimal learning-rate (and momentum) schedules from the exact theory, against tuned baselines.

For each horizon T in ``--steps`` (a comma list, e.g. 1e2,1e3,1e4): the schedule minimising the exact expected
final loss (or the anytime objective), piecewise-linear on ``--knots`` knots in t/T or log t, inside
``--frac`` of the stability edge (theory.optimal_schedule: checkpointed reverse mode through the exact moment
recursion, scipy L-BFGS-B); the best constant, cosine, linear and WSD (cooldown fraction tuned) schedules with
tuned peaks on the same theory; every reported loss re-evaluated by plrf.expected_loss on the plain per-step
arrays. Several horizons: the fitted laws (peak lr, loss, end exponent, decay fraction vs T) next to the
published predictions.

Writes OUT/results.json (``lr``: every step 0..T-1 of the largest horizon when T <= 1e5, ``knots``,
``final_loss``, ``baselines`` name -> final loss, ``shape``, and ``horizons``: the same per horizon; ``laws``,
``predictions``), one cell per horizon in OUT/cells (an interrupted run resumes), and the figures
optimal_schedule.png, optimal_schedule_loss.png, optimal_schedule_laws.png.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

from . import options as opt
from .optim_options import _ema

DEFAULT_OUT = "runs/optimal-schedule"
LR_LIMIT = 100_000          # per-step arrays stored up to this horizon
MAX_STEPS = 1_000_000       # the exact recursion (--solver exact)
MAX_STEPS_LOGTIME = 10_000_000_000   # the log-time solver (--solver logtime)
ROUND_ITER = 25             # L-BFGS iterations per re-mesh round of the log-time solver
OPTIMIZERS = ("sgd", "momentum", "dana-decaying")
RTOL_OPT_SYSTEM = 1e-4      # log-time meshes of the momentum/DANA/EMA optimisation (1e-3 measured too coarse: README)


def _steps_list(text):
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected one or more horizons, e.g. 1e4 or 1e2,1e3,1e4, got {text!r}")
    out = []
    for p in parts:
        try:
            x = float(p)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected integers such as 1e4 (comma-separated), got {p!r}")
        if not math.isfinite(x) or x != int(x) or x < 2 or x > MAX_STEPS_LOGTIME:
            raise argparse.ArgumentTypeError(f"each horizon must be an integer in [2, {MAX_STEPS_LOGTIME:.0e}] "
                                             f"(above {MAX_STEPS:.0e} with --solver logtime), got {p}")
        out.append(int(x))
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"horizons must be distinct, got {text}")
    return sorted(out)


def add_arguments(p):
    p.add_argument("--alpha", type=opt.positive_float, default=1.0, help="data spectrum exponent alpha > 0")
    p.add_argument("--beta", type=opt.real, default=0.7, help="target exponent beta (2(alpha+beta) > 1)")
    p.add_argument("--d", type=opt.int_at_least(1), default=256, help="number of parameters (features) d")
    p.add_argument("--v", type=opt.int_at_least(1), default=None, help="data dimension v >= d; None = 4d")
    p.add_argument("--batch", type=opt.int_at_least(1), default=1, help="batch size B")
    p.add_argument("--label-noise", dest="label_noise", type=opt._num(float, 0.0), default=0.0,
                   help="label-noise variance sigma^2 (y = <x, b> + sigma eps): adds sigma^2 to P* (exact in the "
                        "moment recursion: the gradient noise is proportional to P); 0 = PLRF as defined")
    p.add_argument("--steps", type=_steps_list, default=[100, 1000, 10000, 100000],
                   help="horizon(s) T, comma-separated (e.g. 1e2,1e3,1e4); laws are fitted over several")
    p.add_argument("--solver", default="exact", choices=("exact", "logtime"),
                   help="exact: reverse mode through the exact moment recursion (horizons <= 1e6, every optimizer); "
                        "logtime: gradients through a replay of the log-time solver's mesh (theory.logtime_grad for "
                        "plain SGD, theory.logtime_grad_optim for momentum (mu fixed at --momentum, the effective "
                        "step scheduled), dana-decaying and --ema; final objective, horizons <= 1e10; baselines and "
                        "losses from forward log-time solves, local tolerance 1e-4; momentum/DANA/EMA optimise on "
                        f"meshes of tolerance {RTOL_OPT_SYSTEM:g})")
    p.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS,
                   help="sgd (lr schedule), momentum (heavy ball as optax.sgd(lr, momentum): lr and momentum "
                        "schedules jointly) or dana-decaying (g2 and g3 schedules)")
    p.add_argument("--ema", type=_ema, default=None,
                   help="read the loss from an average of the iterates: a rate R in (0, 1] or 'uniform'")
    p.add_argument("--objective", default="final", choices=("final", "anytime"),
                   help="final: log P(T); anytime: mean of log P(t) over 32 log-spaced t <= T")
    p.add_argument("--knots", type=opt.int_at_least(2), default=64, help="knots per schedule (piecewise linear)")
    p.add_argument("--space", default="ends", choices=("linear", "log", "ends"),
                   help="knots uniform in t/T (linear), in log(1 + t)/log T (log), or in t/T with a quarter of them "
                        "log-spaced at each end (ends: warmup and end shape resolved to single steps)")
    p.add_argument("--frac", type=opt._num(float, 0.0, 1.0, lo_open=True), default=0.9,
                   help="every lr (heavy ball: lr/(1 - mu); DANA: g2) stays below frac x the largest stable "
                        "constant SGD lr (plrf.max_stable_lr); must be < 1")
    p.add_argument("--mu-max", dest="mu_max", type=opt._num(float, 0.0, 1.0, lo_open=True), default=0.99,
                   help="momentum cap of the optimised heavy-ball schedule (< 1)")
    p.add_argument("--momentum", type=opt._num(float, 0.0, 1.0), default=0.9,
                   help="the fixed momentum of the heavy-ball baselines (< 1)")
    p.add_argument("--momentum-cap", dest="momentum_cap", default="effective", choices=("effective", "own"),
                   help="heavy ball's bound (--optimizer momentum, --solver exact): effective = lr/(1 - mu) below "
                        "frac x SGD's edge; own = lr below frac x heavy ball's own frozen-map edge at mu_t (at large "
                        "batch that allows effective steps far past SGD's edge)")
    p.add_argument("--horizon-free", dest="horizon_free", action="store_true",
                   help="also tune one horizon-free schedule for all horizons (lr = peak (1 + t/t0)^-gamma with the "
                        "uniform average of the iterates or a tail average rho_t = c/(t + c), Meterez et al. 2026; "
                        "without averaging; a constant lr with either average) against the per-horizon optima "
                        "(--solver exact, --optimizer sgd, no --ema)")
    p.add_argument("--maxiter", type=opt.int_at_least(1), default=300,
                   help=f"L-BFGS-B iterations per horizon (--solver logtime: at most {ROUND_ITER} per re-mesh round, "
                        f"maxiter/{ROUND_ITER} rounds)")
    p.add_argument("--spectrum", default="deterministic", choices=("deterministic", "sampled"),
                   help="deterministic equivalent of K (no sampling) or the spectrum of one W drawn from --seed")
    p.add_argument("--seed", type=opt.int_at_least(0), default=0, help="seed of W (--spectrum sampled)")
    p.add_argument("--W-file", dest="W_file", default=None,
                   help="a .npy feature matrix of shape (v, d): use its exact spectrum")
    p.add_argument("--overwrite", action="store_true", help="discard results stored in OUT with other settings")
    opt.add_common(p, DEFAULT_OUT)


def _validate(args):
    """Options checked before any work (messages name the option): (v, W or None)."""
    from . import budget
    v = args.v if args.v is not None else 4 * args.d
    if v < args.d:
        raise ValueError(f"--v must be >= --d, got v={v} < d={args.d}")
    if 2 * (args.alpha + args.beta) <= 1:
        raise ValueError(f"--beta: need 2(alpha + beta) > 1, got alpha={args.alpha}, beta={args.beta}")
    if not args.frac < 1:
        raise ValueError(f"--frac must be in (0, 1), got {args.frac}")
    if not args.mu_max < 1:
        raise ValueError(f"--mu-max must be in (0, 1), got {args.mu_max}")
    if not args.momentum < 1:
        raise ValueError(f"--momentum must be in [0, 1), got {args.momentum}")
    if args.solver == "exact" and max(args.steps) > MAX_STEPS:
        raise ValueError(f"--steps: horizons above {MAX_STEPS:.0e} need --solver logtime (the exact recursion costs "
                         f"one step per step), got {max(args.steps)}")
    if args.solver == "logtime" and args.objective != "final":
        raise ValueError(f"--objective: --solver logtime optimises the final loss only (use --solver exact, horizons "
                         f"<= {MAX_STEPS:.0e}, for the anytime objective)")
    if args.horizon_free and (args.solver != "exact" or args.optimizer != "sgd" or args.ema is not None
                              or args.objective != "final"):
        raise ValueError("--horizon-free: compares against per-horizon optima of plain SGD for the final loss "
                         "(--solver exact, --optimizer sgd, no --ema, --objective final)")
    if args.momentum_cap == "own" and (args.optimizer != "momentum" or args.solver != "exact"):
        raise ValueError("--momentum-cap own: bounds heavy ball's lr by its own edge at the scheduled mu "
                         "(--optimizer momentum --solver exact)")
    if args.knots > min(args.steps):
        raise ValueError(f"--knots must be <= the smallest horizon in --steps ({min(args.steps)}), got {args.knots}")
    W = opt.load_matrix(args.W_file, "--W-file", (v, args.d)) if args.W_file else None
    budget.check(estimate(args, v), args, say=budget.teller(args, "optimal-schedule"))
    return v, W


def estimate(args, v):
    """Rough memory and time (experiments.budget conventions): per horizon ~ (maxiter + 20%) gradient
    evaluations of the checkpointed recursion plus ~300 forward evaluations for the baselines; log-time: ~160
    forward solves for the baselines and ~1.2 maxiter replays, plus ~30 s compilation of the replay."""
    from . import budget
    size = args.d if (args.W_file or args.spectrum == "sampled") else min(args.d, budget.det_size(args.d))
    if args.solver == "logtime":
        secs = len(args.steps) * (budget.logtime_eval_time(size) * (160 + 1.2 * args.maxiter) + 40.0)
        if args.optimizer == "dana-decaying":   # two state vectors and time-varying coefficients: the T = 1e6, d = 1e5
            secs = 7.5 * secs + 120.0           # run took 108 min wall at about half a core (2026-12-06; 3x said 21)
        elif args.optimizer != "sgd" or args.ema is not None:   # the moment system: ~3x per solve, slower compiles
            secs = 3.0 * secs + 120.0
        mem = [(budget.BASE_BYTES, "--d", "the Python process"),
               (8.0 * min(max(args.steps), LR_LIMIT) * 4 + 8.0 * 4096 * size, "--steps", "schedule samples and the replay")]
        if args.W_file or args.spectrum == "sampled":
            mem.append(budget.sampled_spectrum(args.d, v)[0])
        return budget._estimate(mem, [(secs, "--steps", f"{len(args.steps)} horizon(s) up to T = {max(args.steps):.3g}: "
                                                        f"L-BFGS through the log-time solver ({size:.0f} modes)")])
    per_step = (2e-6 + 3e-8 * size) * budget.optimizer_cost(args).recursion
    secs = sum(T * per_step * (1.2 * args.maxiter + 100) + 20.0 for T in args.steps)
    if args.horizon_free:      # 3 variants x ~2 starts x ~50 gradients at the largest horizon (two state vectors)
        secs += 3 * 100 * 2 * max(args.steps) * per_step
    T = max(args.steps)
    mem = [(budget.BASE_BYTES, "--d", "the Python process"),
           (8.0 * T * 30 + 8.0 * 6 * size * (2 * math.sqrt(T) + 64), "--steps",
            "per-step hyper-parameter arrays and the checkpointed carries")]
    if args.W_file or args.spectrum == "sampled":
        mem.append(budget.sampled_spectrum(args.d, v)[0])
    return budget._estimate(mem, [(secs, "--steps", f"{len(args.steps)} horizon(s) up to T = {T:.3g}: "
                                                    f"L-BFGS on the exact recursion ({size:.0f} modes)")])


def config_of(args, v) -> dict:
    w_sha = opt.file_sha256(args.W_file, "--W-file") if args.W_file else None
    spectrum = "W-file" if args.W_file else args.spectrum
    return dict(command="optimal-schedule", alpha=args.alpha, beta=args.beta, d=args.d, v=v, batch=args.batch,
                steps=list(args.steps), optimizer=args.optimizer, ema=args.ema, objective=args.objective,
                knots=args.knots, space=args.space, frac=args.frac, mu_max=args.mu_max, momentum=args.momentum,
                maxiter=args.maxiter, solver=args.solver, horizon_free=args.horizon_free, label_noise=args.label_noise, spectrum=spectrum, seed=args.seed if spectrum == "sampled" else None,
                W_file=args.W_file, W_sha256=w_sha,
                **({"momentum_cap": "own"} if args.momentum_cap == "own" else {}))   # earlier configurations stay equal


def run(args):
    from plrf.store import prepare_out
    t0 = time.time()
    v, W = _validate(args)
    config = config_of(args, v)
    with prepare_out(args.out, config, overwrite=args.overwrite) as out:
        return _run(args, config, out, t0, W)


def _spectrum(args, v, W):
    import jax

    import plrf
    problem = plrf.Problem(args.alpha, args.beta, v, args.d)
    if W is not None:
        spec = plrf.instance_from_W(problem, W).spectrum
    elif args.spectrum == "sampled":
        spec = plrf.sample_spectrum(problem, key=jax.random.key(args.seed))
    else:
        from theory.deterministic import deterministic_spectrum
        spec = deterministic_spectrum(args.alpha, args.beta, args.d, v=v)
    if args.label_noise:
        from plrf.spectrum import with_label_noise
        spec = with_label_noise(spec, args.label_noise)
    return spec


def _family(args, spec, T):
    from theory.optimal_schedule import ScheduleFamily, anytime_horizons
    return ScheduleFamily(spec, optimizer=args.optimizer, steps=T, batch=args.batch, knots=args.knots,
                          space=args.space, frac=args.frac, mu_max=args.mu_max, alpha=args.alpha, ema=args.ema,
                          horizons=anytime_horizons(T) if args.objective == "anytime" else None,
                          momentum_cap=args.momentum_cap)


def _to_cell(rec):
    """A horizon record -> (arrays, meta) for the cell store."""
    import numpy as np
    arrays = {"z": rec["z"], "curve_steps": rec["curve_steps"], "curve_loss": rec["curve_loss"]}
    for k in ("knot_steps", "sample_steps", "sample_lr"):      # --solver logtime
        if k in rec:
            arrays[k] = rec[k]
    for k, a in rec["knots"].items():
        arrays[f"knots_{k}"] = a
    if rec["steps"] <= LR_LIMIT:
        for k, a in rec["arrays"].items():
            arrays[f"per_step_{k}"] = a
    for k, a in rec.get("baseline_curves", {}).items():
        arrays[f"baseline_curve_{k}"] = a
    meta = {k: rec[k] for k in ("steps", "final_loss", "objective_loss", "shape", "iterations", "evaluations",
                                "optimize_seconds", "message", "edge", "cap", "P_star", "seconds")}
    for k in ("baselines", "best_baseline", "saving", "excess_saving", "baseline_seconds", "tolerance", "resolved",
              "tolerance_optimisation", "rounds"):
        if k in rec:
            meta[k] = rec[k]
    return {k: np.asarray(a) for k, a in arrays.items()}, meta


def _from_cell(cell):
    a, m = cell.arrays, dict(cell.meta)
    rec = dict(m)
    rec["z"] = a["z"]
    rec["curve_steps"], rec["curve_loss"] = a["curve_steps"], a["curve_loss"]
    for k in ("knot_steps", "sample_steps", "sample_lr"):
        if k in a:
            rec[k] = a[k]
    rec["knots"] = {k[len("knots_"):]: a[k] for k in a if k.startswith("knots_")}
    rec["arrays"] = {k[len("per_step_"):]: a[k] for k in a if k.startswith("per_step_")}
    rec["baseline_curves"] = {k[len("baseline_curve_"):]: a[k] for k in a if k.startswith("baseline_curve_")}
    return rec


def _run(args, config, out, t0, W):
    import numpy as np

    from plrf.progress import Progress
    from theory.optimal_schedule import fit_laws, predictions, solve_horizon

    spec = _spectrum(args, config["v"], W)
    store = out.cells()
    records = []
    z0 = None
    with Progress(len(args.steps), desc="optimal-schedule", unit="horizons", quiet=args.quiet) as bar:
        for T in args.steps:
            coords = {"steps": int(T)}
            if store.done(coords):
                rec = _from_cell(store.get(coords))
                bar.skip()
            else:
                if args.solver == "logtime" and (args.optimizer != "sgd" or args.ema is not None):
                    from theory import logtime_grad_optim as LO
                    fam = LO.family(args.optimizer, spec, space=args.space, mu=args.momentum, alpha=args.alpha,
                                    ema=args.ema)
                    rec = LO.solve_horizon(fam, spec, steps=T, knots=args.knots, batch=args.batch, frac=args.frac,
                                           maxiter=ROUND_ITER, rounds=max(1, args.maxiter // ROUND_ITER),
                                           lr_limit=LR_LIMIT, rtol_opt=RTOL_OPT_SYSTEM)
                elif args.solver == "logtime":
                    from theory.logtime_grad import solve_horizon_logtime
                    rec = solve_horizon_logtime(spec, steps=T, knots=args.knots, space=args.space, batch=args.batch,
                                                frac=args.frac, maxiter=ROUND_ITER,
                                                rounds=max(1, args.maxiter // ROUND_ITER), lr_limit=LR_LIMIT)
                else:
                    fam = _family(args, spec, T)
                    if z0 is not None and z0.shape[0] != fam.n_params:
                        z0 = None
                    rec = solve_horizon(fam, z0=z0, maxiter=args.maxiter, mu=args.momentum)
                arrays, meta = _to_cell(rec)
                store.put(coords, arrays, meta)
                rec = _from_cell(store.get(coords)) if store.done(coords) else rec
                bar.update()
            z0 = np.asarray(rec["z"])
            records.append(rec)
    results = _results(args, config, spec, records, fit_laws(records), predictions(args.alpha, args.beta))
    if args.horizon_free:
        results["horizon_free"] = _horizon_free(args, spec, records, store)
    out.save(results, wall_time=time.time() - t0)
    files = _plot_all(results, out.file)
    if not args.quiet:
        top = results["horizons"][-1]
        msg = ", ".join(f"{k} {v:.6g}" for k, v in top["baselines"].items())
        note = ("; NOT RESOLVED: the excess loss P - P* is below 10 x the log-time tolerance at this horizon, the "
                "schedules differ by less than the solver's accuracy" if top.get("resolved") is False else "")
        for name, hf in results.get("horizon_free", {}).items():
            tail = f", tail-average c {hf['c']:.3g}" if hf.get("c") is not None else ""
            print(f"plrf optimal-schedule: horizon-free '{name}' (peak {hf['peak']:.3g}, gamma {hf['gamma']:.3g}, "
                  f"t0 {hf['t0']:.3g}{tail}): loss / per-horizon optimum = "
                  + ", ".join(f"{r:.3f} (T = {t})" for r, t in zip(hf["ratio"], hf["horizons"])))
        print(f"plrf optimal-schedule: T = {top['steps']}: optimal final loss {top['final_loss']:.6g} "
              f"(saving {100 * top['saving']:.2f}% vs {top['best_baseline']}{note}); tuned baselines: {msg}; "
              f"wrote {args.out}/results.json and {', '.join(files)}")
    return results


def _horizon_free(args, spec, records, store) -> dict:
    """theory.optimal_schedule.horizon_free for each variant against the per-horizon optima (one cell each)."""
    import numpy as np

    from theory.optimal_schedule import HORIZON_FREE, horizon_free
    out = {}
    T = [int(r["steps"]) for r in records]
    target = [float(r["final_loss"]) for r in records]
    for name in HORIZON_FREE:
        coords = {"horizon_free": name}
        if not store.done(coords):
            if not args.quiet:
                print(f"plrf optimal-schedule: tuning the horizon-free schedule '{name}' on T = {T}", file=sys.stderr,
                      flush=True)
            r = horizon_free(spec, T, target, variant=name, batch=args.batch, frac=args.frac)
            store.put(coords, {"losses": np.asarray(r["losses"])}, {k: v for k, v in r.items() if k != "losses"})
        c = store.get(coords)
        out[name] = dict(c.meta, losses=np.asarray(c.arrays["losses"]).tolist())
    return out


def _results(args, config, spec, records, laws, preds) -> dict:
    import numpy as np
    hs = []
    for r in records:
        h = dict(steps=int(r["steps"]), final_loss=float(r["final_loss"]), objective_loss=float(r["objective_loss"]),
                 knots={k: np.asarray(v).tolist() for k, v in r["knots"].items()}, shape=r["shape"],
                 baselines={k: b["final_loss"] for k, b in r["baselines"].items()},
                 baseline_details=r["baselines"], best_baseline=r["best_baseline"], saving=r["saving"],
                 excess_saving=r["excess_saving"], iterations=r["iterations"], evaluations=r["evaluations"],
                 seconds=r["seconds"], message=r["message"],
                 curve_steps=np.asarray(r["curve_steps"]).tolist(), curve_loss=np.asarray(r["curve_loss"]).tolist(),
                 baseline_curves={k: np.asarray(c).tolist() for k, c in r["baseline_curves"].items()})
        for k in ("knot_steps", "sample_steps", "sample_lr"):
            if k in r:
                h[k] = np.asarray(r[k]).tolist()
        for k in ("tolerance", "resolved", "tolerance_optimisation", "rounds"):      # --solver logtime
            if k in r:
                h[k] = r[k]
        if r["arrays"]:
            h["lr"] = np.asarray(r["arrays"][{"sgd": "lr", "momentum": "lr", "dana-decaying": "g2"}[args.optimizer]]).tolist()
            for k in ("mu", "eff", "g3"):
                if k in r["arrays"]:
                    h[k] = np.asarray(r["arrays"][k]).tolist()
        hs.append(h)
    top = hs[-1]
    res = dict(config=config, steps=[h["steps"] for h in hs], edge=float(records[-1]["edge"]),
               cap=float(records[-1]["cap"]), P_star=float(spec.P_star), P0=spec.P0,
               final_loss=top["final_loss"], baselines=top["baselines"], knots=top["knots"], shape=top["shape"],
               saving=top["saving"], best_baseline=top["best_baseline"], horizons=hs, laws=laws, predictions=preds)
    for k in ("lr", "mu", "eff", "g3"):
        if k in top:
            res[k] = top[k]
    return res


# ---------------------------------------------------------------------------------------------------------
# figures

def replot(out_dir):
    """Redraw the figures from OUT/results.json (no recomputation)."""
    from plrf.store import read_json
    res = read_json(os.path.join(out_dir, "results.json"))
    return _plot_all(res, lambda name: os.path.join(out_dir, name))


def _plot_all(res, file):
    names = ["optimal_schedule.png", "optimal_schedule_loss.png", "optimal_schedule_laws.png"]
    plot_schedules(res, file(names[0]))
    plot_losses(res, file(names[1]))
    plot_laws(res, file(names[2]))
    return names


def _title(res):
    c = res["config"]
    opt_name = c["optimizer"] + (f", EMA {c['ema']}" if c.get("ema") is not None else "")
    if c.get("label_noise"):
        opt_name += rf", label noise $\sigma^2$={c['label_noise']:g}"
    return (rf"PLRF $\alpha$={c['alpha']}, $\beta$={c['beta']}, d={c['d']}, v={c['v']}, B={c['batch']}, "
            f"{opt_name}, {c['objective']} objective, {c['knots']} knots in {c['space']} t")


def _main_lr(h, optimizer):
    """``(steps, lr)``: every step, or the stored samples of a long log-time horizon; ``None`` if neither."""
    import numpy as np
    key = "eff" if optimizer == "momentum" else "lr"
    if key in h:
        return np.arange(h["steps"], dtype=float), np.asarray(h[key], dtype=float)
    if "sample_lr" in h:
        return np.asarray(h["sample_steps"], dtype=float), np.asarray(h["sample_lr"], dtype=float)
    return None


def plot_schedules(res, path):
    import numpy as np

    from theory.optimal_schedule import unit_shape

    from .plotting import new_figure, save
    c = res["config"]
    edge = res["edge"]
    fig, axes = new_figure(ncols=2, width=5.6, height=4.2)
    ax, ax2 = axes[0]
    cmap = __import__("matplotlib").pyplot.get_cmap("viridis")
    hs = res["horizons"]
    preds = res["predictions"]
    what = {"sgd": "lr", "momentum": "effective step lr/(1-mu)", "dana-decaying": "g2"}[c["optimizer"]]
    for i, h in enumerate(hs):
        got = _main_lr(h, c["optimizer"])
        if got is None:
            continue
        T = h["steps"]
        col = cmap(i / max(len(hs) - 1, 1))
        u, lr = got[0] / T, got[1]
        ax.plot(u, lr / edge, color=col, lw=1.4, label=f"optimal, T = {T:.0e}" + (
            " (at the floor: not resolved)" if h.get("resolved") is False else ""))
        s = 1 - u
        sel = (s > 0) & (lr > 0)
        ax2.plot(s[sel], lr[sel] / h["shape"]["peak"], color=col, lw=1.4,
                 label=rf"T = {T:.0e}: fitted $\delta$ = {h['shape']['delta']:.2f}")
    top = hs[-1]
    T = top["steps"]
    if T <= 100_000:
        for name, st in zip(("constant", "cosine", "linear", "wsd"), (":", "--", "-.", (0, (5, 1, 1, 1)))):
            b = top["baseline_details"].get(name)
            if b is None:
                continue
            shape = unit_shape(name, T, b["cooldown"] or 0.2)
            lab = f"tuned {name}" + (f" (cooldown {b['cooldown']:.2f})" if b["cooldown"] else "") + f", T = {T:.0e}"
            ax.plot(np.arange(T) / T, b["peak"] * shape / edge, color="0.45", ls=st, lw=1.0, label=lab)
    ax.set_xlabel("t / T")
    ax.set_ylabel(f"{what} / max stable SGD lr ({edge:.3g})")
    if c.get("momentum_cap") == "own":   # lr below heavy ball's own edge at mu_t: effective steps far past SGD's
        ax.axhline(res["cap"] / edge, color="tab:red", lw=0.8, ls=":", label=f"{c['frac']} x SGD's edge")
        ax.set_yscale("log")
        top_v = max([np.max(_main_lr(h, c["optimizer"])[1]) / edge for h in hs if _main_lr(h, c["optimizer"])]
                    + [res["cap"] / edge])
        ax.set_ylim(top_v * 1e-5, top_v * 3)    # room below for the legend; values under 1e-5 of the top are cut
        ax.legend(fontsize=6.5, loc="lower center", ncol=2)
        ax.text(0.02, 0.97, f"lr below {c['frac']} x heavy ball's own\nfrozen-map edge at mu_t (--momentum-cap own)",
                transform=ax.transAxes, va="top", fontsize=7)
    else:
        ax.axhline(res["cap"] / edge, color="tab:red", lw=0.8, ls=":", label=f"cap = {c['frac']} x edge")
        ax.set_ylim(0, 1.45)               # headroom: the legend sits above the cap, clear of every curve
        ax.legend(fontsize=6.5, loc="upper center", ncol=2)
    ax.set_title("optimal schedules across horizons (rescaled)", fontsize=9)
    if preds.get("li_delta"):
        s = np.geomspace(1e-3, 1, 50)
        ax2.plot(s, s ** preds["li_delta"], "k--", lw=1.0,
                 label=rf"Li et al. $(1-t/T)^{{{preds['li_delta']:.2g}}}$ ($4\alpha-1$)")
    lo, hi = top["shape"]["end_window"]
    ax2.axvspan(lo, hi, color="0.9", zorder=0, label="fit window")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    lows, starts = [], []
    for h in hs:    # the end (1 - t/T < 1/2) stays in view; a warmup start far below it is cut, with a note
        g = _main_lr(h, c["optimizer"])
        if g is not None:
            r_, end = g[1] / h["shape"]["peak"], g[0] / h["steps"] > 0.5
            if np.any(end & (r_ > 0)):
                lows.append(float(np.min(r_[end & (r_ > 0)])))
            starts.append(float(np.min(r_[~end])) if np.any(~end) else 1.0)
    bottom = min([1e-4] + [0.5 * x for x in lows])
    ax2.set_ylim(bottom, 2)
    if any(x < bottom for x in starts):
        ax2.text(0.02, 0.97, "warmup values near t = 0 (right edge)\nbelow the axis are cut", transform=ax2.transAxes,
                 ha="left", va="top", fontsize=6.5, color="0.3")
    ax2.set_xlabel("1 - t/T")
    ax2.set_ylabel(f"{what} / its peak")
    ax2.set_title("end shape", fontsize=9)
    ax2.legend(fontsize=6.5, loc="lower right")
    fig.suptitle(_title(res), fontsize=8)
    save(fig, path)


def plot_losses(res, path):
    import numpy as np

    from .plotting import new_figure, save
    fig, axes = new_figure(ncols=2, width=5.6, height=4.2)
    ax, ax2 = axes[0]
    top = res["horizons"][-1]
    s = np.asarray(top["curve_steps"], dtype=float)
    sel = s > 0
    for name, cl in top["baseline_curves"].items():
        ax.plot(s[sel], np.asarray(cl, dtype=float)[sel], lw=1.0, ls="--",
                label=f"tuned {name}: {top['baselines'][name]:.4g}")
    ax.plot(s[sel], np.asarray(top["curve_loss"], dtype=float)[sel], "k", lw=1.6,
            label=f"optimal: {top['final_loss']:.4g}")
    ax.axhline(res["P_star"], color="gray", lw=0.8, ls=":", label=r"$P^*$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("steps t")
    ax.set_ylabel("exact expected loss P(t)")
    how = ("log-time solves, local tolerance 1e-4" if res["config"].get("solver") == "logtime"
           else "plrf.expected_loss")
    ax.set_title(f"loss curves, T = {top['steps']:.0e} (final losses: {how})", fontsize=9)
    ax.legend(fontsize=7)
    T = np.array([h["steps"] for h in res["horizons"]], dtype=float)
    names = list(top["baselines"])
    w = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        sav = [1 - h["final_loss"] / h["baselines"][name] for h in res["horizons"]]
        ax2.bar(np.arange(T.size) + (j - (len(names) - 1) / 2) * w, 100 * np.asarray(sav), width=w, label=name)
    ax2.set_xticks(np.arange(T.size))
    ax2.set_xticklabels([f"{t:.0e}" + ("\n(not resolved)" if h.get("resolved") is False else "")
                         for t, h in zip(T, res["horizons"])])
    ax2.set_xlabel("horizon T")
    ax2.set_ylabel("loss saved by the optimal schedule (%)")
    ax2.set_title("savings vs each tuned baseline", fontsize=9)
    ax2.axhline(0, color="k", lw=0.6)
    ax2.legend(fontsize=7)
    fig.suptitle(_title(res), fontsize=8)
    save(fig, path)


def _plot_horizon_free(ax, res, hfs):
    """P(T) / P_opt(T) of each horizon-free schedule (one schedule for every T) and of the per-horizon tuned
    baselines."""
    import numpy as np
    hs = res["horizons"]
    T = np.array([h["steps"] for h in hs], dtype=float)
    opt_loss = np.array([h["final_loss"] for h in hs])
    for name, mk in zip(("wsd", "cosine"), ("s--", "o--")):
        if all(name in h["baselines"] for h in hs):
            ax.semilogx(T, np.array([h["baselines"][name] for h in hs]) / opt_loss, mk, color="0.55", ms=4, lw=0.9,
                        label=f"tuned {name}, per horizon")
    for (name, hf), mk in zip(hfs.items(), ("^", "v", "D", "P", "X")):
        same = name.startswith("power") and hf["gamma"] < 1e-3
        ax.semilogx(hf["horizons"], hf["ratio"], mk + "-", ms=6 if not same else 9, lw=1.0,
                    mfc="none" if same else None,
                    label=f"{name}" + (" (tuned gamma = 0)" if same else "")
                          + (f", c = {hf['c']:.3g}" if hf.get("c") is not None else ""))
    ax.axhline(1, color="k", lw=0.8)
    ax.set_xlabel("horizon T")
    ax.set_ylabel("P(T) / per-horizon optimum")
    ax.set_title("horizon-free: one schedule for every T", fontsize=9)
    top = max([max(hf["ratio"]) for hf in hfs.values()] + [1.0])
    ax.set_ylim(0.95, 1 + 2.0 * (top - 1) + 0.05)     # headroom: the legend sits above the data
    ax.legend(fontsize=6, loc="upper right")


def plot_laws(res, path):
    import numpy as np

    from .plotting import new_figure, save
    laws, preds = res["laws"], res["predictions"]
    T = np.array(laws["steps"], dtype=float)
    hfs = res.get("horizon_free", {})
    fig, axes = new_figure(ncols=4 if hfs else 3, width=4.6, height=3.8)
    fig.subplots_adjust(wspace=0.42)
    ax, ax2, ax3 = axes[0][:3]
    peak = np.array(laws["peak"])
    ax.loglog(T, peak, "o-", label="optimal peak" + (f" (slope {laws['peak_slope']:.2f})" if "peak_slope" in laws else ""))
    ax.axhline(res["cap"], color="tab:red", lw=0.8, ls=":", label="cap")
    if preds.get("li_nu") and T.size >= 1:
        ax.loglog(T, peak[-1] * (T / T[-1]) ** -preds["li_nu"], "k--", lw=1,
                  label=rf"Li et al. slope $-\nu$ = {-preds['li_nu']:.2f}")
    ax.set_xlabel("horizon T")
    ax.set_ylabel("peak lr")
    ax.set_title("peak lr vs T", fontsize=9)
    ax.legend(fontsize=7)
    exc = np.array(laws["excess"])
    ax2.loglog(T, exc, "o-", label="optimal: P(T) - P*" + (f" (slope {laws['excess_slope']:.2f})"
                                                            if "excess_slope" in laws else ""))
    bad = ~np.array(laws.get("resolved", [True] * T.size), bool)
    if bad.any():
        for a_, y_ in ((ax, peak), (ax2, exc)):
            a_.plot(T[bad], y_[bad], "o", mfc="white", mec="tab:red", ms=9, zorder=5,
                    label="at the floor: not resolved, not fitted")
        ax.legend(fontsize=7)
    if "best_baseline_loss" in laws:
        ax2.loglog(T, np.array(laws["best_baseline_loss"]) - res["P_star"], "s--", color="0.5",
                   label="best tuned baseline")
    for key, lab, st in (("li_loss_exponent", "Li et al. (noise floor P*)", "k--"),
                         ("noiseless_loss_exponent", "noiseless window (s)", "k:")):
        if preds.get(key):
            ax2.loglog(T, exc[0] * (T / T[0]) ** -preds[key], st, lw=1, label=f"{lab}: slope {-preds[key]:.2f}")
    ax2.set_xlabel("horizon T")
    ax2.set_ylabel("excess loss P(T) - P*")
    ax2.set_title("loss vs T", fontsize=9)
    ax2.legend(fontsize=6, loc="lower left")
    ax3.semilogx(T, laws["delta"], "o-", label=r"fitted end exponent $\delta$")
    if preds.get("li_delta"):
        ax3.axhline(preds["li_delta"], color="k", ls="--", lw=1, label=rf"Li et al. $4\alpha-1$ = {preds['li_delta']:.2g}")
    ax3.semilogx(T, 10 * np.array(laws["decay_fraction"]), "s-", label="10 x decay fraction (lr < peak/2)")
    ax3.set_xlabel("horizon T")
    ax3.set_title("end exponent and decay fraction", fontsize=9)
    ax3.legend(fontsize=6.5)
    if hfs:
        _plot_horizon_free(axes[0][3], res, hfs)
    fig.suptitle(_title(res), fontsize=8)
    save(fig, path)
