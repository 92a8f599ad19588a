"""The article's figures, drawn with matplotlib alone.

Every box is ``(y0, x0, y1, x1)`` as fractions of the image. Each axes shows the
image on the unit square (x right, y down), so a box is drawn where its numbers
say, and a *margin* of white around the image lets boxes that leave it be seen.

Figures are built with :class:`matplotlib.figure.Figure`, not pyplot: nothing is
shown or kept open behind the caller's back. In a notebook, end a cell with the
returned figure (under ``%matplotlib inline``) or call ``display(fig)``.

Colours: ground-truth box ``i`` is always ``GT_COLORS[i]`` (Figs. 5, 6 and the
gradient figure colour predicted boxes by the ground truth they answer to); in
Figs. 1-3 a panel's box ``n`` is ``BOX_COLORS[n]`` in both the anchor and the
predicted column, so each anchor box can be followed to its predicted box.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.text import Text

from .anchors import Anchors
from .data import VOC_CLASSES

__all__ = ["Scene", "as_scene", "GT_COLORS", "BOX_COLORS", "default_margin", "fit_margin", "show_image",
           "draw_box", "draw_grid", "draw_ground_truth", "ground_truth_figure", "draw_grid_panel", "draw_grid_row", "grid_figure",
           "all_anchors_figure", "all_predictions_figure", "draw_class_panel", "style_class_box", "class_figure",
           "iou_heatmap", "loss_gradients", "gradient_figure", "detections_figure"]

GT_COLORS = [matplotlib.colormaps["tab10"](i) for i in (0, 1, 2, 3, 4, 6, 8, 9, 5, 7)]  # blue, orange, green, red, ...
BOX_COLORS = ["#e6194b", "#3cb44b", "#ffd000", "#4363d8", "#f58231", "#911eb4", "#00c8d7", "#f032e6",
              "#9acd32", "#008080", "#9a6324", "#800000"]  # bright, distinct; the fastai notebook cycles 12 too
BG_COLOR = "#9a9a9a"
_LABEL_BOX = dict(boxstyle="square,pad=0.15", facecolor="black", alpha=0.75, linewidth=1.2)  # edge: the box's colour


class Scene(NamedTuple):
    """The ground truth the figures draw: the model-sized image and its labelled boxes.

    image: ``(H, W, 3)`` uint8 or float in [0, 1].
    boxes: ``(G, 4)`` ``(y0, x0, y1, x1)`` fractions; labels: ``(G,)`` class ids (padding rows dropped).
    class_names: the vocabulary, e.g. the 20 VOC classes; id ``len(class_names)`` is background.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = VOC_CLASSES

    def gt_label(self, i: int) -> str:
        """``'i: class'``, as in the top-left corner of each ground-truth box."""
        return f"{i}: {self.class_names[int(self.labels[i])]}"


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _boxes(x: Any) -> np.ndarray:
    """``(A, 4)`` numpy boxes from a tensor or array of shape ``(A, 4)`` or ``(1, A, 4)``."""
    a = _np(x).astype(float)
    return a[0] if a.ndim == 3 else a


def as_scene(example: Any, class_names: Sequence[str] = VOC_CLASSES) -> Scene:
    """A :class:`Scene` from a ``data.Example`` (its 224x224 image), a Scene, or ``(image, boxes, labels)``."""
    if isinstance(example, Scene):
        return example
    if isinstance(example, tuple):
        image, boxes, labels = example
    else:
        image = getattr(example, "image224", None)
        image = example.image if image is None else image
        boxes, labels = example.boxes, example.labels
    boxes, labels = _boxes(boxes).reshape(-1, 4), _np(labels).reshape(-1).astype(int)
    keep = labels >= 0  # drop padding rows
    return Scene(_np(image), boxes[keep], labels[keep], tuple(class_names))


# ---------------------------------------------------------------- primitives
def default_margin(grid: int) -> float:
    """White margin (fraction of the image side) for a grid: 4x4 0.25, 2x2 0.5, 1x1 0.75."""
    return max(0.15, 0.25 * (1 + math.log2(4 / grid)))


def fit_margin(boxes: Any, base: float = 0.0, pad: float = 0.04) -> float:
    """At least ``base``, and wide enough that every box in ``(..., 4)`` ``boxes`` stays in view."""
    b = _np(boxes).reshape(-1, 4)
    overshoot = max(0.0, float(-b[:, :2].min()), float(b[:, 2:].max()) - 1) if len(b) else 0.0
    return max(base, overshoot + pad if overshoot > 0 else 0.0)


def show_image(ax: Axes, image: np.ndarray, margin: float = 0.0) -> None:
    """Draw ``image`` on the unit square of ``ax`` with ``margin`` of white around it; no ticks."""
    ax.imshow(image, extent=(0, 1, 1, 0), interpolation="bilinear")
    ax.set_xlim(-margin, 1 + margin)
    ax.set_ylim(1 + margin, -margin)  # y grows downwards, as in the image
    ax.set_facecolor("white")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(margin == 0)


