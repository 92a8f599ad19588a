"""The SSD model of the lesson: a CNN body and a head whose outputs are the article's activations.

The head takes the body's last feature map (512 x 7 x 7 for resnet34 at 224 pixels),
runs one stride-1 conv block, then stride-2 conv blocks down to 4x4, 2x2 and 1x1.
On each grid an output conv gives ``k*(C+1)`` class logits and ``k*4`` box
activations per cell, flattened in the anchor order of :func:`~ssd_lesson.core.anchors.make_anchors`
(cells row-major, then the ``k`` anchor boxes of the cell), so the model returns
``class_logits (B, 189, 21)`` and ``box_actns (B, 189, 4)`` for the default spec.
Boxes decoded from them are ``(y0, x0, y1, x1)`` fractions of the image.

Checkpoints (:func:`save_checkpoint`, :func:`load_checkpoint`) hold the weights with
the anchor spec, class names and body, so one call rebuilds the model.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.anchors import AnchorSpec
from ..data.files import atomic_write

__all__ = ["BODIES", "ConvBlock", "OutConv", "SSDHead", "SSDModel", "create_body", "create_ssd_model", "layer_shapes",
           "save_checkpoint", "load_checkpoint", "check_classes", "spec_to_dict", "spec_from_dict"]

#: Bodies ``create_ssd_model`` knows: torchvision ResNets (ImageNet weights when loadable), and
#: ``tiny``, eight fastai ``ConvLayer``s (conv, batch norm, ReLU; 1.2M weights, stride 32) with no
#: pretrained weights, small and fast enough to train from scratch on a CPU.
BODIES = ("resnet18", "resnet34", "resnet50", "tiny")


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
    """Body + :class:`SSDHead`. Input ``(B, 3, size, size)`` normalised images; output
    ``(class_logits (B, A, C+1), box_actns (B, A, 4))``. Carries what a checkpoint needs:
    ``spec``, ``class_names``, ``body_name``, ``size`` and ``head_kwargs``."""

    def __init__(self, body: nn.Module, head: SSDHead, spec: AnchorSpec, class_names: Sequence[str],
                 body_name: str, size: int, head_kwargs: dict[str, Any]):
        super().__init__()
        self.body, self.head = body, head
        self.spec, self.class_names, self.body_name = spec, tuple(class_names), body_name
        self.size, self.head_kwargs = size, dict(head_kwargs)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"SSDModel expects images of shape (B, 3, {self.size}, {self.size}), got {tuple(images.shape)}; "
                             "greyscale needs 3 channels (x.expand(-1, 3, -1, -1)), RGBA needs its alpha dropped")
        if tuple(images.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"SSDModel expects {self.size}x{self.size} images, got {images.shape[-2]}x{images.shape[-1]}; "
                             "resize them first (ssd_lesson.model.infer.predict does it for you)")
        return self.head(self.body(images))


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


def create_ssd_model(body: str = "resnet34", pretrained: bool = True, spec: AnchorSpec = AnchorSpec(),
                     n_classes: int = 20, class_names: Optional[Sequence[str]] = None, size: int = 224,
                     n_hidden: int = 256, drop: float = 0.1, class_bias: float = -4.0) -> SSDModel:
    """Build the lesson's SSD for ``size x size`` images and the anchors of ``spec``.

    ``class_names`` defaults to the 20 VOC classes in lesson order (then ``n_classes`` must be 20).
    ``pretrained``: ImageNet weights for the body when loadable (else a warning and random weights).
    """
    if class_names is None:
        from ..data.voc import VOC_CLASSES

        if n_classes != len(VOC_CLASSES):
            raise ValueError(f"n_classes={n_classes}: pass class_names (the default names are the {len(VOC_CLASSES)} VOC classes)")
        class_names = VOC_CLASSES
    if len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class_names given for n_classes={n_classes}")
    net = create_body(body, pretrained)
    with torch.no_grad():  # the feature map's channels and size at this input size
        was = net.training
        feats = net.eval()(torch.zeros(1, 3, size, size))
        net.train(was)
    if feats.shape[-1] != feats.shape[-2]:
        raise ValueError(f"the body gives a non-square {tuple(feats.shape[-2:])} feature map")
    head_kwargs = dict(n_hidden=n_hidden, drop=drop, class_bias=class_bias)
    head = SSDHead(spec, feats.shape[1], feats.shape[-1], n_classes, **head_kwargs)
    return SSDModel(net, head, spec, class_names, body, size, head_kwargs)


def layer_shapes(model: SSDModel, images: Tensor) -> dict[str, Any]:
    """The shapes on the way through ``model`` for ``images`` ``(B, 3, size, size)``: ``input``,
    the body's ``features``, the input of each grid's output conv (``grids``, spec order), and
    the outputs ``class_logits`` ``(B, A, C+1)`` and ``box_actns`` ``(B, A, 4)``. Shapes are tuples."""
    seen: list[tuple[int, ...]] = []
    hooks = [out.register_forward_hook(lambda mod, inp, outp: seen.append(tuple(inp[0].shape)))
             for out in model.head.outs]
    try:
        with torch.no_grad():
            feats = model.body(images)
            class_logits, box_actns = model.head(feats)
    finally:
        for h in hooks:
            h.remove()
    return dict(input=tuple(images.shape), features=tuple(feats.shape), grids=seen,
                class_logits=tuple(class_logits.shape), box_actns=tuple(box_actns.shape))


# ---------------------------------------------------------------- checkpoints
def spec_to_dict(spec: AnchorSpec) -> dict:
    """An :class:`AnchorSpec` as plain lists (for saving)."""
    return dataclasses.asdict(spec)


def spec_from_dict(d: dict) -> AnchorSpec:
    """Inverse of :func:`spec_to_dict`."""
    tup = lambda x: tuple(tup(v) for v in x) if isinstance(x, (list, tuple)) else x  # noqa: E731
    return AnchorSpec(**{k: (None if v is None else tup(v)) for k, v in d.items()})


def save_checkpoint(model: SSDModel, path: str | Path, *, half: bool = False, extra: Optional[dict] = None) -> Path:
    """Save weights, anchor spec, class names, body and size; written atomically (a crash
    mid-save leaves the previous file intact). ``half`` stores float weights as float16."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu() for k, v in model.state_dict().items()}
    ckpt = dict(format="ssd_lesson.checkpoint/1", state_dict=sd, spec=spec_to_dict(model.spec),
                class_names=list(model.class_names), body=model.body_name, size=model.size,
                head_kwargs=model.head_kwargs, extra=extra or {})
    path = Path(path)
    with atomic_write(path) as tmp:  # Ctrl-C / SIGTERM wait for the rename: the old file or the whole new one
        torch.save(ckpt, tmp)
    return path


