"""Vectorized, sharded sweeps over seeds, learning-rate scales and batch sizes; resumable ladders of d.

Execution model (:func:`sweep`): every (lr scale, seed) pair is one *run* (for ``expected``: every
(batch, lr scale) pair, the batch being a traced scalar there). Runs are laid on a 1-d run axis sharded
over a :class:`jax.sharding.Mesh` of the requested devices (``NamedSharding(mesh, P("runs"))``); each
call hands ``block`` runs to every device, where one single-device executable runs them vmapped, and
calls repeat until all runs are done. The run axis is padded to a multiple of ``devices * block``
(padding runs repeat the last run) and the padding is dropped. Every device always executes the same
program at the same vmap width ``block``, so the numbers do not depend on the device count: a sweep on
4 devices is bit-identical to the same sweep on 1. (The width is fixed rather than ``runs / devices``
because XLA may round differently at different vmap widths; and the per-device program is a plain
single-device jit rather than a ``shard_map``, because XLA compiles 1-partition and N-partition programs
through different pipelines, which were seen to round ``x / B`` differently.) With the same ``block``, a
run's curve is also independent of which other runs share the sweep. The price: an XLA executable is
bound to its device, so each program (one per batch size and shape) compiles once per device.

Seed ``s`` uses the key ``fold_in(key, s)`` (:func:`plrf.seed_keys`), exactly as :func:`plrf.simulate`.
The runs are those of :func:`plrf.runners.runner`, as in :func:`plrf.simulate` (the peak check is its
``_peak``).

Multi-host: call :func:`init_distributed` first on every host (same command everywhere); ``devices=None``
then means the global mesh over ``jax.devices()`` of all processes, results are gathered on every process,
and only process 0 writes files (:mod:`plrf.store`).
"""
from __future__ import annotations

import collections
import functools
import os
import time
from typing import Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from . import _x64  # noqa: F401
from .problem import Instance, Problem, sample_instance, sample_spectrum
from .progress import Progress
from .rng import check_key
from .runners import require_key, runner, vmap_runs
from .optimizers import as_optimizer
from .simulate import METHODS, _check_grid, _method_arrays, check_optimizer, check_rng, log_grid, seed_keys
from .spectrum import Spectrum
from .store import Cell, CellStore, _normalized, cells_dataset, load, metadata, save_results, to_jsonable

AXIS = "runs"
INFLIGHT = 4  # compiled calls dispatched ahead of the one being collected
SWEEP_DIMS = ("batch", "lr_scale", "seed")


class SweepResult(NamedTuple):
    """Losses of a sweep, labelled by ``axes = {"batch": (n_batch,), "lr_scale": (n_lr,), "seed": (n_seed,)}``.

    ``expected`` is deterministic: one run per (batch, lr scale), seed axis ``[-1]``.
    """
    steps: np.ndarray     # (n_grid,) int64 grid
    loss: np.ndarray      # (n_batch, n_lr, n_seed, n_grid); inf after a blow-up
    diverged: np.ndarray  # (n_batch, n_lr, n_seed) first grid step whose loss blew up, -1 if none
    axes: dict
    method: str

    def results(self, meta: Optional[dict] = None):
        """Labelled view, an ``xarray.Dataset`` (dims batch, lr_scale, seed, step; not squeezed):
        ``res.results().sel(lr_scale=1.0, batch=4).loss`` -> (n_seed, n_grid)."""
        import xarray as xr
        dims = SWEEP_DIMS + ("step",)
        return xr.Dataset({"loss": (dims, self.loss), "diverged": (SWEEP_DIMS, self.diverged)},
                          coords={**{k: np.asarray(v) for k, v in self.axes.items()}, "step": self.steps},
                          attrs=dict(meta or {}))

    def save(self, out_dir, config: Optional[dict] = None, *, wall_time: Optional[float] = None,
             overwrite: bool = False):
        """``OUT/arrays.npz`` + ``OUT/results.json`` (process 0 only); read back with :func:`plrf.store.load`."""
        cfg = {"kind": "sweep", "method": self.method, **(config or {})}
        return save_results(out_dir, self.results(), config=cfg, wall_time=wall_time, overwrite=overwrite)


# ---------------------------------------------------------------------------------------------------------
# devices

