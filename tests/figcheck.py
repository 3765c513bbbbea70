"""Checks of a written matplotlib figure as a reader sees it (used by test_figures.py and the CLI tests).

``record_figures(monkeypatch)`` makes ``experiments.plotting.save`` hand every figure to :func:`check_figure`
before it is written; the returned dict maps file names to the problems found (empty lists when the figure is
fine). What is checked, for every visible axes that is not a colorbar:

- a non-empty x label (or one on an axes it shares x with: stacked panels label the bottom one) and y label;
- when two or more labelled artists are drawn, a legend for them on the axes or on the figure;
- no legend placed inside the axes covers a data point (vertices of lines with more than two points, scatter
  offsets): the legend's box is compared with the points in display coordinates after a draw;
- a title on the axes (or on a panel it shares x with) or a suptitle, every title at least 8 pt, the suptitle at least 9 pt;
- no axis label equal to the label of one of the axes' curves (a label variable reused for both).
"""
import numpy as np

MIN_TITLE_PT = 8.0
MIN_SUPTITLE_PT = 9.0


def _is_colorbar(ax):
    return getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>"


def _points(ax):
    """Display coordinates of the data points drawn on ``ax`` (lines with > 2 vertices, scatter offsets)."""
    pts = []
    for ln in ax.get_lines():
        if not ln.get_visible():
            continue
        xy = np.column_stack([np.asarray(ln.get_xdata(), dtype=float), np.asarray(ln.get_ydata(), dtype=float)])
        if xy.shape[0] <= 2:
            continue
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        if xy.size:
            pts.append(ln.get_transform().transform(xy))
    for col in ax.collections:
        off = np.asarray(col.get_offsets(), dtype=float)
        if hasattr(col, "get_sizes") and off.ndim == 2 and off.shape[0] and col.get_offset_transform() is not None \
                and type(col).__name__ == "PathCollection":
            off = off[np.all(np.isfinite(off), axis=1)]
            if off.size:
                pts.append(col.get_offset_transform().transform(off))
    if not pts:
        return np.zeros((0, 2))
    xy = np.concatenate(pts)
    box = ax.get_window_extent()
    inside = (xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1)
    return xy[inside]


def _labelled(ax):
    hs, labels = ax.get_legend_handles_labels()
    return [lab for lab in labels if lab and not lab.startswith("_")]


def check_figure(fig):
    """A list of the problems of ``fig`` (empty: readable)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison and not _is_colorbar(ax)]
    sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
    if sup and fig._suptitle.get_fontsize() < MIN_SUPTITLE_PT:
        problems.append(f"suptitle {sup[:30]!r} is {fig._suptitle.get_fontsize()} pt")
    fig_legend_labels = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    for k, ax in enumerate(axes):
        name = f"axes {k} ({ax.get_title()[:40]!r})"
        if not ax.get_ylabel().strip():
            problems.append(f"{name}: no y label")
        if not ax.get_xlabel().strip() or not ax.xaxis.label.get_visible():
            sib = [a for a in ax.get_shared_x_axes().get_siblings(ax) if a is not ax]
            if not any(a.get_xlabel().strip() and a.xaxis.label.get_visible() for a in sib):
                problems.append(f"{name}: no x label")
        titles = [t for t in (ax.title, ax._left_title, ax._right_title) if t.get_text().strip()]
        for t in titles:
            if t.get_fontsize() < MIN_TITLE_PT:
                problems.append(f"{name}: title {t.get_text()[:30]!r} is {t.get_fontsize()} pt")
        sib_titled = any(a.get_title().strip() for a in ax.get_shared_x_axes().get_siblings(ax))
        if not titles and not sup and not sib_titled:   # a strip under a titled panel shares its title
            problems.append(f"{name}: no title and no suptitle")
        labels = _labelled(ax)
        for which, text in (("x", ax.get_xlabel().strip()), ("y", ax.get_ylabel().strip())):
            if text and text in labels:   # an axis named after one of its curves: a label variable reused
                problems.append(f"{name}: the {which} label {text[:40]!r} is a legend entry")
        leg = ax.get_legend()
        if len(labels) >= 2 and leg is None and not set(labels) <= fig_legend_labels:
            problems.append(f"{name}: {len(labels)} labelled artists and no legend")
        if leg is not None and leg.get_visible():
            lb = leg.get_window_extent(renderer)
            ab = ax.get_window_extent(renderer)
            if lb.overlaps(ab):
                xy = _points(ax)
                hid = (xy[:, 0] > lb.x0) & (xy[:, 0] < lb.x1) & (xy[:, 1] > lb.y0) & (xy[:, 1] < lb.y1)
                if np.any(hid):
                    problems.append(f"{name}: the legend covers {int(hid.sum())} data points")
    return problems


def record_figures(monkeypatch):
    """Patch ``experiments.plotting.save`` to check every figure before writing it; returns {file name: problems}."""
    import os

    from experiments import plotting
    found = {}
    orig = plotting.save

    def save(fig, path):
        found[os.path.basename(str(path))] = check_figure(fig)
        return orig(fig, path)

    monkeypatch.setattr(plotting, "save", save)
    return found
