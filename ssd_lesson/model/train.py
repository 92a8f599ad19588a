"""Training the SSD the fastai way: a ``Learner``, ``lr_find``, ``fit_one_cycle``.

The loss is the foundation's :func:`~ssd_lesson.core.loss.ssd_loss`, divided by the batch
size (fastai's reported losses are then per image and comparable across ``--bs``;
Adam hardly cares about the scale). Its classification and regression parts, mAP@0.5
and COCO mAP are recorded as metrics every epoch. ``python -m ssd_lesson train``
is :func:`train_main`. Its defaults are the lesson's code (match on anchors, box loss
averaged over the positives); ``--regression sum`` (the article's wording) doubled mAP@0.5
on the offline collage set, where the mean's box gradient is too weak to train a body
from scratch, and made the shipped checkpoint. It also runs under ``torchrun`` / ``accelerate launch`` through fastai's
``distrib_ctx`` (needs the ``accelerate`` package); each process then validates its share
and the mAP metrics gather all shares.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from fastai.callback.core import Callback
from fastai.distributed import DistributedDL, rank_distrib
from fastai.learner import Learner, Metric
from fastai.torch_core import num_distrib, set_seed
from torch import Tensor

from ..core.anchors import Anchors, make_anchors
from ..commands.cli import at_least, fraction, nonnegative_float, out_file, positive_float, positive_int
from ..core.loss import LossOptions, SSDLossResult, ssd_loss
from ..core.matching import IOU_THRESHOLD
from .metrics import map_metrics
from .net import BODIES, SSDModel, create_ssd_model, save_checkpoint

__all__ = ["SSDLoss", "LossPart", "BatchLosses", "BoxActivationPenalty", "EpochCheckpoint", "ssd_learner", "evaluate", "collage_records",
           "train_main"]


class SSDLoss:
    """fastai loss ``loss_func(preds, gt_boxes, gt_labels)``: ``ssd_loss(...).total / B``.

    ``preds`` is the model's ``(class_logits (B, A, C+1), box_actns (B, A, 4))``; ground
    truth is ``(y0, x0, y1, x1)`` fractions with ``PAD_LABEL`` padding. ``options`` are
    :class:`~ssd_lesson.core.loss.LossOptions`. The last result is kept in ``.last`` for the
    :class:`LossPart` metrics.
    """

    def __init__(self, anchors: Anchors, options: LossOptions = LossOptions()):
        self.anchors, self.options = anchors, options
        self.last: Optional[SSDLossResult] = None

    def __call__(self, preds: tuple[Tensor, Tensor], gt_boxes: Tensor, gt_labels: Tensor) -> Tensor:
        class_logits, box_actns = preds
        if self.anchors.device != class_logits.device:
            self.anchors = self.anchors.to(class_logits.device)
        self.last = ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, self.anchors, options=self.options)
        return self.last.total / max(class_logits.shape[0], 1)


class LossPart(Metric):
    """Validation mean per image of one part of the loss: ``"classification"`` or ``"regression"``."""

    def __init__(self, part: str):
        self.part = part

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def accumulate(self, learn) -> None:
        t = getattr(learn.loss_func.last, self.part).detach()
        self.total, self.count = self.total + float(t.sum()), self.count + t.numel()

    @property
    def value(self) -> Optional[float]:
        return self.total / self.count if self.count else None

    @property
    def name(self) -> str:
        return self.part[:4] + "_loss"


class BatchLosses(Callback):
    """Keeps every training batch's (unsmoothed) loss in ``.losses``."""

    order = 60

    def before_fit(self) -> None:
        self.losses: list[float] = []

    def after_batch(self) -> None:
        if self.training and self.learn.loss is not None:
            self.losses.append(self.learn.loss.item())


class BoxActivationPenalty(Callback):
    """Adds ``weight * mean(box_actns ** 2)`` to the training loss that ``.backward()`` sees.

    Only the positives' box activations get a gradient from the SSD loss; the other boxes'
    drift with the shared weights and end up deep in tanh's flat tails (|tanh| near 1),
    where a later match gets almost no gradient. This pulls every box activation gently
    towards 0 (its anchor). The reported losses (``learn.loss``, the metrics) stay the SSD loss.
    """

    order = 55  # before BatchLosses, which only reads learn.loss

    def __init__(self, weight: float):
        if not weight >= 0:
            raise ValueError(f"BoxActivationPenalty: weight must be >= 0, got {weight}")
        self.weight = weight

    def after_loss(self) -> None:
        if self.training and self.weight > 0:
            box_actns = self.learn.pred[1]
            self.learn.loss_grad = self.learn.loss_grad + self.weight * box_actns.pow(2).mean()


