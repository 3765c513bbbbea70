"""The ``plrf`` command line: ``plrf <command> [options]``; ``plrf <command> --help`` lists the options.

Errors: a user error (a bad option, a missing or unreadable input file, a damaged results file, a size that
cannot fit) exits with status 2 and one message naming the option or file, before any work where it can be
checked up front; an unexpected internal error prints one line and exits 1. ``--debug`` (before or after the
command) shows the traceback of either.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import traceback

from . import options as opt

# command name -> module in experiments/ exposing add_arguments(parser) and run(args)
COMMANDS = {
    "curve": ("curve", "one problem, one schedule, one method, N seeds: loss curve vs the exact expectation"),
    "theory": ("theory_cmd", "analytic loss curve with its asymptotic components"),
    "compute-optimal": ("compute_optimal", "compute-optimal frontier for one (alpha, beta): d* ~ f^xi, P ~ f^-eta"),
    "phase-diagram": ("phase_diagram", "the 4+3 phase diagram: measured vs theoretical exponents over (alpha, beta)"),
    "schedules": ("schedules_cmd", "learning-rate schedules: simulation vs exact and approximate predictors"),
    "collapse": ("collapse_cmd", "scaling collapse of compute-optimal loss curves"),
    "batch": ("batch_cmd", "batch-size frontier: steps and samples to a target loss per B, McCandlish fit, "
                           "B_crit vs the exact gradient noise scale"),
    "hparam-laws": ("hparam_cmd", "scaling laws of the optimal/critical batch, lr and weight decay in D and d"),
    "optimal-schedule": ("optimal_schedule_cmd", "optimal lr/momentum schedules from the exact theory vs tuned baselines"),
    "data": ("data_cmd", "finite data: multi-epoch SGD on N samples vs the GD deterministic equivalent and one pass"),
    "data-frontier": ("data_frontier_cmd", "finite data: the data-constrained compute-optimal frontier and the "
                                           "effective-data multiplier E(K, N) (gradient-flow limit)"),
    "plot": ("plot_cmd", "redraw the figures of a results directory without recomputing"),
}

# what to change instead of --allow-unstable, for the commands that do not have it
UNSTABLE_HINT = {
    "theory": "lower --lr (or raise --batch)",
    "compute-optimal": "lower --c (lr = c / sum_{j<=v} j^{-2 alpha}; the default 0.5 is stable)",
    "phase-diagram": "lower --c (lr = c / sum_{j<=v} j^{-2 alpha}; the default 0.5 is stable)",
    "collapse": "lower --c (lr = c / sum_j j^{-2 alpha}; the default 0.5 is stable)",
    "schedules": "lower --lr-frac or --scan-lr-fracs",
    "batch": "lower --lr-frac-max (the tuned lr stays below it times the stability bound at each B)",
    "optimal-schedule": "lower --frac (the schedules stay below frac x the largest stable constant lr) or --momentum",
    "hparam-laws": "lower --lr-frac-max (the tuned lr stays below it times the stability bound)",
    "data": "lower --lr (or raise --batch)",
    "data-frontier": "lower --c (lr = c / tr K; the gradient-flow limit needs a small lr)",
}


class _Version(argparse.Action):
    """``plrf --version``: plrf, jax and python versions (read without importing jax)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit(0)


