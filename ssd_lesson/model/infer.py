"""From the model's activations to detections.

:func:`decode` turns ``(class_logits, box_actns)`` into per-image detections:
decoded boxes (read with the model's box coding), per-class scores (sigmoid,
background excluded, as in the BCE loss; or softmax for the SSD paper's loss), a score threshold, non-maximum suppression per class
(``torchvision.ops.batched_nms``) and a per-image cap. :func:`predict` runs a
model on images and gives the boxes in pixels of those images. How good the
detections are (mean average precision) is :mod:`ssd_lesson.model.metrics`.

Boxes are ``(y0, x0, y1, x1)``: fractions of the image in :func:`decode`, pixels
in :func:`predict`. torchvision and torchmetrics want ``(x0, y0, x1, y1)``: we
swap axes at those calls only (torchvision here, torchmetrics in :mod:`ssd_lesson.model.metrics`).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

from ..core.anchors import Anchors, activations_to_boxes, make_anchors
from ..core.boxes import YX_TO_XY
from ..core.options import DecodeOptions

__all__ = ["Detections", "decode", "model_decode_options", "prepare_images", "predict"]


class Detections(NamedTuple):
    """One image's detections, best score first.

    boxes: ``(N, 4)`` ``(y0, x0, y1, x1)``; labels: ``(N,)`` int64 class ids (never background);
    scores: ``(N,)`` sigmoid of the class logit (or its softmax: ``DecodeOptions.class_scores``).
    """

    boxes: Tensor
    labels: Tensor
    scores: Tensor


def decode(class_logits: Tensor, box_actns: Tensor, anchors: Anchors, *, options: Optional[DecodeOptions] = None,
           score_threshold: Optional[float] = None, nms_iou: Optional[float] = None,
           max_per_image: Optional[int] = None) -> list[Detections]:
    """Detections of each image from the model's outputs.

    Args:
        class_logits: ``(B, A, C+1)``, background last; box_actns: ``(B, A, 4)``.
        anchors: the anchors the outputs are laid out for.
        options: a :class:`~ssd_lesson.core.options.DecodeOptions` (default ``DecodeOptions()``: score
            above 0.05, NMS at IoU 0.5, 100 per image, the lesson's box coding and sigmoid scores;
            ``DecodeOptions.for_loss(LossOptions.ssd_paper())`` for a model trained with the paper's
            loss); or ``score_threshold``, ``nms_iou``, ``max_per_image`` one by one over those
            defaults (with ``options`` too: a ``TypeError``).

    Returns:
        B :class:`Detections` with boxes as ``(y0, x0, y1, x1)`` fractions, clipped to the image.
    """
    options = DecodeOptions.resolve(options, "decode", score_threshold=score_threshold, nms_iou=nms_iou,
                                    max_per_image=max_per_image)
    for name, t, last in (("class_logits", class_logits, "C+1"), ("box_actns", box_actns, "4")):
        if not isinstance(t, Tensor) or t.dim() != 3 or not t.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point (B, A, {last}) tensor, got "
                             f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    if class_logits.shape[:2] != box_actns.shape[:2]:
        raise ValueError(f"box_actns: its (B, A) = {tuple(box_actns.shape[:2])} differs from class_logits' "
                         f"{tuple(class_logits.shape[:2])}")
    if class_logits.shape[1] != len(anchors):
        raise ValueError(f"class_logits: has {class_logits.shape[1]} boxes but anchors has {len(anchors)}")
    for name, t in (("class_logits", class_logits), ("box_actns", box_actns)):
        n_nan = int(torch.isnan(t).sum())  # NaN scores no box: without this, a diverged model "detects nothing"
        if n_nan:
            raise ValueError(f"{name}: {n_nan} of {t.numel()} values are NaN (has the model diverged?)")
    boxes = activations_to_boxes(box_actns.float(), anchors.to(box_actns.device), coding=options.coding).clamp(0, 1)
    if options.class_scores == "softmax":  # the classes compete, background included; background is no detection
        scores = class_logits.float().softmax(dim=-1)[..., :-1]
    else:
        scores = class_logits[..., :-1].float().sigmoid()  # (B, A, C): one independent score per class
    out = []
    for b in range(boxes.shape[0]):
        anchor_i, cls = torch.nonzero(scores[b] > options.score_threshold, as_tuple=True)
        s, bx = scores[b, anchor_i, cls], boxes[b, anchor_i]
        keep = batched_nms(bx[:, YX_TO_XY], s, cls, options.nms_iou)[:options.max_per_image]  # sorted by score
        out.append(Detections(bx[keep], cls[keep], s[keep]))
    return out


#: How :func:`prepare_images` reads each integer dtype: the value that means full intensity.
FULL_SCALE = {torch.uint8: 255.0, torch.uint16: 65535.0}
#: The range of ImageNet-normalised pixels ((0 - mean) / std .. (1 - mean) / std), with a little slack.
NORMALIZED_RANGE = (-2.2, 2.7)


def prepare_images(images: Any, size: int, *, normalized: Optional[bool] = None) -> tuple[Tensor, list[tuple[int, int]]]:
    """Images for the model: ``(B, 3, size, size)`` normalised, and each input's ``(height, width)``.

    Accepts a tensor ``(3, H, W)`` / ``(B, 3, H, W)``, a numpy ``(H, W, 3)`` image (as
    :func:`ssd_lesson.data.transforms.load_image` returns), a PIL image (read as that uint8 array:
    :func:`~ssd_lesson.data.transforms.image_array`), or a list of those; other sizes are resized.
    The values are read by dtype: uint8 is 0-255, uint16 0-65535 (tensor or numpy). Floats:
    ``normalized=True`` means already ImageNet-normalised (what the DataLoaders give, values
    about -2.1..2.6), ``normalized=False`` RGB fractions 0..1; the default (None) is True for
    tensors and False for numpy arrays. Float values outside that range are refused (a 0-255
    float image would otherwise saturate), as are other dtypes (int64, bool, ...), an empty
    image and NaN or inf, each with a ``ValueError`` naming the problem.
    """
    from PIL import Image

    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, image_array

    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images: the list is empty")
        parts = [prepare_images(im, size, normalized=normalized) for im in images]
        return torch.cat([p[0] for p in parts]), [hw for p in parts for hw in p[1]]
    if isinstance(images, Image.Image):  # the uint8 array it is, read as load_image reads a file
        images = image_array(images)
    if isinstance(images, np.ndarray):
        if images.ndim != 3 or images.shape[-1] != 3:
            raise ValueError(f"a numpy image must be (H, W, 3) RGB, got shape {images.shape}")
        normalized = False if normalized is None else normalized
        images = torch.tensor(images).permute(2, 0, 1)  # a copy: from_numpy warns on read-only arrays (PIL's)
    if not isinstance(images, Tensor):
        raise TypeError(f"expected a tensor, numpy image or list of them, got {type(images).__name__}")
    normalized = True if normalized is None else normalized
    x = images.unsqueeze(0) if images.dim() == 3 else images
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (3, H, W) or (B, 3, H, W) with 3 colour channels, got shape "
                         f"{tuple(images.shape)}; convert greyscale/RGBA to RGB first")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"images: an image of {x.shape[-2]}x{x.shape[-1]} pixels has nothing to detect in")
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    if x.dtype in FULL_SCALE:
        x = (x.float() / FULL_SCALE[x.dtype] - mean.to(x.device)) / std.to(x.device)
    elif x.is_floating_point():
        if not torch.isfinite(x).all():
            raise ValueError(f"images: a {x.dtype} image contains NaN or inf")
        (lo, hi), (v0, v1) = NORMALIZED_RANGE if normalized else (-0.01, 1.01), (float(x.min()), float(x.max()))
        if v0 < lo or v1 > hi:
            raise ValueError(f"images: {x.dtype} values {v0:g}..{v1:g} are not "
                             + ("ImageNet-normalised (about -2.1..2.6; RGB fractions 0..1: normalized=False)" if normalized
                                else "RGB fractions 0..1 (ImageNet-normalised: normalized=True)")
                             + "; 0-255 values: pass uint8")
        if not normalized:
            x = (x.float() - mean.to(x.device)) / std.to(x.device)
    else:
        raise ValueError(f"images: dtype {x.dtype} is not an image dtype; pass uint8 (0-255), uint16 (0-65535) "
                         "or floats (ImageNet-normalised, or fractions 0..1 with normalized=False)")
    hw = [tuple(x.shape[-2:])] * x.shape[0]
    if tuple(x.shape[-2:]) != (size, size):  # squish, as the DataLoaders do
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.float(), hw


def model_decode_options(model: torch.nn.Module) -> DecodeOptions:
    """How ``model``'s activations are read: the :class:`DecodeOptions` its checkpoint's record measured its
    mAP with (``model.record.decode_options``: its loss's box coding and class scores,
    :meth:`DecodeOptions.for_loss`), else ``DecodeOptions()``, the lesson's."""
    record = getattr(model, "record", None)
    return record.decode_options if record is not None else DecodeOptions()


