"""Average precision by the Pascal VOC devkit's rules (torch only).

:func:`voc_ap` scores detections the way the devkit's ``voc_eval.py`` (py-faster-rcnn's port
of ``VOCevaldet.m``) does, one class at a time:

1. all images' detections of the class, in descending score order (a stable sort: equal
   scores keep image order, then the order of the detections within the image);
2. each detection's IoU with the class's ground-truth boxes in its image, widths and heights
   counted the devkit's way for inclusive pixel coordinates (``xmax - xmin + 1``), and the
   best-overlapping box (the first of equals);
3. a detection is a true positive when that IoU is strictly above the threshold, that box is
   not difficult and no earlier detection claimed it; it counts as nothing when that box is
   difficult (and the IoU above the threshold); anything else is a false positive;
4. recall = true positives / the class's non-difficult boxes, precision = true positives /
   (true + false positives), as cumulative sums down the sorted list;
5. AP: VOC2007's 11-point interpolation (the mean over recall thresholds 0, 0.1, ..., 1 of
   the highest precision at a recall at least that high), or from VOC2010 on the area under
   the curve whose precision is made non-increasing (every point).

Steps 2 and 3 are vectorised per class: "not claimed by an earlier detection" is "the first,
in score order, of the detections whose best box is that non-difficult box with IoU above
the threshold", a scatter of minimum positions; there is no loop over detections.

Boxes are ``(y0, x0, y1, x1)`` in pixels. VOC's XML gives inclusive pixels (``xmin=1 ..
xmax=W`` is the whole width): pass those with ``inclusive=True`` (the devkit's ``+1``). The
project's boxes (``Record.boxes``, :func:`ssd_lesson.infer.predict`) are half-open, ``y0 =
ymin - 1, y1 = ymax``, already ``y1 - y0`` pixels tall: pass those with ``inclusive=False``,
which gives the devkit's IoUs on the XML's coordinates.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor

__all__ = ["VOCResult", "voc_ap", "average_precision", "VOC07_RECALLS"]

# voc_eval.py's np.arange(0., 1.1, 0.1): k * 0.1 in float64. So the fourth threshold is
# 0.30000000000000004 and a recall of exactly 3/10 does not reach it (nor 0.6 = 6/10, 0.7, ...
# whichever k * 0.1 rounds above k / 10); kept, as the devkit's numbers have it.
VOC07_RECALLS = torch.arange(11, dtype=torch.float64) * 0.1
_EPS = torch.finfo(torch.float64).eps


class VOCResult(NamedTuple):
    """What :func:`voc_ap` found.

    map: mean AP over the classes with at least one non-difficult box (NaN if none has).
    ap: ``(C,)`` float64 AP per class, NaN for a class without a non-difficult box.
    precision, recall, scores: per class, ``(K,)`` float64 curves down the score-sorted
    detections of the class, one point per true or false positive (detections on difficult
    boxes count as neither and make no point; the devkit repeats the previous point for
    them, which changes no AP). ``recall`` is NaN throughout for a class without a
    non-difficult box. ``scores[c][k]`` is the score of the k-th point's detection.
    n_positives: ``(C,)`` int64 non-difficult boxes per class (recall's denominator);
    n_difficult: ``(C,)`` int64 difficult boxes per class.
    """

    map: float
    ap: Tensor
    precision: tuple[Tensor, ...]
    recall: tuple[Tensor, ...]
    scores: tuple[Tensor, ...]
    n_positives: Tensor
    n_difficult: Tensor
    iou_threshold: float
    use_07_metric: bool


def _tensor(d: Mapping, key: str, where: str) -> Tensor:
    v = d[key]
    try:
        return torch.as_tensor(v).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{where}[{key!r}] must be a tensor or array, got {type(v).__name__} ({e})") from None


def _gather(items: Any, name: str, num_classes: int, is_pred: bool) -> dict[str, Tensor]:
    """Validate one side's per-image dicts and concatenate them, with each row's image index."""
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes, Mapping)):
        raise TypeError(f"voc_ap: {name} must be a list with one dict per image, got {type(items).__name__}")
    keys = ("boxes", "scores", "labels") if is_pred else ("boxes", "labels")
    out: dict[str, list[Tensor]] = {k: [] for k in (*keys, "difficult", "image")}
    for i, d in enumerate(items):
        where = f"voc_ap: {name}[{i}]"
        if not isinstance(d, Mapping):
            raise TypeError(f"{where} must be a dict with keys {', '.join(keys)}, got {type(d).__name__}")
        missing = [k for k in keys if k not in d]
        if missing:
            raise ValueError(f"{where} lacks the key(s) {', '.join(map(repr, missing))}; it needs {', '.join(keys)}"
                             + ("" if is_pred else " (and optionally 'difficult')"))
        boxes, labels = _tensor(d, "boxes", where), _tensor(d, "labels", where)
        n = labels.shape[0] if labels.dim() == 1 else -1
        if n < 0:
            raise ValueError(f"{where}['labels'] must be 1-D, got shape {tuple(labels.shape)}")
        if boxes.numel() == 0 and n == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.shape != (n, 4):
            raise ValueError(f"{where}['boxes'] must be ({n}, 4) (y0, x0, y1, x1) for its {n} labels, "
                             f"got shape {tuple(boxes.shape)}")
        if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
            raise TypeError(f"{where}['labels'] must be integer class ids, got dtype {labels.dtype}")
        if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"{where}['labels'] must be in 0..{num_classes - 1} (num_classes={num_classes}), "
                             f"got {int(labels.min())}..{int(labels.max())}")
        boxes = boxes.to(torch.float64)
        if not torch.isfinite(boxes).all():
            raise ValueError(f"{where}['boxes'] holds NaN or infinite values")
        if n and ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
            k = int(torch.nonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))[0])
            raise ValueError(f"{where}['boxes'][{k}] = {boxes[k].tolist()} has y1 < y0 or x1 < x0; boxes are (y0, x0, y1, x1)")
        if is_pred:
            scores = _tensor(d, "scores", where)
            if scores.shape != (n,) or not scores.is_floating_point():
                raise ValueError(f"{where}['scores'] must be ({n},) floats, got shape {tuple(scores.shape)} "
                                 f"dtype {scores.dtype}")
            if not torch.isfinite(scores).all():
                raise ValueError(f"{where}['scores'] holds NaN or infinite values")
            out["scores"].append(scores.to(torch.float64))
        else:
            diff = _tensor(d, "difficult", where) if "difficult" in d else torch.zeros(n, dtype=torch.bool)
            if diff.shape != (n,) or diff.dtype != torch.bool:
                raise ValueError(f"{where}['difficult'] must be ({n},) bool, got shape {tuple(diff.shape)} dtype {diff.dtype}")
            out["difficult"].append(diff)
        out["boxes"].append(boxes)
        out["labels"].append(labels.to(torch.int64))
        out["image"].append(torch.full((n,), i, dtype=torch.int64))
    empty = {"boxes": torch.zeros(0, 4, dtype=torch.float64), "scores": torch.zeros(0, dtype=torch.float64),
             "labels": torch.zeros(0, dtype=torch.int64), "difficult": torch.zeros(0, dtype=torch.bool),
             "image": torch.zeros(0, dtype=torch.int64)}
    return {k: torch.cat(v) if v else empty[k] for k, v in out.items()}


def _iou(d: Tensor, g: Tensor, extra: float) -> Tensor:
    """``(n, 4)`` boxes against ``(n, G, 4)`` candidates: ``(n, G)``, in the devkit's order of operations."""
    d = d[:, None]
    ih = (torch.minimum(d[..., 2], g[..., 2]) - torch.maximum(d[..., 0], g[..., 0]) + extra).clamp(min=0)
    iw = (torch.minimum(d[..., 3], g[..., 3]) - torch.maximum(d[..., 1], g[..., 1]) + extra).clamp(min=0)
    inter = iw * ih
    area_d = (d[..., 3] - d[..., 1] + extra) * (d[..., 2] - d[..., 0] + extra)
    area_g = (g[..., 3] - g[..., 1] + extra) * (g[..., 2] - g[..., 0] + extra)
    return inter / (area_d + area_g - inter)


def average_precision(recall: Tensor, precision: Tensor, use_07_metric: bool = True) -> float:
    """AP of one class's curve (recall non-decreasing), as the devkit's ``voc_ap``.

    ``use_07_metric``: the mean over the 11 recall thresholds :data:`VOC07_RECALLS` of the
    highest precision at a recall at least that high (0 where the recall never gets there).
    Otherwise the area under the curve after making precision non-increasing (each point
    takes the highest precision at its recall or beyond), summed where the recall changes.
    """
    recall, precision = recall.to(torch.float64), precision.to(torch.float64)
    if use_07_metric:
        best_after = precision.flip(0).cummax(0).values.flip(0) if precision.numel() else precision
        first = torch.searchsorted(recall.contiguous(), VOC07_RECALLS)  # first point with recall >= t
        ap = 0.0
        for i in first.tolist():  # 11 thresholds, summed in the devkit's order
            ap += (float(best_after[i]) if i < recall.numel() else 0.0) / 11.0
        return ap
    one, zero = recall.new_ones(1), recall.new_zeros(1)
    mrec, mpre = torch.cat([zero, recall, one]), torch.cat([zero, precision, zero])
    mpre = mpre.flip(0).cummax(0).values.flip(0)
    i = torch.nonzero(mrec[1:] != mrec[:-1]).squeeze(1)
    return float(((mrec[i + 1] - mrec[i]) * mpre[i + 1]).sum())


def voc_ap(preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]], *, iou_threshold: float = 0.5,
           use_07_metric: bool = True, num_classes: int = 20, inclusive: bool = True) -> VOCResult:
    """Pascal VOC average precision per class and its mean (the module docstring has the rules).

    Args:
        preds: one dict per image: ``boxes (N, 4)`` ``(y0, x0, y1, x1)`` pixels, ``scores (N,)``,
            ``labels (N,)`` integer class ids in ``0..num_classes-1``.
        targets: one dict per image, in the same order: ``boxes (M, 4)``, ``labels (M,)`` and
            ``difficult (M,)`` bool (optional: missing means none is difficult).
        iou_threshold: a detection must overlap its box by strictly more than this.
        use_07_metric: VOC2007's 11-point AP (True) or VOC2010+'s area under the curve (False).
        num_classes: classes ``0..num_classes-1``; ``ap`` has one entry each.
        inclusive: True: boxes are inclusive pixel coordinates (VOC's XML) and widths and heights
            are ``x1 - x0 + 1`` as in the devkit; False: half-open boxes, as the project's
            ``Record.boxes`` and ``predict`` give them (``x1 - x0``, the same IoUs as the devkit
            on the XML's coordinates).

    Ties: detections with equal scores are taken in image order, then in their order within
    the image's dict (a stable sort), so the result never depends on the sort's luck.
    Tensors may be on any device (they are copied to the CPU, float64).
    """
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ValueError(f"voc_ap: num_classes must be a positive int, got {num_classes!r}")
    if not (isinstance(iou_threshold, (int, float)) and 0 <= iou_threshold < 1):
        raise ValueError(f"voc_ap: iou_threshold must be in [0, 1), got {iou_threshold!r}")
    P = _gather(preds, "preds", num_classes, is_pred=True)
    T = _gather(targets, "targets", num_classes, is_pred=False)
    if len(preds) != len(targets):
        raise ValueError(f"voc_ap: {len(preds)} images in preds but {len(targets)} in targets; give one dict per image in each")
    n_images, extra = len(targets), 1.0 if inclusive else 0.0
    ap = torch.full((num_classes,), math.nan, dtype=torch.float64)
    n_pos = torch.bincount(T["labels"][~T["difficult"]], minlength=num_classes)[:num_classes]
    n_diff = torch.bincount(T["labels"][T["difficult"]], minlength=num_classes)[:num_classes]
    precisions, recalls, point_scores = [], [], []
    for c in range(num_classes):
        dm, gm = P["labels"] == c, T["labels"] == c
        order = torch.sort(P["scores"][dm], descending=True, stable=True).indices
        d_img, d_box, d_score = P["image"][dm][order], P["boxes"][dm][order], P["scores"][dm][order]
        g_img, g_box, g_diff = T["image"][gm], T["boxes"][gm], T["difficult"][gm]  # in image order
        n = d_score.numel()
        tp, fp = torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
        if n and g_img.numel():
            counts = torch.bincount(g_img, minlength=n_images)
            starts = counts.cumsum(0) - counts
            slot = torch.arange(g_img.numel()) - starts[g_img]  # each box's place among its image's boxes
            G = int(counts.max())
            padded = torch.zeros(n_images, G, 4, dtype=torch.float64)
            valid = torch.zeros(n_images, G, dtype=torch.bool)
            padded[g_img, slot], valid[g_img, slot] = g_box, True
            has = torch.nonzero(counts[d_img] > 0).squeeze(1)  # detections in images with such a box
            iou = _iou(d_box[has], padded[d_img[has]], extra).masked_fill(~valid[d_img[has]], -math.inf)
            best, j = iou.max(1)  # the first of equal maxima, as np.argmax
            gt = starts[d_img[has]] + j  # index into this class's boxes
            hit = best > iou_threshold
            claim = hit & ~g_diff[gt]
            pos = has[claim]  # score-order positions of the detections claiming a non-difficult box
            first = torch.full((g_img.numel(),), n, dtype=torch.int64).scatter_reduce(0, gt[claim], pos, "amin")
            tp[pos] = first[gt[claim]] == pos
            fp[has[hit]] = False
            fp[pos] = ~tp[pos]
        keep = tp | fp  # the rest are detections on difficult boxes: neither
        tps = tp[keep].cumsum(0).to(torch.float64)
        fps = fp[keep].cumsum(0).to(torch.float64)
        npos = int(n_pos[c])
        rec = tps / npos if npos else torch.full_like(tps, math.nan)
        prec = tps / torch.clamp(tps + fps, min=_EPS)
        if npos:
            ap[c] = average_precision(rec, prec, use_07_metric)
        precisions.append(prec), recalls.append(rec), point_scores.append(d_score[keep])
    scored = n_pos > 0
    m = float(ap[scored].mean()) if scored.any() else math.nan
    return VOCResult(m, ap, tuple(precisions), tuple(recalls), tuple(point_scores), n_pos, n_diff,
                     float(iou_threshold), bool(use_07_metric))
