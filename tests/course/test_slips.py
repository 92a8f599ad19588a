"""A catalogue of plausible slips for every "your turn" exercise, written the way a learner writes them (not with
the checker's own slip code): each is called not right, with a hint that fits it. And the checker's own slips: each
is named for its own answer, and no two give the same answers on every case (else neither could ever be named)."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from ssd_lesson import box_iou, make_anchors, match_boxes
from ssd_lesson.course.exercises import CODE_EXERCISES, check, run_cases
from tests.helpers import checked


# ---- 02: anchor boxes --------------------------------------------------------------------------------------------

def _anchors(grid, zooms, ratios, xy=False, scale=1.0, shift=0.5, centres=False, swap=False, ratio_outer=False):
    out = []
    for r in range(grid):
        for c in range(grid):
            pairs = [(z, q) for q in ratios for z in zooms] if ratio_outer else [(z, q) for z in zooms for q in ratios]
            for z, (rh, rw) in pairs:
                rh, rw = (rw, rh) if swap else (rh, rw)
                cy, cx, h, w = (r + shift) / grid, (c + shift) / grid, z * rh / grid, z * rw / grid
                box = [cy, cx, h, w] if centres else [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]
                out.append([box[1], box[0], box[3], box[2]] if xy else box)
    return torch.tensor(out) * scale


# ---- 03: decoding one box ----------------------------------------------------------------------------------------

def _decode(actn, anchor, cell, squash=torch.tanh, move=0.5, grow=0.5, order=(0, 1, 2, 3), scale=1.0, centres=False):
    t = squash(actn)
    cy, cx = anchor[0] + t[0] * move * cell, anchor[1] + t[1] * move * cell
    h, w = anchor[2] * (1 + t[2] * grow), anchor[3] * (1 + t[3] * grow)
    box = torch.stack([cy, cx, h, w] if centres else [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]) * scale
    return box[list(order)]


def _decode_in_place(actn, anchor, cell):
    t = actn.tanh_()  # the learner's tensor, changed
    return _decode(t, anchor, cell, squash=lambda x: x)


# ---- 04: IoU -----------------------------------------------------------------------------------------------------

def _iou(box, others, clamp="sides", union="union", ends_swapped=False, as_list=False):
    lo, hi = (torch.minimum, torch.maximum) if ends_swapped else (torch.maximum, torch.minimum)
    h = hi(box[2], others[:, 2]) - lo(box[0], others[:, 0])
    w = hi(box[3], others[:, 3]) - lo(box[1], others[:, 1])
    inter = {"sides": h.clamp(min=0) * w.clamp(min=0), "none": h * w, "product": (h * w).clamp(min=0)}[clamp]
    a = (box[2] - box[0]) * (box[3] - box[1])
    b = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    iou = inter / {"union": a + b - inter, "sum": a + b, "box": a, "others": b, "none": 1.0}[union]
    return iou.tolist() if as_list else iou


# ---- 05: matching ------------------------------------------------------------------------------------------------

def _match(ious, forced=1.99, ge=False, claim=True, threshold=0.4, threshold_first=False, reverse=False,
           float_idx=False, list_positive=False):
    A, G = ious.shape
    if G == 0:
        return torch.zeros(A, dtype=torch.long), torch.zeros(A), torch.zeros(A, dtype=torch.bool)
    overlap, idx = ious.max(dim=1)
    positive = overlap >= threshold if ge else overlap > threshold
    objects = range(G - 1, -1, -1) if reverse else range(G)
    for j in objects if forced is not None else []:
        b = ious[:, j].argmax()
        overlap[b] = forced
        if claim:
            idx[b] = j
    if not threshold_first:
        positive = overlap >= threshold if ge else overlap > threshold
    return (idx.float() if float_idx else idx, overlap, positive.int().tolist() if list_positive else positive)


# ---- 06: BCE -----------------------------------------------------------------------------------------------------

def _bce(logits, target, keep_background=False, divide="C", mean=False, squash=False, objects_only=False):
    C = logits.shape[1] - 1
    if objects_only:
        logits, target = logits[target < C], target[target < C]
    cols = C + 1 if keep_background else C
    y = F.one_hot(target, C + 1)[:, :cols].float()
    x = torch.sigmoid(logits) if squash else logits
    loss = F.binary_cross_entropy_with_logits(x[:, :cols].float(), y, reduction="mean" if mean else "sum")
    return loss if mean else loss / {"C": C, "C+1": C + 1, "1": 1}[divide]


# ---- 07: L1 ------------------------------------------------------------------------------------------------------

def _l1(pred, target, positive, swap=False, everything=False, per_box=True, error="abs", over_all=False,
        plain_mean=False, stacked=False):
    diff = pred - target
    err = {"abs": diff.abs(), "square": diff ** 2, "smooth": F.smooth_l1_loss(pred, target, reduction="none")}[error]
    err = err if everything else err[positive]
    if plain_mean:  # NaN for an image without positives
        mean = err.mean()
    else:
        mean = err.sum() / (4 * max(len(pred) if over_all else len(err), 1))
    total = err.sum() / 4 if per_box else err.sum()
    pair = (total, mean) if swap else (mean, total)
    return torch.stack(pair) if stacked else pair


# ---- 08: the gradient by hand ------------------------------------------------------------------------------------

def _grad(pred, target, positive, sign=1, per="4n", everything=False, square=False):
    n = max(int(positive.sum()), 1)
    slope = 2 * (pred - target) if square else torch.sign(pred - target)
    g = sign * slope / {"4n": 4 * n, "4": 4, "n": n, "4A": 4 * len(pred)}[per]
    return g if everything else g * positive[:, None]


def _grad_by_autograd(pred, target, positive):
    p = pred.clone().requires_grad_(True)
    err = (p - target).abs()[positive]
    (err.sum() / (4 * max(len(err), 1))).backward()
    return p.grad


# ---- 11: targets against anchors ---------------------------------------------------------------------------------

LESSON_CORNERS = make_anchors(dtype=torch.float64).corners


def _targets(anchor_boxes, gt_boxes, gt_labels, background=20, forced=True, threshold=0.4, ge=False,
             lesson_anchors=False, give_idx=False, as_float=False):
    anchor_boxes = LESSON_CORNERS if lesson_anchors else anchor_boxes
    if len(gt_boxes) == 0:
        return torch.full((len(anchor_boxes),), 20)
    ious = box_iou(anchor_boxes, gt_boxes)
    m = match_boxes(ious[None], torch.ones(1, len(gt_boxes), dtype=torch.bool), threshold)
    idx, overlap = m.gt_idx[0], m.gt_overlap[0]
    if not forced:
        overlap, idx = ious.max(dim=1)
    positive = overlap >= threshold if ge else overlap > threshold
    labels = idx if give_idx else gt_labels[idx]
    out = labels if background is None else torch.where(positive, labels, background)
    return out.float() if as_float else out


# ---- 12: hard negative mining ------------------------------------------------------------------------------------

def _mine(box_loss, positive, ratio, among_positives=False, exclude_after=False, ascending=False, whole_batch=False,
          per_image_count=False, with_positives=False, as_index=False):
    """A learner's mining with plain Python lists: rank, then keep the first n."""
    kept = torch.zeros_like(positive)
    images = [(None, box_loss.flatten(), positive.flatten())] if whole_batch else \
        [(b, box_loss[b], positive[b]) for b in range(box_loss.shape[0])]
    for b, loss, pos in images:
        n = int(ratio) if per_image_count else int(ratio * int(pos.sum()))
        pool = range(len(loss)) if among_positives or exclude_after else [i for i in range(len(loss)) if not pos[i]]
        ranked = sorted(pool, key=lambda i: float(loss[i]), reverse=not ascending)[:n]
        chosen = [i for i in ranked if not (exclude_after and pos[i])]
        flat = kept.view(-1) if b is None else kept[b]
        flat[chosen] = True
    if with_positives:
        kept |= positive
    return kept.nonzero() if as_index else kept



