"""The options of the loss, of decoding and of evaluation, each default written once, here.

:class:`LossOptions` says how :func:`~ssd_lesson.core.loss.ssd_loss` scores a batch,
:class:`DecodeOptions` how :func:`~ssd_lesson.model.infer.decode` turns activations into
detections, :class:`EvalOptions` how average precision scores those detections
(:func:`~ssd_lesson.model.voc_eval.voc_ap`). Each is frozen and validated when made, so a wrong
value is refused where it is written, and each travels as one object from the command line
(whose options are made from these fields), the notebooks, the widgets and training down to
the core. A function that also takes the options as loose keywords
(``ssd_loss(..., match_on="anchors")``) resolves them with :meth:`LossOptions.resolve`:
keywords or an options object, never both (a ``TypeError`` naming both).

Presets name what the course compares: :meth:`LossOptions.article` (match on the predicted
boxes, sum the boxes' L1) and :meth:`LossOptions.lesson_code` (match on the anchor boxes,
average the L1); :meth:`LossOptions.training` is what training uses unless told otherwise (the
lesson code's). The plain ``LossOptions()`` is what
notebooks 04-08 and ``dissect`` show: the article's matching with the lesson code's mean.
:meth:`LossOptions.ssd_paper` is the SSD paper's loss (Liu et al., 2016), as torchvision's ``SSD``
computes it; each of its differences from the lesson is an option of its own, so that they can be
switched one at a time.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional, TypeVar

#: The overlap written on a box that a ground-truth box claims (the article's "nudged to 2").
FORCED_OVERLAP = 1.99
#: The lesson's threshold: a box whose overlap is not above it becomes background.
IOU_THRESHOLD = 0.4
#: The SSD paper's threshold: a box whose overlap is at least it is a positive.
PAPER_IOU_THRESHOLD = 0.5
#: The SSD paper's hard negatives: at most this many negatives per positive, per image.
PAPER_NEG_POS_RATIO = 3.0
#: The paper's box "variances" (``BoxCoder`` weights 10, 10, 5, 5 in torchvision): the centre offsets
#: are divided by ``CENTER_VARIANCE`` and the log size ratios by ``SIZE_VARIANCE``, so that both are
#: about 1 in size for the usual matches.
CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2

__all__ = ["FORCED_OVERLAP", "IOU_THRESHOLD", "PAPER_IOU_THRESHOLD", "PAPER_NEG_POS_RATIO", "CENTER_VARIANCE",
           "SIZE_VARIANCE", "MatchOn", "Classification", "Reduction", "BoxCoding", "BoxLoss", "Normalization",
           "ClassScores", "APRule", "LossOptions", "DecodeOptions", "EvalOptions", "MATCH_ON", "CLASSIFICATIONS",
           "REDUCTIONS", "BOX_CODINGS", "BOX_LOSSES", "NORMALIZATIONS", "CLASS_SCORES", "AP_RULES"]

MatchOn = Literal["predictions", "anchors"]
Classification = Literal["bce", "focal", "softmax"]
Reduction = Literal["mean", "sum"]
BoxCoding = Literal["tanh_corners", "log_offsets"]
BoxLoss = Literal["l1", "smooth_l1"]
Normalization = Literal["per_image", "batch_positives"]
ClassScores = Literal["sigmoid", "softmax"]
APRule = Literal["voc07", "all_point"]
#: The values each choice may take (the command line's ``choices``), in the order shown.
MATCH_ON: tuple[str, ...] = ("predictions", "anchors")
CLASSIFICATIONS: tuple[str, ...] = ("bce", "focal", "softmax")
REDUCTIONS: tuple[str, ...] = ("mean", "sum")
BOX_CODINGS: tuple[str, ...] = ("tanh_corners", "log_offsets")
BOX_LOSSES: tuple[str, ...] = ("l1", "smooth_l1")
NORMALIZATIONS: tuple[str, ...] = ("per_image", "batch_positives")
CLASS_SCORES: tuple[str, ...] = ("sigmoid", "softmax")
AP_RULES: tuple[str, ...] = ("voc07", "all_point")

_O = TypeVar("_O", bound="_Options")
#: The options the SSD paper brought (:meth:`LossOptions.ssd_paper`); the repr names them only where they are set.
PAPER_FIELDS = ("match_inclusive", "neg_pos_ratio", "box_coding", "box_loss", "smooth_l1_beta", "normalization")


class _Options:
    """What the option records share: a copy with changes, a plain dict and back, and :meth:`resolve`."""

    def replace(self: _O, **changes: Any) -> _O:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for a checkpoint, which holds no Python objects)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[_O], d: Mapping[str, Any]) -> _O:
        """Inverse of :meth:`to_dict`; an unknown key is a ``ValueError`` naming it, a missing one takes the default."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown option(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(sorted(names))}")
        return cls(**dict(d))

    @classmethod
    def resolve(cls: type[_O], options: Optional[_O], caller: str, **keywords: Any) -> _O:
        """The options ``caller`` runs with: ``options``, or the keywords given (not None) over the defaults.

        Both at once is a ``TypeError`` naming both: the keywords would otherwise be ignored without a word.
        """
        given = {k: v for k, v in keywords.items() if v is not None}
        if options is None:
            return cls(**given)
        if not isinstance(options, cls):
            article = "an" if cls.__name__[0] in "AEIOU" else "a"
            raise TypeError(f"{caller}: options must be {article} {cls.__name__}, got {type(options).__name__}")
        if given:
            shown = ", ".join(f"{k}={v!r}" for k, v in given.items())
            raise TypeError(f"{caller}: got both options={options!r} and {shown}; pass one of them "
                            f"(options.replace({shown}) changes a copy)")
        return options


