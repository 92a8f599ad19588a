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

from tests.helpers import stdout, tagged

# Not the unit tier: the notebooks' claims are recomputed with the lesson's model (fastai's body).
pytestmark = pytest.mark.fastai

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
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


def test_code_cells_are_at_most_15_lines():
    """A learner reads a code cell at a glance: none is longer than 15 lines."""
    long = [f"{path.stem[:2]} cell {i}: {len(c.source.splitlines())} lines" for path in SERIES
            for i, c in enumerate(nbformat.read(path, as_version=4).cells)
            if c.cell_type == "code" and len(c.source.splitlines()) > 15]
    assert not long, long


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
    from ssd_lesson.course.held_out import held_out_records, lesson_model

    model = lesson_model(verbose=False)
    table = evaluate_detections(model, held_out_records(model, verbose=False), progress=False).table()
    shown = table[table["gt_boxes"] + table["difficult"] > 0]
    want = shown.to_string(index=False, float_format="{:.4f}".format, na_rep="-")
    assert stdout(tagged(read("10_inference"), "voc-table")).rstrip("\n") == want
    assert 0 < float(shown.iloc[-1]["ap_voc07"]) < 1


# ---------------------------------------------------------------- the register of the prose
# Every sentence of a notebook's prose (markdown cells, code and formulas left out) that states a number, or a
# direction or comparison, is one of three kinds, and the test below fails on a sentence of none:
#   * its numbers are all FACTS (of the article, the architecture, the data format or the library's constants);
#   * it is CHECKED: a test here (named beside it) checks it against the output it describes;
#   * it is TEXT: it describes the method, the article or the library, not an output (numbers must be FACTS).
# A sentence about an output that a new checkpoint can change must be printed from the value instead
# (an f-string in the code cell beside it), as notebooks 09 and 10 do.

