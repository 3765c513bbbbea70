"""plrf.progress: a bar on a terminal, plain lines in a log, ETA after the first (compiling) unit, resumed units.

The clock is replaced by a fake one (``time.perf_counter`` of the module), so the ETA is checked exactly.
"""
import io
import re
import time

import pytest

from plrf import progress


class _TTY(io.StringIO):
    def isatty(self):
        return True


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", c)
    return c


def test_eta_excludes_the_first_unit_and_resumed_units(clock):
    s = io.StringIO()
    with progress.Progress(10, desc="ladder", unit="d", stream=s, log_interval=0) as bar:
        bar.skip(2)                       # resumed: counted, not in the rate
        assert (bar.done, bar.skipped, bar.computed) == (2, 2, 0)
        assert bar.eta() == float("inf")
        clock.t += 60.0                   # the first unit: 60 s, mostly compilation
        bar.update()
        assert bar.eta() == float("inf")  # one unit: no rate yet (it includes compilation)
        clock.t += 2.0
        bar.update()
        clock.t += 4.0
        bar.update()                      # after the first unit: 2 units in 6 s -> 3 s per unit
        assert bar.eta() == pytest.approx(3.0 * (10 - 5), rel=1e-12)   # 15 s, not 66 s / 3 * 5 = 110 s
        assert "5/10 d (2 resumed)" in bar.line() and "ETA 0:00:15" in bar.line()
    out = s.getvalue()
    assert out.splitlines()[0].startswith("ladder: 0/10 d, 0%") and "compilation" in out.splitlines()[0]


def test_log_lines_when_not_a_tty(clock):
    s = io.StringIO()   # not a TTY: plain lines, no carriage returns
    bar = progress.Progress(3, desc="phase diagram", unit="curves", stream=s, log_interval=5.0)
    try:
        assert s.getvalue().count("\n") == 1                 # a line at the start
        clock.t += 1.0
        bar.update()
        assert s.getvalue().count("\n") == 1                 # within the interval: nothing more
        clock.t += 5.0
        bar.skip()
        assert s.getvalue().count("\n") == 2                 # interval passed: one line
        clock.t += 1.0
    finally:
        bar.close()                                           # and a last line at the end
    lines = s.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in s.getvalue()
    assert re.fullmatch(r"phase diagram: 2/3 curves \(1 resumed\), 67%, elapsed 0:00:06, ETA \?", lines[1])
    assert lines[2].startswith("phase diagram: 2/3 curves (1 resumed), 67%, elapsed 0:00:07")


def test_log_lines_while_one_long_unit_runs():
    """The background thread prints during a unit that has not finished (real clock, 0.05 s interval)."""
    s = io.StringIO()
    with progress.Progress(2, desc="theory", stream=s, log_interval=0.05):
        time.sleep(0.4)
    n = s.getvalue().count("\n")
    assert 4 <= n <= 12, s.getvalue()   # ~8 expected; generous for a loaded machine


def test_tty_bar_quiet_and_bad_total():
    tty = _TTY()
    with progress.Progress(2, stream=tty) as bar:   # a TTY draws a bar in place
        bar.update(2)
    out = tty.getvalue()
    assert "2/2 cells" in out and "100%" in out and "\r" in out and out.endswith("\n")
    for stream in (_TTY(), io.StringIO()):
        with progress.Progress(3, stream=stream, quiet=True) as bar:   # --quiet: silent, TTY or not
            bar.update(3)
        assert stream.getvalue() == ""
    with pytest.raises(ValueError, match="total"):
        progress.Progress(-1)


def test_measure_frontier_reports_resumed_rungs():
    """A Progress passed to theory.ladder.measure_frontier: rungs loaded from the store are resumed."""
    from theory.ladder import measure_frontier

    class FakeStore:          # rungs d = 16 and 32 already done
        def __init__(self, real):
            self.real = real

        def done(self, coords):
            return coords["d"] in self.real

        def get(self, coords):
            return self.real[coords["d"]]

        def put(self, *a, **k):
            pass

    class Cell:
        def __init__(self, d):
            import numpy as np
            s = np.array([1, 10, 100, 1000, 10000])
            f = d * s.astype(float)
            self.arrays = {"steps": s, "flops": f, "loss": 1.0 / np.sqrt(f) + 1.0 / d}
            self.meta = {"lr": 0.1, "P_star": 1.0 / d, "v": 4 * d}

    s = io.StringIO()
    with progress.Progress(2, desc="ladder", unit="d", stream=s, log_interval=0) as bar:
        try:
            measure_frontier(1.0, 0.7, [16, 32], flops_max=1.6e5, store=FakeStore({16: Cell(16), 32: Cell(32)}),
                             progress=bar)
        except (ValueError, RuntimeError):
            pass   # the fit of two fake rungs may be refused; the counting happened before
        assert (bar.done, bar.skipped) == (2, 2)
    assert "2/2 d (2 resumed)" in s.getvalue()
