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
# # plrf quickstart: power-law random features trained by one-pass SGD
#
# **The model** (Paquette, Paquette, Xiao, Pennington 2024, *4+3 phases of compute-optimal neural scaling
# laws*). Data $x_j = j^{-\alpha} z_j$ ($j = 1..v$, $z \sim N(0, I_v)$), target $y = \langle x, b\rangle$ with
# $b_j = j^{-\beta}$, random features $W \in \mathbb{R}^{v\times d}$ with iid $N(0, 1/d)$ entries; the model
# predicts $\langle W^\top x, \theta\rangle$ and is trained by one-pass SGD from $\theta_0 = 0$.
#
# **Conventions used everywhere in plrf** (convert explicitly when comparing with papers):
#
# | quantity | convention |
# |---|---|
# | loss | $P(\theta) = \mathbb{E}[(\langle W^\top x,\theta\rangle - \langle x,b\rangle)^2] = \lVert D^{1/2}(W\theta - b)\rVert^2$, $D = \mathrm{diag}(j^{-2\alpha})$ — **no 1/2** |
# | SGD step | $\theta \leftarrow \theta - \frac{\eta}{B}\sum_{i\le B} W^\top x_i(\langle W^\top x_i,\theta\rangle - y_i)$ — **no factor 2** |
# | compute | $f = d\,B\,\text{steps}$ |
# | default lr | $\eta = 0.5 / \sum_{j\le v} j^{-2\alpha}$ (the authors' choice) |
#
# Everything SGD does to the *expected* loss is fixed by the spectrum of $K = W^\top D W$ ($d\times d$): its
# eigenvalues $\lambda_k$, the target weights $w_k = \lambda_k\langle u_k,\theta^*\rangle^2$ and the best loss
# $P^*$. `plrf.Spectrum(lam, n, w, P_star)` carries exactly that. Per mode,
# $e_k(r+1) = g_k(\eta_r) e_k(r) + n_k \frac{\eta_r^2}{B}\lambda_k^2 P(r)$, $P(r) = P^* + \sum_k e_k(r)$,
# $g_k(\eta) = 1 - 2\eta\lambda_k + \eta^2\lambda_k^2 (B+1)/B$.
#
# This notebook: sample an instance, run SGD (two simulators, several seeds) against the exact expected loss,
# reach $10^9$ steps with the log-time solver, look at the stability edges, a learning-rate schedule, the
# deterministic-equivalent spectrum and the asymptotic loss components.
#
# Set `PLRF_NOTEBOOK_SMALL=1` in the environment for a fast run at small sizes (what CI does).

# %%
import os
import time
import warnings

import jax
import matplotlib.pyplot as plt
import numpy as np

import plrf
from plrf import schedules
from theory import components as C
from theory.deterministic import deterministic_spectrum
from theory.ladder import ladder_lr
from theory.logtime import solve_logtime
from theory.prediction import Prediction

SMALL = os.environ.get("PLRF_NOTEBOOK_SMALL", "0") == "1"

ALPHA, BETA = 1.0, 0.7          # phase II of the 4+3 phase diagram (1/2 < beta < alpha)
D = 128 if SMALL else 512       # model size d
V = 4 * D                       # data dimension v (v/d = 4)
STEPS = 4_000 if SMALL else 40_000      # SGD steps of the simulations
SEEDS = 8 if SMALL else 16              # SGD seeds (eigen simulator)
FEATURE_STEPS = 2_000 if SMALL else 10_000  # the O(v d)-per-step simulator is run shorter
LONG = 10 ** 6 if SMALL else 10 ** 9    # horizon of the log-time solver
D_BIG = 2_000 if SMALL else 100_000     # d of the asymptotic-components plot (deterministic spectrum)

plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3})
print(f"SMALL={SMALL}: d={D}, v={V}, {STEPS} steps x {SEEDS} seeds; jax {jax.__version__}, "
      f"x64={jax.config.jax_enable_x64}")

