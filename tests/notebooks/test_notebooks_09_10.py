"""Notebooks 9 (training) and 10 (inference) show what the library computes.

The committed, executed notebooks are read with nbformat (nothing is executed here).
Every number their checkpoint-based checked cells print is recomputed from the library
with the same checkpoint, example and held-out images: the losses on the lesson's
example, the positives' IoU, the top scores, the detection counts before and after NMS,
and the mAP. The short training in notebook 9 is not re-run (too slow for a unit test):
its table is checked against fastai's own progress table in the same notebook. The two
figures the notebooks added to ``ssd_lesson.drawing.plots`` are tested at the end.
"""
from __future__ import annotations

import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.colors
import nbformat
import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from ssd_lesson import LossOptions, activations_to_boxes, make_anchors, ssd_loss
from ssd_lesson.drawing import plots
from ssd_lesson.core.boxes import box_iou
from ssd_lesson.course.lesson import CHECKPOINT_DIR, example_activations, load_example, synthetic_example

from tests.helpers import boxes_in, checks_output, opens_with_the_kit, stdout, tagged

# Not the unit tier: the notebooks' numbers are recomputed with the lesson's model (fastai's body).
pytestmark = pytest.mark.fastai

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NB9, NB10 = "09_training.ipynb", "10_inference.ipynb"
FLOAT = re.compile(r"-?\d+\.\d+")


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NB_DIR / name, as_version=4)




def floats(line: str) -> list[float]:
    return [float(v) for v in FLOAT.findall(line)]


def line_starting(text: str, prefix: str) -> str:
    hits = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    assert len(hits) == 1, f"expected one line starting {prefix!r} in:\n{text}"
    return hits[0]


def used_checkpoint(nb: nbformat.NotebookNode, tag: str, prefix: str) -> Path | None:
    """The ``data/checkpoints/NAME`` the notebook says it loaded, or None (its fallback)."""
    m = re.search(prefix + r" data/checkpoints/(\S+?)(\s|$)", stdout(tagged(nb, tag)))
    return None if m is None else CHECKPOINT_DIR / m.group(1)


def load(path: Path):
    from ssd_lesson.model.checkpoint import load_checkpoint

    assert path.is_file(), f"the notebook used {path}, which is gone: re-execute it"
    return load_checkpoint(path)


