"""The model layer: the SSD network and its checkpoints, training (fastai), inference and metrics.

Imports the core and the data layer.
"""
