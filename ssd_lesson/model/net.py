"""The SSD model of the lesson: a CNN body and a head whose outputs are the article's activations.

The head takes the body's last feature map (512 x 7 x 7 for resnet34 at 224 pixels),
runs one stride-1 conv block, then stride-2 conv blocks down to 4x4, 2x2 and 1x1.
On each grid an output conv gives ``k*(C+1)`` class logits and ``k*4`` box
activations per cell, flattened in the anchor order of :func:`~ssd_lesson.core.anchors.make_anchors`
(cells row-major, then the ``k`` anchor boxes of the cell), so the model returns
``class_logits (B, 189, 21)`` and ``box_actns (B, 189, 4)`` for the default spec.
Boxes decoded from them are ``(y0, x0, y1, x1)`` fractions of the image. SSD300's head, which reads
several of the body's feature maps (300 pixels, 8732 anchors), is :mod:`ssd_lesson.model.ssd300`;
``ModelConfig.head`` chooses.

The model's configuration (body, input size, head, anchor spec, classes) is one
:class:`~ssd_lesson.model.config.ModelConfig`; checkpoints (:mod:`ssd_lesson.model.checkpoint`)
hold the weights with it, so one call rebuilds the model, and a record of how it was trained.
"""
from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.anchors import AnchorSpec
from . import BODIES  # defined in the package, torch-free: train --help lists them
from .config import ModelConfig, resolve_model_config

if TYPE_CHECKING:
    from .record import CheckpointRecord

__all__ = ["BODIES", "ModelConfig", "ConvBlock", "OutConv", "SSDHead", "SSDModel", "create_body", "create_ssd_model",
           "layer_shapes"]


class ConvBlock(nn.Sequential):
    """The lesson's ``StdConv``: 3x3 conv, ReLU, batch norm, dropout (in that order)."""

    def __init__(self, n_in: int, n_out: int, stride: int = 2, drop: float = 0.1):
        super().__init__(nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1), nn.ReLU(),
                         nn.BatchNorm2d(n_out), nn.Dropout(drop))


def flatten_conv(x: Tensor, k: int) -> Tensor:
    """``(B, k*n, g, g)`` to ``(B, g*g*k, n)``: cells row-major, then the cell's k anchor boxes."""
    B, nf, gy, gx = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, gy * gx * k, nf // k)


