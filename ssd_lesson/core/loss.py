"""The SSD loss: classification plus box regression, batched over images.

Follows the lesson's ``ssd_loss``: decode the box activations, match predicted
boxes to ground truth, turn weak matches into background, then binary
cross-entropy on the classes and L1 on the positives' corners. Each way the SSD
paper's loss differs is an option (:class:`~ssd_lesson.core.options.LossOptions`):
``>=`` matching, softmax cross-entropy with background and hard negative mining
(:mod:`ssd_lesson.core.mining`), log-space offsets (:mod:`ssd_lesson.core.coding`),
smooth L1 and the division by the batch's positives; ``LossOptions.ssd_paper()``
takes them all, and is torchvision's ``SSD.compute_loss``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .anchors import Anchors, activations_to_box_planes
from .bce_terms import focal_terms, softplus
from .boxes import iou_of_corners
from .matching import PAD_LABEL, Match, match_boxes
from .coding import encode_log_offsets
from .mining import box_classification_loss, hard_negatives
from .options import BOX_LOSSES, BoxCoding, BoxLoss, Classification, LossOptions, MatchOn, Normalization, Reduction, check_focal

__all__ = ["LossOptions", "SSDLossResult", "ssd_loss", "classification_loss", "regression_loss", "box_errors",
           "validate_inputs", "loss_gradients"]

@dataclass
class SSDLossResult:
    """Everything :func:`ssd_loss` computes on the way.

    total: scalar, summed over images (what ``.backward()`` is called on).
    classification, regression: ``(B,)`` per image.
    pred_boxes: ``(B, A, 4)`` decoded boxes ``(y0, x0, y1, x1)``, fractions.
    ious: ``(B, A, G)`` IoU used for matching (with predicted or anchor boxes).
    match: :class:`~ssd_lesson.core.matching.Match` of ``(B, A)`` tensors.
    target_labels: ``(B, A)`` int64 class of each box, background (C) where not positive.
    target_boxes: ``(B, A, 4)`` the matched ground-truth box of each box.
    gt_labels: ``(B, G)`` int64, the ground-truth labels it was given (``PAD_LABEL`` on padding rows).
    options: the :class:`LossOptions` it was computed with.
    counted_negatives: ``(B, A)`` bool, the background boxes whose classification loss counts: all
        of them, or with ``options.neg_pos_ratio`` the hard negatives kept.

    With ``options.normalization == "batch_positives"`` each image's ``classification`` and
    ``regression`` is its sum divided by the whole batch's number of positives: their sums over
    the images are the paper's two losses (torchvision's ``classification`` and ``bbox_regression``).
    """

    total: Tensor
    classification: Tensor
    regression: Tensor
    pred_boxes: Tensor
    ious: Tensor
    match: Match
    target_labels: Tensor
    target_boxes: Tensor
    gt_labels: Tensor
    options: LossOptions
    counted_negatives: Tensor


class _BCELoss(torch.autograd.Function):
    """The lesson's ``BCE_Loss`` as one autograd node: logits and labels in, ``(B,)`` loss out.

    ``BCE(x, 0) = softplus(x)`` and ``BCE(x, 1) = softplus(x) - x``, so the loss is every
    class column scored as a 0 target, minus ``x`` at each object box's target column; the
    one-hot matrix is never built. Its gradient is the textbook ``(sigmoid(x) - one_hot) / C``
    (background column 0), where autograd through the composite takes about ten passes.

    Forward and backward each dispatch to an eager and a compiled formulation of the same
    numbers: eager PyTorch runs one kernel per op, so there the arithmetic goes in place on
    one fresh tensor; under ``torch.compile`` a plain expression lets inductor fuse it into
    the sums, so that nothing of size ``(B, A, C+1)`` is stored at all.
    """

    @staticmethod
    def forward(ctx, class_logits: Tensor, target_labels: Tensor) -> Tensor:
        C = class_logits.shape[-1] - 1
        ctx.save_for_backward(class_logits, target_labels)
        target_col = target_labels.clamp_max(C - 1).unsqueeze(-1)  # (B, A, 1); background's value unused
        x_t = class_logits.gather(-1, target_col).squeeze(-1)  # (B, A)
        as_zero = (_bce_as_zero_compiled if torch.compiler.is_compiling() else _bce_as_zero_eager)(class_logits)
        return (as_zero - torch.where(target_labels < C, x_t, 0.0).sum(dim=-1)) / C

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        class_logits, target_labels = ctx.saved_tensors
        bce_grad = _bce_grad_compiled if torch.compiler.is_compiling() else _bce_grad_eager
        return bce_grad(class_logits, target_labels, grad / (class_logits.shape[-1] - 1)), None


def _bce_as_zero_eager(x: Tensor) -> Tensor:
    """``(B,)`` sum of ``softplus`` over every box and class column but the last (background).

    All C+1 columns, then the background column's taken back out: a pass over contiguous
    memory vectorises, one over a C-of-(C+1)-column slice does not. In place on one tensor.
    """
    sp = x.abs().neg_().exp_().add_(1).log_().add_(x.clamp_min(0))  # softplus(x), in place
    return sp.sum(dim=(-1, -2)) - sp[..., -1].sum(dim=-1)


def _bce_as_zero_compiled(x: Tensor) -> Tensor:
    """:func:`_bce_as_zero_eager` as a plain expression, which inductor fuses into the sums."""
    return softplus(x).sum(dim=(-1, -2)) - softplus(x[..., -1]).sum(dim=-1)


def _bce_grad_eager(class_logits: Tensor, target_labels: Tensor, scale: Tensor) -> Tensor:
    """``(sigmoid(x) - one_hot) * scale``, background column 0; ``scale`` is ``(B,)``.

    Scaled last: the rounding the trained checkpoint and the notebooks were made with.
    """
    C = class_logits.shape[-1] - 1
    target_col = target_labels.clamp_max(C - 1).unsqueeze(-1)
    is_object = (target_labels < C).to(class_logits.dtype).unsqueeze(-1)
    g = torch.sigmoid(class_logits)
    g[..., C] = 0  # the background column is not scored
    g.scatter_add_(-1, target_col, -is_object)  # minus the one-hot
    return g.mul_(scale[:, None, None])


def _bce_grad_compiled(class_logits: Tensor, target_labels: Tensor, scale: Tensor) -> Tensor:
    """:func:`_bce_grad_eager` scaled inside the sigmoid's pass: one pass fewer when compiled."""
    C = class_logits.shape[-1] - 1
    target_col = target_labels.clamp_max(C - 1).unsqueeze(-1)
    is_object = (target_labels < C).to(class_logits.dtype).unsqueeze(-1)
    g = torch.sigmoid(class_logits) * scale[:, None, None]
    g[..., C] = 0
    return g.scatter_add_(-1, target_col, -is_object * scale[:, None, None])


