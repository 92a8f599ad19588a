"""torchvision's SSD loss (``SSD.compute_loss`` with ``SSD.forward``'s matching), on the library's conventions.

The library's boxes are ``(y0, x0, y1, x1)`` fractions, its background is the last class and its box
activations are ``(dy, dx, dh, dw)``; torchvision's boxes are ``(x0, y0, x1, y1)`` pixels, its
background is class 0 and its activations ``(dx, dy, dw, dh)``. :func:`torchvision_ssd_loss` maps
the library's inputs onto torchvision's (differentiably, so that gradients reach the library's
tensors) and calls torchvision's own code, unchanged.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor

#: ``(y0, x0, y1, x1)`` to ``(x0, y0, x1, y1)``, and ``(dy, dx, dh, dw)`` to ``(dx, dy, dw, dh)``.
SWAP_AXES = [1, 0, 3, 2]
#: The side of the square image the fractions are taken of. A power of two: scaling by it is exact, so
#: torchvision's IoUs in pixels equal the library's in fractions bit for bit, and an exact tie stays a tie.
IMAGE_SIZE = 512.0


def torchvision_targets(gt_boxes: Tensor, gt_labels: Tensor, image_size: float = IMAGE_SIZE) -> list[dict[str, Tensor]]:
    """Per image ``{"boxes": (g, 4) (x0, y0, x1, y1) pixels, "labels": (g,) in 1..C}``, padding rows (-1) left out."""
    out = []
    for boxes, labels in zip(gt_boxes, gt_labels):
        keep = labels >= 0
        out.append({"boxes": boxes[keep][:, SWAP_AXES] * image_size, "labels": labels[keep].long() + 1})
    return out


def torchvision_ssd_loss(class_logits: Tensor, box_actns: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                         anchor_corners: Tensor, image_size: float = IMAGE_SIZE) -> dict[str, Tensor]:
    """torchvision's ``{"bbox_regression", "classification"}`` for the library's tensors.

    Args:
        class_logits: ``(B, A, C+1)`` background last; box_actns: ``(B, A, 4)`` ``(dy, dx, dh, dw)``.
        gt_boxes: ``(B, G, 4)`` ``(y0, x0, y1, x1)`` fractions; gt_labels: ``(B, G)``, -1 on padding.
        anchor_corners: ``(A, 4)`` ``(y0, x0, y1, x1)`` fractions (``Anchors.corners``).
    """
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssd import SSD
    from torchvision.ops import box_iou

    # SSD.__init__'s defaults: BoxCoder(10, 10, 5, 5), iou_thresh 0.5, positive_fraction 0.25 (3 negatives per positive).
    ssd = SimpleNamespace(box_coder=det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)),
                          proposal_matcher=det_utils.SSDMatcher(0.5), neg_to_pos_ratio=(1.0 - 0.25) / 0.25)
    targets = torchvision_targets(gt_boxes, gt_labels, image_size)
    anchors = [anchor_corners[:, SWAP_AXES] * image_size] * len(targets)
    matched_idxs = []  # SSD.forward's own loop
    for anchors_per_image, targets_per_image in zip(anchors, targets):
        if targets_per_image["boxes"].numel() == 0:
            matched_idxs.append(torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64,
                                           device=anchors_per_image.device))
            continue
        match_quality_matrix = box_iou(targets_per_image["boxes"], anchors_per_image)
        matched_idxs.append(ssd.proposal_matcher(match_quality_matrix))
    head_outputs = {"cls_logits": torch.cat([class_logits[..., -1:], class_logits[..., :-1]], dim=-1),
                    "bbox_regression": box_actns[..., SWAP_AXES]}
    return SSD.compute_loss(ssd, targets, head_outputs, anchors, matched_idxs)