class EpochCheckpoint(Callback):
    """Save a checkpoint after every finished epoch (rank 0 only; atomic, so Ctrl-C never leaves half a file)."""

    order = 70  # after the Recorder has the epoch's metrics

    def __init__(self, path: str | Path, half: bool = False, extra: Optional[dict] = None):
        self.path, self.half, self.extra = Path(path), half, dict(extra or {})
        self.saved_epoch = 0

    def after_epoch(self) -> None:
        if rank_distrib() != 0:
            return
        names = self.learn.recorder.metric_names[1:-1]  # drop "epoch" and "time"
        values = dict(zip(names, self.learn.final_record))
        save_checkpoint(self.learn.model, self.path, half=self.half,
                        extra={**self.extra, "epoch": self.epoch + 1, "metrics": values})
        self.saved_epoch = self.epoch + 1


def ssd_learner(dls, model: SSDModel, *, match_on: str = "anchors", iou_threshold: float = IOU_THRESHOLD,
                classification: str = "bce", focal_gamma: float = 1.0, regression_reduction: str = "mean",
                metrics: bool = True, cbs: Sequence[Callback] = (), voc_metric: bool = False) -> Learner:
    """A fastai ``Learner`` (Adam, as fastai defaults) for ``model`` on ``dls`` with the SSD loss.

    ``match_on="anchors"`` is the lesson's code (the article matches on predicted boxes,
    which moves targets around while the boxes are still random); the other loss options
    are :class:`~ssd_lesson.core.loss.LossOptions`'. ``metrics`` adds the loss parts, mAP@0.5
    and COCO mAP on the validation set; ``voc_metric`` also Pascal VOC2007's 11-point mAP
    (``mAP_voc07``; every object counts as non-difficult, as batches carry no ``difficult``
    flags: see :class:`ssd_lesson.model.metrics.MeanAP`).
    """
    anchors = make_anchors(model.spec)
    options = LossOptions(match_on=match_on, iou_threshold=iou_threshold, classification=classification,
                          focal_gamma=focal_gamma, regression_reduction=regression_reduction)
    ms = [LossPart("classification"), LossPart("regression"), *map_metrics(anchors, voc07=voc_metric)] if metrics else []
    return Learner(dls, model, loss_func=SSDLoss(anchors, options), metrics=ms, cbs=list(cbs))


@torch.no_grad()
def evaluate(model: SSDModel, dl, loss_func: SSDLoss) -> dict[str, float]:
    """Validation losses per image and mAP of ``model`` on all of ``dl``, without fastai's
    Learner (so no collective calls: rank 0 can run it alone after distributed training)."""
    from .metrics import _MAPState

    state = _MAPState(loss_func.anchors, sync=False, score_threshold=0.05, nms_iou=0.5, max_per_image=100)
    totals, n = {"valid_loss": 0.0, "clas_loss": 0.0, "regr_loss": 0.0}, 0
    was_training = model.training
    model.eval()
    try:
        for images, gt_boxes, gt_labels in dl:
            preds = model(images)
            r = ssd_loss(*preds, gt_boxes, gt_labels, loss_func.anchors.to(images.device), options=loss_func.options)
            totals["valid_loss"] += float(r.total)
            totals["clas_loss"] += float(r.classification.sum())
            totals["regr_loss"] += float(r.regression.sum())
            state.update(preds, gt_boxes, gt_labels)
            n += len(images)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate: the valid split is empty")
    return {**{k: v / n for k, v in totals.items()}, "mAP50": state.value("map_50"), "mAP_coco": state.value("map")}


def collage_records(n_images: int, seed: int, root: str | Path = "runs",
                    verbose: bool = True, photos: str = "all") -> tuple[list, list, Path]:
    """Train and valid records of the offline collage set ``(n_images, seed)``, made once under ``root``;
    its objects are cut from the photographs of ``ssd_lesson.data.collage.photo_set(photos)``."""
    from ..data.collage import make_collage_dataset, photo_set
    from ..data.images import load_voc

    photo_set(photos)  # a clear error for an unknown set, before any folder is made
    out = Path(root) / (f"collage-n{n_images}-seed{seed}" + ("" if photos == "all" else f"-{photos}-photos"))
    done = out / "ImageSets" / "Main" / "trainval.txt"  # written last
    ready = lambda: done.is_file() and len(done.read_text().split()) == n_images  # noqa: E731
    if not ready():
        if rank_distrib() == 0:
            if verbose:
                print(f"making the collage set: {n_images} images in {out}", flush=True)
            make_collage_dataset(n_images, seed, out, overwrite=True, photos=photos)
        else:  # other ranks wait for rank 0 (no process group yet: fastai's distrib_ctx makes it later)
            t0 = time.time()
            while not ready():
                if time.time() - t0 > 600:
                    raise TimeoutError(f"rank {rank_distrib()}: gave up waiting for rank 0 to make {out}")
                time.sleep(0.5)
    return load_voc(out, "train"), load_voc(out, "val"), out


