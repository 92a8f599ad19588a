"""The classification loss of each box, and hard negative mining: which background boxes count.

An image of SSD300 has 8732 boxes and a handful of objects: thousands of negatives (background
boxes) to each positive. Summed, their easy, confident losses swamp the few positives'. The SSD
paper keeps only the negatives the model gets most wrong, at most 3 per positive in each image
(*hard negative mining*); focal loss (notebook 06) instead turns every easy box's loss down.

Batched: a sort per image ranks its negatives, with no per-image loop and no data-dependent
shape, so it runs under ``torch.compile`` and never waits on the device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .bce_terms import focal_terms, softplus
from .options import CLASSIFICATIONS, Classification, LossOptions, check_focal

__all__ = ["box_classification_loss", "hard_negatives"]


def box_classification_loss(class_logits: Tensor, target_labels: Tensor,
                            classification: Classification = LossOptions.classification, *,
                            alpha: float = LossOptions.focal_alpha, gamma: float = LossOptions.focal_gamma) -> Tensor:
    """The classification loss of every box: ``(B, A)``, before any mining or reduction.

    ``"softmax"``: the cross-entropy ``logsumexp(x) - x[target]`` over all C+1 columns, background
    (column C) included. ``"bce"`` / ``"focal"``: the lesson's, summed over the C object columns
    (background dropped) and divided by C, so that an image's sum is
    :func:`~ssd_lesson.core.loss.classification_loss`.

    Args:
        class_logits: ``(B, A, C+1)``, background last.
        target_labels: ``(B, A)`` int64 in ``[0, C]``; C is background.
    """
    if classification not in CLASSIFICATIONS:
        raise ValueError(f"classification must be one of {', '.join(map(repr, CLASSIFICATIONS))}, got {classification!r}")
    C = class_logits.shape[-1] - 1
    if classification == "softmax":  # one fused log-softmax pass (torchvision's call), faster than logsumexp - x_t
        return F.cross_entropy(class_logits.reshape(-1, C + 1), target_labels.reshape(-1),
                               reduction="none").view(target_labels.shape)
    x = class_logits[..., :C]
    is_object = target_labels < C
    x_t = x.gather(-1, target_labels.clamp_max(C - 1).unsqueeze(-1)).squeeze(-1)  # background's value unused
    if classification == "bce":
        return (softplus(x).sum(dim=-1) - torch.where(is_object, x_t, 0.0)) / C
    check_focal(alpha, gamma)
    swap = focal_terms(x_t, True, alpha, gamma) - focal_terms(x_t, False, alpha, gamma)
    return (focal_terms(x, False, alpha, gamma).sum(dim=-1) + torch.where(is_object, swap, 0.0)) / C


def hard_negatives(box_loss: Tensor, positive: Tensor, neg_pos_ratio: float) -> Tensor:
    """The negatives that count: in each image, the ``neg_pos_ratio * n_positives`` with the highest loss.

    Per image, every box that is not positive is ranked by its loss, highest first, and the first
    ``neg_pos_ratio`` times the image's number of positives are kept (all of them if there are
    fewer). An image without positives keeps none. Boxes with equal losses are ranked in anchor order.

    Args:
        box_loss: ``(B, A)`` each box's classification loss (only its order matters: not differentiated).
        positive: ``(B, A)`` bool.
        neg_pos_ratio: negatives kept per positive, a finite number ``>= 0``.

    Returns:
        ``(B, A)`` bool, True on the kept negatives (never on a positive).
    """
    if isinstance(neg_pos_ratio, bool) or not 0 <= neg_pos_ratio < float("inf"):
        raise ValueError(f"neg_pos_ratio: must be a finite number >= 0, got {neg_pos_ratio!r}")
    # Positives rank below every negative: -inf, as torchvision marks them.
    negative_loss = box_loss.detach().masked_fill(positive, float("-inf"))
    order = negative_loss.argsort(dim=-1, descending=True, stable=True)  # (B, A): box of each rank
    ranks = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(-1, order, ranks)  # (B, A): rank of each box
    n_kept = neg_pos_ratio * positive.sum(dim=-1, keepdim=True)
    return (rank < n_kept) & ~positive
