"""One PLRF problem, one schedule, one method, N seeds: the loss curve against the exact expectation.

Writes OUT/results.json (config, versions, steps, loss_mean, loss_stderr, loss_expected on a log-spaced step
grid) and OUT/curve.png (log-log loss vs steps, mean +- standard error, exact expected curve dashed).
"""
from __future__ import annotations

import os
import time

from . import options as opt

DEFAULT_OUT = "runs/curve"


def add_arguments(p):
    p.add_argument("--alpha", type=opt.positive_float, default=1.0, help="data spectrum exponent alpha > 0")
    p.add_argument("--beta", type=opt.real, default=0.7, help="target exponent beta (2(alpha+beta) > 1)")
    p.add_argument("--d", type=opt.int_at_least(1), default=256, help="number of parameters (features) d")
    p.add_argument("--v", type=opt.int_at_least(1), default=None, help="data dimension v >= d; None = 4d")
    p.add_argument("--lr", type=opt.positive_float, default=None,
                   help="peak learning rate eta; None = 0.5 / sum_{j<=v} j^{-2 alpha}")
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
    W = opt.load_matrix(args.W_file, "--W-file", (v, args.d)) if args.W_file else None
    budget.check(budget.curve(d=args.d, v=v, batch=args.batch, seeds=args.seeds, steps=args.steps,
                              method=args.method, num=args.num, W_file=args.W_file), args,
                 say=budget.teller(args, "curve"))
    return v, W


def run(args):
    import jax

    import plrf
    from plrf import store

    t0 = time.time()
    v, W = _validate(args)
    problem = plrf.Problem(args.alpha, args.beta, v, args.d)
    key = jax.random.key(args.seed)
    k_w, k_sgd = jax.random.split(key)
    if W is not None:
        instance = plrf.instance_from_W(problem, W)
    else:
        instance = plrf.sample_instance(problem, key=k_w)
    lr = args.lr if args.lr is not None else problem.default_lr(0.5)
    schedule = plrf.schedules.by_name(args.schedule, lr, args.steps)
    common = dict(steps=args.steps, batch=args.batch, num=args.num, allow_unstable=args.allow_unstable)
    exact = plrf.expected_loss(instance.spectrum, schedule, **common)
    if args.method == "expected":
        curve = exact
    else:
        curve = _simulate(instance, schedule, args, k_sgd, common)
    config = dict(command="curve", alpha=args.alpha, beta=args.beta, d=args.d, v=v, lr=lr, batch=args.batch,
                  steps=args.steps, schedule=schedule.config, method=args.method, seeds=args.seeds, rng=args.rng,
                  seed=args.seed, W_file=args.W_file, num=args.num, flops_per_step=args.d * args.batch)
    os.makedirs(args.out, exist_ok=True)
    results = dict(config=config, metadata=store.metadata(config, wall_time=time.time() - t0),
                   steps=curve.steps, loss_mean=curve.loss, loss_stderr=curve.stderr, loss_expected=exact.loss,
                   diverged_step=curve.diverged_step, P_star=float(instance.spectrum.P_star),
                   P0=instance.spectrum.P0, kernel_norm=float(plrf.kernel_norm(instance.spectrum, lr, args.batch)))
    store.write_json(os.path.join(args.out, "results.json"), results)
    _plot(curve, exact, instance.spectrum, config, os.path.join(args.out, "curve.png"))
    if not args.quiet:
        print(f"plrf curve: final loss {curve.final:.6g} (exact expectation {exact.final:.6g}, P* "
              f"{float(instance.spectrum.P_star):.4g}); wrote {args.out}/results.json and curve.png")


def _simulate(instance, schedule, args, key, common):
    """eigen/features runs for all seeds, sharded over ``--devices`` (plrf.sweep)."""
    from plrf.simulate import _curve
    from plrf.sweep import sweep
    source = instance if args.method == "features" else instance.spectrum
    kw = dict(common)
    batch = kw.pop("batch")
    res = sweep(source, schedule, method=args.method, key=key, seeds=args.seeds, batches=(batch,),
                devices=args.devices, quiet=args.quiet, desc="curve", rng=args.rng, **kw)
    return _curve(res.steps, res.loss[0, 0], res.diverged[0, 0], args.method)


def _plot(curve, exact, spec, config, path):
    import numpy as np

    from .plotting import band, new_figure, save
    fig, axes = new_figure()
    ax = axes[0, 0]
    s = curve.steps[1:]
    if config["method"] != "expected":
        band(ax, s, curve.loss[1:], curve.stderr[1:],
             f"{config['method']} SGD, mean of {config['seeds']} seeds (± s.e.)")
    ax.plot(s, exact.loss[1:], "k--", lw=1.2, label="exact expected loss")
    ax.axhline(float(spec.P_star), color="gray", lw=0.8, ls=":", label=r"$P^*$ (limit with $d$ features)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("SGD steps $r$")
    ax.set_ylabel(r"population loss $P(\theta_r)$")
    sch = config["schedule"]["name"]
    ax.set_title(rf"PLRF $\alpha$={config['alpha']}, $\beta$={config['beta']}, d={config['d']}, v={config['v']}, "
                 f"B={config['batch']}\n{sch} lr, peak $\\eta$={config['lr']:.3g}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    save(fig, path)
