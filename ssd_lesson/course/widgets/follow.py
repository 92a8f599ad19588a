"""Follow one predicted box through the whole article: anchor, activations, IoU, match, class, losses, gradient.

:func:`follow_box` computes everything once with :func:`~ssd_lesson.core.loss.ssd_loss`
and :func:`~ssd_lesson.core.loss.loss_gradients`; :func:`follow_box_text` and
:func:`follow_box_figure` show one box of it (the static copy for a stored notebook
or an HTML export), and :class:`FollowBox` is the widget that picks the box by its
number, by (grid, scale, row, col), or by a click on its outline in the Fig. 4 view of all
189 predicted boxes. Boxes are ``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import ipywidgets as W
import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ...drawing import plots
from ...core.anchors import AnchorInfo, Anchors
from ...core.loss import SSDLossResult, loss_gradients, ssd_loss
from ...core.matching import FORCED_OVERLAP
from ...drawing.tables import box_class_losses
from ...drawing.placement import placer_for
from .base import (MARGIN_COLOR, Coalesce, FigureWidget, Frames, animate, display_args, number_arg, one_image_args,
                   pixel_size)

__all__ = ["Followed", "FollowBox", "follow_box", "follow_box_figure", "follow_box_text", "nearest_outline"]
ARROW = 0.09  # the gradient arrows' longest side, as a fraction of the image side: a direction, not a distance
ARROW_COLOR = "#00e5ff"  # cyan: no box or ground truth is drawn in it
#: The widget's margin around the photo, at most (a fraction of its side): room for most boxes that leave the photo,
#: not for all, so that the photo stays large; a box further out is cut at the frame.
FRAME_MARGIN = 0.12


@dataclass
class Followed:
    """One box's numbers, every one taken from the library's result (image 0)."""

    index: int
    info: AnchorInfo
    activations: list[float]  # (dy, dx, dh, dw)
    anchor_box: list[float]
    pred_box: list[float]
    ious: list[float]  # against every ground-truth box
    gt_idx: int
    gt_overlap: float
    forced: bool  # gt_overlap is FORCED_OVERLAP: the best box of ground truth gt_idx
    positive: bool
    target_label: int  # class id; C (background) where not positive
    target_name: str
    threshold: float
    class_loss: float  # this box's BCE (already / C), a share of classification
    classification: float
    l1: Optional[float]  # this box's share of the regression loss (None: background, no share)
    mae: Optional[float]  # its mean absolute corner error against the matched ground truth
    regression: float
    n_positive: int
    grad: list[float]  # d total / d (y0, x0, y1, x1)
    grad_logit: float  # d total / d logit: its target class's, or (background) the largest of the object classes'
    grad_logit_name: str  # which class that is


class _Computed:
    """``ssd_loss`` once, its gradients on the corners and the per-box classification losses."""

    def __init__(self, example: Any, anchors: Anchors, class_logits: torch.Tensor, box_actns: torch.Tensor,
                 **loss_options: Any):
        self.scene, self.anchors = plots.as_scene(example), anchors
        cl = class_logits.detach().clone().requires_grad_(True)
        self.box_actns = box_actns.detach().reshape(1, len(anchors), 4)
        ba = self.box_actns.clone().requires_grad_(True)
        gb = torch.as_tensor(np.asarray(self.scene.boxes), dtype=ba.dtype).unsqueeze(0)
        gl = torch.as_tensor(np.asarray(self.scene.labels), dtype=torch.int64).unsqueeze(0)
        self.result: SSDLossResult = ssd_loss(cl, ba, gb, gl, anchors, **loss_options)
        self.grad_boxes, self.grad_logits = loss_gradients(self.result, cl)
        self.class_losses = box_class_losses(cl, self.result, gammas=())["BCE"].to_numpy()

    def box(self, a: int) -> Followed:
        r, m = self.result, self.result.match
        a = int(a)
        pos, n_pos = bool(m.positive[0, a]), int(m.positive[0].sum())
        pred, target = r.pred_boxes[0, a].detach(), r.target_boxes[0, a].detach()
        mae = float((pred - target).abs().mean()) if pos else None
        l1 = None if mae is None else (mae / n_pos if r.options.regression_reduction == "mean" else mae)
        label = int(r.target_labels[0, a])
        names = self.scene.class_names
        gl = self.grad_logits[a, :len(names)]  # the background column is not scored (BCE on the object classes)
        k = label if label < len(names) else int(gl.argmax())
        return Followed(
            index=a, info=self.anchors.info(a), activations=self.box_actns[0, a].tolist(),
            anchor_box=self.anchors.corners[a].tolist(), pred_box=pred.tolist(), ious=r.ious[0, a].detach().tolist(),
            gt_idx=int(m.gt_idx[0, a]), gt_overlap=float(m.gt_overlap[0, a]),
            forced=bool(m.gt_overlap[0, a] == FORCED_OVERLAP), positive=pos, target_label=label,
            target_name=names[label] if label < len(names) else "background", threshold=r.options.iou_threshold,
            class_loss=float(self.class_losses[a]), classification=float(r.classification[0].detach()),
            l1=l1, mae=mae, regression=float(r.regression[0].detach()), n_positive=n_pos,
            grad=self.grad_boxes[a].tolist(), grad_logit=float(gl[k]), grad_logit_name=names[k])


def follow_box(example: Any, anchors: Anchors, class_logits: torch.Tensor, box_actns: torch.Tensor, index: int,
               **loss_options: Any) -> Followed:
    """Box ``index``'s numbers (``loss_options``: as :func:`~ssd_lesson.core.loss.ssd_loss`)."""
    return _Computed(example, anchors, class_logits, box_actns, **loss_options).box(index)


