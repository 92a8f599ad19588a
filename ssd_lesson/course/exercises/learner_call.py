"""One call of a learner's "your turn" function, made safe for the checker.

:func:`call_learner` runs ``fn(*args)`` on fresh copies of a case's inputs and reports what happened,
never raising and never hanging:

- a function that does not return within :data:`TIME_LIMIT_S` seconds (an endless loop) is stopped with
  ``SIGALRM`` when the checker runs in the main thread (as in a Jupyter kernel), so the kernel stays usable;
  elsewhere it is left running in a daemon thread and the checker moves on;
- an exercise done "by hand" runs with autograd switched off and ``.backward()`` / ``torch.autograd.grad``
  refused, so a gradient computed by autograd is recognised and named (also an error raised inside autograd);
- inputs the function changed in place (``actn.tanh_()``, ``ious[...] = 0``) are named.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator, NamedTuple, Optional

import torch
from torch import Tensor
from torch.autograd.variable import Variable

__all__ = ["TIME_LIMIT_S", "Call", "call_learner"]

#: How long one call of a learner's function may take, in seconds: the cases are small, a right
#: function takes milliseconds, so a call this long is almost surely an endless loop.
TIME_LIMIT_S = 5.0


class _TookTooLong(BaseException):
    """Raised inside the learner's function by the alarm; a BaseException, so ``except Exception`` in the
    learner's code cannot swallow it."""


class _AutogradUsed(BaseException):
    """Raised when a "by hand" function calls autograd; a BaseException for the same reason."""


class Call(NamedTuple):
    """What one call did. ``outcome`` is one of ``"returned"`` (``value`` holds the result), ``"raised"``
    (``value`` holds the exception), ``"timeout"`` (``value``: True if the function may still be running in
    a background thread), ``"autograd"`` or ``"changed_input"`` (``value``: the input's name)."""

    outcome: str
    value: Any = None


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`_TookTooLong` in this (main) thread after ``seconds``; put back any earlier alarm."""
    def on_alarm(signum: int, frame: Any) -> None:
        raise _TookTooLong

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_timer[0] > 0:  # someone else's alarm was set: let it go off as it would have
            signal.setitimer(signal.ITIMER_REAL, *previous_timer)


def _can_use_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _refuse_autograd(*args: Any, **kwargs: Any) -> Any:
    raise _AutogradUsed


class _RefusingEngine:
    """Stands in for autograd's engine: every backward pass (``.backward()``, ``torch.autograd.grad``
    however it was imported, ``torch.func.grad``) reaches ``run_backward`` and is refused there."""

    def run_backward(self, *args: Any, **kwargs: Any) -> Any:
        raise _AutogradUsed


@contextmanager
def _autograd_refused(refuse: bool) -> Iterator[None]:
    """While the learner's function runs, the two ways to ask autograd for a gradient raise
    :class:`_AutogradUsed` (``Tensor.backward`` calls ``torch.autograd.backward``), and so does the engine
    under them, which a ``grad`` imported before the check and run under ``torch.enable_grad()`` still
    reaches; put back afterwards, in the checker's own thread, even when the function is left running in another."""
    if not refuse:
        yield
        return
    saved = torch.autograd.backward, torch.autograd.grad, Variable._execution_engine
    torch.autograd.backward, torch.autograd.grad = _refuse_autograd, _refuse_autograd  # type: ignore[assignment]
    Variable._execution_engine = _RefusingEngine()  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.autograd.backward, torch.autograd.grad, Variable._execution_engine = saved  # type: ignore[assignment]


def _from_autograd(e: BaseException) -> bool:
    """Whether ``e`` was raised inside torch's autograd (a gradient asked of a tensor made without autograd,
    through a ``grad`` imported before the checker ran)."""
    where = os.path.join("torch", "autograd", "")
    tb = e.__traceback__
    while tb is not None:
        if where in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _fresh(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Copies of the case's tensors, so one call cannot change the next one's inputs."""
    return tuple(a.clone() if isinstance(a, Tensor) else a for a in args)


def _changed(before: Tensor, after: Tensor) -> bool:
    return (before.shape != after.shape or before.dtype != after.dtype or before.requires_grad != after.requires_grad
            or not torch.equal(before, after.detach()))


def _run(fn: Callable[..., Any], args: tuple[Any, ...], by_hand: bool) -> Call:
    try:
        with torch.no_grad() if by_hand else nullcontext():  # no_grad is per thread: set where fn runs
            return Call("returned", fn(*args))
    except _AutogradUsed:
        return Call("autograd")
    except Exception as e:  # noqa: BLE001 - the learner's error is the message, not a traceback
        return Call("autograd") if by_hand and _from_autograd(e) else Call("raised", e)


def _run_in_thread(fn: Callable[..., Any], args: tuple[Any, ...], by_hand: bool, seconds: float) -> Call:
    """Where no alarm can be used (not the main thread, or no SIGALRM): wait ``seconds`` for a daemon thread."""
    done: list[Call] = []
    worker = threading.Thread(target=lambda: done.append(_run(fn, args, by_hand)), daemon=True)
    worker.start()
    worker.join(seconds)
    return done[0] if done else Call("timeout", True)


def call_learner(fn: Callable[..., Any], args: tuple[Any, ...], names: tuple[str, ...], *, by_hand: bool = False,
                 seconds: Optional[float] = None) -> Call:
    """Call ``fn`` on fresh copies of ``args`` (named ``names`` in messages), within ``seconds``
    (default :data:`TIME_LIMIT_S`)."""
    seconds = TIME_LIMIT_S if seconds is None else seconds
    given = _fresh(args)
    with _autograd_refused(by_hand):
        if _can_use_alarm():
            try:
                with _alarm(seconds):
                    call = _run(fn, given, by_hand)
            except _TookTooLong:  # also when the alarm goes off just as the function returns: too close to call
                return Call("timeout", False)
        else:
            call = _run_in_thread(fn, given, by_hand, seconds)
    if call.outcome == "timeout":
        return call
    if call.outcome == "returned":
        for name, before, after in zip(names, args, given):
            if isinstance(before, Tensor) and isinstance(after, Tensor) and _changed(before, after):
                return Call("changed_input", name)
    return call
