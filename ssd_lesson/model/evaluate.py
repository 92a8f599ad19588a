"""A checkpoint's AP per class, Pascal VOC's way and COCO's (the library of ``python -m ssd_lesson evaluate``).

:func:`evaluate_detections` runs a model on the images of a list of ``Record`` s (read at
their own size, as the annotations are) and returns the detections and the ground truth,
``difficult`` flags included, as per-image dicts; :func:`ssd_lesson.model.metrics.per_class_table`
turns them into the table the command prints: per class the boxes, VOC2007's 11-point AP,
VOC2010's all-point AP (both by the devkit's rules, :func:`ssd_lesson.model.metrics.voc_ap`) and
torchmetrics' COCO-style AP, with ``difficult`` as ``iscrowd``, all at the hit IoU of an
:class:`~ssd_lesson.core.options.EvalOptions`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch

from ..core.anchors import make_anchors
from ..core.options import DecodeOptions, EvalOptions

__all__ = ["Evaluation", "record_targets", "evaluate_detections"]


class Evaluation(NamedTuple):
    """Detections and ground truth of the same images, one dict per image, boxes ``(y0, x0, y1, x1)``
    in pixels of the original image, half-open as ``Record.boxes`` (pass ``inclusive=False`` to
    :func:`~ssd_lesson.model.metrics.voc_ap`, which :meth:`voc` and :meth:`table` do)."""

    preds: list[dict]
    targets: list[dict]
    class_names: tuple[str, ...]

    def voc(self, options: Optional[EvalOptions] = None, *, hit_iou: Optional[float] = None,
            use_07_metric: Optional[bool] = None):
        """:func:`~ssd_lesson.model.metrics.voc_ap` of these detections (a ``VOCResult``): ``options``
        (default ``EvalOptions()``, VOC2007's 11-point AP) or the loose keywords, not both."""
        from .metrics import voc_ap

        return voc_ap(self.preds, self.targets, options, hit_iou=hit_iou, use_07_metric=use_07_metric,
                      num_classes=len(self.class_names), inclusive=False)

    def table(self, options: Optional[EvalOptions] = None, *, hit_iou: Optional[float] = None):
        """:func:`~ssd_lesson.model.metrics.per_class_table` of these detections (a ``pandas.DataFrame``)
        at ``options.hit_iou`` (or the loose ``hit_iou``, not both)."""
        from .metrics import per_class_table

        return per_class_table(self.preds, self.targets, self.class_names, options, hit_iou=hit_iou)


def record_targets(records: Sequence) -> list[dict]:
    """Ground truth of ``records`` as :func:`~ssd_lesson.model.metrics.voc_ap` wants it (``difficult`` kept)."""
    return [dict(boxes=torch.as_tensor(r.boxes, dtype=torch.float64).reshape(-1, 4),
                 labels=torch.as_tensor(r.labels, dtype=torch.int64),
                 difficult=torch.as_tensor(r.difficult, dtype=torch.bool)) for r in records]


@torch.no_grad()
def evaluate_detections(model, records: Sequence, options: Optional[DecodeOptions] = None, *, batch_size: int = 16,
                        progress: bool = True) -> Evaluation:
    """Run ``model`` on every record's image and gather its detections and the ground truth.

    ``options``: how to decode (default: those the model's checkpoint measured its mAP with,
    :func:`~ssd_lesson.model.infer.model_decode_options`: ``model.record.decode_options``, else
    ``DecodeOptions()``; a low score threshold, as AP
    rewards low-scored hits ranked below the rest). Images are read with :func:`ssd_lesson.data.transforms.load_image`, ``batch_size`` at a time, and
    resized for the model by :func:`ssd_lesson.model.infer.predict`, which gives the boxes back in
    pixels of each image. ``progress``: a fastprogress bar over the images.
    """
    from fastprogress.fastprogress import progress_bar

    from ..data.transforms import load_image
    from .infer import model_decode_options, predict

    if len(records) == 0:
        raise ValueError("evaluate_detections: no records to evaluate")
    if options is None:
        options = model_decode_options(model)
    elif not isinstance(options, DecodeOptions):
        raise TypeError(f"evaluate_detections: options must be a DecodeOptions, got {type(options).__name__}")
    anchors = make_anchors(model.spec).to(next(model.parameters()).device)  # once, not per batch
    preds, batch = [], []
    # no bar at all when not asked: fastprogress's console bar prints a character even with display=False
    for i in progress_bar(range(len(records)), leave=False) if progress else range(len(records)):
        batch.append(load_image(records[i].image_path))
        if len(batch) == batch_size or i == len(records) - 1:
            for d in predict(model, batch, anchors, options=options):
                preds.append(dict(boxes=d.boxes.double().cpu(), scores=d.scores.cpu(), labels=d.labels.cpu()))
            batch = []
    return Evaluation(preds, record_targets(records), tuple(model.class_names))
