"""argparse types that validate ranges and name the option in their error, plus shared options."""
from __future__ import annotations

import argparse
import math


def _num(kind, lo=None, hi=None, lo_open=False, what=""):
    def parse(text):
        try:
            x = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}{what}, got {text!r}")
        if isinstance(x, float) and not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"expected a finite number{what}, got {text!r}")
        if lo is not None and (x <= lo if lo_open else x < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo}{what}, got {text}")
        if hi is not None and x > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}{what}, got {text}")
        return x
    parse.__name__ = kind.__name__
    return parse


positive_float = _num(float, 0.0, lo_open=True)
real = _num(float)
fraction = _num(float, 0.0, 1.0, lo_open=True)


def int_at_least(n):
    return _num(int, n)


def big_int(text):
    """Integers that may be written as 1e6."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (e.g. 10000 or 1e4), got {text!r}")
    if not math.isfinite(x) or x < 1 or x != int(x):
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return int(x)


def add_common(p, out_default):
    p.add_argument("--out", default=out_default, help="output directory (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--devices", type=int_at_least(1), default=None,
                   help="number of devices to shard runs over; None = all visible")
