"""Validation numbers of a run shared by several processes, reduced over all of them.

Under ``torchrun`` fastai's ``DistributedDL`` gives each process a contiguous share of every epoch's
items (in the shuffled order for training), the shares made equal by repeating the first items at
the end. Left alone, a process's metrics see only its share, and the repeated items twice.
:func:`real_items` says how many of a batch's leading items are real (not repeats), and
:class:`ReducedMean` sums totals and counts over the processes (``torch.distributed.all_reduce``)
when its value is read, so the epoch table and the checkpoint's record show the whole valid split's
numbers, as one process computing them alone would. :class:`ValidLoss` is the Recorder's
``valid_loss`` done so (fastai's ``AvgLoss`` averages the processes' batch means, repeats included).
In a single process, or on a loader that is not shared, both are the plain mean.
"""
from __future__ import annotations

from typing import Optional

import torch
from fastai.learner import Metric

__all__ = ["is_shared", "real_items", "reduce_sums", "ReducedMean", "ValidLoss"]

#: What a fastai ``DistributedDL`` knows about the share it is iterating.
_SHARE_ATTRS = ("i", "n", "n_padded", "rank", "world_size")


def is_shared(dl) -> bool:
    """Whether ``dl`` is a loader shared by several processes (fastai's ``DistributedDL``, mid-iteration)."""
    return all(hasattr(dl, a) for a in _SHARE_ATTRS)


def real_items(dl, n: int) -> int:
    """How many of the ``n`` items of the batch ``dl`` has just given are real, the rest being the repeats
    that pad the processes' shares to equal lengths (they come last). ``n`` for any other loader.

    fastai's ``DistributedDL`` gives rank ``r`` positions ``[r * n_padded / world_size, (r+1) * n_padded /
    world_size)`` of the padded order, and counts in ``dl.i`` the items given so far this epoch (this batch
    included, as the loader counts a batch before the learner sees it); positions from ``dl.n`` on are repeats.
    """
    if not is_shared(dl):
        return n
    end = dl.rank * dl.n_padded // dl.world_size + dl.i  # one past this batch's last position
    return max(0, min(n, dl.n - (end - n)))


def reduce_sums(*values: float) -> tuple[float, ...]:
    """``values`` summed over the processes of the default process group (``all_reduce`` of one float64
    tensor: on the current GPU for nccl, on the CPU for gloo); ``values`` as they are without one."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return tuple(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return tuple(t.tolist())


class ReducedMean(Metric):
    """A mean ``total / count`` of what :meth:`add` is given, over every process that shares the loader.

    Subclasses' ``accumulate`` call ``add(total, count, learn)`` with the real items only (:func:`real_items`).
    The sum over processes is taken once, when ``value`` is first read after the epoch (every process's
    Recorder reads it at the same point, as a collective needs), and only when the loader was shared.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.total, self.count, self.shared, self._value = 0.0, 0, False, None

    def add(self, total: float, count: int, learn) -> None:
        self.total, self.count, self._value = self.total + total, self.count + count, None
        self.shared = self.shared or is_shared(getattr(learn, "dl", None))

    @property
    def value(self) -> Optional[float]:
        if self._value is None:
            total, count = reduce_sums(self.total, self.count) if self.shared else (self.total, self.count)
            self._value = (total / count if count else None,)
        return self._value[0]


class ValidLoss(ReducedMean):
    """The validation loss per image (the Recorder's ``valid_loss``): the sum over the real items of each one's
    classification and regression loss (what ``ssd_loss(...).total`` sums), over their number.

    ``learn.loss_func`` is the training's ``SSDLoss``, which keeps its last result in ``.last``.
    """

    def accumulate(self, learn) -> None:
        last = learn.loss_func.last
        per_image = (last.classification + last.regression).detach()
        n = real_items(getattr(learn, "dl", None), len(per_image))
        self.add(float(per_image[:n].sum()), n, learn)

    @property
    def name(self) -> str:
        return "loss"
