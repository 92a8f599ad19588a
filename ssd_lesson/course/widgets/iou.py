"""The IoU of two boxes as a widget (notebook 4): move and resize one box over a fixed one.

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
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ...core.boxes import box_area, box_iou
from ...drawing import plots
from .base import Coalesce, FigureWidget, Frames, animate, display_args, number_arg, scene_arg

__all__ = ["IouWidget"]


class IouWidget(FigureWidget):
    """Two boxes on the photo: a fixed one (ground truth ``gt``) and one the learner moves and resizes.

    The sliders give the moving box's centre ``(cy, cx)`` and size ``(h, w)`` as fractions of the
    image, 0.02 a key press. The figure fills their intersection; the readout gives both areas, the
    intersection, the union and the IoU, each from :func:`~ssd_lesson.core.boxes.box_iou` and
    :func:`~ssd_lesson.core.boxes.box_area`.
    """

    NAMES = ("cy", "cx", "h", "w")

    def __init__(self, example: Any, gt: int = 0, dpi: int = 80, image_format: Literal["png", "jpeg"] = "png",
                 step: float = 0.02):
        self.dpi = display_args("IouWidget", dpi, image_format)
        self.scene = scene_arg("IouWidget", example)
        step = number_arg("IouWidget", "step", step, 0.001, 0.5)
        if not len(self.scene.boxes):
            raise ValueError("IouWidget: example must hold a ground-truth box (the fixed one); this one has none")
        if not 0 <= number_arg("IouWidget", "gt", gt, whole=True) < len(self.scene.boxes):
            raise ValueError(f"IouWidget: gt {gt!r} is out of range: the image has ground-truth boxes 0 to {len(self.scene.boxes) - 1}")
        self.fixed = torch.as_tensor(np.asarray(self.scene.boxes[int(gt)]), dtype=torch.float32)
        y0, x0, y1, x1 = self.fixed.tolist()
        start = ((y0 + y1) / 2 + 0.1, (x0 + x1) / 2 + 0.1, y1 - y0, x1 - x0)  # a shifted copy: a partial overlap
        st, lay = {"description_width": "40px"}, W.Layout(width="320px")
        self.sliders = {k: W.FloatSlider(value=round(min(max(v, 0.02), 0.98) / step) * step, min=0.02, max=0.98,
                                         step=step, readout_format=".2f", description=k, style=st, layout=lay,
                                         continuous_update=True)
                        for k, v in zip(self.NAMES, start)}
        self.readout = W.HTML(layout=W.Layout(width="320px"))
        self.image = W.Image(format=image_format)
        self.figure = Figure(figsize=(4.6, 4.6), layout="constrained")
        self.ax = self.figure.subplots()
        plots.show_image(self.ax, self.scene.image, 0.0)
        plots.draw_box(self.ax, self.fixed.tolist(), plots.GT_COLORS[int(gt) % len(plots.GT_COLORS)],
                       self.scene.gt_label(int(gt)), lw=2.2, gid="fixed")
        self.moving = Rectangle((0, 0), 0, 0, fill=False, edgecolor=plots.BOX_COLORS[0], lw=2.4, gid="moving")
        self.inter = Rectangle((0, 0), 0, 0, facecolor=(1, 1, 0.2, 0.55), edgecolor="none", gid="intersection")
        self.ax.add_patch(self.inter)
        self.ax.add_patch(self.moving)
        animate(self.moving, self.inter, self.ax.title)
        self.frames = Frames(self.figure, dpi)
        self.widget = W.HBox([W.VBox([*self.sliders.values(), self.readout]), self.image])
        self._later = later = Coalesce(self._update)
        for s in self.sliders.values():
            s.observe(later, names="value")
        self._update()

    @property
    def box(self) -> torch.Tensor:
        """``(4,)`` the moving box ``(y0, x0, y1, x1)``."""
        cy, cx, h, w = (float(self.sliders[k].value) for k in self.NAMES)
        return torch.tensor([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])

    def set(self, **values: float) -> "IouWidget":
        """Move the sliders (``cy``, ``cx``, ``h``, ``w``; clamped to [0.02, 0.98]); NaN or unknown names refused."""
        unknown = set(values) - set(self.NAMES)
        if unknown:
            raise ValueError(f"unknown slider(s) {sorted(unknown)}; expected some of {self.NAMES}")
        for k, v in values.items():
            if isinstance(v, float) and math.isnan(v):
                raise ValueError(f"{k} = nan is not a number; the slider takes 0.02 to 0.98")
            number_arg("IouWidget.set", k, v)  # text, a bool, a list: refused, naming the slider
        with self._later.hold():  # one redraw for the lot
            for k, v in values.items():
                self.sliders[k].value = float(v)
        return self

    def _update(self, *_: Any) -> None:
        a, b = self.fixed, self.box
        self.iou = float(box_iou(a[None], b[None])[0, 0])
        lo, hi = torch.maximum(a[:2], b[:2]), torch.minimum(a[2:], b[2:])
        self.intersection_box = torch.cat([lo, torch.maximum(hi, lo)])
        self.intersection = float(box_area(self.intersection_box[None])[0])
        self.areas = float(box_area(a[None])[0]), float(box_area(b[None])[0])
        self.union = self.areas[0] + self.areas[1] - self.intersection
        y0, x0, y1, x1 = b.tolist()
        self.moving.set_bounds(x0, y0, x1 - x0, y1 - y0)
        iy0, ix0, iy1, ix1 = self.intersection_box.tolist()
        self.inter.set_bounds(ix0, iy0, ix1 - ix0, iy1 - iy0)
        self.ax.set_title(f"IoU = {self.iou:.3f} (yellow: the intersection)", fontsize=10)
        self.readout.value = (f"IoU = intersection / union = {self.intersection:.4f} / {self.union:.4f} = "
                              f"<b>{self.iou:.4f}</b><br><small>areas: fixed {self.areas[0]:.4f}, moving "
                              f"{self.areas[1]:.4f}; union = sum - intersection</small>")
        self.frames.show(self.image)
