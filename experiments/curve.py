"""One PLRF problem, one schedule, one method, N seeds: the loss curve against the exact expectation.

Writes OUT/results.json (config, versions, steps, loss_mean, loss_stderr, loss_expected on a log-spaced step
grid) and OUT/curve.png (log-log loss vs steps, mean +- standard error, exact expected curve dashed).
"""
from __future__ import annotations

import os
import time

from . import options as opt
from .optim_options import add_optimizer_arguments

DEFAULT_OUT = "runs/curve"


def add_arguments(p):
    p.add_argument("--alpha", type=opt.positive_float, default=1.0, help="data spectrum exponent alpha > 0")
    p.add_argument("--beta", type=opt.real, default=0.7, help="target exponent beta (2(alpha+beta) > 1)")
    p.add_argument("--d", type=opt.int_at_least(1), default=256, help="number of parameters (features) d")
    p.add_argument("--v", type=opt.int_at_least(1), default=None, help="data dimension v >= d; None = 4d")
    p.add_argument("--lr", type=opt.positive_float, default=None,
                   help="peak learning rate eta (of the chosen optimizer, optax meaning); None = 0.5 / sum_{j<=v} j^{-2 alpha} "
                        "(times 1 - momentum for momentum/nesterov; 0.25 / tr K for DANA's g2)")
    p.add_argument("--batch", type=opt.int_at_least(1), default=1, help="batch size B")
    p.add_argument("--steps", type=opt.big_int, default=10_000, help="number of SGD steps (e.g. 1e5)")
    p.add_argument("--schedule", default="constant", help="schedule name: " + ", ".join(_schedule_names()))
    p.add_argument("--method", default="eigen", choices=("eigen", "features", "expected"),
                   help="simulator: eigen (exact in distribution, O(Bd)/step), features (honest SGD on x in R^v, "
                        "O(Bvd)/step), expected (exact expected loss, deterministic)")
    p.add_argument("--seeds", type=opt.int_at_least(1), default=16, help="number of SGD seeds")
    p.add_argument("--rng", default="plrf", choices=("plrf", "jax"),
                   help="Gaussian draws: plrf (Philox + ziggurat, plrf.rng) or jax (jax.random.normal)")
    p.add_argument("--seed", type=opt.int_at_least(0), default=0, help="base seed (W is drawn from it too)")
    p.add_argument("--W-file", dest="W_file", default=None, help="a .npy feature matrix of shape (v, d) to use")
    p.add_argument("--num", type=opt.int_at_least(2), default=100, help="points on the log-spaced step grid")
    p.add_argument("--allow-unstable", action="store_true", help="run even past a stability edge")
    p.add_argument("--overwrite", action="store_true", help="discard results stored in OUT with other settings")
    opt.add_label_noise(p)
    add_optimizer_arguments(p)
    opt.add_common(p, DEFAULT_OUT)


def _schedule_names():
    from plrf.schedules import NAMES
    return NAMES


def _validate(args):
    """Options checked before any work (messages name the option): (v, W or None)."""
    from . import budget
    v = args.v if args.v is not None else 4 * args.d
    if v < args.d:
        raise ValueError(f"--v must be >= --d, got v={v} < d={args.d}")
    if args.schedule not in _schedule_names():
        raise ValueError(f"--schedule must be one of {', '.join(_schedule_names())}, got {args.schedule!r}")
    from .optim_options import check_args
    check_args(args)
    W = opt.load_matrix(args.W_file, "--W-file", (v, args.d)) if args.W_file else None
    budget.check(budget.curve(d=args.d, v=v, batch=args.batch, seeds=args.seeds, steps=args.steps,
                              method=args.method, num=args.num, W_file=args.W_file,
                              cost=budget.optimizer_cost(args)), args,
                 say=budget.teller(args, "curve"))
    return v, W


