"""plrf: power-law random features trained by one-pass SGD and any linear optimizer, simulated in JAX and
solved exactly.

Importing plrf turns on JAX float64 (``jax_enable_x64``): exact computations need it.
"""
from . import _x64  # noqa: F401
from . import moments, optimizers, rng, schedules
from .problem import Instance, Problem, feature_matrix, instance_from_W, population_risk, sample_instance, sample_spectrum
from .simulate import Curve, expected_loss, log_grid, seed_keys, simulate
from .spectrum import Spectrum, make_spectrum
from .store import CellStore, load
from .sweep import SweepResult, init_distributed, ladder, sweep
from .stability import check_lr, kernel_norm, limit_loss, max_stable_lr, stability_edges

__all__ = [
    "CellStore", "Curve", "Instance", "SweepResult", "init_distributed", "ladder", "load", "sweep", "Problem", "Spectrum", "check_lr", "expected_loss", "feature_matrix", "instance_from_W",
    "kernel_norm", "limit_loss", "log_grid", "make_spectrum", "max_stable_lr", "population_risk",
    "moments", "optimizers", "rng", "sample_instance", "sample_spectrum", "schedules", "seed_keys", "simulate", "stability_edges",
]
__version__ = "0.1.0"
