"""The checker of the "your turn" cells: the learner writes one step of the loss as a function.

``check_code(name, fn)`` runs ``fn`` on the exercise's seeded random cases and edge cases
(:mod:`.box_cases`, :mod:`.loss_cases`), compares each result with the library's, and prints one message:

- *not answered yet* when ``fn`` is the starting stub (returns None, or raises ``NotImplementedError``);
- *Right* when every case agrees;
- the hint of a known slip (``>=`` for ``>``, tanh forgotten, ...) when every case agrees with that slip;
- otherwise the first case that differs: its inputs, the shape expected, and the learner's value,
  never the expected value.

A learner's function that raises is reported in one line with a hint, never a traceback.
Boxes are ``(y0, x0, y1, x1)`` fractions of the image throughout.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from .box_cases import ANCHORS, DECODE, IOU, MATCH
from .cases import Case, CodeExercise
from .loss_cases import ANCHOR_TARGETS, BCE, GRAD, L1

__all__ = ["check_code", "run_cases", "CODE_EXERCISES"]

#: The code exercises by name, in the order of the notebooks.
CODE_EXERCISES: dict[str, CodeExercise] = {
    "02.anchor_boxes": ANCHORS, "03.decode_box": DECODE, "04.iou_one_box": IOU, "05.match": MATCH, "06.bce": BCE,
    "07.l1": L1, "08.grad": GRAD, "11.anchor_targets": ANCHOR_TARGETS,
}

#: How close a learner's number must be to the library's (float32 arithmetic in another order).
TOLERANCE = 1e-4


def _as_tensors(out: Any, n: int) -> Optional[tuple[Tensor, ...]]:
    """The learner's result as ``n`` float64 tensors, or None if it cannot be read as that."""
    parts = out if n > 1 and isinstance(out, (tuple, list)) else (out,)
    if len(parts) != n:
        return None
    tensors = []
    for p in parts:
        try:
            t = p.detach() if isinstance(p, Tensor) else torch.as_tensor(p)
            tensors.append(t.to(torch.float64))
        except Exception:  # noqa: BLE001 - whatever the learner returned, it is not a tensor: say so, never raise
            return None
    return tuple(tensors)


def _agree(yours: Optional[Sequence[Tensor]], ref: Sequence[Tensor]) -> bool:
    if yours is None:
        return False
    return all(y.shape == r.shape and torch.allclose(y, r.to(torch.float64), atol=TOLERANCE, rtol=TOLERANCE,
                                                     equal_nan=True) for y, r in zip(yours, ref))


def _reference(ex: CodeExercise, case: Case, fn: Callable[..., Any]) -> tuple[Tensor, ...]:
    out = _as_tensors(fn(*case.clone_args()), len(ex.outputs))
    assert out is not None, f"{ex.signature}: the library's answer is not {len(ex.outputs)} tensors"
    return out


def _shape(t: Tensor) -> str:
    return "a number" if t.dim() == 0 else f"shape {tuple(t.shape)}"


def _show(value: Any) -> str:
    """The learner's value on one line, short."""
    if isinstance(value, Tensor):
        value = value.detach()
        text = str(value.tolist()) if value.numel() <= 24 else f"a tensor of shape {tuple(value.shape)}"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _is_stub(fn: Callable[..., Any], case: Case) -> bool:
    try:
        return fn(*case.clone_args()) is None
    except NotImplementedError:
        return True
    except Exception:  # noqa: BLE001 - any other error is the learner's, reported by check_code
        return False


def run_cases(name: str, fn: Callable[..., Any]) -> tuple[str, Optional[Case], Any]:
    """Run ``fn`` on every case of exercise ``name``.

    Returns ``(verdict, case, detail)``: ``("right", None, None)``; ``("stub", None, None)``;
    ``("raised", case, exception)``; ``("unreadable", case, value)`` (not the expected number of tensors);
    ``("slip", case, slip_name)`` (every differing case agrees with that slip); or ``("differs", case, value)``.
    """
    ex = CODE_EXERCISES[name]
    cases = ex.cases()
    if _is_stub(fn, cases[0]):
        return "stub", None, None
    first_wrong: Optional[tuple[Case, Any, Optional[tuple[Tensor, ...]]]] = None
    results = []
    for case in cases:
        try:
            value = fn(*case.clone_args())
        except Exception as e:  # noqa: BLE001 - the learner's error is the message, not a traceback
            return "raised", case, e
        yours = _as_tensors(value, len(ex.outputs))
        ref = _reference(ex, case, ex.right)
        if yours is None:
            return "unreadable", case, value
        results.append((case, yours, ref))
        if first_wrong is None and not _agree(yours, ref):
            first_wrong = (case, value, yours)
    if first_wrong is None:
        return "right", None, None
    # A slip explains the answer when every case the learner got wrong is what that slip gives.
    for slip_name, slip in ex.slips.items():
        if all(_agree(yours, ref) or _agree(yours, _reference(ex, case, slip.wrong)) for case, yours, ref in results):
            return "slip", first_wrong[0], slip_name
    return "differs", first_wrong[0], first_wrong[1]


def _differing(ex: CodeExercise, case: Case, value: Any) -> str:
    """Which output differs, and how, without the expected values."""
    ref = _reference(ex, case, ex.right)
    yours = _as_tensors(value, len(ex.outputs))
    assert yours is not None
    parts = []
    for out_name, y, r, v in zip(ex.outputs, yours, ref, value if len(ex.outputs) > 1 else (value,)):
        if y.shape != r.shape:
            parts.append(f"{out_name} should have {_shape(r)}, yours has {_shape(y)}")
        elif not _agree([y], [r]):
            wrong = (y - r).abs() > TOLERANCE + TOLERANCE * r.abs()
            where = "" if y.dim() == 0 else f" (wrong at {int(wrong.sum())} of {y.numel()} places)"
            parts.append(f"{out_name} ({_shape(r)}) is {_show(v)}{where}")
    return "; ".join(parts)


def check_code(name: str, fn: Any) -> bool:
    """Print whether the learner's function ``fn`` does exercise ``name``'s step; return True if right."""
    ex = CODE_EXERCISES[name]
    if fn is None or (callable(fn) and _is_stub(fn, ex.cases()[0])):
        print(f"{name}: not answered yet. Write {ex.signature} in this cell, returning {ex.returns}, then run it.")
        return False
    if not callable(fn):
        print(f"{name}: not quite: pass your function itself (check({name!r}, my_function)), not "
              f"{type(fn).__name__} {_show(fn)}. Hint: {ex.hint}.")
        return False
    verdict, case, detail = run_cases(name, fn)
    if verdict == "right":
        print(f"{name}: Right, on all {len(ex.cases())} cases, edge cases included: {ex.why}.")
        return True
    assert case is not None
    where = f"on the case '{case.label}' ({case.describe()})"
    if verdict == "raised":
        message = " ".join(f"{type(detail).__name__}: {detail}".split())
        message = message if len(message) <= 200 else message[:197] + "..."
        print(f"{name}: your function raised {message} {where}. Hint: {case.hint or ex.hint}.")
    elif verdict == "unreadable":
        print(f"{name}: not quite: expected {ex.returns}, yours returned {_show(detail)} {where}. Hint: {ex.hint}.")
    elif verdict == "slip":
        print(f"{name}: not quite, {where}. {ex.slips[detail].hint}.")
    else:
        print(f"{name}: not quite, {where}: {_differing(ex, case, detail)}. Hint: {case.hint or ex.hint}.")
    return False
