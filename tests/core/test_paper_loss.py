"""``LossOptions.ssd_paper()``: the SSD paper's loss as options of the same ``ssd_loss``, equal to torchvision's
``SSD.compute_loss`` and to a plain per-image reference; each of its options on its own."""
from __future__ import annotations

import pytest
import torch

from ssd_lesson import AnchorSpec, LossOptions, make_anchors, match_boxes, ssd_loss
from ssd_lesson.core.mining import box_classification_loss, hard_negatives
from tests.helpers import DEVICES, random_batch
from tests.reference.paper_loop import paper_loss_one_image, paper_ssd_loss
from tests.reference.torchvision_ssd import torchvision_ssd_loss

PAPER = LossOptions.ssd_paper()
#: The equality asked of the library against torchvision and the reference, float64.
TOL = dict(rtol=0, atol=1e-9)


def leaves(*tensors):
    return [t.clone().requires_grad_() for t in tensors]


def check_against_torchvision(spec, B, max_g, seed, min_g=0):
    """Values and gradients of ``ssd_loss(options=ssd_paper())`` against torchvision's on one seeded batch."""
    anchors = make_anchors(spec, dtype=torch.float64)
    cl, bb, gb, gl = random_batch(B, max_g, torch.Generator().manual_seed(seed), A=len(anchors), min_g=min_g)
    gl[-1] = -1  # the last image without objects, whatever the draw gave it
    cl, bb = leaves(cl, bb)
    ours = ssd_loss(cl, bb, gb, gl, anchors, options=PAPER)
    theirs = torchvision_ssd_loss(cl, bb, gb, gl, anchors.corners)
    torch.testing.assert_close(ours.classification.sum(), theirs["classification"], **TOL)
    torch.testing.assert_close(ours.regression.sum(), theirs["bbox_regression"], **TOL)
    torch.testing.assert_close(ours.total, theirs["classification"] + theirs["bbox_regression"], **TOL)
    for g_ours, g_theirs in zip(torch.autograd.grad(ours.total, [cl, bb]),
                                torch.autograd.grad(theirs["classification"] + theirs["bbox_regression"], [cl, bb])):
        torch.testing.assert_close(g_ours, g_theirs, **TOL)
    return ours, gl


@pytest.mark.parametrize("B, max_g, seed", [(4, 6, 0), (8, 12, 1), (3, 1, 2), (16, 20, 3)])
def test_ssd_paper_equals_torchvision_at_189_anchors(B, max_g, seed):
    ours, gl = check_against_torchvision(AnchorSpec(), B, max_g, seed)
    n_objects = (gl >= 0).sum(1)
    assert (n_objects == 0).any() and (n_objects > 0).any()  # images without objects beside images with some
    assert ours.total > 0 and ours.regression.sum() > 0


@pytest.mark.slow  # SSD300's 8732 boxes: torchvision's per-image loop and the gradients take a while
@pytest.mark.parametrize("B, max_g, seed", [(4, 8, 10), (8, 20, 11)])
def test_ssd_paper_equals_torchvision_at_ssd300_s_8732_anchors(B, max_g, seed):
    ours, gl = check_against_torchvision(AnchorSpec.ssd300(), B, max_g, seed)
    assert ((gl >= 0).sum(1) == 0).any()


@pytest.mark.parametrize("device", DEVICES)
def test_ssd_paper_on_a_device_equals_it_on_the_cpu(device):
    """On the CPU it is torchvision's (above); on another device the same numbers, gradients included."""
    anchors = make_anchors(dtype=torch.float64)
    cl, bb, gb, gl = random_batch(6, 8, torch.Generator().manual_seed(4))
    gl[-1] = -1
    results = []
    for dev in ("cpu", device):
        c, b = leaves(cl.to(dev), bb.to(dev))
        r = ssd_loss(c, b, gb.to(dev), gl.to(dev), anchors.to(dev), options=PAPER)
        results.append([r.total, r.classification, r.regression, r.counted_negatives, *torch.autograd.grad(r.total, [c, b])])
    for on_cpu, on_device in zip(*results):
        torch.testing.assert_close(on_device.cpu(), on_cpu, **TOL)


def test_a_batch_without_any_object_gives_zero_as_torchvision_does():
    anchors = make_anchors(dtype=torch.float64)
    cl, bb = leaves(torch.randn(2, 189, 21, dtype=torch.float64), torch.randn(2, 189, 4, dtype=torch.float64))
    gb, gl = torch.zeros(2, 0, 4, dtype=torch.float64), torch.zeros(2, 0, dtype=torch.long)
    ours = ssd_loss(cl, bb, gb, gl, anchors, options=PAPER)
    theirs = torchvision_ssd_loss(cl, bb, gb, gl, anchors.corners)
    assert float(ours.total.detach()) == float(theirs["classification"].detach()) == float(theirs["bbox_regression"].detach()) == 0.0
    assert not ours.counted_negatives.any()  # no positive: no negative counts either


@pytest.mark.parametrize("seed", [20, 21])
def test_ssd_paper_equals_the_per_image_reference(seed):
    anchors = make_anchors(dtype=torch.float64)
    cl, bb, gb, gl = random_batch(4, 8, torch.Generator().manual_seed(seed))
    cl, bb = leaves(cl, bb)
    ours = ssd_loss(cl, bb, gb, gl, anchors, options=PAPER)
    clas, regr = paper_ssd_loss(cl, bb, gb, gl, anchors.centers_hw, anchors.corners)
    torch.testing.assert_close(ours.classification.sum(), clas, **TOL)
    torch.testing.assert_close(ours.regression.sum(), regr, **TOL)
    for g_ours, g_ref in zip(torch.autograd.grad(ours.total, [cl, bb]), torch.autograd.grad(clas + regr, [cl, bb])):
        torch.testing.assert_close(g_ours, g_ref, **TOL)
    for b in range(4):  # the same negatives kept, image by image
        keep = gl[b] >= 0
        *_, n_pos, kept = paper_loss_one_image(cl[b], bb[b], gb[b][keep], gl[b][keep], anchors.centers_hw, anchors.corners)
        assert sorted(ours.counted_negatives[b].nonzero().flatten().tolist()) == sorted(kept)
        assert int(ours.match.positive[b].sum()) == n_pos


def test_a_box_best_for_two_objects_goes_to_the_later_one_as_in_torchvision():
    """Two objects whose best anchor box is the same box (here: the same object twice, with two labels) and an
    object between two equally good boxes: the later object wins the shared box, the first box wins the tie."""
    anchors = make_anchors(dtype=torch.float64)
    shared = 144 + 3  # the 2x2 grid's first cell, zoom 1, square: (0, 0, 0.5, 0.5), exact in binary
    box = anchors.corners[shared].clone()
    # Half over anchor box 12 (0, 0.25, 0.25, 0.5) and half over box 21 (0, 0.5, 0.25, 0.75): IoU 1/3 with each,
    # exactly, and less with every other box.
    between = torch.tensor([0.0, 0.375, 0.25, 0.625], dtype=torch.float64)
    gb = torch.stack([box, box, between])[None]
    gl = torch.tensor([[3, 7, 5]])
    ours, _ = check_against_torchvision_on(anchors, gb, gl)
    assert int(ours.target_labels[0, shared]) == 7 and int(ours.match.gt_idx[0, shared]) == 1  # the later claim
    ious = ours.ious[0, :, 2]
    assert ious[12] == ious[21] == ious.max() == 1 / 3 and (ious == 1 / 3).sum() == 2
    assert int(ours.target_labels[0, 12]) == 5 and int(ours.target_labels[0, 21]) == 20  # the first of the tie


def check_against_torchvision_on(anchors, gb, gl, seed=5):
    gen = torch.Generator().manual_seed(seed)
    cl, bb = leaves(torch.randn(gb.shape[0], len(anchors), 21, generator=gen, dtype=torch.float64),
                    torch.randn(gb.shape[0], len(anchors), 4, generator=gen, dtype=torch.float64))
    ours = ssd_loss(cl, bb, gb, gl, anchors, options=PAPER)
    theirs = torchvision_ssd_loss(cl, bb, gb, gl, anchors.corners)
    torch.testing.assert_close(ours.total, theirs["classification"] + theirs["bbox_regression"], **TOL)
    for g_ours, g_theirs in zip(torch.autograd.grad(ours.total, [cl, bb]),
                                torch.autograd.grad(theirs["classification"] + theirs["bbox_regression"], [cl, bb])):
        torch.testing.assert_close(g_ours, g_theirs, **TOL)
    return ours, theirs


