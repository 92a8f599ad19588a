"""The SSD loss against the per-image reference: values, gradients (float64 gradcheck), devices, bad input."""
from __future__ import annotations

import pytest
import torch

from ssd_lesson import AnchorSpec, make_anchors, match_boxes, ssd_loss

from tests.helpers import DEVICES, random_batch
from tests.reference import ref_ssd_loss


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


def _case_id(case):
    return "-".join(str(v) for v in case.values())


#: Under torch.compile the fast tier checks the lesson's default and the anchors' matching with focal loss
#: (both of _BCELoss's and _max_first_index's compiled branches); the other cases are in the slow tier.
COMPILED_CASES = [pytest.param(c, id=_case_id(c), marks=() if i in (0, 3) else pytest.mark.slow)
                  for i, c in enumerate(LOSS_CASES)]


@pytest.fixture(scope="session")
def compiled_loss():
    """``ssd_loss`` under ``torch.compile``, made once for the session: the "eager" backend runs exactly the
    traced graph; ``dynamic=True`` gives one graph per set of options for every batch size. Past the
    recompile limit it fails rather than quietly running eager."""
    import torch._dynamo

    with torch._dynamo.config.patch(recompile_limit=32, fail_on_recompile_limit_hit=True):
        yield torch.compile(lambda *a, **kw: ssd_loss(*a, validate=False, **kw), backend="eager", fullgraph=True,
                            dynamic=True)


@pytest.mark.parametrize("case", COMPILED_CASES)
def test_compiled_code_path_equals_reference(case, compiled_loss):
    # Under torch.compile the loss takes other formulations of the same arithmetic (see
    # _BCELoss and matching._max_first_index). The "eager" backend runs exactly the traced
    # graph, so this checks those branches' numbers, gradients included, to the same 1e-9.
    check_against_reference(case, 16, 20, 14, loss_fn=compiled_loss)
    check_against_reference(case, 3, 1, 15, loss_fn=compiled_loss)


@pytest.mark.slow  # inductor generates and compiles C++: one to two minutes of CPU
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


@pytest.mark.parametrize("fast_mode", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["fast_mode", "full"])
@pytest.mark.parametrize("kw", [dict(), dict(classification="focal", focal_gamma=2.0), dict(match_on="anchors")])
def test_gradcheck_float64(kw, fast_mode):
    """Analytical against numerical gradients. ``fast_mode`` (the fast tier) compares them along random
    directions; the full check (the slow tier, about a minute a case) builds the whole 720-input Jacobian."""
    gen = torch.Generator().manual_seed(30)
    spec = AnchorSpec(grids=(2, 1))
    anchors = make_anchors(spec, dtype=torch.float64)
    cl, bb, gb, gl = random_batch(2, 3, gen, n_classes=3, A=len(anchors), min_g=1)
    # Activations large enough that predicted boxes overlap ground truth, so both parts have gradient.
    cl.requires_grad_()
    bb.requires_grad_()
    res = ssd_loss(cl, bb, gb, gl, anchors, **kw)
    assert res.match.positive.any()
    assert torch.autograd.gradcheck(lambda c, b: ssd_loss(c, b, gb, gl, anchors, **kw).total, (cl, bb), eps=1e-6, atol=1e-6,
                                    fast_mode=fast_mode)


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


def test_loss_compiles_without_graph_breaks(compiled_loss):
    # validate=False leaves no host sync and no data-dependent shape: one graph (fullgraph=True), in float32 too.
    anchors = make_anchors()
    gen = torch.Generator().manual_seed(40)
    cl, bb, gb, gl = random_batch(2, 4, gen, dtype=torch.float32, min_g=1)
    torch.testing.assert_close(compiled_loss(cl, bb, gb, gl, anchors).total, ssd_loss(cl, bb, gb, gl, anchors).total)


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


# ---------------------------------------------------------------- bad input and numerics
def _batch(A=189, B=1, dtype=torch.float32):
    gen = torch.Generator().manual_seed(14)
    return random_batch(B, 3, gen, A=A, dtype=dtype, min_g=3)  # no padding rows