class OutConv(nn.Module):
    """The lesson's ``OutConv``: class logits and box activations for the k anchor boxes of every cell."""

    def __init__(self, k: int, n_in: int, n_classes: int, class_bias: float = -4.0):
        super().__init__()
        self.k = k
        self.classes = nn.Conv2d(n_in, k * (n_classes + 1), 3, padding=1)
        self.boxes = nn.Conv2d(n_in, k * 4, 3, padding=1)
        # Start every class (background included) at sigmoid(-4) ~ 0.02: "mostly nothing here".
        nn.init.constant_(self.classes.bias, class_bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return flatten_conv(self.classes(x), self.k), flatten_conv(self.boxes(x), self.k)


class SSDHead(nn.Module):
    """The lesson's ``SSD_MultiHead``, for any :class:`AnchorSpec` whose grids the conv chain reaches.

    Args:
        spec: the anchors; ``spec.grids`` must be among the sizes ``feat_size, ceil(feat_size/2), ..., 1``.
        n_in: channels of the body's feature map; feat_size: its height (= width).
        n_classes: object classes C (background is the extra, last logit).
        n_hidden: channels of the head's conv blocks; drop: their dropout.
        class_bias: initial bias of every class logit (the lesson's -4).
    """

    def __init__(self, spec: AnchorSpec, n_in: int, feat_size: int, n_classes: int = 20,
                 n_hidden: int = 256, drop: float = 0.1, class_bias: float = -4.0):
        super().__init__()
        sizes = [feat_size]
        while sizes[-1] > 1:  # a 3x3 stride-2 conv with padding 1 takes s to ceil(s/2)
            sizes.append((sizes[-1] + 1) // 2)
        missing = [g for g in spec.grids if g not in sizes]
        if missing:
            raise ValueError(f"AnchorSpec grids {missing} cannot be reached: the body's {feat_size}x{feat_size} "
                             f"feature map gives grids {sizes} through stride-2 convs; change the spec or the image size")
        self.sizes = sizes[:max(sizes.index(g) for g in spec.grids) + 1]
        self.grids = tuple(spec.grids)
        self.drop = nn.Dropout(drop)
        self.first = ConvBlock(n_in, n_hidden, stride=1, drop=drop)
        self.downs = nn.ModuleList(ConvBlock(n_hidden, n_hidden, stride=2, drop=drop) for _ in self.sizes[1:])
        self.outs = nn.ModuleList(OutConv(spec.k(i), n_hidden, n_classes, class_bias) for i in range(len(spec.grids)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.first(self.drop(F.relu(x)))
        maps = {self.sizes[0]: x}
        for size, down in zip(self.sizes[1:], self.downs):
            x = down(x)
            maps[size] = x
        outs = [out(maps[g]) for g, out in zip(self.grids, self.outs)]  # spec order = anchor order
        return torch.cat([c for c, _ in outs], dim=1), torch.cat([b for _, b in outs], dim=1)


class SSDModel(nn.Module):
    """Body + head (:class:`SSDHead`, or :class:`~ssd_lesson.model.ssd300.SSD300Head`). Input
    ``(B, 3, size, size)`` normalised images; output ``(class_logits (B, A, C+1), box_actns (B, A, 4))``.
    ``config`` is the :class:`~ssd_lesson.model.config.ModelConfig` that builds it again (``spec``, ``class_names``,
    ``body_name`` and ``size`` read from it); ``record`` is the
    :class:`~ssd_lesson.model.record.CheckpointRecord` of the checkpoint it was loaded from (else None)."""

    def __init__(self, body: nn.Module, head: nn.Module, config: ModelConfig):
        super().__init__()
        self.body, self.head, self.config = body, head, config
        self.record: Optional["CheckpointRecord"] = None

    @property
    def spec(self) -> AnchorSpec:
        """The anchor boxes the outputs are ordered by."""
        return self.config.spec

    @property
    def class_names(self) -> tuple[str, ...]:
        """The object classes, in output order."""
        return self.config.class_names

    @property
    def body_name(self) -> str:
        """The body's name (one of ``BODIES``)."""
        return self.config.body

    @property
    def size(self) -> int:
        """The input images' height and width in pixels."""
        return self.config.size

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"SSDModel expects images of shape (B, 3, {self.size}, {self.size}), got {tuple(images.shape)}; "
                             "greyscale needs 3 channels (x.expand(-1, 3, -1, -1)), RGBA needs its alpha dropped")
        if tuple(images.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"SSDModel expects {self.size}x{self.size} images, got {images.shape[-2]}x{images.shape[-1]}; "
                             "resize them first (ssd_lesson.model.infer.predict does it for you)")
        return self.head(self.features(images))

    def features(self, images: Tensor) -> Union[Tensor, list[Tensor]]:
        """What the head reads: the body's last feature map (the lesson's head), or the list of the body's
        maps that SSD300's head reads (``head.take_features``)."""
        take = getattr(self.head, "take_features", None)
        return self.body(images) if take is None else take(self.body, images)


def create_body(name: str = "resnet34", pretrained: bool = True) -> nn.Module:
    """The CNN body without its pooling and classifier, via fastai's ``create_body``.

    When ImageNet weights cannot be loaded (offline, nothing in the torch hub
    cache) a warning says so and the body starts from random weights.
    """
    from fastai.vision.all import ConvLayer, model_meta
    from fastai.vision.all import create_body as fastai_create_body
    import torchvision

    if name not in BODIES:
        raise ValueError(f"unknown body {name!r}; choose one of {BODIES}")
    if name == "tiny":
        if pretrained:
            warnings.warn("the tiny body has no ImageNet weights: it starts from random weights", stacklevel=3)
        chans = [(3, 16, 2), (16, 32, 2), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1)]
        return nn.Sequential(*(ConvLayer(ni, nf, stride=s) for ni, nf, s in chans))
    arch = getattr(torchvision.models, name)
    meta = model_meta[arch]
    loaded = False
    if pretrained:
        try:
            net, loaded = arch(weights=meta["weights"]), True
        except Exception as e:  # URLError offline, a corrupt cache file, ...: never a traceback
            warnings.warn(f"could not load ImageNet weights for {name} ({type(e).__name__}: {e}); the body starts "
                          f"from random weights (to use them offline, put the weights file in "
                          f"{os.path.join(torch.hub.get_dir(), 'checkpoints')})", stacklevel=3)
    if not loaded:
        net = arch(weights=None)
    return fastai_create_body(net, pretrained=loaded, cut=meta["cut"])


def create_ssd_model(config: Union[ModelConfig, str, None] = None, pretrained: bool = True, *,
                     body: Optional[str] = None, spec: Optional[AnchorSpec] = None, n_classes: Optional[int] = None,
                     class_names: Optional[Sequence[str]] = None, size: Optional[int] = None,
                     n_hidden: Optional[int] = None, drop: Optional[float] = None,
                     class_bias: Optional[float] = None, head: Optional[str] = None) -> SSDModel:
    """Build the lesson's SSD of ``config`` (a :class:`ModelConfig`), for ``size x size`` images and the anchors of ``spec``.

    Instead of a config, its fields may be given as keywords (the others :class:`ModelConfig`'s defaults), and
    ``config`` may be the body's name (``create_ssd_model("tiny", pretrained=False, n_hidden=128)``); a config
    and fields at once is a ``TypeError``. ``class_names`` defaults to the 20 VOC classes in lesson order (then
    ``n_classes``, if given, must be 20). ``pretrained``: ImageNet weights for the body when loadable (else a
    warning and random weights). ``create_ssd_model(ModelConfig.ssd300(body="resnet34"))`` is SSD300: a head
    on the body's maps at strides 8, 16 and 32 and three extra layers; an ``AnchorSpec`` whose grids a head
    cannot reach at this ``size`` is a ``ValueError`` naming them.
    """
    if isinstance(config, str):  # the body's name, as the lesson calls it
        if body is not None:
            raise TypeError(f"create_ssd_model: the body given twice ({config!r} and body={body!r})")
        config, body = None, config
    config = resolve_model_config(config, n_classes=n_classes, body=body, spec=spec, class_names=class_names, size=size,
                                  n_hidden=n_hidden, drop=drop, class_bias=class_bias, head=head)
    net = create_body(config.body, pretrained)
    if config.head == "ssd300":
        from .ssd300 import SSD300Head, body_feature_maps  # it builds on this module's OutConv

        maps = body_feature_maps(net, config.size)
        return SSDModel(net, SSD300Head(config.spec, maps, config.n_classes, n_hidden=config.n_hidden, drop=config.drop,
                                        class_bias=config.class_bias,
                                        where=f"the {config.body} body at {config.size} pixels"), config)
    with torch.no_grad():  # the feature map's channels and size at this input size
        was = net.training
        feats = net.eval()(torch.zeros(1, 3, config.size, config.size))
        net.train(was)
    if feats.shape[-1] != feats.shape[-2]:
        raise ValueError(f"the body gives a non-square {tuple(feats.shape[-2:])} feature map")
    head = SSDHead(config.spec, feats.shape[1], feats.shape[-1], config.n_classes, n_hidden=config.n_hidden,
                   drop=config.drop, class_bias=config.class_bias)
    return SSDModel(net, head, config)


def layer_shapes(model: SSDModel, images: Tensor) -> dict[str, Any]:
    """The shapes on the way through ``model`` for ``images`` ``(B, 3, size, size)``: ``input``,
    the body's ``features`` (a list of them for SSD300's head, which reads several), the input of each grid's output conv (``grids``, spec order), and
    the outputs ``class_logits`` ``(B, A, C+1)`` and ``box_actns`` ``(B, A, 4)``. Shapes are tuples."""
    seen: list[tuple[int, ...]] = []
    hooks = [out.register_forward_hook(lambda mod, inp, outp: seen.append(tuple(inp[0].shape)))
             for out in model.head.outs]
    try:
        with torch.no_grad():
            feats = model.features(images)
            class_logits, box_actns = model.head(feats)
    finally:
        for h in hooks:
            h.remove()
    shapes = [tuple(f.shape) for f in feats] if isinstance(feats, list) else tuple(feats.shape)
    return dict(input=tuple(images.shape), features=shapes, grids=seen,
                class_logits=tuple(class_logits.shape), box_actns=tuple(box_actns.shape))
