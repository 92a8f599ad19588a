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

from ..core.anchors import activations_to_boxes
from ..model.infer import decode
from ..core.matching import FORCED_OVERLAP
from .your_turn import CODE_EXERCISES, check_code

__all__ = ["EXERCISES", "Exercise", "check", "solve"]


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


EXERCISES: dict[str, Exercise] = {
    "01.objects": Exercise(
        "count the rows of y: one per ground-truth box", "y has one row per annotated object",
        lambda ex: len(ex.classes)),
    "01.pixels": Exercise(
        "multiply box 0's x1 fraction by the width of the model's input (224)",
        "fractions times the image size give pixels", lambda ex: float(ex.boxes[0, 3]) * 224, 0.05),
    "02.count_2x2": Exercise(
        "cells of the grid times the anchor boxes per cell", "2 x 2 cells x 9 anchor boxes",
        lambda anchors: int((anchors.grid_index == 1).sum())),
    "02.first_1x1": Exercise(
        "the 4x4 grid's outputs come first, then the 2x2 grid's; count them",
        "16 x 9 + 4 x 9 outputs come before it", lambda anchors: int(anchors.offsets[2])),
    "03.decode_y0": Exercise(
        "tanh each activation; the centre moves tanh(dy)/2 cells, the height becomes (1 + tanh(dh)/2) x the anchor's; "
        "y0 = centre - height / 2",
        "that is activations_to_boxes for one box",
        lambda box_actns, anchors, index: float(activations_to_boxes(box_actns, anchors)[0, index, 0]), 5e-4),
    "03.max_height": Exercise(
        "tanh never reaches 1: the height is at most (1 + 1/2) times the anchor box's",
        "the largest factor is 1.5", lambda anchors, index: 1.5 * float(anchors.centers_hw[index, 2]), 5e-4),
    "04.iou": Exercise(
        "intersection = overlap height x overlap width (0 if either is negative); union = area A + area B - intersection",
        "IoU = intersection / union", lambda result, box, gt: float(result.ious[0, box, gt]), 5e-4),
    "04.zero_rows": Exercise(
        "a box overlaps nothing when its whole row of Table 1 is 0",
        "those boxes take ground truth 0 by default in notebook 05",
        lambda result: int((result.ious[0] == 0).all(dim=1).sum())),
    "05.positives_at_0.5": Exercise(
        "a box is positive when its gt_overlap is above the threshold; forced matches (1.99) always are",
        "raising the threshold can only remove positives",
        lambda result, threshold: int(((result.match.gt_overlap[0] > threshold)).sum())),
    "05.forced": Exercise(
        "look for gt_overlap == 1.99 in Table 2 (all 189 rows, not just the first 30)",
        "one forced match per ground-truth box, unless two claim the same box",
        lambda result: int((result.match.gt_overlap[0] == FORCED_OVERLAP).sum())),
    "06.bce_zero": Exercise(
        "BCE of a logit x against target 0 is -log(1 - sigmoid(x)) = log(1 + exp(x))",
        "a confident 'no' costs little", lambda x: _softplus(x), 5e-4),
    "06.background_share": Exercise(
        "sum the BCE column of the background boxes' rows",
        "the shares add up to the classification loss", lambda shares: float(shares.loc[~shares.positive, "BCE"].sum()),
        5e-4),
    "07.n_positive": Exercise(
        "Table 4 has one row per positive box", "only positives have a box to be compared with",
        lambda result: len(_positives(result))),
    "07.mae": Exercise(
        "mean of |pbbox - gtbbox| over the four coordinates of the first row of Table 4",
        "the per-box MAE", lambda result: float((result.pred_boxes[0, _positives(result)[0]]
                                                 - result.target_boxes[0, _positives(result)[0]]).abs().mean()), 5e-4),
    "08.grad_size": Exercise(
        "the mean regression loss divides by 4 x (number of positives)",
        "d loss / d corner = +-1 / (4 n)", lambda result: 1 / (4 * len(_positives(result))), 5e-5),
    "08.pushed_up": Exercise(
        "a logit is pushed up where its gradient is negative: only a positive box's own class",
        "one per positive box", lambda result: len(_positives(result))),
    "09.batches": Exercise(
        "the last partial batch is dropped: floor(images / batch size)", "fastai's drop_last for training",
        lambda n_images, bs: n_images // bs),
    "09.lr": Exercise(
        "one cycle: the learning rate rises to the peak you pass, then falls", "fit_one_cycle(epochs, peak lr)",
        lambda peak: float(peak), 1e-12),
    "10.after_nms": Exercise(
        "decode with score_threshold=0.5 (NMS at 0.5 is the default) and count image 0's detections",
        "a higher threshold keeps fewer pairs, and NMS removes the duplicates among them",
        lambda class_logits, box_actns, anchors: len(decode(class_logits[:1], box_actns[:1], anchors,
                                                            score_threshold=0.5)[0].labels)),
    "10.iou_for_match": Exercise(
        "VOC counts a detection as a hit when its IoU with a ground-truth box of its class is above this",
        "the Pascal criterion: the overlap is more than half the union", lambda: 0.5, 1e-9),
    "11.both": Exercise(
        "the boxes positive under both matchings: the intersection of the two lists",
        "the two matchings agree on few boxes",
        lambda by_predictions, by_anchors: len(set(_positives(by_predictions)) & set(_positives(by_anchors)))),
    "11.lower": Exercise(
        "compare the two columns of the loss table's first row",
        "the checkpoint was trained matching on anchors: its logits fit those targets",
        lambda by_predictions, by_anchors: "anchors" if float(by_anchors.classification[0]) < float(by_predictions.classification[0])
        else "predictions"),
}


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
    if isinstance(right, str):
        return str(answer).strip().strip("'\"").lower() == right
    value = _as_number(answer)
    return value is not None and abs(value - float(right)) <= tolerance + 1e-12


def check(name: str, answer: Any, **context: Any) -> bool:
    """Print whether ``answer`` to exercise ``name`` is right (never the answer itself); return it.

    For a code exercise (``"05.match"``, ...) ``answer`` is the learner's function, run on the checker's
    own cases (:func:`~ssd_lesson.course.your_turn.check_code`); ``context`` is not used.
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
    if callable(answer) and not isinstance(right, str):
        print(f"{name}: not quite: this exercise asks for a number, not a function. Hint: {ex.hint}.")
        return False
    ok = _same(answer, right, ex.tolerance)
    if ok:
        print(f"{name}: right: {ex.why}.")
    elif not isinstance(right, str) and _as_number(answer) is None:
        print(f"{name}: not quite: one number is asked for, yours is {_what(answer)}. Hint: {ex.hint}.")
    else:
        print(f"{name}: not quite. Hint: {ex.hint}.")
    return ok
