"""The SSD paper's loss, one image and one box at a time: the plain reference for ``LossOptions.ssd_paper()``.

Written from the paper's description (Liu et al., 2016) and torchvision's ``SSD.compute_loss``, sharing no
code with ``ssd_lesson``: IoU by a double loop (:func:`~tests.reference.ref_iou`), matching by explicit
first maxima, the box coding in Python floats, smooth L1 and cross-entropy per box, and the hard
negatives by Python's ``sorted``. Boxes are ``(y0, x0, y1, x1)`` fractions, background is the last
class, activations are ``(dy, dx, dh, dw)``: the library's conventions.
"""
from __future__ import annotations

import math

import torch

from . import first_argmax, ref_iou

#: The paper's settings: IoU >= 0.5, 3 negatives per positive, variances 0.1 (centre) and 0.2 (size), smooth L1 beta 1.
THRESHOLD, NEG_POS_RATIO, CENTER_VARIANCE, SIZE_VARIANCE, BETA = 0.5, 3.0, 0.1, 0.2, 1.0


def paper_match(ious):
    """``(A, g)`` IoU of one image's anchor boxes with its g objects: the object of each box, or -1 (background).

    Each box takes the object it overlaps most (the first on ties) if that IoU is at least the threshold;
    then each object claims the box it overlaps most (the first on ties); a later object's claim wins.
    """
    A, g = ious.shape
    matched = [-1] * A
    if g == 0:
        return matched
    for a in range(A):
        best, j = first_argmax(ious[a])
        if best >= THRESHOLD:
            matched[a] = j
    for j in range(g):
        _, a = first_argmax(ious[:, j])
        matched[a] = j
    return matched


def encode(box, anchor_chw):
    """The four regression targets ``(dy, dx, dh, dw)`` of ``box`` (y0, x0, y1, x1) from one anchor ``(cy, cx, h, w)``."""
    y0, x0, y1, x1 = box
    cy, cx, h, w = anchor_chw
    bh, bw = y1 - y0, x1 - x0
    return [((y0 + y1) / 2 - cy) / h / CENTER_VARIANCE, ((x0 + x1) / 2 - cx) / w / CENTER_VARIANCE,
            math.log(bh / h) / SIZE_VARIANCE, math.log(bw / w) / SIZE_VARIANCE]


def smooth_l1(d):
    """Smooth L1 of one difference (a tensor scalar, to keep the gradient)."""
    return 0.5 * d * d / BETA if abs(float(d.detach())) < BETA else d.abs() - 0.5 * BETA


def paper_loss_one_image(logits, actns, boxes, labels, centers_hw, corners):
    """``(classification sum, box loss sum, n_positives, kept negatives)`` of one image, before normalising.

    logits: ``(A, C+1)``; actns: ``(A, 4)``; boxes: ``(g, 4)``; labels: ``(g,)`` (no padding rows).
    """
    A, C = logits.shape[0], logits.shape[1] - 1
    matched = paper_match(ref_iou(corners, boxes))
    box_loss = logits.new_zeros(())
    ce = []
    for a in range(A):
        target = C if matched[a] < 0 else int(labels[matched[a]])
        ce.append(torch.logsumexp(logits[a], dim=0) - logits[a, target])
        if matched[a] >= 0:
            t = encode([float(v) for v in boxes[matched[a]]], [float(v) for v in centers_hw[a]])
            for k in range(4):
                box_loss = box_loss + smooth_l1(actns[a, k] - t[k])
    positives = [a for a in range(A) if matched[a] >= 0]
    negatives = sorted((a for a in range(A) if matched[a] < 0), key=lambda a: -float(ce[a].detach()))  # hardest first
    kept = [a for rank, a in enumerate(negatives) if rank < NEG_POS_RATIO * len(positives)]
    clas = sum((ce[a] for a in positives + kept), logits.new_zeros(()))
    return clas, box_loss, len(positives), kept


def paper_ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, centers_hw, corners):
    """The batch's ``(classification, regression)``: each summed over the images, divided by the batch's positives."""
    clas, box, n_pos = [], [], 0
    for b in range(class_logits.shape[0]):
        keep = gt_labels[b] >= 0
        c, r, p, _ = paper_loss_one_image(class_logits[b], box_actns[b], gt_boxes[b][keep], gt_labels[b][keep],
                                          centers_hw, corners)
        clas.append(c)
        box.append(r)
        n_pos += p
    n = max(1, n_pos)
    return sum(clas) / n, sum(box) / n
