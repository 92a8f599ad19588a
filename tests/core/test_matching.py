"""Matching predicted boxes to ground truth, against a plain loop and the lesson's own function."""
from __future__ import annotations

import pytest
import torch

from ssd_lesson import FORCED_OVERLAP, IOU_THRESHOLD, Match, box_iou, make_anchors, match_boxes, ssd_loss
from ssd_lesson.core.matching import match_one_image

from tests.helpers import random_boxes
from tests.reference import ref_iou, ref_map_to_ground_truth, ref_match, ref_ssd_loss


# ---------------------------------------------------------------- matching

def test_match_random_against_plain_loop():
    gen = torch.Generator().manual_seed(4)
    anchors = make_anchors(dtype=torch.float64)
    for trial in range(20):
        B, G = 3, int(torch.randint(1, 8, (1,), generator=gen))
        gt = random_boxes(B * G, gen).view(B, G, 4)
        valid = torch.rand(B, G, generator=gen) > 0.3
        valid[:, 0] = True
        ious = box_iou(anchors.corners, gt)
        m = match_boxes(ious, valid, 0.4)
        for b in range(B):
            keep = torch.nonzero(valid[b])[:, 0]
            ov, idx = ref_match(ious[b][:, keep])
            assert torch.equal(m.gt_idx[b], keep[idx])
            assert torch.equal(m.gt_overlap[b], ov)
            assert torch.equal(m.positive[b], ov > 0.4)


def test_match_agrees_with_lessons_own_function():
    gen = torch.Generator().manual_seed(5)
    anchors = make_anchors(dtype=torch.float64)
    gt = random_boxes(6, gen).unsqueeze(0)
    ious = box_iou(anchors.corners.unsqueeze(0), gt)
    m = match_boxes(ious, torch.ones(1, 6, dtype=torch.bool))
    ov, idx = ref_map_to_ground_truth(ious[0].T)  # the lesson's (G, A) layout
    assert torch.equal(m.gt_idx[0], idx) and torch.equal(m.gt_overlap[0], ov)
    assert int((m.gt_overlap[0] == FORCED_OVERLAP).sum()) == len(set(ious[0].argmax(0).tolist()))


def test_match_forced_and_shared_best_box_later_wins():
    # Box 0 is the best box of both ground-truth boxes; box 1 overlaps gt 0 a little.
    ious = torch.tensor([[[0.9, 0.8], [0.3, 0.1], [0.0, 0.0]]], dtype=torch.float64)
    m = match_boxes(ious, torch.ones(1, 2, dtype=torch.bool), 0.4)
    assert m.gt_idx.tolist() == [[1, 0, 0]]  # box 0 taken by the later gt 1; box 2 overlaps nothing -> 0
    assert m.gt_overlap.tolist() == [[1.99, 0.3, 0.0]]
    assert m.positive.tolist() == [[True, False, False]]


def test_match_ground_truth_overlapping_nothing_claims_first_box():
    # As in the lesson: a ground-truth box with no overlap still claims its argmax, the first box.
    ious = torch.tensor([[[0.0, 0.5], [0.0, 0.7], [0.0, 0.2]]], dtype=torch.float64)
    m = match_boxes(ious, torch.ones(1, 2, dtype=torch.bool))
    assert m.gt_idx.tolist() == [[0, 1, 1]]
    assert m.gt_overlap.tolist() == [[1.99, 1.99, 0.2]]


def test_match_padding_and_empty():
    ious = torch.tensor([[[0.9, 0.95], [0.2, 0.99]]], dtype=torch.float64)
    m = match_boxes(ious, torch.tensor([[True, False]]))  # gt 1 is padding: never chosen
    assert m.gt_idx.tolist() == [[0, 0]] and m.gt_overlap.tolist() == [[1.99, 0.2]]
    m = match_boxes(ious, torch.tensor([[False, False]]))
    assert m.gt_idx.tolist() == [[0, 0]] and m.gt_overlap.tolist() == [[0.0, 0.0]] and not m.positive.any()
    m = match_boxes(torch.zeros(2, 5, 0), torch.zeros(2, 0, dtype=torch.bool))
    assert m.gt_idx.shape == (2, 5) and not m.positive.any()
    with pytest.raises(ValueError, match="gt_valid"):
        match_boxes(ious, torch.ones(1, 3, dtype=torch.bool))


