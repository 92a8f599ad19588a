"""Which images a model has seen: notebook 10's model and the images it is scored on.

* :func:`lesson_model`: the shipped checkpoint, else notebook 09's short model, else an
  untrained one (a line says which).
* :func:`photos_seen`: the annotated photographs its training collages were cut from (its own
  and those of the checkpoint it started from), as its record says.
* :func:`held_out_records`: images it never trained on, and a line saying exactly what they
  hold out: VOC val; offline, collages of the photographs kept out of its training
  (``train --photos train``), else new arrangements of the photographs it trained on.
* :func:`seen_photo_records`: validation collages of the photographs it *did* train on, so
  that :func:`memory_table` can set the two side by side (how much of the mAP is memory).
"""
from __future__ import annotations

from typing import Any, Optional

from . import lesson  # its cache folder, collage size and short model (a test may change them there)

__all__ = ["checkpoint_summary", "photos_seen", "lesson_model", "held_out_records", "seen_photo_records",
           "memory_table"]


def checkpoint_summary(model: Any) -> str:
    """A few lines on a loaded checkpoint (``model.record``): its file and body, the command that made it
    (and the one that made the checkpoint it started from), the loss it trained with, the photographs
    its training collages were cut from and those kept out, its validation numbers."""
    record = model.record
    if record is None:
        return f"a {model.body_name} model not loaded from a checkpoint (nothing recorded)"
    where = lesson.shown_path(record.path) if record.path is not None else "(not saved)"
    lines = record.summary(digest=False).splitlines()  # a learner reads the commands, not the file's digest
    seen = photos_seen(model)
    if seen is not None:
        kept_out = record.photos_kept_out()
        at = next((i for i, ln in enumerate(lines) if ln.startswith("its validation numbers")), len(lines))
        lines.insert(at, f"photos its training objects were cut from: {', '.join(seen)}; "
                         f"kept out of training: {', '.join(kept_out) or 'none'}")
    return "\n".join([f"trained checkpoint: {where} ({model.body_name} body)", *lines])


def photos_seen(model: Any) -> Optional[tuple[str, ...]]:
    """The annotated photographs whose objects ``model``'s training collages (its own and those of the
    checkpoints it started from, as ``model.record`` says) were cut from; None when it was not trained
    on the collage set (or nothing is recorded). The record's rule, the one ``evaluate`` follows too
    (:meth:`~ssd_lesson.model.record.CheckpointRecord.photos_seen`)."""
    return None if model.record is None else model.record.photos_seen()


def lesson_model(verbose: bool = True) -> Any:
    """The model notebook 10 evaluates: the shipped checkpoint, else notebook 09's short model,
    else an untrained one (and a line saying which)."""
    from ..model.checkpoint import load_checkpoint
    from ..model.net import create_ssd_model

    path, short = lesson.find_checkpoint(), lesson.short_model_path()
    if path is not None:
        line = f"model: the trained checkpoint {lesson.shown_path(path)}"
    elif short.is_file():
        path, line = short, "no trained checkpoint in data/checkpoints: using the 2-epoch model notebook 9 saved (expect weak results)"
    else:
        line = "no trained checkpoint in data/checkpoints and no notebook 9 model: an untrained model (expect no detections)"
    if verbose:
        print(line)
    return load_checkpoint(path) if path is not None else create_ssd_model(**lesson.SHORT_MODEL)


def held_out_records(model: Any, n_valid: int = 40, verbose: bool = True) -> list:
    """Images ``model`` was not trained on: VOC 2007 val when present, else collages; the line printed
    says exactly what they hold out (:func:`_held_out_collages`)."""
    from ..data.voc import find_voc, load_voc

    voc = find_voc()
    if voc is not None:
        valid = load_voc(voc, "val")[:n_valid]
        line = f"held-out images: the first {len(valid)} of Pascal VOC 2007 val ({voc})"
    else:
        valid, line = _held_out_collages(model, n_valid)
    if verbose:
        print(line)
    return valid


