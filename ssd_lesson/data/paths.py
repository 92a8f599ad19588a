"""Where the project's data lives: ``data/`` of the checkout, or ``ssd_lesson/_data`` in an installed wheel."""
from __future__ import annotations

from pathlib import Path

__all__ = ["DATA_DIR", "EXAMPLE_DIR"]


def _data_dir() -> Path:
    """The project's ``data/``: ``ssd_lesson/_data`` when installed from a wheel, else the checkout's."""
    package = Path(__file__).resolve().parents[1]
    for folder in (package / "_data", package.parent / "data"):
        if (folder / "example" / "example.xml").is_file():
            return folder
    return package.parent / "data"  # absent: whoever reads a file from it names the missing file


DATA_DIR = _data_dir()
EXAMPLE_DIR = DATA_DIR / "example"
