"""The SSD paper's box coding: log-space offsets from the anchor box, scaled by the "variances".

The lesson reads a box activation ``(dy, dx, dh, dw)`` through ``tanh`` (the centre moves up to
half a grid cell, the sides become 0.5 to 1.5 times the anchor box's:
:func:`~ssd_lesson.core.anchors.activations_to_boxes`). The paper (and torchvision's ``BoxCoder``,
weights 10, 10, 5, 5) reads it unbounded, relative to the anchor box ``(cy, cx, h, w)``::

    box centre  = (cy + dy * CENTER_VARIANCE * h,  cx + dx * CENTER_VARIANCE * w)
    box size    = (h * exp(dh * SIZE_VARIANCE),    w * exp(dw * SIZE_VARIANCE))

A centre offset counted in anchor sizes and a log size ratio are the same for a small and a large
object (scale-invariant), and the variances make the usual targets about 1 in size. The loss then
compares the activations with the encoded ground truth (:func:`encode_log_offsets`), not boxes.
Boxes are ``(y0, x0, y1, x1)`` fractions of the image throughout.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .options import CENTER_VARIANCE, SIZE_VARIANCE

__all__ = ["LOG_SIZE_CLIP", "decode_log_offsets", "encode_log_offsets"]

#: The largest log size ratio decoded (torchvision's ``bbox_xform_clip``): a box at most 62.5 times its
#: anchor box, so that a wild activation gives a huge box, never inf.
LOG_SIZE_CLIP = math.log(1000.0 / 16)


def decode_log_offsets(box_actns: Tensor, center_planes: Tensor) -> Tensor:
    """Boxes from log-space offsets, coordinate-major.

    Args:
        box_actns: ``(..., A, 4)`` activations ``(dy, dx, dh, dw)``.
        center_planes: ``(4, A)`` the anchor boxes' ``cy, cx, h, w`` rows (:attr:`Anchors.center_planes`).

    Returns:
        ``(..., 4, A)``: rows y0, x0, y1, x1, fractions of the image.
    """
    dy, dx, dh, dw = box_actns.unbind(-1)  # (..., A) each
    cy, cx, h, w = center_planes.to(box_actns.dtype)
    cy, cx = cy + dy * CENTER_VARIANCE * h, cx + dx * CENTER_VARIANCE * w
    half_h = torch.exp((dh * SIZE_VARIANCE).clamp_max(LOG_SIZE_CLIP)) * h / 2
    half_w = torch.exp((dw * SIZE_VARIANCE).clamp_max(LOG_SIZE_CLIP)) * w / 2
    return torch.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], dim=-2)


def encode_log_offsets(boxes: Tensor, centers_hw: Tensor) -> Tensor:
    """The activations that :func:`decode_log_offsets` turns into ``boxes``: the regression targets.

    Args:
        boxes: ``(..., A, 4)`` ``(y0, x0, y1, x1)`` with positive height and width, one per anchor box.
        centers_hw: ``(A, 4)`` the anchor boxes' ``(cy, cx, h, w)``.

    Returns:
        ``(..., A, 4)`` ``(dy, dx, dh, dw)``.
    """
    y0, x0, y1, x1 = boxes.unbind(-1)
    cy, cx, h, w = centers_hw.to(boxes.dtype).unbind(-1)
    box_h, box_w = y1 - y0, x1 - x0
    return torch.stack([((y0 + box_h / 2) - cy) / h / CENTER_VARIANCE, ((x0 + box_w / 2) - cx) / w / CENTER_VARIANCE,
                        torch.log(box_h / h) / SIZE_VARIANCE, torch.log(box_w / w) / SIZE_VARIANCE], dim=-1)