def make_mesh(devices=None) -> Mesh:
    """1-d mesh (axis ``"runs"``): ``None`` = all (global) devices, an int n = the first n, or a list."""
    all_devs = jax.devices()
    if devices is None:
        devs = all_devs
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(all_devs):
            raise ValueError(f"devices must be between 1 and {len(all_devs)} (available), got {devices}")
        devs = all_devs[:int(devices)]
    else:
        devs = list(devices)
        if not devs or not all(isinstance(d, jax.Device) for d in devs):
            raise ValueError("devices must be None, a count, or a non-empty list of jax devices")
    return Mesh(np.array(devs), (AXIS,))


def _default_block(mesh: Mesh) -> int:
    return 1 if mesh.devices.flat[0].platform == "cpu" else 32


def _host(x: jax.Array) -> np.ndarray:
    if x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _agree(x):
    """Process 0's value of a host pytree on every process (identity on one process)."""
    if jax.process_count() == 1:
        return x
    from jax.experimental import multihost_utils
    return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(x))


# ---------------------------------------------------------------------------------------------------------
# the sharded block call

@functools.partial(jax.jit, static_argnames=("method", "batch", "dtype", "impl", "rng"))
def _block_call(arrays, kd, scales, bvals, grid, opt, *, method, batch, dtype, impl, rng):
    """``block`` runs on one device (vmapped): losses of the iterate (block, n_grid) and blow-up steps (block,).
    ``opt`` is traced (new hyper-parameter values reuse the program)."""
    run = runner(method, arrays, grid, opt=opt, batch=batch, dtype=dtype, rng=rng, width=kd.shape[0])
    first = lambda out: (out[0][0], out[1])  # noqa: E731  (read-out 0: the iterate)
    if method == "expected":   # the batch is a traced value here: one program for every batch size
        return vmap_runs(lambda s, B: first(run(None, s, B)), scales, bvals)
    keys = jax.random.wrap_key_data(kd, impl=impl)
    return vmap_runs(lambda k, s: first(run(k, s, batch)), keys, scales)


def _execute(mesh, arrays, kd, scales, bvals, grid, *, method, opt, batch, dtype, impl, block, bar,
             rng="plrf"):
    """All runs, ``block`` per device per call; padding to a multiple of ``devices * block`` dropped.

    Each call lays ``devices * block`` runs on the run axis with ``NamedSharding(mesh, P("runs"))``; every
    addressable shard runs the same single-device executable on its device (dispatched asynchronously, so
    the devices work concurrently), and the shards are assembled into one global array (gathered across
    processes on multi-host). A one-device mesh thus executes exactly the program each of N devices
    executes, which is what makes the numbers independent of the device count. (A ``shard_map`` over the
    mesh would not: XLA compiles 1-partition and N-partition programs through different pipelines, and
    they were seen to round ``x / B`` differently.)
    """
    n = scales.shape[0]
    per = mesh.size * block
    pad = -n % per
    take = np.concatenate([np.arange(n), np.full(pad, n - 1)])
    kd, scales, bvals = kd[take], scales[take], bvals[take]
    shard = NamedSharding(mesh, P(AXIS))
    where = shard.addressable_devices_indices_map((per,))          # device -> slice of the call's runs
    local = {dev: (tuple(jax.device_put(a, dev) for a in arrays), jax.device_put(grid, dev)) for dev in where}
    pending, Ps, divs = collections.deque(), [], []

    def collect():
        outs = pending.popleft()
        n_grid = grid.shape[0]
        P_ = jax.make_array_from_single_device_arrays((per, n_grid), NamedSharding(mesh, P(AXIS, None)),
                                                      [o[0] for o in outs])
        d_ = jax.make_array_from_single_device_arrays((per,), shard, [o[1] for o in outs])
        Ps.append(_host(P_))
        divs.append(_host(d_))
        if bar is not None:
            bar.update()

    for j in range((n + pad) // per):
        outs = []
        for dev, (sl,) in where.items():
            lo = j * per + (sl.start or 0)
            hi = j * per + (per if sl.stop is None else sl.stop)
            arr_d, grid_d = local[dev]
            put = lambda x: jax.device_put(x[lo:hi], dev)  # noqa: E731
            outs.append(_block_call(arr_d, put(kd), put(scales), put(bvals), grid_d, opt, method=method,
                                    batch=batch, dtype=dtype, impl=impl,
                                    rng=rng))
        pending.append(outs)
        if len(pending) > INFLIGHT:
            collect()
    while pending:
        collect()
    return np.concatenate(Ps)[:n], np.concatenate(divs)[:n]


# ---------------------------------------------------------------------------------------------------------
# sweep

def _batches(batches) -> np.ndarray:
    b = np.atleast_1d(np.asarray(batches))
    if b.ndim != 1 or b.size < 1 or b.dtype.kind not in "iu" or np.any(b < 1):
        raise ValueError(f"batches must be a non-empty list of integers >= 1, got {batches!r}")
    return b.astype(np.int64)


def _lr_scales(lr_scales) -> np.ndarray:
    s = np.atleast_1d(np.asarray(lr_scales, dtype=np.float64))
    if s.ndim != 1 or s.size < 1 or np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"lr_scales must be a non-empty list of finite numbers > 0, got {lr_scales!r}")
    return s


