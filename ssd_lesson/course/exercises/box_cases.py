"""The code exercises of notebooks 02 to 05 (anchor boxes, decoding, IoU, matching): their cases,
the library's answer, and the slips they catch.

Each :class:`~ssd_lesson.course.exercises.cases.CodeExercise` holds seeded random cases plus the
edge cases that catch real mistakes (a box that overlaps nothing, two objects wanting the same box, an IoU of exactly 0.4, boxes at the
image edge, an image without objects), the library function that gives the right answer, and the
slips a learner makes, each as the answer that slip would give and its own hint.
Boxes are ``(y0, x0, y1, x1)`` fractions of the image; anchors are also ``(cy, cx, h, w)``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ...core.anchors import AnchorSpec, activations_to_boxes, make_anchors
from ...core.boxes import box_iou, corners_to_centers
from ...core.matching import FORCED_OVERLAP, IOU_THRESHOLD, match_boxes
from .cases import LESSON_ANCHORS, Case, CodeExercise, Slip, anchor_set, random_boxes, seeded

__all__ = ["ANCHORS", "DECODE", "IOU", "MATCH"]

#: The side of the model's input, in pixels (the slip "pixels for fractions").
IMAGE_SIZE = 224


# ---- 02: the anchor boxes of one grid --------------------------------------------------------------------------

LESSON_ZOOMS, LESSON_RATIOS = (0.7, 1.0, 1.3), ((1.0, 1.0), (1.0, 0.5), (0.5, 1.0))


def _anchor_boxes(grid: int, zooms: tuple, ratios: tuple, order: str = "zoom outer", swap: bool = False) -> Tensor:
    scales = [(z * rh, z * rw) for z in zooms for rh, rw in ratios] if order == "zoom outer" else \
        [(z * rh, z * rw) for rh, rw in ratios for z in zooms]
    scales = [(w, h) for h, w in scales] if swap else scales
    return make_anchors(AnchorSpec(grids=(grid,), grid_scales=(tuple(scales),)), dtype=torch.float64).corners


def _anchor_cases() -> list[Case]:
    g = seeded(2)
    names = ("grid", "zooms", "ratios")
    cases = [Case("the lesson's 4x4 grid", names, (4, LESSON_ZOOMS, LESSON_RATIOS)),
             Case("the 1x1 grid: boxes bigger than the image, past its edges", names, (1, LESSON_ZOOMS, LESSON_RATIOS)),
             Case("one tall anchor box per cell", names, (3, (1.0,), ((1.0, 0.5),)))]
    for _ in range(2):
        grid = int(torch.randint(2, 6, (1,), generator=g))
        zooms = tuple(round(float(z), 2) for z in 0.5 + torch.rand(2, generator=g))
        cases.append(Case(f"a random {grid}x{grid} grid", names, (grid, zooms, ((1.0, 1.0), (0.5, 1.0)))))
    return cases


def _anchors_right(grid: int, zooms: tuple, ratios: tuple) -> Tensor:
    return make_anchors(AnchorSpec(grids=(grid,), zooms=zooms, ratios=ratios), dtype=torch.float64).corners


ANCHORS = CodeExercise(
    "my_anchor_boxes(grid, zooms, ratios)", "one (grid*grid*k, 4) tensor of corners", ("the anchor boxes",),
    _anchor_cases, _anchors_right,
    {"yx": Slip("Looks like (x, y) where the lesson has (y, x): each box is (y0, x0, y1, x1), rows first",
                lambda *a: _anchors_right(*a)[:, [1, 0, 3, 2]]),
     "pixels": Slip("Looks like pixels: the boxes are fractions of the image (0 to 1), not pixels of the 224x224 input",
                    lambda *a: _anchors_right(*a) * IMAGE_SIZE),
     "corner": Slip("Your centres sit on the cells' top-left corners: a cell's centre is (row + 0.5) / grid",
                    lambda grid, *a: _anchors_right(grid, *a) - 0.5 / grid),
     "centres": Slip("Looks like (cy, cx, h, w): the exercise asks for corners, (cy - h/2, cx - w/2, cy + h/2, cx + w/2)",
                     lambda *a: corners_to_centers(_anchors_right(*a))),
     "ratio": Slip("Heights and widths are swapped: a ratio (rh, rw) scales the height by rh and the width by rw",
                   lambda *a: _anchor_boxes(*a, swap=True)),
     "order": Slip("Right boxes, wrong order: in each cell the zoom is the outer loop and the ratio the inner one",
                   lambda *a: _anchor_boxes(*a, order="ratio outer"))},
    "cells row by row; in each cell one box per (zoom, ratio), zoom outer; a box's height is zoom x rh / grid",
    "make_anchors lays out the model's outputs the same way")


# ---- 03: one anchor's activations to its predicted box --------------------------------------------------------


def _decode(actn: Tensor, anchor: Tensor, cell: float, squash: Callable[[Tensor], Tensor] = torch.tanh,
            move: float = 0.5, grow: float = 0.5) -> Tensor:
    t = squash(actn)
    cy, cx = anchor[0] + t[0] * move * cell, anchor[1] + t[1] * move * cell
    h, w = anchor[2] * (1 + t[2] * grow), anchor[3] * (1 + t[3] * grow)
    return torch.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])


def _decode_right(actn: Tensor, anchor: Tensor, cell: float) -> Tensor:
    """The library's decoding of ``actn`` for ``anchor``, any anchor box (not only the lesson's)."""
    return activations_to_boxes(actn.double()[None], anchor_set(anchor[None], torch.tensor([float(cell)])))[0]


def _decode_cases() -> list[Case]:
    g = seeded(3)
    names = ("actn", "anchor", "cell")

    def case(label: str, index: int, actn: Tensor) -> Case:
        return Case(f"{label} (anchor box {index})", names,
                    (actn.double(), LESSON_ANCHORS.centers_hw[index].clone(), float(LESSON_ANCHORS.grid_sizes[index, 0])))
    cases = [case("random activations", int(torch.randint(0, 189, (1,), generator=g)), torch.randn(4, generator=g))
             for _ in range(3)]
    cases += [case("activations all 0: the anchor box itself", 99, torch.zeros(4)),
              case("large activations at the image's top-left edge", 0, torch.tensor([3.0, -4.0, 5.0, -2.5])),
              case("the 1x1 grid's box, bigger than the image", 188, torch.tensor([0.5, -0.8, 1.2, 0.3]))]
    cases.append(Case("an anchor box of an 8x8 grid, not one of the lesson's", names,
                      (torch.tensor([0.3, -1.1, 0.8, -0.4], dtype=torch.float64),
                       torch.tensor([0.4, 0.7, 0.1, 0.2], dtype=torch.float64), 0.125),
                      "use the anchor and cell passed in: this anchor box's grid has cells of side 0.125"))
    return cases


DECODE = CodeExercise(
    "my_decode(actn, anchor, cell)", "one (4,) tensor (y0, x0, y1, x1)", ("the predicted box",),
    _decode_cases, _decode_right,
    {"tanh": Slip("Looks like tanh is missing: squash each activation with torch.tanh first, so the box can move "
                  "at most half a cell and grow at most 1.5 times", lambda *a: _decode(*a, squash=lambda t: t)),
     "whole": Slip("Your centre moves up to a whole cell: the lesson moves it by tanh(dy) / 2 cells, at most half a cell",
                   lambda *a: _decode(*a, move=1.0)),
     "grow": Slip("Your size changes by (1 + tanh) times: the lesson's factor is (1 + tanh / 2), from 0.5 to 1.5",
                  lambda *a: _decode(*a, grow=1.0)),
     "yx": Slip("Looks like (x, y) where the lesson has (y, x): activations are (dy, dx, dh, dw), boxes "
                "(y0, x0, y1, x1)", lambda *a: _decode_right(*a)[[1, 0, 3, 2]]),
     "pixels": Slip("Looks like pixels: the box is a fraction of the image (0 to 1), not pixels of the 224x224 input",
                    lambda *a: _decode_right(*a) * IMAGE_SIZE),
     "centres": Slip("Looks like (cy, cx, h, w): the exercise asks for corners, (cy - h/2, cx - w/2, cy + h/2, cx + w/2)",
                     lambda *a: corners_to_centers(_decode_right(*a)))},
    "t = tanh(actn); centre = anchor centre + t[:2] / 2 x cell; size = anchor size x (1 + t[2:] / 2); then corners",
    "activations_to_boxes does this for all 189 boxes at once")


# ---- 04: the IoU of one box with several ------------------------------------------------------------------------

def _iou_variant(box: Tensor, others: Tensor, clamp: str = "sides", union: str = "union", swap_ends: bool = False) -> Tensor:
    lo, hi = (torch.minimum, torch.maximum) if swap_ends else (torch.maximum, torch.minimum)
    h = hi(box[2], others[:, 2]) - lo(box[0], others[:, 0])
    w = hi(box[3], others[:, 3]) - lo(box[1], others[:, 1])
    inter = {"sides": h.clamp_min(0) * w.clamp_min(0), "none": h * w, "product": (h * w).clamp_min(0)}[clamp]
    area_a = (box[2] - box[0]) * (box[3] - box[1])
    area_b = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    denominator = {"union": area_a + area_b - inter, "sum": area_a + area_b, "box": area_a + 0 * area_b,
                   "others": area_b, "none": torch.ones_like(area_b)}[union]
    return inter / denominator


def _iou_cases() -> list[Case]:
    g = seeded(4)
    names = ("box", "others")
    cases = [Case("random boxes", names, (random_boxes(1, g)[0], random_boxes(5, g))) for _ in range(2)]
    far = torch.tensor([[0.6, 0.6, 0.9, 0.9], [0.0, 0.5, 0.3, 1.0], [0.7, 0.0, 1.0, 0.2]])
    cases += [Case("a box that overlaps nothing", names, (torch.tensor([0.05, 0.05, 0.3, 0.35]), far),
                   "intersection height and width are 0 when the boxes do not meet (clamp at 0)"),
              Case("boxes at the image edge, one of them the box itself", names,
                   (torch.tensor([0.0, 0.0, 0.5, 1.0]), torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0],
                                                                      [0.25, 0.5, 1.0, 1.0], [0.0, 0.9, 0.1, 1.0]]))),
              Case("a box inside another", names, (torch.tensor([0.2, 0.2, 0.8, 0.8]),
                                                   torch.tensor([[0.4, 0.4, 0.6, 0.5], [0.1, 0.1, 0.9, 0.9]]))),
              Case("one box and 40 others", names, (random_boxes(1, g)[0], random_boxes(40, g)))]
    return cases


IOU = CodeExercise(
    "my_iou(box, others)", "one (N,) tensor, an IoU per row of others", ("IoU",),
    _iou_cases, lambda box, others: box_iou(box[None], others)[0],
    {"clamp": Slip("Boxes that do not meet get an IoU other than 0: clamp the overlap's height and width at 0 "
                   "(two negative sides multiply into a positive area)", lambda *a: _iou_variant(*a, clamp="none")),
     "clamp_product": Slip("Boxes apart in both directions get an IoU above 0: clamp the height and the width each at 0, "
                           "before multiplying (two negative sides make a positive product)",
                           lambda *a: _iou_variant(*a, clamp="product")),
     "ends": Slip("Your overlap runs from the smaller start to the larger end, which spans both boxes: it runs from the "
                  "larger of the two starts to the smaller of the two ends", lambda *a: _iou_variant(*a, swap_ends=True)),
     "intersection": Slip("That is the overlap's area: the IoU divides it by the union of the two boxes",
                          lambda *a: _iou_variant(*a, union="none")),
     "sum": Slip("Your union counts the shared part twice: union = area A + area B - intersection",
                 lambda *a: _iou_variant(*a, union="sum")),
     "box": Slip("You divide by the first box's area: IoU divides by the union of both boxes",
                 lambda *a: _iou_variant(*a, union="box")),
     "others": Slip("You divide by the other box's area: IoU divides by the union of both boxes",
                    lambda *a: _iou_variant(*a, union="others"))},
    "overlap height = min(y1) - max(y0), width likewise, each clamped at 0; IoU = overlap area / (area A + area B - overlap)",
    "box_iou does this for every pair of boxes at once")


# ---- 05: the matching of one image ------------------------------------------------------------------------------

def _match_right(ious: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    m = match_boxes(ious[None], torch.ones(1, ious.shape[1], dtype=torch.bool))
    return m.gt_idx[0], m.gt_overlap[0], m.positive[0]


def _match_variant(ious: Tensor, forced: float | None = FORCED_OVERLAP, claim_idx: bool = True, ge: bool = False,
                   threshold_first: bool = False, threshold: float = IOU_THRESHOLD,
                   first_claim_wins: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    A, G = ious.shape
    if G == 0:
        return _match_right(ious)
    gt_overlap, gt_idx = ious.max(dim=1)
    positive = gt_overlap >= threshold if ge else gt_overlap > threshold
    if forced is not None:
        claims = list(enumerate(ious.argmax(dim=0).tolist()))
        for j, box in reversed(claims) if first_claim_wins else claims:
            gt_overlap[box] = forced
            if claim_idx:
                gt_idx[box] = j
    if not threshold_first:
        positive = gt_overlap >= threshold if ge else gt_overlap > threshold
    return gt_idx, gt_overlap, positive


def _match_cases() -> list[Case]:
    g = seeded(5)
    names = ("ious",)
    random = torch.rand(8, 3, generator=g) * 0.7
    random[[2, 5]] = 0
    same = torch.tensor([[0.1, 0.0], [0.6, 0.5], [0.3, 0.05], [0.0, 0.2]])  # both objects' best box is box 1
    edge = torch.tensor([[0.4, 0.1], [0.2, 0.7], [0.45, 0.0], [0.0, 0.0]])  # box 0's overlap is exactly 0.4
    weak = torch.tensor([[0.05, 0.0, 0.0], [0.1, 0.3, 0.0], [0.0, 0.2, 0.0], [0.0, 0.25, 0.0]])  # object 2 meets nothing
    # Boxes 1 to 3 are no object's best: their overlaps alone decide, on either side of the threshold.
    near = torch.tensor([[0.9, 0.0], [0.38, 0.1], [0.0, 0.48], [0.42, 0.2], [0.1, 0.3], [0.0, 0.95]])
    return [Case("random overlaps, boxes 2 and 5 overlapping nothing", names, (random,)),
            Case("two objects want the same box", names, (same,),
                 "both objects claim box 1; the later claim wins, as in a loop over the objects"),
            Case("an IoU of exactly 0.4", names, (edge,),
                 "a box that no object claims is positive when its overlap is above 0.4, the lesson's threshold; "
                 "exactly 0.4 is not above it"),
            Case("weak overlaps; object 2 overlaps no box", names, (weak,),
                 "an object that overlaps nothing still claims a box: the first one (argmax of a column of 0s)"),
            Case("an image without objects", names, (torch.zeros(4, 0),),
                 "with no objects every box is background: gt_idx 0, gt_overlap 0, positive False; "
                 "ious.max(dim=1) fails on an empty dimension, so handle ious.shape[1] == 0 first"),
            Case("unforced overlaps of 0.38, 0.42 and 0.48", names, (near,),
                 "a box that no object claims is positive when its overlap is above 0.4, the lesson's threshold"),
            Case("30 boxes and 6 objects", names, (torch.rand(30, 6, generator=g) * 0.6,))]


MATCH = CodeExercise(
    "my_match(ious)", "three (A,) tensors: gt_idx, gt_overlap, positive", ("gt_idx", "gt_overlap", "positive"),
    _match_cases, _match_right,
    {"ge": Slip("Looks like >= where the lesson has >: a box whose overlap is exactly 0.4 stays background",
                lambda ious: _match_variant(ious, ge=True)),
     "no_forced": Slip("The forced matches are missing: each object (column) claims the box it overlaps most "
                       "(argmax over the boxes), and that box's gt_overlap becomes 1.99", lambda ious: _match_variant(ious, forced=None)),
     "forced_1": Slip("Your forced matches get overlap 1: the lesson writes 1.99 (FORCED_OVERLAP), above any real IoU, "
                      "so a later step can tell them apart", lambda ious: _match_variant(ious, forced=1.0)),
     "claim_idx": Slip("A claimed box gets overlap 1.99 but keeps its own gt_idx: set its gt_idx to the object that "
                       "claimed it, too", lambda ious: _match_variant(ious, claim_idx=False)),
     "threshold_first": Slip("You apply the threshold before the forced matches: a claimed box is positive whatever its "
                             "IoU, so compare gt_overlap with 0.4 after writing the 1.99s",
                             lambda ious: _match_variant(ious, threshold_first=True)),
     "threshold_0.5": Slip("Looks like a threshold of 0.5, the SSD paper's: the lesson's is 0.4",
                           lambda ious: _match_variant(ious, threshold=0.5)),
     "first_claim": Slip("When two objects claim the same box, yours lets the first keep it: in the lesson's loop over "
                         "the objects the later claim overwrites it", lambda ious: _match_variant(ious, first_claim_wins=True))},
    "gt_overlap, gt_idx = ious.max(dim=1); then for each object j, the box ious[:, j].argmax() gets gt_overlap 1.99 and "
    "gt_idx j; positive = gt_overlap > 0.4",
    "match_boxes does the same for a whole batch, without a loop over objects", kinds=("int", "float", "bool"))
