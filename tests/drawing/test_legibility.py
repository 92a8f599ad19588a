"""Every figure of the series (notebooks 01-12) can be read where the notebooks show it: no two drawn texts overlap,
no two tick labels touch, none is under 8 px tall, both at the figure's stored size and at the width
JupyterLab shows it (a figure wider than :data:`DISPLAY_WIDTH` is drawn again that wide and measured again), no box label is cut by its panel,
and no figure is wider than 1600 px.

Each figure is built on the example with the trained checkpoint's activations, with the calls
and arguments of the notebooks' code cells, and measured by :func:`ssd_lesson.drawing.placement.legibility`
from matplotlib's renderer at ``savefig.dpi`` 90 (:func:`ssd_lesson.drawing.draw.notebook_style`): every
text the renderer draws (box labels, tick labels, titles, legends, axis labels) and its pixel box.
The widgets' figures are measured in the states a learner reaches with their controls, each at the
dpi the widget draws its image with (80 or 90). Notebook 09 trains models; its figures are drawn here
on stand-ins with the same shapes (seeded random activations for the untrained stages). Notebook 10's
detection figures are drawn as it draws them, from the trained checkpoint on its held-out collages
(made in a temporary folder), its precision-recall curve and widget on the example. Not measured:
notebook 09's two plots that fastai draws itself (``lr_find``, ``plot_loss``).
"""
from __future__ import annotations

import re

import pytest

from ssd_lesson import activations_to_boxes, loss_gradients, ssd_loss
from ssd_lesson.drawing import plots, tables
from ssd_lesson.drawing.placement import legibility

# Not the unit tier: the figures are drawn from the lesson's model, which builds fastai's body.
pytestmark = pytest.mark.fastai

DPI = 90  # savefig.dpi of the notebooks (draw.notebook_style)
DISPLAY_WIDTH = 900  # px: JupyterLab scales a wider image down to its output area, about 900-1000 px wide
# a number as a tick label writes it: 0.5, −0.2, 225, $\\mathdefault{10^{-5}}$
TICK = re.compile(r"[$]?(\\+mathdefault\{)?[-\u2212+]?\d[\d.]*(\^\{[-\u2212]?\d+\})?\}?[$]?")
MAX_WIDTH = 1600


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Notebook 10's held-out images, made as it makes them (:func:`held_out_records`) in a temporary output
    folder; a callable, so that only the figures that need them make them."""
    from ssd_lesson.course.held_out import held_out_records
    from ssd_lesson.course.lesson import OUT_ENV_VAR

    made = {}

    def records(model):
        if "records" not in made:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv(OUT_ENV_VAR, str(tmp_path_factory.mktemp("out")))
                made["records"] = held_out_records(model, verbose=False)
        return made["records"]

    return records


@pytest.fixture(scope="module")
def kit():
    """The notebooks' example and activations, and their plotting style (savefig.dpi 90, 9 pt) while measuring."""
    from ssd_lesson.course.lesson import notebook_state, start_lesson

    with notebook_state():
        yield start_lesson(checkpoint=None, verbose=False)


def _nb02(k):
    return {"02 cell_figure": lambda: plots.cell_figure(k.example, k.anchors, grid=4, cell=11, scale=0),
            **{f"02 anchor_grid_figure grid={g}": (lambda g=g: plots.anchor_grid_figure(k.example, k.anchors, grid=g))
               for g in (4, 2, 1)},
            "02 all_anchors_figure": lambda: plots.all_anchors_figure(k.example, k.anchors)}


def _nb03(k):
    pred = activations_to_boxes(k.box_actns, k.anchors)[0]

    return {"03 moved_boxes_figure": lambda: plots.moved_boxes_figure(k.example, k.anchors, pred, grid=4, scale=0),
            "03 all_predictions_figure": lambda: plots.all_predictions_figure(k.example, k.anchors, pred)}


def _nb04_05(k):
    res = ssd_loss(k.class_logits, k.box_actns, k.gt_boxes, k.gt_labels, k.anchors)
    pred, match = res.pred_boxes[0].detach(), res.match
    return {"01 ground_truth_figure": lambda: plots.ground_truth_figure(k.example),
            "04 iou_heatmap": lambda: plots.iou_heatmap(res.ious, k.example, k.anchors),
            "05 iou_heatmap": lambda: plots.iou_heatmap(res.ious, k.example, k.anchors, match),
            "05 class_figure Fig. 5": lambda: plots.class_figure(
                k.example, k.anchors, pred, match.gt_idx[0], title="Fig. 5: ground-truth class of every predicted box"),
            "05 class_figure Fig. 6": lambda: plots.class_figure(
                k.example, k.anchors, pred, match.gt_idx[0], background=~match.positive[0],
                title="Fig. 6: boxes with overlap <= 0.4 become background (bg)")}


