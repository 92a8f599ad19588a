"""Which Pascal VOC years and splits a folder holds, in either layout, without reading an image.

VOC 2007 and VOC 2012 come in two layouts: the official one (``VOCdevkit/VOC2007``,
``VOCdevkit/VOC2012``: ``Annotations/``, ``ImageSets/Main/<split>.txt``, ``JPEGImages/``) and
fastai's (``untar_data(URLs.PASCAL_2007)`` gives ``pascal_2007/``, ``URLs.PASCAL_2012`` gives
``pascal_2012/``: ``train.json``, ``valid.json``, ``test.json`` with images in ``train/`` and ``test/``).
:func:`find_years` says where each year is and how many images each split lists (from the split
files and the json, not the images); :func:`voc_inventory` is that as ``{(year, split): n}``.

A folder's year is its name (``VOC2012``, ``pascal_2012``) or, for a folder named otherwise, its
image ids: VOC 2012's are ``2008_000008``, VOC 2007's ``000005`` (a folder of neither name nor
id is read as 2007, as it always was). VOC 2012's test annotations are not public, so a 2012 test
split is never listed. Only the standard library here.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

__all__ = ["YEARS", "SPLITS", "FASTAI_JSON", "VocYear", "find_years", "voc_inventory", "describe_years"]

YEARS = ("2007", "2012")
SPLITS = ("train", "val", "trainval", "test")
#: The json files of fastai's layout that hold each split (train and val images are both in ``train/``).
FASTAI_JSON = {"train": ["train.json"], "val": ["valid.json"], "trainval": ["train.json", "valid.json"],
               "test": ["test.json"]}
#: The splits without public annotations, by year: VOC 2012's test boxes are kept by its evaluation server.
NO_ANNOTATIONS = {"2012": ("test",)}
_NAMED = re.compile(r"^(?:VOC|pascal_)(\d{4})$", re.IGNORECASE)  # VOC2012, pascal_2012
_ID_2012 = re.compile(r"^\d{4}_\d{6}$")  # VOC 2012's image ids carry their year: 2008_000008


@dataclass(frozen=True)
class VocYear:
    """One year of VOC found on disk: its ``layout`` (``"voc"`` official, ``"fastai"``), the folder ``root``
    to read it from, and ``splits``: images listed per split (None: listed, but the file could not be read)."""

    year: str
    layout: Literal["voc", "fastai"]
    root: Path
    splits: dict[str, Optional[int]]

    def describe(self) -> str:
        """``VOC2012 (train 5717, val 5823, trainval 11540 images) in /data/VOCdevkit/VOC2012``."""
        counts = ", ".join(f"{s} {'?' if n is None else n}" for s, n in self.splits.items())
        return f"VOC{self.year} ({counts} images) in {self.root}"


def _count(path: Path) -> tuple[Optional[int], Optional[str]]:
    """Images a split file (``.txt``) or fastai json lists, and its first image id (None, None: unreadable)."""
    try:
        if path.suffix == ".json":
            images = json.loads(path.read_text(encoding="utf-8-sig"))["images"]
            return len(images), Path(str(images[0]["file_name"])).stem if images else None
        ids = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
        return len(ids), ids[0] if ids else None
    except (OSError, ValueError, KeyError, TypeError, IndexError):  # the reader names the problem when it reads it
        return None, None


def _year(folder: Path, first_id: Optional[str]) -> Optional[str]:
    named = _NAMED.match(folder.name)
    if named:
        return named.group(1) if named.group(1) in YEARS else None
    return "2012" if first_id and _ID_2012.match(first_id) else "2007"


def _read_folder(folder: Path) -> Optional[VocYear]:
    """The VOC year in ``folder`` itself (either layout), or None."""
    if any((folder / f).is_file() for f in ("train.json", "valid.json", "test.json")):
        layout, files = "fastai", {s: [folder / f for f in fs] for s, fs in FASTAI_JSON.items()}
    elif (folder / "Annotations").is_dir() and (folder / "ImageSets" / "Main").is_dir():
        layout, files = "voc", {s: [folder / "ImageSets" / "Main" / f"{s}.txt"] for s in SPLITS}
    else:
        return None
    read = {p: _count(p) for paths in files.values() for p in paths if p.is_file()}  # each file once
    year = _year(folder, next((first for _, first in read.values() if first), None))
    if year is None:
        return None
    splits = {s: None if any(read[p][0] is None for p in paths) else sum(read[p][0] for p in paths)
              for s, paths in files.items() if all(p in read for p in paths) and s not in NO_ANNOTATIONS.get(year, ())}
    return VocYear(year, layout, folder, splits)


def _below(path: Path) -> list[Path]:
    """Where the two layouts put each year under ``path`` (a VOCdevkit's parent, VOCdevkit, fastai's data folder)."""
    return [path / sub for y in YEARS for sub in (f"VOC{y}", f"VOCdevkit/VOC{y}", f"pascal_{y}")]


def find_years(path: str | Path, siblings: bool = True) -> dict[str, VocYear]:
    """``{"2007": VocYear, "2012": VocYear}`` for the years in ``path`` (itself, or the year folders below it),
    in order of :data:`YEARS`. With ``siblings``, a ``path`` that is (or is named as) one year's folder also
    finds the other year beside it (``VOCdevkit/VOC2007`` finds ``VOCdevkit/VOC2012``). The first folder found
    for a year is its; a missing ``path`` holds nothing."""
    path = Path(path).expanduser()
    itself = _read_folder(path) if path.is_dir() else None
    places = [path] + _below(path)
    if siblings and (itself is not None or _NAMED.match(path.name)):
        places += _below(path.parent)
    found: dict[str, VocYear] = {}
    for place in places:
        got = itself if place == path else (_read_folder(place) if place.is_dir() else None)
        if got is not None and got.year not in found:
            found[got.year] = got
    return {y: found[y] for y in YEARS if y in found}


def voc_inventory(path: str | Path, siblings: bool = True) -> dict[tuple[str, str], Optional[int]]:
    """``{("2007", "trainval"): 5011, ("2012", "val"): 5823, ...}``: the images each year's split lists."""
    return {(y, s): n for y, v in find_years(path, siblings).items() for s, n in v.splits.items()}


def describe_years(found: dict[str, VocYear]) -> str:
    """``found VOC2007 (...) in X; found VOC2012 (...) in Y``, or ``found no VOC year``."""
    return "; ".join(f"found {v.describe()}" for v in found.values()) or "found no VOC year"
