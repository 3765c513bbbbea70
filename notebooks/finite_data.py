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
# # Finite data and multi-epoch training
#
# Everywhere else in plrf every SGD step sees fresh samples. Here the model is trained on **N stored samples**,
# repeated for K epochs (issue 16). Three questions:
#
# 1. **Loss vs epochs**: multi-epoch SGD on N samples (simulated, `plrf.finite_data.simulate_finite`) against
#    the deterministic equivalent of full-batch GD on the same N samples (`theory.finite_data.gd_losses`, the
#    mean SGD step without its noise) and against one pass over K N fresh samples (exact, `plrf.expected_loss`).
# 2. **The effective-data multiplier** E(K, N): how many fresh samples K epochs on N are worth, and how its
#    saturation level grows with N (Yan et al. 2026 claim `log N`; the noiseless PLRF gives `N^(2 alpha - 1)`).
# 3. **The data-constrained compute-optimal frontier**: with N samples and compute f = d x K x N (batch 1),
#    the best model size d and epochs K, and the compute at which repetition stops paying.
#
# Conventions as everywhere in plrf: loss without 1/2, gradient without factor 2, compute `f = d B steps`.
# The command `plrf data-frontier` (with figures, resumable) computes 2 and 3 at the sizes of the README;
# `plrf data` computes 1. Set `PLRF_NOTEBOOK_SMALL=1` for a fast run at small sizes (what CI does).

# %%
import os
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

import plrf
from experiments.data_frontier_cmd import effective_cell, saturation_fits
from plrf.finite_data import simulate_finite
from theory.finite_data import data_frontier, exponents, gd_losses

SMALL = os.environ.get("PLRF_NOTEBOOK_SMALL", "0") == "1"
ALPHA, BETA = 1.0, 0.7
t_start = time.time()

# %% [markdown]
# ## 1. Loss vs epochs: one pass vs multi-pass, simulation vs theory
#
# One W (d features, v = 4d), N stored samples per seed (drawn once in K's eigenbasis, exact in distribution),
# plain SGD with batch B and lr `0.5 / tr K` reshuffling each epoch. The GD deterministic equivalent is the SGD
# curve without the SGD noise; the one-pass curve uses a fresh sample at every step.

