"""``plrf data-frontier``: the data-constrained compute-optimal frontier and the effective-data multiplier E(K, N).

Both in the small-lr (gradient-flow) limit of batch-1 SGD with lr ``c / tr K`` (theory.finite_data):

- **E(K, N)** (``effective_data``) on the planted spectrum ``lam_j = j^-2alpha``, ``w_j = j^-(2alpha+2beta)``,
  ``j <= --effective-d`` (P* = 0, plus ``--label-noise``): K epochs on N samples follow gradient flow on the
  empirical loss to time ``K c N / tr K``; E = n / N where one pass over n fresh samples reaches the same
  population loss. Its saturation level ``max_K E(K, N)`` is fitted against N by a power law (slope with error
  bars) and by Yan et al.'s ``a log N + b``; the better fit (smaller rms log residual) is reported next to the
  ``N^(2alpha - 1)`` law of the noiseless planted spectrum.
- **The frontier** (``data_frontier``): compute ``f = d x K x N`` (batch 1, ``f = d B steps``), the two-level
  deterministic spectrum of K at each d of ``--ds`` (v = 4d); per (f, N) the best d, its epochs and loss, against
  the unlimited-data frontier; repetition "stops paying" at the first compute where the N-sample frontier is
  ``--tol`` (10%) above the unlimited one.
- the symbolic exponents (``theory.finite_data.exponents``).

One resumable cell per (quantity, N) in ``OUT/cells`` (verified on read; another configuration is refused unless
``--overwrite``). Writes OUT/results.json, OUT/data_frontier.png and OUT/effective_data.png (``plrf plot OUT``
redraws them).
"""
from __future__ import annotations

import argparse
import math
import os
import time

from . import budget
from . import options as opt

DEFAULT_OUT = "runs/data-frontier"
DEFAULT_SAMPLES = "16,64,256,1024,4096"
DEFAULT_COMPUTES = "1e3:1e10:3"
DEFAULT_DS = "8:16384"
N_MAX = 10 ** 7
EFFECTIVE_D_MAX = 65536
D_MAX = 2 ** 17
COMPUTE_MAX = 1e14
EPOCHS_MAX = 2 ** 24
PER_DECADE = 16          # contour nodes per decade of effective_data (converged to < 1e-8 at 16, see README)
V_RATIO = 4


# ---------------------------------------------------------------------------------------------------------
# options

def _ints(text, lo, hi, what):
    try:
        xs = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {text!r}")
    if not xs or any(not math.isfinite(x) or x != int(x) or not lo <= x <= hi for x in xs):
        raise argparse.ArgumentTypeError(f"each {what} must be an integer in [{lo}, {hi:.4g}], got {text!r}")
    return sorted(set(int(x) for x in xs))


def samples_list(text):
    """``--samples 64,256,1024``: sorted distinct N in [1, 1e7]."""
    return _ints(text, 1, N_MAX, "N")