def _f(values: list[float], fmt: str = ".4f") -> str:
    return "(" + ", ".join(f"{v:{fmt}}" for v in values) + ")"


def _text(f: Followed, scene: Any) -> str:
    i = f.info
    gts = [scene.gt_label(g) for g in range(len(f.ious))]
    if not f.ious:
        why = "the image has no objects: every box is background"
    elif f.forced:
        why = f"forced: the best box of ground truth {f.gt_idx}, gt_overlap set to {FORCED_OVERLAP}"
    elif max(f.ious) <= 0:
        why = "overlaps nothing: gt_idx 0 by default"
    else:
        why = f"its largest IoU is with ground truth {f.gt_idx}"
    cmp = ">" if f.positive else "<="
    lines = [
        f"box {f.index}: {i.grid}x{i.grid} grid, cell (row {i.row}, col {i.col}), scale {i.scale} "
        f"(zoom {i.zoom}, ratio {i.ratio})",
        f"anchor box      (y0, x0, y1, x1) = {_f(f.anchor_box)}",
        f"activations     (dy, dx, dh, dw) = {_f(f.activations, '+.4f')}",
        f"predicted box   (y0, x0, y1, x1) = {_f(f.pred_box)}",
        "IoU with the ground truth: " + (", ".join(f"{g} {v:.4f}" for g, v in zip(gts, f.ious))
                                         or "none (the image has no objects)"),
        f"gt_idx {f.gt_idx}, gt_overlap {f.gt_overlap:.4f} ({why})",
        f"target class: {f.target_name} (gt_overlap {f.gt_overlap:.4f} {cmp} {f.threshold:g}: "
        f"{'object' if f.positive else 'background'})",
        f"classification: its BCE {f.class_loss:.4f} of {f.classification:.4f} "
        f"({100 * f.class_loss / f.classification:.2f} %)",
    ]
    if f.l1 is None:
        lines.append(f"regression: no share (background; {f.n_positive} positives share {f.regression:.4f})")
    else:
        lines.append(f"regression: its corner MAE {f.mae:.4f} / {f.n_positive} positives = {f.l1:.4f} of "
                     f"{f.regression:.4f} ({100 * f.l1 / max(f.regression, 1e-12):.1f} %)")
    if f.positive:
        lines.append(f"gradient d total / d (y0, x0, y1, x1) = {_f(f.grad, '+.2e')}: descent moves each corner "
                     "against it (arrows)")
    else:
        lines.append(f"gradient d total / d (y0, x0, y1, x1) = {_f(f.grad, '+.2e')}: no push (no regression share; "
                     "the class loss does not depend on the corners)")
    if f.positive:
        lines.append(f"gradient d total / d logit of {f.target_name} = {f.grad_logit:+.4f}: descent raises it")
    else:
        lines.append(f"gradient d total / d logit: largest {f.grad_logit:+.4f} ({f.grad_logit_name}): descent lowers "
                     "every object class's logit")
    return "\n".join(lines)


