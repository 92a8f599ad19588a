"""The lesson's example: the article's image (one cow, person, bicycle and motorbike), ready to dissect.

Boxes are ``(y0, x0, y1, x1)`` fractions of the image, so the original image and its 224x224 copy share them.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .paths import EXAMPLE_DIR
from .transforms import load_image, normalize, resize_record
from .voc import ENV_VAR, Record, VocNotFoundWarning, find_voc, load_voc, parse_voc_xml

__all__ = ["LESSON_OBJECTS", "Example", "find_lesson_record", "lesson_example"]

# The article's image: exactly these objects (count per class).
LESSON_OBJECTS = Counter({"cow": 1, "person": 1, "bicycle": 1, "motorbike": 1})


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
