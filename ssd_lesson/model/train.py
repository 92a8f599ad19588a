"""Training the SSD the fastai way: a ``Learner``, ``lr_find``, ``fit_one_cycle``.

The loss is the foundation's :func:`~ssd_lesson.core.loss.ssd_loss`, divided by the batch
size (fastai's reported losses are then per image and comparable across ``--bs``;
Adam hardly cares about the scale). Its classification and regression parts, mAP@0.5
and COCO mAP are recorded as metrics every epoch. The loss options travel as one
:class:`~ssd_lesson.core.options.LossOptions`, by default :meth:`LossOptions.training`
(the lesson code's: match on anchors, box loss averaged over the positives); ``regression_reduction="sum"``
(the article's wording) doubled mAP@0.5 on the offline collage set, where the mean's box
gradient is too weak to train a body from scratch, and made the shipped checkpoint.
:func:`fit` also runs under ``torchrun`` / ``accelerate launch`` through fastai's
``distrib_ctx`` (needs the ``accelerate`` package); each process then validates its share,
and the validation losses and mAP add up all shares, each image once (:mod:`ssd_lesson.model.distributed`).
:class:`EpochCheckpoint` keeps what ``train --resume`` continues from (:mod:`ssd_lesson.model.resume`).
:class:`BoxActivationPenalty` (``train --box-penalty``) keeps the box activations off tanh's flat ends,
and :func:`initial_model` (``train --init``) starts from a saved checkpoint. The ``train`` command is
:mod:`ssd_lesson.commands.train`.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from fastai.callback.core import Callback
from fastai.distributed import DistributedDL, rank_distrib
from fastai.learner import Learner
from fastai.torch_core import num_distrib, set_seed
from torch import Tensor

from ..core.anchors import Anchors, make_anchors
from ..io.files import held_signals
from ..core.loss import SSDLossResult, ssd_loss
from ..core.options import DecodeOptions, LossOptions
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ModelConfig
from .distributed import ReducedMean, ValidLoss, real_items
from .metrics import MAPState, map_metrics
from .net import SSDModel, create_ssd_model
from .record import CheckpointRecord
from .resume import Resume, training_state

__all__ = ["SSDLoss", "LossPart", "BatchLosses", "BoxActivationPenalty", "EpochCheckpoint", "ssd_learner", "initial_model",
           "draw_as_fresh_models", "evaluate", "fit", "is_main_process", "n_processes", "set_seed"]


class SSDLoss:
    """fastai loss ``loss_func(preds, gt_boxes, gt_labels)``: ``ssd_loss(...).total / B``.

    ``preds`` is the model's ``(class_logits (B, A, C+1), box_actns (B, A, 4))``; ground
    truth is ``(y0, x0, y1, x1)`` fractions with ``PAD_LABEL`` padding. ``options`` are
    :class:`~ssd_lesson.core.loss.LossOptions`. The last result is kept in ``.last`` for the
    :class:`LossPart` metrics. The loss runs in float32 outside any autocast region (mixed-precision
    training, ``train --amp``, casts the activations up first), so matching and IoU never round to 16 bits.
    """

    def __init__(self, anchors: Anchors, options: LossOptions = LossOptions.training()):
        self.anchors, self.options = anchors, options
        self.last: Optional[SSDLossResult] = None

    def __call__(self, preds: tuple[Tensor, Tensor], gt_boxes: Tensor, gt_labels: Tensor) -> Tensor:
        class_logits, box_actns = (p.float() for p in preds)
        if self.anchors.device != class_logits.device:
            self.anchors = self.anchors.to(class_logits.device)
        with torch.autocast(class_logits.device.type, enabled=False):
            self.last = ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, self.anchors, options=self.options)
        return self.last.total / max(class_logits.shape[0], 1)


class LossPart(ReducedMean):
    """Validation mean per image of one part of the loss: ``"classification"`` or ``"regression"`` (over all
    processes of a distributed run, each image once: :class:`~ssd_lesson.model.distributed.ReducedMean`)."""

    def __init__(self, part: str):
        super().__init__()
        self.part = part

    def accumulate(self, learn) -> None:
        t = getattr(learn.loss_func.last, self.part).detach()
        n = real_items(getattr(learn, "dl", None), len(t))
        self.add(float(t[:n].sum()), n, learn)

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
    """Adds ``weight * mean(box_actns ** 2)`` (the mean over all ``(B, A, 4)`` box activations) to the
    training loss that ``.backward()`` sees.

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
            box_actns = self.learn.pred[1].float()
            self.learn.loss_grad = self.learn.loss_grad + self.weight * box_actns.pow(2).mean()


