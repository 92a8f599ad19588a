"""Training augmentation: which one a run uses, and the SSD paper's recipe built from torchvision's transforms v2.

``augment`` (of :class:`~ssd_lesson.data.images.DetectionDataset`, ``make_dataloaders`` and
``python -m ssd_lesson train --augment``) is one of :data:`AUGMENTS`:

* ``"none"`` (or ``False``): the image squished to the model size, nothing else;
* ``"flip"`` (or ``True``): the lesson's augmentation, half the images mirrored left-right, boxes too;
* ``"ssd"``: the SSD paper's (section 2.2, "Data augmentation"), :class:`SSDAugment`: random colour
  changes, a zoom-out onto a larger canvas of the ImageNet mean colour, a random crop that keeps some
  object, the mirror, then the boxes that became empty are dropped (their labels with them) and the
  image squished to the model size. The model sees objects smaller than the photographs show them,
  objects cut by the border, and objects away from where the photographs put them.

Boxes are ``(y0, x0, y1, x1)`` fractions of the image in and out; torchvision works on a
``tv_tensors.BoundingBoxes`` of ``(x0, y0, x1, y1)`` pixels, which each transform keeps consistent
with the pixels.

Determinism: torchvision's transforms draw from torch's global random generator. Each call forks it
(``torch.random.fork_rng``) and seeds the fork with the item's seed (:func:`item_seed`: the run's seed, the
epoch and the item's index), so an item's augmentation depends on nothing else, whatever the order of
reading or the worker process, and the caller's random state is left as it was.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from . import AUGMENTS
from .transforms import IMAGENET_MEAN

__all__ = ["AUGMENTS", "CROP_MIN_IOUS", "ZOOM_OUT_SIDES", "augment_mode", "item_seed", "Augmented", "SSDAugment",
           "to_sample", "from_sample"]

#: The crop's rule, drawn per image: the crop must overlap some object (whose centre it holds) with an IoU of
#: at least this. 0.0 is the paper's "randomly sample a patch" (any crop holding an object's centre); 1.0 means
#: no crop, the whole image (the paper's first option). torchvision's defaults, the paper's list.
CROP_MIN_IOUS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
#: The zoom-out canvas is this many times the image's side (drawn uniformly), applied to half the images.
ZOOM_OUT_SIDES = (1.0, 4.0)
P_ZOOM_OUT = P_FLIP = 0.5


def augment_mode(augment: bool | str | None) -> str:
    """``augment`` as one of :data:`AUGMENTS`: ``True`` is ``"flip"`` (what it meant before there was a choice),
    ``False`` or ``None`` is ``"none"``. Anything else is a ``ValueError`` naming the choices."""
    if augment is None or isinstance(augment, bool):
        return "flip" if augment else "none"
    if augment not in AUGMENTS:
        raise ValueError(f"augment={augment!r}: expected one of {', '.join(map(repr, AUGMENTS))}, True or False")
    return augment


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one item's augmentation in one epoch: a function of ``(seed, epoch, index)`` only."""
    return int(np.random.default_rng([seed, epoch, index]).integers(2**63))


