"""The core library (boxes, anchors, matching, loss) against plain references and torchvision."""
from __future__ import annotations

import pytest
import torch
import torchvision.ops as tvops

from ssd_lesson import (FORCED_OVERLAP, AnchorSpec, activations_to_boxes, box_iou, centers_to_corners,
                        corners_to_centers, make_anchors, match_boxes, ssd_loss)

from .reference import ref_actn_to_bb, ref_anchors, ref_iou, ref_map_to_ground_truth, ref_match, ref_ssd_loss

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"))]


def random_boxes(n, gen, dtype=torch.float64, lo=0.02, hi=0.6):
    """``(n, 4)`` valid corner boxes inside the unit square."""
    y0, x0 = torch.rand(n, generator=gen, dtype=dtype) * 0.7, torch.rand(n, generator=gen, dtype=dtype) * 0.7
    h = lo + torch.rand(n, generator=gen, dtype=dtype) * (hi - lo)
    w = lo + torch.rand(n, generator=gen, dtype=dtype) * (hi - lo)
    return torch.stack([y0, x0, (y0 + h).clamp(max=1), (x0 + w).clamp(max=1)], dim=1)


def random_batch(B, max_g, gen, n_classes=20, A=189, dtype=torch.float64, min_g=0):
    """Activations plus ground truth padded with label -1, 0..max_g boxes per image."""
    G = max_g
    gt_boxes = torch.zeros(B, G, 4, dtype=dtype)
    gt_labels = torch.full((B, G), -1, dtype=torch.long)
    for b in range(B):
        g = int(torch.randint(min_g, max_g + 1, (1,), generator=gen))
        gt_boxes[b, :g] = random_boxes(g, gen, dtype)
        gt_labels[b, :g] = torch.randint(0, n_classes, (g,), generator=gen)
    class_logits = torch.randn(B, A, n_classes + 1, generator=gen, dtype=dtype) * 2
    box_actns = torch.randn(B, A, 4, generator=gen, dtype=dtype)
    return class_logits, box_actns, gt_boxes, gt_labels


# ---------------------------------------------------------------- boxes

def test_box_iou_matches_torchvision_and_reference():
    gen = torch.Generator().manual_seed(0)
    a, b = random_boxes(37, gen), random_boxes(11, gen)
    ours = box_iou(a, b)
    assert ours.shape == (37, 11)
    torch.testing.assert_close(ours, tvops.box_iou(a, b), rtol=0, atol=1e-12)
    torch.testing.assert_close(ours, ref_iou(a, b), rtol=0, atol=1e-12)
    assert (ours > 0).any() and (ours == 0).any()  # the random case covers both overlap and none


def test_box_iou_batched_over_leading_dims():
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
    gen = torch.Generator().manual_seed(2)
    corners = random_boxes(20, gen)
    centers = corners_to_centers(corners)
    # torchvision's cxcywh/xyxy is axis-symmetric, so it serves for (cy, cx, h, w) / (y0, x0, y1, x1) too.
    torch.testing.assert_close(centers, tvops.box_convert(corners, "xyxy", "cxcywh"))
    torch.testing.assert_close(centers_to_corners(centers), corners)


# ---------------------------------------------------------------- anchors

def test_anchor_count_order_and_values_match_reference():
    anchors = make_anchors(dtype=torch.float64)
    assert len(anchors) == 189 == AnchorSpec().n_anchors
    centers_hw, grid_sizes = ref_anchors()
    torch.testing.assert_close(anchors.centers_hw, centers_hw)
    torch.testing.assert_close(anchors.grid_sizes, grid_sizes)
    torch.testing.assert_close(anchors.corners, torch.cat([centers_hw[:, :2] - centers_hw[:, 2:] / 2,
                                                           centers_hw[:, :2] + centers_hw[:, 2:] / 2], 1))
    assert anchors.offsets == [0, 144, 180]


