"""plrf.sweep: sharded sweeps bit-identical to one device, resumable ladders, references for the numbers."""
import os
import runpy
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import plrf
from plrf import schedules
from plrf.simulate import run
from plrf.store import load, read_json
from plrf.sweep import init_distributed, ladder, sweep

jax.config.update("jax_enable_x64", True)
REPO = Path(__file__).resolve().parents[1]


# A subprocess that has not finished after this long dumps every thread's Python stack to its stderr (and
# goes on), so a hang on a loaded CI machine is diagnosable from the test's failure message.
STACK_DUMP_AFTER = 240
_PRELUDE = f"import faulthandler; faulthandler.dump_traceback_later({STACK_DUMP_AFTER}, repeat=True)\n"


def _python(script: str, *args, devices: int = 1, env=None, **kw):
    """Run ``script`` in a fresh interpreter with ``devices`` forced host devices (set before jax loads)."""
    # (tests/jax_cache_site: the suite's persistent compilation cache, see conftest.py)
    # (the session's XLA flags, see conftest.py, kept: appended to)
    flags = " ".join([os.environ.get("XLA_FLAGS", ""), f"--xla_force_host_platform_device_count={devices}"]).strip()
    e = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests" / "jax_cache_site")]),
         "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", _PRELUDE + textwrap.dedent(script), *map(str, args)], env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _check(proc, timeout=900):
    """Wait for ``proc``; on a timeout kill it and fail with its output (stack dumps included)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"subprocess still running after {timeout} s:\n{out[-2000:]}\n{err[-6000:]}")
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{out}\n{err[-3000:]}"
    return out


@pytest.fixture(scope="module")
def small():
    p = plrf.Problem(1.0, 0.7, 64, 16)
    inst = plrf.sample_instance(p, key=jax.random.key(0))
    return p, inst


# ---------------------------------------------------------------------------------------------------------
# (a) sharding: 4 forced CPU devices == 1 device, bit for bit

SHARDED = """
    import sys, jax, numpy as np, plrf
    from plrf.sweep import sweep
    assert jax.device_count() == 4, jax.devices()
    p = plrf.Problem(1.0, 0.7, 64, 16)
    inst = plrf.sample_instance(p, key=jax.random.key(0))
    sch = plrf.schedules.cosine(0.5 * plrf.max_stable_lr(inst.spectrum, 2), 60)
    out = {}
    for nd in (1, 4):
        # 5 seeds x 2 lr scales = 10 runs: padded to 12 on 4 devices; expected: 2 batches x 3 lr = 6 runs -> 8
        r = sweep(inst.spectrum, sch, steps=60, method="eigen", key=jax.random.key(1), seeds=[0, 3, 4, 7, 9],
                  lr_scales=(1.0, 0.5), batches=(2,), devices=nd, num=12, quiet=True)
        e = sweep(inst.spectrum, sch, steps=60, method="expected", lr_scales=(1.0, 0.5, 0.25), batches=(1, 3),
                  devices=nd, num=12, quiet=True)
        out.update({f"eigen_{nd}": r.loss, f"ediv_{nd}": r.diverged, f"expected_{nd}": e.loss})
    np.savez(sys.argv[1], **out)