class _DetectionDistributedDL(DistributedDL):
    """fastai's ``DistributedDL`` (each process gets its share of every batch), with two fixes:
    it keeps the wrapped loader's ``n_inp`` (1: images in, boxes and labels to the loss; fastai
    would guess 2), and on CPU processes (gloo) it broadcasts the shuffled order as a CPU tensor
    (fastai's makes it a CUDA tensor, for nccl)."""

    def __init__(self, dl, **kwargs):
        super().__init__(dl, **kwargs)
        self._n_inp = getattr(dl, "n_inp", 1)

    def _broadcast(self, t, rank):
        if torch.distributed.get_backend() == "nccl":
            return super()._broadcast(t, rank)
        t = torch.tensor(t, dtype=torch.long)
        torch.distributed.broadcast(t, rank)
        return t.tolist()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ssd_lesson train",
                                description="Train the lesson's SSD with fastai and save a checkpoint after every epoch.")
    p.add_argument("--data", choices=("collage", "voc"), default="collage",
                   help="collage: offline set made from photos in installed wheels; voc: Pascal VOC 2007 (train/val)")
    p.add_argument("--data-dir", default=None, help="voc: the dataset folder (default: $SSD_LESSON_VOC or fastai's); "
                   "collage: where to make the set (default runs/)")
    p.add_argument("--n-images", type=at_least(5), default=1000, help="collage: images in the set (20%% of them valid; at least 5)")
    p.add_argument("--photos", choices=("all", "train"), default="all",
                   help="collage: cut objects from all annotated photos, or keep ssd_lesson.data.collage.HELD_OUT_PHOTOS out")
    p.add_argument("--body", choices=BODIES, default="resnet34")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True,
                   help="ImageNet weights for the body when loadable (a warning and random weights otherwise)")
    p.add_argument("--n-hidden", type=positive_int, default=256, help="channels of the head's conv blocks")
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--bs", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=1e-2, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--wd", type=nonnegative_float, default=None, help="weight decay (default: fastai's, 0.01, decoupled)")
    p.add_argument("--box-penalty", type=nonnegative_float, default=0.0,
                   help="weight of mean(box_actns**2) added to the training loss (keeps boxes off tanh's limits)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this checkpoint's weights (its body and head options must match)")
    p.add_argument("--lr-find", action="store_true", help="run fastai's lr_find first and use its 'valley' suggestion")
    p.add_argument("--match-on", choices=("anchors", "predictions"), default="anchors",
                   help="match ground truth to the anchor boxes (the lesson's code) or the predicted boxes (the article)")
    p.add_argument("--iou-threshold", type=fraction, default=IOU_THRESHOLD,
                   help="boxes whose best overlap is not above it are background (default: the lesson's %(default)s)")
    p.add_argument("--loss", choices=("bce", "focal"), default="bce", help="classification loss")
    p.add_argument("--regression", choices=("mean", "sum"), default=LossOptions.regression_reduction,
                   help="box loss: mean over positive boxes (the lesson's code, the default) or sum "
                   "(the article; weighs boxes more, and trains a body from scratch better)")
    p.add_argument("--seed", type=at_least(0), default=0)
    p.add_argument("--out", type=out_file, default=Path("runs/ssd_collage.pth"), help="checkpoint path")
    p.add_argument("--half", action="store_true", help="store the checkpoint's weights as float16 (half the size)")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint at --out")
    return p


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    return _parser().parse_args(list(argv))


def _initial_model(path: Path, body: str, n_hidden: int) -> SSDModel:
    """The model of checkpoint ``path``, in training mode; its body and head must be ``body`` / ``n_hidden``."""
    from .net import load_checkpoint

    model = load_checkpoint(path)
    saved_hidden = model.head_kwargs.get("n_hidden")
    if model.body_name != body or saved_hidden != n_hidden:
        raise ValueError(f"--init {path}: the checkpoint is a {model.body_name} body with n_hidden {saved_hidden}, "
                         f"not the requested --body {body} --n-hidden {n_hidden}")
    return model.train()


def _plain(options: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}


def full_command(args: argparse.Namespace) -> str:
    """The train command with every option spelled out (defaults too), so running it again
    makes the same model whatever the defaults become; ``--force`` is left to whoever reruns it."""
    parts = ["python -m ssd_lesson train"]
    for action in _parser()._actions:
        if not action.option_strings or action.dest in ("help", "force"):
            continue
        value, flag = getattr(args, action.dest), action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            parts.append(flag if value else f"--no-{flag[2:]}")
        elif action.nargs == 0:  # store_true
            parts += [flag] if value else []
        elif value is not None:
            parts += [flag, str(value)]
    return " ".join(parts)


