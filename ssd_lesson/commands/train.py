"""``python -m ssd_lesson train``: train the SSD with fastai and save a checkpoint after every epoch.

The command line of :mod:`ssd_lesson.model.train`: the data (the offline collage set or
Pascal VOC 2007), the model (``--spec``: the lesson's SSD, or SSD300 on 300 pixel images), the schedule and the
loss options (one :class:`~ssd_lesson.core.options.LossOptions`, by default :data:`LOSS_PRESETS`' for the spec).
The checkpoint carries a :class:`~ssd_lesson.model.record.CheckpointRecord`: the command with
every option spelled out (:func:`full_command`, so running it again makes the same model whatever
the defaults become), the loss options, the data (for collages, which photographs: ``--photos``), the
seed, the checkpoint it started from (``--init``, with its own record) and each epoch's validation numbers.
``--workers``, ``--amp`` and ``--resume`` (longer runs, ``torchrun``) are :mod:`ssd_lesson.commands.train_scale`'s.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

from .cli import (HelpFormatter, UserError, at_least, check_writable, in_file, nonnegative_float, out_file, positive_float,
                  positive_int)
from .option_flags import add_loss_options, fill_options, loss_options_from, unset_options
from .train_scale import add_scale_options, resolve_amp, resumed_run
from ..core.options import LossOptions

__all__ = ["train_main", "full_command"]


#: What ``train`` makes when only ``--data`` is given. On the collage set, the recipe of the shipped model's
#: first step (README): the tiny body from scratch, which trains on a laptop CPU in minutes (a resnet34
#: without ImageNet weights, which cannot be downloaded offline, took an hour). On Pascal VOC, the lesson's
#: resnet34 with ImageNet weights. An option given on the command line wins.
RECIPES = {
    "collage": dict(body="tiny", pretrained=False, n_hidden=128, epochs=16, out=Path("runs/ssd_collage.pth")),
    "voc": dict(body="resnet34", pretrained=True, n_hidden=256, epochs=10, out=Path("runs/ssd_voc.pth")),
}


#: The loss options each ``--spec`` trains with where no loss flag says otherwise: the lesson code's for the lesson's
#: SSD, the SSD paper's (softmax, 3 hard negatives per positive, smooth L1 on log-space offsets) for SSD300.
LOSS_PRESETS = {"lesson": LossOptions.training(), "ssd300": LossOptions.ssd_paper()}


def _recipe_help(name: str) -> str:
    """``(default: tiny with --data collage, resnet34 with --data voc)``."""
    shown = {True: "on", False: "off"}
    return "(default: " + ", ".join(f"{shown.get(r[name], r[name])} with --data {data}" for data, r in RECIPES.items()) + ")"


def _parser() -> argparse.ArgumentParser:
    from ..data import AUGMENTS
    from ..model import BODIES

    p = argparse.ArgumentParser(prog="python -m ssd_lesson train",
                                description="Train the lesson's SSD with fastai and save a checkpoint after every epoch.",
                                formatter_class=HelpFormatter)
    p.add_argument("--data", choices=("collage", "voc"), default="collage",
                   help="collage: offline set made from photos in installed wheels; voc: Pascal VOC (--train-sets, --valid-set)")
    p.add_argument("--data-dir", default=None, help="voc: the folder holding VOC 2007 and 2012 (VOCdevkit, fastai's pascal_2007 "
                   "and pascal_2012, or their parent; default: $SSD_LESSON_VOC or fastai's data folder); "
                   "collage: where to make the set (default runs/)")
    _add_voc_options(p)
    p.add_argument("--n-images", type=at_least(5), default=1000, help="collage: images in the set (20%% of them valid; at least 5)")
    p.add_argument("--photos", choices=("all", "train"), default="all",
                   help="collage: cut objects from all annotated photos, or keep ssd_lesson.data.collage.HELD_OUT_PHOTOS out")
    p.add_argument("--body", choices=BODIES, default=None, help=f"the backbone the head sits on {_recipe_help('body')}")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="ImageNet weights for the body when loadable (a warning and random weights otherwise) "
                   + _recipe_help("pretrained"))
    p.add_argument("--n-hidden", type=positive_int, default=None,
                   help=f"channels of the head's conv blocks {_recipe_help('n_hidden')}")
    p.add_argument("--epochs", type=positive_int, default=None, help=f"epochs of the one-cycle schedule {_recipe_help('epochs')}")
    p.add_argument("--bs", type=positive_int, default=32, help="images per batch")
    p.add_argument("--lr", type=positive_float, default=1e-2, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--wd", type=nonnegative_float, default=None, help="weight decay (default: fastai's, 0.01, decoupled)")
    p.add_argument("--box-penalty", type=nonnegative_float, default=0.0,
                   help="weight of mean(box_actns**2) added to the loss the gradient comes from, not to the reported "
                   "one (keeps the box activations off tanh's flat ends)")
    p.add_argument("--init", type=in_file, default=None,
                   help="start from this checkpoint's weights (its body, head and classes must match)")
    p.add_argument("--lr-find", action="store_true", help="run fastai's lr_find first and use its 'valley' suggestion")
    p.add_argument("--augment", choices=AUGMENTS, default="flip", help="training augmentation: none; flip mirrors half the images "
                   "(the lesson's); ssd adds the SSD paper's colour changes, zoom-out and random crop (ssd_lesson.data.augment)")
    p.add_argument("--spec", choices=tuple(LOSS_PRESETS), default="lesson",
                   help="lesson: the lesson's SSD (224 px images, 189 anchor boxes on 4x4, 2x2 and 1x1 grids, the head on the "
                   "body's last feature map); ssd300: SSD300 (300 px images, 8732 anchor boxes on grids 38 to 1, the head "
                   "on the body's feature maps at strides 8, 16 and 32 and three extra layers), with the SSD paper's "
                   "loss where no loss option says otherwise")
    add_loss_options(p, LOSS_PRESETS["lesson"], presets={f"--spec {name}": o for name, o in LOSS_PRESETS.items()})
    p.add_argument("--seed", type=at_least(0), default=0, help="seed of the collage set, the initial weights, the shuffling and the augmentation")
    p.add_argument("--out", type=out_file, default=None, help=f"checkpoint path {_recipe_help('out')}")
    p.add_argument("--half", action="store_true", help="store the checkpoint's weights as float16 (half the size)")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint at --out")
    add_scale_options(p)
    return p


def _add_voc_options(p: argparse.ArgumentParser) -> None:
    from ..data.voc_sets import DEFAULT_TRAIN, DEFAULT_VALID

    p.add_argument("--train-sets", default=None, help="voc: the sets trained on, YEAR-SPLIT joined by commas, e.g. "
                   f"2007-trainval,2012-trainval, or 07+12 for those two (default: {DEFAULT_TRAIN})")
    p.add_argument("--valid-set", default=None, help="voc: the one set validated on, apart from the train sets, e.g. "
                   f"2007-test (default: {DEFAULT_VALID}; 2012-test's annotations are not public)")
    p.add_argument("--download", action="store_true", help="voc: fetch a year not found with fastai's untar_data "
                   "(URLs.PASCAL_2007, URLs.PASCAL_2012) into the folder looked in")


def _voc_sets(args: argparse.Namespace):
    """The VOC sets asked for, found before torch is imported; the names spelled out in ``args`` for the record."""
    from ..data.voc_sets import DownloadFailed, choose_sets

    try:
        voc = choose_sets(args.data_dir, args.train_sets, args.valid_set, download=args.download)
    except FileNotFoundError as e:
        raise UserError(f"{e}\nOr train offline with --data collage.") from None
    except (ValueError, DownloadFailed) as e:
        raise UserError(str(e)) from None
    args.train_sets, args.valid_set = voc.train_names, str(voc.valid)
    return voc


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    """The options, with what the command line left unset taken from ``--data``'s recipe (:data:`RECIPES`)
    and, for the loss options, from ``--spec``'s preset (:data:`LOSS_PRESETS`)."""
    args = _parser().parse_args(list(argv), unset_options(LossOptions))
    for name, value in RECIPES[args.data].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    fill_options(args, LossOptions, LOSS_PRESETS[args.spec])
    return args


