"""The command line's options for the option records, made from their fields.

Every field of :class:`~ssd_lesson.core.options.LossOptions`, :class:`~ssd_lesson.core.options.DecodeOptions`
and :class:`~ssd_lesson.core.options.EvalOptions` has one row in :data:`FLAGS`: its flag, how its
text is read (a choice, or a validator of :mod:`ssd_lesson.commands.cli` that names the flag
when the value is wrong) and its help. :func:`add_options` adds one option per field to a
command, with the defaults of the options object it is given, and :func:`options_from` reads
them back as one object. So a new option is its field (in ``core/options.py``) plus its row
here; a field without a row is refused when a command builds its parser (and by the tests).
Each option's ``dest`` is argparse's for its flag (``--loss``: ``loss``), as the checkpoints record
the parsed options by it. Different settings have different flags: ``--iou-threshold`` is the loss's
matching threshold, ``--hit-iou`` evaluation's. Where another option picks the defaults (``train --spec
ssd300``: the SSD paper's loss), the command parses into :func:`unset_options` and fills what the
command line left unset from the chosen preset (:func:`fill_options`): a flag given wins, even at a
value that equals another preset's.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, TypeVar

from ..core.options import (AP_RULES, BOX_CODINGS, BOX_LOSSES, CLASS_SCORES, CLASSIFICATIONS, MATCH_ON,
                            NORMALIZATIONS, REDUCTIONS, DecodeOptions, EvalOptions, LossOptions)
from .cli import fraction, nonnegative_float, positive_int, unit_interval

__all__ = ["Flag", "FLAGS", "yes_no", "OPTION_GROUPS", "NOT_GIVEN", "add_options", "options_from", "unset_options",
           "fill_options", "add_loss_options", "loss_options_from"]

_O = TypeVar("_O", LossOptions, DecodeOptions, EvalOptions)
#: How a yes-or-no option is written on the command line.
YES, NO = ("yes", "true", "1"), ("no", "false", "0")
#: What an option holds, parsed into :func:`unset_options`, when the command line does not give it.
NOT_GIVEN: Any = object()


def yes_no(text: str) -> bool:
    """A yes-or-no option: ``yes``/``true``/``1`` or ``no``/``false``/``0``."""
    if text.strip().lower() in YES:
        return True
    if text.strip().lower() in NO:
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


@dataclass(frozen=True)
class Flag:
    """One field's option: ``name`` (``--match-on``), ``help`` (plain text; the default is added by
    the help formatter), and either ``choices`` or ``parse`` (an argparse ``type=`` validator)."""

    name: str
    help: str
    choices: Optional[tuple[str, ...]] = None
    parse: Optional[Callable[[str], Any]] = None

    @property
    def dest(self) -> str:
        """Where argparse keeps the value: ``--match-on`` in ``match_on``."""
        return self.name.lstrip("-").replace("-", "_")


#: One row per field of each options record, in the fields' order.
FLAGS: dict[type, dict[str, Flag]] = {
    LossOptions: {
        "match_on": Flag("--match-on", "match ground truth to the predicted boxes (the article) or the anchor "
                         "boxes (the lesson's code)", choices=MATCH_ON),
        "iou_threshold": Flag("--iou-threshold", "matching: boxes whose best overlap is not above it become "
                              "background", parse=fraction),
        "classification": Flag("--loss", "classification loss: the lesson's BCE or its focal loss",
                               choices=CLASSIFICATIONS),
        "focal_alpha": Flag("--focal-alpha", "focal loss: the weight of the object term, in [0, 1]",
                            parse=unit_interval),
        "focal_gamma": Flag("--focal-gamma", "focal loss: the exponent of (1 - p_t)", parse=nonnegative_float),
        "regression_reduction": Flag("--regression", "box loss: mean over the positives' coordinates (the "
                                     "lesson's code) or the sum of each positive's MAE (the article's wording; "
                                     "trains a body from scratch better)", choices=REDUCTIONS),
        "match_inclusive": Flag("--match-inclusive", "matching: yes, a box is positive at an overlap of at least "
                                "the threshold (the SSD paper); no, above it (the lesson)", parse=yes_no),
        "neg_pos_ratio": Flag("--neg-pos-ratio", "hard negative mining: count only the hardest negatives, this "
                              "many per positive in each image (the SSD paper: 3); 0 counts them all",
                              parse=nonnegative_float),
        "box_coding": Flag("--box-coding", "what the box activations mean: the lesson's tanh-bounded corners or "
                           "the SSD paper's log-space offsets", choices=BOX_CODINGS),
        "box_loss": Flag("--box-loss", "box loss: L1 (the lesson) or smooth L1 (the SSD paper)", choices=BOX_LOSSES),
        "smooth_l1_beta": Flag("--smooth-l1-beta", "smooth L1: quadratic below it, linear above", parse=nonnegative_float),
        "normalization": Flag("--normalization", "per image (the lesson's) or both losses divided by the batch's "
                              "number of positives (the SSD paper)", choices=NORMALIZATIONS),
    },
    DecodeOptions: {
        "score_threshold": Flag("--score-threshold", "keep detections scored above it", parse=fraction),
        "nms_iou": Flag("--nms-iou", "non-maximum suppression: within a class, drop a box overlapping a better "
                        "one by more than this", parse=unit_interval),
        "max_per_image": Flag("--max-per-image", "keep at most this many detections per image, best first",
                              parse=positive_int),
        "coding": Flag("--coding", "what the box activations mean: the coding the model was "
                           "trained with", choices=BOX_CODINGS),
        "class_scores": Flag("--class-scores", "one sigmoid per class (trained with BCE or focal loss) or a softmax "
                             "with background (trained with the SSD paper's loss)", choices=CLASS_SCORES),
    },
    EvalOptions: {
        "hit_iou": Flag("--hit-iou", "the IoU with a ground-truth box a detection needs to count as a "
                        "hit (above it for VOC, at least it for COCO)", parse=fraction),
        "ap_rule": Flag("--ap-rule", "VOC2007's 11-point AP or VOC2010's all-point area",
                        choices=AP_RULES),
    },
}
#: The title of each record's group in ``--help``.
OPTION_GROUPS = {LossOptions: "loss options (ssd_lesson.LossOptions)",
                 DecodeOptions: "decoding options (ssd_lesson.DecodeOptions)",
                 EvalOptions: "evaluation options (ssd_lesson.EvalOptions)"}


def _rows(cls: type) -> dict[str, Flag]:
    """``FLAGS[cls]``, refused unless it has exactly one row per field of ``cls``."""
    fields = [f.name for f in dataclasses.fields(cls)]
    rows = FLAGS.get(cls, {})
    if list(rows) != fields:
        missing, extra = [f for f in fields if f not in rows], [r for r in rows if r not in fields]
        raise TypeError(f"option_flags.FLAGS[{cls.__name__}] must have one row per field, in order: "
                        f"missing {missing}, not fields {extra}")
    return rows


def add_options(parser: argparse.ArgumentParser, cls: type[_O], defaults: Optional[_O] = None, *,
                leave_out: Mapping[str, str] = {}, default_from: Optional[str] = None,
                presets: Mapping[str, _O] = {}) -> None:
    """One option per field of ``cls`` in a group of ``parser``, defaulting to ``defaults``' values.

    ``defaults=None``: every option defaults to None, meaning "not given", and ``default_from`` says
    in the help where the value then comes from (evaluate: the checkpoint's record). ``leave_out``:
    fields this command does not offer, each with why (kept in the call so that the reason is read
    where the command is). ``presets``: other defaults, each under the option that selects it
    (``{"--spec ssd300": LossOptions.ssd_paper()}``); the help shows them where they differ from
    ``defaults``, and the command applies them (:func:`fill_options`).
    """
    unknown = sorted(set(leave_out) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"add_options: {cls.__name__} has no field(s) {unknown}")
    rows = _rows(cls)
    group = parser.add_argument_group(OPTION_GROUPS.get(cls, f"{cls.__name__} options"))
    for field, flag in rows.items():
        if field in leave_out:
            continue
        default = getattr(defaults, field) if defaults is not None else None
        help_text = flag.help + (f" (default: {default_from})" if defaults is None and default_from else "")
        others = [f"{getattr(o, field)} with {by}" for by, o in presets.items() if getattr(o, field) != default]
        if others:
            help_text += f" ({'' if default is None else f'default: {default}; '}{'; '.join(others)})"
        kind = dict(choices=flag.choices) if flag.choices is not None else dict(type=flag.parse)
        group.add_argument(flag.name, default=default, help=help_text, **kind)


def options_from(args: argparse.Namespace, cls: type[_O], base: Optional[_O] = None) -> _O:
    """The ``cls`` of the options :func:`add_options` added: ``base`` (default ``cls()``) with the
    values ``args`` holds (None, not given, leaves ``base``'s)."""
    given = {field: getattr(args, flag.dest) for field, flag in _rows(cls).items()
             if getattr(args, flag.dest, None) is not None}
    return (base if base is not None else cls()).replace(**given)


def unset_options(cls: type) -> argparse.Namespace:
    """A namespace to parse into, ``parser.parse_args(argv, unset_options(cls))``, in which each option of
    ``cls`` holds :data:`NOT_GIVEN` unless the command line gives it (argparse sets the defaults of what
    the namespace lacks only)."""
    return argparse.Namespace(**{flag.dest: NOT_GIVEN for flag in _rows(cls).values()})


def fill_options(args: argparse.Namespace, cls: type[_O], preset: _O) -> _O:
    """``preset`` with the options of ``cls`` that the command line gave (parsed into :func:`unset_options`);
    the others are set in ``args`` to ``preset``'s values, so ``args`` spells out the options in use."""
    rows = _rows(cls)
    for field, flag in rows.items():
        if getattr(args, flag.dest) is NOT_GIVEN:
            setattr(args, flag.dest, getattr(preset, field))
    return options_from(args, cls, base=preset)


def add_loss_options(parser: argparse.ArgumentParser, defaults: LossOptions,
                     presets: Mapping[str, LossOptions] = {}) -> None:
    """Every :class:`~ssd_lesson.core.options.LossOptions` field as an option, ``defaults``' values as defaults
    (and ``presets``, shown where they differ: see :func:`add_options`)."""
    add_options(parser, LossOptions, defaults, presets=presets)


def loss_options_from(args: argparse.Namespace) -> LossOptions:
    """The :class:`~ssd_lesson.core.options.LossOptions` of the options :func:`add_loss_options` added."""
    return options_from(args, LossOptions)