def classification_loss(class_logits: Tensor, target_labels: Tensor, *, focal: bool = False,
                        alpha: float = LossOptions.focal_alpha, gamma: float = LossOptions.focal_gamma,
                        validate: bool = True) -> Tensor:
    """The lesson's ``BCE_Loss`` (or ``FocalLoss``), per image.

    One-hot targets over C+1 columns, background column dropped from targets and
    logits, binary cross-entropy summed over boxes and classes, divided by C.
    The one-hot matrix is never built: every column is scored as a 0 target,
    then the target column of each positive box is swapped to a 1 target.

    Args:
        class_logits: ``(B, A, C+1)``, background last.
        target_labels: ``(B, A)`` int64 in ``[0, C]``; C is background.
        alpha, gamma: the focal weight; ``0 <= alpha <= 1``, ``gamma >= 0``.
        validate: check the labels' range (a host sync; :func:`ssd_loss`, which made them, skips it).

    Returns:
        ``(B,)`` loss per image.
    """
    if focal:
        check_focal(alpha, gamma)
    if class_logits.dim() != 3 or target_labels.shape != class_logits.shape[:2]:
        raise ValueError(f"target_labels: expected shape {tuple(class_logits.shape[:2])} for class_logits "
                         f"{tuple(class_logits.shape)} (B, A, C+1), got {tuple(target_labels.shape)}")
    if validate:
        C = class_logits.shape[-1] - 1
        if target_labels.is_floating_point() or target_labels.dtype == torch.bool:
            raise ValueError(f"target_labels: expected integer class ids, got {target_labels.dtype}")
        if target_labels.numel() and not 0 <= int(target_labels.min()) <= int(target_labels.max()) <= C:
            raise ValueError(f"target_labels: class ids must be in [0, {C}] ({C} is background), got "
                             f"{int(target_labels.min())}..{int(target_labels.max())}")
    if not focal:
        return _BCELoss.apply(class_logits, target_labels)
    C = class_logits.shape[-1] - 1
    x = class_logits[..., :C]
    as_zero = focal_terms(x, False, alpha, gamma).sum(dim=(-1, -2))
    is_object = target_labels < C
    x_t = x.gather(-1, target_labels.clamp_max(C - 1).unsqueeze(-1)).squeeze(-1)  # (B, A)
    swap = focal_terms(x_t, True, alpha, gamma) - focal_terms(x_t, False, alpha, gamma)
    return (as_zero + (swap * is_object).sum(dim=-1)) / C


