"""Command-line options that choose the optimizer (``--optimizer`` and its hyper-parameters), shared by the
commands, and the one function that turns them into a :class:`plrf.optimizers.Optimizer`.

Conventions (README "Optimizers"): ``--lr`` / ``--schedule`` set the learning-rate schedule of the optimizer's
own learning rate (optax meaning: ``sgd(lr, momentum=mu)`` steps ``lr`` times the momentum buffer, so its
effective step is ``lr / (1 - mu)``); when ``--lr`` is not given, momentum and Nesterov use the SGD default times
``(1 - mu)`` (the same effective step as SGD). ``--weight-decay L`` means ``wd_t = lr_t L`` (decoupled, as in
AdamW); ``--ema R`` is the averaging rate ``rho = R`` (optax decay ``1 - R``) or ``uniform`` (``rho_t = 1/(t+1)``).
DANA: ``g2`` follows ``--lr``/``--schedule`` (default ``0.25 / tr K``), ``g3 = --dana-g3`` (default
``0.125/tr K``, DANA-constant ``0.125/(tr K d)``), ``Delta(t) = delta/(delta + t)`` with ``--dana-delta`` (default
8), DANA-decaying ``g3(t) = g3 (1 + t)^-kappa`` with ``--dana-kappa`` (default ``1/(2 alpha)``): the values of
the authors' PLRF comparison script (plrf.optimizers.dana_defaults).
"""
from __future__ import annotations

import argparse

from . import options as opt

OPTIMIZERS = ("sgd", "momentum", "nesterov", "dana-constant", "dana-decaying", "schedule-free")


def _ema(text):
    if text == "uniform":
        return text
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate in (0, 1] or 'uniform', got {text!r}")
    if not (0 < x <= 1):
        raise argparse.ArgumentTypeError(f"must be a rate in (0, 1] or 'uniform', got {text}")
    return x


def add_optimizer_arguments(p):
    g = p.add_argument_group("optimizer")
    g.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS,
                   help="linear optimizer (plrf.optimizers): momentum/nesterov as optax.sgd(lr, momentum, nesterov), "
                        "DANA as Ferbach et al. 2025, schedule-free SGD as Defazio et al. 2024")
    g.add_argument("--momentum", type=opt._num(float, 0.0, 1.0, lo_open=False), default=0.9,
                   help="momentum mu of momentum/nesterov (optax meaning); schedule-free's interpolation beta")
    g.add_argument("--weight-decay", dest="weight_decay", type=opt._num(float, 0.0), default=0.0,
                   help="decoupled weight decay L: wd_t = lr_t * L (as in AdamW; not in the momentum buffer)")
    g.add_argument("--ema", type=_ema, default=None,
                   help="average the iterates: a rate R in (0, 1] (avg <- (1-R) avg + R theta, optax decay 1-R, "
                        "no debiasing) or 'uniform' (R_t = 1/(t+1)); its loss is reported too")
    g.add_argument("--dana-g3", dest="dana_g3", type=opt.positive_float, default=None,
                   help="DANA's g3 (default 0.125/tr K for dana-decaying, 0.125/(tr K d) for dana-constant)")
    g.add_argument("--dana-delta", dest="dana_delta", type=opt.positive_float, default=None,
                   help="DANA's delta in Delta(t) = delta/(delta + t) (default 8)")
    g.add_argument("--dana-kappa", dest="dana_kappa", type=opt._num(float, 0.0), default=None,
                   help="dana-decaying's exponent: g3(t) = g3 (1 + t)^-kappa (default 1/(2 alpha))")


def default_lr_factor(args) -> float:
    """Multiplier of the SGD default lr when ``--lr`` is not given: ``1 - mu`` for momentum and Nesterov."""
    if getattr(args, "optimizer", "sgd") in ("momentum", "nesterov"):
        return 1.0 - args.momentum
    return 1.0


def effective_lr(args, lr: float) -> float:
    """The plain-SGD learning rate comparable to ``lr`` of ``args.optimizer``: ``lr / (1 - mu)`` for heavy ball and
    Nesterov (their steady-state step), ``lr`` (g2) otherwise."""
    if getattr(args, "optimizer", "sgd") in ("momentum", "nesterov"):
        return lr / (1.0 - args.momentum)
    return lr


def build_optimizer(args, schedule, *, trace: float, d: int, alpha: float, beta: float):
    """The optimizer chosen by ``args`` with learning-rate schedule ``schedule`` (plrf.schedules closure)."""
    from plrf import optimizers as O
    name = getattr(args, "optimizer", "sgd")
    wd, ema = getattr(args, "weight_decay", 0.0), getattr(args, "ema", None)
    if name == "sgd":
        return O.sgd(schedule, weight_decay=wd, ema=ema)
    if name == "momentum":
        return O.momentum(schedule, args.momentum, weight_decay=wd, ema=ema)
    if name == "nesterov":
        return O.nesterov(schedule, args.momentum, weight_decay=wd, ema=ema)
    if name == "schedule-free":
        if wd or ema is not None:
            raise ValueError("--optimizer schedule-free takes neither --weight-decay nor --ema (it averages itself)")
        if args.momentum <= 0:
            raise ValueError("--momentum (schedule-free's beta) must be in (0, 1] for --optimizer schedule-free")
        return O.schedule_free(schedule, args.momentum)
    dd = O.dana_defaults(trace, d, alpha, beta)
    delta = args.dana_delta if args.dana_delta is not None else dd["delta"]
    if name == "dana-decaying":
        g3 = args.dana_g3 if args.dana_g3 is not None else dd["g3_decaying"]
        kappa = args.dana_kappa if args.dana_kappa is not None else dd["kappa"]
        return O.dana_decaying(schedule, g3, delta=delta, kappa=kappa, weight_decay=wd, ema=ema)
    if name == "dana-constant":
        g3 = args.dana_g3 if args.dana_g3 is not None else dd["g3_constant"]
        return O.dana_constant(schedule, g3, delta=delta, weight_decay=wd, ema=ema)
    raise ValueError(f"--optimizer must be one of {OPTIMIZERS}, got {name!r}")


