"""Test-session setup: float64, and a persistent JAX compilation cache shared by the xdist workers, by the Python
subprocesses the tests start (notebook kernels, multi-device runs) and by successive runs: the default suite is
compile-bound, and a warm cache saves most of the XLA compile time.

The cache lives in ``.pytest_cache/jax-compilation-cache`` under the repository; ``PLRF_TEST_JAX_CACHE=DIR``
moves it, ``PLRF_TEST_JAX_CACHE=`` (empty) turns it off. See tests/jax_cache_site/plrf_test_jax_cache.py for
why it is safe (keys, atomic writes).
"""
import os
import sys
from pathlib import Path

import jax

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
