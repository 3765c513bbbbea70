"""plrf.store: atomic writes, numpy-aware JSON, cells keyed by coordinates, the labelled loader, progress."""
import hashlib
import io
import json
import os
from pathlib import Path
import subprocess
import sys

import jax
import numpy as np
import pytest

from plrf import progress, schedules, store
from plrf.store import CellStore, load, read_json, save_npz, write_json

jax.config.update("jax_enable_x64", True)


def _tmp_files(d):
    return [p for p in os.listdir(d) if p.startswith(store.TMP_PREFIX)]


# ---------------------------------------------------------------------------------------------------------
# JSON and atomic files

def test_json_numpy_and_nonfinite(tmp_path):
    obj = {"a": np.arange(3), "x": np.float64(0.25), "i": np.int32(7), "b": np.bool_(True),
           "bad": [np.inf, -np.inf, np.nan], "m": np.array([[1.5, np.nan]]), "t": (1, 2),
           "key": jax.random.key(5), "schedule": schedules.constant(0.5)}
    path = tmp_path / "r.json"
    write_json(path, obj)
    got = read_json(path, nonfinite=False)
    # reference: the plain-JSON form spelled out by hand (non-finite floats become strings)
    assert got == {"a": [0, 1, 2], "x": 0.25, "i": 7, "b": True, "bad": ["inf", "-inf", "nan"],
                   "m": [[1.5, "nan"]], "t": [1, 2], "key": [0, 5],
                   "schedule": {"name": "constant", "peak": 0.5, "total": None}}
    assert [float(s) for s in got["bad"][:2]] == [np.inf, -np.inf] and np.isnan(float(got["bad"][2]))
    back = read_json(path)                               # default: real floats again
    assert back["bad"][:2] == [np.inf, -np.inf] and np.isnan(back["bad"][2]) and np.isnan(back["m"][0][1])
    json.loads(path.read_text())  # strict JSON: no NaN/Infinity tokens
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()


def test_write_json_interrupted_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_json(path, {"v": 1})
    with pytest.raises(TypeError):                 # unencodable object: nothing may change
        write_json(path, {"v": [1, 2, object()]})
    calls = []

    def boom(fd):                                   # crash after the new bytes were written, before the rename
        calls.append(os.fstat(fd).st_size)
        raise OSError("disk gone")
    monkeypatch.setattr(store.os, "fsync", boom)
    with pytest.raises(OSError):
        write_json(path, {"v": 2, "pad": "x" * 1000})
    monkeypatch.undo()
    assert calls and calls[0] > 1000                # the temp file really held the new content
    assert read_json(path) == {"v": 1}
    assert _tmp_files(tmp_path) == []


def test_save_npz_interrupted_midway_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.npz"
    save_npz(path, x=np.arange(5.0))
    real = np.lib.format.write_array
    seen = []

    def write_then_fail(fp, array, *a, **k):
        if seen:                                     # second array: the temp file already holds the first
            tmp = _tmp_files(tmp_path)
            seen.append(os.path.getsize(tmp_path / tmp[0]))
            raise RuntimeError("killed mid-write")
        seen.append(0)
        return real(fp, array, *a, **k)
    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(RuntimeError):
        save_npz(path, x=np.ones(10_000), y=np.zeros(3))
    monkeypatch.undo()
    assert seen[1] > 80_000                          # 10k float64 were on disk in the temp file
    np.testing.assert_array_equal(store.load_npz(path)["x"], np.arange(5.0))
    assert _tmp_files(tmp_path) == []


def test_save_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="dtype object"):
        save_npz(tmp_path / "a.npz", x=np.array([{}], dtype=object))


# ---------------------------------------------------------------------------------------------------------
# cells: identity, integrity, lock

