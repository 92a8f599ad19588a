"""The code exercises of notebooks 06, 07, 08 and 11: the loss's parts, one image at a time.

Like :mod:`.box_cases`: seeded cases plus edge cases, the library's answer, and the slips.
Boxes are ``(y0, x0, y1, x1)`` fractions of the image; class ids are ``0..C-1`` with ``C`` background.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.anchors import AnchorSpec, make_anchors
from ...core.boxes import box_iou, corners_to_centers
from ...core.loss import classification_loss, regression_loss, ssd_loss
from ...core.matching import IOU_THRESHOLD, match_boxes
from .cases import LESSON_ANCHORS, Case, CodeExercise, Slip, anchor_set, random_boxes, seeded

__all__ = ["BCE", "L1", "GRAD", "ANCHOR_TARGETS"]


# ---- 06: one-hot BCE without the background column, divided by C ------------------------------------------------

def _bce_variant(logits: Tensor, target: Tensor, keep_background: bool = False, divide: str = "C",
                 reduction: str = "sum", squash_first: bool = False, objects_only: bool = False) -> Tensor:
    C = logits.shape[1] - 1
    if objects_only:
        logits, target = logits[target != C], target[target != C]
    one_hot = F.one_hot(target, C + 1).to(logits.dtype)
    cols = C + 1 if keep_background else C
    scores = torch.sigmoid(logits) if squash_first else logits
    bce = F.binary_cross_entropy_with_logits(scores[:, :cols], one_hot[:, :cols], reduction=reduction)
    return bce / {"C": C, "C+1": C + 1, "1": 1}[divide]


def _bce_cases() -> list[Case]:
    g = seeded(6)
    names = ("logits", "target")

    def random(A: int, C: int, background: float) -> tuple[Tensor, Tensor]:
        logits = torch.randn(A, C + 1, generator=g) * 2
        target = torch.randint(0, C, (A,), generator=g)
        target[torch.rand(A, generator=g) < background] = C
        return logits, target
    return [Case("5 boxes, 3 classes plus background", names, random(5, 3, 0.5)),
            Case("an image whose boxes are all background", names, (torch.randn(4, 5, generator=g), torch.full((4,), 4)),
                 "a background box has no 1 in its one-hot row once the background column is cut off"),
            Case("every box an object", names, random(3, 2, 0.0)),
            Case("the lesson's 20 classes", names, random(12, 20, 0.7))]


BCE = CodeExercise(
    "my_bce(logits, target)", "one number (a 0-dimensional tensor or a float)", ("the loss",),
    _bce_cases, lambda logits, target: classification_loss(logits[None], target[None])[0],
    {"background": Slip("You kept the background column: cut it off (one_hot[:, :C] and logits[:, :C]), so a background "
                        "box is scored as 'no' to every class", lambda *a: _bce_variant(*a, keep_background=True)),
     "no_C": Slip("Not divided by C: the lesson's BCE_Loss divides the sum by the number of classes",
                  lambda *a: _bce_variant(*a, divide="1")),
     "C+1": Slip("Divided by C + 1: divide by the number of classes C, without background",
                 lambda *a: _bce_variant(*a, divide="C+1")),
     "mean": Slip("Looks like a mean: the lesson sums the binary cross-entropy over boxes and classes, then divides by C",
                  lambda *a: _bce_variant(*a, reduction="mean", divide="1")),
     "objects_only": Slip("You scored only the boxes with an object: background boxes count too, each scored as 'no' "
                          "to every class", lambda *a: _bce_variant(*a, objects_only=True)),
     "softmax": Slip("Looks like softmax cross-entropy (F.cross_entropy): the lesson scores each class on its own, "
                     "one binary cross-entropy per class, without the background column",
                     lambda logits, target: F.cross_entropy(logits, target)),
     "sigmoid_twice": Slip("Looks like sigmoid applied twice: binary_cross_entropy_with_logits takes the raw logits "
                           "and applies the sigmoid itself", lambda *a: _bce_variant(*a, squash_first=True))},
    "one_hot = F.one_hot(target, C + 1)[:, :C]; binary_cross_entropy_with_logits(logits[:, :C], one_hot, "
    "reduction='sum') / C",
    "classification_loss does this for a batch, without building the one-hot matrix", kinds=("number",))


# ---- 07: L1 of the positives, both reductions -------------------------------------------------------------------

def _l1_right(pred: Tensor, target: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    return tuple(regression_loss(pred[None], target[None], positive[None], r)[0] for r in ("mean", "sum"))  # type: ignore


def _l1_variant(pred: Tensor, target: Tensor, positive: Tensor, mask: bool = True, error: str = "abs",
                per_box: bool = True, swap: bool = False, over_all: bool = False) -> tuple[Tensor, Tensor]:
    err = {"abs": (pred - target).abs(), "square": (pred - target) ** 2,
           "smooth": F.smooth_l1_loss(pred, target, reduction="none")}[error]
    rows = err[positive] if mask else err
    n = max(err.shape[0] if over_all else rows.shape[0], 1)
    mean, total = rows.sum() / (4 * n), rows.sum() / (4 if per_box else 1)
    return (total, mean) if swap else (mean, total)


def _l1_cases(empty_hint: str = "with no positives both losses are 0 (divide by max(n, 1))") -> list[Case]:
    g = seeded(7)
    names = ("pred", "target", "positive")

    def random(A: int, p: float) -> tuple[Tensor, Tensor, Tensor]:
        return random_boxes(A, g), random_boxes(A, g), torch.rand(A, generator=g) < p
    one = random(5, 0.0)
    one[2][3] = True
    return [Case("6 boxes, some positive", names, random(6, 0.5)), Case("one positive box", names, one),
            Case("every box positive", names, random(3, 2.0)),
            Case("an image without positives", names, random(4, -1.0), empty_hint)]


L1 = CodeExercise(
    "my_l1(pred, target, positive)", "two numbers: (the lesson's mean, the article's sum)", ("mean", "sum"),
    _l1_cases, _l1_right,
    {"swap": Slip("Your two numbers are the other way round: return (mean, sum)", lambda *a: _l1_variant(*a, swap=True)),
     "all": Slip("You scored every box: only the positives (pred[positive]) have a box to be compared with",
                 lambda *a: _l1_variant(*a, mask=False)),
     "no_4": Slip("Your sum adds absolute errors; the article sums each positive's MAE, the mean of its 4 errors",
                  lambda *a: _l1_variant(*a, per_box=False)),
     "square": Slip("Looks like squared errors: L1 is the absolute difference, (pred - target).abs()",
                    lambda *a: _l1_variant(*a, error="square")),
     "smooth": Slip("Looks like smooth L1 (Huber, F.smooth_l1_loss): the lesson's L1 is the plain absolute difference",
                    lambda *a: _l1_variant(*a, error="smooth")),
     "over_all": Slip("Your mean divides by every box: it runs over the positives' corners only, 4 n of them",
                      lambda *a: _l1_variant(*a, over_all=True))},
    "err = (pred - target).abs()[positive], (n, 4); mean = err.sum() / (4 n), sum = err.sum() / 4",
    "regression_loss does this for a batch; the sum is n times the mean", kinds=("number", "number"))


# ---- 08: one gradient by hand ------------------------------------------------------------------------------------

def _grad_right(pred: Tensor, target: Tensor, positive: Tensor) -> Tensor:
    pred = pred.clone().requires_grad_(True)
    regression_loss(pred[None], target[None], positive[None], "mean")[0].backward()
    return pred.grad


def _grad_variant(pred: Tensor, target: Tensor, positive: Tensor, sign: float = 1.0, per: str = "4n",
                  mask: bool = True, square: bool = False) -> Tensor:
    n = max(int(positive.sum()), 1)
    slope = 2 * (pred - target) if square else torch.sign(pred - target)
    g = sign * slope / {"4n": 4 * n, "4": 4, "n": n, "4A": 4 * pred.shape[0]}[per]
    return g * positive[:, None] if mask else g


GRAD = CodeExercise(
    "my_grad(pred, target, positive)", "one (A, 4) tensor, d loss / d pred", ("the gradient",),
    lambda: _l1_cases("with no positives the loss is 0 and so is its gradient (divide by max(n, 1))"), _grad_right,
    {"sign": Slip("Your gradient points the wrong way: d|p - g|/dp is sign(p - g), +1 where the prediction is too large",
                  lambda *a: _grad_variant(*a, sign=-1.0)),
     "sum": Slip("That is the gradient of the article's sum (1/4 per corner): the lesson's mean divides by 4 n",
                 lambda *a: _grad_variant(*a, per="4")),
     "no_4": Slip("Divided by n only: the mean runs over the 4 corners of n positives, so each gets 1 / (4 n)",
                  lambda *a: _grad_variant(*a, per="n")),
     "all": Slip("Boxes that are not positive are not in the loss: their gradient is 0",
                 lambda *a: _grad_variant(*a, mask=False)),
     "over_all": Slip("Divided by every box: the mean runs over the positives' corners only, so each gets 1 / (4 n)",
                      lambda *a: _grad_variant(*a, per="4A")),
     "square": Slip("That is the gradient of a squared error, which grows with the error: L1's has the same size "
                    "everywhere, only its sign changes", lambda *a: _grad_variant(*a, square=True))},
    "d mean|p - g| / dp = sign(p - g) / (4 n) on the positives' corners, 0 elsewhere",
    "autograd finds the same numbers: .backward() on the loss", by_hand=True)


# ---- 11: the targets of matching against anchors -----------------------------------------------------------------

BACKGROUND_ID = 20


def _targets_right(anchor_boxes: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> Tensor:
    """The library's targets, matching on ``anchor_boxes`` (whatever anchor set the case gives)."""
    A = anchor_boxes.shape[0]
    anchors = anchor_set(corners_to_centers(anchor_boxes.double()), torch.ones(A))  # the cell's side plays no part
    zeros = torch.zeros(1, A, BACKGROUND_ID + 1, dtype=torch.float64)
    res = ssd_loss(zeros, torch.zeros(1, A, 4, dtype=torch.float64), gt_boxes[None].double(), gt_labels[None], anchors,
                   match_on="anchors")
    return res.target_labels[0]


