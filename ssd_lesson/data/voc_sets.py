"""Pascal VOC's training and validation sets by name: ``2007-trainval``, ``2012-val``, ``07+12``.

A set is a year and a split, written ``YEAR-SPLIT``: YEAR ``2007`` or ``2012`` (or ``07``, ``12``), SPLIT
``train``, ``val``, ``trainval`` or ``test``; VOC 2012's test annotations are not public, so ``2012-test``
is refused. ``07+12`` is the SSD paper's union: ``2007-trainval,2012-trainval`` (16,551 images; the years
are told apart by year and id, and 2012's ids carry their year). :func:`choose_sets` reads the names, finds each year where :func:`~ssd_lesson.data.voc.voc_place`
looks (the year folders in it, and beside it: :func:`~ssd_lesson.data.voc_years.find_years`), or fetches it
with fastai's ``untar_data`` (``URLs.PASCAL_2007``, ``URLs.PASCAL_2012``) when asked, and refuses what is not
there, naming what is. :meth:`VocSets.load` reads the records: an image of two train sets is used once,
and an image of both the train and the valid sets is refused (validating on it would measure memory).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional

from .voc_years import NO_ANNOTATIONS, YEARS, VocYear, describe_years, find_years

if TYPE_CHECKING:
    from .voc import Record
# The readers (numpy, PIL) are imported where they are used: the names and defaults here serve train --help.

__all__ = ["DEFAULT_TRAIN", "DEFAULT_VALID", "ALIASES", "VocSet", "VocSets", "DownloadFailed", "parse_sets",
           "choose_sets", "load_set", "download_year"]

#: What ``train --data voc`` uses when no set is named: the lesson's split of VOC 2007.
DEFAULT_TRAIN, DEFAULT_VALID = "2007-train", "2007-val"
ALIASES = {"07+12": "2007-trainval,2012-trainval"}
#: fastai's archive of each year (``URLs.PASCAL_2007``) and the official tar files, for the advice.
ARCHIVES = {"2007": "PASCAL_2007", "2012": "PASCAL_2012"}
OFFICIAL_TARS = {"2007": "VOCtrainval_06-Nov-2007.tar + VOCtest_06-Nov-2007.tar", "2012": "VOCtrainval_11-May-2012.tar"}
#: The images each split is made of: two sets of one year share images when their parts meet.
PARTS = {"train": {"train"}, "val": {"val"}, "trainval": {"train", "val"}, "test": {"test"}}
SPELLING = ("write YEAR-SPLIT, YEAR 2007 or 2012, SPLIT train, val, trainval or test (2007 only), several joined by "
            "commas, or 07+12 for 2007-trainval,2012-trainval")
_NAME = re.compile(r"(?:20)?(07|12)-(train|val|trainval|test)")
_YEAR_FOLDER = re.compile(r"(?:VOC|pascal_)\d{4}", re.IGNORECASE)


class DownloadFailed(RuntimeError):
    """``--download`` could not fetch a year (no network, a full disk); the message is one line."""


class VocSet(NamedTuple):
    """One year's split: ``VocSet("2007", "trainval")``, written ``2007-trainval``."""

    year: str
    split: str

    def __str__(self) -> str:
        return f"{self.year}-{self.split}"

    def meets(self, other: "VocSet") -> bool:
        """Whether the two sets share images (``2007-trainval`` and ``2007-val`` do)."""
        return self.year == other.year and bool(PARTS[self.split] & PARTS[other.split])


def parse_sets(text: str, option: str, one: bool = False) -> tuple[VocSet, ...]:
    """The sets named in ``text`` (``"2007-trainval,2012-trainval"``, ``"07+12"``), a name given twice once;
    a ``ValueError`` naming ``option`` for a wrong name, ``2012-test``, or (``one``) more than one set."""
    sets: list[VocSet] = []
    for name in ALIASES.get(text.strip(), text).split(","):
        m = _NAME.fullmatch(name.strip().lower())
        if m is None:
            raise ValueError(f"{option}: {name.strip()!r} is not a Pascal VOC set; {SPELLING}")
        s = VocSet("20" + m.group(1), m.group(2))
        if s.split in NO_ANNOTATIONS.get(s.year, ()):
            raise ValueError(f"{option}: {s}: VOC{s.year}'s {s.split} annotations are not public (its evaluation server "
                             "keeps them); validate on 2007-test, 2007-val or 2012-val")
        sets += [s] if s not in sets else []
    if one and len(sets) != 1:
        raise ValueError(f"{option} takes one set, got {text!r} ({', '.join(map(str, sets))})")
    return tuple(sets)


