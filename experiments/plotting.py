"""Shared figure helpers (matplotlib, Agg backend, no display needed)."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def new_figure(ncols=1, nrows=1, width=5.2, height=4.0, **kw):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)
    return fig, axes


def save(fig, path):
    """Save atomically (temp file + rename) and close."""
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    os.replace(tmp, path)
    plt.close(fig)
    return path


def band(ax, x, mean, err, label, color=None, **kw):
    line, = ax.plot(x, mean, label=label, color=color, **kw)
    ax.fill_between(x, mean - err, mean + err, color=line.get_color(), alpha=0.25, lw=0)
    return line
