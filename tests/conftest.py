"""Test-session setup: float64, and a persistent JAX compilation cache shared by the xdist workers, by the Python
subprocesses the tests start (notebook kernels, multi-device runs) and by successive runs: the default suite is
compile-bound, and a warm cache saves most of the XLA compile time.

The cache lives in ``.pytest_cache/jax-compilation-cache`` under the repository; ``PLRF_TEST_JAX_CACHE=DIR``
moves it, ``PLRF_TEST_JAX_CACHE=`` (empty) turns it off. See tests/jax_cache_site/plrf_test_jax_cache.py for
why it is safe (keys, atomic writes).

Two more settings cut the cold suite's CPU time about in half (840 -> 433 CPU-seconds, 2026-12-05): one BLAS
thread per process, and XLA CPU compile flags (see _xla_test_flags; ``PLRF_TEST_XLA_FLAGS`` overrides them).
"""
import os
import sys
from pathlib import Path

# One BLAS/OpenMP thread per test process (set before numpy loads; xdist workers and subprocesses inherit it): the
# suite runs as `-n 2` on 2 cores, and two workers each with a multi-threaded OpenBLAS oversubscribe the cores,
# whose spinning threads made a 300 x 300 eigh take 1.5 s instead of 0.017 s (measured on the shared 2-core machine).
# A value already in the environment is kept.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _xla_test_flags():
    """XLA CPU compile options of the test session (must be set before jax starts its CPU backend).

    The cold suite is compile-bound, and most of the compile time is XLA's CPU code generation: the older
    (non-"fusion emitter") kernel generator with LLVM at -O0 compiles the suite's programs about 40% faster
    (measured on the cold suite with jaxlib 0.10.2); the small programs of the default suite run at about the same
    speed, long compute-bound ones several times slower (so slow sessions turn the flags off, below). Numbers:
    IEEE float64 either way (no fast math), the same HLO; only the generated machine code differs.
    ``PLRF_TEST_XLA_FLAGS=...`` replaces these flags, ``PLRF_TEST_XLA_FLAGS=`` (empty) turns them off. They are set only on jaxlib 0.10, where they were checked:
    XLA aborts on a flag it does not know."""
    flags = os.environ.get("PLRF_TEST_XLA_FLAGS")
    if flags is None:
        try:
            from importlib.metadata import version
            major_minor = tuple(int(x) for x in version("jaxlib").split(".")[:2])
        except Exception:
            return
        if major_minor != (0, 10):
            return
        flags = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"
    # (xdist workers and subprocesses inherit them; tests that set XLA_FLAGS for a subprocess append to these)
    have = os.environ.get("XLA_FLAGS", "").split()
    os.environ["XLA_FLAGS"] = " ".join(have + [f for f in flags.split() if f not in have])
    if not os.environ["XLA_FLAGS"]:
        del os.environ["XLA_FLAGS"]


def _selects_slow(argv) -> bool:
    """Whether the pytest command line selects the slow tests (``-m slow``, ``-m "slow and ..."``)."""
    exprs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-m"]
    exprs += [a[2:] for a in argv if a.startswith("-m") and len(a) > 2]
    return any("slow" in e and "not slow" not in e for e in exprs)


# The flags above trade run speed for compile speed: right for the compile-bound default suite, wrong for the
# compute-bound slow checks (long exact recursions ran several times slower at -O0: the slow stage took over 45 min
# and crashed once inside a compiled program, against 20 min without them, 2026-12-05). A slow session turns them off for itself, its xdist workers and subprocesses.
if "PYTEST_XDIST_WORKER" not in os.environ and "PLRF_TEST_XLA_FLAGS" not in os.environ and _selects_slow(sys.argv):
    os.environ["PLRF_TEST_XLA_FLAGS"] = ""
_xla_test_flags()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

_ROOT = Path(__file__).resolve().parents[1]
SITE = str(Path(__file__).resolve().parent / "jax_cache_site")
_CACHE = os.environ.get("PLRF_TEST_JAX_CACHE", str(_ROOT / ".pytest_cache" / "jax-compilation-cache"))

