"""Boxes and IoU against a plain double loop and torchvision.ops.

torchvision is imported inside the tests that use it: importing it takes two seconds, which the unit
tier's collection does not pay."""
from __future__ import annotations

import pytest
import torch

from ssd_lesson import box_iou, centers_to_corners, corners_to_centers

from tests.helpers import random_boxes
from tests.reference import ref_iou


# ---------------------------------------------------------------- boxes

def test_box_iou_matches_torchvision_and_reference():
    from torchvision import ops as tvops

    gen = torch.Generator().manual_seed(0)
    a, b = random_boxes(37, gen), random_boxes(11, gen)
    ours = box_iou(a, b)
    assert ours.shape == (37, 11)
    torch.testing.assert_close(ours, tvops.box_iou(a, b), rtol=0, atol=1e-12)
    torch.testing.assert_close(ours, ref_iou(a, b), rtol=0, atol=1e-12)
    assert (ours > 0).any() and (ours == 0).any()  # the random case covers both overlap and none


def test_box_iou_batched_over_leading_dims():
    from torchvision import ops as tvops

    gen = torch.Generator().manual_seed(1)
    a = random_boxes(2 * 3 * 5, gen).view(2, 3, 5, 4)
    b = random_boxes(3 * 7, gen).view(3, 7, 4)  # broadcasts over the first dim of a
    out = box_iou(a, b)
    assert out.shape == (2, 3, 5, 7)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], tvops.box_iou(a[i, j], b[j]), rtol=0, atol=1e-12)


def test_box_iou_edge_cases():
    unit = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    assert box_iou(unit, unit).item() == 1.0
    point = torch.tensor([[0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)
    line = torch.tensor([[0.1, 0.2, 0.1, 0.9]], dtype=torch.float64)
    out = box_iou(torch.cat([point, line]), torch.cat([point, line, unit]))
    assert not torch.isnan(out).any()
    assert torch.equal(out, torch.zeros(2, 3, dtype=torch.float64))
    half = torch.tensor([[0.0, 0.0, 1.0, 0.5]], dtype=torch.float64)
    assert box_iou(half, unit).item() == 0.5
    with pytest.raises(ValueError, match="last dimension 4"):
        box_iou(torch.zeros(3, 5), unit)


def test_center_corner_conversions_match_torchvision():
    from torchvision import ops as tvops

    gen = torch.Generator().manual_seed(2)
    corners = random_boxes(20, gen)
    centers = corners_to_centers(corners)
    # torchvision's cxcywh/xyxy is axis-symmetric, so it serves for (cy, cx, h, w) / (y0, x0, y1, x1) too.
    torch.testing.assert_close(centers, tvops.box_convert(corners, "xyxy", "cxcywh"))
    torch.testing.assert_close(centers_to_corners(centers), corners)


@pytest.mark.parametrize("a,b,says", [
    (torch.tensor([[0, 0, 10, 10]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]]), r"box_iou: a must be a floating-point.*int64"),
    (torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([[0.0, 0.0, 1.0, 1.0]]), r"box_iou: a must be \(\.\.\., N, 4\).*\(4,\)"),
    (torch.zeros(2, 3, 4), torch.zeros(3, 5, 4), r"leading dimensions of a \(2, 3, 4\) and b \(3, 5, 4\) do not broadcast"),
    (torch.zeros(3, 4), [[0.0, 0.0, 1.0, 1.0]], r"box_iou: b must be a floating-point tensor of boxes, got list"),
])
def test_box_iou_refuses_bad_input(a, b, says):
    with pytest.raises(ValueError, match=says):
        box_iou(a, b)
    assert box_iou(torch.zeros(2, 3, 4), torch.zeros(1, 5, 4)).shape == (2, 3, 5)  # broadcasting leading dims is fine


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_box_iou_refuses_nan_or_inf_unless_told_not_to_check(bad):
    a, b = torch.tensor([[0.1, 0.1, 0.5, 0.5]]), torch.tensor([[0.2, 0.2, 0.6, 0.6], [0.0, 0.0, 1.0, 1.0]])
    b_bad = b.clone()
    b_bad[1, 2] = bad
    with pytest.raises(ValueError, match=r"box_iou: b contains NaN or inf coordinates"):
        box_iou(a, b_bad)
    with pytest.raises(ValueError, match=r"box_iou: a contains NaN or inf coordinates"):
        box_iou(b_bad, a)
    unchecked = box_iou(a, b_bad, validate=False)  # the caller's promise: no check, no host sync
    assert unchecked[0, 0] == pytest.approx(0.09 / (0.16 + 0.16 - 0.09))  # the finite pair is untouched
    assert not torch.isfinite(unchecked[0, 1]) or unchecked[0, 1] == 0  # what NaN / inf corners give
