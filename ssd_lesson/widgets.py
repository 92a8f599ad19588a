"""Two ipywidgets for the notebooks: a box's four activations (notebook 3) and the IoU threshold (notebook 5).

Each widget owns one matplotlib :class:`~matplotlib.figure.Figure` and redraws
*that* figure on every change, showing it as a PNG in an ``ipywidgets.Image``, so it
works under ``%matplotlib inline`` (no ipympl needed) and in tests without a
browser. ``.set(...)`` moves the controls as a learner would; the attributes
(``.pred_box``, ``.positive_count``, ...) hold exactly what is on display.
Boxes are ``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

import base64
import io
import math
from typing import Any, Literal, Optional, Sequence

import ipywidgets as W
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import figures, plots
from .anchors import Anchors, activations_to_boxes
from .loss import SSDLossResult, ssd_loss
from .matching import IOU_THRESHOLD

__all__ = ["BoxWidget", "ThresholdWidget"]

ACTIVATIONS = ("dy", "dx", "dh", "dw")


def _png(fig: Figure, dpi: int, fmt: str = "png") -> bytes:
    """The figure as image bytes: PNG, or JPEG (quality 90: 4x smaller for figures full of photographs)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, **({"pil_kwargs": {"quality": 90}} if fmt == "jpeg" else {}))
    return buf.getvalue()


