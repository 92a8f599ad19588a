"""Figures beyond the article's: the loss (notebooks 6-8) and detections (10).

Built from the primitives of :mod:`ssd_lesson.drawing.draw`; boxes are ``(y0, x0, y1, x1)``
fractions of the image unless a docstring says pixels.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from ..core.anchors import Anchors
from .placement import placer_for
from .draw import (BOX_COLORS, GT_COLORS, as_box_array, as_scene, draw_box, draw_ground_truth, figure_grid,
                   fit_margin, fit_margins, panel_figure, show_detections, show_image, to_numpy)
from ..core.loss import classification_loss
from ..core.options import LossOptions

__all__ = ["gradient_figure", "detections_figure", "regression_figure", "focal_curves_figure",
           "box_loss_figure", "detection_panels_figure", "spread_by_overlap"]
REGRESSION_BAND = 10  # points: the ground truth drawn as a band no box line can be taken for

LOG_RANGE = 1e-5  # the gradient figure's colour scale is logarithmic down to this fraction of its largest value
_HALO = [patheffects.withStroke(linewidth=4, foreground="white")]
_HALO_THIN = [patheffects.withStroke(linewidth=2.6, foreground="white")]
_HALO_DARK = [patheffects.withStroke(linewidth=3.4, foreground="black")]


def gradient_figure(example: Any, anchors: Anchors, result: Any, box_grad: Any, logit_grad: Any, b: int = 0,
                    arrow: float = 0.12, per_object: int = 4) -> Figure:
    """Notebook 8: where the loss pulls each positive box, and which class logits it pushes.

    Left, one panel per ground-truth object (white, dashed), zoomed to it: at most ``per_object`` of
    the positive predicted boxes that answer to it (:func:`spread_by_overlap`: its best and worst
    overlap and some between; more would hide the photo), solid, its colour, numbered by box index,
    with an arrow at two corners along minus the gradient, the way one step of gradient descent
    moves it (longest arrow ``arrow`` times the panel's side: the same length on screen in every
    panel). Right:
    ``d loss / d logit`` per box (rows) and class (columns) on a symmetric log colour scale
    (linear only below :data:`LOG_RANGE` times the largest gradient), so the many
    small gradients show beside the few large ones; red (positive) means the step pushes that
    logit down. The background column stays 0: BCE drops it.
    """
    if per_object < 1:
        raise ValueError(f"per_object must be at least 1, got {per_object}")
    scene = as_scene(example)
    pos = to_numpy(result.match.positive[b]).astype(bool)
    gt_idx, overlap = to_numpy(result.match.gt_idx[b]), to_numpy(result.match.gt_overlap[b]).astype(float)
    pred, gtb = to_numpy(result.pred_boxes[b]).astype(float), to_numpy(result.target_boxes[b]).astype(float)
    gb, gl = to_numpy(box_grad).astype(float), to_numpy(logit_grad).astype(float)
    objects = sorted({int(gt_idx[a]) for a in np.flatnonzero(pos)}) or [0]
    rows = -(-len(objects) // 2)
    fig = Figure(figsize=(11, max(7.4, 3.6 * rows)), layout="constrained")
    gs = fig.add_gridspec(rows, 3, width_ratios=(0.75, 0.75, 1))
    img_axes = [fig.add_subplot(gs[i // 2, i % 2]) for i in range(len(objects))]
    hx = fig.add_subplot(gs[:, 2])
    margin = fit_margins(pred[pos], 0.03) if pos.any() else 0.0
    scale = arrow / max(np.abs(gb[pos]).max(), 1e-12) if pos.any() else 0.0
    if len(scene.labels) == 0:  # an image without objects: the image, and why there is nothing to pull
        show_image(img_axes[0], scene.image, margin)
        img_axes[0].set_title("no objects in this image: no positive box to pull;\nthe loss only pushes class logits down",
                              fontsize=10)
        objects = []
    for ax, g in zip(img_axes, objects):  # one panel per ground-truth object: its positives only
        c = GT_COLORS[g % len(GT_COLORS)]
        mine = [int(a) for a in np.flatnonzero(pos) if int(gt_idx[a]) == g]
        drawn = spread_by_overlap(mine, overlap, per_object)
        show_image(ax, scene.image, margin)
        shown_boxes = np.concatenate([pred[drawn], gtb[mine[:1]]]) if mine else np.asarray(scene.boxes[g:g + 1], float)
        side = _zoom_to(ax, shown_boxes, arrow)
        if mine:  # white, dashed on a dark rim: told apart from the solid boxes of the object's colour
            rect, _ = draw_box(ax, gtb[mine[0]], "white", None, lw=2.0, ls=(0, (4, 2.5)))
            rect.set_path_effects(_HALO_DARK)
        for a in drawn:
            draw_box(ax, pred[a], c, str(a), lw=1.4, fontsize=8, gid=f"box:{a}")
            for yi, xi in ((0, 1), (2, 3)):  # top-left and bottom-right corners
                step = scale * side  # the same length on screen in every panel, whatever its zoom
                ann = ax.annotate("", xy=(pred[a, xi] - step * gb[a, xi], pred[a, yi] - step * gb[a, yi]),
                                  xytext=(pred[a, xi], pred[a, yi]),
                                  arrowprops=dict(arrowstyle="-|>", color=c, lw=1.8, mutation_scale=13))
                ann.arrow_patch.set_path_effects(_HALO)  # a white rim: visible on the photo and on the box lines
                placer_for(ax).avoid(ann)  # every box number stays readable, off the arrows
        shown = f"{len(mine)}" if len(drawn) == len(mine) else f"{len(drawn)} of {len(mine)}"
        ax.set_title(f"{scene.gt_label(g)}: {shown} positive{'s' if len(mine) != 1 else ''}", fontsize=10)
    fig.suptitle(f"{int(pos.sum())} positive boxes (solid; at most {per_object} drawn per object) pulled toward their "
                 "ground truth (white, dashed); right: the gradient on each class logit", fontsize=11)
    v = max(np.abs(gl).max(), 1e-12)
    norm = SymLogNorm(linthresh=v * LOG_RANGE, linscale=0.3, vmin=-v, vmax=v, base=10)
    im = hx.imshow(gl, aspect="auto", cmap="RdBu_r", norm=norm, interpolation="nearest")
    names = list(scene.class_names) + ["background"]
    hx.set_xticks(range(gl.shape[1]), names[: gl.shape[1]], rotation=90, fontsize=8)
    hx.set_yticks(anchors.offsets, [f"{g}x{g}: {o}" for g, o in zip(anchors.spec.grids, anchors.offsets)], fontsize=8)
    for off in anchors.offsets[1:]:
        hx.axhline(off - 0.5, color="black", lw=0.8)
    hx.scatter(np.full(pos.sum(), gl.shape[1] - 0.5 + 0.6), np.flatnonzero(pos), marker="<", s=14, color="black",
               clip_on=False)
    hx.set_xlim(-0.5, gl.shape[1] - 0.5)  # the markers sit just outside, right of their rows, clear of the ticks
    hx.set_ylabel("predicted box (positives marked < on the right)")
    hx.set_title("d loss / d logit\n(red: pushed down, blue: pushed up)", fontsize=11)
    top = int(np.floor(np.log10(v)))
    decades = [10.0 ** e for e in range(top - 4, top + 1, 2)]  # every other decade down the log range, and 0
    cb = fig.colorbar(im, ax=hx, fraction=0.05, pad=0.08, ticks=[-d for d in decades[::-1]] + [0.0] + decades)
    cb.ax.tick_params(labelsize=8)
    cb.set_label("d loss / d logit (symmetric log scale)", fontsize=9)
    return fig


def _zoom_to(ax: Axes, boxes: np.ndarray, arrow: float) -> float:
    """Zoom ``ax`` to a square around ``boxes`` (``(n, 4)`` (y0, x0, y1, x1) fractions), with room for arrows of
    ``arrow`` times the square's side; return that side (a fraction of the image)."""
    y0, x0 = boxes[:, 0].min(), boxes[:, 1].min()
    y1, x1 = boxes[:, 2].max(), boxes[:, 3].max()
    side = min(max(y1 - y0, x1 - x0) / (1 - 2.6 * arrow), 1.1)  # an arrow's room on both sides, at most the image
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2  # centred on the boxes, even where they leave the photo
    ax.set_xlim(cx - side / 2, cx + side / 2)
    ax.set_ylim(cy + side / 2, cy - side / 2)  # y grows downwards, as in the image
    return side


