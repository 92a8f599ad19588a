"""The lesson's per-image SSD loss, as it ran: the one copy of its loop (the benchmark's method (3)).

Broadcast ``jaccard``, ``map_to_ground_truth`` with its loop over ground-truth boxes,
one-hot BCE via ``eye`` (or the lesson's ``FocalLoss`` weight), ``nonzero``: plain torch ops,
one image at a time. The three steps that do the numerical work are :class:`Pieces`; the
benchmark times the loop with the lesson's own (:data:`LESSON`), and the tests run the same
loop with their plain-loop pieces (``tests/reference.py``: IoU and matching by nested Python
loops) to check it, and the batched library against it. Boxes are ``(y0, x0, y1, x1)``
fractions of the image.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


def hw2corners(ctr, hw):
    """The lesson's ``hw2corners``: centres ``(A, 2)`` and sizes ``(A, 2)`` to ``(A, 4)`` corners."""
    return torch.cat([ctr - hw / 2, ctr + hw / 2], dim=1)


def actn_to_bb(actn, centers_hw, grid_sizes):
    """The lesson's ``actn_to_bb``: tanh, the centre moves up to half a cell, the size 0.5-1.5x."""
    t = torch.tanh(actn)
    ctr = t[:, :2] / 2 * grid_sizes + centers_hw[:, :2]
    hw = (t[:, 2:] / 2 + 1) * centers_hw[:, 2:]
    return hw2corners(ctr, hw)


def lesson_jaccard(box_a, box_b):
    """The lesson's ``jaccard``: ``(N, 4) x (M, 4) -> (N, M)`` by broadcasting."""
    max_xy = torch.min(box_a[:, None, 2:], box_b[None, :, 2:])
    min_xy = torch.max(box_a[:, None, :2], box_b[None, :, :2])
    inter = torch.clamp(max_xy - min_xy, min=0)
    inter = inter[:, :, 0] * inter[:, :, 1]
    sz_a = (box_a[:, 2] - box_a[:, 0]) * (box_a[:, 3] - box_a[:, 1])
    sz_b = (box_b[:, 2] - box_b[:, 0]) * (box_b[:, 3] - box_b[:, 1])
    return inter / (sz_a.unsqueeze(1) + sz_b.unsqueeze(0) - inter)


def lesson_map_to_ground_truth(overlaps):
    """The lesson's ``map_to_ground_truth``: ``overlaps`` is ``(G, A)``; returns ``(A,)`` overlap and index."""
    prior_overlap, prior_idx = overlaps.max(1)  # best box per ground truth
    gt_overlap, gt_idx = overlaps.max(0)  # best ground truth per box
    gt_overlap[prior_idx] = 1.99
    for i, o in enumerate(prior_idx):  # the loop over ground-truth boxes; later ones win
        gt_idx[o] = i
    return gt_overlap, gt_idx


def lesson_loss_f(logits, targ, n_classes, focal=False, alpha=0.25, gamma=1.0):
    """The lesson's ``BCE_Loss`` (one-hot via ``eye``, background column dropped, summed, / C), or its
    ``FocalLoss``: the same with the weight ``alpha_t * (1 - p_t) ** gamma`` (multiplied outside
    the call, so that the weight is differentiated too, as the library's focal loss is)."""
    t = torch.eye(n_classes + 1, dtype=logits.dtype, device=logits.device)[targ][:, :-1]
    x = logits[:, :-1]
    if not focal:
        return F.binary_cross_entropy_with_logits(x, t, reduction="sum") / n_classes
    p = x.sigmoid()
    pt = p * t + (1 - p) * (1 - t)
    w = (alpha * t + (1 - alpha) * (1 - t)) * (1 - pt).pow(gamma)
    return (w * F.binary_cross_entropy_with_logits(x, t, reduction="none")).sum() / n_classes


class Pieces(NamedTuple):
    """The steps of the loop that compute: ``iou(gt (G, 4), boxes (A, 4)) -> (G, A)``,
    ``match(overlaps (G, A)) -> (gt_overlap (A,), gt_idx (A,))`` and
    ``clas_loss(logits (A, C+1), targets (A,), C, focal, alpha, gamma) -> scalar``."""

    iou: Callable
    match: Callable
    clas_loss: Callable


