"""Checkpoints: the model's weights, what rebuilds it, and a typed record of how it was made.

:func:`save_checkpoint` writes the weights with the anchor spec, class names, body and size,
and a :class:`CheckpointRecord`: the command with every option, the loss options it trained with,
the decode options its mAP was measured with, its data (for collages, which photographs their
objects were cut from), seed, epoch, validation metrics, and the checkpoint it started from
(:class:`InitCheckpoint`).
:func:`load_checkpoint` rebuilds the model and hangs the record on it as ``model.record``
(with the path it was read from), so evaluation and the notebooks use the loss it was trained
with. Files are read with ``torch.load(weights_only=True)``: plain values only, never code.
:func:`find_checkpoint` finds the shipped one in ``data/checkpoints/``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence

import torch

from ..core.anchors import AnchorSpec
from ..core.options import DecodeOptions, LossOptions
from ..io.files import atomic_write
from ..data.paths import DATA_DIR
from .net import SSDModel, create_ssd_model

__all__ = ["CHECKPOINT_DIR", "CHECKPOINT_FORMAT", "CHECKPOINT_KEYS", "TrainingData", "InitCheckpoint", "CheckpointRecord",
           "LEGACY_LOSS_OPTIONS", "find_checkpoint", "save_checkpoint", "load_checkpoint", "check_classes", "spec_to_dict",
           "spec_from_dict"]

CHECKPOINT_DIR = DATA_DIR / "checkpoints"
CHECKPOINT_FORMAT = "ssd_lesson.checkpoint/1"
CHECKPOINT_KEYS = ("state_dict", "spec", "class_names", "body", "size", "head_kwargs")
#: What ``train`` trained with before checkpoints recorded their loss options (its defaults then:
#: match on the anchor boxes, the L1 summed), unless the recorded command said otherwise.
LEGACY_LOSS_OPTIONS = LossOptions.lesson_code().replace(regression_reduction="sum")


@dataclass(frozen=True)
class TrainingData:
    """The images a checkpoint was trained on.

    kind: ``"collage"`` (the offline set, remade from ``n_images``, ``seed`` and ``photos``) or ``"voc"``;
    folder: where they were; n_train, n_valid: images in each split; photos: for collages, the
    photographs their objects were cut from (``ssd_lesson.data.collage.photo_set(photos)``: ``"all"``,
    the default, or ``"train"``, which keeps ``HELD_OUT_PHOTOS`` out); None for VOC.
    """

    kind: Literal["collage", "voc"]
    folder: str
    n_images: Optional[int] = None
    seed: Optional[int] = None
    n_train: Optional[int] = None
    n_valid: Optional[int] = None
    photos: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind == "collage" and self.photos is None:  # not given (or recorded before --photos): all of them
            object.__setattr__(self, "photos", "all")


@dataclass(frozen=True)
class InitCheckpoint:
    """The checkpoint a training run started from (``train --init``).

    path: as given to ``--init``; sha256: of the file's bytes when training started (so a changed file is
    noticed); command: the command recorded in it; photos: the collage photographs it was trained on
    (:attr:`TrainingData.photos`; None when it was not trained on collages).
    """

    path: str
    sha256: str
    command: Optional[str] = None
    photos: Optional[str] = None

    @classmethod
    def of(cls, path: str | Path) -> "InitCheckpoint":
        """The record of checkpoint ``path`` (loaded with :func:`load_checkpoint`, which builds its model)."""
        record = load_checkpoint(path).record
        data = record.data
        return cls(path=str(path), sha256=hashlib.sha256(Path(path).read_bytes()).hexdigest(), command=record.command,
                   photos=data.photos if data is not None and data.kind == "collage" else None)


@dataclass(frozen=True)
class CheckpointRecord:
    """How a checkpoint was made; every field may be unknown (None) for a model saved outside ``train``.

    command: the command line, every option spelled out (``train`` records so since issue 22;
    older checkpoints, the exact command typed); loss_options: the :class:`LossOptions` it trained
    with; decode_options: the :class:`DecodeOptions` its mAP metrics were decoded with; data: its
    :class:`TrainingData`; seed: training's seed; epoch: epochs finished; metrics: the last epoch's
    validation numbers by name; options: the command's parsed options by name (plain values; empty
    when not recorded); init: the checkpoint it started from (:class:`InitCheckpoint`), None when it
    started from scratch; note: a correction or remark added afterwards; path: the file it was read
    from (not saved).
    """

    command: Optional[str] = None
    loss_options: Optional[LossOptions] = None
    decode_options: DecodeOptions = DecodeOptions()
    data: Optional[TrainingData] = None
    seed: Optional[int] = None
    epoch: Optional[int] = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    init: Optional[InitCheckpoint] = None
    note: Optional[str] = None
    path: Optional[Path] = None

    def replace(self, **changes: Any) -> "CheckpointRecord":
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the file (``path`` is where it is, not what it holds)."""
        return dict(command=self.command, loss_options=None if self.loss_options is None else self.loss_options.to_dict(),
                    decode_options=self.decode_options.to_dict(),
                    data=None if self.data is None else dataclasses.asdict(self.data), seed=self.seed,
                    epoch=self.epoch, metrics={k: float(v) for k, v in self.metrics.items()}, options=dict(self.options),
                    init=None if self.init is None else dataclasses.asdict(self.init), note=self.note)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: Optional[Path] = None) -> "CheckpointRecord":
        """Inverse of :meth:`to_dict`; also reads the older ``extra`` dict (``data`` a folder name,
        ``n_images``, ``n_train``, ``n_valid`` beside it, loss options maybe missing: see :func:`_legacy`)."""
        if not isinstance(d.get("data"), (dict, type(None))) or "decode_options" not in d:
            return _legacy(d, path)
        return cls(command=d.get("command"),
                   loss_options=None if d.get("loss_options") is None else LossOptions.from_dict(d["loss_options"]),
                   decode_options=DecodeOptions.from_dict(d["decode_options"]),
                   data=None if d.get("data") is None else TrainingData(**d["data"]), seed=d.get("seed"),
                   epoch=d.get("epoch"), metrics=dict(d.get("metrics") or {}), **_added_in_issue_22(d), path=path)

    def summary(self) -> str:
        """Lines for a reader: the command, the checkpoint it started from, the loss, a note, the validation
        numbers (the unknown ones left out)."""
        lines = [f"made with: {self.command or '(command not recorded)'}"]
        if self.init is not None:
            lines.append(f"starting from {self.init.path} (sha256 {self.init.sha256[:12]}...), made with: "
                         f"{self.init.command or '(command not recorded)'}")
        if self.loss_options is not None:
            lines.append(f"its loss: {self.loss_options.describe()}")
        if self.note:
            lines.append(f"note: {self.note}")
        if self.metrics:
            lines.append("its validation numbers: " + ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items()))
        return "\n".join(lines)