def _runs_per_call(block, mesh) -> int:
    if block is None:
        return _default_block(mesh)
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be an integer >= 1 (runs per device per call), got {block!r}")
    return int(block)


def _n_calls(n_runs: int, per: int) -> int:
    return -(-n_runs // per)


def sweep(source: Union[Spectrum, Instance], optimizer, *, steps: int, method: str = "eigen",
          key: Optional[jax.Array] = None, seeds: Union[int, Sequence[int]] = 1, lr_scales=(1.0,),
          batches=(1,), devices=None, num: int = 100, grid=None, allow_unstable: bool = False,
          block: Optional[int] = None, dtype=jnp.float64, quiet: bool = False,
          desc: str = "sweep", rng: str = "plrf") -> SweepResult:
    """One-pass SGD runs for every batch x lr scale x seed, sharded over ``devices``.

    ``source``/``optimizer`` (an Optimizer or a schedule = SGD)/``steps``/``method``/``key``/``seeds``/``grid``/``num``/``allow_unstable``/``dtype``/
    ``rng`` as in :func:`plrf.simulate.run` (losses at the grid steps; ``lr_scales`` multiply the schedule).
    ``batches``: batch sizes; one compiled program per batch for ``eigen``/``features`` (the batch sets
    array shapes), a single vmapped program for ``expected`` (the batch is a traced scalar there).
    ``devices``: ``None`` (all, global on multi-host), a count, or a list. ``block``: runs per device per
    compiled call (default 1 on CPU, 32 on accelerators, an untuned guess: there the per-step launch cost
    dominates until ``block * B * d`` is large). Larger blocks are faster on CPU too (64 eigen seeds at
    d = 256: block 16 about 3x faster than block 1; ``benchmarks/sweep.py``, README); block 1 stays the CPU
    default because a run then has its own program, bit-identical to ``plrf.simulate`` with that one seed, and
    small sweeps are not padded. Numbers are bit-identical across device counts for a
    fixed ``block``, not across blocks (rounding level).
    Peak learning rates are checked against both stability edges for every batch first.
    Returns :class:`SweepResult` with ``loss`` of shape ``(n_batch, n_lr, n_seed, n_grid)``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    bs, lrs = _batches(batches), _lr_scales(lr_scales)
    grid = _check_grid(log_grid(steps, num, after=optimizer) if grid is None else grid, steps)
    if dtype not in (jnp.float64, jnp.float32, np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    dtype = jnp.dtype(dtype).type
    check_rng(rng)
    spec, arrays = _method_arrays(source, method)
    arrays = tuple(np.asarray(a) for a in arrays)
    opt = as_optimizer(optimizer)                    # traced: new values reuse the compiled program
    for b in bs:
        check_optimizer(spec, opt, int(b), grid, float(lrs.max()), allow_unstable=allow_unstable)
    mesh = make_mesh(devices)
    block = _runs_per_call(block, mesh)
    per = mesh.size * block
    show = not quiet and jax.process_index() == 0

    if method == "expected":
        ids = np.array([-1])
        bvals = np.repeat(bs.astype(np.float64), lrs.size)
        scales = np.tile(lrs, bs.size)
        kd = np.zeros((scales.size, 2), np.uint32)
        with Progress(_n_calls(scales.size, per), desc=desc, unit="calls", quiet=not show) as bar:
            Pl, dv = _execute(mesh, arrays, kd, scales, bvals, grid, method=method, opt=opt, batch=1,
                              dtype=dtype, impl=None, block=block, bar=bar)
        loss = Pl.reshape(bs.size, lrs.size, 1, -1)
        div = dv.reshape(bs.size, lrs.size, 1)
    else:
        require_key(method, key)
        ids = np.arange(seeds) if np.ndim(seeds) == 0 else np.asarray(seeds)
        keys = seed_keys(key, seeds)
        impl = str(jax.random.key_impl(keys))
        kd_seed = np.asarray(jax.random.key_data(keys))
        kd = np.tile(kd_seed, (lrs.size,) + (1,) * (kd_seed.ndim - 1))   # lr-major, seed-minor
        scales = np.repeat(lrs, ids.size)
        bvals = np.zeros(scales.size)
        losses, divs = [], []
        with Progress(bs.size * _n_calls(scales.size, per), desc=desc, unit="calls", quiet=not show) as bar:
            for b in bs:
                Pl, dv = _execute(mesh, arrays, kd, scales, bvals, grid, method=method, opt=opt,
                                  batch=int(b), dtype=dtype, impl=impl, block=block, bar=bar,
                                  rng=rng)
                losses.append(Pl.reshape(lrs.size, ids.size, -1))
                divs.append(dv.reshape(lrs.size, ids.size))
        loss, div = np.stack(losses), np.stack(divs)
    axes = {"batch": bs, "lr_scale": lrs, "seed": ids.astype(np.int64)}
    return SweepResult(np.asarray(grid), loss, div, axes, method)


# ---------------------------------------------------------------------------------------------------------
# ladder of model sizes

def _default_source(method):
    def source(problem: Problem, *, key):
        if method == "features":
            return sample_instance(problem, key=key)
        return sample_spectrum(problem, key=key)
    return source


def _agree_source(src):
    if jax.process_count() == 1:
        return src
    if isinstance(src, Spectrum):
        return Spectrum(*_agree(tuple(np.asarray(a) for a in src)))
    if isinstance(src, Instance):
        spec, U, th = _agree((tuple(np.asarray(a) for a in src.spectrum), src.U, src.theta_star))
        W = None if src.W is None else _agree(src.W)
        return src._replace(spectrum=Spectrum(*spec), U=U, theta_star=th, W=W)
    return src


def _spectrum_of(src) -> Spectrum:
    return src.spectrum if isinstance(src, Instance) else src


def ladder(problem: Problem, ds: Sequence[int], schedule=None, *, steps: Union[int, Callable[[int], int]],
           key: jax.Array, method: str = "expected", seeds: Union[int, Sequence[int]] = 1, lr_scales=(1.0,),
           batches=(1,), schedule_fn: Optional[Callable] = None, source_fn: Optional[Callable] = None,
           devices=None, num: int = 100, out=None, overwrite: bool = False, quiet: bool = False,
           allow_unstable: bool = False, block: Optional[int] = None, dtype=jnp.float64,
           rng: str = "plrf"):
    """Sweeps at every model size ``d`` in ``ds`` (``problem.with_d(d)``, same ``v/d``): one cell per d.

    The ladder loops over d (one compiled program per size) rather than vmapping: sizes change array
    shapes. Padding every size to ``max d`` with zero-eigenvalue modes would be exact for ``expected``
    (a mode with lam = 0, w = 0 is inert: g = 1, no forcing, e = 0; only the summation rounding moves)
    and for ``eigen`` in distribution (x_k = 0, so c_k never moves; its c*_k must be set to 0, and the
    random draws change with the padded shape), but a vmapped ladder costs ``n_d * max d`` per step
    against ``sum d ~ 2 max d`` for a geometric ladder (ratio 2): ``n_d / 2`` times the work.

    ``schedule``: one schedule for every d, or ``schedule_fn(problem_d, steps_d) -> schedule``.
    ``steps``: an int or ``steps(d) -> int`` (e.g. a compute budget ``f / (d B)``).
    ``source_fn(problem_d, key=...) -> Spectrum | Instance`` (default: one sampled W per d,
    ``sample_spectrum``, or ``sample_instance`` for ``features``). Keys: ``key`` splits into a source key and
    a run key, each folded with d, so a cell depends only on its own d (the ladder can be extended later).
    Cell coordinates are ``{"alpha", "beta", "d"}``; ladders of several (alpha, beta) may share ``out``.

    ``out``: resumable out dir (:class:`plrf.store.CellStore`): finished d's are skipped, a finished cell
    whose settings differ from this call raises (so does another config) unless ``overwrite=True``.
    The device count is not part of the config: a run may resume on other devices, with identical numbers.
    Returns an ``xarray.Dataset`` as :func:`plrf.load` gives it (dims alpha, beta, d, batch, lr_scale, seed, point;
    singleton dims squeezed).
    """
    t0 = time.perf_counter()
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a plrf.Problem, got {type(problem).__name__}")
    ds_arr = np.atleast_1d(np.asarray(ds))
    if ds_arr.ndim != 1 or ds_arr.size < 1 or ds_arr.dtype.kind not in "iu" or np.any(ds_arr < 1) \
            or np.unique(ds_arr).size != ds_arr.size:
        raise ValueError(f"ds must be a non-empty list of distinct integers >= 1, got {ds!r}")
    if (schedule is None) == (schedule_fn is None):
        raise ValueError("pass exactly one of schedule (same for every d) or schedule_fn(problem_d, steps_d)")
    if not callable(steps) and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
        raise ValueError(f"steps must be an integer >= 1 or a callable d -> steps, got {steps!r}")
    check_key(key)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    bs, lrs = _batches(batches), _lr_scales(lr_scales)
    seed_ids = np.arange(seeds) if np.ndim(seeds) == 0 else np.asarray(seeds)
    block = _runs_per_call(block, make_mesh(devices))
    source_fn = source_fn or _default_source(method)
    k_src, k_run = jax.random.split(key)
    config = {"kind": "ladder", "v_over_d": problem.v / problem.d, "method": method, "seeds": seed_ids,
              "lr_scales": lrs, "batches": bs, "num": num, "key": key, "block": block,
              "dtype": jnp.dtype(dtype).name, "allow_unstable": allow_unstable, "rng": rng,
              "steps": steps if not callable(steps) else to_jsonable(steps),
              "schedule": to_jsonable(schedule) if schedule is not None else None,
              "schedule_fn": to_jsonable(schedule_fn) if schedule_fn is not None else None,
              "source_fn": to_jsonable(source_fn)}
    store = CellStore(out, config, overwrite=overwrite) if out is not None else None
    try:
        plan = []
        for d in (int(x) for x in ds_arr):
            p_d = problem.with_d(d)
            steps_d = int(steps(d)) if callable(steps) else int(steps)
            sch = schedule if schedule_fn is None else schedule_fn(p_d, steps_d)
            settings = {"v": p_d.v, "steps": steps_d, "schedule": to_jsonable(sch)}
            plan.append(({"alpha": problem.alpha, "beta": problem.beta, "d": d}, p_d, steps_d, sch, settings))

        # which cells are done (process 0 decides for everyone); 2 = done with other settings
        status = np.zeros(len(plan), np.int32)
        bad = []
        if store is not None and store.writer:
            for i, (coords, _, _, _, settings) in enumerate(plan):
                if store.done(coords):
                    stored = store.get(coords).meta.get("settings")
                    status[i] = 1 if stored == _normalized(settings) else 2
                    if status[i] == 2:
                        bad.append(f"d={coords['d']}: stored {stored} != now {_normalized(settings)}")
        status = _agree(status)
        if np.any(status == 2):
            raise ValueError(f"out dir {out} holds cells computed with other settings:\n  " + "\n  ".join(bad) +
                             "\nUse another out dir, or pass overwrite=True (CLI: --overwrite) to discard them.")

        writer = jax.process_index() == 0
        computed = []
        with Progress(len(plan), desc="ladder", quiet=quiet or not writer) as bar:
            if np.any(status == 1):
                bar.skip(int(np.sum(status == 1)))
            for (coords, p_d, steps_d, sch, settings), st in zip(plan, status):
                if st == 1:
                    continue
                bar.set_postfix(f"d={coords['d']} steps={steps_d}")
                d = coords["d"]
                src = _agree_source(source_fn(p_d, key=jax.random.fold_in(k_src, d)))
                res = sweep(src, sch, steps=steps_d, method=method, key=jax.random.fold_in(k_run, d), seeds=seed_ids,
                            lr_scales=lrs, batches=bs, devices=devices, num=num, allow_unstable=allow_unstable,
                            block=block, dtype=dtype, quiet=True, rng=rng)
                spec = _spectrum_of(src)
                arrays = {"steps": res.steps, "loss": res.loss, "diverged": res.diverged,
                          "P_star": np.float64(spec.P_star), "P0": np.float64(spec.P0),
                          "lam_max": np.float64(spec.lam_max), "v": np.int64(p_d.v)}
                meta = {"settings": settings, "dims": {"loss": list(SWEEP_DIMS), "diverged": list(SWEEP_DIMS)},
                        "axes": res.axes}
                if store is not None:
                    store.put(coords, arrays, meta)
                computed.append(Cell(coords, arrays, _normalized(meta)))
                bar.update()
        wall = time.perf_counter() - t0
        if store is not None:
            store.finish(wall_time=wall)
            if store.writer:
                return load(out)
        if not computed:
            raise RuntimeError("no cells computed on this process and no readable out dir")
    finally:
        if store is not None:
            store.close()
    return cells_dataset(computed, metadata(config, wall_time=wall)).squeeze()


# ---------------------------------------------------------------------------------------------------------
# multi-host

ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = "PLRF_COORDINATOR", "PLRF_NUM_PROCESSES", "PLRF_PROCESS_ID"


def init_distributed(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
                     process_id: Optional[int] = None, *, local_device_ids=None, auto: bool = False) -> bool:
    """Join a multi-process (multi-host) JAX run; call once, before any other JAX work, on every host.

    Launch the same command on every host with ``coordinator_address`` ("host:port" of process 0),
    ``num_processes`` and this host's ``process_id`` given as arguments or through the environment
    variables ``PLRF_COORDINATOR``, ``PLRF_NUM_PROCESSES``, ``PLRF_PROCESS_ID``. ``auto=True`` with no
    address lets JAX detect the cluster (SLURM, Open MPI, Cloud TPU). Returns False (and does nothing)
    when no address is given and ``auto`` is off: a plain single-process run. On CPU, cross-process
    collectives use gloo.
    """
    env = os.environ
    addr = coordinator_address or env.get(ENV_COORDINATOR) or None
    nproc = num_processes if num_processes is not None else env.get(ENV_NUM_PROCESSES)
    pid = process_id if process_id is not None else env.get(ENV_PROCESS_ID)
    if addr is None and not auto:
        if nproc is not None or pid is not None:
            raise ValueError(f"num_processes/process_id given without a coordinator address "
                             f"(pass coordinator_address='host:port' or set {ENV_COORDINATOR})")
        return False
    try:
        nproc = None if nproc is None else int(nproc)
        pid = None if pid is None else int(pid)
    except ValueError:
        raise ValueError(f"num_processes and process_id must be integers, got {nproc!r}, {pid!r}") from None
    if addr is not None:
        if nproc is None or pid is None:
            raise ValueError("with a coordinator address, num_processes and process_id are required "
                             f"(arguments or {ENV_NUM_PROCESSES}/{ENV_PROCESS_ID})")
        if nproc < 1 or not 0 <= pid < nproc:
            raise ValueError(f"need num_processes >= 1 and 0 <= process_id < num_processes, got {nproc}, {pid}")
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=addr, num_processes=nproc, process_id=pid,
                               local_device_ids=local_device_ids)
    return True


def add_distributed_flags(parser) -> None:
    """``--coordinator HOST:PORT --num-processes N --process-id I`` for an argparse CLI
    (then ``init_distributed(args.coordinator, args.num_processes, args.process_id)``)."""
    g = parser.add_argument_group("multi-host (same command on every host; or env PLRF_COORDINATOR, ...)")
    g.add_argument("--coordinator", default=None, help="host:port of process 0")
    g.add_argument("--num-processes", type=int, default=None)
    g.add_argument("--process-id", type=int, default=None)
