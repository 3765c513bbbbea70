"""Test-session setup: float64, and a persistent JAX compilation cache shared by the xdist workers and by
successive runs (the default suite is compile-bound: a warm cache saves most of the XLA compile time).

The cache lives in ``.pytest_cache/jax-compilation-cache`` under the repository (``PLRF_TEST_JAX_CACHE=DIR``
moves it, ``PLRF_TEST_JAX_CACHE=`` turns it off). Entries are keyed by JAX on the optimized program, the
compile options, the backend and the jax/jaxlib versions, so a stale entry is never used for another program.
JAX writes an entry in place (``Path.write_bytes``), so a second worker could read a half-written file; its read
then fails, JAX warns and compiles afresh. To avoid even that, entries are written to a temporary file and
renamed into place (atomic on POSIX): a reader sees the whole entry or none.
"""
import os
import tempfile
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

_ROOT = Path(__file__).resolve().parents[1]
_CACHE = os.environ.get("PLRF_TEST_JAX_CACHE", str(_ROOT / ".pytest_cache" / "jax-compilation-cache"))


def _atomic_put(self, key, value):
    if not key:
        raise ValueError("key cannot be empty")
    path = self.path / f"{key}-cache"
    if path.exists():
        return
    fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


if _CACHE:
    try:
        from jax._src import lru_cache
        if getattr(lru_cache, "_CACHE_SUFFIX", None) == "-cache":
            lru_cache.LRUCache.put = _atomic_put   # eviction is off (no size limit), so no lock/atime is needed
            os.makedirs(_CACHE, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", _CACHE)
            # cache every program that took >= 0.2 s to compile (default 1 s; most of ours take 0.2-3 s)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except ImportError:   # another jax layout: run without the persistent cache
        pass
