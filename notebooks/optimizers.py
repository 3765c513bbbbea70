# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.16.0
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Optimizers on PLRF: one per-mode linear system each
#
# `plrf.optimizers` describes every linear optimizer (SGD, heavy ball, Nesterov, DANA, schedule-free SGD,
# decoupled weight decay, iterate averaging) as a small linear system per eigenmode of $K = W^T D W$. From that
# one description come the exact expected loss (first and second moments of the per-mode state,
# `plrf.expected_loss`), the eigen-basis simulator (`method="eigen"`) and the stability check. Here we put the
# exact curves next to Monte Carlo for each optimizer on one sampled problem, then look at weight decay and
# averaging.
#
# Set `PLRF_NOTEBOOK_SMALL=1` for a fast run at small sizes (what CI does).

# %%
import os

import jax
import matplotlib.pyplot as plt
import numpy as np

import plrf
from plrf import optimizers as O
from plrf import schedules

SMALL = os.environ.get("PLRF_NOTEBOOK_SMALL", "0") == "1"
ALPHA, BETA = 1.0, 0.7
D = 64 if SMALL else 256
STEPS = 2_000 if SMALL else 20_000
SEEDS = 32 if SMALL else 128

problem = plrf.Problem(alpha=ALPHA, beta=BETA, v=4 * D, d=D)
inst = plrf.sample_instance(problem, key=jax.random.key(0))
spec = inst.spectrum
lr = problem.default_lr(0.5)
print(f"d={D}, v={4 * D}, lr={lr:.4g}, tr K={spec.trace:.4g}, {STEPS} steps, {SEEDS} seeds")

# %% [markdown]
# ## The same effective step, five optimizers
#
# Heavy ball and Nesterov in optax's meaning (`optax.sgd(lr, momentum=mu)`) step `lr` times the momentum buffer,
# so their effective learning rate is `lr / (1 - mu)`: we give them `lr (1 - mu)` to compare at equal effective
# step. DANA-decaying uses the constants of the authors' PLRF comparison script (`O.dana_defaults`: `g2 = 0.25/tr K`,
# `g3(t) = (0.125/tr K) (1 + t)^(-1/(2 alpha))`, `Delta(t) = 8/(8 + t)`).

# %%
mu = 0.9
dd = O.dana_defaults(spec.trace, D, ALPHA, BETA)
opts = {
    "SGD": O.sgd(lr),
    "momentum 0.9": O.momentum(lr * (1 - mu), mu),
    "Nesterov 0.9": O.nesterov(lr * (1 - mu), mu),
    "DANA-decaying": O.dana_decaying(dd["g2"], dd["g3_decaying"], delta=dd["delta"], kappa=dd["kappa"]),
    "schedule-free": O.schedule_free(lr, 0.9),
}
fig, ax = plt.subplots(figsize=(7.5, 5))
for (name, opt), color in zip(opts.items(), plt.cm.tab10.colors):
    exact = plrf.expected_loss(spec, opt, steps=STEPS)
    mc = plrf.simulate(spec, opt, steps=STEPS, method="eigen", key=jax.random.key(1), seeds=SEEDS, rng="jax")
    z = (mc.loss[1:] - exact.loss[1:]) / mc.stderr[1:]
    ax.loglog(exact.steps[1:], exact.loss[1:], color=color, label=f"{name} (max |z| = {np.abs(z).max():.1f})")
    ax.fill_between(mc.steps[1:], mc.loss[1:] - mc.stderr[1:], mc.loss[1:] + mc.stderr[1:], color=color, alpha=0.3)
ax.axhline(float(spec.P_star), color="0.5", ls=":", label="$P^*$ (best loss at this d)")
ax.set_xlabel("step")
ax.set_ylabel("population loss $P$")
ax.set_title(f"exact expected loss (lines) vs eigen SGD, {SEEDS} seeds (bands: mean ± s.e.)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Decoupled weight decay and an EMA of the iterates
#
# `weight_decay=L` adds `-lr_t L theta` to every step (never through the momentum buffer); it biases the
# minimizer towards 0, so the loss plateaus above $P^*$. An EMA read-out (`ema=R`) averages the iterates with rate
# `R`: it filters the SGD noise (lower loss at a constant lr) at the price of lag. Both are exact here:
# the averaged iterate is one more entry of the per-mode state.

# %%
R = 0.01
fig, ax = plt.subplots(figsize=(7.5, 5))
for L, color in zip([0.0, 0.01, 0.1], plt.cm.tab10.colors):
    c = plrf.expected_loss(spec, O.sgd(lr, weight_decay=L, ema=R), steps=STEPS)
    ax.loglog(c.steps[1:], c.loss[1:], color=color, label=f"weight decay L = {L}: iterate")
    ax.loglog(c.steps[1:], c.readouts["average"][0][1:], color=color, ls="--", label=f"L = {L}: EMA (rate {R})")
ax.axhline(float(spec.P_star), color="0.5", ls=":", label="$P^*$")
ax.set_xlabel("step")
ax.set_ylabel("population loss $P$ (exact)")
ax.set_title(f"SGD at lr = {lr:.3g} with decoupled weight decay (wd = lr L) and an EMA read-out")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Heavy ball across momenta at equal effective step
#
# Hyper-parameter values are traced data: the loop below reuses one compiled program for every `mu` (no
# recompilation). At equal effective step `lr / (1 - mu)` the loss curves agree once many steps have passed (the
# exponents do not change with momentum); large `mu` adds early oscillations and a longer transient.

# %%
fig, ax = plt.subplots(figsize=(7.5, 5))
for mu_, color in zip([0.0, 0.5, 0.8, 0.9, 0.95], plt.cm.viridis(np.linspace(0, 0.9, 5))):
    c = plrf.expected_loss(spec, O.momentum(lr * (1 - mu_), mu_), steps=STEPS)
    ax.loglog(c.steps[1:], c.loss[1:], color=color, label=f"mu = {mu_}")
ax.axhline(float(spec.P_star), color="0.5", ls=":", label="$P^*$")
ax.set_xlabel("step")
ax.set_ylabel("population loss $P$ (exact)")
ax.set_title(f"heavy ball (optax meaning), lr = {lr:.3g} (1 - mu): equal effective step")
ax.legend(fontsize=8)
plt.show()
