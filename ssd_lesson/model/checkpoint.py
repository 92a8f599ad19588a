"""Checkpoints: the model's weights, what rebuilds it, and a typed record of how it was made.

:func:`save_checkpoint` writes the weights with the model's
:class:`~ssd_lesson.model.config.ModelConfig` (body, size, head, anchor spec, class names) and its
:class:`~ssd_lesson.model.record.CheckpointRecord` (the command, the loss and decode options, the
data, seed, epoch, validation metrics, and the checkpoint it started from).
:func:`load_checkpoint` rebuilds the model and hangs the record on it as ``model.record``
(with the path it was read from), so evaluation and the notebooks use the loss it was trained
with. Files are read with ``torch.load(weights_only=True)``: plain values only, never code; files of
the older layout (the shipped ones: the configuration's fields side by side, the record in its older
layout) are read too. :func:`find_checkpoint` finds the shipped one in ``data/checkpoints/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from ..core.anchors import AnchorSpec
from ..io.files import atomic_write
from ..data.paths import DATA_DIR
from .config import ModelConfig, spec_from_dict, spec_to_dict
from .net import SSDModel, create_ssd_model
from .record import CheckpointRecord, InitCheckpoint, TrainingData

__all__ = ["CHECKPOINT_DIR", "CHECKPOINT_FORMAT", "OLDER_CHECKPOINT_FORMAT", "TRAINING_STATE_KEY", "TrainingData",
           "InitCheckpoint", "CheckpointRecord", "find_checkpoint", "save_checkpoint", "load_checkpoint",
           "load_training_state", "check_classes", "spec_to_dict", "spec_from_dict", "plain"]

CHECKPOINT_DIR = DATA_DIR / "checkpoints"
#: The layout :func:`save_checkpoint` writes: the weights, the model's configuration, its record.
CHECKPOINT_FORMAT = "ssd_lesson.checkpoint/2"
#: The older layout, still read: the configuration's fields side by side (the head's in ``head_kwargs``), the
#: record in its older layout (:meth:`CheckpointRecord.read`).
OLDER_CHECKPOINT_FORMAT = "ssd_lesson.checkpoint/1"
#: Where :func:`save_checkpoint` puts a run's training state (read by ``train --resume``, ignored when loading).
TRAINING_STATE_KEY = "training_state"
#: The keys each layout needs.
_KEYS = {CHECKPOINT_FORMAT: ("state_dict", "model"),
         OLDER_CHECKPOINT_FORMAT: ("state_dict", "spec", "class_names", "body", "size", "head_kwargs")}


def find_checkpoint(checkpoint: str | Path | None = None) -> Optional[Path]:
    """``checkpoint`` if given (it must exist), else the first ``data/checkpoints/*.pth`` by name, else None."""
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
        return Path(checkpoint)
    found = sorted(CHECKPOINT_DIR.glob("*.pth"))
    return found[0] if found else None


def save_checkpoint(model: SSDModel, path: str | Path, *, half: bool = False,
                    record: Optional[CheckpointRecord] = None, training_state: Optional[Mapping[str, Any]] = None) -> Path:
    """Save the weights, the model's :class:`ModelConfig` and ``record`` (default: the model's own
    ``record``, else an empty one); written atomically (a crash mid-save leaves the previous file
    intact). ``half`` stores float weights as float16. ``training_state`` (what ``train --resume`` needs to
    continue the run: :mod:`ssd_lesson.model.resume`) goes under its own key, which :func:`load_checkpoint` ignores."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    record = record if record is not None else (getattr(model, "record", None) or CheckpointRecord())
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu() for k, v in model.state_dict().items()}
    ckpt = dict(format=CHECKPOINT_FORMAT, state_dict=sd, model=plain(model.config.to_dict(), "model"),
                record=plain(record.to_dict(), "record"))
    if training_state is not None:
        ckpt[TRAINING_STATE_KEY] = plain(training_state, TRAINING_STATE_KEY)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:  # Ctrl-C / SIGTERM wait for the rename: the old file or the whole new one
        torch.save(ckpt, tmp)
    return path


def plain(value: Any, where: str) -> Any:
    """``value`` as the plain values a checkpoint may hold (it is read back with ``weights_only=True``, which
    refuses anything else): a numpy number becomes its Python number, a path its text, a tensor its CPU copy. Anything
    else is a ``TypeError`` naming where it is (``record.data.n_images``), at save time, not when reading back."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()  # before the plain types: numpy's float64 is a float, but pickles as numpy's
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"{where}: a key {k!r} ({type(k).__name__}); a checkpoint's keys are text")
        return {k: plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"{where}: a {type(value).__module__}.{type(value).__name__} ({value!r:.60}); a checkpoint holds "
                    "tensors and plain values only (numbers, text, lists, dicts)")


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
        # torch words it "Unsupported global: ..." or "unsupported GLOBAL posix.system whose module ... is blocked"
        unsupported = [ln for ln in lines if "unsupported global" in ln.lower()]
        if unsupported:
            raise ValueError(f"{path}: refused: it holds Python objects beyond tensors and plain values, which loading "
                             f"could run as code ({unsupported[0]}); ssd_lesson checkpoints hold none") from None
        why = next((ln for ln in lines if "invalid load key" in ln or "failed finding central directory" in ln
                    or "EOF" in ln), type(e).__name__)
        raise ValueError(f"{path}: not a checkpoint: torch.load cannot read it ({why.split('. ')[0][:120]}); "
                         "empty, truncated or another kind of file") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") not in _KEYS:
        raise ValueError(f"{path}: not an ssd_lesson checkpoint (saved by ssd_lesson.model.checkpoint.save_checkpoint)")
    keys = _KEYS[ckpt["format"]]
    for key in keys:
        if key not in ckpt:
            raise ValueError(f"{path}: the checkpoint lacks the key {key!r} (it needs {', '.join(keys)})")
    return ckpt


def _model_config(ckpt: Mapping[str, Any]) -> ModelConfig:
    """The checkpoint's :class:`ModelConfig`, from either layout."""
    if ckpt["format"] == CHECKPOINT_FORMAT:
        return ModelConfig.from_dict(ckpt["model"])
    return ModelConfig(body=ckpt["body"], size=ckpt["size"], spec=spec_from_dict(ckpt["spec"]),
                       class_names=tuple(ckpt["class_names"]), **ckpt["head_kwargs"])


def load_training_state(path: str | Path) -> Optional[dict]:
    """The training state saved with the checkpoint at ``path`` (``save_checkpoint(training_state=...)``), None
    when it has none; read as :func:`load_checkpoint` reads (``weights_only=True``, the same refusals)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return _read_checkpoint(path, "cpu").get(TRAINING_STATE_KEY)


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
        config = _model_config(ckpt)
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # a list for a dict, a size given as text, ...
        raise ValueError(f"{path}: the checkpoint's model configuration is malformed "
                         f"({type(e).__name__}: {e})") from None
    if spec is not None and spec != config.spec:
        raise ValueError(f"{path}: checkpoint was trained for anchor spec {config.spec}, not the requested {spec}")
    if class_names is not None:
        check_classes(config.class_names, class_names, path)
    try:
        record = CheckpointRecord.read(ckpt.get("record") or {}, older_layout=ckpt["format"] == OLDER_CHECKPOINT_FORMAT,
                                       path=path)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ValueError(f"{path}: the checkpoint's record is malformed ({type(e).__name__}: {e})") from None
    model = create_ssd_model(config, pretrained=False)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    except (RuntimeError, AttributeError) as e:
        raise ValueError(f"{path}: the checkpoint's 'state_dict' does not fit its {config.body} model "
                         f"({str(e).strip().splitlines()[0]})") from None
    model.record = record
    return model.eval()
