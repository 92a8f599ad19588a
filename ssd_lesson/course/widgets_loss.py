"""Two more widgets: focal loss's gamma and alpha (notebook 6), and the detection thresholds (notebook 10).

As in :mod:`ssd_lesson.course.widgets`: one figure drawn once, only what changes redrawn on each
step (:class:`~ssd_lesson.course.shown.Frames`), a static copy for offline pages, ``.set(...)`` as a
learner would, attributes holding exactly what is shown. Boxes are ``(y0, x0, y1, x1)`` fractions.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Optional, Sequence

import ipywidgets as W
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from ..core.loss import classification_loss, ssd_loss
from ..core.options import DecodeOptions, LossOptions
from ..drawing import plots
from ..drawing.draw import show_detections
from ..drawing.placement import placer_for
from ..model.infer import Detections, decode
from ..model.metrics import detection_map
from .shown import Coalesce, Frames, _Shown, animate

__all__ = ["FocalWidget", "DetectionWidget"]

FLOOR = 1e-7  # losses below this are drawn on the bottom edge of the log scale


def _slider(name: str, value: float, lo: float, hi: float, step: float) -> W.FloatSlider:
    return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=name, readout_format=".2f",
                         continuous_update=True, style={"description_width": "90px"}, layout=W.Layout(width="340px"))


def _finite(name: str, value: Any, lo: float, hi: float) -> float:
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} = nan is not a number; the slider takes {lo:g} to {hi:g}")
    return v


class FocalWidget(_Shown):
    """Focal loss's ``gamma`` and ``alpha``: each box's loss against its BCE, and which boxes dominate.

    Left: one dot per box, its BCE (x) against its focal loss (y), positives coloured, background grey
    (gamma 0 and alpha 0.5 put every dot on the line y = x / 2). Right: the share of the whole loss
    carried by the largest boxes, BCE and focal. Every number is :func:`~ssd_lesson.core.loss.classification_loss`
    run on one box at a time; ``.total`` equals ``ssd_loss(..., classification="focal")``'s.
    """

    def __init__(self, example: Any, anchors: Any, class_logits: torch.Tensor, box_actns: torch.Tensor,
                 options: Optional[LossOptions] = None, gamma: float = LossOptions.focal_gamma,
                 alpha: float = LossOptions.focal_alpha, dpi: int = 80,
                 image_format: Literal["png", "jpeg"] = "png"):
        self.scene, self.anchors, self.dpi = plots.as_scene(example), anchors, dpi
        self.options = options or LossOptions()
        self.class_logits, self.box_actns = class_logits.detach(), box_actns.detach()
        self.gt_boxes = torch.as_tensor(np.asarray(self.scene.boxes), dtype=torch.float32).unsqueeze(0)
        self.gt_labels = torch.as_tensor(np.asarray(self.scene.labels), dtype=torch.int64).unsqueeze(0)
        self.result = ssd_loss(self.class_logits, self.box_actns, self.gt_boxes, self.gt_labels, anchors,
                               options=self.options)
        self._x = self.class_logits[0].unsqueeze(1)  # (A, 1, C+1): each box its own image
        self._t = self.result.target_labels[0].unsqueeze(1)
        self.positive = self.result.match.positive[0].numpy()
        self.bce = classification_loss(self._x, self._t).double().numpy()
        self.gamma_slider, self.alpha_slider = _slider("gamma", gamma, 0.0, 5.0, 0.25), _slider("alpha", alpha, 0.0,
                                                                                              1.0, 0.05)
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
        g = None if gamma is None else _finite("gamma", gamma, 0, 5)
        a = None if alpha is None else _finite("alpha", alpha, 0, 1)
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
        ax.set_xlabel("BCE per box", fontsize=8)
        ax.set_ylabel("focal loss per box", fontsize=8)
        ax.tick_params(labelsize=7)
        self.dots = [ax.scatter(self.bce[~pos], self.bce[~pos], s=9, color=plots.BG_COLOR, label="background"),
                     ax.scatter(self.bce[pos], self.bce[pos], s=18, color=plots.BOX_COLORS[0], label="object")]
        ax.legend(fontsize=7, loc="upper left")
        n = np.arange(1, len(self.bce) + 1)
        s = self.share_ax
        s.plot(n, np.cumsum(np.sort(self.bce)[::-1]) / self.bce.sum(), color="0.3", lw=1.4, label="BCE")
        (self.focal_line,) = s.plot(n, n * 0.0, color=plots.BOX_COLORS[3], lw=1.6, label="focal")
        s.set(xscale="log", xlim=(1, len(n)), ylim=(0, 1.02))
        s.set_xlabel("the largest boxes (how many)", fontsize=8)
        s.set_ylabel("share of the loss", fontsize=8)
        s.tick_params(labelsize=7)
        s.legend(fontsize=7, loc="lower right")
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
        self.share_ax.set_title(f"10 largest boxes: {100 * self.top10_share:.0f} % of focal, "
                                f"{100 * self.bce_top10_share:.0f} % of BCE", fontsize=9)
        top = ", ".join(f"{b} ({'object' if pos[b] else 'background'} {100 * self.focal[b] / max(self.total, 1e-300):.1f} %)"
                        for b in self.top)
        self.readout.value = (f"focal <b>{self.total:.4f}</b> (BCE {self.bce_total:.4f}); objects carry "
                              f"{100 * self.positive_share:.1f} % of focal, {100 * self.bce_positive_share:.1f} % of BCE"
                              f"<br><small>largest boxes under focal: {top}</small>")
        self.frames.show(self.image)


class DetectionWidget(_Shown):
    """The score threshold and NMS IoU: one image's detections drawn, and the mAP over every image.

    The model's outputs for ``N`` images are decoded by :func:`~ssd_lesson.model.infer.decode` at the
    sliders' values; ``.detections`` is what is drawn (image ``shown``) and ``.map`` is
    :func:`~ssd_lesson.model.metrics.detection_map` of all ``N`` (computed once per pair of values).

    Args:
        images: ``(N, 3, H, W)`` normalised tensors (or ``(H, W, 3)`` uint8 arrays) the outputs came from.
        class_logits: ``(N, A, C+1)``; box_actns: ``(N, A, 4)``; gt_boxes, gt_labels: per image, fractions.
    """

    def __init__(self, images: Any, class_logits: torch.Tensor, box_actns: torch.Tensor, anchors: Any,
                 gt_boxes: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor], class_names: Sequence[str],
                 shown: int = 0, score: float = 0.25, nms_iou: float = DecodeOptions.nms_iou, dpi: int = 80,
                 image_format: Literal["png", "jpeg"] = "png"):
        n = class_logits.shape[0]
        if not 0 <= int(shown) < n:
            raise ValueError(f"shown {shown!r} is out of range: images 0 to {n - 1}")
        self.images, self.anchors, self.dpi, self.shown = images, anchors, dpi, int(shown)
        self.class_logits, self.box_actns = class_logits.detach(), box_actns.detach()
        self.gt_boxes, self.gt_labels, self.class_names = list(gt_boxes), list(gt_labels), list(class_names)
        self.score_slider = _slider("score above", score, 0.05, 0.95, 0.05)
        self.nms_slider = _slider("NMS IoU", nms_iou, 0.3, 1.0, 0.05)
        self.readout = W.HTML(layout=W.Layout(width="380px"))
        self.image = W.Image(format=image_format)
        self.figure = Figure(figsize=(4.8, 4.8), layout="constrained")
        self.ax = self.figure.subplots()
        image = images[self.shown]
        self.size = tuple(image.shape[-2:]) if isinstance(image, torch.Tensor) else tuple(np.asarray(image).shape[:2])
        show_detections(self.ax, image, np.zeros((0, 4)), [], [], self.class_names)
        animate(placer_for(self.ax), self.ax.title)
        self.frames = Frames(self.figure, dpi)
        self._maps: dict[tuple[float, float], dict[str, float]] = {}
        self._moving: list[Any] = []
        self.widget = W.HBox([W.VBox([self.score_slider, self.nms_slider, self.readout]), self.image])
        self._later = later = Coalesce(self._update)
        for s in (self.score_slider, self.nms_slider):
            s.observe(later, names="value")
        self._update()

    score = property(lambda self: round(float(self.score_slider.value), 6))
    nms_iou = property(lambda self: round(float(self.nms_slider.value), 6))

    def set(self, score: Optional[float] = None, nms_iou: Optional[float] = None) -> "DetectionWidget":
        """Move the sliders (clamped to their ranges); NaN refused, nothing changed."""
        s = None if score is None else _finite("score", score, 0.05, 0.95)
        m = None if nms_iou is None else _finite("nms_iou", nms_iou, 0.3, 1.0)
        with self._later.hold():  # one redraw for both
            if s is not None:
                self.score_slider.value = s
            if m is not None:
                self.nms_slider.value = m
        return self

    def _update(self, *_: Any) -> None:
        key = (self.score, self.nms_iou)
        all_dets = decode(self.class_logits, self.box_actns, self.anchors, score_threshold=key[0], nms_iou=key[1])
        if key not in self._maps:
            self._maps[key] = detection_map(all_dets, self.gt_boxes, self.gt_labels)
        self.map = self._maps[key]
        d = all_dets[self.shown]
        self.detections: Detections = d
        for artist in self._moving:
            artist.remove()
        placer_for(self.ax).items.clear()
        before = set(self.ax.get_children())
        h, w = self.size
        pixels = d.boxes * torch.tensor([h, w, h, w], dtype=d.boxes.dtype)
        show_detections(self.ax, np.zeros((1, 1, 3), np.uint8), pixels, d.labels, d.scores, self.class_names)
        new = [a for a in self.ax.get_children() if a not in before]
        for a in new:
            if isinstance(a, AxesImage):  # show_detections' own imshow: the photo is already there
                a.remove()
        self._moving = [a for a in new if not isinstance(a, AxesImage)]
        self.ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
        animate(*self._moving)
        total = sum(len(x.scores) for x in all_dets)
        self.ax.set_title(f"score > {key[0]:.2f}, NMS IoU {key[1]:.2f}: {len(d.scores)} detections", fontsize=9)
        self.readout.value = (f"image {self.shown}: <b>{len(d.scores)}</b> detections; all {len(all_dets)} images: "
                              f"{total}<br>mAP@0.5 <b>{self.map['map_50']:.4f}</b>, mAP@0.5:0.95 {self.map['map']:.4f}")
        self.frames.show(self.image)
