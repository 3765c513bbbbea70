"""Size checks before any work: rough memory (bytes) and time (seconds) of a command, from its options.

Every command calls its estimate at the start of ``run()`` and :func:`check` refuses an impossible size at once
(a ``ValueError`` naming the option, the estimate and the limit; the CLI exits 2). The limits: the memory
available now (``MemAvailable`` of /proc/meminfo, else ``os.sysconf``), and ``--time-limit`` hours for the time.

The estimates are rough (a factor of a few either way): constants measured on the 2-core development CPU
(``COST``), and shapes from the engine (Gaussian draws per step, the ``d x d`` eigendecomposition of a sampled
``K = W^T D W``, the ``v x d`` feature matrix, the deterministic equivalent's isolated eigenvalues ~ sqrt(d)).
Measured there (Dec 2026, other jobs running): sampled spectrum d = 1024 / 2048 (v = 4d) 19 s / 102 s;
deterministic equivalent d = 1e6 / 1e8 / 1e9 (alpha = 1) 4 s / 21 s / 55 s with 636 / 6365 / 20131 isolated
eigenvalues and +65 / +87 MB of memory; `plrf phase-diagram --preset quick` 7.4 min (estimate 11 min) at
d <= 5.2e5, f <= 1e12; 5.7 min quiet, 21 min at load ~9 (estimate 24 min) at its present d <= 1.7e7, f <= 1e13.
They exist to refuse sizes off by orders of magnitude (``plrf curve --d 1e8`` would need ~8e16 bytes) and to
tell the user, before a long run, roughly how long it will take.
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple, Optional

# seconds per unit, measured on the development CPU (2 cores, shared): see the module doc
COST = dict(
    draw=1e-8,          # eigen SGD: one Gaussian draw + its share of the update (per seed, step, B (d + 1))
    mac=1e-9,           # features SGD: one multiply-add of x @ W (two per B v d per step)
    recursion=5e-9,     # exact per-step recursion (expected loss): per step and eigenvalue
    sample=4e-9,        # sampled spectrum: forming K = W^T D W and its eigendecomposition, per v d^2
    det_sqrt_d=3e-3,    # deterministic-equivalent spectrum: per sqrt(d) (isolated eigenvalues ~ sqrt(d))
    solve=2e-7,         # log-time solver: per eigenvalue bin and interval (~400 intervals + grid points)
    compile=15.0,       # one jit compilation of a simulator
    rung=0.5,           # fixed cost of one theory-ladder rung (spectrum frame, solver set-up)
    rung_sqrt_d=8e-4,   # a ladder rung's deterministic-equivalent spectrum and solve, per sqrt(d); recalibrated
                        # 2026-12-06 on CPU seconds: 4 asymptote points (d <= 2^32, 4 rungs/octave) 2138 s against
                        # 10600 s from the old (2.0, 3e-3 sqrt d + solve) and the full phase-diagram preset 1.57 s
                        # per curve against 6.8 s: the old constants were ~4.5x pessimistic for ladders
)
DET_BYTES_PER_SQRT_D = 1e4   # deterministic equivalent: working memory per sqrt(d) (measured: ~9 kB)
BASE_BYTES = 4e8             # the Python process with jax and scipy loaded
MAX_DRAWS_PER_STEP = 2 ** 31 - 1   # Gaussian draws of one step of one run: int32 counters in the generator
MAX_STEPS = 2 ** 53                # steps are exact in float64 up to here


class OptimizerCost(NamedTuple):
    """Cost of an optimizer relative to plain SGD (``experiments.budget`` conventions): multipliers of the exact
    recursion's per-step time, of the log-time solver's time and of eigen SGD's per-step time, and a label."""
    recursion: float = 1.0
    solve: float = 1.0
    sim: float = 1.0
    what: str = "SGD"


SGD_COST = OptimizerCost()


