"""The lesson's example image, images and boxes, and the batches the model trains on.

Conventions (the core library and the loss rely on them):

* A :class:`~ssd_lesson.data.voc.Record` holds boxes ``(y0, x0, y1, x1)`` in **pixels** of the
  original image (see :mod:`ssd_lesson.data.voc`, which reads Pascal VOC).
* Training batches hold boxes as **fractions** of the image (0..1), so resizing
  the image never changes them.
* A batch is ``(images (B, 3, S, S) float32, gt_boxes (B, G, 4) float32,
  gt_labels (B, G) int64)``, with G the batch's largest object count; shorter
  images are padded at the end with label ``PAD_LABEL`` (-1) and box zeros. An image
  with no objects is all padding, and a batch with no objects at all has G = 0.

fastai is imported only by the DataLoaders, so reading the example stays light.
"""
from __future__ import annotations

import os
import random
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ..core.matching import PAD_LABEL
from .voc import (BACKGROUND, ENV_VAR, VOC_CLASSES, Record, VocNotFoundWarning, find_voc, image_error, load_voc,
                  parse_voc_xml, read_fastai_json, read_fastai_split, read_voc_split, voc_layout, voc_missing_message,
                  write_voc_xml)

__all__ = [
    "DATA_DIR", "EXAMPLE_DIR", "IMAGENET_MEAN", "IMAGENET_STD", "LESSON_OBJECTS", "Example", "find_lesson_record",
    "lesson_example", "load_image", "image_array", "to_fractions", "to_pixels", "resize_record", "hflip", "normalize", "denormalize",
    "DetectionDataset", "collate_detections", "make_dataloaders",
    # re-exported from ssd_lesson.data.voc, where they live
    "VOC_CLASSES", "BACKGROUND", "ENV_VAR", "VocNotFoundWarning", "Record", "parse_voc_xml", "write_voc_xml",
    "read_voc_split", "read_fastai_json", "read_fastai_split", "voc_layout", "load_voc", "find_voc",
    "voc_missing_message",
]

def _data_dir() -> Path:
    """The project's ``data/``: ``ssd_lesson/_data`` when installed from a wheel, else the checkout's."""
    package = Path(__file__).resolve().parents[1]
    for folder in (package / "_data", package.parent / "data"):
        if (folder / "example" / "example.xml").is_file():
            return folder
    return package.parent / "data"  # absent: whoever reads a file from it names the missing file


DATA_DIR = _data_dir()
EXAMPLE_DIR = DATA_DIR / "example"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The article's image: exactly these objects (count per class).
LESSON_OBJECTS = Counter({"cow": 1, "person": 1, "bicycle": 1, "motorbike": 1})

# ---------------------------------------------------------------- the lesson's example image
def find_lesson_record(records: Sequence[Record]) -> Record | None:
    """The record whose objects are exactly one cow, person, bicycle and motorbike (lowest id), or None."""
    hits = [r for r in records if Counter(r.class_names) == LESSON_OBJECTS]
    return min(hits, key=lambda r: r.image_id) if hits else None


