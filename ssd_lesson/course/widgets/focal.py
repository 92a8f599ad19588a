"""Focal loss's gamma and alpha as a widget (notebook 6): which boxes carry the loss.

As every widget of :mod:`ssd_lesson.course.widgets`: one figure drawn once, only what changes redrawn on each
step (:class:`~ssd_lesson.course.widgets.base.Frames`), a static copy for offline pages, ``.set(...)`` as a
learner would, attributes holding exactly what is shown. Boxes are ``(y0, x0, y1, x1)`` fractions.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

import ipywidgets as W
import numpy as np
import torch
from matplotlib.figure import Figure

from ...core.loss import classification_loss, ssd_loss
from ...core.options import LossOptions
from ...drawing import plots
from .base import Coalesce, FigureWidget, Frames, animate, display_args, number_arg, one_image_args
from .controls import finite_value, value_slider

__all__ = ["FocalWidget"]
POSITIVE_BOX, BACKGROUND_BOX = "tab:orange", "#9a9a9a"  # as in the box-by-box figure of notebook 06 (box_loss_figure)

FLOOR = 1e-7  # losses below this are drawn on the bottom edge of the log scale
GAMMA_RANGE = (0.0, 5.0)  # the gamma slider's: from BCE (0) to well past the paper's best (2)



class FocalWidget(FigureWidget):
    """Focal loss's ``gamma`` and ``alpha``: each box's loss against its BCE, and which boxes dominate.

    Left: one dot per box, its BCE (x) against its focal loss (y), positives orange, background grey
    (gamma 0 and alpha 0.5 put every dot on the line y = x / 2). Right: the share of the whole loss
    carried by the largest boxes, BCE and focal. Every number is :func:`~ssd_lesson.core.loss.classification_loss`
    run on one box at a time; ``.total`` equals ``ssd_loss(..., classification="focal")``'s.

    The sliders start at ``gamma`` and ``alpha`` (default: the lesson's 1.0 and 0.25), or at
    ``options.focal_gamma`` and ``options.focal_alpha``; both a keyword and ``options`` at once is a
    ``TypeError`` naming both. ``options`` also says how boxes are matched.
    """

    def __init__(self, example: Any, anchors: Any, class_logits: torch.Tensor, box_actns: torch.Tensor,
                 options: Optional[LossOptions] = None, gamma: Optional[float] = None, alpha: Optional[float] = None,
                 dpi: int = 90,
                 image_format: Literal["png", "jpeg"] = "png"):
        self.dpi = display_args("FocalWidget", dpi, image_format)
        self.scene, self.class_logits, self.box_actns = one_image_args("FocalWidget", example, anchors, class_logits,
                                                                       box_actns)
        self.anchors = anchors
        gamma = None if gamma is None else number_arg("FocalWidget", "gamma", gamma, *GAMMA_RANGE)
        alpha = None if alpha is None else number_arg("FocalWidget", "alpha", alpha, 0, 1)
        self.options = LossOptions.resolve(options, "FocalWidget", focal_gamma=gamma, focal_alpha=alpha)
        number_arg("FocalWidget", "options.focal_gamma", self.options.focal_gamma, *GAMMA_RANGE)  # the slider's range
        self.gt_boxes = torch.as_tensor(np.asarray(self.scene.boxes), dtype=torch.float32).unsqueeze(0)
        self.gt_labels = torch.as_tensor(np.asarray(self.scene.labels), dtype=torch.int64).unsqueeze(0)
        self.result = ssd_loss(self.class_logits, self.box_actns, self.gt_boxes, self.gt_labels, anchors,
                               options=self.options)
        self._x = self.class_logits[0].unsqueeze(1)  # (A, 1, C+1): each box its own image
        self._t = self.result.target_labels[0].unsqueeze(1)
        self.positive = self.result.match.positive[0].numpy()
        self.bce = classification_loss(self._x, self._t).double().numpy()
        self.gamma_slider, self.alpha_slider = (value_slider("gamma", self.options.focal_gamma, *GAMMA_RANGE, 0.25),
                                                value_slider("alpha", self.options.focal_alpha, 0.0, 1.0, 0.05))
        self.readout = W.HTML(layout=W.Layout(width="340px"))
        self.image = W.Image(format=image_format)
        self.figure = Figure(figsize=(8.0, 3.8), layout="constrained")
        self.ax, self.share_ax = self.figure.subplots(1, 2, width_ratios=[1.2, 1.0])
        self._build()
        self.frames = Frames(self.figure, dpi)
        self.widget = W.VBox([W.HBox([W.VBox([self.gamma_slider, self.alpha_slider]), self.readout]), self.image])
        self._later = later = Coalesce(self._update)
        for s in (self.gamma_slider, self.alpha_slider):
            s.observe(later, names="value")
        self._update()

    gamma = property(lambda self: float(self.gamma_slider.value))
    alpha = property(lambda self: float(self.alpha_slider.value))

    def set(self, gamma: Optional[float] = None, alpha: Optional[float] = None) -> "FocalWidget":
        """Move the sliders (clamped to their ranges); NaN refused, nothing changed."""
        g = None if gamma is None else finite_value("gamma", gamma, *GAMMA_RANGE, "FocalWidget.set")
        a = None if alpha is None else finite_value("alpha", alpha, 0, 1, "FocalWidget.set")
        with self._later.hold():  # one redraw for both
            if g is not None:
                self.gamma_slider.value = g
            if a is not None:
                self.alpha_slider.value = a
        return self

    def _build(self) -> None:
        ax, pos = self.ax, self.positive
        lo, hi = FLOOR, float(self.bce.max()) * 2
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlim=(max(lo, float(self.bce.min()) / 2), hi), ylim=(lo, hi))
        ax.set_xlabel("BCE per box", fontsize=9)
        ax.set_ylabel("focal loss per box", fontsize=9)
        ax.tick_params(labelsize=8.5)
        self.dots = [ax.scatter(self.bce[~pos], self.bce[~pos], s=9, color=BACKGROUND_BOX, label="background box"),
                     ax.scatter(self.bce[pos], self.bce[pos], s=18, color=POSITIVE_BOX, label="positive box")]
        ax.legend(fontsize=8.5, loc="upper left")
        n = np.arange(1, len(self.bce) + 1)
        s = self.share_ax
        s.plot(n, np.cumsum(np.sort(self.bce)[::-1]) / self.bce.sum(), color="0.3", lw=1.4, label="BCE")
        (self.focal_line,) = s.plot(n, n * 0.0, color=plots.BOX_COLORS[3], lw=1.6, label="focal")
        s.set(xscale="log", xlim=(1, len(n)), ylim=(0, 1.02))
        s.set_xlabel("boxes, the largest loss first (how many)", fontsize=9)
        s.set_ylabel("share of the loss", fontsize=9)
        s.tick_params(labelsize=8.5)
        s.legend(fontsize=8.5, loc="lower right")
        animate(*self.dots, self.focal_line, ax.title, s.title)

    def _update(self, *_: Any) -> None:
        g, a = self.gamma, self.alpha
        self.focal = classification_loss(self._x, self._t, focal=True, alpha=a, gamma=g).double().numpy()
        self.total, self.bce_total = float(self.focal.sum()), float(self.bce.sum())
        pos = self.positive
        y = np.maximum(self.focal, FLOOR)
        self.dots[0].set_offsets(np.column_stack([self.bce[~pos], y[~pos]]))
        self.dots[1].set_offsets(np.column_stack([self.bce[pos], y[pos]]))
        order = np.argsort(-self.focal, kind="stable")
        self.top = order[:5].tolist()
        share = np.cumsum(self.focal[order]) / max(self.total, 1e-300)
        self.focal_line.set_ydata(share)
        self.top10_share = float(share[9]) if len(share) >= 10 else 1.0
        self.bce_top10_share = float(np.sort(self.bce)[::-1][:10].sum() / self.bce_total)
        self.positive_share = float(self.focal[pos].sum() / max(self.total, 1e-300))
        self.bce_positive_share = float(self.bce[pos].sum() / self.bce_total)
        self.ax.set_title(f"gamma {g:.2f}, alpha {a:.2f}: focal {self.total:.4f} vs BCE {self.bce_total:.4f}",
                          fontsize=9)
        self.share_ax.set_title(f"the 10 largest-loss boxes carry\n{100 * self.top10_share:.0f} % of focal, "
                                f"{100 * self.bce_top10_share:.0f} % of BCE", fontsize=9)  # two lines: fits the panel
        top = ", ".join(f"{b} ({'positive' if pos[b] else 'background'} {100 * self.focal[b] / max(self.total, 1e-300):.1f} %)"
                        for b in self.top)
        self.readout.value = (f"focal <b>{self.total:.4f}</b> (BCE {self.bce_total:.4f}); positive boxes carry "
                              f"{100 * self.positive_share:.1f} % of focal, {100 * self.bce_positive_share:.1f} % of BCE"
                              f"<br><small>the boxes with the largest focal loss: {top}</small>")
        self.frames.show(self.image)
