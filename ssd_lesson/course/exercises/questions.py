"""Short exercises at the end of each notebook, and the checker that marks them.

``check(name, answer, **context)`` prints one line: *Not answered yet* with a hint,
*Right* with a sentence on why, or *Not quite* with a hint. It never prints the
answer. The right answer is computed from the library on the objects passed in
``context`` (the example's loss result, its anchors, ...), so it always agrees with
what the notebook shows. Boxes are ``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import torch

from ...core.anchors import activations_to_boxes
from ...model.infer import decode
from ...core.matching import FORCED_OVERLAP
from ...core.mining import box_classification_loss, hard_negatives
from .code_exercises import CODE_EXERCISES, check_code

__all__ = ["EXERCISES", "Exercise", "check", "solve"]

#: The input side of the original SSD (SSD300), in pixels: 01.centre_x asks for a box there.
ORIGINAL_SSD_SIDE = 300
#: How far 07.step_toward moves every corner toward its target, as a fraction of the image's side (about 7 pixels).
STEP_TOWARD = 0.03


class Exercise(NamedTuple):
    """``solve(**context)`` gives the right answer; ``tolerance`` is absolute, for numbers."""

    hint: str
    why: str
    solve: Callable[..., Any]
    tolerance: float = 0.0


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _positives(result: Any) -> list[int]:
    return result.match.positive[0].nonzero().flatten().tolist()


def _anchor_at(anchors: Any, grid: int, row: int, col: int, zoom: float, ratio: tuple[float, float]) -> int:
    """The model-output index of the anchor box at (grid, row, col, zoom, ratio)."""
    return next(i for i in range(len(anchors)) if anchors.info(i)[1:4] == (grid, row, col)
                and anchors.info(i).zoom == zoom and anchors.info(i).ratio == ratio)


def _worst_corner(result: Any) -> float:
    """The largest |predicted - target| corner coordinate over Table 4's rows (the positive boxes), a fraction."""
    a = _positives(result)
    return float((result.pred_boxes[0, a] - result.target_boxes[0, a]).abs().max())


