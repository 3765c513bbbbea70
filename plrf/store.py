"""Results that survive interruption: atomic files, one file per finished cell, a labelled loader.

Layout of an out dir ``OUT``::

    OUT/results.json     metadata (config, versions, devices, git revision, argv, timestamps) + labels
    OUT/arrays.npz       whole-sweep arrays (``save_results``), labelled by ``results.json["axes"/"dims"]``
    OUT/cells/<h>.npz    one finished cell each (``CellStore``): its arrays, coordinates and settings;
                         ``<h>`` = 16 hex digits of sha256 of the canonical JSON of the cell's coordinates

Every file is written atomically (temp file in the same directory, fsync, ``os.replace``): a reader, or a
run killed at any instant, sees the old file or the new one, never a partial file. Stale temp files
(``.tmp-*``) left by a killed writer are ignored and removed when the store is reopened.

JSON (``write_json``): numpy arrays become lists, numpy scalars Python numbers, typed PRNG keys their key
data; non-finite floats are written as the strings ``"inf"``, ``"-inf"``, ``"nan"`` (strict JSON;
``float(s)`` reads them back). ``read_json`` returns them as strings.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

TMP_PREFIX = ".tmp-"
RESULTS = "results.json"
ARRAYS = "arrays.npz"
CELLS = "cells"
_COORDS, _META, _AXIS = "__coords__", "__meta__", "__axis__"


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


def read_json(path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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


def _config_diff(old: dict, new: dict) -> List[str]:
    keys = sorted(set(old) | set(new)) if isinstance(old, dict) and isinstance(new, dict) else [""]
    out = []
    for k in keys:
        a = old.get(k, "<absent>") if k else old
        b = new.get(k, "<absent>") if k else new
        if a != b:
            out.append(f"{k or 'config'}: stored {json.dumps(a)[:120]} != now {json.dumps(b)[:120]}")
    return out


def _check_config(root: Path, config, overwrite: bool) -> Optional[dict]:
    """Stored metadata of ``root`` if its config equals ``config``; raise on a mismatch (unless overwrite)."""
    path = root / RESULTS
    if not path.exists():
        return None
    old = read_json(path)
    if overwrite or config is None or "config" not in old:
        return old
    diff = _config_diff(old["config"], _normalized(config))
    if diff:
        raise ValueError(
            f"out dir {root} holds results of a different configuration:\n  " + "\n  ".join(diff) +
            "\nUse another out dir, or pass overwrite=True (CLI: --overwrite) to discard the stored results.")
    return old


def _clear(root: Path) -> None:
    for p in (root / RESULTS, root / ARRAYS):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    cells = root / CELLS
    if cells.is_dir():
        for p in cells.iterdir():
            if p.suffix == ".npz" or p.name.startswith(TMP_PREFIX):
                p.unlink()


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
    """Stable hash of a cell's coordinates: sha256 of canonical JSON (sorted keys; 1 and 1.0 are equal)."""
    canon = json.dumps(_check_coords(coords), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


class Cell(NamedTuple):
    coords: dict   # e.g. {"alpha": 1.0, "beta": 0.7, "d": 1024}
    arrays: dict   # name -> np.ndarray
    meta: dict     # settings; optional "dims" {array: [axis names of its leading dims]}, "axes" {name: values}


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


class CellStore:
    """One atomic ``.npz`` per finished cell under ``OUT/cells/``; re-running with the same OUT skips them.

    ``config``: settings shared by all cells (written into ``OUT/results.json``); reopening OUT with a
    different config raises ``ValueError`` unless ``overwrite=True``, which discards the stored results.
    ``writer``: whether this process writes (default: process 0 only). One writer per OUT at a time.
    """

    def __init__(self, out_dir, config: Optional[dict] = None, *, overwrite: bool = False,
                 writer: Optional[bool] = None):
        self.root = Path(out_dir)
        self.dir = self.root / CELLS
        self.writer = _is_writer() if writer is None else bool(writer)
        self.config = config
        if self.writer and overwrite:
            _clear(self.root)
        old = _check_config(self.root, config, overwrite)
        if self.writer:
            self.dir.mkdir(parents=True, exist_ok=True)
            for p in self.dir.glob(f"{TMP_PREFIX}*"):  # left by a killed writer
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            if config is not None:
                meta = metadata(config)
                meta.update(layout="cells", status="running")
                if old is not None and not overwrite:
                    meta["started"] = old.get("started", old.get("timestamp"))
                    meta["sessions"] = int(old.get("sessions", 1)) + 1
                    meta["wall_time_total"] = old.get("wall_time_total")
                else:
                    meta["started"], meta["sessions"] = meta["timestamp"], 1
                write_json(self.root / RESULTS, meta)

    def path(self, coords: Mapping) -> Path:
        return self.dir / f"{coords_key(coords)}.npz"

    def done(self, coords: Mapping) -> bool:
        return self.path(coords).exists()

    __contains__ = done

    def put(self, coords: Mapping, arrays: Mapping, meta: Optional[dict] = None) -> Optional[Path]:
        """Store a finished cell atomically (no-op on non-writer processes). Returns its path."""
        _check_coords(coords)
        for k in arrays:
            if k.startswith("__"):
                raise ValueError(f"array names must not start with '__', got {k!r}")
        if not self.writer:
            return None
        path = self.path(coords)
        save_npz(path, **{k: np.asarray(v) for k, v in arrays.items()},
                 **{_COORDS: np.array(json.dumps(to_jsonable(dict(coords)))),
                    _META: np.array(json.dumps(to_jsonable(meta or {}), allow_nan=False))})
        return path

    @staticmethod
    def read(path) -> Cell:
        z = load_npz(path)
        coords = json.loads(str(z.pop(_COORDS)))
        meta = json.loads(str(z.pop(_META)))
        return Cell(coords, z, meta)

    def get(self, coords: Mapping) -> Cell:
        path = self.path(coords)
        if not path.exists():
            raise KeyError(f"no finished cell {dict(coords)} in {self.dir}")
        return self.read(path)

    def cells(self) -> List[Cell]:
        """All finished cells, sorted by coordinates."""
        if not self.dir.is_dir():
            return []
        out = [self.read(p) for p in self.dir.glob("*.npz") if not p.name.startswith(TMP_PREFIX)]
        return sorted(out, key=lambda c: [(k, _sortkey(v)) for k, v in sorted(c.coords.items())])

    def __len__(self) -> int:
        return 0 if not self.dir.is_dir() else sum(1 for p in self.dir.glob("*.npz")
                                                   if not p.name.startswith(TMP_PREFIX))

    def finish(self, *, wall_time: Optional[float] = None, **extra) -> None:
        """Mark OUT complete in ``results.json`` (process 0), adding this session's wall time."""
        if not self.writer:
            return
        path = self.root / RESULTS
        meta = read_json(path) if path.exists() else metadata(self.config or {})
        meta.update(status="complete", wall_time=wall_time, cells=len(self), **to_jsonable(extra))
        if wall_time is not None:
            meta["wall_time_total"] = (meta.get("wall_time_total") or 0.0) + float(wall_time)
        write_json(path, meta)


def _sortkey(v):
    return (0, float(v), "") if isinstance(v, (int, float, np.integer, np.floating)) else (1, 0.0, str(v))


# ---------------------------------------------------------------------------------------------------------
# labelled results

_MISSING_INT = -1


def _fill_value(dtype):
    if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating):
        return np.nan
    if np.issubdtype(dtype, np.bool_):
        return False
    if np.issubdtype(dtype, np.integer):
        return _MISSING_INT
    return ""


