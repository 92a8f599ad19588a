"""From the lesson's loss to the SSD paper's, one option at a time (notebook 12's table).

:data:`PAPER_STEPS` lists the paper's differences from the lesson's code in the order notebook 12 makes them,
each a change of :class:`~ssd_lesson.core.options.LossOptions`; after the last one the options are
``LossOptions.ssd_paper()``. :func:`paper_steps_table` runs :func:`~ssd_lesson.core.loss.ssd_loss` after each
change on the same activations and ground truth and gathers its numbers. Boxes are ``(y0, x0, y1, x1)``
fractions of the image.
"""
from __future__ import annotations

from typing import Any, Optional

import pandas as pd
from torch import Tensor

from ..core.anchors import Anchors
from ..core.loss import ssd_loss
from ..core.options import PAPER_IOU_THRESHOLD, PAPER_NEG_POS_RATIO, LossOptions

__all__ = ["PAPER_STEPS", "paper_steps_options", "paper_steps_table"]

#: The paper's differences from the lesson's code, one change of the loss options each, in notebook 12's order.
PAPER_STEPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("the lesson's code", {}),
    (f"IoU >= {PAPER_IOU_THRESHOLD:g}", dict(iou_threshold=PAPER_IOU_THRESHOLD, match_inclusive=True)),
    ("softmax with background", dict(classification="softmax")),
    (f"{PAPER_NEG_POS_RATIO:g} hard negatives per positive", dict(neg_pos_ratio=PAPER_NEG_POS_RATIO)),
    ("log-space offsets", dict(box_coding="log_offsets")),
    ("smooth L1", dict(box_loss="smooth_l1", smooth_l1_beta=1.0)),
    ("over the batch's positives", dict(normalization="batch_positives")),
)


def paper_steps_options(start: Optional[LossOptions] = None) -> list[tuple[str, LossOptions]]:
    """Each step's label and the options in force after it, from ``start`` (default ``LossOptions.lesson_code()``):
    every change of :data:`PAPER_STEPS` stays in force for the steps after it."""
    options = LossOptions.lesson_code() if start is None else start
    if not isinstance(options, LossOptions):
        raise TypeError(f"paper_steps_options: start must be a LossOptions, got {type(options).__name__}")
    steps = []
    for label, changes in PAPER_STEPS:
        options = options.replace(**changes)
        steps.append((label, options))
    return steps


def paper_steps_table(class_logits: Tensor, box_actns: Tensor, gt_boxes: Tensor, gt_labels: Tensor, anchors: Anchors,
                      start: Optional[LossOptions] = None) -> pd.DataFrame:
    """The loss after each step of :data:`PAPER_STEPS`, on the same inputs.

    Args: as :func:`~ssd_lesson.core.loss.ssd_loss` (``class_logits`` ``(B, A, C+1)``, ``box_actns`` ``(B, A, 4)``,
    ``gt_boxes`` ``(B, G, 4)``, ``gt_labels`` ``(B, G)``); ``start``: as :func:`paper_steps_options`.

    Returns:
        One row per step, indexed by its label: ``classification`` and ``regression`` (summed over the
        images), ``total``, ``positives`` (boxes matched to an object) and ``negatives counted`` (background
        boxes whose classification loss counts: all of them until mining keeps the hardest), over the batch.
    """
    rows = {}
    for label, options in paper_steps_options(start):
        r = ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, anchors, options=options)
        rows[label] = dict(classification=float(r.classification.sum()), regression=float(r.regression.sum()),
                           total=float(r.total), positives=int(r.match.positive.sum()),
                           **{"negatives counted": int(r.counted_negatives.sum())})
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "after"
    return table
