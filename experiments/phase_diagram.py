"""The 4+3 phase diagram: compute-optimal exponents xi (d* ~ f^xi) and eta (P ~ f^-eta) over (alpha, beta).

For every point of a grid, plus one named point inside each of the seven phases and alpha = beta = 0.7 on the
II|III boundary, measures xi and eta from theory loss curves over a ladder of d (deterministic-equivalent
spectrum + log-time Volterra solver; see ``plrf compute-optimal``) and compares them with the exponents derived
symbolically in theory.phases. Writes OUT/results.json (one record per point), OUT/cells/ (one cell per
(alpha, beta, d): an interrupted run resumes), and three figures: heatmaps of theory and measurement,
measured vs theory by phase, and the local slopes against compute at the named points.
"""
from __future__ import annotations

import math
import os
import warnings
import time

import numpy as np

from . import options as opt
from .optim_options import add_optimizer_arguments

DEFAULT_OUT = "runs/phase-diagram"

NAMED = {"Ia": (0.8, 0.3), "Ib": (0.4, 0.35), "Ic": (0.2, 0.8), "II": (1.0, 0.7), "III": (0.7, 1.2),
         "IVa": (0.27, 1.0), "IVb": (0.4, 1.0), "II|III": (0.7, 0.7)}

PRESETS = {
    # quick: 8-10 decades of compute at every named point (the fit window; IVb's ends where d* reaches 1.7e7);
    # 5:41 on the 2-core CPU, quiet (21 min with two other jobs running, load ~9)
    "quick": dict(alphas=(0.35, 0.65, 1.1), betas=(0.4, 0.8, 1.3), d_min=16, d_max=2 ** 24, per_octave=1.0,
                  flops_max=1e13),
    "full": dict(alphas=tuple(np.round(np.arange(0.15, 1.51, 0.1), 3)), betas=tuple(np.round(np.arange(0.15, 1.61, 0.1), 3)),
                 d_min=16, d_max=2 ** 27, per_octave=2.0, flops_max=1e16),
}


def add_arguments(p):
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="quick: 3x3 grid + named points, d <= 1.7e7, f <= 1e13 (~6 min on 2 quiet cores); "
                        "full: 0.1-spaced grid, d <= 1.3e8, f <= 1e16, two rungs per octave (about 5 h on 2 cores; "
                        "resumable)")
    p.add_argument("--alphas", type=opt.positive_float, nargs="*", default=None, help="override the preset's alpha grid")
    p.add_argument("--betas", type=opt.real, nargs="*", default=None, help="override the preset's beta grid")
    p.add_argument("--no-named", action="store_true", help="skip the named points (one per phase)")
    p.add_argument("--d-max", type=opt.big_int, default=None, help="override the preset's largest d")
    p.add_argument("--flops-max", type=opt.positive_float, default=None, help="override the preset's compute")
    p.add_argument("--per-octave", type=opt.positive_float, default=None,
                   help="override the preset's ladder rungs per factor 2 in d (quick 1, full 2): one rung per octave "
                        "prints wiggles of about +-0.01 into the local slopes in Ic and IVa, two about +-0.002, four "
                        "+-0.0003")
    p.add_argument("--c", type=opt.positive_float, default=0.5, help="lr = c / sum_{j<=v} j^{-2 alpha}")
    p.add_argument("--ratio", type=opt.positive_float, default=4.0, help="v/d when 2 alpha < 1 (> 1)")
    p.add_argument("--overwrite", action="store_true", help="discard results stored in OUT with other settings")
    add_optimizer_arguments(p)
    opt.add_common(p, DEFAULT_OUT)


def points_of(cfg) -> list:
    """(label, alpha, beta): named points first, then admissible grid points."""
    pts = [] if cfg["no_named"] else [(k, a, b) for k, (a, b) in NAMED.items()]
    for a in cfg["alphas"]:
        for b in cfg["betas"]:
            if 2 * (a + b) > 1 + 1e-9:
                pts.append(("grid", float(a), float(b)))
    return pts