def _targets_variant(anchor_boxes: Tensor, gt_boxes: Tensor, gt_labels: Tensor, background: int | None = BACKGROUND_ID,
                     forced: bool = True, threshold: float = IOU_THRESHOLD, ge: bool = False,
                     give: str = "labels") -> Tensor:
    if gt_boxes.shape[0] == 0:
        return torch.full((anchor_boxes.shape[0],), BACKGROUND_ID if background is None else background)
    ious = box_iou(anchor_boxes.double(), gt_boxes.double())
    m = match_boxes(ious[None], torch.ones(1, gt_boxes.shape[0], dtype=torch.bool), threshold)
    gt_idx, positive = m.gt_idx[0], m.positive[0]
    if not forced:
        best, gt_idx = ious.max(dim=1)
        positive = best > threshold
    if ge:
        positive = positive | (m.gt_overlap[0] >= threshold)
    labels = gt_labels[gt_idx] if give == "labels" else gt_idx
    return labels if background is None else torch.where(positive, labels, background)


#: Four anchor boxes in sixteenths of the image, so that every IoU is exact in any order of arithmetic: anchor box 0
#: overlaps the first object by exactly 0.4 (0.125 / 0.3125), and anchor box 1 is that object's own box.
EXACT_ANCHORS = torch.tensor([[0.0, 0.0, 0.5, 0.625], [0.0, 0.0, 0.5, 0.25], [0.5, 0.5, 1.0, 1.0], [0.25, 0.25, 0.75, 0.75]],
                             dtype=torch.float64)


