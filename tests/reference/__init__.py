"""Independent, plain pieces for checking the batched library, one image at a time.

Anchors by nested loops, IoU by a double loop over boxes, matching by a loop with an explicit
first-maximum, BCE (and focal) with an explicit one-hot: sharing no code with ``ssd_lesson``.
The per-image loss loop itself is the lesson's, kept once in ``tests/reference/lesson_loop.py``;
:func:`ref_ssd_loss` runs that loop with these pieces (:data:`REFERENCE`), and the benchmark's
tests check the lesson's own pieces against them.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from .lesson_loop import Pieces, actn_to_bb, lesson_map_to_ground_truth, lesson_ssd_loss

#: The lesson's own formulas, written once in tests/reference/lesson_loop.py.
ref_actn_to_bb = actn_to_bb
ref_map_to_ground_truth = lesson_map_to_ground_truth


def ref_anchors(grids=(4, 2, 1), zooms=(0.7, 1.0, 1.3), ratios=((1.0, 1.0), (1.0, 0.5), (0.5, 1.0))):
    """Return ``(centers_hw (A, 4), grid_sizes (A, 1))`` by nested loops, lesson order."""
    scales = [(z * rh, z * rw) for z in zooms for (rh, rw) in ratios]
    rows, sizes = [], []
    for g in grids:
        for r in range(g):
            for c in range(g):
                for sh, sw in scales:
                    rows.append([(r + 0.5) / g, (c + 0.5) / g, sh / g, sw / g])
                    sizes.append([1.0 / g])
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(sizes, dtype=torch.float64)


def ref_iou(a, b):
    """``(N, 4) x (M, 4) -> (N, M)`` by a double loop."""
    out = torch.zeros(len(a), len(b), dtype=torch.float64)
    for i, j in itertools.product(range(len(a)), range(len(b))):
        ay0, ax0, ay1, ax1 = [float(v) for v in a[i]]
        by0, bx0, by1, bx1 = [float(v) for v in b[j]]
        ih = max(0.0, min(ay1, by1) - max(ay0, by0))
        iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
        inter = ih * iw
        union = max(0.0, ay1 - ay0) * max(0.0, ax1 - ax0) + max(0.0, by1 - by0) * max(0.0, bx1 - bx0) - inter
        out[i, j] = inter / union if union > 0 else 0.0
    return out


def first_argmax(v):
    """Index of the first maximum, written out so ties are unambiguous."""
    best, idx = None, 0
    for i, x in enumerate(v.tolist()):
        if best is None or x > best:
            best, idx = x, i
    return best, idx


def ref_match(overlaps_ag):
    """Plain-loop matching on ``(A, G)`` IoU of one image's valid boxes (G >= 1)."""
    A, G = overlaps_ag.shape
    gt_overlap = torch.zeros(A, dtype=torch.float64)
    gt_idx = torch.zeros(A, dtype=torch.long)
    for a in range(A):
        best, idx = first_argmax(overlaps_ag[a])
        gt_overlap[a], gt_idx[a] = best, idx
    for g in range(G):  # later ground truth overwrites earlier, as the lesson's loop
        _, a = first_argmax(overlaps_ag[:, g])
        gt_idx[a] = g
        gt_overlap[a] = 1.99
    return gt_overlap, gt_idx


def ref_bce(logits, targ, n_classes, focal=False, alpha=0.25, gamma=1.0):
    """The lesson's ``BCE_Loss`` / ``FocalLoss`` with an explicit one-hot (``F.one_hot``, not ``eye``)."""
    t = F.one_hot(targ, n_classes + 1)[:, :-1].to(logits.dtype)
    x = logits[:, :-1]
    w = None
    if focal:
        p = x.sigmoid()
        pt = p * t + (1 - p) * (1 - t)
        w = (alpha * t + (1 - alpha) * (1 - t)) * (1 - pt).pow(gamma)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    # The weight multiplies outside the call: BCE's own weight argument takes no gradient.
    return (bce if w is None else w * bce).sum() / n_classes


#: The lesson's loop run with these plain pieces (its IoU and matching take the lesson's (G, A) layout).
REFERENCE = Pieces(iou=lambda gt, boxes: ref_iou(boxes, gt).T, match=lambda overlaps: ref_match(overlaps.T),
                   clas_loss=ref_bce)


def ref_ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, centers_hw, grid_sizes, **kw):
    """The lesson's batch loss with the plain pieces: ``(total, parts)``, one
    ``(loc, clas, gt_idx, gt_overlap, pos, gt_clas)`` per image (``gt_idx`` in padded rows)."""
    return lesson_ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, centers_hw, grid_sizes, pieces=REFERENCE,
                           with_parts=True, **kw)
