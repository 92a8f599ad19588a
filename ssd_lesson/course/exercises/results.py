"""Reading a learner's result and comparing it with the library's, for the "your turn" checker.

- :func:`read_outputs` splits the result into the exercise's outputs and checks each one's type and dtype
  (a float ``gt_idx`` or a list for ``positive`` is refused, naming what is expected);
- :func:`wrong_places` compares one output with the library's on the learner's device, counting NaN where a
  number is expected as wrong;
- :func:`describe_difference` says where an output differs, showing only the learner's values.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

__all__ = ["TOLERANCE", "KINDS", "read_outputs", "wrong_places", "agree", "describe_difference", "show", "shape_words",
           "Unreadable"]

#: How close a learner's number must be to the library's (float32 arithmetic in another order).
TOLERANCE = 1e-4

#: What each kind of output must be, as said in messages.
KINDS = {"float": "a floating-point tensor", "int": "an integer tensor (torch.int64)", "bool": "a bool tensor (torch.bool)",
         "number": "a number (a float, or a 0-dimensional tensor)"}

#: Above this many values a tensor is described by its shape and its first differing place, not printed whole.
SHOWN_VALUES = 24


class Unreadable:
    """Why a result cannot be compared: ``message`` is a sentence fragment for the checker's line."""

    def __init__(self, message: str) -> None:
        self.message = message


def _dtype_ok(t: Tensor, kind: str) -> bool:
    if kind == "bool":
        return t.dtype == torch.bool
    if kind == "int":
        return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool
    return t.is_floating_point()


def _type_words(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of {value.dtype}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"{type(value).__module__ + '.' if type(value).__module__ not in ('builtins',) else ''}{type(value).__name__}"


def _one(value: Any, kind: str, name: str) -> Union[Tensor, Unreadable]:
    if kind == "number":
        if isinstance(value, Tensor) and value.dtype != torch.bool and not value.is_complex():
            return value.detach()
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            try:
                return torch.tensor(float(value), dtype=torch.float64)
            except OverflowError:
                pass
        return Unreadable(f"{name} should be {KINDS[kind]}, yours is {_type_words(value)}")
    if not isinstance(value, Tensor):
        return Unreadable(f"{name} should be {KINDS[kind]}, yours is {_type_words(value)}")
    if not _dtype_ok(value, kind):
        return Unreadable(f"{name} should be {KINDS[kind]}, yours is {_type_words(value)}")
    return value.detach()


def read_outputs(value: Any, outputs: Sequence[str], kinds: Sequence[str]) -> Union[tuple[Tensor, ...], Unreadable]:
    """The learner's result as one tensor per output, or why it cannot be read as that."""
    n = len(outputs)
    if n > 1:
        if not isinstance(value, (tuple, list)) or len(value) != n:
            names = ", ".join(outputs)
            asked = f"a pair (a tuple of two: {names})" if n == 2 else f"a tuple of {n} ({names})"
            return Unreadable(f"{asked} is asked for, yours returned {show(value)}")
        parts = tuple(value)
    else:
        parts = (value,)
    read = []
    for part, kind, name in zip(parts, kinds, outputs):
        t = _one(part, kind, name)
        if isinstance(t, Unreadable):
            return t
        read.append(t)
    return tuple(read)


def wrong_places(yours: Tensor, ref: Tensor) -> Optional[Tensor]:
    """A bool mask of the places where ``yours`` differs from ``ref`` (None when the shapes differ), computed on
    ``yours``'s device and brought to the CPU. Raises RuntimeError or NotImplementedError when that device cannot
    be read (a ``meta`` tensor)."""
    if tuple(yours.shape) != tuple(ref.shape):
        return None
    ref = ref.to(yours.device)
    if yours.dtype == torch.bool or ref.dtype == torch.bool or not (yours.is_floating_point() or ref.is_floating_point()):
        wrong = yours.to(torch.int64) != ref.to(torch.int64)
    else:
        dtype = torch.float32 if yours.device.type == "mps" else torch.float64  # MPS has no float64
        y, r = yours.to(dtype), ref.to(dtype)
        wrong = ~torch.isclose(y, r, rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True)
    return wrong.cpu()


def agree(yours: Sequence[Tensor], ref: Sequence[Tensor]) -> bool:
    """Every output of ``yours`` has ``ref``'s shape and values."""
    for y, r in zip(yours, ref):
        wrong = wrong_places(y, r)
        if wrong is None or bool(wrong.any()):
            return False
    return True


def shape_words(t: Tensor) -> str:
    return "a number" if t.dim() == 0 else f"shape {tuple(t.shape)}"


def show(value: Any) -> str:
    """The learner's value on one line, short."""
    if isinstance(value, Tensor):
        value = value.detach()
        if value.numel() > SHOWN_VALUES or value.device.type == "meta":
            text = f"a tensor of shape {tuple(value.shape)}"
        else:
            value = value.cpu()
            if value.is_floating_point():  # four decimals, as the cases' inputs are shown
                value = torch.round(value.double(), decimals=4)
            text = str(value.tolist())
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _place(index: Sequence[int], t: Tensor) -> str:
    if t.dim() == 1:
        return f"[{index[0]}]"
    return f"row {index[0]}" if t.dim() == 2 else f"[{', '.join(str(i) for i in index)}]"


def describe_difference(outputs: Sequence[str], yours: Sequence[Tensor], ref: Sequence[Tensor]) -> str:
    """Which outputs differ and where, without the expected values: the learner's value (or, for a large
    tensor, its first differing element or row)."""
    parts = []
    for name, y, r in zip(outputs, yours, ref):
        wrong = wrong_places(y, r)
        if wrong is None:
            parts.append(f"{name} should have {shape_words(r)}, yours has {shape_words(y)}")
            continue
        if not bool(wrong.any()):
            continue
        if y.dim() == 0:
            parts.append(f"{name} (a number) is {show(y)}")
            continue
        first = wrong.nonzero()[0].tolist()
        where = f"wrong at {int(wrong.sum())} of {y.numel()} places, the first at {_place(first, y)}"
        if y.numel() > SHOWN_VALUES:
            at = y.cpu()[first[0]] if y.dim() == 2 else y.cpu()[tuple(first)]
            parts.append(f"{name} ({shape_words(r)}) is wrong at {int(wrong.sum())} of {y.numel()} places; the first "
                         f"is {_place(first, y)}, where yours is {show(at)}")
        else:
            parts.append(f"{name} ({shape_words(r)}) is {show(y)} ({where})")
    return "; ".join(parts)
