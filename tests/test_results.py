"""Results that cannot be mixed or silently corrupted, checked out dirs, one loader, and `plrf plot`.

Reproduces the cases of issue 11 through the command line (experiments.cli.main, in-process): two
compute-optimal runs with different --flops-max into one out dir, results.json deleted then another
--flops-max, a truncated cell, a valid cell copied over another's name, a second writer, --out a file / under a
file / holding another configuration, and `plrf plot DIR` redrawing each command's figures.
"""
import os
import shutil

import numpy as np
import pytest

import plrf
from plrf import store

from cli_util import is_png, load_results, run_cli  # noqa: E402


def _exit2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def _not_computed(monkeypatch):
    """Any computation fails the test: the checks must come first."""
    def boom(*a, **k):
        raise AssertionError("computed before checking --out")
    for name in ("sample_instance", "expected_loss", "sample_spectrum"):
        monkeypatch.setattr(plrf, name, boom)


CURVE = ["curve", "--d", 16, "--steps", 60, "--method", "expected", "--num", 12, "--quiet"]


def test_curve_checks_out_before_computing(tmp_path, monkeypatch, capsys):
    f = tmp_path / "file.txt"
    f.write_text("not a directory")
    run = tmp_path / "run"
    assert run_cli([*CURVE, "--out", run]) == 0
    first = (run / "results.json").read_bytes()
    with monkeypatch.context() as mp:
        _not_computed(mp)
        err = _exit2([*CURVE, "--out", f], capsys)                       # an existing regular file
        assert f"--out {f} exists and is not a directory" in err
        err = _exit2([*CURVE, "--out", f / "sub"], capsys)               # unwritable (a path under a file)
        assert f"--out {f}/sub cannot be created or written" in err
        err = _exit2([*CURVE[:2], 24, *CURVE[3:], "--out", run], capsys)  # an existing run, another config
        assert f"--out {run} holds results of a different configuration" in err
        assert "d (--d): stored 16, now 24" in err and "--overwrite" in err
        lock = store.DirLock(run).acquire()                              # a second writer
        try:
            err = _exit2([*CURVE, "--out", run], capsys)
            assert f"--out {run} is in use by another plrf run (pid {os.getpid()} on " in err
        finally:
            lock.release()
    assert (run / "results.json").read_bytes() == first                 # nothing overwritten
    assert run_cli([*CURVE[:2], 24, *CURVE[3:], "--out", run, "--overwrite"]) == 0
    assert load_results(run)["config"]["d"] == 24


def _cell_path(out, d):
    cfg = store.read_json(out / "results.json", nonfinite=False)["config"]
    return store.CellStore.reader(out, cfg).path({"alpha": 1.0, "beta": 0.7, "d": d})


CO = ["compute-optimal", "--d-min", 16, "--d-max", 1024, "--sim-d", "--quiet"]


