"""The model layer: the SSD network and its checkpoints, training (fastai), inference and metrics.

Imports the core and the data layer.
"""

__all__ = ["BODIES", "AMP_CHOICES"]

#: Bodies ``create_ssd_model`` knows: torchvision ResNets (ImageNet weights when loadable), and
#: ``tiny``, eight fastai ``ConvLayer``s (conv, batch norm, ReLU; 1.2M weights, stride 32) with no
#: pretrained weights, small and fast enough to train from scratch on a CPU. Here, not in ``net``,
#: so that ``train --help`` lists them without importing torch.
BODIES = ("resnet18", "resnet34", "resnet50", "tiny")
#: ``train --amp``'s choices (:mod:`ssd_lesson.model.precision`): ``off`` trains in float32, ``auto`` picks bf16 or
#: fp16 for the device. Here, so that ``train --help`` lists them without importing torch.
AMP_CHOICES = ("off", "auto", "bf16", "fp16")