def follow_box_text(example: Any, anchors: Anchors, class_logits: torch.Tensor, box_actns: torch.Tensor,
                    index: int, **loss_options: Any) -> str:
    """Box ``index`` through the article, as lines of text (the widget's readout)."""
    return _text(follow_box(example, anchors, class_logits, box_actns, index, **loss_options), plots.as_scene(example))


def _draw(fig: Figure, f: Followed, scene: Any) -> None:
    """The photo with the box's cell, anchor, prediction, matched ground truth and gradient; its IoU row as bars."""
    fig.clear()
    ax, bars = _draw_frame(fig, scene, min(0.25, plots.fit_margin(np.array([f.pred_box, f.anchor_box]), 0.04)),
                           f.threshold)
    _draw_followed(ax, bars, f, scene)


def _draw_frame(fig: Figure, scene: Any, margin: float, threshold: float) -> tuple[Any, Any]:
    """What does not depend on the box: the photo (with ``margin``) and the IoU bars' axes."""
    ax, bars = fig.subplots(1, 2, width_ratios=[4.0, 1.7])
    plots.show_image(ax, scene.image, margin)
    ax.set_facecolor(MARGIN_COLOR)
    n = len(scene.boxes)
    bars.axvline(threshold, color="0.3", ls="--", lw=1)
    bars.set(yticks=range(n), yticklabels=[scene.gt_label(k) for k in range(n)], xlim=(0, 1),
             ylim=(max(n, 1) - 0.5, -0.5), xlabel="IoU with this box")
    if n == 0:
        bars.text(0.5, 0, "no objects in this image:\nevery box is background", ha="center", va="center", fontsize=8)
    bars.tick_params(labelsize=8)
    bars.xaxis.label.set_size(8.5)
    return ax, bars


def _draw_ground_truth(ax: Any, scene: Any) -> None:
    """Every ground-truth box dashed, with its label: the same for every box followed."""
    for g, box in enumerate(scene.boxes):
        plots.draw_box(ax, box, plots.GT_COLORS[g % len(plots.GT_COLORS)], scene.gt_label(g), lw=1.2, ls="--",
                       fontsize=8, gid=f"gt:{g}")