# %%
d = 32 if SMALL else 128
N, B, epochs, seeds = (32, 4, 16, 8) if SMALL else (128, 4, 64, 16)
problem = plrf.Problem(ALPHA, BETA, 4 * d, d)
spec = plrf.spectrum.expand(plrf.sample_spectrum(problem, key=jax.random.key(0)))
lr = 0.5 / spec.trace
steps = epochs * N // B
grid = np.unique(np.concatenate([[0], plrf.log_grid(steps, 24), [N // B]]))
fc = simulate_finite(spec, lr, samples=N, steps=steps, batch=B, sampling="reshuffle", seeds=seeds,
                     key=jax.random.key(1), grid=grid)
gd = gd_losses(np.asarray(spec.lam), np.asarray(spec.w), float(spec.P_star), N, grid, lr=lr)
one = plrf.expected_loss(spec, plrf.schedules.constant(lr), steps=steps, batch=B, grid=grid)
ep = np.asarray(fc.steps) * B / N
m = ep > 0
fig, ax = plt.subplots(figsize=(6.5, 4.2))
ax.plot(ep[m], np.asarray(fc.pop)[m], "o-", ms=3, label=f"population, multi-epoch SGD ({seeds} seeds)")
ax.fill_between(ep[m], (fc.pop - fc.pop_stderr)[m], (fc.pop + fc.pop_stderr)[m], alpha=0.25, lw=0)
ax.plot(ep[m], np.asarray(fc.train)[m], "o-", ms=3, label="training loss on the N samples, SGD")
ax.plot(ep[m], gd.pop[m], "k--", label="population, GD deterministic equivalent")
ax.plot(ep[m], gd.train[m], "--", color="tab:red", label="training, GD deterministic equivalent")
ax.plot(ep[m], np.asarray(one.loss)[m], ":", color="tab:green", lw=2, label="one pass over fresh samples (exact)")
ax.axvline(1, color="0.6", lw=0.8, ls=":")
ax.set(xscale="log", yscale="log", xlabel="epochs over N samples (one pass: samples / N)", ylabel="loss (no 1/2)",
       title=f"PLRF alpha={ALPHA}, beta={BETA}, d={d}, N={N}, B={B}")
ax.legend(fontsize=7)
plt.show()
print(f"after {epochs} epochs: population {float(fc.pop[-1]):.4g} +- {float(fc.pop_stderr[-1]):.2g} (GD theory "
      f"{gd.pop[-1]:.4g}); one pass over {epochs * N} fresh samples {float(one.loss[-1]):.4g}")

# %% [markdown]
# The first epoch is exactly one pass (the curves coincide up to epoch 1); afterwards the repeated sample is
# worth less than fresh data and the train-test gap opens.
#
# ## 2. The effective-data multiplier E(K, N)
#
# Small-lr (gradient-flow) limit, lr = c / tr K with c = 0.1, batch 1, on the planted spectrum
# `lam_j = j^-2alpha`, `w_j = j^-(2alpha+2beta)` (P* = 0): K epochs on N samples are gradient flow on the
# empirical loss; E = n / N where one pass over n fresh samples reaches the same population loss
# (`experiments.data_frontier_cmd.effective_cell`, the cell of `plrf data-frontier`).

# %%
cfg = dict(alpha=ALPHA, beta=BETA, effective_d=1024 if SMALL else 16384, epochs_max=4096 if SMALL else 65536,
           c=0.1, per_decade=16)
Ns = [16, 64, 256] if SMALL else [16, 64, 256, 1024, 4096]
cells = {n: effective_cell(cfg, n) for n in Ns}
fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
for n, c in cells.items():
    a0.plot(c["K"], c["E"], "o-", ms=2.5, label=f"N = {n}")
K = cells[Ns[0]]["K"]
a0.plot(K, K, "k:", label="E = K (repeats as good as fresh)")
a0.set(xscale="log", yscale="log", xlabel="epochs K", ylabel="E(K, N)",
       title=f"effective data, planted d = {cfg['effective_d']}, c = 0.1")
a0.legend(fontsize=7)
Emax = np.array([cells[n]["E"].max() for n in Ns])
fits = saturation_fits(Ns, Emax, ALPHA)
Nf = np.geomspace(Ns[0], Ns[-1], 100)
a1.plot(Ns, Emax, "o", label="max over K of E(K, N)")
p, lg = fits["power"], fits["log"]
a1.plot(Nf, np.exp(p["intercept"]) * Nf ** p["slope"], "b--",
        label=f"power fit N^({p['slope']:.3f} +- {p['err']:.3f}), rms log resid {p['rms_log_resid']:.2g}")
a1.plot(Nf, lg["a"] * np.log(Nf) + lg["b"], "r-.",
        label=f"a log N + b (Yan et al.), rms log resid {lg['rms_log_resid']:.2g}")
a1.set(xscale="log", yscale="log", xlabel="samples N", ylabel="saturation level max_K E",
       title=f"saturation vs N: N^(2 alpha - 1) = N^{2 * ALPHA - 1:g} expected")
a1.xaxis.set_minor_formatter(NullFormatter())
a1.yaxis.set_minor_formatter(NullFormatter())
a1.legend(fontsize=7)
plt.show()
print(f"better fit: {fits['better']}")

# %% [markdown]
# E grows like K for the first few epochs and then saturates; larger datasets can be repeated more, but without
# label noise the saturation level grows like a power of N, not like log N (README: N^0.985 +- 0.008 at alpha = 1
# over N = 16 .. 4096, N^0.54 +- 0.04 at alpha = 0.75; the `log N` fit is 20-50 times worse in rms log residual).
#
# ## 3. The data-constrained compute-optimal frontier
#
# Compute f = d x K x N; at each f the best d on a grid (two-level deterministic spectrum of K, v = 4d):
# within one epoch the loss is the fresh-data one, beyond it gradient flow on the empirical loss. Where the
# N-sample frontier leaves the unlimited-data one, repetition stops paying.

# %%
computes = np.geomspace(1e3, 1e7 if SMALL else 1e10, 9 if SMALL else 22)
ds = 2 ** np.arange(3, 9 if SMALL else 15)
fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
fresh = None
for n in ([64, 256] if SMALL else [64, 1024, 16384]):
    fr = data_frontier(ALPHA, BETA, n, computes, ds, c=0.1)
    fresh = fr.loss_opt_fresh
    ratio = fr.loss_opt / fr.loss_opt_fresh
    a0.plot(computes, fr.loss_opt, "--", label=f"N = {n}, repeated")
    line, = a1.plot(computes, fr.epochs_opt, "-", label=f"N = {n}")
    k = np.nonzero(ratio > 1.1)[0]
    if k.size:
        a1.plot(computes[k[0]], fr.epochs_opt[k[0]], "o", color=line.get_color())
        print(f"N = {n}: 10% above the unlimited-data frontier from f = {computes[k[0]]:.3g}, "
              f"K* = {fr.epochs_opt[k[0]]:.3g} epochs at the optimum")
    else:
        print(f"N = {n}: within 10% of the unlimited-data frontier up to f = {computes[-1]:.3g}")
a0.plot(computes, fresh, "k-", lw=2, label="unlimited fresh data")
a0.set(xscale="log", yscale="log", xlabel="compute f = d K N", ylabel="compute-optimal loss",
       title="data-constrained frontier (gradient-flow limit, c = 0.1)")
a1.axhline(1, color="0.5", lw=0.8)
a1.set(xscale="log", yscale="log", xlabel="compute f", ylabel="epochs K* at the optimum",
       title="dots: first f 10% above the unlimited frontier")
a0.legend(fontsize=7)
a1.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## The exponents (symbolic, `theory.finite_data.exponents`)
#
# Excess loss of gradient flow with one bottleneck at a time: time `t^-chi_t`, data `N^-chi_N` (ridgeless),
# model size `d^-chi_d`; Bordelon-Atanasov-Pehlevan's `(a - 1)/b` and `m = min(a - 1, 2b)` with b = 2 alpha,
# a = 2 alpha + 2 beta.

# %%
for name, val in exponents(ALPHA, BETA).items():
    print(f"{name:8s} {val:.4g}")
print(f"notebook ran in {time.time() - t_start:.0f} s")
