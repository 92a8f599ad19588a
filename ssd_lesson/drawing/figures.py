"""The article's figures: ground truth, Figs. 1-3 (one grid each), the aside, Fig. 4, Figs. 5-6, Table 1 as a heatmap.

Built from the primitives of :mod:`ssd_lesson.drawing.draw`; boxes are ``(y0, x0, y1, x1)``
fractions of the image. Figs. 5 and 6 colour each predicted box by the ground truth
it answers to. The ground truth is drawn once, as a figure of its own (:func:`ground_truth_figure`),
not again in every row: Figs. 1-3 leave it out, and Figs. 5-6 draw it as wide, pale bands under the
boxes of every panel, named in the legend.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from ..core.anchors import Anchors
from .draw import (BG_COLOR, BOX_COLORS, GT_COLORS, LABEL_BOX, Scene, as_box_array, as_scene, default_margin, draw_box,
                   draw_grid, draw_ground_truth, figure_grid, fit_margin, fit_margins, show_image, to_numpy)
from ..core.matching import FORCED_OVERLAP

__all__ = ["ground_truth_figure", "draw_grid_panel", "draw_grid_row", "grid_figure", "grid_figures", "moved_boxes_figure",
           "all_anchors_figure", "all_predictions_figure", "grid_panel_figure", "predictions_by_grid_figure",
           "draw_class_panel", "style_class_box", "class_figure", "class_figures", "iou_heatmap", "panel_margin",
           "grid_colors"]

GT_BAND = dict(lw=6, alpha=0.35)  # the ground truth under Figs. 5-6's boxes: a wide, pale band no box line can be taken for
TIGHT = 0.02  # white margin around the image when no box leaves it (fraction of the image side)


def panel_margin(anchors: Anchors, boxes: Any, grid: int, scale: int,
                 with_anchors: bool = True) -> tuple[float, float, float, float]:
    """The ``(top, left, bottom, right)`` margins one (grid, zoom-ratio) panel needs: on each side just
    wide enough for its boxes (and anchor boxes), so the image fills the rest (:func:`fit_margins`)."""
    idx = to_numpy(anchors.select(grid, scale))
    b = [as_box_array(boxes)[idx]] + ([to_numpy(anchors.corners[idx])] if with_anchors else [])
    return fit_margins(np.concatenate(b), TIGHT)


def _columns(nrows: int, ncols: int, panel: float, extra: float = 0.0) -> tuple[Figure, np.ndarray]:
    """Square panels, a row per (zoom, ratio); ``extra`` inches of height for titles and legends."""
    fig = Figure(figsize=(panel * ncols, nrows * panel * 1.04 + extra), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.01, hspace=0.01)
    return fig, np.asarray(fig.subplots(nrows, ncols, squeeze=False))


def ground_truth_figure(example: Any, size: float = 5.0) -> Figure:
    """Fig. 1, top left: the example with its numbered, labelled ground-truth boxes."""
    fig, axes = figure_grid(1, 1, size)
    scene = as_scene(example)
    draw_ground_truth(axes[0, 0], scene, fontsize=11)
    axes[0, 0].set_xlabel("ground truth" if len(scene.labels) else "ground truth: no objects in this image")
    return fig


# ---------------------------------------------------------------- Figs. 1-3: one grid, a row per (zoom, ratio)
def draw_grid_panel(ax: Axes, example: Any, anchors: Anchors, boxes: Any, grid: int, scale: int,
                    margin: Any = None, show_grid: bool = True, fontsize: float = 8) -> list[Rectangle]:
    """One panel: the boxes of one (grid, zoom-ratio), numbered per plot ``0 .. g*g-1``.

    ``boxes`` is ``(A, 4)``: ``anchors.corners`` for the middle column of Figs. 1-3,
    the predicted boxes for the right one. Returns the drawn rectangles, in number order.
    """
    scene = as_scene(example)
    idx = anchors.select(grid, scale).tolist()
    b = as_box_array(boxes)[idx]
    show_image(ax, scene.image, default_margin(grid) if margin is None else margin)
    if show_grid:
        draw_grid(ax, grid)
    gi = anchors.spec.grids.index(grid)
    ax.set_xlabel(anchors.spec.scale_label(gi, scale), fontsize=9)
    return [draw_box(ax, box, BOX_COLORS[n % len(BOX_COLORS)], str(n), lw=1.3, fontsize=fontsize, gid=f"box:{a}")[0]
            for n, (a, box) in enumerate(zip(idx, b))]


def draw_grid_row(axes: Sequence[Axes], example: Any, anchors: Anchors, pred_boxes: Any, grid: int, scale: int,
                  margin: Any = None) -> None:
    """One row of Figs. 1-3 on two axes: anchor boxes | predicted boxes (the article's ground-truth column is
    :func:`ground_truth_figure`, drawn once)."""
    scene = as_scene(example)
    draw_grid_panel(axes[0], scene, anchors, anchors.corners, grid, scale, margin)
    draw_grid_panel(axes[1], scene, anchors, pred_boxes, grid, scale, margin)


def moved_boxes_figure(example: Any, anchors: Anchors, pred_boxes: Any, grid: int = 4, scale: int = 0,
                       size: float = 5.4) -> Figure:
    """Notebook 3: how the activations move the boxes of one (grid, zoom-ratio) panel of Figs. 1-3.

    One panel, the grid cells and anchors, and each predicted box (solid, numbered per plot as in Figs. 1-3)
    over its anchor box (dashed, thinner, in the same colour), so the step from one to the other is seen
    box by box; the margin is just wide enough for both (:func:`panel_margin`). ``pred_boxes``: ``(A, 4)``.
    """
    scene, boxes, corners = as_scene(example), as_box_array(pred_boxes), to_numpy(anchors.corners).astype(float)
    fig, axes = figure_grid(1, 1, size)
    ax = axes[0, 0]
    show_image(ax, scene.image, panel_margin(anchors, boxes, grid, scale))
    draw_grid(ax, grid)
    for n, a in enumerate(anchors.select(grid, scale).tolist()):
        c = BOX_COLORS[n % len(BOX_COLORS)]
        draw_box(ax, corners[a], c, None, lw=1.0, ls=(0, (3, 2)), gid=f"anchor:{a}")
        draw_box(ax, boxes[a], c, str(n), lw=1.8, fontsize=9, gid=f"box:{a}")
    ax.set_title(f"{grid}x{grid} grid, {anchors.spec.scale_label(anchors.spec.grids.index(grid), scale)}", fontsize=11)
    fig.legend(handles=[Line2D([], [], color="black", lw=1.0, ls=(0, (3, 2)), label="anchor box (dashed)"),
                        Line2D([], [], color="black", lw=1.8, label="its predicted box (solid, numbered)")],
               loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return fig


def _rows(anchors: Anchors, grids: Sequence[int], scales: Optional[Sequence[int]]) -> list[int]:
    """The (zoom, ratio) rows to draw: ``scales`` (checked), or every row of the grids."""
    k = max(anchors.spec.k(anchors.spec.grids.index(g)) for g in grids)
    rows = list(range(k)) if scales is None else [int(s) for s in scales]
    if not rows or any(not 0 <= s < k for s in rows):
        raise ValueError(f"scales must be a non-empty list of row numbers 0..{k - 1}, got {scales!r}")
    return rows


def grid_figure(example: Any, anchors: Anchors, pred_boxes: Any, grid: int = 4, margin: Optional[float] = None,
                panel: float = 3.6, scales: Optional[Sequence[int]] = None) -> Figure:
    """Fig. 1 (grid 4), 2 (grid 2) or 3 (grid 1): a row per (zoom, ratio), anchor boxes | predicted boxes.

    ``pred_boxes``: ``(A, 4)`` or ``(1, A, 4)``. The two box panels of a row share one margin,
    just wide enough for that row's anchor and predicted boxes (:func:`panel_margin`), so the
    image fills as much of each panel as its boxes allow; ``margin`` fixes one for every row.
    ``scales`` draws only those rows (default: all nine); :func:`grid_figures` splits the figure.
    """
    scene = as_scene(example)
    rows = _rows(anchors, [grid], scales)
    fig, axes = _columns(len(rows), 2, panel)
    for r, s in enumerate(rows):
        m = panel_margin(anchors, pred_boxes, grid, s) if margin is None else margin
        draw_grid_row(axes[r], scene, anchors, pred_boxes, grid, s, m)
    for ax, title in zip(axes[0], (f"{grid}x{grid} grid: anchor boxes", "predicted boxes")):
        ax.set_title(title, fontsize=11)
    return fig


def grid_figures(example: Any, anchors: Anchors, pred_boxes: Any, grid: int = 4, per_figure: int = 3,
                 **kwargs: Any) -> list[Figure]:
    """:func:`grid_figure` in parts of ``per_figure`` rows (one part per zoom by default), so that no
    single image is taller than a screen or two; ``kwargs`` go to :func:`grid_figure`."""
    if per_figure < 1:
        raise ValueError(f"per_figure must be at least 1, got {per_figure}")
    rows = _rows(anchors, [grid], None)
    return [grid_figure(example, anchors, pred_boxes, grid, scales=rows[i:i + per_figure], **kwargs)
            for i in range(0, len(rows), per_figure)]


# ---------------------------------------------------------------- the aside and Fig. 4
def grid_colors(anchors: Anchors) -> list:
    """One colour per output grid (4x4, 2x2, 1x1), as in the aside and Fig. 4."""
    return [BOX_COLORS[(3, 0, 1, 4, 5, 6)[i % 6]] for i in range(len(anchors.spec.grids))]


def _draw_all(ax: Axes, scene: Scene, anchors: Anchors, boxes: np.ndarray, numbers: bool, margin: float) -> None:
    show_image(ax, scene.image, margin)
    colors = grid_colors(anchors)
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
    fig, axes = figure_grid(1, 1, size)
    _draw_all(axes[0, 0], scene, anchors, to_numpy(anchors.corners), False, fit_margin(anchors.corners, 0.05))
    axes[0, 0].set_title(f"all {len(anchors)} anchor boxes", fontsize=11)
    return fig


def all_predictions_figure(example: Any, anchors: Anchors, pred_boxes: Any, numbers: bool = False,
                           size: float = 5.0) -> Figure:
    """Fig. 4: the ground truth beside all predicted boxes (column 3 of Figs. 1-3 gathered)."""
    scene, boxes = as_scene(example), as_box_array(pred_boxes)
    fig, axes = figure_grid(1, 2, size)
    margin = fit_margin(boxes, 0.1)
    draw_ground_truth(axes[0, 0], scene, fontsize=10)
    axes[0, 0].set_title("ground truth", fontsize=11)
    _draw_all(axes[0, 1], scene, anchors, boxes, numbers, margin)
    axes[0, 1].set_title(f"all {len(boxes)} predicted boxes", fontsize=11)
    return fig


# ---------------------------------------------------------------- one panel of Figs. 1-3; column 3 of Figs. 1-3
def grid_panel_figure(example: Any, anchors: Anchors, boxes: Any, grid: int = 4, scale: int = 0,
                      margin: Optional[float] = None, size: float = 5.0) -> Figure:
    """One panel of Figs. 1-3 on its own, larger: grid cells, anchors and the boxes of one (grid, zoom-ratio).

    ``boxes``: ``(A, 4)`` or ``(1, A, 4)``; ``anchors.corners`` for the anchor boxes (the
    top-middle plot of Fig. 1 is ``grid=4, scale=0``) or the predicted boxes.
    The margin defaults to just what the boxes need (:func:`panel_margin`).
    """
    if margin is None:
        margin = panel_margin(anchors, boxes, grid, scale, with_anchors=False)
    fig, axes = figure_grid(1, 1, size)
    draw_grid_panel(axes[0, 0], example, anchors, boxes, grid, scale, margin, fontsize=10)
    return fig


def predictions_by_grid_figure(example: Any, anchors: Anchors, pred_boxes: Any, panel: float = 3.6) -> Figure:
    """Column 3 of Figs. 1, 2 and 3 side by side: a row per (zoom, ratio), a column per grid.

    Every panel is drawn exactly as in :func:`grid_figure` (same numbering, colours and
    margin), so each can be found in its figure. Needs the same scales on every grid.
    """
    scene, boxes = as_scene(example), as_box_array(pred_boxes)
    grids = list(anchors.spec.grids)
    ks = {anchors.spec.k(i) for i in range(len(grids))}
    if len(ks) != 1:
        raise ValueError("predictions_by_grid_figure needs the same number of scales on every grid")
    k = ks.pop()
    fig, axes = _columns(k, len(grids), panel)
    for col, g in enumerate(grids):
        for s in range(k):
            draw_grid_panel(axes[s, col], scene, anchors, boxes, g, s, panel_margin(anchors, boxes, g, s))
        axes[0, col].set_title(f"Fig. {col + 1}, column 3: {g}x{g} grid", fontsize=11)
    return fig


# ---------------------------------------------------------------- Figs. 5 and 6: the class of every predicted box
def draw_class_panel(ax: Axes, example: Any, anchors: Anchors, pred_boxes: Any, gt_idx: Any, grid: int, scale: int,
                     background: Any = None, margin: Optional[float] = None,
                     fontsize: float = 7.5) -> dict[int, tuple[int, Rectangle, Text]]:
    """One panel of Fig. 5/6: each predicted box of (grid, scale) labelled ``'n: class'``, over the ground
    truth drawn as wide, pale bands in its colours.

    ``gt_idx``: ``(A,)`` the ground-truth box each predicted box answers to; its class is
    the label. ``background``: ``(A,)`` bool, boxes drawn faint, dashed and labelled
    ``'n: bg'`` (background, Fig. 6); None for Fig. 5. Returns ``{anchor index: (n, rect, text)}``.
    """
    scene = as_scene(example)
    idx = anchors.select(grid, scale).tolist()
    boxes, gt_idx = as_box_array(pred_boxes), to_numpy(gt_idx).reshape(-1)
    bg = np.zeros(len(boxes), bool) if background is None else to_numpy(background).reshape(-1).astype(bool)
    if len(scene.labels) == 0:  # an image without objects: every box is background, in Fig. 5 too
        bg = np.ones(len(boxes), bool)
    show_image(ax, scene.image, default_margin(grid) if margin is None else margin)
    for i, box in enumerate(scene.boxes):  # the ground truth, under the boxes: what each class label refers to
        draw_box(ax, box, GT_COLORS[i % len(GT_COLORS)], None, gid=f"gt:{i}", **GT_BAND)
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
        text.set(text=f"{n}: bg", color="white", alpha=1.0, fontstyle="italic", zorder=2.1)  # faint box, legible label
        text.get_bbox_patch().set(edgecolor=BG_COLOR, alpha=LABEL_BOX["alpha"])
    else:
        c = GT_COLORS[gt % len(GT_COLORS)]
        rect.set(edgecolor=c, linestyle="-", alpha=1.0, lw=1.4, zorder=3)  # objects drawn over background
        text.set(text=f"{n}: {scene.class_names[int(scene.labels[gt])]}", color="white", alpha=1.0, fontstyle="normal",
                 zorder=3.1)
        text.get_bbox_patch().set(edgecolor=c, alpha=LABEL_BOX["alpha"])


def _class_figure(example: Any, anchors: Anchors, pred_boxes: Any, gt_idx: Any, background: Any = None,
                  grids: Optional[Sequence[int]] = None, panel: float = 2.9, title: Optional[str] = None,
                  scales: Optional[Sequence[int]] = None) -> tuple[Figure, dict[int, tuple[int, Rectangle, Text]]]:
    scene, boxes = as_scene(example), as_box_array(pred_boxes)
    grids = list(anchors.spec.grids if grids is None else grids)
    rows = _rows(anchors, grids, scales)
    fig, axes = _columns(len(rows), len(grids), panel, extra=0.7 + (0.4 if title else 0.0))
    artists: dict[int, tuple[int, Rectangle, Text]] = {}
    for col, g in enumerate(grids):
        gi = anchors.spec.grids.index(g)
        axes[0, col].set_title(f"{g}x{g} grid: predicted boxes", fontsize=11)
        for r, s in enumerate(rows):
            if s >= anchors.spec.k(gi):
                axes[r, col].set_axis_off()
                continue
            margin = panel_margin(anchors, boxes, g, s, with_anchors=False)
            artists.update(draw_class_panel(axes[r, col], scene, anchors, boxes, gt_idx, g, s, background, margin))
    bands = [Line2D([], [], color=GT_COLORS[i % len(GT_COLORS)], label=scene.gt_label(i), **GT_BAND)
             for i in range(len(scene.labels))]
    none = Line2D([], [], color="none", label="ground truth: no objects in this image, every box is background")
    fig.legend(handles=bands or [none], loc="outside lower center", ncol=max(1, len(bands)), fontsize=9, frameon=False,
               title="ground truth (wide, pale bands)" if bands else None, title_fontsize=9)
    if title:
        fig.suptitle(title, fontsize=13)
    return fig, artists


def class_figure(example: Any, anchors: Anchors, pred_boxes: Any, gt_idx: Any, background: Any = None,
                 grids: Optional[Sequence[int]] = None, panel: float = 2.9, title: Optional[str] = None,
                 scales: Optional[Sequence[int]] = None) -> Figure:
    """Fig. 5 (``background=None``) or Fig. 6 (``background=~match.positive``).

    Rows are the (zoom, ratio) pairs (``scales``: only those rows), one column per grid (the article's
    "first plot of the second column", its ground truth being the first, is the 4x4 grid at zoom 0.7,
    ratio (1, 1)); every predicted box is labelled ``'n: class'`` with ``n`` numbered per panel as in
    Figs. 1-3. The ground truth lies under the boxes as wide, pale bands, named in the legend.
    ``gt_idx``, ``background``: ``(A,)`` or ``(1, A)``.
    """
    return _class_figure(example, anchors, pred_boxes, gt_idx, background, grids, panel, title, scales)[0]


def class_figures(example: Any, anchors: Anchors, pred_boxes: Any, gt_idx: Any, background: Any = None,
                  title: str = "", per_figure: int = 3, **kwargs: Any) -> list[Figure]:
    """:func:`class_figure` in parts of ``per_figure`` rows (one part per zoom by default), each titled
    ``title`` with the rows it shows; ``kwargs`` go to :func:`class_figure`."""
    if per_figure < 1:
        raise ValueError(f"per_figure must be at least 1, got {per_figure}")
    rows = _rows(anchors, list(kwargs.get("grids") or anchors.spec.grids), None)
    parts = [rows[i:i + per_figure] for i in range(0, len(rows), per_figure)]
    return [class_figure(example, anchors, pred_boxes, gt_idx, background, scales=part, **kwargs,
                         title=f"{title} (rows {part[0] + 1}-{part[-1] + 1} of {len(rows)})".strip())
            for part in parts]


# ---------------------------------------------------------------- IoU, gradients, detections
def iou_heatmap(ious: Any, example: Any, anchors: Anchors, match: Any = None, b: int = 0) -> Figure:
    """All IoUs, ``(A, G)`` (or ``(B, A, G)`` with image ``b``), as a ground truth x box heatmap.

    With ``match`` (a :class:`~ssd_lesson.core.matching.Match`), each box's chosen ground
    truth is marked with a dot, and the forced matches (overlap 1.99) with a star.
    """
    scene = as_scene(example)
    m = to_numpy(ious).astype(float)
    m = m[b] if m.ndim == 3 else m
    m = m[:, : len(scene.labels)]
    fig = Figure(figsize=(11, 2.2 + 0.35 * m.shape[1]), layout="constrained")  # 990 px: shown at its own size
    ax = fig.subplots()
    im = ax.imshow(m.T, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(m.shape[1]), [scene.gt_label(i) for i in range(m.shape[1])])
    for off, g in zip(anchors.offsets, anchors.spec.grids):
        ax.axvline(off - 0.5, color="white", lw=1.5)
        ax.text(off + 1, -0.6, f"{g}x{g} grid", fontsize=9, va="bottom")
    if m.shape[1] == 0:  # an image without objects
        ax.set_title("no objects in this image: no IoU to show, every predicted box is background", fontsize=10)
    if match is not None and m.shape[1] > 0:
        gt_idx, ov = to_numpy(match.gt_idx), to_numpy(match.gt_overlap)
        gt_idx, ov = (gt_idx[b], ov[b]) if gt_idx.ndim == 2 else (gt_idx, ov)
        forced = ov == FORCED_OVERLAP
        a = np.arange(len(gt_idx))
        ax.scatter(a[~forced], gt_idx[~forced], s=9, color="white", edgecolors="black", linewidths=0.4,
                   label="each box's best ground truth")
        ax.scatter(a[forced], gt_idx[forced], s=90, marker="*", color="red", edgecolors="white", linewidths=0.5,
                   label=f"forced match ({FORCED_OVERLAP})")
        ax.legend(loc="upper right", bbox_to_anchor=(1, -0.25), ncol=2, fontsize=8, frameon=False)
    ax.set_xlabel("predicted box index")
    fig.colorbar(im, ax=ax, label="IoU", fraction=0.02)
    return fig
