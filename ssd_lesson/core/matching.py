"""Give every predicted box a ground-truth box to answer to.

The lesson's ``map_to_ground_truth``, batched over images: no loop over images
or ground-truth boxes, no host sync, no data-dependent shapes.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

# FORCED_OVERLAP and IOU_THRESHOLD are defined in options, which imports no torch: the command lines'
# --help shows the options' defaults without loading torch.
from .options import FORCED_OVERLAP, IOU_THRESHOLD, LossOptions

__all__ = ["Match", "match_boxes", "match_one_image", "FORCED_OVERLAP", "IOU_THRESHOLD", "PAD_LABEL"]

#: The label of a padding row in ``gt_labels`` (images with fewer objects than the batch's most).
PAD_LABEL = -1


class Match(NamedTuple):
    """Result of :func:`match_boxes`; every field is ``(B, A)``.

    gt_idx: int64, the ground-truth box each predicted box answers to.
    gt_overlap: its IoU with that box, or :data:`FORCED_OVERLAP` (1.99) where the ground-truth box claimed it.
    positive: bool, ``gt_overlap > iou_threshold`` (``>=`` when matched inclusively); the rest become background.
    """

    gt_idx: Tensor
    gt_overlap: Tensor
    positive: Tensor


def _max_first_index(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """``x.max(dim)``: the maximum and the first index that reaches it (``argmax``'s tie rule).

    Dispatches to one of two formulations with the same result: eager PyTorch has one
    fused kernel for it; under ``torch.compile`` two plain reductions are 3-4x faster.
    """
    if torch.compiler.is_compiling():
        return _max_first_index_compiled(x, dim)
    return _max_first_index_eager(x, dim)


def _max_first_index_eager(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    values, indices = x.max(dim=dim)
    return values, indices


def _max_first_index_compiled(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """A max, then a min over the indices that reach it: inductor's CPU code for
    ``max``-with-indices carries an int64 index vector and NaN checks through every step."""
    best = x.amax(dim=dim, keepdim=True)
    n = x.shape[dim]
    # Float indices keep the whole pass in one vector type; float16 would not count past 2048.
    index = torch.arange(n, device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))
    index = index.view([n if d == dim % x.dim() else 1 for d in range(x.dim())])
    first = torch.where(x == best, index, float(n)).amin(dim=dim)
    # The clamp keeps the index in range even for NaN input, which reaches no maximum.
    return best.squeeze(dim), first.clamp_max(n - 1).long()


def match_boxes(ious: Tensor, gt_valid: Tensor, iou_threshold: float = IOU_THRESHOLD, *, validate: bool = True,
                inclusive: bool = LossOptions.match_inclusive) -> Match:
    """Match predicted (or anchor) boxes to ground-truth boxes.

    1. Each box takes the valid ground-truth box it overlaps most, and records
       that IoU. A box that overlaps none takes the first valid one (index 0 when
       padding rows come last, as the article notes) with overlap 0.
    2. Each valid ground-truth box then claims the box it overlaps most (the first
       such box on ties, even when it overlaps nothing, as the lesson does): that
       box's ``gt_idx`` becomes the claimant's and its overlap :data:`FORCED_OVERLAP`, so every
       object is answered by at least one box, unless two ground-truth boxes claim the same box: then
       the later one wins, as in the lesson's loop (and in torchvision's ``SSDMatcher``), and the earlier
       keeps only the boxes that chose it.
    3. Boxes whose overlap is not above ``iou_threshold`` (``inclusive``: below it) become background.

    Args:
        ious: ``(B, A, G)`` IoU of each of A boxes with each of G ground-truth boxes.
        gt_valid: ``(B, G)`` bool, False on padding rows.
        iou_threshold: boxes whose overlap is not above this become background, in ``[0, FORCED_OVERLAP)``.
        validate: also check that ``ious`` holds no NaN (a host sync, so not under torch.compile; the loss, which
            made them, skips it).
        inclusive: positive at ``overlap >= iou_threshold`` (the SSD paper, torchvision) instead of ``>``.

    Returns:
        :class:`Match` of ``(B, A)`` tensors.
    """
    if not isinstance(ious, Tensor) or ious.dim() != 3 or not ious.is_floating_point():
        raise ValueError(f"ious: expected a (B, A, G) floating-point tensor, got "
                         f"{tuple(ious.shape) if isinstance(ious, Tensor) else type(ious).__name__}"
                         f"{'' if not isinstance(ious, Tensor) else ' ' + str(ious.dtype)}")
    B, A, G = ious.shape
    if not isinstance(gt_valid, Tensor) or gt_valid.dtype != torch.bool:
        raise ValueError(f"gt_valid: expected a bool tensor (False on padding rows), got "
                         f"{getattr(gt_valid, 'dtype', type(gt_valid).__name__)}; e.g. gt_labels > PAD_LABEL")
    if gt_valid.shape != (B, G):
        raise ValueError(f"gt_valid: expected shape {(B, G)} to match ious {tuple(ious.shape)}, got {tuple(gt_valid.shape)}")
    if isinstance(iou_threshold, (bool, Tensor)) or not 0 <= iou_threshold < FORCED_OVERLAP:  # NaN fails too
        raise ValueError(f"iou_threshold: must be a number in [0, {FORCED_OVERLAP}), got {iou_threshold!r}")
    if not isinstance(inclusive, bool):
        raise ValueError(f"inclusive: must be True (>=) or False (>), got {inclusive!r}")
    if validate and not torch.compiler.is_compiling() and torch.isnan(ious).any():
        raise ValueError("ious: contains NaN (a box with NaN coordinates?)")
    if G == 0:
        zeros = ious.new_zeros(B, A)
        return Match(zeros.long(), zeros, zeros.bool())
    valid = gt_valid[:, None, :]
    # IoU is >= 0, so -1 keeps padding rows from ever winning a max.
    masked = torch.where(valid, ious, -1.0)  # keeps the memory layout of ious (masked_fill copies to contiguous)
    gt_overlap, gt_idx = _max_first_index(masked, dim=2)  # (B, A): best ground truth per box
    gt_overlap = gt_overlap.clamp_min(0)  # an image with no ground truth at all
    _, best_box = _max_first_index(masked, dim=1)  # (B, G): best box per ground truth, first on ties

    # Scatter each valid claimant's index onto its box; amax makes the later claimant win on any device.
    claimant = torch.arange(G, device=ious.device).expand(B, G).masked_fill(~gt_valid, -1)  # -1: claims nothing
    claimed = torch.full((B, A), -1, dtype=torch.long, device=ious.device)
    claimed = claimed.scatter_reduce(1, best_box, claimant, reduce="amax")
    forced = claimed >= 0
    gt_idx = torch.where(forced, claimed, gt_idx)
    gt_overlap = torch.where(forced, torch.full_like(gt_overlap, FORCED_OVERLAP), gt_overlap)
    if not inclusive:
        return Match(gt_idx, gt_overlap, gt_overlap > iou_threshold)
    # >= 0 would make every box of an image without objects positive: they have nothing to answer to.
    return Match(gt_idx, gt_overlap, (gt_overlap >= iou_threshold) & gt_valid.any(dim=1, keepdim=True))


def match_one_image(ious: Tensor, iou_threshold: float = IOU_THRESHOLD) -> Match:
    """:func:`match_boxes` for one image, written as the lesson's loop: the algorithm to read.

    Args:
        ious: ``(A, G)`` IoU of each of A boxes with each of the image's G ground-truth boxes (no padding).
        iou_threshold: boxes whose overlap is not above it become background.

    Returns:
        :class:`Match` of ``(A,)`` tensors, equal to ``match_boxes(ious[None], ...)[0]``.
    """
    if not isinstance(ious, Tensor) or ious.dim() != 2 or not ious.is_floating_point():
        raise ValueError(f"ious: expected an (A, G) floating-point tensor, got {getattr(ious, 'shape', type(ious).__name__)}")
    A, G = ious.shape
    if G == 0:  # no objects: every box is background
        return Match(torch.zeros(A, dtype=torch.long), ious.new_zeros(A), torch.zeros(A, dtype=torch.bool))
    gt_overlap, gt_idx = ious.max(dim=1)  # 1. each box takes the object it overlaps most
    for j in range(G):  # 2. each object claims the box it overlaps most (a later claim wins)
        box = ious[:, j].argmax()
        gt_idx[box] = j
        gt_overlap[box] = FORCED_OVERLAP
    return Match(gt_idx, gt_overlap, gt_overlap > iou_threshold)  # 3. weak matches become background
