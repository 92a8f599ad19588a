"""``python -m ssd_lesson evaluate``: a checkpoint's AP per class, Pascal VOC's way and COCO's.

:func:`evaluate_detections` runs a model on the images of a list of ``Record`` s (read at
their own size, as the annotations are) and returns the detections and the ground truth,
``difficult`` flags included, as per-image dicts; :func:`ssd_lesson.model.metrics.per_class_table`
turns them into the table the command prints: per class the boxes, VOC2007's 11-point AP,
VOC2010's all-point AP (both by the devkit's rules, :func:`ssd_lesson.model.metrics.voc_ap`) and
torchmetrics' COCO-style AP at IoU 0.5, with ``difficult`` as ``iscrowd``.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import torch

from ..commands.cli import UserError, check_writable, run_command

__all__ = ["Evaluation", "record_targets", "evaluate_detections", "evaluate_main"]


class Evaluation(NamedTuple):
    """Detections and ground truth of the same images, one dict per image, boxes ``(y0, x0, y1, x1)``
    in pixels of the original image, half-open as ``Record.boxes`` (pass ``inclusive=False`` to
    :func:`~ssd_lesson.model.metrics.voc_ap`, which :meth:`voc` and :meth:`table` do)."""

    preds: list[dict]
    targets: list[dict]
    class_names: tuple[str, ...]

    def voc(self, use_07_metric: bool = True, iou_threshold: float = 0.5):
        """:func:`~ssd_lesson.model.metrics.voc_ap` of these detections (a ``VOCResult``)."""
        from .metrics import voc_ap

        return voc_ap(self.preds, self.targets, iou_threshold=iou_threshold, use_07_metric=use_07_metric,
                      num_classes=len(self.class_names), inclusive=False)

    def table(self, iou_threshold: float = 0.5):
        """:func:`~ssd_lesson.model.metrics.per_class_table` of these detections (a ``pandas.DataFrame``)."""
        from .metrics import per_class_table

        return per_class_table(self.preds, self.targets, self.class_names, iou_threshold=iou_threshold)


def record_targets(records: Sequence) -> list[dict]:
    """Ground truth of ``records`` as :func:`~ssd_lesson.model.metrics.voc_ap` wants it (``difficult`` kept)."""
    return [dict(boxes=torch.as_tensor(r.boxes, dtype=torch.float64).reshape(-1, 4),
                 labels=torch.as_tensor(r.labels, dtype=torch.int64),
                 difficult=torch.as_tensor(r.difficult, dtype=torch.bool)) for r in records]


@torch.no_grad()
def evaluate_detections(model, records: Sequence, *, score_threshold: float = 0.05, nms_iou: float = 0.5,
                        max_per_image: int = 100, batch_size: int = 16, progress: bool = True) -> Evaluation:
    """Run ``model`` on every record's image and gather its detections and the ground truth.

    A low ``score_threshold`` by default, as AP rewards low-scored hits ranked below the rest.
    Images are read with :func:`ssd_lesson.data.images.load_image`, ``batch_size`` at a time, and
    resized for the model by :func:`ssd_lesson.model.infer.predict`, which gives the boxes back in
    pixels of each image. ``progress``: a fastprogress bar over the images.
    """
    from fastprogress.fastprogress import progress_bar

    from ..data.images import load_image
    from .infer import predict

    if len(records) == 0:
        raise ValueError("evaluate_detections: no records to evaluate")
    preds, batch = [], []
    # no bar at all when not asked: fastprogress's console bar prints a character even with display=False
    for i in progress_bar(range(len(records)), leave=False) if progress else range(len(records)):
        batch.append(load_image(records[i].image_path))
        if len(batch) == batch_size or i == len(records) - 1:
            for d in predict(model, batch, score_threshold=score_threshold, nms_iou=nms_iou, max_per_image=max_per_image):
                preds.append(dict(boxes=d.boxes.double().cpu(), scores=d.scores.cpu(), labels=d.labels.cpu()))
            batch = []
    return Evaluation(preds, record_targets(records), tuple(model.class_names))


# ---------------------------------------------------------------- the command
def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ssd_lesson evaluate",
                description="AP per class of a checkpoint: Pascal VOC2007 (11-point), VOC2010+ (all points) and "
                            "COCO-style AP@0.5 (torchmetrics), difficult objects ignored by all three.")
    p.add_argument("--checkpoint", default=None, help="default: the shipped data/checkpoints/ssd_collage.pth")
    p.add_argument("--data", choices=("collage", "voc"), default="collage",
                   help="collage: the offline set the checkpoint was trained on; voc: Pascal VOC 2007")
    p.add_argument("--split", choices=("train", "val", "trainval", "test"), default=None,
                   help="default: val for collage (the checkpoint's validation images), test for voc")
    p.add_argument("--data-dir", default=None, help="voc: the dataset folder (default: $SSD_LESSON_VOC or fastai's); "
                   "collage: where the set is made (default runs/)")
    p.add_argument("--n-images", type=int, default=None,
                   help="collage: images in the set (default: the checkpoint's training command's, else 1000)")
    p.add_argument("--seed", type=int, default=None, help="collage: its seed (default: the checkpoint's, else 0)")
    p.add_argument("--iou-threshold", type=float, default=0.5)
    p.add_argument("--score-threshold", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --csv file")
    args = p.parse_args(list(argv))
    if args.n_images is not None and args.n_images < 5:
        raise UserError(f"--n-images must be at least 5 (a fifth of the set is its validation split), got {args.n_images}")
    if not 0 <= args.iou_threshold < 1:
        raise UserError(f"--iou-threshold must be in [0, 1), got {args.iou_threshold}")
    if not 0 <= args.score_threshold < 1:
        raise UserError(f"--score-threshold must be in [0, 1), got {args.score_threshold}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.data == "voc" and (args.n_images is not None or args.seed is not None):
        raise UserError("--n-images and --seed are for --data collage")
    if args.csv is not None:
        csv = Path(args.csv)
        if csv.is_dir():
            raise UserError(f"--csv {csv} is a folder; give a file name")
        if not csv.parent.is_dir():
            raise UserError(f"--csv {csv}: the folder {csv.parent} does not exist")
        if csv.exists() and not args.force:
            raise UserError(f"{csv} exists; pass --force to overwrite it, or choose another --csv", code=1)
        check_writable(csv, "--csv")
    return args


def _load_model(args):
    from ..course.lesson import find_checkpoint
    from .net import load_checkpoint

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


def _records(args, model) -> tuple[list, str]:
    from ..data.voc import find_voc, load_voc

    if args.data == "collage":
        from .train import collage_records

        extra = getattr(model, "checkpoint_extra", {})  # what train recorded; older checkpoints: its defaults
        n = args.n_images or extra.get("n_images") or 1000
        seed = args.seed if args.seed is not None else int(extra.get("seed", 0))
        split = args.split or "val"
        _, valid, folder = collage_records(n, seed, args.data_dir or "runs")
        records = valid if split == "val" else load_voc(folder, split)
        return records, f"collage set {folder} ({n} images, seed {seed}), split {split}"
    with warnings.catch_warnings(record=True) as caught:  # find_voc's warning is many lines: one is enough here
        warnings.simplefilter("always")
        where = find_voc(args.data_dir)
    if where is None:
        looked = args.data_dir or "$SSD_LESSON_VOC or fastai's data folder"
        raise UserError(f"Pascal VOC 2007 not found (looked in {looked}); set SSD_LESSON_VOC=/path/to/pascal_2007 or pass "
                       "--data-dir, or evaluate offline with --data collage")
    for w in caught:  # anything else find_voc had to say
        print(f"warning: {str(w.message).splitlines()[0]}", file=sys.stderr)
    split = args.split or "test"
    try:
        records = load_voc(where, split)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"{where}: cannot read the {split} split ({e})") from None
    return records, f"Pascal VOC 2007 {where}, split {split}"


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
    args = _parse(argv)  # a wrong option, a missing file or folder: cli.run_command prints UserError's one line
    path, model = _load_model(args)
    from ..data.voc import VOC_CLASSES
    from .net import check_classes

    check_classes(model.class_names, VOC_CLASSES, path)  # before any work: outputs pair with classes by position
    records, what = _records(args, model)
    if not records:
        raise UserError(f"{what}: no images to evaluate")
    print(f"checkpoint {path}; {what}: {len(records)} images", flush=True)
    with contextlib.redirect_stdout(sys.stderr):  # the progress bar, on a terminal; stdout keeps the table
        ev = evaluate_detections(model, records, score_threshold=args.score_threshold, batch_size=args.batch_size)
    table = ev.table(iou_threshold=args.iou_threshold)
    n_det = sum(len(p["labels"]) for p in ev.preds)
    print(f"{n_det} detections (score > {args.score_threshold}); IoU > {args.iou_threshold} (VOC) / >= (COCO); "
          "difficult objects count neither way; '-' = no non-difficult box of that class")
    print(_format(table))
    if args.csv is not None:
        from ..data.files import atomic_write

        with atomic_write(args.csv) as tmp:  # a Ctrl-C leaves the old file or the whole table
            table.to_csv(tmp, index=False)
        print(f"table written to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(evaluate_main, sys.argv[1:]))
