"""Every argument of every widget, to its constructor or to ``.set``, is checked when it is given: a wrong type is
a TypeError, a wrong shape, length or value (NaN, out of range) a ValueError, each saying
``Widget: name must be <what is expected>; got <what was given>``, and a refused ``.set`` leaves the widget as it was."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from ssd_lesson import LossOptions
from ssd_lesson.course.widgets import (AnchorWidget, BoxWidget, DetectionWidget, FocalWidget, FollowBox, IouWidget,
                                       ThresholdWidget)
from ssd_lesson.data.voc import VOC_CLASSES
from ssd_lesson.drawing import plots
from tests.helpers import seeded_example

A = 189  # the lesson's anchor boxes
DPI = 30  # small figures: these tests look at refusals, not at pictures


@pytest.fixture(scope="module")
def case():
    ex, anchors, cl, ba, gb, gl = seeded_example()
    return {"ex": ex, "anchors": anchors, "cl": cl, "ba": ba, "image": plots.as_scene(ex).image, "gb": gb[0], "gl": gl[0]}


def with_nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[7] = math.nan
    return t


def _make(name: str, c: dict, **given):
    """Widget ``name`` on the lesson's example, with ``given`` in place of its arguments."""
    ex, anchors, cl, ba = c["ex"], c["anchors"], c["cl"], c["ba"]
    args = {
        "anchor": lambda: dict(example=ex),
        "box": lambda: dict(example=ex, anchors=anchors, box_actns=ba),
        "iou": lambda: dict(example=ex),
        "threshold": lambda: dict(example=ex, anchors=anchors, class_logits=cl, box_actns=ba),
        "focal": lambda: dict(example=ex, anchors=anchors, class_logits=cl, box_actns=ba),
        "follow": lambda: dict(example=ex, anchors=anchors, class_logits=cl, box_actns=ba),
        "detection": lambda: dict(images=[c["image"]], class_logits=cl, box_actns=ba, anchors=anchors,
                                  gt_boxes=[c["gb"]], gt_labels=[c["gl"]], class_names=VOC_CLASSES),
    }[name]()
    cls = {"anchor": AnchorWidget, "box": BoxWidget, "iou": IouWidget, "threshold": ThresholdWidget,
           "focal": FocalWidget, "follow": FollowBox, "detection": DetectionWidget}[name]
    return cls(**{"dpi": DPI, **args, **given})


def refused(error: type, message: str):
    """``pytest.raises`` for the whole message, as it reads."""
    return pytest.raises(error, match="^" + re.escape(message) + "$")


EVERY = ["anchor", "box", "iou", "threshold", "focal", "follow", "detection"]
WIDGET = {"anchor": "AnchorWidget", "box": "BoxWidget", "iou": "IouWidget", "threshold": "ThresholdWidget",
          "focal": "FocalWidget", "follow": "FollowBox", "detection": "DetectionWidget"}


# ---------------------------------------------------------------- what every widget takes
@pytest.mark.parametrize("name", EVERY)
@pytest.mark.parametrize("given, error, expected", [
    (dict(dpi=0), ValueError, "dpi must be a whole number from 10 to 600; got 0 (int)"),
    (dict(dpi=10_000), ValueError, "dpi must be a whole number from 10 to 600; got 10000 (int)"),
    (dict(dpi=72.5), TypeError, "dpi must be a whole number from 10 to 600; got 72.5 (float)"),
    (dict(dpi="80"), TypeError, "dpi must be a whole number from 10 to 600; got '80' (str)"),
    (dict(image_format="gif"), ValueError, "image_format must be one of 'png', 'jpeg'; got 'gif' (str)"),
    (dict(image_format=None), ValueError, "image_format must be one of 'png', 'jpeg'; got None (NoneType)"),
], ids=["dpi-0", "dpi-huge", "dpi-float", "dpi-text", "format-gif", "format-none"])
def test_every_widget_checks_its_display_arguments(case, name, given, error, expected):
    with refused(error, f"{WIDGET[name]}: {expected}"):
        _make(name, case, **given)


@pytest.mark.parametrize("name", [n for n in EVERY if n != "detection"])
@pytest.mark.parametrize("example", [5, "photo.jpg", None], ids=["int", "text", "none"])
def test_every_widget_on_one_example_says_what_example_takes(case, name, example):
    with refused(TypeError, f"{WIDGET[name]}: example must be a data.Example, a Scene or (image, boxes, labels); "
                            f"got {example!r} ({type(example).__name__})"):
        _make(name, case, example=example)