def optimizer_cost(args) -> OptimizerCost:
    """The cost of the optimizer chosen by ``args`` (``--optimizer``, ``--weight-decay``, ``--ema``) relative to SGD.

    With ``m`` state vectors per mode (1 for SGD, 2 for momentum, Nesterov, DANA and schedule-free, one more with
    an average) the exact recursion carries ``nz = m (m + 1) / 2`` second moments per mode (plus ``m + 1`` first
    moments with weight decay). Measured on the 2-core development CPU (README "Optimizers", d = 1024 and 1e4):
    the blocked recursion runs about ``nz^1.3`` times slower than SGD's (5e8 -> 2e8 -> 6e7 mode-steps/s for
    nz = 1, 3, 6), the step-by-step one (hyper-parameters that change with t: DANA, uniform average,
    schedule-free) about ``nz^2``; the log-time solver ``nz^2.7`` when the optimizer is time-invariant and ~3x
    more when it is not: calibrated on a d = 16 .. 16384 ladder to f = 1e11 (SGD 53 s, momentum 48 s,
    momentum + EMA 73 s, DANA-decaying 70 s; re-measured after the log-time powering change: 53, 53, 72, 62 s, so
    the ladder cost is not in the solves' powering). Long single solves are cheaper than the model says (1e10 steps
    at d = 1e4: SGD 1-2 s, heavy ball 2.8 s, + EMA 22 s, DANA-decaying 101 s): the estimate errs high there."""
    name = getattr(args, "optimizer", "sgd")
    ema = getattr(args, "ema", None)
    wd = getattr(args, "weight_decay", 0.0) or 0.0
    m = (1 if name == "sgd" else 2) + (1 if ema is not None else 0)
    nz = m * (m + 1) // 2 + (m + 1 if wd > 0 else 0)
    invariant = name in ("sgd", "momentum", "nesterov") and ema != "uniform"
    if nz == 1:
        return SGD_COST
    what = name + (f" + EMA" if ema is not None else "") + (" + weight decay" if wd > 0 else "")
    return OptimizerCost(recursion=nz ** (1.3 if invariant else 2.0), solve=nz ** 2.7 * (1.0 if invariant else 3.0),
                         sim=1.0 + 0.25 * (m - 1), what=what)


class Estimate(NamedTuple):
    """Rough needs of a run: peak ``bytes``, ``seconds``, and which ``option`` (and what) dominates each."""
    bytes: float
    seconds: float
    mem_option: str      # the option the memory is most sensitive to, e.g. "--d"
    mem_what: str        # what takes the memory, e.g. "K = W^T D W (d x d) and its eigendecomposition"
    time_option: str
    time_what: str


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1000 or unit == "EB":
            return f"{n:.3g} {unit}"
        n /= 1000.0
    return f"{n:.3g} EB"


def fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "forever"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    if s < 2 * 365 * 86400:
        return f"{s / 86400:.0f} days"
    return f"{s / (365 * 86400):.3g} years"


def available_memory() -> int:
    """Bytes of memory available now: ``MemAvailable`` of /proc/meminfo, else free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2 ** 62  # unknown: do not refuse


def check(est: Estimate, args, *, say=None, memory_limit: Optional[float] = None) -> Estimate:
    """Refuse (ValueError) a run whose memory estimate exceeds the memory available or whose time estimate
    exceeds ``--time-limit`` hours; otherwise tell ``say`` (stderr, unless --quiet) the estimate when it is
    longer than 10 s."""
    limit = available_memory() if memory_limit is None else memory_limit
    if est.bytes > limit:
        raise ValueError(f"{est.mem_option} too large: the run would need about {fmt_bytes(est.bytes)} of memory "
                         f"({est.mem_what}); {fmt_bytes(limit)} is available. Lower {est.mem_option}.")
    hours = getattr(args, "time_limit", None)
    if hours is not None and est.seconds > hours * 3600:
        raise ValueError(f"{est.time_option} too large: the run would take about {fmt_seconds(est.seconds)} "
                         f"({est.time_what}; a rough estimate for a 2-core CPU), over --time-limit "
                         f"{hours:g} h. Lower {est.time_option}, or raise --time-limit.")
    if say is not None and est.seconds > 10:
        say(f"estimated about {fmt_seconds(est.seconds)} and {fmt_bytes(est.bytes)} of memory "
            f"(mostly {est.time_what})")
    return est


def teller(args, command: str):
    """``say(message)`` to stderr as ``plrf COMMAND: message``; None with --quiet."""
    if getattr(args, "quiet", False):
        return None
    import sys
    return lambda msg: print(f"plrf {command}: {msg}", file=sys.stderr, flush=True)


def _worst(*parts):
    """The (value, option, what) part with the largest value, and the sum of the values."""
    parts = [p for p in parts if p is not None]
    top = max(parts, key=lambda p: p[0])
    return sum(p[0] for p in parts), top[1], top[2]


def check_draws(batch: int, width: int, what: str = "d + 1") -> None:
    """The Gaussian draws of one SGD step of one run (``batch * width``) must fit the generator's int32 counters."""
    n = batch * width
    if n > MAX_DRAWS_PER_STEP:
        raise ValueError(f"--batch {batch} too large: one SGD step would draw B x ({what}) = {n:.3g} Gaussian "
                         f"numbers, over the generator's limit 2^31 - 1; here --batch must be in "
                         f"[1, {MAX_DRAWS_PER_STEP // width}]")


# ---------------------------------------------------------------------------------------------------------
# pieces