FACTS = {  # number -> where it comes from
    **{str(n): "a count, an index or a position in the text (box 0-15 of a plot, notebook numbers, rows)" for n in
       (*range(13), 15, 16, 17, 20, 21, 27, 30, 32, 36)},
    **{f"0{n}": "a notebook number" for n in range(1, 10)},
    "144": "first box of the 2x2 grid", "180": "the 1x1 grid's first box", "188": "the last box",
    "189": "anchor boxes: 16 x 9 + 4 x 9 + 1 x 9", "756": "189 x 4 box activations", "99": "box 11's output index",
    "224": "the input side", "224×224": "the input size", "4×4": "grid", "2×2": "grid", "1×1": "grid",
    "7×7": "feature map",
    "34": "ResNet-34", "2007": "VOC2007", "2017": "the focal loss paper", "2018": "the article's year",
    "0.4": "IOU_THRESHOLD", "0.98": "the saturation threshold 03 defines (|tanh| > 0.98)", "0.5": "tanh limits, NMS IoU, VOC IoU", "1.5": "the size limit", "0.7": "zoom",
    "1.0": "zoom / recall", "1.3": "zoom", "1.99": "the forced overlap", "0.25": "alpha, the 4x4 grid's cell side",
    "0.02": "figures.TIGHT", "0.03": "the widget's slider step", "0.99": "the widget's slider end",
    "−0.99": "the widget's slider end", "+0.99": "the widget's slider end", "2.65": "atanh(0.99)",
    "-4": "the head's initial bias", "−2": "an exercise's given logit", "-1": "a limit", "100": "a percentage",
    "0.05": "an MAE the text explains", "5%": "0.05 as a percentage", "0.1": "a recall level",
    "0.2": "a recall level", "0.55": "COCO IoU", "0.95": "COCO IoU", "101": "COCO recall levels",
    "160": "collage training images (CHECKED)", "40": "collage validation images (CHECKED)",
    "200": "collage images (CHECKED)", "5,011": "VOC2007 trainval images",
    "2016": "the SSD paper's year", "2.2": "the SSD paper's section on training",
    "8732": "SSD300's anchor boxes (test_12_the_numbers_its_sentences_state)",
}
CHECKED = {  # (notebook, fragment of the sentence) -> the test that checks it against the output
    ("06", "the few positives carry most of the loss"): "test_06_who_carries_the_classification_loss",
    ("05", "some boxes become positives only"): "test_05_the_two_matchings_as_printed",
    ("07", "The checkpoint these notebooks dissect was trained with the sum"): "test_07_the_checkpoint_was_trained_with_the_sum",
    ("09", "A freshly built model is already far better"): "test_09_the_losses_move_as_the_prose_says",
    ("09", "160 training and 40 validation images"): "test_09_10_the_data_sizes_as_printed",
    ("09", "whether the boxes got closer to their objects on average"): "test_09_the_followed_boxes_as_printed",
    ("09", "The classification part, nearly all of the Learner's loss, fell"): "test_09_the_losses_move_as_the_prose_says",
    ("09", "The two epochs here moved the followed boxes"): "test_09_the_followed_boxes_as_printed",
    ("09", "The trained checkpoint's boxes are"): "test_09_the_followed_boxes_as_printed",
    ("09", "some of these boxes are not positives on this image"): "test_09_some_followed_boxes_are_not_positives_of_the_checkpoints_matching",
    ("05", "The photo names only each object's two best-overlapping"):
        "test_05_the_threshold_widget_names_each_objects_two_best_positives",
    ("10", "One batch of all 40 images"): "test_09_10_the_data_sizes_as_printed",
    ("10", "on the 40 images before NMS"): "test_09_10_the_data_sizes_as_printed",
    ("10", "These 40 images are a small sample"): "test_09_10_the_data_sizes_as_printed",
    ("10", "Raising the threshold can only lose recall"): "test_10_map_drops_as_the_score_threshold_rises",
    ("11", "Here the classification loss is the one that moves"):
        "test_11_the_classification_loss_is_the_one_that_moves",
    ("11", "The mean regression loss hardly moves"): "test_11_the_classification_loss_is_the_one_that_moves",
    ("08", "down to a hundred-thousandth of the largest gradient"): "test_constants_the_prose_names",
    ("10", "has learnt those photographs more than it has learnt"): "test_10_photos_it_never_saw_score_lower",
    ("12", "BCE over the 20 classes, background dropped"): "test_12_the_numbers_its_sentences_state",
    ("12", "the lesson's 189, SSD300's 8732"): "test_12_the_numbers_its_sentences_state",
    ("12", "A stricter threshold leaves fewer positives"): "test_12_the_table_and_what_the_sentences_say_of_it",
    ("12", "The rest says something about this checkpoint"): "test_12_the_softmax_row_as_printed",
    ("12", "Most negatives no longer count"): "test_12_the_table_and_what_the_sentences_say_of_it",
    ("06", "how many times smaller each focal sum is"): "test_06_focal_groups_as_printed",
    ("12", "smooth L1 is never above L1"): "test_12_the_table_and_what_the_sentences_say_of_it",
    ("12", "The hardest negatives sit on the objects"): "test_12_the_table_and_what_the_sentences_say_of_it",
    ("09", "Do not be surprised if the validation loss sits below"): "test_09_validation_below_training_as_printed",
    ("12", "Yet the classification loss rises"): "test_12_the_stricter_matching_as_printed",
    ("12", "notebook 06 found the trained checkpoint's positives carrying most"):
        "test_06_who_carries_the_classification_loss",
    ("12", "the kept negatives carry nearly all of it"): "test_12_the_mining_split_as_printed",
}
TEXT = {  # (notebook, fragment): about the method, the article or the library, not about an output
    ("03", "There tanh's slope is nearly 0"), ("04", "Move and resize the red box against ground-truth box 0"), ("05", "Step 2 is a"),
    ("05", "Images with fewer objects are padded"), ("10", "Move the score threshold and the NMS IoU"),
    ("01", "the lesson falls back to an example"), ("02", "The body shrinks the 224×224 image"),
    ("02", "down a column they grow with the zoom"), ("02", "the box is centred on the anchor"),
    ("02", "These boxes are fixed; training never moves them"), ("02", "four box activations per anchor box to move"),
    ("03", "A widget lets you drag one box"), ("03", "moves to and : at most half a cell"),
    ("03", "The anchor boxes are fixed; only the activations"), ("03", "Every box obeys the limits"),
    ("03", "on the coarser grids the boxes are bigger"), ("03", "The sliders move of each activation"),
    ("03", "And the same box pushed to its limits"), ("03", "every predicted box stays near its anchor box"), ("05", "larger than any real IoU"),
    ("05", "The article words the rule as"), ("05", "Lower it and more boxes become positives"), ("06", "It covers the article's section"),
    ("06", "describes a plain binary cross-entropy"), ("06", "BCE keeps a sizeable loss"),
    ("06", "also lowers the whole curve"), ("06", "How much the focal loss takes away"),
    ("04", "The darker the green, the larger the IoU"), ("08", "At the two corners that make the box"),
    ("07", "What remains are the positives of notebook 05"), ("07", "the longer they are, the larger that box"),
    ("07", "The mean keeps an image with many positive"),
    ("08", "because BCE drops it"), ("08", "an arrow points along *minus* the gradient"),
    ("08", "One gradient step moves these few boxes"), ("09", "learning-rate finder trains for a few"),
    ("09", "The useful learning rates are where the loss falls;"), ("09", "A good peak sits on that falling part"), ("09", "We take a peak of 3e-3"),
    ("09", "which way the two parts moved"), ("09", "The anchor boxes never move"),
    ("09", "they must be chosen without asking the trained model"), ("09", "The SSD paper does more"),
    ("09", "They come from the loss the checkpoint last trained with"), ("09", "And one set of weights serves every box"), ("09", "the boxes have left the anchors"), ("10", "The loss of notebook 06 treated each class"),
    ("10", "keeps every (box, class) pair"), ("10", "Two boxes of one class that overlap by less"),
    ("10", "uses **11-point interpolation**"), ("10", "Looking to the right smooths"),
    ("11", "Drawn over the image, one row per ground-truth object"), ("08", "An object with more than four positives shows four of them"),
    ("11", "Matching on anchor boxes (the lesson's code"), ("11", "Early in training the predicted boxes"),
    ("12", "A learner who moves on to either meets"), ("12", "counts every negative, as"),
    ("06", "One-hot targets with the background column dropped"), ("06", "the more the first factor counts"),
    ("10", "go down an image's detections from the best score"),
    ("10", "which NMS kept because they overlap the best box by less than"), ("10", "The same rule, counted for each image"),
    ("12", "negatives of highest loss (all of its negatives if it has fewer)"),
    ("12", "Early in training, when the model is unsure of every box"), ("12", "Smooth L1 is quadratic near zero"),
}
NUMBER = re.compile(r"(?<![\w.])[-−+]?\d+(?:[.,]\d+)*(?:[×x]\d+)?%?(?!\w)")
DIRECTION = re.compile(r"\b(improv\w*|worse|better|rose|rises|risen|fell|falls|dropp?\w*|lower(s|ed)?|higher|grows?|"
                       r"grew|shrinks?|shrank|most clearly|carry most|lag\w*|not yet|more than|less than|fewer|larger|"
                       r"smaller|bigger|moved?|moves)\b", re.I)