def _draw_followed(ax: Any, bars: Any, f: Followed, scene: Any, gt_drawn: bool = False) -> list[Any]:
    """The box's own artists on the two axes from :func:`_draw_frame`; returns them (the titles are re-set).
    ``gt_drawn``: the ground truth is drawn already (:func:`_draw_ground_truth`), dashed and labelled."""
    before = set(ax.get_children()) | set(bars.get_children())
    i, cell = f.info, 1.0 / f.info.grid
    plots.draw_grid(ax, i.grid, anchor_dots=False)
    ax.add_patch(Rectangle((i.col * cell, i.row * cell), cell, cell, facecolor=(1, 1, 0.6, 0.3), edgecolor="#ffd000"))
    for g, box in enumerate(scene.boxes):
        strong = g == f.gt_idx and f.positive
        color = plots.GT_COLORS[g % len(plots.GT_COLORS)]
        if gt_drawn:  # the dashed boxes and their labels are already there: only the matched one made solid
            if strong:
                plots.draw_box(ax, box, color, lw=2.6)
            continue
        plots.draw_box(ax, box, color, scene.gt_label(g), lw=2.6 if strong else 1.2, ls="-" if strong else "--",
                       fontsize=8, gid=f"gt:{g}")
    plots.draw_box(ax, f.anchor_box, "black", lw=3.0)
    plots.draw_box(ax, f.anchor_box, "white", lw=1.6, ls="--")
    c = plots.BOX_COLORS[0] if f.positive else plots.BG_COLOR
    plots.draw_box(ax, f.pred_box, "white", lw=5.0)  # a white edge: the box stands out from any photo, grey ones too
    plots.draw_box(ax, f.pred_box, c, f"{f.index}: {f.target_name}", lw=2.6, fontsize=8.5, gid=f"box:{f.index}")
    y0, x0, y1, x1 = f.pred_box
    g = np.array(f.grad)
    # The two corners that make the box, (y0, x0) and (y1, x1); each arrow gives the direction of -gradient
    # only, at most ARROW long, so that its tip is not taken for where the corner should go.
    # Drawn over everything, with a dark edge, and kept free of labels: a box's corner is often where a label sits.
    scale = ARROW / max(float(np.abs(g).max()), 1e-12)
    for (y, x), (gy, gx) in (((y0, x0), (g[0], g[1])), ((y1, x1), (g[2], g[3]))):
        if gy or gx:
            arrow = ax.annotate("", (x - scale * gx, y - scale * gy), (x, y), gid="grad", zorder=10,
                                arrowprops=dict(arrowstyle="-|>,head_length=0.7,head_width=0.4", color=ARROW_COLOR,
                                                lw=2.4, shrinkA=0, shrinkB=0,
                                                path_effects=[patheffects.withStroke(linewidth=4.4, foreground="black")]))
            placer_for(ax).avoid(arrow)
    arrows = "arrows: direction of -gradient" if g.any() else "no arrows: no gradient on its corners"
    ax.set_title(f"box {f.index}: {i.grid}x{i.grid} cell ({i.row}, {i.col}), scale {i.scale}\n"
                 f"dashed white: anchor; {arrows}", fontsize=9)
    colors = [plots.GT_COLORS[k % len(plots.GT_COLORS)] for k in range(len(f.ious))]
    bars.barh(range(len(f.ious)), f.ious, color=colors)
    note = "forced: gt_overlap 1.99" if f.forced else f"gt_overlap {f.gt_overlap:.3f}"
    bars.set_title(f"IoU row; gt_idx {f.gt_idx}\n{note}: {f.target_name}", fontsize=9)
    return [a for a in (*ax.get_children(), *bars.get_children()) if a not in before]


def nearest_outline(boxes: Any, y: float, x: float) -> int:
    """The index of the box ``(N, 4)`` ``(y0, x0, y1, x1)`` whose outline passes nearest the point ``(y, x)``
    (what a click on a drawn rectangle means); between outlines equally near, the smaller box."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    y0, x0 = np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3])
    y1, x1 = np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])
    inside = (y0 <= y) & (y <= y1) & (x0 <= x) & (x <= x1)
    to_edge = np.minimum.reduce([y - y0, y1 - y, x - x0, x1 - x])  # inside: the nearest of the four sides
    dy, dx = np.maximum.reduce([y0 - y, y - y1, 0 * y0]), np.maximum.reduce([x0 - x, x - x1, 0 * x0])
    distance = np.where(inside, to_edge, np.hypot(dy, dx))
    return int(np.lexsort(((y1 - y0) * (x1 - x0), np.round(distance, 12)))[0])


def _draw_pick_view(fig: Figure, anchors: Anchors, scene: Any, boxes: np.ndarray, chosen: int) -> Any:
    """Fig. 4's view of all predicted boxes (thin, by grid), the followed one thick: the click target."""
    fig.clear()
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.9))  # a fixed layout: a click's pixel maps to the same point every time
    plots.show_image(ax, scene.image, min(0.25, plots.fit_margin(boxes, 0.02)))
    ax.set_facecolor(MARGIN_COLOR)
    colors = plots.grid_colors(anchors)
    for a, box in enumerate(boxes):
        plots.draw_box(ax, box, colors[int(anchors.grid_index[a])], lw=0.6, alpha=0.55, gid=f"pick:{a}")
    ax.set_title(f"all {len(boxes)} predicted boxes (Fig. 4)\nclick an outline to follow that box", fontsize=8)
    return ax