@dataclass
class VocSets:
    """The sets chosen and the year folders they are read from; ``notes``: what the choice should tell the user."""

    train: tuple[VocSet, ...]
    valid: VocSet
    years: dict[str, VocYear]
    notes: list[str] = field(default_factory=list)

    @property
    def train_names(self) -> str:
        return ",".join(map(str, self.train))

    @property
    def folder(self) -> str:
        """Where the images are: the one year's folder, or each year's joined by ``os.pathsep`` (as in PATH)."""
        return os.pathsep.join(str(v.root) for v in self.years.values())

    def describe(self) -> str:
        """``Pascal VOC: train 2007-trainval (5011 images) + 2012-trainval (11540), valid 2007-test (4952); ...``."""
        n = {s: self.years[s.year].splits.get(s.split) for s in (*self.train, self.valid)}  # as the split files list them
        train = " + ".join(f"{s} ({n[s]}{' images' if i == 0 else ''})" for i, s in enumerate(self.train))
        where = ", ".join(f"VOC{y} from {v.root}" for y, v in self.years.items())
        return f"Pascal VOC: train {train}, valid {self.valid} ({n[self.valid]}); {where}"

    def load(self) -> tuple[list[Record], list[Record], list[str]]:
        """``(train records, valid records, notes)``: the train sets' images each once, in the order named
        (a note says how many were named twice); a ``ValueError`` when an image is in both."""
        from .voc import read_year

        train, seen, notes = [], {}, []
        for s in self.train:
            records = read_year(self.years[s.year], s.split)
            again = sorted({seen[(s.year, r.image_id)] for r in records if (s.year, r.image_id) in seen})
            fresh = [r for r in records if (s.year, r.image_id) not in seen]
            if again:
                notes.append(f"note: {len(records) - len(fresh)} images of {s} are also in {', '.join(again)}: "
                             "each is trained on once")
            seen.update({(s.year, r.image_id): str(s) for r in fresh})
            train += fresh
        valid = read_year(self.years[self.valid.year], self.valid.split)
        shared = [r.image_id for r in valid if (self.valid.year, r.image_id) in seen]
        if shared:
            raise ValueError(f"--valid-set {self.valid}: {len(shared)} of its images (first {shared[0]}) are also in "
                             f"--train-sets {self.train_names}; validating on training images measures memory, not detection")
        return train, valid, notes


def download_year(year: str, into: Optional[Path] = None) -> VocYear:
    """Fetch VOC ``year`` with fastai's ``untar_data(URLs.PASCAL_<year>)`` into the folder ``into`` (None:
    fastai's data folder) and return what it holds; :class:`DownloadFailed` (one line) when it cannot."""
    from fastai.data.external import URLs, fastai_cfg, untar_data

    url = getattr(URLs, ARCHIVES[year])
    try:
        got = untar_data(url, **({} if into is None else {"data": Path(into)}))
    except Exception as e:  # no network, a proxy, a full disk: one line instead of fastai's traceback
        said = (str(e).strip().splitlines() or [""])[0]
        raise DownloadFailed(f"--download: fetching Pascal VOC {year} ({url}) failed: {type(e).__name__}: {said}") from None
    finally:  # untar_data(data=...) writes that folder into fastai's cached config: read the config afresh next time
        fastai_cfg.cache_clear()
    found = find_years(got, siblings=False).get(year)
    if found is None:
        raise DownloadFailed(f"--download: fastai's untar_data({url}) gave {got}, which holds no VOC{year}")
    return found


def _download_into(place: Optional[Path]) -> Optional[Path]:
    """The folder a download goes into: the one looked in, or its parent when that is a year's own folder."""
    if place is None:
        return None
    own = _YEAR_FOLDER.fullmatch(place.name) or any(v.root == place for v in find_years(place, siblings=False).values())
    return place.parent if own else place