def config_of(args, v) -> dict:
    """Every option that changes the numbers (cheap: nothing is sampled or solved); the W file by content.
    ``lr`` None: the default of the optimizer (DANA: 0.25 / tr K of the sampled instance)."""
    import plrf

    from .optim_options import default_lr_factor
    problem = plrf.Problem(args.alpha, args.beta, v, args.d)
    lr = args.lr
    if lr is None and not args.optimizer.startswith("dana"):
        lr = problem.default_lr(0.5) * default_lr_factor(args)
    w_sha = opt.file_sha256(args.W_file, "--W-file") if args.W_file else None
    return dict(command="curve", alpha=args.alpha, beta=args.beta, d=args.d, v=v, lr=lr, batch=args.batch,
                steps=args.steps, schedule=args.schedule, method=args.method, seeds=args.seeds, rng=args.rng,
                seed=args.seed, W_file=args.W_file, W_sha256=w_sha, num=args.num,
                optimizer=args.optimizer, momentum=args.momentum, weight_decay=args.weight_decay, ema=args.ema,
                dana_g3=args.dana_g3, dana_delta=args.dana_delta, dana_kappa=args.dana_kappa,
                allow_unstable=bool(args.allow_unstable), flops_per_step=args.d * args.batch,
                **opt.label_noise_config(args))


def run(args):
    from plrf.store import prepare_out

    t0 = time.time()
    v, W = _validate(args)
    config = config_of(args, v)
    with prepare_out(args.out, config, overwrite=args.overwrite) as out:   # before any work; locks OUT
        return _run(args, config, out, t0, W)


def _run(args, config, out, t0, W):
    import jax
    import numpy as np
    import xarray as xr

    import plrf
    from plrf.stability import system_edges

    from .optim_options import build_optimizer

    problem = plrf.Problem(args.alpha, args.beta, config["v"], args.d, label_noise=args.label_noise)
    key = jax.random.key(args.seed)
    k_w, k_sgd = jax.random.split(key)
    if W is not None:
        instance = plrf.instance_from_W(problem, W)
    else:
        instance = plrf.sample_instance(problem, key=k_w)
    spec = instance.spectrum
    lr = config["lr"] if config["lr"] is not None else 0.25 / spec.trace
    schedule = plrf.schedules.by_name(args.schedule, lr, args.steps)
    optimizer = build_optimizer(args, schedule, trace=spec.trace, d=args.d, alpha=args.alpha, beta=args.beta)
    common = dict(steps=args.steps, batch=args.batch, num=args.num, allow_unstable=args.allow_unstable)
    exact = plrf.expected_loss(spec, optimizer, **common)
    if args.method == "expected":
        curve = exact
    else:
        curve = _simulate(instance, optimizer, args, k_sgd, common)
    _, kn = system_edges(spec, optimizer.system(0.0), args.batch)   # = plrf.kernel_norm for SGD
    results = dict(steps=curve.steps, loss_mean=curve.loss, loss_stderr=curve.stderr, loss_expected=exact.loss,
                   diverged_step=curve.diverged_step, P_star=float(spec.P_star), P0=spec.P0, lr=lr,
                   kernel_norm=float(kn), optimizer_config=optimizer.config)
    arrays = {"loss_mean": ("step", np.asarray(curve.loss)), "loss_stderr": ("step", np.asarray(curve.stderr)),
              "loss_expected": ("step", np.asarray(exact.loss))}
    if "average" in optimizer.readouts:    # --ema: the averaged iterate's curve
        m, se = curve.readouts["average"][:2]
        results.update(ema_loss_mean=m, ema_loss_stderr=se, ema_loss_expected=exact.readouts["average"][0])
        arrays.update(ema_loss_mean=("step", np.asarray(m)), ema_loss_stderr=("step", np.asarray(se)),
                      ema_loss_expected=("step", np.asarray(exact.readouts["average"][0])))
    data = xr.Dataset(arrays, coords={"step": np.asarray(curve.steps)})
    out.save(results, data, wall_time=time.time() - t0)
    _plot(curve, exact, spec, config, out.file("curve.png"), lr=lr)
    if not args.quiet:
        print(f"plrf curve: final loss {curve.final:.6g} (exact expectation {exact.final:.6g}, P* "
              f"{float(spec.P_star):.4g}); wrote {args.out}/results.json and curve.png")