def box_errors(pred: Tensor, target: Tensor, positive: Tensor, box_loss: BoxLoss = LossOptions.box_loss,
               beta: float = LossOptions.smooth_l1_beta) -> Tensor:
    """``(B,)`` the L1 (or smooth L1) between ``pred`` and ``target``, summed over the positives' 4 coordinates.

    ``pred``, ``target``: ``(B, A, 4)`` corners, or activations and encoded offsets; ``positive``: ``(B, A)`` bool.
    """
    err = (pred - target).abs() if box_loss == "l1" else F.smooth_l1_loss(pred, target, reduction="none", beta=beta)
    # where, not a product: a non-positive's target may be a padding row holding anything.
    return torch.where(positive.unsqueeze(-1), err, 0.0).sum(dim=(-1, -2))


def regression_loss(pred_boxes: Tensor, target_boxes: Tensor, positive: Tensor,
                    reduction: Reduction = LossOptions.regression_reduction, *, box_loss: BoxLoss = LossOptions.box_loss,
                    beta: float = LossOptions.smooth_l1_beta) -> Tensor:
    """L1 (or smooth L1) between positives' predicted and matched ground-truth corners, per image.

    ``"mean"`` (the lesson's code): mean absolute error over the positives'
    4 coordinates. ``"sum"`` (the article's wording): each positive's MAE over
    its 4 coordinates, summed over positives. An image with no positive gives 0.

    Args:
        pred_boxes, target_boxes: ``(B, A, 4)`` (or activations and their encoded targets).
        positive: ``(B, A)`` bool.
        box_loss, beta: ``"l1"`` or ``"smooth_l1"`` with its ``beta`` (:class:`LossOptions`).

    Returns:
        ``(B,)``.
    """
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"box_loss must be one of {', '.join(map(repr, BOX_LOSSES))}, got {box_loss!r}")
    err = box_errors(pred_boxes, target_boxes, positive, box_loss, beta)
    if reduction == "mean":
        return err / (4 * positive.sum(dim=-1).clamp_min(1))
    if reduction == "sum":
        return err / 4
    raise ValueError(f"regression reduction must be 'mean' or 'sum', got {reduction!r}")


def _fail(name: str, problem: str) -> None:
    raise ValueError(f"{name}: {problem}")


#: Ground-truth coordinates above this are taken for pixels (fractions may stick out of the image a little).
FRACTION_LIMIT = 1.5


