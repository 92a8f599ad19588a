"""The code exercise of notebook 12: hard negative mining, the SSD paper's answer to class imbalance.

The learner writes ``my_hard_negatives(box_loss, positive, neg_pos_ratio)``: in each image, keep the
``neg_pos_ratio`` times its number of positives negatives (background boxes) with the highest
classification loss. Like :mod:`.box_cases` and :mod:`.loss_cases`: seeded cases plus edge cases, the
library's answer (:func:`~ssd_lesson.core.mining.hard_negatives`), and the slips the checker names.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...core.mining import hard_negatives
from .cases import Case, CodeExercise, Slip, seeded

__all__ = ["MINE"]

NAMES = ("box_loss", "positive", "neg_pos_ratio")


def _top(scores: Tensor, n: int, lowest: bool = False) -> Tensor:
    """``(A,)`` bool: the ``n`` boxes of largest (or smallest) ``scores``, ``-inf`` / ``inf`` never chosen."""
    keep = torch.zeros(scores.shape, dtype=torch.bool)
    order = scores.argsort(descending=not lowest)[:max(n, 0)]
    keep[order] = True
    return keep & scores.isfinite()


def _per_image(box_loss: Tensor, positive: Tensor, ratio: float, *, rank_positives: bool = False,
               exclude_after: bool = True, lowest: bool = False, per_positive: bool = True) -> Tensor:
    """A slip's answer, one image at a time: ``rank_positives`` ranks every box, positives included;
    ``exclude_after`` then drops the positives from what was kept."""
    kept = torch.zeros_like(positive)
    for b in range(box_loss.shape[0]):
        n = int(ratio * int(positive[b].sum())) if per_positive else int(ratio)
        loss = box_loss[b].double()
        if not rank_positives:
            loss = loss.masked_fill(positive[b], float("inf") if lowest else float("-inf"))
        kept[b] = _top(loss, n, lowest)
        if exclude_after:
            kept[b] &= ~positive[b]
    return kept


def _whole_batch(box_loss: Tensor, positive: Tensor, ratio: float) -> Tensor:
    """The slip of one count for the whole batch: its ``ratio`` times all positives, the hardest negatives of any image."""
    loss = box_loss.double().masked_fill(positive, float("-inf")).flatten()
    return _top(loss, int(ratio * int(positive.sum()))).view(positive.shape)


def _case(label: str, g: torch.Generator, n_boxes: int, positives: list[list[int]], ratio: float,
          hard_positives: bool = False, hint: str = "") -> Case:
    """Random losses for ``len(positives)`` images of ``n_boxes`` boxes, the listed boxes positive; with
    ``hard_positives`` the positives carry the highest losses (as they do early in training)."""
    box_loss = torch.rand(len(positives), n_boxes, generator=g) * 3
    positive = torch.zeros(len(positives), n_boxes, dtype=torch.bool)
    for b, boxes in enumerate(positives):
        positive[b, boxes] = True
        if hard_positives:
            box_loss[b, boxes] += 3
    return Case(label, NAMES, (box_loss, positive, ratio), hint)


def _mine_cases() -> list[Case]:
    g = seeded(12)
    no_objects = _case("an image without objects beside one with an object", g, 12, [[4], []], 3.0,
                       hint="count the positives of each image on its own: an image without objects keeps no negative")
    no_objects.args[0][1] += 1  # the image without objects has the harder negatives
    return [
        _case("two images, the positives among the hardest boxes", g, 16, [[2, 9], [5]], 3.0, hard_positives=True,
              hint="rank only the negatives: a positive is never a hard negative, and takes no place among them"),
        no_objects,
        _case("fewer negatives than 3 per positive: all of them are kept", g, 6, [[0, 3]], 3.0, hard_positives=True),
        _case("the lesson's 189 boxes, one negative per positive", g, 189, [[7, 40, 41, 120, 150], [3, 99]], 1.0),
        _case("three images, two negatives per positive", g, 10, [[1, 2], [0], [5, 6, 8]], 2.0),
    ]


def _right(box_loss: Tensor, positive: Tensor, neg_pos_ratio: float) -> Tensor:
    return hard_negatives(box_loss, positive, neg_pos_ratio)


MINE = CodeExercise(
    "my_hard_negatives(box_loss, positive, neg_pos_ratio)", "one (B, A) bool tensor, True on the negatives kept",
    ("kept negatives",), _mine_cases, _right,
    {"among_positives": Slip("Some positives are among the boxes you kept: mine among the negatives only (the "
                             "positives' loss counts anyway), e.g. give the positives -inf before ranking",
                             lambda *a: _per_image(*a, rank_positives=True, exclude_after=False)),
     "exclude_after": Slip("You ranked every box and dropped the positives afterwards, so a hard positive took the place "
                           "of a negative: leave the positives out before ranking, then keep the hardest negatives",
                           lambda *a: _per_image(*a, rank_positives=True)),
     "ascending": Slip("You kept the easiest negatives, the lowest losses: the hard ones are those with the highest loss "
                       "(sort descending)", lambda *a: _per_image(*a, lowest=True)),
     "whole_batch": Slip("You kept neg_pos_ratio times the whole batch's positives, the hardest negatives of any image: "
                         "count each image's positives and mine its own negatives", _whole_batch),
     "not_per_positive": Slip("You kept neg_pos_ratio negatives per image: it is a ratio, that many negatives per "
                              "positive (neg_pos_ratio * the image's number of positives)",
                              lambda *a: _per_image(*a, per_positive=False)),
     "with_positives": Slip("You returned the positives too: return only the negatives kept (the loss adds the "
                            "positives itself)", lambda l, p, r: hard_negatives(l, p, r) | p),
     "all_negatives": Slip("You kept every negative: keep only neg_pos_ratio times the image's positives, the hardest",
                           lambda l, p, r: ~p)},
    "per image: n = neg_pos_ratio * (number of positives); give the positives -inf, sort the losses descending, "
    "keep the first n, never a positive",
    "hard_negatives(box_loss, positive, neg_pos_ratio) of ssd_lesson.core.mining keeps the same boxes, batched",
    kinds=("bool",))
