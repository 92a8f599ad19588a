"""The widgets of notebooks 02, 04, 06 and 10, driven as a learner would: their readouts are the
library's numbers (checked against independent references where there is one), every keyboard step
changes the figure, and a mistake is refused with the widget left as it was."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from matplotlib.colors import to_hex
from PIL import Image

from ssd_lesson import LossOptions, make_anchors, ssd_loss
from ssd_lesson.core.anchors import AnchorSpec
from ssd_lesson.course.lesson import example_activations, load_example
from ssd_lesson.course.widgets import DetectionWidget, FocalWidget
from ssd_lesson.course.widgets import GRID_CHOICES, RATIO_CHOICES, ZOOM_CHOICES, AnchorWidget, IouWidget
from ssd_lesson.data.voc import VOC_CLASSES
from ssd_lesson.drawing import plots
from ssd_lesson.model.infer import decode
from ssd_lesson.model.metrics import detection_map

SCREEN = (1440, 900)


@pytest.fixture(scope="module")
def case():
    ex = load_example(offline=True)
    anchors = make_anchors()
    cl, ba, _ = example_activations(ex, anchors, seed=0, checkpoint=False, verbose=False)
    return ex, anchors, cl, ba


def fits(w):
    size = Image.open(io.BytesIO(bytes(w.image.value))).size
    assert (w.image.layout.width, w.image.layout.height) == (f"{size[0]}px", f"{size[1]}px") and size == w.pixel_size
    assert size[0] <= SCREEN[0] - 400 and size[1] <= SCREEN[1] - 300


def steps_change_the_figure(w, sliders):
    for s in sliders:
        for d in (+1, -1):
            before = bytes(w.image.value)
            new = max(s.min, min(s.max, s.value + d * s.step))
            if new != s.value:
                s.value = new
                assert bytes(w.image.value) != before, f"{s.description}: one step left the figure as it was"


def test_anchor_widget_names_each_grids_colour_and_count_in_a_legend(case):
    w = AnchorWidget(case[0], dpi=50)
    for spec in (AnchorSpec(), AnchorSpec.ssd300()):
        w.set(ssd300=spec != AnchorSpec())
        anchors = make_anchors(spec)
        want = [f"{g}x{g} grid: {int((anchors.grid_index == i).sum()):,}" for i, g in enumerate(spec.grids)]
        assert [t.get_text() for t in w.legend.get_texts()] == want
        named = [to_hex(ln.get_color()) for ln in w.legend.get_lines()]
        assert len(set(named)) == len(spec.grids)  # one colour per grid, none shared
        assert {to_hex(c) for c in w.boxes.get_colors()} == set(named)  # the boxes drawn in exactly those


def test_anchor_widget_counts_what_make_anchors_makes(case):
    ex = case[0]
    w = AnchorWidget(ex, dpi=50)
    fits(w)
    assert w.count == 189 == 4 * 4 * 9 + 2 * 2 * 9 + 9 and "<b>189</b> anchor boxes = 4²·9 + 2²·9 + 1²·9" in w.readout.value
    for grids, zooms, ratios in ((GRID_CHOICES[3], ZOOM_CHOICES[2], RATIO_CHOICES[2]), (GRID_CHOICES[4], ZOOM_CHOICES[1],
                                                                                      RATIO_CHOICES[1])):
        before = bytes(w.image.value)
        w.set(grids=grids, zooms=zooms, ratios=ratios)
        want = sum(g * g for g in grids) * len(zooms) * len(ratios)
        assert w.count == want == len(make_anchors(AnchorSpec(grids=grids, zooms=zooms, ratios=ratios)))
        assert f"<b>{want:,}</b> anchor boxes" in w.readout.value and bytes(w.image.value) != before
        assert len(w.boxes.get_segments()) == want  # every box drawn
    w.set(ssd300=True)
    assert w.count == 8732 and "<b>8,732</b>" in w.readout.value and w.grids.disabled
    w.set(ssd300=False, grids=(4, 2, 1), zooms=ZOOM_CHOICES[0], ratios=RATIO_CHOICES[0])
    assert w.count == 189
    for c in (w.grids, w.zooms, w.ratios):  # one ArrowDown in each dropdown changes the figure
        before = bytes(w.image.value)
        c.index = (c.index + 1) % len(c.options)
        assert bytes(w.image.value) != before
    with pytest.raises(ValueError, match=r"grids \(3, 1\) is not one of the choices"):
        w.set(grids=(3, 1))


def test_iou_widget_states_the_iou_torchvision_computes(case):
    ex = case[0]
    w = IouWidget(ex, gt=0, dpi=50)
    fits(w)
    for move in ({}, {"cx": 0.5, "cy": 0.5}, {"h": 0.1, "w": 0.9}, {"cx": 0.98, "cy": 0.98, "h": 0.02, "w": 0.02}):
        w.set(**move)
        a, b = w.fixed[None][:, [1, 0, 3, 2]], w.box[None][:, [1, 0, 3, 2]]  # torchvision's (x0, y0, x1, y1)
        want = float(torchvision.ops.box_iou(a.double(), b.double())[0, 0])
        assert w.iou == pytest.approx(want, abs=1e-6) and f"<b>{want:.4f}</b>" in w.readout.value
        y0, x0, y1, x1 = w.fixed.tolist()
        q0, p0, q1, p1 = w.box.tolist()
        inter = max(0.0, min(y1, q1) - max(y0, q0)) * max(0.0, min(x1, p1) - max(x0, p0))
        assert w.intersection == pytest.approx(inter, abs=1e-6)
        assert w.inter.get_width() * w.inter.get_height() == pytest.approx(inter, abs=1e-6)  # the fill is the intersection
    steps_change_the_figure(w, w.sliders.values())
    before = (bytes(w.image.value), w.box.clone())
    with pytest.raises(ValueError, match="cx = nan is not a number; the slider takes 0.02 to 0.98"):
        w.set(cy=0.5, cx=float("nan"))
    assert bytes(w.image.value) == before[0] and torch.equal(w.box, before[1])


def _focal_by_hand(logits, target, alpha, gamma):
    """Each box's focal loss from its definition: sum over classes of -w (1 - p_t)^gamma log p_t, / C."""
    C = logits.shape[-1] - 1
    x = logits[:, :C].double()
    y = F.one_hot(target, C + 1)[:, :C].double()
    p = torch.sigmoid(x)
    p_t = torch.where(y == 1, p, 1 - p)
    w = torch.where(y == 1, torch.tensor(alpha, dtype=torch.float64), torch.tensor(1 - alpha, dtype=torch.float64))
    return (-w * (1 - p_t) ** gamma * torch.log(p_t)).sum(1) / C


