"""The core: boxes, anchors, matching and the loss. Imports torch only.
"""