def version_text() -> str:
    from importlib import metadata

    def ver(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None
    plrf_v = ver("plrf")
    if plrf_v is None:
        try:
            plrf_v = importlib.import_module("plrf").__version__
        except Exception:  # noqa: BLE001 - a version line must not fail
            plrf_v = "unknown"
    py = ".".join(str(x) for x in sys.version_info[:3])
    return f"plrf {plrf_v} (jax {ver('jax') or 'not installed'}, jaxlib {ver('jaxlib') or '-'}, python {py})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plrf", description="Power-law random features: simulation and theory of neural scaling laws.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action=_Version, help="print the plrf, jax and python versions and exit")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback of an error (also accepted after the command)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (mod, help_) in COMMANDS.items():
        try:
            module = importlib.import_module(f"experiments.{mod}")
        except ImportError:
            continue  # a command whose module is not installed yet
        p = sub.add_parser(name, help=help_, description=(module.__doc__ or help_).strip().splitlines()[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        opt.add_debug(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def _has_option(parser, flag) -> bool:
    return any(flag in a.option_strings for a in parser._actions)


def user_message(err: BaseException, command: str, parser=None) -> str:
    """The one-line message of a user error: the file for OS errors, the command's own option for the
    stability hint of plrf.stability.check_lr."""
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or type(err).__name__}"
    if isinstance(err, json.JSONDecodeError):
        return f"a results file is not valid JSON ({err}); move it away or delete it"
    msg = str(err) or type(err).__name__
    if "allow_unstable" in msg or "--allow-unstable" in msg:
        has = parser is not None and _has_option(parser, "--allow-unstable")
        pat = r"\s*Pass allow_unstable=True(?: \(CLI: --allow-unstable\))? to run anyway\.?"
        if has:
            msg = re.sub(pat, " Lower --lr, or pass --allow-unstable to run anyway.", msg)
        else:
            msg = re.sub(pat, "", msg).rstrip()
            # the general optimizers' wording (plrf.stability.check_system)
            msg = re.sub(r"\s*or pass allow_unstable=True \(CLI: --allow-unstable\)", "", msg)
            msg += f" {UNSTABLE_HINT.get(command, 'lower the learning rate').capitalize()}."
    return msg


def check_existing_results(args) -> None:
    """An existing ``OUT/results.json`` must be readable JSON (a damaged file is named, not a decode error)."""
    out = getattr(args, "out", None)
    if not out:
        return
    path = os.path.join(str(out), "results.json")
    if not os.path.isfile(path):
        return
    try:
        with open(path, encoding="utf-8") as f:
            json.load(f)
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        hint = ", or pass --overwrite to discard it" if _has_option(args._parser, "--overwrite") else ""
        raise ValueError(f"--out {out}: {path} is damaged (not valid JSON: {err}); move it away or delete it"
                         f"{hint}") from err
    except OSError as err:
        raise ValueError(f"--out {out}: cannot read {path} ({err.strerror or err})") from err


USER_ERRORS = (ValueError, TypeError, OSError)
PROJECT = ("experiments", "plrf", "theory")   # a ValueError/TypeError raised elsewhere (numpy, matplotlib) is a bug


def is_user_error(err: BaseException) -> bool:
    """OS errors (files), JSON decode errors (a results file), and ValueError/TypeError raised by plrf's own
    checks; a ValueError raised inside a third-party library (an input our checks missed) is internal."""
    if isinstance(err, (OSError, json.JSONDecodeError)):
        return True
    if not isinstance(err, (ValueError, TypeError)):
        return False
    tb, last = err.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return True
    return str(last.tb_frame.f_globals.get("__name__", "")).split(".")[0] in PROJECT


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args([str(a) for a in argv])
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    prog = f"plrf {args.command}"
    try:
        check_existing_results(args)
        args._run(args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if not is_user_error(err):
            return _internal(err, prog, debug)
        if debug:
            traceback.print_exc()
        args._parser.exit(2, f"{prog}: error: {user_message(err, args.command, args._parser)}\n")
    except MemoryError as err:
        if debug:
            traceback.print_exc()
        args._parser.exit(2, f"{prog}: error: out of memory ({type(err).__name__}: {str(err)[:200]}); "
                             "lower the sizes (--d, --batch, --seeds)\n")
    except Exception as err:  # noqa: BLE001 - an internal error: one line, the traceback with --debug
        return _internal(err, prog, debug)
    return 0


def _internal(err: BaseException, prog: str, debug: bool) -> int:
    """An unexpected error: one line (exit 1); the traceback with --debug."""
    if debug:
        traceback.print_exception(type(err), err, err.__traceback__)
    first = (str(err).strip().splitlines() or [""])[0][:300]
    hint = "" if debug else "; run again with --debug for the traceback"
    print(f"{prog}: internal error: {type(err).__name__}: {first}{hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