def _nb06_08(k):
    import torch.nn.functional as F


    res = ssd_loss(k.class_logits, k.box_actns, k.gt_boxes, k.gt_labels, k.anchors)
    shares = tables.box_class_losses(k.class_logits, res)
    softmax_ce = F.cross_entropy(k.class_logits[0], res.target_labels[0], reduction="none")
    cl, ba = k.class_logits.clone().requires_grad_(), k.box_actns.clone().requires_grad_()
    gres = ssd_loss(cl, ba, k.gt_boxes, k.gt_labels, k.anchors)
    box_grad, logit_grad = loss_gradients(gres, cl)
    modes = {mode: ssd_loss(k.class_logits, k.box_actns, k.gt_boxes, k.gt_labels, k.anchors, match_on=mode)
             for mode in ("predictions", "anchors")}
    return {"06 focal_curves_figure": lambda: plots.focal_curves_figure(gammas=(1.0, 2.0), alpha=0.25),
            "06 box_loss_figure": lambda: plots.box_loss_figure(k.anchors, {
                "BCE (lesson)": shares["BCE"], "softmax cross-entropy": softmax_ce,
                "focal, gamma 1 (lesson)": shares["focal gamma=1"],
            }, res.match.positive[0]),
            "07 regression_figure": lambda: plots.regression_figure(k.example, res),
            "08 gradient_figure": lambda: plots.gradient_figure(k.example, k.anchors, gres, box_grad, logit_grad),
            "08 follow_box_figure": lambda: _follow_box_figure(k),
            "11 match_modes_figure": lambda: plots.match_modes_figure(k.example, k.anchors, modes["predictions"],
                                                                     modes["anchors"])}


def _follow_box_figure(k):
    """Notebook 08's static figure of the first forced match, as its cell draws it."""
    from ssd_lesson import FORCED_OVERLAP
    from ssd_lesson.course.follow import follow_box_figure

    res = ssd_loss(k.class_logits, k.box_actns, k.gt_boxes, k.gt_labels, k.anchors)
    forced = int((res.match.gt_overlap[0] == FORCED_OVERLAP).nonzero()[0])
    return follow_box_figure(k.example, k.anchors, k.class_logits, k.box_actns, forced, size=(8.4, 4.6))


def _nb09_10(k, held_out):
    from ssd_lesson.model.infer import predict
    from ssd_lesson.course.lesson import example_activations, find_checkpoint
    from ssd_lesson.model.checkpoint import load_checkpoint

    seeded = example_activations(k.example, k.anchors, checkpoint=False, verbose=False)
    match = ssd_loss(k.class_logits, k.box_actns, k.gt_boxes, k.gt_labels, k.anchors, match_on="anchors").match
    boxes = {"untrained model": activations_to_boxes(seeded[1] * 0.1, k.anchors)[0],
             "after 2 epochs here": activations_to_boxes(seeded[1], k.anchors)[0],
             "trained checkpoint": activations_to_boxes(k.box_actns, k.anchors)[0]}
    from ssd_lesson.drawing.augment_figures import augment_figure

    out = {"09 augment_figure": lambda: augment_figure(k.example, n=8, seed=0),
           "09 training_progress_figure": lambda: plots.training_progress_figure(
               k.example, boxes, match.gt_idx[0], match.positive[0], per_object=4),
           "09 all_predictions_figure": lambda: plots.all_predictions_figure(k.example, k.anchors,
                                                                             boxes["trained checkpoint"])}
    path = find_checkpoint()
    if path is not None:
        model = load_checkpoint(path, spec=k.anchors.spec)
        image = k.example.batch()[0][0]
        names = list(model.class_names)

        def nms():
            before, after = (predict(model, image, k.anchors, score_threshold=0.25, nms_iou=n)[0] for n in (1.0, 0.5))
            plural = lambda n: f"{n} detection" + ("" if n == 1 else "s")
            return plots.detection_panels_figure([image, image], [before, after], names, ncols=2, panel=4.0,
                                                 titles=[f"before NMS: {plural(len(before.labels))}",
                                                         f"after NMS: {plural(len(after.labels))}"])

        def grid():  # notebook 10's held-out images 1 to 6, titled "truth: motorbike, person" and so on
            from ssd_lesson.data.images import DetectionDataset, collate_detections
            from ssd_lesson.model.metrics import detection_hits

            records = held_out(model)[1:7]
            images, gt_boxes, gt_labels = collate_detections([DetectionDataset(records)[i] for i in range(len(records))])
            dets = predict(model, images, k.anchors, score_threshold=0.25)
            side = images.shape[-1]
            truths = [(b[lab >= 0] * side, lab[lab >= 0]) for b, lab in zip(gt_boxes, gt_labels)]
            return plots.detection_panels_figure(images, dets, names, ncols=3, panel=3.3, truths=truths,
                                                 hits=[detection_hits(d, *t) for d, t in zip(dets, truths)],
                                                 titles=["truth: " + ", ".join(r.class_names) for r in records])

        def pr():  # one class's precision-recall curve, over 12 copies of the example
            from ssd_lesson.drawing.pr_plot import pr_curve_figure
            from ssd_lesson.model.voc_eval import voc_ap

            dets = predict(model, [image] * 12, k.anchors, score_threshold=0.05)
            gt = dict(boxes=k.gt_boxes[0] * image.shape[-1], labels=k.gt_labels[0])
            voc = voc_ap([dict(boxes=d.boxes, scores=d.scores, labels=d.labels) for d in dets], [gt] * 12,
                         inclusive=False)
            return pr_curve_figure(voc, int(voc.n_positives.argmax()), names)

        out.update({"10 detection_panels_figure NMS": nms, "10 detection_panels_figure grid": grid,
                    "10 pr_curve_figure": pr})
    return out


