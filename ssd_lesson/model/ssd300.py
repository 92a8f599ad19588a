"""SSD300's head: class logits and box activations read from several feature maps of the body, as in the SSD paper.

The lesson's head (:class:`~ssd_lesson.model.net.SSDHead`) reads the body's last feature map only and
makes its smaller grids from it. SSD300 (Liu et al., 2016; torchvision's ``ssd300_vgg16``) reads the
body at several depths: at 300 pixels VGG16 gives conv4_3 (38x38) and fc7 (19x19), then extra layers
go on to 10x10, 5x5, 3x3 and 1x1. Here the body's own maps at strides 8, 16 and 32 take those places
(a ResNet's layer2, layer3 and layer4: 38x38, 19x19 and 10x10 at 300 pixels; the ``tiny`` body's 4th,
6th and 8th layers), and extra layers like torchvision's make the rest: a 1x1 conv to half the channels,
then a 3x3 conv, with stride 2 from 10 to 5 and without padding from 5 to 3 and from 3 to 1.
Each map has its output conv (:class:`~ssd_lesson.model.net.OutConv`) with the spec's ``k`` anchor
boxes per cell (4 or 6 for SSD300), and the outputs are concatenated in the anchor order of
:func:`~ssd_lesson.core.anchors.make_anchors`: ``class_logits (B, 8732, C+1)`` and
``box_actns (B, 8732, 4)`` for :meth:`AnchorSpec.ssd300`.

Two differences from torchvision's: no L2 normalisation of the first map (VGG has no batch norm, so its
conv4_3 needs rescaling to fc7's level; the bodies here end every layer in batch norm), and batch norm
in the extra layers (the bodies here may train from scratch).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from ..core.anchors import AnchorSpec
from .net import OutConv

__all__ = ["MIN_STRIDE", "FeatureMap", "ExtraLayer", "SSD300Head", "body_feature_maps", "extra_step"]

#: The head reads the body's maps from this stride on (conv4_3's in VGG16): the finer ones have little
#: context per cell and many cells (75x75 at 300 pixels).
MIN_STRIDE = 8


class FeatureMap(NamedTuple):
    """A feature map of the body: the output of ``body[layer]``, ``channels x size x size``."""

    layer: int
    channels: int
    size: int


def body_feature_maps(body: nn.Sequential, image_size: int) -> list[FeatureMap]:
    """The feature maps the body offers for ``image_size x image_size`` images: at each map size of stride
    :data:`MIN_STRIDE` and up, the output of the last layer of that size; largest first, so the last is the
    body's own output. For a ResNet at 300 pixels: layer2, layer3, layer4 (38, 19, 10)."""
    if not isinstance(body, nn.Sequential):
        raise ValueError(f"the SSD300 head reads the body layer by layer: it needs an nn.Sequential, got {type(body).__name__}")
    last: dict[int, FeatureMap] = {}
    was = body.training
    x = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        body.eval()
        for i, layer in enumerate(body):
            x = layer(x)
            if x.shape[-1] != x.shape[-2]:
                raise ValueError(f"body layer {i} gives a non-square {tuple(x.shape[-2:])} feature map")
            last[x.shape[-1]] = FeatureMap(i, x.shape[1], x.shape[-1])  # a later layer of the same size replaces it
        body.train(was)
    return [m for m in last.values() if m.size <= math.ceil(image_size / MIN_STRIDE)]


def extra_step(n_from: int, n_to: int) -> Optional[tuple[int, int]]:
    """``(stride, padding)`` of the 3x3 conv that takes an ``n_from`` map to ``n_to``: without padding when
    ``n_to = n_from - 2`` (torchvision's 5 to 3 and 3 to 1), else stride 2 and padding 1 when
    ``n_to = ceil(n_from / 2)`` (10 to 5); None when neither does."""
    if n_to == n_from - 2:
        return 1, 0
    if n_from > 1 and n_to == (n_from + 1) // 2:
        return 2, 1
    return None