@torch.no_grad()
def predict(model: torch.nn.Module, images: Any, anchors: Optional[Anchors] = None, *,
            options: Optional[DecodeOptions] = None, score_threshold: Optional[float] = None,
            nms_iou: Optional[float] = None, max_per_image: Optional[int] = None,
            normalized: Optional[bool] = None) -> list[Detections]:
    """Run ``model`` (an :class:`~ssd_lesson.model.net.SSDModel`) on ``images`` and decode its detections.

    ``images``: see :func:`prepare_images` (which dtypes mean what, and ``normalized``); any
    size (resized to the model's); an empty list gives an empty list. ``anchors`` default to
    the model's spec (made once per call: pass them when calling batch after batch). ``options``
    or the keywords: as :func:`decode`, but over the model's own decoding
    (:func:`model_decode_options`: a model trained with the SSD paper's loss is read with its
    log-space offsets and softmax scores). Returns one :class:`Detections` per image with boxes
    ``(y0, x0, y1, x1)`` in pixels of that input image.
    """
    given = {k: v for k, v in dict(score_threshold=score_threshold, nms_iou=nms_iou,
                                   max_per_image=max_per_image).items() if v is not None}
    if options is None:  # the keywords change the model's own decoding, never its coding or scores
        options = model_decode_options(model).replace(**given)
    else:
        options = DecodeOptions.resolve(options, "predict", **given)
    if isinstance(images, (list, tuple)) and len(images) == 0:
        return []
    anchors = make_anchors(model.spec) if anchors is None else anchors
    device = next(model.parameters()).device
    x, hw = prepare_images(images, model.size, normalized=normalized)
    was_training = model.training
    model.eval()
    try:
        class_logits, box_actns = model(x.to(device))
    finally:
        model.train(was_training)
    dets = decode(class_logits, box_actns, anchors, options=options)
    return [Detections(d.boxes * d.boxes.new_tensor([h, w, h, w]), d.labels, d.scores) for d, (h, w) in zip(dets, hw)]
