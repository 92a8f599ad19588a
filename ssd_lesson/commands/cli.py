"""How the command line refuses bad input: one line ``error: ...``, exit status 2, no traceback.

Every subcommand of ``python -m ssd_lesson`` runs through :func:`run_command`: it turns a
:class:`UserError` (raised by a subcommand), an ``argparse`` refusal, and the ``ValueError`` /
``FileNotFoundError`` family that the library raises for bad input (those messages name the
argument or file) into one line on stderr. ``--debug`` anywhere on the command line, or
``SSD_LESSON_DEBUG=1``, shows the traceback instead. The ``type=`` validators below check an
option's value when it is parsed, before any work starts, and name the option.
:class:`HelpFormatter` makes every ``--help`` show each option's default.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

__all__ = ["UserError", "DEBUG_ENV", "debug_enabled", "run_command", "positive_int", "nonnegative_int", "at_least",
           "fraction", "unit_interval", "finite_float", "positive_float", "nonnegative_float", "in_file", "out_folder", "out_file",
           "out_file_or_stream", "HelpFormatter", "check_writable", "private_tempdir"]

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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default, ``(default: X)``, except where there is none to show: a
    flag's False, a None (the help says what happens then), or a help that already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


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


def fraction(text: str) -> float:
    """A number in [0, 1) (IoU and score thresholds)."""
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value:g}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1] (a weight such as the focal alpha)."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number of at least 0 (the focal gamma, a weight decay, a penalty's weight)."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value:g}")
    return value


# ---------------------------------------------------------------- outputs: what each path is, checked before any work
def _existing_non_folder(path: Path) -> Path | None:
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            return p
    return None


def _what(path: Path) -> str:
    """What ``path`` is, in a message: ``"file"`` for a regular one, else its kind (``"character device"``, ...)."""
    from ..io.files import REGULAR, output_kind

    kind = output_kind(path)
    return "file" if kind == REGULAR else kind or "missing"


def _file_refusal(path: Path, streams: bool) -> str | None:
    """Why ``path`` cannot be a file output, or None: a folder; anything but a regular file, except, with
    ``streams``, a stream written in place (``/dev/null``, a FIFO, ``/dev/stdout``); a non-folder on its way."""
    from ..io.files import REGULAR, STREAM_KINDS, output_kind

    kind = output_kind(path)
    if kind == "folder":
        return f"{path} is a folder; give a file name"
    if kind not in (None, REGULAR) and not (streams and kind in STREAM_KINDS):
        return (f"{path} is a {kind}, not a regular file; give a file name"
                + (" (or a character device, a FIFO, /dev/stdout: written in place)" if streams else ""))
    blocker = _existing_non_folder(path.parent)
    if blocker is not None:
        return f"{path}: {blocker} is a {_what(blocker)}, not a folder"
    return None


def _folder_refusal(path: Path, entries: Sequence[str] = ()) -> str | None:
    """Why ``path`` cannot be a folder output, or None: a non-folder on its way, or an entry it holds that
    the command would write (matching a pattern of ``entries``) that is not a regular file."""
    from ..io.files import REGULAR, output_kind

    blocker = _existing_non_folder(path)
    if blocker is not None:
        return f"{path} cannot be a folder: {blocker} is a {_what(blocker)}"
    for pattern in entries:
        for entry in sorted(path.glob(pattern)) if path.is_dir() else ():
            if output_kind(entry) not in (None, REGULAR):
                return f"{path}: {entry.name} in it is a {_what(entry)}, not a regular file, and the command writes that file"
    return None


def out_folder(text: str) -> Path:
    """A folder to write into: absent (it is created) or a folder, never a file or a device."""
    refusal = _folder_refusal(Path(text))
    if refusal is not None:
        raise argparse.ArgumentTypeError(refusal)
    return Path(text)


def in_file(text: str) -> Path:
    """A file to read: it must exist and be a file (not a folder)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def out_file(text: str) -> Path:
    """A file to write, replaced whole: absent or a regular file (never a folder, a device, a FIFO), and no
    file where one of its folders should be."""
    refusal = _file_refusal(Path(text), streams=False)
    if refusal is not None:
        raise argparse.ArgumentTypeError(refusal)
    return Path(text)


def out_file_or_stream(text: str) -> Path:
    """As :func:`out_file`, or a stream written in place: a character device (``/dev/null``), a FIFO, ``/dev/stdout``."""
    refusal = _file_refusal(Path(text), streams=True)
    if refusal is not None:
        raise argparse.ArgumentTypeError(refusal)
    return Path(text)


def check_writable(path: str | Path, option: str, folder: bool = False, streams: bool = False,
                   entries: Sequence[str] = ()) -> None:
    """Refuse, before any work, an output that cannot be written: ``UserError`` naming ``option`` and why.

    ``path`` is a file: a regular file or nothing yet (its folder must take new files: outputs are written
    beside it and renamed into place), or with ``streams`` also a stream written in place (``/dev/null``,
    a FIFO, ``/dev/stdout``), never renamed over. With ``folder=True`` it is a folder (created if missing)
    and each entry it holds matching ``entries`` (``"*.jpg"``: what the command writes there) must be a
    regular file. See :func:`ssd_lesson.io.files.unwritable_reason`.
    """
    from ..io.files import STREAM_KINDS, output_kind, unwritable_reason

    path = Path(path)
    refusal = _folder_refusal(path, entries) if folder else _file_refusal(path, streams)
    if refusal is not None:
        raise UserError(f"{option} {refusal}")
    if not folder and streams and output_kind(path) in STREAM_KINDS:
        if not os.access(path, os.W_OK):
            raise UserError(f"{option} {path}: cannot be written: permission denied")
        return
    why = unwritable_reason(path, folder=folder)
    if why is not None:
        raise UserError(f"{option} {path}: cannot be written: {why}")


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """While the command runs, SIGTERM (``kill``, a job scheduler, a container stopping) ends it as an exit
    would, status 143, so that every ``finally`` runs: the private temporary folder is removed and a
    checkpoint being written is finished first (:func:`ssd_lesson.io.files.held_signals`). Python's default
    for SIGTERM is to die at once, leaving both behind. Only in the main thread, where handlers run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum, frame):
        print("\nterminated", file=sys.stderr)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def private_tempdir() -> Iterator[Path]:
    """A temporary folder of this command's own, removed when it ends (refused, interrupted or done).

    Python's ``tempfile``, torch's compile caches (``torchinductor_<user>``, made when fastai imports
    ``torch._dynamo``) and every subprocess (notebook kernels) use it, through ``TMPDIR`` and
    ``tempfile.tempdir``, so nothing is left in the system's temporary folder. A compile cache
    folder the user chose (``TORCHINDUCTOR_CACHE_DIR``) is kept as it is.
    """
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ssd-lesson-"))
    saved_env = {k: os.environ.get(k) for k in ("TMPDIR", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    saved_tempdir = tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(folder), str(folder)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder / "torchinductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_tempdir
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(folder, ignore_errors=True)
