"""From the model's activations to detections, and how good they are.

:func:`decode` turns ``(class_logits, box_actns)`` into per-image detections:
decoded boxes, per-class sigmoid scores (background excluded, as in the BCE
loss), a score threshold, non-maximum suppression per class
(``torchvision.ops.batched_nms``) and a per-image cap. :func:`predict` runs a
model on images and gives the boxes in pixels of those images.
:func:`detection_map` and the fastai metric :class:`MeanAP` score detections
with ``torchmetrics``' ``MeanAveragePrecision``.

Boxes are ``(y0, x0, y1, x1)``: fractions of the image in :func:`decode`, pixels
in :func:`predict`. torchvision and torchmetrics want ``(x0, y0, x1, y1)``: we
swap axes at those calls only.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

from .anchors import Anchors, activations_to_boxes, make_anchors

__all__ = ["Detections", "decode", "prepare_images", "predict", "detection_map", "MeanAP", "map_metrics"]

_YX_TO_XY = [1, 0, 3, 2]  # (y0, x0, y1, x1) <-> (x0, y0, x1, y1); its own inverse


class Detections(NamedTuple):
    """One image's detections, best score first.

    boxes: ``(N, 4)`` ``(y0, x0, y1, x1)``; labels: ``(N,)`` int64 class ids (never background);
    scores: ``(N,)`` sigmoid of the class logit.
    """

    boxes: Tensor
    labels: Tensor
    scores: Tensor


def decode(class_logits: Tensor, box_actns: Tensor, anchors: Anchors, *, score_threshold: float = 0.25,
           nms_iou: float = 0.5, max_per_image: int = 100) -> list[Detections]:
    """Detections of each image from the model's outputs.

    Args:
        class_logits: ``(B, A, C+1)``, background last; box_actns: ``(B, A, 4)``.
        anchors: the anchors the outputs are laid out for.
        score_threshold: keep (box, class) pairs whose sigmoid score is above it.
        nms_iou: within one class, drop a box overlapping a better one by more than this.
        max_per_image: keep at most this many, best first.

    Returns:
        B :class:`Detections` with boxes as ``(y0, x0, y1, x1)`` fractions, clipped to the image.
    """
    boxes = activations_to_boxes(box_actns.float(), anchors.to(box_actns.device)).clamp(0, 1)
    scores = class_logits[..., :-1].float().sigmoid()  # (B, A, C): one independent score per class
    out = []
    for b in range(boxes.shape[0]):
        anchor_i, cls = torch.nonzero(scores[b] > score_threshold, as_tuple=True)
        s, bx = scores[b, anchor_i, cls], boxes[b, anchor_i]
        keep = batched_nms(bx[:, _YX_TO_XY], s, cls, nms_iou)[:max_per_image]  # sorted by score
        out.append(Detections(bx[keep], cls[keep], s[keep]))
    return out


def prepare_images(images: Any, size: int) -> tuple[Tensor, list[tuple[int, int]]]:
    """Images for the model: ``(B, 3, size, size)`` normalised, and each input's ``(height, width)``.

    Accepts a tensor ``(3, H, W)`` / ``(B, 3, H, W)`` (float: already ImageNet-normalised as in
    the DataLoaders; uint8: 0-255), or a numpy ``(H, W, 3)`` uint8 image as
    :func:`ssd_lesson.data.load_image` returns, or a list of those. Other sizes are resized.
    """
    from .data import IMAGENET_MEAN, IMAGENET_STD

    if isinstance(images, (list, tuple)):
        parts = [prepare_images(im, size) for im in images]
        return torch.cat([p[0] for p in parts]), [hw for p in parts for hw in p[1]]
    if isinstance(images, np.ndarray):
        if images.ndim != 3 or images.shape[-1] != 3:
            raise ValueError(f"a numpy image must be (H, W, 3) RGB, got shape {images.shape}")
        images = torch.tensor(images).permute(2, 0, 1)  # a copy: from_numpy warns on read-only arrays (PIL's)
    if not isinstance(images, Tensor):
        raise TypeError(f"expected a tensor, numpy image or list of them, got {type(images).__name__}")
    x = images.unsqueeze(0) if images.dim() == 3 else images
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (3, H, W) or (B, 3, H, W) with 3 colour channels, got shape "
                         f"{tuple(images.shape)}; convert greyscale/RGBA to RGB first")
    if x.dtype == torch.uint8:
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = (x.float() / 255 - mean.to(x.device)) / std.to(x.device)
    hw = [tuple(x.shape[-2:])] * x.shape[0]
    if tuple(x.shape[-2:]) != (size, size):  # squish, as the DataLoaders do
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.float(), hw


@torch.no_grad()
def predict(model: torch.nn.Module, images: Any, anchors: Optional[Anchors] = None, *,
            score_threshold: float = 0.25, nms_iou: float = 0.5, max_per_image: int = 100) -> list[Detections]:
    """Run ``model`` (an :class:`~ssd_lesson.model.SSDModel`) on ``images`` and decode its detections.

    ``images``: see :func:`prepare_images`; any size (resized to the model's). ``anchors``
    default to the model's spec. Returns one :class:`Detections` per image with boxes
    ``(y0, x0, y1, x1)`` in pixels of that input image.
    """
    anchors = make_anchors(model.spec) if anchors is None else anchors
    device = next(model.parameters()).device
    x, hw = prepare_images(images, model.size)
    was_training = model.training
    model.eval()
    try:
        class_logits, box_actns = model(x.to(device))
    finally:
        model.train(was_training)
    dets = decode(class_logits, box_actns, anchors, score_threshold=score_threshold, nms_iou=nms_iou,
                  max_per_image=max_per_image)
    return [Detections(d.boxes * d.boxes.new_tensor([h, w, h, w]), d.labels, d.scores) for d, (h, w) in zip(dets, hw)]


# ---------------------------------------------------------------- mean average precision
def _tm_pred(d: Detections) -> dict:
    return dict(boxes=d.boxes[:, _YX_TO_XY].float().cpu(), labels=d.labels.cpu(), scores=d.scores.float().cpu())


def _tm_targets(gt_boxes: Tensor, gt_labels: Tensor) -> list[dict]:
    """Padded ``(B, G, 4)`` / ``(B, G)`` ground truth (label -1 = padding) to torchmetrics' per-image dicts."""
    return [dict(boxes=b[lab >= 0][:, _YX_TO_XY].float().cpu(), labels=lab[lab >= 0].cpu())
            for b, lab in zip(gt_boxes, gt_labels)]


def _new_map_metric(sync: bool = True):
    from torchmetrics.detection import MeanAveragePrecision

    # sync: under distributed training, compute() gathers every process's detections
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools", sync_on_compute=sync)


def detection_map(detections: Sequence[Detections], gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor]) -> dict[str, float]:
    """Mean average precision of detections against ground truth (same units, e.g. fractions).

    Args:
        detections: one :class:`Detections` per image.
        gt_boxes: per image ``(G, 4)`` ``(y0, x0, y1, x1)``; gt_labels: per image ``(G,)`` (-1 rows ignored).

    Returns:
        ``{"map_50": ..., "map": ...}``: AP at IoU 0.5 (VOC's criterion; interpolated at COCO's
        101 recall points) and COCO's AP averaged over IoU 0.5:0.95, both averaged over the
        classes present in the ground truth or the detections.
    """
    if len(detections) == 0:
        raise ValueError("detection_map: no images to evaluate; is the valid split empty?")
    if not len(detections) == len(gt_boxes) == len(gt_labels):
        raise ValueError(f"detection_map: {len(detections)} detections for {len(gt_boxes)} ground-truth images")
    metric = _new_map_metric(sync=False)
    targets = [_tm_targets(b[None], lab[None])[0] for b, lab in zip(gt_boxes, gt_labels)]
    metric.update([_tm_pred(d) for d in detections], targets)
    r = metric.compute()
    return {"map_50": float(r["map_50"]), "map": float(r["map"])}


