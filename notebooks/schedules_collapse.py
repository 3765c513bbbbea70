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
# # Learning-rate schedules and the scaling collapse
#
# PLRF (power-law random features: data $x_j = j^{-\alpha} z_j$, target $b_j = j^{-\beta}$, features
# $W \in \mathbb{R}^{v\times d}$) trained by one-pass SGD has an **exact** expected loss under any learning-rate
# schedule $\eta_r$: per eigenmode $k$ of $K = W^\top D W$,
# $e_k(r+1) = g_k(\eta_r)\,e_k(r) + n_k\frac{\eta_r^2}{B}\lambda_k^2 P(r)$, $P = P^* + \sum_k e_k$. That makes it a
# test bed for the approximate *schedule laws* proposed for large models, and for the *scaling collapse* of
# compute-optimal training curves (Qiu et al. 2025).
#
# Conventions: loss without 1/2, SGD step without factor 2 ($\theta \leftarrow \theta - \frac{\eta}{B}\sum_i
# W^\top x_i(\langle W^\top x_i,\theta\rangle - y_i)$), compute $f = d\,B\,\text{steps}$, intrinsic time
# $\tau(t) = \sum_{r<t}\eta_r$.
#
# Contents: (1) four schedules, exact curves vs eigen-SGD means; (2) approximate predictors from
# `theory.schedule_laws` and their errors against the exact curves; (3) the scaling collapse of
# compute-optimal curves over $d$ (`theory.collapse`), the seed-noise floor, and how the collapse breaks at
# off-optimal horizons.
#
# `PLRF_NOTEBOOK_SMALL=1` runs everything at small sizes (CI).

# %%
import os
import time

import jax
import matplotlib.pyplot as plt
import numpy as np

import plrf
from plrf import schedules
from theory import collapse as CL
from theory import schedule_laws as SL
from theory.deterministic import deterministic_spectrum
from theory.ladder import data_dim, geometric_ladder, ladder_curves, ladder_lr
from theory.logtime import solve_logtime
from theory.phases import exponents
from theory.prediction import Prediction

SMALL = os.environ.get("PLRF_NOTEBOOK_SMALL", "0") == "1"

ALPHA, BETA = 1.0, 0.7                  # phase II
D = 128 if SMALL else 512               # model size of the schedule comparison (v = 4d)
STEPS = 4_000 if SMALL else 30_000      # horizon of the schedules
SEEDS = 8 if SMALL else 32              # eigen-SGD seeds
H_LADDER = (16, 256) if SMALL else (16, 8192)       # d range used to locate the compute-optimal horizons
H_FLOPS = 1e6 if SMALL else 1e10
COLLAPSE_DS = (32, 64, 128) if SMALL else (64, 128, 256, 512, 1024)
COLLAPSE_SEEDS = 8 if SMALL else 16

plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3})
print(f"SMALL={SMALL}: d={D}, {STEPS} steps, {SEEDS} seeds; collapse over d = {COLLAPSE_DS}")

# %% [markdown]
# ## 1. Four schedules: exact vs SGD
#
# Constant; cosine to zero; WSD (warmup-stable-decay without warmup: constant, then a linear cooldown over the
# last 20%); 8-1-1 (drops by $1/\sqrt{10}$ at 80% and by $1/10$ at 90% of training). All at the same peak
# $\eta = 0.5/\sum_{j\le v} j^{-2\alpha}$. Lines: exact expected loss (`plrf.expected_loss`); bands: eigen-SGD
# mean ± 2 standard errors. The exact curves come from a `theory.prediction.Prediction`, built once per spectrum
# and queried for any schedule and step grid (log-time solver, relative accuracy ~1e-4; compiled once per
# spectrum size, not per schedule).

# %%
problem = plrf.Problem(ALPHA, BETA, v=4 * D, d=D)
spec = plrf.sample_spectrum(problem, key=jax.random.key(0))
peak = problem.default_lr(0.5)
scheds = {"constant": schedules.constant(peak), "cosine": schedules.cosine(peak, STEPS),
          "WSD": schedules.wsd(peak, STEPS, cooldown=0.2), "8-1-1": schedules.eight_one_one(peak, STEPS)}
