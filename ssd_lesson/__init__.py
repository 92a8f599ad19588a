"""ssd-lesson: a Single-Shot Detector from output activations to the loss, one step at a time.

The core (boxes, anchors, matching, loss) needs only torch and is re-exported here.
Data, model, training, plots and widgets live in their own modules
(``ssd_lesson.data.images``, ``ssd_lesson.model.net``, ...), which import fastai or matplotlib;
``ssd_lesson.course.lesson`` is the starting kit the notebooks open with.
"""
from .core.anchors import AnchorInfo, Anchors, AnchorSpec, activations_to_boxes, make_anchors
from .core.boxes import box_area, box_iou, centers_to_corners, corners_to_centers
from .core.loss import SSDLossResult, classification_loss, loss_gradients, regression_loss, ssd_loss, validate_inputs
from .core.options import DecodeOptions, LossOptions
from .core.matching import FORCED_OVERLAP, IOU_THRESHOLD, PAD_LABEL, Match, match_boxes, match_one_image

__version__ = "0.1.0"

__all__ = [
    "AnchorInfo", "Anchors", "AnchorSpec", "activations_to_boxes", "make_anchors",
    "box_area", "box_iou", "centers_to_corners", "corners_to_centers",
    "DecodeOptions", "LossOptions", "SSDLossResult", "classification_loss", "loss_gradients", "regression_loss", "ssd_loss",
    "validate_inputs", "FORCED_OVERLAP", "IOU_THRESHOLD", "PAD_LABEL", "Match", "match_boxes", "match_one_image",
]
