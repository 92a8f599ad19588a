"""The focal-loss and detection widgets under the module name notebooks 06 and 10 import them by.

They live in :mod:`ssd_lesson.course.widgets` (``focal``, ``detection``).
"""
from .widgets.detection import DetectionWidget
from .widgets.focal import FocalWidget

__all__ = ["FocalWidget", "DetectionWidget"]
