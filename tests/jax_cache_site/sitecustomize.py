"""Imported at start-up by Python subprocesses of the test suite (this directory is put on their PYTHONPATH by
tests/conftest.py): they share the suite's persistent JAX compilation cache (PLRF_TEST_JAX_CACHE)."""
import os

if os.environ.get("PLRF_TEST_JAX_CACHE"):
    try:
        import plrf_test_jax_cache
        plrf_test_jax_cache.enable(os.environ["PLRF_TEST_JAX_CACHE"])
    except Exception:   # never break a subprocess over a cache
        pass
