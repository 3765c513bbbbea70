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


nonneg_float = _num(float, 0.0)


def add_label_noise(p):
    """``--label-noise SIGMA2``: labels ``y = <x, b> + sigma eps`` (exact reduction: P* -> P* + sigma^2)."""
    p.add_argument("--label-noise", dest="label_noise", type=nonneg_float, default=0.0, metavar="SIGMA2",
                   help="label-noise variance sigma^2 >= 0 (y = <x, b> + sigma eps); for Gaussian data the "
                        "dynamics are the noiseless ones with P* + sigma^2, and the reported risk includes "
                        "sigma^2 (default: %(default)s)")


def label_noise_config(args) -> dict:
    """``{'label_noise': sigma^2}`` when nonzero, else nothing (existing results directories still resume)."""
    s2 = getattr(args, "label_noise", 0.0)
    return {"label_noise": s2} if s2 else {}


def int_at_least(n):
    return _num(int, n)


BIG_INT_MAX = 2 ** 53   # integers written as 1e6 are exact in float64 up to here


def big_int(text):
    """Integers that may be written as 1e6, in [1, 2^53]."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (e.g. 10000 or 1e4), got {text!r}")
    if not math.isfinite(x) or x < 1 or x > BIG_INT_MAX or x != int(x):
        raise argparse.ArgumentTypeError(f"must be an integer in [1, 2^53 = {BIG_INT_MAX:.4g}], got {text}")
    return int(x)


def load_matrix(path, option: str, shape) -> "np.ndarray":
    """A real finite float matrix of ``shape`` from a ``.npy`` file; ValueError naming ``option`` and the file
    otherwise (missing or unreadable file, pickled data, complex or non-numeric dtype, wrong shape, NaN/inf)."""
    import numpy as np
    try:
        W = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{option} {path}: no such file")
    except IsADirectoryError:
        raise ValueError(f"{option} {path}: is a directory, expected a .npy file")
    except OSError as err:
        raise ValueError(f"{option} {path}: cannot read it ({err.strerror or err})")
    except (ValueError, EOFError) as err:  # not a .npy file, truncated, or pickled objects
        raise ValueError(f"{option} {path}: not a readable .npy array ({err})")
    if not isinstance(W, np.ndarray):
        raise ValueError(f"{option} {path}: expected one array saved with numpy.save, got an archive of "
                         f"{len(W.files)} arrays (.npz)")
    if np.iscomplexobj(W):
        raise ValueError(f"{option} {path}: W has complex dtype {W.dtype}; the features must be real "
                         "(the imaginary part is not dropped silently)")
    if W.dtype == bool or not (np.issubdtype(W.dtype, np.floating) or np.issubdtype(W.dtype, np.integer)):
        raise ValueError(f"{option} {path}: W has dtype {W.dtype}; expected a real float (or integer) array")
    if W.shape != tuple(shape):
        raise ValueError(f"{option} {path}: W has shape {W.shape}, expected (v, d) = {tuple(shape)}")
    W = W.astype(np.float64)
    if not np.all(np.isfinite(W)):
        raise ValueError(f"{option} {path}: W has NaN or inf entries")
    return W


def add_common(p, out_default, *, time_limit: bool = True):
    """--out, --quiet, --devices, --debug, and --time-limit for the commands that estimate their run time before
    any work (``time_limit=False`` for those that do not: an option that is never checked is not offered)."""
    p.add_argument("--out", default=out_default, help="output directory (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--devices", type=int_at_least(1), default=None,
                   help="number of devices to shard runs over; None = all visible")
    if time_limit:
        p.add_argument("--time-limit", dest="time_limit", type=positive_float, default=168.0, metavar="HOURS",
                       help="refuse at once a run whose estimated time (rough, from the options) exceeds this")
    add_debug(p)


def add_debug(p):
    """``--debug``: show the traceback of an error (also accepted before the command: ``plrf --debug curve``)."""
    if not any("--debug" in a.option_strings for a in p._actions):
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error")


def file_sha256(path, option: str) -> str:
    """sha256 of a file named by ``option`` (recorded in a run's configuration); a clear error naming the option."""
    import hashlib
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError as err:
        raise ValueError(f"{option} {path}: cannot be read ({err.strerror or err})") from None


def problem_v(args) -> int:
    """``--v`` (default 4 d) after the checks shared by the commands that sample a problem: ``v >= d`` and an
    admissible ``(alpha, beta)``; ValueError naming the options."""
    v = args.v if getattr(args, "v", None) is not None else 4 * args.d
    if v < args.d:
        raise ValueError(f"--v must be >= --d, got v={v} < d={args.d}")
    if 2 * (args.alpha + args.beta) <= 1:
        raise ValueError(f"--alpha/--beta inadmissible: need 2(alpha + beta) > 1, got alpha={args.alpha}, "
                         f"beta={args.beta}")
    return v
