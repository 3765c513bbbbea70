"""``plrf batch``: the batch-size frontier of one PLRF problem on the exact theory.

For B = 1, 2, 4, ... up to ``--batch-max`` the peak learning rate (constant or cosine) is tuned on the exact
expected loss (scipy, inside ``--lr-frac-max`` of the stability bound at that B) to reach the target loss in the
fewest steps S(B); samples E(B) = B S(B). Optimizers: sgd, heavy-ball momentum and nesterov (fixed ``--momentum``,
or mu tuned jointly with the lr per B with ``--tune-momentum``, on the grid of ``plrf hparam-laws``), and
dana-decaying (the common scale of the authors' g2, g3 tuned, as in ``plrf hparam-laws``). McCandlish's trade-off ``(S/S_min - 1)(E/E_min - 1) = 1`` is fitted
(``S = S_min (1 + B_crit/B)``) and ``B_crit = E_min/S_min`` is reported next to the exact gradient noise scales
(:mod:`theory.batch`) at the target and at theta_0 = 0 (``B_noise_initial``, McCandlish's ``B_simple``).

Writes OUT/results.json, OUT/batch.png (S vs E with the fit; the noise scales along the run at the B nearest
B_crit) and OUT/cells/ (one cell per B, verified on read: an interrupted run resumes; another configuration in
the same OUT is refused unless ``--overwrite``).
"""
from __future__ import annotations

import math
import os
import sys
import time

from . import options as opt
from .optim_options import add_momentum_tuning_arguments, check_momentum_tuning

DEFAULT_OUT = "runs/batch"
FAMILIES = ("sgd", "momentum", "nesterov", "dana-decaying")   # = theory.batch.FAMILIES (not imported: fast --help)


