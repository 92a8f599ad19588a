"""The parts every code exercise is made of: a case (one call of the learner's function), a slip
(a likely mistake, as the answer it would give and what to say about it), and the exercise itself;
with the seeded random boxes and the lesson's anchors that the cases are drawn from.

Boxes are ``(y0, x0, y1, x1)`` fractions of the image; anchors are also ``(cy, cx, h, w)``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

from ...core.anchors import Anchors, AnchorSpec, make_anchors
from ...core.boxes import centers_to_corners

__all__ = ["Case", "Slip", "CodeExercise", "LESSON_ANCHORS", "seeded", "random_boxes", "anchor_set"]


class Case(NamedTuple):
    """One call of the learner's function: ``fn(*args)``; ``names`` name the arguments in messages."""

    label: str
    names: tuple[str, ...]
    args: tuple[Any, ...]
    hint: str = ""  # said when the learner's function fails on this case

    def clone_args(self) -> tuple[Any, ...]:
        """Fresh copies, so a function that writes into its inputs cannot change the next call's."""
        return tuple(a.clone() if isinstance(a, Tensor) else a for a in self.args)

    def describe(self) -> str:
        def one(n: str, a: Any) -> str:
            if isinstance(a, Tensor):
                vals = " ".join(str((a.double() * 1e4).round().div(1e4).tolist() if a.is_floating_point() else a.tolist()).split())
                return f"{n} = {vals}" if a.numel() <= 24 else f"{n} of shape {tuple(a.shape)}"
            return f"{n} = {a!r}"
        return ", ".join(one(n, a) for n, a in zip(self.names, self.args))


class Slip(NamedTuple):
    """A likely mistake: ``wrong(*args)`` is what it gives, ``hint`` what to say about it."""

    hint: str
    wrong: Callable[..., Any]


class CodeExercise(NamedTuple):
    """One "your turn" exercise: what the learner writes, the cases it runs on, the library's answer
    (``right``) and the slips the checker names."""

    signature: str
    returns: str
    outputs: tuple[str, ...]  # names of the returned values, in order
    cases: Callable[[], list[Case]]
    right: Callable[..., Any]
    slips: dict[str, Slip]
    hint: str
    why: str
    kinds: tuple[str, ...] = ("float",)  # per output: "float", "int", "bool" tensor, or "number" (see results.KINDS)
    by_hand: bool = False  # the exercise forbids autograd: the learner's function runs without it


def seeded(seed: int) -> torch.Generator:
    """A fresh random-number generator at ``seed``: each exercise's cases are the same on every run."""
    return torch.Generator().manual_seed(seed)


def random_boxes(n: int, g: torch.Generator) -> Tensor:
    """``(n, 4)`` boxes inside the image, at least 0.05 on a side."""
    lo = torch.rand(n, 2, generator=g) * 0.8
    size = 0.05 + torch.rand(n, 2, generator=g) * (1 - lo - 0.05)
    return torch.cat([lo, lo + size], dim=1)


#: The lesson's 189 anchors in float64, as the decode and matching exercises use them.
LESSON_ANCHORS = make_anchors(dtype=torch.float64)


def anchor_set(centers_hw: Tensor, cell: Tensor) -> Anchors:
    """Any ``(A, 4)`` anchor boxes ``(cy, cx, h, w)`` with their cells' sides ``(A,)``, as the library's
    :class:`Anchors` (float64): the checker's answers then hold for anchor sets other than the lesson's."""
    centers = centers_hw.double()
    index = torch.zeros(centers.shape[0], dtype=torch.int64)
    return Anchors(AnchorSpec(), centers, centers_to_corners(centers), cell.double().reshape(-1, 1),
                   index, index, index, index, [0])