def prose_sentences() -> list[tuple[str, int, str]]:
    """``(notebook, cell, sentence)`` of every markdown cell but the exercises (the cell tagged ``exercises`` and
    the questions, ``**1.** ...``: questions, not statements), code, formulas and links removed."""
    found = []
    for path in SERIES:
        for i, c in enumerate(nbformat.read(path, as_version=4).cells):
            if (c.cell_type != "markdown" or "exercises" in c.metadata.get("tags", [])
                    or re.match(r"\*\*\d+\.\*\*", c.source.lstrip())):
                continue
            md = re.sub(r"```[\s\S]*?```|`[^`]*`|\$\$[\s\S]*?\$\$|\$[^$]*\$", "", c.source)
            md = re.sub(r"^#+ .*$", "", re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", md), flags=re.M)
            for s in re.split(r"(?<=[.!?:])\s+(?=[A-Z(*\"'])|\n\n", md):
                if s.strip():
                    found.append((path.stem[:2], i, " ".join(s.split())))
    return found


def test_every_sentence_with_a_number_or_a_direction_is_a_fact_checked_or_about_the_text():
    unregistered = []
    for nb, i, s in prose_sentences():
        others = [n for n in NUMBER.findall(s) if n not in FACTS]
        if not others and not DIRECTION.search(s):
            continue
        if any(k == nb and frag in s for k, frag in CHECKED):
            continue
        if not others and any(k == nb and frag in s for k, frag in TEXT):
            continue
        unregistered.append(f"{nb} cell {i}: {s[:140]!r}" + (f" (numbers {others})" if others else ""))
    assert not unregistered, ("sentences that state a number or direction with no check: print them from the value, "
                              "or register them in tests/test_claims.py:\n" + "\n".join(unregistered))


def test_the_register_names_real_sentences_and_real_checks():
    sentences = prose_sentences()
    for (nb, frag), check in CHECKED.items():
        assert any(k == nb and frag in s for k, _, s in sentences), f"CHECKED {nb}: {frag!r} is in no sentence"
        assert callable(globals().get(check)), f"CHECKED {nb}: {frag!r} names no test {check}"
    for nb, frag in TEXT:
        assert any(k == nb and frag in s for k, _, s in sentences), f"TEXT {nb}: {frag!r} is in no sentence"


def test_constants_the_prose_names():
    from ssd_lesson.drawing import loss_figures

    assert loss_figures.LOG_RANGE == 1e-5  # 08: "down to a hundred-thousandth of the largest gradient"


def test_09_10_the_data_sizes_as_printed():
    said9 = "".join(o.get("text", "") for c in read("09_training").cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
    m = re.search(r"\((\d+) images, seed \d+\): (\d+) train / (\d+) valid images", said9)
    if m is None:  # trained on VOC: the prose's collage numbers do not apply
        pytest.skip("notebook 09 ran on Pascal VOC")
    assert (m[1], m[2], m[3]) == ("200", "160", "40")  # 09: "160 training and 40 validation images"
    said10 = stdout(tagged(read("10_inference"), "outputs"))
    assert said10.startswith("images: (40, 3, 224, 224)")  # 10: "the 40 validation images", "all 40 images"


def test_09_the_losses_move_as_the_prose_says():
    """09: the untrained model is "already far better" than random activations; after two epochs "the
    classification part, nearly all of the Learner's loss, fell; the regression part went up"."""
    said = stdout(tagged(read("09_training"), "example-losses"))
    row = {ln.rsplit(None, 3)[0].strip(): [float(v) for v in ln.split()[-3:]] for ln in said.splitlines()[1:]
           if ln.strip() and not ln.startswith("two epochs")}
    assert row["untrained model"][0] < row["seeded random activations"][0] / 5  # "already far better"
    (c0, r0, _), (c2, r2, t2) = row["untrained model"], row["after 2 epochs here"]
    assert c2 < c0 and r2 > r0 and c2 / t2 > 0.9  # classification fell and is nearly all of it; regression up
    assert said.splitlines()[-1] == (f"two epochs: classification down ({c0:.4f} -> {c2:.4f}), "
                                     f"regression up ({r0:.4f} -> {r2:.4f})")


def test_09_the_followed_boxes_as_printed():
    """09: the lines under the IoU table say, from the table, whether the boxes got closer on average and how many;
    the prose: two epochs moved them away on average and for every object, the checkpoint brought them closer on
    average, far closer for some objects, but not for every object."""
    nb = read("09_training")
    table, summary = stdout(tagged(nb, "ious")).split("\n\n")
    header, *rows = table.splitlines()
    columns = ["untrained model", "after 2 epochs here", "trained checkpoint"]
    assert " ".join(header.split()) == " ".join(columns)
    values = [[float(v) for v in re.findall(r"\d\.\d{3}", ln)[-3:]] for ln in rows]
    objects = [int(re.match(r"box \d+ \((\d+): \w+\)", ln)[1]) for ln in rows]
    means = [sum(col) / len(col) for col in zip(*values)]
    mean_line, *count_lines = summary.splitlines()
    said = [float(v) for v in re.findall(r"(\d\.\d{3}) ", mean_line)]
    assert said == pytest.approx(means, abs=1.5e-3)
    for k, line in enumerate(count_lines, start=1):
        m = re.fullmatch(rf"{columns[k]}: (\d+) of (\d+) boxes closer to their object than untrained, "
                         r"(closer|further) on average", line)
        assert int(m[2]) == len(rows) and (m[3] == "closer") == (means[k] > means[0])
        assert int(m[1]) == sum(v[k] > v[0] for v in values)
    assert means[1] < means[0] < means[2]  # "moved ... away ... on average"; "closer to their objects on average"
    by_object = {g: [sum(v[k] for v, o in zip(values, objects) if o == g) / objects.count(g) for k in range(3)]
                 for g in set(objects)}
    assert all(m[1] < m[0] for m in by_object.values())  # two epochs: away "for every object"
    assert any(m[2] < m[0] for m in by_object.values())  # the checkpoint: "not for every object"
    assert any(m[2] - m[0] > 0.2 for m in by_object.values())  # "far closer for some objects"
    lines = stdout(tagged(nb, "ious-by-object")).splitlines()
    printed = {int(ln.split(":")[0]): [float(v) for v in re.findall(r"\d\.\d{3}", ln)] for ln in lines
               if re.match(r"  \d+: ", ln)}
    assert printed.keys() == by_object.keys()
    for g, m in by_object.items():
        assert printed[g] == pytest.approx(m, abs=1.5e-3)


def test_09_some_followed_boxes_are_not_positives_of_the_checkpoints_matching(lesson):
    """09: "under that matching [on predicted boxes] some of these boxes [the positives of a match on the anchor
    boxes] are not positives on this image"."""
    on_anchors = set(lesson["by_anchors"].match.positive[0].nonzero().flatten().tolist())
    on_predictions = set(lesson["by_predictions"].match.positive[0].nonzero().flatten().tolist())
    assert on_anchors - on_predictions


def test_07_the_checkpoint_was_trained_with_the_sum():
    """07: "The checkpoint these notebooks dissect was trained with the sum": both steps 09 prints say so."""
    said = stdout(tagged(read("09_training"), "checkpoint"))
    if "trained checkpoint:" not in said:
        pytest.skip("no checkpoint shipped: 09 shows the model it trained itself")
    steps = [ln for ln in said.splitlines() if "python -m ssd_lesson train" in ln]
    assert len(steps) == 2 and all(" --regression sum " in ln for ln in steps)
    assert "L1 summed" in said


def test_05_the_threshold_widget_names_each_objects_two_best_positives(lesson):
    """nb05-22: "The photo names only each object's two best-overlapping positives"."""
    from ssd_lesson.course.widgets import ThresholdWidget

    said = [c for c in read("05_matching").cells if c.get("id") == "nb05-22"][0].source
    assert "each object's two best-overlapping" in " ".join(said.split())
    for t in (0.1, 0.4):
        w = ThresholdWidget(lesson["ex"], lesson["anchors"], lesson["cl"], lesson["ba"], dpi=40).set(t)
        match = w.result.match
        overlap, gt_idx = match.gt_overlap[0], match.gt_idx[0]
        assert w.per_object == 2 and w.positive_count > len(w.labelled)
        for g in set(gt_idx[w.positive].tolist()):
            mine = [a for a in torch.nonzero(w.positive).flatten().tolist() if int(gt_idx[a]) == g]
            best = sorted(mine, key=lambda a: (-float(overlap[a]), a))[:2]
            assert set(w.labelled) & set(mine) <= set(best)  # only an object's two best are named


def test_10_photos_it_never_saw_score_lower():
    """10: "A detector trained on six photographs has learnt those photographs more than it has learnt 'person'":
    on the stored table, person loses AP on the photographs kept out of training, more than any other class,
    and so does the mean; the lines under the table are the table's differences, the largest fall first."""
    said = stdout(tagged(read("10_inference"), "memory-table")).splitlines()
    assert said[0].split() == ["trained", "photos", "kept-out", "photos"] and said[1].strip() == "class"
    lines = [ln for ln in said if ": AP " in ln]
    rows = [ln.split() for ln in said[2:] if ln not in lines]  # "class  AP on trained photos  AP on kept-out photos"
    table = {name: (float(a), float(b)) for name, a, b in rows}
    falls = {ln.split(":")[0]: float(ln.rsplit("(", 1)[1].rstrip(")")) for ln in lines}
    assert list(falls) == sorted(falls, key=falls.get)  # the largest fall first
    for cls, d in falls.items():
        assert d == pytest.approx(table[cls][1] - table[cls][0], abs=1.5e-3), cls
    assert table["mean"][1] < table["mean"][0] and falls["person"] == min(falls.values()) and falls["person"] < -0.1


def test_12_the_numbers_its_sentences_state(lesson):
    """12's prose: the lesson's 189 boxes and SSD300's 8732, the 20 classes and 21 columns, the thresholds 0.4 and
    0.5, 3 hard negatives per positive, smooth L1 with beta 1, the tanh box's half a cell and 0.5 to 1.5 times."""
    from ssd_lesson import AnchorSpec, LossOptions, make_anchors
    from ssd_lesson.core.options import PAPER_IOU_THRESHOLD, PAPER_NEG_POS_RATIO
    from ssd_lesson.data.voc import VOC_CLASSES

    text = "\n".join(c.source for c in read("12_ssd_paper_loss").cells if c.cell_type == "markdown")
    for words in ("the lesson's 189, SSD300's 8732", "BCE over the 20 classes", "the 21 columns", "IoU above 0.4",
                  "at least 0.5", "hardest 3 per positive", "below an error of 1", "0.5 to 1.5 times"):
        assert words in text, words
    assert len(lesson["anchors"]) == 189 and len(make_anchors(AnchorSpec.ssd300())) == 8732
    assert len(VOC_CLASSES) == 20 and lesson["cl"].shape[-1] == 21
    assert (IOU_THRESHOLD, PAPER_IOU_THRESHOLD, PAPER_NEG_POS_RATIO) == (0.4, 0.5, 3.0)
    assert LossOptions.ssd_paper().smooth_l1_beta == 1.0


def test_12_the_table_and_what_the_sentences_say_of_it(lesson):
    """12: fewer positives at >= 0.5; softmax the largest jump; mining cuts the loss by less than the count of
    negatives; smooth L1 below L1; the normalisation divides the classification by the positives and multiplies
    the mean regression by 4; every kept negative overlaps an object by less than 0.5."""
    from ssd_lesson.course.paper_steps import paper_steps_options, paper_steps_table

    table = paper_steps_table(lesson["cl"], lesson["ba"], lesson["gb"], lesson["gl"], lesson["anchors"])
    printed = stdout(tagged(read("12_ssd_paper_loss"), "paper-steps"))
    assert printed.strip() == table.to_string(float_format=lambda v: f"{v:.4f}").strip()
    row = table.reset_index(drop=True)
    assert row.positives[1] < row.positives[0]
    jumps = (row.total[1:].to_numpy() / row.total[:-1].to_numpy())
    assert jumps.argmax() == 1 and jumps.max() > 10  # softmax with background, the third row
    assert 1 > row.classification[3] / row.classification[2] > row["negatives counted"][3] / row["negatives counted"][2]
    assert row.regression[5] < row.regression[4]
    assert row.classification[5] / row.classification[6] == pytest.approx(row.positives[6])
    assert row.regression[6] / row.regression[5] == pytest.approx(4.0)
    mined = ssd_loss(lesson["cl"], lesson["ba"], lesson["gb"], lesson["gl"], lesson["anchors"],
                     options=paper_steps_options()[3][1])
    best = mined.ious[0].max(dim=-1).values[mined.counted_negatives[0]]
    assert bool((best > 0).all() and (best < 0.5).all() and (best > 0.4).any())


def test_06_focal_groups_as_printed(lesson):
    """06: the BCE and focal sums per group (positive boxes, background boxes) are the library's; each line says
    which group the focal loss cuts more, from the numbers; a positive's loss sits mostly in its own-class term."""
    import torch.nn.functional as F

    from ssd_lesson import classification_loss

    said = stdout(tagged(read("06_classification_loss"), "focal-groups")).splitlines()
    res, cl = lesson["by_predictions"], lesson["cl"]
    pos, t = res.match.positive[0], res.target_labels[0]
    per_box = {g: classification_loss(cl[0].unsqueeze(1), t.unsqueeze(1), focal=g is not None,
                                      gamma=g or 0.0).double() for g in (None, 1.0, 2.0)}
    table = {ln.split("boxes")[0].strip(): [float(v) for v in ln.split()[-3:]] for ln in said[1:3]}
    for name, group in (("positive", pos), ("background", ~pos)):
        assert table[name] == [pytest.approx(float(per_box[g][group].sum()), abs=6e-5) for g in (None, 1.0, 2.0)]
    for line, g in zip(said[3:5], (1.0, 2.0)):
        cut_pos = float(per_box[None][pos].sum() / per_box[g][pos].sum())
        cut_bg = float(per_box[None][~pos].sum() / per_box[g][~pos].sum())
        assert f"positives / {cut_pos:.1f}, background / {cut_bg:.1f}" in line
        assert f"cuts the {'background' if cut_bg > cut_pos else 'positive'} boxes more" in line
    own = float(F.softplus(-cl[0, pos, t[pos]]).sum() / 20 / per_box[None][pos].sum())
    assert f"and {own:.0%} of theirs" in said[5] and own > 0.5  # "sits mostly in its one target-1 term"


def test_12_the_softmax_row_as_printed(lesson):
    """12: the first printed line sets the lesson's code (anchor matching) beside notebooks 05-08; the softmax jump
    splits into the division by C and a like-for-like factor; the untrained background column is the largest
    logit on some boxes, not all, and the negatives on which it is beaten carry the softmax row's loss."""
    import torch.nn.functional as F

    from ssd_lesson.course.paper_steps import paper_steps_options, paper_steps_table

    nb = read("12_ssd_paper_loss")
    cl, ba, gb, gl, anchors = (lesson[k] for k in ("cl", "ba", "gb", "gl", "anchors"))
    row = paper_steps_table(cl, ba, gb, gl, anchors).reset_index(drop=True)
    first, _, softmax = stdout(tagged(nb, "paper-steps-read")).splitlines()[:3]
    bp = lesson["by_predictions"]
    assert f"classification {row.classification[0]:.4f}, {row.positives[0]} positives" in first
    assert f"notebooks 05-08: {float(bp.classification[0]):.4f}, {int(bp.match.positive.sum())} positives" in first
    assert lesson["by_anchors"].classification[0].item() == pytest.approx(row.classification[0], rel=1e-6)
    like = row.classification[2] / (20 * row.classification[1])
    assert softmax.endswith(f"like for like, x{like:.2f}") and 1 < like < row.classification[2] / row.classification[1]
    options = paper_steps_options()[2][1]
    soft = ssd_loss(cl, ba, gb, gl, anchors, options=options)
    assert float(soft.classification[0]) == pytest.approx(  # a plain sum over the boxes: no division by C
        float(F.cross_entropy(cl[0], soft.target_labels[0], reduction="sum")), rel=1e-5)
    x, negative = cl[0], ~soft.match.positive[0]
    bg, best = x[:, -1], x[:, :-1].max(dim=-1).values
    beaten = negative & (best > bg)
    per_box = F.cross_entropy(x, soft.target_labels[0], reduction="none")
    said = stdout(tagged(nb, "softmax-background")).splitlines()
    assert said[1] == f"the background column is the largest on {int((bg > best).sum())} of 189 boxes"
    assert said[2] == (f"an object column beats it on {int(beaten.sum())} of the {int(negative.sum())} negatives, which "
                       f"carry {per_box[beaten].sum():.1f} of the softmax row's {row.classification[2]:.1f}")
    assert 0 < int((bg > best).sum()) < 189  # "not beaten everywhere"


def test_09_validation_below_training_as_printed():
    """09: the line under the history table counts the epochs whose validation loss is below the training loss."""
    said = stdout(tagged(read("09_training"), "history")).splitlines()
    rows = [ln.split() for ln in said[2:] if re.match(r"\d+\s", ln)]
    below = sum(float(r[2]) < float(r[1]) for r in rows)
    assert said[-1] == f"validation loss below the training loss in {below} of {len(rows)} epochs"


def test_12_the_stricter_matching_as_printed(lesson):
    """12: at IoU >= 0.5 the classification loss rises, and the boxes that became background carry the rise: their
    BCE as background targets is larger than as positives, every other box's BCE is unchanged."""
    from ssd_lesson.core.mining import box_classification_loss
    from ssd_lesson.course.paper_steps import paper_steps_options

    cl, ba, gb, gl, anchors = (lesson[k] for k in ("cl", "ba", "gb", "gl", "anchors"))
    before, after = (ssd_loss(cl, ba, gb, gl, anchors, options=paper_steps_options()[k][1]) for k in (0, 1))
    left = (before.match.positive & ~after.match.positive)[0]
    bce = [torch.nn.functional.binary_cross_entropy_with_logits(  # by hand: one-hot over the 20 classes, / C
        cl[0, :, :-1], torch.nn.functional.one_hot(r.target_labels[0], 21)[:, :-1].float(), reduction="none").sum(1) / 20
        for r in (before, after)]
    for r, b in zip((before, after), bce):
        assert b.sum() == pytest.approx(float(r.classification[0]), rel=1e-5)
        assert torch.allclose(b, box_classification_loss(cl.detach(), r.target_labels, "bce")[0], atol=1e-6)
    said = stdout(tagged(read("12_ssd_paper_loss"), "stricter-matching")).splitlines()
    assert said[0] == (f"the {int(left.sum())} boxes that became background: BCE {bce[0][left].sum():.4f} as positives, "
                       f"{bce[1][left].sum():.4f} as background")
    assert said[1] == f"every other box: {bce[0][~left].sum():.4f} before, {bce[1][~left].sum():.4f} after"
    assert after.classification[0] > before.classification[0]  # "the classification loss rises"
    assert bce[1][left].sum() > bce[0][left].sum() and torch.allclose(bce[0][~left], bce[1][~left])


def test_12_the_mining_split_as_printed(lesson):
    """12: the mining row's softmax loss splits into its positives' part and its kept negatives' part, printed; the
    kept negatives carry "nearly all of it" on this example (mining fixes their count, not their share)."""
    import torch.nn.functional as F

    from ssd_lesson.course.paper_steps import paper_steps_options

    cl, ba, gb, gl, anchors = (lesson[k] for k in ("cl", "ba", "gb", "gl", "anchors"))
    mined = ssd_loss(cl, ba, gb, gl, anchors, options=paper_steps_options()[3][1])
    per_box = F.cross_entropy(cl[0].detach(), mined.target_labels[0], reduction="none")
    pos, kept = mined.match.positive[0], mined.counted_negatives[0]
    total = float(mined.classification[0])
    assert total == pytest.approx(float(per_box[pos].sum() + per_box[kept].sum()), rel=1e-5)
    said = stdout(tagged(read("12_ssd_paper_loss"), "kept-overlap")).splitlines()[-1]
    assert said == (f"the mining row's classification {total:.4f}: its {int(pos.sum())} positives carry "
                    f"{per_box[pos].sum():.2f}, its {int(kept.sum())} kept negatives {per_box[kept].sum():.2f} "
                    f"({per_box[kept].sum() / total:.1%})")
    assert int(kept.sum()) == 3 * int(pos.sum())  # the count is what mining fixes
    assert per_box[kept].sum() / total > 0.9  # "nearly all of it"
