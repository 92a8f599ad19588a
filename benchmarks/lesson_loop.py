"""The lesson's own per-image code path, as it ran: the benchmark's method (3).

Broadcast ``jaccard``, ``map_to_ground_truth`` with its loop over ground-truth boxes,
one-hot BCE via ``eye``, ``nonzero``: plain torch ops, one image at a time. The tests
check it against their independent reference (``tests/reference.py``) before it is timed.
Boxes are ``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

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


def lesson_loss_f(logits, targ, n_classes):
    """The lesson's ``BCE_Loss``: one-hot via ``eye``, background column dropped, summed, / C."""
    t = torch.eye(n_classes + 1, dtype=logits.dtype, device=logits.device)[targ][:, :-1]
    return F.binary_cross_entropy_with_logits(logits[:, :-1], t, reduction="sum") / n_classes


def lesson_ssd_1_loss(b_c, b_bb, bbox, clas, centers_hw, grid_sizes, anchor_cnr, match_on="predictions",
                      threshold=0.4, reduction="mean"):
    """The lesson's ``ssd_1_loss`` for one image: ``b_c`` ``(A, C+1)``, ``b_bb`` ``(A, 4)``, ``bbox`` ``(G, 4)`` padded."""
    keep = torch.nonzero(clas >= 0)[:, 0]  # the lesson's get_y: drop padding rows
    bbox, clas = bbox[keep], clas[keep]
    n_classes = b_c.shape[1] - 1
    a_ic = actn_to_bb(b_bb, centers_hw, grid_sizes)
    if len(keep) == 0:  # (the lesson never met an empty image; everything is background)
        gt_clas = torch.full((b_c.shape[0],), n_classes, dtype=torch.long, device=b_c.device)
        return b_bb.sum() * 0, lesson_loss_f(b_c, gt_clas, n_classes)
    overlaps = lesson_jaccard(bbox, a_ic.detach() if match_on == "predictions" else anchor_cnr)  # (G, A)
    gt_overlap, gt_idx = lesson_map_to_ground_truth(overlaps)
    gt_clas = clas[gt_idx]
    pos = gt_overlap > threshold
    pos_idx = torch.nonzero(pos)[:, 0]
    gt_clas[~pos] = n_classes
    gt_bbox = bbox[gt_idx]
    err = (a_ic[pos_idx] - gt_bbox[pos_idx]).abs()
    if len(pos_idx) == 0:
        loc = b_bb.sum() * 0
    else:
        loc = err.mean() if reduction == "mean" else err.mean(1).sum()
    return loc, lesson_loss_f(b_c, gt_clas, n_classes)


def lesson_ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, centers_hw, grid_sizes, match_on="predictions",
                    threshold=0.4, reduction="mean"):
    """The lesson's ``ssd_loss``: a Python loop over the batch, summing each image's two parts.

    ``class_logits`` ``(B, A, C+1)``, ``box_actns`` ``(B, A, 4)``, ``gt_boxes`` ``(B, G, 4)``,
    ``gt_labels`` ``(B, G)`` with -1 padding; ``centers_hw`` ``(A, 4)``, ``grid_sizes`` ``(A, 1)``.
    Returns the scalar total.
    """
    anchor_cnr = hw2corners(centers_hw[:, :2], centers_hw[:, 2:])
    lls, lcs = 0.0, 0.0
    for b_c, b_bb, bbox, clas in zip(class_logits, box_actns, gt_boxes, gt_labels):
        loc, cl = lesson_ssd_1_loss(b_c, b_bb, bbox, clas, centers_hw, grid_sizes, anchor_cnr,
                                    match_on=match_on, threshold=threshold, reduction=reduction)
        lls, lcs = lls + loc, lcs + cl
    return lls + lcs
