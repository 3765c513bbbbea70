"""Progress of loops outside jit, on stderr: a redrawn bar on a terminal, plain lines in a log.

On a TTY (or ``force=True``): ``desc  done/total [####....] 40%  0:01:02 < ETA 0:01:33``, redrawn in place at
most every ``min_interval`` seconds. Not a TTY (output piped to a log, CI): one plain line at the start, one
every ``log_interval`` seconds (default 5; environment variable ``PLRF_PROGRESS_INTERVAL``; printed by a
background thread, so a log shows the loop is alive even while one long unit runs) and one at the end, e.g. ``ladder: 7/19 d (5 resumed), 37%, elapsed 0:00:41, ETA 0:01:10``. Silent when ``quiet=True``.

The ETA comes from the rate of the computed units after the first one: the first unit of a loop usually
includes jit compilation, so until a second unit is done the ETA is shown as unknown. Work found already done
(resumed from a results store) is counted with :meth:`skip`: it advances the counter, is reported as resumed,
and does not enter the rate.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional, TextIO

DEFAULT_LOG_INTERVAL = 5.0


def _hms(seconds: float) -> str:
    if not (seconds == seconds) or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _log_interval() -> float:
    try:
        x = float(os.environ.get("PLRF_PROGRESS_INTERVAL", DEFAULT_LOG_INTERVAL))
    except ValueError:
        return DEFAULT_LOG_INTERVAL
    return x if x >= 0 else DEFAULT_LOG_INTERVAL


class Progress:
    """``with Progress(total, desc="ladder") as bar: ... bar.update()``; ``bar.skip(n)`` for resumed units.

    ``unit`` labels the counter ("cells"); ``postfix`` (see :meth:`set_postfix`) is shown after the ETA.
    A Progress is also a callable ``bar(i, n)`` (= ``bar.update()``), the ``progress`` callback of
    :func:`theory.ladder.measure_frontier`, which calls ``bar.skip()`` instead for a rung loaded from its store.
    """

    def __init__(self, total: int, *, desc: str = "", unit: str = "cells", quiet: bool = False,
                 force: bool = False, stream: Optional[TextIO] = None, width: int = 24,
                 min_interval: float = 0.1, log_interval: Optional[float] = None):
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"total must be an integer >= 0, got {total!r}")
        self.total, self.desc, self.unit, self.width = total, desc, unit, width
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = not quiet
        self.mode = "bar" if (force or isatty) else "log"
        self.min_interval = min_interval
        self.log_interval = _log_interval() if log_interval is None else float(log_interval)
        self.done = 0       # counted work (computed + skipped)
        self.skipped = 0    # work found already done (resumed; not in the rate)
        self.postfix = ""
        self.start = time.perf_counter()
        self._rate_t0: Optional[float] = None   # time the first computed unit finished
        self._rate_n0 = 0                        # computed units at that time
        self._last = -float("inf")
        self._printed = ""
        self._closed = False
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._draw(force=True)
        self._ticker = None
        if self.enabled and self.mode == "log" and self.log_interval > 0:
            self._ticker = threading.Thread(target=self._tick, name="plrf-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        """Log mode: a line every ``log_interval`` seconds even when no unit finishes meanwhile."""
        while not self._stop.wait(self.log_interval / 4):
            self._draw()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __call__(self, *_ignored) -> None:
        self.update()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def computed(self) -> int:
        return self.done - self.skipped

    def eta(self) -> float:
        """Seconds left, from the rate of the computed units after the first (which includes compilation);
        inf until two computed units are done."""
        n = self.computed - self._rate_n0
        if self._rate_t0 is None or n <= 0:
            return float("inf")
        return (time.perf_counter() - self._rate_t0) / n * max(self.total - self.done, 0)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._rate_t0 is None and self.computed > 0:
            self._rate_t0, self._rate_n0 = time.perf_counter(), self.computed
        self._draw(force=self.mode == "bar" and self.done >= self.total)

    def skip(self, n: int = 1) -> None:
        """Count ``n`` units found already done (resumed); they are reported as resumed, not in the rate."""
        self.done += n
        self.skipped += n
        self._draw(force=self.mode == "bar")

    def set_postfix(self, text: str) -> None:
        """Text after the ETA, e.g. the cell being computed now (drawn at once on a terminal)."""
        self.postfix = str(text)
        self._draw(force=self.mode == "bar")

    def _eta_text(self) -> str:
        if self.done >= self.total:
            return "0:00:00"
        e = self.eta()
        if e == float("inf"):
            return "? (first unit, incl. compilation)" if self.computed == 0 else "?"
        return _hms(e)

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        resumed = f" ({self.skipped} resumed)" if self.skipped else ""
        tail = f"  {self.postfix}" if self.postfix else ""
        if self.mode == "log":
            head = f"{self.desc}: " if self.desc else ""
            return (f"{head}{self.done}/{self.total} {self.unit}{resumed}, {100 * frac:.0f}%, elapsed "
                    f"{_hms(self.elapsed)}, ETA {self._eta_text()}{tail}")
        fill = int(round(self.width * min(frac, 1.0)))
        bar = "#" * fill + "." * (self.width - fill)
        head = f"{self.desc}  " if self.desc else ""
        return (f"{head}{self.done}/{self.total} {self.unit}{resumed} [{bar}] {100 * frac:3.0f}%  "
                f"{_hms(self.elapsed)} < ETA {self._eta_text()}{tail}")

    def _draw(self, force: bool = False) -> None:
        if not self.enabled or self._closed:
            return
        with self._lock:
            if self._closed:
                return
            now = time.perf_counter()
            interval = self.min_interval if self.mode == "bar" else self.log_interval
            if not force and now - self._last < interval:
                return
            self._last = now
            text = self.line()
            if self.mode == "bar":
                self.stream.write("\r" + text + "\033[K")
            else:
                self.stream.write(text + "\n")
            self._printed = text
            self.stream.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.enabled:
                if self.mode == "bar":
                    self._draw(force=True)
                    self.stream.write("\n")
                elif self.line() != self._printed:
                    self.stream.write(self.line() + "\n")
                self.stream.flush()
            self._closed = True
