"""A persistent JAX compilation cache for the test suite, written atomically.

``enable(dir)`` points JAX's persistent compilation cache at ``dir``. Entries are keyed by JAX on the optimized
program, the compile options, the backend and the jax/jaxlib versions, so an entry is never used for another
program. JAX itself writes an entry in place (``Path.write_bytes``): a process killed mid-write (the kill-and-
resume tests do that) would leave a truncated entry, and a second process could read a half-written one (JAX then
warns and compiles afresh). Here entries are written to a temporary file and renamed into place (atomic on
POSIX), so a reader sees a whole entry or none. Without the expected JAX internals it does nothing.
"""
import os
import tempfile


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


def enable(cache_dir: str) -> bool:
    import jax
    try:
        from jax._src import config, lru_cache
    except ImportError:
        return False
    # only with the layout this patch was written for (entry suffix, and no size limit: no eviction lock/atime)
    if getattr(lru_cache, "_CACHE_SUFFIX", None) != "-cache" or config.compilation_cache_max_size.value != -1:
        return False
    lru_cache.LRUCache.put = _atomic_put
    os.makedirs(cache_dir, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    # cache every program that took >= 0.2 s to compile (JAX's default threshold is 1 s; ours mostly take 0.2-5 s)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return True