class ExtraLayer(nn.Sequential):
    """torchvision's SSD extra layer, with the lesson's order (conv, ReLU, batch norm): a 1x1 conv to half of
    ``n_out`` channels, then a 3x3 conv with ``stride`` and ``padding`` to ``n_out``, then dropout."""

    def __init__(self, n_in: int, n_out: int, stride: int, padding: int, drop: float = 0.1):
        mid = max(1, n_out // 2)
        super().__init__(nn.Conv2d(n_in, mid, 1), nn.ReLU(), nn.BatchNorm2d(mid),
                         nn.Conv2d(mid, n_out, 3, stride=stride, padding=padding), nn.ReLU(), nn.BatchNorm2d(n_out),
                         nn.Dropout(drop))


class SSD300Head(nn.Module):
    """SSD300's head, for any :class:`AnchorSpec` whose grids the body's maps and the extra layers give.

    Args:
        spec: the anchors; each of ``spec.grids`` must be the size of one of ``maps`` or of an extra layer:
            those go on from the body's last map, each a 3x3 conv away from the one before (:func:`extra_step`).
        maps: the body's feature maps (:func:`body_feature_maps`), largest first.
        n_classes: object classes C (background is the extra, last logit).
        n_hidden: channels of the extra layers; drop: their dropout.
        class_bias: initial bias of every class logit (the lesson's -4; the same for every column, which a
            softmax loss does not see).
        where: what gave ``maps``, for the message when a grid cannot be reached.
    """

    def __init__(self, spec: AnchorSpec, maps: Sequence[FeatureMap], n_classes: int = 20, n_hidden: int = 256,
                 drop: float = 0.1, class_bias: float = -4.0, where: str = "the body"):
        super().__init__()
        if not maps:
            raise ValueError(f"{where} gives no feature map of stride {MIN_STRIDE} or more")
        channels = {m.size: m.channels for m in maps}
        extra, missing, at = [], [], maps[-1].size
        for g in sorted({g for g in spec.grids if g not in channels}, reverse=True):
            step = extra_step(at, g) if g < at else None
            if step is None:
                missing.append(g)
                continue
            extra.append((g, step))
            at = g
        if missing:
            raise ValueError(f"AnchorSpec grids {[g for g in spec.grids if g in missing]} cannot be reached by the SSD300 "
                             f"head: {where} gives feature maps {list(channels)} at strides {MIN_STRIDE} and up, and the "
                             f"extra layers go on from {maps[-1].size} by 3x3 convs, stride 2 (n to ceil(n/2)) or unpadded "
                             "(n to n-2); change the spec or the image size (SSD300's grids 38, 19, 10, 5, 3, 1 need 300)")
        self.taps = tuple(m.layer for m in maps)  # the body layers whose outputs the head reads
        self.map_sizes = tuple(m.size for m in maps)
        self.extra_sizes = tuple(g for g, _ in extra)
        self.grids = tuple(spec.grids)
        self.extras = nn.ModuleList()
        n_in = maps[-1].channels
        for g, (stride, padding) in extra:
            self.extras.append(ExtraLayer(n_in, n_hidden, stride, padding, drop))
            channels[g] = n_in = n_hidden
        self.outs = nn.ModuleList(OutConv(spec.k(i), channels[g], n_classes, class_bias) for i, g in enumerate(spec.grids))

    def take_features(self, body: nn.Sequential, images: Tensor) -> list[Tensor]:
        """Run ``body`` on ``images`` and keep the outputs of the layers the head reads (``self.taps``)."""
        maps, x = [], images
        for i, layer in enumerate(body):
            x = layer(x)
            if i in self.taps:
                maps.append(x)
        return maps

    def forward(self, maps: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """``maps``: the body's, as :meth:`take_features` gives them. Returns ``(class_logits (B, A, C+1),
        box_actns (B, A, 4))`` in the anchor order of the spec."""
        by_size = dict(zip(self.map_sizes, maps))
        x = maps[-1]
        for size, extra in zip(self.extra_sizes, self.extras):
            x = by_size[size] = extra(x)
        outs = [out(by_size[g]) for g, out in zip(self.grids, self.outs)]  # spec order = anchor order
        return torch.cat([c for c, _ in outs], dim=1), torch.cat([b for _, b in outs], dim=1)
