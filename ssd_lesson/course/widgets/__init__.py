"""The notebooks' widgets, one module each, on one base (:class:`~ssd_lesson.course.widgets.base.FigureWidget`).

Each owns one matplotlib figure, draws it once and on every change redraws only what moves;
``.set(...)`` moves the controls as a learner would, and the attributes hold what is on display.

=====================  =========================================================  ========
widget                 what it shows                                              notebook
=====================  =========================================================  ========
``AnchorWidget``       the anchor layout: grids, zooms, ratios                    02
``BoxWidget``          a box's four activations                                   03
``IouWidget``          the IoU of two boxes                                       04
``ThresholdWidget``    the IoU threshold: positives, count and losses             05
``FocalWidget``        focal loss's gamma and alpha                               06
``FollowBox``          one box from its anchor to its loss and gradient           08
``DetectionWidget``    the score threshold and NMS IoU: detections and mAP        10
``MiningWidget``       hard negative mining's neg_pos_ratio: the kept negatives   12
=====================  =========================================================  ========
"""
from .anchor import GRID_CHOICES, RATIO_CHOICES, ZOOM_CHOICES, AnchorWidget
from .base import FigureWidget
from .box import BoxWidget
from .detection import DetectionWidget
from .focal import FocalWidget
from .follow import FollowBox, follow_box, follow_box_figure, follow_box_text
from .iou import IouWidget
from .mining import MiningWidget
from .threshold import ThresholdWidget

__all__ = ["FigureWidget", "AnchorWidget", "BoxWidget", "IouWidget", "ThresholdWidget", "FocalWidget", "FollowBox",
           "DetectionWidget", "MiningWidget", "follow_box", "follow_box_figure", "follow_box_text",
           "GRID_CHOICES", "ZOOM_CHOICES", "RATIO_CHOICES"]
