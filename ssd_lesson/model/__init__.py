"""The model layer: the SSD network and its checkpoints, training (fastai), inference and metrics.

Imports the core and the data layer.
"""

__all__ = ["BODIES", "HEADS", "AMP_CHOICES"]

#: Bodies ``create_ssd_model`` knows: torchvision ResNets (ImageNet weights when loadable), and
#: ``tiny``, eight fastai ``ConvLayer``s (conv, batch norm, ReLU; 1.2M weights, stride 32) with no
#: pretrained weights, small and fast enough to train from scratch on a CPU. Here, not in ``net``,
#: so that ``train --help`` lists them without importing torch.
BODIES = ("resnet18", "resnet34", "resnet50", "tiny")
#: Heads ``create_ssd_model`` builds on a body (``ModelConfig.head``): ``lesson``, the lesson's head on the body's
#: last feature map (224 px, 4x4/2x2/1x1 grids, 189 anchors); ``ssd300``, SSD300's, which reads three of the
#: body's feature maps and three extra layers (300 px, grids 38 down to 1, 8732 anchors). Torch-free, as BODIES.
HEADS = ("lesson", "ssd300")

#: ``train --amp``'s choices (:mod:`ssd_lesson.model.precision`): ``off`` trains in float32, ``auto`` picks bf16 or
#: fp16 for the device. Here, so that ``train --help`` lists them without importing torch.
AMP_CHOICES = ("off", "auto", "bf16", "fp16")