def test_match_compiled_code_path_keeps_the_tie_rules():
    # The same cases as above through torch.compile's formulation of max-with-first-index.
    match = torch.compile(match_boxes, backend="eager", fullgraph=True)
    ious = torch.tensor([[[0.9, 0.8], [0.3, 0.1], [0.0, 0.0]]], dtype=torch.float64)
    m = match(ious, torch.ones(1, 2, dtype=torch.bool), 0.4)
    assert m.gt_idx.tolist() == [[1, 0, 0]] and m.gt_overlap.tolist() == [[1.99, 0.3, 0.0]]
    ious = torch.tensor([[[0.0, 0.5], [0.0, 0.7], [0.0, 0.2]]], dtype=torch.float64)
    m = match(ious, torch.ones(1, 2, dtype=torch.bool))
    assert m.gt_idx.tolist() == [[0, 1, 1]] and m.gt_overlap.tolist() == [[1.99, 1.99, 0.2]]
    ious = torch.tensor([[[0.9, 0.95], [0.2, 0.99]]], dtype=torch.float64)
    m = match(ious, torch.tensor([[True, False]]))
    assert m.gt_idx.tolist() == [[0, 0]] and m.gt_overlap.tolist() == [[1.99, 0.2]]
    m = match(ious, torch.tensor([[False, False]]))
    assert m.gt_idx.tolist() == [[0, 0]] and m.gt_overlap.tolist() == [[0.0, 0.0]] and not m.positive.any()
    # Ties between equal overlaps (half the entries 0.5) and float32 against the eager kernels.
    gen = torch.Generator().manual_seed(16)
    ious = (torch.rand(4, 189, 7, generator=gen) * 2).round() / 4
    valid = torch.rand(4, 7, generator=gen) > 0.3
    for got, want in zip(match(ious, valid, 0.4), match_boxes(ious, valid, 0.4)):
        assert torch.equal(got, want)


def test_match_degenerate_predicted_boxes():
    gt = torch.tensor([[[0.1, 0.1, 0.5, 0.5]]], dtype=torch.float64)
    boxes = torch.tensor([[[0.2, 0.2, 0.2, 0.2], [0.3, 0.1, 0.3, 0.4], [0.1, 0.1, 0.5, 0.5]]], dtype=torch.float64)
    ious = box_iou(boxes, gt)
    assert ious[0, :, 0].tolist() == [0.0, 0.0, 1.0]  # identical boxes: IoU 1; degenerate: 0, no NaN
    m = match_boxes(ious, torch.ones(1, 1, dtype=torch.bool))
    assert m.gt_overlap.tolist() == [[0.0, 0.0, 1.99]]