def replot(out_dir):
    """Redraw curve.png from OUT/results.json (no recomputation)."""
    from types import SimpleNamespace as NS

    import numpy as np

    from plrf.store import read_json
    r = read_json(os.path.join(out_dir, "results.json"))
    A = lambda x: np.asarray(x, dtype=float)  # noqa: E731
    steps = np.asarray(r["steps"], dtype=np.int64)
    ema = "ema_loss_mean" in r
    curve = NS(steps=steps, loss=A(r["loss_mean"]), stderr=A(r["loss_stderr"]),
               readouts={"average": (A(r["ema_loss_mean"]), A(r["ema_loss_stderr"]))} if ema else None)
    exact = NS(steps=steps, loss=A(r["loss_expected"]),
               readouts={"average": (A(r["ema_loss_expected"]),)} if ema else None)
    _plot(curve, exact, NS(P_star=r["P_star"]), r["config"], os.path.join(out_dir, "curve.png"), lr=r.get("lr"))
    return ["curve.png"]


def _simulate(instance, optimizer, args, key, common):
    """eigen/features runs for all seeds, sharded over ``--devices`` (plrf.sweep); an optimizer with more than
    one read-out (``--ema``) runs through plrf.simulate, which returns every read-out (one device)."""
    import plrf
    from plrf.simulate import _curve
    from plrf.sweep import sweep
    source = instance if args.method == "features" else instance.spectrum
    if len(optimizer.readouts) > 1:
        return plrf.simulate(source, optimizer, method=args.method, key=key, seeds=args.seeds, rng=args.rng,
                             **common)
    kw = dict(common)
    batch = kw.pop("batch")
    res = sweep(source, optimizer, method=args.method, key=key, seeds=args.seeds, batches=(batch,),
                devices=args.devices, quiet=args.quiet, desc="curve", rng=args.rng, **kw)
    return _curve(res.steps, res.loss[0, 0][:, None], res.diverged[0, 0], args.method)


def _plot(curve, exact, spec, config, path, lr=None):
    import numpy as np

    from .plotting import band, new_figure, save
    fig, axes = new_figure()
    ax = axes[0, 0]
    s = curve.steps[1:]
    if config["method"] != "expected":
        band(ax, s, curve.loss[1:], curve.stderr[1:],
             f"{config['method']} {config.get('optimizer', 'sgd')}, mean of {config['seeds']} seeds (± s.e.)")
    ax.plot(s, exact.loss[1:], "k--", lw=1.2, label="exact expected loss")
    ema = getattr(curve, "readouts", None) or {}
    if "average" in ema:   # --ema: the averaged iterate
        if config["method"] != "expected":
            band(ax, s, ema["average"][0][1:], ema["average"][1][1:], f"EMA of the iterates (rate {config['ema']})",
                 color="tab:orange")
        ax.plot(s, exact.readouts["average"][0][1:], ":", color="tab:red", lw=1.2, label="exact expected loss, EMA")
    s2 = config.get("label_noise", 0.0)
    ax.axhline(float(spec.P_star), color="gray", lw=0.8, ls=":",
               label=(r"$P^*$ (limit with $d$ features)" if not s2 else
                      rf"$P^* + \sigma^2$ (limit with $d$ features, label noise $\sigma^2$ = {s2:.3g})"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("steps $r$")
    ax.set_ylabel(r"population loss $P(\theta_r)$")
    sch = config["schedule"] if isinstance(config["schedule"], str) else config["schedule"]["name"]
    peak = lr if lr is not None else config["lr"]
    opt_name = config.get("optimizer", "sgd")
    if opt_name in ("momentum", "nesterov", "schedule-free"):
        opt_name += f" ({'beta' if opt_name == 'schedule-free' else 'mu'} = {config['momentum']})"
    ax.set_title(rf"PLRF $\alpha$={config['alpha']}, $\beta$={config['beta']}, d={config['d']}, v={config['v']}, "
                 f"B={config['batch']}, {opt_name}\n{sch} lr, peak $\\eta$={peak:.3g}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    save(fig, path)
    return fig