def _widgets(k):
    """The widgets' figures, in the states a learner reaches: the first box, a saturated one, the 1x1
    box; the threshold at 0 (every box but three positive), at the lesson's 0.4 and at the top."""
    from ssd_lesson.course.widgets.follow import FollowBox
    from ssd_lesson.course.widgets import BoxWidget, ThresholdWidget

    def box(i):
        return as_shown(BoxWidget(k.example, k.anchors, k.box_actns, index=i))

    def at_bound():  # notebook 03's box 99 pushed to its limits, as its cells set it
        w = BoxWidget(k.example, k.anchors, k.box_actns, index=99)
        limit = w.sliders["dx"].max
        return as_shown(w.set(dy=0, dx=limit, dh=-limit, dw=limit))

    def threshold(t):
        return as_shown(ThresholdWidget(k.example, k.anchors, k.class_logits, k.box_actns, threshold=t))

    def follow(i):
        return as_shown(FollowBox(k.example, k.anchors, k.class_logits, k.box_actns, index=i))

    return {**{f"03 BoxWidget box={i}": (lambda i=i: box(i)) for i in (11, 99, 188)},
            "03 BoxWidget at its bounds": at_bound,
            **{f"05 ThresholdWidget threshold={t}": (lambda t=t: threshold(t)) for t in (0.0, 0.4, 0.95)},
            **{f"08 FollowBox box={i}": (lambda i=i: follow(i)) for i in (99, 5, 188)},
            "08 FollowBox Fig. 4 view": lambda: (lambda w: (w.pick_figure, w.dpi))(
                FollowBox(k.example, k.anchors, k.class_logits, k.box_actns)),
            **_new_widgets(k)}


def _new_widgets(k):
    """The widgets of notebooks 02, 04, 06, 10 and 12 at their start and at a far setting."""
    from ssd_lesson.course.widgets import DetectionWidget, FocalWidget, MiningWidget
    from ssd_lesson.course.widgets import AnchorWidget, IouWidget
    from ssd_lesson.data.voc import VOC_CLASSES

    def detections(score):
        return as_shown(DetectionWidget([plots.as_scene(k.example).image], k.class_logits, k.box_actns, k.anchors,
                                     [k.gt_boxes[0]], [k.gt_labels[0]], VOC_CLASSES, score=score))

    def mining(ratio):
        return as_shown(MiningWidget(k.example, k.anchors, k.class_logits, k.box_actns, neg_pos_ratio=ratio))

    return {"02 AnchorWidget 189": lambda: as_shown(AnchorWidget(k.example)),
            "02 AnchorWidget SSD300": lambda: as_shown(AnchorWidget(k.example).set(ssd300=True)),
            "04 IouWidget": lambda: as_shown(IouWidget(k.example)),
            "06 FocalWidget gamma=1": lambda: as_shown(FocalWidget(k.example, k.anchors, k.class_logits, k.box_actns)),
            "06 FocalWidget gamma=5": lambda: as_shown(FocalWidget(k.example, k.anchors, k.class_logits, k.box_actns,
                                                                gamma=5.0, alpha=0.9)),
            "10 DetectionWidget score=0.25": lambda: detections(0.25),
            "10 DetectionWidget score=0.05": lambda: detections(0.05),
            **{f"12 MiningWidget neg_pos_ratio={r:g}": (lambda r=r: mining(r)) for r in (3.0, 0.0, 30.0)}}