def test_focal_widget_matches_its_definition_and_ssd_loss(case):
    ex, anchors, cl, ba = case
    w = FocalWidget(ex, anchors, cl, ba, dpi=50)
    fits(w)
    _, gb, gl = ex.batch()
    for gamma, alpha in ((1.0, 0.25), (2.0, 0.5), (0.0, 0.5), (5.0, 1.0)):
        w.set(gamma=gamma, alpha=alpha)
        res = ssd_loss(cl, ba, gb, gl, anchors, classification="focal", focal_alpha=alpha, focal_gamma=gamma)
        assert w.total == pytest.approx(float(res.classification[0]), rel=1e-5)
        np.testing.assert_allclose(w.focal, _focal_by_hand(cl[0], res.target_labels[0], alpha, gamma).numpy(),
                                   rtol=1e-4, atol=1e-9)
        assert f"focal <b>{w.total:.4f}</b>" in w.readout.value
        order = np.argsort(-w.focal, kind="stable")[:5].tolist()
        assert w.top == order and w.readout.value.split("largest focal loss: ")[1].startswith(f"{order[0]} (")
    w.set(gamma=0.0, alpha=0.5)
    np.testing.assert_allclose(w.focal, w.bce / 2, rtol=1e-6)  # gamma 0, alpha 0.5: half the BCE
    steps_change_the_figure(w, [w.gamma_slider, w.alpha_slider])
    with pytest.raises(ValueError, match="gamma = nan"):
        w.set(gamma=float("nan"))