def test_anchor_centres_and_ratios():
    anchors = make_anchors(dtype=torch.float64)
    # First cell of the 4x4 grid: centre (1/8, 1/8); its 9 boxes come before the next cell's.
    assert anchors.centers_hw[0, :2].tolist() == [0.125, 0.125]
    assert anchors.centers_hw[9, :2].tolist() == [0.125, 0.375]  # next cell to the right: row-major
    assert anchors.centers_hw[4 * 9, :2].tolist() == [0.375, 0.125]  # first cell of the second row
    # zoom 0.7, ratio (1, .5) is tall and narrow: height 0.7/4, width 0.35/4.
    h, w = anchors.centers_hw[1, 2:].tolist()
    assert h == pytest.approx(0.175) and w == pytest.approx(0.0875) and h > w
    # The 1x1 grid's boxes scale with the whole image: zoom 1, ratio (1, 1) is the image itself.
    i = 180 + 3
    assert anchors.info(i).grid == 1 and anchors.info(i).zoom == 1.0 and anchors.info(i).ratio == (1.0, 1.0)
    assert anchors.corners[i].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert anchors.corners[180 + 6].tolist() == pytest.approx([-0.15, -0.15, 1.15, 1.15])


def test_anchor_info_and_select():
    anchors = make_anchors()
    info = anchors.info(11)  # article: anchor box 11 of the top-middle plot is zoom 0.7, ratio (1, 1)
    assert (info.grid, info.row, info.col, info.scale, info.zoom, info.ratio) == (4, 0, 1, 2, 0.7, (0.5, 1.0))
    info = anchors.info(144 + 9 * 3 + 4)
    assert (info.grid, info.row, info.col, info.zoom, info.ratio) == (2, 1, 1, 1.0, (1.0, 0.5))
    idx = anchors.select(4, 0)
    assert idx.tolist() == list(range(0, 144, 9))
    # Plot box 11 of the (zoom 0.7, ratio (1, 1)) panel is the 12th cell, row 2, column 3.
    assert anchors.info(int(idx[11]))[1:5] == (4, 2, 3, 0)
    with pytest.raises(IndexError):
        anchors.info(189)


def test_any_spec_including_ssd300():
    spec = AnchorSpec.ssd300()
    anchors = make_anchors(spec)
    assert len(anchors) == 8732 == spec.n_anchors
    assert [spec.k(i) for i in range(6)] == [4, 6, 6, 6, 4, 4]
    small = make_anchors(AnchorSpec(grids=(3,), zooms=(1.0,), ratios=((1.0, 1.0),)), dtype=torch.float64)
    assert len(small) == 9
    torch.testing.assert_close(small.corners[4], torch.tensor([1 / 3, 1 / 3, 2 / 3, 2 / 3], dtype=torch.float64))
    with pytest.raises(ValueError, match="grids"):
        AnchorSpec(grids=(0,))


@pytest.mark.parametrize("device", DEVICES)
def test_anchors_on_device_and_dtype(device):
    anchors = make_anchors(device=device, dtype=torch.float64)
    assert anchors.corners.device.type == device and anchors.corners.dtype == torch.float64
    assert anchors.to("cpu", torch.float32).corners.dtype == torch.float32


# ---------------------------------------------------------------- activations to boxes

def test_activations_to_boxes_matches_reference():
    gen = torch.Generator().manual_seed(3)
    anchors = make_anchors(dtype=torch.float64)
    actn = torch.randn(5, 189, 4, generator=gen, dtype=torch.float64) * 3
    out = activations_to_boxes(actn, anchors)
    for b in range(5):
        torch.testing.assert_close(out[b], ref_actn_to_bb(actn[b], anchors.centers_hw, anchors.grid_sizes), rtol=0, atol=1e-15)


def test_activations_to_boxes_bounds():
    anchors = make_anchors(dtype=torch.float64)
    zero = activations_to_boxes(torch.zeros(1, 189, 4, dtype=torch.float64), anchors)[0]
    torch.testing.assert_close(zero, anchors.corners)  # no activation: the anchor box itself
    for sign in (1.0, -1.0):
        big = activations_to_boxes(torch.full((1, 189, 4), sign * 50.0, dtype=torch.float64), anchors)[0]
        ctr = corners_to_centers(big)
        shift = (ctr[:, :2] - anchors.centers_hw[:, :2]) / anchors.grid_sizes
        torch.testing.assert_close(shift, torch.full_like(shift, sign * 0.5))  # half a cell at most
        ratio = ctr[:, 2:] / anchors.centers_hw[:, 2:]
        torch.testing.assert_close(ratio, torch.full_like(ratio, 1 + sign * 0.5))  # 0.5 to 1.5 times
    with pytest.raises(ValueError, match="box_actns"):
        activations_to_boxes(torch.zeros(1, 188, 4), anchors)


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


# ---------------------------------------------------------------- the loss

