"""An independent, plain implementation of the lesson's SSD loss, one image at a time.

Written the way the lesson wrote it (loops, ``nonzero``, one-hot targets), sharing
no code with ``ssd_lesson``, so the batched library can be checked against it.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F


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


def hw2corners(ctr, hw):
    return torch.cat([ctr - hw / 2, ctr + hw / 2], dim=1)


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


def ref_actn_to_bb(actn, centers_hw, grid_sizes):
    t = torch.tanh(actn)
    ctr = t[:, :2] / 2 * grid_sizes + centers_hw[:, :2]
    hw = (t[:, 2:] / 2 + 1) * centers_hw[:, 2:]
    return hw2corners(ctr, hw)


def ref_map_to_ground_truth(overlaps):
    """The lesson's function: ``overlaps`` is ``(G, A)``; returns ``gt_overlap, gt_idx``."""
    prior_overlap, prior_idx = overlaps.max(1)
    gt_overlap, gt_idx = overlaps.max(0)
    gt_overlap = gt_overlap.clone()
    gt_idx = gt_idx.clone()
    gt_overlap[prior_idx] = 1.99
    for i, o in enumerate(prior_idx):
        gt_idx[o] = i
    return gt_overlap, gt_idx


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
    """The lesson's ``BCE_Loss`` / ``FocalLoss`` with an explicit one-hot."""
    t = torch.eye(n_classes + 1, dtype=logits.dtype)[targ][:, :-1]
    x = logits[:, :-1]
    w = None
    if focal:
        p = x.sigmoid()
        pt = p * t + (1 - p) * (1 - t)
        w = (alpha * t + (1 - alpha) * (1 - t)) * (1 - pt).pow(gamma)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    # The weight multiplies outside the call: BCE's own weight argument takes no gradient.
    return (bce if w is None else w * bce).sum() / n_classes


def ref_ssd_1_loss(b_c, b_bb, bbox, clas, centers_hw, grid_sizes, match_on="predictions", threshold=0.4,
                   focal=False, gamma=1.0, reduction="mean"):
    """One image. ``bbox``/``clas`` still padded; padding rows (label -1) are dropped first."""
    keep = torch.nonzero(clas >= 0)[:, 0]
    bbox, clas = bbox[keep], clas[keep]
    n_classes = b_c.shape[1] - 1
    a_ic = ref_actn_to_bb(b_bb, centers_hw, grid_sizes)
    A = b_bb.shape[0]
    if len(keep) == 0:
        gt_clas = torch.full((A,), n_classes, dtype=torch.long)
        pos = torch.zeros(A, dtype=torch.bool)
        loc = b_bb.sum() * 0
        gt_idx = torch.zeros(A, dtype=torch.long)
        gt_overlap = torch.zeros(A, dtype=torch.float64)
    else:
        boxes = a_ic.detach() if match_on == "predictions" else hw2corners(centers_hw[:, :2], centers_hw[:, 2:])
        overlaps = ref_iou(boxes, bbox)  # (A, G)
        gt_overlap, gt_idx = ref_match(overlaps)
        gt_clas = clas[gt_idx].clone()
        pos = gt_overlap > threshold
        pos_idx = torch.nonzero(pos)[:, 0]
        gt_clas[~pos] = n_classes
        gt_bbox = bbox[gt_idx]
        if len(pos_idx) == 0:
            loc = b_bb.sum() * 0
        elif reduction == "mean":
            loc = (a_ic[pos_idx] - gt_bbox[pos_idx]).abs().mean()
        else:
            loc = (a_ic[pos_idx] - gt_bbox[pos_idx]).abs().mean(1).sum()
        gt_idx = keep[gt_idx]  # back to padded row numbers
    clas_loss = ref_bce(b_c, gt_clas, n_classes, focal=focal, gamma=gamma)
    return loc, clas_loss, gt_idx, gt_overlap, pos, gt_clas


def ref_ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, centers_hw, grid_sizes, **kw):
    """The lesson's batch loss: a Python loop over images, summing both parts."""
    total = 0.0
    parts = []
    for b_c, b_bb, bbox, clas in zip(class_logits, box_actns, gt_boxes, gt_labels):
        loc, cl, gt_idx, gt_overlap, pos, gt_clas = ref_ssd_1_loss(b_c, b_bb, bbox, clas, centers_hw, grid_sizes, **kw)
        total = total + loc + cl
        parts.append((loc, cl, gt_idx, gt_overlap, pos, gt_clas))
    return total, parts