# ---------------------------------------------------------------- structure
@pytest.mark.parametrize("name", [NB9, NB10])
def test_notebook_is_executed_clean_and_small(name):
    nb = read(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert opens_with_the_kit(nb), code[0].source
    assert all(c.execution_count is not None for c in code), "notebook not executed"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "not executed top to bottom in one go"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not [c for c in code if any(o.output_type == "stream" and o.name == "stderr" for o in c.outputs)
                and checks_output(c)], "a checked cell writes to stderr"
    assert (NB_DIR / name).stat().st_size < 5 * 2**20
    assert nb.cells[-1].cell_type == "markdown" and nb.cells[-1].source.startswith("## What's next")
    assert sum(checks_output(c) for c in code) >= 4
    figures = {"augment-figure", "lr-find", "plot-loss", "progress-figure", "fig4-before", "fig4-after", "nms-figure",
               "detections"}
    for c in code:  # every figure cell produced its figure
        if figures & set(c.metadata.get("tags", [])):
            assert any("image/jpeg" in o.get("data", {}) or "image/png" in o.get("data", {}) for o in c.outputs), c.source


def test_09_says_which_data_and_example_it_uses():
    nb = read(NB9)
    assert "collage set" in stdout(nb.cells[3]) or "Pascal VOC" in stdout(nb.cells[3])
    assert load_example().source in stdout(tagged(nb, "model"))


# ---------------------------------------------------------------- notebook 9
@pytest.fixture(scope="module")
def example():
    ex = load_example()
    anchors = make_anchors()
    x, boxes, labels = ex.batch()
    return ex, anchors, x, boxes, labels


def example_losses(acts, example, options: LossOptions = LossOptions.lesson_code()) -> list[float]:
    """The example's losses as notebook 9 prints them: by default with its Learner's options."""
    _, anchors, _, boxes, labels = example
    r = ssd_loss(*acts, boxes, labels, anchors, options=options)
    return [r.classification.item(), r.regression.item(), r.total.item()]


def test_09_losses_before_training_equal_the_library(example):
    from fastai.torch_core import set_seed
    from ssd_lesson.model.net import create_ssd_model

    out = stdout(tagged(read(NB9), "example-losses"))
    seeded = example_activations(example[0], example[1], checkpoint=False, verbose=False)[:2]
    np.testing.assert_allclose(floats(line_starting(out, "seeded random activations")),
                               example_losses(seeded, example), atol=1e-4)
    set_seed(0, reproducible=True)  # as the notebook does right before building the model
    model = create_ssd_model("tiny", pretrained=False, n_hidden=128)
    with torch.no_grad():
        untrained = model.eval()(example[2])
    np.testing.assert_allclose(floats(line_starting(out, "untrained model")), example_losses(untrained, example), atol=1e-4)
    assert floats(line_starting(out, "after 2 epochs here"))[0] < floats(line_starting(out, "untrained model"))[0]


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self._row, self._in = [], None, False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        self._in = tag in ("td", "th")

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
        self._in = False

    def handle_data(self, data):
        if self._in and self._row is not None:
            self._row.append(data)


def test_09_history_table_is_fastais_record():
    nb = read(NB9)
    html = "".join(o.get("data", {}).get("text/html", "") for o in tagged(nb, "fit").outputs)
    parser = _Cells()
    parser.feed(html)
    header, *rows = parser.rows
    assert header[:7] == ["epoch", "train_loss", "valid_loss", "clas_loss", "regr_loss", "mAP50", "mAP_coco"]
    printed = stdout(tagged(nb, "history")).splitlines()
    assert printed[0].split() == header[1:7]
    for row, line in zip(rows, printed[2:2 + len(rows)]):
        np.testing.assert_allclose(floats(line), [float(v) for v in row[1:7]], atol=1e-4)
    assert len(rows) == 2


@pytest.fixture(scope="module")
def checkpoint_09():
    path = used_checkpoint(read(NB9), "checkpoint", "trained checkpoint:")
    if path is None:
        pytest.skip("notebook 9 ran without a trained checkpoint (its fallback: the 2-epoch model)")
    return path


def test_09_checkpoint_loss_on_the_example_equals_the_library(example, checkpoint_09):
    model = load(checkpoint_09)
    out = stdout(tagged(read(NB9), "checkpoint"))
    assert line_starting(out, "made with:") == "made with: " + model.record.command
    from ssd_lesson.course.held_out import checkpoint_summary

    summary = checkpoint_summary(model).splitlines()  # the starting checkpoint, the photos seen / kept out
    for key in ("starting from", "photos its training objects"):
        want = [ln for ln in summary if ln.startswith(key)]
        assert [ln for ln in out.splitlines() if ln.startswith(key)] == want
    assert line_starting(out, "its loss:") == "its loss: " + model.record.loss_options.describe()
    assert "sha256" not in out  # the commands, not the file's digest
    with torch.no_grad():
        trained = model.eval()(example[2])
    # one loss for every model (the Learner's), then the checkpoint's own: two tables, each saying which loss
    same, own = stdout(tagged(read(NB9), "checkpoint-losses")).split("\n\n")
    assert same.splitlines()[0] == f"the Learner's loss ({LossOptions.lesson_code().describe()}), on the example:"
    np.testing.assert_allclose(floats(line_starting(same, "trained checkpoint")), example_losses(trained, example), atol=1e-4)
    assert own.splitlines()[0] == f"trained checkpoint, with the loss it last trained with ({model.record.loss_options.describe()}):"
    printed = [floats(line_starting(own, k))[0] for k in ("classification", "regression", "total")]
    np.testing.assert_allclose(printed, example_losses(trained, example, model.record.loss_options), atol=1e-4)
    before = stdout(tagged(read(NB9), "example-losses"))  # the two other rows: the table above, under the same loss
    for name in ("untrained model", "after 2 epochs here"):
        assert floats(line_starting(same, name)) == floats(line_starting(before, name))


def test_09_positives_iou_table_equals_the_library(example, checkpoint_09):
    ex, anchors, x, boxes, labels = example
    model = load(checkpoint_09)
    with torch.no_grad():
        trained = model.eval()(x)
    # the followed boxes are chosen without the trained model: the positives of a match on the anchor boxes
    match = ssd_loss(*trained, boxes, labels, anchors, options=LossOptions.lesson_code()).match
    still = [torch.zeros_like(t) for t in trained]  # other activations: the same positives
    assert torch.equal(match.positive, ssd_loss(*still, boxes, labels, anchors, options=LossOptions.lesson_code()).match.positive)
    pos = match.positive[0].nonzero().flatten()
    gt = match.gt_idx[0, pos]
    pred = activations_to_boxes(trained[1], anchors)[0]
    want = box_iou(pred[pos], boxes[0])[range(len(pos)), gt]
    out = stdout(tagged(read(NB9), "ious"))
    table, summary = out.split("\n\n", 1)
    lines = table.splitlines()
    assert lines[0].split() == ["untrained", "model", "after", "2", "epochs", "here", "trained", "checkpoint"]
    names = [f"box {int(a)} ({int(g)}: {ex.classes[int(g)]})" for a, g in zip(pos, gt)]  # the row names its object
    assert [ln.split(")")[0] + ")" for ln in lines[1:]] == names
    np.testing.assert_allclose([floats(ln)[-1] for ln in lines[1:]], want.numpy(), atol=1e-3)
    from fastai.torch_core import set_seed
    from ssd_lesson.model.net import create_ssd_model

    set_seed(0, reproducible=True)  # the untrained column: the model as the notebook builds it, before training
    with torch.no_grad():
        untrained = create_ssd_model("tiny", pretrained=False, n_hidden=128).eval()(x)
    first = box_iou(activations_to_boxes(untrained[1], anchors)[0][pos], boxes[0])[range(len(pos)), gt]
    np.testing.assert_allclose([floats(ln)[0] for ln in lines[1:]], first.numpy(), atol=1e-3)
    # the checkpoint's boxes further from their object (from the printed 3-decimal columns, so a box whose
    # change rounds to within 0.001 of 0 may fall either way)
    d = {n: floats(ln)[-1] - floats(ln)[0] for n, ln in zip(names, lines[1:])}
    sure_closer = {n for n, v in d.items() if v > 1e-3}
    sure_further = {n for n, v in d.items() if v < -1e-3}
    closer = summary.strip("\n").splitlines()[-1]
    n_closer = int(re.match(r"trained checkpoint: (\d+) of (\d+) boxes closer to their object than untrained, ", closer)[1])
    assert len(sure_closer) <= n_closer <= len(d) - len(sure_further)
    further = stdout(tagged(read(NB9), "ious-by-object")).splitlines()[0]
    head = "trained checkpoint, the boxes further from their object than untrained: "
    assert further.startswith(head)
    listed = {} if further == head + "none" else dict(
        re.match(r"(box \d+ \(\d+: \w+\)) \(([+-]\d\.\d{3})\)$", item).groups() for item in further[len(head):].split(", "))
    assert sure_further <= set(listed) and not (set(listed) & sure_closer) and len(listed) == len(d) - n_closer
    assert all(abs(float(v) - d[n]) <= 1.5e-3 for n, v in listed.items())


# ---------------------------------------------------------------- notebook 10
@pytest.fixture(scope="module")
def inference(tmp_path_factory):
    """The model, held-out batch and outputs notebook 10 used, rebuilt from the library."""
    from ssd_lesson.data.images import DetectionDataset, collate_detections
    from ssd_lesson.data.collage import collage_records

    nb = read(NB10)
    path = used_checkpoint(nb, "load", "model: the trained checkpoint")
    if path is None:
        pytest.skip("notebook 10 ran without a trained checkpoint")
    load_out = stdout(tagged(nb, "load"))
    if "VOC not found" not in load_out:
        pytest.skip("notebook 10 ran on Pascal VOC; these checks rebuild the offline collage set")
    model = load(path)
    seed = model.record.collage_seed()
    seed = 0 if seed is None else seed
    kept_out = "photos kept out of its training" in load_out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train, valid, _ = collage_records(200, seed=seed, root=tmp_path_factory.mktemp("collage"),
                                          photos="held_out" if kept_out else "all")
    valid = (valid + train)[:40] if kept_out else valid[:40]
    from ssd_lesson.course.held_out import _held_out_collages

    assert _held_out_collages(model, 40)[1] in load_out  # what the mAP measures, as printed
    images, gt_boxes, gt_labels = collate_detections([DetectionDataset(valid)[i] for i in range(len(valid))])
    with torch.no_grad():
        class_logits, box_actns = model.eval()(images)
    return dict(nb=nb, model=model, anchors=make_anchors(model.spec), images=images, gt_boxes=gt_boxes,
                gt_labels=gt_labels, class_logits=class_logits, box_actns=box_actns)


def test_10_outputs_and_top_scores_equal_the_library(inference):
    nb, names = inference["nb"], inference["model"].class_names
    out = stdout(tagged(nb, "outputs"))
    assert f"ground truth: {int((inference['gt_labels'] >= 0).sum())} objects in 40 images" in out
    scores = inference["class_logits"][0, :, :-1].sigmoid()
    top = scores.flatten().topk(8)
    lines = stdout(tagged(nb, "scores")).splitlines()
    assert lines[0] == "ground truth: " + ", ".join(names[int(v)] for v in inference["gt_labels"][0] if v >= 0)
    rows = [ln.split() for ln in lines[2:10]]
    assert [int(r[0]) for r in rows] == (top.indices // len(names)).tolist()
    assert [r[1] for r in rows] == [names[int(i) % len(names)] for i in top.indices]
    np.testing.assert_allclose([float(r[2]) for r in rows], top.values.numpy(), atol=1e-3)
    assert lines[-1].endswith(f"{int((scores > 0.25).sum())} of {scores.numel()}")


def test_10_nms_counts_equal_decode(inference):
    from ssd_lesson.model.infer import decode

    everything = dict(max_per_image=10**6)
    lines = stdout(tagged(inference["nb"], "nms-counts")).splitlines()[1:]
    for line in lines:
        thr, before, after = float(line.split()[0]), int(line.split()[1]), int(line.split()[2])
        counts = [sum(len(d.labels) for d in decode(inference["class_logits"], inference["box_actns"], inference["anchors"],
                                                    score_threshold=thr, nms_iou=nms, **everything)) for nms in (1.0, 0.5)]
        assert [before, after] == counts
        assert after < before
    assert len(lines) == 3


def test_10_map_equals_detection_map(inference):
    from ssd_lesson.model.infer import decode
    from ssd_lesson.model.metrics import detection_map

    lines = stdout(tagged(inference["nb"], "map")).splitlines()
    assert len(lines) == 3
    for line in lines:
        hit = re.fullmatch(r"score threshold (\S+): mAP@0.5 (\S+), COCO mAP@\[0.5:0.95\] (\S+)  \(40 held-out images\)", line)
        assert hit is not None, line
        thr, map50, coco = (float(v) for v in hit.groups())
        dets = decode(inference["class_logits"], inference["box_actns"], inference["anchors"], score_threshold=thr)
        m = detection_map(dets, list(inference["gt_boxes"]), list(inference["gt_labels"]))
        np.testing.assert_allclose([map50, coco], [m["map_50"], m["map"]], atol=1e-4)


# ---------------------------------------------------------------- the plots these notebooks added


def _stage_case(seed: int, scale: float, iou_threshold: float = 0.4):
    ex = synthetic_example()
    anchors = make_anchors()
    _, boxes, labels = ex.batch()
    g = torch.Generator().manual_seed(seed)
    acts = {"before": torch.zeros(1, len(anchors), 4), "after": torch.randn(1, len(anchors), 4, generator=g) * scale}
    match = ssd_loss(torch.zeros(1, len(anchors), 21), acts["before"], boxes, labels, anchors,
                     iou_threshold=iou_threshold, match_on="anchors").match
    stages = {k: activations_to_boxes(a, anchors)[0] for k, a in acts.items()}
    return ex, boxes, match, stages


def test_training_progress_figure_draws_each_objects_positives_in_its_row():
    ex, boxes, match, stages = _stage_case(0, 1.0)
    pos, gi = match.positive[0].nonzero().flatten(), match.gt_idx[0]
    fig = plots.training_progress_figure(ex, stages, gi, match.positive[0])
    objects = sorted({int(gi[a]) for a in pos})
    rows = np.array(fig.axes).reshape(len(objects), len(stages))  # a row per object, a column per stage
    for (title, b), ax in zip(stages.items(), rows[0]):  # a column's title: the mean IoU of every positive
        iou = box_iou(b[pos].double(), boxes[0].double())[range(len(pos)), gi[pos]].mean()
        assert ax.get_title() == f"{title}\nmean IoU with its object {float(iou):.2f}"
    for row, g in zip(rows, objects):
        mine = [int(a) for a in pos if int(gi[a]) == g]
        assert row[0].get_ylabel() == f"{g}: {ex.classes[g]}"
        for ax, b in zip(row, stages.values()):
            drawn = boxes_in(ax)
            assert sorted(int(k.split(":")[1]) for k in drawn) == mine  # only the row's object's positives
            np.testing.assert_allclose([drawn[f"box:{a}"] for a in mine], b[mine].numpy(), atol=1e-6)
            assert list(boxes_in(ax, "gt:")) == [f"gt:{g}"]  # its band, and no other
            iou = box_iou(b[mine].double(), boxes[0].double())[:, g].mean()
            assert ax.get_xlabel().startswith(f"mean IoU {float(iou):.2f} ({len(mine)} positive")
        colours = [{p.get_gid(): p.get_edgecolor() for p in ax.patches if (p.get_gid() or "").startswith("box:")}
                   for ax in row]
        assert all(c == colours[0] for c in colours) and len(set(colours[0].values())) == len(mine)  # one colour a box


def test_training_progress_figure_at_most_per_object_the_same_boxes_in_every_panel():
    ex, boxes, match, stages = _stage_case(1, 0.5, iou_threshold=0.2)
    pos, gi = match.positive[0].nonzero().flatten().tolist(), match.gt_idx[0]
    last = box_iou(stages["after"].double(), boxes[0].double())[range(len(gi)), gi]  # (A,) IoU with its object
    fig = plots.training_progress_figure(ex, stages, gi, match.positive[0], per_object=2)
    objects = sorted({int(gi[a]) for a in pos})
    rows = np.array(fig.axes).reshape(len(objects), len(stages))
    fewer = False
    for row, obj in zip(rows, objects):
        mine = [a for a in pos if int(gi[a]) == obj]
        best, worst = max(mine, key=lambda a: (last[a], -a)), min(mine, key=lambda a: (last[a], a))
        want = [best] if len(mine) == 1 else sorted({best, worst})
        fewer |= len(want) < len(mine)
        for ax in row:  # the same boxes in every panel of the row; the caption counts them all
            assert sorted(int(k.split(":")[1]) for k in boxes_in(ax)) == want
            assert ax.get_xlabel().endswith(f"({len(mine)} positives, {len(want)} drawn)" if len(want) < len(mine)
                                            else f"({len(mine)} positive{'s' if len(mine) > 1 else ''})")
    assert fewer  # the test's case has an object with more than two positives
    with pytest.raises(ValueError, match="per_object must be at least 1, got 0"):
        plots.training_progress_figure(ex, stages, gi, match.positive[0], per_object=0)


def test_detection_panels_figure_labels_each_detection():
    from ssd_lesson.model.infer import Detections

    img = np.zeros((50, 80, 3), np.uint8)
    dets = [Detections(torch.tensor([[5.0, 10, 40, 70]]), torch.tensor([7]), torch.tensor([0.8])),
            Detections(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0))]
    names = [f"c{i}" for i in range(20)]
    fig = plots.detection_panels_figure([img, img], dets, names, titles=["a", "b"], ncols=2)
    axes = [ax for ax in fig.axes if ax.axison or ax.images]
    assert [t.get_text() for t in axes[0].texts] == ["c7 0.80"] and not axes[1].texts
    assert [ax.get_title() for ax in axes] == ["a", "b"]
    rect = [p for p in axes[0].patches if isinstance(p, Rectangle)][0]
    assert rect.get_xy() == (10.0, 5.0) and (rect.get_width(), rect.get_height()) == (60.0, 35.0)
    with pytest.raises(ValueError):
        plots.detection_panels_figure([img], dets, names)
    truths = [(torch.tensor([[2.0, 4, 20, 30]]), torch.tensor([7])), (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))]
    fig = plots.detection_panels_figure([img, img], dets, names, ncols=2, truths=truths)
    axes = [ax for ax in fig.axes if ax.images]
    truth = [p for p in axes[0].patches if p.get_gid() == "truth"]
    assert len(truth) == 1 and truth[0].get_xy() == (4.0, 2.0) and (truth[0].get_width(), truth[0].get_height()) == (26.0, 18.0)
    assert not [p for p in axes[1].patches if p.get_gid() == "truth"] and [t.get_text() for t in axes[0].texts] == ["c7 0.80"]
    with pytest.raises(ValueError, match="2 images but 1 ground truths"):
        plots.detection_panels_figure([img, img], dets, names, truths=truths[:1])


