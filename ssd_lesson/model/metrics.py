"""How good detections are: mean average precision, COCO's way and Pascal VOC's.

* COCO-style (``torchmetrics``' ``MeanAveragePrecision``, pycocotools backend):
  :func:`detection_map` and the fastai metrics of :func:`map_metrics` (``mAP50``: AP at IoU
  0.5 interpolated at COCO's 101 recall points; ``mAP_coco``: averaged over IoU 0.5:0.95).
* Pascal VOC's protocol (:mod:`ssd_lesson.model.voc_eval`, re-exported here): :func:`voc_ap`,
  the devkit's rules with VOC2007's 11-point or VOC2010's all-point AP, and ``difficult``
  objects that count neither way; ``map_metrics(..., voc07=True)`` adds a ``mAP_voc07``
  column to training.
* :func:`detection_hits`: which of one image's detections are hits by Pascal VOC's rule (notebook 10's figure).
* :func:`per_class_table`: both protocols per class, as ``python -m ssd_lesson evaluate``
  prints them; there ``difficult`` objects go to torchmetrics as ``iscrowd``, which COCO
  ignores too (with COCO's rules: a crowd box may absorb several detections, and is only
  matched when no other box of the class is).

Boxes are the project's ``(y0, x0, y1, x1)``; torchmetrics gets ``(x0, y0, x1, y1)``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor

from ..core.anchors import Anchors
from ..core.matching import PAD_LABEL
from ..core.boxes import YX_TO_XY, box_iou
from ..core.options import DecodeOptions, EvalOptions
from .infer import Detections, decode
from .voc_eval import VOC07_RECALLS, VOCResult, average_precision, eval_options, voc_ap

__all__ = ["detection_map", "MeanAP", "map_metrics", "voc_ap", "VOCResult", "average_precision", "VOC07_RECALLS",
           "coco_ap_per_class", "per_class_table", "detection_hits"]


def _tm_pred(d: Detections) -> dict:
    return dict(boxes=d.boxes[:, YX_TO_XY].float().cpu(), labels=d.labels.cpu(), scores=d.scores.float().cpu())


def _tm_targets(gt_boxes: Tensor, gt_labels: Tensor) -> list[dict]:
    """Padded ``(B, G, 4)`` / ``(B, G)`` ground truth (label -1 = padding) to torchmetrics' per-image dicts."""
    return [dict(boxes=b[lab != PAD_LABEL][:, YX_TO_XY].float().cpu(), labels=lab[lab != PAD_LABEL].cpu())
            for b, lab in zip(gt_boxes, gt_labels)]


def _new_map_metric(sync: bool = True, **kwargs):
    from torchmetrics.detection import MeanAveragePrecision

    # sync: under distributed training, compute() gathers every process's detections
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools", sync_on_compute=sync, **kwargs)


def detection_map(detections: Sequence[Detections], gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor]) -> dict[str, float]:
    """Mean average precision of detections against ground truth (same units, e.g. fractions).

    Args:
        detections: one :class:`Detections` per image.
        gt_boxes: per image ``(G, 4)`` ``(y0, x0, y1, x1)``; gt_labels: per image ``(G,)`` (-1 rows ignored).

    Returns:
        ``{"map_50": ..., "map": ...}``: AP at IoU 0.5 (VOC's criterion; interpolated at COCO's
        101 recall points) and COCO's AP averaged over IoU 0.5:0.95, both averaged over the
        classes present in the ground truth or the detections. Both are NaN when no image has ground
        truth: precision over no objects is undefined (torchmetrics says -1, which reads as a score).
    """
    if len(detections) == 0:
        raise ValueError("detection_map: no images to evaluate; is the valid split empty?")
    if not len(detections) == len(gt_boxes) == len(gt_labels):
        raise ValueError(f"detection_map: {len(detections)} detections for {len(gt_boxes)} ground-truth images")
    metric = _new_map_metric(sync=False)
    targets = [_tm_targets(b[None], lab[None])[0] for b, lab in zip(gt_boxes, gt_labels)]
    metric.update([_tm_pred(d) for d in detections], targets)
    if not any(bool((lab >= 0).any()) for lab in gt_labels):
        return {"map_50": float("nan"), "map": float("nan")}
    r = metric.compute()
    return {"map_50": float(r["map_50"]), "map": float(r["map"])}