def test_where_3_per_positive_outnumber_the_negatives_torchvision_counts_positives_twice():
    """torchvision ranks the positives (at -inf) after the negatives and keeps the first ``3 * P`` ranks:
    when an image has fewer than ``3 * P`` negatives, positives fill the rest and their loss counts
    twice. The library keeps negatives only (as the paper): the difference is exactly those positives'
    loss. Every box has the same logits here, so which positives torchvision takes does not matter."""
    anchors = make_anchors(dtype=torch.float64)
    gb = anchors.corners[:60][None]  # 60 objects, each exactly an anchor box of the 4x4 grid
    gl = torch.zeros(1, 60, dtype=torch.long)
    cl = torch.linspace(-1, 1, 21, dtype=torch.float64).expand(1, 189, 21)
    bb = torch.zeros(1, 189, 4, dtype=torch.float64)
    ours = ssd_loss(cl, bb, gb, gl, anchors, options=PAPER)
    theirs = torchvision_ssd_loss(cl, bb, gb, gl, anchors.corners)
    n_pos = int(ours.match.positive.sum())
    n_neg = 189 - n_pos
    assert 3 * n_pos > n_neg and int(ours.counted_negatives.sum()) == n_neg  # every negative, and nothing else
    ce = box_classification_loss(cl, ours.target_labels, "softmax")[0]
    ce_object, ce_background = float(ce[ours.match.positive[0]][0]), float(ce[~ours.match.positive[0]][0])
    assert float(ours.classification.sum()) == pytest.approx((n_pos * ce_object + n_neg * ce_background) / n_pos, rel=1e-12)
    twice = 3 * n_pos - n_neg
    assert float(theirs["classification"] - ours.classification.sum()) == pytest.approx(twice * ce_object / n_pos, rel=1e-9)