@pytest.mark.slow   # ~60-150 s: the cases end to end; tests/test_store.py covers each case cheaply by default
def test_compute_optimal_cells_never_mixed_damaged_or_reused(tmp_path, capsys):
    out = tmp_path / "co"
    assert run_cli([*CO, "--flops-max", 1e8, "--out", out]) == 0
    ref = load_results(out)
    ds = plrf.load(out)
    assert ds.attrs["flops_max"] == 1e8 and ds.loss.dims == ("d", "point")
    np.testing.assert_array_equal(ds.d, [16, 32, 64, 128, 256, 512, 1024])
    # every stored curve ends at the recorded --flops-max (f = d B steps, steps = ceil(f / (d B)))
    np.testing.assert_allclose(ds.flops.max("point"), 1e8, rtol=1e-4)
    assert np.isnan(ds.loss.sel(d=16)).sum() == 0 and np.isnan(ds.loss.sel(d=1024)).any()   # real NaN padding
    assert float(ds.envelope_loss.sel(compute=1e6, method="nearest")) > 0

    # 1. a second run with another --flops-max into the same out: refused at once, naming the option
    err = _exit2([*CO, "--flops-max", 1e9, "--out", out], capsys)
    assert "holds results of a different configuration" in err and "flops_max (--flops-max): stored " \
        "100000000.0, now 1000000000.0" in err and "--overwrite" in err
    assert load_results(out) == ref                                       # results.json still describes the cells

    # 2. a truncated cell and a valid cell copied over another's name: named, set aside, recomputed
    p64, p16, p512 = _cell_path(out, 64), _cell_path(out, 16), _cell_path(out, 512)
    raw = p64.read_bytes()
    p64.write_bytes(raw[: len(raw) // 3])
    shutil.copyfile(p16, p512)
    others = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*.npz") if p not in (p64, p512)}
    os.remove(out / "compute_optimal.png")
    with pytest.warns(store.CellWarning) as rec:
        assert run_cli([*CO, "--flops-max", 1e8, "--out", out]) == 0
    msgs = " | ".join(str(w.message) for w in rec)
    assert f"cell {p64}: unreadable (BadZipFile" in msgs
    assert f"cell {p512}: holds the cell" in msgs and "'d': 16" in msgs
    assert sorted(p.name for p in (out / "cells" / "quarantine").iterdir()) == sorted([p64.name, p512.name])
    assert {p: p.stat().st_mtime_ns for p in others} == others            # the intact cells were reused
    again = load_results(out)
    for k in ("xi_measured", "eta_measured", "xi_err", "eta_err", "envelope_loss", "argmin_d", "local_eta"):
        assert again[k] == ref[k], k                                      # the numbers of the clean run
    assert again["sessions"] == 2 and is_png(out / "compute_optimal.png")

    # 3. results.json deleted, then another --flops-max: the old cells are not reused
    os.remove(out / "results.json")
    err = _exit2([*CO, "--flops-max", 1e9, "--out", out], capsys)
    assert "holds cells of a different configuration" in err and "flops_max (--flops-max)" in err

    # 4. plrf plot redraws from the stored results
    os.remove(out / "compute_optimal.png")
    err = _exit2(["plot", out], capsys)
    assert f"DIR {out} holds no results.json" in err
    assert run_cli([*CO, "--flops-max", 1e8, "--out", out]) == 0       # same config: resumes, nothing computed
    os.remove(out / "compute_optimal.png")
    assert run_cli(["plot", out, "--quiet"]) == 0 and is_png(out / "compute_optimal.png")


RUNS = {
    "curve": (CURVE, ["curve.png"], ("loss_mean", "loss_expected")),
    "theory": (["theory", "--d", 64, "--steps", 1e4, "--num", 16, "--quiet"], ["theory.png"],
               ("loss", "components")),
    "schedules": (["schedules", "--d", 16, "--steps", 40, "--seeds", 2, "--schedules", "constant", "cosine",
                   "--num", 8, "--scan-cooldowns", 0.1, 0.3, "--scan-lr-fracs", 0.2, 0.4, "--quiet"],
                  ["schedules.png", "wsd_scan.png"], ("exact", "prediction", "wsd_cooldown_scan_exact")),
    "phase-diagram": (["phase-diagram", "--alphas", 1.0, "--betas", 0.7, "--no-named", "--d-max", 1024,
                       "--flops-max", 1e8, "--quiet"],
                      ["phase_diagram.png", "measured_vs_theory.png", "local_slopes.png"],
                      ("xi_measured", "loss")),
    "collapse": (["collapse", "--d", 8, 16, 32, "--h-min", 8, "--h-max", 64, "--h-flops", 1e5, "--seeds", 2,
                  "--families", "optimal", "2x", "--num", 10, "--quiet"], ["collapse.png"],
                 ("l_exact", "exact_loss")),
}
SLOW = {"schedules", "phase-diagram", "collapse"}   # minutes on 2 cores (compilation)


@pytest.mark.parametrize("command", [c if c not in SLOW else pytest.param(c, marks=pytest.mark.slow)
                                     for c in RUNS])
def test_plot_redraws_every_command_from_its_results(command, tmp_path):
    argv, figures, variables = RUNS[command]
    out = tmp_path / command
    assert run_cli([*argv, "--out", out]) == 0
    res = store.read_json(out / "results.json")
    assert res["status"] == "complete" and res["config"]["command"] == command
    ds = plrf.load(out)                                                  # every command loads
    for v in variables:
        assert v in ds.data_vars and ds[v].dtype.kind in "fb", v
        assert ds[v].notnull().any()
    assert ds.attrs["command"] == command and ds.attrs["x64"] is True
    assert len(ds.to_dataframe()) > 0 if len(ds.dims) <= 3 else True
    before = {f: (out / f).read_bytes() for f in figures}
    for f in figures:
        os.remove(out / f)
    assert run_cli(["plot", out, "--quiet"]) == 0
    for f in figures:
        assert is_png(out / f), f
        assert (out / f).read_bytes() == before[f], f"{f}: the redrawn figure differs from the run's"
    assert store.read_json(out / "results.json") == res                 # plotting changed no result


def test_plot_refuses_non_results_dirs(tmp_path, capsys):
    assert f"DIR {tmp_path} holds no results.json" in _exit2(["plot", tmp_path], capsys)
    assert "is not a directory" in _exit2(["plot", tmp_path / "nope"], capsys)
    with store.CellStore(tmp_path / "lad", {"kind": "ladder"}) as st:
        st.put({"d": 4}, {"x": np.ones(2)})
    err = _exit2(["plot", tmp_path / "lad"], capsys)
    assert "not finished" in err or "nothing to plot" in err
