"""The course layer: what the notebooks open with (the starting kit), exercises and widgets.

Imports every layer below it.
"""