class MAPState:
    """The detections and ground truth of an epoch's validation, shared by the mAP@0.5, COCO-mAP (one
    torchmetrics computation) and, with ``voc07=True``, VOC07 columns (:func:`voc_ap` with the default
    hit IoU and VOC2007's rule, whatever the default rule becomes: the column is named so).

    ``sync``: in a distributed run, every process's images are gathered (``all_gather_object``, in rank
    order: the valid split's order, as ``DistributedDL`` gives each process a contiguous share) before
    computing, so each process's share may have its own number of images (torchmetrics' own gathering
    needs equal numbers, which the repeated items that pad the shares would give, counted twice).
    """

    eval_options = EvalOptions().replace(ap_rule="voc07")

    def __init__(self, anchors: Anchors, sync: bool = True, voc07: bool = False, options: DecodeOptions = DecodeOptions()):
        self.anchors, self.options, self.sync, self.voc07 = anchors, options, sync, voc07
        self.num_classes = 20  # set from the class logits (C+1 columns, background last) by update
        self.reset()

    def reset(self) -> None:
        self.n, self.result = 0, None
        self.tm_preds, self.tm_targets, self.voc_preds, self.voc_targets = [], [], [], []

    def update(self, preds: tuple[Tensor, Tensor], gt_boxes: Tensor, gt_labels: Tensor,
               image_size: tuple[int, int] = (224, 224)) -> None:
        dets = decode(*(p.detach().float() for p in preds), self.anchors, options=self.options)  # bf16 under --amp
        self.num_classes = preds[0].shape[-1] - 1
        self.tm_preds += [_tm_pred(d) for d in dets]
        self.tm_targets += _tm_targets(gt_boxes, gt_labels)
        if self.voc07:  # fractions -> pixels of the model's input (batches know no other size)
            scale = torch.tensor([image_size[0], image_size[1]] * 2, dtype=torch.float64)
            for d, b, lab in zip(dets, gt_boxes, gt_labels):
                self.voc_preds.append(dict(boxes=d.boxes.cpu().double() * scale, scores=d.scores.cpu(), labels=d.labels.cpu()))
                real = lab != PAD_LABEL
                self.voc_targets.append(dict(boxes=b[real].cpu().double() * scale, labels=lab[real].cpu()))
        self.n, self.result = self.n + len(dets), None

    def _synced(self) -> bool:
        """Whether every process's images are gathered (a collective every process joins, images or not)."""
        dist = torch.distributed
        return self.sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def _all(self) -> tuple[list, ...]:
        """``(tm_preds, tm_targets, voc_preds, voc_targets)`` of every process."""
        mine = (self.tm_preds, self.tm_targets, self.voc_preds, self.voc_targets)
        if not self._synced():
            return mine
        parts: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, mine)
        return tuple([x for part in parts for x in part[i]] for i in range(len(mine)))

    def value(self, key: str) -> Optional[float]:
        if self.result is None:
            tm_preds, tm_targets, voc_preds, voc_targets = self._all()
            if not tm_preds:
                return None  # nothing was validated: no number rather than a division by zero
            metric = _new_map_metric(sync=False)
            metric.update(tm_preds, tm_targets)
            self.result = {k: float(v) for k, v in metric.compute().items() if k in ("map_50", "map")}
            if self.voc07:
                self.result["voc07"] = voc_ap(voc_preds, voc_targets, self.eval_options, num_classes=self.num_classes,
                                              inclusive=False).map
        return self.result[key]


try:
    from fastai.learner import Metric as _FastaiMetric
except ImportError:  # fastai is a dependency, but keep this module importable without it
    _FastaiMetric = object