def initial_model(path: str | Path, body: str, n_hidden: int, class_names: Optional[Sequence[str]] = None,
                  head: str = "lesson") -> SSDModel:
    """The model of checkpoint ``path``, in training mode, to train on from (``train --init``), its record in
    ``model.record``.

    Its body and head must be ``body`` / ``n_hidden`` / ``head`` (the options the run records) and, when given,
    its classes ``class_names``; else a ``ValueError`` naming the checkpoint and both.
    """
    model = load_checkpoint(path, class_names=class_names)
    saved = model.config
    if saved.head != head:
        raise ValueError(f"--init {path}: the checkpoint has the {saved.head} head, not the requested --spec {head}'s")
    if saved.body != body or saved.n_hidden != n_hidden:
        raise ValueError(f"--init {path}: the checkpoint is a {saved.body} body with n_hidden {saved.n_hidden}, "
                         f"not the requested --body {body} --n-hidden {n_hidden}")
    return model.train()


def draw_as_fresh_models(config: ModelConfig, times: int) -> None:
    """Advance the global random-number generator as building ``times`` fresh models of ``config`` would
    (their random initial weights), by building and dropping them.

    ``train --init`` calls it where it once built models it then filled from the checkpoint: the shuffles and
    dropout masks of training come after these draws, and the recorded commands of the shipped checkpoints
    (README) reproduce their weights bit for bit only when the draws are the same.
    """
    for _ in range(times):
        create_ssd_model(config, pretrained=False)


class EpochCheckpoint(Callback):
    """Save a checkpoint after every finished epoch (rank 0 only; atomic, so Ctrl-C never leaves half a file),
    with ``record`` (how it is being made) completed by the epoch and its validation metrics.

    With ``resumable``, every epoch's checkpoint but the last also holds the training state that
    ``train --resume`` continues from (:func:`~ssd_lesson.model.resume.training_state`, the peak learning
    rate read from ``learn.lr``); the last one is the finished model alone. Epochs a resumed fit skips
    are not saved."""

    order = 70  # after the Recorder has the epoch's metrics

    def __init__(self, path: str | Path, half: bool = False, record: CheckpointRecord = CheckpointRecord(),
                 resumable: bool = True):
        self.path, self.half, self.record, self.resumable = Path(path), half, record, resumable
        self.saved_epoch, self.skipped = 0, False

    def after_cancel_epoch(self) -> None:
        self.skipped = True

    def after_epoch(self) -> None:
        if self.skipped:
            self.skipped = False
            return
        last = self.epoch + 1 == self.n_epoch
        state = (training_state(self.learn, lr=self.learn.lr, full_weights=self.half)  # on every process: it gathers
                 if self.resumable and not last else None)
        if rank_distrib() != 0:
            return
        names = self.learn.recorder.metric_names[1:-1]  # drop "epoch" and "time"
        values = dict(zip(names, self.learn.final_record))
        with held_signals():  # a Ctrl-C during the save comes after it, with saved_epoch telling the truth
            save_checkpoint(self.learn.model, self.path, half=self.half,
                            record=self.record.replace(epoch=self.epoch + 1, metrics=values), training_state=state)
            self.saved_epoch = self.epoch + 1