def validate_inputs(class_logits: Tensor, box_actns: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                    anchors: Anchors) -> None:
    """Raise a ``ValueError`` naming the argument and the problem, or return None."""
    if not isinstance(anchors, Anchors):
        _fail("anchors", f"expected the Anchors of the model's outputs (make_anchors(spec)), got {type(anchors).__name__}")
    for name, t in (("class_logits", class_logits), ("box_actns", box_actns), ("gt_boxes", gt_boxes)):
        if not isinstance(t, Tensor):
            _fail(name, f"expected a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            _fail(name, f"expected a floating-point tensor, got dtype {t.dtype}")
    if not isinstance(gt_labels, Tensor) or gt_labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        _fail("gt_labels", f"expected an integer tensor of class ids, got {getattr(gt_labels, 'dtype', type(gt_labels).__name__)}")
    if class_logits.dim() != 3:
        _fail("class_logits", f"expected shape (B, A, C+1), got {tuple(class_logits.shape)}")
    if class_logits.shape[-1] < 2:
        _fail("class_logits", f"needs at least one class plus background in the last dimension, got {class_logits.shape[-1]}")
    B, A = class_logits.shape[:2]
    if box_actns.dim() != 3 or box_actns.shape[-1] != 4:
        _fail("box_actns", f"expected shape (B, A, 4), got {tuple(box_actns.shape)}")
    if A != len(anchors):
        _fail("class_logits", f"has {A} boxes but anchors has {len(anchors)}")
    if box_actns.shape[1] != len(anchors):
        _fail("box_actns", f"has {box_actns.shape[1]} boxes but anchors has {len(anchors)}")
    if box_actns.shape[0] != B:
        _fail("box_actns", f"batch size {box_actns.shape[0]} differs from class_logits' {B}")
    if gt_boxes.dim() != 3 or gt_boxes.shape[-1] != 4:
        _fail("gt_boxes", f"expected shape (B, G, 4), got {tuple(gt_boxes.shape)}")
    if gt_boxes.shape[0] != B:
        _fail("gt_boxes", f"batch size {gt_boxes.shape[0]} differs from class_logits' {B}")
    if gt_labels.shape != gt_boxes.shape[:2]:
        _fail("gt_labels", f"expected shape {tuple(gt_boxes.shape[:2])} to match gt_boxes, got {tuple(gt_labels.shape)}")
    for name, t in (("class_logits", class_logits), ("box_actns", box_actns)):
        if not torch.isfinite(t).all():
            _fail(name, "contains NaN or inf")
    C = class_logits.shape[-1] - 1
    valid = gt_labels.long() > PAD_LABEL
    if (gt_labels.long() < PAD_LABEL).any():
        _fail("gt_labels", f"has a label below {PAD_LABEL} (min {int(gt_labels.min())}); {PAD_LABEL} marks padding")
    if (gt_labels >= C).any():
        _fail("gt_labels", f"has class id {int(gt_labels.max())} but there are only {C} classes (0..{C - 1}; {C} is background)")
    real = gt_boxes[valid]
    if not torch.isfinite(real).all():
        _fail("gt_boxes", "contains NaN or inf in a non-padding row")
    if real.numel() and (real.max() > FRACTION_LIMIT or real.min() < 1 - FRACTION_LIMIT):
        _fail("gt_boxes", f"boxes must be fractions of the image (y0, x0, y1, x1 in 0..1), got values from "
                          f"{float(real.min()):g} to {float(real.max()):g}: pixels? divide by the image's height and width")
    bad = (real[:, 2] <= real[:, 0]) | (real[:, 3] <= real[:, 1])
    if bad.any():
        b, g = torch.nonzero(valid)[torch.nonzero(bad)[0, 0]].tolist()
        _fail("gt_boxes", f"box [{b}, {g}] = {gt_boxes[b, g].tolist()} has y1 <= y0 or x1 <= x0 (expected (y0, x0, y1, x1))")


def ssd_loss(class_logits: Tensor, box_actns: Tensor, gt_boxes: Tensor, gt_labels: Tensor, anchors: Anchors, *,
             options: Optional[LossOptions] = None, match_on: Optional[MatchOn] = None,
             iou_threshold: Optional[float] = None, classification: Optional[Classification] = None,
             focal_alpha: Optional[float] = None, focal_gamma: Optional[float] = None,
             regression_reduction: Optional[Reduction] = None, match_inclusive: Optional[bool] = None,
             neg_pos_ratio: Optional[float] = None, box_coding: Optional[BoxCoding] = None,
             box_loss: Optional[BoxLoss] = None, smooth_l1_beta: Optional[float] = None,
             normalization: Optional[Normalization] = None, validate: bool = True) -> SSDLossResult:
    """The SSD loss of a batch, with every intermediate the notebooks show.

    Args:
        class_logits: ``(B, A, C+1)`` class activations, background (index C) last.
        box_actns: ``(B, A, 4)`` box activations ``(dy, dx, dh, dw)``, read as ``options.box_coding`` says.
        gt_boxes: ``(B, G, 4)`` ground-truth ``(y0, x0, y1, x1)``, fractions of the image.
        gt_labels: ``(B, G)`` int64 class ids in ``[0, C)``; ``PAD_LABEL`` (-1) marks a padding row.
        anchors: from :func:`~ssd_lesson.core.anchors.make_anchors`, on the same device.
        options: a :class:`~ssd_lesson.core.options.LossOptions` (default: ``LossOptions()``;
            ``LossOptions.ssd_paper()`` is the SSD paper's loss, torchvision's ``SSD.compute_loss``).
        match_on, ..., normalization: the same options one by one, over ``LossOptions()``'s defaults;
            giving them with ``options`` is a ``TypeError`` naming both.
        validate: check the inputs first (costs a host sync); False for speed.

    Half-precision activations (float16, bfloat16) are scored in float32, and the loss is float32:
    a float16 sum over SSD300's 8732 anchors overflows to inf. Their gradients come back in their dtype.
    """
    options = LossOptions.resolve(options, "ssd_loss", match_on=match_on, iou_threshold=iou_threshold,
                                  classification=classification, focal_alpha=focal_alpha, focal_gamma=focal_gamma,
                                  regression_reduction=regression_reduction, match_inclusive=match_inclusive,
                                  neg_pos_ratio=neg_pos_ratio, box_coding=box_coding, box_loss=box_loss,
                                  smooth_l1_beta=smooth_l1_beta, normalization=normalization)
    if not isinstance(anchors, Anchors):
        _fail("anchors", f"expected the Anchors of the model's outputs (make_anchors(spec)), got {type(anchors).__name__}")
    if validate:
        validate_inputs(class_logits, box_actns, gt_boxes, gt_labels, anchors)
    if class_logits.dtype in (torch.float16, torch.bfloat16) or box_actns.dtype in (torch.float16, torch.bfloat16):
        class_logits, box_actns = class_logits.float(), box_actns.float()
    C = class_logits.shape[-1] - 1
    gt_boxes = gt_boxes.to(box_actns.dtype)
    gt_labels = gt_labels.long()
    # Coordinate-major boxes, (B, 4, A), and an IoU laid out (B, G, A): every op then runs along
    # contiguous rows of A anchors, and both matching reductions (over G for each box, over A
    # for each ground truth) vectorise; torch.compile's code for it is 2-3x faster than for
    # (B, A, 4) boxes. ``pred_boxes`` and ``ious`` are (B, A, 4) and (B, A, G) views of them.
    box_planes = activations_to_box_planes(box_actns, anchors, options.box_coding)
    pred_boxes = box_planes.transpose(1, 2)
    # Matching picks targets; it is not differentiated through.
    on_predictions = options.match_on == "predictions"
    to_match = box_planes.detach() if on_predictions else anchors.corner_planes.to(box_actns.dtype)
    gt_columns = [t.unsqueeze(-1) for t in gt_boxes.unbind(-1)]  # (B, G, 1) each
    box_rows = [t.unsqueeze(-2) for t in to_match.unbind(-2)]  # (B, 1, A) or (1, A) each
    ious = iou_of_corners(gt_columns, box_rows).transpose(1, 2)  # (B, A, G)
    gt_valid = gt_labels > PAD_LABEL
    match = match_boxes(ious, gt_valid, options.iou_threshold, validate=False, inclusive=options.match_inclusive)
    positive = match.positive
    if gt_boxes.shape[1] == 0:  # no ground truth in the whole batch: everything is background
        target_labels = torch.full_like(match.gt_idx, C)
        target_boxes = torch.zeros_like(pred_boxes)
    else:
        target_labels = gt_labels.gather(1, match.gt_idx).masked_fill(~positive, C)
        target_boxes = gt_boxes.gather(1, match.gt_idx.unsqueeze(-1).expand(-1, -1, 4))
    negatives = ~positive
    if options.classification != "softmax" and options.neg_pos_ratio is None:  # the lesson's, in one node
        clas = classification_loss(class_logits, target_labels, focal=options.classification == "focal",
                                   alpha=options.focal_alpha, gamma=options.focal_gamma, validate=False)
    else:
        per_box = box_classification_loss(class_logits, target_labels, options.classification,
                                          alpha=options.focal_alpha, gamma=options.focal_gamma)
        if options.neg_pos_ratio is not None:
            negatives = hard_negatives(per_box, positive, options.neg_pos_ratio)
        clas = torch.where(positive | negatives, per_box, 0.0).sum(dim=-1)
    if options.box_coding == "tanh_corners":  # the loss on the corners
        pred, target = pred_boxes, target_boxes
    else:  # the loss on the offsets; a box that is not positive is given its anchor box (offsets 0, never log 0)
        anchor_boxes = anchors.corners.to(box_actns.dtype)
        pred = box_actns
        target = encode_log_offsets(torch.where(positive.unsqueeze(-1), target_boxes, anchor_boxes), anchors.centers_hw)
    if options.normalization == "per_image":
        regr = regression_loss(pred, target, positive, options.regression_reduction, box_loss=options.box_loss,
                               beta=options.smooth_l1_beta)
    else:  # both sums over the batch's positives, each image's share kept apart
        n_positives = positive.sum().clamp_min(1)
        clas = clas / n_positives
        regr = box_errors(pred, target, positive, options.box_loss, options.smooth_l1_beta) / n_positives
    return SSDLossResult((clas + regr).sum(), clas, regr, pred_boxes, ious, match, target_labels, target_boxes,
                         gt_labels, options, negatives)


def loss_gradients(result: SSDLossResult, class_logits: Tensor, b: int = 0) -> tuple[Tensor, Tensor]:
    """Gradient of ``result.total`` on image ``b``'s predicted box corners ``(A, 4)`` and class logits ``(A, C+1)``.

    Uses :func:`torch.autograd.grad` with ``retain_graph=True``, so ``.backward()`` can still follow
    (leaf ``.grad`` fields are left alone; a ``retain_grad()`` tensor would still receive this gradient).
    """
    gb, gl = torch.autograd.grad(result.total, [result.pred_boxes, class_logits], retain_graph=True, allow_unused=True)
    gb = torch.zeros_like(result.pred_boxes) if gb is None else gb
    return gb[b].detach(), gl[b].detach()
