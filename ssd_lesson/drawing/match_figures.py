"""Positive boxes drawn one row per object: the two matchings (notebook 11), training's stages (notebook 9).

Each row shows one ground-truth object and only its own positives, so a few boxes share a panel and
each label sits at its own box; within a row a box keeps one colour, so a box can be followed from
panel to panel (the anchor box in the middle to its predicted box on the right; a box from one stage
of training to the next). Boxes are ``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..core.anchors import Anchors
from ..core.boxes import box_iou
from .draw import BOX_COLORS, GT_COLORS, as_box_array, as_scene, draw_box, show_image, to_numpy
from .loss_figures import spread_by_overlap, zoom_on

__all__ = ["match_modes_figure", "training_progress_figure", "ROW_COLORS"]

#: The colours of a row's boxes, in box-index order: bright ones first, none of them the blue, orange,
#: green or red of the first four ground-truth bands.
ROW_COLORS = [BOX_COLORS[i] for i in (2, 7, 6, 8, 5, 9, 10, 11, 0, 1, 3, 4)]
BAND = dict(lw=6, alpha=0.35)  # the ground truth: a wide, pale band no box line can be taken for


def few_positives(result: Any, b: int, per_object: int) -> tuple[dict[int, list[int]], dict[int, int]]:
    """``{object: box indices}``: at most ``per_object`` positives of each object of image ``b`` (its best-
    and worst-overlapping and evenly between, :func:`~ssd_lesson.drawing.loss_figures.spread_by_overlap`),
    and how many positives each object has, ``{object: n}``, as a second dict."""
    pos, gt_idx = np.flatnonzero(to_numpy(result.match.positive[b])), to_numpy(result.match.gt_idx[b])
    overlap = to_numpy(result.match.gt_overlap[b]).astype(float)
    mine = {int(g): [int(a) for a in pos if gt_idx[a] == g] for g in sorted(set(gt_idx[pos].tolist()))}
    return {g: spread_by_overlap(v, overlap, per_object) for g, v in mine.items()}, {g: len(v) for g, v in mine.items()}


def match_modes_figure(example: Any, anchors: Anchors, by_predictions: Any, by_anchors: Any, b: int = 0,
                       panel: float = 2.6, per_object: int = 3) -> Figure:
    """Notebook 11: the positives when ground truth is matched to predicted boxes or to anchor boxes.

    One row per ground-truth object (its wide, pale band; the row's label names it), three columns.
    Left: the object's positives under ``by_predictions`` (``ssd_loss(match_on="predictions")``), drawn
    as the predicted boxes the IoU was taken on. Middle: its positives under ``by_anchors``
    (``match_on="anchors"``), drawn as their anchor boxes. Right: the same positives' predicted boxes,
    dashed, which the regression loss moves. Each box is labelled with its box index at its own corner
    and keeps one colour across its row (a box positive in both matchings has it in all three panels).
    ``per_object``: at most that many positives of each object per matching are drawn (the best-, the
    worst-overlapping and evenly between); each panel's caption counts them all.
    """
    scene = as_scene(example)
    pp, pa = as_box_array(by_predictions.pred_boxes[b]), as_box_array(by_anchors.pred_boxes[b])
    corners = to_numpy(anchors.corners).astype(float)
    (few_p, n_p), (few_a, n_a) = few_positives(by_predictions, b, per_object), few_positives(by_anchors, b, per_object)
    objects = sorted(set(few_p) | set(few_a))
    rows = max(1, len(objects))
    fig = Figure(figsize=(3 * panel + 0.4, rows * (panel + 0.25) + 1.2), layout="compressed")
    axes = np.asarray(fig.subplots(rows, 3, squeeze=False))
    columns = ((pp, few_p, n_p, "-"), (corners, few_a, n_a, "-"), (pa, few_a, n_a, (0, (4, 2))))
    for r, g in enumerate(objects):
        mine = sorted({a for few in (few_p, few_a) for a in few.get(g, [])})  # the row's boxes, one colour each
        color = {a: ROW_COLORS[k % len(ROW_COLORS)] for k, a in enumerate(mine)}
        view = np.concatenate([scene.boxes[g][None]] + [boxes[few.get(g, [])] for boxes, few, _, _ in columns])
        for c, (boxes, few, n, ls) in enumerate(columns):
            ax = axes[r, c]
            show_image(ax, scene.image)
            draw_box(ax, scene.boxes[g], GT_COLORS[g % len(GT_COLORS)], None, gid=f"gt:{g}", **BAND)
            for a in few.get(g, []):
                draw_box(ax, boxes[a], color[a], str(a), lw=1.8, ls=ls, fontsize=8, gid=f"box:{a}")
            zoom_on(ax, view)  # the same square view across the row: the object and every box drawn in it
            shown = len(few.get(g, []))
            ax.set_xlabel(f"{n.get(g, 0)} positive{'s' if n.get(g, 0) != 1 else ''}"
                          + (f", {shown} drawn" if shown < n.get(g, 0) else ""), fontsize=9)
        axes[r, 0].set_ylabel(scene.gt_label(g), fontsize=10)
    if not objects:  # an image without objects: nothing is positive
        for ax in axes[0]:
            show_image(ax, scene.image)
        axes[0, 0].set_ylabel("no objects: no positives", fontsize=10)
    total_p, total_a = sum(n_p.values()), sum(n_a.values())
    for ax, title in zip(axes[0], (f'match_on="predictions"\n{total_p} positives (the article)',
                                   f'match_on="anchors"\n{total_a} positives (the lesson)',
                                   "the middle's boxes, as predicted:\nwhat the regression moves")):
        ax.set_title(title, fontsize=10)
    fig.legend(handles=[Line2D([], [], color="grey", label="the row's ground-truth box (wide, pale)", **BAND),
                        Line2D([], [], color="black", lw=1.8, label="positive: predicted box (left), anchor box (middle)"),
                        Line2D([], [], color="black", lw=1.8, ls=(0, (4, 2)), label="the middle's boxes as predicted (right)")],
               loc="outside lower center", ncol=2, fontsize=9, frameon=False,
               title=f"labelled with the box index; a box keeps its colour across its row; at most {per_object} "
                     "per object drawn (its best, its worst, between)", title_fontsize=9)
    return fig



def training_progress_figure(example: Any, stages: dict[str, Any], gt_idx: Any, positive: Any, panel: float = 2.6,
                             per_object: Optional[int] = None) -> Figure:
    """Notebook 9: the same predicted boxes at several stages of training, a row per object, a column per stage.

    ``stages``: ``{title: (A, 4) predicted boxes}``; ``gt_idx`` / ``positive``: ``(A,)`` the ground-truth box
    each predicted box answers to and whether it is a positive (a match on the anchors, which do not move, so
    every panel shows the same boxes). A row shows one object (its wide, pale band; the row's label names it)
    and only its own positives, solid, labelled with the box index and one colour each across the row, in one
    view. A column's title gives the mean IoU of all the positives with their objects; a panel's caption, that
    of the row's positives (drawn or not). ``per_object``: at most that many of each object's positives drawn,
    the same in every panel (:func:`spread_by_overlap` of their IoU in the last stage: best, worst, between).
    """
    if per_object is not None and per_object < 1:
        raise ValueError(f"per_object must be at least 1, got {per_object}")
    scene = as_scene(example)
    pos, gi = to_numpy(positive).reshape(-1).astype(bool), to_numpy(gt_idx).reshape(-1).astype(int)
    idx = np.flatnonzero(pos)
    all_boxes = {t: as_box_array(b) for t, b in stages.items()}
    gt = torch.as_tensor(scene.boxes, dtype=torch.float64)
    iou = {t: np.zeros(len(gi)) for t in all_boxes}  # (A,) each positive's IoU with its object, per stage
    for t, b in all_boxes.items():
        if len(idx):
            iou[t][idx] = box_iou(torch.as_tensor(b[idx], dtype=torch.float64), gt)[np.arange(len(idx)), gi[idx]].numpy()
    objects = sorted({int(gi[a]) for a in idx})
    mine = {g: [int(a) for a in idx if gi[a] == g] for g in objects}
    last = list(iou.values())[-1]
    drawn = {g: v if per_object is None else spread_by_overlap(v, last, per_object) for g, v in mine.items()}
    rows = max(1, len(objects))
    fig = Figure(figsize=(len(all_boxes) * panel + 0.4, rows * (panel + 0.25) + 1.2), layout="compressed")
    axes = np.asarray(fig.subplots(rows, len(all_boxes), squeeze=False))
    for r, g in enumerate(objects):
        color = {a: ROW_COLORS[k % len(ROW_COLORS)] for k, a in enumerate(drawn[g])}
        view = np.concatenate([scene.boxes[g][None]] + [b[drawn[g]] for b in all_boxes.values()])
        for c, (title, boxes) in enumerate(all_boxes.items()):
            ax = axes[r, c]
            show_image(ax, scene.image)
            draw_box(ax, scene.boxes[g], GT_COLORS[g % len(GT_COLORS)], None, gid=f"gt:{g}", **BAND)
            for a in drawn[g]:
                draw_box(ax, boxes[a], color[a], str(a), lw=1.8, fontsize=8, gid=f"box:{a}")
            zoom_on(ax, view)  # the same square view across the row: the object and every box drawn in it
            n = len(mine[g])
            ax.set_xlabel(f"mean IoU {float(iou[title][mine[g]].mean()):.2f} ({n} positive{'s' if n != 1 else ''}"
                          + (f", {len(drawn[g])} drawn)" if len(drawn[g]) < n else ")"), fontsize=9)
        axes[r, 0].set_ylabel(scene.gt_label(g), fontsize=10)
    if not objects:  # an image without objects: nothing is positive
        for ax in axes[0]:
            show_image(ax, scene.image)
        axes[0, 0].set_ylabel("no objects: no positives", fontsize=10)
    for ax, title in zip(axes[0], all_boxes):
        mean = float(iou[title][idx].mean()) if len(idx) else float("nan")
        ax.set_title(f"{title}\nmean IoU with its object {mean:.2f}", fontsize=10)
    fig.legend(handles=[Line2D([], [], color="grey", label="the row's ground-truth box (wide, pale)", **BAND),
                        Line2D([], [], color="black", lw=1.8, label="its positive boxes, labelled with the box index")],
               loc="outside lower center", ncol=2, fontsize=9, frameon=False,
               title="a box keeps its colour across its row" + ("" if per_object is None else
                                                                 f"; at most {per_object} per object drawn"),
               title_fontsize=9)
    return fig
