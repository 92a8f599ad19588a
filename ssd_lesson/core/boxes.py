"""Boxes and their overlap.

Every box in this package is ``(y0, x0, y1, x1)``: the top-left and bottom-right
corners, as fractions of the image height and width (the lesson's convention).
Anchors are also described by their centre and size, ``(cy, cx, h, w)``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["box_iou", "iou_of_corners", "box_area", "corners_to_centers", "centers_to_corners", "YX_TO_XY"]

#: The column order that turns ``(y0, x0, y1, x1)`` boxes into torchvision's and COCO's ``(x0, y0, x1, y1)``
#: (``boxes[:, YX_TO_XY]``), and back: it is its own inverse. A list, so that it indexes one dimension.
YX_TO_XY = [1, 0, 3, 2]


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``(..., 4)`` corner boxes, ``(...)``; inverted boxes count as 0."""
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def box_iou(a: Tensor, b: Tensor, *, validate: bool = True) -> Tensor:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: ``(..., N, 4)`` corner boxes ``(y0, x0, y1, x1)``.
        b: ``(..., M, 4)`` corner boxes; leading dimensions broadcast with ``a``'s.
        validate: refuse NaN or infinite coordinates (``ValueError``), which would give NaN IoUs
            without a word; the check costs a host sync, so ``False`` skips it (as ``ssd_loss``'s).

    Returns:
        ``(..., N, M)``. A pair whose union has zero area (two degenerate boxes)
        gives 0, never NaN. Agrees with ``torchvision.ops.box_iou``, which uses
        ``(x0, y0, x1, y1)``: the IoU does not care which axis comes first.
    """
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise ValueError(f"box_iou: {name} must be a floating-point tensor of boxes, got "
                             f"{getattr(t, 'dtype', type(t).__name__)} (integer pixels: convert with .float())")
        if t.dim() < 2 or t.shape[-1] != 4:
            raise ValueError(f"box_iou: {name} must be (..., N, 4) boxes (last dimension 4), got shape {tuple(t.shape)}")
    if validate:
        for name, t in (("a", a), ("b", b)):
            if not torch.isfinite(t).all():
                raise ValueError(f"box_iou: {name} contains NaN or inf coordinates; its IoUs would be NaN")
    try:
        torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(f"box_iou: the leading dimensions of a {tuple(a.shape)} and b {tuple(b.shape)} do not "
                         "broadcast") from None
    return iou_of_corners([t.unsqueeze(-1) for t in a.unbind(-1)],  # (..., N, 1) each
                          [t.unsqueeze(-2) for t in b.unbind(-1)])  # (..., 1, M) each


def iou_of_corners(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """IoU from the corners ``(y0, x0, y1, x1)`` of two sets of boxes, as tensors that broadcast.

    :func:`box_iou` passes ``(..., N, 1)`` and ``(..., 1, M)`` columns; the loss passes
    ground truth as columns and coordinate-major predicted boxes as rows, for a
    ``(B, G, A)`` result.
    """
    ay0, ax0, ay1, ax1 = a
    by0, bx0, by1, bx1 = b
    # Only broadcast-shaped tensors, never a (..., N, M, 4) stack; after the first, each op
    # writes in place, which halves the time for large N*M (fewer fresh pages to fault in).
    # Autograd still works: it saves what the in-place ops overwrite.
    inter = torch.minimum(ay1, by1).sub_(torch.maximum(ay0, by0)).clamp_min_(0)  # overlap height
    inter.mul_(torch.minimum(ax1, bx1).sub_(torch.maximum(ax0, bx0)).clamp_min_(0))  # times width
    area_a = (ay1 - ay0).clamp_min(0) * (ax1 - ax0).clamp_min(0)
    area_b = (by1 - by0).clamp_min(0) * (bx1 - bx0).clamp_min(0)
    union = (area_a + area_b).sub_(inter)
    # Divide by 1 where the union is empty: the intersection is 0 there too.
    return inter.div_(union.masked_fill_(union <= 0, 1.0))


def centers_to_corners(centers_hw: Tensor) -> Tensor:
    """``(..., 4)`` ``(cy, cx, h, w)`` to ``(..., 4)`` ``(y0, x0, y1, x1)``."""
    ctr, hw = centers_hw[..., :2], centers_hw[..., 2:]
    return torch.cat([ctr - hw / 2, ctr + hw / 2], dim=-1)


def corners_to_centers(corners: Tensor) -> Tensor:
    """``(..., 4)`` ``(y0, x0, y1, x1)`` to ``(..., 4)`` ``(cy, cx, h, w)``."""
    tl, br = corners[..., :2], corners[..., 2:]
    return torch.cat([(tl + br) / 2, br - tl], dim=-1)