def add_arguments(p):
    p.add_argument("--alpha", type=opt.positive_float, default=1.0, help="data spectrum exponent alpha > 0")
    p.add_argument("--beta", type=opt.real, default=0.7, help="target exponent beta (2(alpha+beta) > 1)")
    p.add_argument("--d", type=opt.int_at_least(1), default=64, help="number of parameters (features) d")
    p.add_argument("--v", type=opt.int_at_least(1), default=None, help="data dimension v >= d; None = 4d")
    p.add_argument("--seed", type=opt.int_at_least(0), default=0, help="seed of W (the W of `plrf curve --seed`)")
    p.add_argument("--W-file", dest="W_file", default=None, help="a .npy feature matrix of shape (v, d) to use")
    p.add_argument("--optimizer", default="sgd", choices=FAMILIES,
                   help="sgd, heavy-ball momentum or nesterov (optax meaning), or dana-decaying (the authors' "
                        "batch-1 defaults g2 = 0.25/tr K, g3 = 0.125/tr K, delta = 8, kappa = 1/(2 alpha); the common "
                        "scale of g2 and g3 is tuned; constant schedule only) (default: %(default)s)")
    p.add_argument("--momentum", type=opt.fraction, default=0.9,
                   help="momentum mu in (0, 1] of momentum/nesterov, fixed unless --tune-momentum "
                        "(default: %(default)s)")
    add_momentum_tuning_arguments(p, "the fewest steps kept")
    p.add_argument("--schedule", default="constant", choices=("constant", "cosine"),
                   help="lr schedule whose peak is tuned per B; cosine decays to 0 at the horizon S(B) "
                        "(default: %(default)s)")
    p.add_argument("--target-frac", dest="target_frac", type=opt.fraction, default=0.02,
                   help="target loss = P* + frac (P(0) - P*) (default: %(default)s)")
    p.add_argument("--batch-max", dest="batch_max", type=opt.int_at_least(2), default=512,
                   help="largest batch (powers of two from 1) (default: %(default)s)")
    p.add_argument("--max-steps", dest="max_steps", type=opt.big_int, default=20_000,
                   help="horizon of the search for the steps to the target at B = 1; each next B searches within "
                        "4 S of the previous one (S(B) does not grow with B) (default: %(default)s)")
    p.add_argument("--lr-frac-max", dest="lr_frac_max", type=opt.fraction, default=0.99,
                   help="the tuned lr stays below this fraction of the stability bound (default: %(default)s)")
    p.add_argument("--num", type=opt.int_at_least(16), default=200,
                   help="points of the log grid on which the target crossing is interpolated (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="discard results stored in OUT with other settings")
    opt.add_label_noise(p)
    opt.add_common(p, DEFAULT_OUT, time_limit=False)


def validate(args):
    """Option combinations, before any work (ValueError naming the option: exit 2)."""
    if 2 * (args.alpha + args.beta) <= 1:
        raise ValueError(f"--alpha/--beta inadmissible: need 2(alpha + beta) > 1, got alpha={args.alpha}, "
                         f"beta={args.beta}")
    if args.d > 4096:
        raise ValueError(f"--d must be <= 4096 for plrf batch (a sampled W, exact recursion per lr), got {args.d}")
    if args.batch_max > 2 ** 20:
        raise ValueError(f"--batch-max must be in 2..2^20, got {args.batch_max}")
    check_momentum_tuning(args)
    if args.optimizer == "dana-decaying" and args.schedule != "constant":
        raise ValueError(f"--schedule {args.schedule} is not available with --optimizer dana-decaying (its g3 "
                         "decays already); use --schedule constant")


def mu_grid_of(args):
    """The momenta scanned with --tune-momentum (None without it)."""
    from theory.hparam_laws import MU_GRID
    if not args.tune_momentum:
        return None
    return sorted(float(m) for m in set(args.mu_grid or MU_GRID))


def config_of(args, v) -> dict:
    w_sha = opt.file_sha256(args.W_file, "--W-file") if args.W_file else None
    fixed_mu = args.optimizer in ("momentum", "nesterov") and not args.tune_momentum
    cfg = dict(command="batch", alpha=args.alpha, beta=args.beta, d=args.d, v=v, seed=args.seed,
               W_file=args.W_file, W_sha256=w_sha, optimizer=args.optimizer,
               momentum=(args.momentum if fixed_mu else None), schedule=args.schedule,
               target_frac=args.target_frac, batch_max=args.batch_max, max_steps=args.max_steps,
               lr_frac_max=args.lr_frac_max, num=args.num)
    cfg.update(opt.label_noise_config(args))
    if args.tune_momentum:        # only when set: the configurations of the earlier options stay equal
        cfg.update(tune_momentum=True, mu_grid=mu_grid_of(args))
    if args.refine_momentum:
        cfg["refine_momentum"] = True
    return cfg


def run(args):
    import numpy as np

    import plrf
    from plrf.store import prepare_out

    t0 = time.time()
    validate(args)
    v = opt.problem_v(args)
    W = opt.load_matrix(args.W_file, "--W-file", (v, args.d)) if args.W_file else None
    config = config_of(args, v)
    with prepare_out(args.out, config, overwrite=args.overwrite) as out:
        import jax
        problem = plrf.Problem(args.alpha, args.beta, v, args.d, label_noise=args.label_noise)
        if W is not None:
            spec = plrf.instance_from_W(problem, W).spectrum
        else:
            k_w, _ = jax.random.split(jax.random.key(args.seed))   # the W of `plrf curve --seed`
            spec = plrf.sample_spectrum(problem, key=k_w)
        return _run(args, config, out, t0, spec, np)


_CELL_KEYS = ("steps", "samples", "lr", "lr_max", "lr_frac", "mu")


def _point(B, arrs):
    """A :class:`theory.batch.BatchPoint` from a stored cell."""
    import numpy as np

    from theory import batch as TB
    f = {k: float(arrs[k]) for k in _CELL_KEYS}
    by = {k: np.asarray(arrs[k]) for k in ("steps_by_mu", "lr_by_mu") if k in arrs}
    return TB.BatchPoint(int(B), **f, **by)


def _run(args, config, out, t0, spec, np):
    from theory import batch as TB
    from theory import hparam_laws as H

    target = float(spec.P_star + args.target_frac * (spec.P0 - spec.P_star))
    batches = [2 ** k for k in range(int(math.log2(args.batch_max)) + 1)]
    family, mu, mus = args.optimizer, args.momentum, config.get("mu_grid")
    dana = H.dana_base(spec, args.alpha) if family == "dana-decaying" else None
    store = out.cells()
    pts = []
    horizon = args.max_steps
    for i, B in enumerate(batches):
        coords = dict(B=int(B))
        t1 = time.time()
        if store.done(coords):
            p = _point(B, store.get(coords).arrays)
            how = "resumed"
        else:
            p = TB.tune_batch(spec, target, B, family=family, mu=mu, schedule=args.schedule, max_steps=horizon,
                              num=args.num, frac_max=args.lr_frac_max, dana=dana, mus=mus,
                              refine_mu=bool(config.get("refine_momentum")))
            arrs = {k: getattr(p, k) for k in _CELL_KEYS}
            arrs["horizon"] = horizon
            if mus is not None:
                arrs.update(steps_by_mu=p.steps_by_mu, lr_by_mu=p.lr_by_mu)
            store.put(coords, arrs)
            how = f"{time.time() - t1:.1f} s"
        pts.append(p)
        if math.isfinite(p.steps):   # S(B) does not grow with B: search the next B within 4 S(B)
            horizon = int(min(args.max_steps, max(64, math.ceil(4 * p.steps))))
        if not args.quiet:
            mu_note = f", mu = {p.mu:.4g}" if mus is not None else ""
            print(f"plrf batch: [{i + 1}/{len(batches)}] B = {B}: S = {p.steps:.4g}, E = {p.samples:.4g}, "
                  f"lr = {p.lr:.4g} ({p.lr_frac:.3f} of the bound){mu_note} ({how}; {time.time() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    S = np.array([p.steps for p in pts])
    if np.sum(np.isfinite(S)) < 3:
        raise ValueError(f"--max-steps {args.max_steps}: the target (frac {args.target_frac}) is reached at fewer "
                         "than 3 batch sizes; raise --max-steps or --target-frac")
    fit = TB.fit_tradeoff(batches, S)
    finite = [p for p in pts if math.isfinite(p.steps)]
    near = min(finite, key=lambda p: abs(math.log(p.batch / fit.B_crit)))
    at, ns = TB.noise_at_target(spec, target, near, family=family, mu=mu, schedule=args.schedule, dana=dana)
    results = dict(
        batch=batches, steps_to_target=S, samples_to_target=[p.samples for p in pts], lr=[p.lr for p in pts],
        lr_bound=[p.lr_max for p in pts], lr_frac=[p.lr_frac for p in pts], target=target,
        P_star=float(spec.P_star), P0=spec.P0, trace_K=spec.trace,
        B_crit=fit.B_crit, B_crit_err=fit.B_crit_err, S_min=fit.S_min, E_min=fit.E_min,
        fit_max_log_resid=fit.max_log_resid,
        B_noise_initial=TB.b_simple_initial(spec),
        B_noise_initial_note="McCandlish's B_simple = tr Sigma / |G|^2 at theta_0 = 0, Sigma the per-example "
                             "gradient covariance",
        noise_at_target=dict(batch=near.batch, **at),
        noise_curve=dict(batch=near.batch, steps=ns.steps, B_simple=ns.B_simple, B_hessian=ns.B_hessian,
                         B_noise=ns.B_noise, loss=ns.loss))
    if mus is not None:
        results.update(mu=[p.mu for p in pts], mu_grid=mus, steps_by_mu=[list(p.steps_by_mu) for p in pts],
                       lr_by_mu=[list(p.lr_by_mu) for p in pts])
    if dana is not None:
        results.update(dana_base=dana, lr_note="lr = the common scale of DANA's g2 and g3 (times dana_base)")
    out.save(results, wall_time=time.time() - t0)
    plot(results, config, out.file("batch.png"))
    if not args.quiet:
        print(f"plrf batch: B_crit = {fit.B_crit:.4g} ± {fit.B_crit_err:.2g} (fit residual "
              f"{fit.max_log_resid:.3f}); exact B_simple at the target {at['B_simple']:.4g} (B = {near.batch}), "
              f"Hessian-weighted {at['B_hessian']:.4g}, initial {results['B_noise_initial']:.4g}; wrote "
              f"{args.out}/results.json and batch.png")


def replot(out_dir):
    from plrf.store import read_json
    r = read_json(os.path.join(out_dir, "results.json"))
    plot(r, r["config"], os.path.join(out_dir, "batch.png"))
    return ["batch.png"]


def plot(r, config, path):
    import numpy as np

    from .plotting import new_figure, save
    fig, axes = new_figure(ncols=2)
    ax = axes[0, 0]
    B = np.asarray(r["batch"], dtype=float)
    S = np.asarray(r["steps_to_target"], dtype=float)
    E = np.asarray(r["samples_to_target"], dtype=float)
    ok = np.isfinite(S)
    mu = np.asarray(r["mu"], dtype=float) if "mu" in r else None
    what = {"dana-decaying": "scale of g2, g3"}.get(config["optimizer"], "lr")
    ax.plot(S[ok], E[ok], "o", color="tab:blue",
            label=f"tuned {what}{' and mu' if mu is not None else ''} per B (exact theory; B"
                  f"{', mu' if mu is not None else ''} annotated)")
    for i in np.flatnonzero(ok):
        txt = f"{int(B[i])}" + (f", {mu[i]:.2g}" if mu is not None else "")
        ax.annotate(txt, (S[i], E[i]), textcoords="offset points", xytext=(4, 3), fontsize=7)
    Smin, Emin, Bc = r["S_min"], r["E_min"], r["B_crit"]
    bb = np.geomspace(B[ok].min() / 2, B[ok].max() * 2, 200)
    ax.plot(Smin * (1 + Bc / bb), Emin * (1 + bb / Bc), "k--", lw=1,
            label=rf"$(S/S_{{min}}-1)(E/E_{{min}}-1)=1$, $B_{{crit}}$ = {Bc:.3g}")
    ax.plot([Smin * 2], [Emin * 2], "r*", ms=10, label=r"$B = B_{crit}$ on the fit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter
    ax.xaxis.set_minor_formatter(NullFormatter())     # overlapping minor labels on a short log axis
    ax.set_xlabel("steps to the target S(B)")
    ax.set_ylabel("samples to the target E(B) = B S(B)")
    s2 = config.get("label_noise", 0.0)
    ax.set_title(rf"PLRF $\alpha$={config['alpha']}, $\beta$={config['beta']}, d={config['d']}, "
                 f"{config['optimizer']}" + (f" mu={config['momentum']:g}" if config.get("momentum") is not None
                                             else " (mu tuned)" if config.get("tune_momentum") else "")
                 + f", {config['schedule']} lr"
                 + (rf", $\sigma^2$={s2:.3g}" if s2 else "")
                 + f"\ntarget = P* + {config['target_frac']} (P(0) - P*)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    ax = axes[0, 1]
    nc = r["noise_curve"]
    st = np.asarray(nc["steps"], dtype=float)
    m = st > 0
    for k, lab, c in (("B_simple", r"$B_{simple}$ = E tr$\Sigma$ / E$|G|^2$", "tab:blue"),
                      ("B_hessian", r"$B_{noise}$ = E tr$(K\Sigma)$ / E $G^T K G$", "tab:green"),
                      ("B_noise", r"tr Cov$(g_t)$ / $|E g_t|^2$", "tab:orange")):
        ax.plot(st[m], np.asarray(nc[k], dtype=float)[m], color=c, label=lab)
    nat = r["noise_at_target"]
    ax.axhline(Bc, color="k", ls="--", lw=1, label=rf"fitted $B_{{crit}}$ = {Bc:.3g}")
    ax.axvline(nat["step"], color="gray", ls=":", lw=1, label=f"target reached (step {nat['step']:.3g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if st[m].max() / st[m].min() < 30:       # a short run: label 2 and 5 x the decades, plainly
        from matplotlib.ticker import FuncFormatter, LogLocator
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"step (run at B = {nc['batch']}, tuned {what}" + (f", mu = {mu[list(B).index(nc['batch'])]:.3g}"
                                                                  if mu is not None else "") + ")")
    ax.set_ylabel("exact gradient noise scale (per-sample covariance)")
    ax.set_title("noise scale along the run", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)   # below: never on a curve
    ax.grid(True, which="major", alpha=0.3)
    save(fig, path)
    return fig