def test_cell_key_is_sha256_of_config_and_coords():
    text = b'{"config":{"lr":0.1,"seeds":[0,1]},"coords":{"alpha":1,"beta":0.7,"d":1024}}'   # by hand
    ref = hashlib.sha256(text).hexdigest()[:32]
    cfg = {"seeds": np.arange(2), "lr": np.float64(0.1)}
    assert store.cell_key({"d": 1024, "beta": 0.7, "alpha": 1.0}, cfg) == ref
    assert store.cell_key({"alpha": 1, "d": np.int64(1024), "beta": np.float64(0.7)}, {"lr": 0.1, "seeds": [0, 1]}) == ref
    assert store.cell_key({"alpha": 1.0, "beta": 0.7, "d": 1023}, cfg) != ref
    assert store.cell_key({"alpha": 1.0, "beta": 0.7, "d": 1024}, {**cfg, "lr": 0.2}) != ref   # config is identity
    with pytest.raises(ValueError, match="finite"):
        store.coords_key({"a": np.nan})
    with pytest.raises(ValueError, match="non-empty"):
        store.coords_key({})


def test_cellstore_put_get_resume_and_config_mismatch(tmp_path):
    cfg = {"method": "eigen", "seeds": np.arange(3), "lr": 0.1}
    st = CellStore(tmp_path, cfg)
    a = {"loss": np.linspace(1, 0, 7), "n": np.int64(3)}
    st.put({"d": 16, "alpha": 1.0}, a, meta={"settings": {"steps": 10}})
    assert st.done({"alpha": 1, "d": 16}) and not st.done({"alpha": 1, "d": 32})
    st.close()
    with CellStore(tmp_path, {"lr": 0.1, "method": "eigen", "seeds": [0, 1, 2]}) as again:   # same config
        c = again.get({"d": 16, "alpha": 1.0})
        assert c.coords == {"d": 16, "alpha": 1.0} and c.meta == {"settings": {"steps": 10}}
        np.testing.assert_array_equal(c.arrays["loss"], a["loss"])
        assert int(c.arrays["n"]) == 3 and len(again) == 1 and len(again.cells()) == 1
    meta = read_json(tmp_path / "results.json")
    assert meta["sessions"] == 2 and meta["status"] == "running"
    with pytest.raises(store.OutDirError, match=r"different configuration:\n  lr \(--lr\): stored 0.1, now 0.2"):
        CellStore(tmp_path, {**cfg, "lr": 0.2})
    assert len(CellStore.reader(tmp_path)) == 1                # the refused open changed nothing
    with CellStore(tmp_path, {**cfg, "lr": 0.2}, overwrite=True) as fresh:
        assert len(fresh) == 0 and read_json(tmp_path / "results.json")["config"]["lr"] == 0.2
        with pytest.raises(KeyError):
            fresh.get({"d": 16, "alpha": 1.0})


def test_non_writer_writes_nothing(tmp_path):
    st = CellStore(tmp_path / "o", {"a": 1}, writer=False)
    assert st.put({"d": 1}, {"x": np.ones(2)}) is None
    assert not (tmp_path / "o").exists()


def _store_with_cells(root, cfg, ds=(16, 32, 64)):
    st = CellStore(root, cfg)
    for d in ds:
        st.put({"alpha": 1.0, "d": d}, {"loss": np.full(4, 1.0 / d), "steps": np.arange(4)}, meta={"lr": 0.1})
    st.finish()
    return [st.path({"alpha": 1.0, "d": d}) for d in ds]


