"""Notebooks 01-05: what the committed, executed notebooks display agrees with the library,
their widgets built as the notebooks build them show what the library computes, and the
plotting helpers added for them draw what they say.

The notebooks are read with nbformat (not executed here; nbval does that). Each test
recomputes from the library, on the same example and activations the notebook says it used,
the numbers the notebook printed, so a notebook cannot drift from the code.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from ssd_lesson import activations_to_boxes, make_anchors, ssd_loss
from ssd_lesson.drawing import tables
from ssd_lesson.drawing import plots
from ssd_lesson.course.lesson import example_activations, load_example
from ssd_lesson.course.widgets import BoxWidget, ThresholdWidget

from tests.helpers import checks_output, opens_with_the_kit

# Not the unit tier: the notebooks' numbers are recomputed with the lesson's model (fastai's body).
pytestmark = pytest.mark.fastai

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("01_ground_truth", "02_grid_cells_and_anchors", "03_predicted_boxes", "04_iou", "05_matching")
JPEG, PNG = b"\xff\xd8", b"\x89PNG"
MAX_BYTES = 3_000_000  # a learner downloads it; under 3 MB each
FLOAT = r"[-+]?\d+\.\d+"


# ---------------------------------------------------------------- reading the notebooks
@pytest.fixture(scope="module")
def nbs():
    return {name: nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4) for name in NAMES}


def tagged(nb, tag):
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def text(nb, tag) -> str:
    """The stdout a cell printed."""
    return "".join(o.get("text", "") for o in tagged(nb, tag).outputs if o.output_type == "stream" and o.name == "stdout")


def shown(nb, tag) -> str:
    """The plain text of the table a cell shows (its result; the HTML table carries the same numbers)."""
    return "".join(o.data["text/plain"] for o in tagged(nb, tag).outputs if o.output_type == "execute_result")


def floats(s: str) -> list[float]:
    return [float(v) for v in re.findall(FLOAT, s)]


def line_with(s: str, start: str) -> str:
    (line,) = [ln for ln in s.splitlines() if ln.startswith(start)]
    return line


@pytest.fixture(scope="module")
def case(nbs):
    """The example and activations notebook 05 says it used (offline example / seeded random or checkpoint)."""
    said = text(nbs["05_matching"], "load")
    ex = load_example(offline="embedded offline example" in said)
    assert ex.source.split(" (")[0] in said
    anchors = make_anchors()
    checkpoint = False if "Activations: seeded random" in said else None
    cl, ba, source = example_activations(ex, anchors, checkpoint=checkpoint, verbose=False)
    assert ("Activations: seeded random" in said) == ("seeded random" in source)
    _, gb, gl = ex.batch()
    return ex, anchors, cl, ba, gb, gl, ssd_loss(cl, ba, gb, gl, anchors)


# ---------------------------------------------------------------- every notebook
@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_executed_and_small(nbs, name):
    nb = nbs[name]
    assert (NB_DIR / f"{name}.ipynb").stat().st_size < MAX_BYTES
    assert nb.metadata.kernelspec.name == "python3" and nb.metadata.kernelspec.display_name == "Python 3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert opens_with_the_kit(nb), code[0].source
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "What's next" in nb.cells[-1].source
    for c in code:
        assert c.execution_count is not None, f"{name}: a cell was not executed: {c.source[:60]!r}"
        assert not [o for o in c.outputs if o.output_type == "error"], f"{name}: a cell raised: {c.source[:60]!r}"
    checked = [c for c in code if checks_output(c)]
    assert len(checked) >= 3
    for c in checked:  # plain text only: nothing nbval would compare as HTML or an image
        assert c.outputs and all(o.output_type == "stream" for o in c.outputs), c.source[:80]
    assert "Using " in text(nb, "load")  # which example, in one line
    if name != "01_ground_truth":
        assert "Activations: " in text(nb, "load")
    figures = [o for c in code for o in c.outputs if o.output_type in ("display_data", "execute_result")
               and any(k.startswith("image/") for k in o.data)]
    fmt = "image/png" if name == "04_iou" else "image/jpeg"  # 04's figures are line art; the others photographs
    plain = [o for o in figures if "application/vnd.jupyter.widget-view+json" not in o.data]  # widgets choose their own
    assert plain and all(fmt in o.data for o in plain)


# ---------------------------------------------------------------- 01
def test_nb01_shows_the_y_of_the_example(nbs, case):
    ex = case[0]
    nb = nbs["01_ground_truth"]
    assert text(nb, "objects").startswith(f"{len(ex.classes)} objects: {', '.join(ex.classes)}")
    rows = [ln for ln in text(nb, "y_table").split("in pixels")[0].splitlines() if re.match(r"^\d+\s", ln)]
    assert len(rows) == len(ex.classes)
    for i, ln in enumerate(rows):
        parts = ln.split()
        assert parts[1] == ex.classes[i] and int(parts[2]) == int(ex.labels[i])
        np.testing.assert_allclose(floats(ln), ex.boxes[i], atol=5e-5)
    voc = text(nb, "voc")  # the VOC message, shown once in the series
    assert voc.startswith("Pascal VOC 2007 was not found") or voc.startswith("Pascal VOC 2007 found in")
    assert ("embedded offline example" in text(nb, "load")) == voc.startswith("Pascal VOC 2007 was not found")


# ---------------------------------------------------------------- 02
def test_nb02_prints_the_anchor_numbers_of_the_library(nbs):
    nb = nbs["02_grid_cells_and_anchors"]
    anchors = make_anchors()
    sizes = re.findall(r"-> a (\d+)x\d+ grid", text(nb, "output_sizes"))
    assert tuple(int(s) for s in sizes) == anchors.spec.grids == (4, 2, 1)
    assert "class activations    (1, 189, 21)" in text(nb, "output_sizes")
    assert f"total: {len(anchors)} anchor boxes" in text(nb, "anchor_count") and len(anchors) == 189
    out = text(nb, "anchor_info")
    panel = anchors.select(4, 0)
    assert str(panel.tolist()) in out
    assert f"box 11 of that plot: {anchors.info(int(panel[11]))}" in out and int(panel[11]) == 99
    assert f"model output 11:     {anchors.info(11)}" in out
    np.testing.assert_allclose(floats(line_with(out, "  its corners")), anchors.corners[99].tolist(), atol=5e-5)


# ---------------------------------------------------------------- 03
def test_nb03_worked_example_and_bound_match_the_library(nbs, case):
    ex, anchors, _, ba, *_ = case
    nb = nbs["03_predicted_boxes"]
    out = text(nb, "worked_example") + text(nb, "worked_example_check")  # by hand, then checked against the library
    want = activations_to_boxes(ba, anchors)[0, 99]
    assert out.rstrip().endswith("same: True")
    np.testing.assert_allclose(floats(line_with(out, "predicted box (y0, x0, y1, x1), the library:")), want.tolist(), atol=5e-5)
    np.testing.assert_allclose(floats(line_with(out, "activations (dy, dx, dh, dw)")), ba[0, 99].tolist(), atol=5e-5)
    # the box at its slider bounds, built as the notebook builds it
    w = BoxWidget(ex, anchors, ba, index=99, image_format="jpeg")
    limit = w.sliders["dx"].max
    w.set(dy=0, dx=limit, dh=-limit, dw=limit)
    actns = ba[0].clone()
    actns[99] = torch.atanh(torch.tensor([0.0, limit, -limit, limit]))  # the sliders move tanh(activation)
    np.testing.assert_allclose(w.pred_box.tolist(), activations_to_boxes(actns[None], anchors)[0, 99].tolist(), atol=1e-6)
    bound = text(nb, "box_at_bound")
    np.testing.assert_allclose(floats(line_with(bound, "predicted box")), w.pred_box.tolist(), atol=5e-5)
    shift = floats(line_with(bound, "centre moved"))[0]
    assert shift == pytest.approx(limit / 2, abs=5e-5)


def test_nb03_box_widget_as_built_in_the_notebook(case):
    ex, anchors, _, ba, *_ = case
    w = BoxWidget(ex, anchors, ba, index=99, image_format="jpeg")
    assert bytes(w.image.value).startswith(JPEG) and w.image.format == "jpeg"
    torch.testing.assert_close(w.pred_box, activations_to_boxes(ba, anchors)[0, 99])
    w.set(dw=100)  # beyond the slider: clamped to its bound
    assert w.sliders["dw"].value == w.sliders["dw"].max
    actns = ba[0].clone()
    actns[99, 3] = math.atanh(w.sliders["dw"].max)
    want = activations_to_boxes(actns[None], anchors)[0, 99]
    torch.testing.assert_close(w.pred_box, want)
    (rect,) = [p for p in w.figure.axes[0].patches if p.get_gid() == "box:99"]
    np.testing.assert_allclose([rect.get_y(), rect.get_x(), rect.get_y() + rect.get_height(), rect.get_x() + rect.get_width()],
                               want.tolist(), atol=1e-6)
    assert ", ".join(f"{v:.3f}" for v in want.tolist()) in w.readout.value
    assert (want[3] - want[1]).item() == pytest.approx(anchors.centers_hw[99, 3].item() * (1 + w.sliders["dw"].max / 2))


# ---------------------------------------------------------------- 04
def test_nb04_table1_is_the_library_iou(nbs, case):
    *_, gl, result = case
    nb = nbs["04_iou"]
    table = tables.iou_table(result, rows=30)
    rows = [ln for ln in shown(nb, "table1").splitlines() if re.match(r"^\d+\s", ln)]
    assert [int(ln.split()[0]) for ln in rows] == list(range(30))
    np.testing.assert_allclose(np.array([floats(ln) for ln in rows]), table.to_numpy(), atol=5e-5)
    assert "189 x 4 = 756 IoU values" in text(nb, "iou_counts")
    assert "the same to within 1e-6: True" in text(nb, "torchvision_check")
    by_hand = floats(line_with(text(nb, "iou_by_hand"), "IoU by hand"))
    assert by_hand[0] == pytest.approx(by_hand[1], abs=1e-4)
    assert by_hand[1] == pytest.approx(float(result.ious[0, :30].max()), abs=5e-5)


# ---------------------------------------------------------------- 05
def test_nb05_table2_is_the_library_match(nbs, case):
    *_, result = case
    nb = nbs["05_matching"]
    rows = [ln for ln in shown(nb, "table2").splitlines() if re.match(r"^\d+\s", ln)]
    assert [int(ln.split()[0]) for ln in rows] == list(range(30))
    gt_idx = [int(ln.split()[1]) for ln in rows]
    overlap = [float(ln.split()[2]) for ln in rows]
    assert gt_idx == result.match.gt_idx[0, :30].tolist()
    np.testing.assert_allclose(overlap, result.match.gt_overlap[0, :30].tolist(), atol=5e-5)
    forced_rows = [int(ln.split()[0]) for ln in rows if "forced" in ln]
    assert forced_rows == [i for i in range(30) if result.match.gt_overlap[0, i] == 1.99]
    # the forced matches as printed, one per ground-truth box
    forced = text(nb, "forced")
    claimed = [int(b) for b in re.findall(r"claims box\s+(\d+)", forced)]
    assert len(claimed) == len(tables.gt_columns(case[5]))  # one line per ground-truth box
    assert sorted(set(claimed)) == torch.nonzero(result.match.gt_overlap[0] == 1.99).flatten().tolist()
    now = [int(g) for g in re.findall(r"now gt_idx (\d+), gt_overlap 1\.99", forced)]
    assert now == [int(result.match.gt_idx[0, b]) for b in claimed]
    none = torch.nonzero(result.match.gt_overlap[0] == 0).flatten().tolist()
    assert f"overlap no ground-truth box: {none}" in text(nb, "no_overlap")


def test_nb05_positive_count_and_threshold_sweep_are_the_library(nbs, case):
    ex, anchors, cl, ba, gb, gl, result = case
    nb = nbs["05_matching"]
    out = text(nb, "positives")
    n_pos = int(result.match.positive.sum())
    assert f"positives (gt_overlap > 0.4): {n_pos} of 189" in out
    assert [int(b) for b in re.findall(r"^  box\s+(\d+):", out, re.M)] == torch.nonzero(result.match.positive[0]).flatten().tolist()
    sweep = dict(re.findall(r"IoU threshold (\d\.\d): +(\d+) positive", text(nb, "threshold_sweep")))
    assert len(sweep) == 9
    for thr, n in sweep.items():
        assert int(n) == int(ssd_loss(cl, ba, gb, gl, anchors, iou_threshold=float(thr)).match.positive.sum())


def test_nb05_threshold_widget_as_built_in_the_notebook(nbs, case):
    ex, anchors, cl, ba, gb, gl, _ = case
    w = ThresholdWidget(ex, anchors, cl, ba, image_format="jpeg", dpi=30)
    assert bytes(w.image.value).startswith(JPEG)
    sweep = dict(re.findall(r"IoU threshold (\d\.\d): +(\d+) positive", text(nbs["05_matching"], "threshold_sweep")))
    for thr in (0.4, 0.5):
        w.set(thr)
        res = ssd_loss(cl, ba, gb, gl, anchors, iou_threshold=thr)
        assert w.positive_count == int(res.match.positive.sum()) == int(sweep[f"{thr:.1f}"])
        assert torch.equal(w.target_labels, res.target_labels[0])
        assert f"<b>{w.positive_count}</b> of 189" in w.readout.value
        assert sorted(w.drawn) == res.match.positive[0].nonzero().flatten().tolist()  # only the positives are drawn
    # the static copy in the notebook is the widget's starting state (0.4)
    static = tagged(nbs["05_matching"], "threshold_widget_static")
    html = "".join(o.data.get("text/html", "") for o in static.outputs if o.output_type in ("display_data", "execute_result"))
    n_pos = int(ssd_loss(cl, ba, gb, gl, anchors, iou_threshold=0.4).match.positive.sum())
    assert f"<b>{n_pos}</b> of 189 boxes positive" in html
    # its figure is stored once, as the widget's own fallback, not a second time below it
    shown = tagged(nbs["05_matching"], "threshold_widget")
    assert [list(o.data) for o in shown.outputs] == [["application/vnd.jupyter.widget-view+json", "image/jpeg", "text/plain"]]
    assert not any("image/jpeg" in o.data for o in static.outputs if o.output_type in ("display_data", "execute_result"))


# ---------------------------------------------------------------- helpers added to plots and widgets for these notebooks
def _rect_box(p) -> list[float]:
    x0, y0 = p.get_xy()
    return [y0, x0, y0 + p.get_height(), x0 + p.get_width()]


def test_grid_panel_figure_draws_one_numbered_panel(case):
    ex, anchors, _, ba, *_ = case
    pred = activations_to_boxes(ba, anchors)[0]
    for boxes in (anchors.corners, pred):
        fig = plots.grid_panel_figure(ex, anchors, boxes, grid=4, scale=0)
        (ax,) = fig.axes
        idx = anchors.select(4, 0).tolist()
        rects = {p.get_gid(): p for p in ax.patches if (p.get_gid() or "").startswith("box:")}
        assert sorted(rects) == sorted(f"box:{a}" for a in idx)
        for a in idx:
            np.testing.assert_allclose(_rect_box(rects[f"box:{a}"]), boxes[a].tolist(), atol=1e-6)
        assert sorted(t.get_text() for t in ax.texts) == sorted(str(n) for n in range(16))
        x0, x1 = ax.get_xlim()
        b = boxes[idx]
        # the image and every box in view; the margin only as wide as the boxes need (the panel's image fills it)
        assert x0 <= min(0.0, float(b[:, 1].min())) and x1 >= max(1.0, float(b[:, 3].max()))
        assert x1 - x0 <= 1.1 * (max(1.0, float(b[:, 3].max())) - min(0.0, float(b[:, 1].min()))) + 0.1
        assert "zoom 0.7, ratio (1.0, 1.0)" in ax.get_xlabel()


def test_cell_figure_picks_out_one_cell_and_its_anchor_box(case):
    ex, anchors, *_ = case
    for grid, cell, scale in ((4, 11, 0), (2, 2, 8), (4, 0, 7)):
        (ax,) = [a for a in plots.cell_figure(ex, anchors, grid=grid, cell=cell, scale=scale).axes]
        a = int(anchors.select(grid, scale)[cell])
        assert a == anchors.offsets[anchors.spec.grids.index(grid)] + cell * 9 + scale  # cells row by row, 9 scales each
        rects = {p.get_gid(): _rect_box(p) for p in ax.patches if p.get_gid()}
        assert set(rects) == {f"box:{a}", f"cell:{cell}"}  # one anchor box, one cell: not a whole panel of Fig. 1
        np.testing.assert_allclose(rects[f"box:{a}"], anchors.corners[a].tolist(), atol=1e-6)
        row, col = divmod(cell, grid)
        np.testing.assert_allclose(rects[f"cell:{cell}"], [row / grid, col / grid, (row + 1) / grid, (col + 1) / grid])
        assert [t.get_text() for t in ax.texts] == [str(n) for n in range(grid * grid)]  # the cells' numbers
        (x0, x1), (y1, y0) = ax.get_xlim(), ax.get_ylim()
        y_0, x_0, y_1, x_1 = anchors.corners[a].tolist()
        assert x0 <= min(0, x_0) and x1 >= max(1, x_1) and y0 <= min(0, y_0) and y1 >= max(1, y_1)  # the box in view
        legend = " ".join(t.get_text() for t in ax.figure.legends[0].get_texts())
        assert f"model output {a}" in legend and anchors.spec.scale_label(anchors.spec.grids.index(grid), scale) in legend
    with pytest.raises(ValueError, match="cell must be a cell number 0..15"):
        plots.cell_figure(ex, anchors, grid=4, cell=16)


def test_predictions_by_grid_figure_is_column_3_of_figs_1_to_3(case):
    ex, anchors, _, ba, *_ = case
    pred = activations_to_boxes(ba, anchors)[0]
    fig = plots.predictions_by_grid_figure(ex, anchors, pred)
    axes = np.array(fig.axes).reshape(9, 3)
    for col, g in enumerate(anchors.spec.grids):
        ref = plots.grid_figure(ex, anchors, pred, grid=g)
        ref_axes = np.array(ref.axes).reshape(9, 2)  # anchor boxes | predicted boxes
        for s in range(9):
            ax, want = axes[s, col], ref_axes[s, 1]
            assert ax.get_xlim() == pytest.approx(want.get_xlim()) and ax.get_xlabel() == want.get_xlabel()
            got = {p.get_gid(): _rect_box(p) for p in ax.patches if p.get_gid()}
            exp = {p.get_gid(): _rect_box(p) for p in want.patches if p.get_gid()}
            assert got.keys() == exp.keys() == {f"box:{a}" for a in anchors.select(g, s).tolist()}
            for k in got:
                np.testing.assert_allclose(got[k], exp[k], atol=1e-9)


def test_widgets_default_to_png():
    ex = load_example(offline=True)
    anchors = make_anchors()
    w = BoxWidget(ex, anchors, None, index=0, dpi=30)
    assert w.image.format == "png" and bytes(w.image.value).startswith(PNG)