"""


@pytest.mark.slow   # two subprocesses with 1 and 2 host devices: ~50 s of compiles
def test_sharded_sweep_bit_identical_to_one_device(tmp_path, small):
    f = tmp_path / "sharded.npz"
    _check(_python(SHARDED, f, devices=4))
    z = np.load(f)
    n = plrf.log_grid(60, 12).size
    assert z["eigen_1"].shape == (1, 2, 5, n) and z["expected_1"].shape == (2, 3, 1, n)
    for name in ("eigen", "ediv", "expected"):
        assert np.array_equal(z[f"{name}_1"], z[f"{name}_4"]), name      # exact: same seeds, same numbers
    # and the 1-device numbers are the engine's: plrf.simulate.run with the same key (rounding-level agreement;
    # run vmaps a different width, see plrf.sweep's docstring)
    p, inst = small
    sch = schedules.cosine(0.5 * plrf.max_stable_lr(inst.spectrum, 2), 60)
    _, P, _ = run(inst.spectrum, sch, steps=60, batch=2, method="eigen", key=jax.random.key(1), seeds=[0, 3, 4, 7, 9],
                  lr_scales=(1.0, 0.5), num=12)
    np.testing.assert_allclose(z["eigen_1"][0], P, rtol=1e-12)   # tolerance: float64 rounding, many steps


SHARDED_MORE = """
    import sys, jax, numpy as np, plrf
    from plrf.sweep import sweep
    p = plrf.Problem(1.0, 0.7, 64, 16)
    inst = plrf.sample_instance(p, key=jax.random.key(0))
    sch = plrf.schedules.wsd(0.5 * plrf.max_stable_lr(inst.spectrum, 3), 60)
    out = {}
    for nd in (1, 3, 4):
        for m in ("features", "eigen"):
            r = sweep(inst, sch, steps=60, method=m, key=jax.random.key(5), seeds=7, lr_scales=(1.0, 0.7),
                      batches=(3,), devices=nd, block=3, num=12, quiet=True)
            out[f"{m}_{nd}"] = r.loss
        e = sweep(inst.spectrum, plrf.schedules.constant(0.4 * plrf.max_stable_lr(inst.spectrum, 1)), steps=300,
                  method="expected", lr_scales=(1.0, 0.9, 0.8), batches=(1, 2, 5), devices=nd, block=2, num=12,
                  quiet=True)   # constant lr: the engine's blocked recursion
        out[f"expected_{nd}"] = e.loss
    np.savez(sys.argv[1], **out)
"""


@pytest.mark.slow
def test_sharded_features_and_larger_blocks_bit_identical(tmp_path):
    f = tmp_path / "more.npz"
    _check(_python(SHARDED_MORE, f, devices=4))
    z = np.load(f)
    for m in ("features", "eigen", "expected"):
        for nd in (3, 4):      # 14 runs in blocks of 3: padded to 18 on 3 devices (2 calls), 24 on 4 (2 calls)
            assert np.array_equal(z[f"{m}_1"], z[f"{m}_{nd}"]), (m, nd)


# ---------------------------------------------------------------------------------------------------------
# numbers against independent references

def _expected_numpy(spec, lrs, B, steps):
    """The exact expected-loss recursion written out in plain numpy (independent of the jax engine)."""
    lam, n, w, Ps = spec.lam, spec.n, spec.w, float(spec.P_star)
    e, P, out = w.copy(), Ps + w.sum(), [Ps + w.sum()]
    for r in range(steps):
        eta = lrs[r]
        e = (1 - 2 * eta * lam + eta ** 2 * lam ** 2 * (B + 1) / B) * e + n * eta ** 2 / B * lam ** 2 * P
        P = Ps + e.sum()
        out.append(P)
    return np.array(out)


def test_expected_sweep_matches_numpy_recursion(small):
    _, inst = small
    peak = 0.5 * plrf.max_stable_lr(inst.spectrum, 1)
    sch = schedules.cosine(peak, 200)
    res = sweep(inst.spectrum, sch, steps=200, method="expected", lr_scales=(1.0, 0.5), batches=(1, 4), num=30,
                quiet=True)
    lr = peak * (1 + np.cos(np.pi * np.arange(200) / 200)) / 2
    for i, B in enumerate((1, 4)):
        for j, s in enumerate((1.0, 0.5)):
            ref = _expected_numpy(inst.spectrum, s * lr, B, 200)[res.steps]
            np.testing.assert_allclose(res.loss[i, j, 0], ref, rtol=1e-11)   # float64, 200 steps of recursion
    assert np.all(res.diverged == -1) and list(res.axes["seed"]) == [-1]
    const = sweep(inst.spectrum, schedules.constant(peak), steps=200, method="expected", batches=(3,), num=30,
                  quiet=True)   # constant lr: the engine's blocked recursion
    ref = _expected_numpy(inst.spectrum, np.full(200, peak), 3, 200)[const.steps]
    np.testing.assert_allclose(const.loss[0, 0, 0], ref, rtol=1e-11)


def test_eigen_seed_mean_matches_expected_within_error_bars(small):
    _, inst = small
    sch = schedules.constant(0.5 * plrf.max_stable_lr(inst.spectrum, 2))
    mc = sweep(inst.spectrum, sch, steps=150, method="eigen", key=jax.random.key(4), seeds=200, batches=(2,),
               num=8, quiet=True)
    ex = sweep(inst.spectrum, sch, steps=150, method="expected", batches=(2,), num=8, quiet=True)
    L = mc.loss[0, 0]
    mean, se = L.mean(0), L.std(0, ddof=1) / np.sqrt(L.shape[0])
    z = np.abs(mean[1:] - ex.loss[0, 0, 0, 1:]) / se[1:]
    assert np.all(z < 5), z                          # Monte Carlo: 200 seeds, 5 standard errors
    np.testing.assert_allclose(L[:, 0], inst.spectrum.P0, rtol=1e-13)   # every run starts at P(0) (rounding)


def test_zero_eigenvalue_padding_is_inert_for_expected(small):
    """The ladder docstring's claim: padding with lam = 0, w = 0 modes leaves the expected loss unchanged."""
    _, inst = small
    sp = inst.spectrum
    pad = plrf.make_spectrum(np.r_[np.zeros(16), sp.lam], np.r_[np.zeros(16), sp.w], sp.P_star)
    sch = schedules.constant(0.5 * plrf.max_stable_lr(sp, 1))
    a = sweep(sp, sch, steps=100, method="expected", lr_scales=(1.0, 0.5), num=10, quiet=True)
    b = sweep(pad, sch, steps=100, method="expected", lr_scales=(1.0, 0.5), num=10, quiet=True)
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-14)   # only the order of a 16 vs 32-term sum differs