def as_shown(widget):
    """A widget's figure and the dpi it draws its image at: what the learner sees."""
    return widget.figure, widget.dpi


def series(k, held_out) -> dict:
    """``{name: build}`` for every figure of notebooks 01-12, called as the notebooks call them; ``build()``
    returns the figure, or a widget's figure and the dpi it is shown at."""
    return {**_nb04_05(k), **_nb02(k), **_nb03(k), **_nb06_08(k), **_nb09_10(k, held_out), **_widgets(k)}


NAMES = ["01 ground_truth_figure", "02 cell_figure", "02 anchor_grid_figure grid=4",
         "02 anchor_grid_figure grid=2", "02 anchor_grid_figure grid=1", "02 all_anchors_figure", "03 moved_boxes_figure",
         "03 all_predictions_figure", "04 iou_heatmap", "05 iou_heatmap", "05 class_figure Fig. 5",
         "05 class_figure Fig. 6", "06 focal_curves_figure", "06 box_loss_figure", "07 regression_figure",
         "08 gradient_figure", "08 follow_box_figure", "09 augment_figure", "09 training_progress_figure",
         "09 all_predictions_figure",
         "10 detection_panels_figure NMS", "10 detection_panels_figure grid", "10 pr_curve_figure", "11 match_modes_figure",
         "03 BoxWidget box=11", "03 BoxWidget box=99", "03 BoxWidget box=188",
         "03 BoxWidget at its bounds", "05 ThresholdWidget threshold=0.0",
         "05 ThresholdWidget threshold=0.4", "05 ThresholdWidget threshold=0.95", "08 FollowBox box=99",
         "08 FollowBox box=5", "08 FollowBox box=188", "08 FollowBox Fig. 4 view", "02 AnchorWidget 189",
         "02 AnchorWidget SSD300", "04 IouWidget", "06 FocalWidget gamma=1", "06 FocalWidget gamma=5",
         "10 DetectionWidget score=0.25", "10 DetectionWidget score=0.05", "12 MiningWidget neg_pos_ratio=3",
         "12 MiningWidget neg_pos_ratio=0", "12 MiningWidget neg_pos_ratio=30"]


@pytest.fixture(scope="module")
def builders(kit, held_out):
    return series(kit, held_out)


def test_the_list_covers_the_series(builders):
    assert set(builders) <= set(NAMES) and len(builders) >= len(NAMES) - 3  # notebook 10's three need the checkpoint


@pytest.mark.parametrize("name", NAMES)
def test_figure_is_legible(builders, name):
    if name not in builders:
        pytest.skip("needs the trained checkpoint in data/checkpoints")
    built = builders[name]()
    fig, dpi = built if isinstance(built, tuple) else (built, DPI)
    report = legibility(fig, dpi=dpi)
    assert report["texts"] > 0
    assert not report["overlaps"], f"{len(report['overlaps'])} overlapping pairs, e.g. {report['overlaps'][:5]}"
    assert not report["small"], f"texts under 8 px: {report['small'][:5]}"
    scale = min(1.0, DISPLAY_WIDTH / report["size"][0])
    assert report["min_height"] * scale >= 8, \
        f"{report['size'][0]} px wide, shown {DISPLAY_WIDTH} px wide: smallest text {report['min_height'] * scale:.1f} px"
    ticks = [(a, b) for a, b in report["touching"] if TICK.fullmatch(a.strip("'")) and TICK.fullmatch(b.strip("'"))]
    assert not ticks, f"tick labels touching: {ticks[:5]}"
    assert not report["cut"], f"labels cut by their panel: {report['cut'][:5]}"
    assert report["size"][0] <= MAX_WIDTH, f"{report['size'][0]} px wide"
    if scale < 1:  # drawn again as JupyterLab shows it, DISPLAY_WIDTH px wide: texts shrink, gaps close
        again = builders[name]()
        shown = legibility(again[0] if isinstance(again, tuple) else again, dpi=dpi * scale)
        assert abs(shown["size"][0] - DISPLAY_WIDTH) <= 1
        assert not shown["small"], f"at {DISPLAY_WIDTH} px, texts under 8 px: {shown['small'][:5]}"
        assert not shown["overlaps"], f"at {DISPLAY_WIDTH} px, overlapping texts: {shown['overlaps'][:5]}"
        touching = [(a, b) for a, b in shown["touching"] if TICK.fullmatch(a.strip("'")) and TICK.fullmatch(b.strip("'"))]
        assert not touching, f"at {DISPLAY_WIDTH} px, tick labels touching: {touching[:5]}"