def _recorded_seed(model: Any) -> int:
    """The collage seed ``model`` was trained with (its record), else the default 0."""
    seed = model.record.collage_seed() if model.record is not None else None
    return seed if seed is not None else 0


def _kept_out(model: Any) -> list[str]:
    """The photographs kept out of ``model``'s training and of the checkpoints it started from
    (:meth:`~ssd_lesson.model.record.CheckpointRecord.photos_kept_out`); none when nothing is recorded."""
    return [] if model.record is None else list(model.record.photos_kept_out())


def _held_out_collages(model: Any, n_valid: int) -> tuple[list, str]:
    """Collages ``model`` never saw, and a line saying what they hold out. When some annotated
    photographs were kept out of its training (``train --photos train``), collages cut from those
    photos only; else the validation split of its collage set (seed as recorded): new arrangements
    of the very photographs it trained on."""
    from ..data.collage import collage_records, photo_set
    from ..data.voc import VOC_CLASSES

    seed, kept_out = _recorded_seed(model), _kept_out(model)
    if kept_out:
        train, valid, _ = collage_records(lesson.COLLAGE_IMAGES, seed, root=lesson.cache_dir(), verbose=False, photos="held_out")
        records = (valid + train)[:n_valid]
        what = f"collages of photos kept out of its training ({', '.join(kept_out)})"
    else:
        records = lesson.collage_split(seed)[1][:n_valid]
        what = (f"validation collages (seed {seed}): new arrangements, on new background crops, of objects cut from "
                f"the same photos it trained on ({', '.join(photos_seen(model) or photo_set('all'))}); "
                "no photograph is held out")
    classes = sorted({VOC_CLASSES[int(c)] for r in records for c in r.labels})
    n_objects = sum(len(r.labels) for r in records)
    return records, (f"VOC not found: held-out images are {len(records)} {what}; "
                     f"{n_objects} objects of the classes {', '.join(classes)}")


def seen_photo_records(model: Any, n_valid: int = 40) -> tuple[list, str]:
    """Validation collages (never trained on) cut from the photographs ``model`` trained on: new
    arrangements of objects it has seen; and a line saying so. ``n_valid`` at most."""
    from ..data.collage import collage_records

    data = model.record.data if model.record is not None else None
    photos = data.photos if data is not None and data.photos else "all"
    valid = collage_records(lesson.COLLAGE_IMAGES, _recorded_seed(model), root=lesson.cache_dir(), verbose=False,
                            photos=photos)[1][:n_valid]
    return valid, f"{len(valid)} validation collages of photos it trained on ({', '.join(photos_seen(model) or ())})"


def memory_table(model: Any, n_valid: int = 40) -> Any:
    """Per-class VOC07 AP of ``model`` on collages of the photographs it trained on (:func:`seen_photo_records`)
    beside collages of those kept out of its training (:func:`held_out_records` offline): a DataFrame
    indexed by class, columns ``trained photos`` and ``kept-out photos``, one row per class both sets
    hold, then their ``mean``. A ``ValueError`` when no photograph was kept out of its training."""
    import pandas as pd

    from ..model.evaluate import evaluate_detections

    if not _kept_out(model):
        raise ValueError("memory_table: no photograph was kept out of this model's training (train --photos train)")
    seen, _ = seen_photo_records(model, n_valid)
    unseen, _ = _held_out_collages(model, n_valid)
    cols = {}
    for name, records in (("trained photos", seen), ("kept-out photos", unseen)):
        table = evaluate_detections(model, records, progress=False).table().set_index("class")
        cols[name] = table["ap_voc07"]
    both = pd.DataFrame(cols)
    classes = [c for c in both.index if c != "mean" and both.loc[c].notna().all()]
    shared = both.loc[classes]
    return pd.concat([shared, pd.DataFrame([shared.mean()], index=["mean"])]).rename_axis("class")