def test_hard_negatives_keep_the_highest_losses_per_image():
    loss = torch.tensor([[5.0, 1.0, 4.0, 3.0, 2.0, 9.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    positive = torch.tensor([[False, False, False, False, False, True], [True, True, False, False, False, False]])
    kept = hard_negatives(loss, positive, 3)
    assert kept[0].tolist() == [True, False, True, True, False, False]  # 3 per positive: 5, 4, 3 (9 is the positive)
    assert kept[1].tolist() == [False, False, True, True, True, True]  # 6 allowed, only 4 negatives
    assert hard_negatives(loss, positive, 1.5)[0].tolist() == [True, False, True, False, False, False]  # ranks < 1.5
    assert not hard_negatives(loss, torch.zeros_like(positive), 3).any()  # no positive: no negative
    # a tie is broken by anchor order
    assert hard_negatives(torch.ones(1, 4), torch.tensor([[True, False, False, False]]), 2).tolist() == [[False, True, True, False]]


def test_match_inclusive_counts_an_overlap_at_the_threshold():
    ious = torch.tensor([[[0.9], [0.5], [0.2]]], dtype=torch.float64)
    valid = torch.ones(1, 1, dtype=torch.bool)
    assert match_boxes(ious, valid, 0.5).positive.tolist() == [[True, False, False]]
    assert match_boxes(ious, valid, 0.5, inclusive=True).positive.tolist() == [[True, True, False]]
    # an image without objects stays all background, even at a threshold of 0 inclusive
    assert not match_boxes(ious, torch.zeros(1, 1, dtype=torch.bool), 0.0, inclusive=True).positive.any()
    with pytest.raises(ValueError, match="inclusive: must be True"):
        match_boxes(ious, valid, 0.5, inclusive="yes")


def test_one_option_at_a_time_from_the_lesson_to_the_paper():
    """Each option moves the loss on its own; all of them together are the preset, which is torchvision's."""
    anchors = make_anchors(dtype=torch.float64)
    cl, bb, gb, gl = random_batch(4, 6, torch.Generator().manual_seed(7), min_g=1)
    steps = [("match_on", "anchors"), ("iou_threshold", 0.5), ("match_inclusive", True), ("classification", "softmax"),
             ("neg_pos_ratio", 3), ("box_coding", "log_offsets"), ("box_loss", "smooth_l1"),
             ("normalization", "batch_positives")]
    options, totals = LossOptions(), [float(ssd_loss(cl, bb, gb, gl, anchors).total)]
    for name, value in steps:
        options = options.replace(**{name: value})
        totals.append(float(ssd_loss(cl, bb, gb, gl, anchors, options=options).total))
    assert options == PAPER
    # every step but >= (no IoU of random boxes sits exactly at 0.5) changes the loss
    assert [a != b for a, b in zip(totals, totals[1:])] == [True, True, False, True, True, True, True, True]
    theirs = torchvision_ssd_loss(cl, bb, gb, gl, anchors.corners)
    assert totals[-1] == pytest.approx(float(theirs["classification"] + theirs["bbox_regression"]), abs=1e-9)


def test_mining_and_the_normalisation_also_apply_to_the_lesson_s_bce():
    anchors = make_anchors(dtype=torch.float64)
    cl, bb, gb, gl = random_batch(3, 5, torch.Generator().manual_seed(8), min_g=1)
    lesson = ssd_loss(cl, bb, gb, gl, anchors, match_on="anchors")
    mined = ssd_loss(cl, bb, gb, gl, anchors, match_on="anchors", neg_pos_ratio=3)
    per_box = box_classification_loss(cl, lesson.target_labels, "bce")
    torch.testing.assert_close(per_box.sum(-1), lesson.classification, rtol=0, atol=1e-12)  # the lesson's, per box
    counted = lesson.match.positive | mined.counted_negatives
    torch.testing.assert_close(mined.classification, (per_box * counted).sum(-1), rtol=0, atol=1e-12)
    assert (mined.counted_negatives.sum(1) == 3 * mined.match.positive.sum(1)).all()
    by_batch = ssd_loss(cl, bb, gb, gl, anchors, match_on="anchors", normalization="batch_positives")
    n_pos = lesson.match.positive.sum()
    torch.testing.assert_close(by_batch.classification, lesson.classification / n_pos, rtol=0, atol=1e-12)
    torch.testing.assert_close(by_batch.regression, lesson.regression * 4 * lesson.match.positive.sum(1) / n_pos,
                               rtol=0, atol=1e-12)


def test_smooth_l1_beta_0_is_l1_and_beta_sets_the_bend():
    anchors = make_anchors(dtype=torch.float64)
    cl, bb, gb, gl = random_batch(3, 5, torch.Generator().manual_seed(9), min_g=1)
    l1 = ssd_loss(cl, bb, gb, gl, anchors, options=PAPER.replace(box_loss="l1"))
    assert torch.equal(ssd_loss(cl, bb, gb, gl, anchors, options=PAPER.replace(smooth_l1_beta=0.0)).regression, l1.regression)
    # with a beta above every error, smooth L1 is the square / (2 beta)
    big = ssd_loss(cl, bb, gb, gl, anchors, options=PAPER.replace(smooth_l1_beta=1e6))
    from ssd_lesson.core.coding import encode_log_offsets

    pos = big.match.positive.unsqueeze(-1)
    err = torch.where(pos, bb - encode_log_offsets(torch.where(pos, big.target_boxes, anchors.corners), anchors.centers_hw), 0.0)
    torch.testing.assert_close(big.regression.sum(), (err ** 2).sum() / 2e6 / big.match.positive.sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("fast_mode", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["fast_mode", "full"])
def test_gradcheck_float64_on_the_paper_s_loss(fast_mode):
    spec = AnchorSpec(grids=(2, 1))
    anchors = make_anchors(spec, dtype=torch.float64)
    cl, bb, gb, gl = random_batch(2, 3, torch.Generator().manual_seed(31), n_classes=3, A=len(anchors), min_g=1)
    cl, bb = leaves(cl, bb)
    res = ssd_loss(cl, bb, gb, gl, anchors, options=PAPER)
    assert res.match.positive.any() and res.counted_negatives.any() and not res.counted_negatives.all()
    assert torch.autograd.gradcheck(lambda c, b: ssd_loss(c, b, gb, gl, anchors, options=PAPER).total, (cl, bb),
                                    eps=1e-6, atol=1e-6, fast_mode=fast_mode)


def test_the_paper_s_loss_compiles_in_one_graph_forward_and_backward():
    """fullgraph: no graph break, so no host sync and no data-dependent shape; aot_eager traces the backward too."""
    import torch._dynamo

    anchors = make_anchors()
    cl, bb, gb, gl = random_batch(2, 4, torch.Generator().manual_seed(41), dtype=torch.float32, min_g=0)
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: ssd_loss(*a, anchors, options=PAPER, validate=False).total, backend="aot_eager",
                             fullgraph=True)
    (c1, b1), (c2, b2) = leaves(cl, bb), leaves(cl, bb)
    got, want = compiled(c1, b1, gb, gl), ssd_loss(c2, b2, gb, gl, anchors, options=PAPER).total
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    torch.testing.assert_close(c1.grad, c2.grad)
    torch.testing.assert_close(b1.grad, b2.grad)


@pytest.mark.parametrize("changes, message", [
    (dict(neg_pos_ratio=-1), "neg_pos_ratio must be a finite number >= 0"),
    (dict(neg_pos_ratio=float("inf")), "neg_pos_ratio must be a finite number >= 0"),
    (dict(neg_pos_ratio=True), "neg_pos_ratio must be a finite number >= 0"),
    (dict(match_inclusive=1), "match_inclusive must be True"),
    (dict(box_coding="corners"), "box_coding must be one of 'tanh_corners', 'log_offsets'"),
    (dict(box_loss="l2"), "box_loss must be one of 'l1', 'smooth_l1'"),
    (dict(smooth_l1_beta=-0.5), "smooth_l1_beta must be a finite number >= 0"),
    (dict(smooth_l1_beta=float("nan")), "smooth_l1_beta must be a finite number >= 0"),
    (dict(normalization="batch"), "normalization must be one of 'per_image', 'batch_positives'"),
    (dict(classification="ce"), "classification must be one of 'bce', 'focal', 'softmax'"),
])
def test_the_new_options_are_validated(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        LossOptions(**changes)


def test_the_preset_and_its_description():
    assert PAPER == LossOptions(match_on="anchors", iou_threshold=0.5, match_inclusive=True, classification="softmax",
                                neg_pos_ratio=3, box_coding="log_offsets", box_loss="smooth_l1", smooth_l1_beta=1.0,
                                normalization="batch_positives")
    assert PAPER.describe() == ("match on anchors, IoU >= 0.5, softmax cross-entropy, 3 hard negatives per positive, "
                                "smooth L1 (beta 1) on log-space offsets divided by the batch's positives")
    assert LossOptions.lesson_code().describe() == "match on anchors, IoU > 0.4, BCE, L1 averaged"  # unchanged
    assert LossOptions(neg_pos_ratio=0) == LossOptions()  # 0 keeps every negative: the same options as None
    assert LossOptions.from_dict(PAPER.to_dict()) == PAPER
    # The repr names the paper's options only where set: notebook 09 prints the lesson code's as it always has.
    assert repr(LossOptions.lesson_code()) == ("LossOptions(match_on='anchors', iou_threshold=0.4, classification='bce', "
                                               "focal_alpha=0.25, focal_gamma=1.0, regression_reduction='mean')")
    assert repr(LossOptions(box_loss="smooth_l1")).endswith("regression_reduction='mean', box_loss='smooth_l1')")
    assert eval(repr(PAPER)) == PAPER and "smooth_l1_beta" not in repr(PAPER)  # beta 1 is the default


@pytest.mark.slow  # inductor generates and compiles C++: a minute or two of CPU
def test_the_paper_s_loss_under_inductor_equals_eager():
    anchors = make_anchors(dtype=torch.float64)
    cl, bb, gb, gl = random_batch(5, 9, torch.Generator().manual_seed(42))
    compiled = torch.compile(lambda *a: ssd_loss(*a, anchors, options=PAPER, validate=False), fullgraph=True, dynamic=False)
    (c1, b1), (c2, b2) = leaves(cl, bb), leaves(cl, bb)
    got, want = compiled(c1, b1, gb, gl), ssd_loss(c2, b2, gb, gl, anchors, options=PAPER)
    torch.testing.assert_close(got.total, want.total, **TOL)
    assert torch.equal(got.counted_negatives, want.counted_negatives)
    for g_got, g_want in zip(torch.autograd.grad(got.total, [c1, b1]), torch.autograd.grad(want.total, [c2, b2])):
        torch.testing.assert_close(g_got, g_want, **TOL)
