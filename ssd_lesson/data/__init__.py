"""The data layer: Pascal VOC's readers, the lesson's example and images, the offline collage set, loaders.

Imports the core (and fastai for the loaders).
"""
