"""What the notebooks' sentences claim is true of the outputs beside them, and of the library.

Each claim a markdown cell makes about a number, a direction or a comparison is either printed
from the value in the cell below it (and checked here against the library), or checked here
directly against the stored output.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import torch

from ssd_lesson import IOU_THRESHOLD, ssd_loss
from ssd_lesson.drawing import tables
from ssd_lesson.course.lesson import start_lesson

from .helpers import stdout, tagged

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
SERIES = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def read(stem: str) -> nbformat.NotebookNode:
    return nbformat.read(NB_DIR / f"{stem}.ipynb", as_version=4)


@pytest.fixture(scope="module")
def lesson():
    ex, anchors, cl, ba, gb, gl = start_lesson(verbose=False)
    return dict(ex=ex, anchors=anchors, cl=cl, ba=ba, gb=gb, gl=gl, by_predictions=ssd_loss(cl, ba, gb, gl, anchors),
                by_anchors=ssd_loss(cl, ba, gb, gl, anchors, match_on="anchors"))


def test_titles_number_and_link_the_series_consistently():
    for i, path in enumerate(SERIES):
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[0].source.startswith(f"# {path.stem[:2]} · "), path.name
        last = nb.cells[-1].source
        if i + 1 < len(SERIES):  # the last notebook ends the series with its own summary
            assert last.startswith("## What's next")
            assert f"({SERIES[i + 1].name})" in last, f"{path.name} does not link to {SERIES[i + 1].name}"


def test_no_stored_output_shows_a_path_of_this_machine():
    for path in SERIES:
        for c in nbformat.read(path, as_version=4).cells:
            for o in c.get("outputs", []):
                text = o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                assert not re.search(r"(/work/|/home/|/root/|/tmp/|\\Users\\)", text), (path.name, text[:200])


def test_05_the_two_matchings_as_printed(lesson):
    said = stdout(tagged(read("05_matching"), "match_modes_early")).splitlines()
    p, a = lesson["by_predictions"].match.positive[0], lesson["by_anchors"].match.positive[0]
    only_p = int((p & ~a).sum())
    assert said[0].endswith(f": {int(p.sum())} positives") and said[1].endswith(f": {int(a.sum())} positives")
    assert said[2] == f"positive only when matching on predicted boxes: {only_p} of {int(p.sum())}"
    assert only_p > 0  # the markdown says some boxes become positives only under the article's matching


def test_05_a_box_flips_from_its_class_to_background(lesson):
    said = stdout(tagged(read("05_matching"), "flip_to_background"))
    n, overlap = int(re.match(r"box (\d+)", said)[1]), float(re.search(r"gt_overlap (\d\.\d+)", said)[1])
    a = int(lesson["anchors"].select(4, 0)[n])
    match = lesson["by_predictions"].match
    assert 0 < float(match.gt_overlap[0, a]) <= IOU_THRESHOLD and not match.positive[0, a]
    assert overlap == pytest.approx(float(match.gt_overlap[0, a]), abs=5e-5)


def test_06_who_carries_the_classification_loss(lesson):
    said = stdout(tagged(read("06_classification_loss"), "shares")).splitlines()[-1]
    shares = tables.box_class_losses(lesson["cl"], lesson["by_predictions"])
    pos = shares.loc[shares.positive, "BCE"].sum() / shares["BCE"].sum()
    assert said == f"the {'positive' if pos > 0.5 else 'background'} boxes carry {max(pos, 1 - pos):.0%} of it"
    md = "".join(c.source for c in read("06_classification_loss").cells if c.cell_type == "markdown")
    assert ("the few positives carry most of the loss" in md) == (pos > 0.5)


def test_11_the_classification_loss_is_the_one_that_moves(lesson):
    said = stdout(tagged(read("11_matching_variants"), "losses")).splitlines()[-1]
    c, r = (float(v) for v in re.findall(r"x(\d+\.\d+)", said))
    bp, ba = lesson["by_predictions"], lesson["by_anchors"]
    assert c == pytest.approx(float(bp.classification[0] / ba.classification[0]), abs=5e-3)
    assert r == pytest.approx(float(bp.regression[0] / ba.regression[0]), abs=5e-3)
    assert abs(c - 1) > 2 * abs(r - 1)  # "the classification loss is the one that moves; the mean regression hardly"


def test_03_directions_are_words_from_the_signs(lesson):
    nb = read("03_predicted_boxes")
    said = stdout(tagged(nb, "bounds"))
    assert "-" not in re.search(r"its centre (.*)", said)[1]  # no "-0.500 cells down"
    assert re.search(r"\d\.\d{3} cells (up|down) and \d\.\d{3} cells (left|right)", said)
    ours = stdout(tagged(nb, "box11_vs_article")).splitlines()[1]
    from ssd_lesson import activations_to_boxes, corners_to_centers

    a = int(lesson["anchors"].select(4, 0)[11])
    cy, cx, h, w = corners_to_centers(activations_to_boxes(lesson["ba"], lesson["anchors"])[0, a]).tolist()
    acy, acx, _, _ = lesson["anchors"].centers_hw[a].tolist()
    assert f"{'down' if cy > acy else 'up'} and" in ours and f"cells {'right' if cx > acx else 'left'}" in ours
    assert f"height / width {h / w:.2f}" in ours


def test_10_map_drops_as_the_score_threshold_rises():
    said = stdout(tagged(read("10_inference"), "map"))
    maps = [float(v) for v in re.findall(r"mAP@0\.5 (\d\.\d+)", said)]
    assert len(maps) == 3 and maps == sorted(maps, reverse=True)  # "raising the threshold can only lose recall"


def test_10_voc_table_is_the_library_table():
    from ssd_lesson.model.evaluate import evaluate_detections
    from ssd_lesson.course.lesson import held_out_records, lesson_model

    model = lesson_model(verbose=False)
    table = evaluate_detections(model, held_out_records(model, verbose=False), progress=False).table()
    shown = table[table["gt_boxes"] + table["difficult"] > 0]
    want = shown.to_string(index=False, float_format="{:.4f}".format, na_rep="-")
    assert stdout(tagged(read("10_inference"), "voc-table")).rstrip("\n") == want
    assert 0 < float(shown.iloc[-1]["ap_voc07"]) < 1


def test_05_the_threshold_widget_names_at_most_a_dozen_positives(lesson):
    """nb05-22: "The photo names only the positives that overlap their object best (at most a dozen)"."""
    from ssd_lesson.course.widgets import ThresholdWidget

    said = [c for c in read("05_matching").cells if c.get("id") == "nb05-22"][0].source
    assert "best (at most a dozen)" in said
    w = ThresholdWidget(lesson["ex"], lesson["anchors"], lesson["cl"], lesson["ba"], dpi=40).set(0.1)
    r = w.result
    assert w.max_labels == 12 and w.positive_count > 12 and len(w.labelled) <= 12
    overlap = r.match.gt_overlap[0]
    best = sorted(torch.nonzero(w.positive).flatten().tolist(), key=lambda a: -float(overlap[a]))[:12]
    assert set(w.labelled) <= set(best)  # only the best-overlapping are named