def test_detection_panels_figure_draws_false_alarms_thin_with_their_score_only():
    """With ``hits`` (notebook 10): a hit keeps its thick outline and ``class score``; a false alarm is a thin line
    labelled with its score, and the legend names both and each class's colour."""
    from ssd_lesson.drawing.draw import BOX_COLORS
    from ssd_lesson.model.infer import Detections

    img = np.zeros((50, 80, 3), np.uint8)
    dets = [Detections(torch.tensor([[5.0, 10, 40, 70], [6.0, 12, 40, 60]]), torch.tensor([7, 7]), torch.tensor([0.8, 0.6]))]
    truths = [(torch.tensor([[5.0, 10, 40, 70]]), torch.tensor([7]))]
    fig = plots.detection_panels_figure([img], dets, [f"c{i}" for i in range(20)], truths=truths,
                                        hits=[torch.tensor([True, False])])
    ax = [a for a in fig.axes if a.images][0]
    assert [t.get_text() for t in ax.texts] == ["c7 0.80", "0.60"]
    widths = [p.get_linewidth() for p in ax.patches if isinstance(p, Rectangle) and p.get_gid() != "truth"]
    assert widths == [2.0, 1.0]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["ground truth", "hit (class score)", "false alarm (score)", "c7"]
    assert fig.legends[0].legend_handles[-1].get_facecolor()[:3] == pytest.approx(
        matplotlib.colors.to_rgb(BOX_COLORS[7 % len(BOX_COLORS)]))