# %% [markdown]
# ## 1. A problem and one sampled instance
#
# `plrf.Problem(alpha, beta, v, d)` validates the parameters; `plrf.sample_instance` draws $W$ from a typed
# key (`jax.random.key(seed)`), builds $K$ in float64 and returns its eigen-decomposition, $\theta^*$ and the
# `Spectrum`. $P(0) = P^* + \sum_k w_k$.

# %%
problem = plrf.Problem(ALPHA, BETA, v=V, d=D)
inst = plrf.sample_instance(problem, key=jax.random.key(0))
spec = inst.spectrum
lr = problem.default_lr(0.5)            # 0.5 / sum_j j^{-2 alpha}
print(problem)
print(f"P(0) = {spec.P0:.4f}   P* = {spec.P_star:.3e}   tr K = {spec.trace:.4f} "
      f"(E tr K = sum_j j^-2a = {problem.trace_D:.4f})   lam_max = {spec.lam_max:.4f}")
print(f"default lr = {lr:.4f}")

# %% [markdown]
# ## 2. SGD vs the exact expected loss
#
# Three simulators behind `plrf.simulate(source, schedule, steps=..., method=...)`, all recording the exact
# population risk of the iterate on a log-spaced step grid:
#
# * `features`: honest SGD in $\mathbb{R}^v$ through $W$ ($O(Bvd)$ per step; needs the `Instance`);
# * `eigen`: SGD in $K$'s eigenbasis with Gaussian features, the same process in distribution, $O(Bd)$ per step;
# * `expected` (= `plrf.expected_loss`): the deterministic per-mode recursion above.
#
# Seeds are vmapped; seed $s$ uses `fold_in(key, s)`, so a seed gives the same curve in any run.

# %%
const = schedules.constant(lr)
t0 = time.perf_counter()
eig = plrf.simulate(spec, const, steps=STEPS, method="eigen", key=jax.random.key(1), seeds=SEEDS)
t_eig = time.perf_counter() - t0
t0 = time.perf_counter()
feat = plrf.simulate(inst, const, steps=FEATURE_STEPS, method="features", key=jax.random.key(2), seeds=4)
t_feat = time.perf_counter() - t0
exact = plrf.expected_loss(spec, const, steps=STEPS)
print(f"eigen: {SEEDS} seeds x {STEPS} steps in {t_eig:.1f}s; features: 4 seeds x {FEATURE_STEPS} steps "
      f"in {t_feat:.1f}s")

fig, ax = plt.subplots(figsize=(7, 4.5))
s = eig.steps[1:]
ax.loglog(s, eig.per_seed[:, 1:].T, color="C0", lw=0.5, alpha=0.3)
ax.fill_between(s, eig.loss[1:] - 2 * eig.stderr[1:], eig.loss[1:] + 2 * eig.stderr[1:], color="C0", alpha=0.3,
                label=f"eigen SGD: mean ± 2 s.e. ({SEEDS} seeds; thin: single seeds)")
ax.loglog(feat.steps[1:], feat.loss[1:], "o", ms=3, color="C2", label="features SGD: mean of 4 seeds")
ax.loglog(s, exact.loss[1:], "k-", lw=1.5, label="exact expected loss")
ax.axhline(spec.P_star, color="0.5", ls=":", label="$P^*$")
ax.set(xlabel="steps", ylabel="loss $P$", title=f"alpha={ALPHA}, beta={BETA}, d={D}, v={V}, lr={lr:.3f}, B=1")
ax.legend(fontsize=8)
plt.show()

# how far is the SGD mean from the exact expectation, in standard errors? (|z| ~ 0.67 in median for a correct
# mean; per-seed losses are right-skewed, so with few seeds single grid points can sit several s.e. away)
z = (eig.loss[1:] - exact.loss[1:]) / np.maximum(eig.stderr[1:], 1e-300)
print(f"(eigen mean - exact)/s.e. over {z.size} grid points: median |z| = {np.median(np.abs(z)):.2f}; "
      f"eigen/exact at the last step = {eig.final / exact.final:.3f} ± {eig.stderr[-1] / exact.final:.3f}")