EXERCISES: dict[str, Exercise] = {
    "01.area": Exercise(
        "box 0's sides are fractions of the image's sides: what part of the whole image does the box cover?",
        "(y1 - y0) x (x1 - x0)", lambda ex: float((ex.boxes[0, 2] - ex.boxes[0, 0]) * (ex.boxes[0, 3] - ex.boxes[0, 1])),
        5e-4),
    "01.centre_x": Exercise(
        "a box drawn on a photo stays on its object when the photo is resized: which of the numbers you have "
        "for box 1 would stay the same at the new size, and which would not?",
        "(x0 + x1) / 2 x 300: fractions hold at any input size",
        lambda ex: float(ex.boxes[1, 1] + ex.boxes[1, 3]) / 2 * ORIGINAL_SSD_SIDE, 0.05),
    "02.index": Exercise(
        "the model's outputs list the grids in order, each grid's cells row by row, and each cell's boxes in "
        "the order of its zooms and ratios: count the outputs that come before this box", "anchors.info(i) reads the index back",
        lambda anchors: _anchor_at(anchors, 2, 1, 0, 1.3, (1.0, 0.5))),
    "02.first_1x1_with_8x8": Exercise(
        "every output of a grid placed in front pushes the later grids' boxes along: how many outputs does an "
        "8x8 grid have, and which grids still come before the 1x1?",
        "every grid before it shifts it by cells x boxes per cell",
        lambda anchors: 8 * 8 * anchors.spec.k(0) + int(anchors.offsets[2])),
    "03.decode_y0": Exercise(
        "follow notebook 03's decoding for this one box: the activations are squashed first, then move the "
        "anchor box's centre and scale its height; y0 is the box's top edge",
        "that is activations_to_boxes for one box",
        lambda box_actns, anchors, index: float(activations_to_boxes(box_actns, anchors)[0, index, 0]), 5e-4),
    "03.max_width": Exercise(
        "how far can tanh go, and so how far can the decoding stretch an anchor box's width? Find this box's "
        "grid, zoom and ratio with anchors.info", "the largest factor is 1.5",
        lambda anchors, index: 1.5 * float(anchors.centers_hw[index, 3]), 5e-4),
    "04.iou": Exercise(
        "of all the area the two boxes cover, how much do both cover? Count the part they share once in that area",
        "IoU = intersection / union", lambda result, box, gt: float(result.ious[0, box, gt]), 5e-4),
    "04.mean_column": Exercise(
        "which part of the IoU matrix belongs to this ground-truth box? The question asks about every box, "
        "not only those that overlap it",
        "most boxes overlap any one object little or not at all", lambda result, gt: float(result.ious[0, :, gt].mean()),
        5e-4),
    "05.positives_at_0.35": Exercise(
        "a box is positive when its gt_overlap is above the threshold; forced matches (1.99) always are",
        "raising the threshold can only remove positives",
        lambda result, threshold: int(((result.match.gt_overlap[0] > threshold)).sum())),
    "05.background_overlap": Exercise(
        "which boxes are background, and what does gt_overlap record for each of them?",
        "most background boxes touch an object a little",
        lambda result: float(result.match.gt_overlap[0][~result.match.positive[0]].mean()), 5e-4),
    "06.bce_zero": Exercise(
        "in a background box's cat column the right answer is 'no': cross-entropy charges for the model's doubt "
        "about the right answer, whatever the column",
        "a confident 'no' costs little", lambda x: _softplus(x), 5e-4),
    "06.box_share": Exercise(
        "the loss splits box by box, as in the section on each box's share: this box's part is made from its "
        "own terms the way the whole loss is made from all of them",
        "the shares add up to the classification loss", lambda shares, box: float(shares.loc[box, "BCE"]), 5e-4),
    "07.step_toward": Exercise(
        "the mean keeps every corner's own distance to its target: what does a step toward the target do to a "
        "distance, and what becomes of a corner that was nearly there already?",
        "each error shrinks by the step, and the corners nearer than the step stop on their target",
        lambda result: _after_step(result, STEP_TOWARD), 5e-4),
    "07.worst_corner": Exercise(
        "an MAE averages four corners and hides the one that is far off: look at single corners of every "
        "positive box, and remember what a fraction of the image's side is in pixels of the model's input",
        "the largest single corner error, in pixels of the 224x224 input",
        lambda result: _worst_corner(result) * 224, 0.05),
    "08.grad_summed": Exercise(
        "a small step moves each corner against its gradient; for one corner, how much does the loss change per "
        "unit it moves, and how far does it move? Then count the corners the summed loss pulls on",
        "under the sum each corner is pulled by a quarter, whatever the number of boxes; a step of lr moves it by "
        "lr/4 and lowers the loss by a quarter of that, and the 4 corners of every positive add up",
        lambda result: _fall_per_learning_rate(result), 5e-4),
    "08.strongest_push_up": Exercise(
        "a positive box's own class is pushed up by how far the model's probability for it is from certain: "
        "which positive does the model believe least?",
        "BCE's gradient on a target-1 logit grows as the probability falls short of 1",
        lambda result, class_logits: _strongest_push_up(result, class_logits), 5e-5),
    "09.images_seen": Exercise(
        "does the batch size divide the number of training images? If not, some images are left over at the end "
        "of each epoch: ask the training DataLoader (dls.train) what it does with them",
        "fastai's drop_last for training", lambda n_images, bs, epochs: epochs * (n_images // bs) * bs),
    "09.first_lr": Exercise(
        "one cycle warms up: it does not start at its peak. How far below the peak it starts is one of "
        "fit_one_cycle's settings (??learn.fit_one_cycle)",
        "learn.recorder.lrs holds every batch's learning rate", lambda learn: float(learn.recorder.lrs[0]), 2e-6),
    "10.after_nms": Exercise(
        "a higher score threshold leaves fewer (box, class) pairs for non-maximum suppression to thin out: "
        "which of image 0's pairs are left, and which of those survive it?",
        "a higher threshold keeps fewer pairs, and NMS removes the duplicates among them",
        lambda class_logits, box_actns, anchors: len(decode(class_logits[:1], box_actns[:1], anchors,
                                                            score_threshold=0.5)[0].labels)),
    "10.iou_for_match": Exercise(
        "sliding a box along its twin shrinks what the two share and grows what they cover together; Pascal "
        "VOC's protocol, above, says how large their ratio must stay for a hit",
        "(1 - s) / (1 + s) > 0.5 holds up to a slide of a third of the width", lambda: 1 / 3, 5e-3),
    "11.anchor_iou": Exercise(
        "the anchor box's corners are anchors.corners[i]; IoU as in notebook 04, with ground-truth box gt",
        "matching on anchors judges a box by where its anchor box sits, not by where the model moved it: "
        "no activation can change this overlap",
        lambda by_anchors, box, gt: float(by_anchors.ious[0, box, gt]), 5e-4),
    "11.lower": Exercise(
        "for each option, ask two things: is it true of this checkpoint and these matchings (notebooks 05, 09 and "
        "this one have what you need), and if it is, would it make one of the two losses lower?",
        "the checkpoint's last training run matched on the predicted boxes: its logits fit those targets, and a "
        "loss is low where the outputs already fit the targets it scores them against",
        # (b) names the last run's matching (predictions, notebook 09); were anchors lower, that would be chance
        lambda by_predictions, by_anchors: "b" if float(by_predictions.classification[0])
        < float(by_anchors.classification[0]) else "c"),
    "12.mined_at_04": Exercise(
        "the positives stay those of the lesson's matching, each scored by softmax now; of the negatives, only "
        "the hardest count, ranked by that same loss as in the mining figure",
        "the lesson's matching, the paper's classification: more positives, so more negatives kept than at 0.5",
        lambda lesson, class_logits, neg_pos_ratio: _mined_softmax(lesson, class_logits, neg_pos_ratio), 1e-2),
    "12.kept_share": Exercise(
        "the kept negatives are the first of the mining figure's ranking, more of them now; the loss the "
        "widget or the table gives is not theirs alone: which boxes does it count besides them?",
        "the few hardest negatives carry much of the background's loss: the rest are easy, confident boxes",
        lambda class_logits, mined, neg_pos_ratio: float(_share_of_kept(class_logits, mined, neg_pos_ratio)), 1e-3),
}


def _after_step(result: Any, step: float) -> float:
    """The mean L1 of the positives' corners after each moved ``step`` toward its target, stopping on it."""
    a = _positives(result)
    error = (result.pred_boxes[0, a] - result.target_boxes[0, a]).abs().detach()
    return float((error - step).clamp_min(0).mean())


def _fall_per_learning_rate(result: Any) -> float:
    """How fast the regression loss of ``result`` falls, per unit of learning rate, under one small step of gradient
    descent on the positives' corners: the sum of their squared gradients. Each corner coordinate is pulled by a
    quarter of its box's MAE, shared again among the positives when the loss is their mean."""
    n = len(_positives(result))
    pull = 1 / (4 * n) if result.options.regression_reduction == "mean" else 1 / 4
    return 4 * n * pull ** 2


def _strongest_push_up(result: Any, class_logits: torch.Tensor) -> float:
    """The most negative gradient of the (BCE) classification loss on a positive box's own class logit."""
    a = _positives(result)
    own = class_logits[0, a, result.target_labels[0, a]].detach().double()
    return float(((torch.sigmoid(own) - 1) / (class_logits.shape[-1] - 1)).min())


def _mined_softmax(lesson: Any, class_logits: torch.Tensor, neg_pos_ratio: float) -> float:
    """The softmax loss of ``lesson``'s positives and of its hardest ``neg_pos_ratio`` negatives per positive."""
    losses = box_classification_loss(class_logits.double().detach(), lesson.target_labels, "softmax")
    kept = hard_negatives(losses, lesson.match.positive, neg_pos_ratio)
    return float(losses[lesson.match.positive | kept].sum())


def _share_of_kept(class_logits: torch.Tensor, mined: Any, neg_pos_ratio: float) -> torch.Tensor:
    """The share of all negatives' softmax loss that the hardest ``neg_pos_ratio`` negatives per positive carry,
    with the matching of ``mined``, over the batch."""
    losses = box_classification_loss(class_logits.double().detach(), mined.target_labels, "softmax")
    kept = hard_negatives(losses, mined.match.positive, neg_pos_ratio)
    return losses[kept].sum() / losses[~mined.match.positive].sum()


def solve(name: str, **context: Any) -> Any:
    """The right answer of exercise ``name`` for ``context`` (for tests and instructors)."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; there are {sorted(EXERCISES)}")
    return EXERCISES[name].solve(**context)


def _as_number(answer: Any) -> Optional[float]:
    """``answer`` as one float, or None: a tensor or array of several numbers (or none), text, a number too big."""
    if hasattr(answer, "numel") or hasattr(answer, "size") and hasattr(answer, "reshape"):  # a tensor or an array
        n = answer.numel() if callable(getattr(answer, "numel", None)) else int(answer.size)
        if n != 1:
            return None
        answer = answer.reshape(-1)[0].item()
    if isinstance(answer, str):
        return None
    try:
        value = float(answer)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _what(answer: Any) -> str:
    """Why ``answer`` is not one number, for the hint."""
    if hasattr(answer, "shape") and hasattr(answer, "reshape"):
        return f"a tensor of shape {tuple(answer.shape)}"
    return f"{type(answer).__name__}"


def _same(answer: Any, right: Any, tolerance: float) -> bool:
    if isinstance(right, tuple):  # a two-part question: every part must be right
        return isinstance(answer, (tuple, list)) and len(answer) == len(right) and all(
            _same(a, r, tolerance) for a, r in zip(answer, right))
    if isinstance(right, str):
        return str(answer).strip().strip("'\"").lower() == right
    value = _as_number(answer)
    return value is not None and abs(value - float(right)) <= tolerance + 1e-12


def check(name: str, answer: Any, **context: Any) -> bool:
    """Print whether ``answer`` to exercise ``name`` is right (never the answer itself); return it.

    For a code exercise (``"05.match"``, ...) ``answer`` is the learner's function, run on the checker's
    own cases (:func:`~ssd_lesson.course.exercises.code_exercises.check_code`); ``context`` is not used.
    """
    if name in CODE_EXERCISES:
        return check_code(name, answer)
    ex = EXERCISES[name] if name in EXERCISES else None
    if ex is None:
        raise KeyError(f"no exercise {name!r}; there are {sorted(EXERCISES) + sorted(CODE_EXERCISES)}")
    if answer is None:
        print(f"{name}: not answered yet. Hint: {ex.hint}.")
        return False
    right = solve(name, **context)
    if callable(answer) and not isinstance(right, (str, tuple)):
        print(f"{name}: not quite: this exercise asks for a number, not a function. Hint: {ex.hint}.")
        return False
    ok = _same(answer, right, ex.tolerance)
    if ok:
        print(f"{name}: right: {ex.why}.")
    elif isinstance(right, tuple) and not (isinstance(answer, (tuple, list)) and len(answer) == len(right)):
        print(f"{name}: not quite: {len(right)} answers are asked for, as a pair ({', '.join('...' for _ in right)}). "
              f"Hint: {ex.hint}.")
    elif not isinstance(right, (str, tuple)) and _as_number(answer) is None:
        print(f"{name}: not quite: one number is asked for, yours is {_what(answer)}. Hint: {ex.hint}.")
    else:
        print(f"{name}: not quite. Hint: {ex.hint}.")
    return ok
