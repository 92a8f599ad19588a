"""Anchors and the activations that move them, against nested-loop references."""
from __future__ import annotations

import pytest
import torch

from ssd_lesson import AnchorSpec, activations_to_boxes, corners_to_centers, make_anchors

from tests.helpers import DEVICES
from tests.reference import ref_actn_to_bb, ref_anchors


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


@pytest.mark.parametrize("kwargs,says", [
    (dict(zooms=(0.7, float("nan"))), "zooms must be finite numbers above 0"),
    (dict(zooms=(0.0, 1.0)), "zooms must be finite numbers above 0"),
    (dict(zooms=(-1.0,)), "zooms must be finite numbers above 0"),
    (dict(ratios=((1.0, 1.0), (1.0,))), r"ratios must be \(height, width\) pairs"),
    (dict(ratios=((1.0, -0.5),)), r"ratios must be \(height, width\) pairs"),
    (dict(ratios=(1.0, 0.5)), "must be sequences"),
    (dict(grids=(4, 2.5)), "grids must be positive integers"),
    (dict(grids=(4,), grid_scales=(((1.0, float("inf")),),)), r"grid_scales\[0\] must be \(height, width\) pairs"),
])
def test_anchor_spec_refuses_bad_values(kwargs, says):
    with pytest.raises(ValueError, match=says):
        AnchorSpec(**kwargs)


def test_anchor_spec_lists_equal_tuples():
    listed = AnchorSpec(grids=[4, 2, 1], zooms=[0.7, 1.0, 1.3], ratios=[[1.0, 1.0], [1.0, 0.5], [0.5, 1.0]])
    assert listed == AnchorSpec() and hash(listed) == hash(AnchorSpec()) and listed.ratios[1] == (1.0, 0.5)
    assert make_anchors(listed).corners.equal(make_anchors().corners)


def test_make_anchors_and_decoding_refuse_integers():
    with pytest.raises(ValueError, match="dtype: anchors .* floating-point dtype, got torch.int64"):
        make_anchors(dtype=torch.int64)
    with pytest.raises(ValueError, match="box_actns: expected a floating-point tensor, got torch.int64"):
        activations_to_boxes(torch.zeros(1, 189, 4, dtype=torch.int64), make_anchors())
    with pytest.raises(ValueError, match="anchors: expected an Anchors"):
        activations_to_boxes(torch.zeros(1, 189, 4), None)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_activations_to_boxes_refuses_nan_or_inf_unless_told_not_to_check(bad):
    anchors = make_anchors()
    actn = torch.zeros(2, 189, 4)
    actn[1, 7, 2] = bad
    with pytest.raises(ValueError, match=r"box_actns: contains NaN or inf; the boxes decoded from it would be NaN"):
        activations_to_boxes(actn, anchors)
    boxes = activations_to_boxes(actn, anchors, validate=False)
    torch.testing.assert_close(boxes[0], anchors.corners)  # the finite image decodes as ever
    assert torch.isnan(boxes[1, 7]).any() == (bad != bad)  # NaN in, NaN out; tanh(inf) = 1 is finite