def test_detection_widget_draws_what_decode_returns_and_its_map(case):
    ex, anchors, cl, ba = case
    _, gb, gl = ex.batch()
    image = plots.as_scene(ex).image
    w = DetectionWidget([image], cl, ba, anchors, [gb[0]], [gl[0]], VOC_CLASSES, dpi=50)
    fits(w)
    for score, nms in ((0.25, 0.5), (0.1, 0.7), (0.6, 0.3)):
        w.set(score=score, nms_iou=nms)
        d = decode(cl, ba, anchors, score_threshold=score, nms_iou=nms)
        assert torch.equal(w.detections.boxes, d[0].boxes) and torch.equal(w.detections.labels, d[0].labels)
        m = detection_map(d, [gb[0]], [gl[0]])
        assert w.map == m and f"mAP@0.5 <b>{m['map_50']:.4f}</b>" in w.readout.value
        assert f"<b>{len(d[0].scores)}</b> detections" in w.readout.value
        drawn = [p for p in w.ax.patches if p.get_visible()]
        assert len(drawn) == len(d[0].scores)  # one outline per detection
    steps_change_the_figure(w, [w.score_slider, w.nms_slider])
    with pytest.raises(ValueError, match="score = nan"):
        w.set(score=math.nan)
    with pytest.raises(ValueError, match="shown 1 is out of range: images 0 to 0"):
        DetectionWidget([image], cl, ba, anchors, [gb[0]], [gl[0]], VOC_CLASSES, shown=1)


def test_several_controls_set_at_once_redraw_once(case):
    """Each widget's ``set`` of several controls draws one frame, not one per control."""
    ex, anchors, cl, ba = case
    _, gb, gl = ex.batch()
    detections = DetectionWidget([plots.as_scene(ex).image], cl, ba, anchors, [gb[0]], [gl[0]], VOC_CLASSES, dpi=30)
    for widget, change in ((FocalWidget(ex, anchors, cl, ba, dpi=30), dict(gamma=2.0, alpha=0.5)),
                           (detections, dict(score=0.3, nms_iou=0.6)),
                           (AnchorWidget(ex, dpi=30), dict(grids=(8, 4, 2, 1), zooms=(1.0,))),
                           (IouWidget(ex, dpi=30), dict(cy=0.4, cx=0.6, h=0.3, w=0.2))):
        calls = []
        real = widget._later.redraw
        widget._later.redraw = lambda real=real: calls.append(1) or real()
        widget.set(**change)
        assert calls == [1], type(widget).__name__


def test_focal_widget_takes_gamma_and_alpha_from_one_place(case):
    """The sliders start at the keywords or at the options' focal_gamma/focal_alpha, never both."""
    ex, anchors, cl, ba = case
    w = FocalWidget(ex, anchors, cl, ba, dpi=30)
    assert (w.gamma, w.alpha) == (1.0, 0.25)  # the lesson's
    w = FocalWidget(ex, anchors, cl, ba, options=LossOptions(focal_gamma=2.0, focal_alpha=0.5), dpi=30)
    assert (w.gamma, w.alpha) == (2.0, 0.5)
    assert (FocalWidget(ex, anchors, cl, ba, gamma=3.0, dpi=30).gamma, w.alpha) == (3.0, 0.5)
    with pytest.raises(TypeError, match=r"FocalWidget: got both options=.* and focal_gamma=2.0"):
        FocalWidget(ex, anchors, cl, ba, options=LossOptions(), gamma=2.0, dpi=30)
    with pytest.raises(TypeError, match=r"FocalWidget: got both options=.* and focal_alpha=0.5"):
        FocalWidget(ex, anchors, cl, ba, options=LossOptions(), alpha=0.5, dpi=30)