def _flag(tokens: Sequence[str], name: str) -> Optional[str]:
    """The value after ``name`` in a command line (``--name value`` or ``--name=value``), else None."""
    for i, t in enumerate(tokens):
        if t == name and i + 1 < len(tokens):
            return tokens[i + 1]
        if t.startswith(name + "="):
            return t.split("=", 1)[1]
    return None


def _added_in_issue_22(d: Mapping[str, Any]) -> dict[str, Any]:
    """The record's ``options``, ``init`` and ``note`` from a saved dict (new or ``extra``); absent ones are unknown."""
    return dict(options=dict(d.get("options") or {}), note=d.get("note"),
                init=None if d.get("init") is None else InitCheckpoint(**d["init"]))


def _legacy(d: Mapping[str, Any], path: Optional[Path]) -> CheckpointRecord:
    """A record from the ``extra`` dict of checkpoints saved before :class:`CheckpointRecord` (the shipped ones:
    ``data/checkpoints/ssd_collage.pth`` and ``base/ssd_collage_anchors.pth`` record their loss options, full
    command, parsed options, collage photos and, the first, the checkpoint it started from)."""
    command = d.get("command")
    tokens = (command or "").split()
    if d.get("loss_options") is not None:
        loss = LossOptions.from_dict(d["loss_options"])
    elif command:  # what the command chose over the then defaults
        chosen = dict(match_on=_flag(tokens, "--match-on"), regression_reduction=_flag(tokens, "--regression"),
                      classification=_flag(tokens, "--loss"),
                      iou_threshold=None if _flag(tokens, "--iou-threshold") is None else float(_flag(tokens, "--iou-threshold")))
        loss = LEGACY_LOSS_OPTIONS.replace(**{k: v for k, v in chosen.items() if v is not None})
    else:
        loss = None
    data = None
    if d.get("data") is not None:
        folder = str(d["data"])
        m = re.search(r"collage-n(\d+)-seed(\d+)", folder)
        kind = _flag(tokens, "--data") or ("collage" if m else "voc")
        n_images = d.get("n_images") or (int(m.group(1)) if m else None)
        seed = d.get("seed") if d.get("seed") is not None else (int(m.group(2)) if m else None)
        data = TrainingData(kind, folder, n_images, seed if kind == "collage" else None, d.get("n_train"), d.get("n_valid"),
                            d.get("photos") if kind == "collage" else None)
    seed = d.get("seed") if d.get("seed") is not None else (data.seed if data is not None else None)
    return CheckpointRecord(command=command, loss_options=loss, data=data, seed=seed, epoch=d.get("epoch"),
                            metrics=dict(d.get("metrics") or {}), **_added_in_issue_22(d), path=path)


