"""Notebook 9: what the SSD paper's augmentation does to one photograph and its boxes.

Boxes are ``(y0, x0, y1, x1)`` fractions of the image; the augmentation is
:class:`ssd_lesson.data.augment.SSDAugment`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..data.augment import SSDAugment, item_seed
from .draw import GT_COLORS, as_scene, draw_box, panel_figure, show_image

__all__ = ["augment_figure"]


def augment_figure(example: Any, n: int = 8, seed: int = 0, ncols: int = 3, panel: float = 2.7,
                   augment: SSDAugment | None = None) -> Figure:
    """The photograph with its boxes, then ``n`` draws of the SSD augmentation, each with its boxes.

    ``example``: a ``data.Example`` (its full-size image), a ``drawing.draw.Scene`` or ``(image, boxes, labels)``.
    The panel titled epoch ``k`` is what the training would make of this image, as item 0 of a
    ``DetectionDataset(..., augment="ssd", seed=seed)``, in its ``k``-th epoch: what the model would see
    of it in ``n`` epochs. Each object keeps its colour and name in every panel, so one can follow it
    through the zoom-out, the crop and the mirror; an object the crop dropped is missing. Each title
    says which steps were applied.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    full_size = hasattr(example, "image224")  # an Example: its photograph as read, not the model-sized copy
    scene = as_scene((example.image, example.boxes, example.labels) if full_size else example)
    augment = SSDAugment() if augment is None else augment
    names = [scene.class_names[int(lab)] for lab in scene.labels]
    fig, axes = panel_figure(n + 1, ncols, panel)
    draw_objects(axes[0], scene.image, scene.boxes, np.arange(len(names)), names)
    axes[0].set_title("the photograph\n" + (f"{len(names)} objects" if len(names) != 1 else "1 object"))
    for epoch, ax in enumerate(axes[1:n + 1]):
        # the labels passed are the objects' indices: what comes out says which object each box is
        out = augment(scene.image, scene.boxes, np.arange(len(names)), item_seed(seed, epoch, 0))
        draw_objects(ax, out.image, out.boxes, out.labels, names)
        first, *rest = out.steps or ("unchanged",)
        ax.set_title(f"epoch {epoch + 1}: {first}\n" + ", ".join(rest))  # two lines in every panel: rows align
    return fig


def draw_objects(ax: Any, image: np.ndarray, boxes: np.ndarray, objects: np.ndarray, names: list[str]) -> None:
    """``image`` with each box in its object's colour, named; ``objects``: each box's index into ``names``."""
    show_image(ax, image)
    for box, i in zip(boxes, objects):
        draw_box(ax, box, GT_COLORS[int(i) % len(GT_COLORS)], names[int(i)], lw=2, fontsize=8,
                 drop_label_if_crowded=True, gid=f"object:{int(i)}")