def test_half_precision_with_ssd300_anchors_is_finite():
    anchors = make_anchors(AnchorSpec.ssd300())
    cl, ba, gb, gl = _batch(A=len(anchors), B=2)
    full = ssd_loss(cl, ba, gb, gl, anchors)
    cl16 = cl.half().requires_grad_()
    half = ssd_loss(cl16, ba.half(), gb, gl, anchors)
    assert torch.isfinite(half.total) and half.total.dtype == torch.float32
    assert half.total.item() == pytest.approx(full.total.item(), rel=2e-3)
    half.total.backward()
    assert cl16.grad.dtype == torch.float16 and torch.isfinite(cl16.grad).all()


def test_focal_settings_are_validated_and_small_gamma_has_finite_gradients():
    from ssd_lesson import LossOptions
    from ssd_lesson.core.loss import classification_loss

    with pytest.raises(ValueError, match="focal_gamma: must be a finite number >= 0, got -1"):
        LossOptions(classification="focal", focal_gamma=-1)
    with pytest.raises(ValueError, match=r"focal_alpha: must be in \[0, 1\].*got 2"):
        classification_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), focal=True, alpha=2)
    x = torch.tensor([[[-120.0, 20.0, 0.0], [20.0, -120.0, 0.0]]], requires_grad=True)  # saturated sigmoids
    labels = torch.tensor([[0, 2]])
    for gamma in (0.5, 0.0, 2.0):
        loss = classification_loss(x, labels, focal=True, gamma=gamma)
        (g,) = torch.autograd.grad(loss.sum(), x)
        assert torch.isfinite(loss).all() and torch.isfinite(g).all(), gamma
    # the same numbers as (1 - p_t) ** gamma where that is finite
    y = torch.tensor([[[-2.0, 1.0, 0.0]]], dtype=torch.float64)
    p = torch.sigmoid(y[..., :2])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(y[..., :2], torch.tensor([[[1.0, 0.0]]], dtype=torch.float64), reduction="none")
    w = torch.tensor([[[0.25, 0.75]]], dtype=torch.float64) * torch.stack([(1 - p[..., 0]), p[..., 1]], -1) ** 0.5
    got = classification_loss(y, torch.tensor([[0]]), focal=True, gamma=0.5)
    assert got.item() == pytest.approx(((w * bce).sum() / 2).item(), rel=1e-12)


def test_uint8_labels_are_accepted():
    anchors = make_anchors()
    cl, ba, gb, gl = _batch()
    want = ssd_loss(cl, ba, gb, gl, anchors)
    got = ssd_loss(cl, ba, gb, gl.to(torch.uint8), anchors)  # no padding: uint8 has no -1
    assert got.total.item() == want.total.item() and torch.equal(got.target_labels, want.target_labels)
    assert got.gt_labels.dtype == torch.int64 and want.total.item() > 0
    with pytest.raises(ValueError, match="gt_labels: has class id 255 but there are only 20 classes"):
        ssd_loss(cl, ba, gb, torch.full_like(gl, 255, dtype=torch.uint8), anchors)


def test_loss_refuses_missing_anchors_pixel_boxes_and_bad_labels():
    from ssd_lesson.core.loss import classification_loss

    anchors = make_anchors()
    cl, ba, gb, gl = _batch()
    with pytest.raises(ValueError, match="anchors: expected the Anchors .* got NoneType"):
        ssd_loss(cl, ba, gb, gl, None)
    with pytest.raises(ValueError, match="gt_boxes: boxes must be fractions of the image .* to 224"):
        ssd_loss(cl, ba, gb * 224, gl, anchors)
    assert torch.isfinite(ssd_loss(cl, ba, gb * 1.4, gl, anchors).total)  # a little outside the image is fine
    with pytest.raises(ValueError, match=r"target_labels: class ids must be in \[0, 20\].*got 0\.\.21"):
        classification_loss(cl, torch.tensor([[0] * 188 + [21]]))
    with pytest.raises(ValueError, match=r"target_labels: expected shape \(1, 189\)"):
        classification_loss(cl, torch.zeros(1, 5, dtype=torch.long))
