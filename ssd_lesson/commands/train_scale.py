"""``train``'s options for longer runs: ``--workers``, ``--amp`` and ``--resume``.

``--workers`` loads the batches in that many worker processes (the images decoded and resized
while the model trains; the batches, their order and their flips are the same as without workers).
``--amp`` trains with mixed precision (:mod:`ssd_lesson.model.precision`). ``--resume CHECKPOINT``
continues a run cut short from the last checkpoint it saved (:mod:`ssd_lesson.model.resume`):
:func:`resumed_run` reads the checkpoint, takes the options from the command its record spells out,
refuses options given again with other values (naming them), and continues writing to the same file.
Under ``torchrun --nproc_per_node N -m ssd_lesson train ...`` every option works as in one process.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

from .cli import UserError, in_file, nonnegative_int

__all__ = ["add_scale_options", "SCALE_DESTS", "resolve_amp", "ResumedRun", "resumed_run"]

#: The options that say how to run, not what to make: a resumed run may give them again with other values.
HOW_TO_RUN = ("resume", "workers", "data_dir", "force")
#: The options :func:`add_scale_options` adds, by ``dest``.
SCALE_DESTS = ("workers", "amp", "resume")


def add_scale_options(p: argparse.ArgumentParser) -> None:
    """Add ``--workers``, ``--amp`` and ``--resume`` to the train command's parser."""
    from ..model import AMP_CHOICES

    p.add_argument("--workers", type=nonnegative_int, default=0,
                   help="worker processes that load and resize the images while the model trains (0: the training "
                   "process does it; a few speed up Pascal VOC's JPEG decoding). The batches are the same either way")
    p.add_argument("--amp", nargs="?", const="auto", choices=AMP_CHOICES, default="off",
                   help="mixed precision: the model in bfloat16 (bf16) or float16 (fp16, CUDA GPUs only), the loss in "
                   "float32; --amp alone is auto: bf16 on a CPU, and on a GPU that has it, else fp16")
    p.add_argument("--resume", type=in_file, default=None, metavar="CHECKPOINT",
                   help="continue the run that saved CHECKPOINT (cut short) from its last finished epoch to the end, "
                   "with its recorded options, writing to CHECKPOINT; only --workers and --data-dir may change")


def resolve_amp(args: argparse.Namespace) -> None:
    """Set ``args.amp`` to the mode it means here (``auto`` chosen for this machine), as the record spells it."""
    import torch

    from ..model.precision import amp_mode

    try:
        args.amp = amp_mode(args.amp, "cuda" if torch.cuda.is_available() else "cpu")
    except ValueError as e:
        raise UserError(str(e)) from None


class ResumedRun(NamedTuple):
    """What ``train --resume`` continues: the model (train mode, float32 weights), its record, its training state."""

    model: Any
    record: Any
    state: dict


def _given(argv: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The options ``argv`` gives, by ``dest`` (those it leaves out are absent)."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(list(argv)))


def resumed_run(argv: Sequence[str], args: argparse.Namespace, make_parser: Callable[[], argparse.ArgumentParser],
                parse: Callable[[Sequence[str]], argparse.Namespace]) -> tuple[argparse.Namespace, Optional[ResumedRun]]:
    """``args`` and None without ``--resume``; with it, the options of the run ``--resume`` names (``--out`` is
    that file; ``--workers`` and ``--data-dir`` as given) and what it continues. ``UserError`` (one line)
    for a file without a training state, a finished run, or an option given with another value."""
    if args.resume is None:
        return args, None
    from ..model.checkpoint import load_checkpoint, load_training_state
    from ..model.resume import check_training_state

    path = Path(args.resume)
    try:
        state = check_training_state(load_training_state(path), str(path))
        model = load_checkpoint(path)
    except ValueError as e:
        raise UserError(f"--resume {e}") from None
    record = model.record.replace(path=None)
    words = shlex.split(record.command or "")[4:]
    if "--init" in words:  # its weights are in the checkpoint now; the file need not be there any more
        i = words.index("--init")
        del words[i:i + 2]
    try:
        recorded = parse(words)
    except UserError as e:
        raise UserError(f"--resume {path}: its recorded command does not parse here ({e})") from None
    given = _given(argv, make_parser())
    flags = {a.dest: a.option_strings[0] for a in make_parser()._actions if a.option_strings}
    if "out" in given and Path(given["out"]).resolve() != path.resolve():
        raise UserError(f"--resume {path}: a resumed run writes to the checkpoint it continues; leave --out out")
    if "amp" in given:  # auto means what it means on this machine
        given_amp = argparse.Namespace(amp=given["amp"])
        resolve_amp(given_amp)
        given["amp"] = given_amp.amp
    conflicts = [f"{flags[k]} {v} (recorded: {getattr(recorded, k)})" for k, v in given.items()
                 if k not in HOW_TO_RUN + ("out",) and v != getattr(recorded, k)]
    if conflicts:
        raise UserError(f"--resume {path} continues the recorded run, and these options differ from it: "
                        f"{'; '.join(conflicts)}. Leave them out (or start a new run without --resume)")
    if state["epoch"] >= state["epochs"] or state["epochs"] != recorded.epochs:
        raise UserError(f"--resume {path}: its training state is after epoch {state['epoch']} of {state['epochs']}, "
                        f"which does not continue the recorded --epochs {recorded.epochs}")
    for k in HOW_TO_RUN:
        if k in given:
            setattr(recorded, k, given[k])
    recorded.out, recorded.resume, recorded.lr_find = path, path, False
    weights = state.get("weights")
    if weights is not None:  # the checkpoint's own weights are float16 (--half)
        model.load_state_dict(weights)
    return recorded, ResumedRun(model.train(), record, state)