def _validate(args, cfg):
    """Options checked before any work (messages name the option): the d ladder and the points."""
    from theory.ladder import geometric_ladder

    from . import budget
    from .compute_optimal import check_ladder
    pts = points_of(cfg)
    if not pts:
        raise ValueError(f"--alphas/--betas: no admissible point (2(alpha + beta) > 1) in the grid alphas="
                         f"{cfg['alphas']} x betas={cfg['betas']}, and --no-named: nothing to compute")
    check_ladder(alpha=pts[0][1], beta=pts[0][2], d_min=cfg["d_min"], d_max=cfg["d_max"],
                 flops_max=cfg["flops_max"], batch=cfg["batch"], ratio=cfg["ratio"])
    ds = geometric_ladder(cfg["d_min"], cfg["d_max"], cfg["per_octave"])
    budget.check(budget.ladder(ds, flops_max=cfg["flops_max"], points=len(pts), cost=budget.optimizer_cost(args)), args,
                 say=budget.teller(args, "phase-diagram"))
    return ds, pts


def run(args):
    from plrf.store import prepare_out

    t0 = time.time()
    pre = dict(PRESETS[args.preset])
    cfg = dict(command="phase-diagram", preset=args.preset,
               alphas=[float(a) for a in (args.alphas or pre["alphas"])],
               betas=[float(b) for b in (args.betas or pre["betas"])], no_named=bool(args.no_named),
               d_min=pre["d_min"], d_max=int(args.d_max or pre["d_max"]),
               per_octave=float(args.per_octave or pre["per_octave"]),
               flops_max=float(args.flops_max or pre["flops_max"]), c=args.c, ratio=args.ratio, batch=1)
    from .optim_options import check_args, config_entries
    check_args(args)
    cfg.update(config_entries(args))
    ds, pts = _validate(args, cfg)
    with prepare_out(args.out, cfg, overwrite=args.overwrite) as out:   # before any work; locks OUT
        return _run(args, cfg, out, t0, ds, pts)


def _run(args, cfg, out, t0, ds, pts):
    from plrf.progress import Progress
    from theory.ladder import measure_frontier

    from .compute_optimal import fit_record
    from .optim_options import label, ladder_optimizer_fn

    name = label(args)   # "sgd" only for plain SGD: "sgd+ema=uniform" runs its own ladder next to SGD's
    store = out.cells()
    records, failed = [], []
    with Progress(len(pts) * len(ds) * (1 if name == "sgd" else 2), desc="phase diagram", unit="curves",
                  quiet=args.quiet) as bar:
        for label, a, b in pts:
            try:
                kw = dict(flops_max=cfg["flops_max"], c=cfg["c"], ratio=cfg["ratio"], store=store, progress=bar)
                if name == "sgd":
                    m = measure_frontier(a, b, ds, **kw)
                else:   # the optimizer and SGD on the same ladder (cells tagged by optimizer)
                    m = measure_frontier(a, b, ds, tag=name, optimizer_fn=ladder_optimizer_fn(args, a, b), **kw)
                    m_sgd = measure_frontier(a, b, ds, tag="sgd", **kw)
            except (ValueError, RuntimeError, FloatingPointError) as err:  # keep the rest of the diagram
                warnings.warn(f"phase-diagram point ({a}, {b}) failed: {err}")
                failed.append(dict(label=label, alpha=a, beta=b, error=str(err)))
                continue
            rec = fit_record(m, name)
            if name != "sgd":
                sgd = fit_record(m_sgd)
                for k in ("xi_measured", "xi_err", "eta_measured", "eta_err", "xi_local_last", "eta_local_last",
                          "eta_asymptote", "eta_asymptote_err"):
                    rec[f"sgd_{k}"] = sgd[k]
                rec["eta_gain"] = rec["eta_measured"] - sgd["eta_measured"]
                rec["eta_gain_err"] = float(np.hypot(rec["eta_err"], sgd["eta_err"]))
                rec["eta_gain_local"] = rec["eta_local_last"] - sgd["eta_local_last"]
                rec["xi_gain"] = rec["xi_measured"] - sgd["xi_measured"]
            rec["label"] = label
            records.append(rec)
            bar.set_postfix(f"{label} ({a}, {b}): xi {rec['xi_measured']:.3f}/{rec['xi_theory']:.3f} "
                            f"eta {rec['eta_measured']:.3f}/{rec['eta_theory']:.3f}")
    if not records:
        raise ValueError(f"no point of the phase diagram could be computed; first failure ({failed[0]['alpha']}, "
                         f"{failed[0]['beta']}): {failed[0]['error']}")
    out.save(dict(ladder=[int(d) for d in ds], points=records, failed=failed), dataset(records),
             wall_time=time.time() - t0)
    files = _draw(records, out.root)
    if not args.quiet:
        print(table(records))
        print(f"plrf phase-diagram: {len(records)} points; wrote {args.out}/results.json, {', '.join(files)}")
    return records


