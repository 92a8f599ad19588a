"""A box's four activations as a widget (notebook 3): slide them and see the predicted box move.

The widget owns one matplotlib :class:`~matplotlib.figure.Figure` and redraws
*that* figure on every change, shown at its own pixel size (:mod:`ssd_lesson.course.widgets.base`). Controls and figure fit one
1440x900 screen, and every keyboard step of a control changes the figure.
``.set(...)`` moves the controls as a learner would; the attributes
(``.pred_box``, ``.positive_count``, ...) hold exactly what is on display.
Boxes are ``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Optional

import ipywidgets as W
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ...drawing import plots
from ...core.anchors import Anchors, activations_to_boxes
from ...drawing.placement import placer_for
from .base import MARGIN_COLOR, Coalesce, FigureWidget, Frames, animate, display_args, number_arg, refuse, scene_arg

__all__ = ["BoxWidget"]

ACTIVATIONS = ("dy", "dx", "dh", "dw")
TANH_LIMIT = 0.99  # the sliders move tanh(activation) in [-0.99, 0.99] (activation +-2.65)
TANH_STEP = 0.03  # one keyboard step: 1.5 % of a cell (centre) or of the anchor's side (size); 0 is on the grid


def _shift(cells: float, plus: str, minus: str) -> str:
    """``'centre 0.480 cell up'``: a signed move of the centre, in cells, said with its direction."""
    return f"centre {abs(cells):.3f} cell {plus if cells >= 0 else minus}" if round(cells, 3) else "centre on the anchor"


def _tanh_inset(ax: Any, span: float = 3.0) -> None:
    """A small ``tanh`` curve (the dots come from :func:`_tanh_dots`)."""
    x = np.linspace(-span, span, 121)
    ax.plot(x, np.tanh(x), color="0.35", lw=1.2)
    ax.axhspan(-TANH_LIMIT, TANH_LIMIT, color="#ffd000", alpha=0.12, lw=0)
    ax.hlines([-1, 1], -span, span, color="0.6", lw=0.6, ls=":")
    ax.set(xlim=(-span, span), ylim=(-1.1, 1.1), xticks=[-span, 0, span], yticks=[-1, 0, 1])
    ax.tick_params(labelsize=7, length=2)
    ax.set_xlabel("activation", fontsize=7, labelpad=1)
    ax.set_title("tanh(activation)", fontsize=8)


def _tanh_dots(ax: Any, points: dict[str, float], span: float = 3.0) -> None:
    """Each named activation marked where it sits on the tanh curve, its name beside it. Activations at the
    same point (two sliders at one bound) share one label, ``'dx, dw'``, and their dots nest, largest first,
    so that every colour still shows."""
    colors = {k: plots.BOX_COLORS[3 + j] for j, k in enumerate(points)}
    spots: dict[float, list[str]] = {}
    for k, a in points.items():  # one spot per point on the curve, as the dots are drawn (the tanh as shown)
        spots.setdefault(round(float(np.clip(a, -span, span)), 2), []).append(k)
    for shown, names in spots.items():
        a = points[names[0]]
        y = math.tanh(a)
        for n, k in enumerate(names):
            ax.scatter([shown], [y], s=28 * (1 + 1.2 * (len(names) - 1 - n)), color=colors[k], zorder=3 + 0.01 * n,
                       marker=">" if a > span else "<" if a < -span else "o")
        color = colors[names[0]] if len(names) == 1 else "0.15"  # the name goes where the placer finds room
        placer_for(ax).add(ax.text(shown, y, ", ".join(names), fontsize=7, color=color, clip_on=True),
                           (y, shown, y, shown), color)


def _check_index(index: Any, count: int) -> int:
    """``index`` as a box number in ``[0, count)``, or a ValueError naming it and the range."""
    try:
        if isinstance(index, (bool, np.bool_)):
            raise TypeError("a bool is not a box number")
        a = int(index)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"box index {index!r} is not a whole number; boxes are 0 to {count - 1}") from None
    if a != index or not 0 <= a < count:
        raise ValueError(f"box index {index!r} is out of range: boxes are 0 to {count - 1}")
    return a


def _slider_number(where: str, name: str, value: Any) -> float:
    """A slider's value as a float: NaN passes (refused by ``_set``, naming the slider and its range); text, a
    bool or a list is a TypeError naming it."""
    if isinstance(value, float) and math.isnan(value):
        return value
    return number_arg(where, name, value)


def _checked_activations(box_actns: Any, count: int) -> torch.Tensor:
    """``(count, 4)`` float activations from ``(count, 4)`` or ``(1, count, 4)`` (zeros if None); a ValueError
    names a wrong shape or the boxes holding NaN or infinite values."""
    if box_actns is None:
        return torch.zeros(count, 4)
    t = torch.as_tensor(box_actns).detach().float()
    if tuple(t.shape) not in ((count, 4), (1, count, 4)):
        raise ValueError(f"box_actns has shape {tuple(t.shape)}; expected ({count}, 4) or (1, {count}, 4): "
                         f"(dy, dx, dh, dw) for each of the {count} boxes")
    t = t.reshape(count, 4).clone()
    bad = torch.nonzero(~torch.isfinite(t).all(1)).flatten().tolist()
    if bad:
        raise ValueError(f"box_actns holds NaN or infinite values at box(es) {bad[:10]}{' ...' if len(bad) > 10 else ''}"
                         "; activations must be finite numbers")
    return t


class BoxWidget(FigureWidget):
    """Pick one of the anchor boxes and slide its activations ``(dy, dx, dh, dw)`` in tanh space.

    Each slider moves ``tanh(activation)`` in ``[-0.99, 0.99]`` by 0.03 a key press: the
    box moves by the same amount at every position (a slider of raw activations only
    moves it near 0, and not at all where the model's activations saturate). The
    readout gives each activation, its tanh and its effect; an inset marks where the
    activations sit on the tanh curve. The figure zooms on the box's reach: its grid
    cell (shaded: where the predicted centre may go), the anchor box (dashed), the
    predicted box (solid) and, dotted, the smallest and largest box it can become
    (0.5x and 1.5x the anchor's height and width), on a grey margin.

    Args:
        example: a ``data.Example`` or :class:`~ssd_lesson.drawing.plots.Scene`.
        anchors: from ``make_anchors()``.
        box_actns: ``(A, 4)`` or ``(1, A, 4)`` starting activations (e.g. the model's); zeros if None.
        index: the box shown first.
        image_format: ``"png"`` or ``"jpeg"`` (smaller, for figures full of photographs).
    """

    def __init__(self, example: Any, anchors: Anchors, box_actns: Any = None, index: int = 11,
                 dpi: int = 90, image_format: Literal["png", "jpeg"] = "png", step: float = TANH_STEP):
        self.dpi, self._hold = display_args("BoxWidget", dpi, image_format), False
        self.scene, self.anchors = scene_arg("BoxWidget", example), anchors
        if not isinstance(anchors, Anchors):
            refuse("BoxWidget", "anchors", "the Anchors of make_anchors()", anchors, TypeError)
        step = number_arg("BoxWidget", "step", step, 0.001, TANH_LIMIT)
        self.actns = _checked_activations(box_actns, len(anchors))  # edited in place, one row per box
        _check_index(index, len(anchors))
        self.limit = TANH_LIMIT  # the sliders' bound, in tanh units
        self.activation_limit = math.atanh(TANH_LIMIT)  # the same bound as an activation (2.65)
        options = [(self._describe(a), a) for a in range(len(anchors))]
        self.box = W.Dropdown(options=options, value=index, description="box", layout=W.Layout(width="400px"),
                              style={"description_width": "64px"})
        self.sliders = {k: W.FloatSlider(value=0.0, min=-TANH_LIMIT, max=TANH_LIMIT, step=step, description=f"tanh({k})",
                                         continuous_update=False, readout_format=".2f", layout=W.Layout(width="400px"),
                                         style={"description_width": "64px"})
                        for k in ACTIVATIONS}
        self.readout = W.HTML(layout=W.Layout(width="400px"))
        self.image = W.Image(format=image_format)
        self.figure = Figure(figsize=(6.6, 4.8), layout="constrained")
        self.ax, self.inset = self.figure.subplots(1, 2, width_ratios=[4.4, 1.6])
        self.widget = W.HBox([W.VBox([self.box, *self.sliders.values(), self.readout]), self.image])
        self.frames = Frames(self.figure, dpi)
        self._later = Coalesce(self._update)  # a slider's change asks for a redraw; the latest state is drawn
        self.box.observe(lambda _: self._load_box(), names="value")
        for k, s in self.sliders.items():
            s.observe(lambda ch, k=k: self._slide(k, ch["new"]), names="value")
        self._load_box()

    def _describe(self, a: int) -> str:
        i = self.anchors.info(a)
        return f"{a}: {i.grid}x{i.grid} grid, cell ({i.row}, {i.col}), zoom {i.zoom}, ratio {i.ratio}"

    # ---- state
    index = property(lambda self: int(self.box.value))

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

    anchor_box = property(lambda self: self.anchors.corners[self.index])

    def set(self, index: Optional[int] = None, **tanh_values: float) -> "BoxWidget":
        """Choose a box and/or move sliders as a learner would, in the sliders' units (tanh of the
        activation), e.g. ``set(index=11, dx=0.5)``; values beyond ``+-0.99`` clamp."""
        return self._set(index, {k: _slider_number("BoxWidget.set", k, v) for k, v in tanh_values.items()})

    def set_activations(self, index: Optional[int] = None, **activations: float) -> "BoxWidget":
        """Like :meth:`set`, in activations (``dx=1.0`` puts the slider at tanh(1.0) = 0.76); clamped to +-2.65."""
        return self._set(index, {k: math.tanh(_slider_number("BoxWidget.set_activations", k, v))
                                 for k, v in activations.items()})

    def _set(self, index: Optional[int], values: dict[str, float]) -> "BoxWidget":
        unknown = set(values) - set(ACTIVATIONS)
        if unknown:
            raise ValueError(f"unknown activation(s) {sorted(unknown)}; expected some of {ACTIVATIONS}")
        for k, v in values.items():  # every value checked before anything moves: a refusal leaves the widget as it was
            if math.isnan(v):
                raise ValueError(f"tanh({k}) = nan is not a number; the slider takes -{TANH_LIMIT} to {TANH_LIMIT}")
        if index is not None:
            self.box.value = _check_index(index, len(self.anchors))
        self._hold = True  # one redraw for the lot
        try:
            for k, v in values.items():
                self.sliders[k].value = v  # the slider clamps
                self._slide(k, self.sliders[k].value, force=True)
        finally:
            self._hold = False
        self._update()
        return self

    # ---- events
    def _load_box(self) -> None:
        self._hold = True
        try:  # the sliders show the box's activations (clamped to their bound); the activations are kept as given
            for k, v in zip(ACTIVATIONS, self.actns[self.index].tolist()):
                self.sliders[k].value = max(-TANH_LIMIT, min(TANH_LIMIT, math.tanh(v)))
        finally:
            self._hold = False
        self._update()

    def _slide(self, k: str, t: float, force: bool = False) -> None:
        j = ACTIVATIONS.index(k)
        now = float(self.actns[self.index, j])
        if force or abs(max(-TANH_LIMIT, min(TANH_LIMIT, math.tanh(now))) - t) > 1e-9:  # a move, not a reload
            self.actns[self.index, j] = math.atanh(max(-TANH_LIMIT, min(TANH_LIMIT, float(t))))
        if not self._hold:
            self._later()

    def _update(self) -> None:
        self._draw()
        acts = self.activations.tolist()
        t = [math.tanh(v) for v in acts]
        rows = "".join(f"<tr><td>{k}</td><td>{v:+.2f}</td><td>{tv:+.3f}</td><td>{what}</td></tr>"
                       for k, v, tv, what in zip(ACTIVATIONS, acts, t,
                                                 (_shift(t[0] / 2, "down", "up"), _shift(t[1] / 2, "right", "left"),
                                                  f"height x {t[2] / 2 + 1:.3f}", f"width x {t[3] / 2 + 1:.3f}")))
        box = ", ".join(f"{v:.3f}" for v in self.pred_box.tolist())
        self.readout.value = (f"<table><tr><th></th><th>activation</th><th>tanh</th><th>effect</th></tr>{rows}</table>"
                              f"predicted box (y0, x0, y1, x1) = ({box})")
        self.frames.show(self.image)

    def view(self) -> tuple[float, float, float, float]:
        """``(y0, x0, y1, x1)`` shown: the box's farthest reach, square, cut to [-0.2, 1.2] of the image."""
        cy, cx, h, w = self.anchors.centers_hw[self.index].tolist()
        half = min(0.7, 0.5 / self.anchors.info(self.index).grid + 0.75 * max(h, w) + 0.02)
        cy, cx = (min(max(c, half - 0.2), 1.2 - half) for c in (cy, cx))
        return cy - half, cx - half, cy + half, cx + half

    def _draw(self) -> None:
        """A new box: the static parts (photo, grid, cell, anchor, legend, tanh curve) once, then the moving ones;
        the same box: only the moving ones (predicted box, its size bounds, the dots on the tanh curve)."""
        if getattr(self, "_built", None) == self.index:
            self._draw_moving()
            return
        ax, a = self.ax, self.index
        info = self.anchors.info(a)
        g, cell = info.grid, 1.0 / info.grid
        ax.clear()
        self.inset.clear()
        self._moving: list[Any] = []
        plots.show_image(ax, self.scene.image)
        y0, x0, y1, x1 = self.view()
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
        ax.set_facecolor(MARGIN_COLOR)
        plots.draw_grid(ax, g)
        ax.add_patch(Rectangle((info.col * cell, info.row * cell), cell, cell, facecolor=(1, 1, 0.6, 0.35),
                               edgecolor="#ffd000", lw=1.2))
        plots.draw_box(ax, self.anchor_box.tolist(), "black", lw=3.0)  # under the dashes: visible on white too
        plots.draw_box(ax, self.anchor_box.tolist(), "white", lw=1.8, ls="--")[0].set_label("anchor box")
        _tanh_inset(self.inset)
        self.inset.set_box_aspect(1.2)
        animate(placer_for(self.inset))
        self._draw_moving()
        ax.legend(handles=[self._bound, *[p for p in ax.patches if p.get_label() == "anchor box"], self._pred],
                  loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=7, frameon=False,
                  facecolor="none", labelcolor="black", handlelength=2.2, columnspacing=1.0)
        ax.get_legend().get_patches()[1].set_edgecolor("black")  # the white dashed anchor box, on a white legend
        ax.set_title(f"box {a}: {g}x{g} grid, cell ({info.row}, {info.col}), zoom {info.zoom}, ratio {info.ratio}",
                     fontsize=8)
        self.frames.invalidate()
        self._built = a

    def _draw_moving(self) -> None:
        """The artists a slider moves, made anew (animated: drawn over the cached background)."""
        for artist in self._moving:
            artist.remove()
        placer_for(self.inset).items.clear()
        ax, a = self.ax, self.index
        before = set(ax.get_children()) | set(self.inset.get_children())
        _, _, h, w = self.anchors.centers_hw[a].tolist()
        cy, cx = self.anchors.centers_hw[a, :2].tolist()
        pb = self.pred_box.tolist()
        py, px = (pb[0] + pb[2]) / 2, (pb[1] + pb[3]) / 2
        for f in (0.5, 1.5):  # the size bounds, about the current centre
            self._bound, _ = plots.draw_box(ax, (py - f * h / 2, px - f * w / 2, py + f * h / 2, px + f * w / 2),
                                            "#ffd000", lw=1.2, ls=":")
        self._bound.set_label("0.5x and 1.5x the anchor box")
        c = plots.BOX_COLORS[0]
        self._pred = plots.draw_box(ax, pb, c, lw=2.4, gid=f"box:{a}")[0]
        self._pred.set_label(f"predicted box {a}")
        ax.plot([cx, px], [cy, py], color=c, lw=1.2)
        ax.scatter([px], [py], s=30, color=c, zorder=4)
        _tanh_dots(self.inset, dict(zip(ACTIVATIONS, self.activations.tolist())))
        self._moving = [c for c in (*ax.get_children(), *self.inset.get_children()) if c not in before]
        animate(*self._moving)

