"""Average precision by the Pascal VOC devkit's rules (torch only).

:func:`voc_ap` scores detections the way the devkit's ``voc_eval.py`` (py-faster-rcnn's port
of ``VOCevaldet.m``) does, one class at a time:

1. all images' detections of the class, in descending score order (a stable sort: equal
   scores keep image order, then the order of the detections within the image);
2. each detection's IoU with the class's ground-truth boxes in its image, widths and heights
   counted the devkit's way for inclusive pixel coordinates (``xmax - xmin + 1``), and the
   best-overlapping box (the first of equals);
3. a detection is a true positive when that IoU is strictly above the hit IoU
   (:attr:`~ssd_lesson.core.options.EvalOptions.hit_iou`), that box is not difficult and no
   earlier detection claimed it; it counts as nothing when that box is difficult (and the IoU
   above the hit IoU); anything else is a false positive;
4. recall = true positives / the class's non-difficult boxes, precision = true positives /
   (true + false positives), as cumulative sums down the sorted list;
5. AP, by :attr:`~ssd_lesson.core.options.EvalOptions.ap_rule`: VOC2007's 11-point
   interpolation (``"voc07"``: the mean over recall thresholds 0, 0.1, ..., 1 of the highest
   precision at a recall at least that high), or from VOC2010 on the area under the curve
   whose precision is made non-increasing (``"all_point"``).

Steps 2 and 3 are vectorised over all classes at once (detections sorted by class, then
score; boxes grouped by image and class): "not claimed by an earlier detection" is "the
first, in score order, of the detections whose best box is that non-difficult box with IoU
above the hit IoU", a scatter of minimum positions; the cumulative sums are one pass too.
Only the AP of each class's curve is a loop over classes; none is over detections.

Boxes are ``(y0, x0, y1, x1)`` in pixels. VOC's XML gives inclusive pixels (``xmin=1 ..
xmax=W`` is the whole width): pass those with ``inclusive=True`` (the devkit's ``+1``). The
project's boxes (``Record.boxes``, :func:`ssd_lesson.model.infer.predict`) are half-open, ``y0 =
ymin - 1, y1 = ymax``, already ``y1 - y0`` pixels tall: pass those with ``inclusive=False``,
which gives the devkit's IoUs on the XML's coordinates.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from ..core.options import EvalOptions

__all__ = ["VOCResult", "voc_ap", "average_precision", "eval_options", "VOC07_RECALLS"]

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
    options: the :class:`~ssd_lesson.core.options.EvalOptions` it was scored with.
    """

    map: float
    ap: Tensor
    precision: tuple[Tensor, ...]
    recall: tuple[Tensor, ...]
    scores: tuple[Tensor, ...]
    n_positives: Tensor
    n_difficult: Tensor
    options: EvalOptions


def _tensor(d: Mapping, key: str, where: str) -> Tensor:
    v = d[key]
    if isinstance(v, Tensor):
        return v.detach() if v.device.type == "cpu" else v.detach().cpu()
    try:
        return torch.as_tensor(v)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{where}[{key!r}] must be a tensor or array, got {type(v).__name__} ({e})") from None


def gather_checked(items: Any, name: str, num_classes: int, is_pred: bool) -> dict[str, Tensor]:
    """Validate one side's per-image dicts and concatenate them, with each row's image index.

    Shapes and dtypes are checked per image; values (finite, class range, y0 <= y1) once on the
    concatenation, and an error then names the image it came from.
    """
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes, Mapping)):
        raise TypeError(f"voc_ap: {name} must be a list with one dict per image, got {type(items).__name__}")
    keys = ("boxes", "scores", "labels") if is_pred else ("boxes", "labels")
    out: dict[str, list[Tensor]] = {k: [] for k in ("boxes", "scores", "labels", "difficult")}
    counts = []
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
        if boxes.is_complex() or boxes.dtype == torch.bool:
            raise TypeError(f"{where}['boxes'] must be real numbers, got dtype {boxes.dtype}")
        if is_pred:
            scores = _tensor(d, "scores", where)
            if scores.shape != (n,) or not scores.is_floating_point():
                raise ValueError(f"{where}['scores'] must be ({n},) floats, got shape {tuple(scores.shape)} "
                                 f"dtype {scores.dtype}")
            out["scores"].append(scores)
        else:
            diff = _tensor(d, "difficult", where) if "difficult" in d else torch.zeros(n, dtype=torch.bool)
            if diff.shape != (n,) or diff.dtype != torch.bool:
                raise ValueError(f"{where}['difficult'] must be ({n},) bool, got shape {tuple(diff.shape)} dtype {diff.dtype}")
            out["difficult"].append(diff)
        out["boxes"].append(boxes)
        out["labels"].append(labels)
        counts.append(n)
    f64, i64 = torch.float64, torch.int64
    # one concatenation each (cat promotes mixed dtypes), then one conversion
    g = {"boxes": torch.cat(out["boxes"]).to(f64) if counts else torch.zeros(0, 4, dtype=f64),
         "labels": torch.cat(out["labels"]).to(i64) if counts else torch.zeros(0, dtype=i64),
         "scores": torch.cat(out["scores"]).to(f64) if out["scores"] else torch.zeros(0, dtype=f64),
         "difficult": torch.cat(out["difficult"]) if out["difficult"] else torch.zeros(0, dtype=torch.bool)}
    n_rows = torch.tensor(counts, dtype=i64)
    g["image"] = torch.repeat_interleave(torch.arange(len(counts)), n_rows)
    starts = n_rows.cumsum(0) - n_rows

    def fail(bad: Tensor, what: str):
        if bad.any():
            k = int(torch.nonzero(bad)[0])
            i = int(g["image"][k])
            raise ValueError(f"voc_ap: {name}[{i}]{what.format(k=k - int(starts[i]), row=k)}")

    labels, boxes = g["labels"], g["boxes"]
    fail((labels < 0) | (labels >= num_classes),
         f"['labels'] must be in 0..{num_classes - 1} (num_classes={num_classes}); its label {{k}} is out of range")
    fail(~torch.isfinite(boxes).all(1), "['boxes'] holds NaN or infinite values (row {k})")
    if is_pred:
        fail(~torch.isfinite(g["scores"]), "['scores'] holds NaN or infinite values (row {k})")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        k = int(torch.nonzero(bad)[0])
        fail(bad, f"['boxes'][{{k}}] = {boxes[k].tolist()} has y1 < y0 or x1 < x0; boxes are (y0, x0, y1, x1)")
    return g