def _init_record(path: Optional[Path]) -> Optional[dict]:
    """The starting checkpoint: its path, sha256 and how it was made (its recorded command)."""
    if path is None:
        return None
    import hashlib

    from .net import load_checkpoint

    extra = load_checkpoint(path).checkpoint_extra
    return dict(path=str(path), sha256=hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                command=extra.get("command"), photos=extra.get("photos", "all"))


def train_main(argv: Sequence[str]) -> int:
    """``python -m ssd_lesson train ...``: returns the exit status (0 done, 1 or 2 refused, 130 on Ctrl-C)."""
    from ..data.images import VOC_CLASSES, find_voc, load_voc, make_dataloaders

    args = _parse(argv)
    rank0 = rank_distrib() == 0
    say = print if rank0 else (lambda *a, **k: None)
    out = Path(args.out)
    if out.exists() and not args.force:
        say(f"error: {out} exists; pass --force to overwrite it, or choose another --out", file=sys.stderr)
        return 1
    if args.data == "collage":
        train_recs, valid_recs, where = collage_records(args.n_images, args.seed, args.data_dir or "runs",
                                                        photos=args.photos)
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
    if args.init is not None:
        model = _initial_model(args.init, args.body, args.n_hidden)
    else:
        model = create_ssd_model(args.body, pretrained=args.pretrained, n_hidden=args.n_hidden, class_names=VOC_CLASSES)
    batch_losses = BatchLosses()
    cbs = [batch_losses] + ([BoxActivationPenalty(args.box_penalty)] if args.box_penalty else [])
    learn = ssd_learner(dls, model, match_on=args.match_on, iou_threshold=args.iou_threshold, classification=args.loss,
                        regression_reduction=args.regression, cbs=cbs, voc_metric=args.data == "voc")
    if args.wd is not None:
        learn.wd = args.wd
    # _init_record loads --init once more, drawing from the seeded global RNG (a model's random init) before
    # training: the shipped checkpoint was made so, and its recorded command reproduces it only in this order.
    extra = dict(command=full_command(args), options=_plain(vars(args)), data=str(where), seed=args.seed,
                 n_images=args.n_images if args.data == "collage" else None, n_train=len(train_recs),
                 n_valid=len(valid_recs), loss_options=learn.loss_func.options.as_kwargs(),
                 photos=args.photos if args.data == "collage" else None, init=_init_record(args.init))
    ckpt = EpochCheckpoint(out, half=args.half, extra=extra)
    say(f"{args.data}: {len(train_recs)} train / {len(valid_recs)} valid images; body {args.body}; "
        f"{args.epochs} epochs of {len(dls.train)} batches of {args.bs}"
        + (f" shared by {num_distrib()} processes" if num_distrib() > 1 else "") + f"; checkpoint -> {out}", flush=True)
    distributed, on_cpu = num_distrib() > 1, not torch.cuda.is_available()
    # cpu=True makes accelerate use CPU processes (gloo); sync_bn: SyncBatchNorm needs GPUs
    ctx = learn.distrib_ctx(sync_bn=not on_cpu, cpu=on_cpu) if distributed else contextlib.nullcontext()
    t0 = time.time()
    try:
        with ctx:
            if distributed:  # wrapped here, fastai's DistributedTrainer leaves them as they are
                whole_valid = learn.dls.valid
                learn.dls.loaders = [_DetectionDistributedDL(dl) for dl in learn.dls.loaders]
            lr = args.lr
            if args.lr_find:
                lr = float(learn.lr_find(show_plot=False).valley)
                say(f"lr_find suggests {lr:.2e}")
            learn.fit_one_cycle(args.epochs, lr, cbs=[ckpt])
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
    names, values = learn.recorder.metric_names[1:-1], learn.final_record
    if distributed:  # each process validated its share; report the whole valid split
        names, values = zip(*evaluate(learn.model, whole_valid, learn.loss_func).items())
    print(f"trained {args.epochs} epochs in {minutes:.1f} min; train loss per image: first {n} batches {first:.3f}, "
          f"last {n} {last:.3f} ({first / max(last, 1e-12):.1f}x lower)")
    print("validation: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in zip(names, values)
                                     if k != "train_loss"))
    print(f"checkpoint: {out} ({out.stat().st_size / 2**20:.1f} MB); load it with ssd_lesson.model.net.load_checkpoint")
    return 0


if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:]))