def plain_sgd(args) -> bool:
    """No optimizer options beyond SGD's (the commands then keep their SGD configuration and fast paths)."""
    return getattr(args, "optimizer", "sgd") == "sgd" and not getattr(args, "weight_decay", 0.0) \
        and getattr(args, "ema", None) is None


def label(args) -> str:
    """The optimizer with the options that change its numbers, as a tag for cells and results: ``sgd`` for plain
    SGD, else e.g. ``momentum``, ``sgd+ema=uniform``, ``nesterov+wd=0.001+ema=0.01``."""
    if plain_sgd(args):
        return "sgd"
    lab = args.optimizer
    if getattr(args, "weight_decay", 0.0):
        lab += f"+wd={args.weight_decay:g}"
    if getattr(args, "ema", None) is not None:
        lab += f"+ema={args.ema if args.ema == 'uniform' else format(args.ema, 'g')}"
    return lab


def config_entries(args) -> dict:
    """The optimizer options as configuration entries (empty for plain SGD: its runs keep their configuration)."""
    if plain_sgd(args):
        return {}
    cfg = dict(optimizer=args.optimizer, momentum=args.momentum, weight_decay=args.weight_decay, ema=args.ema,
               dana_g3=args.dana_g3, dana_delta=args.dana_delta, dana_kappa=args.dana_kappa)
    if args.ema is not None:
        cfg["readout"] = "average"   # ladders measure the average (runs stored before they did are not reused)
    return cfg


def check_args(args) -> None:
    """Option combinations refused before any work."""
    if getattr(args, "optimizer", "sgd") == "schedule-free" and (args.weight_decay or args.ema is not None):
        raise ValueError("--optimizer schedule-free takes neither --weight-decay nor --ema (it averages itself)")
    if getattr(args, "optimizer", "sgd") == "schedule-free" and args.momentum <= 0:
        raise ValueError("--momentum (schedule-free's beta) must be in (0, 1] for --optimizer schedule-free")


def ladder_optimizer_fn(args, alpha: float, beta: float):
    """For a d ladder (theory.ladder.ladder_curve's ``optimizer_fn(spectrum, lr, d)``, ``lr`` the SGD ladder lr):
    None for plain SGD; momentum and Nesterov at ``lr (1 - mu)`` (the same effective step), schedule-free at
    ``lr``, DANA at the authors' values on each rung's spectrum (plrf.optimizers.dana_defaults: g2 = 0.25/tr K,
    ...); --weight-decay and --ema as given."""
    if plain_sgd(args):
        return None
    from plrf import optimizers as O
    from plrf.schedules import constant

    def fn(spectrum, lr, d):
        trace = spectrum.trace
        if args.optimizer.startswith("dana"):
            lr = O.dana_defaults(trace, d, alpha, beta)["g2"]
        else:
            lr = lr * default_lr_factor(args)
        return build_optimizer(args, constant(lr), trace=trace, d=d, alpha=alpha, beta=beta)
    return fn


def add_momentum_tuning_arguments(p, kept: str) -> None:
    """``--tune-momentum``, ``--mu-grid``, ``--refine-momentum`` (``plrf batch``, ``plrf hparam-laws``); ``kept``
    says what the grid search keeps (e.g. "the fewest steps kept")."""
    p.add_argument("--tune-momentum", dest="tune_momentum", action="store_true",
                   help="momentum/nesterov: tune mu jointly with the lr at each batch (the lr tuned at every mu of "
                        f"--mu-grid within the stability edge at that mu, {kept}); --momentum is then ignored")
    p.add_argument("--mu-grid", dest="mu_grid", type=opt.real, nargs="+", default=None,
                   help="with --tune-momentum: the momenta scanned, >= 2 distinct values each in [0, 1) "
                        "(default: 0 0.5 0.8 0.9 0.95 0.99)")
    p.add_argument("--refine-momentum", dest="refine_momentum", action="store_true",
                   help="with --tune-momentum: refine mu continuously (Brent in ln(1 - mu) between the grid "
                        "neighbours of the best grid mu, the lr re-tuned at each trial; about 2x the cost)")


def check_momentum_tuning(args) -> None:
    """``--tune-momentum`` / ``--refine-momentum`` / ``--mu-grid`` combinations (``plrf batch``, ``plrf hparam-laws``):
    a ValueError naming the option, before any work."""
    if args.tune_momentum and args.optimizer not in ("momentum", "nesterov"):
        raise ValueError(f"--tune-momentum applies to --optimizer momentum or nesterov, got --optimizer "
                         f"{args.optimizer}")
    if args.refine_momentum and not args.tune_momentum:
        raise ValueError("--refine-momentum needs --tune-momentum")
    if args.mu_grid is not None:
        if not args.tune_momentum:
            raise ValueError("--mu-grid needs --tune-momentum")
        bad = [m for m in args.mu_grid if not 0 <= m < 1]
        if bad or len(set(args.mu_grid)) < 2:
            raise ValueError(f"--mu-grid: need >= 2 distinct momenta, each in [0, 1), got {args.mu_grid}")