# %% [markdown]
# ## 3. Long horizons: the log-time solver
#
# `theory.logtime.solve_logtime` computes the same exact expected loss, advancing whole intervals of steps at
# $O(d)$ cost with step-doubling error control, so $10^9$ steps cost a few hundred intervals. At a constant
# learning rate the loss tends to $P(\infty) = P^*/(1 - \lVert K_r\rVert)$ (`plrf.limit_loss`): the SGD noise
# amplifies the best loss by the Volterra kernel norm.

# `theory.prediction.Prediction` wraps it for interactive use: built once per spectrum, then
# `pred.loss(schedule, steps_or_grid)`, `pred.limit(lr)`, `pred.kernel_norm(lr)`, `pred.edges()`.

# %%
pred = Prediction(spec)
t0 = time.perf_counter()
longc = pred.loss(const, LONG)                      # = solve_logtime(spec, const, steps=LONG)
t_long = time.perf_counter() - t0
short = solve_logtime(spec, const, steps=STEPS, grid=exact.steps)
rel = np.max(np.abs(short.loss - exact.loss) / exact.loss)
print(pred)
print(f"log-time solver: {LONG:.0e} steps in {t_long:.1f}s ({longc.intervals} intervals); "
      f"max rel. difference to the step-by-step recursion over {STEPS} steps: {rel:.1e}")
P_inf = float(pred.limit(lr))                       # = plrf.limit_loss(spec, lr)
print(f"P* = {spec.P_star:.4e}, P(inf) = {P_inf:.4e} (kernel norm {float(pred.kernel_norm(lr)):.3f}), "
      f"solver at {LONG:.0e} steps: {longc.final:.4e}")

fig, ax = plt.subplots(figsize=(7, 4.5))
ax.loglog(longc.steps[1:], longc.loss[1:], "k-", label="log-time solver")
ax.loglog(exact.steps[1:], exact.loss[1:], "C1--", lw=2, label=f"step-by-step recursion ({STEPS} steps)")
ax.loglog(eig.steps[1:], eig.loss[1:], "C0", lw=0.8, alpha=0.8, label="eigen SGD mean")
ax.axhline(P_inf, color="C3", ls=":", label=r"$P(\infty) = P^*/(1-\|K_r\|)$")
ax.axhline(spec.P_star, color="0.5", ls=":", label="$P^*$")
ax.set(xlabel="steps", ylabel="loss", title="exact expected loss to long horizons")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 4. Stability edges
#
# A constant learning rate is stable when every mode contracts (*full-batch edge*
# $\eta\lambda_{\max}(B+1)/B < 2$) and the noise does not feed back without bound (*stochastic edge*
# $\lVert K_r\rVert = \sum_k n_k \frac{\eta}{B}\lambda_k/(2 - \eta\lambda_k(B+1)/B) < 1$, roughly
# $\eta\,\mathrm{tr}K/(2B) < 1$). The engine refuses a peak lr at or past either edge unless
# `allow_unstable=True`; a run that blows up reports the step in `diverged_step`.

# %%
for B in (1, 4, 16, 64):
    e = plrf.stability_edges(spec, batch=B)
    print(f"B={B:3d}: full-batch edge {e.full_batch:.4f}, stochastic edge {e.stochastic:.4f} -> max lr "
          f"{e.max_lr:.4f} ({e.max_lr / lr:.2f} x default lr)")

edge = plrf.max_stable_lr(spec)
try:
    plrf.expected_loss(spec, schedules.constant(1.05 * edge), steps=100)
except ValueError as err:
    print("\nValueError:", str(err)[:160], "...")

