"""A checkpoint's record: how it was made, each fact stored once, and the questions asked of it.

:class:`CheckpointRecord` holds the command that made the checkpoint (every option spelled out: the
recipe to make it again, kept as text and never parsed back), the loss options it trained with, the
decode options its mAP was measured with, its data (:class:`TrainingData`), the seed, the epochs
finished, the validation numbers, and the checkpoint it started from (:class:`InitCheckpoint`, which
carries that checkpoint's own record, so a chain of ``train --init`` runs is recorded whole).

What ``evaluate`` and the notebooks ask of it are its methods, one rule for both:
:meth:`~CheckpointRecord.photos_seen` (the annotated photographs whose objects its training collages
were cut from, the starting checkpoints' included) and :meth:`~CheckpointRecord.photos_kept_out`
(those of ``HELD_OUT_PHOTOS`` it never saw). :meth:`CheckpointRecord.read` also reads the record's
older layout, the one of the shipped checkpoints. Plain values only: no torch here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from ..core.options import DecodeOptions, LossOptions

__all__ = ["TrainingData", "InitCheckpoint", "CheckpointRecord"]


@dataclass(frozen=True)
class TrainingData:
    """The images a checkpoint was trained on.

    kind: ``"collage"`` (the offline set, remade from ``n_images``, the record's ``seed`` and ``photos``) or
    ``"voc"``; folder: where they were (None when not recorded; for VOC sets of two years, each year's folder,
    joined by ``os.pathsep``); n_images: collages in the set; n_train, n_valid: images in each split; photos:
    for collages, the photographs their objects were cut from (``ssd_lesson.data.collage.photo_set(photos)``:
    ``"all"``, the default, or ``"train"``, which keeps ``HELD_OUT_PHOTOS`` out); None for VOC.
    train_sets, valid_set: for VOC, the sets by name (``("2007-trainval", "2012-trainval")``, ``"2007-test"``;
    a record made before they could be chosen gets the only ones train used then, ``2007-train`` and
    ``2007-val``); None for collages.
    """

    kind: Literal["collage", "voc"]
    folder: Optional[str] = None
    n_images: Optional[int] = None
    n_train: Optional[int] = None
    n_valid: Optional[int] = None
    photos: Optional[str] = None
    train_sets: Optional[tuple[str, ...]] = None
    valid_set: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in ("collage", "voc"):
            raise ValueError(f"TrainingData.kind must be 'collage' or 'voc', got {self.kind!r}")
        if self.kind == "collage" and self.photos is None:  # not given (or recorded before --photos): all of them
            object.__setattr__(self, "photos", "all")
        if self.kind == "voc":  # not given (or recorded before the sets could be chosen): the lesson's 2007 split
            from ..data.voc_sets import DEFAULT_TRAIN, DEFAULT_VALID

            given = DEFAULT_TRAIN if self.train_sets is None else self.train_sets
            object.__setattr__(self, "train_sets", tuple(given.split(",") if isinstance(given, str) else given))
            object.__setattr__(self, "valid_set", self.valid_set or DEFAULT_VALID)


@dataclass(frozen=True)
class InitCheckpoint:
    """The checkpoint a training run started from (``train --init``).

    path: as given to ``--init``; sha256: of the file's bytes when training started (so a changed file is
    noticed); record: its own :class:`CheckpointRecord` (without ``path``), as it was then.
    """

    path: str
    sha256: str
    record: "CheckpointRecord" = field(default_factory=lambda: CheckpointRecord())

    @property
    def command(self) -> Optional[str]:
        """The command that made it (None when not recorded)."""
        return self.record.command


@dataclass(frozen=True)
class CheckpointRecord:
    """How a checkpoint was made; every field may be unknown (None) for a model saved outside ``train``.

    command: the command line, every option spelled out (older checkpoints: the exact command typed);
    loss_options: the :class:`LossOptions` it trained with; decode_options: the :class:`DecodeOptions`
    its mAP metrics were decoded with; data: its :class:`TrainingData`; seed: training's seed (for
    collages, also the set's); epoch: epochs finished; metrics: the last epoch's validation numbers by
    name; init: the checkpoint it started from (:class:`InitCheckpoint`), None when it started from
    scratch; note: a correction or remark added afterwards; path: the file it was read from (not saved).
    """

    command: Optional[str] = None
    loss_options: Optional[LossOptions] = None
    decode_options: DecodeOptions = DecodeOptions()
    data: Optional[TrainingData] = None
    seed: Optional[int] = None
    epoch: Optional[int] = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    init: Optional[InitCheckpoint] = None
    note: Optional[str] = None
    path: Optional[Path] = None

    def replace(self, **changes: Any) -> "CheckpointRecord":
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ the questions asked of it
    def trained_on_collages(self) -> bool:
        """Whether it was trained on the offline collage set (as recorded)."""
        return self.data is not None and self.data.kind == "collage"

    def collage_seed(self) -> Optional[int]:
        """The seed its collage set was made with (``train`` makes the set with the training seed); None when it
        was not trained on collages, or the seed is not recorded."""
        return self.seed if self.trained_on_collages() else None

    def photos_seen(self) -> Optional[tuple[str, ...]]:
        """The annotated photographs (file names, sorted) whose objects its training collages were cut from,
        the checkpoint it started from included (and so on down the ``--init`` chain); None when it was not
        trained on the collage set (VOC, or nothing recorded). A start not trained on collages, or whose
        record does not say, counts as having seen every photograph: a claim that photographs were kept out
        must hold for the whole chain."""
        from ..data.collage import photo_set

        if not self.trained_on_collages():
            return None
        seen = set(photo_set(self.data.photos or "all"))
        if self.init is not None:
            seen |= set(self.init.record.photos_seen() or photo_set("all"))
        return tuple(sorted(seen))

    def photos_kept_out(self) -> tuple[str, ...]:
        """The photographs of ``HELD_OUT_PHOTOS`` that neither its training nor that of the checkpoints it
        started from saw (``train --photos train`` all the way down); empty when none were kept out, or it
        was not trained on the collage set."""
        from ..data.collage import HELD_OUT_PHOTOS

        seen = self.photos_seen()
        return () if seen is None else tuple(p for p in HELD_OUT_PHOTOS if p not in seen)

    def summary(self, digest: bool = True) -> str:
        """Lines for a reader: the command, the checkpoint it started from (with ``digest``, the start of its
        sha256), the loss, a note, the validation numbers (the unknown ones left out)."""
        lines = [f"made with: {self.command or '(command not recorded)'}"]
        if self.init is not None:
            sha = f" (sha256 {self.init.sha256[:12]}...)" if digest else ""
            lines.append(f"starting from {self.init.path}{sha}, made with: "
                         f"{self.init.command or '(command not recorded)'}")
        if self.loss_options is not None:
            lines.append(f"its loss: {self.loss_options.describe()}")
        if self.note:
            lines.append(f"note: {self.note}")
        if self.metrics:
            lines.append("its validation numbers: " + ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items()))
        return "\n".join(lines)

    # ------------------------------------------------------------ plain values, both ways
    def to_dict(self) -> dict[str, Any]:
        """Plain values for the file (``path`` is where it is, not what it holds)."""
        return dict(command=self.command, loss_options=None if self.loss_options is None else self.loss_options.to_dict(),
                    decode_options=self.decode_options.to_dict(),
                    data=None if self.data is None else dataclasses.asdict(self.data), seed=self.seed,
                    epoch=self.epoch, metrics={k: float(v) for k, v in self.metrics.items()},
                    init=None if self.init is None else dict(path=self.init.path, sha256=self.init.sha256,
                                                             record=self.init.record.to_dict()),
                    note=self.note)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: Optional[Path] = None) -> "CheckpointRecord":
        """Inverse of :meth:`to_dict`."""
        init = d.get("init")
        return cls(command=d.get("command"),
                   loss_options=None if d.get("loss_options") is None else LossOptions.from_dict(d["loss_options"]),
                   decode_options=DecodeOptions.from_dict(d.get("decode_options") or {}),
                   data=None if d.get("data") is None else TrainingData(**d["data"]), seed=d.get("seed"),
                   epoch=d.get("epoch"), metrics=dict(d.get("metrics") or {}), note=d.get("note"), path=path,
                   init=None if init is None else InitCheckpoint(init["path"], init["sha256"],
                                                                 cls.from_dict(init.get("record") or {})))

    @classmethod
    def read(cls, d: Mapping[str, Any], *, older_layout: bool, path: Optional[Path] = None) -> "CheckpointRecord":
        """The record saved as ``d``: :meth:`from_dict`'s layout, or (``older_layout``) the one of the shipped
        checkpoints, which also kept the parsed options beside the command, the collage seed beside the
        seed, and of the starting checkpoint only its command and photographs (read into its record)."""
        if not older_layout:
            return cls.from_dict(d, path)
        data, init = d.get("data"), d.get("init")
        seed = d.get("seed") if d.get("seed") is not None else (data or {}).get("seed")
        start = None
        if init is not None:
            start_data = None if init.get("photos") is None else TrainingData("collage", photos=init["photos"])
            start = dict(path=init["path"], sha256=init["sha256"],
                         record=dict(command=init.get("command"),
                                     data=None if start_data is None else dataclasses.asdict(start_data)))
        newer = {**{k: v for k, v in d.items() if k != "options"}, "seed": seed, "init": start,
                 "data": None if data is None else {k: v for k, v in data.items() if k != "seed"}}
        return cls.from_dict(newer, path)