@dataclass(frozen=True)
class LossOptions(_Options):
    """How :func:`~ssd_lesson.core.loss.ssd_loss` scores a batch.

    match_on: ``"predictions"`` matches ground truth to the predicted boxes (the article);
        ``"anchors"`` to the fixed anchor boxes (the lesson's code and the paper).
    iou_threshold: matches not above it become background, in ``[0, FORCED_OVERLAP)``.
    classification: ``"bce"`` (the lesson's ``BCE_Loss``: one sigmoid per class, background
        dropped), ``"focal"`` (its ``FocalLoss``) or ``"softmax"`` (the paper's: cross-entropy
        over the C+1 columns, background included).
    focal_alpha, focal_gamma: the focal weight ``alpha_t * (1 - p_t) ** gamma``.
    regression_reduction: with ``normalization="per_image"``, ``"mean"`` over the positives'
        coordinates (the lesson's code) or ``"sum"`` of the positives' per-box loss averaged over
        its 4 coordinates (the article's wording).
    match_inclusive: a box is positive when its overlap is above ``iou_threshold`` (False, the
        lesson's ``>``) or at least it (True, the paper's and torchvision's ``>=``).
    neg_pos_ratio: hard negative mining: of each image's negatives, only the
        ``neg_pos_ratio * n_positives`` with the highest classification loss count (the paper: 3).
        None, or 0, counts every negative (the lesson).
    box_coding: what the box activations ``(dy, dx, dh, dw)`` mean: ``"tanh_corners"`` (the
        lesson's: tanh-bounded moves of the anchor box, the loss on the corners) or
        ``"log_offsets"`` (the paper's: the centre's offset in anchor sizes and the log of the
        size ratio, divided by :data:`CENTER_VARIANCE` and :data:`SIZE_VARIANCE`, the loss on
        those offsets). Decoding must use the model's coding (:attr:`DecodeOptions.coding`).
    box_loss: ``"l1"`` (the lesson's) or ``"smooth_l1"`` (the paper's: quadratic below
        ``smooth_l1_beta``, linear above it).
    smooth_l1_beta: where smooth L1 turns from quadratic to linear, ``>= 0`` (0 is L1; torchvision's SSD: 1).
    normalization: ``"per_image"`` (the lesson's: each image's classification summed over its
        counted boxes, each image's box loss reduced by ``regression_reduction``, the images
        summed) or ``"batch_positives"`` (the paper's: both losses summed over the batch, the box
        loss over every coordinate, and divided by the batch's number of positives, at least 1).
        The BCE and focal loss of a box are divided by C under either (the lesson's ``BCE_Loss``).
    """

    match_on: MatchOn = "predictions"
    iou_threshold: float = IOU_THRESHOLD
    classification: Classification = "bce"
    focal_alpha: float = 0.25
    focal_gamma: float = 1.0
    regression_reduction: Reduction = "mean"
    match_inclusive: bool = False
    neg_pos_ratio: Optional[float] = None
    box_coding: BoxCoding = "tanh_corners"
    box_loss: BoxLoss = "l1"
    smooth_l1_beta: float = 1.0
    normalization: Normalization = "per_image"

    def __post_init__(self) -> None:
        for name, allowed in (("match_on", MATCH_ON), ("classification", CLASSIFICATIONS),
                              ("regression_reduction", REDUCTIONS), ("box_coding", BOX_CODINGS),
                              ("box_loss", BOX_LOSSES), ("normalization", NORMALIZATIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")
        if isinstance(self.iou_threshold, bool) or not 0 <= self.iou_threshold < FORCED_OVERLAP:  # NaN fails too
            raise ValueError(f"iou_threshold must be in [0, {FORCED_OVERLAP}), got {self.iou_threshold!r}")
        check_focal(self.focal_alpha, self.focal_gamma)
        if not isinstance(self.match_inclusive, bool):
            raise ValueError(f"match_inclusive must be True (IoU >= threshold) or False (IoU > threshold), "
                             f"got {self.match_inclusive!r}")
        ratio = self.neg_pos_ratio
        if ratio is not None and (not _is_real(ratio) or not 0 <= ratio < float("inf")):  # NaN fails too
            raise ValueError(f"neg_pos_ratio must be a finite number >= 0 (negatives kept per positive; None or 0 "
                             f"keeps them all), got {ratio!r}")
        if ratio == 0:  # one spelling of "keep every negative": options that behave alike compare equal
            object.__setattr__(self, "neg_pos_ratio", None)
        beta = self.smooth_l1_beta
        if not _is_real(beta) or not 0 <= beta < float("inf"):
            raise ValueError(f"smooth_l1_beta must be a finite number >= 0 (0 is plain L1), got {beta!r}")

    def __repr__(self) -> str:
        """Every option of the lesson's, then those of the paper's that differ from their defaults: the lesson's
        presets read as they always have, and ``eval(repr(o)) == o``."""
        lesson = [f for f in dataclasses.fields(self) if f.name not in PAPER_FIELDS]
        paper = [f for f in dataclasses.fields(self) if f.name in PAPER_FIELDS and getattr(self, f.name) != f.default]
        return f"{type(self).__name__}({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in lesson + paper)})"

    @classmethod
    def ssd_paper(cls) -> "LossOptions":
        """The SSD paper's loss, as torchvision's ``SSD.compute_loss`` computes it: match the anchor boxes at
        IoU >= 0.5 (plus each object's best box), softmax cross-entropy with background and the hardest 3
        negatives per positive of each image, smooth L1 (beta 1) on log-space offsets, both losses divided
        by the batch's number of positives."""
        return cls(match_on="anchors", iou_threshold=PAPER_IOU_THRESHOLD, match_inclusive=True,
                   classification="softmax", neg_pos_ratio=PAPER_NEG_POS_RATIO, box_coding="log_offsets",
                   box_loss="smooth_l1", smooth_l1_beta=1.0, normalization="batch_positives")

    @classmethod
    def article(cls) -> "LossOptions":
        """The article's loss: IoU with the predicted boxes, each positive's MAE summed over positives."""
        return cls(match_on="predictions", regression_reduction="sum")

    @classmethod
    def lesson_code(cls) -> "LossOptions":
        """The lesson's code: IoU with the anchor boxes, L1 averaged over the positives' coordinates."""
        return cls(match_on="anchors", regression_reduction="mean")

    @classmethod
    def training(cls) -> "LossOptions":
        """What training uses unless told otherwise (``train``, :func:`~ssd_lesson.model.train.ssd_learner`,
        :class:`~ssd_lesson.model.train.SSDLoss`): :meth:`lesson_code`. Matching on the fixed anchor boxes
        keeps the targets still while the predicted boxes are random."""
        return cls.lesson_code()

    def describe(self) -> str:
        """One line for a reader: ``match on anchors, IoU > 0.4, BCE, L1 summed``; the paper's options are
        named only where they differ from the lesson's."""
        clas = {"bce": "BCE", "softmax": "softmax cross-entropy",
                "focal": f"focal (alpha {self.focal_alpha:g}, gamma {self.focal_gamma:g})"}[self.classification]
        if self.neg_pos_ratio is not None:
            clas += f", {self.neg_pos_ratio:g} hard negatives per positive"
        box = "L1" if self.box_loss == "l1" else f"smooth L1 (beta {self.smooth_l1_beta:g})"
        if self.box_coding != "tanh_corners":
            box += " on log-space offsets"
        reduce = ("divided by the batch's positives" if self.normalization == "batch_positives"
                  else "averaged" if self.regression_reduction == "mean" else "summed")
        return (f"match on {self.match_on}, IoU {'>=' if self.match_inclusive else '>'} {self.iou_threshold:g}, "
                f"{clas}, {box} {reduce}")


def check_focal(alpha: float, gamma: float) -> None:
    """Refuse a focal weight outside ``0 <= alpha <= 1``, ``0 <= gamma < inf`` (NaN too), naming it."""
    if not 0 <= alpha <= 1:  # NaN fails too
        raise ValueError(f"focal_alpha: must be in [0, 1] (the weight of the object term), got {alpha}")
    if not 0 <= gamma < float("inf"):
        raise ValueError(f"focal_gamma: must be a finite number >= 0, got {gamma}")


@dataclass(frozen=True)
class DecodeOptions(_Options):
    """How :func:`~ssd_lesson.model.infer.decode` turns activations into detections.

    score_threshold: keep (box, class) pairs whose score is above it, in ``[0, 1)``. Low by
        default: average precision rewards low-scored hits ranked below the rest (raise it for a picture).
    nms_iou: within one class, drop a box overlapping a better one by more than this, in ``[0, 1]``.
    max_per_image: keep at most this many detections per image (an integer >= 1), best first.
    coding: what the box activations mean: the box coding the model was trained with
        (:attr:`LossOptions.box_coding`; :meth:`for_loss` copies it).
    class_scores: ``"sigmoid"``, one independent score per class (for a model trained with BCE or
        focal loss), or ``"softmax"`` over the C+1 columns, background included (trained with the
        paper's softmax loss); background is never a detection.
    """

    score_threshold: float = 0.05
    nms_iou: float = 0.5
    max_per_image: int = 100
    coding: BoxCoding = "tanh_corners"
    class_scores: ClassScores = "sigmoid"

    def __post_init__(self) -> None:
        if isinstance(self.score_threshold, bool) or not 0 <= self.score_threshold < 1:  # NaN fails too
            raise ValueError(f"score_threshold: must be in [0, 1) (a sigmoid score), got {self.score_threshold!r}")
        if isinstance(self.nms_iou, bool) or not 0 <= self.nms_iou <= 1:
            raise ValueError(f"nms_iou: must be in [0, 1], got {self.nms_iou!r}")
        if isinstance(self.max_per_image, bool) or not _is_integer(self.max_per_image) or self.max_per_image < 1:
            raise ValueError(f"max_per_image: must be an integer >= 1, got {self.max_per_image!r}")
        for name, allowed in (("coding", BOX_CODINGS), ("class_scores", CLASS_SCORES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")

    @classmethod
    def for_loss(cls, loss: LossOptions, **changes: Any) -> "DecodeOptions":
        """The decoding that reads the activations as a model trained with ``loss`` wrote them: its box
        coding, and softmax scores after a softmax loss (sigmoid ones otherwise); ``changes`` over that."""
        scores = "softmax" if loss.classification == "softmax" else "sigmoid"
        return cls(coding=loss.box_coding, class_scores=scores).replace(**changes)


@dataclass(frozen=True)
class EvalOptions(_Options):
    """How average precision scores detections (:func:`~ssd_lesson.model.voc_eval.voc_ap`,
    :func:`~ssd_lesson.model.metrics.per_class_table`, ``python -m ssd_lesson evaluate``).

    hit_iou: a detection is a hit (a true positive) when its IoU with a ground-truth box of its class
        that no better-scored detection claimed is above it (Pascal VOC's criterion; COCO's rule
        counts ``>=``), in ``[0, 1)``. Not the matching threshold of the loss
        (:attr:`LossOptions.iou_threshold`): that one says which boxes train on which object.
    ap_rule: how a precision-recall curve becomes one number: ``"voc07"``, VOC2007's 11-point
        interpolation (the mean of the best precision at recall 0, 0.1, ..., 1), or ``"all_point"``,
        VOC2010's area under the curve made non-increasing. COCO's AP
        (:func:`~ssd_lesson.model.metrics.coco_ap_per_class`) is a protocol of its own (101 recall
        points, ``>=``, no devkit ``+1``) and takes only ``hit_iou``.
    """

    hit_iou: float = 0.5
    ap_rule: APRule = "voc07"

    def __post_init__(self) -> None:
        if isinstance(self.hit_iou, bool) or not 0 <= self.hit_iou < 1:  # NaN fails too
            raise ValueError(f"hit_iou: must be in [0, 1) (an IoU), got {self.hit_iou!r}")
        if self.ap_rule not in AP_RULES:
            raise ValueError(f"ap_rule must be one of {', '.join(map(repr, AP_RULES))}, got {self.ap_rule!r}")

    @property
    def use_07_metric(self) -> bool:
        """The devkit's name for ``ap_rule == "voc07"``."""
        return self.ap_rule == "voc07"

    @staticmethod
    def rule_of(use_07_metric: Optional[bool]) -> Optional[APRule]:
        """The ``ap_rule`` of the devkit's ``use_07_metric`` flag (None stays None: not given)."""
        if use_07_metric is None:
            return None
        if not isinstance(use_07_metric, bool):
            raise TypeError(f"use_07_metric must be True or False, got {use_07_metric!r}")
        return "voc07" if use_07_metric else "all_point"


def _is_integer(x: Any) -> bool:
    """An ``int`` or a numpy integer (without importing numpy: the core needs torch only)."""
    return isinstance(x, int) or (type(x).__module__ == "numpy" and hasattr(x, "__index__"))



def _is_real(x: Any) -> bool:
    """A real number (int, float, or numpy's), not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)
