"""plrf.store: atomic writes, numpy-aware JSON, cells keyed by coordinates, the labelled loader, progress."""
import hashlib
import io
import json
import os

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
    got = read_json(path)
    # reference: the plain-JSON form spelled out by hand (non-finite floats become strings)
    assert got == {"a": [0, 1, 2], "x": 0.25, "i": 7, "b": True, "bad": ["inf", "-inf", "nan"],
                   "m": [[1.5, "nan"]], "t": [1, 2], "key": [0, 5],
                   "schedule": {"name": "constant", "peak": 0.5, "total": None}}
    assert [float(s) for s in got["bad"][:2]] == [np.inf, -np.inf] and np.isnan(float(got["bad"][2]))
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
# cells

def test_coords_key_is_sha256_of_canonical_json():
    ref = hashlib.sha256(b'{"alpha":1,"beta":0.7,"d":1024}').hexdigest()[:16]   # computed by hand
    assert store.coords_key({"d": 1024, "beta": 0.7, "alpha": 1.0}) == ref
    assert store.coords_key({"alpha": 1, "d": np.int64(1024), "beta": np.float64(0.7)}) == ref
    assert store.coords_key({"alpha": 1.0, "beta": 0.7, "d": 1023}) != ref
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
    again = CellStore(tmp_path, {"lr": 0.1, "method": "eigen", "seeds": [0, 1, 2]})   # same config
    c = again.get({"d": 16, "alpha": 1.0})
    assert c.coords == {"d": 16, "alpha": 1.0} and c.meta == {"settings": {"steps": 10}}
    np.testing.assert_array_equal(c.arrays["loss"], a["loss"])
    assert int(c.arrays["n"]) == 3 and len(again) == 1 and len(again.cells()) == 1
    meta = read_json(tmp_path / "results.json")
    assert meta["sessions"] == 2 and meta["status"] == "running"
    with pytest.raises(ValueError, match=r"different configuration:\n  lr: stored 0.1 != now 0.2"):
        CellStore(tmp_path, {**cfg, "lr": 0.2})
    assert len(CellStore(tmp_path)) == 1                       # the refused open changed nothing
    fresh = CellStore(tmp_path, {**cfg, "lr": 0.2}, overwrite=True)
    assert len(fresh) == 0 and read_json(tmp_path / "results.json")["config"]["lr"] == 0.2
    with pytest.raises(KeyError):
        fresh.get({"d": 16, "alpha": 1.0})


def test_non_writer_writes_nothing(tmp_path):
    st = CellStore(tmp_path / "o", {"a": 1}, writer=False)
    assert st.put({"d": 1}, {"x": np.ones(2)}) is None
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------------------
# labelled loader

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
    return put