def _axis_values(values) -> np.ndarray:
    vals = sorted(set(values), key=_sortkey)
    return np.asarray(vals)


class Results:
    """Arrays labelled by sweep axes: ``res.sel(alpha=1.0, d=1024).loss``, ``res.axes``, ``res.to_records()``.

    ``axes``: name -> 1-d array of coordinate values. Each variable has leading dims named by axes
    (``res.dims[name]``) and trailing unlabelled dims (e.g. the step grid, whose values are the ``steps``
    variable). Cells of a ragged ladder (grids of different lengths) are padded with NaN (floats) or -1
    (ints); selecting down to one cell trims the padding, and ``to_records`` returns unpadded arrays.
    Absent cells are NaN/-1 and flagged by the boolean variable ``cell_done`` (only present if some are).
    """

    def __init__(self, axes: Mapping[str, np.ndarray], data: Mapping[str, Tuple[Tuple[str, ...], np.ndarray]],
                 meta: Optional[dict] = None, *, cell_axes: Sequence[str] = (), trail: Optional[dict] = None):
        self._axes = {k: np.asarray(v) for k, v in axes.items()}
        self._data = {k: (tuple(d), np.asarray(a)) for k, (d, a) in data.items()}
        self.meta = {} if meta is None else meta
        self._cell_axes = tuple(cell_axes)
        self._trail = dict(trail or {})  # var -> int array (cell axes present in var's dims..., n_trailing)
        for name, (dims, a) in self._data.items():
            for i, ax in enumerate(dims):
                if ax not in self._axes or a.shape[i] != len(self._axes[ax]):
                    raise ValueError(f"variable {name!r}: dim {ax!r} does not match the axes")

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], *, axes: Mapping, dims: Mapping[str, Sequence[str]],
                    meta: Optional[dict] = None) -> "Results":
        return cls(axes, {k: (tuple(dims.get(k, ())), np.asarray(v)) for k, v in arrays.items()}, meta)

    @classmethod
    def from_cells(cls, cells: Sequence[Cell], meta: Optional[dict] = None) -> "Results":
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
        axes = {k: _axis_values(c.coords[k] for c in cells) for k in names}
        axes.update({k: np.asarray(v) for k, v in inner_axes.items()})
        index = {k: {_sortkey(v): i for i, v in enumerate(axes[k].tolist())} for k in names}
        cshape = tuple(len(axes[k]) for k in names)
        pos = [tuple(index[k][_sortkey(c.coords[k])] for k in names) for c in cells]
        data, trail = {}, {}
        for var in sorted({v for c in cells for v in c.arrays}):
            lead = tuple(inner_dims.get(var, ()))
            have = [(p, c.arrays[var]) for p, c in zip(pos, cells) if var in c.arrays]
            nl = len(lead)
            tshapes = np.array([a.shape[nl:] for _, a in have], dtype=np.int64).reshape(len(have), -1)
            tmax = tuple(tshapes.max(axis=0)) if len(have) else ()
            dtype = np.result_type(*[a.dtype for _, a in have])
            lshape = tuple(len(axes[k]) for k in lead)
            out = np.full(cshape + lshape + tmax, _fill_value(dtype), dtype=dtype)
            for p, a in have:
                if a.shape[:nl] != lshape:
                    raise ValueError(f"variable {var!r}: leading shape {a.shape[:nl]} does not match axes {lead}")
                out[p + (slice(None),) * nl + tuple(slice(0, n) for n in a.shape[nl:])] = a
            data[var] = (tuple(names) + lead, out)
            if len(have) and np.any(tshapes != tshapes[0]):
                t = np.zeros(cshape + (len(tmax),), dtype=np.int64)
                for (p, a) in have:
                    t[p] = a.shape[nl:]
                trail[var] = t
        present = np.zeros(cshape, dtype=bool)
        for p in pos:
            present[p] = True
        if not present.all():
            data["cell_done"] = (tuple(names), present)
        return cls(axes, data, meta, cell_axes=names, trail=trail)

    # -- access --------------------------------------------------------------------------------------
    @property
    def axes(self) -> Dict[str, np.ndarray]:
        return dict(self._axes)

    @property
    def dims(self) -> Dict[str, Tuple[str, ...]]:
        return {k: d for k, (d, _) in self._data.items()}

    @property
    def vars(self) -> List[str]:
        return list(self._data)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._data:
            raise KeyError(f"no variable {name!r}; variables: {self.vars}")
        dims, a = self._data[name]
        t = self._trail.get(name)
        if t is not None and t.ndim == 1:  # one cell left: drop the padding
            a = a[(slice(None),) * len(dims) + tuple(slice(0, n) for n in t)]
        return a

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(str(e)) from None

    def __repr__(self) -> str:
        ax = ", ".join(f"{k}[{len(v)}]" for k, v in self._axes.items())
        vs = ", ".join(f"{k}({', '.join(d)}{' | ' if d and a.ndim > len(d) else ''}"
                       f"{', '.join(map(str, a.shape[len(d):]))})" for k, (d, a) in self._data.items())
        return f"Results(axes: {ax}; vars: {vs})"

    def _index(self, axis: str, value):
        vals = self._axes[axis]
        if vals.dtype.kind in "fiu" and isinstance(value, (int, float, np.integer, np.floating)):
            hit = np.flatnonzero(np.isclose(vals.astype(np.float64), float(value), rtol=1e-12, atol=0.0))
        else:
            hit = np.flatnonzero(vals == value)
        if hit.size != 1:
            raise KeyError(f"{axis}={value!r} not in axis {axis} (values: {vals.tolist()})")
        return int(hit[0])

    def sel(self, **coords) -> "Results":
        """Select by coordinate values. A scalar drops the axis; a list keeps it (in the given order)."""
        axes, data, trail = dict(self._axes), dict(self._data), dict(self._trail)
        for axis, value in coords.items():
            if axis not in axes:
                raise KeyError(f"no axis {axis!r}; axes: {list(axes)}")
            scalar = np.ndim(value) == 0
            idx = self._index(axis, value) if scalar else [self._index(axis, v) for v in value]
            for name, (dims, a) in list(data.items()):
                if axis in dims:
                    i = dims.index(axis)
                    a = np.take(a, idx, axis=i)
                    if name in trail and axis in self._cell_axes:
                        ci = [d for d in dims if d in self._cell_axes].index(axis)
                        trail[name] = np.take(trail[name], idx, axis=ci)
                    data[name] = (dims[:i] + dims[i + 1:] if scalar else dims, a)
            if scalar:
                del axes[axis]
            else:
                axes[axis] = self._axes[axis][idx]
        cell_axes = [a for a in self._cell_axes if a in axes]
        return Results(axes, data, self.meta, cell_axes=cell_axes, trail=trail)

    def mean(self, axis: str) -> "Results":
        """Mean over one axis (e.g. ``"seed"``) of every variable that has it; integer variables are dropped."""
        if axis not in self._axes:
            raise KeyError(f"no axis {axis!r}; axes: {list(self._axes)}")
        data, trail = {}, {}
        for name, (dims, a) in self._data.items():
            if axis not in dims:
                data[name] = (dims, a)
                if name in self._trail:
                    trail[name] = self._trail[name]
            elif np.issubdtype(a.dtype, np.floating):
                data[name] = (tuple(d for d in dims if d != axis), a.mean(axis=dims.index(axis)))
                if name in self._trail:
                    ci = [d for d in dims if d in self._cell_axes].index(axis) if axis in self._cell_axes else None
                    trail[name] = self._trail[name] if ci is None else self._trail[name].max(axis=ci)
        axes = {k: v for k, v in self._axes.items() if k != axis}
        return Results(axes, data, self.meta, cell_axes=[a for a in self._cell_axes if a != axis], trail=trail)

    def to_records(self) -> List[dict]:
        """One dict per point of the axes grid (absent cells skipped): coordinates + every variable's value.

        Ready for ``pandas.DataFrame(res.to_records())``; trailing dims (the step grid) stay arrays.
        """
        names = list(self._axes)
        done = self._data.get("cell_done")
        out = []
        for idx in itertools.product(*(range(len(self._axes[k])) for k in names)):
            at = dict(zip(names, idx))
            if done is not None and not done[1][tuple(at[d] for d in done[0])]:
                continue
            rec = {k: _plain(self._axes[k][i]) for k, i in at.items()}
            for name, (dims, a) in self._data.items():
                if name == "cell_done":
                    continue
                v = a[tuple(at[d] for d in dims)]
                t = self._trail.get(name)
                if t is not None:
                    v = v[tuple(slice(0, n) for n in t[tuple(at[d] for d in dims if d in self._cell_axes)])]
                rec[name] = _plain(v[()]) if np.ndim(v) == 0 else v
            out.append(rec)
        return out