grid = plrf.log_grid(STEPS, 60)
grid = np.union1d(grid, np.linspace(0, STEPS, 61).astype(np.int64))   # log-spaced early, linear late
pred = Prediction(spec)
print(pred, "| stability edges:", pred.edges())
exact, sgd = {}, {}
t0 = time.perf_counter()
for i, (name, s) in enumerate(scheds.items()):
    exact[name] = pred.loss(s, grid)
    sgd[name] = plrf.simulate(spec, s, steps=STEPS, method="eigen", key=jax.random.key(1), seeds=SEEDS, grid=grid)
print(f"4 schedules x {SEEDS} seeds in {time.perf_counter() - t0:.1f}s")

fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
late_pts = np.flatnonzero(grid >= STEPS // 2)[::3]              # sparse markers for the SGD means
for i, (name, s) in enumerate(scheds.items()):
    col, e, g = f"C{i}", exact[name], sgd[name]
    axes[0].plot(grid, np.asarray(s(grid)), color=col, label=name)
    axes[1].loglog(e.steps[1:], e.loss[1:], color=col, label=name)
    axes[2].plot(e.steps, e.loss, color=col, label=f"{name}: final {e.final:.3e}")
    axes[2].errorbar(g.steps[late_pts], g.loss[late_pts], yerr=2 * g.stderr[late_pts], fmt="o", ms=3, color=col,
                     alpha=0.7, capsize=0, lw=0.8)
axes[0].set(xlabel="step", ylabel="learning rate", title="schedules (same peak lr)")
axes[1].set(xlabel="steps", ylabel="loss", title="exact expected loss, whole run")
axes[2].set(yscale="log", xlim=(0.5 * STEPS, 1.01 * STEPS), xlabel="steps", ylabel="loss",
            title=f"second half: exact (lines), SGD mean ± 2 s.e. ({SEEDS} seeds)",
            ylim=(0.7 * min(e.final for e in exact.values()), 1.6 * exact["constant"].loss[grid >= STEPS // 2][0]))
for ax in axes:
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

for name in scheds:
    z = (sgd[name].loss[1:] - exact[name].loss[1:]) / sgd[name].stderr[1:]
    print(f"{name:>9}: exact final {exact[name].final:.4e}, SGD mean {sgd[name].final:.4e} ± "
          f"{sgd[name].stderr[-1]:.1e}; median |z| over the grid {np.median(np.abs(z)):.2f}")

# %% [markdown]
# ## 2. Approximate predictors
#
# `theory.schedule_laws` implements, in intrinsic time $\tau$:
#
# * **noise-ode** — the small-$\eta$ limit of the exact recursion: $de_k/d\tau = -2\lambda_k e_k +
#   (\eta(\tau)/B)\,n_k\lambda_k^2 P(\tau)$ (per-mode SGD-noise model of Qiu et al. 2025);
# * **adiabatic** — Qiu et al.'s rule from a constant run at the peak lr at equal $\tau$:
#   $L(\tau) = L_{\rm const}(\tau) + \tfrac12(\eta(\tau) - \eta_{\rm peak})\,\mathrm{Tr}\,\Sigma(\tau)/B$ (our
#   convention; $\tfrac14$ with a 1/2-loss), and **adiabatic-eq**, every mode at its exact equilibrium for the
#   current lr;
# * **fsl** — the functional scaling law of Li et al. (2025), with constants *derived* from the spectrum
#   (`fsl-spectral`: its exact $e(\tau)$ and kernel; `fsl-powerlaw`: the power-law forms);
# * **tissue** (Tissue et al. 2024) and **multi-power** (Luo et al. 2025) — empirical laws *fitted* on the
#   constant and cosine runs, then used to predict WSD and 8-1-1.

# %%
preds = SL.theory_predictors(spec, alpha=ALPHA, beta=BETA, solver=solve_logtime)   # exact reference: log-time solver
t0 = time.perf_counter()
fit_curves = [(scheds["constant"], exact["constant"]), (scheds["cosine"], exact["cosine"])]
tissue = SL.fit_tissue(fit_curves)
mpl = SL.fit_multipower(fit_curves, starts=1 if SMALL else 3)
preds["tissue (fit)"] = tissue.predict
preds["multi-power (fit)"] = mpl.predict
print(f"fits in {time.perf_counter() - t0:.1f}s: tissue rms {tissue.rms:.3f}, multi-power rms {mpl.rms:.3f} "
      "(log-loss residuals on the fitted runs)")

t0 = time.perf_counter()
out = {(sn, pn): np.asarray(f(s, steps=STEPS, grid=grid).loss)
       for sn, s in scheds.items() for pn, f in preds.items()}
print(f"{len(out)} predictions in {time.perf_counter() - t0:.1f}s\n")
late = grid >= STEPS // 10
print(f"{'predictor':>18} | " + " | ".join(f"{sn:>15}" for sn in scheds) + "   (max | final rel. error, steps >= 10%)")
for pn in preds:
    cells = []
    for sn in scheds:
        mx, fin, _ = SL.relative_errors(out[sn, pn], exact[sn].loss, grid, from_step=STEPS // 10)
        cells.append(f"{mx:6.1%} | {fin:6.1%}")
    print(f"{pn:>18} | " + " | ".join(f"{c:>15}" for c in cells))

# %% [markdown]
# Relative error of each predictor against the exact curve (lines), with the SGD noise level for scale (grey:
# ±2 standard errors of the eigen-SGD mean). Curves leaving the frame are in the table above.

# %%
fig, axes = plt.subplots(1, 4, figsize=(17, 4), sharey=True)
for ax, (sn, s) in zip(axes, scheds.items()):
    g = sgd[sn]
    band = 2 * g.stderr[late] / exact[sn].loss[late]
    ax.fill_between(grid[late], -band, band, color="0.9", label=f"± 2 s.e. of {SEEDS}-seed SGD")
    for j, pn in enumerate(preds):
        ax.plot(grid[late], out[sn, pn][late] / exact[sn].loss[late] - 1, color=f"C{j}", label=pn,
                ls="--" if "fit" in pn else "-")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="steps", title=sn, ylim=(-0.3, 0.3))
axes[0].set_ylabel("prediction / exact - 1")
fig.legend(*axes[0].get_legend_handles_labels(), loc="center right", fontsize=8)
plt.tight_layout(rect=(0, 0, 0.87, 1))
plt.show()

# %% [markdown]
# ## 3. Scaling collapse of compute-optimal curves
#
# Qiu et al. (2025): train each size $d$ for its compute-optimal horizon $T^*(d)$, subtract the irreducible loss
# $L_0$ and normalize by the final loss, $\ell(x) = (L(xT^*) - L_0)/(L(T^*) - L_0)$ with $x = t/T^*$. The curves of
# all sizes then fall on one another. The spread $\Delta(x) = \mathrm{std}_{d,\text{seed}}[\ell]/\mathrm{mean}[\ell]$
# is compared with the seed-noise floor $\sigma(x) = \mathrm{mean}_d(\mathrm{std}_\text{seed}[L - L_0]/
# \mathrm{mean}_\text{seed}[L - L_0])$; *supercollapse* is $\Delta(x) < \sigma(x)$ late in training with a decaying lr
# (`theory.collapse`).
#
# **Horizons.** `collapse.compute_optimal_horizons` locates $d^*(f)$ on exact constant-lr loss-vs-compute
# curves over a ladder of $d$ (deterministic-equivalent spectra, lr $0.5/\zeta(2\alpha)$, `theory.ladder`) and
# inverts the fitted $d^* \propto f^{\xi}$ into $T^*(d) = f^*(d)/d \propto d^{g}$, $g = 1/\xi - 1$.
# $L_0$ is fitted as $L = L_0 + a\,c^{-b}$ on the loss of each size at its own $T^*(d)$ against compute $c = dT^*$
# (expect $L_0 \approx 0$: $P^* \to 0$ as $d \to \infty$, nothing is irreducible in PLRF).

# %%
t0 = time.perf_counter()
hds = geometric_ladder(*H_LADDER, per_octave=1.0)
hcurves = ladder_curves(ALPHA, BETA, hds, flops_max=H_FLOPS)
hor = CL.compute_optimal_horizons([(c.d, c.steps, c.loss) for c in hcurves])


def T_star(d):
    """Compute-optimal horizon from the fitted frontier d* = coef f^xi (a power law in d)."""
    d = np.asarray(d, dtype=np.float64)
    return (d / hor.coef) ** (1.0 / hor.xi) / d


L_end = [np.exp(np.interp(np.log(T_star(c.d)), np.log(c.steps), np.log(c.loss))) for c in hcurves]
L0fit = CL.fit_L0(hds * T_star(hds), L_end)
L0 = L0fit.L0
print(f"horizon ladder ({len(hds)} sizes) in {time.perf_counter() - t0:.1f}s: xi = {hor.xi:.3f} "
      f"(theory {exponents(ALPHA, BETA).xi:.3f}), T* ~ d^{hor.g:.3f}")
print(f"L0 fit: L0 = {L0:.3e}, L ~ {L0fit.a:.3g} c^-{L0fit.b:.3f} (rms log residual {L0fit.rms:.3f})")
cds = np.array(COLLAPSE_DS)
T_opt = T_star(cds)
print("d  :", cds.tolist())
print("T* :", np.round(T_opt).astype(int).tolist())

# %% [markdown]
# **Curves.** For every $d$ one sampled $W$ ($v = 4d$, lr $0.5/\zeta(2\alpha)$), horizon $T^*(d)$, two schedules
# (constant, and cosine to zero over the horizon), eigen SGD with several seeds and the exact expected loss of
# the same instance. `collapse.decompose` splits the spread into the part across sizes (exact curves, no SGD
# noise; it still holds the instance-to-instance variation of $W$) and the seed noise.

# %%
def exact_and_sgd(d, T, sched_fn, seeds=COLLAPSE_SEEDS):
    """Exact and eigen-SGD curves of one sampled instance of size d over the horizon T."""
    T = int(max(2, round(T)))
    sp_ = plrf.sample_spectrum(plrf.Problem(ALPHA, BETA, v=4 * int(d), d=int(d)),
                               key=jax.random.fold_in(jax.random.key(10), int(d)))
    s = sched_fn(ladder_lr(ALPHA, int(d)), T)
    g = plrf.log_grid(T, 80)
    e = Prediction(sp_).loss(s, g)      # the solver pads to a size bucket: one compilation serves several d
    c = plrf.simulate(sp_, s, steps=T, method="eigen", key=jax.random.fold_in(jax.random.key(11), int(d)),
                      seeds=seeds, grid=g)
    return (e.steps, e.loss), (c.steps, c.per_seed)


collapse_scheds = {"constant": lambda lr, T: schedules.constant(lr), "cosine": lambda lr, T: schedules.cosine(lr, T)}
t0 = time.perf_counter()
runs = {}
for name, fn in collapse_scheds.items():
    pairs = [exact_and_sgd(d, T, fn) for d, T in zip(cds, T_opt)]
    runs[name] = ([p[0] for p in pairs], [p[1] for p in pairs])
print(f"collapse runs in {time.perf_counter() - t0:.1f}s")

# %%
fig, axes = plt.subplots(2, 3, figsize=(16, 8))
cmap = plt.get_cmap("viridis")
for row, (name, (ex, sg)) in zip(axes, runs.items()):
    res = CL.collapse(sg, L0=L0)
    spr = CL.decompose(ex, sg, L0=L0, x=res.x)
    ax = row[0]
    for i, (d, (st, lo)) in enumerate(zip(cds, ex)):
        ax.loglog(st[1:], lo[1:], color=cmap(i / len(cds)), label=f"d={d}, T*={st[-1]}")
    ax.set(xlabel="steps", ylabel="expected loss", title=f"{name}: raw curves over T*(d)")
    ax.legend(fontsize=7)
    ax = row[1]
    for i, d in enumerate(cds):
        ax.plot(res.x, res.l[i].T, color=cmap(i / len(cds)), lw=0.5, alpha=0.35)
        ax.plot(res.x, CL.collapse([ex[i]], L0=L0, x=res.x).l[0, 0], color=cmap(i / len(cds)), lw=2)
    ax.set(xscale="log", yscale="log", xlabel="x = t / T*", ylabel=r"$\ell(x)$",
           title=f"{name}: normalized (thick: exact, thin: SGD seeds)")
    ax = row[2]
    keep = spr.x < 0.98                       # at x = 1 every curve is 1 by construction
    ax.loglog(spr.x[keep], spr.total[keep], "k-", label=r"$\Delta(x)$, SGD seeds")
    ax.loglog(spr.x[keep], spr.sizes[keep], "C0--", label=r"$\Delta(x)$, exact curves (sizes only)")
    ax.loglog(spr.x[keep], spr.sigma[keep], "C3-", label=r"seed-noise floor $\sigma(x)$")
    ax.set(xlabel="x = t / T*", ylabel="relative spread", title=f"{name}: collapse quality")
    ax.legend(fontsize=8)
    late = (spr.x >= 0.5) & keep
    print(f"{name:>9}: x in [0.5, 0.98]: mean Delta = {np.mean(spr.total[late]):.4f}, sigma = "
          f"{np.mean(spr.sigma[late]):.4f} -> {'supercollapse' if np.all(spr.total[late] < spr.sigma[late]) else 'no supercollapse'}"
          f" (sizes-only Delta {np.mean(spr.sizes[late]):.4f})")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Off-optimal horizons.** The collapse is tied to the compute-optimal scaling of the horizon. In a scaling form
# $L \approx d^{-a} F(t/d^{g})$, a constant factor ($0.5\,T^*$, $2\,T^*$) only moves every size to the same other
# point of the universal curve, while a different exponent ($T \propto d^{g \pm 0.5}$) samples a different part of
# $F$ at each size and breaks the collapse. Exact curves on deterministic-equivalent spectra (no sampling noise
# at all), cosine schedule, over a wider ladder of sizes:

# %%
t0 = time.perf_counter()
off_ds = geometric_ladder(32, 256 if SMALL else 8192, per_octave=1.0)
ladders = CL.off_optimal_horizons(off_ds, T_star(off_ds), g=hor.g)
det_pred = {int(d): Prediction(deterministic_spectrum(ALPHA, BETA, int(d), v=data_dim(ALPHA, int(d)))) for d in off_ds}
fig, ax = plt.subplots(figsize=(8, 4.8))
for i, (name, Ts) in enumerate(ladders.items()):
    ex = [(lambda c: (c.steps, c.loss))(det_pred[int(d)].loss(schedules.cosine(ladder_lr(ALPHA, int(d)), int(T)),
                                                             plrf.log_grid(int(T), 80)))
          for d, T in zip(off_ds, Ts)]
    r = CL.collapse(ex, L0=L0)
    keep = r.x < 0.98
    mid = (r.x >= 0.2) & keep
    ax.loglog(r.x[keep], r.delta[keep], color=f"C{i}", lw=2.5 if name == "optimal" else 1.2,
              label=f"{name}: T = {Ts[0]}..{Ts[-1]}; mean Delta(0.2 <= x < 0.98) = {np.mean(r.delta[mid]):.4f}")
ax.set(xlabel="x = t / T", ylabel=r"$\Delta(x)$ of the exact curves", title=f"cosine schedule, d = {off_ds[0]}..{off_ds[-1]}: "
       "collapse vs horizon ladder")
ax.legend(fontsize=7)
plt.show()
print(f"off-optimal ladders ({len(off_ds)} sizes x {len(ladders)} ladders) in {time.perf_counter() - t0:.1f}s")
