"""``python -m ssd_lesson evaluate``: a checkpoint's AP per class, Pascal VOC's way and COCO's.

The command line of :mod:`ssd_lesson.model.evaluate`. The checkpoint's
:class:`~ssd_lesson.model.record.CheckpointRecord` says which collage set it was trained
on (its size, seed and photographs: its validation split is the default data; for a checkpoint
trained with ``--photos train``, that of collages cut from the photographs kept out), how its mAP was
decoded, and what loss it trained with (printed); options given on the command line win. The
decoding options and the hit IoU are made from the fields of
:class:`~ssd_lesson.core.options.DecodeOptions` and :class:`~ssd_lesson.core.options.EvalOptions`
(:mod:`ssd_lesson.commands.option_flags`).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Sequence

from ..io.files import REGULAR, output_kind
from .cli import (HelpFormatter, UserError, at_least, check_writable, nonnegative_int, out_file_or_stream, positive_int,
                  run_command)
from .option_flags import add_options

__all__ = ["evaluate_main"]

#: The collage set evaluated when neither the options nor the checkpoint's record say which.
DEFAULT_COLLAGE = dict(n_images=1000, seed=0)


def _parser() -> argparse.ArgumentParser:
    from ..core.options import DecodeOptions, EvalOptions

    p = argparse.ArgumentParser(prog="python -m ssd_lesson evaluate", formatter_class=HelpFormatter,
                description="AP per class of a checkpoint: Pascal VOC2007 (11-point), VOC2010+ (all points) and "
                            "COCO-style AP (torchmetrics) at the hit IoU, difficult objects ignored by all three.")
    p.add_argument("--checkpoint", default=None, help="the checkpoint to score (default: the shipped "
                   "data/checkpoints/ssd_collage.pth)")
    p.add_argument("--data", choices=("collage", "voc"), default="collage",
                   help="collage: the offline set the checkpoint was trained on; voc: Pascal VOC 2007 or 2012 (--split)")
    p.add_argument("--split", default=None,
                   help="collage: train, val, trainval or test (default val: the checkpoint's validation images); "
                   "voc: a set YEAR-SPLIT, e.g. 2007-test or 2012-val, or a bare split of VOC 2007 (default 2007-test)")
    p.add_argument("--data-dir", default=None, help="voc: the dataset folder (default: $SSD_LESSON_VOC or fastai's); "
                   "collage: where the set is made (default runs/)")
    p.add_argument("--n-images", type=at_least(5), default=None,
                   help="collage: images in the set, at least 5 (default: the checkpoint's, else 1000)")
    p.add_argument("--seed", type=nonnegative_int, default=None, help="collage: its seed (default: the checkpoint's, else 0)")
    p.add_argument("--photos", choices=("trained", "held_out"), default=None,
                   help="collage: cut from the photographs the checkpoint trained on, or from those kept out of its "
                        "training (ssd_lesson.data.collage.HELD_OUT_PHOTOS); default: held_out for a checkpoint "
                        "trained with --photos train, else trained")
    add_options(p, EvalOptions, EvalOptions(), leave_out={"ap_rule": "the table shows both VOC rules"})
    add_options(p, DecodeOptions, default_from="what the checkpoint's mAP was measured with")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images run through the model at once")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--csv", type=out_file_or_stream, default=None,
                   help="also write the table to this CSV file (or, written in place: /dev/stdout, a FIFO)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --csv file")
    return p


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = _parser()
    args = p.parse_args(list(argv))
    if args.data == "voc" and (args.n_images is not None or args.seed is not None or args.photos is not None):
        p.error("argument --n-images/--seed/--photos: only for --data collage")
    if args.csv is not None and not args.csv.parent.is_dir():
        p.error(f"argument --csv: the folder {args.csv.parent} does not exist")
    if args.csv is not None and output_kind(args.csv) == REGULAR and not args.force:  # a stream replaces nothing
        raise UserError(f"{args.csv} exists; pass --force to overwrite it, or choose another --csv", code=1)
    if args.csv is not None:
        check_writable(args.csv, "--csv", streams=True)
    return args


def _load_model(args):
    import torch

    from ..model.checkpoint import find_checkpoint, load_checkpoint

    try:
        path = find_checkpoint(args.checkpoint)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if path is None:
        raise UserError("no checkpoint in data/checkpoints; pass --checkpoint PATH (python -m ssd_lesson train makes one)")
    try:
        model = load_checkpoint(path)
    except Exception as e:  # not a checkpoint, truncated, ...: say so in one line
        raise UserError(f"{path}: cannot load the checkpoint ({type(e).__name__}: {e})") from None
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        model = model.to(torch.device(device))
    except (RuntimeError, AssertionError) as e:
        raise UserError(f"--device {args.device}: {e}") from None
    return path, model


def _records(args, record) -> tuple[list, str]:
    from ..data.collage import collage_records
    from ..data.voc import load_voc

    if args.data == "collage":
        trained = record.data if record.trained_on_collages() else None
        n = args.n_images or (trained.n_images if trained else None) or DEFAULT_COLLAGE["n_images"]
        seed = next(s for s in (args.seed, record.collage_seed(), DEFAULT_COLLAGE["seed"]) if s is not None)
        own = (trained.photos if trained else None) or "all"  # the photographs its own training collages were cut from
        kept_out = record.photos_kept_out()  # the record's rule: its --init chain counts too
        choice = args.photos or ("held_out" if kept_out else "trained")
        if choice == "held_out" and not kept_out:
            print("warning: --photos held_out: this checkpoint (or one it started from) trained on those photographs "
                  "too, so they are not held out of it", file=sys.stderr)
        photos = "held_out" if choice == "held_out" else own
        split = args.split or "val"
        if split not in ("train", "val", "trainval", "test"):
            raise UserError(f"--split {split}: a collage set has the splits train, val, trainval and test")
        _, valid, folder = collage_records(n, seed, args.data_dir or "runs", photos=photos)
        records = valid if split == "val" else load_voc(folder, split)
        kept = "; photographs kept out of its training" if kept_out and photos == "held_out" else ""
        return records, f"collage set {folder} ({n} images, seed {seed}, {photos} photos{kept}), split {split}"
    from ..data.voc_sets import load_set, parse_sets

    try:
        records, scored, year = load_set(args.data_dir, args.split or "2007-test")
    except FileNotFoundError as e:  # its first line says where it looked and what is there; the rest is train's advice
        raise UserError(f"{str(e).splitlines()[0]}; set SSD_LESSON_VOC=/path/to/the/data or pass --data-dir, or "
                        "evaluate offline with --data collage") from None
    except ValueError as e:
        raise UserError(str(e)) from None
    trained = record.data.train_sets if record.data is not None and record.data.kind == "voc" else None
    seen = [name for name in trained or () if parse_sets(name, "--split")[0].meets(scored)]
    if seen:  # as --photos held_out warns for collages: scoring training images measures memory
        print(f"warning: --split {scored}: this checkpoint trained on {', '.join(seen)}, which shares its images; "
              "its AP here is not a held-out score", file=sys.stderr)
    return records, f"Pascal VOC {scored} from {year.root}"


def _format(table) -> str:
    cols = ["class", "gt_boxes", "difficult", "ap_voc07", "ap_all_point", "ap_coco50"]
    heads = ["class", "GT boxes", "difficult", "AP VOC07", "AP all-point", "COCO AP@0.5"]
    rows = [[str(r["class"]), str(int(r["gt_boxes"])), str(int(r["difficult"]))]
            + ["-" if r[c] != r[c] else f"{r[c]:.4f}" for c in cols[3:]] for _, r in table.iterrows()]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    out = [line(heads), "  ".join("-" * w for w in widths)] + [line(r) for r in rows[:-1]]
    return "\n".join(out + ["  ".join("-" * w for w in widths), line(rows[-1])])


def evaluate_main(argv: Sequence[str]) -> int:
    """``python -m ssd_lesson evaluate ...``: 0 done; 2 wrong options or missing data; 1 an existing --csv."""
    args = _parse(argv)  # a wrong option, a missing file or folder: run_command prints UserError's one line
    from ..core.options import DecodeOptions, EvalOptions
    from ..model.record import CheckpointRecord  # after the options: --help answers without torch
    from ..model.evaluate import evaluate_detections
    from .option_flags import options_from

    path, model = _load_model(args)
    from ..data.voc import VOC_CLASSES
    from ..model.checkpoint import check_classes

    try:  # before any work: outputs pair with classes by position
        check_classes(model.class_names, VOC_CLASSES, path)
    except ValueError as e:
        raise UserError(str(e)) from None
    record = model.record or CheckpointRecord(path=path)
    records, what = _records(args, record)
    if not records:
        raise UserError(f"{what}: no images to evaluate")
    options = options_from(args, DecodeOptions, base=record.decode_options)  # the command line's over the record's
    eval_options = options_from(args, EvalOptions)
    print(f"checkpoint {path}; {what}: {len(records)} images", flush=True)
    if record.loss_options is not None:
        print(f"trained with the loss: {record.loss_options.describe()}")
    with contextlib.redirect_stdout(sys.stderr):  # the progress bar, on a terminal; stdout keeps the table
        ev = evaluate_detections(model, records, options, batch_size=args.batch_size)
    table = ev.table(eval_options)
    n_det = sum(len(p["labels"]) for p in ev.preds)
    print(f"{n_det} detections (score > {options.score_threshold:g}, NMS at IoU {options.nms_iou:g}, at most "
          f"{options.max_per_image} per image); hit IoU > {eval_options.hit_iou:g} (VOC) / >= (COCO); "
          "difficult objects count neither way; '-' = no non-difficult box of that class")
    print(_format(table))
    if args.csv is not None:
        from ..io.files import output_text

        with output_text(args.csv) as f:  # a file: a Ctrl-C leaves the old one or the whole table; a stream: in place
            table.to_csv(f, index=False)
        print(f"table written to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(evaluate_main, sys.argv[1:]))