if _CACHE:
    sys.path.insert(0, SITE)
    import plrf_test_jax_cache

    if plrf_test_jax_cache.enable(_CACHE):
        # subprocesses pick it up through tests/jax_cache_site/sitecustomize.py
        os.environ["PLRF_TEST_JAX_CACHE"] = _CACHE
        os.environ["PYTHONPATH"] = os.pathsep.join([SITE] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    else:
        os.environ["PLRF_TEST_JAX_CACHE"] = ""


# Default-suite time (CI: 2 cores, cold compilation cache, 4-minute target). These cases compile programs of
# their own and repeat a check that a cheaper case of the default suite already makes; they run with `-m slow`
# (CI's second stage). Each entry names the default-suite test that keeps the coverage.
DEFERRED = {
    "tests/test_logtime.py::test_logtime_matches_exact[ab0-1-0.9]": "the [ab1-1-0.9] case",
    "tests/test_logtime.py::test_optimizers_match_exact[momentum-wd-ema]": "[momentum], [dana-decaying]; wd/EMA: "
                                                                          "test_optimizers Monte Carlo nesterov-wd-ema",
    "tests/test_cli.py::test_theory_sampled_matches_expected_loss": "test_theory_deterministic_matches_expected_loss",
    "tests/test_rng.py::test_normal_is_a_pure_function_of_key_and_step": "test_draws_follow_the_documented_layout_exactly",
    "tests/test_rng.py::test_slow_path_overflow_gives_the_same_numbers": "test_draws_follow_the_documented_layout_exactly",
    "tests/test_deterministic.py::test_loss_curve_vs_sampled_d300[1.0-0.8]": "the [1.0-0.3] case",
    "tests/test_deterministic.py::test_loss_curve_vs_sampled_d300[0.4-0.6]": "the [1.0-0.3] case",
    "tests/test_deterministic.py::test_binned_spectrum_sum_rules[1.0-0.3-500-500]": "the [2.0-0.3-3000-None] case",
    "tests/test_deterministic.py::test_binned_spectrum_sum_rules[1.0-0.8-1000-None]": "the [2.0-0.3-3000-None] case",
    "tests/test_deterministic.py::test_eigenvalue_cdf_and_weights_d300[1.0-0.3]": "the [0.4-0.6] case",
    "tests/test_deterministic.py::test_eigenvalue_cdf_and_weights_d300[1.0-0.8]": "the [0.4-0.6] case",
    "tests/test_deterministic.py::test_p_star_vs_sampled_d300[1.0-0.3]": "the [0.4-0.6] case",
    "tests/test_deterministic.py::test_outliers_two_routes[1.0-0.8-1000-None]": "the [2.0-0.3-1000-None] case",
    "tests/test_simulate.py::test_monte_carlo_mean_matches_expected[features-cosine-1]":
        "[eigen-cosine-4]; the features path: test_optimizers features-vs-optax cases",
    "tests/test_simulate.py::test_monte_carlo_mean_matches_expected[eigen-constant-1]": "[eigen-cosine-4]",
    "tests/test_simulate.py::test_eigen_float32_and_untagged_schedule": "test_same_seed_same_curve[eigen]",
    "tests/test_simulate.py::test_same_seed_same_curve[features]": "the [eigen] case",
    "tests/test_simulate.py::test_monte_carlo_with_jax_normals[eigen]": "test_monte_carlo_mean_matches_expected",
    "tests/test_simulate.py::test_expected_equals_volterra_binned[4]": "the [1] case",
    "tests/test_components.py::test_F0_power_law_and_constant[1.5-0.7-None-ds2]": "the [0.3-0.3-4.0-ds5] case",
    "tests/test_components.py::test_F0_power_law_and_constant[0.4-1.0-4.0-ds4]": "the [0.3-0.3-4.0-ds5] case",
    "tests/test_montecarlo.py::test_simultaneous_band_coverage[False]": "the [True] (skewed) case",
    "tests/test_optimal_schedule.py::test_exact_loss_equals_expected_loss[sgd-ema]": "the [momentum] case (EMA too)",
    "tests/test_volterra.py::test_exact_matches_engine[8-1-1-1]": "the [constant-1] case",
    "tests/test_volterra.py::test_exact_matches_engine[warmup-wsd-1]": "the [constant-1] case",
    "tests/test_volterra.py::test_exact_matches_engine[cosine-4]": "the [constant-1] case",
    "tests/test_deterministic.py::test_loss_curve_vs_sampled_d300[1.0-0.3]":
        "the DE spectrum itself: test_p_star_vs_sampled_d300, test_eigenvalue_cdf_and_weights_d300",
    "tests/test_deterministic.py::test_density_vs_cumulative": "test_eigenvalue_cdf_and_weights_d300",
    "tests/test_schedule_laws.py::test_noise_ode_small_eta_limit": "test_noise_ode_integrator_against_matrix_exponentials",
    "tests/test_schedule_laws.py::test_adiabatic_rules_on_slow_schedule": "test_adiabatic_on_constant_schedule_is_the_constant_run",
    "tests/test_optimal_schedule.py::test_gradient_matches_central_differences[momentum]": "the [sgd] case",
    "tests/test_logtime.py::test_optimizers_match_exact[schedule-free]":
        "[momentum], [dana-decaying]; schedule-free's recursion: test_optimizers features-vs-optax",
    "tests/test_logtime.py::test_plain_closures_and_arrays": "test_find_jumps, test_logtime_matches_exact",
    "tests/test_simulate.py::test_blocked_equals_stepwise_many_modes[200000]": "the [20000] case",
    "tests/test_simulate.py::test_zero_eigenvalue_mode_is_inert": "test_sweep::test_zero_eigenvalue_padding_is_inert_for_expected",
    "tests/test_finite_data.py::test_replacement_vs_reshuffle_small_lr": "test_one_epoch_large_N_matches_exact_one_pass",
    "tests/test_label_noise.py::test_explicit_noise_matches_exact[eigen-sgd]": "the [features-sgd] case (explicit noise on y)",
}


def pytest_collection_modifyitems(config, items):
    slow = pytest.mark.slow
    for item in items:
        if item.nodeid in DEFERRED:
            item.add_marker(slow)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``-n N`` sends whole test files to a worker (xdist's ``--dist loadfile``) unless ``--dist`` is given: the
    tests of a file share module-scoped fixtures and compiled programs (same shapes, traced values), and xdist's
    default per-test distribution computed those in both workers: about 5-8 of ~190 CPU-s of the cold default suite
    (2 workers, 2026-12-06, under load; the two workers' CPU times stayed within 3%)."""
    args = list(config.invocation_params.args) + os.environ.get("PYTEST_ADDOPTS", "").split()
    if config.getvalue("dist") == "load" and not any(a == "--dist" or a.startswith("--dist=") for a in args):
        from xdist.scheduler import LoadFileScheduling
        return LoadFileScheduling(config, log)
