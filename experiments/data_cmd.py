"""``plrf data``: multi-epoch SGD on N stored samples vs theory, population and training loss vs epochs.

One W instance (``--seed``, the W of ``plrf curve --seed``); per SGD seed a sample of ``--samples`` N points is
drawn once (plrf.finite_data, exact in distribution in K's eigenbasis) and SGD (or ``--optimizer``: lr ``--lr``,
batch ``--batch``, ``--sampling`` reshuffle or replacement) runs ``--epochs`` K passes over it. Compared with, on
the same spectrum:

- the deterministic equivalent of full-batch training on N samples with the same optimizer, hyper-parameters
  and number of steps (plain SGD: theory.finite_data.gd_losses, full-batch GD; any other optimizer:
  theory.finite_data.full_batch_losses, for the reported read-out): the mean stochastic step is the full-batch
  step, so it is the simulated curve without the gradient noise (exact as lr -> 0 at fixed lr x steps; the
  SGD-noise correction on a finite sample is not derived);
- the exact one-pass theory (plrf.expected_loss): the same SGD with a fresh sample at every step (K N samples).

Writes OUT/results.json (config, the step grid, epochs, simulated means and standard errors, both theories)
and OUT/data.png. A finished OUT is not recomputed (the figure is redrawn); the simulation is stored as soon as
it finishes (status "partial") and reused by a rerun with the same configuration.
"""
from __future__ import annotations

import math
import os
import sys
import time

from . import optim_options
from . import budget
from . import options as opt

DEFAULT_OUT = "runs/data"
D_MAX = 4096


def add_arguments(p):
    p.add_argument("--alpha", type=opt.positive_float, default=1.0, help="data spectrum exponent alpha > 0")
    p.add_argument("--beta", type=opt.real, default=0.7, help="target exponent beta (2(alpha+beta) > 1)")
    p.add_argument("--d", type=opt.int_at_least(1), default=128, help=f"number of parameters d (<= {D_MAX})")
    p.add_argument("--v", type=opt.int_at_least(1), default=None, help="data dimension v >= d; None = 4d")
    p.add_argument("--seed", type=opt.int_at_least(0), default=0, help="seed of W (the W of `plrf curve --seed`)")
    p.add_argument("--samples", type=opt.int_at_least(1), default=128, metavar="N",
                   help="number N of stored training samples (default: %(default)s)")
    p.add_argument("--epochs", type=opt.int_at_least(1), default=64, metavar="K",
                   help="passes over the sample (default: %(default)s)")
    p.add_argument("--batch", type=opt.int_at_least(1), default=4, help="batch size B <= N (default: %(default)s)")
    p.add_argument("--lr", type=opt.positive_float, default=None,
                   help="constant learning rate eta (momentum/Nesterov: optax's lr); None = 0.5 / tr K (x (1 - mu) for "
                        "momentum and Nesterov) (default: %(default)s)")
    p.add_argument("--sampling", default="reshuffle", choices=("reshuffle", "replacement"),
                   help="a fresh permutation each epoch, or B indices with replacement each step")
    p.add_argument("--seeds", type=opt.int_at_least(2), default=16,
                   help="SGD seeds (each draws its own sample and order) (default: %(default)s)")
    p.add_argument("--num", type=opt.int_at_least(4), default=40, help="points of the log step grid")
    p.add_argument("--overwrite", action="store_true", help="discard results stored in OUT with other settings")
    opt.add_label_noise(p)
    optim_options.add_optimizer_arguments(p)
    opt.add_common(p, DEFAULT_OUT)


def config_of(args, v, lr) -> dict:
    cfg = dict(command="data", alpha=args.alpha, beta=args.beta, d=args.d, v=v, seed=args.seed,
               samples=args.samples, epochs=args.epochs, batch=args.batch, lr=lr, lr_option=args.lr,
               sampling=args.sampling, seeds=args.seeds, num=args.num)
    cfg.update(opt.label_noise_config(args))
    cfg.update(optim_options.config_entries(args))      # empty for plain SGD
    return cfg