def _not_found(missing: list[str], found: dict[str, VocYear], place: Optional[Path], what: str) -> str:
    from .voc import voc_missing_message

    lines = [f"Pascal VOC {' and '.join(missing)} not found in {place} ({what})"
             + (f"; {describe_years(found)}" if found else "")]
    if "2007" in missing:  # the lesson's own advice: where it looked and how to get it
        lines.append(voc_missing_message([f"{place} ({what})"], fallback=False).split("\n", 1)[1])
    for year in (y for y in missing if y != "2007"):
        lines.append(f"To use VOC{year}, either:\n  - pass --download (fastai's untar_data(URLs.{ARCHIVES[year]})), or"
                     f"\n  - unpack fastai's {ARCHIVES[year].lower()}.tgz or the official {OFFICIAL_TARS[year]} (VOCdevkit/"
                     f"VOC{year}) in {place} or beside its VOC2007")
    if found:
        lines.append("Or train on what is here: " + " or ".join(f"--train-sets {y}-train --valid-set {y}-val" for y in found))
    return "\n".join(lines)


def choose_sets(data_dir: Optional[str | Path], train_sets: Optional[str] = None, valid_set: Optional[str] = None,
                download: bool = False) -> VocSets:
    """The sets named (defaults :data:`DEFAULT_TRAIN`, :data:`DEFAULT_VALID`), found where
    :func:`~ssd_lesson.data.voc.voc_place` looks (``data_dir``, ``$SSD_LESSON_VOC``, fastai's data folder).

    ``download``: a year not found there is fetched (:func:`download_year`). Raises ``ValueError`` (one line)
    for a wrong name, a missing split or a valid set inside the train sets, ``FileNotFoundError`` (where it
    looked, what it found there, how to get the rest) for a missing year, :class:`DownloadFailed`.
    """
    train = parse_sets(DEFAULT_TRAIN if train_sets is None else train_sets, "--train-sets")
    (valid,) = parse_sets(DEFAULT_VALID if valid_set is None else valid_set, "--valid-set", one=True)
    inside = [str(s) for s in train if s.meets(valid)]
    if inside:
        apart = next((v for v in (VocSet("2007", "test"), VocSet("2012", "val"), VocSet("2007", "val"))
                      if not any(s.meets(v) for s in train)), None)
        raise ValueError(f"--valid-set {valid}{' (the default)' if valid_set is None else ''} shares images with "
                         f"--train-sets {', '.join(inside)}: validating on training images measures memory, not "
                         "detection; choose a valid set apart from them" + (f", e.g. --valid-set {apart}" if apart else ""))
    from .voc import voc_place

    what, place = voc_place(data_dir)
    found = find_years(place) if place is not None else {}
    wanted = [y for y in YEARS if any(s.year == y for s in (*train, valid))]
    notes = []
    for year in (y for y in wanted if y not in found and download):
        found[year] = download_year(year, _download_into(place))
        notes.append(f"downloaded VOC{year}: {found[year].describe()}")
    missing = [y for y in wanted if y not in found]
    if missing:
        raise FileNotFoundError(_not_found(missing, found, place, what))
    for s in (*train, valid):
        _check_split(s, found[s.year], "--valid-set" if s == valid else "--train-sets")
    chosen = VocSets(train, valid, {y: found[y] for y in wanted})
    chosen.notes = notes + [chosen.describe()] + [
        f"note: {v.describe()} is here too, unused (--train-sets 07+12 trains on both years)"
        for y, v in found.items() if y not in wanted]
    return chosen


def _check_split(s: VocSet, year: VocYear, option: str) -> None:
    """A one-line ``ValueError`` naming ``option`` when ``year`` (found on disk) lacks ``s``'s split."""
    if s.split not in year.splits:
        hint = f" (unpack {OFFICIAL_TARS[s.year].split(' + ')[-1]} there)" if s.split == "test" else ""
        raise ValueError(f"{option} {s}: {year.describe()} has no {s.split} split{hint}")


def load_set(data_dir: Optional[str | Path], name: str, option: str = "--split") -> tuple[list["Record"], VocSet, VocYear]:
    """The records of one set, the set and the year folder they were read from: ``name`` is ``YEAR-SPLIT``
    (``2012-val``) or a bare split, which means VOC 2007's (``test``). Found as :func:`choose_sets` finds the
    years; a wrong name or a missing split is a one-line ``ValueError`` naming ``option``, a missing year a
    ``FileNotFoundError`` naming what is there."""
    from .voc import read_year, voc_place

    (s,) = parse_sets(name if "-" in name else f"2007-{name}", option, one=True)
    what, place = voc_place(data_dir)
    found = find_years(place) if place is not None else {}
    if s.year not in found:
        raise FileNotFoundError(_not_found([s.year], found, place, what).replace("Or train on", "Or use"))
    _check_split(s, found[s.year], option)
    return read_year(found[s.year], s.split), s, found[s.year]
