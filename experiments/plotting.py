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


CLIP_NOTE = "▲ / ▼: points beyond the axis range (clipped)"


def mark_clipped(ax, x, y, lo, hi, color, ms=4.0):
    """Draw the points of ``(x, y)`` outside ``[lo, hi]`` as triangles at the top / bottom edge of ``ax``.

    A curve cut off by the y limits is then visibly cut off rather than silently missing. Returns the number of
    points marked."""
    import numpy as np
    from matplotlib.transforms import blended_transform_factory

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    tr = blended_transform_factory(ax.transData, ax.transAxes)
    n = 0
    for sel, yy, mk in ((y > hi, 0.97, "^"), (y < lo, 0.03, "v")):
        if np.any(sel):
            ax.plot(x[sel], np.full(int(sel.sum()), yy), mk, color=color, ms=ms, mec="k", mew=0.3, ls="none",
                    transform=tr, clip_on=False, zorder=6)
            n += int(sel.sum())
    return n


def clip_handle():
    """A legend handle for the triangles of :func:`mark_clipped`."""
    from matplotlib.lines import Line2D
    return Line2D([], [], marker="^", ls="none", color="0.5", mec="k", mew=0.3, ms=5, label=CLIP_NOTE)
