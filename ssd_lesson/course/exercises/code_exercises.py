"""The checker of the "your turn" cells: the learner writes one step of the loss as a function.

``check_code(name, fn)`` runs ``fn`` on the exercise's seeded random cases and edge cases
(:mod:`.box_cases`, :mod:`.loss_cases`, :mod:`.mining_cases`), each call on fresh copies of the inputs and within a time limit
(:mod:`.learner_call`), compares each result with the library's on the learner's device (:mod:`.results`),
and prints one line:

- *not answered yet* when ``fn`` is the starting stub (returns None, or raises ``NotImplementedError``, on
  every case); a function that returns None on some cases only is told which;
- *Right* when every case agrees, in values and in kind (an integer ``gt_idx``, a bool ``positive``, ...);
- a function that does not return in time, uses autograd where the exercise says "by hand", changes its
  inputs in place, or returns the wrong kind of thing is told so;
- the hint of a known slip (``>=`` for ``>``, tanh forgotten, ...) when every case agrees with that slip
  and with no other;
- otherwise the first case that differs: its inputs, the shape expected, and the learner's value (for a
  large tensor, its first differing element or row), never the expected value.

A learner's function that raises is reported in one line with a hint, never a traceback.
Boxes are ``(y0, x0, y1, x1)`` fractions of the image throughout.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from torch import Tensor

from .box_cases import ANCHORS, DECODE, IOU, MATCH
from .cases import Case, CodeExercise
from . import learner_call
from .loss_cases import ANCHOR_TARGETS, BCE, GRAD, L1
from .mining_cases import MINE
from .results import Unreadable, agree, describe_difference, read_outputs, show

__all__ = ["check_code", "run_cases", "CODE_EXERCISES"]

#: The code exercises by name, in the order of the notebooks.
CODE_EXERCISES: dict[str, CodeExercise] = {
    "02.anchor_boxes": ANCHORS, "03.decode_box": DECODE, "04.iou_one_box": IOU, "05.match": MATCH, "06.bce": BCE,
    "07.l1": L1, "08.grad": GRAD, "11.anchor_targets": ANCHOR_TARGETS, "12.mine": MINE,
}

def _reference(ex: CodeExercise, case: Case, fn: Callable[..., Any]) -> Optional[tuple[Tensor, ...]]:
    """The outputs of ``fn`` (the library's answer, or a slip's) on ``case``; None if a slip cannot be read."""
    out = read_outputs(fn(*case.clone_args()), ex.outputs, ex.kinds)
    return None if isinstance(out, Unreadable) else out


def _input_device(case: Case) -> str:
    return next((str(a.device) for a in case.args if isinstance(a, Tensor)), "cpu")


def _explaining_slip(ex: CodeExercise, results: list[tuple[Case, tuple[Tensor, ...], bool]]) -> Optional[str]:
    """The one slip that gives the learner's answer on every case the learner got wrong (``results``: case,
    answer, right or not); None when no slip does, or several do: then naming one could mislead."""
    explaining = []
    for slip_name, slip in ex.slips.items():
        for case, yours, right in results:
            if right:
                continue
            slip_out = _reference(ex, case, slip.wrong)
            if slip_out is None or not agree(yours, slip_out):
                break
        else:
            explaining.append(slip_name)
    return explaining[0] if len(explaining) == 1 else None


def run_cases(name: str, fn: Callable[..., Any], seconds: Optional[float] = None) -> tuple[str, Optional[Case], Any]:
    """Run ``fn`` on every case of exercise ``name``, each call within ``seconds`` (default
    :data:`~.learner_call.TIME_LIMIT_S`).

    Returns ``(verdict, case, detail)``, ``case`` being the first case concerned:

    - ``("right", None, None)``; ``("stub", None, None)`` (None or ``NotImplementedError`` on every case);
    - ``("timeout", case, still_running)``, ``("autograd", case, None)`` (a "by hand" exercise),
      ``("raised", case, exception)``, ``("changed_input", case, input_name)``;
    - ``("none", case, None)``: None on this case, an answer on others;
    - ``("unreadable", case, message)``: not the outputs asked for (count, type or dtype);
    - ``("device", case, device)``: a result on a device whose values cannot be read;
    - ``("slip", case, slip_name)``: every case agrees with that slip and with no other;
    - ``("differs", case, description)``.
    """
    ex = CODE_EXERCISES[name]
    calls = []
    for case in ex.cases():
        call = learner_call.call_learner(fn, case.args, case.names, by_hand=ex.by_hand, seconds=seconds)
        if call.outcome == "raised" and isinstance(call.value, NotImplementedError):
            call = call._replace(outcome="returned", value=None)
        if call.outcome != "returned":
            return call.outcome, case, call.value
        calls.append((case, call.value))
    unanswered = [case for case, value in calls if value is None]
    if len(unanswered) == len(calls):
        return "stub", None, None
    if unanswered:
        return "none", unanswered[0], None
    results, first_wrong = [], None
    for case, value in calls:
        yours = read_outputs(value, ex.outputs, ex.kinds)
        if isinstance(yours, Unreadable):
            return "unreadable", case, yours.message
        ref = _reference(ex, case, ex.right)
        assert ref is not None, f"{ex.signature}: the library's answer is not {ex.returns}"
        try:
            right = agree(yours, ref)
        except (RuntimeError, NotImplementedError):  # a device whose values cannot be read (meta)
            return "device", case, next(str(y.device) for y in yours if y.device != ref[0].device)
        results.append((case, yours, right))
        if first_wrong is None and not right:
            first_wrong = (case, yours, ref)
    if first_wrong is None:
        return "right", None, None
    slip = _explaining_slip(ex, results)
    if slip is not None:
        return "slip", first_wrong[0], slip
    return "differs", first_wrong[0], describe_difference(ex.outputs, first_wrong[1], first_wrong[2])


def check_code(name: str, fn: Any, seconds: Optional[float] = None) -> bool:
    """Print whether the learner's function ``fn`` does exercise ``name``'s step; return True if right.

    Each call of ``fn`` may take ``seconds`` (default :data:`~.learner_call.TIME_LIMIT_S`)."""
    ex = CODE_EXERCISES[name]
    not_answered = f"{name}: not answered yet. Write {ex.signature} in this cell, returning {ex.returns}, then run it."
    if fn is None:
        print(not_answered)
        return False
    if not callable(fn):
        print(f"{name}: not quite: pass your function itself (check({name!r}, my_function)), not "
              f"{type(fn).__name__} {show(fn)}. Hint: {ex.hint}.")
        return False
    limit = learner_call.TIME_LIMIT_S if seconds is None else seconds
    verdict, case, detail = run_cases(name, fn, limit)
    if verdict == "stub":
        print(not_answered)
        return False
    if verdict == "right":
        print(f"{name}: Right, on all {len(ex.cases())} cases, edge cases included: {ex.why}.")
        return True
    assert case is not None
    where = f"on the case '{case.label}' ({case.describe()})"
    hint = case.hint or ex.hint
    if verdict == "timeout":
        still = (" It may still be running in the background: restart the kernel if the notebook slows down."
                 if detail else " It was stopped, and the notebook can go on.")
        print(f"{name}: your function did not return within {limit:g} s {where}: probably an endless loop "
              f"(a loop whose condition never changes?).{still}")
    elif verdict == "autograd":
        print(f"{name}: not quite: your function asks autograd for the gradient (.backward() or torch.autograd.grad) "
              f"{where}; this exercise asks for it by hand, so the checker runs it with autograd switched off. "
              f"Hint: {ex.hint}.")
    elif verdict == "raised":
        message = " ".join(f"{type(detail).__name__}: {detail}".split())
        message = message if len(message) <= 200 else message[:197] + "..."
        print(f"{name}: your function raised {message} {where}. Hint: {hint}.")
    elif verdict == "changed_input":
        print(f"{name}: not quite: your function changed its input {detail} in place {where}. A caller's tensors must "
              f"stay as they were: compute new tensors (torch.tanh(x), not x.tanh_(); y = x + 1, not x += 1), "
              f"or work on x.clone().")
    elif verdict == "none":
        print(f"{name}: not quite: your function returned None {where}, while it answered other cases: every path "
              f"through it must return {ex.returns} (a missing return?).")
    elif verdict == "unreadable":
        print(f"{name}: not quite: expected {ex.returns}; {detail} {where}. Hint: {ex.hint}.")
    elif verdict == "device":
        print(f"{name}: not quite: your result is on the device '{detail}' {where}, where the checker cannot read its "
              f"values: return it on the inputs' device ({_input_device(case)}).")
    elif verdict == "slip":
        print(f"{name}: not quite, {where}. {ex.slips[detail].hint}.")
    else:
        print(f"{name}: not quite, {where}: {detail}. Hint: {hint}.")
    return False