def draw_box(ax: Axes, box: Any, color: Any, label: Optional[str] = None, lw: float = 1.5, ls: str = "-",
             alpha: float = 1.0, fontsize: float = 7, gid: Optional[str] = None) -> tuple[Rectangle, Optional[Text]]:
    """Outline one ``(y0, x0, y1, x1)`` box; ``label`` goes in its top-left corner on a dark patch."""
    y0, x0, y1, x1 = (float(v) for v in box)
    rect = Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, lw=lw, ls=ls, alpha=alpha, gid=gid)
    ax.add_patch(rect)
    text = None
    if label is not None:
        text = ax.text(x0, y0, label, color="white", fontsize=fontsize, va="top", ha="left", alpha=alpha,
                       bbox={**_LABEL_BOX, "edgecolor": color}, clip_on=True, gid=gid)
    return rect, text


def draw_grid(ax: Axes, grid: int, anchor_dots: bool = True) -> None:
    """Thin white lines between the ``grid x grid`` cells, and a small white dot at each anchor."""
    for t in np.linspace(0, 1, grid + 1)[1:-1]:
        ax.plot([t, t], [0, 1], color="white", lw=0.8, alpha=0.9)
        ax.plot([0, 1], [t, t], color="white", lw=0.8, alpha=0.9)
    if anchor_dots:
        c = (np.arange(grid) + 0.5) / grid
        xs, ys = np.meshgrid(c, c)
        ax.scatter(xs.ravel(), ys.ravel(), s=9, color="white", edgecolors="black", linewidths=0.4, zorder=3)


def _figure(nrows: int, ncols: int, panel: float = 3.0, dpi: int = 100) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(ncols * panel, nrows * panel * 1.08), dpi=dpi, layout="constrained")
    return fig, np.asarray(fig.subplots(nrows, ncols, squeeze=False))


def draw_ground_truth(ax: Axes, scene: Scene, margin: float = 0.0, fontsize: float = 9) -> None:
    """The image with each ground-truth box and ``'i: class'`` in its top-left corner."""
    show_image(ax, scene.image, margin)
    for i, box in enumerate(scene.boxes):
        draw_box(ax, box, GT_COLORS[i % len(GT_COLORS)], scene.gt_label(i), lw=2, fontsize=fontsize, gid=f"gt:{i}")


def ground_truth_figure(example: Any, size: float = 5.0) -> Figure:
    """Fig. 1, top left: the example with its numbered, labelled ground-truth boxes."""
    fig, axes = _figure(1, 1, size)
    draw_ground_truth(axes[0, 0], as_scene(example), fontsize=11)
    axes[0, 0].set_xlabel("ground truth")
    return fig


# ---------------------------------------------------------------- Figs. 1-3: one grid, a row per (zoom, ratio)
def draw_grid_panel(ax: Axes, example: Any, anchors: Anchors, boxes: Any, grid: int, scale: int,
                    margin: Optional[float] = None, show_grid: bool = True, fontsize: float = 8) -> list[Rectangle]:
    """One panel: the boxes of one (grid, zoom-ratio), numbered per plot ``0 .. g*g-1``.

    ``boxes`` is ``(A, 4)``: ``anchors.corners`` for the middle column of Figs. 1-3,
    the predicted boxes for the right one. Returns the drawn rectangles, in number order.
    """
    scene = as_scene(example)
    idx = anchors.select(grid, scale).tolist()
    b = _boxes(boxes)[idx]
    show_image(ax, scene.image, default_margin(grid) if margin is None else margin)
    if show_grid:
        draw_grid(ax, grid)
    gi = anchors.spec.grids.index(grid)
    ax.set_xlabel(anchors.spec.scale_label(gi, scale), fontsize=9)
    return [draw_box(ax, box, BOX_COLORS[n % len(BOX_COLORS)], str(n), lw=1.3, fontsize=fontsize, gid=f"box:{a}")[0]
            for n, (a, box) in enumerate(zip(idx, b))]


def draw_grid_row(axes: Sequence[Axes], example: Any, anchors: Anchors, pred_boxes: Any, grid: int, scale: int,
                  margin: Optional[float] = None) -> None:
    """One row of Figs. 1-3 on three axes: ground truth | anchor boxes | predicted boxes."""
    scene = as_scene(example)
    draw_ground_truth(axes[0], scene, fontsize=8)
    axes[0].set_xlabel("ground truth", fontsize=9)
    draw_grid_panel(axes[1], scene, anchors, anchors.corners, grid, scale, margin)
    draw_grid_panel(axes[2], scene, anchors, pred_boxes, grid, scale, margin)


def grid_figure(example: Any, anchors: Anchors, pred_boxes: Any, grid: int = 4, margin: Optional[float] = None,
                panel: float = 3.0) -> Figure:
    """Fig. 1 (grid 4), 2 (grid 2) or 3 (grid 1): a row per (zoom, ratio), three columns.

    ``pred_boxes``: ``(A, 4)`` or ``(1, A, 4)``. The margin is the same in every panel:
    ``default_margin(grid)`` or wider if a box of this grid would be cut off.
    """
    scene = as_scene(example)
    gi = anchors.spec.grids.index(grid)
    sel = anchors.grid_index == gi
    if margin is None:
        margin = fit_margin(np.concatenate([_boxes(pred_boxes)[_np(sel)], _np(anchors.corners[sel])]),
                            default_margin(grid))
    k = anchors.spec.k(gi)
    fig, axes = _figure(k, 3, panel)
    for s in range(k):
        draw_grid_row(axes[s], scene, anchors, pred_boxes, grid, s, margin)
    for ax, title in zip(axes[0], ("ground truth", f"{grid}x{grid} grid: anchor boxes", "predicted boxes")):
        ax.set_title(title, fontsize=11)
    return fig


