"""The IoU threshold as a slider (notebook 5): the positive boxes, the count and the losses follow it.

Drawn as the other widgets are (:mod:`ssd_lesson.course.widgets`): the photo, the ground truth and the
curves once; each step shows the boxes positive at the threshold and moves the marks.
Boxes are ``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Optional

import ipywidgets as W
import numpy as np
import torch
from matplotlib.figure import Figure

from ...core.anchors import Anchors
from ...core.loss import SSDLossResult, ssd_loss
from ...core.matching import FORCED_OVERLAP
from ...core.options import LossOptions
from ...drawing import plots
from ...drawing.placement import placer_for
from .base import MARGIN_COLOR, Coalesce, FigureWidget, Frames, animate, display_args, number_arg, one_image_args

__all__ = ["ThresholdWidget"]

GT_LW, GT_ZORDER = 2.6, 2.5  # the ground truth: thicker than the positives and above them (labels stay on top)
POSITIVE_ALPHA = 0.55  # the positives' outlines: where dozens overlap, each line still shows through the others


class ThresholdWidget(FigureWidget):
    """The IoU threshold as a slider: the positive boxes, the count and the losses follow it.

    One photo panel draws the ground truth (dashed) and only the boxes that are
    positive at the threshold (solid, in their ground truth's colour, ``'box: class'``,
    ``*`` where forced). Beside it, the positive count and the two losses against the
    threshold, every value from :func:`~ssd_lesson.core.loss.ssd_loss`, the current threshold marked.

    Args:
        example: a ``data.Example`` or :class:`~ssd_lesson.drawing.plots.Scene` (its boxes are the ground truth).
        anchors: from ``make_anchors()``.
        class_logits: ``(1, A, C+1)``; box_actns: ``(1, A, 4)``.
        threshold: the starting value (default: the lesson's 0.4); or give it as ``options.iou_threshold``.
        options: the loss options (:class:`~ssd_lesson.core.options.LossOptions`; the slider moves its
            ``iou_threshold``). Both ``threshold`` and ``options`` at once is a ``TypeError`` naming both.
        image_format: ``"png"`` or ``"jpeg"`` (smaller, for figures full of photographs).
        max_labels: at most this many positives are named in the photo (the best overlaps; the readout lists all).
        per_object: at most this many of each object's positives named (its best overlaps), so that one object's
            stack of near-identical boxes does not take every label.
    """

    def __init__(self, example: Any, anchors: Anchors, class_logits: torch.Tensor, box_actns: torch.Tensor,
                 threshold: Optional[float] = None, options: Optional[LossOptions] = None,
                 dpi: int = 90, image_format: Literal["png", "jpeg"] = "png", step: float = 0.05, top: float = 0.95,
                 max_labels: int = 12, per_object: int = 2):
        where = "ThresholdWidget"
        if isinstance(threshold, float) and math.isnan(threshold):
            raise ValueError(f"threshold nan is not a number; the slider takes 0.0 to {top}")
        self.dpi = display_args(where, dpi, image_format)
        top = number_arg(where, "top", top, 0.05, 1.0)  # an IoU
        step = number_arg(where, "step", step, 0.001, top)
        self.max_labels = number_arg(where, "max_labels", max_labels, 0, whole=True)
        self.per_object = number_arg(where, "per_object", per_object, 0, whole=True)
        if threshold is not None:
            threshold = number_arg(where, "threshold", threshold, 0, top)
        options = LossOptions.resolve(options, where, iou_threshold=threshold)
        threshold = number_arg(where, "options.iou_threshold", options.iou_threshold, 0, top)  # within the slider
        self.scene, self.class_logits, self.box_actns = one_image_args(where, example, anchors, class_logits, box_actns)
        self.anchors, self.options = anchors, options
        self.gt_boxes = torch.as_tensor(np.asarray(self.scene.boxes), dtype=self.box_actns.dtype).unsqueeze(0)
        self.gt_labels = torch.as_tensor(np.asarray(self.scene.labels), dtype=torch.int64).unsqueeze(0)
        self.slider = W.FloatSlider(value=threshold, min=0.0, max=top, step=step, description="IoU threshold",
                                    continuous_update=False, style={"description_width": "initial"},
                                    layout=W.Layout(width="380px"))
        self.readout = W.HTML()
        self.image = W.Image(format=image_format)
        # The curves: the library's loss at every slider position (the threshold changes nothing else).
        self.sweep_thresholds = [round(i * step, 10) for i in range(int(round(top / step)) + 1)]
        sweep = [self._loss(t) for t in self.sweep_thresholds]
        self.sweep_counts = [int(r.match.positive.sum()) for r in sweep]
        self.sweep_losses = ([float(r.classification[0]) for r in sweep], [float(r.regression[0]) for r in sweep])
        mid = self._loss(min(0.3, top))  # the view: the positives from 0.3 up, at most 0.2 of margin
        pos = mid.match.positive[0]
        self.margin = min(0.2, plots.fit_margin(mid.pred_boxes[0][pos].detach(), 0.02)) if pos.any() else 0.02
        self.figure = Figure(figsize=(9.0, 5.0), layout="constrained")
        grid = self.figure.add_gridspec(2, 2, width_ratios=[5.0, 3.6])
        self.ax = self.figure.add_subplot(grid[:, 0])
        self.count_ax, self.loss_ax = self.figure.add_subplot(grid[0, 1]), self.figure.add_subplot(grid[1, 1])
        self.reg_ax = self.loss_ax.twinx()
        self.widget = W.VBox([W.HBox([self.slider, self.readout]), self.image])
        self.frames = Frames(self.figure, dpi)
        # every box positive somewhere on the slider gets its outline and label once; a step shows or hides them
        self.ever_positive = torch.stack([r.match.positive[0] for r in sweep]).any(0)
        self._build_photo(sweep[0])
        self._build_curves()
        self._later = Coalesce(self._update)
        self.slider.observe(self._later, names="value")
        self._update()

    def _loss(self, threshold: float) -> SSDLossResult:
        return ssd_loss(self.class_logits, self.box_actns, self.gt_boxes, self.gt_labels, self.anchors,
                        options=self.options.replace(iou_threshold=threshold))

    threshold = property(lambda self: float(self.slider.value))

    @property
    def positive(self) -> torch.Tensor:
        """``(A,)`` bool, the boxes drawn as objects."""
        return self.result.match.positive[0]

    positive_count = property(lambda self: int(self.positive.sum()))

    @property
    def target_labels(self) -> torch.Tensor:
        """``(A,)`` the class drawn at each box, background (C) where not positive."""
        return self.result.target_labels[0]

    @property
    def drawn(self) -> list[int]:
        """The box numbers drawn in the photo panel (the positives)."""
        return [int(p.get_gid()[4:]) for p in self.ax.patches
                if (p.get_gid() or "").startswith("box:") and p.get_visible()]

    @property
    def labelled(self) -> list[int]:
        """The box numbers whose label the photo shows (as many as find room; the readout lists all)."""
        return sorted(int(t.get_gid()[4:]) for t in placer_for(self.ax).shown() if (t.get_gid() or "").startswith("box:"))

    def set(self, threshold: float) -> "ThresholdWidget":
        """Move the slider (clamped to its range, rounded to its step by the slider); NaN is refused."""
        if isinstance(threshold, float) and math.isnan(threshold):
            raise ValueError(f"threshold nan is not a number; the slider takes {self.slider.min} to {self.slider.max}")
        t = number_arg("ThresholdWidget.set", "threshold", threshold)  # clamped by the slider
        self._later.set(self.slider, t)
        return self

    def _update(self) -> None:
        self.result = r = self._loss(self.threshold)
        self._move()
        forced = int((r.match.gt_overlap[0][self.positive] == FORCED_OVERLAP).sum())
        self.frames.show(self.image)  # draws the photo's labels, which decides which have room
        shown, n = len(self.labelled), self.positive_count
        labels = ("every positive labelled" if shown == n else
                  f"{shown} of {n} labelled in the photo (each object's best-overlapping {self.per_object} at most, "
                  "where there is room)")
        self.readout.value = (f"<b>{n}</b> of {len(self.anchors)} boxes positive; "
                              f"classification {float(r.classification[0]):.4f}, "
                              f"regression {float(r.regression[0]):.4f} ({forced} of the positives forced)"
                              f"<br><small>{labels}; positive boxes by object: {self._positives_text()}</small>")

    def _positives_text(self, most: int = 60) -> str:
        """``'0 person: 0, 5, 16; 1 person: ...'``, or a count when there are more than ``most``."""
        if self.positive_count > most:
            return f"{self.positive_count} boxes (listed from {most} down)"
        gt_idx = self.result.match.gt_idx[0]
        parts = []
        for g in range(len(self.scene.boxes)):
            boxes = torch.nonzero(self.positive & (gt_idx == g)).flatten().tolist()
            if boxes:
                parts.append(f"{self.scene.gt_label(g)}: {', '.join(map(str, boxes))}")
        return "; ".join(parts)

    def _build_photo(self, r: SSDLossResult) -> None:
        """The photo and the ground truth (the cached background); every box positive anywhere on the
        slider (its place and class do not depend on the threshold), shown only while positive."""
        ax, scene = self.ax, self.scene
        plots.show_image(ax, scene.image, self.margin)
        ax.set_facecolor(MARGIN_COLOR)
        for i, box in enumerate(scene.boxes):  # on top of the positives, over a white line: seen however many
            halo, _ = plots.draw_box(ax, box, "white", lw=GT_LW + 2, gid=f"gt-halo:{i}")
            truth, _ = plots.draw_box(ax, box, plots.GT_COLORS[i % len(plots.GT_COLORS)], lw=GT_LW, ls="--", gid=f"gt:{i}")
            halo.set_zorder(GT_ZORDER)
            truth.set_zorder(GT_ZORDER + 0.1)
            animate(halo, truth)
        gt_idx, forced = r.match.gt_idx[0].tolist(), (r.match.gt_overlap[0] == FORCED_OVERLAP).tolist()
        overlap = r.match.gt_overlap[0].tolist()
        self.box_artists = {}
        for a in torch.nonzero(self.ever_positive).flatten().tolist():  # labels by overlap: the best matches first
            g = gt_idx[a]
            star = "*" if forced[a] else ""
            self.box_artists[a] = plots.draw_box(
                ax, r.pred_boxes[0, a].tolist(), plots.GT_COLORS[g % len(plots.GT_COLORS)],
                f"{a}: {scene.class_names[int(scene.labels[g])]}{star}", lw=1.6, fontsize=7, gid=f"box:{a}",
                priority=overlap[a], drop_label_if_crowded=True)
            self.box_artists[a][0].set_alpha(POSITIVE_ALPHA)  # the outline only: crowded boxes stay apart, labels stay dark
            animate(*self.box_artists[a])
        animate(placer_for(ax), ax.title)

    def _build_curves(self) -> None:
        """The count and both losses against the threshold, once; the marks at the threshold move."""
        c0 = plots.BOX_COLORS[0]
        ax = self.count_ax
        ax.step(self.sweep_thresholds, self.sweep_counts, where="post", color="0.3", lw=1.4)
        self.marks = [ax.axvline(0, color=c0, lw=1.2), ax.scatter([0], [1], color=c0, zorder=3, s=30),
                      ax.annotate("", (0, 1), xytext=(5, 4), textcoords="offset points", fontsize=8, color=c0)]
        ax.set_yscale("log")
        ax.set_ylabel("positive boxes", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title("count and losses vs threshold", fontsize=8)
        self.marks.append(self.loss_ax.axvline(0, color=c0, lw=1.2))
        for a, values, name, c in ((self.loss_ax, self.sweep_losses[0], "classification", plots.BOX_COLORS[3]),
                                   (self.reg_ax, self.sweep_losses[1], "regression", plots.BOX_COLORS[1])):
            a.step(self.sweep_thresholds, values, where="post", color=c, lw=1.3)
            self.marks.append(a.scatter([0], [values[0]], color=c, edgecolors=c0, zorder=3, s=22))
            a.set_ylabel(name, fontsize=8, color=c)
            a.tick_params(labelsize=7)
        self.reg_ax.yaxis.set_label_position("right")
        self.reg_ax.yaxis.tick_right()
        self.loss_ax.set_xlabel("IoU threshold", fontsize=8)
        animate(*self.marks)

    def _move(self) -> None:
        """Show the positives at the threshold, and move the marks to it."""
        t, n, positive = self.threshold, self.positive_count, self.positive.tolist()
        overlap, gt_idx = self.result.match.gt_overlap[0], self.result.match.gt_idx[0].tolist()
        best = sorted((a for a in self.box_artists if positive[a]), key=lambda a: (-float(overlap[a]), a))
        rank = {g: 0 for g in set(gt_idx)}  # how many of an object's better matches come before each box
        each = []
        for a in best:
            rank[gt_idx[a]] += 1
            if rank[gt_idx[a]] <= self.per_object:
                each.append(a)
        named = set(each[:self.max_labels])  # a photo, not a wall of labels: each object's best matches named
        for a, (rect, text) in self.box_artists.items():
            rect.set_visible(positive[a])
            text.set_visible(a in named)
        placer_for(self.ax).hidden.clear()  # the placer re-tries only the labels shown now
        self.ax.set_title(f"IoU > {t:.2f}: {n} positive boxes (solid; * forced), ground truth dashed", fontsize=8)
        line, dot, note, loss_line, cls_dot, reg_dot = self.marks
        for v in (line, loss_line):
            v.set_xdata([t, t])
        dot.set_offsets([[t, n]])
        note.xy = (t, n)
        note.set_text(f"{n}")
        cls_dot.set_offsets([[t, float(self.result.classification[0])]])
        reg_dot.set_offsets([[t, float(self.result.regression[0])]])
