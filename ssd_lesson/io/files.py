"""Writing files so that nothing is lost when things go wrong.

:func:`atomic_write` writes a file beside its destination and renames it into place; while it
writes, Ctrl-C (SIGINT) and SIGTERM are held back and delivered once the file is in place,
so an interrupt leaves either the old file or the complete new one, and no ``.tmp`` beside it.
It replaces regular files only: :func:`output_kind` says what a path is, and a stream (a character
device such as ``/dev/null``, a FIFO, ``/dev/stdout``) is written in place by :func:`output_text`,
never renamed over. :func:`unwritable_reason` says, before any work, why a file or folder could not be written.
"""
from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Optional, TextIO

__all__ = ["atomic_write", "held_signals", "output_kind", "output_text", "STREAM_KINDS", "unwritable_reason"]

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs; deliver the first one received when it ends.

    Only in the main thread (Python runs signal handlers there); elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in HELD_SIGNALS}
    for s in HELD_SIGNALS:
        signal.signal(s, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signal.raise_signal(received[0])  # now handled as it would have been: KeyboardInterrupt, exit, ...


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends, it replaces ``path`` in one rename.

    An exception in the block removes the temporary file and leaves ``path`` as it was. SIGINT and
    SIGTERM wait until the rename is done (:func:`held_signals`). The folder is created if needed.
    Only a regular file (or nothing) is replaced: anything else at ``path`` (a device, a FIFO, a folder,
    ``/dev/stdout``) is a ``ValueError`` naming it, before the block runs. A symbolic link to a file
    stays a link: the file it points to is replaced.
    """
    kind = output_kind(path)
    if kind not in (None, REGULAR):
        raise ValueError(f"{path} is a {kind}, not a regular file: it is never replaced by a rename")
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with held_signals():
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


REGULAR = "regular file"
#: Written in place, never replaced: whatever reads them (a terminal, a pipe, /dev/null) takes a stream.
STREAM_KINDS = ("character device", "FIFO", "file descriptor")
_KINDS = ((stat.S_ISREG, REGULAR), (stat.S_ISDIR, "folder"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"))


def _descriptor_name(path: Path) -> Optional[Path]:
    """``/dev/stdout``, ``/dev/fd/1``, ``/proc/self/fd/1``: the name of an open file descriptor, whatever it refers
    to (a regular file too, when stdout is redirected to one: replacing it would lose the rest), as the
    ``.../fd/N`` path its links lead to; None for any other path."""
    p = Path(os.path.abspath(path))
    for _ in range(40):  # links followed one at a time: the name, not the file, says it is a descriptor
        fd_folder = p.parent
        if fd_folder.name == "fd" and (fd_folder.parent == Path("/dev") or fd_folder.parent.parent == Path("/proc")):
            return p
        if not p.is_symlink():
            return None
        p = Path(os.path.abspath(p.parent / os.readlink(p)))
    return None


def _own_descriptor(path: Path) -> Optional[int]:
    """The number of this process's descriptor that ``path`` names (``/dev/stdout``: 1), else None."""
    name = _descriptor_name(path)
    if name is None:
        return None
    own = name.parent.parent == Path("/dev") or name.parent.parent.name in ("self", str(os.getpid()))
    return int(name.name) if own and name.name.isdigit() else None


def output_kind(path: str | Path) -> Optional[str]:
    """What is at ``path``, symbolic links followed: None (nothing), ``"regular file"``, ``"folder"``,
    ``"character device"``, ``"block device"``, ``"FIFO"``, ``"socket"``, or ``"file descriptor"``
    (``/dev/stdout``, ``/dev/fd/N``: the name of an open descriptor)."""
    path = Path(path)
    if _descriptor_name(path) is not None:
        return "file descriptor"
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return next((name for test, name in _KINDS if test(mode)), "special file")


@contextlib.contextmanager
def output_text(path: str | Path) -> Iterator[TextIO]:
    """``path`` open for writing text: a stream (:data:`STREAM_KINDS`: ``/dev/null``, a FIFO, ``/dev/stdout``)
    in place, appended to; a regular file, or nothing yet, replaced whole (:func:`atomic_write`);
    anything else a ``ValueError`` naming it."""
    if output_kind(path) in STREAM_KINDS:
        for printed in (sys.stdout, sys.stderr):  # it may be this process's own stdout: what was printed comes first
            printed.flush()
        fd = _own_descriptor(Path(path))
        # this process's own descriptor (/dev/stdout) is written through a copy of it, at its place in the output
        # (opening the name anew would write at another offset of a redirected file); anything else appended to
        with (open(os.dup(fd), "w", newline="", encoding="utf-8") if fd is not None
              else open(path, "a", newline="", encoding="utf-8")) as f:
            yield f
        return
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        yield f  # closed before the rename


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(path.anchor or ".")


def unwritable_reason(path: str | Path, folder: bool = False) -> Optional[str]:
    """Why ``path`` (a file, or with ``folder=True`` a folder) cannot be written, or None if it can.

    Tries it: a probe file is made and removed in the nearest existing folder on the way (the one
    whose permissions decide whether the missing folders can be created), so what root may do,
    read-only mounts and full disks are all answered as they really are.
    """
    path = Path(path)
    target = path if folder else path.parent
    where = _nearest_existing(target if str(target) else Path("."))
    if not where.is_dir():
        return f"{where} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".ssd-lesson-probe-")
    except OSError as e:
        return f"cannot create files in {where} ({e.strerror or type(e).__name__})"
    os.close(fd)
    os.unlink(probe)
    return None
