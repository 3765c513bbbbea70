"""Shared helpers of the command-line tests."""
import json

from experiments import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(argv):
    return cli.main([str(a) for a in argv])


def load_results(out):
    with open(out / "results.json") as f:
        return json.load(f)


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC
