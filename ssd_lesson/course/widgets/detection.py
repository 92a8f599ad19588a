"""The detection thresholds as a widget (notebook 10): score and NMS IoU, the detections and the mAP.

As every widget of :mod:`ssd_lesson.course.widgets`: one figure drawn once, only what changes redrawn on each
step (:class:`~ssd_lesson.course.widgets.base.Frames`), a static copy for offline pages, ``.set(...)`` as a
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

from ...core.options import DecodeOptions
from ...drawing.draw import show_detections
from ...drawing.placement import placer_for
from ...model.infer import Detections, decode
from ...model.metrics import detection_map
from .base import Coalesce, FigureWidget, Frames, animate, display_args, number_arg, refuse, sequence_arg, tensor_arg
from .controls import finite_value, value_slider

__all__ = ["DetectionWidget"]


class DetectionWidget(FigureWidget):
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
        self.dpi = display_args("DetectionWidget", dpi, image_format)
        self.class_logits, self.box_actns, n = _checked_outputs(class_logits, box_actns, anchors)
        self.anchors = anchors
        self.images = sequence_arg("DetectionWidget", "images", images, n, "images (one per row of class_logits)")
        self.gt_boxes, self.gt_labels = _checked_ground_truth(gt_boxes, gt_labels, n, class_logits.shape[-1] - 1)
        self.class_names = _checked_names(class_names, class_logits.shape[-1] - 1)
        self.shown = number_arg("DetectionWidget", "shown", shown, whole=True)
        if not 0 <= self.shown < n:
            raise ValueError(f"DetectionWidget: shown {shown!r} is out of range: images 0 to {n - 1}")
        self.score_slider = value_slider("score above", number_arg("DetectionWidget", "score", score, 0.05, 0.95),
                                         0.05, 0.95, 0.05)
        self.nms_slider = value_slider("NMS IoU", number_arg("DetectionWidget", "nms_iou", nms_iou, 0.3, 1.0),
                                       0.3, 1.0, 0.05)
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
        s = None if score is None else finite_value("score", score, 0.05, 0.95, "DetectionWidget.set")
        m = None if nms_iou is None else finite_value("nms_iou", nms_iou, 0.3, 1.0, "DetectionWidget.set")
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
                              f"{total}<br>{map_text(self.map)}")
        self.frames.show(self.image)


def _checked_outputs(class_logits: Any, box_actns: Any, anchors: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(N, A, C+1)`` class logits and ``(N, A, 4)`` box activations for ``A = len(anchors)``, detached; and ``N``."""
    where = "DetectionWidget"
    if not hasattr(anchors, "__len__"):
        refuse(where, "anchors", "the anchors of make_anchors()", anchors, TypeError)
    cl = tensor_arg(where, "class_logits", class_logits, ("N", len(anchors), "C+1"))
    if cl.shape[0] == 0 or cl.shape[-1] < 2:
        refuse(where, "class_logits", "at least one image and two columns (C classes + background)", cl)
    ba = tensor_arg(where, "box_actns", box_actns, (cl.shape[0], len(anchors), 4))
    return cl.detach(), ba.detach(), cl.shape[0]


def _checked_ground_truth(gt_boxes: Any, gt_labels: Any, n: int, n_classes: int) -> tuple[list, list]:
    """Per image: ``(G, 4)`` boxes and ``(G,)`` labels, each a class ``0..C-1`` or -1 (a padding row)."""
    where = "DetectionWidget"
    boxes = sequence_arg(where, "gt_boxes", gt_boxes, n, "(G, 4) tensors (one per image)")
    labels = sequence_arg(where, "gt_labels", gt_labels, n, "(G,) tensors (one per image)")
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        tensor_arg(where, f"gt_boxes[{i}]", b, ("G", 4))
        tensor_arg(where, f"gt_labels[{i}]", lab, (len(b),))
        if lab.is_floating_point() or bool(((lab < -1) | (lab >= n_classes)).any()):
            refuse(where, f"gt_labels[{i}]", f"whole class numbers 0 to {n_classes - 1} (or -1: padding)", lab.tolist())
    return boxes, labels


def _checked_names(class_names: Any, n_classes: int) -> list[str]:
    """One name per class, in the columns' order (the background column has none)."""
    names = sequence_arg("DetectionWidget", "class_names", class_names, None, "names")
    if len(names) != n_classes or not all(isinstance(x, str) for x in names):
        raise ValueError(f"DetectionWidget: class_names must be {n_classes} names, one per class (class_logits has "
                         f"{n_classes + 1} columns: {n_classes} classes and the background); got {len(names)}: "
                         f"{', '.join(map(repr, names[:5]))}{' ...' if len(names) > 5 else ''}")
    return names


def map_text(scores: dict[str, float]) -> str:
    """The readout's mAP line; without any ground-truth object the mAP is undefined (NaN) and says so."""
    if math.isnan(scores["map_50"]):
        return "mAP: none (no ground-truth object in these images)"
    return f"mAP@0.5 <b>{scores['map_50']:.4f}</b>, mAP@0.5:0.95 {scores['map']:.4f}"
