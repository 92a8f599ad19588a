"""The label placer: labels kept apart, a fresh placer after ``ax.clear()``, labels left out when crowded."""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssd_lesson.drawing import plots
from ssd_lesson.drawing.placement import legibility, placer_for


def _axes():
    fig = Figure(figsize=(3, 3), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set(xlim=(0, 1), ylim=(1, 0))
    return fig, ax


def _extents(fig, texts):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return np.array([t.get_window_extent(r).extents for t in texts])


def _overlapping(e):
    ox = np.minimum(e[:, None, 2], e[None, :, 2]) - np.maximum(e[:, None, 0], e[None, :, 0])
    oy = np.minimum(e[:, None, 3], e[None, :, 3]) - np.maximum(e[:, None, 1], e[None, :, 1])
    return int(np.triu((ox > 0) & (oy > 0), 1).sum())


def test_labels_of_one_corner_are_kept_apart():
    fig, ax = _axes()
    texts = [plots.draw_box(ax, (0.3, 0.3, 0.6 + 0.02 * i, 0.6), "red", f"{i}: person")[1] for i in range(5)]
    assert _overlapping(_extents(fig, texts)) == 0
    assert legibility(fig)["overlaps"] == []


def test_a_cleared_axes_gets_a_fresh_placer():
    fig, ax = _axes()
    first = placer_for(ax)
    plots.draw_box(ax, (0.1, 0.1, 0.5, 0.5), "red", "old")
    ax.clear()
    second = placer_for(ax)
    assert second is not first and second in ax.artists and second.items == []
    texts = [plots.draw_box(ax, (0.3, 0.3, 0.6, 0.6), "red", f"{i}: cat")[1] for i in range(3)]
    assert _overlapping(_extents(fig, texts)) == 0  # before the fix these went to the dropped placer: stacked


def test_crowded_labels_are_left_out_not_overlapped():
    fig, ax = _axes()
    texts = [plots.draw_box(ax, (0.45, 0.45, 0.55, 0.55), "red", f"{i}: motorbike", drop_label_if_crowded=True,
                            priority=-i)[1] for i in range(40)]
    extents = _extents(fig, texts)
    shown = placer_for(ax).shown()
    assert 0 < len(shown) < 40 and texts[0] in shown  # the highest priority is placed first
    visible = [k for k, t in enumerate(texts) if t in shown]
    assert all(not texts[k].get_visible() for k in range(40) if k not in visible)
    assert _overlapping(extents[visible]) == 0
    assert legibility(fig)["overlaps"] == []


def test_a_label_keeps_off_an_arrow_it_is_told_to_avoid():
    """An arrow drawn from a box's top-left corner, into the box, lies where the label would go: once the
    placer is told to avoid it, the label moves off it; without that, it stays on the arrow."""
    def drawn(avoid):
        fig, ax = _axes()
        _, label = plots.draw_box(ax, (0.3, 0.3, 0.7, 0.7), "red", "1: person")
        arrow = ax.annotate("", (0.45, 0.34), (0.3, 0.3), arrowprops=dict(arrowstyle="-|>", lw=2))
        if avoid:
            placer_for(ax).avoid(arrow)
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        return np.array([label.get_window_extent(r).extents, arrow.arrow_patch.get_window_extent(r).extents])

    assert _overlapping(drawn(avoid=False)) == 1  # the case is one where the arrow is in the way
    assert _overlapping(drawn(avoid=True)) == 0