def check_args(args):
    """Fail-fast checks (before any work), each naming its option and the valid range."""
    from plrf.finite_data import MAX_BYTES, memory_bytes
    v = opt.problem_v(args)
    optim_options.check_args(args)
    if args.d > D_MAX:
        raise ValueError(f"--d must be in [1, {D_MAX}] for plrf data, got {args.d}")
    if args.batch > args.samples:
        raise ValueError(f"--batch must be in [1, --samples = {args.samples}], got {args.batch}")
    steps = math.ceil(args.epochs * args.samples / args.batch)
    if steps > 10 ** 7:
        raise ValueError(f"--epochs: {args.epochs} epochs of {args.samples} samples at batch {args.batch} are "
                         f"{steps} steps; at most 1e7 (lower --epochs or --samples, or raise --batch)")
    need = memory_bytes(args.d, args.samples, steps, args.batch, args.seeds, args.sampling)
    if need > MAX_BYTES:
        raise ValueError(f"--samples/--seeds: the simulation needs about {need / 1e9:.2f} GB (8 N (d+2) + 4 steps B "
                         f"bytes per seed), over {MAX_BYTES / 1e9:.1f} GB; lower --samples, --epochs or --seeds")
    est = 1e-9 * steps * args.batch * args.d * args.seeds * 3 + 1e-9 * args.num * args.samples * args.d * args.seeds
    if est > args.time_limit * 3600:
        raise ValueError(f"--time-limit: estimated {est / 3600:.2g} h exceeds {args.time_limit} h")
    return v, steps


def run(args):
    import numpy as np

    import plrf
    from plrf.store import prepare_out

    t0 = time.time()
    v, steps = check_args(args)
    import jax
    problem = plrf.Problem(args.alpha, args.beta, v, args.d, label_noise=args.label_noise)
    k_w, _ = jax.random.split(jax.random.key(args.seed))   # the W of `plrf curve --seed`
    spec = plrf.spectrum.expand(plrf.sample_spectrum(problem, key=k_w))
    spec = plrf.spectrum.with_label_noise(spec, args.label_noise)
    lr = float(args.lr) if args.lr is not None else 0.5 / spec.trace * optim_options.default_lr_factor(args)
    if optim_options.plain_sgd(args) and lr * spec.lam_max >= 2:
        raise ValueError(f"--lr {lr:.4g} is unstable: lr x lambda_max(K) = {lr * spec.lam_max:.3g} >= 2; "
                         f"lower --lr (default 0.5 / tr K = {0.5 / spec.trace:.4g})")
    optimizer = optim_options.build_optimizer(args, plrf.schedules.constant(lr), trace=spec.trace, d=args.d,
                                              alpha=args.alpha, beta=args.beta)
    from plrf.simulate import check_optimizer
    check_optimizer(spec, optimizer, args.batch, _grid(args, steps))   # before any work
    config = config_of(args, v, lr)
    with prepare_out(args.out, config, overwrite=args.overwrite) as out:
        prev = out.previous or {}
        if prev.get("status") == "complete":
            plot(prev, config, out.file("data.png"))
            if not args.quiet:
                print(f"plrf data: {args.out} already complete; redrew data.png", file=sys.stderr)
            return
        return _run(args, config, out, t0, spec, lr, optimizer, steps, prev, np)


def _say(args, t0, msg):
    say = budget.teller(args, "data")
    if say:
        say(f"{msg} [{time.time() - t0:.0f} s]")


