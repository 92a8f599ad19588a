"""Notebook 9's augmentation figure: the photograph, then what the training's dataset makes of it epoch by epoch,
each box drawn where the dataset's item puts it and named after its object."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from ssd_lesson.course.lesson import load_example
from ssd_lesson.data.images import DetectionDataset
from ssd_lesson.data.voc import VOC_CLASSES
from ssd_lesson.drawing.augment_figures import augment_figure


def drawn_boxes(ax) -> tuple[np.ndarray, list[int]]:
    """The ``(y0, x0, y1, x1)`` boxes of a panel's object rectangles, and which object each one is."""
    rects = [p for p in ax.patches if isinstance(p, Rectangle) and (p.get_gid() or "").startswith("object:")]
    boxes = [(r.get_y(), r.get_x(), r.get_y() + r.get_height(), r.get_x() + r.get_width()) for r in rects]
    return np.array(boxes, float).reshape(-1, 4), [int(r.get_gid().split(":")[1]) for r in rects]


def test_each_panel_is_the_datasets_item_of_that_epoch():
    ex = load_example(offline=True)
    fig = augment_figure(ex, n=6, seed=4, ncols=3)
    axes = fig.axes
    boxes, objects = drawn_boxes(axes[0])
    np.testing.assert_allclose(boxes, ex.boxes, atol=1e-6)
    assert objects == list(range(len(ex.labels))) and axes[0].get_title() == "the photograph\n4 objects"
    texts = {t.get_text() for t in axes[0].texts}
    assert texts == {VOC_CLASSES[lab] for lab in ex.labels}
    ds = DetectionDataset([ex.record], size=224, augment="ssd", seed=4)
    for epoch, ax in enumerate(axes[1:7]):
        ds.epoch = epoch
        _, want_boxes, want_labels = ds[0]
        boxes, objects = drawn_boxes(ax)
        np.testing.assert_allclose(boxes, want_boxes.numpy(), atol=1e-6)
        assert ex.labels[objects].tolist() == want_labels.tolist()  # each box named after its own object
        assert ax.get_title().startswith(f"epoch {epoch + 1}: ")
    assert not axes[7].axison and not axes[8].axison and len(axes) == 9  # the spare panels are blank
    with pytest.raises(ValueError, match="n must be at least 1"):
        augment_figure(ex, n=0)
