"""ssd-lesson: a Single-Shot Detector from output activations to the loss, one step at a time.

The core (boxes, anchors, matching, loss) needs only torch and is re-exported here, lazily
(PEP 562): ``import ssd_lesson`` costs nothing, and the first name used (``ssd_lesson.ssd_loss``)
imports torch and its module. So ``python -m ssd_lesson --help`` answers without torch.
Data, model, training, plots and widgets live in their own modules
(``ssd_lesson.data.images``, ``ssd_lesson.model.net``, ...), which import fastai or matplotlib;
``ssd_lesson.course.lesson`` is the starting kit the notebooks open with.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each re-exported name and the core module that defines it.
_CORE = {
    "core.anchors": ("AnchorInfo", "Anchors", "AnchorSpec", "activations_to_boxes", "make_anchors"),
    "core.boxes": ("box_area", "box_iou", "centers_to_corners", "corners_to_centers"),
    "core.loss": ("SSDLossResult", "classification_loss", "loss_gradients", "regression_loss", "ssd_loss",
                  "validate_inputs"),
    "core.options": ("DecodeOptions", "EvalOptions", "LossOptions"),
    "core.matching": ("FORCED_OVERLAP", "IOU_THRESHOLD", "PAD_LABEL", "Match", "match_boxes", "match_one_image"),
}
_HOME = {name: module for module, names in _CORE.items() for name in names}

__all__ = [name for names in _CORE.values() for name in names]


def __getattr__(name: str) -> Any:
    """``ssd_lesson.<core name>``: imports its core module on first use, then keeps the name here."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'ssd_lesson' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next look-up does not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and IDEs see: the names, eagerly
    from .core.anchors import AnchorInfo, Anchors, AnchorSpec, activations_to_boxes, make_anchors
    from .core.boxes import box_area, box_iou, centers_to_corners, corners_to_centers
    from .core.loss import SSDLossResult, classification_loss, loss_gradients, regression_loss, ssd_loss, validate_inputs
    from .core.matching import FORCED_OVERLAP, IOU_THRESHOLD, PAD_LABEL, Match, match_boxes, match_one_image
    from .core.options import DecodeOptions, EvalOptions, LossOptions