def full_command(args: argparse.Namespace) -> str:
    """The train command with every option of ``args`` spelled out (defaults too), so running it again
    makes the same model whatever the defaults become; ``--force`` is left to whoever reruns it, and
    options left unset (None) are left out, and so is ``--resume`` (the command is the run's recipe)."""
    parts = ["python -m ssd_lesson train"]
    for action in _parser()._actions:
        if not action.option_strings or action.dest in ("help", "force", "resume"):
            continue
        value, flag = getattr(args, action.dest), action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            parts.append(flag if value else f"--no-{flag[2:]}")
        elif action.nargs == 0:  # store_true
            parts += [flag] if value else []
        elif value is not None:
            parts += [flag, shlex.quote(str(value))]  # a path with a space stays one argument in a shell
    return " ".join(parts)


def train_main(argv: Sequence[str]) -> int:
    """``python -m ssd_lesson train ...``: returns the exit status (0 done, 1 or 2 refused, 130 on Ctrl-C)."""
    args = _parse(argv)  # first: --help and a wrong option answer without importing torch
    args, resumed = resumed_run(argv, args, _parser, _parse)  # --resume: the recorded options, and the run's state
    out = Path(args.out)
    if out.exists() and not args.force and resumed is None:  # before the data: never a download, then a refusal
        if os.environ.get("RANK", "0") == "0":  # torchrun's other processes stay quiet
            print(f"error: {out} exists; pass --force to overwrite it, or choose another --out", file=sys.stderr)
        return 1
    check_writable(out, "--out")  # before the data and a whole epoch
    if args.data == "voc":  # then the data, before torch and fastai: a wrong path or set name answers at once
        voc = _voc_sets(args)
    elif (args.train_sets, args.valid_set, args.download) != (None, None, False):
        raise UserError("--train-sets, --valid-set and --download are for --data voc")
    resolve_amp(args)  # --amp auto: the mode this machine runs, as the record spells it
    from ..core.options import DecodeOptions
    from ..data.collage import collage_records
    from ..data.images import make_dataloaders
    from ..data.voc import VOC_CLASSES
    from ..model.config import ModelConfig
    from ..model.net import create_ssd_model
    from ..model.precision import amp_callbacks
    from ..model.record import CheckpointRecord, InitCheckpoint, TrainingData
    from ..model.train import (BatchLosses, BoxActivationPenalty, EpochCheckpoint, draw_as_fresh_models, fit,
                               initial_model, is_main_process, n_processes, set_seed, ssd_learner)

    options = loss_options_from(args)
    rank0 = is_main_process()
    say = print if rank0 else (lambda *a, **k: None)
    init, start = None, None
    if resumed is not None:
        init = resumed.record.init
    elif args.init is not None:  # read once, here: a checkpoint that does not fit is refused before the data is made
        start = initial_model(args.init, args.body, args.n_hidden, VOC_CLASSES, head=args.spec)
        init = InitCheckpoint(path=str(args.init), sha256=hashlib.sha256(Path(args.init).read_bytes()).hexdigest(),
                              record=start.record.replace(path=None))
    if args.data == "collage":
        train_recs, valid_recs, where = collage_records(args.n_images, args.seed, args.data_dir or "runs",
                                                        photos=args.photos)
    else:
        where = voc.folder
        train_recs, valid_recs, notes = voc.load()
        say("\n".join(voc.notes + notes))
    if not train_recs or not valid_recs:
        say(f"error: {where}: the {'train' if not train_recs else 'valid'} split is empty; need at least one image in each "
            "(validation losses and mAP are averages over the valid split)", file=sys.stderr)
        return 2
    recorded = resumed and resumed.record.data
    if recorded and (recorded.n_train, recorded.n_valid) != (len(train_recs), len(valid_recs)):
        raise UserError(f"--resume {out}: {where} has {len(train_recs)} train / {len(valid_recs)} valid images, the "
                        f"recorded run {recorded.n_train} / {recorded.n_valid} (in {recorded.folder}); give its --data-dir")
    make_config = ModelConfig.ssd300 if args.spec == "ssd300" else ModelConfig  # --spec: size, anchors and head
    config = (resumed.model.config if resumed is not None else start.config if start is not None
              else make_config(body=args.body, n_hidden=args.n_hidden, class_names=VOC_CLASSES))
    set_seed(args.seed, reproducible=True)
    dls = make_dataloaders(train_recs, valid_recs, bs=args.bs, size=config.size, augment=args.augment, seed=args.seed,
                           num_workers=args.workers)
    if resumed is not None:
        model = resumed.model
    elif start is not None:
        model = start
        # The random draws of two fresh models' initial weights, on purpose: train --init made them here when it
        # built its models before filling them from the checkpoint, and the shipped checkpoint's recorded command
        # (README, step 2) reproduces its weights bit for bit only with the same draws before training.
        draw_as_fresh_models(start.config, times=2)
    else:
        model = create_ssd_model(config, pretrained=args.pretrained)
    batch_losses = BatchLosses()
    cbs = [batch_losses] + ([BoxActivationPenalty(args.box_penalty)] if args.box_penalty else []) + amp_callbacks(args.amp)
    decode_options = DecodeOptions.for_loss(options)  # the mAP metrics read the activations as the loss trains them
    learn = ssd_learner(dls, model, options, cbs=cbs, voc_metric=args.data == "voc", decode_options=decode_options)
    if args.wd is not None:
        learn.wd = args.wd
    collage = args.data == "collage"
    data = TrainingData(args.data, str(where), args.n_images if collage else None, len(train_recs), len(valid_recs),
                        args.photos if collage else None, None if collage else tuple(map(str, voc.train)),
                        None if collage else str(voc.valid))
    record = resumed.record if resumed is not None else CheckpointRecord(  # a resumed run keeps its own record
        command=full_command(args), loss_options=options, decode_options=decode_options, data=data, seed=args.seed, init=init)
    ckpt = EpochCheckpoint(out, half=args.half, record=record)
    say(f"{args.data}: {len(train_recs)} train / {len(valid_recs)} valid images; body {args.body}; "
        + (f"SSD300, {config.size} px images; " if config.head == "ssd300" else "")
        + f"{args.epochs} epochs of {len(dls.train)} batches of {args.bs}"
        + (f" shared by {n_processes()} processes (each runs its 1/{n_processes()} of them: a step sees "
           f"{n_processes()} x {args.bs} images)" if n_processes() > 1 else "") + f"; loss: {options.describe()}"
        + (f"; mixed precision {args.amp}" if args.amp != "off" else "") + f"; checkpoint -> {out}"
        + (f"; resuming after epoch {resumed.state['epoch']}" if resumed else "")
        + (f" (cut short on {len(resumed.state['rng'])} processes: from here the batches differ from that run's)"
           if resumed and len(resumed.state["rng"]) != n_processes() else ""), flush=True)
    t0 = time.time()
    try:
        _, validation = fit(learn, args.epochs, resumed.state["lr"] if resumed else args.lr, find_lr=args.lr_find,
                            cbs=[ckpt], say=say, resume=resumed and resumed.state)
    except KeyboardInterrupt:
        done = (f"the checkpoint of the last finished epoch ({ckpt.saved_epoch}) is {out}; continue with "
                f"python -m ssd_lesson train --resume {shlex.quote(str(out))}" if ckpt.saved_epoch
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