class Augmented(NamedTuple):
    """One augmented image: ``image`` ``(size, size, 3)`` uint8; ``boxes`` ``(G', 4)`` float32 ``(y0, x0, y1, x1)``
    fractions; ``labels`` ``(G',)`` int64 (G' <= G: the objects that survived the crop); ``steps``: what was
    done, e.g. ``("colour", "zoom-out ×2.3", "crop", "flip")``."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    steps: tuple[str, ...]


class SSDAugment:
    """The SSD paper's augmentation, one torchvision transform per step (attributes, in the order applied):

    ``photometric`` (``RandomPhotometricDistort``: brightness, contrast, saturation, hue, channel order, each at
    random), ``zoom_out`` (``RandomZoomOut`` onto a canvas :data:`ZOOM_OUT_SIDES` times the side, filled with the
    ImageNet mean colour, which the model's normalisation turns into zeros; on half the images), ``crop``
    (``RandomIoUCrop`` with :data:`CROP_MIN_IOUS`: boxes whose centre it leaves out are emptied), ``flip``
    (``RandomHorizontalFlip``, on half the images), ``sanitize`` (``SanitizeBoundingBoxes``: drops boxes under one
    pixel wide or high, and their labels) and ``resize`` (to ``size x size``, squished as in the lesson).
    Call it with an ``(H, W, 3)`` uint8 image, its ``(G, 4)`` fraction boxes, ``(G,)`` labels and a seed.
    """

    def __init__(self, size: int = 224, min_ious: Sequence[float] = CROP_MIN_IOUS):
        from torchvision.transforms import v2  # here: importing the data layer stays light

        if not min_ious or max(min_ious) < 1.0:  # without it an image whose objects no crop can fit is retried forever
            raise ValueError(f"min_ious={list(min_ious)}: needs 1.0 (no crop) among the choices")
        self.size = size
        self.photometric = v2.RandomPhotometricDistort()
        fill = tuple(round(255 * m) for m in IMAGENET_MEAN)
        self.zoom_out = v2.RandomZoomOut(fill=fill, side_range=ZOOM_OUT_SIDES, p=1.0)  # whether: drawn in __call__
        self.crop = v2.RandomIoUCrop(sampler_options=list(min_ious))
        self.flip = v2.RandomHorizontalFlip(p=1.0)  # whether: drawn in __call__, so the title can say so
        self.sanitize = v2.SanitizeBoundingBoxes()  # finds the labels under the sample's "labels" key
        self.resize = v2.Resize((size, size), antialias=True)

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, seed: int) -> Augmented:
        sample = to_sample(image, boxes, labels)
        steps = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            before = sample["image"]
            sample = self.photometric(sample)
            if not torch.equal(before, sample["image"]):
                steps.append("colour")
            if torch.rand(()) < P_ZOOM_OUT:
                side = before.shape[-1]
                sample = self.zoom_out(sample)
                steps.append(f"zoom-out ×{sample['image'].shape[-1] / side:.1f}")
            if len(sample["labels"]):  # the crop's rule needs an object; without one it would only redraw
                shape = sample["image"].shape
                sample = self.crop(sample)
                steps += ["crop"] if sample["image"].shape != shape else []
            if torch.rand(()) < P_FLIP:
                sample = self.flip(sample)
                steps.append("flip")
            sample = self.resize(self.sanitize(sample))
        return Augmented(*from_sample(sample), tuple(steps))


def to_sample(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> dict:
    """``{"image": (3, H, W) uint8 Image, "boxes": (G, 4) XYXY pixel BoundingBoxes, "labels": (G,) int64}``
    from an ``(H, W, 3)`` uint8 image and its ``(G, 4)`` ``(y0, x0, y1, x1)`` fraction boxes."""
    from torchvision import tv_tensors

    H, W = image.shape[:2]
    pixels = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)[:, [1, 0, 3, 2]]) * torch.tensor([W, H, W, H])
    return {"image": tv_tensors.Image(torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1)),
            "boxes": tv_tensors.BoundingBoxes(pixels, format="XYXY", canvas_size=(H, W)),
            "labels": torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)}


def from_sample(sample: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inverse of :func:`to_sample`: ``(H, W, 3)`` uint8, ``(G, 4)`` float32 fraction boxes, ``(G,)`` int64."""
    image = sample["image"]
    H, W = image.shape[-2:]
    boxes = sample["boxes"].as_subclass(torch.Tensor)[:, [1, 0, 3, 2]] / torch.tensor([H, W, H, W])
    # clamped: a resize scales x1 = W by size / W, which can land a float rounding past 1 (+ 0.0: no -0.0 from a flip)
    return (image.permute(1, 2, 0).numpy().copy(), (boxes.clamp(0, 1) + 0.0).numpy().astype(np.float32),
            sample["labels"].numpy().astype(np.int64))
