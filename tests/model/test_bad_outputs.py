"""Outputs that would give silently wrong numbers are refused or reported as what they are: NaN activations
(a diverged model) are an error naming the tensor, and the mAP of images without any object is NaN, not -1."""
from __future__ import annotations

import math

import pytest
import torch

from ssd_lesson import make_anchors
from ssd_lesson.model.infer import Detections, decode
from ssd_lesson.model.metrics import detection_map


@pytest.mark.parametrize("which", ["class_logits", "box_actns"])
@pytest.mark.parametrize("how_many", ["all", "one"])
def test_decode_refuses_nan_activations_naming_the_tensor(which, how_many):
    anchors = make_anchors()
    t = {"class_logits": torch.zeros(2, 189, 21), "box_actns": torch.zeros(2, 189, 4)}
    if how_many == "all":
        t[which].fill_(float("nan"))
    else:
        t[which][1, 7, 2] = float("nan")
    n = t[which].numel() if how_many == "all" else 1
    with pytest.raises(ValueError, match=rf"^{which}: {n} of {t[which].numel()} values are NaN"):
        decode(t["class_logits"], t["box_actns"], anchors)


def test_decode_of_finite_extremes_still_works():
    anchors = make_anchors()
    logits = torch.full((1, 189, 21), -1e4)
    logits[0, 3, 5] = float("inf")  # a certain score is a score, not an error
    (det,) = decode(logits, torch.zeros(1, 189, 4), anchors)
    assert det.labels.tolist() == [5] and det.scores.tolist() == [1.0]


def _det(boxes, labels, scores):
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.long),
                      torch.tensor(scores, dtype=torch.float32))


def test_map_without_any_ground_truth_is_nan_not_minus_one():
    dets = [_det([[0.1, 0.1, 0.5, 0.5]], [3], [0.9]), _det([], [], [])]
    gts = [torch.zeros(0, 4), torch.zeros(2, 4)]
    labels = [torch.zeros(0, dtype=torch.long), torch.full((2,), -1, dtype=torch.long)]  # none, and padding only
    got = detection_map(dets, gts, labels)
    assert math.isnan(got["map_50"]) and math.isnan(got["map"])


def test_map_with_one_image_without_objects_among_others_is_a_number():
    box = [0.1, 0.1, 0.5, 0.5]
    got = detection_map([_det([box], [3], [0.9]), _det([], [], [])], [torch.tensor([box]), torch.zeros(0, 4)],
                        [torch.tensor([3]), torch.zeros(0, dtype=torch.long)])
    assert got["map_50"] == pytest.approx(1.0)


def test_the_detection_widgets_readout_says_when_there_is_no_map():
    from ssd_lesson.course.widgets.detection import map_text

    assert map_text({"map_50": float("nan"), "map": float("nan")}) == "mAP: none (no ground-truth object in these images)"
    assert map_text({"map_50": 0.5, "map": 0.25}) == "mAP@0.5 <b>0.5000</b>, mAP@0.5:0.95 0.2500"
