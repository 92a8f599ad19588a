"""Following one box, under the module name notebook 08 imports it by.

It lives in :mod:`ssd_lesson.course.widgets.follow`.
"""
from .widgets.follow import FollowBox, Followed, follow_box, follow_box_figure, follow_box_text, nearest_outline

__all__ = ["Followed", "FollowBox", "follow_box", "follow_box_figure", "follow_box_text", "nearest_outline"]
