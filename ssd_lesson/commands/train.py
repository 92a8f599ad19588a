"""``python -m ssd_lesson train``: train the SSD with fastai and save a checkpoint after every epoch.

The command line of :mod:`ssd_lesson.model.train`: the data (the offline collage set or
Pascal VOC 2007), the model, the schedule and the loss options (one
:class:`~ssd_lesson.core.options.LossOptions`, by default :meth:`LossOptions.lesson_code`).
The checkpoint carries a :class:`~ssd_lesson.model.checkpoint.CheckpointRecord`: this exact
command, the loss options, the data, the seed and each epoch's validation numbers.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from .cli import add_loss_options, at_least, check_writable, loss_options_from, out_file, positive_float, positive_int

__all__ = ["train_main"]


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    from ..core.options import LossOptions
    from ..model.net import BODIES

    p = argparse.ArgumentParser(prog="python -m ssd_lesson train",
                                description="Train the lesson's SSD with fastai and save a checkpoint after every epoch.")
    p.add_argument("--data", choices=("collage", "voc"), default="collage",
                   help="collage: offline set made from photos in installed wheels; voc: Pascal VOC 2007 (train/val)")
    p.add_argument("--data-dir", default=None, help="voc: the dataset folder (default: $SSD_LESSON_VOC or fastai's); "
                   "collage: where to make the set (default runs/)")
    p.add_argument("--n-images", type=at_least(5), default=1000, help="collage: images in the set (20%% of them valid; at least 5)")
    p.add_argument("--body", choices=BODIES, default="resnet34")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True,
                   help="ImageNet weights for the body when loadable (a warning and random weights otherwise)")
    p.add_argument("--n-hidden", type=positive_int, default=256, help="channels of the head's conv blocks")
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--bs", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=1e-2, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--lr-find", action="store_true", help="run fastai's lr_find first and use its 'valley' suggestion")
    add_loss_options(p, LossOptions.lesson_code())
    p.add_argument("--seed", type=at_least(0), default=0)
    p.add_argument("--out", type=out_file, default=Path("runs/ssd_collage.pth"), help="checkpoint path")
    p.add_argument("--half", action="store_true", help="store the checkpoint's weights as float16 (half the size)")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint at --out")
    return p.parse_args(list(argv))


def train_main(argv: Sequence[str]) -> int:
    """``python -m ssd_lesson train ...``: returns the exit status (0 done, 1 or 2 refused, 130 on Ctrl-C)."""
    from ..core.options import DecodeOptions
    from ..data.collage import collage_records
    from ..data.images import VOC_CLASSES, find_voc, load_voc, make_dataloaders
    from ..model.checkpoint import CheckpointRecord, TrainingData
    from ..model.net import create_ssd_model
    from ..model.train import BatchLosses, EpochCheckpoint, fit, is_main_process, n_processes, set_seed, ssd_learner

    args = _parse(argv)
    options = loss_options_from(args)
    rank0 = is_main_process()
    say = print if rank0 else (lambda *a, **k: None)
    out = Path(args.out)
    if out.exists() and not args.force:
        say(f"error: {out} exists; pass --force to overwrite it, or choose another --out", file=sys.stderr)
        return 1
    check_writable(out, "--out")  # before the data and a whole epoch
    if args.data == "collage":
        train_recs, valid_recs, where = collage_records(args.n_images, args.seed, args.data_dir or "runs")
    else:
        where = find_voc(args.data_dir, warn=True)  # asked for: the full advice when it is not there
        if where is None:
            say("error: Pascal VOC 2007 not found (see the advice above); use --data collage to train offline",
                file=sys.stderr)
            return 2
        train_recs, valid_recs = load_voc(where, "train"), load_voc(where, "val")
    if not train_recs or not valid_recs:
        say(f"error: {where}: the {'train' if not train_recs else 'valid'} split is empty; need at least one image in each "
            "(validation losses and mAP are averages over the valid split)", file=sys.stderr)
        return 2
    set_seed(args.seed, reproducible=True)
    dls = make_dataloaders(train_recs, valid_recs, bs=args.bs, augment=True, seed=args.seed)
    model = create_ssd_model(args.body, pretrained=args.pretrained, n_hidden=args.n_hidden, class_names=VOC_CLASSES)
    batch_losses = BatchLosses()
    decode_options = DecodeOptions()  # what the mAP metrics decode with
    learn = ssd_learner(dls, model, options, cbs=[batch_losses], voc_metric=args.data == "voc",
                        decode_options=decode_options)
    collage = args.data == "collage"
    data = TrainingData(args.data, str(where), args.n_images if collage else None, args.seed if collage else None,
                        len(train_recs), len(valid_recs))
    record = CheckpointRecord(command="python -m ssd_lesson train " + " ".join(argv), loss_options=options,
                              decode_options=decode_options, data=data, seed=args.seed)
    ckpt = EpochCheckpoint(out, half=args.half, record=record)
    say(f"{args.data}: {len(train_recs)} train / {len(valid_recs)} valid images; body {args.body}; "
        f"{args.epochs} epochs of {len(dls.train)} batches of {args.bs}"
        + (f" shared by {n_processes()} processes" if n_processes() > 1 else "") + f"; loss: {options.describe()}"
        + f"; checkpoint -> {out}", flush=True)
    t0 = time.time()
    try:
        _, validation = fit(learn, args.epochs, args.lr, find_lr=args.lr_find, cbs=[ckpt], say=say)
    except KeyboardInterrupt:
        done = (f"the checkpoint of the last finished epoch ({ckpt.saved_epoch}) is {out}" if ckpt.saved_epoch
                else "no epoch finished; no checkpoint written" + (f" ({out} is left as it was)" if out.exists() else ""))
        say(f"\ninterrupted: {done}", file=sys.stderr)
        return 130
    minutes = (time.time() - t0) / 60
    if not rank0:
        return 0
    losses = batch_losses.losses
    n = max(1, min(10, len(losses) // 4))
    first, last = sum(losses[:n]) / n, sum(losses[-n:]) / n
    print(f"trained {args.epochs} epochs in {minutes:.1f} min; train loss per image: first {n} batches {first:.3f}, "
          f"last {n} {last:.3f} ({first / max(last, 1e-12):.1f}x lower)")
    print("validation: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in validation.items()))
    print(f"checkpoint: {out} ({out.stat().st_size / 2**20:.1f} MB); load it with ssd_lesson.model.checkpoint.load_checkpoint")
    return 0


if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:]))
