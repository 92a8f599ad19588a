"""Box labels that keep apart: each label is placed, at draw time, in the first free spot near its box.

A :class:`LabelPlacer` lives on an axes (``placer_for(ax)``) and is drawn before everything
else there, after the figure's layout has fixed where the axes are. It then moves each label
it was given (in the order given) to the first spot that overlaps no label placed before it
and stays inside the axes: the box's top-left corner (as in the article), then the other
corners inside and outside the box, then along its top and left edges, then further out on
rings around the corner, joined to the corner by a thin leader line in the box's colour.
Everything is measured in pixels of the renderer doing the drawing, so the placement holds
at any dpi and after any change of layout (a suptitle added later, a text re-set by a widget).
A label added with ``drop_if_crowded=True`` stays touching its box or is left out when no
such spot is free (a figure with more boxes than room, such as the threshold widget at a low
threshold); :meth:`LabelPlacer.shown` says which labels were drawn, so the caller can list the others.
Labels keep off the axes' other texts, and off any artist passed to :meth:`LabelPlacer.avoid` (an arrow).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.text import Text

__all__ = ["LabelPlacer", "placer_for"]

GAP = 1.0  # pixels kept free between two labels


class LabelPlacer(Artist):
    """Keeps the labels of one axes apart; see the module docstring."""

    def __init__(self, ax: Axes):
        super().__init__()
        self.ax = ax
        self.items: list[tuple[Text, tuple[float, float, float, float], Optional[Line2D], float, bool]] = []
        self.hidden: set[int] = set()  # ids of the texts this placer left out at the last draw
        self.avoided: list[Artist] = []  # other artists no label may cover (arrows): see avoid()
        self.set_zorder(-1e9)  # drawn before every other artist of the axes
        ax.add_artist(self)

    def add(self, text: Text, box: Any, color: Any = "black", leader: bool = True, priority: float = 0.0,
            drop_if_crowded: bool = False) -> Text:
        """Manage ``text``, the label of ``box`` ``(y0, x0, y1, x1)`` in data coordinates; higher priority
        first; with ``drop_if_crowded``, only spots touching the box are tried, and the label is left out (not
        overlapped, not moved away on a leader line) when none is free."""
        line = None
        if leader:
            line = Line2D([], [], color=color, lw=0.8, alpha=0.9, zorder=text.get_zorder() - 0.05, gid="leader")
            line.set_visible(False)
            self.ax.add_line(line)
        text.set(ha="left", va="top", transform=self.ax.transData)
        self.items.append((text, tuple(float(v) for v in box), line, priority, drop_if_crowded))
        return text

    def avoid(self, *artists: Artist) -> None:
        """Keep every label off ``artists`` too (an annotation's arrow, a marker), wherever they are drawn."""
        self.avoided.extend(artists)

    def shown(self) -> list[Text]:
        """The managed labels drawn at the last draw (all but those left out for want of room)."""
        return [t for t, *_ in self.items if t.get_visible()]

    def get_window_extent(self, renderer: Any = None):  # nothing of its own to draw
        from matplotlib.transforms import Bbox
        return Bbox.null()

    def draw(self, renderer: Any) -> None:
        if self.get_visible():
            self.place(renderer)
        self.stale = False

    # ------------------------------------------------------------ placement
    def place(self, renderer: Any) -> None:
        ax = self.ax
        frame = ax.get_window_extent(renderer)
        to_data = ax.transData.inverted()
        placed = [self._fixed_obstacles(renderer)]
        order = sorted(range(len(self.items)), key=lambda i: -self.items[i][3])
        for text, *_ in self.items:  # left out last time, tried again (the layout may have changed)
            if id(text) in self.hidden:
                text.set_visible(True)
        self.hidden.clear()
        for i in order:
            text, (y0, x0, y1, x1), line, _, drop = self.items[i]
            if line is not None:
                line.set_visible(False)
            if not text.get_visible() or not text.get_text():
                continue
            corners = ax.transData.transform([(x0, y0), (x1, y1)])
            left, right = corners[:, 0].min(), corners[:, 0].max()
            bottom, top = corners[:, 1].min(), corners[:, 1].max()
            ext = text.get_window_extent(renderer)
            pad = _patch_pad(text, renderer)
            w, h = ext.width + 2 * pad, ext.height + 2 * pad
            others = np.concatenate(placed)
            cands, attached, k, found = None, None, None, False
            for far in (False,) if drop else (False, True):  # touching the box first; then rings further out
                c = _candidates(left, right, bottom, top, w, h, frame, far)
                rects = np.column_stack([c[:, 0], c[:, 1] - h, c[:, 0] + w, c[:, 1]])  # x0, y0, x1, y1
                inside = ((rects[:, 0] >= frame.x0 - 0.5) & (rects[:, 2] <= frame.x1 + 0.5)
                          & (rects[:, 1] >= frame.y0 - 0.5) & (rects[:, 3] <= frame.y1 + 0.5))
                overlap = _overlap_area(rects, others)
                free = inside & (overlap == 0)
                if free.any():
                    cands, k, attached, found = c, int(np.argmax(free)), not far, True
                    break
                if not far:  # if nowhere is free: the near spot inside the axes with the least overlap
                    cands, attached = c, True
                    k = int(np.argmin(np.where(inside, overlap, np.inf))) if inside.any() else 0
            if drop and not found:  # no room anywhere: leave it out rather than overlap
                text.set_visible(False)
                self.hidden.add(id(text))
                continue
            rects = np.column_stack([cands[:, 0], cands[:, 1] - h, cands[:, 0] + w, cands[:, 1]])
            lx, ty = cands[k]
            text.set_position(to_data.transform((lx + pad, ty - pad)))
            placed.append(rects[k : k + 1])
            if line is not None and not attached:
                cx, cy = left, top  # the box's top-left corner, where an attached label would be
                px, py = min(max(cx, rects[k, 0]), rects[k, 2]), min(max(cy, rects[k, 1]), rects[k, 3])
                line.set_data(*to_data.transform([(cx, cy), (px, py)]).T)
                line.set_visible(True)

    def _fixed_obstacles(self, renderer: Any) -> np.ndarray:
        """Pixel rectangles of the axes' other texts, which stay where they are."""
        mine = {id(t) for t, *_ in self.items}
        out = [t.get_window_extent(renderer).extents for t in self.ax.texts
               if id(t) not in mine and t.get_visible() and t.get_text()]
        for a in self.avoided:
            if a.get_visible():
                if hasattr(a, "update_positions"):  # an annotation: where its arrow goes depends on the layout
                    a.update_positions(renderer)
                shape = getattr(a, "arrow_patch", None) or a
                out.append(shape.get_window_extent(renderer).extents)
        return np.asarray(out, float).reshape(-1, 4)


def _patch_pad(text: Text, renderer: Any) -> float:
    """Pixels the label's background patch reaches beyond the text, plus the gap kept."""
    patch = text.get_bbox_patch()
    if patch is None:
        return GAP
    pad = getattr(patch.get_boxstyle(), "pad", 0.3)
    return pad * renderer.points_to_pixels(text.get_fontsize()) + renderer.points_to_pixels(patch.get_linewidth()) / 2 + GAP


def _candidates(left, right, bottom, top, w, h, frame, far: bool = False) -> np.ndarray:
    """``(K, 2)`` top-left corners to try, in order: touching the box, or (``far``) on rings around its corner."""
    if far:
        reach = 0.6 * max(frame.width, frame.height)
        r = np.arange(h, reach, h * 0.75)
        n = np.maximum(8, (2 * np.pi * r / (h * 0.75)).astype(int))
        rr = np.repeat(r, n)
        t = np.concatenate([np.linspace(0, 2 * np.pi, m, endpoint=False) for m in n]) + np.pi / 4
        return np.column_stack([left + rr * np.cos(t) - w / 2, top + rr * np.sin(t) + h / 2])
    near = [(left, top), (left, top + h), (right - w, top), (right - w, top + h), (left, bottom + h),
            (left, bottom), (right - w, bottom + h), (right - w, bottom), (left - w, top), (right, top)]
    step = max(h / 2, 2.0)
    near += [(left, y) for y in np.arange(top - step, bottom + h - 1e-6, -step)]  # down the left edge, inside
    near += [(x, top) for x in np.arange(left + step, right - w + 1e-6, step)]  # along the top edge, inside
    near += [(x, top + h) for x in np.arange(left + step, right - w + 1e-6, step)]  # along the top edge, above
    near += [(left - w, y) for y in np.arange(top - step, bottom + h - 1e-6, -step)]  # down the left edge, outside
    return np.asarray(near, float)


def _overlap_area(rects: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``(K,)`` summed overlap (px^2) of each candidate ``rects`` ``(K, 4)`` with ``others`` ``(P, 4)``."""
    if not len(others):
        return np.zeros(len(rects))
    ox = np.minimum(rects[:, None, 2], others[None, :, 2]) - np.maximum(rects[:, None, 0], others[None, :, 0])
    oy = np.minimum(rects[:, None, 3], others[None, :, 3]) - np.maximum(rects[:, None, 1], others[None, :, 1])
    return (np.clip(ox, 0, None) * np.clip(oy, 0, None)).sum(axis=1)


def placer_for(ax: Axes) -> LabelPlacer:
    """The axes' :class:`LabelPlacer`, made on first use and again after ``ax.clear()`` (which drops it)."""
    placer = getattr(ax, "_ssd_label_placer", None)
    if placer is None or placer not in ax.artists:
        placer = LabelPlacer(ax)
        ax._ssd_label_placer = placer
    return placer


# ---------------------------------------------------------------- measuring a figure's text
def legibility(fig: Any, dpi: float = 90, tol: float = 1.0) -> dict[str, Any]:
    """Draw ``fig`` at ``dpi`` and measure every text the renderer actually drew (box labels, ticks,
    titles, legends, axis labels): ``{"texts": n, "min_height": px, "small": [...], "overlaps": [(a, b), ...],
    "cut": [...], "touching": [...], "size": (w, h)}``. A pair overlaps when their pixel boxes share more
    than ``tol`` px both ways, and touches when they come within ``tol`` px of each other both ways (what
    tick labels must not do); a text is cut when its clip box does not hold it whole; heights are the
    text's thickness across its line.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    old_canvas, old_dpi = fig.canvas, fig.dpi
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    try:
        renderer = canvas.get_renderer()
        drawn: dict[int, Text] = {}
        text_draw = Text.draw

        def record(self, r, *args, **kwargs):  # every text that is drawn, path effects or not
            if self.get_visible() and str(self.get_text()).strip():
                drawn[id(self)] = self
            return text_draw(self, r, *args, **kwargs)

        Text.draw = record
        canvas._is_saving = True  # as savefig draws: the animated artists (a widget's moving parts) too
        try:
            fig.draw(renderer)
        finally:
            Text.draw = text_draw
        texts = list(drawn.values())
        ext = np.array([t.get_window_extent(renderer).extents for t in texts]).reshape(-1, 4)
        thick = np.array([e[3] - e[1] if round(t.get_rotation()) % 180 == 0 else e[2] - e[0]
                          for t, e in zip(texts, ext)])
        name = [repr(t.get_text()) for t in texts]
        ox = np.minimum(ext[:, None, 2], ext[None, :, 2]) - np.maximum(ext[:, None, 0], ext[None, :, 0])
        oy = np.minimum(ext[:, None, 3], ext[None, :, 3]) - np.maximum(ext[:, None, 1], ext[None, :, 1])
        i, j = np.nonzero(np.triu((ox > tol) & (oy > tol), 1))
        ti, tj = np.nonzero(np.triu((ox > -tol) & (oy > -tol), 1))
        cut = []
        for t, e, nm in zip(texts, ext, name):
            box = t.get_clip_box() if t.get_clip_on() else None
            if box is not None and (e[0] < box.x0 - tol or e[2] > box.x1 + tol or e[1] < box.y0 - tol
                                    or e[3] > box.y1 + tol):
                cut.append(nm)
        return {"texts": len(texts), "min_height": float(thick.min()) if len(thick) else float("nan"),
                "small": [(name[k], round(float(thick[k]), 1)) for k in np.flatnonzero(thick < 8)],
                "overlaps": [(name[a], name[b]) for a, b in zip(i, j)], "cut": cut,
                "touching": [(name[a], name[b]) for a, b in zip(ti, tj)],
                "size": (round(fig.get_figwidth() * dpi), round(fig.get_figheight() * dpi))}
    finally:
        fig.set_dpi(old_dpi)
        fig.set_canvas(old_canvas)