# ---------------------------------------------------------------- the aside and Fig. 4
def _grid_colors(anchors: Anchors) -> list:
    return [BOX_COLORS[(3, 0, 1, 4, 5)[i % 5]] for i in range(len(anchors.spec.grids))]


def _draw_all(ax: Axes, scene: Scene, anchors: Anchors, boxes: np.ndarray, numbers: bool, margin: float) -> None:
    show_image(ax, scene.image, margin)
    colors = _grid_colors(anchors)
    for a, box in enumerate(boxes):
        gi = int(anchors.grid_index[a])
        draw_box(ax, box, colors[gi], str(a) if numbers else None, lw=0.7 + 0.4 * gi, alpha=0.8, fontsize=5,
                 gid=f"box:{a}")
    for gi, g in enumerate(anchors.spec.grids):  # legend: one proxy line per grid
        ax.plot([], [], color=colors[gi], lw=2, label=f"{g}x{g} grid ({int((anchors.grid_index == gi).sum())} boxes)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=len(colors), fontsize=8, frameon=False)


def all_anchors_figure(example: Any, anchors: Anchors, size: float = 6.0) -> Figure:
    """The aside: all anchor boxes (189 by default) over the image, coloured by grid."""
    scene = as_scene(example)
    fig, axes = _figure(1, 1, size)
    _draw_all(axes[0, 0], scene, anchors, _np(anchors.corners), False, fit_margin(anchors.corners, 0.05))
    axes[0, 0].set_title(f"all {len(anchors)} anchor boxes", fontsize=11)
    return fig


def all_predictions_figure(example: Any, anchors: Anchors, pred_boxes: Any, numbers: bool = False,
                           size: float = 5.0) -> Figure:
    """Fig. 4: the ground truth beside all predicted boxes (column 3 of Figs. 1-3 gathered)."""
    scene, boxes = as_scene(example), _boxes(pred_boxes)
    fig, axes = _figure(1, 2, size)
    margin = fit_margin(boxes, 0.1)
    draw_ground_truth(axes[0, 0], scene, fontsize=10)
    axes[0, 0].set_title("ground truth", fontsize=11)
    _draw_all(axes[0, 1], scene, anchors, boxes, numbers, margin)
    axes[0, 1].set_title(f"all {len(boxes)} predicted boxes", fontsize=11)
    return fig


# ---------------------------------------------------------------- notebooks 2 and 3: one panel, column 3 of Figs. 1-3
def grid_panel_figure(example: Any, anchors: Anchors, boxes: Any, grid: int = 4, scale: int = 0,
                      margin: Optional[float] = None, size: float = 5.0) -> Figure:
    """One panel of Figs. 1-3 on its own, larger: grid cells, anchors and the boxes of one (grid, zoom-ratio).

    ``boxes``: ``(A, 4)`` or ``(1, A, 4)``; ``anchors.corners`` for the anchor boxes (the
    top-middle plot of Fig. 1 is ``grid=4, scale=0``) or the predicted boxes.
    The margin defaults to :func:`default_margin`, widened if a box would be cut off.
    """
    sel = _np(anchors.select(grid, scale))
    if margin is None:
        margin = fit_margin(_boxes(boxes)[sel], default_margin(grid))
    fig, axes = _figure(1, 1, size)
    draw_grid_panel(axes[0, 0], example, anchors, boxes, grid, scale, margin, fontsize=10)
    return fig


def predictions_by_grid_figure(example: Any, anchors: Anchors, pred_boxes: Any, panel: float = 3.0) -> Figure:
    """Column 3 of Figs. 1, 2 and 3 side by side: a row per (zoom, ratio), a column per grid.

    Every panel is drawn exactly as in :func:`grid_figure` (same numbering, colours and
    per-grid margin), so each can be found in its figure. Needs the same scales on every grid.
    """
    scene, boxes = as_scene(example), _boxes(pred_boxes)
    grids = list(anchors.spec.grids)
    ks = {anchors.spec.k(i) for i in range(len(grids))}
    if len(ks) != 1:
        raise ValueError("predictions_by_grid_figure needs the same number of scales on every grid")
    k = ks.pop()
    fig, axes = _figure(k, len(grids), panel)
    for col, g in enumerate(grids):
        sel = _np(anchors.grid_index == anchors.spec.grids.index(g))
        margin = fit_margin(np.concatenate([boxes[sel], _np(anchors.corners[sel])]), default_margin(g))
        for s in range(k):
            draw_grid_panel(axes[s, col], scene, anchors, boxes, g, s, margin)
        axes[0, col].set_title(f"Fig. {col + 1}, column 3: {g}x{g} grid", fontsize=11)
    return fig


__all__ += ["grid_panel_figure", "predictions_by_grid_figure"]


# ---------------------------------------------------------------- Figs. 5 and 6: the class of every predicted box
def draw_class_panel(ax: Axes, example: Any, anchors: Anchors, pred_boxes: Any, gt_idx: Any, grid: int, scale: int,
                     background: Any = None, margin: Optional[float] = None,
                     fontsize: float = 6.5) -> dict[int, tuple[int, Rectangle, Text]]:
    """One panel of Fig. 5/6: each predicted box of (grid, scale) labelled ``'n: class'``.

    ``gt_idx``: ``(A,)`` the ground-truth box each predicted box answers to; its class is
    the label. ``background``: ``(A,)`` bool, boxes drawn faint, dashed and labelled
    ``'n: bg'`` (background, Fig. 6); None for Fig. 5. Returns ``{anchor index: (n, rect, text)}``.
    """
    scene = as_scene(example)
    idx = anchors.select(grid, scale).tolist()
    boxes, gt_idx = _boxes(pred_boxes), _np(gt_idx).reshape(-1)
    bg = np.zeros(len(boxes), bool) if background is None else _np(background).reshape(-1).astype(bool)
    show_image(ax, scene.image, default_margin(grid) if margin is None else margin)
    ax.set_xlabel(anchors.spec.scale_label(anchors.spec.grids.index(grid), scale), fontsize=9)
    artists = {}
    for n, a in enumerate(idx):
        rect, text = draw_box(ax, boxes[a], "black", f"{n}", lw=1.2, fontsize=fontsize, gid=f"box:{a}")
        artists[a] = (n, rect, text)
        style_class_box(rect, text, n, scene, int(gt_idx[a]), bool(bg[a]))
    return artists


def style_class_box(rect: Rectangle, text: Text, n: int, scene: Scene, gt: int, background: bool) -> None:
    """Label and colour one box of Fig. 5/6: its ground truth's colour and class, or faint background."""
    if background:
        rect.set(edgecolor=BG_COLOR, linestyle=(0, (3, 2)), alpha=0.6, lw=0.9, zorder=2)
        text.set(text=f"{n}: bg", color="#dddddd", alpha=0.8, fontstyle="italic", zorder=2.1)
        text.get_bbox_patch().set(edgecolor=BG_COLOR, alpha=0.45)
    else:
        c = GT_COLORS[gt % len(GT_COLORS)]
        rect.set(edgecolor=c, linestyle="-", alpha=1.0, lw=1.4, zorder=3)  # objects drawn over background
        text.set(text=f"{n}: {scene.class_names[int(scene.labels[gt])]}", color="white", alpha=1.0, fontstyle="normal",
                 zorder=3.1)
        text.get_bbox_patch().set(edgecolor=c, alpha=_LABEL_BOX["alpha"])


def _class_figure(example: Any, anchors: Anchors, pred_boxes: Any, gt_idx: Any, background: Any = None,
                  grids: Optional[Sequence[int]] = None, panel: float = 3.2,
                  title: Optional[str] = None) -> tuple[Figure, dict[int, tuple[int, Rectangle, Text]]]:
    scene, boxes = as_scene(example), _boxes(pred_boxes)
    grids = list(anchors.spec.grids if grids is None else grids)
    k = max(anchors.spec.k(anchors.spec.grids.index(g)) for g in grids)
    fig, axes = _figure(k, 1 + len(grids), panel)
    artists: dict[int, tuple[int, Rectangle, Text]] = {}
    for col, g in enumerate(grids, start=1):
        gi = anchors.spec.grids.index(g)
        margin = fit_margin(boxes[_np(anchors.grid_index == gi)], default_margin(g))
        axes[0, col].set_title(f"{g}x{g} grid: predicted boxes", fontsize=11)
        for s in range(k):
            if s >= anchors.spec.k(gi):
                axes[s, col].set_axis_off()
                continue
            artists.update(draw_class_panel(axes[s, col], scene, anchors, boxes, gt_idx, g, s, background, margin))
    for s in range(k):
        draw_ground_truth(axes[s, 0], scene, fontsize=8)
        axes[s, 0].set_xlabel("ground truth", fontsize=9)
    axes[0, 0].set_title("ground truth", fontsize=11)
    if title:
        fig.suptitle(title, fontsize=13)
    return fig, artists


def class_figure(example: Any, anchors: Anchors, pred_boxes: Any, gt_idx: Any, background: Any = None,
                 grids: Optional[Sequence[int]] = None, panel: float = 3.2, title: Optional[str] = None) -> Figure:
    """Fig. 5 (``background=None``) or Fig. 6 (``background=~match.positive``).

    Rows are the (zoom, ratio) pairs, columns ground truth then one per grid (the
    article's "first plot of the second column" is the 4x4 grid at zoom 0.7, ratio
    (1, 1)); every predicted box is labelled ``'n: class'`` with ``n`` numbered per
    panel as in Figs. 1-3. ``gt_idx``, ``background``: ``(A,)`` or ``(1, A)``.
    """
    return _class_figure(example, anchors, pred_boxes, gt_idx, background, grids, panel, title)[0]


# ---------------------------------------------------------------- IoU, gradients, detections
def iou_heatmap(ious: Any, example: Any, anchors: Anchors, match: Any = None, b: int = 0) -> Figure:
    """All IoUs, ``(A, G)`` (or ``(B, A, G)`` with image ``b``), as a ground truth x box heatmap.

    With ``match`` (a :class:`~ssd_lesson.matching.Match`), each box's chosen ground
    truth is marked with a dot, and the forced matches (overlap 1.99) with a star.
    """
    scene = as_scene(example)
    m = _np(ious).astype(float)
    m = m[b] if m.ndim == 3 else m
    m = m[:, : len(scene.labels)]
    fig = Figure(figsize=(15, 2.2 + 0.35 * m.shape[1]), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(m.T, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(m.shape[1]), [scene.gt_label(i) for i in range(m.shape[1])])
    for off, g in zip(anchors.offsets, anchors.spec.grids):
        ax.axvline(off - 0.5, color="white", lw=1.5)
        ax.text(off + 1, -0.6, f"{g}x{g} grid", fontsize=9, va="bottom")
    if match is not None:
        gt_idx, ov = _np(match.gt_idx), _np(match.gt_overlap)
        gt_idx, ov = (gt_idx[b], ov[b]) if gt_idx.ndim == 2 else (gt_idx, ov)
        forced = ov > 1.5
        a = np.arange(len(gt_idx))
        ax.scatter(a[~forced], gt_idx[~forced], s=9, color="white", edgecolors="black", linewidths=0.4,
                   label="each box's best ground truth")
        ax.scatter(a[forced], gt_idx[forced], s=90, marker="*", color="red", edgecolors="white", linewidths=0.5,
                   label="forced match (1.99)")
        ax.legend(loc="upper right", bbox_to_anchor=(1, -0.25), ncol=2, fontsize=8, frameon=False)
    ax.set_xlabel("predicted box index")
    fig.colorbar(im, ax=ax, label="IoU", fraction=0.02)
    return fig


def loss_gradients(result: Any, class_logits: torch.Tensor, b: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of ``result.total`` on the predicted box corners ``(A, 4)`` and class logits ``(A, C+1)``.

    Uses :func:`torch.autograd.grad` with ``retain_graph=True``, so ``.backward()`` can still follow
    (leaf ``.grad`` fields are left alone; a ``retain_grad()`` tensor would still receive this gradient).
    """
    gb, gl = torch.autograd.grad(result.total, [result.pred_boxes, class_logits], retain_graph=True, allow_unused=True)
    gb = torch.zeros_like(result.pred_boxes) if gb is None else gb
    return gb[b].detach(), gl[b].detach()


def gradient_figure(example: Any, anchors: Anchors, result: Any, box_grad: Any, logit_grad: Any, b: int = 0,
                    arrow: float = 0.07) -> Figure:
    """Notebook 8: where the loss pulls each positive box, and which class logits it pushes.

    Left: each positive predicted box (solid, its ground truth's colour) with its
    ground-truth box (dashed) and an arrow at each corner along minus the gradient,
    the way one step of gradient descent moves it (longest arrow ``arrow``). Right:
    ``d loss / d logit`` per box (rows) and class (columns); red (positive) means the
    step pushes that logit down. The background column stays 0: BCE drops it.
    """
    scene = as_scene(example)
    pos = _np(result.match.positive[b]).astype(bool)
    gt_idx = _np(result.match.gt_idx[b])
    pred, gtb = _np(result.pred_boxes[b]).astype(float), _np(result.target_boxes[b]).astype(float)
    gb, gl = _np(box_grad).astype(float), _np(logit_grad).astype(float)
    fig = Figure(figsize=(15, 7.5), layout="constrained")
    ax, hx = fig.subplots(1, 2, width_ratios=(1.1, 1))
    show_image(ax, scene.image, fit_margin(pred[pos], 0.1))
    scale = arrow / max(np.abs(gb[pos]).max(), 1e-12) if pos.any() else 0.0
    for a in np.flatnonzero(pos):
        c = GT_COLORS[int(gt_idx[a]) % len(GT_COLORS)]
        draw_box(ax, gtb[a], c, None, lw=1, ls="--", alpha=0.8)
        draw_box(ax, pred[a], c, str(a), lw=1.6, fontsize=7, gid=f"box:{a}")
        for yi, xi in ((0, 1), (2, 3)):  # top-left and bottom-right corners
            ax.annotate("", xy=(pred[a, xi] - scale * gb[a, xi], pred[a, yi] - scale * gb[a, yi]),
                        xytext=(pred[a, xi], pred[a, yi]),
                        arrowprops=dict(arrowstyle="-|>", color=c, lw=1.5, mutation_scale=10))
    ax.set_title(f"{int(pos.sum())} positive boxes (solid) pulled toward their ground truth (dashed)", fontsize=11)
    v = max(np.abs(gl).max(), 1e-12)
    im = hx.imshow(gl, aspect="auto", cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
    names = list(scene.class_names) + ["background"]
    hx.set_xticks(range(gl.shape[1]), names[: gl.shape[1]], rotation=90, fontsize=8)
    hx.set_yticks(anchors.offsets, [f"{g}x{g}: {o}" for g, o in zip(anchors.spec.grids, anchors.offsets)], fontsize=8)
    for off in anchors.offsets[1:]:
        hx.axhline(off - 0.5, color="black", lw=0.8)
    hx.scatter(np.full(pos.sum(), -1.0), np.flatnonzero(pos), marker=">", s=16, color="black", clip_on=False)
    hx.set_xlim(-0.5, gl.shape[1] - 0.5)  # the markers sit just outside, left of their rows
    hx.set_ylabel("predicted box (positives marked >)")
    hx.set_title("gradient of the loss on each class logit (red: pushed down, blue: pushed up)", fontsize=11)
    fig.colorbar(im, ax=hx, fraction=0.04)
    return fig


def detections_figure(example: Any, boxes: Any, labels: Any, scores: Any, size: float = 5.0,
                      class_names: Optional[Sequence[str]] = None) -> Figure:
    """Ground truth beside detections ``(N, 4)`` labelled ``'class score'`` (notebooks 9-10)."""
    scene = as_scene(example)
    names = scene.class_names if class_names is None else class_names
    boxes, labels, scores = _boxes(boxes).reshape(-1, 4), _np(labels).reshape(-1), _np(scores).reshape(-1)
    fig, axes = _figure(1, 2, size)
    margin = fit_margin(boxes, 0.0)
    draw_ground_truth(axes[0, 0], scene, margin, fontsize=10)
    axes[0, 0].set_title("ground truth", fontsize=11)
    show_image(axes[0, 1], scene.image, margin)
    for i, (box, lab, sc) in enumerate(zip(boxes, labels, scores)):
        draw_box(axes[0, 1], box, BOX_COLORS[int(lab) % len(BOX_COLORS)], f"{names[int(lab)]} {sc:.2f}", lw=2,
                 fontsize=9, gid=f"det:{i}")
    axes[0, 1].set_title(f"{len(boxes)} detections", fontsize=11)
    return fig


def setup_notebook(seed: int = 0, quiet_voc: bool = True, figure_format: Optional[str] = None,
                   jpeg_quality: int = 90) -> None:
    """The first cell of every notebook: fixed seeds, quiet known warnings, one plotting style.

    ``quiet_voc`` hides the (long) "Pascal VOC not found" message, which notebook 01
    shows once on purpose; each notebook still prints which example it uses.
    ``figure_format`` (e.g. ``"jpeg"``), inside IPython after ``%matplotlib inline``, is how
    figures are stored in the notebook: the figures full of photographs (Figs. 1-3, 5, 6)
    are about 4x smaller as JPEG (``jpeg_quality``) than as PNG. None leaves IPython's choice.
    """
    import random
    import warnings

    from .data import VocNotFoundWarning

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations inside fastai/torch, not ours
    if quiet_voc:
        warnings.filterwarnings("ignore", category=VocNotFoundWarning)
    matplotlib.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "font.size": 9, "figure.max_open_warning": 0})
    if figure_format is not None:
        _inline_figure_format(figure_format, jpeg_quality)


def _inline_figure_format(fmt: str, jpeg_quality: int = 90) -> None:
    """Show figures as ``fmt`` under IPython's inline backend; does nothing outside IPython."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is None:
        return
    kw = {"pil_kwargs": {"quality": int(jpeg_quality)}} if fmt in ("jpeg", "jpg") else {}
    set_matplotlib_formats(fmt, **kw)


# ---------------------------------------------------------------- notebooks 6, 7 and 11
def _panels(n: int, ncols: int, panel: float) -> tuple[Figure, np.ndarray]:
    """``n`` panels on a grid of ``ncols`` columns; the spare axes are switched off."""
    ncols = max(1, min(n, ncols))
    fig, axes = _figure(max(1, math.ceil(n / ncols)), ncols, panel)
    fig.set_layout_engine("compressed")  # square image panels: no gaps, titles kept inside the figure
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    return fig, axes.ravel()


def regression_figure(example: Any, result: Any, b: int = 0, ncols: int = 3, panel: float = 3.2) -> Figure:
    """Table 4 drawn (notebook 7): one panel per positive box.

    Each panel shows the predicted box (solid, numbered with its box index) and the
    ground-truth box it answers to (dashed; the title names it), both in that ground
    truth's colour, with a thin line joining each pair of corners the L1 loss
    compares; the x-axis label gives the box's MAE over its four coordinates.
    """
    scene = as_scene(example)
    pos = np.flatnonzero(_np(result.match.positive[b]))
    pred, gtb = _np(result.pred_boxes[b]).astype(float), _np(result.target_boxes[b]).astype(float)
    gt_idx = _np(result.match.gt_idx[b])
    fig, axes = _panels(max(len(pos), 1), ncols, panel)
    if not len(pos):
        axes[0].text(0.5, 0.5, "no positive box", ha="center", va="center")
        return fig
    margin = fit_margin(np.concatenate([pred[pos], gtb[pos]]), 0.05)
    for ax, a in zip(axes, pos):
        g = int(gt_idx[a])
        c = GT_COLORS[g % len(GT_COLORS)]
        show_image(ax, scene.image, margin)
        draw_box(ax, gtb[a], c, None, lw=1.5, ls="--", gid=f"gt:{a}")  # named in the title
        draw_box(ax, pred[a], c, str(a), lw=2, fontsize=8, gid=f"pred:{a}")
        for yi, xi in ((0, 1), (0, 3), (2, 1), (2, 3)):  # the four corners
            ax.plot([pred[a, xi], gtb[a, xi]], [pred[a, yi], gtb[a, yi]], color=c, lw=0.8, alpha=0.9)
        ax.set_title(f"box {a} -> {scene.gt_label(g)}", fontsize=10)
        ax.set_xlabel(f"MAE {np.abs(pred[a] - gtb[a]).mean():.4f}", fontsize=9)
    return fig


def _draw_positives(ax: Axes, scene: Scene, boxes: np.ndarray, result: Any, b: int, margin: float,
                    ls: Any = "-") -> None:
    pos, gt_idx = np.flatnonzero(_np(result.match.positive[b])), _np(result.match.gt_idx[b])
    show_image(ax, scene.image, margin)
    for i, box in enumerate(scene.boxes):
        draw_box(ax, box, GT_COLORS[i % len(GT_COLORS)], None, lw=1.2, ls=(0, (1, 1.5)), alpha=0.9)
    for a in pos:
        draw_box(ax, boxes[a], GT_COLORS[int(gt_idx[a]) % len(GT_COLORS)], str(a), lw=1.5, ls=ls, fontsize=7,
                 gid=f"box:{a}")


def match_modes_figure(example: Any, anchors: Anchors, by_predictions: Any, by_anchors: Any, b: int = 0,
                       panel: float = 5.0) -> Figure:
    """Notebook 11: the positives when ground truth is matched to predicted boxes or to anchor boxes.

    Left: positives of ``by_predictions`` (``ssd_loss(match_on="predictions")``), drawn as the
    predicted boxes the IoU was taken on. Middle: positives of ``by_anchors``
    (``match_on="anchors"``), drawn as their anchor boxes. Right: the same positives'
    predicted boxes, which the regression loss moves. Each box is numbered with its box
    index and coloured by the ground truth it answers to (dotted, in the background).
    """
    scene = as_scene(example)
    pp, pa = _boxes(by_predictions.pred_boxes[b]), _boxes(by_anchors.pred_boxes[b])
    corners = _np(anchors.corners).astype(float)
    shown = [pp[_np(by_predictions.match.positive[b])], corners[_np(by_anchors.match.positive[b])],
             pa[_np(by_anchors.match.positive[b])]]
    margin = fit_margin(np.concatenate(shown + [scene.boxes]), 0.05)
    fig, axes = _figure(1, 3, panel)
    fig.set_layout_engine("compressed")
    n_p, n_a = int(by_predictions.match.positive[b].sum()), int(by_anchors.match.positive[b].sum())
    _draw_positives(axes[0, 0], scene, pp, by_predictions, b, margin)
    axes[0, 0].set_title(f'match_on="predictions": {n_p} positives\n(the predicted boxes, as the article)', fontsize=10)
    _draw_positives(axes[0, 1], scene, corners, by_anchors, b, margin)
    axes[0, 1].set_title(f'match_on="anchors": {n_a} positives\n(the anchor boxes, as the lesson code)', fontsize=10)
    _draw_positives(axes[0, 2], scene, pa, by_anchors, b, margin, ls="--")
    axes[0, 2].set_title(f'match_on="anchors": the same {n_a} boxes\' predictions\n(what the regression loss moves)',
                         fontsize=10)
    return fig


def focal_curves_figure(gammas: Sequence[float] = (1.0, 2.0), alpha: float = 0.25, size: float = 4.0) -> Figure:
    """Notebook 6: the loss of one (box, class) term against the probability the model gives that class.

    Left: the box's own class (target 1); right: any other class, or every class of a
    background box (target 0). Binary cross-entropy beside the focal loss
    ``alpha_t (1 - p_t) ** gamma * BCE`` for each gamma, all computed by
    :func:`~ssd_lesson.loss.classification_loss` (one class, so C = 1).
    """
    from .loss import classification_loss

    p = torch.linspace(0.005, 0.995, 199, dtype=torch.float64)
    x = torch.logit(p)
    logits = torch.stack([x, torch.zeros_like(x)], dim=-1).unsqueeze(1)  # (N, 1, 2): one class + background
    fig, axes = _figure(1, 2, size)
    for ax, target, name in ((axes[0, 0], 0, "target 1: the box's own class"),
                             (axes[0, 1], 1, "target 0: another class, or background")):
        labels = torch.full((len(p), 1), target)  # class 0, or 1 = background (C)
        ax.plot(p, classification_loss(logits, labels), color="black", lw=2, label="BCE (the lesson's BCE_Loss)")
        for g, c in zip(gammas, ("tab:orange", "tab:blue", "tab:green", "tab:red")):
            ax.plot(p, classification_loss(logits, labels, focal=True, alpha=alpha, gamma=g), color=c, lw=1.6,
                    label=f"focal, gamma {g:g}")
        ax.set_xlabel("probability the model gives this class, sigmoid(logit)")
        ax.set_title(name, fontsize=10)
        ax.set_ylim(0, None)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("loss of this one (box, class) term")
    axes[0, 0].legend(fontsize=8, title=f"alpha = {alpha:g}", title_fontsize=8)
    return fig


def box_loss_figure(anchors: Anchors, losses: dict[str, Any], positive: Any, height: float = 1.7) -> Figure:
    """Notebook 6: each box's share of several losses, one row per loss, boxes along x.

    ``losses``: ``{name: (A,)}``; ``positive``: ``(A,)`` bool, drawn in orange (the
    background boxes in grey). White lines separate the grids; each title gives the sum.
    """
    pos = _np(positive).reshape(-1).astype(bool)
    fig = Figure(figsize=(12, 0.8 + height * len(losses)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(losses), 1, sharex=True))
    colors = np.where(pos, "tab:orange", "#9a9a9a")
    for ax, (name, v) in zip(axes, losses.items()):
        v = _np(v).reshape(-1).astype(float)
        ax.bar(np.arange(len(v)), v, width=1.0, color=colors, gid=f"loss:{name}")
        for off in anchors.offsets[1:]:
            ax.axvline(off - 0.5, color="black", lw=0.6, ls=":")
        ax.set_title(f"{name}: sum {v.sum():.4f}", fontsize=10, loc="left")
        ax.margins(x=0.005)
    axes[-1].set_xticks(anchors.offsets, [f"{o}\n{g}x{g} grid" for o, g in zip(anchors.offsets, anchors.spec.grids)])
    axes[0].legend(handles=[Patch(color="tab:orange", label="positive box"),
                            Patch(color="#9a9a9a", label="background box")], fontsize=8, loc="upper right",
                   bbox_to_anchor=(1, 1.35), ncol=2, frameon=False)
    axes[-1].set_xlabel("box index")
    return fig


__all__ += ["regression_figure", "match_modes_figure", "focal_curves_figure", "box_loss_figure"]


# ---------------------------------------------------------------- notebooks 9 and 10: training and inference
def training_progress_figure(example: Any, stages: dict[str, Any], gt_idx: Any, positive: Any,
                             panel: float = 4.2) -> Figure:
    """Notebook 9: the same predicted boxes at several stages of training, one panel per stage.

    ``stages``: ``{title: (A, 4) predicted boxes}``; ``gt_idx`` / ``positive``: ``(A,)`` the
    ground-truth box each predicted box answers to and whether it is a positive (match on
    the anchors, which do not move, so every panel shows the same boxes). Each panel draws
    the ground truth dashed and the positives solid in their object's colour, numbered by
    box index; its title gives the mean IoU of those boxes with their ground truth.
    """
    from .boxes import box_iou

    scene = as_scene(example)
    pos = _np(positive).reshape(-1).astype(bool)
    gi = _np(gt_idx).reshape(-1).astype(int)
    idx = np.flatnonzero(pos)
    all_boxes = {t: _boxes(b) for t, b in stages.items()}
    margin = fit_margin(np.concatenate([b[idx] for b in all_boxes.values()] + [scene.boxes]), 0.05)
    fig, axes = _figure(1, len(stages), panel)
    gt = torch.as_tensor(scene.boxes, dtype=torch.float64)
    for ax, (title, boxes) in zip(axes[0], all_boxes.items()):
        show_image(ax, scene.image, margin)
        for i, box in enumerate(scene.boxes):
            draw_box(ax, box, GT_COLORS[i % len(GT_COLORS)], None, lw=2.2, ls="--", gid=f"gt:{i}")
        for a in idx:
            draw_box(ax, boxes[a], GT_COLORS[gi[a] % len(GT_COLORS)], str(a), lw=1.4, fontsize=6, gid=f"box:{a}")
        ious = box_iou(torch.as_tensor(boxes[idx], dtype=torch.float64), gt)[np.arange(len(idx)), gi[idx]]
        ax.set_title(f"{title}\nmean IoU with its object {float(ious.mean()) if len(idx) else float('nan'):.2f}",
                     fontsize=10)
    axes[0, 0].set_xlabel(f"dashed: ground truth; solid: the {len(idx)} positive boxes", fontsize=9)
    return fig


def detection_panels_figure(images: Sequence[Any], detections: Sequence[Any], class_names: Sequence[str],
                            titles: Optional[Sequence[str]] = None, ncols: int = 4, panel: float = 3.0,
                            min_score: float = 0.0) -> Figure:
    """Notebook 10: a grid of images, each with its detections labelled ``'class score'``.

    ``images``: ``(H, W, 3)`` uint8 or normalised ``(3, H, W)`` tensors; ``detections``: one
    ``(boxes, labels, scores)`` per image (an :class:`ssd_lesson.infer.Detections`), boxes in
    pixels of that image, as :func:`ssd_lesson.infer.predict` returns. Drawn with
    :func:`ssd_lesson.infer.show_detections`; ``scores=None`` draws ground truth.
    """
    from .infer import show_detections

    n = len(images)
    if len(detections) != n:
        raise ValueError(f"{n} images but {len(detections)} detections")
    fig, axes = _panels(n, min(ncols, max(n, 1)), panel)
    for i, (ax, image, (boxes, labels, scores)) in enumerate(zip(axes.flat, images, detections)):
        show_detections(ax, image, boxes, labels, scores, class_names, min_score=min_score,
                        title=None if titles is None else titles[i])
        if titles is not None:
            ax.title.set_fontsize(9)
    return fig


__all__ += ["training_progress_figure", "detection_panels_figure"]