def dataset(records):
    """One entry per measured point (dim ``record``; its (alpha, beta) are ``record_alpha``, ``record_beta``; local
    slopes padded with NaN); the curves are the cells (dims alpha, beta, d, point)."""
    from plrf.store import records_dataset
    ds = records_dataset(records, "record", dims={"local_flops": "local", "local_xi": "local",
                                                  "local_eta": "local", "local1_flops": "local1",
                                                  "local1_eta": "local1", "flop_window": "window_end",
                                                  "xi_interval": "interval_end"})
    return ds.rename({k: f"record_{k}" for k in ("alpha", "beta") if k in ds})


def _draw(records, root):
    plot_heatmaps(records, os.path.join(root, "phase_diagram.png"))
    plot_scatter(records, os.path.join(root, "measured_vs_theory.png"))
    plot_local_slopes(records, os.path.join(root, "local_slopes.png"))
    files = ["phase_diagram.png", "measured_vs_theory.png", "local_slopes.png"]
    if records and "eta_gain" in records[0]:
        plot_gain(records, os.path.join(root, "gain.png"))
        files.append("gain.png")
    return files


def plot_gain(records, path):
    """The loss-exponent gain eta(optimizer) - eta(SGD) over the (alpha, beta) plane, both measured on the same
    ladder (envelope fits), with the phase boundaries; a second panel for the xi change."""
    import matplotlib as mpl

    from .plotting import new_figure, save
    name = records[0].get("optimizer", "optimizer")
    fig, axes = new_figure(2, 1, width=6.0, height=5.0)
    a = np.array([r["alpha"] for r in records])
    b = np.array([r["beta"] for r in records])
    pred = predicted_gain(name.split("+")[0])
    for ax, key, sym in ((axes[0, 0], "eta_gain", r"\eta"), (axes[0, 1], "xi_gain", r"\xi")):
        g = np.array([r[key] for r in records])
        lim = max(0.05, float(np.nanmax(np.abs(g))))
        base = key.split("_")[0]          # predicted change: DANA's predicted exponent - SGD's theory
        pgain = {i: r[base + "_predicted"] - r[base + "_theory"] for i, r in enumerate(records)
                 if base + "_predicted" in r}
        if pgain:
            lim = max(lim, max(abs(v) for v in pgain.values()))
        norm = mpl.colors.TwoSlopeNorm(0.0, -lim, lim)
        if pred is not None:   # DANA: the predicted change (theory.phases.time_maps) as the background
            ax.pcolormesh(pred["alpha"], pred["beta"], pred[key], cmap="RdBu_r", norm=norm, shading="nearest",
                          alpha=0.45, zorder=1, rasterized=True)
        handles = draw_boundaries(ax)
        sc = ax.scatter(a, b, c=g, cmap="RdBu_r", norm=norm, s=110, marker="s", edgecolors="k", zorder=5)
        for i, r in enumerate(records):
            pv = f" ({pgain[i]:+.2f})" if i in pgain else ""
            # grid labels above right; named points (they sit close to grid points) on two lines below, or
            # above for IVa and IVb (side by side in the narrow strip, a grid point below them)
            if r["label"] == "grid":
                txt, off, ha, va = f"{r[key]:+.2f}{pv}", (6, 4), "left", "bottom"
            elif r["alpha"] < 0.5 and r["beta"] >= 0.9:
                left = r["alpha"] < 1 - 0.5 ** 0.5   # IVa | IVb
                txt, off, ha, va = (f"{r['label']}\n{r[key]:+.2f}{pv}", (-3 if left else 4, 8),
                                    "right" if left else "center", "bottom")
            else:
                txt, off, ha, va = f"{r['label']}\n{r[key]:+.2f}{pv}", (0, -8), "center", "top"
            ax.annotate(txt, (r["alpha"], r["beta"]), xytext=off, textcoords="offset points", fontsize=6.5, ha=ha,
                        va=va, zorder=8, bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
        fig.colorbar(sc, ax=ax, label=rf"${sym}$({name}) $-$ ${sym}$(SGD)")
        ax.set_title(rf"${sym}$({name}) $-$ ${sym}$(SGD), measured on the same ladder"
                     + ("\n(predicted: in parentheses and the background)" if pred is not None else ""), fontsize=10)
    fig.suptitle(rf"Compute-optimal exponent change of {name} over SGD ($P \sim f^{{-\eta}}$, $d^* \sim f^{{\xi}}$;"
                 r" red in the $\eta$ panel: {name} scales better)".replace("{name}", name), fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    save(fig, path)
    return fig


def predicted_gain(optimizer, amax=1.6, bmax=1.7, n=61):
    """DANA's predicted exponent changes over SGD on an (alpha, beta) grid (:func:`theory.phases.exponents` with the
    optimizer's effective times; NaN where inadmissible), or None for an optimizer without a prediction."""
    from theory.phases import OPTIMIZERS, classify, exponents
    if optimizer == "sgd" or optimizer not in OPTIMIZERS:
        return None
    al, be = np.linspace(0.02, amax, n), np.linspace(0.0, bmax, n)
    out = {"alpha": al, "beta": be, "eta_gain": np.full((n, n), np.nan), "xi_gain": np.full((n, n), np.nan)}
    for i, y in enumerate(be):
        for j, x in enumerate(al):
            if classify(x, y) == "inadmissible":
                continue
            e, s = exponents(x, y, optimizer), exponents(x, y)
            out["eta_gain"][i, j], out["xi_gain"][i, j] = e.eta - s.eta, e.xi - s.xi
    return out


def replot(out_dir):
    """Redraw the three figures from OUT/results.json (no recomputation)."""
    from plrf.store import read_json
    records = read_json(os.path.join(out_dir, "results.json")).get("points", [])
    return _draw(records, out_dir)


def table(records) -> str:
    """Theory, envelope fit, last local slope and extrapolated asymptote (theory.asymptote) per point; notes mark
    boundary points (with the phases on both sides) and weakly identified xi (the interval within 5% of the
    optimal loss at the largest compute)."""
    def asym(r, k):
        v, e = r.get(f"{k}_asymptote", float("nan")), r.get(f"{k}_asymptote_err", float("nan"))
        return f"{v:6.3f}±{e:5.3f}" if np.isfinite(v) else f"{'n/a':>12}"
    rows = [f"{'point':>7} {'alpha':>5} {'beta':>5} {'phase':>6} | {'xi th':>6} {'xi meas':>13} {'xi loc':>6} "
            f"{'xi asym':>12} | {'eta th':>6} {'eta meas':>13} {'eta loc':>7} {'eta asym':>12} | note"]
    for r in records:
        note = []
        if r.get("boundaries"):
            note.append(f"on {r['boundaries']} ({r['adjacent_phases']})")
        if r.get("balance_pair") and r["balance_pair"] != "n/a" and not r.get("balance_is_asymptotic", True):
            note.append(f"pre-asymptotic balance {r['balance_pair']} at f = {r['balance_flops']:.1e} "
                        f"(asymptote: {r['asymptotic_pair']})")
        if r.get("xi_weakly_identified"):
            lo, hi = r["xi_interval"]
            note.append(f"xi weakly identified: [{lo:.3f}, {hi:.3f}] within 5% loss")
        rows.append(f"{r['label']:>7} {r['alpha']:5.2f} {r['beta']:5.2f} {r['phase']:>6} | {r['xi_theory']:6.3f} "
                    f"{r['xi_measured']:6.3f}±{r['xi_err']:5.3f} {r['xi_local_last']:6.3f} {asym(r, 'xi')} | "
                    f"{r['eta_theory']:6.3f} {r['eta_measured']:6.3f}±{r['eta_err']:5.3f} {r['eta_local_last']:7.3f} "
                    f"{asym(r, 'eta')} | {'; '.join(note)}")
    return "\n".join(rows)


PHASE_LABELS = {"Ia": (1.35, 0.2), "Ib": (0.44, 0.14), "Ic": (0.12, 1.45), "II": (1.4, 0.62),
                "III": (0.95, 1.55), "IVb": (0.43, 1.55)}


def draw_boundaries(ax, amax=1.6, bmax=1.7):
    """Phase boundaries on (alpha, beta) axes, with phase labels placed inside their regions (IVa, a strip
    0.25 < alpha < 1 - 1/sqrt(2), labelled outside with an arrow). Returns legend handles explaining the lines."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from theory.phases import IV_SPLIT
    kw = dict(color="k", lw=1.0)
    ax.plot([0, amax], [0.5, 0.5], **kw)
    ax.plot([0.5, 0.5], [0, bmax], **kw)
    ax.plot([0.5, min(amax, bmax)], [0.5, min(amax, bmax)], **kw)
    ax.plot([0.25, 0.25], [0.5, bmax], **kw)
    ax.plot([IV_SPLIT, IV_SPLIT], [0.5, bmax], **dict(kw, ls="--"))
    a = np.linspace(0, 0.5, 50)
    ax.fill_between(a, 0, 0.5 - a, color="0.85", zorder=0)
    ax.plot(a, 0.5 - a, color="0.4", lw=0.8)
    box = dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8)
    for name, (x, y) in PHASE_LABELS.items():
        ax.text(x, y, name, ha="center", va="center", fontsize=10, weight="bold", bbox=box, zorder=7)
    ax.annotate("IVa", xy=(0.5 * (0.25 + IV_SPLIT), 1.62), xytext=(0.1, 1.62), ha="center", va="center",
                fontsize=10, weight="bold", bbox=box, zorder=7,
                arrowprops=dict(arrowstyle="->", lw=0.8, color="k"))
    ax.set(xlim=(0, amax), ylim=(0, bmax), xlabel=r"$\alpha$ (data spectrum)", ylabel=r"$\beta$ (target)")
    return [Line2D([], [], **kw, label="phase boundary"),
            Line2D([], [], **dict(kw, ls="--"), label=r"IVa | IVb: $\alpha = 1 - 1/\sqrt{2}$"),
            Patch(color="0.85", label=r"inadmissible: $\alpha + \beta \leq 1/2$")]


def plot_heatmaps(records, path):
    from matplotlib.lines import Line2D

    from theory.phases import exponents

    from .plotting import new_figure, save
    fig, axes = new_figure(2, 2, width=6.0, height=5.0)
    A, Bt = np.meshgrid(np.linspace(0.01, 1.6, 161), np.linspace(0.01, 1.7, 171))
    th = {"xi": np.full(A.shape, np.nan), "eta": np.full(A.shape, np.nan)}
    for idx in np.ndindex(A.shape):
        a, b = A[idx], Bt[idx]
        if 2 * (a + b) > 1.0001:
            e = exponents(a, b)
            th["xi"][idx], th["eta"][idx] = e.xi, e.eta
    pts_a = np.array([r["alpha"] for r in records])
    pts_b = np.array([r["beta"] for r in records])
    handles = []
    for row, key, vmax in ((0, "xi", 1.0), (1, "eta", 1.2)):
        sym = r"\xi" if key == "xi" else r"\eta"
        ax = axes[row, 0]
        pc = ax.pcolormesh(A, Bt, th[key], cmap="viridis", vmin=0, vmax=vmax, shading="auto")
        handles = draw_boundaries(ax)
        ax.set_title(f"theory ${sym}$ (symbolic balance)")
        fig.colorbar(pc, ax=ax, label=f"${sym}$")
        ax = axes[row, 1]
        ax.pcolormesh(A, Bt, th[key], cmap="viridis", vmin=0, vmax=vmax, shading="auto", alpha=0.25)
        draw_boundaries(ax)
        meas = np.array([r[f"{key}_measured"] for r in records])
        sc = ax.scatter(pts_a, pts_b, c=meas, cmap="viridis", vmin=0, vmax=vmax, s=70, marker="s",
                        edgecolors="k", zorder=5)
        for r in records:
            ax.annotate(f"{r[f'{key}_measured']:.2f}", (r["alpha"], r["beta"]), xytext=(6, 4),
                        textcoords="offset points", fontsize=8, ha="left", va="bottom", zorder=8,
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.75))
        ax.set_title(f"measured ${sym}$ (envelope fit; values printed; theory faint)")
        fig.colorbar(sc, ax=ax, label=f"${sym}$")
    handles.append(Line2D([], [], marker="s", ls="none", mfc="0.6", mec="k", label="measured point (value next to it)"))
    fig.suptitle(r"Compute-optimal exponents: $d^* \sim f^{\xi}$, $P \sim f^{-\eta}$ (PLRF, one-pass SGD)",
                 fontsize=13)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=9, frameon=False)
    save(fig, path)
    return fig


PHASE_COLORS = {"Ia": "tab:blue", "Ib": "tab:cyan", "Ic": "tab:purple", "II": "tab:orange", "III": "tab:red",
                "IVa": "tab:green", "IVb": "tab:olive"}
POINT_STYLES = {"Ia": ("tab:blue", "-"), "Ib": ("tab:cyan", "-"), "Ic": ("tab:purple", "-"),
                "II": ("tab:orange", "-"), "III": ("tab:red", "-"), "IVa": ("tab:green", "-"),
                "IVb": ("tab:olive", "-"), "II|III": ("k", "-.")}


def plot_scatter(records, path):
    from .plotting import new_figure, save
    fig, axes = new_figure(2, 1, width=4.8, height=4.6)
    for ax, key in zip(axes[0], ("xi", "eta")):
        lo, hi = 0.0, 1.1
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.fill_between([lo, hi], [lo - 0.03, hi - 0.03], [lo + 0.03, hi + 0.03], color="0.85", label="±0.03")
        seen = set()
        for r in records:
            ph = r["phase"] if r["phase"] in PHASE_COLORS else "boundary"
            ax.errorbar(r[f"{key}_theory"], r[f"{key}_measured"], yerr=r[f"{key}_err"],
                        fmt="o" if r["label"] == "grid" else "*", ms=5 if r["label"] == "grid" else 10,
                        color=PHASE_COLORS.get(ph, "k"), label=None if ph in seen else ph, mec="k", mew=0.4)
            seen.add(ph)
        sym = r"\xi" if key == "xi" else r"\eta"
        ax.set(xlabel=f"theory ${sym}$", ylabel=f"measured ${sym}$ (largest compute reached)", xlim=(lo, hi),
               ylim=(lo, hi), title=f"${sym}$: measured vs theory (stars: named points)")
        ax.legend(fontsize=7.5, loc="upper left", title="phase", title_fontsize=7.5)
    fig.tight_layout()
    save(fig, path)
    return fig


def plot_local_slopes(records, path, which=None):
    from .plotting import new_figure, save
    fig, axes = new_figure(2, 1, width=5.6, height=4.4)
    named = [r for r in records if r["label"] != "grid"] or records   # grid points when run with --no-named
    for ax, key in zip(axes[0], ("xi", "eta")):
        for i, r in enumerate(named):
            col, ls = POINT_STYLES.get(r["label"], (f"C{i % 10}", "-"))
            ax.plot(r["local_flops"], r[f"local_{key}"], ls=ls, color=col, lw=1.5,
                    label=(f"{r['label']} {r.get('phase', '')}" if r["label"].startswith("(")
                           else f"{r['label']} ({r['alpha']}, {r['beta']})"))
            ax.axhline(r[f"{key}_theory"], color=col, ls="--", lw=0.9, alpha=0.8)
        sym = r"\xi" if key == "xi" else r"\eta"
        if any(np.size(r["local_flops"]) for r in named):
            ax.set_xscale("log")
        else:   # a narrow ladder: no window of local slopes (say so instead of an empty log axis)
            ax.text(0.5, 0.5, "no local slopes: the ladder is too narrow\n(raise --d-max or --flops-max)",
                    transform=ax.transAxes, ha="center", va="center", fontsize=8)
        ax.set(xlabel="compute $f$", ylabel=f"local ${sym}$", title=f"local ${sym}$ vs compute (dashed: theory)")
        ax.grid(alpha=0.3)
    h, lab = axes[0, 0].get_legend_handles_labels()
    if which is None:
        which = "named points" if named[0]["label"] != "grid" else "grid points (run without named points)"
    fig.suptitle(rf"Local slopes of the compute-optimal frontier at the {which} ($\alpha$, $\beta$)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(h, lab, loc="lower center", ncol=4, fontsize=8.5, frameon=False)
    save(fig, path)
    return fig
