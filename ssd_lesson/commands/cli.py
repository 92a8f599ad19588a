"""How the command line refuses bad input: one line ``error: ...``, exit status 2, no traceback.

Every subcommand of ``python -m ssd_lesson`` runs through :func:`run_command`: it turns a
:class:`UserError` (raised by a subcommand), an ``argparse`` refusal, and the ``ValueError`` /
``FileNotFoundError`` family that the library raises for bad input (those messages name the
argument or file) into one line on stderr. ``--debug`` anywhere on the command line, or
``SSD_LESSON_DEBUG=1``, shows the traceback instead. The ``type=`` validators below check an
option's value when it is parsed, before any work starts, and name the option.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

__all__ = ["UserError", "DEBUG_ENV", "debug_enabled", "run_command", "positive_int", "nonnegative_int", "at_least",
           "fraction", "finite_float", "positive_float", "out_folder", "out_file"]

DEBUG_ENV = "SSD_LESSON_DEBUG"
#: What the library raises for bad input; its messages name the argument or the file.
INPUT_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


class UserError(Exception):
    """A wrong option or a missing input: printed as ``error: <message>``, exit status ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _one_line_error(self: argparse.ArgumentParser, message: str):
    raise UserError(f"{message} (see {self.prog} --help)")


def _plain_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


@contextlib.contextmanager
def _one_line_refusals() -> Iterator[None]:
    """argparse refusals raise :class:`UserError`; warnings print as ``warning: ...`` without source lines."""
    saved_error, saved_format = argparse.ArgumentParser.error, warnings.formatwarning
    argparse.ArgumentParser.error = _one_line_error
    warnings.formatwarning = _plain_warning
    try:
        yield
    finally:
        argparse.ArgumentParser.error, warnings.formatwarning = saved_error, saved_format


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None and e.strerror:  # "[Errno 2] ..." reads worse
        return f"{e.filename}: {e.strerror}"
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def run_command(fn: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    """``fn(argv)``'s exit status; a refusal is one line ``error: ...`` on stderr and its code (2)."""
    argv = list(argv)
    if "--debug" in argv:
        argv.remove("--debug")
        os.environ[DEBUG_ENV] = "1"
    debug = debug_enabled()
    try:
        with _one_line_refusals():
            return int(fn(argv) or 0)
    except UserError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except INPUT_ERRORS as e:
        if debug:
            raise
        print(f"error: {_message(e)} (--debug shows where)", file=sys.stderr)
        return 2


# ---------------------------------------------------------------- option validators (argparse ``type=``)
def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def at_least(low: int) -> Callable[[str], int]:
    """An integer option of at least ``low``."""
    def check(text: str) -> int:
        value = _number(text, int)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    check.__name__ = f"integer >= {low}"
    return check


positive_int = at_least(1)
nonnegative_int = at_least(0)


def finite_float(text: str) -> float:
    """A finite number (not nan or inf)."""
    return _number(text, float)


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value:g}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number of at least 0."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value:g}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1) (IoU and score thresholds)."""
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value:g}")
    return value


def _existing_non_folder(path: Path) -> Path | None:
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            return p
    return None


def out_folder(text: str) -> Path:
    """A folder to write into: absent (it is created) or a folder, never a file."""
    path = Path(text)
    blocker = _existing_non_folder(path)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"{text} cannot be a folder: {blocker} is a file")
    return path


def out_file(text: str) -> Path:
    """A file to write: not a folder, and no file where one of its folders should be."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    blocker = _existing_non_folder(path.parent)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"{text}: {blocker} is a file, not a folder")
    return path