n_stab = 20_000 if SMALL else 200_000
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
lrs = np.linspace(0.01, 0.999, 300) * plrf.stability_edges(spec).full_batch
ax0.plot(lrs, plrf.kernel_norm(spec, lrs), "k")
ax0.axhline(1, color="C3", ls=":")
ax0.axvline(edge, color="C3", ls="--", label="stochastic edge")
ax0.axvline(lr, color="C0", ls="--", label="default lr")
ax0.set(xlabel="lr", ylabel=r"kernel norm $\|K_r\|$", ylim=(0, 3), title="B = 1")
ax0.legend(fontsize=8)
# plrf.sweep vmaps over learning-rate scales (and seeds, batch sizes) in one compiled program
fracs = (0.5, 0.9, 0.99, 1.02)
sw = plrf.sweep(spec, schedules.constant(edge), steps=n_stab, method="expected", lr_scales=fracs,
                allow_unstable=True, quiet=True)
for i, frac in enumerate(fracs):
    div = sw.diverged[0, i, 0]
    lab = f"lr = {frac:g} x edge" + (f" (diverged at step {div})" if div >= 0 else "")
    ax1.loglog(sw.steps[1:], sw.loss[0, i, 0, 1:], label=lab)
ax1.set(xlabel="steps", ylabel="expected loss", ylim=(spec.P_star / 2, 1e3 * spec.P0),
        title="approaching the stochastic edge")
ax1.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. A learning-rate schedule
#
# Schedules are closures `step -> lr` (jit/vmap-safe) with metadata (`.peak`, `.total`, `.breakpoints`):
# `constant`, `cosine`, `linear`, `polynomial`, `wsd` (warmup-stable-decay: constant, then a cooldown over the
# last fraction), `step_drops` / `eight_one_one`, `warmup(...)`, `join(...)`, `from_array(...)`. The same
# closure drives the simulators and the exact solvers.

# %%
scheds = {"constant": const, "cosine": schedules.cosine(lr, STEPS),
          "WSD (20% linear cooldown)": schedules.wsd(lr, STEPS, cooldown=0.2)}
fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 4))
grid = eig.steps                            # the grid of section 2: the constant-lr run is reused
dense = np.union1d(grid, np.linspace(0, STEPS, 201).astype(np.int64))
for i, (name, sch) in enumerate(scheds.items()):
    ax0.plot(np.arange(STEPS + 1), np.asarray(sch(np.arange(STEPS + 1))), color=f"C{i}", label=name)
    ex = pred.loss(sch, dense)              # exact (log-time solver; compiled once per spectrum, not per schedule)
    sg = eig if name == "constant" else plrf.simulate(spec, sch, steps=STEPS, method="eigen",
                                                     key=jax.random.key(1), seeds=SEEDS, grid=grid)
    for ax in (ax1, ax2):
        ax.plot(ex.steps[1:], ex.loss[1:], color=f"C{i}", label=f"{name}: exact (final {ex.final:.3e})")
        ax.plot(sg.steps[1:], sg.loss[1:], "o", ms=2.5, color=f"C{i}")
ax0.set(xlabel="step", ylabel="lr", title="schedules")
ax1.set(xscale="log", yscale="log", xlabel="steps", ylabel="loss",
        title=f"exact (lines), eigen SGD mean of {SEEDS} seeds (dots)")
ax2.set(yscale="log", xlim=(STEPS / 2, STEPS * 1.01), ylim=(0.5 * ex.final, 3 * ex.final), xlabel="steps",
        title="second half: the decay pays at the end")
for ax in (ax0, ax1, ax2):
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. The deterministic-equivalent spectrum
#
# As $d \to \infty$ the spectrum of $K$ and the target weights concentrate. `deterministic_spectrum(alpha,
# beta, d, v=v)` returns a binned `Spectrum` (`n` = eigenvalue count per bin, summing to $d$): isolated
# outliers near $j^{-2\alpha}$ one by one, then a log-binned bulk; its cost grows with the number of bins, not
# with $d$. It plugs into every solver. Below: counting function and cumulative target weight against one
# sampled $W$, and the loss curves they give.

# %%
det = deterministic_spectrum(ALPHA, BETA, D, v=V)
print(f"deterministic: {det.lam.size} bins for d = {det.d:.0f};  P* = {det.P_star:.4e} (sampled {spec.P_star:.4e})")

fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 4))
for sp_, lab, st in ((spec, "sampled W", "C0-"), (det, "deterministic equivalent", "k--")):
    order = np.argsort(sp_.lam)[::-1]                       # descending eigenvalues
    ax0.loglog(sp_.lam[order], np.cumsum(sp_.n[order]), st, label=lab)
    ax1.loglog(sp_.lam[order], sp_.P0 - np.cumsum(sp_.w[order]), st, label=lab)   # P* + sum_{lam_k < lam} w_k
    c = solve_logtime(sp_, const, steps=LONG // 10)
    ax2.loglog(c.steps[1:], c.loss[1:], st, label=lab)
ax0.set(xlabel=r"eigenvalue $\lambda$", ylabel=r"# eigenvalues $\geq \lambda$", title="counting function of K")
ax1.set(xlabel=r"eigenvalue $\lambda$", ylabel=r"$P^* + \sum_{\lambda_k < \lambda} w_k$",
        title="loss left once the modes above $\lambda$ are learned")
ax2.set(xlabel="steps", ylabel="exact expected loss", title="loss from either spectrum")
for ax in (ax0, ax1, ax2):
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Asymptotic components
#
# In the window $1 \ll s \ll d^{2\alpha}$ ($s = 2\eta r$, intrinsic time) the expected loss is, to leading order,
# $P(r) \approx (F_0 + F_{pp}(s) + F_{ac}(s))/(1-\kappa) + N(s)$: the limit level $F_0 \approx P^*$, the population
# bias $F_{pp} \propto s^{-(2\alpha+2\beta-1)/(2\alpha)}$, the feature-embedding distortion
# $F_{ac} \propto s^{-(1-1/(2\alpha))}/d$ and the SGD noise $N \propto \eta\, s^{-(2-1/(2\alpha))}$
# (`theory.components`, constants re-derived there). We draw them at a larger $d$ against the exact loss
# (log-time solver on the deterministic spectrum, $v = \infty$ since $2\alpha > 1$). In phase II (here) $F_{pp}$ then
# $F_{ac}$ dominate before the plateau $F_0$; the SGD noise takes over from $F_{pp}$ when $\beta > \alpha$ (phase III).

# %%
lr_big = ladder_lr(ALPHA, D_BIG)        # 0.5 / zeta(2 alpha): the default lr at v = infinity
det_big = deterministic_spectrum(ALPHA, BETA, D_BIG)          # v = None: infinite data dimension
steps_big = int(10 * D_BIG ** (2 * ALPHA) / (2 * lr_big))      # past the end of the window
cb = solve_logtime(det_big, schedules.constant(lr_big), steps=steps_big, num=120)
r = cb.steps[cb.steps >= 10]
kn = float(plrf.kernel_norm(det_big, lr_big))
fig, ax = plt.subplots(figsize=(7.5, 5))
C.plot_components(ax, ALPHA, BETA, D_BIG, r, lr_big, kernel_norm=kn, finite_d=True,
                  curve=(cb.steps[1:], cb.loss[1:]), curve_label="exact (log-time solver)")
lo, hi = 10 / (2 * lr_big), D_BIG ** (2 * ALPHA) / 10 / (2 * lr_big)
ax.axvspan(r[0], lo, color="0.9", zorder=0)
ax.axvspan(hi, r[-1], color="0.9", zorder=0)
ax.set_ylim(cb.loss[-1] / 5, 2 * cb.loss[1])
plt.show()

with warnings.catch_warnings():
    warnings.simplefilter("ignore")   # points outside the window are flagged by a warning
    at = np.geomspace(lo, hi, 5).round()
    dom = C.dominant_terms(ALPHA, BETA, D_BIG, at, lr_big, kernel_norm=kn, finite_d=True)
exact_at = np.interp(np.log(at), np.log(cb.steps[1:]), cb.loss[1:])
print(f"{'steps':>10} {'dominant':>8} {'share':>6} {'sum/exact':>9}")
for i, t in enumerate(at):
    print(f"{t:10.3g} {dom.largest[i]:>8} {dom.share[i]:6.2f} {dom.components.total[i] / exact_at[i]:9.3f}")