LOSS_CASES = [
    dict(match_on="predictions"),
    dict(match_on="anchors"),
    dict(match_on="predictions", classification="focal", focal_gamma=1.0),
    dict(match_on="anchors", classification="focal", focal_gamma=2.0),
    dict(match_on="predictions", regression_reduction="sum"),
    dict(match_on="anchors", iou_threshold=0.5, regression_reduction="sum"),
]


def _ref_kwargs(case):
    return dict(match_on=case.get("match_on", "predictions"), threshold=case.get("iou_threshold", 0.4),
                focal=case.get("classification") == "focal", gamma=case.get("focal_gamma", 1.0),
                reduction=case.get("regression_reduction", "mean"))


def check_against_reference(case, B, max_g, seed, device="cpu", tol=1e-9, loss_fn=ssd_loss):
    gen = torch.Generator().manual_seed(seed)
    cl, bb, gb, gl = random_batch(B, max_g, gen)
    anchors = make_anchors(dtype=torch.float64)
    cl_d, bb_d = cl.to(device).clone().requires_grad_(), bb.to(device).clone().requires_grad_()
    res = loss_fn(cl_d, bb_d, gb.to(device), gl.to(device), anchors.to(device), **case)
    res.total.backward()
    cl_r, bb_r = cl.clone().requires_grad_(), bb.clone().requires_grad_()
    total, parts = ref_ssd_loss(cl_r, bb_r, gb, gl, anchors.centers_hw, anchors.grid_sizes, **_ref_kwargs(case))
    total.backward()
    assert abs(res.total.item() - total.item()) <= tol * max(1.0, abs(total.item()))
    for b, (loc, clas, gt_idx, gt_overlap, pos, gt_clas) in enumerate(parts):
        assert res.regression[b].item() == pytest.approx(loc.item(), rel=tol, abs=tol)
        assert res.classification[b].item() == pytest.approx(clas.item(), rel=tol, abs=tol)
        assert torch.equal(res.match.positive[b].cpu(), pos)
        assert torch.equal(res.target_labels[b].cpu(), gt_clas)
        assert torch.equal(res.match.gt_idx[b].cpu(), gt_idx)
        torch.testing.assert_close(res.match.gt_overlap[b].cpu(), gt_overlap, rtol=0, atol=tol)
    torch.testing.assert_close(cl_d.grad.cpu(), cl_r.grad, rtol=0, atol=tol)
    torch.testing.assert_close(bb_d.grad.cpu(), bb_r.grad, rtol=0, atol=tol)
    return res


@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("B,max_g,seed", [(1, 1, 10), (4, 5, 11), (16, 20, 12), (7, 3, 13)])
def test_ssd_loss_equals_per_image_reference(case, B, max_g, seed):
    res = check_against_reference(case, B, max_g, seed)
    if max_g >= 5:
        assert res.match.positive.any()  # the random case really exercises the regression


@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_compiled_code_path_equals_reference(case):
    # Under torch.compile the loss takes other formulations of the same arithmetic (see
    # _BCELoss and matching._max_first_index). The "eager" backend runs exactly the traced
    # graph, so this checks those branches' numbers, gradients included, to the same 1e-9.
    torch._dynamo.reset()  # each case compiles afresh (and stays under the recompile limit)
    compiled = torch.compile(lambda *a, **kw: ssd_loss(*a, validate=False, **kw), backend="eager", fullgraph=True)
    check_against_reference(case, 16, 20, 14, loss_fn=compiled)
    check_against_reference(case, 3, 1, 15, loss_fn=compiled)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("match_on", ["predictions", "anchors"])
def test_inductor_compiled_loss_equals_reference(match_on, device):
    # The real thing, once per mode: inductor's generated code (C++ on CPU, Triton on CUDA),
    # float64, forward and backward.
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a, **kw: ssd_loss(*a, validate=False, **kw), fullgraph=True, dynamic=False)
    check_against_reference(dict(match_on=match_on), 7, 9, 17, device=device, loss_fn=compiled)