def spread_by_overlap(boxes: Sequence[int], overlap: np.ndarray, k: int) -> list[int]:
    """At most ``k`` of ``boxes`` (box indices), spread over their ``overlap`` (``(A,)``, each box's
    IoU with its object): the best, the worst and evenly between, returned in index order."""
    if len(boxes) <= k:
        return list(boxes)
    ranked = sorted(boxes, key=lambda a: (-overlap[a], a))  # best first; ties by index: deterministic
    picks = np.unique(np.round(np.linspace(0, len(ranked) - 1, k)).astype(int))
    return sorted(ranked[i] for i in picks)


def detections_figure(example: Any, boxes: Any, labels: Any, scores: Any, size: float = 5.0,
                      class_names: Optional[Sequence[str]] = None) -> Figure:
    """Ground truth beside detections ``(N, 4)`` labelled ``'class score'`` (notebooks 9-10)."""
    scene = as_scene(example)
    names = scene.class_names if class_names is None else class_names
    boxes, labels, scores = as_box_array(boxes).reshape(-1, 4), to_numpy(labels).reshape(-1), to_numpy(scores).reshape(-1)
    fig, axes = figure_grid(1, 2, size)
    margin = fit_margin(boxes, 0.0)
    draw_ground_truth(axes[0, 0], scene, margin, fontsize=10)
    axes[0, 0].set_title("ground truth", fontsize=11)
    show_image(axes[0, 1], scene.image, margin)
    for i, (box, lab, sc) in enumerate(zip(boxes, labels, scores)):
        draw_box(axes[0, 1], box, BOX_COLORS[int(lab) % len(BOX_COLORS)], f"{names[int(lab)]} {sc:.2f}", lw=2,
                 fontsize=9, gid=f"det:{i}")
    axes[0, 1].set_title(f"{len(boxes)} detections", fontsize=11)
    return fig


