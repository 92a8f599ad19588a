"""Writing files so that nothing is lost when things go wrong.

:func:`atomic_write` writes a file beside its destination and renames it into place; while it
writes, Ctrl-C (SIGINT) and SIGTERM are held back and delivered once the file is in place,
so an interrupt leaves either the old file or the complete new one, and no ``.tmp`` beside it.
:func:`unwritable_reason` says, before any work, why a file or folder could not be written.
"""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Optional

__all__ = ["atomic_write", "held_signals", "unwritable_reason"]

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
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with held_signals():
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


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
