"""Every command's figures are written readable: labelled axes, legends that hide no data, readable titles.

Each command runs at a tiny size into tmp_path with ``experiments.plotting.save`` patched to inspect the figure
before it is written (tests/figcheck.py: labels, legends against the drawn data in display coordinates,
title sizes). ``plrf schedules`` and ``plrf collapse`` are checked the same way in their end-to-end tests
(tests/test_cli_schedules.py). The checker itself is tested on figures built to fail.
"""
import numpy as np
import pytest

from cli_util import run_cli as _run
from figcheck import check_figure, record_figures


def _assert_clean(found, names):
    assert set(names) <= set(found), (names, sorted(found))
    bad = {k: v for k, v in found.items() if v}
    assert not bad, bad


def test_checker_finds_unlabelled_axes_and_covering_legend():
    from experiments.plotting import new_figure, plt
    fig, axes = new_figure(2, 1)
    a, b = axes[0]
    x = np.linspace(0, 1, 50)
    a.plot(x, x, label="one")
    a.plot(x, 1 - x, label="two")            # two labelled lines, no legend, no labels, no title
    b.plot(x, np.full_like(x, 0.5), label="flat")
    b.plot(x, x, label="rising")
    b.set(xlabel="x", ylabel="y", title="t")
    b.legend(loc="center")                    # covers the middle of both lines
    got = check_figure(fig)
    plt.close(fig)
    text = " | ".join(got)
    assert "axes 0" in text and "no y label" in text and "no x label" in text and "no legend" in text
    assert "no title and no suptitle" in text and "covers" in text
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.plot(x, x, label="one")
    ax.plot(x, x ** 2, label="two")
    ax.set(xlabel="x", ylabel="y", title="fine")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15))   # outside the axes
    assert check_figure(fig) == []
    plt.close(fig)
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.plot(x, x, label="data")
    ax.plot(x, x ** 2, label="extrapolated 0.5")
    ax.set(xlabel="x", ylabel="extrapolated 0.5", title="t")   # the bug once in compute_optimal.png
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15))
    assert any("y label 'extrapolated 0.5' is a legend entry" in p for p in check_figure(fig))
    plt.close(fig)


def test_curve_figure(tmp_path, monkeypatch):
    found = record_figures(monkeypatch)
    # the arguments of test_cli.py's curve test: in one process the compiled programs are reused
    assert _run(["curve", "--d", 32, "--steps", 300, "--seeds", 8, "--method", "eigen", "--num", 30,
                 "--out", tmp_path / "c", "--quiet"]) == 0
    _assert_clean(found, ["curve.png"])


def test_theory_figure(tmp_path, monkeypatch):
    found = record_figures(monkeypatch)
    # the arguments of test_cli.py's sampled-spectrum theory test (compiled programs reused in one process)
    assert _run(["theory", "--spectrum", "sampled", "--d", 48, "--steps", "3e4", "--num", 40, "--seed", 3,
                 "--out", tmp_path / "t", "--quiet"]) == 0
    _assert_clean(found, ["theory.png"])


@pytest.mark.slow   # ~90 s on a loaded 2-core machine (ladder + eigen SGD compile)
def test_compute_optimal_figure(tmp_path, monkeypatch):
    found = record_figures(monkeypatch)
    assert _run(["compute-optimal", "--d-min", 16, "--d-max", 512, "--flops-max", 1e7, "--sim-d", 16, 64,
                 "--sim-seeds", 2, "--sim-flops", 1e4, "--out", tmp_path / "co", "--quiet"]) == 0
    _assert_clean(found, ["compute_optimal.png"])


@pytest.mark.slow   # ~40 s after the compute-optimal test, more alone
def test_phase_diagram_figures(tmp_path, monkeypatch):
    found = record_figures(monkeypatch)
    assert _run(["phase-diagram", "--alphas", 1.0, "--betas", 0.7, 1.3, "--no-named", "--d-max", 512,
                 "--flops-max", 1e7, "--out", tmp_path / "pd", "--quiet"]) == 0
    _assert_clean(found, ["phase_diagram.png", "measured_vs_theory.png", "local_slopes.png"])

