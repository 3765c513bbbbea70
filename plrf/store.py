"""Results that survive interruption and cannot be mixed: checked and locked out dirs, atomic files, one
verified file per finished cell, and one loader for every command (an ``xarray.Dataset``).

Layout of an out dir ``OUT``::

    OUT/results.json     provenance (config, versions, devices, git revision, argv, timestamps, sessions,
                         status), the command's results, and the schema of arrays.npz with its sha256
    OUT/arrays.npz       the variables and coordinates of the run's dataset (``OutDir.save``)
    OUT/cells/<h>.npz    one finished cell each (``CellStore``): its arrays, coordinates, configuration, meta
                         and a sha256 checksum; ``<h>`` = sha256 of (configuration, coordinates)
    OUT/cells/quarantine/  damaged or mismatched cells, set aside (and recomputed)
    OUT/.lock            advisory lock (fcntl.flock) of the process writing OUT

Every command calls :func:`prepare_out` before computing: it refuses (``OutDirError``, a ValueError; the CLI
exits 2 naming ``--out``) a path that is a file or not writable, a directory locked by another writer, or one
holding another configuration (unless ``overwrite``). Every file is written atomically (temp file in the same
directory, fsync, ``os.replace``): a reader, or a run killed at any instant, sees the old file or the new one,
never a partial file. Stale temp files (``.tmp-*``) left by a killed writer are removed when the store is
reopened.

JSON (``write_json``): numpy arrays become lists, numpy scalars Python numbers, typed PRNG keys their key
data; non-finite floats are written as the strings ``"inf"``, ``"-inf"``, ``"nan"`` (strict JSON);
``read_json`` and ``load`` return them as floats.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

TMP_PREFIX = ".tmp-"
RESULTS = "results.json"
ARRAYS = "arrays.npz"
CELLS = "cells"
OUTPUTS = ".outputs"   # names of the files a command wrote through OutDir.file (figures, tables): cleared with it
_COORDS, _META, _CONFIG, _SHA = "__coords__", "__meta__", "__config__", "__sha256__"


# ---------------------------------------------------------------------------------------------------------
# atomic files

def _fsync_dir(path: Path) -> None:
    try:  # make the rename itself durable (POSIX); harmless where unsupported
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb"):
    """Open a temp file next to ``path``; on clean exit fsync it and ``os.replace`` it onto ``path``.

    On any exception (or KeyboardInterrupt) the temp file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def to_jsonable(obj: Any) -> Any:
    """Plain-JSON form: numpy/jax arrays -> lists, numpy scalars -> numbers, non-finite -> "inf"/"-inf"/"nan".

    Also: NamedTuples and dataclasses -> dicts, tuples/sets -> lists, paths -> str, typed PRNG keys -> key
    data, callables -> their ``.config`` (plrf schedules) or ``"<callable module.name>"``.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        if math.isfinite(x):
            return x
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return to_jsonable(obj._asdict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v) for v in obj), key=repr)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (np.dtype, type)):
        return np.dtype(obj).name if isinstance(obj, np.dtype) or issubclass(obj, np.generic) else obj.__name__
    if type(obj).__module__.startswith(("jax", "jaxlib")) and hasattr(obj, "dtype"):
        import jax
        if jax.numpy.issubdtype(obj.dtype, jax.dtypes.prng_key):
            obj = jax.random.key_data(obj)
        return to_jsonable(np.asarray(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return [to_jsonable(v) for v in obj.tolist()]
        return to_jsonable(obj.tolist())
    if callable(obj):
        cfg = getattr(obj, "config", None)
        if isinstance(cfg, Mapping):
            return to_jsonable(cfg)
        return f"<callable {getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}>"
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON: {obj!r:.80}")


def write_json(path, obj, *, indent: int = 1) -> None:
    """Write ``to_jsonable(obj)`` to ``path`` atomically (strict JSON, see the module docstring)."""
    data = to_jsonable(obj)
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=indent, allow_nan=False)
        f.write("\n")


def _decode_nonfinite(obj):
    """The inverse of :func:`to_jsonable` for non-finite floats: "inf", "-inf", "nan" -> float."""
    if isinstance(obj, str):
        return _NONFINITE.get(obj, obj)
    if isinstance(obj, list):
        return [_decode_nonfinite(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _decode_nonfinite(v) for k, v in obj.items()}
    return obj


_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def read_json(path, *, nonfinite: bool = True) -> Any:
    """Read a JSON file written by :func:`write_json`; the strings "inf", "-inf", "nan" come back as floats
    (``nonfinite=False``: as written). A file that is not valid JSON raises ``ValueError`` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}): "
                         "damaged or truncated") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not valid JSON (not UTF-8 text): damaged") from None
    return _decode_nonfinite(data) if nonfinite else data


