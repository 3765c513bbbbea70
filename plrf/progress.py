"""A small progress bar for loops outside jit: ``desc  done/total [####....] 40%  0:01:02 < ETA 0:01:33``.

Written to stderr, redrawn at most every ``min_interval`` seconds. Silent when ``quiet=True``, or when the
stream is not a TTY (logs, CI) unless ``force=True``. Work skipped on resume is counted with :meth:`skip`:
it advances the counter but not the rate, so the ETA reflects only the work actually being done.
"""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def _hms(seconds: float) -> str:
    if not (seconds == seconds) or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """``with Progress(total, desc="ladder") as bar: ... bar.update()``.

    ``unit`` labels the counter ("cells"); ``postfix`` (see :meth:`set_postfix`) is shown after the ETA.
    """

    def __init__(self, total: int, *, desc: str = "", unit: str = "cells", quiet: bool = False,
                 force: bool = False, stream: Optional[TextIO] = None, width: int = 24,
                 min_interval: float = 0.1):
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"total must be an integer >= 0, got {total!r}")
        self.total, self.desc, self.unit, self.width = total, desc, unit, width
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = (not quiet) and (force or isatty)
        self.min_interval = min_interval
        self.done = 0       # counted work (computed + skipped)
        self.skipped = 0    # work found already done (not in the rate)
        self.postfix = ""
        self.start = time.perf_counter()
        self._last = -1.0
        self._closed = False
        self._draw(force=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def eta(self) -> float:
        """Seconds left, from the rate of the computed (not skipped) work; inf before the first unit."""
        computed = self.done - self.skipped
        if computed <= 0:
            return float("inf")
        return self.elapsed / computed * max(self.total - self.done, 0)

    def update(self, n: int = 1) -> None:
        self.done += n
        self._draw(force=self.done >= self.total)

    def skip(self, n: int = 1) -> None:
        """Count ``n`` units found already done (resume); they do not enter the rate."""
        self.done += n
        self.skipped += n
        self._draw(force=True)

    def set_postfix(self, text: str) -> None:
        """Text after the ETA, e.g. the cell being computed now (drawn at once)."""
        self.postfix = str(text)
        self._draw(force=True)

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        fill = int(round(self.width * min(frac, 1.0)))
        bar = "#" * fill + "." * (self.width - fill)
        head = f"{self.desc}  " if self.desc else ""
        tail = f"  {self.postfix}" if self.postfix else ""
        return (f"{head}{self.done}/{self.total} {self.unit} [{bar}] {100 * frac:3.0f}%  "
                f"{_hms(self.elapsed)} < ETA {_hms(self.eta())}{tail}")

    def _draw(self, force: bool = False) -> None:
        if not self.enabled or self._closed:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        self.stream.write("\r" + self.line() + "\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._draw(force=True)
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
        self._closed = True
