"""``plrf hparam-laws``: scaling laws of the optimal batch, critical batch, optimal lr and optimal weight decay
in the data budget D and the model size d, on the exact theory (:mod:`theory.hparam_laws`).

One resumable cell per (d, D) (``OUT/cells``, verified on read; a different configuration is refused): the
tuned constant lr and final loss at each batch ``B = factor^k`` with ``S = D/B >= 4`` steps, and (at the
reported budgets) the weight-decay scan at the batch nearest B*. The D grid runs ``--extend`` decades past the
largest reported budget so that large batches can reach the target that defines B_crit (there only the batches
with S <= D_MAX steps are run: a smaller batch reaches that target within D_MAX samples). Writes
OUT/results.json (the per-(d, D) laws and a table of fitted exponents) and OUT/hparam_laws.png.
"""
from __future__ import annotations

import math
import os
import sys
import time

from . import budget
from . import options as opt
from .optim_options import add_momentum_tuning_arguments, check_momentum_tuning

DEFAULT_OUT = "runs/hparam-laws"
DEFAULT_DS = (100, 1000, 10000)
DEFAULT_BUDGETS = (1e3, 1e6)
D_MAX = 10 ** 6        # deterministic-equivalent spectra: bins ~ log d; beyond this the quadrature is untested here
BUDGET_MAX = 10 ** 9


def _d_value(text):
    return opt.int_at_least(2)(text)