def test_seed_curve_independent_of_the_rest_of_the_sweep(small):
    _, inst = small
    sch = schedules.constant(0.4 * plrf.max_stable_lr(inst.spectrum, 1))
    big = sweep(inst.spectrum, sch, steps=80, method="eigen", key=jax.random.key(9), seeds=[0, 1, 2, 3],
                lr_scales=(1.0, 0.5), num=10, quiet=True)
    one = sweep(inst.spectrum, sch, steps=80, method="eigen", key=jax.random.key(9), seeds=[2], lr_scales=(0.5,),
                num=10, quiet=True)
    assert np.array_equal(one.loss[0, 0, 0], big.loss[0, 1, 2])      # block=1: the same program per run
    _, P, _ = run(inst.spectrum, sch, steps=80, method="eigen", key=jax.random.key(9), seeds=[2], lr_scales=(0.5,),
                  num=10)
    assert np.array_equal(P[0, 0], one.loss[0, 0, 0])                 # ... and the program of plrf.simulate


@pytest.mark.slow   # two features programs (~15 s of compiles)
def test_sweep_features_equals_run(small):
    p, inst = small
    sch = schedules.constant(0.4 * plrf.max_stable_lr(inst.spectrum, 1))
    res = sweep(inst, sch, steps=40, method="features", key=jax.random.key(2), seeds=2, num=6, quiet=True)
    _, P, _ = run(inst, sch, steps=40, method="features", key=jax.random.key(2), seeds=2, num=6)
    np.testing.assert_allclose(res.loss[0], P, rtol=1e-12)   # same simulator, different vmap width


def test_sweep_labels(small):
    p, inst = small
    sch = schedules.constant(0.4 * plrf.max_stable_lr(inst.spectrum, 1))
    res = sweep(inst.spectrum, sch, steps=80, method="eigen", key=jax.random.key(9), seeds=[0, 1, 2, 3],
                lr_scales=(1.0, 0.5), num=10, quiet=True)     # the program of the test above
    lab = res.results().sel(batch=1, lr_scale=0.5)
    assert lab.loss.shape == (4, res.steps.size) and np.array_equal(lab.sel(seed=2).loss, res.loss[0, 1, 2])