def test_load_cells_labels_selection_records(tmp_path):
    put = _ragged_cells(tmp_path)
    res = load(tmp_path)
    assert list(res.axes) == ["alpha", "d", "seed"]
    np.testing.assert_array_equal(res.axes["d"], [16, 32, 64])
    np.testing.assert_array_equal(res.axes["seed"], [4, 5, 6])
    assert res.dims["loss"] == ("alpha", "d", "seed") and res.loss.shape == (2, 3, 3, 17)
    one = res.sel(alpha=1.0, d=32)                             # one cell: padding trimmed, exact arrays
    np.testing.assert_array_equal(one.loss, put[(1.0, 32)]["loss"])
    np.testing.assert_array_equal(one.steps, put[(1.0, 32)]["steps"])
    assert one.P_star == 1.0 / 32
    np.testing.assert_array_equal(res.sel(alpha=1.0, d=16, seed=5).loss, put[(1.0, 16)]["loss"][1])
    sub = res.sel(d=[64, 16])                                  # a list keeps the axis, in the given order
    np.testing.assert_array_equal(sub.axes["d"], [64, 16])
    assert np.all(np.isnan(sub.loss[0, 0])) and sub.steps[0, 0, 0] == -1     # absent cell (0.6, 64)
    np.testing.assert_array_equal(sub.loss[1, 1, :, :5], put[(1.0, 16)]["loss"])
    assert np.all(np.isnan(sub.loss[1, 1, :, 5:]))             # ragged padding is NaN
    np.testing.assert_array_equal(res.cell_done, [[True, True, False], [True, True, True]])
    recs = res.to_records()
    assert len(recs) == 5 * 3                                  # 5 present cells x 3 seeds
    for r in recs:
        src = put[(r["alpha"], r["d"])]
        np.testing.assert_array_equal(r["loss"], src["loss"][[4, 5, 6].index(r["seed"])])
        assert r["P_star"] == r["alpha"] / r["d"] and len(r["steps"]) == r["d"] // 4 + 1
    m = res.sel(alpha=1.0, d=64).mean("seed")
    np.testing.assert_allclose(m.loss, put[(1.0, 64)]["loss"].mean(axis=0), rtol=1e-15)
    with pytest.raises(KeyError, match="alpha=0.7 not in axis"):
        res.sel(alpha=0.7)
    with pytest.raises(KeyError, match="no axis"):
        res.sel(width=3)


def test_load_interrupted_out_dir_and_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nothing")
    st = CellStore(tmp_path, {"k": 1})
    st.put({"d": 8}, {"x": np.arange(3.0)})
    res = load(tmp_path)                                       # status "running": partial results load
    assert res.meta["status"] == "running"
    np.testing.assert_array_equal(res.sel(d=8).x, [0.0, 1.0, 2.0])


def test_save_results_roundtrip_with_metadata(tmp_path):
    axes = {"batch": np.array([1, 4]), "lr_scale": np.array([1.0, 0.5, 0.25])}
    loss = np.arange(2 * 3 * 5, dtype=np.float64).reshape(2, 3, 5)
    loss[1, 2, 4] = np.inf
    store.save_results(tmp_path, {"loss": loss, "steps": np.arange(5)}, axes=axes,
                       dims={"loss": ["batch", "lr_scale"]}, config={"method": "expected", "lr": np.float64(0.1)},
                       wall_time=1.5)
    res = load(tmp_path)
    np.testing.assert_array_equal(res.sel(batch=4, lr_scale=0.25).loss, loss[1, 2])
    np.testing.assert_array_equal(res.sel(lr_scale=[0.5]).loss, loss[:, 1:2])
    m = res.meta
    assert m["config"] == {"method": "expected", "lr": 0.1} and m["wall_time"] == 1.5
    assert m["x64"] is True and m["devices"]["count"] == jax.device_count()
    assert m["versions"]["jax"] == jax.__version__ and m["versions"]["numpy"] == np.__version__
    assert m["timestamp"].endswith("+00:00") and isinstance(m["argv"], list)
    assert m["git"] is None or len(m["git"]["rev"]) == 40
    with pytest.raises(ValueError, match="different configuration"):
        store.save_results(tmp_path, {"loss": loss}, axes=axes, dims={"loss": ["batch", "lr_scale"]},
                           config={"method": "eigen"})
    with pytest.raises(ValueError, match="does not match the axes"):
        store.save_results(tmp_path / "x", {"loss": loss[:1]}, axes=axes, dims={"loss": ["batch", "lr_scale"]},
                           config={})


# ---------------------------------------------------------------------------------------------------------
# progress bar

class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_counts_eta_and_silence():
    s = io.StringIO()
    with progress.Progress(4, desc="ladder", stream=s, force=True, min_interval=0.0) as bar:
        bar.skip(1)
        assert bar.eta() == float("inf")            # nothing computed yet: no rate
        bar.update()
        bar.update()
        assert 0.0 <= bar.eta() <= bar.elapsed / 2 * 1 + 1e-9   # 1 left at the computed rate
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