def add_arguments(p):
    p.add_argument("--alpha", type=opt.positive_float, default=1.0,
                   help="data spectrum exponent alpha > 0 (default: %(default)s)")
    p.add_argument("--beta", type=opt.real, default=0.7, help="target exponent beta, 2(alpha+beta) > 1 "
                                                              "(default: %(default)s)")
    p.add_argument("--ds", type=_d_value, nargs="+", default=list(DEFAULT_DS),
                   help=f"model sizes d (>= 2 values in [2, {D_MAX}]) (default: %(default)s)")
    p.add_argument("--budgets", type=opt.big_int, nargs=2, default=[int(b) for b in DEFAULT_BUDGETS],
                   metavar=("D_MIN", "D_MAX"),
                   help=f"smallest and largest reported data budget D = B S (samples), 16 <= D_MIN < D_MAX <= "
                        f"{BUDGET_MAX:.0e} (default: %(default)s)")
    p.add_argument("--per-decade", dest="per_decade", type=opt.int_at_least(1), default=2,
                   help="budgets per decade of D, 1..8 (default: %(default)s)")
    p.add_argument("--extend", type=opt.nonneg_float, default=1.0,
                   help="decades of D past D_MAX computed for the B_crit targets, 0..2 (default: %(default)s)")
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "momentum", "nesterov", "dana-decaying"),
                   help="constant-lr sgd, heavy-ball momentum or nesterov (optax meaning), or dana-decaying (the "
                        "authors' batch-1 defaults g2 = 0.25/tr K, g3 = 0.125/tr K, delta = 8, kappa = 1/(2 alpha), "
                        "the common scale of g2 and g3 tuned) (default: %(default)s)")
    p.add_argument("--momentum", type=opt.fraction, default=0.9, help="momentum mu in (0, 1] (default: %(default)s)")
    add_momentum_tuning_arguments(p, "the lowest loss kept")
    p.add_argument("--batch-factor", dest="batch_factor", type=opt.int_at_least(2), default=4,
                   help="batches are powers of this factor, 2..16 (default: %(default)s)")
    p.add_argument("--batch-max", dest="batch_max", type=opt.big_int, default=4096,
                   help="largest batch, 2..2^20 (default: %(default)s)")
    p.add_argument("--tol", type=opt.positive_float, default=0.1,
                   help="B_tol = largest B with loss <= (1 + tol) x the best at D, 0 < tol <= 1 (default: %(default)s)")
    p.add_argument("--wd-taus", dest="wd_taus", type=opt.positive_float, nargs="+", default=[100.0, 10.0, 1.0],
                   help="Power Lines timescales tau = B/(eta lambda D) > 0 whose weight decays lambda = 1/(tau eta0 S) "
                        "(eta0 the tuned lr without weight decay) are scanned with lambda = 0 at the batch nearest "
                        "B*, the lr re-tuned at each (default: %(default)s)")
    p.add_argument("--no-wd", dest="no_wd", action="store_true", help="skip the weight-decay scan")
    p.add_argument("--lr-frac-max", dest="lr_frac_max", type=opt.fraction, default=0.99,
                   help="the tuned lr stays below this fraction of the stability bound (default: %(default)s)")
    p.add_argument("--ratio", type=opt.positive_float, default=4.0,
                   help="v = ratio d when 2 alpha <= 1 (v = inf otherwise), ratio > 1 (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="discard results stored in OUT with other settings")
    opt.add_label_noise(p)
    opt.add_common(p, DEFAULT_OUT, time_limit=False)


def validate(args):
    """Every range check, before any work (ValueError naming the option: exit 2)."""
    if 2 * (args.alpha + args.beta) <= 1:
        raise ValueError(f"--alpha/--beta inadmissible: need 2(alpha + beta) > 1, got alpha={args.alpha}, "
                         f"beta={args.beta}")
    ds = sorted(set(int(d) for d in args.ds))
    if len(ds) < 2:
        raise ValueError(f"--ds needs at least 2 distinct model sizes (to fit the d-dependence), got {args.ds}")
    if ds[-1] > D_MAX:
        raise ValueError(f"--ds: each d must be in [2, {D_MAX}], got {ds[-1]}")
    lo, hi = args.budgets
    if not (16 <= lo < hi <= BUDGET_MAX):
        raise ValueError(f"--budgets D_MIN D_MAX: need 16 <= D_MIN < D_MAX <= {BUDGET_MAX:.0e}, got {lo} {hi}")
    if not 1 <= args.per_decade <= 8:
        raise ValueError(f"--per-decade must be in 1..8, got {args.per_decade}")
    if not 0 <= args.extend <= 2:
        raise ValueError(f"--extend must be in [0, 2] decades, got {args.extend}")
    if hi * 10 ** args.extend > BUDGET_MAX:
        raise ValueError(f"--budgets/--extend: D_MAX x 10^extend must be <= {BUDGET_MAX:.0e}, got "
                         f"{hi * 10 ** args.extend:.3g}")
    if not 2 <= args.batch_factor <= 16:
        raise ValueError(f"--batch-factor must be in 2..16, got {args.batch_factor}")
    if not 2 <= args.batch_max <= 2 ** 20:
        raise ValueError(f"--batch-max must be in 2..2^20, got {args.batch_max}")
    if not 0 < args.tol <= 1:
        raise ValueError(f"--tol must be in (0, 1], got {args.tol}")
    if args.ratio <= 1:
        raise ValueError(f"--ratio must be > 1, got {args.ratio}")
    check_momentum_tuning(args)
    reported = budget_grid(lo, hi, args.per_decade)
    if len(reported) < 3:
        raise ValueError(f"--budgets/--per-decade give {len(reported)} reported budgets; need >= 3 to fit exponents")
    return ds


def budget_grid(lo, hi, per_decade):
    """Budgets ``10^(k/per_decade)`` in [lo, hi] (rounded to integers), plus lo and hi themselves."""
    import numpy as np
    a, b = math.log10(lo), math.log10(hi)
    ks = np.arange(math.ceil(a * per_decade - 1e-9), math.floor(b * per_decade + 1e-9) + 1)
    vals = set(int(round(10 ** (k / per_decade))) for k in ks) | {int(lo), int(hi)}
    return sorted(v for v in vals if lo <= v <= hi)


def config_of(args, ds) -> dict:
    cfg = dict(command="hparam-laws", alpha=args.alpha, beta=args.beta, ds=ds, budgets=list(args.budgets),
               per_decade=args.per_decade, extend=args.extend, optimizer=args.optimizer,
               momentum=(args.momentum if args.optimizer in ("momentum", "nesterov") and not args.tune_momentum
                         else None),
               tune_momentum=bool(args.tune_momentum), mu_grid=mu_grid_of(args), batch_factor=args.batch_factor,
               batch_max=args.batch_max, tol=args.tol, wd_taus=(None if args.no_wd else list(args.wd_taus)),
               lr_frac_max=args.lr_frac_max, ratio=args.ratio)
    cfg.update(opt.label_noise_config(args))
    if args.refine_momentum:      # only when set: configurations of earlier runs stay equal
        cfg["refine_momentum"] = True
    return cfg


def mu_grid_of(args):
    """The momenta scanned with --tune-momentum (None without it)."""
    from theory.hparam_laws import MU_GRID
    if not args.tune_momentum:
        return None
    return sorted(float(m) for m in set(args.mu_grid or MU_GRID))


def run(args):
    from plrf.store import prepare_out
    t0 = time.time()
    ds = validate(args)
    config = config_of(args, ds)
    with prepare_out(args.out, config, overwrite=args.overwrite) as out:   # before any work; locks OUT
        return _run(args, config, out, t0, ds)


def _say(args, msg):
    say = budget.teller(args, "hparam-laws")
    if say:
        say(msg)


def _run(args, config, out, t0, ds):
    import numpy as np

    from theory import hparam_laws as H
    store = out.cells()
    lo, hi = args.budgets
    reported = budget_grid(lo, hi, args.per_decade)
    extra = budget_grid(hi, hi * 10 ** args.extend, args.per_decade)[1:] if args.extend > 0 else []
    Ds = reported + [D for D in extra if D > hi]
    family, mu = args.optimizer, args.momentum
    mus = config["mu_grid"]
    n_cells = len(ds) * len(Ds)
    done = 0
    cells = {}
    for d in ds:
        spec = H.ladder_spectrum(args.alpha, args.beta, d, ratio=args.ratio, label_noise=args.label_noise)
        dana = H.dana_base(spec, args.alpha) if family == "dana-decaying" else None
        cache = {}
        for D in Ds:
            coords = dict(d=int(d), D=int(D))
            t1 = time.time()
            if store.done(coords):
                arrs = store.get(coords).arrays
                how = "resumed"
            else:
                c = H.cell(spec, D, family=family, mu=mu, b_max=args.batch_max, factor=args.batch_factor,
                           frac_max=args.lr_frac_max, lr_max_cache=cache, s_max=(None if D <= hi else hi),
                           mus=mus, dana=dana, refine_mu=bool(config.get("refine_momentum")))
                arrs = dict(c)
                if D in reported and not args.no_wd:
                    ob = H.optimal_batch(c["batch"], c["loss"], args.tol)
                    k = ob.index
                    wd = H.tune_weight_decay(spec, family, int(c["batch"][k]), int(c["steps"][k]),
                                             taus=args.wd_taus, mu=(float(c["mu"][k]) if mus else mu),
                                             frac_max=args.lr_frac_max, lr_max=float(c["lr_max"][k]), dana=dana)
                    arrs.update(wd_lambdas=wd.lambdas, wd_taus=wd.taus, wd_loss=wd.loss, wd_lr=wd.lr,
                                wd_star=np.array([wd.lam_star, wd.lr_star, wd.gain, wd.tau,
                                                  float(c["batch"][k]), float(c["steps"][k])]))
                store.put(coords, arrs)
                how = f"{time.time() - t1:.1f} s"
            cells[(d, D)] = arrs
            done += 1
            L = np.asarray(arrs["loss"])
            kb = int(np.nanargmin(L))
            mu_note = f", mu* = {float(np.asarray(arrs['mu'])[kb]):g}" if "mu" in arrs else ""
            _say(args, f"[{done}/{n_cells}] d = {d}, D = {D:.3g}: best loss {np.nanmin(L):.4g} at B = "
                       f"{int(np.asarray(arrs['batch'])[kb])}{mu_note} ({how}; {time.time() - t0:.0f} s)")
    results = analyse(cells, ds, reported, Ds, args.tol, config)
    out.save(results, wall_time=time.time() - t0)
    plot(results, config, out.file("hparam_laws.png"))
    if not args.quiet:
        print(format_table(results))
        print(f"plrf hparam-laws: wrote {args.out}/results.json and hparam_laws.png "
              f"[{time.time() - t0:.0f} s]")
    return results


def analyse(cells, ds, reported, Ds, tol, config) -> dict:
    """Per (d, D) laws and the fitted exponents (a plain dict for results.json)."""
    import numpy as np

    from theory import hparam_laws as H
    per_d = []
    for d in ds:
        spec = H.ladder_spectrum(config["alpha"], config["beta"], d, ratio=config["ratio"],
                                 label_noise=config.get("label_noise", 0.0))
        trK, trK2 = float(spec.trace), float(np.sum(spec.n * spec.lam ** 2))
        allB = sorted(set(int(b) for D in Ds for b in np.asarray(cells[(d, D)]["batch"])))
        table = np.full((len(Ds), len(allB)), np.nan)
        for i, D in enumerate(Ds):
            c = cells[(d, D)]
            for b, L in zip(np.asarray(c["batch"]), np.asarray(c["loss"])):
                table[i, allB.index(int(b))] = L
        rows = []
        for D in reported:
            c = cells[(d, D)]
            ob = H.optimal_batch(c["batch"], c["loss"], tol)
            try:
                cb = H.critical_batch(Ds, allB, table, D)
                bc, bce, cbs = cb.B_crit, cb.B_crit_err, dict(target=cb.target, batch=cb.batch,
                                                               samples=cb.samples, resid=cb.max_log_resid)
                smin, emin = cb.S_min, cb.E_min
            except ValueError:
                bc, bce, cbs, smin, emin = math.nan, math.nan, None, math.nan, math.nan
            lr1 = float(np.asarray(c["lr"])[0])
            # heavy ball / Nesterov: the SGD formula at the effective lr eta/(1 - mu) (a heuristic, not derived
            # for momentum); DANA: none (time-dependent coefficients)
            fam = config["optimizer"]
            mu1 = float(np.asarray(c["mu"])[0]) if "mu" in c else config.get("momentum")
            lr_eff = (lr1 / (1.0 - mu1) if fam in ("momentum", "nesterov") else
                      (math.nan if fam == "dana-decaying" else lr1))
            row = dict(D=D, lr_B1=lr1, B_crit_noise_pred=1.0 + 2.0 * trK / (lr_eff * trK2), B_star=ob.B_star,
                       B_star_at_edge=ob.at_edge, B_tol=ob.B_tol, loss=ob.loss,
                       lr_star=float(np.asarray(c["lr"])[ob.index]),
                       lr_frac=float(np.asarray(c["lr"])[ob.index] / np.asarray(c["lr_max"])[ob.index]),
                       B_crit=bc, B_crit_err=bce, tradeoff=cbs, S_min=smin, E_min=emin,
                       batch=np.asarray(c["batch"]), batch_loss=np.asarray(c["loss"]), batch_lr=np.asarray(c["lr"]))
            if "mu" in c:
                row.update(batch_mu=np.asarray(c["mu"]), mu_star=float(np.asarray(c["mu"])[ob.index]),
                           loss_by_mu=np.asarray(c["loss_by_mu"]))
            if "wd_star" in c:
                lam_s, lr_s, gain, tau, Bw, Sw = (float(x) for x in np.asarray(c["wd_star"]))
                row.update(lambda_star=lam_s, lr_at_lambda_star=lr_s, wd_gain=gain, tau=tau, wd_batch=Bw,
                           wd_lambdas=np.asarray(c["wd_lambdas"]), wd_taus=np.asarray(c["wd_taus"]),
                           wd_loss_ratio=np.asarray(c["wd_loss"]) / np.asarray(c["wd_loss"])[0])
            rows.append(row)
        per_d.append(dict(d=int(d), rows=rows))
    fits = {}

    def fit(name, xs, ys):
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        ok = np.isfinite(ys) & (ys > 0)
        if ok.sum() == 2 and np.ptp(xs[ok]) > 0:     # two points: the slope through them, no error estimate
            lx, ly = np.log(xs[ok]), np.log(ys[ok])
            sl = float((ly[1] - ly[0]) / (lx[1] - lx[0]))
            return dict(slope=sl, err=math.nan, se=math.nan, boot=math.nan, n=2, intercept=float(ly[0] - sl * lx[0]))
        try:
            f = H.power_fit(xs, ys)
            return dict(slope=f.slope, err=f.err, se=f.se, boot=f.boot, n=f.n, intercept=f.intercept)
        except ValueError:
            return None
    for pd in per_d:      # noise-balanced prediction: B_crit ~ B / eta*(B) (module theory.hparam_laws)
        for row in pd["rows"]:
            row["Bcrit_x_lr_B1"] = row["B_crit"] * row["lr_B1"]
    for q in ("B_crit", "B_tol", "lr_star", "loss", "B_star", "lr_B1", "Bcrit_x_lr_B1", "B_crit_noise_pred",
              "S_min", "E_min"):
        fits[q] = {}
        for pd in per_d:
            D = [r["D"] for r in pd["rows"]]
            y = [r[q] for r in pd["rows"]]
            fits[q][str(pd["d"])] = fit(q, D, y)
    # d-dependence at fixed D: slope of B_crit (and B_tol, lr*) against d at each reported D
    fits_d = {}
    for q in ("B_crit", "B_tol", "lr_star"):
        fits_d[q] = {}
        for i, D in enumerate(reported):
            fits_d[q][str(D)] = fit(q, ds, [pd["rows"][i][q] for pd in per_d])
    sym = H.symbolic_exponents(config["alpha"], config["beta"])
    edge = [H.edge_batch(H.ladder_spectrum(config["alpha"], config["beta"], d, ratio=config["ratio"])) for d in ds]
    edge_fit = fit("edge", ds, edge)
    any_wd = [r.get("lambda_star") for pd in per_d for r in pd["rows"] if "lambda_star" in r]
    return dict(ds=list(ds), budgets=reported, budgets_all=list(Ds), per_d=per_d, fits_D=fits, fits_d=fits_d,
                symbolic=sym, edge_batch=edge, edge_batch_fit=edge_fit,
                weight_decay_helps=(None if not any_wd else bool(any(x > 0 for x in any_wd))))


def format_table(r) -> str:
    lines = ["fitted exponents in D (slope ± err) per d:",
             "  quantity          " + "".join(f"{'d=' + str(d):>18}" for d in r["ds"])]
    for q in ("B_crit", "B_crit_noise_pred", "B_tol", "lr_star", "loss", "Bcrit_x_lr_B1"):
        cells = []
        for d in r["ds"]:
            f = r["fits_D"][q].get(str(d))
            cells.append(f"{f['slope']:+.3f} ± {f['err']:.3f}" if f else "n/a")
        lines.append(f"  {q:<17} " + "".join(f"{c:>18}" for c in cells))
    lines.append("exponents in d at fixed D (slope ± err):")
    for q in ("B_crit", "B_tol"):
        parts = []
        for D, f in r["fits_d"][q].items():
            parts.append(f"D={float(D):.3g}: {f['slope']:+.3f} ± {f['err']:.3f}" if f else f"D={D}: n/a")
        lines.append(f"  {q:<10} " + "; ".join(parts))
    s = r["symbolic"]
    lines.append(f"symbolic (population limit, signal-dominated SGD): loss ~ D^-{s['loss_D']:.3f}, "
                 f"B_crit ~ D^{s['Bcrit_D_signal']:.3f} (signal-dominated) or ~ B/eta* = const x D^(-lr_B1 slope) "
                 f"(noise-balanced: B_simple - 1 -> {s['expr']['noise_limit']}), "
                 f"B_edge = trK/lam_max ~ d^{s['B_edge_d']:.3f} "
                 f"(measured {r['edge_batch_fit']['slope']:+.3f})")
    stars = [row["B_star"] for pd in r["per_d"] for row in pd["rows"]]
    edge = [row["B_star_at_edge"] for pd in r["per_d"] for row in pd["rows"]]
    lines.append(f"B* (loss-minimising at fixed D): {sum(edge)}/{len(edge)} cells at the grid edge; values "
                 f"{min(stars):.3g}..{max(stars):.3g}")
    if r.get("weight_decay_helps") is not None:
        taus = [row["tau"] for pd in r["per_d"] for row in pd["rows"] if "tau" in row]
        lines.append("weight decay: " + ("helps in some cells; tau* range "
                                         f"{min(taus):.3g}..{max(taus):.3g}" if r["weight_decay_helps"] else
                                         "never helps (lambda* = 0, tau* = inf in every cell)"))
    return "\n".join(lines)


def replot(out_dir):
    from plrf.store import read_json
    r = read_json(os.path.join(out_dir, "results.json"))
    plot(r, r["config"], os.path.join(out_dir, "hparam_laws.png"))
    return ["hparam_laws.png"]


def plot(r, config, path):
    import numpy as np

    from .plotting import new_figure, save
    fig, axes = new_figure(ncols=2, nrows=2, height=4.4, constrained_layout=True)
    cmap = __import__("matplotlib").colormaps["viridis"]
    nd = len(r["per_d"])
    panels = (("B_crit", axes[0, 0], r"critical batch $B_{crit}$ (McCandlish fit)", r"$B_{crit}$"),
              ("B_tol", axes[0, 1], rf"optimal batch $B^*$ (x) and $B_{{tol}}$ = largest B within "
                                    rf"{100 * config['tol']:g}% of the best loss", r"batch size"),
              ("lr_star", axes[1, 0], r"optimal peak lr $\eta^*$ at $B^*$", r"$\eta^*$"),
              ("lambda_star", axes[1, 1], r"weight decay at timescale $\tau = B/(\eta\lambda D)$ (lr re-tuned)",
               r"tuned loss / loss at $\lambda = 0$"))
    for q, ax, title, ylabel in panels:
        ax.set_ylabel(ylabel)
        for i, pd in enumerate(r["per_d"]):
            col = cmap(i / max(nd - 1, 1))
            D = np.array([row["D"] for row in pd["rows"]], dtype=float)
            y = np.array([row.get(q, np.nan) for row in pd["rows"]], dtype=float)
            if q == "lambda_star":
                # the loss ratio L(lambda)/L(0) at each scanned timescale tau (lr re-tuned): > 1 = weight decay hurts
                rows = [row for row in pd["rows"] if "wd_loss_ratio" in row]
                taus = np.asarray(config.get("wd_taus") or [])
                for k, tau in enumerate(sorted(taus, reverse=True)):
                    ratio = [float(np.asarray(row["wd_loss_ratio"], dtype=float)[k + 1]) for row in rows]
                    ax.plot([row["D"] for row in rows], ratio, ("o-", "s--", "^:", "v-.")[k % 4], color=col, ms=4,
                            label=(rf"d = {pd['d']}, $\tau$ = {tau:g}"))
                if rows:
                    ax.axhline(1.0, color="k", lw=0.8)
                    top = max(float(np.nanmax(np.asarray(row["wd_loss_ratio"], dtype=float))) for row in rows)
                    ax.set_ylim(0.95, max(top, 1.05) ** 1.8)     # room above the data for the legend
                continue
            ax.plot(D, y, "o", color=col, label=f"d = {pd['d']}")
            f = r["fits_D"].get(q, {}).get(str(pd["d"]))
            if f:
                ax.plot(D, np.exp(f["intercept"]) * D ** f["slope"], "-", color=col, lw=1,
                        label=rf"fit $D^{{{f['slope']:.2f} \pm {f['err']:.2f}}}$")
            if q == "B_tol":
                ax.plot(D, [row["B_star"] for row in pd["rows"]], "x", color=col, ms=6)
        ax.set_xscale("log")
        allD = [row["D"] for pd in r["per_d"] for row in pd["rows"]]
        ax.set_xlim(min(allD) / 1.5, max(allD) * 1.5)
        ys = np.array([v for ln in ax.get_lines() for v in np.asarray(ln.get_ydata(), dtype=float)])
        ys = ys[np.isfinite(ys) & (ys > 0)]
        if ys.size:
            ax.set_yscale("log")
            if ys.max() < ys.min() * 1.01:        # one value (e.g. B* at the largest batch everywhere)
                ax.set_ylim(ys.min() / 2, ys.max() * 2)
        ax.set_xlabel("data budget D = B S (samples)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        if not ys.size and q != "lambda_star":   # e.g. B_crit with too few batches to fit: say so
            ax.text(0.5, 0.5, "no finite value (too few batches?)", transform=ax.transAxes, ha="center",
                    va="center")
        elif ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2)
        else:
            ax.text(0.5, 0.5, "not scanned (--no-wd)", transform=ax.transAxes, ha="center", va="center")
    s2 = config.get("label_noise", 0.0)
    fig.suptitle(rf"PLRF $\alpha$={config['alpha']}, $\beta$={config['beta']}, {family_label(config)}, constant lr "
                 "tuned per (B, D) on the exact theory" + (rf", $\sigma^2$={s2:.3g}" if s2 else ""), fontsize=10)
    save(fig, path)
    return fig


# ----------------------------------------------------------------------------------------------------------
# several optimizer families side by side (one `plrf hparam-laws` OUT dir each, same problem and grids)

def family_label(config) -> str:
    fam = config["optimizer"]
    if fam in ("momentum", "nesterov"):
        return f"{fam} (mu tuned)" if config.get("tune_momentum") else f"{fam} (mu = {config.get('momentum')})"
    return fam


def to_common_target(results):
    """Cross-family efficiency at a common target: for each run, d and reported D0, the fewest samples E and
    steps S (each minimised over B) with which the tuned envelope L*(B, D) reaches the loss SGD (the run with
    ``optimizer == 'sgd'``) reaches at B = 1 with D0 samples; read off each run's reported table by
    (log D, log L) interpolation (:func:`theory.hparam_laws.samples_to_target`; inf when not reached in the
    reported range; NaN when some batch is already below it at the smallest D). Returns {label: {d: [(D0, E, S, B_E, B_S), ...]}}."""
    import numpy as np

    from theory import hparam_laws as H
    ref = next((r for r in results if r["config"]["optimizer"] == "sgd"), None)
    if ref is None:
        return {}
    out = {}
    for r in results:
        lab = family_label(r["config"])
        out[lab] = {}
        for pd, pref in zip(r["per_d"], ref["per_d"]):
            D = np.array([row["D"] for row in pd["rows"]], dtype=float)
            allB = sorted(set(int(b) for row in pd["rows"] for b in row["batch"]))
            T = np.full((D.size, len(allB)), np.nan)
            for i, row in enumerate(pd["rows"]):
                for b, L in zip(row["batch"], row["batch_loss"]):
                    T[i, allB.index(int(b))] = L
            res = []
            for row0 in pref["rows"]:
                target = float(np.asarray(row0["batch_loss"], dtype=float)[0])
                if np.nanmin(T[0]) < target:      # some batch is below the target already at the smallest D
                    res.append((row0["D"], math.nan, math.nan, 0, 0))
                    continue
                E = np.array([H.samples_to_target(D, T[:, k], target) for k in range(len(allB))])
                S = E / np.array(allB, dtype=float)
                ke, ks = int(np.argmin(E)), int(np.argmin(S))
                res.append((row0["D"], float(E[ke]), float(S[ks]), allB[ke], allB[ks]))
            out[lab][str(pd["d"])] = res
    return out


def compare_table(results) -> str:
    """Per family and d: B_crit at each reported D, its exponent in D, S_min and E_min exponents, B* and mu*."""
    lines = []
    for r in results:
        c = r["config"]
        for pd in r["per_d"]:
            d = str(pd["d"])
            f = r["fits_D"]["B_crit"].get(d)
            fs, fe = r["fits_D"].get("S_min", {}).get(d), r["fits_D"].get("E_min", {}).get(d)
            bc = ", ".join(f"{row['B_crit']:.3g}" for row in pd["rows"])
            smin = ", ".join(f"{row.get('S_min', math.nan):.3g}" for row in pd["rows"])
            emin = ", ".join(f"{row.get('E_min', math.nan):.3g}" for row in pd["rows"])
            bstar = ", ".join(f"{row['B_star']:.3g}" for row in pd["rows"])
            loss = ", ".join(f"{row['loss']:.3g}" for row in pd["rows"])
            mus = ", ".join(f"{row['mu_star']:g}" for row in pd["rows"]) if "mu_star" in pd["rows"][0] else "-"

            def sl(x):
                return f"{x['slope']:+.3f} ± {x['err']:.3f}" if x else "n/a"
            res = ", ".join(f"{row['tradeoff']['resid']:.2f}" if row.get("tradeoff") else "nan"
                            for row in pd["rows"])
            lines.append(f"{family_label(c)} d={d}: B_crit [{bc}] ~ D^{sl(f)} (fit max |log resid| [{res}]); "
                         f"S_min [{smin}] ~ D^{sl(fs)}; E_min [{emin}] ~ D^{sl(fe)}; B* [{bstar}]; loss [{loss}]; "
                         f"mu* at B* [{mus}]")
    common = to_common_target(results)
    if common:
        lines.append("to SGD's B = 1 loss at D0 (min over B; E samples, S steps, at batch):")
        for lab, per in common.items():
            for d, rows in per.items():
                lines.append(f"  {lab} d={d}: " + "; ".join(
                    f"D0={D0:.0e}: E={E:.3g} (B={be}), S={S:.3g} (B={bs})" if math.isfinite(E) else
                    f"D0={D0:.0e}: below at D_min" for D0, E, S, be, bs in rows))
    return "\n".join(lines)


def plot_families(results, path):
    """B_crit, E_min and S_min against D per family (fits drawn), mu*(B) of the tuned families and the tuned
    loss against B at the largest reported D."""
    import numpy as np

    from .plotting import new_figure, save
    fig, axes = new_figure(ncols=3, nrows=2, width=5.0, height=4.2, constrained_layout=True)
    colors = {"sgd": "k", "momentum": "tab:blue", "nesterov": "tab:red", "dana-decaying": "tab:green"}
    styles = ("o-", "s--", "^:", "v-.")
    common = to_common_target(results)
    for r in results:
        c = r["config"]
        col = colors.get(c["optimizer"], "tab:gray")
        lab = family_label(c)
        for i, pd in enumerate(r["per_d"]):
            d = str(pd["d"])
            D = np.array([row["D"] for row in pd["rows"]], dtype=float)
            mk = styles[i % 4][0]
            for ax, q in ((axes[0, 0], "B_crit"),):
                y = np.array([row.get(q, np.nan) for row in pd["rows"]], dtype=float)
                f = r["fits_D"].get(q, {}).get(d)
                slope = rf", $D^{{{f['slope']:.2f}\pm{f['err']:.2f}}}$" if f else ""
                ax.plot(D, y, mk, color=col, ms=5, mfc="none" if i else col, label=f"{lab}, d={d}{slope}")
                if f:
                    ax.plot(D, np.exp(f["intercept"]) * D ** f["slope"], styles[i % 4][1:], color=col, lw=1)
            rows = common.get(lab, {}).get(d, [])
            # steps at the largest D0: the large batches would need budgets past the reported ones (the min over
            # B is then grid-limited): left out of the steps panel
            for ax, j, keep in ((axes[0, 1], 1, rows), (axes[0, 2], 2, rows[:-1])):
                keep = [x for x in keep if math.isfinite(x[j])]
                if keep:
                    ax.plot([x[0] for x in keep], [x[j] for x in keep], styles[i % 4], color=col, ms=5,
                            mfc="none" if i else col, label=f"{lab}, d={d}")
            if "batch_mu" in pd["rows"][0]:
                for k, row in enumerate(pd["rows"]):
                    if k != len(pd["rows"]) - 1 and k != 0:
                        continue
                    axes[1, 0].plot(np.asarray(row["batch"], dtype=float), np.asarray(row["batch_mu"], dtype=float),
                                    styles[i % 4] if k else styles[i % 4][0] + ":", color=col, ms=5,
                                    mfc="none" if k == 0 else col, label=f"{lab}, d={d}, D={row['D']:.0e}")
            for k, ax in ((0, axes[1, 1]), (-1, axes[1, 2])):
                row = pd["rows"][k]
                ax.plot(np.asarray(row["batch"], dtype=float), np.asarray(row["batch_loss"], dtype=float),
                        styles[i % 4], color=col, ms=4, mfc="none" if i else col, label=f"{lab}, d={d}")
    titles = ((axes[0, 0], r"critical batch $B_{crit}$ (McCandlish fit) vs data budget", r"$B_{crit}$", "D"),
              (axes[0, 1], "fewest samples (min over B) to SGD's loss at (B = 1, D0)", "samples E", "D0"),
              (axes[0, 2], "fewest steps (min over B) to SGD's loss at (B = 1, D0)", "steps S", "D0"),
              (axes[1, 0], r"tuned momentum $\mu^*$ vs batch (open: smallest D, filled: largest D)", r"$\mu^*$",
               "B"),
              (axes[1, 1], "tuned final loss vs batch at the smallest reported D", "loss", "B"),
              (axes[1, 2], "tuned final loss vs batch at the largest reported D", "loss", "B"))
    for ax, title, yl, xl in titles:
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(yl)
        ax.set_xlabel({"D": "data budget D = B S (samples)", "D0": "SGD's data budget D0 at B = 1 (samples)",
                       "B": "batch size B"}[xl])
        ax.set_xscale("log")
        if ax is not axes[1, 0]:
            ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    axes[1, 0].set_ylim(-0.05, 1.18)
    c0 = results[0]["config"]
    fig.suptitle(rf"PLRF $\alpha$={c0['alpha']}, $\beta$={c0['beta']}: constant lr (DANA: common scale of g2, g3) "
                 r"tuned per (B, D) on the exact theory; $\mu$ tuned on a grid where stated", fontsize=10)
    save(fig, path)
    return fig


def compare(out_dirs, path):
    """Read the results.json of several `plrf hparam-laws` runs, print :func:`compare_table`, draw
    :func:`plot_families` into ``path``."""
    from plrf.store import read_json
    results = [read_json(os.path.join(o, "results.json")) for o in out_dirs]
    keys = ("alpha", "beta", "ds", "budgets", "per_decade", "extend", "batch_factor", "batch_max")
    for r in results[1:]:
        diff = [k for k in keys if r["config"].get(k) != results[0]["config"].get(k)]
        if diff:
            raise ValueError(f"compare: the runs differ in {diff}; compare runs of one problem and grid")
    print(compare_table(results))
    plot_families(results, path)
    return results


if __name__ == "__main__":   # python -m experiments.hparam_cmd OUT1 OUT2 ... PNG
    compare(sys.argv[1:-1], sys.argv[-1])