def sampled_spectrum(d: int, v: int, option: str = "--d"):
    """Memory and time of ``plrf.sample_spectrum``/``sample_instance``: W in chunks of 1024 rows, K (d x d),
    its eigendecomposition (about four d x d float64 arrays)."""
    mem = 8.0 * (4 * d * d + 1024 * d + 4 * v)
    return (mem, option, "K = W^T D W (d x d) and its eigendecomposition"), \
        (COST["sample"] * v * d * d, option, f"the eigendecomposition of a sampled K at d = {d:.3g}")


def deterministic(d: float, option: str = "--d"):
    """Memory and time of ``theory.deterministic.deterministic_spectrum`` (isolated eigenvalues ~ sqrt(d))."""
    r = math.sqrt(d)
    return (DET_BYTES_PER_SQRT_D * r, option, "the deterministic-equivalent spectrum (~sqrt(d) isolated eigenvalues)"), \
        (COST["det_sqrt_d"] * r, option, f"the deterministic-equivalent spectrum at d = {d:.3g} "
                                          "(cost ~ sqrt(d): its isolated eigenvalues)")


def solve_time(size: float, num: int, cost: OptimizerCost = SGD_COST) -> float:
    """Log-time solver on a spectrum of ``size`` bins with ``num`` grid points."""
    return COST["solve"] * size * (400 + num) * cost.solve


def logtime_eval_time(size: float) -> float:
    """One forward log-time solve or one replay gradient of a schedule-optimisation step (plain SGD, any horizon):
    measured 0.36 s at 64 modes and 0.8-1.2 s at 380 bins on 2 shared cores (theory.logtime_grad)."""
    return 0.2 + 2.5e-3 * size


def det_size(d: float) -> float:
    """Bins of the deterministic equivalent: ~ 0.7 sqrt(d) isolated eigenvalues plus a few hundred bulk bins."""
    return 0.7 * math.sqrt(d) + 300


def sgd(method: str, *, d: int, v: int, batch: int, seeds: int, steps: int, num: int = 100, runs: int = 1,
        cost: OptimizerCost = SGD_COST):
    """Memory and time of ``runs`` eigen/features SGD sweeps of ``seeds`` seeds (and the exact recursion)."""
    width = (d + 1) if method == "eigen" else v
    check_draws(batch, width, f"d + 1 = {width}" if method == "eigen" else f"v = {width}")
    block = min(seeds, 64)
    draws = 8.0 * (2 * block * batch * width * (2 if method == "eigen" else 1) + block * 2 * d
                   + (2 * v * d if method == "features" else 0))
    outputs = 8.0 * 2 * runs * seeds * (num + 2) * 3   # loss per seed and grid point, and its copies
    if draws >= outputs:
        mem = (draws + outputs, "--batch" if batch > 1 else "--d",
               f"{method} SGD: the Gaussian draws of {block} seeds x B x {width}")
    else:
        mem = (draws + outputs, "--seeds", f"{method} SGD: the losses of {seeds} seeds x {num + 2} grid points")
    if method == "eigen":
        t = COST["draw"] * seeds * steps * batch * (d + 1) * cost.sim
    else:
        t = seeds * steps * batch * v * (COST["draw"] + 2 * COST["mac"] * d)
    return mem, (runs * (t + COST["compile"]), "--seeds" if seeds > steps else "--steps",
                 f"{method} SGD: {seeds} seeds x {steps:.3g} steps x B x {width}")


def recursion_time(d: int, steps: int, runs: int = 1, cost: OptimizerCost = SGD_COST) -> float:
    return runs * (COST["recursion"] * steps * d * cost.recursion + 2.0)


# ---------------------------------------------------------------------------------------------------------
# commands

def curve(*, d, v, batch, seeds, steps, method, num, W_file=None, cost: OptimizerCost = SGD_COST) -> Estimate:
    mem_s, time_s = sampled_spectrum(d, v)
    parts_m = [mem_s, (BASE_BYTES, "--d", "the Python process")]
    if W_file or method == "features":
        parts_m.append((8.0 * 2 * v * d, "--d", "the feature matrix W (v x d)"))
    parts_t = [time_s, (recursion_time(d, steps, cost=cost), "--steps",
                        f"the exact per-step recursion ({cost.what}) over {steps:.3g} steps")]
    if method != "expected":
        m, t = sgd(method, d=d, v=v, batch=batch, seeds=seeds, steps=steps, num=num, cost=cost)
        parts_m.append(m)
        parts_t.append(t)
    return _estimate(parts_m, parts_t)