@pytest.mark.parametrize("device", DEVICES)
def test_ssd_loss_reference_on_device(device):
    for i, case in enumerate(LOSS_CASES[:4]):
        check_against_reference(case, 6, 8, 100 + i, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_forced_match_on_device(device):
    ious = torch.tensor([[[0.9, 0.8], [0.3, 0.1], [0.0, 0.0]]] * 3, dtype=torch.float32, device=device)
    m = match_boxes(ious, torch.ones(3, 2, dtype=torch.bool, device=device))
    assert m.gt_idx.tolist() == [[1, 0, 0]] * 3
    torch.testing.assert_close(m.gt_overlap.cpu(), torch.tensor([[1.99, 0.3, 0.0]] * 3))


def test_image_without_ground_truth_is_all_background():
    gen = torch.Generator().manual_seed(20)
    cl, bb, gb, gl = random_batch(3, 4, gen, min_g=1)
    gl[1] = -1  # image 1 has no objects
    res = ssd_loss(cl, bb, gb, gl, make_anchors(dtype=torch.float64))
    assert res.regression[1].item() == 0.0
    assert (res.target_labels[1] == 20).all() and not res.match.positive[1].any()
    # With only background, the loss is the BCE of every class column against 0, over C.
    expected = torch.nn.functional.softplus(cl[1, :, :20]).sum() / 20
    assert res.classification[1].item() == pytest.approx(expected.item(), rel=1e-12)
    # A batch with G = 0 altogether works too.
    res0 = ssd_loss(cl, bb, gb[:, :0], gl[:, :0], make_anchors(dtype=torch.float64))
    assert torch.equal(res0.regression, torch.zeros(3, dtype=torch.float64))
    assert not torch.isnan(res0.total)


def test_identical_boxes_give_iou_one_and_zero_regression():
    anchors = make_anchors(dtype=torch.float64)
    box_actns = torch.zeros(1, 189, 4, dtype=torch.float64)  # predictions are the anchor boxes
    gt = anchors.corners[[0, 100]].unsqueeze(0)
    res = ssd_loss(torch.zeros(1, 189, 21, dtype=torch.float64), box_actns, gt, torch.tensor([[3, 7]]), anchors)
    assert res.ious[0, 0, 0].item() == 1.0 and res.ious[0, 100, 1].item() == 1.0
    assert res.match.gt_overlap[0, 0].item() == 1.99 and res.match.gt_overlap[0, 100].item() == 1.99
    assert res.target_labels[0, 0].item() == 3 and res.target_labels[0, 100].item() == 7
    # Every positive is a perfect or partial box of its target; the two exact ones contribute 0.
    err = (res.pred_boxes[0] - res.target_boxes[0]).abs()[res.match.positive[0]]
    assert res.regression[0].item() == pytest.approx(err.mean().item())
    assert err[res.match.positive[0].nonzero()[:, 0].tolist().index(0)].sum().item() == 0.0


def test_regression_reductions_relate_by_positive_count():
    gen = torch.Generator().manual_seed(21)
    cl, bb, gb, gl = random_batch(4, 6, gen, min_g=2)
    anchors = make_anchors(dtype=torch.float64)
    mean = ssd_loss(cl, bb, gb, gl, anchors)
    summed = ssd_loss(cl, bb, gb, gl, anchors, regression_reduction="sum")
    n_pos = mean.match.positive.sum(1).to(torch.float64)
    torch.testing.assert_close(summed.regression, mean.regression * n_pos)


@pytest.mark.parametrize("kw", [dict(), dict(classification="focal", focal_gamma=2.0), dict(match_on="anchors")])
def test_gradcheck_float64(kw):
    gen = torch.Generator().manual_seed(30)
    spec = AnchorSpec(grids=(2, 1))
    anchors = make_anchors(spec, dtype=torch.float64)
    cl, bb, gb, gl = random_batch(2, 3, gen, n_classes=3, A=len(anchors), min_g=1)
    # Activations large enough that predicted boxes overlap ground truth, so both parts have gradient.
    cl.requires_grad_()
    bb.requires_grad_()
    res = ssd_loss(cl, bb, gb, gl, anchors, **kw)
    assert res.match.positive.any()
    assert torch.autograd.gradcheck(lambda c, b: ssd_loss(c, b, gb, gl, anchors, **kw).total, (cl, bb), eps=1e-6, atol=1e-6)


def test_focal_weight_stays_in_graph():
    # d/dx of w(x) * bce(x) differs from w * d bce/dx: check the former, for one logit.
    x = torch.tensor([[[0.3, 0.0]]], dtype=torch.float64, requires_grad=True)  # one class + background
    res_grad = torch.autograd.grad(
        ssd_loss(x, torch.zeros(1, 1, 4, dtype=torch.float64), torch.zeros(1, 0, 4, dtype=torch.float64),
                 torch.zeros(1, 0, dtype=torch.long), make_anchors(AnchorSpec((1,), (1.0,), ((1.0, 1.0),)), dtype=torch.float64),
                 classification="focal", focal_gamma=2.0).total, x)[0]
    p = torch.sigmoid(torch.tensor(0.3, dtype=torch.float64))
    # target 0: loss = 0.75 * p^2 * softplus(x); derivative = 0.75 * (2 p * p(1-p) * softplus + p^2 * p)
    sp = torch.nn.functional.softplus(torch.tensor(0.3, dtype=torch.float64))
    expected = 0.75 * (2 * p * p * (1 - p) * sp + p ** 2 * p)
    assert res_grad[0, 0, 0].item() == pytest.approx(expected.item(), rel=1e-12)
    assert res_grad[0, 0, 1].item() == 0.0  # the background logit is dropped


def test_loss_compiles_without_graph_breaks():
    # validate=False leaves no host sync and no data-dependent shape: one graph.
    anchors = make_anchors()
    gen = torch.Generator().manual_seed(40)
    cl, bb, gb, gl = random_batch(2, 4, gen, dtype=torch.float32, min_g=1)
    fn = torch.compile(lambda *a: ssd_loss(*a, anchors, validate=False).total, backend="eager", fullgraph=True)
    torch.testing.assert_close(fn(cl, bb, gb, gl), ssd_loss(cl, bb, gb, gl, anchors).total)


# ---------------------------------------------------------------- bad input

def _good():
    gen = torch.Generator().manual_seed(50)
    return list(random_batch(2, 3, gen, dtype=torch.float32, min_g=1))


@pytest.mark.parametrize("mutate,match", [
    (lambda a: a.__setitem__(0, a[0][:, :100]), "class_logits: has 100 boxes but anchors has 189"),
    (lambda a: a.__setitem__(1, a[1][:, :100]), "box_actns: has 100 boxes"),
    (lambda a: a.__setitem__(1, a[1][:1]), "box_actns: batch size 1"),
    (lambda a: a.__setitem__(2, a[2][:1]), "gt_boxes: batch size 1"),
    (lambda a: a.__setitem__(1, torch.zeros(2, 189, 3)), r"box_actns: expected shape \(B, A, 4\)"),
    (lambda a: a.__setitem__(2, torch.zeros(2, 3, 5)), r"gt_boxes: expected shape \(B, G, 4\)"),
    (lambda a: a.__setitem__(3, a[3].float()), "gt_labels: expected an integer tensor"),
    (lambda a: a.__setitem__(3, torch.full_like(a[3], 20)), "gt_labels: has class id 20 but there are only 20 classes"),
    (lambda a: a.__setitem__(3, torch.full_like(a[3], -2)), "gt_labels: has a label below -1"),
    (lambda a: a[2].__setitem__((0, 0), torch.tensor([0.5, 0.1, 0.4, 0.3])), r"gt_boxes: box \[0, 0\].*y1 <= y0"),
    (lambda a: a[0].__setitem__((1, 5, 2), float("nan")), "class_logits: contains NaN or inf"),
    (lambda a: a[1].__setitem__((0, 0, 0), float("inf")), "box_actns: contains NaN or inf"),
    (lambda a: a.__setitem__(3, a[3][:, :2]), "gt_labels: expected shape"),
])
def test_bad_input_names_the_argument(mutate, match):
    args = _good()
    args[3][:, 0] = 1  # first row of each image is a real box
    mutate(args)
    with pytest.raises(ValueError, match=match):
        ssd_loss(*args, make_anchors())


def test_bad_options_and_validate_switch():
    args = _good()
    with pytest.raises(ValueError, match="match_on"):
        ssd_loss(*args, make_anchors(), match_on="boxes")
    with pytest.raises(ValueError, match="iou_threshold"):
        ssd_loss(*args, make_anchors(), iou_threshold=-0.1)
    # Padding rows may hold anything, even NaN, and are ignored.
    args[2][:, -1] = float("nan")
    args[3][:, -1] = -1
    assert torch.isfinite(ssd_loss(*args, make_anchors()).total)
    # validate=False skips the checks (here a label out of range would only be caught by validation).
    args[3][0, 0] = 25
    with pytest.raises(ValueError, match="class id 25"):
        ssd_loss(*args, make_anchors())
