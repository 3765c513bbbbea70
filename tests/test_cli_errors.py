"""User errors of the ``plrf`` command line exit 2 with a message naming the option or file, before any work;
internal errors exit 1 in one line; ``--debug`` shows the traceback; ``--version``; size checks
(experiments.budget); progress lines when stderr is a log.

Each case of issue 11 is reproduced (the message it gave before is quoted in the test). The runs that do work
are tiny (a ladder of three small d on the deterministic equivalent).
"""
import json
import re
import time

import numpy as np
import pytest

from cli_util import run_cli
from experiments import budget, cli


def _fails(argv, capsys, code=2):
    """Run the CLI, expect exit ``code``; return stderr."""
    t = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        run_cli(argv)
    assert e.value.code == code, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err, time.perf_counter() - t


# ---------------------------------------------------------------------------------------------------------
# the cases of issue 11

def test_steps_out_of_range_names_steps_and_range(tmp_path, capsys):
    # before: "loop of ufunc does not support argument 0 of type float which has no callable log10 method"
    for cmd in ("curve", "theory", "schedules"):
        err, _ = _fails([cmd, "--steps", "1e30", "--out", tmp_path], capsys)
        assert f"plrf {cmd}: error: argument --steps: must be an integer in [1, 2^53" in err and "1e30" in err


def test_flops_max_below_minimum(tmp_path, capsys):
    # before: "Number of samples, -3, must be non-negative."
    err, _ = _fails(["compute-optimal", "--flops-max", "10", "--out", tmp_path / "co"], capsys)
    assert "--flops-max must be >= 1.6e+03" in err and "got 10" in err   # 100 x d_min 16 x B 1
    err, _ = _fails(["phase-diagram", "--flops-max", "10", "--out", tmp_path / "pd"], capsys)
    assert "--flops-max must be >= 1.6e+03" in err
    assert not (tmp_path / "co").exists() and not (tmp_path / "pd").exists()


def test_unstable_c_suggests_an_option_the_command_has(tmp_path, capsys):
    # before: "... Pass allow_unstable=True (CLI: --allow-unstable) to run anyway." (compute-optimal has no such option)
    err, _ = _fails(["compute-optimal", "--c", "5", "--d-max", "64", "--flops-max", "1e5", "--sim-d",
                     "--out", tmp_path, "--quiet"], capsys)
    assert "unstable learning rate" in err and "Lower --c" in err and "allow" not in err.replace("allowed", "")


def test_unstable_hints_name_only_options_of_their_command():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    msg = ("unstable learning rate: lr=3 with batch=1 must be < 0.5 (stochastic edge). "
           "Pass allow_unstable=True (CLI: --allow-unstable) to run anyway.")
    for name, p in sub.choices.items():
        if name == "plot":   # redraws stored results: trains nothing, has no learning-rate option to name
            continue
        own = {s for a in p._actions for s in a.option_strings}
        text = cli.user_message(ValueError(msg), name, p)
        named = set(re.findall(r"--[a-z][a-z-]*", text))
        assert named and named <= own, (name, text, named - own)
        assert ("--allow-unstable" in text) == ("--allow-unstable" in own), (name, text)


