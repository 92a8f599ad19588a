"""``python -m ssd_lesson ...`` run inside the test process: what a user's shell would see, without the
seconds a fresh process spends importing torch and fastai (a refused option costs milliseconds, not 9 s).

:func:`run_main` calls :func:`ssd_lesson.__main__.main` with the command line, from a given folder and
environment, and returns its exit status with what it wrote on stdout and stderr. Everything it changes
for the call (current folder, environment, warning filters, ``sys.stdout`` / ``sys.stderr``) is put back.
One subprocess smoke test (tests/test_cli.py) checks that a real ``python -m ssd_lesson`` agrees.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Mapping, NamedTuple, Optional

__all__ = ["Ran", "run_main"]


class Ran(NamedTuple):
    """What a command did: its exit status and its two output streams (as ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings printed on ``sys.stderr`` as a fresh process prints them (pytest records them instead)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _fresh_process_filters() -> None:
    """The warning filters a plain ``python`` starts with (no ``-W``): deprecations shown only in ``__main__``."""
    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category, append=True)


@contextlib.contextmanager
def _environment(env: Mapping[str, Optional[str]]):
    """``os.environ`` with ``env`` applied (None removes a variable); the whole environment is restored after,
    including what the command itself set (``--debug`` sets ``SSD_LESSON_DEBUG``)."""
    saved = dict(os.environ)
    try:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_main(*args, cwd: Optional[Path] = None, env: Optional[Mapping[str, Optional[str]]] = None) -> Ran:
    """``python -m ssd_lesson *args`` in this process, from ``cwd``, with ``env`` over the current environment.

    As ``tests`` always ran it: no ``SSD_LESSON_VOC`` and no ``SSD_LESSON_DEBUG`` unless ``env`` sets them.
    argparse's own exits (``--help``) give their status like any other; an exception that escapes ``main``
    (``--debug``) prints its traceback on stderr and gives status 1, as the interpreter does.
    """
    from ssd_lesson.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    with _environment({"SSD_LESSON_VOC": None, "SSD_LESSON_DEBUG": None, **(env or {})}), \
            warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        _fresh_process_filters()
        warnings.showwarning = _print_warning
        try:
            if cwd is not None:
                os.chdir(cwd)
            code = main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Exception:  # what the interpreter does with an uncaught exception: the traceback, status 1
            traceback.print_exc()
            code = 1
        finally:
            os.chdir(here)
    return Ran(int(code), out.getvalue(), err.getvalue())