def test_sweep_validation(small):
    _, inst = small
    sch = schedules.constant(0.4 * plrf.max_stable_lr(inst.spectrum, 1))
    kw = dict(steps=10, method="eigen", key=jax.random.key(0), quiet=True)
    with pytest.raises(ValueError, match="lr_scales"):
        sweep(inst.spectrum, sch, lr_scales=(1.0, -1.0), **kw)
    with pytest.raises(ValueError, match="batches"):
        sweep(inst.spectrum, sch, batches=(0,), **kw)
    with pytest.raises(ValueError, match="block"):
        sweep(inst.spectrum, sch, block=0, **kw)
    with pytest.raises(ValueError, match="devices"):
        sweep(inst.spectrum, sch, devices=jax.device_count() + 1, **kw)
    with pytest.raises(ValueError, match="unstable learning rate"):
        sweep(inst.spectrum, sch, lr_scales=(1.0, 3.0), **kw)
    with pytest.raises(ValueError, match="stochastic"):
        sweep(inst.spectrum, sch, steps=10, method="eigen", quiet=True)
    with pytest.raises(ValueError, match="coordinator"):
        init_distributed(num_processes=2, process_id=0)
    assert init_distributed() is False          # no address: plain single-process run


# ---------------------------------------------------------------------------------------------------------
# ladder

def _lr(pd, T):
    return schedules.cosine(pd.default_lr(0.5), T)


def test_ladder_cells_are_direct_sweeps_and_settings_are_checked(tmp_path):
    p = plrf.Problem(1.5, 0.6, 48, 12)
    key = jax.random.key(11)
    sch = _lr(p, 40)
    kw = dict(key=key, method="eigen", lr_scales=(1.0, 0.5), num=8, out=tmp_path, quiet=True)
    res = ladder(p, [8, 12], schedule_fn=lambda pd, T: sch, steps=lambda d: 40, seeds=2, **kw)
    assert res.loss.dims == ("d", "lr_scale", "seed", "point")          # singleton alpha, beta, batch squeezed
    assert (float(res.alpha), float(res.beta), int(res.batch)) == (1.5, 0.6, 1)
    k_src, k_run = jax.random.split(key)
    for d in (8, 12):   # reference: the documented key derivation, one sweep per d
        pd = p.with_d(d)
        spec = plrf.sample_spectrum(pd, key=jax.random.fold_in(k_src, d))
        ref = sweep(spec, sch, steps=40, method="eigen", key=jax.random.fold_in(k_run, d), seeds=2,
                    lr_scales=(1.0, 0.5), num=8, quiet=True)
        cell = res.sel(d=d)
        assert np.array_equal(cell.loss, ref.loss[0]) and np.array_equal(cell.steps, ref.steps)
        assert cell.P0 == spec.P0 and cell.v == 4 * d
    meta = read_json(tmp_path / "results.json")
    assert meta["status"] == "complete" and meta["config"]["method"] == "eigen" and meta["cells"] == 2
    with pytest.raises(ValueError, match="other settings"):      # same config, other steps for d = 12
        ladder(p, [8, 12], schedule_fn=lambda pd, T: sch, steps=lambda d: 40 if d == 8 else 50, seeds=2, **kw)
    with pytest.raises(ValueError, match="different configuration"):
        ladder(p, [8, 12], schedule_fn=lambda pd, T: sch, steps=lambda d: 40, seeds=3, **kw)
    with pytest.raises(ValueError, match="exactly one"):
        ladder(p, [8], steps=10, key=key)


KILLABLE = """
    import os, sys, time, jax, numpy as np, plrf
    from plrf.sweep import ladder
    out, log = sys.argv[1], sys.argv[2]
    slow = float(os.environ.get("SLOW", "0"))

    def source(pd, *, key):          # called once per computed cell: the computation log
        with open(log, "a") as f:
            f.write(f"{pd.d}\\n"); f.flush(); os.fsync(f.fileno())
        time.sleep(slow)
        # a d-dependent binned spectrum of fixed length, so one compiled program serves every cell
        k = np.arange(1.0, 9.0)
        lam = k ** -2.0 * (1.0 + jax.random.uniform(key, (8,)).__array__() / pd.d)
        return plrf.make_spectrum(lam, k ** -1.4 * lam, 0.01 / pd.d, n=np.full(8, pd.d / 8))

    ladder(plrf.Problem(1.0, 0.7, 64, 16), [6, 8, 10, 12, 14, 16], plrf.schedules.cosine(0.05, 400),
           steps=400, key=jax.random.key(7), method="expected", lr_scales=(1.0, 0.5), batches=(1, 2),
           source_fn=source, num=25, out=out, quiet=True)
"""
DS = [6, 8, 10, 12, 14, 16]