def ds_list(text):
    """``--ds 8,64,512`` or ``--ds 8:16384`` (the powers of 2 in that range): model sizes in [2, 2^17]."""
    if ":" in str(text):
        try:
            lo, hi = (float(t) for t in str(text).split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected LO:HI (powers of 2 in [LO, HI]) or a comma list, got {text!r}")
        if not (2 <= lo <= hi <= D_MAX):
            raise argparse.ArgumentTypeError(f"LO:HI must satisfy 2 <= LO <= HI <= {D_MAX}, got {text!r}")
        ds = [2 ** k for k in range(1, 18) if lo <= 2 ** k <= hi]
        if not ds:
            raise argparse.ArgumentTypeError(f"no power of 2 in [{lo:g}, {hi:g}]")
        return ds
    return _ints(text, 2, D_MAX, "d")


def computes_list(text):
    """``--computes 1e3:1e10:3`` (LO:HI at PER_DECADE points per decade, log-spaced) or a comma list; each
    compute f in [1, 1e14]."""
    import numpy as np
    s = str(text)
    try:
        if ":" in s:
            parts = [float(t) for t in s.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            lo, hi = parts[:2]
            per = parts[2] if len(parts) == 3 else 3
            if not (1 <= lo < hi <= COMPUTE_MAX) or per != int(per) or not 1 <= per <= 16:
                raise argparse.ArgumentTypeError(f"LO:HI[:PER_DECADE] needs 1 <= LO < HI <= {COMPUTE_MAX:.0e} and "
                                                 f"PER_DECADE an integer in 1..16, got {text!r}")
            n = int(round(math.log10(hi / lo) * per)) + 1
            return [float(x) for x in np.geomspace(lo, hi, max(n, 2))]
        xs = sorted(set(float(t) for t in s.split(",") if t.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI[:PER_DECADE] or a comma list of numbers, got {text!r}")
    if not xs or any(not math.isfinite(x) or not 1 <= x <= COMPUTE_MAX for x in xs):
        raise argparse.ArgumentTypeError(f"each compute f must be in [1, {COMPUTE_MAX:.0e}], got {text!r}")
    return xs


def add_arguments(p):
    p.add_argument("--alpha", type=opt.positive_float, default=1.0, help="data spectrum exponent alpha > 0 "
                                                                         "(default: %(default)s)")
    p.add_argument("--beta", type=opt.real, default=0.7, help="target exponent beta, 2(alpha+beta) > 1 "
                                                              "(default: %(default)s)")
    p.add_argument("--samples", type=samples_list, default=samples_list(DEFAULT_SAMPLES), metavar="N,N,...",
                   help=f"sample sizes N (comma list, each in [1, {N_MAX:.0e}]; >= 3 for the saturation fits) "
                        f"(default: {DEFAULT_SAMPLES})")
    p.add_argument("--epochs-max", dest="epochs_max", type=opt.int_at_least(1), default=65536,
                   help=f"E(K, N) at K = 1, 2, 4, ... up to this (<= 2^24) (default: %(default)s)")
    p.add_argument("--computes", type=computes_list, default=computes_list(DEFAULT_COMPUTES),
                   metavar="LO:HI[:PER_DECADE]|F,F,...",
                   help=f"compute budgets f = d x B x steps (batch 1: d x K x N) of the frontier, in [1, "
                        f"{COMPUTE_MAX:.0e}] (default: {DEFAULT_COMPUTES}, log-spaced)")
    p.add_argument("--ds", type=ds_list, default=ds_list(DEFAULT_DS), metavar="LO:HI|D,D,...",
                   help=f"model sizes searched by the frontier: powers of 2 in [LO, HI] or a comma list, in [2, "
                        f"{D_MAX}] (default: {DEFAULT_DS})")
    p.add_argument("--c", type=opt.positive_float, default=0.1,
                   help="lr = c / tr K (batch 1), c in (0, 1]; the gradient-flow proxy is exact as c -> 0 "
                        "(E(1, N) ~ 0.9 at 0.1) (default: %(default)s)")
    p.add_argument("--effective-d", dest="effective_d", type=opt.int_at_least(2), default=16384,
                   help=f"modes of the planted spectrum of E(K, N), in [2, {EFFECTIVE_D_MAX}] (default: %(default)s)")
    p.add_argument("--tol", type=opt.positive_float, default=0.1,
                   help="repetition stops paying where the N-sample frontier is (1 + tol) x the unlimited-data "
                        "one, 0 < tol <= 10 (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="discard results stored in OUT with other settings")
    opt.add_label_noise(p)
    opt.add_common(p, DEFAULT_OUT)


def epochs_grid(epochs_max):
    return [2 ** k for k in range(0, int(math.floor(math.log2(epochs_max) + 1e-9)) + 1)]


def estimate_seconds(args) -> float:
    """Rough wall time on one loaded core (measured: about 6 s per E cell at d = 16384, 2.5 s per d of the
    frontier per N)."""
    nK = len(epochs_grid(args.epochs_max))
    eff = 6.0 * (args.effective_d / 16384) * (0.5 + nK / 34)
    front = 2.5 * len(args.ds)
    return len(args.samples) * (eff + front)


def validate(args):
    """Every range check, before any work (ValueError naming the option: exit 2)."""
    if 2 * (args.alpha + args.beta) <= 1:
        raise ValueError(f"--alpha/--beta inadmissible: need 2(alpha + beta) > 1, got alpha={args.alpha}, "
                         f"beta={args.beta}")
    if args.epochs_max > EPOCHS_MAX:
        raise ValueError(f"--epochs-max must be in [1, 2^24 = {EPOCHS_MAX}], got {args.epochs_max}")
    if args.effective_d > EFFECTIVE_D_MAX:
        raise ValueError(f"--effective-d must be in [2, {EFFECTIVE_D_MAX}], got {args.effective_d}")
    if args.c > 1:
        raise ValueError(f"--c must be in (0, 1] (lr = c / tr K; the gradient-flow proxy needs a small lr), "
                         f"got {args.c}")
    if args.tol > 10:
        raise ValueError(f"--tol must be in (0, 10], got {args.tol}")
    est = estimate_seconds(args)
    if est > args.time_limit * 3600:
        raise ValueError(f"--time-limit: estimated {est / 3600:.2g} h exceeds {args.time_limit} h (fewer --samples "
                         f"or --ds, or a smaller --effective-d)")
    return est


def config_of(args) -> dict:
    cfg = dict(command="data-frontier", alpha=args.alpha, beta=args.beta, samples=list(args.samples),
               epochs_max=args.epochs_max, computes=list(args.computes), ds=list(args.ds), c=args.c,
               effective_d=args.effective_d, tol=args.tol, v_ratio=V_RATIO, per_decade=PER_DECADE)
    cfg.update(opt.label_noise_config(args))
    return cfg


# ---------------------------------------------------------------------------------------------------------
# the cells

def planted(alpha, beta, d):
    """The planted PLRF spectrum of E(K, N): (lam, w), P* = 0."""
    import numpy as np
    j = np.arange(1, d + 1, dtype=np.float64)
    return j ** (-2 * alpha), j ** (-2 * alpha - 2 * beta)


def effective_cell(config, N) -> dict:
    """E(K, N) and the K-epoch population loss over the K grid (arrays of one cell)."""
    import numpy as np

    from theory.finite_data import effective_data
    lam, w = planted(config["alpha"], config["beta"], config["effective_d"])
    K = np.asarray(epochs_grid(config["epochs_max"]), float)
    E, L = effective_data(lam, w, 0.0, N, K, c=config["c"], noise=math.sqrt(config.get("label_noise", 0.0)),
                          per_decade=config["per_decade"])
    return dict(K=K, E=np.asarray(E, float), loss=np.asarray(L, float))


def frontier_cell(config, N) -> dict:
    """The data-constrained frontier at N (arrays of one cell)."""
    import numpy as np

    from theory.finite_data import data_frontier
    fr = data_frontier(config["alpha"], config["beta"], N, config["computes"], config["ds"], c=config["c"],
                       v_ratio=config["v_ratio"], noise=math.sqrt(config.get("label_noise", 0.0)))
    return {k: np.asarray(v, float) for k, v in fr._asdict().items()}


COMPUTE = {"effective": effective_cell, "frontier": frontier_cell}


def run(args):
    from plrf.store import prepare_out
    t0 = time.time()
    est = validate(args)
    config = config_of(args)
    with prepare_out(args.out, config, overwrite=args.overwrite) as out:   # before any work; locks OUT
        return _run(args, config, out, t0, est)


def _say(args, msg):
    say = budget.teller(args, "data-frontier")
    if say:
        say(msg)


def _run(args, config, out, t0, est):
    import numpy as np

    from plrf.store import read_json
    store = out.cells()
    todo = [(q, N) for q in ("effective", "frontier") for N in config["samples"]]
    _say(args, f"{len(todo)} cells (E(K, N) and the frontier for N = {config['samples']}); estimated "
               f"{est / 60:.1g} min")
    cells = {}
    for i, (q, N) in enumerate(todo, 1):
        coords = dict(quantity=q, N=int(N))
        t1 = time.time()
        if store.done(coords):
            arrs = store.get(coords).arrays
            how = "resumed"
        else:
            arrs = COMPUTE[q](config, int(N))
            store.put(coords, arrs)
            how = f"{time.time() - t1:.1f} s"
        cells[(q, int(N))] = {k: np.asarray(v) for k, v in arrs.items()}
        if q == "effective":
            E = cells[(q, int(N))]["E"]
            what = f"E(1) = {E[0]:.3g}, max_K E = {np.nanmax(E):.4g}"
        else:
            r = cells[(q, int(N))]
            what = f"loss at f = {config['computes'][-1]:.3g}: {r['loss_opt'][-1]:.4g} ({r['loss_opt'][-1] / r['loss_opt_fresh'][-1]:.3g} x unlimited)"
        _say(args, f"[{i}/{len(todo)}] {q} N = {N}: {what} ({how}; {time.time() - t0:.0f} s)")
    results = analyse(cells, config)
    out.save(results, wall_time=time.time() - t0)
    r = read_json(os.path.join(args.out, "results.json"))    # plotted as `plrf plot` reads it
    plot_frontier(r, out.file("data_frontier.png"))
    plot_effective(r, out.file("effective_data.png"))
    if not args.quiet:
        print(format_summary(results))
        _say(args, f"wrote {args.out}/results.json, data_frontier.png, effective_data.png [{time.time() - t0:.0f} s]")
    return results


# ---------------------------------------------------------------------------------------------------------
# analysis

def saturation_fits(Ns, E_sat, alpha, saturated=None) -> dict:
    """Power fit ``E_sat = A N^p`` (slope with error bars, theory.hparam_laws.power_fit) and Yan et al.'s
    ``E_sat = a log N + b`` (least squares in E); each with its rms residual in log E; the better one named."""
    import numpy as np

    from theory.hparam_laws import power_fit
    Ns, E = np.asarray(Ns, float), np.asarray(E_sat, float)
    ok = np.isfinite(E) & (E > 0)
    out = dict(law_2alpha_minus_1=2 * alpha - 1, power=None, log=None, better=None)
    if ok.sum() < 3:
        out["note"] = "fewer than 3 finite saturation levels: no fit"
        return out
    x, y = Ns[ok], E[ok]
    pf = power_fit(x, y)
    res_p = np.log(y) - (pf.intercept + pf.slope * np.log(x))
    out["power"] = dict(slope=pf.slope, err=pf.err, se=pf.se, boot=pf.boot, intercept=pf.intercept, n=pf.n,
                        rms_log_resid=float(np.sqrt(np.mean(res_p ** 2))),
                        z_vs_2alpha_minus_1=float((pf.slope - (2 * alpha - 1)) / pf.err) if pf.err > 0 else None)
    a, b = _log_fit(x, y)
    rms_l = float(np.sqrt(np.mean((np.log(y) - np.log(a * np.log(x) + b)) ** 2)))
    out["log"] = dict(a=a, b=b, rms_log_resid=rms_l)
    if saturated is not None and np.sum(np.asarray(saturated)[ok]) >= 3:   # the same power fit on saturated N only
        s = np.asarray(saturated)[ok]
        ps = power_fit(x[s], y[s])
        out["power_saturated_only"] = dict(slope=ps.slope, err=ps.err, n=ps.n, N=x[s])
    out["better"] = "power" if out["power"]["rms_log_resid"] <= rms_l else "log"
    best = min(out["power"]["rms_log_resid"], rms_l)
    monotone = bool(np.all(np.diff(y) > 0))
    out["monotone_in_N"] = monotone
    out["verdict"] = (f"{out['better']} (rms log residual {best:.3g} vs {max(out['power']['rms_log_resid'], rms_l):.3g})"
                      if monotone and best < 0.1 else
                      f"neither fits (best rms log residual {best:.3g}"
                      + ("; the saturation level is not monotone in N)" if not monotone else ")"))
    return out


def _log_fit(x, y):
    """``y = a log x + b`` minimising the same rms log residual as the power fit (so the two are compared on
    equal terms), with ``a log x + b > 0`` on the data; starts from the least-squares line in y."""
    import numpy as np
    from scipy.optimize import least_squares
    lx, ly = np.log(x), np.log(y)
    a0, b0 = np.polyfit(lx, y, 1)
    if np.any(a0 * lx + b0 <= 0):
        a0 = (y.max() - y.min()) / max(np.ptp(lx), 1e-12)
        b0 = y.min() - a0 * lx.min() + 1e-3 * y.min()

    def resid(p):
        return np.log(np.maximum(p[0] * lx + p[1], 1e-300)) - ly
    sol = least_squares(resid, [a0, b0], x_scale=[max(abs(a0), 1e-12), max(abs(b0), y.min())])
    return float(sol.x[0]), float(sol.x[1])


def stop_point(computes, ratio, epochs, d_opt, tol) -> dict:
    """Where repetition stops paying: the first compute on the grid with ratio > 1 + tol (its K*, d*, ratio),
    the compute of the crossing interpolated in (log f, ratio), and K* at the last grid point below."""
    import numpy as np
    C, ratio = np.asarray(computes, float), np.asarray(ratio, float)
    above = np.nonzero(ratio > 1 + tol)[0]
    if above.size == 0:
        return dict(reached=False, ratio_max=float(np.max(ratio)), epochs_at_max_compute=float(epochs[-1]))
    k = int(above[0])
    out = dict(reached=True, compute=float(C[k]), epochs=float(epochs[k]), d=int(d_opt[k]), ratio=float(ratio[k]))
    if k > 0:
        f = (1 + tol - ratio[k - 1]) / (ratio[k] - ratio[k - 1])
        out["compute_cross"] = float(np.exp(np.log(C[k - 1]) + f * (np.log(C[k]) - np.log(C[k - 1]))))
        out["epochs_last_below"] = float(epochs[k - 1])
    else:
        out["compute_cross"] = None
        out["epochs_last_below"] = None
    return out


def analyse(cells, config) -> dict:
    import numpy as np

    from theory.finite_data import exponents
    Ns = config["samples"]
    K = np.asarray(epochs_grid(config["epochs_max"]), float)
    eff = []
    for N in Ns:
        E = np.asarray(cells[("effective", N)]["E"], float)
        i = int(np.nanargmax(E))
        grow = float(E[-1] / E[-2] - 1) if len(E) > 1 else math.nan
        eff.append(dict(N=N, E=E, loss=cells[("effective", N)]["loss"], E_max=float(E[i]), K_at_max=float(K[i]),
                        E_1=float(E[0]), saturated=bool(i < len(E) - 1 or grow < 0.01), last_doubling_gain=grow))
    sat = saturation_fits(Ns, [e["E_max"] for e in eff], config["alpha"], [e["saturated"] for e in eff])
    fr = []
    C = np.asarray(config["computes"], float)
    fresh = None
    for N in Ns:
        c = cells[("frontier", N)]
        ratio = np.asarray(c["loss_opt"], float) / np.asarray(c["loss_opt_fresh"], float)
        fresh = c
        fr.append(dict(N=N, loss_opt=c["loss_opt"], d_opt=c["d_opt"], epochs_opt=c["epochs_opt"], ratio=ratio,
                       stop=stop_point(C, ratio, np.asarray(c["epochs_opt"], float), c["d_opt"], config["tol"])))
    return dict(
        effective=dict(K=K, N=list(Ns), runs=eff, saturation=sat,
                       spectrum=f"planted lam_j = j^-2alpha, w_j = j^-(2alpha+2beta), j <= {config['effective_d']}, "
                                "P* = 0 (+ label noise)"),
        frontier=dict(computes=C, ds=config["ds"], loss_unlimited=fresh["loss_opt_fresh"],
                      d_opt_unlimited=fresh["d_opt_fresh"], runs=fr,
                      note="loss_opt: best d on --ds with N samples repeated as often as f allows (K = f/(d N)); "
                           "loss_unlimited: the same with fresh samples; stop: the first f where loss_opt > "
                           "(1 + tol) loss_unlimited"),
        exponents=exponents(config["alpha"], config["beta"]),
        note="gradient-flow limit of batch-1 SGD, lr = c / tr K (theory.finite_data); E(1, N) < 1 measures the "
             "proxy's error for one epoch")


def format_summary(r) -> str:
    e, s = r["effective"], r["effective"]["saturation"]
    lines = ["E(K, N): " + "; ".join(f"N = {x['N']}: E(1) = {x['E_1']:.3g}, max E = {x['E_max']:.4g} at K = "
                                     f"{x['K_at_max']:g}{'' if x['saturated'] else ' (not saturated)'}"
                                     for x in e["runs"])]
    if s.get("power"):
        p, lg = s["power"], s["log"]
        lines.append(f"saturation vs N: power N^({p['slope']:.3f} +- {p['err']:.3f}) (N^(2alpha-1) = "
                     f"N^{s['law_2alpha_minus_1']:g}), rms log residual {p['rms_log_resid']:.3g}; a log N + b (a = "
                     f"{lg['a']:.3g}): rms {lg['rms_log_resid']:.3g}; verdict: {s['verdict']}"
                     + (f"; saturated N only: N^({s['power_saturated_only']['slope']:.3f} +- "
                        f"{s['power_saturated_only']['err']:.3f})" if s.get("power_saturated_only") else ""))
    for x in r["frontier"]["runs"]:
        st = x["stop"]
        if st["reached"]:
            lines.append(f"frontier N = {x['N']}: {100 * (st['ratio'] - 1):.0f}% above unlimited data from f = "
                         f"{st['compute']:.3g} (K* = {st['epochs']:.3g}, d* = {st['d']}); "
                         + (f"crossing at f ~ {st['compute_cross']:.3g}, K* = {st['epochs_last_below']:.3g} at the "
                            "grid point before" if st["compute_cross"] else "already at the smallest compute"))
        else:
            lines.append(f"frontier N = {x['N']}: within tol of unlimited data up to the largest f (ratio "
                         f"{st['ratio_max']:.3g}, K* = {st['epochs_at_max_compute']:.3g})")
    ex = r["exponents"]
    lines.append(f"exponents: chi_t = {ex['chi_t']:.3g}, chi_N = {ex['chi_N']:.3g}, chi_d = {ex['chi_d']:.3g} "
                 f"(BAP m = {ex['bap_m']:.3g})")
    return "\n".join(lines)


def replot(out_dir):
    from plrf.store import read_json
    r = read_json(os.path.join(out_dir, "results.json"))
    plot_frontier(r, os.path.join(out_dir, "data_frontier.png"))
    plot_effective(r, os.path.join(out_dir, "effective_data.png"))
    return ["data_frontier.png", "effective_data.png"]


# ---------------------------------------------------------------------------------------------------------
# figures

def _title(config):
    s2 = config.get("label_noise", 0.0)
    return (rf"PLRF $\alpha$={config['alpha']}, $\beta$={config['beta']}, lr = {config['c']:g}/tr K (gradient-flow "
            "limit)" + (rf", $\sigma^2$={s2:g}" if s2 else ""))


def _no_minor_labels(ax):
    """Major tick labels only on log axes (minor labels such as 2x10^1 crowd a short axis, and their mathtext
    is most of the drawing time)."""
    from matplotlib.ticker import NullFormatter
    for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() == "log" and min(lim) > 0 and math.log10(max(lim) / min(lim)) > 1.5:
            axis.set_minor_formatter(NullFormatter())    # a short axis keeps them (else it has one label or none)


def effective_panel(ax, K, curves, title, ylabel="effective data multiplier E(K, N) = n_fresh / N"):
    """E vs epochs K: ``curves`` = [(E, plot kwargs incl. label)], with the line E = K; log axes, legend.
    (Shared by ``plrf data`` and ``plrf data-frontier``.)"""
    import numpy as np
    K = np.asarray(K, float)
    for E, kw in curves:
        ax.plot(K, np.asarray(E, float), **kw)
    ax.plot(K, K, "k:", lw=1, label="E = K (repeats as good as fresh)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("epochs K")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    _no_minor_labels(ax)


def plot_effective(r, path):
    import matplotlib
    import numpy as np

    from .plotting import new_figure, save
    config, e = r["config"], r["effective"]
    fig, axes = new_figure(ncols=2, width=5.6)
    fig.subplots_adjust(wspace=0.3)
    K, Ns = np.asarray(e["K"], float), np.asarray(e["N"], float)
    cmap = matplotlib.colormaps["viridis"]
    cols = [cmap(i / max(1, len(Ns) - 1) * 0.9) for i in range(len(Ns))]
    effective_panel(axes[0, 0], K, [(x["E"], dict(marker="o", ms=2.5, color=col, label=f"N = {x['N']}"))
                                    for x, col in zip(e["runs"], cols)],
                    _title(config) + f",\nplanted spectrum d = {config['effective_d']}")
    ax = axes[0, 1]
    Em = np.array([x["E_max"] for x in e["runs"]], float)
    for x, col, em in zip(e["runs"], cols, Em):
        ax.plot([x["N"]], [em], "o" if x["saturated"] else "^", color=col, ms=6)
    ax.plot(Ns, Em, "-", color="0.6", lw=0.8, label=f"max over K <= {int(K[-1])} (triangle: not saturated)")
    s = e["saturation"]
    Nf = np.geomspace(Ns.min(), Ns.max(), 100)
    if s.get("power"):
        p = s["power"]
        ax.plot(Nf, np.exp(p["intercept"]) * Nf ** p["slope"], "b--", lw=1.2,
                label=rf"power fit $N^{{{p['slope']:.2f} \pm {p['err']:.2f}}}$ (rms log resid {p['rms_log_resid']:.2g})")
        q = s["law_2alpha_minus_1"]
        if not config.get("label_noise"):     # the law of the noiseless planted spectrum
            ax.plot(Nf, Em[-1] * (Nf / Ns[-1]) ** q, ":", color="tab:green", lw=1.5,
                    label=rf"$\propto N^{{2\alpha-1}} = N^{{{q:g}}}$ (through the largest N)")
        lg = s["log"]
        y = lg["a"] * np.log(Nf) + lg["b"]
        ax.plot(Nf[y > 0], y[y > 0], "r-.", lw=1.2,
                label=f"Yan et al.: a log N + b, a = {lg['a']:.3g} (rms log resid {lg['rms_log_resid']:.2g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("samples N")
    ax.set_ylabel("saturation level max_K E(K, N)")
    ax.set_title("how many epochs pay: saturation of E vs N" + (f"\nverdict: {s['verdict']}" if s.get("verdict")
                                                               else f"\n({s.get('note', 'no fit')})"), fontsize=8)
    ax.legend(fontsize=6.5)
    ax.grid(True, which="major", alpha=0.3)
    _no_minor_labels(ax)
    save(fig, path)
    return fig


def plot_frontier(r, path):
    import matplotlib
    import numpy as np

    from .plotting import new_figure, save
    config, f = r["config"], r["frontier"]
    fig, axes = new_figure(ncols=3, width=5.0)
    fig.subplots_adjust(wspace=0.32)
    C = np.asarray(f["computes"], float)
    cmap = matplotlib.colormaps["viridis"]
    n = len(f["runs"])
    ax0, ax1, ax2 = axes[0]
    ax0.plot(C, np.asarray(f["loss_unlimited"], float), "k-", lw=2, label="unlimited fresh data")
    tol = config["tol"]
    for i, run in enumerate(f["runs"]):
        col = cmap(i / max(1, n - 1) * 0.9)
        st = run["stop"]
        ax0.plot(C, np.asarray(run["loss_opt"], float), "--", color=col, label=f"N = {run['N']}, repeated")
        ax1.plot(C, np.asarray(run["epochs_opt"], float), "-", color=col, label=f"N = {run['N']}")
        ax2.plot(C, np.maximum(np.asarray(run["ratio"], float) - 1, 1e-4), "-", color=col, label=f"N = {run['N']}")
        if st["reached"]:
            k = int(np.argmin(np.abs(C - st["compute"])))
            ax0.plot([st["compute"]], [np.asarray(run["loss_opt"], float)[k]], "o", color=col, ms=5)
            ax1.plot([st["compute"]], [st["epochs"]], "o", color=col, ms=6)
            ax2.plot([st["compute"]], [st["ratio"] - 1], "o", color=col, ms=5)
    ax0.set_yscale("log")
    ax0.set_ylabel("compute-optimal population loss (best d)")
    ax0.set_title(_title(config) + f"\ndots: first f {100 * tol:g}% above the unlimited-data frontier", fontsize=8)
    ax1.axhline(1, color="0.5", lw=0.8)
    ax1.set_yscale("log")
    ax1.set_ylabel("epochs K* = f / (d* N) at the optimum")
    ax1.set_title("epochs at the optimum (dots: where repetition stops paying)", fontsize=8)
    ax2.axhline(tol, color="r", lw=0.8, ls=":", label=f"tol = {tol:g}")
    ax2.set_yscale("log")
    ax2.set_ylim(bottom=1e-4)
    ax2.set_ylabel("excess loss: N-sample / unlimited-data frontier - 1")
    ax2.set_title("cost of repeating data (values below 1e-4, e.g. 0 while K* <= 1,\ndrawn on the bottom axis)",
                  fontsize=8)
    for ax in (ax0, ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("compute f = d x B x steps = d x K x N (batch 1)")
        ax.legend(fontsize=7)
        ax.grid(True, which="major", alpha=0.3)
        _no_minor_labels(ax)
    save(fig, path)
    return fig
