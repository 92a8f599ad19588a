"""Boxes and their overlap.

Every box in this package is ``(y0, x0, y1, x1)``: the top-left and bottom-right
corners, as fractions of the image height and width (the lesson's convention).
Anchors are also described by their centre and size, ``(cy, cx, h, w)``.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["box_iou", "box_area", "corners_to_centers", "centers_to_corners"]


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``(..., 4)`` corner boxes, ``(...)``; inverted boxes count as 0."""
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: ``(..., N, 4)`` corner boxes ``(y0, x0, y1, x1)``.
        b: ``(..., M, 4)`` corner boxes; leading dimensions broadcast with ``a``'s.

    Returns:
        ``(..., N, M)``. A pair whose union has zero area (two degenerate boxes)
        gives 0, never NaN. Agrees with ``torchvision.ops.box_iou``, which uses
        ``(x0, y0, x1, y1)``: the IoU does not care which axis comes first.
    """
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ValueError(f"box_iou: boxes must have last dimension 4, got a {tuple(a.shape)} and b {tuple(b.shape)}")
    a_ = a.unsqueeze(-2)  # (..., N, 1, 4)
    b_ = b.unsqueeze(-3)  # (..., 1, M, 4)
    # One (..., N, M) tensor per side, never a (..., N, M, 4) stack.
    h = (torch.minimum(a_[..., 2], b_[..., 2]) - torch.maximum(a_[..., 0], b_[..., 0])).clamp_min(0)
    w = (torch.minimum(a_[..., 3], b_[..., 3]) - torch.maximum(a_[..., 1], b_[..., 1])).clamp_min(0)
    inter = h * w
    union = box_area(a).unsqueeze(-1) + box_area(b).unsqueeze(-2) - inter
    # Divide by 1 where the union is empty: the intersection is 0 there too.
    return inter / torch.where(union > 0, union, torch.ones_like(union))


def centers_to_corners(centers_hw: Tensor) -> Tensor:
    """``(..., 4)`` ``(cy, cx, h, w)`` to ``(..., 4)`` ``(y0, x0, y1, x1)``."""
    ctr, hw = centers_hw[..., :2], centers_hw[..., 2:]
    return torch.cat([ctr - hw / 2, ctr + hw / 2], dim=-1)


def corners_to_centers(corners: Tensor) -> Tensor:
    """``(..., 4)`` ``(y0, x0, y1, x1)`` to ``(..., 4)`` ``(cy, cx, h, w)``."""
    tl, br = corners[..., :2], corners[..., 2:]
    return torch.cat([(tl + br) / 2, br - tl], dim=-1)