SLIPS = [  # (exercise, learner's wrong function, words its message must contain)
    ("02.anchor_boxes", lambda *a: _anchors(*a, xy=True), "(x, y) where the lesson has (y, x)"),
    ("02.anchor_boxes", lambda *a: _anchors(*a, scale=224.0), "Looks like pixels"),
    ("02.anchor_boxes", lambda *a: _anchors(*a, shift=0.0), "top-left corners"),
    ("02.anchor_boxes", lambda *a: _anchors(*a, centres=True), "Looks like (cy, cx, h, w)"),
    ("02.anchor_boxes", lambda *a: _anchors(*a, swap=True), "Heights and widths are swapped"),
    ("02.anchor_boxes", lambda *a: _anchors(*a, ratio_outer=True), "zoom is the outer loop"),
    ("02.anchor_boxes", lambda g, z, r: _anchors(g, (0.7, 1.0, 1.3), r), "should have shape (9, 4), yours has shape (27, 4)"),
    ("03.decode_box", lambda *a: _decode(*a, squash=lambda t: t), "tanh is missing"),
    ("03.decode_box", lambda *a: _decode(*a, move=1.0), "moves up to a whole cell"),
    ("03.decode_box", lambda *a: _decode(*a, grow=1.0), "(1 + tanh) times"),
    ("03.decode_box", lambda *a: _decode(*a, order=(1, 0, 3, 2)), "(x, y) where the lesson has (y, x)"),
    ("03.decode_box", lambda *a: _decode(*a, scale=224.0), "Looks like pixels"),
    ("03.decode_box", lambda *a: _decode(*a, centres=True), "Looks like (cy, cx, h, w)"),
    ("03.decode_box", _decode_in_place, "changed its input actn in place"),
    ("03.decode_box", lambda actn, anchor, cell: _decode(actn, anchor, 0.25), "centre = anchor centre + t[:2] / 2 x cell"),
    ("04.iou_one_box", lambda *a: _iou(*a, clamp="none"), "clamp the overlap's height and width at 0"),
    ("04.iou_one_box", lambda *a: _iou(*a, clamp="product"), "each at 0, before multiplying"),
    ("04.iou_one_box", lambda *a: _iou(*a, ends_swapped=True), "the larger of the two starts"),
    ("04.iou_one_box", lambda *a: _iou(*a, union="sum"), "counts the shared part twice"),
    ("04.iou_one_box", lambda *a: _iou(*a, union="box"), "divide by the first box's area"),
    ("04.iou_one_box", lambda *a: _iou(*a, union="others"), "divide by the other box's area"),
    ("04.iou_one_box", lambda *a: _iou(*a, union="none"), "That is the overlap's area"),
    ("04.iou_one_box", lambda *a: _iou(*a, as_list=True), "IoU should be a floating-point tensor, yours is a list of"),
    ("05.match", lambda ious: _match(ious, ge=True), "Looks like >= where the lesson has >"),
    ("05.match", lambda ious: _match(ious, forced=None), "forced matches are missing"),
    ("05.match", lambda ious: _match(ious, forced=1.0), "the lesson writes 1.99"),
    ("05.match", lambda ious: _match(ious, claim=False), "keeps its own gt_idx"),
    ("05.match", lambda ious: _match(ious, threshold_first=True), "threshold before the forced matches"),
    ("05.match", lambda ious: _match(ious, threshold=0.5), "threshold of 0.5, the SSD paper's"),
    ("05.match", lambda ious: _match(ious, threshold=0.45), "positive when its overlap is above 0.4, the lesson's threshold"),
    ("05.match", lambda ious: _match(ious, threshold=0.35), "positive when its overlap is above 0.4, the lesson's threshold"),
    ("05.match", lambda ious: _match(ious, reverse=True), "the later claim overwrites it"),
    ("05.match", lambda ious: _match(ious, float_idx=True), "gt_idx should be an integer tensor (torch.int64), yours "
                                                            "is a tensor of torch.float32"),
    ("05.match", lambda ious: _match(ious, list_positive=True), "positive should be a bool tensor (torch.bool), yours "
                                                                "is a list of"),
    ("06.bce", lambda *a: _bce(*a, keep_background=True), "kept the background column"),
    ("06.bce", lambda *a: _bce(*a, divide="1"), "Not divided by C"),
    ("06.bce", lambda *a: _bce(*a, divide="C+1"), "Divided by C + 1"),
    ("06.bce", lambda *a: _bce(*a, mean=True), "Looks like a mean"),
    ("06.bce", lambda logits, target: F.cross_entropy(logits, target), "softmax cross-entropy"),
    ("06.bce", lambda *a: _bce(*a, squash=True), "sigmoid applied twice"),
    ("06.bce", lambda *a: _bce(*a, objects_only=True), "background boxes count too"),
    ("07.l1", lambda *a: _l1(*a, swap=True), "other way round"),
    ("07.l1", lambda *a: _l1(*a, everything=True), "only the positives"),
    ("07.l1", lambda *a: _l1(*a, per_box=False), "the mean of its 4 errors"),
    ("07.l1", lambda *a: _l1(*a, error="square"), "Looks like squared errors"),
    ("07.l1", lambda *a: _l1(*a, error="smooth"), "Looks like smooth L1"),
    ("07.l1", lambda *a: _l1(*a, over_all=True), "Your mean divides by every box"),
    ("07.l1", lambda *a: _l1(*a, plain_mean=True), "mean (a number) is nan. Hint: with no positives both losses are 0"),
    ("07.l1", lambda *a: _l1(*a, stacked=True), "a pair (a tuple of two: mean, sum) is asked for, yours returned ["),
    ("08.grad", lambda *a: _grad(*a, sign=-1), "points the wrong way"),
    ("08.grad", lambda *a: _grad(*a, per="4"), "the article's sum"),
    ("08.grad", lambda *a: _grad(*a, per="n"), "Divided by n only"),
    ("08.grad", lambda *a: _grad(*a, everything=True), "gradient is 0"),
    ("08.grad", lambda *a: _grad(*a, per="4A"), "Divided by every box"),
    ("08.grad", lambda *a: _grad(*a, square=True), "gradient of a squared error"),
    ("08.grad", _grad_by_autograd, "asks autograd for the gradient (.backward() or torch.autograd.grad)"),
    ("11.anchor_targets", lambda *a: _targets(*a, background=None), "become background, class 20"),
    ("11.anchor_targets", lambda *a: _targets(*a, background=0), "Your background is 0"),
    ("11.anchor_targets", lambda *a: _targets(*a, forced=False), "forced matches are missing"),
    ("11.anchor_targets", lambda *a: _targets(*a, threshold=0.5), "Your threshold is 0.5"),
    ("11.anchor_targets", lambda *a: _targets(*a, ge=True), "Looks like >= where the lesson has >"),
    ("11.anchor_targets", lambda *a: _targets(*a, lesson_anchors=True), "matched on the lesson's 189 anchor boxes"),
    ("11.anchor_targets", lambda *a: _targets(*a, give_idx=True), "objects' indices (gt_idx)"),
    ("11.anchor_targets", lambda *a: _targets(*a, as_float=True), "should be an integer tensor (torch.int64), yours is "
                                                                  "a tensor of torch.float32"),
    ("12.mine", lambda *a: _mine(*a, among_positives=True), "Some positives are among the boxes you kept"),
    ("12.mine", lambda *a: _mine(*a, ascending=True), "You kept the easiest negatives"),
    ("12.mine", lambda *a: _mine(*a, whole_batch=True), "the whole batch's positives"),
    ("12.mine", lambda *a: _mine(*a, exclude_after=True), "dropped the positives afterwards"),
    ("12.mine", lambda *a: _mine(*a, per_image_count=True), "You kept neg_pos_ratio negatives per image"),
    ("12.mine", lambda *a: _mine(*a, with_positives=True), "You returned the positives too"),
    ("12.mine", lambda box_loss, positive, ratio: ~positive, "You kept every negative"),
    ("12.mine", lambda *a: _mine(*a, as_index=True), "should be a bool tensor (torch.bool), yours is"),
]


def test_the_catalogue_has_at_least_six_slips_per_exercise():
    counts = Counter(name for name, _, _ in SLIPS)
    assert set(counts) == set(CODE_EXERCISES) and min(counts.values()) >= 6, counts


@pytest.mark.parametrize("name, wrong, words", SLIPS, ids=[f"{n}-{w[:30]}" for n, _, w in SLIPS])
def test_each_slip_is_not_right_and_its_message_fits(name, wrong, words, capsys):
    ok, out = checked(capsys, name, wrong)
    assert not ok and not out.startswith(f"{name}: Right") and "not answered yet" not in out, out
    assert words in out, out
    others = [s.hint for s in CODE_EXERCISES[name].slips.values() if words not in s.hint]
    assert not any(h in out for h in others), out  # one slip's hint at most, and the one that fits


def test_a_threshold_of_0_35_is_not_told_it_is_a_greater_or_equal(capsys):
    ok, out = checked(capsys, "05.match", lambda ious: _match(ious, threshold=0.35))
    assert not ok and ">=" not in out
    assert out.startswith("05.match: not quite, on the case 'an IoU of exactly 0.4'"), out
    assert "positive (shape (4,)) is [True, True, True, False] (wrong at 1 of 4 places, the first at [0])" in out
    assert "is positive when its overlap is above 0.4, the lesson's threshold" in out


@pytest.mark.parametrize("name", sorted(CODE_EXERCISES))
def test_each_of_the_checkers_slips_is_named_for_its_own_answer(name):
    """run_cases on a slip's own answers names that slip: so no two slips give the same answers on every case."""
    slips = CODE_EXERCISES[name].slips
    assert len(slips) >= 6
    for slip_name, slip in slips.items():
        verdict, case, detail = run_cases(name, slip.wrong)
        assert (verdict, detail) == ("slip", slip_name), (slip_name, verdict, case and case.label, detail)