def save_npz(path, **arrays) -> None:
    """``np.savez`` to ``path`` atomically. Object arrays are refused (files load with allow_pickle=False)."""
    for name, a in arrays.items():
        if isinstance(a, np.ndarray) and a.dtype == object:
            raise TypeError(f"array {name!r} has dtype object; store numbers or strings only")
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_npz(path) -> Dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------------------------------------
# metadata

def _git(pkg_dir: Path) -> Optional[dict]:
    def call(*args):
        return subprocess.run(["git", "-C", str(pkg_dir), *args], capture_output=True, text=True, timeout=10)
    try:
        rev = call("rev-parse", "HEAD")
        if rev.returncode != 0:
            return None
        dirty = call("status", "--porcelain", "--untracked-files=no")
        return {"rev": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return None


def metadata(config: dict, *, wall_time: Optional[float] = None) -> dict:
    """Provenance of a run: the full config, versions, x64 flag, devices, git revision, UTC time, argv."""
    import jax
    import jaxlib
    from . import __version__
    devs = jax.devices()
    return {
        "config": to_jsonable(config),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time": wall_time,
        "argv": list(sys.argv),
        "host": socket.gethostname(),
        "versions": {"plrf": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                     "numpy": np.__version__, "python": sys.version.split()[0]},
        "x64": bool(jax.config.jax_enable_x64),
        "devices": {"platform": devs[0].platform, "count": len(devs), "local_count": jax.local_device_count(),
                    "kinds": sorted({d.device_kind for d in devs}),
                    "process_count": jax.process_count(), "process_index": jax.process_index()},
        "git": _git(Path(__file__).resolve().parent),
    }


def _is_writer() -> bool:
    """Only process 0 writes files in a multi-process (multi-host) run."""
    if "jax" not in sys.modules:
        return True
    import jax
    return jax.process_index() == 0


def _normalized(obj):
    return json.loads(json.dumps(to_jsonable(obj), sort_keys=True))


def canonical(obj) -> str:
    """Canonical JSON of ``obj`` (sorted keys, no spaces, non-finite floats as strings): equal configurations,
    however built (numpy or Python numbers, tuples or lists), give equal strings."""
    return json.dumps(_normalized(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _config_diff(old, new) -> List[str]:
    """Lines naming each differing entry of two normalized configs (option name in CLI form too)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [f"config: stored {json.dumps(old)[:120]}, now {json.dumps(new)[:120]}"]
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if a != b:
            opt = f" (--{k.replace('_', '-')})" if k not in ("command", "kind") else ""
            out.append(f"{k}{opt}: stored {json.dumps(a)[:120]}, now {json.dumps(b)[:120]}")
    return out


class OutDirError(ValueError):
    """An out dir that cannot be used: not a directory, not writable, in use, or holding another run."""


class CellWarning(UserWarning):
    """A stored cell that is damaged or does not belong where it was found: it is set aside and recomputed."""


# ---------------------------------------------------------------------------------------------------------
# out dirs: checked before any work, locked while written

LOCK = ".lock"
QUARANTINE = "quarantine"


class DirLock:
    """Advisory lock on ``OUT/.lock`` (``fcntl.flock``, non-blocking): one writer per out dir at a time.

    A second writer (another process, or another lock object in this one) is refused at once with
    :class:`OutDirError` naming the directory and the holder's pid. The lock dies with its process (a
    killed run leaves no stale lock); the file itself stays.
    """

    def __init__(self, root, what: str = "--out"):
        self.root, self.what, self.fd = Path(root), what, None

    def acquire(self) -> "DirLock":
        import fcntl
        path = self.root / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise OutDirError(f"{self.what} {self.root}: cannot create the lock file {path}: "
                              f"{err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "pid unknown"
            finally:
                os.close(fd)
            raise OutDirError(f"{self.what} {self.root} is in use by another plrf run ({holder}); wait for it to "
                              f"finish, or choose another {self.what}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            import fcntl
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        with contextlib.suppress(Exception):   # interpreter shutdown
            self.release()


def _stored_configs(cells_dir: Path) -> Dict[str, Path]:
    """Canonical config -> one cell file holding it (unreadable cells are skipped: they are checked on use)."""
    out = {}
    if not cells_dir.is_dir():
        return out
    for p in sorted(cells_dir.glob("*.npz")):
        if p.name.startswith(TMP_PREFIX):
            continue
        try:
            with np.load(p, allow_pickle=False) as z:
                out.setdefault(str(z[_CONFIG]), p)
        except Exception:  # noqa: BLE001 - a damaged cell is dealt with when it is read
            continue
    return out


def _has_cells(root: Path) -> bool:
    d = root / CELLS
    return d.is_dir() and any(not p.name.startswith(TMP_PREFIX) for p in d.glob("*.npz"))


def _clear(root: Path) -> None:
    for name in _outputs(root):   # figures and tables of the discarded run: never left next to new results
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            (root / name).unlink()
    for p in (root / RESULTS, root / ARRAYS, root / OUTPUTS):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    cells = root / CELLS
    if cells.is_dir():
        for p in cells.iterdir():
            if p.is_file() and (p.suffix == ".npz" or p.name.startswith(TMP_PREFIX)):
                p.unlink()
        q = cells / QUARANTINE
        if q.is_dir():
            for p in q.iterdir():
                if p.is_file():
                    p.unlink()


def _outputs(root: Path) -> list:
    """Names recorded by :meth:`OutDir.file` (plain names in the out dir; anything else in the list is ignored)."""
    try:
        names = read_json(root / OUTPUTS)
    except (FileNotFoundError, ValueError):
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n and os.path.basename(n) == n and not n.startswith(".")]


class OutDir:
    """A checked (and, for the writer, locked) out dir: returned by :func:`prepare_out`.

    ``file(name)`` is a path inside it, ``cells()`` a :class:`CellStore` sharing its lock, ``save(results,
    dataset)`` writes the finished run (``arrays.npz`` then ``results.json``). Close it (or use ``with``) to
    release the lock.
    """

    def __init__(self, root, config, *, writer: bool, previous: Optional[dict], lock: Optional[DirLock]):
        self.root = Path(root)
        self.config = None if config is None else _normalized(config)
        self.writer = writer
        self.previous = previous      # results.json of an earlier session of the same configuration
        self.lock = lock
        prev = previous or {}
        self.sessions = int(prev.get("sessions") or 1) + 1 if previous else 1
        self.started = prev.get("started", prev.get("timestamp"))
        self.wall_time_before = float(prev.get("wall_time_total") or 0.0) if previous else 0.0

    def file(self, name: str) -> str:
        """Path of an output file ``name`` (a figure, a table) inside the out dir; the name is recorded in
        ``OUT/.outputs`` so that ``--overwrite`` removes it with the results it was drawn from."""
        if self.writer and os.path.basename(name) == name and name not in _outputs(self.root):
            write_json(self.root / OUTPUTS, sorted(set(_outputs(self.root)) | {name}))
        return os.fspath(self.root / name)

    def cells(self) -> "CellStore":
        return CellStore(self)

    def _meta(self, wall_time: Optional[float]) -> dict:
        meta = metadata(self.config or {}, wall_time=wall_time)
        meta["started"] = self.started or meta["timestamp"]
        meta["sessions"] = self.sessions
        meta["wall_time_total"] = self.wall_time_before + (float(wall_time) if wall_time is not None else 0.0)
        return meta

    def save(self, results: Optional[Mapping] = None, dataset=None, *, wall_time: Optional[float] = None,
             status: str = "complete") -> Optional[Path]:
        """Write ``dataset`` (an ``xarray.Dataset``: its variables and coordinates, ``OUT/arrays.npz``) and then
        ``OUT/results.json`` = provenance + ``results`` + the dataset's schema and the sha256 of arrays.npz
        (process 0 only). ``plrf.load(OUT)`` reads it back as that dataset, merged with the cells."""
        if not self.writer:
            return None
        meta = self._meta(wall_time)
        if dataset is not None:
            schema, arrays = _encode_dataset(dataset)
            save_npz(self.root / ARRAYS, **arrays)
            meta["dataset"] = schema
            meta["arrays_sha256"] = _file_sha256(self.root / ARRAYS)
        else:
            with contextlib.suppress(FileNotFoundError):
                (self.root / ARRAYS).unlink()
        ncells = len(CellStore(self, _no_setup=True)) if _has_cells(self.root) else 0
        meta.update(layout="cells" if ncells else "arrays", status=status)
        if ncells:
            meta["cells"] = ncells
        for k, v in to_jsonable(dict(results or {})).items():
            if k == "config" and v != self.config:
                raise ValueError("results['config'] differs from the out dir's configuration")
            meta[k] = v
        write_json(self.root / RESULTS, meta)
        return self.root / RESULTS

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def prepare_out(out_dir, config: Optional[Mapping], *, overwrite: bool = False, writer: Optional[bool] = None,
                what: str = "--out") -> OutDir:
    """Check an out dir BEFORE any computation and lock it; call it at the top of every command.

    Raises :class:`OutDirError` (a ``ValueError``; the CLI exits 2) naming ``what`` (``--out``) when the path
    exists and is not a directory, cannot be created or written, is locked by another writer, or holds the
    results or cells of another configuration (the message lists the differing options and suggests
    ``--overwrite``). ``overwrite=True`` discards stored results (after taking the lock). Only the writer
    (process 0) creates, locks or clears anything. ``config``: every option that changes the numbers
    (not output, progress or plot options).
    """
    root = Path(out_dir)
    writer = _is_writer() if writer is None else bool(writer)
    if root.exists() and not root.is_dir():
        raise OutDirError(f"{what} {root} exists and is not a directory")
    lock = None
    if writer:
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=root, prefix=f"{TMP_PREFIX}probe.")
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise OutDirError(f"{what} {root} cannot be created or written: {err.strerror or err}"
                              f"{' (' + err.filename + ')' if getattr(err, 'filename', None) else ''}") from None
        lock = DirLock(root, what).acquire()
    try:
        previous = None
        if overwrite:
            if writer:
                _clear(root)
        elif root.is_dir():
            previous = _check_existing(root, config, what)
        return OutDir(root, config, writer=writer, previous=previous, lock=lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _check_existing(root: Path, config, what: str) -> Optional[dict]:
    """results.json of ``root`` when it holds the same configuration (None when there is nothing to keep);
    raise :class:`OutDirError` when it holds another one."""
    path = root / RESULTS
    new = None if config is None else _normalized(config)
    hint = f"Use another {what}, or pass --overwrite (Python: overwrite=True) to discard the stored results."
    if path.exists():
        try:
            old = read_json(path, nonfinite=False)
        except ValueError as err:
            raise OutDirError(f"{what} {root}: {err}. {hint}") from None
        if not isinstance(old, dict):
            raise OutDirError(f"{what} {root}: {path} is not a plrf results file. {hint}")
        if new is None or "config" not in old:
            return old
        diff = _config_diff(old["config"], new)
        if not diff:
            return old
        if old.get("status") == "complete" or _has_cells(root):
            raise OutDirError(f"{what} {root} holds results of a different configuration:\n  " + "\n  ".join(diff)
                              + f"\n{hint}")
        return None  # an unfinished run that stored nothing: replaced
    if new is not None:  # no results.json (deleted?): the cells still say which configuration wrote them
        mine = canonical(new)
        for cfg, p in _stored_configs(root / CELLS).items():
            if cfg != mine:
                diff = _config_diff(json.loads(cfg), new)
                raise OutDirError(f"{what} {root} holds cells of a different configuration (e.g. {p.name}; "
                                  f"{RESULTS} is missing):\n  " + "\n  ".join(diff) + f"\n{hint}")
    return None


# ---------------------------------------------------------------------------------------------------------
# cells

def _canon(name, v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"coordinate {name} must be finite, got {v}")
        return int(v) if v.is_integer() and abs(v) < 2 ** 53 else v
    if isinstance(v, str):
        return v
    raise TypeError(f"coordinate {name} must be a number or a string, got {type(v).__name__}")


def _check_coords(coords: Mapping) -> dict:
    if not isinstance(coords, Mapping) or not coords:
        raise ValueError(f"coords must be a non-empty dict of scalars, got {coords!r}")
    for k in coords:
        if not isinstance(k, str) or not k or k.startswith("__"):
            raise ValueError(f"coordinate names must be non-empty strings not starting with '__', got {k!r}")
    return {k: _canon(k, v) for k, v in coords.items()}


def coords_key(coords: Mapping) -> str:
    """Canonical JSON of a cell's coordinates (sorted keys; 1 and 1.0 are equal)."""
    return json.dumps(_check_coords(coords), sort_keys=True, separators=(",", ":"))


def cell_key(coords: Mapping, config) -> str:
    """A cell's file name: 32 hex digits of sha256 of ``{"config": <canonical config>, "coords": <canonical
    coords>}``, so a cell of another configuration can never be found under this configuration's name."""
    cfg = config if isinstance(config, str) else canonical(config)
    text = '{"config":' + cfg + ',"coords":' + coords_key(coords) + "}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cell_checksum(arrays: Mapping[str, np.ndarray], header: str) -> str:
    """sha256 of the cell's header (coords, config, meta as stored) and of every array's name, dtype, shape
    and bytes (C order), in name order."""
    h = hashlib.sha256(header.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Cell(NamedTuple):
    coords: dict   # e.g. {"alpha": 1.0, "beta": 0.7, "d": 1024}
    arrays: dict   # name -> np.ndarray
    meta: dict     # settings; optional "dims" {array: [dim names]}, "axes" {name: values}


class _BadCell(Exception):
    pass


def _read_cell(path) -> Tuple[Cell, str]:
    """The cell at ``path`` and its stored canonical config; raises _BadCell when it cannot be trusted."""
    try:
        z = load_npz(path)
        sha, cfg = str(z.pop(_SHA)), str(z.pop(_CONFIG))
        coords_s, meta_s = str(z.pop(_COORDS)), str(z.pop(_META))
        coords, meta = json.loads(coords_s), json.loads(meta_s)
    except Exception as err:  # noqa: BLE001 - BadZipFile, EOFError, zlib.error, KeyError, ValueError, OSError...
        raise _BadCell(f"unreadable ({type(err).__name__}: {str(err)[:100]})") from None
    if _cell_checksum(z, _header(coords_s, cfg, meta_s)) != sha:
        raise _BadCell("checksum mismatch: the file is damaged")
    return Cell(coords, z, meta), cfg


def _header(coords_s: str, cfg: str, meta_s: str) -> str:
    return f"{coords_s}\n{cfg}\n{meta_s}"


class CellStore:
    """One atomic, checksummed ``.npz`` per finished cell under ``OUT/cells/``; re-running with the same OUT
    and configuration skips them.

    ``out_dir``: a path (the store checks and locks it with :func:`prepare_out`; release with ``finish()`` or
    ``close()``) or an :class:`OutDir` (shares its lock). ``config``: every setting that changes the cells'
    numbers. A cell's file is named by :func:`cell_key` of (config, coords) and holds its coords, the config,
    its arrays, meta and a sha256 checksum. On read (``done``/``get``/``cells``) the checksum, the stored
    coordinates and the stored config are verified; a cell that fails is named in a :class:`CellWarning`,
    moved to ``OUT/cells/quarantine/`` (by the writer) and treated as absent, so it is recomputed.
    ``writer``: whether this process writes (default: process 0 only).
    """

    def __init__(self, out_dir, config: Optional[dict] = None, *, overwrite: bool = False,
                 writer: Optional[bool] = None, _no_setup: bool = False):
        if isinstance(out_dir, OutDir):
            self.out, self._own = out_dir, False
        else:
            w = _is_writer() if writer is None else bool(writer)
            self.out = prepare_out(out_dir, config, overwrite=overwrite, writer=w, what="out dir")
            self._own = True
        self.root = self.out.root
        self.dir = self.root / CELLS
        self.writer = self.out.writer
        self.config = self.out.config
        self._cfg = None if self.config is None else canonical(self.config)
        self._cache: Dict[str, Cell] = {}
        if self.writer and not _no_setup:
            self.dir.mkdir(parents=True, exist_ok=True)
            for p in self.dir.glob(f"{TMP_PREFIX}*"):  # left by a killed writer
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            if self.config is not None:
                meta = self.out._meta(None)
                meta.update(layout="cells", status="running")
                write_json(self.root / RESULTS, meta)

    @classmethod
    def reader(cls, out_dir, config=None) -> "CellStore":
        """Read-only view (no checks, no lock, nothing written or moved)."""
        return cls(OutDir(out_dir, config, writer=False, previous=None, lock=None))

    def _need_config(self):
        if self._cfg is None:
            raise ValueError("this CellStore has no configuration: cells are named by (configuration, coordinates)")
        return self._cfg

    def path(self, coords: Mapping) -> Path:
        return self.dir / f"{cell_key(coords, self._need_config())}.npz"

    def _reject(self, path: Path, reason: str) -> None:
        if self.writer:
            q = self.dir / QUARANTINE
            q.mkdir(exist_ok=True)
            dest = q / path.name
            n = 1
            while dest.exists():
                dest = q / f"{path.stem}.{n}{path.suffix}"
                n += 1
            try:
                os.replace(path, dest)
                what = f"moved to {dest}; it will be recomputed"
            except OSError as err:
                what = f"could not be moved aside ({err.strerror}); ignored"
        else:
            what = "ignored"
        import warnings
        warnings.warn(f"cell {path}: {reason}; {what}", CellWarning, stacklevel=3)

    def _verified(self, coords: Mapping) -> Optional[Cell]:
        path = self.path(coords)
        if path.name in self._cache:
            return self._cache[path.name]
        if not path.exists():
            return None
        try:
            cell, cfg = _read_cell(path)
            if cfg != self._cfg:
                diff = _config_diff(json.loads(cfg), self.config)
                raise _BadCell("written under another configuration (" + "; ".join(diff)[:300] + ")")
            if coords_key(cell.coords) != coords_key(coords):
                raise _BadCell(f"holds the cell {cell.coords}, not {dict(coords)} (a copied or misplaced file)")
        except _BadCell as err:
            self._reject(path, str(err))
            return None
        self._cache[path.name] = cell
        return cell

    def done(self, coords: Mapping) -> bool:
        """Whether a verified cell is stored at ``coords`` (a damaged or mismatched one is set aside: False)."""
        return self._verified(coords) is not None

    __contains__ = done

    def get(self, coords: Mapping) -> Cell:
        cell = self._verified(coords)
        if cell is None:
            raise KeyError(f"no finished cell {dict(coords)} in {self.dir}")
        return cell

    def put(self, coords: Mapping, arrays: Mapping, meta: Optional[dict] = None) -> Optional[Path]:
        """Store a finished cell atomically (no-op on non-writer processes). Returns its path."""
        _check_coords(coords)
        for k in arrays:
            if k.startswith("__"):
                raise ValueError(f"array names must not start with '__', got {k!r}")
        if not self.writer:
            return None
        path = self.path(coords)
        arrs = {k: np.asarray(v) for k, v in arrays.items()}
        coords_s = json.dumps(to_jsonable(dict(coords)), allow_nan=False)
        meta_s = json.dumps(to_jsonable(meta or {}), allow_nan=False)
        sha = _cell_checksum(arrs, _header(coords_s, self._cfg, meta_s))
        save_npz(path, **arrs, **{_COORDS: np.array(coords_s), _META: np.array(meta_s),
                                  _CONFIG: np.array(self._cfg), _SHA: np.array(sha)})
        self._cache.pop(path.name, None)
        return path

    @staticmethod
    def read(path) -> Cell:
        """The cell at ``path``, checksum verified (ValueError naming the file otherwise)."""
        try:
            return _read_cell(path)[0]
        except _BadCell as err:
            raise ValueError(f"cell {path}: {err}") from None

    def cells(self) -> List[Cell]:
        """All verified cells of this configuration, sorted by coordinates (others are named and skipped)."""
        if not self.dir.is_dir():
            return []
        out = []
        for p in sorted(self.dir.glob("*.npz")):
            if p.name.startswith(TMP_PREFIX):
                continue
            try:
                cell, cfg = _read_cell(p)
                if self._cfg is not None and cfg != self._cfg:
                    raise _BadCell("written under another configuration (" +
                                   "; ".join(_config_diff(json.loads(cfg), self.config))[:300] + ")")
                if p.stem != cell_key(cell.coords, cfg):
                    raise _BadCell(f"holds the cell {cell.coords} under another cell's name (a copied file)")
            except _BadCell as err:
                self._reject(p, str(err))
                continue
            out.append(cell)
        return sorted(out, key=lambda c: [(k, _sortkey(v)) for k, v in sorted(c.coords.items())])

    def __len__(self) -> int:
        return 0 if not self.dir.is_dir() else sum(1 for p in self.dir.glob("*.npz")
                                                   if not p.name.startswith(TMP_PREFIX))

    def finish(self, *, wall_time: Optional[float] = None, **extra) -> None:
        """Mark OUT complete in ``results.json`` (process 0) and release the lock of a store opened on a path."""
        try:
            if self.writer:
                self.out.save(extra, wall_time=wall_time)
        finally:
            self.close()

    def close(self) -> None:
        if self._own:
            self.out.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _sortkey(v):
    return (0, float(v), "") if isinstance(v, (int, float, np.integer, np.floating)) else (1, 0.0, str(v))


# ---------------------------------------------------------------------------------------------------------
# labelled results: xarray

_VAR, _CRD = "var__", "coord__"


def _encode_dataset(ds) -> Tuple[dict, Dict[str, np.ndarray]]:
    import xarray as xr
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"dataset must be an xarray.Dataset, got {type(ds).__name__}")
    schema = {"data_vars": {}, "coords": {}}
    arrays = {}
    for kind, items, prefix in (("data_vars", ds.data_vars.items(), _VAR), ("coords", ds.coords.items(), _CRD)):
        for name, da in items:
            a = np.asarray(da.values)
            if a.dtype == object:
                a = a.astype(str)
            schema[kind][str(name)] = [str(d) for d in da.dims]
            arrays[prefix + str(name)] = a
    return schema, arrays


def _decode_dataset(schema: dict, arrays: Mapping[str, np.ndarray]):
    import xarray as xr
    coords = {n: (tuple(d), arrays[_CRD + n]) for n, d in schema.get("coords", {}).items()}
    data = {n: (tuple(d), arrays[_VAR + n]) for n, d in schema.get("data_vars", {}).items()}
    return xr.Dataset(data, coords=coords)


def _fill(dtype):
    if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating):
        return dtype, np.nan
    if np.issubdtype(dtype, np.bool_):
        return dtype, False
    if np.issubdtype(dtype, np.integer):
        return np.dtype(np.float64), np.nan      # padded integers become floats with NaN (exact below 2^53)
    return dtype, ""


def cells_dataset(cells: Sequence[Cell], attrs: Optional[dict] = None):
    """An ``xarray.Dataset`` of cells: dims = the cell coordinates, then each array's dims.

    A cell's ``meta["dims"][name]`` names the leading dims of array ``name`` (values in ``meta["axes"]``),
    or all of them; remaining trailing dims are named ``point`` (``point1``, ... for more). Arrays of
    different lengths (a ragged ladder) and absent cells are padded with NaN (integers become floats), and a
    boolean ``cell_done`` marks the present cells when some are absent.
    """
    import xarray as xr
    if not cells:
        raise ValueError("no cells")
    names = list(cells[0].coords)
    for c in cells:
        if set(c.coords) != set(names):
            raise ValueError(f"cells have different coordinate names: {sorted(c.coords)} vs {sorted(names)}")
    inner_axes = cells[0].meta.get("axes", {})
    inner_dims = cells[0].meta.get("dims", {})
    for c in cells[1:]:
        ax = c.meta.get("axes", {})
        if set(ax) != set(inner_axes) or any(not np.array_equal(np.asarray(ax[k]), np.asarray(inner_axes[k]))
                                             for k in ax) or c.meta.get("dims", {}) != inner_dims:
            raise ValueError(f"cell {c.coords} has different inner axes/dims than cell {cells[0].coords}")
    clash = set(names) & set(inner_axes)
    if clash:
        raise ValueError(f"names used both as cell coordinates and inner axes: {sorted(clash)}")
    axes = {k: np.asarray(sorted({c.coords[k] for c in cells}, key=_sortkey)) for k in names}
    index = {k: {_sortkey(v): i for i, v in enumerate(axes[k].tolist())} for k in names}
    cshape = tuple(len(axes[k]) for k in names)
    pos = [tuple(index[k][_sortkey(c.coords[k])] for k in names) for c in cells]
    present = np.zeros(cshape, dtype=bool)
    for p in pos:
        present[p] = True
    data = {}
    for var in sorted({v for c in cells for v in c.arrays}):
        have = [(p, np.asarray(c.arrays[var])) for p, c in zip(pos, cells) if var in c.arrays]
        ndim = have[0][1].ndim
        if any(a.ndim != ndim for _, a in have):
            raise ValueError(f"variable {var!r} has different numbers of dims in different cells")
        given = list(inner_dims.get(var, ()))
        trail = ndim - len(given)
        dims = given + (["point"] if trail == 1 else [f"point{i}" for i in range(trail)])
        shape = tuple(max(a.shape[i] for _, a in have) for i in range(ndim))
        ragged = any(a.shape != shape for _, a in have)
        dtype = np.result_type(*[a.dtype for _, a in have])
        if ragged or not present.all() or len(have) < len(cells):
            dtype, fill = _fill(dtype)
            out = np.full(cshape + shape, fill, dtype=dtype)
        else:
            out = np.empty(cshape + shape, dtype=dtype)
        for p, a in have:
            out[p + tuple(slice(0, n) for n in a.shape)] = a
        data[var] = (tuple(names) + tuple(dims), out)
    if not present.all():
        data["cell_done"] = (tuple(names), present)
    coords = dict(axes)
    coords.update({k: np.asarray(v) for k, v in inner_axes.items()})
    return xr.Dataset(data, coords=coords, attrs=dict(attrs or {}))


_ATTR_DICTS = ("config", "versions", "devices", "git")


def _attrs(meta: dict) -> dict:
    """Dataset attrs: the configuration (flattened, and as ``config``), provenance and scalar results."""
    out = {}
    for k, v in meta.items():
        if v is None or isinstance(v, (bool, int, float, str)):
            out[k] = v
        elif k in _ATTR_DICTS:
            out[k] = v
    for k, v in (meta.get("config") or {}).items():
        out.setdefault(k, v)
    return out


def load(out_dir, *, squeeze: bool = True):
    """Read any command's out dir as an ``xarray.Dataset`` (also while a cell run is unfinished).

    Variables come from ``OUT/arrays.npz`` (described by ``results.json["dataset"]``, verified against its
    sha256) and from the verified cells of ``OUT/cells/`` (see :func:`cells_dataset`); ``attrs`` hold the
    configuration (``ds.attrs["config"]`` and each entry flattened), provenance and scalar results. NaNs are
    real floats. ``squeeze``: drop singleton dims (their value stays as a scalar coordinate). Raises
    ``FileNotFoundError`` naming the directory when it holds no results, ``ValueError`` when arrays.npz does not
    match results.json.
    """
    import xarray as xr
    root = Path(out_dir)
    path = root / RESULTS
    if not path.exists() and not _has_cells(root):
        raise FileNotFoundError(f"no results in {root}: {path} not found")
    raw = read_json(path, nonfinite=False) if path.exists() else {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path} is not a plrf results file")
    meta = _decode_nonfinite(raw)
    parts = []
    if "dataset" in raw:
        arr = root / ARRAYS
        if not arr.exists():
            raise ValueError(f"{arr} is missing ({path} describes it)")
        if raw.get("arrays_sha256") != _file_sha256(arr):
            raise ValueError(f"{arr} does not match the sha256 recorded in {path}: damaged, or from another run")
        parts.append(_decode_dataset(raw["dataset"], load_npz(arr)))
    if _has_cells(root):
        cells = CellStore.reader(root, raw.get("config")).cells()
        if cells:
            parts.append(cells_dataset(cells))
    if not parts:
        ds = xr.Dataset()
    elif len(parts) == 1:
        ds = parts[0]
    else:
        clash = set(parts[0].data_vars) & set(parts[1].data_vars)
        if clash:
            raise ValueError(f"variables {sorted(clash)} found both in {ARRAYS} and {CELLS}/")
        ds = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop")
    ds.attrs = _attrs(meta)
    return ds.squeeze() if squeeze else ds


def save_results(out_dir, dataset, *, config: dict, wall_time: Optional[float] = None,
                 overwrite: bool = False, results: Optional[Mapping] = None) -> Optional[Path]:
    """Write an ``xarray.Dataset`` (``OUT/arrays.npz``) and ``OUT/results.json`` (process 0 only), after the
    checks of :func:`prepare_out` (another configuration is refused unless ``overwrite``)."""
    with prepare_out(out_dir, config, overwrite=overwrite, what="out dir") as out:
        return out.save(results, dataset, wall_time=wall_time)


def stack_ragged(arrays: Sequence, fill=np.nan) -> np.ndarray:
    """Stack 1-d arrays of different lengths into ``(len(arrays), max length)``, padded with ``fill`` (NaN)."""
    arrs = [np.asarray(a) for a in arrays]
    n = max((a.shape[0] for a in arrs), default=0)
    dtype = np.result_type(*[a.dtype for a in arrs]) if arrs else np.float64
    if any(a.shape[0] != n for a in arrs) and not (np.issubdtype(dtype, np.floating) or isinstance(fill, str)):
        dtype = np.float64
    out = np.full((len(arrs), n), fill, dtype=dtype)
    for i, a in enumerate(arrs):
        out[i, :a.shape[0]] = a
    return out


def records_dataset(records: Sequence[Mapping], dim: str, *, dims: Optional[Mapping[str, str]] = None,
                    coords: Optional[Mapping] = None):
    """An ``xarray.Dataset`` of a list of flat records (dicts): scalars -> ``(dim,)`` variables, 1-d lists ->
    ``(dim, dims.get(key, key + "_i"))`` padded with NaN; ``None`` -> NaN; nested dicts are skipped."""
    import xarray as xr
    dims = dict(dims or {})
    data = {}
    keys = list(dict.fromkeys(k for r in records for k in r))
    for k in keys:
        vals = [r.get(k) for r in records]
        if any(isinstance(v, Mapping) for v in vals):
            continue
        if all(v is None or np.ndim(v) == 0 for v in vals):
            vals = [np.nan if v is None else v for v in vals]
            data[k] = ((dim,), np.asarray(vals))
        elif all(v is not None and np.ndim(v) == 1 for v in vals):
            data[k] = ((dim, dims.get(k, f"{k}_i")), stack_ragged([np.asarray(v) for v in vals]))
    return xr.Dataset(data, coords=dict(coords or {}))