def _grid(args, steps):
    """The reported steps: log-spaced, with step 0 and the end of the first epoch."""
    import numpy as np

    import plrf
    grid = plrf.log_grid(steps, args.num)
    grid = np.unique(np.concatenate([[0], grid, [max(1, args.samples // args.batch)]]))
    return grid[grid <= steps]


def _readout(args) -> str:
    """The read-out the command reports: the average when --ema is set, else the iterate."""
    return "average" if getattr(args, "ema", None) is not None else "iterate"


def _run(args, config, out, t0, spec, lr, optimizer, steps, prev, np):
    import jax

    import plrf
    from plrf.finite_data import simulate_finite
    from theory.finite_data import full_batch_losses, gd_losses

    N, B = args.samples, args.batch
    grid = _grid(args, steps)
    readout = _readout(args)
    if "sim" in prev and prev["sim"].get("steps") == [int(g) for g in grid]:
        sim = prev["sim"]
        _say(args, t0, "simulation reused from an earlier session")
    else:
        _say(args, t0, f"simulating {args.seeds} seeds x {steps} steps (d = {args.d}, N = {N}, B = {B})")
        fc = simulate_finite(spec, optimizer, samples=N, steps=steps, batch=B, sampling=args.sampling,
                             seeds=args.seeds, key=jax.random.key(args.seed + 1), grid=grid)
        j = fc.readouts.index(readout) if readout in fc.readouts else 0
        pop, pop_se, train, train_se = fc.readout(fc.readouts[j])
        gap = fc.pop_readouts_per_seed[:, j] - fc.train_readouts_per_seed[:, j]   # paired per seed
        sim = dict(steps=[int(g) for g in fc.steps], readout=fc.readouts[j], pop=pop, pop_stderr=pop_se,
                   train=train, train_stderr=train_se, gap=gap.mean(0),
                   gap_stderr=gap.std(0, ddof=1) / np.sqrt(gap.shape[0]))
        out.save(dict(sim=sim), wall_time=time.time() - t0, status="partial")
    name = optim_options.label(args)
    _say(args, t0, f"theory: full-batch {name} deterministic equivalent and exact one-pass")
    lam, w = np.asarray(spec.lam), np.asarray(spec.w)
    what = (f"deterministic equivalent of full-batch {'GD' if name == 'sgd' else name} on the N samples (same "
            f"hyper-parameters and steps{', the ' + readout if readout != 'iterate' else ''}); the SGD-noise "
            "correction on the finite sample is not included")
    try:
        if optim_options.plain_sgd(args):
            gd = gd_losses(lam, w, float(spec.P_star), N, grid, lr=lr)
            gd_res = dict(pop=gd.pop, train=gd.train, optimizer=name, readout="iterate", note=what)
        else:
            fb = full_batch_losses(lam, w, float(spec.P_star), N, grid, optimizer)
            pop_th, train_th = fb.readout(readout if readout in fb.readouts else fb.readouts[0])
            gd_res = dict(pop=pop_th, train=train_th, optimizer=name, readout=readout, note=what)
    except ValueError as err:           # lr too large for the contour method: report, do not fail the run
        gd_res = dict(pop=None, train=None, optimizer=name, readout=readout, note=str(err))
    ex = plrf.expected_loss(spec, optimizer, steps=steps, batch=B, grid=grid)
    one = ex if readout == "iterate" else ex._replace(loss=np.asarray(ex.readouts[readout][0]))
    epochs = np.asarray(grid, float) * B / N
    pop = np.asarray(sim["pop"], float)
    z_gd = None
    if gd_res["pop"] is not None:
        se = np.maximum(np.asarray(sim["pop_stderr"], float), 1e-300)
        z_gd = (pop - gd_res["pop"]) / se
    n_seen = np.asarray(grid, float) * B
    E_sim = effective_from_curve(n_seen, one.loss, pop) / N
    E_gd = None if gd_res["pop"] is None else effective_from_curve(n_seen, one.loss, gd_res["pop"]) / N
    results = dict(
        steps=grid, epochs=epochs, E_sim=E_sim, E_gd_theory=E_gd, sim=sim, gd_theory=gd_res, onepass_exact=dict(pop=one.loss),
        P_star=float(spec.P_star), P0=spec.P0, trace_K=spec.trace, lam_max=spec.lam_max, lr=lr,
        final=dict(pop_sim=float(pop[-1]), pop_sim_stderr=float(sim["pop_stderr"][-1]),
                   train_sim=float(sim["train"][-1]),
                   pop_gd_theory=None if gd_res["pop"] is None else float(gd_res["pop"][-1]),
                   train_gd_theory=None if gd_res["train"] is None else float(gd_res["train"][-1]),
                   pop_onepass=float(one.loss[-1])),
        gd_rel_gap_max=None if gd_res["pop"] is None else float(np.max(np.abs(pop / gd_res["pop"] - 1))),
        gd_z_max=None if z_gd is None else float(np.max(np.abs(z_gd[1:]))),
        note=f"gd_theory: {what} (the mean stochastic step without its noise); onepass_exact: fresh samples "
             "every step")
    out.save(results, wall_time=time.time() - t0)
    plot(_as_read(results, config), config, out.file("data.png"))
    f = results["final"]
    th = f"full-batch {'GD' if name == 'sgd' else name} theory"
    _say(args, t0, f"effective data multiplier after {args.epochs} epochs: E = {E_sim[-1]:.3g} (simulation), "
                   f"{'-' if E_gd is None else format(E_gd[-1], '.3g')} ({th})")
    pth = "-" if f["pop_gd_theory"] is None else format(f["pop_gd_theory"], ".4g")
    _say(args, t0, f"after {args.epochs} epochs: population {f['pop_sim']:.4g} +- {f['pop_sim_stderr']:.2g} "
                   f"({th} {pth}, one-pass with {args.epochs * N} fresh samples "
                   f"{f['pop_onepass']:.4g}); training {f['train_sim']:.4g}; wrote {args.out}/results.json and "
                   "data.png")


def effective_from_curve(n, one_pass, losses):
    """Fresh samples n_fresh at which the one-pass curve ``one_pass`` (on samples ``n``) reaches each of
    ``losses`` (log-log interpolation on the running minimum of the curve); nan where it is not reached."""
    import numpy as np
    n, one_pass, losses = (np.asarray(a, float) for a in (n, one_pass, losses))
    m = n > 0
    n, env = n[m], np.minimum.accumulate(one_pass[m])
    out = np.full(losses.shape, np.nan)
    ok = (losses >= env[-1]) & (losses <= env[0])
    # env is non-increasing: interpolate log n against -log env (increasing)
    x, idx = np.unique(-np.log(env), return_index=True)
    out[ok] = np.exp(np.interp(-np.log(losses[ok]), x, np.log(n[idx])))
    return out


def _as_read(results, config):
    """The results as they read back from results.json (lists), for the plot."""
    from plrf.store import to_jsonable
    r = to_jsonable(dict(results))
    r["config"] = config
    return r


def replot(out_dir):
    from plrf.store import read_json
    r = read_json(os.path.join(out_dir, "results.json"))
    plot(r, r["config"], os.path.join(out_dir, "data.png"))
    return ["data.png"]


def plot(r, config, path):
    import numpy as np

    from .data_frontier_cmd import _no_minor_labels, effective_panel
    from .plotting import band, new_figure, save
    fig, axes = new_figure(ncols=3, width=5.4)
    fig.subplots_adjust(wspace=0.32)
    ep = np.asarray(r["epochs"], float)
    m = ep > 0
    sim, gd, one = r["sim"], r["gd_theory"], r["onepass_exact"]
    name = "SGD" if config.get("optimizer", "sgd") == "sgd" else config["optimizer"]
    th_opt = gd.get("optimizer") or "sgd"
    th = ("GD" if th_opt == "sgd" else f"full-batch {th_opt}") + " det. equivalent"
    ax = axes[0, 0]
    band(ax, ep[m], np.asarray(sim["pop"], float)[m], np.asarray(sim["pop_stderr"], float)[m],
         f"population, {name} sim ({config['seeds']} seeds)", color="tab:blue")
    band(ax, ep[m], np.asarray(sim["train"], float)[m], np.asarray(sim["train_stderr"], float)[m],
         f"training, {name} sim", color="tab:orange")
    if gd.get("pop") is not None:
        ax.plot(ep[m], np.asarray(gd["pop"], float)[m], "k--", lw=1.2, label=f"population, {th}")
        ax.plot(ep[m], np.asarray(gd["train"], float)[m], "--", color="tab:red", lw=1.2,
                label=f"training, {th}")
    ax.plot(ep[m], np.asarray(one["pop"], float)[m], ":", color="tab:green", lw=1.8,
            label="population, one pass (fresh samples), exact")
    ax.axhline(r["P_star"], color="0.5", lw=0.8, label="P* (+ label noise)")
    ax.axvline(1.0, color="0.7", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("epochs over the N stored samples (one pass: samples / N)")
    ax.set_ylabel("loss (no 1/2)")
    what = config.get("optimizer", "sgd") + (f" (loss of the {sim['readout']})" if sim.get("readout", "iterate") != "iterate"
                                             else "")
    ax.set_title(rf"PLRF $\alpha$={config['alpha']}, $\beta$={config['beta']}, d={config['d']}, "
                 f"N={config['samples']}, B={config['batch']}, lr={r['lr']:.3g}, {config['sampling']}, {what}",
                 fontsize=9)
    ax.legend(fontsize=6, loc="upper right")
    ax.grid(True, which="major", alpha=0.3)
    ax = axes[0, 1]
    gap = np.asarray(sim["gap"], float)
    gse = np.asarray(sim["gap_stderr"], float)
    band(ax, ep[m], gap[m], gse[m], f"{name} sim (mean +- s.e. of the paired gap)", color="tab:purple")
    if gd.get("pop") is not None:
        ax.plot(ep[m], (np.asarray(gd["pop"], float) - np.asarray(gd["train"], float))[m], "k--", lw=1.2,
                label=th)
    ax.set_xscale("log")
    ax.set_xlabel("epochs")
    ax.set_ylabel("population - training loss")
    ax.set_yscale("symlog", linthresh=max(1e-6, float(np.nanmax(np.abs(gap[m]))) * 1e-2))
    ax.set_title("train-test gap (opens with reuse)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    for ax in axes[0, :2]:
        _no_minor_labels(ax)
    curves = [(np.asarray(r["E_sim"], float)[m], dict(marker="o", ms=3, color="tab:blue", label=f"{name} simulation"))]
    if r.get("E_gd_theory") is not None:
        curves.append((np.asarray(r["E_gd_theory"], float)[m], dict(ls="--", color="k", lw=1.2,
                                                                     label=th)))
    effective_panel(axes[0, 2], ep[m], curves, "effective data multiplier (vs the exact one-pass curve)",
                    ylabel="E = fresh samples of equal one-pass loss / N")
    save(fig, path)
    return fig


# ---------------------------------------------------------------------------------------------------------
# E(K, N) across N and the data-constrained frontier: `plrf data-frontier` (experiments/data_frontier_cmd.py)


def exact_gd(lam, w, P_star, N, times, lr, draws, seed=0):
    """Exact full-batch GD on sampled (Z, y) (numpy eigendecomposition of S): (population, training) per draw."""
    import numpy as np
    rng = np.random.default_rng(seed)
    ts = np.sqrt(w / lam)
    P, T = np.empty((draws, len(times))), np.empty((draws, len(times)))
    for s in range(draws):
        Z = rng.standard_normal((N, lam.size)) * np.sqrt(lam)
        y = Z @ ts + np.sqrt(P_star) * rng.standard_normal(N)
        ev, U = np.linalg.eigh(Z.T @ Z / N)
        c = U.T @ (Z.T @ y / N)
        pos = ev > 1e-12
        for i, t in enumerate(times):
            f = np.where(pos, (1 - (1 - lr * ev) ** t) / np.where(pos, ev, 1), 0.0)
            th = U @ (f * c)
            P[s, i] = P_star + np.sum(lam * (th - ts) ** 2)
            T[s, i] = np.mean((Z @ th - y) ** 2)
    return P, T


def plot_gd_check(path, Ns=(100, 200, 400), draws=20):
    """Figure: the GD deterministic equivalent vs exact full-batch GD on sampled (Z, y), PLRF alpha 1, beta .7,
    v = 800, d = 200, label noise sigma = 0.05 (the numbers of the tests)."""
    import jax
    import numpy as np

    import plrf
    from theory.finite_data import gd_losses

    from .plotting import new_figure, save
    spec = plrf.sample_instance(plrf.Problem(alpha=1.0, beta=0.7, v=800, d=200, label_noise=0.05 ** 2),
                                key=jax.random.key(5)).spectrum
    lam, w, Ps = np.asarray(spec.lam), np.asarray(spec.w), float(spec.P_star)
    fig, axes = new_figure(ncols=2, width=5.4)
    fig.subplots_adjust(wspace=0.28)
    ts_sim = np.unique(np.geomspace(1, 1e5, 16).astype(int))
    ts_th = np.geomspace(1, 1e5, 200)
    for N, col in zip(Ns, ("tab:blue", "tab:orange", "tab:green")):
        lr = 0.5 / (np.sqrt(lam.max()) + np.sqrt(lam.sum() / N)) ** 2
        th = gd_losses(lam, w, Ps, N, ts_th, lr=lr)
        P, T = exact_gd(lam, w, Ps, N, ts_sim, lr, draws)
        for ax, m, ref in ((axes[0, 0], P, th.pop), (axes[0, 1], T, th.train)):
            ax.plot(ts_th, ref, "-", color=col, lw=1.2, label=f"N = {N}: deterministic equivalent")
            ax.errorbar(ts_sim, m.mean(0), yerr=m.std(0, ddof=1) / np.sqrt(draws), fmt="o", ms=3, color=col,
                        label=f"N = {N}: exact GD, {draws} draws (mean +- s.e.)")
    for ax, name in ((axes[0, 0], "population loss"), (axes[0, 1], "training loss")):
        ax.axhline(Ps, color="0.5", lw=0.8, label="P* + label noise")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("GD steps t (lr = 0.5 / (sqrt(lam_max) + sqrt(tr K / N))^2)")
        ax.set_ylabel(name)
        ax.legend(fontsize=6.5)
        ax.grid(True, which="major", alpha=0.3)
    axes[0, 0].set_title(r"full-batch GD on N samples, PLRF $\alpha$=1, $\beta$=0.7, d=200, $\sigma$=0.05",
                         fontsize=9)
    axes[0, 1].set_title("training loss on the N samples", fontsize=9)
    save(fig, path)


if __name__ == "__main__":   # python -m experiments.data_cmd gd-check OUT.png
    if len(sys.argv) == 3 and sys.argv[1] == "gd-check":
        plot_gd_check(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] in ("effective", "frontier"):
        sys.exit("E(K, N) and the data-constrained frontier are the command `plrf data-frontier` now "
                 "(python -m experiments.cli data-frontier --help)")
    sys.exit("usage: python -m experiments.data_cmd gd-check OUT.png")