def _merge(a: Results, b: Results) -> Results:
    for k in set(a.axes) & set(b.axes):
        if not np.array_equal(a.axes[k], b.axes[k]):
            raise ValueError(f"axis {k!r} differs between arrays.npz and cells/")
    clash = set(a.vars) & set(b.vars)
    if clash:
        raise ValueError(f"variables {sorted(clash)} found both in arrays.npz and cells/")
    return Results({**a.axes, **b.axes}, {**a._data, **b._data}, a.meta,
                   cell_axes=b._cell_axes, trail={**a._trail, **b._trail})


def save_results(out_dir, arrays: Mapping[str, np.ndarray], *, axes: Mapping[str, Iterable],
                 dims: Mapping[str, Sequence[str]], config: dict, wall_time: Optional[float] = None,
                 overwrite: bool = False) -> Optional[Path]:
    """Write whole-sweep ``arrays`` (``OUT/arrays.npz``) then ``OUT/results.json`` (process 0 only).

    ``dims[name]`` names the leading dims of ``arrays[name]`` (labelled by ``axes``). Refuses an OUT holding
    another configuration unless ``overwrite``.
    """
    root = Path(out_dir)
    Results.from_arrays(arrays, axes=axes, dims=dims)  # validate shapes before writing anything
    if not _is_writer():
        return None
    _check_config(root, config, overwrite)
    if overwrite:
        _clear(root)
    ax = {k: np.asarray(v) for k, v in axes.items()}
    save_npz(root / ARRAYS, **{k: np.asarray(v) for k, v in arrays.items()},
             **{_AXIS + k: v for k, v in ax.items()})
    meta = metadata(config, wall_time=wall_time)
    meta.update(layout="arrays", status="complete", axes=ax, dims={k: list(v) for k, v in dims.items()})
    write_json(root / RESULTS, meta)
    return root


def load(out_dir) -> Results:
    """Load an out dir (``results.json`` + ``arrays.npz`` and/or ``cells/``) as labelled :class:`Results`.

    Works on an unfinished (interrupted) cell run too: it returns the cells finished so far.
    """
    root = Path(out_dir)
    meta = read_json(root / RESULTS) if (root / RESULTS).exists() else {}
    parts = []
    if (root / ARRAYS).exists():
        z = load_npz(root / ARRAYS)
        axes = {k[len(_AXIS):]: z.pop(k) for k in list(z) if k.startswith(_AXIS)}
        parts.append(Results.from_arrays(z, axes=axes, dims=meta.get("dims", {}), meta=meta))
    cells = CellStore(root, writer=False).cells()
    if cells:
        parts.append(Results.from_cells(cells, meta))
    if not parts:
        raise FileNotFoundError(f"no results in {root}: expected {RESULTS} with {ARRAYS}, or {CELLS}/*.npz")
    res = parts[0] if len(parts) == 1 else _merge(*parts)
    res.meta = meta
    return res
