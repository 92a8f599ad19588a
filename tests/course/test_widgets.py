"""The widgets, driven as a learner would, display exactly what the library computes, and
every keyboard step of every control changes the figure shown (at its own pixel size)."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection
from PIL import Image

from ssd_lesson import FORCED_OVERLAP, LossOptions, activations_to_boxes, loss_gradients, make_anchors, ssd_loss
from ssd_lesson.course.widgets.follow import FollowBox, follow_box_figure, follow_box_text
from ssd_lesson.course.lesson import example_activations, load_example
from ssd_lesson.drawing.tables import box_class_losses
from ssd_lesson.course.widgets import BoxWidget, ThresholdWidget

PNG = b"\x89PNG"
SCREEN = (1440, 900)


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


def shown_at_own_size(w):
    size = Image.open(io.BytesIO(bytes(w.image.value))).size
    assert (w.image.layout.width, w.image.layout.height) == (f"{size[0]}px", f"{size[1]}px") and size == w.pixel_size
    assert size[0] <= SCREEN[0] - 500 and size[1] <= SCREEN[1] - 300  # room for the controls on one screen
    return size


def test_box_widget_starts_from_the_model_and_clamps_at_its_bound(case):
    ex, anchors, _, ba = case
    w = BoxWidget(ex, anchors, ba, index=11)  # as notebook 3 builds it
    fig, first_png = w.figure, w.image.value
    assert bytes(first_png).startswith(PNG)
    shown_at_own_size(w)
    torch.testing.assert_close(w.activations, ba[0, 11])  # starts from the model's activations
    assert w.sliders["dx"].value == pytest.approx(math.tanh(float(ba[0, 11, 1])))  # the slider shows tanh
    w.set(dx=50, dh=-50)  # beyond the slider: clamped to its bound
    limit = w.sliders["dx"].max
    assert limit == w.limit == 0.99 and w.sliders["dx"].value == limit and w.sliders["dh"].value == -limit
    want_actns = ba[0].clone()
    want_actns[11, 1], want_actns[11, 2] = math.atanh(limit), -math.atanh(limit)
    want = activations_to_boxes(want_actns.unsqueeze(0), anchors)[0, 11]
    torch.testing.assert_close(w.pred_box, want)
    torch.testing.assert_close(drawn_box(w.figure, 11), want, atol=1e-6, rtol=0)  # what is drawn is what is computed
    cy, cx, h, _ = anchors.centers_hw[11].tolist()
    cell = anchors.grid_sizes[11].item()
    assert (want[1] + want[3]) / 2 - cx == pytest.approx(limit * cell / 2, abs=1e-6)  # 0.495 cell right
    assert (want[2] - want[0]) == pytest.approx(h * (1 - limit / 2), abs=1e-6)
    assert w.figure is fig and w.image.value != first_png  # same figure, redrawn
    assert "predicted box (y0, x0, y1, x1)" in w.readout.value
    assert "centre 0.495 cell right" in w.readout.value  # the readout says the direction the box moved
    w.set(dx=-0.5, dy=0.0)
    assert "centre 0.250 cell left" in w.readout.value and "centre on the anchor" in w.readout.value
    assert (w.pred_box[1] + w.pred_box[3]).item() / 2 < cx  # and left it is
    w.set_activations(dy=0.5)
    assert w.activations[0].item() == pytest.approx(0.5) and w.sliders["dy"].value == pytest.approx(math.tanh(0.5))


def test_box_widget_inset_names_activations_at_one_point_once(case):
    ex, anchors, _, ba = case
    w = BoxWidget(ex, anchors, ba, index=99, dpi=40)
    limit = w.sliders["dx"].max
    w.set(dy=0, dx=limit, dh=-limit, dw=limit)  # dx and dw at the same bound: one point of the tanh curve
    w.figure.canvas.draw()
    names = sorted(t.get_text() for t in w.inset.texts if t.get_visible())
    assert names == ["dh", "dx, dw", "dy"]
    sizes = sorted(float(c.get_sizes()[0]) for c in w.inset.collections if isinstance(c, PathCollection))
    assert len(sizes) == 4 and sizes[-1] > sizes[-2]  # every dot drawn; the two at one point nest, larger under


def test_box_widget_picks_another_box(case):
    ex, anchors, _, ba = case
    w = BoxWidget(ex, anchors, ba, index=11)
    w.set(index=150, dy=-0.5)
    assert w.index == 150
    assert [s.value for s in w.sliders.values()][1:] == pytest.approx(torch.tanh(ba[0, 150, 1:]).tolist(), abs=1e-6)
    torch.testing.assert_close(w.anchor_box, anchors.corners[150])
    want = ba[0, 150].clone()
    want[0] = math.atanh(-0.5)
    torch.testing.assert_close(w.pred_box, activations_to_boxes(want.expand(189, 4).unsqueeze(0), anchors)[0, 150])
    w.set(index=11)  # the edit to box 150 is remembered per box; box 11 is as it was
    torch.testing.assert_close(w.activations, ba[0, 11])
    with pytest.raises(ValueError, match="unknown activation"):
        w.set(dz=1)


@pytest.mark.parametrize("index", [99, 188])
def test_every_keyboard_step_of_every_slider_changes_the_figure(case, index):
    """Even where the activations saturate tanh (as the first-step model's box 99 did: |tanh| >= 0.987)."""
    ex, anchors, _, ba = case
    saturated = ba.clone()
    saturated[0, index] = torch.tensor([-4.19, 3.5, -3.2, 2.9])
    w = BoxWidget(ex, anchors, saturated, index=index, dpi=60)
    for k, s in w.sliders.items():
        for direction in (+1, -1):
            before, box_before = bytes(w.image.value), w.pred_box.clone()
            new = max(s.min, min(s.max, s.value + direction * s.step))  # one ArrowRight / ArrowLeft
            if new == s.value:
                continue  # at the slider's end: the key does nothing
            s.value = new
            moved = (w.pred_box - box_before).abs().max().item()
            assert bytes(w.image.value) != before, f"box {index}, {k}: one step left the image as it was"
            assert moved > 1e-3, f"box {index}, {k}: one step moved the box by {moved}"


def test_threshold_widget_follows_the_library(case):
    ex, anchors, cl, ba = case
    w = ThresholdWidget(ex, anchors, cl, ba, dpi=40)  # as notebook 5 builds it (0.4 to start)
    fig = w.figure
    _, gb, gl = ex.batch()
    for thr in (0.4, 0.5, 0.1):
        if thr != 0.4:
            w.set(thr)
        res = ssd_loss(cl, ba, gb, gl, anchors, iou_threshold=thr)
        assert w.threshold == pytest.approx(thr)
        assert w.positive_count == int(res.match.positive.sum())
        assert torch.equal(w.target_labels, res.target_labels[0])
        assert (f"<b>{w.positive_count}</b> of 189 boxes positive" in w.readout.value
                and f"classification {float(res.classification[0]):.4f}, regression {float(res.regression[0]):.4f}"
                in w.readout.value)
        assert sorted(w.drawn) == torch.nonzero(res.match.positive[0]).flatten().tolist()  # only the positives drawn
        for a in w.drawn:
            torch.testing.assert_close(drawn_box(fig, a), res.pred_boxes[0, a], atol=1e-6, rtol=0)
    assert w.figure is fig and bytes(w.image.value).startswith(PNG)
    assert w.sweep_counts[w.sweep_thresholds.index(0.5)] == int(
        ssd_loss(cl, ba, gb, gl, anchors, iou_threshold=0.5).match.positive.sum())
    np.testing.assert_array_equal(w.slider.value, 0.1)


def test_every_threshold_step_changes_the_figure(case):
    ex, anchors, cl, ba = case
    w = ThresholdWidget(ex, anchors, cl, ba, dpi=40)
    shown_at_own_size(w)
    for _ in range(3):
        before = bytes(w.image.value)
        w.slider.value = round(w.slider.value + w.slider.step, 2)  # one ArrowRight
        assert bytes(w.image.value) != before


# ---------------------------------------------------------------- FollowBox
@pytest.fixture(scope="module")
def library(case):
    ex, anchors, cl, ba = case
    _, gb, gl = ex.batch()
    cl_, ba_ = cl.clone().requires_grad_(), ba.clone().requires_grad_()
    res = ssd_loss(cl_, ba_, gb, gl, anchors)
    return res, loss_gradients(res, cl_)[0], box_class_losses(cl_, res)


def test_follow_box_readout_states_the_library(case, library):
    ex, anchors, cl, ba = case
    res, grad, clas = library
    m = res.match
    forced = int(torch.nonzero(m.gt_overlap[0] == FORCED_OVERLAP)[0])
    positive = [a for a in torch.nonzero(m.positive[0]).flatten().tolist() if m.gt_overlap[0, a] != FORCED_OVERLAP]
    background = int(torch.nonzero(~m.positive[0])[0])
    w = FollowBox(ex, anchors, cl, ba, index=forced, dpi=40)
    shown_at_own_size(w)
    for a in [forced, *positive[:1], background, 188]:
        w.set(a)
        f, text = w.followed, w.readout.value
        assert f.index == a and (w.grid.value, w.row.value, w.col.value, w.scale.value) == tuple(anchors.info(a)[1:5])
        assert f"box {a}: " in text and f.info == anchors.info(a)
        np.testing.assert_allclose(f.pred_box, res.pred_boxes[0, a].tolist(), atol=1e-6)
        assert f"predicted box   (y0, x0, y1, x1) = ({', '.join(f'{v:.4f}' for v in res.pred_boxes[0, a].tolist())})" in text
        assert ", ".join(f"{v:.4f}" for v in res.ious[0, a].tolist()) == ", ".join(t.split()[-1] for t in
                                                                                 text.split("ground truth: ")[1].split("\n")[0].split(", "))
        assert f"gt_idx {int(m.gt_idx[0, a])}, gt_overlap {float(m.gt_overlap[0, a]):.4f}" in text
        assert f.forced == (a == forced or bool(m.gt_overlap[0, a] == FORCED_OVERLAP)) and ("forced" in text) == f.forced
        assert f.positive == bool(m.positive[0, a]) and f.target_label == int(res.target_labels[0, a])
        assert f"its BCE {clas['BCE'][a]:.4f} of {float(res.classification[0].detach()):.4f}" in text
        np.testing.assert_allclose(f.grad, grad[a].tolist(), atol=1e-9)
        if f.positive:
            mae = float((res.pred_boxes[0, a] - res.target_boxes[0, a]).abs().mean())
            n = int(m.positive.sum())
            assert f"corner MAE {mae:.4f} / {n} positives = {mae / n:.4f}" in text and f"target class: {f.target_name}" in text
            assert any(abs(g) > 0 for g in f.grad)
        else:
            assert "target class: background" in text and "regression: no share" in text and f.grad == [0.0] * 4
    # the positives' L1 shares add up to the regression loss
    shares = [w.data.box(a).l1 for a in torch.nonzero(m.positive[0]).flatten().tolist()]
    assert sum(shares) == pytest.approx(float(res.regression[0].detach()), abs=1e-6)


def test_follow_box_dropdowns_pick_the_box_and_static_copy_matches(case):
    ex, anchors, cl, ba = case
    w = FollowBox(ex, anchors, cl, ba, index=99, dpi=40)
    before = bytes(w.image.value)
    w.grid.value = 2
    i = anchors.info(w.index)
    assert (i.grid, i.row, i.col, i.scale) == (2, 1, 1, 0) and bytes(w.image.value) != before  # row/col clipped to the grid
    w.scale.value = 4
    assert anchors.info(w.index).scale == 4 and anchors.info(w.index).grid == 2
    w.set(99)
    assert w.readout.value.split(">", 1)[1].startswith(follow_box_text(ex, anchors, cl, ba, 99))
    fig = follow_box_figure(ex, anchors, cl, ba, 99)
    assert [p.get_gid() for p in fig.axes[0].patches if p.get_gid() == "box:99"] == ["box:99"]


def _outline_distance_by_sampling(box, y, x, n=4001):
    """Distance from ``(y, x)`` to the rectangle's outline, from points every 1/4000 along its sides."""
    y0, x0, y1, x1 = box
    t = np.linspace(0, 1, n)
    ys = np.concatenate([np.full(n, y0), np.full(n, y1), y0 + t * (y1 - y0), y0 + t * (y1 - y0)])
    xs = np.concatenate([x0 + t * (x1 - x0), x0 + t * (x1 - x0), np.full(n, x0), np.full(n, x1)])
    return float(np.hypot(ys - y, xs - x).min())


def test_nearest_outline_agrees_with_sampled_outlines():
    from ssd_lesson.course.widgets.follow import nearest_outline

    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        c, s = torch.rand(12, 2, generator=g), torch.rand(12, 2, generator=g) * 0.5 + 0.05
        boxes = torch.cat([c - s / 2, c + s / 2], 1).numpy()
        y, x = (torch.rand(2, generator=g) * 1.4 - 0.2).tolist()
        d = [_outline_distance_by_sampling(b, y, x) for b in boxes]
        got = nearest_outline(boxes, y, x)
        assert d[got] <= min(d) + 1e-3, (got, d)
    nested = np.array([[0.0, 0.0, 1.0, 1.0], [0.4, 0.4, 0.6, 0.6]])
    assert nearest_outline(nested, 0.5, 0.41) == 1 and nearest_outline(nested, 0.5, 0.02) == 0
    assert nearest_outline(np.array([[0.2, 0.2, 0.6, 0.6], [0.2, 0.2, 0.6, 0.8]]), 0.2, 0.4) == 0  # a tie: the smaller


def test_follow_box_click_picks_the_box_under_the_pointer(case):
    ex, anchors, cl, ba = case
    w = FollowBox(ex, anchors, cl, ba, index=99, dpi=40)
    size = Image.open(io.BytesIO(bytes(w.pick_image.value))).size
    assert (w.pick_image.layout.width, w.pick_image.layout.height) == (f"{size[0]}px", f"{size[1]}px")
    hits = 0
    for a in (5, 150, 188):  # a click on the middle of the box's top edge, where the figure draws it
        y0, x0, y1, x1 = w.pick_boxes[a]
        px, py = w.pixel_at(y0, (x0 + x1) / 2)
        assert 0 <= px <= size[0] and 0 <= py <= size[1]
        w._clicked({"relativeX": 2 * px, "relativeY": 2 * py,  # the image shown twice its size
                    "boundingRectWidth": 2 * size[0], "boundingRectHeight": 2 * size[1]})
        # the box followed has an outline through the click (box a's, or one drawn on top of it)
        assert _outline_distance_by_sampling(w.pick_boxes[w.index], y0, (x0 + x1) / 2) < 1e-3
        hits += w.index == a
        assert f"box {w.index}: " in w.readout.value
        assert [p.get_gid() for p in w._pick_ax.patches if (p.get_gid() or "").startswith("chosen:")] == [f"chosen:{w.index}"]
    assert hits >= 2
    assert w.clicks is not None and w.clicks.watched_events == ["click"] and w.clicks.source is w.pick_image


# ---------------------------------------------------------------- a learner's mistakes (issue 24)
def test_box_widget_refuses_values_out_of_range_and_stays_as_it_was(case):
    ex, anchors, _, ba = case
    w = BoxWidget(ex, anchors, ba, index=11, dpi=40)
    before_png, before_actns, before_sliders = bytes(w.image.value), w.actns.clone(), [s.value for s in w.sliders.values()]
    for bad in (-1, 189, 10**9, 2.5):
        with pytest.raises(ValueError, match=rf"box index {bad!r} is out of range: boxes are 0 to 188"):
            w.set(index=bad, dx=0.5)
    with pytest.raises(ValueError, match=r"tanh\(dx\) = nan is not a number; the slider takes -0.99 to 0.99"):
        w.set(dy=0.3, dx=float("nan"))
    with pytest.raises(ValueError, match=r"tanh\(dw\) = nan"):
        w.set_activations(dw=float("nan"))
    assert w.index == 11 and torch.equal(w.actns, before_actns) and bytes(w.image.value) == before_png
    assert [s.value for s in w.sliders.values()] == before_sliders
    nan = ba.clone()
    nan[0, 7, 2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite values at box\(es\) \[7\]"):
        BoxWidget(ex, anchors, nan)
    with pytest.raises(ValueError, match=r"box_actns has shape \(1, 188, 4\); expected \(189, 4\) or \(1, 189, 4\)"):
        BoxWidget(ex, anchors, ba[:, :188])
    with pytest.raises(ValueError, match="box index 189 is out of range"):
        BoxWidget(ex, anchors, ba, index=189)


def test_threshold_widget_refuses_nan_and_stays_as_it_was(case):
    ex, anchors, cl, ba = case
    w = ThresholdWidget(ex, anchors, cl, ba, dpi=40)
    before_png, count = bytes(w.image.value), w.positive_count
    with pytest.raises(ValueError, match="threshold nan is not a number; the slider takes 0.0 to 0.95"):
        w.set(float("nan"))
    assert w.threshold == pytest.approx(0.4) and w.positive_count == count and bytes(w.image.value) == before_png


def test_follow_box_on_an_image_without_objects_says_so(case):
    from ssd_lesson.drawing import plots

    ex, anchors, cl, ba = case
    empty = plots.as_scene(ex)._replace(boxes=np.zeros((0, 4), np.float32), labels=np.zeros((0,), np.int64))
    w = FollowBox(empty, anchors, cl, ba, index=99, dpi=40)
    w.set(5)
    text = w.readout.value
    assert "IoU with the ground truth: none (the image has no objects)" in text
    assert "target class: background" in text and "0 positives share 0.0000" in text
    bars = w.figure.axes[1]
    assert [t.get_text() for t in bars.texts] == ["no objects in this image:\nevery box is background"]
    assert bytes(w.image.value).startswith(PNG)
    fig = follow_box_figure(empty, anchors, cl, ba, 5)
    assert [p.get_gid() for p in fig.axes[0].patches if p.get_gid() == "box:5"] == ["box:5"]


def test_a_change_redraws_at_once_outside_a_kernel_even_where_an_event_loop_runs():
    """Coalesce defers a redraw only inside a Jupyter kernel's loop: any other running loop (a script's
    asyncio.run, Playwright's sync API in a test session) may never run the deferred call."""
    import asyncio
    import threading

    from ssd_lesson.course.widgets.base import Coalesce

    drawn = []
    coalesce = Coalesce(lambda: drawn.append(len(drawn)))

    async def two_changes():
        coalesce()
        coalesce()

    # a loop of its own, in a thread of its own: this process may hold another (the browser tests' Playwright)
    worker = threading.Thread(target=lambda: asyncio.run(two_changes()))
    worker.start()
    worker.join()
    assert drawn == [0, 1]


def test_hold_redraws_once_after_several_changes_and_not_after_an_error():
    """``Coalesce.hold()``: the changes inside the block ask for no redraw; one follows when it ends,
    none when it ends with an error (the widget's ``set`` refused a value)."""
    from ssd_lesson.course.widgets.base import Coalesce

    drawn = []
    coalesce = Coalesce(lambda: drawn.append("redraw"))
    with coalesce.hold():
        for _ in range(3):
            coalesce()  # what each slider's change calls
        assert drawn == [] and coalesce.pending
    assert drawn == ["redraw"] and not coalesce.pending
    with pytest.raises(ValueError), coalesce.hold():
        coalesce()
        raise ValueError("refused")
    assert drawn == ["redraw"] and not coalesce.pending  # no redraw for a refused change; the next one draws
    coalesce()
    assert drawn == ["redraw", "redraw"]



def test_threshold_widget_takes_its_threshold_from_one_place(case):
    """The threshold comes from ``threshold`` or from ``options``, never both: the keyword would
    otherwise override the options without a word."""
    ex, anchors, cl, ba = case
    assert ThresholdWidget(ex, anchors, cl, ba, dpi=30).threshold == pytest.approx(0.4)
    w = ThresholdWidget(ex, anchors, cl, ba, options=LossOptions(iou_threshold=0.5, match_on="anchors"), dpi=30)
    assert w.threshold == pytest.approx(0.5) and w.options.match_on == "anchors"
    assert ThresholdWidget(ex, anchors, cl, ba, threshold=0.3, dpi=30).options.iou_threshold == pytest.approx(0.3)
    with pytest.raises(TypeError, match=r"ThresholdWidget: got both options=.* and iou_threshold=0.5"):
        ThresholdWidget(ex, anchors, cl, ba, threshold=0.5, options=LossOptions(), dpi=30)


def test_threshold_widget_has_one_home():
    """One module defines it and only the widgets package re-exports it: a reader finds it in one place."""
    import ast
    from pathlib import Path

    import ssd_lesson

    assert ThresholdWidget.__module__ == "ssd_lesson.course.widgets.threshold"
    package = Path(ssd_lesson.__file__).parent
    binding = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                     if any(isinstance(n, ast.ImportFrom) and "ThresholdWidget" in {a.name for a in n.names}
                            for n in ast.walk(ast.parse(p.read_text()))))
    assert binding == ["course/widgets/__init__.py"]