#: The lesson's own pieces: what the benchmark times.
LESSON = Pieces(lesson_jaccard, lesson_map_to_ground_truth, lesson_loss_f)


def lesson_ssd_1_loss(b_c, b_bb, bbox, clas, centers_hw, grid_sizes, anchor_cnr, match_on="predictions",
                      threshold=0.4, reduction="mean", focal=False, alpha=0.25, gamma=1.0, pieces=LESSON):
    """The lesson's ``ssd_1_loss`` for one image: ``b_c`` ``(A, C+1)``, ``b_bb`` ``(A, 4)``, ``bbox`` ``(G, 4)`` padded.

    Returns ``(loc, clas_loss, gt_idx, gt_overlap, pos, gt_clas)``: the two losses, and per box
    ``(A,)`` its ground-truth row (in the padded rows), overlap, positive flag and target class.
    """
    keep = torch.nonzero(clas >= 0)[:, 0]  # the lesson's get_y: drop padding rows
    bbox, clas = bbox[keep], clas[keep]
    n_classes, A = b_c.shape[1] - 1, b_c.shape[0]
    a_ic = actn_to_bb(b_bb, centers_hw, grid_sizes)
    if len(keep) == 0:  # (the lesson never met an empty image; everything is background)
        gt_clas = torch.full((A,), n_classes, dtype=torch.long, device=b_c.device)
        gt_idx, pos = torch.zeros_like(gt_clas), torch.zeros(A, dtype=torch.bool, device=b_c.device)
        gt_overlap = torch.zeros(A, dtype=b_bb.dtype, device=b_c.device)
        return (b_bb.sum() * 0, pieces.clas_loss(b_c, gt_clas, n_classes, focal, alpha, gamma), gt_idx, gt_overlap,
                pos, gt_clas)
    overlaps = pieces.iou(bbox, a_ic.detach() if match_on == "predictions" else anchor_cnr)  # (G, A)
    gt_overlap, gt_idx = pieces.match(overlaps)
    gt_clas = clas[gt_idx].clone()
    pos = gt_overlap > threshold
    pos_idx = torch.nonzero(pos)[:, 0]
    gt_clas[~pos] = n_classes
    gt_bbox = bbox[gt_idx]
    err = (a_ic[pos_idx] - gt_bbox[pos_idx]).abs()
    if len(pos_idx) == 0:
        loc = b_bb.sum() * 0
    else:
        loc = err.mean() if reduction == "mean" else err.mean(1).sum()
    clas_loss = pieces.clas_loss(b_c, gt_clas, n_classes, focal, alpha, gamma)
    return loc, clas_loss, keep[gt_idx], gt_overlap, pos, gt_clas


def lesson_ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, centers_hw, grid_sizes, match_on="predictions",
                    threshold=0.4, reduction="mean", focal=False, alpha=0.25, gamma=1.0, pieces=LESSON,
                    with_parts=False):
    """The lesson's ``ssd_loss``: a Python loop over the batch, summing each image's two parts.

    ``class_logits`` ``(B, A, C+1)``, ``box_actns`` ``(B, A, 4)``, ``gt_boxes`` ``(B, G, 4)``,
    ``gt_labels`` ``(B, G)`` with -1 padding; ``centers_hw`` ``(A, 4)``, ``grid_sizes`` ``(A, 1)``.
    Returns the scalar total; with ``with_parts``, also each image's :func:`lesson_ssd_1_loss` tuple.
    """
    anchor_cnr = hw2corners(centers_hw[:, :2], centers_hw[:, 2:])
    lls, lcs, parts = 0.0, 0.0, []
    for b_c, b_bb, bbox, clas in zip(class_logits, box_actns, gt_boxes, gt_labels):
        part = lesson_ssd_1_loss(b_c, b_bb, bbox, clas, centers_hw, grid_sizes, anchor_cnr, match_on=match_on,
                                 threshold=threshold, reduction=reduction, focal=focal, alpha=alpha, gamma=gamma,
                                 pieces=pieces)
        lls, lcs = lls + part[0], lcs + part[1]
        parts.append(part)
    return (lls + lcs, parts) if with_parts else lls + lcs