class MeanAP(_FastaiMetric):
    """A fastai metric: mAP of the validation set's detections.

    ``key``: ``"map_50"`` (COCO-style AP at IoU 0.5, column ``mAP50``), ``"map"`` (COCO's
    0.5:0.95, ``mAP_coco``) or ``"voc07"`` (Pascal VOC2007's 11-point mAP by :func:`voc_ap`,
    ``mAP_voc07``). Build them with :func:`map_metrics` so the columns share one computation.

    The VOC07 column is computed from the batches, which carry no ``difficult`` flags: every
    object counts as non-difficult, so it reads lower than the VOC protocol's number on the
    same images (``python -m ssd_lesson evaluate`` gives that one). Its boxes are in pixels
    of the model's input (the batches know no other size), for the devkit's IoU.
    """

    def __init__(self, state: MAPState, key: str = "map_50", owner: bool = True):
        self.state, self.key, self.owner = state, key, owner

    def reset(self) -> None:
        if self.owner:
            self.state.reset()

    def accumulate(self, learn) -> None:
        if self.owner:
            from .distributed import real_items  # fastai's; this module imports without it

            size = tuple(learn.xb[0].shape[-2:]) if self.state.voc07 else (224, 224)
            n = real_items(getattr(learn, "dl", None), len(learn.yb[0]))  # a distributed run's repeated items count once
            if n:
                self.state.update(tuple(p[:n] for p in learn.pred), *(y[:n] for y in learn.yb), image_size=size)

    @property
    def value(self) -> Optional[float]:
        return self.state.value(self.key)

    @property
    def name(self) -> str:
        return {"map_50": "mAP50", "map": "mAP_coco", "voc07": "mAP_voc07"}[self.key]


def map_metrics(anchors: Anchors, options: DecodeOptions = DecodeOptions(), voc07: bool = False) -> list[MeanAP]:
    """``[mAP50, mAP_coco]`` fastai metrics of the detections decoded with ``options``, and ``mAP_voc07``
    after them with ``voc07=True`` (see :class:`MeanAP` for what it does without ``difficult`` flags)."""
    state = MAPState(anchors, voc07=voc07, options=options)
    return [MeanAP(state, "map_50", owner=True), MeanAP(state, "map", owner=False)] + (
        [MeanAP(state, "voc07", owner=False)] if voc07 else [])


# ---------------------------------------------------------------- both protocols, per class
def _tm_inputs(preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> tuple[list, list]:
    """The project's per-image dicts to torchmetrics' (``xyxy``; ``difficult`` -> ``iscrowd``)."""
    def xyxy(b: Any) -> Tensor:
        return torch.as_tensor(b).detach().float().cpu().reshape(-1, 4)[:, YX_TO_XY]

    tm_preds = [dict(boxes=xyxy(p["boxes"]), scores=torch.as_tensor(p["scores"]).detach().float().cpu(),
                     labels=torch.as_tensor(p["labels"]).detach().long().cpu()) for p in preds]
    tm_targets = []
    for t in targets:
        labels = torch.as_tensor(t["labels"]).detach().long().cpu()
        crowd = torch.as_tensor(t["difficult"]).detach().cpu() if "difficult" in t else torch.zeros(len(labels))
        tm_targets.append(dict(boxes=xyxy(t["boxes"]), labels=labels, iscrowd=crowd.long()))
    return tm_preds, tm_targets


def coco_ap_per_class(preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
                      options: Optional[EvalOptions] = None, *, hit_iou: Optional[float] = None,
                      num_classes: int = 20) -> tuple[Tensor, float]:
    """COCO-style AP at one IoU, ``options.hit_iou``, per class (torchmetrics, pycocotools backend) and its mean.

    Same inputs as :func:`voc_ap` (project boxes, half-open; ``options`` or the loose ``hit_iou``,
    not both; ``options.ap_rule`` is VOC's and plays no part); ``difficult`` boxes are passed as
    ``iscrowd``, so COCO ignores detections on them too. COCO counts IoU ``>=`` the hit IoU
    without the devkit's ``+1``, interpolates at 101 recall points and keeps up to
    the most detections any image has (at least 100). Returns ``(ap (C,) float64, NaN for a
    class without a non-crowd box, mean over the others)``; no images at all: all NaN.
    """
    from .voc_eval import gather_checked

    options = eval_options(options, "coco_ap_per_class", hit_iou=hit_iou)
    gather_checked(preds, "preds", num_classes, True), gather_checked(targets, "targets", num_classes, False)  # validation
    if len(preds) != len(targets):
        raise ValueError(f"coco_ap_per_class: {len(preds)} images in preds but {len(targets)} in targets")
    ap = torch.full((num_classes,), math.nan, dtype=torch.float64)
    if len(preds) == 0:  # no images: no class has a box to find (torchmetrics would answer without the keys)
        return ap, math.nan
    most = max([100] + [len(p["labels"]) for p in preds])
    metric = _new_map_metric(sync=False, iou_thresholds=[float(options.hit_iou)], class_metrics=True,
                             max_detection_thresholds=[1, 10, most])
    metric.update(*_tm_inputs(preds, targets))
    r = metric.compute()
    per, classes = r["map_per_class"].reshape(-1).double(), r["classes"].reshape(-1).long()
    if per.numel() == classes.numel():  # torchmetrics gives one -1 when there is nothing at all
        ap[classes] = per
    ap[ap < 0] = math.nan  # COCO's -1: no box to find
    return ap, float(r["map"]) if float(r["map"]) >= 0 else math.nan


def per_class_table(preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
                    class_names: Sequence[str], options: Optional[EvalOptions] = None, *,
                    hit_iou: Optional[float] = None, inclusive: bool = False):
    """A ``pandas.DataFrame``, one row per class and a last ``mean`` row.

    Columns: ``class``; ``gt_boxes`` (non-difficult boxes: recall's denominator) and
    ``difficult``; ``ap_voc07`` (VOC2007's 11-point AP) and ``ap_all_point`` (VOC2010+'s area),
    both by :func:`voc_ap`; ``ap_coco50`` (COCO-style AP at the same IoU, torchmetrics, by
    :func:`coco_ap_per_class`). The hit IoU is ``options.hit_iou`` (or the loose ``hit_iou``, not
    both); the table shows every AP rule, so ``options.ap_rule`` plays no part. NaN where a class
    has no non-difficult box; the mean row averages the other classes (and sums the box counts). Inputs as :func:`voc_ap`; boxes are
    the project's half-open ones by default (``inclusive=False``), as
    :func:`ssd_lesson.model.evaluate.evaluate_detections` gives them.
    """
    import pandas as pd

    options = eval_options(options, "per_class_table", hit_iou=hit_iou)
    C = len(class_names)
    kw = dict(num_classes=C, inclusive=inclusive)
    v07 = voc_ap(preds, targets, options.replace(ap_rule="voc07"), **kw)
    vall = voc_ap(preds, targets, options.replace(ap_rule="all_point"), **kw)
    coco, coco_mean = coco_ap_per_class(preds, targets, options, num_classes=C)
    table = pd.DataFrame({"class": list(class_names), "gt_boxes": v07.n_positives.tolist(),
                          "difficult": v07.n_difficult.tolist(), "ap_voc07": v07.ap.tolist(),
                          "ap_all_point": vall.ap.tolist(), "ap_coco50": coco.tolist()})
    mean = {"class": "mean", "gt_boxes": int(v07.n_positives.sum()), "difficult": int(v07.n_difficult.sum()),
            "ap_voc07": v07.map, "ap_all_point": vall.map, "ap_coco50": coco_mean}
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)


