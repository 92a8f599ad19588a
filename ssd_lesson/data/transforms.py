"""Images and their boxes: a file read into pixels, boxes between pixels and fractions, and the
transforms the batches apply (resize, mirror, normalise).

A :class:`~ssd_lesson.data.voc.Record` holds boxes ``(y0, x0, y1, x1)`` in **pixels** of the original
image; the model's boxes are **fractions** of the image (0..1), so resizing the image never changes them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .voc import Record, image_error

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "load_image", "image_array", "to_fractions", "to_pixels", "resize_record",
           "hflip", "normalize", "denormalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