def _draw_chosen(ax: Any, box: Any, chosen: int) -> list[Any]:
    """The followed box, thick, over the Fig. 4 view."""
    return [plots.draw_box(ax, box, "white", lw=4.0)[0],
            plots.draw_box(ax, box, plots.BOX_COLORS[0], lw=2.2, gid=f"chosen:{chosen}")[0]]


def follow_box_figure(example: Any, anchors: Anchors, class_logits: torch.Tensor, box_actns: torch.Tensor,
                      index: int, size: tuple[float, float] = (6.6, 3.6), **loss_options: Any) -> Figure:
    """Box ``index`` on the photo (cell, anchor, prediction, matched ground truth, gradient) and its IoU row."""
    fig = Figure(figsize=size, layout="constrained")
    _draw(fig, follow_box(example, anchors, class_logits, box_actns, index, **loss_options), plots.as_scene(example))
    return fig


class FollowBox(FigureWidget):
    """Pick any of the boxes (by number, or grid / scale / row / col) and follow it through the article.

    ``.followed`` holds the shown box's numbers (:class:`Followed`), ``.readout`` states them.
    """

    def __init__(self, example: Any, anchors: Anchors, class_logits: torch.Tensor, box_actns: torch.Tensor,
                 index: int = 99, dpi: int = 90, image_format: Literal["png", "jpeg"] = "png", **loss_options: Any):
        dpi = display_args("FollowBox", dpi, image_format)
        if isinstance(box_actns, torch.Tensor) and box_actns.dim() == 2:  # (A, 4): one image's, as follow_box takes
            box_actns = box_actns.unsqueeze(0)
        example, class_logits, box_actns = one_image_args("FollowBox", example, anchors, class_logits, box_actns)
        number_arg("FollowBox", "index", index, 0, len(anchors) - 1, whole=True)
        self.data, self.anchors, self.dpi, self._hold = (_Computed(example, anchors, class_logits, box_actns,
                                                                   **loss_options), anchors, dpi, False)
        self._where = {tuple(anchors.info(a)[1:5]): a for a in range(len(anchors))}  # (grid, row, col, scale) -> a
        small = dict(layout=W.Layout(width="150px"), style={"description_width": "40px"})
        self.number = W.BoundedIntText(value=index, min=0, max=len(anchors) - 1, description="box", **small)
        self.grid = W.Dropdown(options=list(anchors.spec.grids), description="grid", **small)
        self.scale = W.Dropdown(options=[0], description="scale", **small)
        self.row, self.col = (W.Dropdown(options=[0], description=d, **small) for d in ("row", "col"))
        self.readout = W.HTML()
        self.image = W.Image(format=image_format)
        self.figure = Figure(figsize=(8.0, 4.6), layout="constrained")  # the photo readable at notebook width
        self.pick_figure = Figure(figsize=(3.6, 3.6), dpi=dpi)  # the Fig. 4 view that takes the clicks
        self.pick_image = W.Image(format="png")
        self.pick_boxes = self.data.result.pred_boxes[0].detach().numpy()
        self.widget = W.VBox([W.HBox([self.number, self.grid, self.scale, self.row, self.col]),
                              W.HBox([self.pick_image, self.image]), self.readout])
        self._later = Coalesce(self._update)
        self.number.observe(self._later, names="value")
        for d in (self.grid, self.scale, self.row, self.col):
            d.observe(lambda _: self._picked(), names="value")
        self.clicks = _click_events(self.pick_image, self._clicked)
        # drawn once: the photo (with a margin, FRAME_MARGIN at most), the bars' axes, the Fig. 4 view
        self.frames, self.pick_frames = Frames(self.figure, dpi), Frames(self.pick_figure, dpi)
        everything = np.concatenate([self.pick_boxes, anchors.corners.numpy()])
        margin = min(FRAME_MARGIN, plots.fit_margin(everything, 0.04))
        self._ax, self._bars = _draw_frame(self.figure, self.data.scene, margin, self.data.result.options.iou_threshold)
        self._pick_ax = _draw_pick_view(self.pick_figure, anchors, self.data.scene, self.pick_boxes, index)
        _draw_ground_truth(self._ax, self.data.scene)  # placed first by the placer, the same on every frame
        # the labels too are drawn on every frame, over the grid and boxes that move
        animate(placer_for(self._ax), self._ax.title, self._bars.title, *self._ax.texts)
        self._moving: list[Any] = []
        self._update()

    def pixel_size_of_pick(self) -> tuple[int, int]:
        """``(width, height)`` of the Fig. 4 view shown, in pixels."""
        return pixel_size(self.pick_figure, self.dpi)

    def pixel_at(self, y: float, x: float) -> tuple[float, float]:
        """Pixel ``(px, py)`` of the Fig. 4 view, from its top-left corner, where the point ``(y, x)`` is drawn."""
        px, up = self._pick_ax.transData.transform((x, y))  # matplotlib counts pixels from the bottom
        return float(px), self.pixel_size_of_pick()[1] - float(up)

    def box_at(self, px: float, py: float) -> int:
        """The box under pixel ``(px, py)`` of the Fig. 4 view (from its top-left corner): nearest outline."""
        x, y = self._pick_ax.transData.inverted().transform((px, self.pixel_size_of_pick()[1] - py))
        return nearest_outline(self.pick_boxes, y, x)

    def click(self, px: float, py: float) -> "FollowBox":
        """Click pixel ``(px, py)`` of the Fig. 4 view, as a learner would."""
        self.set(self.box_at(px, py))
        return self

    def _clicked(self, event: dict) -> None:
        w, h = self.pixel_size_of_pick()  # the image may be shown scaled: back to its own pixels
        sx, sy = w / max(event.get("boundingRectWidth") or w, 1), h / max(event.get("boundingRectHeight") or h, 1)
        self.click(event["relativeX"] * sx, event["relativeY"] * sy)

    @property
    def index(self) -> int:
        return int(self.number.value)

    def set(self, index: int) -> "FollowBox":
        """Follow box ``index`` (as typing it into the box field)."""
        self._later.set(self.number, number_arg("FollowBox.set", "index", index, 0, len(self.anchors) - 1, whole=True))
        return self

    def _picked(self) -> None:
        if self._hold:
            return
        g = int(self.grid.value)
        key = (g, min(int(self.row.value), g - 1), min(int(self.col.value), g - 1), int(self.scale.value))
        self.number.value = self._where.get(key, self.index)

    def _update(self) -> None:
        self.followed = f = self.data.box(self.index)
        self._hold = True
        try:  # the dropdowns show where the box comes from
            i, k = f.info, self.anchors.spec.k(self.anchors.spec.grids.index(f.info.grid))
            self.grid.value = i.grid
            self.scale.options, self.row.options, self.col.options = list(range(k)), list(range(i.grid)), list(range(i.grid))
            self.scale.value, self.row.value, self.col.value = i.scale, i.row, i.col
        finally:
            self._hold = False
        self.readout.value = f"<pre style='font-size: 11px; line-height: 1.3'>{_text(f, self.data.scene)}</pre>"
        for artist in self._moving:
            artist.remove()
        placer = placer_for(self._ax)
        placer.items[len(self.data.scene.boxes):] = []  # the ground truth's labels stay
        placer.avoided.clear()  # the last box's arrows, removed above
        self._moving = _draw_followed(self._ax, self._bars, f, self.data.scene, gt_drawn=True)
        self._moving += _draw_chosen(self._pick_ax, self.pick_boxes[self.index], self.index)
        animate(*self._moving)
        self.pick_frames.show(self.pick_image)  # drawing it also fixes the axes' transform
        self.frames.show(self.image)


def _click_events(image: W.Image, handler: Any) -> Any:
    """ipyevents' click watcher on ``image`` (None, and the number and dropdowns only, without ipyevents)."""
    try:
        from ipyevents import Event
    except ImportError:
        return None
    events = Event(source=image, watched_events=["click"], prevent_default_action=True)
    events.on_dom_event(handler)
    return events
