"""The anchor and IoU widgets under the module name notebooks 02 and 04 import them by.

They live in :mod:`ssd_lesson.course.widgets` (``anchor``, ``iou``).
"""
from .widgets.anchor import GRID_CHOICES, RATIO_CHOICES, ZOOM_CHOICES, AnchorWidget
from .widgets.iou import IouWidget

__all__ = ["AnchorWidget", "IouWidget", "GRID_CHOICES", "ZOOM_CHOICES", "RATIO_CHOICES"]
