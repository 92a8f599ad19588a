"""The training images as the model sees them: a dataset of items, their batches, and fastai's DataLoaders.

Conventions (the core library and the loss rely on them):

* A :class:`~ssd_lesson.data.voc.Record` holds boxes ``(y0, x0, y1, x1)`` in **pixels** of the
  original image (see :mod:`ssd_lesson.data.voc`, which reads Pascal VOC).
* Training batches hold boxes as **fractions** of the image (0..1), so resizing
  the image never changes them (:mod:`ssd_lesson.data.transforms`).
* A batch is ``(images (B, 3, S, S) float32, gt_boxes (B, G, 4) float32,
  gt_labels (B, G) int64)``, with G the batch's largest object count; shorter
  images are padded at the end with label ``PAD_LABEL`` (-1) and box zeros. An image
  with no objects is all padding, and a batch with no objects at all has G = 0.

fastai is imported only by the DataLoaders, so importing this module stays light.
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..core.matching import PAD_LABEL
from .augment import SSDAugment, augment_mode, item_seed
from .transforms import hflip, load_image, normalize, resize_record, to_fractions, to_pixels
from .voc import BACKGROUND, VOC_CLASSES, Record

__all__ = ["DetectionDataset", "collate_detections", "make_dataloaders",
           # the notebooks import these three from here too; they live in transforms and voc
           "to_pixels", "BACKGROUND", "VOC_CLASSES"]


class DetectionDataset(torch.utils.data.Dataset):
    """Items ``(image (3, S, S) float32, boxes (G, 4) float32 fractions, labels (G,) int64)``.

    ``augment`` (:mod:`ssd_lesson.data.augment`): ``"none"`` (or ``False``); ``"flip"`` (or ``True``) mirrors
    half the images left-right, boxes included; ``"ssd"`` applies the SSD paper's augmentation
    (:class:`~ssd_lesson.data.augment.SSDAugment`), after which an image may hold fewer objects, or none.
    What item ``i`` gets depends only on ``(seed, epoch, i)``, so it does not matter in which order,
    or in which worker process, items are read; the DataLoader sets ``epoch``.
    """

    def __init__(self, records: Sequence[Record], size: int = 224, augment: bool | str = False, seed: int = 0):
        self.records, self.size, self.seed, self.epoch = list(records), size, seed, 0
        self.augment = augment_mode(augment)
        self.ssd = SSDAugment(size) if self.augment == "ssd" else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        if self.ssd is not None:  # from the full-size image: the crop and zoom-out work on its pixels
            rec = self.records[i]
            out = self.ssd(load_image(rec.image_path), to_fractions(rec.boxes, rec.height, rec.width), rec.labels,
                           item_seed(self.seed, self.epoch, i))
            return normalize(out.image), torch.from_numpy(out.boxes), torch.from_numpy(out.labels)
        image, boxes, labels = resize_record(self.records[i], self.size)
        if self.augment == "flip" and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5:
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
                if isinstance(self.dataset, DetectionDataset):  # fresh augmentation each epoch
                    self.dataset.epoch = self.epochs_started

        DetectionDL.__module__, DetectionDL.__qualname__ = __name__, "DetectionDL"
        globals()["DetectionDL"] = DetectionDL
    return globals()["DetectionDL"]


def make_dataloaders(train_records: Sequence[Record], valid_records: Sequence[Record], bs: int = 16, size: int = 224,
                     augment: bool | str = False, seed: int = 0, num_workers: int = 0, device=None):
    """fastai ``DataLoaders`` yielding ``(images, gt_boxes, gt_labels)`` with ``n_inp = 1``.

    So a fastai ``Learner`` calls ``loss_func(preds, gt_boxes, gt_labels)``. Training
    batches are shuffled and augmented (``augment``: ``"none"``, ``"flip"`` or ``"ssd"``, see
    :mod:`ssd_lesson.data.augment`) from ``seed``; the last partial
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
