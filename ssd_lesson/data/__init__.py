"""The data layer: Pascal VOC's readers, the lesson's example and images, the offline collage set, loaders.

Imports the core (and fastai for the loaders).
"""

__all__ = ["AUGMENTS"]

#: The training augmentations :mod:`ssd_lesson.data.augment` offers: none, the lesson's mirror, the SSD paper's.
#: Here, not in ``augment``, so that ``train --help`` lists them without importing torch.
AUGMENTS = ("none", "flip", "ssd")