def find_checkpoint(checkpoint: str | Path | None = None) -> Optional[Path]:
    """``checkpoint`` if given (it must exist), else the first ``data/checkpoints/*.pth`` by name, else None."""
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
        return Path(checkpoint)
    found = sorted(CHECKPOINT_DIR.glob("*.pth"))
    return found[0] if found else None


def spec_to_dict(spec: AnchorSpec) -> dict:
    """An :class:`AnchorSpec` as plain lists (for saving)."""
    return dataclasses.asdict(spec)


def spec_from_dict(d: dict) -> AnchorSpec:
    """Inverse of :func:`spec_to_dict`."""
    tup = lambda x: tuple(tup(v) for v in x) if isinstance(x, (list, tuple)) else x  # noqa: E731
    return AnchorSpec(**{k: (None if v is None else tup(v)) for k, v in d.items()})


def save_checkpoint(model: SSDModel, path: str | Path, *, half: bool = False,
                    record: Optional[CheckpointRecord] = None) -> Path:
    """Save weights, anchor spec, class names, body, size and ``record`` (default: the model's own
    ``record``, else an empty one); written atomically (a crash mid-save leaves the previous file
    intact). ``half`` stores float weights as float16."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    record = record if record is not None else (getattr(model, "record", None) or CheckpointRecord())
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu() for k, v in model.state_dict().items()}
    ckpt = dict(format=CHECKPOINT_FORMAT, state_dict=sd, spec=spec_to_dict(model.spec),
                class_names=list(model.class_names), body=model.body_name, size=model.size,
                head_kwargs=model.head_kwargs, record=record.to_dict())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:  # Ctrl-C / SIGTERM wait for the rename: the old file or the whole new one
        torch.save(ckpt, tmp)
    return path


def check_classes(class_names: Sequence[str], expected: Sequence[str], checkpoint: str | Path) -> None:
    """Refuse a checkpoint whose classes are not ``expected`` (names, in order): its class outputs would be
    paired with the data's classes by position. ``ValueError`` naming the checkpoint file and the difference."""
    got, want = tuple(class_names), tuple(expected)
    if got == want:
        return
    if len(got) != len(want):
        raise ValueError(f"{checkpoint}: the checkpoint has {len(got)} classes, the data {len(want)} "
                         f"({', '.join(want[:3])}{', ...' if len(want) > 3 else ''}); it was trained for other classes")
    if sorted(got) == sorted(want):
        i = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
        raise ValueError(f"{checkpoint}: the checkpoint has the data's {len(want)} classes in another order "
                         f"(its class {i} is {got[i]!r}, the data's is {want[i]!r}); its outputs would be paired "
                         "with the wrong classes")
    other = [n for n in got if n not in want]
    raise ValueError(f"{checkpoint}: the checkpoint's classes are not the data's: it has {other[:3]} "
                     f"{'and more ' if len(other) > 3 else ''}where the data has {[n for n in want if n not in got][:3]}")


