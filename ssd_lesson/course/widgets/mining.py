"""Hard negative mining's ``neg_pos_ratio`` as a widget (notebook 12): which negatives the SSD paper's loss keeps.

As every widget of :mod:`ssd_lesson.course.widgets`: one figure drawn once, only what changes redrawn on each
step (:class:`~ssd_lesson.course.widgets.base.Frames`), a static copy for offline pages, ``.set(...)`` as a
learner would, attributes holding exactly what is shown. Boxes are ``(y0, x0, y1, x1)`` fractions.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

import ipywidgets as W
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ...core.loss import ssd_loss
from ...core.mining import box_classification_loss
from ...core.options import PAPER_NEG_POS_RATIO, LossOptions
from ...drawing.draw import draw_ground_truth, show_image, to_numpy
from ...drawing.mining_figures import FLOOR, KEPT_COLOR, draw_ranked_losses, outline_segments
from .base import Coalesce, FigureWidget, Frames, animate, display_args, number_arg, one_image_args
from .controls import finite_value, value_slider

__all__ = ["MiningWidget", "RATIO_RANGE"]

#: The slider's range: 0 counts every negative (no mining, as ``LossOptions(neg_pos_ratio=0)``); at 30 per positive
#: every negative of the lesson's example counts too, at the paper's matching.
RATIO_RANGE = (0.0, 30.0)


class MiningWidget(FigureWidget):
    """Hard negative mining's ``neg_pos_ratio``: how many negatives count, which ones, and the loss they make.

    Left: every negative of the example ranked by its softmax loss, highest first, the kept ones coloured.
    Right: the image, its ground truth and the kept negatives' anchor boxes. Every number is
    :func:`~ssd_lesson.core.loss.ssd_loss`'s with ``options`` and the slider's ``neg_pos_ratio``: ``kept``,
    ``n_kept``, ``classification`` (the image's classification loss).

    ``options``: the loss (default ``LossOptions.ssd_paper()``; its classification must be ``"softmax"``, the
    loss the mining ranks by); ``neg_pos_ratio`` where the slider starts (default ``options.neg_pos_ratio``,
    else the paper's 3); both a keyword and ``options`` at once is a ``TypeError`` naming both.
    """

    def __init__(self, example: Any, anchors: Any, class_logits: torch.Tensor, box_actns: torch.Tensor,
                 options: Optional[LossOptions] = None, neg_pos_ratio: Optional[float] = None, dpi: int = 90,
                 image_format: Literal["png", "jpeg"] = "png"):
        self.dpi = display_args("MiningWidget", dpi, image_format)
        self.scene, self.class_logits, self.box_actns = one_image_args("MiningWidget", example, anchors, class_logits,
                                                                       box_actns)
        self.anchors = anchors
        ratio = None if neg_pos_ratio is None else number_arg("MiningWidget", "neg_pos_ratio", neg_pos_ratio, *RATIO_RANGE)
        if options is None:  # the paper's loss, the keyword over it
            self.options = LossOptions.ssd_paper().replace(**({} if ratio is None else {"neg_pos_ratio": ratio}))
        else:
            self.options = LossOptions.resolve(options, "MiningWidget", neg_pos_ratio=ratio)
        if self.options.classification != "softmax":
            raise ValueError(f"MiningWidget: options.classification must be 'softmax' (the loss mining ranks "
                             f"negatives by); got {self.options.classification!r}")
        start = PAPER_NEG_POS_RATIO if self.options.neg_pos_ratio is None else self.options.neg_pos_ratio
        number_arg("MiningWidget", "options.neg_pos_ratio", start, *RATIO_RANGE)  # the slider's range
        self.gt_boxes = torch.as_tensor(np.asarray(self.scene.boxes), dtype=torch.float32).unsqueeze(0)
        self.gt_labels = torch.as_tensor(np.asarray(self.scene.labels), dtype=torch.int64).unsqueeze(0)
        first = self._loss(start)
        self.positive = to_numpy(first.match.positive[0])
        self.box_loss = to_numpy(box_classification_loss(self.class_logits, first.target_labels, "softmax")[0]).astype(float)
        self.slider = value_slider("neg_pos_ratio", start, *RATIO_RANGE, 0.5)
        self.readout = W.HTML(layout=W.Layout(width="360px"))
        self.image = W.Image(format=image_format)
        self.figure = Figure(figsize=(8.0, 3.6), layout="constrained")
        self.rank_ax, self.image_ax = self.figure.subplots(1, 2, width_ratios=[1.25, 1.0])
        self._build()
        self.frames = Frames(self.figure, dpi)
        self.widget = W.VBox([W.HBox([self.slider, self.readout]), self.image])
        self._later = Coalesce(self._update)
        self.slider.observe(self._later, names="value")
        self._update()

    neg_pos_ratio = property(lambda self: float(self.slider.value))

    def _loss(self, ratio: float) -> Any:
        return ssd_loss(self.class_logits, self.box_actns, self.gt_boxes, self.gt_labels, self.anchors,
                        options=self.options.replace(neg_pos_ratio=ratio))

    def set(self, neg_pos_ratio: float) -> "MiningWidget":
        """Move the slider (clamped to its range); NaN refused, nothing changed."""
        value = finite_value("neg_pos_ratio", neg_pos_ratio, *RATIO_RANGE, "MiningWidget.set")
        with self._later.hold():  # redrawn once, before this returns
            self.slider.value = value
        return self

    def _build(self) -> None:
        self.order = draw_ranked_losses(self.rank_ax, self.box_loss, self.positive)
        self.kept_dots = self.rank_ax.scatter([], [], s=14, color=KEPT_COLOR, label="kept (hard negative)")
        self.cut = self.rank_ax.axvline(0.5, color=KEPT_COLOR, lw=0.8, ls="--")
        self.rank_ax.legend(fontsize=8.5, loc="upper right")
        show_image(self.image_ax, self.scene.image, 0.12)  # room for anchor boxes that leave the image
        draw_ground_truth(self.image_ax, self.scene, fontsize=8)
        self.boxes = self.image_ax.add_collection(LineCollection([], colors=KEPT_COLOR, linewidths=1.2, linestyles="--"))
        self.image_ax.set_title("the kept negatives' anchor boxes (dashed)", fontsize=9)
        animate(self.kept_dots, self.cut, self.boxes, self.rank_ax.title, *self.image_ax.texts)  # labels over the boxes

    def _update(self, *_: Any) -> None:
        result = self._loss(self.neg_pos_ratio)
        self.kept = to_numpy(result.counted_negatives[0])
        self.n_kept = int(self.kept.sum())
        self.classification = float(result.classification[0])
        ranked = self.order[:self.n_kept]
        self.kept_dots.set_offsets(np.column_stack([np.arange(1, self.n_kept + 1),
                                                    np.maximum(self.box_loss[ranked], FLOOR)]).reshape(-1, 2))
        self.cut.set_xdata([self.n_kept + 0.5] * 2)
        self.boxes.set_segments(outline_segments(to_numpy(self.anchors.corners)[self.kept]))
        n_pos = int(self.positive.sum())
        self.rank_ax.set_title(f"neg_pos_ratio {self.neg_pos_ratio:g}: {self.n_kept} of {len(self.order)} negatives "
                               f"kept ({n_pos} positives)", fontsize=9)
        self.readout.value = (f"classification loss <b>{self.classification:.4f}</b> (the positives and the "
                              f"{self.n_kept} kept negatives)")
        self.frames.show(self.image)