def test_damaged_and_copied_cells_are_named_set_aside_and_recomputed(tmp_path):
    cfg = {"flops_max": 1e10}
    p16, p32, p64 = _store_with_cells(tmp_path, cfg)
    raw = p16.read_bytes()
    p16.write_bytes(raw[: len(raw) // 2])                      # truncated (BadZipFile)
    p32.write_bytes(p64.read_bytes())                          # a valid cell copied over another's name
    st = CellStore(tmp_path, cfg)
    with pytest.warns(store.CellWarning, match=rf"cell {p16}: unreadable \(BadZipFile"):
        assert not st.done({"alpha": 1.0, "d": 16})
    with pytest.warns(store.CellWarning, match=r"holds the cell \{'alpha': 1(\.0)?, 'd': 64\}, not .*'d': 32"):
        assert not st.done({"alpha": 1.0, "d": 32})
    assert st.get({"alpha": 1.0, "d": 64}).arrays["loss"][0] == 1 / 64          # the intact cell is used
    q = sorted(p.name for p in (tmp_path / "cells" / "quarantine").iterdir())
    assert q == sorted([p16.name, p32.name]) and not p16.exists() and not p32.exists()
    st.put({"alpha": 1.0, "d": 16}, {"loss": np.full(4, 1 / 16), "steps": np.arange(4)})   # recomputed
    assert st.get({"alpha": 1.0, "d": 16}).arrays["loss"][0] == 1 / 16
    # a flipped byte inside an array (zip still readable, numbers wrong): caught by the checksum
    z = dict(np.load(p64))
    z["loss"] = z["loss"] * 1.0000001
    np.savez(p64, **z)
    st2 = CellStore.reader(tmp_path, cfg)
    with pytest.warns(store.CellWarning, match="checksum mismatch"):
        assert not st2.done({"alpha": 1.0, "d": 64})
    assert p64.exists()                                        # a reader names it but moves nothing
    st.close()


def test_cells_of_another_configuration_are_never_reused(tmp_path):
    _store_with_cells(tmp_path, {"flops_max": 1e10})
    (tmp_path / "results.json").unlink()                       # results.json deleted, re-run with other settings
    with pytest.raises(store.OutDirError, match=r"cells of a different configuration.*\n  flops_max \(--flops-max\): "
                                                r"stored 10000000000.0, now 1000000000000.0\n.*--overwrite"):
        CellStore(tmp_path, {"flops_max": 1e12})
    with CellStore(tmp_path, {"flops_max": 1e10}) as st:       # the same config resumes them
        assert st.done({"alpha": 1.0, "d": 32})
    # even a cell file planted under this config's name is refused: its stored config differs
    with CellStore(tmp_path / "b", {"flops_max": 1e12}) as st:
        other = CellStore.reader(tmp_path, {"flops_max": 1e10}).path({"alpha": 1.0, "d": 32})
        st.path({"alpha": 1.0, "d": 32}).write_bytes(other.read_bytes())
        with pytest.warns(store.CellWarning, match=r"another configuration \(flops_max"):
            assert not st.done({"alpha": 1.0, "d": 32})


def test_lock_refuses_a_second_writer_naming_dir_and_pid(tmp_path):
    with store.prepare_out(tmp_path, {"a": 1}):
        with pytest.raises(store.OutDirError, match=rf"--out {tmp_path} is in use by another plrf run "
                                                    rf"\(pid {os.getpid()} on "):
            store.prepare_out(tmp_path, {"a": 1})
    store.prepare_out(tmp_path, {"a": 1}).close()              # released: free again
    # another process holding the lock
    code = ("import importlib.util, sys, time; s = importlib.util.spec_from_file_location('st', sys.argv[1]); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "l = m.DirLock(sys.argv[2]).acquire(); print('locked', flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code, store.__file__, str(tmp_path)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(store.OutDirError, match=rf"in use by another plrf run \(pid {child.pid} on "):
            store.prepare_out(tmp_path, {"a": 1})
    finally:
        child.kill()
        child.wait()
    store.prepare_out(tmp_path, {"a": 1}).close()              # the lock died with its process


def test_prepare_out_refuses_unusable_locations(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(store.OutDirError, match=rf"--out {f} exists and is not a directory"):
        store.prepare_out(f, {})
    with pytest.raises(store.OutDirError, match=rf"--out {f}/sub cannot be created or written"):
        store.prepare_out(f / "sub", {})
    bad = tmp_path / "r"
    bad.mkdir()
    (bad / "results.json").write_text('{"config": {"a": 1}, "sta')
    with pytest.raises(store.OutDirError, match=r"results.json is not valid JSON .*--overwrite"):
        store.prepare_out(bad, {"a": 1})
    store.prepare_out(bad, {"a": 1}, overwrite=True).close()
    assert not (bad / "results.json").exists()


# ---------------------------------------------------------------------------------------------------------
# labelled loader (xarray)

def _ragged_cells(tmp_path):
    """Cells over alpha x d with an inner seed axis and a step grid whose length depends on d."""
    st = CellStore(tmp_path, {"kind": "test"})
    put = {}
    rng = np.random.default_rng(0)
    for alpha in (0.6, 1.0):
        for d in (16, 32, 64):
            if (alpha, d) == (0.6, 64):
                continue                                       # an absent cell
            n = d // 4 + 1
            arrays = {"loss": rng.random((3, n)), "steps": np.arange(n, dtype=np.int64) * d,
                      "P_star": np.float64(alpha / d)}
            st.put({"alpha": alpha, "d": d}, arrays,
                   meta={"dims": {"loss": ["seed"]}, "axes": {"seed": [4, 5, 6]}})
            put[(alpha, d)] = arrays
    st.close()
    return put


def test_load_cells_as_xarray(tmp_path):
    put = _ragged_cells(tmp_path)
    ds = load(tmp_path)
    assert ds.loss.dims == ("alpha", "d", "seed", "point") and ds.loss.shape == (2, 3, 3, 17)
    np.testing.assert_array_equal(ds.d, [16, 32, 64])
    np.testing.assert_array_equal(ds.seed, [4, 5, 6])
    one = ds.sel(alpha=1.0, d=32).dropna("point")              # one cell: padding dropped, exact arrays
    np.testing.assert_array_equal(one.loss, put[(1.0, 32)]["loss"])
    np.testing.assert_array_equal(one.steps, put[(1.0, 32)]["steps"])
    assert float(one.P_star) == 1.0 / 32
    near = ds.sel(alpha=0.97, d=30, method="nearest")          # nearest-value selection
    assert float(near.alpha) == 1.0 and int(near.d) == 32
    assert np.isnan(ds.loss.sel(alpha=0.6, d=64)).all() and np.isnan(ds.steps.sel(alpha=0.6, d=64)).all()
    assert np.isnan(ds.loss.sel(alpha=1.0, d=16)[:, 5:]).all()  # ragged padding is a real NaN
    np.testing.assert_array_equal(ds.cell_done, [[True, True, False], [True, True, True]])
    m = ds.sel(alpha=1.0, d=64).mean("seed")
    np.testing.assert_allclose(m.loss, put[(1.0, 64)]["loss"].mean(axis=0), rtol=1e-15)
    df = ds.loss.sel(alpha=1.0, d=16).to_dataframe().dropna()
    assert len(df) == 3 * 5 and df.loc[(5, 2), "loss"] == put[(1.0, 16)]["loss"][1, 2]
    assert ds.attrs["kind"] == "test" and ds.attrs["config"] == {"kind": "test"} and ds.attrs["status"] == "running"
    single = load(tmp_path, squeeze=False).sel(alpha=[1.0], d=[64], seed=[5])
    assert single.loss.ndim == 4                               # unsqueezed ...
    (tmp_path / "x").mkdir()
    with CellStore(tmp_path / "x", {"k": 1}) as st:
        st.put({"d": 8}, {"x": np.arange(3.0)})
    sq = load(tmp_path / "x")                                  # ... squeezed: d = 8 stays as a scalar coord
    assert sq.x.dims == ("point",) and int(sq.d) == 8
    np.testing.assert_array_equal(sq.x, [0.0, 1.0, 2.0])


def test_load_missing_and_tampered(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results in"):
        load(tmp_path / "nothing")
    import xarray as xr
    ds = xr.Dataset({"loss": (("batch", "step"), np.array([[1.0, np.nan, np.inf], [2.0, 3.0, 4.0]]))},
                    coords={"batch": [1, 4], "step": [0, 10, 100]})
    store.save_results(tmp_path, ds, config={"method": "expected", "lr": np.float64(0.1)}, wall_time=1.5,
                       results={"P_star": np.nan})
    got = load(tmp_path)
    xr.testing.assert_identical(got.drop_attrs(), ds)
    assert np.isnan(got.attrs["P_star"]) and got.attrs["lr"] == 0.1 and got.attrs["wall_time"] == 1.5
    m = got.attrs
    assert m["x64"] is True and m["devices"]["count"] == jax.device_count() and m["status"] == "complete"
    assert m["versions"]["jax"] == jax.__version__ and m["versions"]["numpy"] == np.__version__
    assert m["timestamp"].endswith("+00:00")
    assert float(got.loss.sel(batch=3, step=20, method="nearest")) == 3.0
    with pytest.raises(store.OutDirError, match="different configuration"):
        store.save_results(tmp_path, ds, config={"method": "eigen"})
    np.savez(tmp_path / "arrays.npz", var__loss=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="does not match the sha256"):
        load(tmp_path)

def test_sweep_result_save_and_load(tmp_path):
    from plrf.sweep import SweepResult
    rng = np.random.default_rng(1)
    loss = rng.random((2, 1, 3, 4))
    loss[1, 0, 2, 3] = np.inf                                   # a blow-up stays inf
    res = SweepResult(np.array([0, 1, 3, 9]), loss, np.array([[[-1, -1, -1]], [[-1, -1, 3]]]),
                      {"batch": np.array([1, 4]), "lr_scale": np.array([0.5]), "seed": np.array([0, 1, 2])}, "eigen")
    res.save(tmp_path, {"note": "x"}, wall_time=0.5)
    ds = load(tmp_path)
    assert ds.loss.dims == ("batch", "seed", "step") and float(ds.lr_scale) == 0.5     # lr_scale squeezed
    np.testing.assert_array_equal(ds.loss.sel(batch=4), loss[1, 0])
    np.testing.assert_array_equal(ds.step, [0, 1, 3, 9])
    assert int(ds.diverged.sel(batch=4, seed=2)) == 3 and ds.attrs["method"] == "eigen" and ds.attrs["note"] == "x"
    assert float(ds.loss.sel(batch=3, seed=2, step=8, method="nearest")) == np.inf


# ---------------------------------------------------------------------------------------------------------
# progress bar

class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_counts_eta_and_silence(monkeypatch):
    # a scripted clock (the ETA bound against the wall clock failed under load: the time between the first and
    # second update is not bounded by the time before the first)
    now = [100.0]
    monkeypatch.setattr(progress, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: now[0])}))
    s = io.StringIO()
    with progress.Progress(4, desc="ladder", stream=s, force=True, min_interval=0.0) as bar:
        now[0] = 101.0
        bar.skip(1)                                 # resumed: not in the rate
        assert bar.eta() == float("inf")            # nothing computed yet: no rate
        now[0] = 110.0
        bar.update()                                # the first computed unit (compilation): not in the rate
        assert bar.eta() == float("inf")
        now[0] = 112.0
        bar.update()
        assert bar.eta() == 2.0 and bar.elapsed == 12.0   # 1 left at 2 s per unit after the first
    out = s.getvalue()
    assert "ladder  3/4 cells" in out and out.endswith("\n") and "ETA" in out
    tty = _TTY()
    with progress.Progress(2, stream=tty) as bar:   # a TTY draws by default
        bar.update(2)
    assert "2/2 cells" in tty.getvalue() and "100%" in tty.getvalue()
    for kwargs, stream in (({"quiet": True, "force": True}, _TTY()), ({"quiet": True}, io.StringIO())):
        with progress.Progress(3, stream=stream, **kwargs) as bar:   # quiet: silent (logs: tests/test_progress.py)
            bar.update(3)
        assert stream.getvalue() == ""
    with pytest.raises(ValueError, match="total"):
        progress.Progress(-1)


def test_overwrite_removes_the_figures_of_the_discarded_run(tmp_path):
    """Files a command wrote through OutDir.file are recorded in OUT/.outputs and removed by --overwrite (a figure
    of the old configuration must not sit next to the new results); files plrf did not write are kept."""
    with store.prepare_out(tmp_path, {"a": 1}) as out:
        Path(out.file("old.png")).write_bytes(b"png")
        Path(out.file("table.md")).write_text("t")
        out.save({"x": 1})
    (tmp_path / "mine.txt").write_text("user file")
    assert sorted(store.read_json(tmp_path / ".outputs")) == ["old.png", "table.md"]
    with store.prepare_out(tmp_path, {"a": 2}, overwrite=True) as out:
        assert not (tmp_path / "old.png").exists() and not (tmp_path / "table.md").exists()
        assert not (tmp_path / "results.json").exists() and not (tmp_path / ".outputs").exists()
        assert (tmp_path / "mine.txt").read_text() == "user file"