def ssd_learner(dls, model: SSDModel, options: LossOptions = LossOptions.training(), *, metrics: bool = True,
                cbs: Sequence[Callback] = (), voc_metric: bool = False,
                decode_options: Optional[DecodeOptions] = None) -> Learner:
    """A fastai ``Learner`` (Adam, as fastai defaults) for ``model`` on ``dls`` with the SSD loss of ``options``.

    The default, :meth:`LossOptions.training`, matches on anchors as the lesson's code does
    (the article matches on predicted boxes, which moves targets around while the boxes are
    still random). ``metrics`` adds the loss parts, mAP@0.5 and COCO mAP on the validation set
    (detections decoded with ``decode_options``, by default as the loss reads the activations:
    :meth:`DecodeOptions.for_loss`); ``voc_metric`` also Pascal VOC2007's 11-point
    mAP (``mAP_voc07``; every object counts as non-difficult, as batches carry no ``difficult``
    flags: see :class:`ssd_lesson.model.metrics.MeanAP`).
    """
    if not isinstance(options, LossOptions):
        raise TypeError(f"ssd_learner: options must be a LossOptions, got {type(options).__name__}")
    anchors = make_anchors(model.spec)
    decode_options = DecodeOptions.for_loss(options) if decode_options is None else decode_options
    ms = ([LossPart("classification"), LossPart("regression"), *map_metrics(anchors, decode_options, voc07=voc_metric)]
          if metrics else [])
    learn = Learner(dls, model, loss_func=SSDLoss(anchors, options), metrics=ms, cbs=list(cbs))
    learn.recorder.loss = ValidLoss()  # valid_loss over every process of a distributed run, each image once
    return learn


@torch.no_grad()
def evaluate(model: SSDModel, dl, loss_func: SSDLoss, decode_options: Optional[DecodeOptions] = None) -> dict[str, float]:
    """Validation losses per image and mAP of ``model`` on all of ``dl``, without fastai's
    Learner (so no collective calls: rank 0 can run it alone after distributed training).
    ``decode_options`` default to :meth:`DecodeOptions.for_loss` of the loss's options."""
    decode_options = DecodeOptions.for_loss(loss_func.options) if decode_options is None else decode_options
    state = MAPState(loss_func.anchors, sync=False, options=decode_options)
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


def is_main_process() -> bool:
    """True on rank 0 of a distributed run, and in a plain one (the process that prints and saves)."""
    return rank_distrib() == 0


def n_processes() -> int:
    """Processes sharing the training (1 unless under ``torchrun`` / ``accelerate launch``)."""
    return max(1, num_distrib())  # fastai's num_distrib() is 0 outside a distributed run


def fit(learn: Learner, epochs: int, lr: float, *, find_lr: bool = False, cbs: Sequence[Callback] = (),
        say: Callable[[str], None] = print, resume: Optional[dict] = None) -> tuple[float, dict[str, float]]:
    """``fit_one_cycle(epochs, lr)`` (after fastai's ``lr_find`` when ``find_lr``, whose 'valley' replaces
    ``lr``), distributed when several processes run (gloo on CPUs, nccl on GPUs, one per process). ``resume``: a
    :func:`~ssd_lesson.model.resume.training_state` to continue from (its epochs, at its ``lr``; no ``lr_find``).
    Returns the learning rate used and the last epoch's validation numbers by name, over the whole valid
    split in a distributed run too (the metrics sum over the processes)."""
    distributed, on_cpu = num_distrib() > 1, not torch.cuda.is_available()
    # cpu=True makes accelerate use CPU processes (gloo); sync_bn: SyncBatchNorm needs GPUs
    ctx = learn.distrib_ctx(sync_bn=not on_cpu, cpu=on_cpu) if distributed else contextlib.nullcontext()
    loaders = list(learn.dls.loaders)
    try:
        with ctx:
            if distributed:  # wrapped here, fastai's DistributedTrainer leaves them as they are
                # accelerate has given this process its GPU: batches go there, not to the first one
                device = torch.device("cpu") if on_cpu else torch.device("cuda", torch.cuda.current_device())
                learn.dls.device = device
                learn.dls.loaders = [_DetectionDistributedDL(dl, device=device) for dl in learn.dls.loaders]
            if find_lr and resume is None:
                lr = float(learn.lr_find(show_plot=False).valley)
                say(f"lr_find suggests {lr:.2e}")
            learn.lr = lr  # the one-cycle peak, which the training state records
            more = [Resume(resume)] if resume is not None else []
            learn.fit_one_cycle(epochs, lr, cbs=list(cbs) + more, start_epoch=resume["epoch"] if resume else 0)
    finally:
        learn.dls.loaders = loaders
    names, values = learn.recorder.metric_names[1:-1], learn.final_record
    return lr, {k: v for k, v in zip(names, values) if k != "train_loss"}
