"""Loss-vs-compute curves over a ladder of model sizes d, from the theory (no sampling of W).

For each d: the deterministic-equivalent spectrum (:mod:`theory.deterministic`), the authors' learning rate
``lr(d) = c / sum_{j<=v} j^{-2 alpha}`` (constant in d when ``2 alpha > 1`` with ``v = inf``; shrinking like
``d^{2 alpha - 1}`` when ``2 alpha < 1``, where ``v = ratio * d``), and the exact expected loss of one-pass SGD from
the log-time Volterra solver (:func:`theory.logtime.solve_logtime`) on a log-spaced step grid reaching
``flops_max = d * B * steps``. These feed :func:`theory.frontier.fit_frontier`.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
from scipy import special

import plrf
from plrf.spectrum import Spectrum


class LadderCurve(NamedTuple):
    d: int
    steps: np.ndarray   # int64 grid (step 0 dropped)
    flops: np.ndarray   # d * B * steps
    loss: np.ndarray
    lr: float
    P_star: float
    v: Optional[int]    # None = infinite


def data_dim(alpha: float, d: int, ratio: float = 4.0) -> Optional[int]:
    """``v`` used by the ladder: infinite (None) when ``2 alpha > 1``, else ``ratio * d``."""
    if ratio <= 1:
        raise ValueError(f"ratio must be > 1, got {ratio}")
    return None if 2 * alpha > 1 else int(round(ratio * d))


def ladder_lr(alpha: float, d: int, *, c: float = 0.5, ratio: float = 4.0) -> float:
    """``c / sum_{j<=v} j^{-2 alpha}`` with :func:`data_dim`'s v (``zeta(2 alpha)`` when v is infinite). The sum is
    explicit up to v = 2^22 terms and Euler-Maclaurin beyond (:func:`theory.deterministic.power_sum`, relative
    error < 1e-13; the explicit sum would need 8 v bytes: 16 GB at d = 2^29, v = 4d)."""
    v = data_dim(alpha, d, ratio)
    if v is None:
        return c / float(special.zeta(2 * alpha))
    if v > _EXPLICIT_SUM:
        from .deterministic import power_sum
        return c / power_sum(2 * alpha, v)
    return c / float(np.sum(np.arange(1, v + 1, dtype=np.float64) ** (-2 * alpha)))


_EXPLICIT_SUM = 2 ** 22


def geometric_ladder(d_min: float, d_max: float, per_octave: float = 1.0) -> np.ndarray:
    """Integer ladder ``d_min .. d_max``, ``per_octave`` values per factor 2."""
    if not (1 <= d_min < d_max):
        raise ValueError(f"need 1 <= d_min < d_max, got {d_min}, {d_max}")
    n = int(round(math.log2(d_max / d_min) * per_octave)) + 1
    return np.unique(np.round(np.geomspace(d_min, d_max, n)).astype(np.int64))


def _default_spectrum(alpha, beta, d, v):
    from .deterministic import deterministic_spectrum
    return deterministic_spectrum(alpha, beta, d, v=v)


def ladder_curve(alpha: float, beta: float, d: int, *, flops_max: float, batch: int = 1, c: float = 0.5,
                 ratio: float = 4.0, per_decade: int = 24, spectrum: Optional[Spectrum] = None,
                 spectrum_fn: Optional[Callable] = None, optimizer_fn: Optional[Callable] = None) -> LadderCurve:
    """One rung: the theory loss curve at model size ``d`` up to ``flops_max`` (see the module doc).

    ``optimizer_fn(spectrum, lr, d) -> plrf.optimizers.Optimizer``: train with that optimizer instead of SGD at
    the constant ``lr`` (e.g. DANA, whose g3 depends on tr K and d). When it averages the iterates (``ema``), the
    curve is the average's loss (the weights one would deploy), :func:`readout_of`."""
    from .logtime import solve_logtime
    v = data_dim(alpha, d, ratio)
    if spectrum is None:
        spectrum = (spectrum_fn or _default_spectrum)(alpha, beta, d, v)
    lr = ladder_lr(alpha, d, c=c, ratio=ratio)
    steps = max(2, int(math.ceil(flops_max / (d * batch))))  # every rung reaches flops_max
    num = max(8, int(per_decade * math.log10(steps)) + 1)
    grid = plrf.log_grid(steps, num)
    opt = plrf.schedules.constant(lr) if optimizer_fn is None else optimizer_fn(spectrum, lr, int(d))
    out = solve_logtime(spectrum, opt, steps=steps, batch=batch, grid=grid)
    s = np.asarray(out.steps)[1:]
    name = readout_of(opt)
    loss = out.loss if name == "iterate" else out.readouts[name]
    return LadderCurve(int(d), s, (d * batch) * s.astype(np.float64), np.asarray(loss)[1:], lr,
                       float(spectrum.P_star), v)