def detection_hits(detections: Detections, gt_boxes: Tensor, gt_labels: Tensor,
                   hit_iou: float = EvalOptions.hit_iou) -> Tensor:
    """``(N,)`` bool: which of one image's detections are hits by Pascal VOC's rule (no difficult boxes here).

    Down the detections, best score first: a detection is a hit when the ground-truth box of its class that it
    overlaps most has IoU above ``hit_iou`` and no better-scored detection took that box; every other detection
    is a false alarm (a box on nothing, the wrong class, or a second box on an object already found).
    ``gt_boxes`` ``(G, 4)`` ``(y0, x0, y1, x1)`` in the detections' units; ``gt_labels`` ``(G,)``, padding rows
    (``PAD_LABEL``) left out. One image's few detections: a plain loop, in score order as the rule reads.
    """
    real = gt_labels != PAD_LABEL
    gt_boxes, gt_labels = gt_boxes[real], gt_labels[real]
    hit = torch.zeros(len(detections.scores), dtype=torch.bool)
    taken = torch.zeros(len(gt_labels), dtype=torch.bool)
    ious = box_iou(detections.boxes.double(), gt_boxes.double()) if len(gt_labels) else None
    for i in torch.argsort(detections.scores, descending=True, stable=True).tolist():
        same = gt_labels == detections.labels[i]
        if ious is None or not bool(same.any()):
            continue
        iou = torch.where(same, ious[i], torch.full_like(ious[i], -1.0))
        g = int(iou.argmax())  # its class's best-overlapping box, the first of equals
        if float(iou[g]) > hit_iou and not bool(taken[g]):
            hit[i] = taken[g] = True
    return hit