def _iou(d: Tensor, g: Tensor, extra: float) -> Tensor:
    """``(n, 4)`` boxes against ``(n, G, 4)`` candidates: ``(n, G)``, in the devkit's order of operations."""
    d = d[:, None]
    ih = (torch.minimum(d[..., 2], g[..., 2]) - torch.maximum(d[..., 0], g[..., 0]) + extra).clamp(min=0)
    iw = (torch.minimum(d[..., 3], g[..., 3]) - torch.maximum(d[..., 1], g[..., 1]) + extra).clamp(min=0)
    inter = iw * ih
    area_d = (d[..., 3] - d[..., 1] + extra) * (d[..., 2] - d[..., 0] + extra)
    area_g = (g[..., 3] - g[..., 1] + extra) * (g[..., 2] - g[..., 0] + extra)
    return inter / (area_d + area_g - inter)


def eval_options(options: Optional[EvalOptions], caller: str, *, hit_iou: Optional[float] = None,
                 use_07_metric: Optional[bool] = None) -> EvalOptions:
    """The :class:`~ssd_lesson.core.options.EvalOptions` ``caller`` runs with: ``options``, or the loose
    keywords given over the defaults (``use_07_metric``, the devkit's flag, sets ``ap_rule``); both at
    once is a ``TypeError`` naming both (:meth:`~ssd_lesson.core.options.EvalOptions.resolve`)."""
    return EvalOptions.resolve(options, caller, hit_iou=hit_iou, ap_rule=EvalOptions.rule_of(use_07_metric))


def average_precision(recall: Tensor, precision: Tensor, use_07_metric: Optional[bool] = None, *,
                      options: Optional[EvalOptions] = None) -> float:
    """AP of one class's curve (recall non-decreasing), as the devkit's ``voc_ap``.

    The rule is ``options.ap_rule`` (default ``EvalOptions().ap_rule``), or ``use_07_metric``, the
    devkit's flag (not both). ``"voc07"``: the mean over the 11 recall thresholds
    :data:`VOC07_RECALLS` of the highest precision at a recall at least that high (0 where the
    recall never gets there). ``"all_point"``: the area under the curve after making precision
    non-increasing (each point takes the highest precision at its recall or beyond), summed
    where the recall changes.
    """
    use_07_metric = eval_options(options, "average_precision", use_07_metric=use_07_metric).use_07_metric
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