def _targets_cases() -> list[Case]:
    g = seeded(11)
    names = ("anchor_boxes", "gt_boxes", "gt_labels")
    corners = LESSON_ANCHORS.corners.clone()
    other = make_anchors(AnchorSpec(grids=(3, 1), zooms=(0.8, 1.3), ratios=((1.0, 1.0), (2.0, 1.0))), dtype=torch.float64)
    not_lessons = "these are not the lesson's 189 anchor boxes: match on the anchor_boxes passed in"
    return [Case("three random objects", names, (corners, random_boxes(3, g), torch.randint(0, 20, (3,), generator=g))),
            Case("a small object at the image's edge and a large one", names,
                 (corners, torch.tensor([[0.0, 0.9, 0.08, 1.0], [0.1, 0.1, 0.95, 0.9]], dtype=torch.float64),
                  torch.tensor([14, 11]))),
            Case("an image without objects", names, (corners, torch.zeros(0, 4, dtype=torch.float64),
                                                     torch.zeros(0, dtype=torch.int64)),
                 "with no objects every anchor box is background (20)"),
            Case("an anchor box overlapping an object by exactly 0.4", names,
                 (EXACT_ANCHORS.clone(), EXACT_ANCHORS[[1, 2]].clone(), torch.tensor([7, 3])),
                 "an anchor box is positive when its overlap is above 0.4, not equal to it"),
            Case("another anchor set: 3x3 and 1x1 grids, 40 anchor boxes", names,
                 (other.corners.clone(), random_boxes(3, g).double(), torch.randint(0, 20, (3,), generator=g)),
                 not_lessons)]


ANCHOR_TARGETS = CodeExercise(
    "my_anchor_targets(anchor_boxes, gt_boxes, gt_labels)", "one (A,) integer tensor of class ids",
    ("target classes",), _targets_cases, _targets_right,
    {"background": Slip("Every box kept its object's class: boxes whose overlap is not above 0.4 (and not claimed) "
                        "become background, class 20", lambda *a: _targets_variant(*a, background=None)),
     "background_0": Slip("Your background is 0, which is a class (aeroplane): background is the last id, 20",
                          lambda *a: _targets_variant(*a, background=0)),
     "no_forced": Slip("The forced matches are missing: each object claims the anchor box it overlaps most, "
                       "which is then positive whatever its IoU", lambda *a: _targets_variant(*a, forced=False)),
     "threshold": Slip("Your threshold is 0.5: the lesson's is 0.4", lambda *a: _targets_variant(*a, threshold=0.5)),
     "ge": Slip("Looks like >= where the lesson has >: an anchor box whose overlap is exactly 0.4 stays background",
                lambda *a: _targets_variant(*a, ge=True)),
     "gt_idx": Slip("Those look like the objects' indices (gt_idx): each anchor box's target is its object's class, "
                    "gt_labels[gt_idx]", lambda *a: _targets_variant(*a, give="gt_idx")),
     "lesson_anchors": Slip("You matched on the lesson's 189 anchor boxes: match on the anchor_boxes passed in, whatever "
                            "their number", lambda a, *rest: _targets_variant(LESSON_ANCHORS.corners, *rest))},
    "ious = box_iou(anchor_boxes, gt_boxes) (A, G), then notebook 05's matching, then gt_labels[gt_idx] where positive, "
    "20 elsewhere", "ssd_loss(..., match_on='anchors') builds the same targets", kinds=("int",))
