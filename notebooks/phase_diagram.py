# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The 4+3 phase diagram of compute-optimal PLRF
#
# With compute $f = d\,B\,\text{steps}$ (here $B = 1$), which model size $d$ gives the lowest loss? For PLRF
# trained by one-pass SGD (Paquette, Paquette, Xiao, Pennington 2024, *4+3 phases of compute-optimal neural
# scaling laws*) the optimum follows power laws
#
# $$d^*(f) \sim f^{\xi}, \qquad P(f; d^*) \sim f^{-\eta},$$
#
# whose exponents depend on $(\alpha, \beta)$ through which two loss components balance at the optimum: the limit
# level $F_0 \approx P^*$ (~ $d^{-2\alpha + \max(0, 1-2\beta)}$), the population bias $F_{pp}$, the
# feature-embedding distortion $F_{ac}$ and the SGD noise (see the quickstart notebook, section 7).
#
# Conventions: loss without 1/2, SGD step without factor 2, $f = d B\,\text{steps}$, learning rate
# $\eta = 0.5/\sum_{j\le v} j^{-2\alpha}$ with $v = \infty$ when $2\alpha > 1$ and $v = 4d$ otherwise (then the lr
# shrinks with $d$, as the stochastic stability edge requires).
#
# This notebook: the phases and their exponents (derived symbolically), the theory heatmap, a measurement of
# the compute-optimal frontier at two points from exact loss curves over a ladder of $d$, the local slopes
# (finite-size drift), the same frontier from sampled instances with the engine (`plrf.ladder`, saved and
# reloaded with `plrf.load`), and, if present, the results of a `plrf phase-diagram` run.
#
# `PLRF_NOTEBOOK_SMALL=1` runs everything at small sizes (CI).

# %%
import os
import tempfile
import time
import warnings

import jax
import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
from IPython.display import Math, display

import plrf
from experiments.phase_diagram import NAMED, PHASE_COLORS, draw_boundaries
from plrf.store import CellStore
from theory import phases
from theory.deterministic import deterministic_spectrum
from theory.ladder import geometric_ladder, ladder_curve, ladder_lr, measure_frontier

SMALL = os.environ.get("PLRF_NOTEBOOK_SMALL", "0") == "1"

POINTS = {"II": NAMED["II"], "III": NAMED["III"]}     # where the frontier is measured
D_MIN, D_MAX = 16, (2 ** 10 if SMALL else 2 ** 17)    # ladder of model sizes (one value per octave)
FLOPS_MAX = 1e8 if SMALL else 1e12                     # largest compute
HEAT_N = 60 if SMALL else 200                          # heatmap resolution
ENGINE_DS = (16, 32, 64) if SMALL else (16, 32, 64, 128, 256, 512)
ENGINE_FLOPS = 3e5 if SMALL else 1e7

plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3})


def pm(x, err):
    """``x ± err``; the split error is undefined (inf) when a half of the fit window has < 2 points."""
    return f"{x:.3f} ± {err:.3f}" if np.isfinite(err) else f"{x:.3f} (error n/a)"


print(f"SMALL={SMALL}: ladder d = {D_MIN}..{D_MAX}, flops up to {FLOPS_MAX:.0e}")

# %% [markdown]
# ## 1. Phases and their exponents
#
# `theory.phases` writes every component as $d^{-p}\,t^{-q}$ ($t$ = steps), puts $d = f^x$, $t = f^{1-x}$ and
# maximizes over $x$ the slowest decay, $\eta = \max_x \min_i\,[p_i x + q_i(1-x)]$: a one-dimensional linear
# program whose optimum balances two terms. `dominant_pair(phase)` finds the balancing pair and
# `symbolic_exponents(phase)` solves the balance with sympy.

# %%
rows = []
for ph in phases.PHASES:
    a, b = NAMED[ph]
    xi, eta = phases.symbolic_exponents(ph)
    ex = phases.exponents(a, b)
    pair = " = ".join(phases.dominant_pair(ph))
    display(Math(rf"\text{{{ph}}}:\ \ {pair.replace('F0', 'F_0').replace('Fpp', 'F_{pp}').replace('Fac', 'F_{ac}')}"
                 rf"\qquad \xi = {sp.latex(xi)}, \qquad \eta = {sp.latex(eta)}"))
    rows.append((ph, a, b, phases.classify(a, b), ex.xi, ex.eta))
