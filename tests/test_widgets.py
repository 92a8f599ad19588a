"""The widgets, driven as a learner would, display exactly what the library computes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssd_lesson import activations_to_boxes, make_anchors, ssd_loss
from ssd_lesson.lesson import example_activations, load_example
from ssd_lesson.widgets import BoxWidget, ThresholdWidget

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def case():
    ex = load_example(offline=True)  # what the notebooks use without VOC
    anchors = make_anchors()
    cl, ba, _ = example_activations(ex, anchors, seed=0, checkpoint=False, verbose=False)
    return ex, anchors, cl, ba


def drawn_box(fig, a):
    ax = fig.axes[0]
    (p,) = [p for p in ax.patches if p.get_gid() == f"box:{a}"]
    x0, y0 = p.get_xy()
    return torch.tensor([y0, x0, y0 + p.get_height(), x0 + p.get_width()], dtype=torch.float32)


def test_box_widget_activation_at_its_bound(case):
    ex, anchors, _, ba = case
    w = BoxWidget(ex, anchors, ba, index=11)  # as notebook 3 builds it
    fig, first_png = w.figure, w.image.value
    assert bytes(first_png).startswith(PNG)
    torch.testing.assert_close(w.activations, ba[0, 11])  # starts from the model's activations
    w.set(dx=50, dh=-50)  # beyond the slider: clamped to its bound
    limit = w.sliders["dx"].max
    assert w.sliders["dx"].value == limit and w.sliders["dh"].value == -limit
    want_actns = ba[0].clone()
    want_actns[11, 1], want_actns[11, 2] = limit, -limit
    want = activations_to_boxes(want_actns.unsqueeze(0), anchors)[0, 11]
    torch.testing.assert_close(w.pred_box, want)
    torch.testing.assert_close(drawn_box(w.figure, 11), want, atol=1e-6, rtol=0)  # what is drawn is what is computed
    # at the bound the centre has moved (almost exactly) half a cell right, the height shrunk to 0.5x
    cy, cx, h, _ = anchors.centers_hw[11].tolist()
    cell = anchors.grid_sizes[11].item()
    assert (want[1] + want[3]) / 2 - cx == pytest.approx(math.tanh(limit) * cell / 2, abs=1e-6)
    assert (want[2] - want[0]) == pytest.approx(h * (1 - math.tanh(limit) / 2), abs=1e-6)
    assert w.figure is fig and len(fig.axes) == 1 and w.image.value != first_png  # same figure, redrawn
    assert "predicted box (y0, x0, y1, x1)" in w.readout.value


def test_box_widget_picks_another_box(case):
    ex, anchors, _, ba = case
    w = BoxWidget(ex, anchors, ba, index=11)
    w.set(index=150, dy=-1.0)
    assert w.index == 150 and [s.value for s in w.sliders.values()][1:] == pytest.approx(ba[0, 150, 1:].tolist(), abs=1e-6)
    torch.testing.assert_close(w.anchor_box, anchors.corners[150])
    want = ba[0, 150].clone()
    want[0] = -1.0
    torch.testing.assert_close(w.pred_box, activations_to_boxes(want.expand(189, 4).unsqueeze(0), anchors)[0, 150])
    w.set(index=11)  # the edit to box 11 is remembered per box
    torch.testing.assert_close(w.activations, ba[0, 11])
    with pytest.raises(ValueError, match="unknown activation"):
        w.set(dz=1)


def test_threshold_widget_follows_the_library(case):
    ex, anchors, cl, ba = case
    w = ThresholdWidget(ex, anchors, cl, ba, dpi=30)  # as notebook 5 builds it (0.4 to start)
    fig = w.figure
    _, gb, gl = ex.batch()
    for thr in (0.4, 0.5, 0.1):
        if thr != 0.4:
            w.set(thr)
        res = ssd_loss(cl, ba, gb, gl, anchors, iou_threshold=thr)
        assert w.threshold == pytest.approx(thr)
        assert w.positive_count == int(res.match.positive.sum())
        assert torch.equal(w.target_labels, res.target_labels[0])
        assert f"<b>{w.positive_count}</b> of 189" in w.readout.value
        labels = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert sum(t.endswith(": bg") for t in labels) == 189 - w.positive_count  # Fig. 6 redrawn to match
        assert f"{w.positive_count} positive boxes" in fig._suptitle.get_text()
    assert w.figure is fig and bytes(w.image.value).startswith(PNG)
    # a lower threshold can only add positives
    assert w.positive_count >= int(ssd_loss(cl, ba, gb, gl, anchors, iou_threshold=0.5).match.positive.sum())
    np.testing.assert_array_equal(w.slider.value, 0.1)