def _read_checkpoint(path: Path, map_location: Any) -> dict:
    """The checkpoint's dict, read with ``weights_only=True``: tensors and plain values only, so a file
    from elsewhere cannot run code. Anything else is a ``ValueError`` naming the file."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # empty, truncated, random bytes, or pickled objects beyond plain values
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        unsupported = [ln for ln in lines if "Unsupported global" in ln]
        if unsupported:
            raise ValueError(f"{path}: refused: it holds Python objects beyond tensors and plain values, which loading "
                             f"could run as code ({unsupported[0]}); ssd_lesson checkpoints hold none") from None
        why = next((ln for ln in lines if "invalid load key" in ln or "failed finding central directory" in ln
                    or "EOF" in ln), type(e).__name__)
        raise ValueError(f"{path}: not a checkpoint: torch.load cannot read it ({why.split('. ')[0][:120]}); "
                         "empty, truncated or another kind of file") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an ssd_lesson checkpoint (saved by ssd_lesson.model.checkpoint.save_checkpoint)")
    for key in CHECKPOINT_KEYS:
        if key not in ckpt:
            raise ValueError(f"{path}: the checkpoint lacks the key {key!r} (it needs {', '.join(CHECKPOINT_KEYS)})")
    return ckpt


def load_checkpoint(path: str | Path, *, spec: Optional[AnchorSpec] = None,
                    class_names: Optional[Sequence[str]] = None, map_location: Any = "cpu") -> SSDModel:
    """Rebuild the model saved by :func:`save_checkpoint` (in eval mode, float32), its
    :class:`CheckpointRecord` in ``model.record`` (``record.path`` is ``path``).

    ``spec`` / ``class_names``, when given, must equal the checkpoint's: a model's
    outputs only mean something for the anchors and classes it was trained on. The file is
    read with ``torch.load(weights_only=True)``; one that is not a checkpoint (empty,
    truncated, anything else) or lacks a key is a ``ValueError`` naming the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    ckpt = _read_checkpoint(path, map_location)
    try:
        saved_spec = spec_from_dict(ckpt["spec"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: the checkpoint's 'spec' is not an anchor spec ({e})") from None
    if spec is not None and spec != saved_spec:
        raise ValueError(f"{path}: checkpoint was trained for anchor spec {saved_spec}, not the requested {spec}")
    if class_names is not None:
        check_classes(ckpt["class_names"], class_names, path)
    try:
        record = CheckpointRecord.from_dict(ckpt.get("record", ckpt.get("extra")) or {}, path)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: the checkpoint's record is malformed ({e})") from None
    names = ckpt["class_names"]
    model = create_ssd_model(ckpt["body"], pretrained=False, spec=saved_spec, n_classes=len(names),
                             class_names=names, size=ckpt["size"], **ckpt["head_kwargs"])
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    except (RuntimeError, AttributeError) as e:
        raise ValueError(f"{path}: the checkpoint's 'state_dict' does not fit its {ckpt['body']} model "
                         f"({str(e).strip().splitlines()[0]})") from None
    model.record = record
    return model.eval()