def readout_of(optimizer) -> str:
    """The read-out a ladder measures: ``average`` for an optimizer that averages its iterates, else ``iterate``
    (schedule-free's own average is its iterate ``x``)."""
    return "average" if "average" in getattr(optimizer, "readouts", ()) else "iterate"


def ladder_curves(alpha: float, beta: float, ds: Sequence[int], *, flops_max: float, progress=None,
                  **kw) -> list:
    """:func:`ladder_curve` for every d of the ladder (a loop: shapes differ and cost is dominated by the
    largest rungs). ``progress``: optional callable ``(i, n)`` after each rung."""
    out = []
    for i, d in enumerate(ds):
        out.append(ladder_curve(alpha, beta, int(d), flops_max=flops_max, **kw))
        if progress is not None:
            progress(i + 1, len(ds))
    return out


class FrontierMeasurement(NamedTuple):
    """Theory curves over a d ladder, the measured frontier (approaches 1 and 2) and the predicted exponents."""
    alpha: float
    beta: float
    phase: str
    curves: list            # LadderCurve per d
    fit: object             # theory.frontier.FrontierFit, approach 1 (envelope)
    fit2: object            # approach 2 (parabola)
    xi_theory: float
    eta_theory: float


def measure_frontier(alpha: float, beta: float, ds: Sequence[int], *, flops_max: float, store=None,
                     progress=None, per_decade: int = 20, slope_window: float = 2.0, tag: Optional[str] = None,
                     **kw) -> FrontierMeasurement:
    """Curves for every d (cached in ``store``, a :class:`plrf.store.CellStore`, one cell per (alpha, beta, d),
    plus ``optimizer = tag`` when given: several optimizers in one store never share a cell, so an interrupted
    sweep resumes), then both Chinchilla fits and the phase's (SGD) exponents."""
    import warnings

    from .frontier import EdgeWarning, fit_frontier
    from .phases import exponents, phase_point
    curves = []
    for i, d in enumerate(ds):
        coords = {"alpha": float(alpha), "beta": float(beta), "d": int(d)}
        if tag is not None:
            coords["optimizer"] = str(tag)
        resumed = store is not None and store.done(coords)
        if resumed:
            c = store.get(coords)
            a, m = c.arrays, c.meta
            curves.append(LadderCurve(int(d), a["steps"], a["flops"], a["loss"], m["lr"], m["P_star"], m["v"]))
        else:
            c = ladder_curve(alpha, beta, int(d), flops_max=flops_max, **kw)
            curves.append(c)
            if store is not None:
                store.put(coords, {"steps": c.steps, "flops": c.flops, "loss": c.loss},
                          meta={"lr": c.lr, "P_star": c.P_star, "v": c.v})
        if progress is not None and resumed and hasattr(progress, "skip"):
            progress.skip()  # a plrf.progress.Progress reports a rung loaded from the store as resumed
        elif progress is not None:
            progress(i + 1, len(ds))
    data = [(c.d, c.flops, c.loss) for c in curves]
    # common flop grid ending at flops_max, which every rung reaches (no partial last column)
    lo = min(c.flops[0] for c in curves)
    grid = np.logspace(math.log10(lo), math.log10(flops_max), int(math.ceil(per_decade * math.log10(flops_max / lo))) + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("always", EdgeWarning)
        fit = fit_frontier(data, approach=1, grid=grid, slope_window=slope_window)
        fit2 = fit_frontier(data, approach=2, grid=grid, slope_window=slope_window)
    ex = exponents(alpha, beta)
    return FrontierMeasurement(float(alpha), float(beta), phase_point(alpha, beta).phase, curves, fit, fit2,
                               float(ex.xi), float(ex.eta))