# ---------------------------------------------------------------- notebooks 6 and 7
def regression_figure(example: Any, result: Any, b: int = 0, ncols: int = 2, panel: float = 4.4,
                      per_panel: int = 3) -> Figure:
    """Table 4 drawn (notebook 7): one panel per object, zoomed on it, with at most ``per_panel`` of its
    positive boxes: the best-fitting (smallest MAE), the worst, and evenly between (Table 4 lists them all).

    Each panel shows the object's ground-truth box as a wide, pale band (the title names it)
    and each drawn positive predicted box as a thin solid line numbered with its box index,
    all in the object's colour, with a dotted line joining each pair of corners the L1 loss
    compares; the x-axis label gives each drawn box's MAE over its four coordinates.
    """
    if per_panel < 1:
        raise ValueError(f"per_panel must be at least 1, got {per_panel}")
    scene = as_scene(example)
    pos = np.flatnonzero(to_numpy(result.match.positive[b]))
    pred, gtb = to_numpy(result.pred_boxes[b]).astype(float), to_numpy(result.target_boxes[b]).astype(float)
    gt_idx = to_numpy(result.match.gt_idx[b])
    mae = np.abs(pred - gtb).mean(axis=1)
    groups = []  # (object, the positives drawn, how many it has)
    for g in sorted({int(gt_idx[a]) for a in pos}):
        mine = sorted((int(a) for a in pos if int(gt_idx[a]) == g), key=lambda a: mae[a])  # best fit first
        picks = sorted({int(round(i)) for i in np.linspace(0, len(mine) - 1, min(per_panel, len(mine)))})
        groups.append((g, [mine[i] for i in picks], len(mine)))
    n_panels = max(len(groups), 1)
    ncols = max(1, min(n_panels, ncols))
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(ncols * panel, nrows * (panel + 0.5) + 0.3), layout="constrained")  # room for captions
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n_panels:]:
        ax.set_axis_off()
    if not len(pos):
        axes[0].text(0.5, 0.5, "no positive box", ha="center", va="center")
        return fig
    for ax, (g, mine, total) in zip(axes, groups):
        c = GT_COLORS[g % len(GT_COLORS)]
        show_image(ax, scene.image, fit_margins(np.concatenate([pred[mine], gtb[mine]]), 0.03))
        draw_box(ax, scene.boxes[g], c, None, lw=REGRESSION_BAND, alpha=0.45, gid=f"gt:{g}")  # named in the title
        for a in mine:
            draw_box(ax, pred[a], c, str(a), lw=1.6, fontsize=9, gid=f"pred:{a}")
            for yi, xi in ((0, 1), (0, 3), (2, 1), (2, 3)):  # the four corners
                ax.plot([pred[a, xi], gtb[a, xi]], [pred[a, yi], gtb[a, yi]], color=c, lw=1.6, ls=(0, (1, 1)),
                        path_effects=_HALO_THIN)
        zoom_on(ax, np.concatenate([pred[mine], scene.boxes[g][None]]))
        drawn = "" if len(mine) == total else f", {len(mine)} drawn (best, worst{', between' if len(mine) > 2 else ''})"
        ax.set_title(f"{scene.gt_label(g)}: {total} positive{'s' if total > 1 else ''}{drawn}", fontsize=10)
        ax.set_xlabel("MAE of box " + ", ".join(f"{a}: {mae[a]:.4f}" for a in mine), fontsize=9)
    fig.legend(handles=[Line2D([], [], color="grey", lw=REGRESSION_BAND, alpha=0.45, label="ground-truth box (wide, pale)"),
                        Line2D([], [], color="grey", lw=1.6, label="positive predicted box (numbered)"),
                        Line2D([], [], color="grey", lw=1.6, ls=(0, (1, 1)), label="corners the L1 loss compares")],
               loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    return fig


def zoom_on(ax: Axes, boxes: np.ndarray, pad: float = 0.06) -> None:
    """Frame ``boxes`` ``(N, 4)`` in a square view with ``pad`` (fraction of the image side) around them."""
    y0, x0 = boxes[:, :2].min(axis=0) - pad
    y1, x1 = boxes[:, 2:].max(axis=0) + pad
    side = max(y1 - y0, x1 - x0)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    ax.set_xlim(cx - side / 2, cx + side / 2)
    ax.set_ylim(cy + side / 2, cy - side / 2)  # y grows downwards, as in the image
    for spine in ax.spines.values():  # the view ends where the boxes do, not at the image's edge
        spine.set_visible(False)


def focal_curves_figure(gammas: Sequence[float] = (1.0, 2.0), alpha: float = LossOptions.focal_alpha,
                        size: float = 4.0) -> Figure:
    """Notebook 6: the loss of one (box, class) term against the probability the model gives that class.

    Left: the box's own class (target 1); right: any other class, or every class of a
    background box (target 0). Binary cross-entropy beside the focal loss
    ``alpha_t (1 - p_t) ** gamma * BCE`` for each gamma, all computed by
    :func:`~ssd_lesson.core.loss.classification_loss` (one class, so C = 1).
    """
    p = torch.linspace(0.005, 0.995, 199, dtype=torch.float64)
    x = torch.logit(p)
    logits = torch.stack([x, torch.zeros_like(x)], dim=-1).unsqueeze(1)  # (N, 1, 2): one class + background
    fig, axes = figure_grid(1, 2, size)
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
    pos = to_numpy(positive).reshape(-1).astype(bool)
    fig = Figure(figsize=(12, 0.8 + height * len(losses)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(losses), 1, sharex=True))
    colors = np.where(pos, "tab:orange", "#9a9a9a")
    for ax, (name, v) in zip(axes, losses.items()):
        v = to_numpy(v).reshape(-1).astype(float)
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


# ---------------------------------------------------------------- notebook 10: detections
def detection_panels_figure(images: Sequence[Any], detections: Sequence[Any], class_names: Sequence[str],
                            titles: Optional[Sequence[str]] = None, ncols: int = 4, panel: float = 3.0,
                            min_score: float = 0.0, truths: Optional[Sequence[Any]] = None,
                            hits: Optional[Sequence[Any]] = None) -> Figure:
    """Notebook 10: a grid of images, each with its detections labelled ``'class score'``.

    ``images``: ``(H, W, 3)`` uint8 or normalised ``(3, H, W)`` tensors; ``detections``: one
    ``(boxes, labels, scores)`` per image (an :class:`ssd_lesson.model.infer.Detections`), boxes in
    pixels of that image, as :func:`ssd_lesson.model.infer.predict` returns. Drawn with
    :func:`ssd_lesson.drawing.draw.show_detections`; ``scores=None`` draws ground truth.
    ``truths``: one ``(boxes, labels)`` per image, ``(G, 4)`` pixels and ``(G,)``, drawn dashed white under
    the detections and not labelled (the title can name them), so that a hit can be told from a false alarm.
    ``hits``: one ``(N,)`` bool per image (:func:`~ssd_lesson.model.metrics.detection_hits`): false alarms thin.
    """
    n = len(images)
    if len(detections) != n:
        raise ValueError(f"{n} images but {len(detections)} detections")
    if truths is not None and len(truths) != n:
        raise ValueError(f"{n} images but {len(truths)} ground truths")
    fig, axes = panel_figure(n, min(ncols, max(n, 1)), panel)
    for i, (ax, image, (boxes, labels, scores)) in enumerate(zip(axes.flat, images, detections)):
        show_detections(ax, image, boxes, labels, scores, class_names, min_score=min_score,
                        title=None if titles is None else titles[i], hits=None if hits is None else hits[i])
        for y0, x0, y1, x1 in ([] if truths is None else to_numpy(truths[i][0]).reshape(-1, 4).tolist()):
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=1.8, ls=(0, (4, 3)),
                                   path_effects=_HALO_DARK, gid="truth"))
        if titles is not None:
            ax.title.set_fontsize(9)
    if truths is not None:
        detection = ([Line2D([], [], color="0.35", lw=2, label="detection, coloured by class (class score)")]
                     if hits is None else [Line2D([], [], color="0.35", lw=2, label="hit (class score)"),
                                           Line2D([], [], color="0.35", lw=1, label="false alarm (score)")])
        classes = [] if hits is None else [Patch(color=BOX_COLORS[c % len(BOX_COLORS)], label=class_names[c]) for c in
                                           sorted({int(c) for d in detections for c in to_numpy(d[1]).reshape(-1)})]
        fig.legend(handles=[Line2D([], [], color="white", lw=1.8, ls=(0, (4, 3)), path_effects=_HALO_DARK,
                                   label="ground truth"), *detection, *classes],
                   loc="outside lower center", ncol=1 + len(detection) + len(classes), fontsize=9, frameon=False)
    return fig
