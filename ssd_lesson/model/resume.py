"""Continuing a training run cut short: what a checkpoint keeps besides the weights, and putting it back.

:func:`training_state` is what :class:`~ssd_lesson.model.train.EpochCheckpoint` saves with every epoch's
checkpoint but the last (under its own key, which ``load_checkpoint`` ignores; tensors and plain values
only, so the file is still read with ``weights_only=True``): the epochs done out of how many and the
one-cycle schedule's peak learning rate (the schedule's place is ``epoch / epochs``), the optimizer's
state (Adam's moving averages and step counts), every process's random-number generators (torch's,
CUDA's, Python's and numpy's: the dropout masks, the loaders' worker seeds), the loaders' shuffling
generators and epoch counters (which order and which flips come next), the smoothed training loss,
the batch losses so far, the float16 gradient scaler's state, and the float32 weights when the
checkpoint stores them as float16. :class:`Resume` puts it all back, so that the epochs after it run
as they would have run without the interruption: on the same machine and number of processes, the
same weights bit for bit.
"""
from __future__ import annotations

import random
from typing import Any, Optional

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.torch_core import num_distrib, rank_distrib
from fastcore.foundation import L

__all__ = ["TRAINING_STATE_FORMAT", "training_state", "check_training_state", "Resume"]

#: The layout of the training state :func:`training_state` makes.
TRAINING_STATE_FORMAT = "ssd_lesson.training_state/1"


def _rng_states() -> dict[str, Any]:
    """This process's random-number generators, as plain values and tensors."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return dict(torch=torch.get_rng_state(), cuda=torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
                python=random.getstate(), numpy=(name, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss))


def _set_rng_states(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(s["cuda"])
    version, internal, gauss = s["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = s["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))


def _loaders(learn) -> list:
    """The learner's loaders, unwrapped from the ``DistributedDL`` a distributed run puts around them."""
    return [getattr(dl, "dl", dl) for dl in learn.dls.loaders]


def training_state(learn, *, lr: float, full_weights: bool = False) -> dict[str, Any]:
    """What continuing ``learn``'s ``fit_one_cycle`` after the epoch it has just finished needs (see the module).

    Call it on every process at the same point (it gathers their generators' states); ``lr`` is the
    schedule's peak; ``full_weights`` adds the float32 weights (for a checkpoint that stores float16 ones).
    """
    rngs = [_rng_states()]
    if num_distrib() > 1:
        rngs = [None] * num_distrib()
        torch.distributed.all_gather_object(rngs, _rng_states())
    model = getattr(learn.model, "module", learn.model)
    scaler = getattr(learn, "scaler", None)
    smooth, opt = learn.recorder.smooth_loss, learn.opt.state_dict()
    return dict(format=TRAINING_STATE_FORMAT, epoch=learn.epoch + 1, epochs=learn.n_epoch, lr=float(lr),
                train_iter=learn.train_iter, rng=rngs,
                optimizer=dict(state=[dict(s) for s in opt["state"]], hypers=[dict(h) for h in opt["hypers"]]),
                loaders=[dict(rng=dl.rng.getstate(), epochs_started=getattr(dl, "epochs_started", None))
                         for dl in _loaders(learn)],
                smooth_loss=dict(count=smooth.count, val=smooth.val.detach().cpu()),
                batch_losses=list(getattr(getattr(learn, "batch_losses", None), "losses", [])),
                scaler=scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
                weights={k: v.detach().cpu() for k, v in model.state_dict().items()} if full_weights else None)


def check_training_state(state: Any, path: str) -> dict[str, Any]:
    """``state`` if it is a training state of this layout; else a ``ValueError`` naming ``path``."""
    if state is None:
        raise ValueError(f"{path}: the checkpoint holds no training state to resume from (train saves one with every "
                         "epoch's checkpoint but the last; this one is a finished run's, or was not saved by train)")
    if not isinstance(state, dict) or state.get("format") != TRAINING_STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: its training state is of another layout ({found!r}, not {TRAINING_STATE_FORMAT!r})")
    return state


class Resume(Callback):
    """Continue ``fit_one_cycle(epochs, lr, start_epoch=state["epoch"])`` where :func:`training_state` left it.

    Before the fit it loads the optimizer's and the loaders' state; at the first epoch it runs it puts back
    the generators, the smoothed loss, the batch losses and the gradient scaler (fastai's ``MixedPrecision``
    and ``Recorder`` make theirs fresh when the fit starts). The epochs it skips print no row in the table.
    """

    order = 65  # after the Recorder (50), MixedPrecision (10) and BatchLosses (60) have set up theirs

    def __init__(self, state: dict[str, Any]):
        self.state = state
        self.saved_logger: Optional[Any] = None

    def before_fit(self) -> None:
        opt, s = self.learn.opt, self.state["optimizer"]
        params = list(opt.all_params().itemgot(0))
        on_device = [{k: v.to(p.device) if isinstance(v, torch.Tensor) else v for k, v in ps.items()}
                     for p, ps in zip(params, s["state"])]
        opt.load_state_dict(dict(hypers=L(dict(h) for h in s["hypers"]), state=on_device))
        for dl, saved in zip(_loaders(self.learn), self.state["loaders"]):
            version, internal, gauss = saved["rng"]
            dl.rng.setstate((version, tuple(internal), gauss))
            if saved["epochs_started"] is not None:
                dl.epochs_started = saved["epochs_started"]

    def before_epoch(self) -> None:
        if self.epoch < self.state["epoch"]:  # fastai's SkipToEpoch cancels it; its row would be empty
            if self.saved_logger is None:
                self.saved_logger, self.learn.logger = self.learn.logger, lambda *a, **k: None
            return
        if self.epoch > self.state["epoch"]:
            return
        if self.saved_logger is not None:
            self.learn.logger = self.saved_logger
        s = self.state
        _set_rng_states(s["rng"][rank_distrib() % len(s["rng"])])
        smooth = self.learn.recorder.smooth_loss
        smooth.count, smooth.val = s["smooth_loss"]["count"], s["smooth_loss"]["val"]
        self.learn.train_iter = s["train_iter"]
        if hasattr(self.learn, "batch_losses"):
            self.learn.batch_losses.losses = list(s["batch_losses"])
        if s["scaler"] is not None and getattr(self.learn, "scaler", None) is not None:
            self.learn.scaler.load_state_dict(s["scaler"])