def theory(*, d, v, spectrum, num, batch, cost: OptimizerCost = SGD_COST) -> Estimate:
    if spectrum == "sampled":
        m, t = sampled_spectrum(d, v)
        size = d
    else:
        m, t = deterministic(d)
        size = det_size(d)
    solve = (solve_time(size, num, cost), "--d", f"the log-time solver ({cost.what}) on {size:.3g} eigenvalue bins")
    return _estimate([m, (BASE_BYTES, "--d", "the Python process"),
                      (8.0 * 40 * size, "--d", "the log-time solver's state")], [t, solve])


def ladder(ds, *, flops_max, points: int = 1, sims=(), sim_seeds: int = 0, sim_flops: float = 0.0, batch: int = 1,
           d_option: str = "--d-max", cost: OptimizerCost = SGD_COST) -> Estimate:
    """Theory ladder (deterministic spectra + log-time solver) over ``ds`` for ``points`` (alpha, beta), plus
    eigen-SGD simulations at the sampled sizes ``sims``; an optimizer other than SGD (``cost``) runs its own
    ladder and SGD's (the commands compare the two)."""
    parts_t, parts_m = [], [(BASE_BYTES, d_option, "the Python process")]
    t_det = sum(COST["rung"] + COST["rung_sqrt_d"] * math.sqrt(d) * (1.0 if cost is SGD_COST else 1.0 + cost.solve)
                for d in ds)
    top = max(ds)
    parts_t.append((points * t_det, d_option, f"{points} x {len(ds)} theory rungs up to d = {top:.3g}"
                    + ("" if cost is SGD_COST else f" ({cost.what} and SGD)")))
    parts_m.append((DET_BYTES_PER_SQRT_D * math.sqrt(top), d_option, "the deterministic-equivalent spectrum"))
    for d in sims:
        d = int(d)
        m, t = sampled_spectrum(d, 4 * d, "--sim-d")
        steps = max(2, int(sim_flops // (d * batch)))
        ms, ts = sgd("eigen", d=d, v=4 * d, batch=batch, seeds=sim_seeds, steps=steps, num=40, cost=cost)
        parts_m += [m, (ms[0], "--sim-d", ms[2])]
        parts_t += [t, (ts[0], "--sim-flops", ts[2])]
    return _estimate(parts_m, parts_t, peak=True)


def schedules(*, d, v, batch, seeds, steps, n_schedules, n_exact, num, cost: OptimizerCost = SGD_COST) -> Estimate:
    """``plrf schedules``: one sampled spectrum, eigen SGD per schedule, the exact recursion per schedule."""
    m, t = sampled_spectrum(d, v)
    ms, ts = sgd("eigen", d=d, v=v, batch=batch, seeds=seeds, steps=steps, num=num + 41, runs=n_schedules, cost=cost)
    rec = (recursion_time(d, steps, runs=n_exact, cost=cost), "--steps",
           f"the exact recursion ({cost.what}) for {n_exact} schedules")
    return _estimate([m, ms, (BASE_BYTES, "--d", "the Python process")], [t, ts, rec], peak=True)


def collapse(*, ds, h_min, h_max, h_flops, batch, seeds, no_sim) -> Estimate:
    """``plrf collapse``: the horizon ladder (theory), one sampled spectrum per size; the SGD horizons are known
    only after the ladder, so its time is not estimated here (its draws per step are checked)."""
    from theory.ladder import geometric_ladder
    est = ladder(geometric_ladder(h_min, h_max, 1.0), flops_max=h_flops, d_option="--h-max")
    parts_m = [(BASE_BYTES, "--d", "the Python process"), (est.bytes - BASE_BYTES, est.mem_option, est.mem_what)]
    parts_t = [(est.seconds, est.time_option, est.time_what)]
    top = int(max(ds))
    if not no_sim:
        check_draws(batch, top + 1, f"d + 1 = {top + 1} at the largest --d")
        parts_m.append((8.0 * 4 * min(seeds, 64) * batch * (top + 1), "--seeds", "the Gaussian draws of the seeds"))
    for d in ds:
        m, t = sampled_spectrum(int(d), 4 * int(d))
        parts_m.append(m)
        parts_t.append(t)
    return _estimate(parts_m, parts_t, peak=True)


def _estimate(parts_m, parts_t, peak: bool = False) -> Estimate:
    """Memory: the sum of the parts alive together (``peak``: the Python process plus the largest part);
    time: the sum."""
    if peak:
        base = [p for p in parts_m if p[2] == "the Python process"]
        rest = [p for p in parts_m if p[2] != "the Python process"]
        top = max(rest, key=lambda p: p[0]) if rest else base[0]
        mem, mo, mw = (sum(p[0] for p in base) + (top[0] if rest else 0.0)), top[1], top[2]
    else:
        mem, mo, mw = _worst(*parts_m)
    sec, to, tw = _worst(*parts_t)
    return Estimate(float(mem), float(sec), mo, mw, to, tw)