def _log(path):
    return [int(x) for x in Path(path).read_text().split()] if Path(path).exists() else []


def test_killed_ladder_resumes_without_recomputing(tmp_path):
    out, ref = tmp_path / "out", tmp_path / "ref"
    cells = out / "cells"
    proc = _python(KILLABLE, out, tmp_path / "log1", env={"SLOW": "0.3"})
    t0 = time.monotonic()
    while len(list(cells.glob("*.npz"))) < 2:              # poll for finished cells, then kill
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < 240, "no cells written"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    before = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.npz")}
    done_before = set(np.atleast_1d(load(out).d.values).tolist())
    assert 2 <= len(before) < len(DS), before              # really interrupted mid-run
    for f in cells.glob("*.npz"):                          # every file on disk is complete
        np.load(f)["loss"]

    _check(_python(KILLABLE, out, tmp_path / "log2"))      # resume
    script = tmp_path / "killable.py"                      # uninterrupted reference, in this process
    script.write_text(textwrap.dedent(KILLABLE))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [str(script), str(ref), str(tmp_path / "log3")])
        runpy.run_path(str(script), run_name="__main__")
    second = _log(tmp_path / "log2")
    assert sorted(second) == sorted(set(DS) - done_before)            # no finished cell recomputed, once each
    assert sorted(_log(tmp_path / "log3")) == DS
    assert {p.name: p.stat().st_mtime_ns for p in cells.glob("*.npz") if p.name in before} == before
    assert len(list(cells.glob("*.npz"))) == len(DS) and not list(cells.glob(".tmp-*"))
    a, b = load(out), load(ref)
    np.testing.assert_array_equal(a.d, DS)
    for name in ("loss", "steps", "diverged", "P_star", "P0"):
        assert np.array_equal(a[name], b[name], equal_nan=True), name   # identical to the uninterrupted run
    meta = read_json(out / "results.json")
    assert meta["status"] == "complete" and meta["sessions"] == 2


# ---------------------------------------------------------------------------------------------------------
# multi-process (two processes on this host, 2 CPU devices each, gloo collectives)

MULTI = """
    import sys, jax, numpy as np
    from plrf.sweep import init_distributed, sweep, ladder
    pid, nproc, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if nproc > 1:
        assert init_distributed(f"localhost:{port}", nproc, pid)
    import plrf
    assert jax.device_count() == 2 * nproc
    p = plrf.Problem(1.0, 0.7, 64, 16)
    spec = plrf.sample_spectrum(p, key=jax.random.key(0))
    sch = plrf.schedules.constant(0.4 * plrf.max_stable_lr(spec, 1))
    r = sweep(spec, sch, steps=50, method="eigen", key=jax.random.key(1), seeds=5, lr_scales=(1.0, 0.5), num=8,
              quiet=True)
    np.save(f"{out}/sweep_{nproc}_{pid}.npy", r.loss)
    ladder(p, [8, 16], sch, steps=40, key=jax.random.key(2), method="expected", num=8, out=f"{out}/lad{nproc}",
           quiet=True)
"""


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = [_python(MULTI, i, 2, port, tmp_path, devices=2) for i in range(2)]
    for pr in procs:
        _check(pr, timeout=600)
    _check(_python(MULTI, 0, 1, 0, tmp_path, devices=2))
    one = np.load(tmp_path / "sweep_1_0.npy")
    for i in range(2):
        assert np.array_equal(np.load(tmp_path / f"sweep_2_{i}.npy"), one)   # gathered on every process
    a, b = load(tmp_path / "lad1"), load(tmp_path / "lad2")
    assert np.array_equal(a.loss, b.loss) and b.attrs["devices"]["process_count"] == 2
