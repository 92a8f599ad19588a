"""The figures hold what the article says they show: numbered boxes where the library puts them, margins, labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from ssd_lesson import activations_to_boxes, loss_gradients, ssd_loss
from ssd_lesson.drawing import plots, tables
from ssd_lesson.data.voc import VOC_CLASSES

from tests.helpers import boxes_in, synthetic_case


@pytest.fixture(scope="module")
def case():
    c = synthetic_case()
    return c.ex, c.anchors, c.cl, c.ba, c.res




def texts(ax):
    return [t.get_text() for t in ax.texts]


def assert_in_view(ax, boxes):
    (xl, xr), (yb, yt) = ax.get_xlim(), ax.get_ylim()
    for y0, x0, y1, x1 in boxes:
        assert xl <= x0 and x1 <= xr and yt <= y0 and y1 <= yb, "a box is clipped"


def test_ground_truth_figure_numbers_and_labels_each_box(case):
    ex = case[0]
    ax = plots.ground_truth_figure(ex).axes[0]
    drawn = boxes_in(ax, "gt:")
    assert len(drawn) == 4
    for i, box in enumerate(ex.boxes):
        np.testing.assert_allclose(drawn[f"gt:{i}"], box, atol=1e-6)
    assert texts(ax) == ["0: cow", "1: person", "2: bicycle", "3: motorbike"]


@pytest.mark.parametrize("grid", [4, 2, 1])
def test_grid_figure_rows_columns_margins(case, grid):
    ex, anchors, _, _, res = case
    pred = res.pred_boxes[0].detach()
    fig = plots.grid_figure(ex, anchors, pred, grid=grid)
    axes = np.array(fig.axes).reshape(9, 2)  # no ground-truth column: the ground truth is a figure of its own
    for s in range(9):
        anc_ax, pred_ax = axes[s]
        idx = anchors.select(grid, s).tolist()
        assert not boxes_in(anc_ax, "gt:") and not boxes_in(pred_ax, "gt:")
        for ax, want in ((anc_ax, anchors.corners), (pred_ax, pred)):
            drawn = boxes_in(ax)
            assert list(drawn) == [f"box:{a}" for a in idx]  # numbered 0..g*g-1 in row-major order
            np.testing.assert_allclose(np.array(list(drawn.values())), want[idx].numpy(), atol=1e-6)
            assert texts(ax) == [str(n) for n in range(grid * grid)]
            assert ax.get_xlabel() == anchors.spec.scale_label(anchors.spec.grids.index(grid), s)
            top, left, bottom, right = plots.panel_margin(anchors, pred, grid, s)  # just what the row's boxes need
            assert ax.get_xlim() == pytest.approx((-left, 1 + right)) and ax.get_ylim() == pytest.approx((1 + bottom, -top))
            assert_in_view(ax, drawn.values())
        assert anc_ax.get_xlim() == pred_ax.get_xlim() and anc_ax.get_ylim() == pred_ax.get_ylim()  # one scale per row
    assert axes[0, 0].get_xlabel() == "zoom 0.7, ratio (1.0, 1.0)" and axes[1, 0].get_xlabel() == "zoom 0.7, ratio (1.0, 0.5)"
    # grid lines and anchor dots in both columns: g-1 lines each way, g*g dots
    anc = axes[0, 0]
    assert len([ln for ln in anc.lines if ln.get_gid() != "leader"]) == 2 * (grid - 1) and anc.collections[0].get_offsets().shape == (grid * grid, 2)


def test_grid_row_on_given_axes(case):
    ex, anchors, _, _, res = case
    from matplotlib.figure import Figure

    axes = Figure().subplots(1, 2)
    plots.draw_grid_row(axes, ex, anchors, res.pred_boxes[0], grid=2, scale=4)
    np.testing.assert_allclose(list(boxes_in(axes[0]).values()), anchors.corners[anchors.select(2, 4)].numpy(), atol=1e-6)
    np.testing.assert_allclose(list(boxes_in(axes[1]).values()),
                               res.pred_boxes[0, anchors.select(2, 4)].detach().numpy(), atol=1e-6)
    assert axes[1].get_xlabel() == "zoom 1.0, ratio (1.0, 0.5)"


def test_moved_boxes_figure_draws_each_predicted_box_over_its_anchor_box(case):
    ex, anchors, _, _, res = case
    pred = res.pred_boxes[0].detach()
    for grid, scale in ((4, 0), (2, 5)):
        (ax,) = plots.moved_boxes_figure(ex, anchors, pred, grid=grid, scale=scale).axes
        idx = anchors.select(grid, scale).tolist()
        solid, dashed = boxes_in(ax, "box:"), boxes_in(ax, "anchor:")
        assert list(solid) == [f"box:{a}" for a in idx] and list(dashed) == [f"anchor:{a}" for a in idx]
        np.testing.assert_allclose(list(solid.values()), pred[idx].numpy(), atol=1e-6)
        np.testing.assert_allclose(list(dashed.values()), anchors.corners[idx].numpy(), atol=1e-6)
        edge = {p.get_gid(): p.get_edgecolor() for p in ax.patches if p.get_gid()}
        assert all(edge[f"box:{a}"] == edge[f"anchor:{a}"] for a in idx)  # a pair in one colour,
        assert [edge[f"box:{a}"] for a in idx] == [to_rgba(plots.BOX_COLORS[n % 12]) for n in range(len(idx))]  # Fig. 1's
        assert texts(ax) == [str(n) for n in range(grid * grid)]  # numbered per plot, as in Figs. 1-3
        assert_in_view(ax, [*solid.values(), *dashed.values()])


def test_a_box_far_outside_widens_the_margin(case):
    ex, anchors, _, _, _ = case
    pred = activations_to_boxes(torch.full((1, 189, 4), 50.0), anchors)[0]  # every box at its largest, pushed out
    ax = plots.grid_figure(ex, anchors, pred, grid=1).axes[1]
    assert_in_view(ax, boxes_in(ax).values())


def test_aside_and_fig4_draw_every_box(case):
    ex, anchors, _, _, res = case
    aside = plots.all_anchors_figure(ex, anchors).axes[0]
    assert len(boxes_in(aside)) == 189
    assert_in_view(aside, boxes_in(aside).values())
    gt_ax, pred_ax = plots.all_predictions_figure(ex, anchors, res.pred_boxes).axes
    drawn = boxes_in(pred_ax)
    assert len(drawn) == 189 and len(boxes_in(gt_ax, "gt:")) == 4
    np.testing.assert_allclose(drawn["box:100"], res.pred_boxes[0, 100].detach().numpy(), atol=1e-6)
    assert_in_view(pred_ax, drawn.values())


def test_fig5_and_fig6_label_every_box_with_its_class(case):
    ex, anchors, _, _, res = case
    m = res.match
    fig5 = plots.class_figure(ex, anchors, res.pred_boxes[0], m.gt_idx[0])
    fig6 = plots.class_figure(ex, anchors, res.pred_boxes[0], m.gt_idx[0], background=~m.positive[0])
    for fig, thresholded in ((fig5, False), (fig6, True)):
        axes = np.array(fig.axes).reshape(9, 3)  # a column per grid: no ground-truth column
        seen = 0
        for col, grid in enumerate((4, 2, 1)):
            for s in range(9):
                ax = axes[s, col]
                idx = anchors.select(grid, s).tolist()
                want = []
                for n, a in enumerate(idx):
                    bg = thresholded and not bool(m.positive[0, a])
                    want.append(f"{n}: bg" if bg else f"{n}: {VOC_CLASSES[int(ex.labels[int(m.gt_idx[0, a])])]}")
                assert texts(ax) == want
                assert_in_view(ax, boxes_in(ax).values())
                bands = boxes_in(ax, "gt:")  # the ground truth under the boxes, unlabelled (the legend names it)
                np.testing.assert_allclose([bands[f"gt:{i}"] for i in range(4)], ex.boxes, atol=1e-6)
                seen += len(idx)
        assert seen == 189
    # Fig. 5: a box that overlaps nothing shows ground truth 0's class, as in the article
    none = int(torch.nonzero(res.ious[0].amax(dim=1) == 0)[0])
    assert int(m.gt_idx[0, none]) == 0
    bg_texts = [t for ax in fig6.axes for t in texts(ax) if t.endswith(": bg")]
    assert len(bg_texts) == 189 - int(m.positive.sum())
    from matplotlib.colors import to_rgb

    for t in (t for ax in fig6.axes for t in ax.texts if t.get_text().endswith(": bg")):  # faint boxes, legible labels
        patch = t.get_bbox_patch()
        assert to_rgb(t.get_color()) == (1, 1, 1) and (t.get_alpha() or 1) == 1 and to_rgb(patch.get_facecolor()) == (0, 0, 0)
        assert patch.get_alpha() >= 0.7
    legend = [t.get_text() for t in fig5.legends[0].get_texts()]
    assert legend == ["0: cow", "1: person", "2: bicycle", "3: motorbike"]


def test_iou_heatmap_shows_the_ious(case):
    ex, anchors, _, _, res = case
    fig = plots.iou_heatmap(res.ious, ex, anchors, res.match)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), res.ious[0].T.numpy(), atol=1e-7)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0: cow", "1: person", "2: bicycle", "3: motorbike"]


def test_gradient_figure_matches_backward(case):
    ex, anchors, cl, ba, _ = case
    cl, ba = cl.clone().requires_grad_(), ba.clone().requires_grad_()
    _, gb, gl = ex.batch()
    res = ssd_loss(cl, ba, gb, gl, anchors)
    box_grad, logit_grad = loss_gradients(res, cl)
    res.total.backward()  # the graph is kept: the notebook's .backward() still works after the figure
    assert torch.equal(logit_grad, cl.grad[0])
    res = ssd_loss(cl, ba, gb, gl, anchors)  # a fresh graph, to read the box gradient the notebook way
    res.pred_boxes.retain_grad()
    cl.grad = None
    res.total.backward()
    torch.testing.assert_close(logit_grad, cl.grad[0])
    torch.testing.assert_close(box_grad, res.pred_boxes.grad[0])
    fig = plots.gradient_figure(ex, anchors, res, box_grad, logit_grad)
    *img_axes, heat_ax, _colorbar = fig.axes  # one image panel per ground-truth object, then the heatmap
    pos = torch.nonzero(res.match.positive[0]).flatten().tolist()
    objects = sorted({int(res.match.gt_idx[0, a]) for a in pos})
    assert len(img_axes) == len(objects)
    overlap = res.match.gt_overlap[0]
    for ax, g in zip(img_axes, objects):
        mine = [a for a in pos if int(res.match.gt_idx[0, a]) == g]
        drawn = [int(gid.split(":")[1]) for gid in boxes_in(ax)]
        # at most 4, in index order, always the best- and the worst-overlapping positive of the object
        assert len(drawn) == min(4, len(mine)) and drawn == sorted(drawn) and set(drawn) <= set(mine)
        assert max(mine, key=lambda a: (overlap[a], -a)) in drawn and min(overlap[a] for a in drawn) == min(overlap[a] for a in mine)
        assert [t for t in texts(ax) if t] == [str(a) for a in drawn]  # numbered; arrows are empty annotations
        assert sum(1 for t in texts(ax) if not t) == 2 * len(drawn)  # an arrow at two corners of each
        shown = str(len(mine)) if len(mine) <= 4 else f"4 of {len(mine)}"
        assert ax.get_title().endswith(f": {shown} positive{'s' if len(mine) > 1 else ''}")
    np.testing.assert_allclose(heat_ax.images[0].get_array(), logit_grad.numpy())
    assert np.all(heat_ax.images[0].get_array()[:, -1] == 0)  # the background column is dropped by BCE


def test_spread_by_overlap_keeps_the_ends_and_spreads_between():
    overlap = np.array([0.5, 0.9, 0.45, 0.7, 0.6, 1.99, 0.41])
    assert plots.spread_by_overlap([0, 1, 2], overlap, 4) == [0, 1, 2]  # few enough: all
    # ranked by overlap: 5 (1.99), 1, 3, 4, 0, 2, 6 (0.41); four spread: ranks 0, 2, 4, 6
    assert plots.spread_by_overlap(range(7), overlap, 4) == [0, 3, 5, 6]
    assert plots.spread_by_overlap(range(7), overlap, 1) == [5]
    assert plots.spread_by_overlap([], overlap, 4) == []
    with pytest.raises(ValueError, match="per_object must be at least 1, got 0"):
        plots.gradient_figure(None, None, None, None, None, per_object=0)


def test_detections_figure(case):
    ex = case[0]
    fig = plots.detections_figure(ex, ex.boxes[:2], [9, 14], [0.9, 0.5])
    assert texts(fig.axes[1]) == ["cow 0.90", "person 0.50"]


def test_regression_figure_one_panel_per_object_its_best_worst_and_between(case):
    ex, _, _, _, res = case
    pos = res.match.positive[0].nonzero().flatten().tolist()
    gt_idx = res.match.gt_idx[0]
    mae = (res.pred_boxes[0] - res.target_boxes[0]).abs().mean(-1).detach()
    objects = sorted({int(gt_idx[a]) for a in pos})
    used = [ax for ax in plots.regression_figure(ex, res).axes if ax.axison]
    assert [int(ax.get_title().split(":")[0]) for ax in used] == objects  # one panel per object, in order
    for ax, g in zip(used, objects):
        mine = sorted((a for a in pos if int(gt_idx[a]) == g), key=lambda a: float(mae[a]))
        drawn = boxes_in(ax, "pred:")
        shown = sorted((int(name[5:]) for name in drawn), key=lambda a: float(mae[a]))
        assert 1 <= len(shown) <= 3 and len(shown) == min(3, len(mine))
        assert shown[0] == mine[0] and shown[-1] == mine[-1]  # the best and the worst fit
        assert f"{len(mine)} positive" in ax.get_title()
        for name, box in drawn.items():
            a = int(name[5:])
            np.testing.assert_allclose(box, res.pred_boxes[0, a].detach().numpy(), atol=1e-6)
            assert f"{a}: {float(mae[a]):.4f}" in ax.get_xlabel()
        np.testing.assert_allclose(boxes_in(ax, "gt:")[f"gt:{g}"], ex.boxes[g], atol=1e-6)
        assert len([ln for ln in ax.lines if ln.get_gid() != "leader"]) == 4 * len(drawn)  # four corner lines each
        (x0, x1), (y1, y0) = ax.get_xlim(), ax.get_ylim()  # zoomed on its object: a square view holding its boxes
        framed = np.array([*drawn.values(), ex.boxes[g]])
        assert x0 < framed[:, 1].min() and framed[:, 3].max() < x1 and y0 < framed[:, 0].min() and framed[:, 2].max() < y1
        assert x1 - x0 == pytest.approx(y1 - y0)
    with pytest.raises(ValueError, match="per_panel"):
        plots.regression_figure(ex, res, per_panel=0)


def test_tall_figures_split_into_parts_that_draw_every_row_once(case):
    ex, anchors, _, _, res = case
    pred = res.pred_boxes[0].detach()
    for g in (4, 2):
        parts = plots.grid_figures(ex, anchors, pred, grid=g)
        assert len(parts) == 3 and all(len(f.axes) == 6 for f in parts)  # three rows of two panels each
        drawn = [gid for f in parts for ax in f.axes[1::2] for gid in boxes_in(ax)]  # the predicted-box column
        want = sorted(int(a) for s in range(9) for a in anchors.select(g, s))
        assert sorted(int(gid[4:]) for gid in drawn) == want  # every box of the grid, once
    fives = plots.class_figures(ex, anchors, pred, res.match.gt_idx[0], title="Fig. 5")
    assert [f._suptitle.get_text() for f in fives] == [f"Fig. 5 (rows {a}-{a + 2} of 9)" for a in (1, 4, 7)]
    whole = plots.class_figure(ex, anchors, pred, res.match.gt_idx[0])
    texts_of = lambda figs: sorted(t.get_text() for f in figs for ax in f.axes for t in ax.texts)
    assert texts_of(fives) == texts_of([whole])  # the parts together label every box as the whole figure does
    with pytest.raises(ValueError, match="scales"):
        plots.grid_figure(ex, anchors, pred, grid=4, scales=[9])
    with pytest.raises(ValueError, match="per_figure"):
        plots.grid_figures(ex, anchors, pred, grid=4, per_figure=0)


def test_shown_table_is_html_for_the_eye_and_plain_text_for_the_checks():
    import pandas as pd

    table = pd.DataFrame({"0: person": [0.19801, 0.0], "gt_idx": [1, 0]}, index=pd.Index([6, 7], name="box"))
    shown = tables.ShownTable(table, "t")
    assert repr(shown) == table.to_string(float_format=lambda v: f"{v:.4f}") and "0.1980" in repr(shown)
    html = shown._repr_html_()
    assert html == tables.ShownTable(table, "t")._repr_html_()  # the same table, the same HTML: nothing random
    assert 'id="T_t"' in html and ">0.1980<" in html and ">0.19801<" not in html
    with pytest.raises(ValueError, match="table: expected a pandas DataFrame, got list"):
        tables.ShownTable([1, 2], "t")