print(f"{'phase':>5} {'alpha':>5} {'beta':>5} {'classify':>8} {'xi':>6} {'eta':>6}   (named points)")
for r in rows:
    print(f"{r[0]:>5} {r[1]:5.2f} {r[2]:5.2f} {r[3]:>8} {r[4]:6.3f} {r[5]:6.3f}")

pp = phases.phase_point(0.7, 0.7)
print(f"\n(0.7, 0.7): classified {pp.phase!r}, on boundary {pp.boundaries}, adjacent phases {pp.adjacent}")

# %% [markdown]
# The heatmap of the exponents over the admissible region ($\alpha > 0$, $2(\alpha+\beta) > 1$; grey: not
# admissible). $\eta$ is continuous across every boundary; $\xi$ jumps across the IVa | IVb line (dashed).

# %%
A, Bt = np.meshgrid(np.linspace(0.01, 1.6, HEAT_N), np.linspace(0.01, 1.7, HEAT_N))
XI, ETA = np.full(A.shape, np.nan), np.full(A.shape, np.nan)
for idx in np.ndindex(A.shape):
    if 2 * (A[idx] + Bt[idx]) > 1.0001:
        e = phases.exponents(A[idx], Bt[idx])
        XI[idx], ETA[idx] = e.xi, e.eta

fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
for ax, Z, name, vmax in ((axes[0], XI, r"$\xi$ ($d^* \sim f^{\xi}$)", 1.0), (axes[1], ETA, r"$\eta$ ($P \sim f^{-\eta}$)", 1.2)):
    pc = ax.pcolormesh(A, Bt, Z, cmap="viridis", vmin=0, vmax=vmax, shading="auto")
    draw_boundaries(ax)
    for label, (a, b) in NAMED.items():
        ax.plot(a, b, "*", ms=11 if label in POINTS else 7, mfc="w" if label in POINTS else "none", mec="k")
    ax.set_title("theory " + name)
    ax.grid(False)
    fig.colorbar(pc, ax=ax)