def test_w_file_missing_complex_shape_dtype(tmp_path, capsys):
    base = ["curve", "--d", "8", "--method", "expected", "--steps", "10", "--out", tmp_path / "o", "--quiet"]
    # before: a FileNotFoundError traceback
    err, dt = _fails(base + ["--W-file", tmp_path / "nope.npy"], capsys)
    assert f"--W-file {tmp_path / 'nope.npy'}: no such file" in err
    rng = np.random.default_rng(0)
    cases = {  # file -> words of the message (before: a complex W lost its imaginary part silently)
        "complex.npy": (rng.normal(size=(32, 8)) + 1j * rng.normal(size=(32, 8)), "complex dtype complex128"),
        "shape.npy": (rng.normal(size=(8, 32)), "shape (8, 32), expected (v, d) = (32, 8)"),
        "text.npy": (np.full((32, 8), "a"), "dtype <U1"),
        "objects.npy": (np.array([{"a": 1}], dtype=object), "not a readable .npy array"),
        "nan.npy": (np.full((32, 8), np.nan), "NaN or inf"),
    }
    for name, (arr, words) in cases.items():
        np.save(tmp_path / name, arr, allow_pickle=True)
        err, _ = _fails(base + ["--W-file", tmp_path / name], capsys)
        assert f"--W-file {tmp_path / name}: " in err and words in err, (name, err)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    err, _ = _fails(base + ["--W-file", tmp_path / "junk.npy"], capsys)
    assert "junk.npy: not a readable .npy array" in err
    assert not (tmp_path / "o").exists()
    # a valid real W is used: the same spectrum as plrf.instance_from_W
    W = rng.normal(size=(32, 8)) / np.sqrt(8)
    np.save(tmp_path / "w.npy", W)
    assert run_cli(base + ["--W-file", tmp_path / "w.npy"]) == 0
    import plrf
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    inst = plrf.instance_from_W(plrf.Problem(1.0, 0.7, 32, 8), W)
    assert res["P_star"] == pytest.approx(float(inst.spectrum.P_star), rel=1e-12)