def voc_ap(preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
           options: Optional[EvalOptions] = None, *, hit_iou: Optional[float] = None,
           use_07_metric: Optional[bool] = None, num_classes: int = 20, inclusive: bool = True) -> VOCResult:
    """Pascal VOC average precision per class and its mean (the module docstring has the rules).

    Args:
        preds: one dict per image: ``boxes (N, 4)`` ``(y0, x0, y1, x1)`` pixels, ``scores (N,)``,
            ``labels (N,)`` integer class ids in ``0..num_classes-1``.
        targets: one dict per image, in the same order: ``boxes (M, 4)``, ``labels (M,)`` and
            ``difficult (M,)`` bool (optional: missing means none is difficult).
        options: the hit IoU (a detection must overlap its box by strictly more than it) and the AP
            rule (VOC2007's 11-point AP or VOC2010+'s area under the curve); default ``EvalOptions()``.
        hit_iou, use_07_metric: the same as loose keywords (``use_07_metric=False`` is
            ``ap_rule="all_point"``), over the defaults; given with ``options``, a ``TypeError``.
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
    options = eval_options(options, "voc_ap", hit_iou=hit_iou, use_07_metric=use_07_metric)
    P = gather_checked(preds, "preds", num_classes, is_pred=True)
    T = gather_checked(targets, "targets", num_classes, is_pred=False)
    if len(preds) != len(targets):
        raise ValueError(f"voc_ap: {len(preds)} images in preds but {len(targets)} in targets; give one dict per image in each")
    n_images, extra, C = len(targets), 1.0 if inclusive else 0.0, num_classes
    ap = torch.full((C,), math.nan, dtype=torch.float64)
    n_pos = torch.bincount(T["labels"][~T["difficult"]], minlength=C)[:C]
    n_diff = torch.bincount(T["labels"][T["difficult"]], minlength=C)[:C]

    # Detections in one order for all classes: by class, then score descending, equal scores in
    # image order then detection order (two stable sorts). Each class is a contiguous run.
    by_score = torch.sort(P["scores"], descending=True, stable=True).indices
    order = by_score[torch.sort(P["labels"][by_score], stable=True).indices]
    d_lab, d_img, d_box, d_score = P["labels"][order], P["image"][order], P["boxes"][order], P["scores"][order]
    N = d_lab.numel()
    # Ground truth grouped by (image, class), in annotation order within a group, padded to G per group.
    g_key = T["image"] * C + T["labels"]
    g_order = torch.sort(g_key, stable=True).indices
    g_key, g_box, g_diff = g_key[g_order], T["boxes"][g_order], T["difficult"][g_order]
    counts = torch.bincount(g_key, minlength=n_images * C)
    starts = counts.cumsum(0) - counts
    tp, fp = torch.zeros(N, dtype=torch.bool), torch.ones(N, dtype=torch.bool)
    if N and g_key.numel():
        G = int(counts.max())
        slot = torch.arange(g_key.numel()) - starts[g_key]
        padded = torch.zeros(n_images * C, G, 4, dtype=torch.float64)
        valid = torch.zeros(n_images * C, G, dtype=torch.bool)
        padded[g_key, slot], valid[g_key, slot] = g_box, True
        d_key = d_img * C + d_lab
        has = torch.nonzero(counts[d_key] > 0).squeeze(1)  # detections with boxes of their class in their image
        best = torch.empty(has.numel(), dtype=torch.float64)
        j = torch.empty(has.numel(), dtype=torch.int64)
        step = max(1, 2**20 // G)  # rows per chunk: bounded memory whatever G
        for k in range(0, has.numel(), step):
            h = has[k:k + step]
            iou = _iou(d_box[h], padded[d_key[h]], extra).masked_fill(~valid[d_key[h]], -math.inf)
            best[k:k + step], j[k:k + step] = iou.max(1)  # the first of equal maxima, as np.argmax
        gt = starts[d_key[has]] + j  # each detection's best box, an index into the grouped boxes
        hit = best > options.hit_iou
        claim = hit & ~g_diff[gt]
        pos = has[claim]  # positions, in the order above, of detections whose best box is free to claim
        # the first claim of each box wins: the smallest position, which is the best score (same class)
        first = torch.full((g_key.numel(),), N, dtype=torch.int64).scatter_reduce(0, gt[claim], pos, "amin")
        tp[pos] = first[gt[claim]] == pos
        fp[has[hit]] = False  # a hit on a difficult box is neither
        fp[pos] = ~tp[pos]
    keep = tp | fp
    k_lab, k_score = d_lab[keep], d_score[keep]
    ends = torch.bincount(k_lab, minlength=C)[:C].cumsum(0)
    # per-class cumulative sums from one global one: subtract what the classes before contributed
    tps, fps = tp[keep].cumsum(0), fp[keep].cumsum(0)
    lo = torch.cat([ends.new_zeros(1), ends[:-1]])  # where each class's run starts
    before = lambda t: torch.cat([t.new_zeros(1), t])[lo]  # noqa: E731  (the sum up to that start)
    tps, fps = (tps - before(tps)[k_lab]).double(), (fps - before(fps)[k_lab]).double()
    npos = n_pos.double()[k_lab]
    rec = torch.where(npos > 0, tps / npos.clamp(min=1), torch.full_like(tps, math.nan))
    prec = tps / torch.clamp(tps + fps, min=_EPS)
    precisions, recalls, point_scores = [], [], []
    for c, (a, b) in enumerate(zip(lo.tolist(), ends.tolist())):
        precisions.append(prec[a:b]), recalls.append(rec[a:b]), point_scores.append(k_score[a:b])
        if int(n_pos[c]):
            ap[c] = average_precision(rec[a:b], prec[a:b], options=options)
    scored = n_pos > 0
    m = float(ap[scored].mean()) if scored.any() else math.nan
    return VOCResult(m, ap, tuple(precisions), tuple(recalls), tuple(point_scores), n_pos, n_diff, options)