class _MAPState:
    """One torchmetrics accumulator shared by the mAP@0.5 and COCO-mAP columns (computed once per epoch)."""

    def __init__(self, anchors: Anchors, sync: bool = True, **decode_kwargs):
        self.anchors, self.decode_kwargs = anchors, decode_kwargs
        self.metric, self.n, self.result = _new_map_metric(sync), 0, None

    def reset(self) -> None:
        self.metric.reset()
        self.n, self.result = 0, None

    def update(self, preds: tuple[Tensor, Tensor], gt_boxes: Tensor, gt_labels: Tensor) -> None:
        dets = decode(*(p.detach() for p in preds), self.anchors, **self.decode_kwargs)
        self.metric.update([_tm_pred(d) for d in dets], _tm_targets(gt_boxes, gt_labels))
        self.n, self.result = self.n + len(dets), None

    def value(self, key: str) -> Optional[float]:
        if self.n == 0:
            return None  # nothing was validated: no number rather than a division by zero
        if self.result is None:
            self.result = {k: float(v) for k, v in self.metric.compute().items() if k in ("map_50", "map")}
        return self.result[key]


try:
    from fastai.learner import Metric as _FastaiMetric
except ImportError:  # fastai is a dependency, but keep decode/predict importable without it
    _FastaiMetric = object


class MeanAP(_FastaiMetric):
    """A fastai metric: mAP of the validation set's detections (``key`` ``"map_50"`` or ``"map"``).

    Build the pair with :func:`map_metrics` so both columns share one computation.
    """

    def __init__(self, state: _MAPState, key: str = "map_50", owner: bool = True):
        self.state, self.key, self.owner = state, key, owner

    def reset(self) -> None:
        if self.owner:
            self.state.reset()

    def accumulate(self, learn) -> None:
        if self.owner:
            self.state.update(learn.pred, *learn.yb)

    @property
    def value(self) -> Optional[float]:
        return self.state.value(self.key)

    @property
    def name(self) -> str:
        return {"map_50": "mAP50", "map": "mAP_coco"}[self.key]


def map_metrics(anchors: Anchors, score_threshold: float = 0.05, nms_iou: float = 0.5,
                max_per_image: int = 100) -> list[MeanAP]:
    """``[mAP50, mAP_coco]`` fastai metrics. A low score threshold, as mAP rewards ranked low-score boxes."""
    state = _MAPState(anchors, score_threshold=score_threshold, nms_iou=nms_iou, max_per_image=max_per_image)
    return [MeanAP(state, "map_50", owner=True), MeanAP(state, "map", owner=False)]
