"""The ``plrf`` command line: ``plrf <command> [options]``; ``plrf <command> --help`` lists the options."""
from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module in experiments/ exposing add_arguments(parser) and run(args)
COMMANDS = {
    "curve": ("curve", "one problem, one schedule, one method, N seeds: loss curve vs the exact expectation"),
    "theory": ("theory_cmd", "analytic loss curve with its asymptotic components"),
    "compute-optimal": ("compute_optimal", "compute-optimal frontier for one (alpha, beta): d* ~ f^xi, P ~ f^-eta"),
    "phase-diagram": ("phase_diagram", "the 4+3 phase diagram: measured vs theoretical exponents over (alpha, beta)"),
    "schedules": ("schedules_cmd", "learning-rate schedules: simulation vs exact and approximate predictors"),
    "collapse": ("collapse_cmd", "scaling collapse of compute-optimal loss curves"),
    "plot": ("plot_cmd", "redraw the figures of a results directory without recomputing"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plrf", description="Power-law random features: simulation and theory of neural scaling laws.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (mod, help_) in COMMANDS.items():
        try:
            module = importlib.import_module(f"experiments.{mod}")
        except ImportError:
            continue  # a command whose module is not installed yet
        p = sub.add_parser(name, help=help_, description=(module.__doc__ or help_).strip().splitlines()[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        args._run(args)
    except (ValueError, TypeError) as err:
        args._parser.error(str(err))  # exits 2 with "plrf <cmd>: error: ..."
    return 0


if __name__ == "__main__":
    sys.exit(main())