def test_corrupt_results_json_names_the_file(tmp_path, capsys):
    # before: "Unterminated string starting at: line 1 column 2 (char 1)" with no file name
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"config": {"comm')
    err, _ = _fails(["compute-optimal", "--d-max", "64", "--flops-max", "1e5", "--sim-d", "--out", out], capsys)
    assert f"{out / 'results.json'} is damaged (not valid JSON" in err and "--overwrite" in err
    err, _ = _fails(["curve", "--d", "8", "--method", "expected", "--out", out], capsys)
    assert f"{out / 'results.json'} is damaged" in err and "--overwrite" in err   # curve has --overwrite too
    assert (out / "results.json").read_text() == '{"config": {"comm'   # left for the user to inspect


def test_phase_diagram_without_admissible_points(tmp_path, capsys):
    # before: exit 0, "0 points" and empty figures
    out = tmp_path / "pd"
    err, dt = _fails(["phase-diagram", "--alphas", "0.2", "--betas", "0.2", "--no-named", "--out", out], capsys)
    assert "no admissible point (2(alpha + beta) > 1)" in err and "alphas=[0.2] x betas=[0.2]" in err
    assert not out.exists() and dt < 5


def test_huge_batch_is_refused_with_its_range(tmp_path, capsys):
    # before: "OverflowError: Python integer 9000000000 out of bounds for int32" (traceback)
    err, dt = _fails(["curve", "--d", "8", "--batch", "1000000000", "--steps", "10", "--seeds", "2",
                      "--out", tmp_path], capsys)
    assert "--batch 1000000000 too large" in err and f"--batch must be in [1, {(2 ** 31 - 1) // 9}]" in err
    assert dt < 5


# ---------------------------------------------------------------------------------------------------------
# sizes checked before computing

def test_impossible_sizes_are_refused_at_once(tmp_path, capsys):
    # before: curve --d 1e8 failed after 83 s with a 71 PiB ArrayMemoryError traceback
    err, dt = _fails(["curve", "--d", "100000000", "--out", tmp_path / "c"], capsys)
    assert "--d too large" in err and "PB of memory" in err and "is available" in err and dt < 5
    # before: theory --d 1e12 ran silently for 15+ minutes: now its estimate is printed (or refused by --time-limit)
    err, dt = _fails(["theory", "--d", "1e12", "--time-limit", "0.1", "--out", tmp_path / "t"], capsys)
    assert "--d too large: the run would take about" in err and "--time-limit 0.1 h" in err and dt < 5
    err, dt = _fails(["theory", "--d", "1e15", "--out", tmp_path / "t"], capsys)
    assert "--d too large" in err and "memory" in err and dt < 5
    err, _ = _fails(["schedules", "--steps", "1e12", "--out", tmp_path / "s"], capsys)
    assert "--steps too large" in err and "years" in err
    err, _ = _fails(["compute-optimal", "--sim-d", "100000", "--out", tmp_path / "co"], capsys)
    assert "--sim-d too large" in err
    assert not any(tmp_path.iterdir())


def test_budget_estimates_scale_and_limits():
    """Memory ~ d^2 of a sampled K (8 bytes x 4 d^2), time of eigen SGD ~ seeds x steps x B x (d + 1)."""
    e1 = budget.curve(d=100_000, v=400_000, batch=1, seeds=16, steps=10_000, method="eigen", num=100)
    e2 = budget.curve(d=200_000, v=800_000, batch=1, seeds=16, steps=10_000, method="eigen", num=100)
    assert e1.bytes == pytest.approx(8 * 4 * 1e10, rel=0.01) and e2.bytes / e1.bytes == pytest.approx(4.0, rel=0.01)
    assert (e1.mem_option, e1.time_option) == ("--d", "--d")   # K and its eigendecomposition dominate both
    s1 = budget.sgd("eigen", d=100, v=400, batch=2, seeds=8, steps=1000)[1][0] - budget.COST["compile"]
    s2 = budget.sgd("eigen", d=100, v=400, batch=2, seeds=8, steps=4000)[1][0] - budget.COST["compile"]
    assert s1 == pytest.approx(budget.COST["draw"] * 8 * 1000 * 2 * 101, rel=1e-12) and s2 == pytest.approx(4 * s1)
    class A:
        time_limit = 1.0
    with pytest.raises(ValueError, match=r"--d too large: .* about 1 GB .*; 100 MB is available"):
        budget.check(budget.Estimate(1e9, 1.0, "--d", "K", "--steps", "SGD"), A(), memory_limit=1e8)
    with pytest.raises(ValueError, match=r"--steps too large: .* about 2.0 h .* over --time-limit 1 h"):
        budget.check(budget.Estimate(1e6, 7200.0, "--d", "K", "--steps", "SGD"), A(), memory_limit=1e8)
    said = []
    budget.check(budget.Estimate(1e6, 120.0, "--d", "K", "--steps", "SGD"), A(), memory_limit=1e8, say=said.append)
    assert said == ["estimated about 2 min and 1 MB of memory (mostly SGD)"]
    assert 0 < budget.available_memory() < 2 ** 60


def test_budget_scales_with_the_optimizer():
    """Moment entries per mode: nz = m(m+1)/2 (+ m + 1 first moments with weight decay); the estimate of the
    theory (log-time solver) and of the exact recursion grows with them; SGD's estimate is unchanged."""
    from types import SimpleNamespace as NS
    cost = lambda **kw: budget.optimizer_cost(NS(**{"optimizer": "sgd", "ema": None, "weight_decay": 0.0, **kw}))  # noqa: E731
    assert cost() is budget.SGD_COST
    assert cost(optimizer="momentum").solve == pytest.approx(3 ** 2.7)                 # m = 2: nz = 3
    assert cost(optimizer="momentum", ema=0.01).solve == pytest.approx(6 ** 2.7)       # m = 3: nz = 6
    assert cost(weight_decay=1e-3).recursion == pytest.approx(3 ** 1.3)                # nz = 1 + 2 first moments
    assert cost(optimizer="dana-decaying").solve == pytest.approx(3 * 3 ** 2.7)         # not time-invariant
    kw = dict(d=10 ** 6, v=4 * 10 ** 6, spectrum="deterministic", num=100, batch=1)
    sgd_t, mom_t = budget.theory(**kw).seconds, budget.theory(**kw, cost=cost(optimizer="momentum")).seconds
    assert mom_t - sgd_t == pytest.approx(budget.solve_time(budget.det_size(1e6), 100) * (3 ** 2.7 - 1), rel=1e-9)
    c = dict(d=256, v=1024, batch=1, seeds=1, steps=10 ** 9, method="expected", num=100)
    assert budget.curve(**c, cost=cost(optimizer="nesterov", ema=0.1)).seconds == pytest.approx(
        6 ** 1.3 * budget.curve(**c).seconds, rel=0.01)


# ---------------------------------------------------------------------------------------------------------
# --debug, internal errors, --version

def test_debug_shows_the_traceback_before_or_after_the_command(tmp_path, capsys):
    argv = ["--W-file", tmp_path / "nope.npy", "--d", "8", "--method", "expected", "--out", tmp_path]
    err, _ = _fails(["curve", *argv], capsys)
    for dbg in (["--debug", "curve", *argv], ["curve", *argv, "--debug"]):
        with pytest.raises(SystemExit) as e:
            run_cli(dbg)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "nope.npy: no such file" in err


def test_third_party_value_error_is_internal(monkeypatch, tmp_path, capsys):
    """A ValueError raised inside numpy (an input our checks missed) is a bug: exit 1, not a user error."""
    import experiments.curve as curve
    monkeypatch.setattr(curve, "run", lambda args: np.geomspace(1, 10, -3))
    assert run_cli(["curve", "--out", tmp_path]) == 1
    err = capsys.readouterr().err
    assert err.startswith("plrf curve: internal error: ValueError: Number of samples, -3, must be non-negative")


def test_internal_error_one_line_exit_1(monkeypatch, tmp_path, capsys):
    import experiments.curve as curve

    def boom(args):
        raise RuntimeError("solver diverged\nsecond line")
    monkeypatch.setattr(curve, "run", boom)
    assert run_cli(["curve", "--out", tmp_path]) == 1
    err = capsys.readouterr().err
    assert err == ("plrf curve: internal error: RuntimeError: solver diverged; run again with --debug for the "
                   "traceback\n")
    assert run_cli(["--debug", "curve", "--out", tmp_path]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: solver diverged" in err


def test_version(capsys):
    import jax
    import sys
    with pytest.raises(SystemExit) as e:
        run_cli(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    py = ".".join(map(str, sys.version_info[:3]))
    assert re.fullmatch(rf"plrf \S+ \(jax {re.escape(jax.__version__)}, jaxlib \S+, python {py}\)", out), out


# ---------------------------------------------------------------------------------------------------------
# progress in logs, resumed cells

def test_progress_lines_in_a_log_and_resumed_rungs(tmp_path, capsys, monkeypatch):
    """compute-optimal with stderr captured (not a TTY): plain progress lines; the rerun reports resumed rungs."""
    import experiments.compute_optimal as co
    monkeypatch.setenv("PLRF_PROGRESS_INTERVAL", "0")
    monkeypatch.setattr(co, "plot", lambda *a, **k: None)   # figures are not the subject here
    argv = ["compute-optimal", "--d-max", "64", "--flops-max", "1e5", "--sim-d", "--out", tmp_path]
    assert run_cli(argv) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("compute-optimal ladder: ")]
    assert "\r" not in err and lines[0].startswith("compute-optimal ladder: 0/3 d, 0%")
    assert any(ln.startswith("compute-optimal ladder: 3/3 d, 100%") for ln in lines) and "resumed" not in err
    assert run_cli(argv) == 0
    err = capsys.readouterr().err
    assert "compute-optimal ladder: 3/3 d (3 resumed), 100%" in err
    assert run_cli(argv + ["--quiet"]) == 0
    assert capsys.readouterr().err.count("compute-optimal ladder") == 0


def test_every_offered_time_limit_is_enforced(tmp_path, capsys):
    """A command that offers --time-limit refuses its default run under a limit of 1e-9 h, before any work;
    a command with no run-time estimate does not offer the option (batch and hparam-laws offered it unchecked)."""
    from experiments.cli import COMMANDS, _has_option, build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    offered = sorted(n for n in COMMANDS if n in sub.choices and _has_option(sub.choices[n], "--time-limit"))
    assert {"curve", "theory", "compute-optimal", "phase-diagram", "schedules", "collapse", "optimal-schedule",
            "data", "data-frontier"} <= set(offered) and not {"batch", "hparam-laws", "plot"} & set(offered)
    for name in offered:
        out = tmp_path / name
        err, dt = _fails([name, "--time-limit", "1e-9", "--out", out], capsys)
        assert "--time-limit" in err and dt < 10, (name, err)
        assert not out.exists() or not any(out.iterdir()), name
    err, _ = _fails(["hparam-laws", "--time-limit", "1", "--out", tmp_path / "h"], capsys)
    assert "unrecognized arguments: --time-limit" in err