@pytest.mark.parametrize("name", ["box", "threshold", "focal", "follow"])
def test_anchors_must_be_anchors(case, name):
    with refused(TypeError, f"{WIDGET[name]}: anchors must be the Anchors of make_anchors(); got 'anchors' (str)"):
        _make(name, case, anchors="anchors")


@pytest.mark.parametrize("name", ["threshold", "focal", "follow"])
def test_the_model_outputs_of_one_image_are_checked(case, name):
    w, cl, ba = WIDGET[name], case["cl"], case["ba"]
    with refused(ValueError, f"{w}: class_logits must be a tensor of shape (1, {A}, C+1); got a tensor of shape (1, 188, 21)"):
        _make(name, case, class_logits=cl[:, :188])
    with refused(ValueError, f"{w}: class_logits must be a tensor of shape (1, {A}, C+1); got a tensor of shape ({A}, 21)"):
        _make(name, case, class_logits=cl[0])
    with refused(TypeError, f"{w}: class_logits must be a tensor of shape (1, {A}, C+1); got a numpy array of shape (1, {A}, 21)"):
        _make(name, case, class_logits=cl.numpy())
    with refused(ValueError, f"{w}: class_logits must be finite numbers (1 of its values are NaN or infinite); "
                             f"got a tensor of shape (1, {A}, 21)"):
        _make(name, case, class_logits=with_nan(cl))
    labels = plots.as_scene(case["ex"]).labels
    with refused(ValueError, f"{w}: class_logits must be a tensor with a column per class and one for the background "
                             f"(the example holds class {int(labels.max())}); got a tensor of shape (1, {A}, 3)"):
        _make(name, case, class_logits=cl[..., :3])
    with refused(ValueError, f"{w}: box_actns must be a tensor of shape (1, {A}, 4); got a tensor of shape (1, {A}, 3)"):
        _make(name, case, box_actns=ba[..., :3])
    with refused(ValueError, f"{w}: box_actns must be finite numbers (1 of its values are NaN or infinite); "
                             f"got a tensor of shape (1, {A}, 4)"):
        _make(name, case, box_actns=with_nan(ba))


