"""The Pascal VOC devkit's scoring, one detection at a time: py-faster-rcnn's ``voc_eval.py`` as it reads.

The independent reference for :func:`ssd_lesson.model.voc_eval.voc_ap` (which is vectorised over every
class and detection): a detection is a hit when its best overlap is strictly above ``ovthresh``
(``ovmax > ovthresh``), widths and heights count ``+1`` for inclusive pixels. Numpy only.
"""
from __future__ import annotations

import math

import numpy as np


def devkit_voc_eval(preds, targets, cls, ovthresh=0.5, use_07_metric=True, plus_one=1.0):
    """AP, recall and precision of class ``cls`` as py-faster-rcnn's ``voc_eval.py`` computes them (its
    boxes are (x, y) order: ours are swapped into it), except that the sort is stable (the devkit's
    ``np.argsort(-confidence)`` leaves equal scores in no particular order)."""
    class_recs, npos = {}, 0
    for i, t in enumerate(targets):
        m = np.asarray(t["labels"]) == cls
        bbox = np.asarray(t["boxes"], dtype=np.float64).reshape(-1, 4)[m][:, [1, 0, 3, 2]]
        difficult = np.asarray(t["difficult"], dtype=bool)[m]
        npos += int(np.sum(~difficult))
        class_recs[i] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(bbox)}
    image_ids, confidence, BB = [], [], []
    for i, p in enumerate(preds):
        for box, score, lab in zip(np.asarray(p["boxes"], dtype=np.float64).reshape(-1, 4), np.asarray(p["scores"]),
                                   np.asarray(p["labels"])):
            if lab == cls:
                image_ids.append(i), confidence.append(float(score)), BB.append(box[[1, 0, 3, 2]])
    confidence, BB = np.array(confidence), np.array(BB).reshape(-1, 4)
    sorted_ind = np.argsort(-confidence, kind="stable")
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + plus_one, 0.)
            ih = np.maximum(iymax - iymin + plus_one, 0.)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + plus_one) * (bb[3] - bb[1] + plus_one) +
                   (BBGT[:, 2] - BBGT[:, 0] + plus_one) * (BBGT[:, 3] - BBGT[:, 1] + plus_one) - inters)
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.
        else:
            fp[d] = 1.
    ignored = (tp == 0) & (fp == 0)
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    if npos == 0:
        return math.nan, None, None
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return devkit_voc_ap(rec, prec, use_07_metric), rec[~ignored], prec[~ignored]


def devkit_voc_ap(rec, prec, use_07_metric=True):
    """voc_eval.py's voc_ap, as it reads."""
    if use_07_metric:
        ap = 0.
        for t in np.arange(0., 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.
    else:
        mrec = np.concatenate(([0.], rec, [1.]))
        mpre = np.concatenate(([0.], prec, [0.]))
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap
