"""The SSD paper's box coding (log-space offsets over variances) against torchvision's ``BoxCoder(10, 10, 5, 5)``,
and the lesson's coding left as it was."""
from __future__ import annotations

import math

import pytest
import torch

from ssd_lesson import AnchorSpec, activations_to_boxes, make_anchors
from ssd_lesson.core.coding import LOG_SIZE_CLIP, decode_log_offsets, encode_log_offsets
from tests.helpers import random_boxes
from tests.reference.torchvision_ssd import IMAGE_SIZE, SWAP_AXES


def box_coder():
    from torchvision.models.detection._utils import BoxCoder

    return BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))


@pytest.mark.parametrize("spec", [AnchorSpec(), AnchorSpec.ssd300()], ids=["189", "8732"])
def test_log_offsets_decode_as_torchvision_s_box_coder(spec):
    anchors = make_anchors(spec, dtype=torch.float64)
    actns = torch.randn(2, len(anchors), 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    ours = activations_to_boxes(actns, anchors, coding="log_offsets")
    for b in range(2):
        theirs = box_coder().decode_single(actns[b][:, SWAP_AXES], anchors.corners[:, SWAP_AXES] * IMAGE_SIZE)
        torch.testing.assert_close(ours[b], theirs[:, SWAP_AXES] / IMAGE_SIZE, rtol=0, atol=1e-12)


def test_log_offsets_encode_as_torchvision_s_box_coder_and_decode_back():
    anchors = make_anchors(dtype=torch.float64)
    boxes = random_boxes(len(anchors), torch.Generator().manual_seed(2))
    ours = encode_log_offsets(boxes, anchors.centers_hw)
    theirs = box_coder().encode_single(boxes[:, SWAP_AXES] * IMAGE_SIZE, anchors.corners[:, SWAP_AXES] * IMAGE_SIZE)
    torch.testing.assert_close(ours, theirs[:, SWAP_AXES], rtol=0, atol=1e-10)
    torch.testing.assert_close(decode_log_offsets(ours, anchors.center_planes).T, boxes, rtol=0, atol=1e-14)


def test_zero_offsets_are_the_anchor_boxes_and_one_unit_is_a_tenth_of_a_box_or_exp_of_a_fifth():
    anchors = make_anchors(dtype=torch.float64)
    zero = activations_to_boxes(torch.zeros(1, 189, 4, dtype=torch.float64), anchors, coding="log_offsets")[0]
    torch.testing.assert_close(zero, anchors.corners, rtol=0, atol=1e-15)
    one = activations_to_boxes(torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64).expand(1, 189, 4), anchors,
                               coding="log_offsets")[0]
    cy, cx, h, w = anchors.centers_hw.unbind(-1)
    torch.testing.assert_close((one[:, 0] + one[:, 2]) / 2, cy + 0.1 * h, rtol=0, atol=1e-15)  # the centre: h / 10 down
    torch.testing.assert_close(one[:, 2] - one[:, 0], h * math.exp(0.2), rtol=1e-14, atol=0)  # the height: x e^0.2
    torch.testing.assert_close(one[:, 3] - one[:, 1], w, rtol=1e-14, atol=0)


def test_a_wild_size_activation_gives_a_huge_box_not_inf():
    anchors = make_anchors(dtype=torch.float64)
    boxes = activations_to_boxes(torch.full((1, 189, 4), 1e4, dtype=torch.float64), anchors, coding="log_offsets")[0]
    assert torch.isfinite(boxes).all()
    torch.testing.assert_close(boxes[:, 2] - boxes[:, 0], anchors.centers_hw[:, 2] * math.exp(LOG_SIZE_CLIP))


def test_the_lesson_s_coding_is_the_default_and_an_unknown_one_is_refused():
    anchors = make_anchors(dtype=torch.float64)
    actns = torch.randn(1, 189, 4, dtype=torch.float64)
    assert torch.equal(activations_to_boxes(actns, anchors), activations_to_boxes(actns, anchors, coding="tanh_corners"))
    assert not torch.allclose(activations_to_boxes(actns, anchors), activations_to_boxes(actns, anchors, coding="log_offsets"))
    with pytest.raises(ValueError, match="coding must be one of 'tanh_corners', 'log_offsets', got 'corners'"):
        activations_to_boxes(actns, anchors, coding="corners")