# ---------------------------------------------------------------- each widget's own arguments
@pytest.mark.parametrize("name, given, error, message", [
    ("box", dict(step=0), ValueError, "BoxWidget: step must be a number from 0.001 to 0.99; got 0 (int)"),
    ("box", dict(index=True), ValueError, "box index True is not a whole number; boxes are 0 to 188"),
    ("box", dict(index="11"), ValueError, "box index '11' is out of range: boxes are 0 to 188"),
    ("iou", dict(gt=1.5), TypeError, "IouWidget: gt must be a whole number; got 1.5 (float)"),
    ("iou", dict(gt="0"), TypeError, "IouWidget: gt must be a whole number; got '0' (str)"),
    ("iou", dict(gt=7), ValueError, "IouWidget: gt 7 is out of range: the image has ground-truth boxes 0 to 3"),
    ("iou", dict(step=math.nan), ValueError, "IouWidget: step must be a number from 0.001 to 0.5; got nan (float)"),
    ("threshold", dict(threshold=1.2), ValueError, "ThresholdWidget: threshold must be a number from 0 to 0.95; got 1.2 (float)"),
    ("threshold", dict(threshold="0.5"), TypeError, "ThresholdWidget: threshold must be a number from 0 to 0.95; got '0.5' (str)"),
    ("threshold", dict(options=LossOptions(iou_threshold=0.97)), ValueError,
     "ThresholdWidget: options.iou_threshold must be a number from 0 to 0.95; got 0.97 (float)"),
    ("threshold", dict(top=2), ValueError, "ThresholdWidget: top must be a number from 0.05 to 1; got 2 (int)"),
    ("threshold", dict(step=-0.05), ValueError, "ThresholdWidget: step must be a number from 0.001 to 0.95; got -0.05 (float)"),
    ("threshold", dict(max_labels=-1), ValueError, "ThresholdWidget: max_labels must be a whole number of at least 0; got -1 (int)"),
    ("threshold", dict(max_labels=2.5), TypeError, "ThresholdWidget: max_labels must be a whole number of at least 0; got 2.5 (float)"),
    ("focal", dict(gamma=-1), ValueError, "FocalWidget: gamma must be a number from 0 to 5; got -1 (int)"),
    ("focal", dict(gamma=7.0), ValueError, "FocalWidget: gamma must be a number from 0 to 5; got 7.0 (float)"),
    ("focal", dict(alpha=math.inf), ValueError, "FocalWidget: alpha must be a number from 0 to 1; got inf (float)"),
    ("focal", dict(alpha="0.25"), TypeError, "FocalWidget: alpha must be a number from 0 to 1; got '0.25' (str)"),
    ("focal", dict(options=LossOptions(focal_gamma=6.0)), ValueError,
     "FocalWidget: options.focal_gamma must be a number from 0 to 5; got 6.0 (float)"),
    ("follow", dict(index=A), ValueError, f"FollowBox: index must be a whole number from 0 to {A - 1}; got {A} (int)"),
    ("follow", dict(index=-1), ValueError, f"FollowBox: index must be a whole number from 0 to {A - 1}; got -1 (int)"),
    ("follow", dict(index=9.5), TypeError, f"FollowBox: index must be a whole number from 0 to {A - 1}; got 9.5 (float)"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_wrong_argument_is_named_with_what_was_expected_and_given(case, name, given, error, message):
    with refused(error, message):
        _make(name, case, **given)


def test_iou_widget_needs_a_ground_truth_box(case):
    scene = plots.as_scene(case["ex"])
    empty = scene._replace(boxes=np.zeros((0, 4)), labels=np.zeros(0, dtype=int))
    with refused(ValueError, "IouWidget: example must hold a ground-truth box (the fixed one); this one has none"):
        IouWidget(empty, dpi=DPI)


def test_detection_widget_checks_names_images_ground_truth_and_outputs(case):
    cl, ba, gb, gl = case["cl"], case["ba"], case["gb"], case["gl"]
    w = "DetectionWidget"
    with refused(ValueError, f"{w}: class_names must be 20 names, one per class (class_logits has 21 columns: 20 "
                             "classes and the background); got 5: 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle'"):
        _make("detection", case, class_names=VOC_CLASSES[:5])  # was an IndexError from the drawing
    with refused(ValueError, f"{w}: class_names must be 20 names, one per class (class_logits has 21 columns: 20 "
                             "classes and the background); got 21: 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle' ..."):
        _make("detection", case, class_names=[*VOC_CLASSES, "extra"])
    with refused(TypeError, f"{w}: class_names must be a list of some names; got 'aeroplane' (str)"):
        _make("detection", case, class_names="aeroplane")
    with refused(ValueError, f"{w}: images must be a list of 1 images (one per row of class_logits); got 2"):
        _make("detection", case, images=[case["image"]] * 2)
    with refused(ValueError, f"{w}: gt_boxes must be a list of 1 (G, 4) tensors (one per image); got 0"):
        _make("detection", case, gt_boxes=[])
    with refused(ValueError, f"{w}: gt_boxes[0] must be a tensor of shape (G, 4); got a tensor of shape ({len(gb)}, 3)"):
        _make("detection", case, gt_boxes=[gb[:, :3]])
    with refused(ValueError, f"{w}: gt_labels[0] must be a tensor of shape ({len(gb)},); got a tensor of shape (0,)"):
        _make("detection", case, gt_labels=[gl[:0]])
    with refused(ValueError, f"{w}: gt_labels[0] must be whole class numbers 0 to 19 (or -1: padding); got "
                             f"{[20] * len(gl)!r} (list)"):
        _make("detection", case, gt_labels=[torch.full_like(gl, 20)])
    with refused(TypeError, f"{w}: anchors must be the anchors of make_anchors(); got None (NoneType)"):
        _make("detection", case, anchors=None)
    with refused(ValueError, f"{w}: class_logits must be finite numbers (1 of its values are NaN or infinite); "
                             f"got a tensor of shape (1, {A}, 21)"):
        _make("detection", case, class_logits=with_nan(cl))
    with refused(ValueError, f"{w}: box_actns must be a tensor of shape (1, {A}, 4); got a tensor of shape (2, {A}, 4)"):
        _make("detection", case, box_actns=torch.cat([ba, ba]))
    with refused(TypeError, f"{w}: shown must be a whole number; got 0.0 (float)"):
        _make("detection", case, shown=0.0)
    with refused(ValueError, f"{w}: shown -1 is out of range: images 0 to 0"):
        _make("detection", case, shown=-1)
    with refused(ValueError, f"{w}: score must be a number from 0.05 to 0.95; got 0.01 (float)"):
        _make("detection", case, score=0.01)
    with refused(TypeError, f"{w}: nms_iou must be a number from 0.3 to 1; got '0.5' (str)"):
        _make("detection", case, nms_iou="0.5")


# ---------------------------------------------------------------- .set: refused, the widget as it was
def _state(w) -> tuple:
    return bytes(w.image.value), w.readout.value


@pytest.fixture(scope="module")
def made(case):
    return {name: _make(name, case) for name in EVERY}


@pytest.mark.parametrize("name, given, error, message", [
    ("anchor", dict(grids=4), TypeError,
     "AnchorWidget.set: grids must be a tuple, one of (4, 2, 1), (4,), (2, 1), (8, 4, 2, 1), (1,); got 4 (int)"),
    ("anchor", dict(zooms="1.0"), TypeError,
     "AnchorWidget.set: zooms must be a tuple, one of (0.7, 1.0, 1.3), (1.0,), (0.5, 1.0, 1.5, 2.0); got '1.0' (str)"),
    ("anchor", dict(ratios=[(1.0, 3.0)]), ValueError, "ratios [(1.0, 3.0)] is not one of the choices: "
     "((1.0, 1.0), (1.0, 0.5), (0.5, 1.0)), ((1.0, 1.0),), ((1.0, 1.0), (1.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 1.0))"),
    ("anchor", dict(ssd300="yes"), TypeError, "AnchorWidget.set: ssd300 must be True or False; got 'yes' (str)"),
    ("box", dict(dx="0.5"), TypeError, "BoxWidget.set: dx must be a number; got '0.5' (str)"),
    ("box", dict(dy=[0.1]), TypeError, "BoxWidget.set: dy must be a number; got [0.1] (list)"),
    ("box", dict(dw=math.nan), ValueError, "tanh(dw) = nan is not a number; the slider takes -0.99 to 0.99"),
    ("box", dict(index=189), ValueError, "box index 189 is out of range: boxes are 0 to 188"),
    ("iou", dict(cx="0.5"), TypeError, "IouWidget.set: cx must be a number; got '0.5' (str)"),
    ("iou", dict(h=math.inf), ValueError, "IouWidget.set: h must be a number; got inf (float)"),
    ("iou", dict(w=True), TypeError, "IouWidget.set: w must be a number; got True (bool)"),
    ("threshold", dict(threshold="0.3"), TypeError, "ThresholdWidget.set: threshold must be a number; got '0.3' (str)"),
    ("threshold", dict(threshold=None), TypeError, "ThresholdWidget.set: threshold must be a number; got None (NoneType)"),
    ("threshold", dict(threshold=math.nan), ValueError, "threshold nan is not a number; the slider takes 0.0 to 0.95"),
    ("focal", dict(gamma="2"), TypeError, "FocalWidget.set: gamma must be a number (the slider takes 0 to 5); got '2' (str)"),
    ("focal", dict(alpha=[0.5]), TypeError, "FocalWidget.set: alpha must be a number (the slider takes 0 to 1); got [0.5] (list)"),
    ("follow", dict(index=500), ValueError, f"FollowBox.set: index must be a whole number from 0 to {A - 1}; got 500 (int)"),
    ("follow", dict(index="3"), TypeError, f"FollowBox.set: index must be a whole number from 0 to {A - 1}; got '3' (str)"),
    ("detection", dict(score=True), TypeError,
     "DetectionWidget.set: score must be a number (the slider takes 0.05 to 0.95); got True (bool)"),
    ("detection", dict(nms_iou="0.5"), TypeError,
     "DetectionWidget.set: nms_iou must be a number (the slider takes 0.3 to 1); got '0.5' (str)"),
    ("detection", dict(score=math.nan), ValueError, "score = nan is not a number; the slider takes 0.05 to 0.95"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_set_refuses_a_wrong_value_and_changes_nothing(made, name, given, error, message):
    w = made[name]
    before = _state(w)
    with refused(error, message):
        w.set(**given)
    assert _state(w) == before


def test_set_still_takes_numbers_of_every_kind(made):
    """numpy numbers and one-element tensors are numbers: a learner's ``t.max()`` moves a slider as a float would."""
    w = made["threshold"]
    w.set(np.float32(0.3))
    assert w.threshold == pytest.approx(0.3)
    w.set(torch.tensor(0.5))
    assert w.threshold == pytest.approx(0.5)
    made["follow"].set(np.int64(7))
    assert made["follow"].index == 7
    made["focal"].set(gamma=torch.tensor(2.0), alpha=np.float64(0.5))
    assert (made["focal"].gamma, made["focal"].alpha) == (2.0, 0.5)