def test_match_boxes_refuses_bad_input():
    ious = torch.tensor([[[0.9, 0.1], [0.2, 0.6], [0.3, 0.3], [0.0, 0.0], [0.1, 0.5]]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="ious: contains NaN"):
        match_boxes(torch.where(torch.eye(5, 2, dtype=torch.bool)[None], float("nan"), ious), valid)
    with pytest.raises(ValueError, match=r"iou_threshold: must be a number in \[0, 1.99\), got nan"):
        match_boxes(ious, valid, float("nan"))
    with pytest.raises(ValueError, match=r"iou_threshold: .* got 2.5"):
        match_boxes(ious, valid, 2.5)
    with pytest.raises(ValueError, match=r"ious: expected a \(B, A, G\) floating-point tensor, got \(5, 2\)"):
        match_boxes(ious[0], valid)
    with pytest.raises(ValueError, match="gt_valid: expected a bool tensor .* got torch.float32"):
        match_boxes(ious, valid.float())
    m = match_boxes(ious, valid, 0.4)  # the same input, well formed
    assert m.gt_idx.tolist() == [[0, 1, 0, 0, 1]]
    assert m.gt_overlap[0].tolist() == pytest.approx([FORCED_OVERLAP, FORCED_OVERLAP, 0.3, 0.0, 0.5])


def test_match_one_image_the_readable_loop_agrees_with_the_batched_match_boxes():
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        A, G = int(torch.randint(1, 12, (1,), generator=g)), int(torch.randint(0, 5, (1,), generator=g))
        ious = (torch.rand(A, G, generator=g) * 0.8).round(decimals=1)  # rounding makes ties and exact 0.4s
        ious[torch.rand(A, generator=g) < 0.3] = 0  # boxes that overlap nothing
        thr = [0.4, 0.5, 0.0][trial % 3]
        one = match_one_image(ious.clone(), thr)
        batched = match_boxes(ious[None], torch.ones(1, G, dtype=torch.bool), thr)
        for mine, theirs in zip(one, batched):
            assert torch.equal(mine, theirs[0]), (ious, one, batched)
    with pytest.raises(ValueError, match=r"ious: expected an \(A, G\)"):
        match_one_image(torch.zeros(2, 3, 4))


# ---------------------------------------------------------------- exactly on the threshold

#: One object (0, 0, 0.625, 1) and boxes whose IoU with it is exactly 0.4 (0.25 / 0.625), above (its own box,
#: and 0.25 + 2**-10 tall: 0.4015625), and below (0.25 - 2**-10 tall). Every coordinate and area is a
#: dyadic fraction, so the IoU is the division's correctly rounded result: the float nearest 0.4, the
#: threshold itself, in float32 and float64 alike.
ON_THE_THRESHOLD_GT = [0.0, 0.0, 0.625, 1.0]
ON_THE_THRESHOLD_BOXES = [[0.0, 0.0, 0.25, 1.0], [0.0, 0.0, 0.625, 1.0], [0.0, 0.0, 0.25 + 2**-10, 1.0],
                          [0.0, 0.0, 0.25 - 2**-10, 1.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_a_box_exactly_on_the_threshold_is_background(dtype):
    """A box must overlap its object by strictly more than 0.4, as the lesson's ``gt_overlap > threshold``:
    the box at exactly 0.4 is background, the one a hair above is positive, the one a hair below is not."""
    assert IOU_THRESHOLD == 0.4
    gt = torch.tensor([ON_THE_THRESHOLD_GT], dtype=dtype)
    boxes = torch.tensor(ON_THE_THRESHOLD_BOXES, dtype=dtype)
    ious = box_iou(boxes, gt)  # (A, 1)
    assert ious[0, 0] == torch.tensor(IOU_THRESHOLD, dtype=dtype)  # exactly the threshold, as a float of this dtype
    assert ref_iou(boxes, gt)[0, 0] == IOU_THRESHOLD  # the plain double loop, in Python floats, agrees
    assert ious[2, 0] > IOU_THRESHOLD > ious[3, 0]
    ov, idx = ref_match(ref_iou(boxes, gt))  # the plain loop: box 1 is forced, the others keep their IoU
    want = (ov > IOU_THRESHOLD).tolist()  # the lesson's rule, as the reference loss applies it
    assert want == [False, True, True, False]
    batched = match_boxes(ious[None], torch.ones(1, 1, dtype=torch.bool))
    for m in (Match(*(t[0] for t in batched)), match_one_image(ious)):
        assert m.positive.tolist() == want
        assert m.gt_overlap[0] == ious[0, 0] and m.gt_overlap[1] == FORCED_OVERLAP


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_anchors_exactly_on_the_threshold_are_background_in_the_loss(dtype):
    """The whole loss against the reference (the lesson's loop, plain pieces): one object (0, 0, 0.625, 0.25)
    whose IoU with two of the lesson's anchors, (0, 0, 0.25, 0.25) and (0.25, 0, 0.5, 0.25), is exactly 0.4
    (1/16 over 5/32); neither is its best anchor, so both must be background."""
    anchors = make_anchors(dtype=dtype)
    gt_boxes = torch.tensor([[[0.0, 0.0, 0.625, 0.25]]], dtype=dtype)
    gt_labels = torch.tensor([[3]])
    ious = box_iou(anchors.corners, gt_boxes[0])[:, 0]
    on = torch.nonzero(ious == torch.tensor(IOU_THRESHOLD, dtype=dtype)).flatten().tolist()
    assert on == [3, 39] and int(ious.argmax()) not in on
    gen = torch.Generator().manual_seed(40)
    cl = torch.randn(1, len(anchors), 21, generator=gen, dtype=dtype)
    bb = torch.randn(1, len(anchors), 4, generator=gen, dtype=dtype)
    res = ssd_loss(cl, bb, gt_boxes, gt_labels, anchors, match_on="anchors")
    total, [(loc, clas, gt_idx, gt_overlap, pos, gt_clas)] = ref_ssd_loss(
        cl, bb, gt_boxes, gt_labels, anchors.centers_hw, anchors.grid_sizes, match_on="anchors", threshold=0.4)
    assert not pos[on].any() and pos.sum() >= 2  # the reference: background, and some positives elsewhere
    assert torch.equal(res.match.positive[0], pos)
    assert torch.equal(res.target_labels[0], gt_clas)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert res.total.item() == pytest.approx(total.item(), rel=tol)