def check_classes(class_names: Sequence[str], expected: Sequence[str], checkpoint: str | Path) -> None:
    """Refuse a checkpoint whose classes are not ``expected`` (names, in order): its class outputs would be
    paired with the data's classes by position. ``ValueError`` naming the checkpoint file and the difference."""
    got, want = tuple(class_names), tuple(expected)
    if got == want:
        return
    if len(got) != len(want):
        raise ValueError(f"{checkpoint}: the checkpoint has {len(got)} classes, the data {len(want)} "
                         f"({', '.join(want[:3])}{', ...' if len(want) > 3 else ''}); it was trained for other classes")
    if sorted(got) == sorted(want):
        i = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
        raise ValueError(f"{checkpoint}: the checkpoint has the data's {len(want)} classes in another order "
                         f"(its class {i} is {got[i]!r}, the data's is {want[i]!r}); its outputs would be paired "
                         "with the wrong classes")
    other = [n for n in got if n not in want]
    raise ValueError(f"{checkpoint}: the checkpoint's classes are not the data's: it has {other[:3]} "
                     f"{'and more ' if len(other) > 3 else ''}where the data has {[n for n in want if n not in got][:3]}")


CHECKPOINT_KEYS = ("state_dict", "spec", "class_names", "body", "size", "head_kwargs")


def _read_checkpoint(path: Path, map_location: Any) -> dict:
    """The checkpoint's dict, read with ``weights_only=True``: tensors and plain values only, so a file
    from elsewhere cannot run code. Anything else is a ``ValueError`` naming the file."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # empty, truncated, random bytes, or pickled objects beyond plain values
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        unsupported = [ln for ln in lines if "Unsupported global" in ln]
        if unsupported:
            raise ValueError(f"{path}: refused: it holds Python objects beyond tensors and plain values, which loading "
                             f"could run as code ({unsupported[0]}); ssd_lesson checkpoints hold none") from None
        why = next((ln for ln in lines if "invalid load key" in ln or "failed finding central directory" in ln
                    or "EOF" in ln), type(e).__name__)
        raise ValueError(f"{path}: not a checkpoint: torch.load cannot read it ({why.split('. ')[0][:120]}); "
                         "empty, truncated or another kind of file") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "ssd_lesson.checkpoint/1":
        raise ValueError(f"{path}: not an ssd_lesson checkpoint (saved by ssd_lesson.model.net.save_checkpoint)")
    for key in CHECKPOINT_KEYS:
        if key not in ckpt:
            raise ValueError(f"{path}: the checkpoint lacks the key {key!r} (it needs {', '.join(CHECKPOINT_KEYS)})")
    return ckpt


def load_checkpoint(path: str | Path, *, spec: Optional[AnchorSpec] = None,
                    class_names: Optional[Sequence[str]] = None, map_location: Any = "cpu") -> SSDModel:
    """Rebuild the model saved by :func:`save_checkpoint` (in eval mode, float32).

    ``spec`` / ``class_names``, when given, must equal the checkpoint's: a model's
    outputs only mean something for the anchors and classes it was trained on. The file is
    read with ``torch.load(weights_only=True)``; one that is not a checkpoint (empty,
    truncated, anything else) or lacks a key is a ``ValueError`` naming the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    ckpt = _read_checkpoint(path, map_location)
    try:
        saved_spec = spec_from_dict(ckpt["spec"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: the checkpoint's 'spec' is not an anchor spec ({e})") from None
    if spec is not None and spec != saved_spec:
        raise ValueError(f"{path}: checkpoint was trained for anchor spec {saved_spec}, not the requested {spec}")
    if class_names is not None:
        check_classes(ckpt["class_names"], class_names, path)
    names = ckpt["class_names"]
    model = create_ssd_model(ckpt["body"], pretrained=False, spec=saved_spec, n_classes=len(names),
                             class_names=names, size=ckpt["size"], **ckpt["head_kwargs"])
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    except (RuntimeError, AttributeError) as e:
        raise ValueError(f"{path}: the checkpoint's 'state_dict' does not fit its {ckpt['body']} model "
                         f"({str(e).strip().splitlines()[0]})") from None
    model.checkpoint_extra = ckpt.get("extra", {})
    return model.eval()