class _Shown:
    """Shared plumbing: the widget tree is ``self.widget``; displaying the object displays it."""

    widget: W.Widget
    figure: Figure
    image: W.Image
    dpi: int

    def _render(self) -> None:
        self.image.value = _png(self.figure, self.dpi, self.image.format)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view plus a static copy of its figure as it is now (``image/png`` or ``image/jpeg``).

        JupyterLab shows the live widget; a page without a widget renderer (an HTML
        export opened offline, GitHub's viewer) shows the widget's own figure instead.
        """
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, tuple):  # (data, metadata)
            data, metadata = bundle
        else:
            data, metadata = bundle, None
        if data is not None and self.image.value:
            data = dict(data)
            data[f"image/{self.image.format}"] = base64.b64encode(self.image.value).decode("ascii")
        return data if metadata is None else (data, metadata)


class BoxWidget(_Shown):
    """Pick one of the anchor boxes and drag its activations ``(dy, dx, dh, dw)``.

    The figure shows the box's grid, its grid cell (shaded: where the predicted
    centre may go, half a cell either way), the anchor box (dashed), the predicted
    box (solid) and, dotted, the smallest and largest box it can become (0.5x and
    1.5x the anchor's height and width). Sliders are clamped to ``+-limit``.

    Args:
        example: a ``data.Example`` or :class:`~ssd_lesson.plots.Scene`.
        anchors: from ``make_anchors()``.
        box_actns: ``(A, 4)`` or ``(1, A, 4)`` starting activations (e.g. the model's); zeros if None.
        index: the box shown first.
        image_format: ``"png"`` or ``"jpeg"`` (smaller, for figures full of photographs).
    """

    def __init__(self, example: Any, anchors: Anchors, box_actns: Any = None, index: int = 11,
                 limit: float = 4.0, dpi: int = 90, image_format: Literal["png", "jpeg"] = "png"):
        self.scene, self.anchors, self.dpi, self._hold = plots.as_scene(example), anchors, dpi, False
        start = torch.zeros(len(anchors), 4) if box_actns is None else torch.as_tensor(box_actns).detach().float()
        self.actns = start.reshape(len(anchors), 4).clone()  # edited in place, one row per box
        # Wide enough for every given activation: a clamped slider would silently move the box.
        limit = max(float(limit), math.ceil(float(self.actns.abs().max())))
        options = [(self._describe(a), a) for a in range(len(anchors))]
        self.box = W.Dropdown(options=options, value=index, description="box", layout=W.Layout(width="460px"))
        self.sliders = {k: W.FloatSlider(value=0.0, min=-limit, max=limit, step=0.05, description=k,
                                         continuous_update=False, readout_format=".2f") for k in ACTIVATIONS}
        self.readout = W.HTML()
        self.image = W.Image(format=image_format)
        self.figure = Figure(figsize=(6.5, 6.8), layout="constrained")
        self.ax = self.figure.subplots()
        self.widget = W.VBox([self.box, W.HBox([W.VBox(list(self.sliders.values())), self.readout]), self.image])
        self.box.observe(lambda _: self._load_box(), names="value")
        for k, s in self.sliders.items():
            s.observe(lambda ch, k=k: self._slide(k, ch["new"]), names="value")
        self._load_box()

    def _describe(self, a: int) -> str:
        i = self.anchors.info(a)
        return f"{a}: {i.grid}x{i.grid} grid, cell ({i.row}, {i.col}), zoom {i.zoom}, ratio {i.ratio}"

    # ---- state
    @property
    def index(self) -> int:
        return int(self.box.value)

    @property
    def activations(self) -> torch.Tensor:
        """``(4,)`` the shown box's ``(dy, dx, dh, dw)``."""
        return self.actns[self.index].clone()

    @property
    def pred_boxes(self) -> torch.Tensor:
        """``(A, 4)`` every predicted box under the current activations."""
        return activations_to_boxes(self.actns.unsqueeze(0), self.anchors)[0]

    @property
    def pred_box(self) -> torch.Tensor:
        """``(4,)`` the shown predicted box, ``(y0, x0, y1, x1)``."""
        return self.pred_boxes[self.index]

    @property
    def anchor_box(self) -> torch.Tensor:
        return self.anchors.corners[self.index]

    def set(self, index: Optional[int] = None, **activations: float) -> "BoxWidget":
        """Choose a box and/or move sliders, e.g. ``set(index=11, dx=4)``; values beyond the slider clamp."""
        unknown = set(activations) - set(ACTIVATIONS)
        if unknown:
            raise ValueError(f"unknown activation(s) {sorted(unknown)}; expected some of {ACTIVATIONS}")
        if index is not None:
            self.box.value = int(index)
        self._hold = True  # one redraw for the lot
        try:
            for k, v in activations.items():
                self.sliders[k].value = float(v)
        finally:
            self._hold = False
        self._update()
        return self

    # ---- events
    def _load_box(self) -> None:
        self._hold = True
        try:
            for k, v in zip(ACTIVATIONS, self.actns[self.index].tolist()):
                self.sliders[k].value = v  # the slider clamps; the clamped value is stored back
        finally:
            self._hold = False
        self._update()

    def _slide(self, k: str, v: float) -> None:
        self.actns[self.index, ACTIVATIONS.index(k)] = float(v)
        if not self._hold:
            self._update()

    def _update(self) -> None:
        for k, s in self.sliders.items():  # the sliders are the truth: store what they show
            self.actns[self.index, ACTIVATIONS.index(k)] = float(s.value)
        self._draw()
        t = torch.tanh(self.activations).tolist()
        rows = "".join(f"<tr><td>{k}</td><td>{v:+.2f}</td><td>{tv:+.3f}</td><td>{what}</td></tr>"
                       for k, v, tv, what in zip(ACTIVATIONS, self.activations.tolist(), t,
                                                 (f"centre {t[0] / 2:+.2f} cell down", f"centre {t[1] / 2:+.2f} cell right",
                                                  f"height x {t[2] / 2 + 1:.2f}", f"width x {t[3] / 2 + 1:.2f}")))
        box = ", ".join(f"{v:.3f}" for v in self.pred_box.tolist())
        self.readout.value = (f"<table><tr><th></th><th>activation</th><th>tanh</th><th>effect</th></tr>{rows}</table>"
                              f"predicted box (y0, x0, y1, x1) = ({box})")
        self._render()

    def _draw(self) -> None:
        ax, a = self.ax, self.index
        info = self.anchors.info(a)
        g, cell = info.grid, 1.0 / info.grid
        ax.clear()
        cy, cx, h, w = self.anchors.centers_hw[a].tolist()
        reach = (cy - cell / 2 - 0.75 * h, cx - cell / 2 - 0.75 * w, cy + cell / 2 + 0.75 * h, cx + cell / 2 + 0.75 * w)
        plots.show_image(ax, self.scene.image, plots.fit_margin(reach, 0.05))  # room for the box's farthest reach
        plots.draw_grid(ax, g)
        ax.add_patch(Rectangle((info.col * cell, info.row * cell), cell, cell, facecolor=(1, 1, 0.6, 0.35),
                                     edgecolor="#ffd000", lw=1.2))
        pb = self.pred_box.tolist()
        py, px = (pb[0] + pb[2]) / 2, (pb[1] + pb[3]) / 2
        for f in (0.5, 1.5):  # the size bounds, about the current centre
            r, _ = plots.draw_box(ax, (py - f * h / 2, px - f * w / 2, py + f * h / 2, px + f * w / 2), "#ffd000",
                                  lw=1.2, ls=":")
        r.set_label("0.5x and 1.5x the anchor box")
        plots.draw_box(ax, self.anchor_box.tolist(), "white", lw=1.8, ls="--")[0].set_label("anchor box")
        c = plots.BOX_COLORS[0]
        plots.draw_box(ax, pb, c, lw=2.4, gid=f"box:{a}")[0].set_label(f"predicted box {a}")
        ax.plot([cx, px], [cy, py], color=c, lw=1.2)
        ax.scatter([px], [py], s=30, color=c, zorder=4)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False,
                  facecolor="none", labelcolor="black", handlelength=2.5)
        ax.get_legend().get_patches()[1].set_edgecolor("black")  # the white dashed anchor box, on a white legend
        ax.set_title(self._describe(a) + "\nshaded: the grid cell, where the predicted centre may go", fontsize=9)


class ThresholdWidget(_Shown):
    """The IoU threshold as a slider: the positive count, the losses and Fig. 6 follow it.

    Args:
        example: a ``data.Example`` or :class:`~ssd_lesson.plots.Scene` (its boxes are the ground truth).
        anchors: from ``make_anchors()``.
        class_logits: ``(1, A, C+1)``; box_actns: ``(1, A, 4)``.
        threshold: the starting value (the lesson's ``IOU_THRESHOLD``, 0.4).
        grids: which grids' columns to draw (default all).
        image_format: ``"png"`` or ``"jpeg"`` (smaller, for figures full of photographs).
    """

    def __init__(self, example: Any, anchors: Anchors, class_logits: torch.Tensor, box_actns: torch.Tensor,
                 threshold: float = IOU_THRESHOLD, match_on: Literal["predictions", "anchors"] = "predictions",
                 grids: Optional[Sequence[int]] = None, dpi: int = 80,
                 image_format: Literal["png", "jpeg"] = "png"):
        self.scene, self.anchors, self.dpi, self.match_on = plots.as_scene(example), anchors, dpi, match_on
        self.class_logits, self.box_actns = class_logits.detach(), box_actns.detach()
        self.gt_boxes = torch.as_tensor(np.asarray(self.scene.boxes), dtype=self.box_actns.dtype).unsqueeze(0)
        self.gt_labels = torch.as_tensor(np.asarray(self.scene.labels), dtype=torch.int64).unsqueeze(0)
        self.slider = W.FloatSlider(value=threshold, min=0.0, max=0.95, step=0.05, description="IoU threshold",
                                    continuous_update=False, style={"description_width": "initial"})
        self.readout = W.HTML()
        self.image = W.Image(format=image_format)
        self.result = self._loss(threshold)
        self.figure, self._artists = figures._class_figure(self.scene, anchors, self.result.pred_boxes[0],
                                                         self.result.match.gt_idx[0], ~self.result.match.positive[0],
                                                         grids=grids)
        self.widget = W.VBox([W.HBox([self.slider, self.readout]), self.image])
        self.slider.observe(lambda _: self._update(), names="value")
        self._update()

    def _loss(self, threshold: float) -> SSDLossResult:
        return ssd_loss(self.class_logits, self.box_actns, self.gt_boxes, self.gt_labels, self.anchors,
                        match_on=self.match_on, iou_threshold=threshold)

    @property
    def threshold(self) -> float:
        return float(self.slider.value)

    @property
    def positive(self) -> torch.Tensor:
        """``(A,)`` bool, the boxes drawn as objects."""
        return self.result.match.positive[0]

    @property
    def positive_count(self) -> int:
        return int(self.positive.sum())

    @property
    def target_labels(self) -> torch.Tensor:
        """``(A,)`` the class drawn at each box, background (C) where not positive."""
        return self.result.target_labels[0]

    def set(self, threshold: float) -> "ThresholdWidget":
        """Move the slider (clamped to its range, rounded to its step by the slider)."""
        self.slider.value = float(threshold)
        return self

    def _update(self) -> None:
        self.result = self._loss(self.threshold)
        gt_idx, bg = self.result.match.gt_idx[0].tolist(), (~self.positive).tolist()
        for a, (n, rect, text) in self._artists.items():
            plots.style_class_box(rect, text, n, self.scene, gt_idx[a], bg[a])
        self.figure.suptitle(f"Fig. 6: overlap <= {self.threshold:.2f} becomes background (bg): "
                             f"{self.positive_count} positive boxes", fontsize=13)
        self.readout.value = (f"<b>{self.positive_count}</b> of {len(self.anchors)} boxes positive; "
                              f"classification {float(self.result.classification[0]):.4f}, "
                              f"regression {float(self.result.regression[0]):.4f}")
        self._render()
