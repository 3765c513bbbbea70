"""Redraw a finished run's figures from its results directory, without recomputing anything.

``plrf plot DIR`` reads DIR/results.json, finds the command that wrote it (``config.command``) and calls that
command's ``replot(DIR)``, which rebuilds the figures with the same plotting functions as the run. Plot options
are not part of a run's configuration, so figures can be redrawn (after a change of the plotting code) at will.
"""
from __future__ import annotations

import importlib
import os


def add_arguments(p):
    p.add_argument("dir", metavar="DIR", help="results directory written by a plrf command (holds results.json)")
    p.add_argument("--quiet", action="store_true", help="do not list the figures written")


def replot(out_dir) -> list:
    """Redraw the figures of ``out_dir``; returns their file names. ValueError (naming DIR) if it cannot."""
    from plrf.store import RESULTS, DirLock, read_json

    from .cli import COMMANDS
    path = os.path.join(out_dir, RESULTS)
    if not os.path.isdir(out_dir):
        raise ValueError(f"DIR {out_dir} is not a directory")
    if not os.path.exists(path):
        raise ValueError(f"DIR {out_dir} holds no {RESULTS}: not a results directory of a plrf command")
    res = read_json(path)
    cfg = res.get("config") if isinstance(res, dict) else None
    command = cfg.get("command") if isinstance(cfg, dict) else None
    if command not in COMMANDS or command == "plot":
        what = f"command {command!r}" if command else f"kind {cfg.get('kind')!r}" if isinstance(cfg, dict) else "?"
        raise ValueError(f"DIR {out_dir}: {path} was not written by a plrf command with figures ({what}); "
                         f"nothing to plot")
    if res.get("status") != "complete":
        raise ValueError(f"DIR {out_dir}: the run is not finished (status {res.get('status')!r}); run "
                         f"`plrf {command}` again with --out {out_dir} to complete it")
    module = importlib.import_module(f"experiments.{COMMANDS[command][0]}")
    with DirLock(out_dir, "DIR"):   # not while a run writes it
        return module.replot(out_dir)


def run(args):
    files = replot(args.dir)
    if not args.quiet:
        print(f"plrf plot: wrote {', '.join(os.path.join(args.dir, f) for f in files)}")
    return files
