"""The anchor layout as a widget (notebook 2): grids, zooms and ratios, and every anchor box they make.

Like every widget of :mod:`ssd_lesson.course.widgets`, it owns one figure drawn once (the photo: the cached
background) and on each change redraws only what moves (:class:`~ssd_lesson.course.widgets.base.Frames`),
shown at its own pixel size with a static copy for offline pages; ``.set(...)`` moves the controls
as a learner would and the attributes hold what is on display. Boxes are ``(y0, x0, y1, x1)``
fractions of the image.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import ipywidgets as W
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ...core.anchors import AnchorSpec, make_anchors
from ...drawing import plots
from .base import MARGIN_COLOR, Coalesce, FigureWidget, Frames, animate, display_args, refuse, scene_arg

__all__ = ["AnchorWidget", "GRID_CHOICES", "ZOOM_CHOICES", "RATIO_CHOICES"]

GRID_CHOICES = ((4, 2, 1), (4,), (2, 1), (8, 4, 2, 1), (1,))
ZOOM_CHOICES = ((0.7, 1.0, 1.3), (1.0,), (0.5, 1.0, 1.5, 2.0))
RATIO_CHOICES = (((1.0, 1.0), (1.0, 0.5), (0.5, 1.0)), ((1.0, 1.0),),
                 ((1.0, 1.0), (1.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 1.0)))


def _outlines(corners: np.ndarray) -> np.ndarray:
    """``(N, 5, 2)`` closed ``(x, y)`` outlines of ``(N, 4)`` ``(y0, x0, y1, x1)`` boxes."""
    y0, x0, y1, x1 = corners.T
    return np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x1, y1], 1),
                     np.stack([x0, y1], 1), np.stack([x0, y0], 1)], 1)


class AnchorWidget(FigureWidget):
    """Grids, zooms and ratios: the anchor boxes they make, drawn on the photo, and their count.

    Starts at the lesson's layout (``AnchorSpec()``: 189 boxes); the ``SSD300`` toggle shows
    SSD300's layout (:meth:`AnchorSpec.ssd300`, 8,732 boxes) in one click. ``.anchors`` is
    ``make_anchors(.spec)``, ``.count`` its length: the readout and the figure show exactly these.
    """

    def __init__(self, example: Any, dpi: int = 80, image_format: Literal["png", "jpeg"] = "png"):
        self.dpi = display_args("AnchorWidget", dpi, image_format)
        self.scene = scene_arg("AnchorWidget", example)
        style, lay = {"description_width": "60px"}, W.Layout(width="340px")
        self.grids = W.Dropdown(options=[(str(g), g) for g in GRID_CHOICES], description="grids", style=style,
                                layout=lay)
        self.zooms = W.Dropdown(options=[(str(z), z) for z in ZOOM_CHOICES], description="zooms", style=style,
                                layout=lay)
        self.ratios = W.Dropdown(options=[(", ".join(f"({h:g}, {w:g})" for h, w in r), r) for r in RATIO_CHOICES],
                                 description="ratios", style=style, layout=lay)
        self.ssd300 = W.ToggleButton(value=False, description="SSD300 (8,732)", layout=W.Layout(width="160px"))
        self.readout = W.HTML(layout=W.Layout(width="340px"))
        self.image = W.Image(format=image_format)
        self.figure = Figure(figsize=(5.0, 5.0), layout="constrained")
        self.ax = self.figure.subplots()
        plots.show_image(self.ax, self.scene.image, 0.3)
        self.ax.set_facecolor(MARGIN_COLOR)
        self.boxes = LineCollection([], linewidths=0.7)
        self.ax.add_collection(self.boxes)
        animate(self.boxes, self.ax.title)
        self.frames = Frames(self.figure, dpi)
        self.widget = W.HBox([W.VBox([self.grids, self.zooms, self.ratios, self.ssd300, self.readout]), self.image])
        self._later = later = Coalesce(self._update)
        for c in (self.grids, self.zooms, self.ratios, self.ssd300):
            c.observe(later, names="value")
        self._update()

    @property
    def spec(self) -> AnchorSpec:
        """The layout the controls describe."""
        if self.ssd300.value:
            return AnchorSpec.ssd300()
        return AnchorSpec(grids=self.grids.value, zooms=self.zooms.value, ratios=self.ratios.value)

    count = property(lambda self: len(self.anchors))

    def set(self, grids: Any = None, zooms: Any = None, ratios: Any = None, ssd300: Any = None) -> "AnchorWidget":
        """Choose a layout as a learner would: ``grids``, ``zooms``, ``ratios`` from the choices listed
        (``GRID_CHOICES``, ...), ``ssd300=True`` for SSD300's; anything else is refused, nothing changed."""
        for name, value, choices in (("grids", grids, GRID_CHOICES), ("zooms", zooms, ZOOM_CHOICES),
                                     ("ratios", ratios, RATIO_CHOICES)):
            if value is not None and not isinstance(value, (list, tuple)):
                refuse("AnchorWidget.set", name, f"a tuple, one of {', '.join(map(str, choices))}", value, TypeError)
            if value is not None and tuple(map(_tuple, value)) not in choices:
                raise ValueError(f"{name} {value!r} is not one of the choices: {', '.join(map(str, choices))}")
        if ssd300 is not None and not isinstance(ssd300, (bool, np.bool_)):
            refuse("AnchorWidget.set", "ssd300", "True or False", ssd300, TypeError)
        with self._later.hold():  # one redraw for the lot
            if grids is not None:
                self.grids.value = tuple(grids)
            if zooms is not None:
                self.zooms.value = tuple(zooms)
            if ratios is not None:
                self.ratios.value = tuple(tuple(r) for r in ratios)
            if ssd300 is not None:
                self.ssd300.value = bool(ssd300)
        return self

    def _update(self, *_: Any) -> None:
        spec = self.spec
        for c in (self.grids, self.zooms, self.ratios):
            c.disabled = self.ssd300.value
        self.anchors = make_anchors(spec)
        corners = self.anchors.corners.numpy()
        colors = plots.grid_colors(self.anchors)
        self.boxes.set_segments(_outlines(corners))
        self.boxes.set_color([colors[int(g)] for g in self.anchors.grid_index])
        self.boxes.set_alpha(max(0.08, min(0.8, 40 / math.sqrt(len(corners)) / 3)))
        self.ax.set_title(f"{self.count:,} anchor boxes", fontsize=10)
        self._legend(spec, colors)
        terms = [f"{g}²·{spec.k(i)}" for i, g in enumerate(spec.grids)]
        self.readout.value = (f"<b>{self.count:,}</b> anchor boxes = {' + '.join(terms)}<br>"
                              "<small>(cells per grid times boxes per cell, grid by grid)</small>")
        self.frames.show(self.image)

    def _legend(self, spec: AnchorSpec, colors: list) -> None:
        """The colours named, one entry per grid with its count of boxes, in the grey margin under the photo."""
        if getattr(self, "legend", None) is not None:
            self.legend.remove()
        handles = [Line2D([], [], color=colors[i], lw=2, label=f"{g}x{g} grid: {g * g * spec.k(i):,}")
                   for i, g in enumerate(spec.grids)]
        self.legend = self.ax.legend(handles=handles, loc="lower center", ncol=min(3, len(handles)), fontsize=8,
                                     framealpha=0.9, borderpad=0.3, handlelength=1.5, columnspacing=1.0)
        animate(self.legend)


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v
