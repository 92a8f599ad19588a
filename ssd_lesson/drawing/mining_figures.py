"""Hard negative mining drawn (notebook 12): which background boxes the SSD paper's loss keeps.

Left, every negative (background box) of one image ranked by its classification loss, highest first, the
kept ones coloured: the hardest ``neg_pos_ratio`` per positive. Right, the image with its ground truth and
the kept negatives' anchor boxes. The pieces (:func:`draw_ranked_losses`, :func:`outline_segments`) are
shared with :class:`~ssd_lesson.course.widgets.mining.MiningWidget`, which moves only the kept ones.
Boxes are ``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ..core.anchors import Anchors
from ..core.mining import box_classification_loss
from .draw import BG_COLOR, BOX_COLORS, as_scene, draw_ground_truth, fit_margins, show_image, to_numpy

__all__ = ["KEPT_COLOR", "negative_ranking", "draw_ranked_losses", "outline_segments", "mining_figure"]

KEPT_COLOR = BOX_COLORS[0]  # the kept negatives, in both panels
FLOOR = 1e-6  # losses below this sit on the log scale's bottom edge


def negative_ranking(box_loss: Any, positive: Any) -> np.ndarray:
    """The negatives' box indices ``(N,)``, highest loss first (ties in box order), from ``(A,)`` ``box_loss`` and
    ``(A,)`` bool ``positive``: the order in which hard negative mining keeps them."""
    loss, pos = to_numpy(box_loss).astype(float), to_numpy(positive).astype(bool)
    negatives = np.flatnonzero(~pos)
    return negatives[np.argsort(-loss[negatives], kind="stable")]


def draw_ranked_losses(ax: Axes, box_loss: Any, positive: Any) -> np.ndarray:
    """Each negative's loss (y, log scale) against its rank (x), grey; returns :func:`negative_ranking`."""
    order = negative_ranking(box_loss, positive)
    loss = np.maximum(to_numpy(box_loss).astype(float)[order], FLOOR)
    ax.scatter(np.arange(1, len(order) + 1), loss, s=8, color=BG_COLOR, label="negative, not counted")
    ax.set(yscale="log", xlim=(0, len(order) + 1))
    ax.set_xlabel("negatives, hardest first (rank)", fontsize=9)
    ax.set_ylabel("classification loss of the box", fontsize=9)
    ax.tick_params(labelsize=8.5)
    return order


def outline_segments(boxes: Any) -> list[np.ndarray]:
    """One closed outline ``(5, 2)`` of ``(x, y)`` points per ``(y0, x0, y1, x1)`` box of ``(N, 4)`` ``boxes``
    (for a :class:`~matplotlib.collections.LineCollection`, which can change its boxes without redrawing the rest)."""
    return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]) for y0, x0, y1, x1 in to_numpy(boxes).reshape(-1, 4)]


def mining_figure(example: Any, anchors: Anchors, result: Any, class_logits: Any, b: int = 0,
                  size: float = 3.6) -> Figure:
    """The negatives ``result`` (an :class:`~ssd_lesson.core.loss.SSDLossResult` with ``neg_pos_ratio`` set) keeps in
    image ``b``: their rank by softmax loss (left) and their anchor boxes over the image (right).

    ``class_logits``: ``(B, A, C+1)``, the logits ``result`` was computed from."""
    if result.options.neg_pos_ratio is None:
        raise ValueError("mining_figure: result was computed without hard negative mining (options.neg_pos_ratio is None)")
    box_loss = box_classification_loss(class_logits.detach(), result.target_labels, "softmax")[b]
    positive, kept = to_numpy(result.match.positive[b]), to_numpy(result.counted_negatives[b])
    fig = Figure(figsize=(2.2 * size, size), layout="constrained")
    rank_ax, image_ax = fig.subplots(1, 2, width_ratios=[1.25, 1.0])
    order = draw_ranked_losses(rank_ax, box_loss, positive)
    n_kept = int(kept.sum())
    loss = np.maximum(to_numpy(box_loss).astype(float), FLOOR)
    rank_ax.scatter(np.arange(1, n_kept + 1), loss[order[:n_kept]], s=14, color=KEPT_COLOR, label="kept (hard negative)")
    rank_ax.axvline(n_kept + 0.5, color=KEPT_COLOR, lw=0.8, ls="--")
    rank_ax.legend(fontsize=8.5, loc="upper right")
    rank_ax.set_title(f"{n_kept} of {len(order)} negatives kept: {result.options.neg_pos_ratio:g} per positive "
                      f"({int(positive.sum())})", fontsize=9)
    scene = as_scene(example)
    kept_boxes = to_numpy(anchors.corners)[kept]
    margin = fit_margins(np.concatenate([kept_boxes, scene.boxes]))
    show_image(image_ax, scene.image, margin)
    draw_ground_truth(image_ax, scene, fontsize=8)
    image_ax.add_collection(LineCollection(outline_segments(kept_boxes), colors=KEPT_COLOR, linewidths=1.2,
                                           linestyles="--"))
    image_ax.set_title("their anchor boxes (dashed), and the ground truth", fontsize=9)
    return fig