@dataclass(eq=False)
class Example:
    """One image ready for the dissection notebooks.

    image: ``(H, W, 3)`` uint8, original size; image224: ``(224, 224, 3)`` uint8, squished.
    boxes: ``(G, 4)`` float32 ``(y0, x0, y1, x1)`` fractions (valid for both images).
    labels: ``(G,)`` int64; classes: their names; source: one line saying where it came from.
    """

    image: np.ndarray
    image224: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source: str
    record: Record

    def batch(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(1, 3, 224, 224)`` normalised image, ``(1, G, 4)`` boxes, ``(1, G)`` labels."""
        return (normalize(self.image224).unsqueeze(0), torch.from_numpy(self.boxes).unsqueeze(0),
                torch.from_numpy(self.labels).unsqueeze(0))


def lesson_example(voc: str | Path | None = None, offline: bool = False, size: int = 224) -> Example:
    """The article's example: a VOC 2007 trainval image with one cow, person, bicycle and motorbike.

    ``voc`` is passed to :func:`find_voc` (None: env var / fastai default). Without VOC
    (or with ``offline=True``), the embedded example ``data/example/example.xml`` is used.
    """
    record, source = None, ""
    root = None if offline else find_voc(voc)
    if root is not None:
        record = find_lesson_record(load_voc(root, "trainval"))
        if record is None:
            warnings.warn(f"{root}: no trainval image has exactly one cow, person, bicycle and motorbike;"
                          " using the embedded offline example", VocNotFoundWarning, stacklevel=2)
        else:
            source = f"Using Pascal VOC 2007 image {record.image_id} ({record.image_path})"
    if record is None:
        record = parse_voc_xml(EXAMPLE_DIR / "example.xml", EXAMPLE_DIR)
        source = ("Using the embedded offline example (data/example: a collage of real photographs shipped"
                  " with scikit-image and matplotlib); README.md, 'Data: Pascal VOC 2007', says how to get VOC")
        asked = voc if voc is not None else os.environ.get(ENV_VAR) or None
        if root is None and not offline and asked is not None:  # a path that was asked for: say it was not used
            named = f"voc={str(voc)!r}" if voc is not None else f"${ENV_VAR}={asked!r}"
            where = Path(asked).expanduser().absolute()
            why = "does not exist" if not where.exists() else "holds no Pascal VOC 2007 in either layout"
            source = f"{named}: Pascal VOC 2007 not found there ({where} {why}). " + source
    image = load_image(record.image_path)
    small, boxes, labels = resize_record(record, size, image=image)
    return Example(image, small, boxes, labels, record.class_names, source, record)


# ---------------------------------------------------------------- images and boxes
def load_image(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB (greyscale and RGBA converted; 16-bit greyscale scaled by 1/257, not
    clipped to white), upright: the EXIF orientation is applied, as viewers do. Errors (a decompression
    bomb included) are one ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    try:
        with Image.open(path) as stored:
            return image_array(stored)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:  # OSError: truncated or corrupt
        raise image_error(path, e) from None


def image_array(image: Image.Image) -> np.ndarray:
    """A PIL image as :func:`load_image` reads a file: ``(H, W, 3)`` uint8 RGB, upright (EXIF orientation
    applied), greyscale / RGBA / palette converted, 16-bit greyscale scaled by 1/257."""
    im = ImageOps.exif_transpose(image)  # upright, as viewers show it (see ssd_lesson.data.voc)
    if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit greyscale (PIL's 32-bit "I" holds it too)
        grey = (np.asarray(im, dtype=np.float64).clip(0, 65535) / 257).round().astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(im.convert("RGB"))


def to_fractions(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(G, 4)`` pixel boxes ``(y0, x0, y1, x1)`` to fractions of the image."""
    return (np.asarray(boxes, np.float32).reshape(-1, 4) / np.array([height, width, height, width], np.float32))


def to_pixels(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(G, 4)`` fraction boxes back to pixels of a ``height x width`` image."""
    return (np.asarray(boxes, np.float32).reshape(-1, 4) * np.array([height, width, height, width], np.float32))


def resize_record(record: Record, size: int = 224, image: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(size, size, 3)`` uint8 image (squished, as in the lesson), ``(G, 4)`` fraction boxes, ``(G,)`` labels."""
    image = load_image(record.image_path) if image is None else image
    small = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return small, to_fractions(record.boxes, record.height, record.width), record.labels.copy()


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an ``(H, W, 3)`` image left-right and its ``(G, 4)`` fraction boxes with it."""
    b = np.asarray(boxes, np.float32).copy()
    b[:, 1], b[:, 3] = 1 - boxes[:, 3], 1 - boxes[:, 1]
    return np.ascontiguousarray(image[:, ::-1]), b


def normalize(image: np.ndarray) -> Tensor:
    """``(H, W, 3)`` uint8 to the model's ``(3, H, W)`` float32, ImageNet mean/std normalised."""
    t = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1).float().div_(255)  # a copy: PIL arrays are read-only
    return (t - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def denormalize(t: Tensor) -> np.ndarray:
    """``(3, H, W)`` normalised image back to ``(H, W, 3)`` uint8 for plotting."""
    t = t.detach().cpu().float() * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    return (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


# ---------------------------------------------------------------- batches
class DetectionDataset(torch.utils.data.Dataset):
    """Items ``(image (3, S, S) float32, boxes (G, 4) float32 fractions, labels (G,) int64)``.

    ``augment=True`` mirrors half the images left-right, boxes included. Whether item
    ``i`` is flipped depends only on ``(seed, epoch, i)``, so it does not matter in
    which order, or in which worker process, items are read; the DataLoader sets ``epoch``.
    """

    def __init__(self, records: Sequence[Record], size: int = 224, augment: bool = False, seed: int = 0):
        self.records, self.size, self.augment, self.seed, self.epoch = list(records), size, augment, seed, 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        image, boxes, labels = resize_record(self.records[i], self.size)
        if self.augment and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5:
            image, boxes = hflip(image, boxes)
        return normalize(image), torch.from_numpy(boxes), torch.from_numpy(labels)


def collate_detections(items: Sequence[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Stack items into ``(B, 3, S, S)``, ``(B, G, 4)`` and ``(B, G)``, G = the most objects of any item.

    Padding rows go at the end of each image: label ``PAD_LABEL`` (-1), box zeros.
    """
    G = max((len(lab) for _, _, lab in items), default=0)
    boxes = torch.zeros(len(items), G, 4, dtype=torch.float32)
    labels = torch.full((len(items), G), PAD_LABEL, dtype=torch.int64)
    for i, (_, b, lab) in enumerate(items):
        boxes[i, :len(lab)], labels[i, :len(lab)] = b, lab
    return torch.stack([im for im, _, _ in items]), boxes, labels


def _detection_dl_class() -> type:
    """fastai ``DataLoader`` that collates with :func:`collate_detections` and has one input.

    Built on first use so that importing this module does not import fastai; kept as a
    module attribute so worker processes can unpickle it.
    """
    if "DetectionDL" not in globals():
        from fastai.data.load import DataLoader

        class DetectionDL(DataLoader):
            n_inp = 1  # the images; the rest of the tuple (gt_boxes, gt_labels) goes to the loss

            def create_batch(self, b):
                return collate_detections(b)

            def before_iter(self):
                super().before_iter()
                self.epochs_started = getattr(self, "epochs_started", -1) + 1
                if isinstance(self.dataset, DetectionDataset):  # fresh flips each epoch
                    self.dataset.epoch = self.epochs_started

        DetectionDL.__module__, DetectionDL.__qualname__ = __name__, "DetectionDL"
        globals()["DetectionDL"] = DetectionDL
    return globals()["DetectionDL"]


def make_dataloaders(train_records: Sequence[Record], valid_records: Sequence[Record], bs: int = 16, size: int = 224,
                     augment: bool = False, seed: int = 0, num_workers: int = 0, device=None):
    """fastai ``DataLoaders`` yielding ``(images, gt_boxes, gt_labels)`` with ``n_inp = 1``.

    So a fastai ``Learner`` calls ``loss_func(preds, gt_boxes, gt_labels)``. Training
    batches are shuffled (and flipped if ``augment``) from ``seed``; the last partial
    training batch is dropped. ``device`` defaults to fastai's ``default_device()``.
    """
    from fastai.data.core import DataLoaders
    from fastai.torch_core import default_device

    if not train_records or not valid_records:
        raise ValueError(f"make_dataloaders: empty split (train has {len(train_records)} records, "
                         f"valid has {len(valid_records)})")

    device = default_device() if device is None else device
    DetectionDL = _detection_dl_class()
    train = DetectionDL(DetectionDataset(train_records, size, augment, seed), bs=bs, shuffle=True,
                        drop_last=len(train_records) > bs, num_workers=num_workers, device=device)
    train.rng = random.Random(seed)  # fastai seeds its shuffling from the global `random`; pin it
    valid = DetectionDL(DetectionDataset(valid_records, size), bs=bs, shuffle=False, num_workers=num_workers, device=device)
    return DataLoaders(train, valid, device=device)