fig.suptitle("compute-optimal exponents (stars: named points; filled: measured below)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Measuring the frontier
#
# `theory.ladder.measure_frontier(alpha, beta, ds, flops_max=...)` computes, for every $d$ of a geometric ladder,
# the exact expected loss against compute (deterministic-equivalent spectrum + log-time Volterra solver: no
# sampling, no cost growing with the number of steps), then fits the compute-optimal frontier in two ways
# (Hoffmann et al. 2022): **approach 1** takes the lower envelope over $d$ and its (staircase) argmin; **approach
# 2** fits a parabola in $\ln d$ around the argmin at each compute. A flop window where the optimum is bracketed
# well inside the ladder is chosen automatically. The curves are cached in a `CellStore` (one file per
# $(\alpha, \beta, d)$), so an interrupted run resumes.

# %%
ds = geometric_ladder(D_MIN, D_MAX, per_octave=1.0)
out_dir = tempfile.mkdtemp(prefix="plrf-frontier-")
store = CellStore(out_dir, {"notebook": "phase_diagram", "flops_max": FLOPS_MAX, "ladder": ds.tolist()})
meas = {}
for ph, (a, b) in POINTS.items():
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # EdgeWarning would flag an optimum at the ladder's edge (see edge_limited)
        meas[ph] = measure_frontier(a, b, ds, flops_max=FLOPS_MAX, store=store)
    m = meas[ph]
    print(f"{ph} ({a}, {b}): {len(ds)} curves in {time.perf_counter() - t0:.1f}s; window {m.fit.window[0]:.2g}.."
          f"{m.fit.window[1]:.2g} flops, edge-limited: {m.fit.edge_limited}")
    for name, f in (("approach 1", m.fit), ("approach 2", m.fit2)):
        print(f"   {name}: xi = {pm(f.xi, f.xi_err)} (theory {m.xi_theory:.3f}),  "
              f"eta = {pm(f.eta, f.eta_err)} (theory {m.eta_theory:.3f})")
store.finish()

# %%
fig, axes = plt.subplots(len(POINTS), 2, figsize=(12, 4.3 * len(POINTS)), squeeze=False)
for row, (ph, m) in zip(axes, meas.items()):
    ax = row[0]
    cmap = plt.get_cmap("viridis")
    for i, c in enumerate(m.curves):
        ax.loglog(c.flops, c.loss, color=cmap(i / max(1, len(m.curves) - 1)), lw=1,
                  label=f"d={c.d}" if i in (0, len(m.curves) - 1) else None)
    ax.loglog(m.fit.flops, m.fit.envelope, "r-", lw=2.5, alpha=0.6, label="envelope")
    lo, hi = m.fit.window
    fw = np.geomspace(lo, hi, 20)
    env_w = np.interp(np.log(fw), np.log(m.fit.flops), np.log(m.fit.envelope))
    ax.loglog(fw, 0.7 * np.exp(env_w[0]) * (fw / lo) ** -m.eta_theory, "k--",
              label=rf"slope $-\eta$ = {-m.eta_theory:.3f} (theory)")
    ax.axvspan(lo, hi, color="0.92", zorder=0)
    ax.set(xlabel="compute f = d x steps", ylabel="expected loss", ylim=(m.fit.envelope[np.isfinite(m.fit.envelope)].min() / 3, 3),
           title=f"{ph} (alpha={m.alpha}, beta={m.beta}): loss vs compute")
    ax.legend(fontsize=8)
    ax = row[1]
    ax.loglog(m.fit.flops, m.fit.argmin_d, "C0-", drawstyle="steps-mid", label="approach 1: argmin d (staircase)")
    ax.loglog(m.fit2.flops, m.fit2.argmin_d, "C1-", label="approach 2: parabola vertex")
    d_mid = np.exp(np.interp(np.log(np.sqrt(lo * hi)), np.log(m.fit2.flops[np.isfinite(m.fit2.argmin_d)]),
                             np.log(m.fit2.argmin_d[np.isfinite(m.fit2.argmin_d)])))
    ax.loglog(fw, d_mid * (fw / np.sqrt(lo * hi)) ** m.xi_theory, "k--", label=rf"slope $\xi$ = {m.xi_theory:.3f} (theory)")
    ax.axvspan(lo, hi, color="0.92", zorder=0)
    ax.set(xlabel="compute f", ylabel="compute-optimal d*", title=f"approach 1: xi = {pm(m.fit.xi, m.fit.xi_err)}, eta = {pm(m.fit.eta, m.fit.eta_err)}")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Local slopes: finite-size drift
#
# The exponents are asymptotic. The local slopes $d\ln d^*/d\ln f$ and $-d\ln P^*/d\ln f$, least squares over a
# sliding window of `fit.local.window_decades` decades of compute (`fit.local`), show how fast the measured
# exponents approach the theory (dashed). Approach
# 2's vertex is smooth; approach 1's argmin is a staircase, so its local $\xi$ is only meaningful over several
# ladder steps.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for i, (ph, m) in enumerate(meas.items()):
    col = PHASE_COLORS.get(ph, f"C{i}")
    for ax, key, th in ((axes[0], "xi", m.xi_theory), (axes[1], "eta", m.eta_theory)):
        ax.semilogx(m.fit2.local.flops, getattr(m.fit2.local, key), "-", color=col, label=f"{ph}: approach 2")
        if key == "eta":
            ax.semilogx(m.fit.local.flops, m.fit.local.eta, ":", color=col, label=f"{ph}: approach 1")
        ax.axhline(th, color=col, ls="--", lw=1)
win = next(iter(meas.values())).fit2.local.window_decades
axes[0].set(xlabel="compute f", ylabel=r"local $\xi$", title=rf"local $\xi$ over {win:g} decades (dashed: theory)")
axes[1].set(xlabel="compute f", ylabel=r"local $\eta$", title=rf"local $\eta$ over {win:g} decades (dashed: theory)")
for ax in axes:
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The curves were cached in `out_dir`; `plrf.load` reads such a directory back as an `xarray.Dataset`
# (dims alpha, beta, d and `point` along each curve, padded with NaN; `.sel(..., method="nearest")`,
# `.to_dataframe()`), whether it was written by a notebook, the CLI or a multi-host run, finished or interrupted.

# %%
res = plrf.load(out_dir)
print(res)
one = res.sel(alpha=POINTS["II"][0], beta=POINTS["II"][1], d=int(ds[-1])).dropna("point")
print(f"d = {ds[-1]} at II: {one.flops.size} grid points, loss at f = {float(one.flops[-1]):.0e}: "
      f"{float(one.loss[-1]):.4e}")

# %% [markdown]
# ## 4. The same frontier from sampled instances (engine)
#
# The theory curves above use the deterministic-equivalent spectrum. `plrf.ladder` runs the JAX engine over a
# ladder of $d$, one sampled $W$ per $d$ (`v = 4d`), at the same learning rate, with any simulator (here the
# exact expected loss of each sampled instance; `method="eigen"` with `seeds=...` gives SGD runs), and stores
# one cell per $d$ in `out` (resumable). Dashed: the deterministic equivalent at the same $v = 4d$ and lr. At
# small $d$ the sampled curves scatter around it (one $W$ per size).

# %%
a, b = POINTS["II"]
eng_dir = tempfile.mkdtemp(prefix="plrf-ladder-")
t0 = time.perf_counter()
res_eng = plrf.ladder(plrf.Problem(a, b, v=4 * ENGINE_DS[0], d=ENGINE_DS[0]), list(ENGINE_DS),
                      schedule_fn=lambda p, steps: plrf.schedules.constant(ladder_lr(p.alpha, p.d)),
                      steps=lambda d: int(ENGINE_FLOPS // d), key=jax.random.key(0), method="expected",
                      num=60, out=eng_dir, quiet=True)
print(f"engine ladder: {len(ENGINE_DS)} sizes in {time.perf_counter() - t0:.1f}s -> {eng_dir}")
print(res_eng)

fig, ax = plt.subplots(figsize=(7, 4.5))
cmap = plt.get_cmap("plasma")
for i, d in enumerate(ENGINE_DS):
    cell = res_eng.sel(d=d).dropna("point")   # alpha, beta, batch, lr scale, seed: singletons, squeezed
    col = cmap(i / len(ENGINE_DS))
    ax.loglog(d * cell.steps.values[1:], cell.loss.values[1:], "-", color=col, label=f"d={d}: sampled W")
    th = ladder_curve(a, b, d, flops_max=ENGINE_FLOPS, spectrum=deterministic_spectrum(a, b, d, v=4 * d))
    ax.loglog(th.flops, th.loss, "--", color=col, lw=1)
ax.set(xlabel="compute f", ylabel="expected loss", title=f"II ({a}, {b}): sampled instances (solid) vs "
       "deterministic equivalent (dashed)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 5. Results of a `plrf phase-diagram` run (optional)
#
# `plrf phase-diagram --preset quick --out runs/phase-diagram` measures the exponents over a grid of
# $(\alpha, \beta)$ and at one named point per phase (about 6 minutes on 2 cores). Point `PLRF_PHASE_DIAGRAM` at
# its out dir (default `runs/phase-diagram`) to plot measured against theory here.

# %%
run_dir = os.environ.get("PLRF_PHASE_DIAGRAM", os.path.join("runs", "phase-diagram"))
if os.path.exists(os.path.join(run_dir, "results.json")):
    from plrf.store import read_json
    points = read_json(os.path.join(run_dir, "results.json")).get("points", [])
    loaded = plrf.load(run_dir)
    print(f"{run_dir}: {len(points)} points; {loaded}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, key in zip(axes, ("xi", "eta")):
        ax.plot([0, 1.1], [0, 1.1], "k-", lw=0.8)
        for p in points:
            ax.errorbar(p[f"{key}_theory"], p[f"{key}_measured"], yerr=p[f"{key}_err"], fmt="o",
                        color=PHASE_COLORS.get(p["phase"], "k"), ms=4)
        ax.set(xlabel=f"theory {key}", ylabel=f"measured {key}", title=f"{key}: measured vs theory")
    plt.tight_layout()
    plt.show()
else:
    print(f"no results in {run_dir!r} (run `plrf phase-diagram --out {run_dir}` first); skipped")
