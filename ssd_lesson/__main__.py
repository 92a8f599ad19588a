"""Command line: ``python -m ssd_lesson {dissect,train,evaluate,bench,notebooks}``.

Each subcommand imports its module only when chosen, so ``dissect`` does not pay
for fastai and ``--help`` is instant. Bad input is refused as :mod:`ssd_lesson.commands.cli` says:
one line ``error: ...`` naming the option or file, exit status 2; ``--debug`` (or
``SSD_LESSON_DEBUG=1``) shows the traceback.
"""
from __future__ import annotations

import argparse
import difflib
import sys
import warnings
from typing import Optional, Sequence

from pathlib import Path

from .commands.cli import (HelpFormatter, UserError, check_writable, nonnegative_int, out_folder, positive_int,
                           private_tempdir, run_command, sigterm_as_exit)

# No module here imports torch when loaded: ``python -m ssd_lesson --help`` answers without it (it takes
# about 3 s to import); each subcommand imports what it needs when chosen.


def _dissect_parser() -> argparse.ArgumentParser:
    from .commands.option_flags import add_loss_options
    from .core.options import LossOptions

    p = argparse.ArgumentParser(prog="python -m ssd_lesson dissect", formatter_class=HelpFormatter,
                                description="Walk the article's steps on the default example: print its tables, save its figures.")
    p.add_argument("--out", type=out_folder, default="ssd_lesson_out",
                   help="folder for the figures (created; other files in it are left alone)")
    p.add_argument("--rows", type=positive_int, default=30, help="predicted boxes shown in Tables 1 and 2")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed for the fallback random activations")
    add_loss_options(p, LossOptions())
    return p


def _dissect(argv: Sequence[str]) -> int:
    from .commands.option_flags import loss_options_from

    args = _dissect_parser().parse_args(argv)
    check_writable(args.out, "--out", folder=True, entries=("*.jpg", "*.png"))  # the figures' names
    from .commands.dissect import run_dissect

    run_dissect(out_dir=args.out, n_rows=args.rows, seed=args.seed, options=loss_options_from(args))
    return 0


def _train(argv: Sequence[str]) -> int:
    from .commands.train import train_main

    return int(train_main(list(argv)) or 0)


def _evaluate(argv: Sequence[str]) -> int:
    from .commands.evaluate import evaluate_main

    return int(evaluate_main(list(argv)) or 0)


def _bench(argv: Sequence[str]) -> int:
    from .commands.bench import main as bench_main

    return int(bench_main(list(argv)) or 0)


def _notebooks(argv: Sequence[str]) -> int:
    from .commands.notebooks import NOTEBOOK_DIR, check_notebook_outputs, notebooks_main

    # The options that can be wrong before any notebook runs, checked first (notebooks.py parses the rest).
    p = argparse.ArgumentParser(prog="python -m ssd_lesson notebooks", add_help=False)
    p.add_argument("--execute", action="store_true")
    p.add_argument("--inplace", action="store_true")
    p.add_argument("--out", type=out_folder, default=None)
    p.add_argument("--html", type=out_folder, default=None)
    p.add_argument("--only", default=None)
    p.add_argument("--solutions", action="store_true")
    args, _ = p.parse_known_args(argv)
    found = sorted(Path(NOTEBOOK_DIR).glob("[0-9][0-9]_*.ipynb"))
    runs = args.execute or args.solutions  # the key is executed too
    if runs and found and args.only is not None and not any(args.only in f.name for f in found):
        raise UserError(f"--only {args.only!r} matches no notebook in {NOTEBOOK_DIR} ({found[0].name} .. {found[-1].name})")
    if args.solutions and args.inplace:
        raise UserError("--solutions writes the instructors' key as a copy in --out; it cannot be --inplace "
                        "(that would replace the learners' notebooks with the solved ones)")
    if runs:
        check_notebook_outputs(args.out, args.html, args.inplace, key=args.solutions)
    elif args.html is not None:
        check_writable(args.html, "--html", folder=True, entries=("*.html",))

    return int(notebooks_main(list(argv)) or 0)


COMMANDS = {
    "dissect": (_dissect, "walk the article's steps headlessly: tables printed, figures saved"),
    "train": (_train, "train the SSD (offline collage set or Pascal VOC) and save a checkpoint"),
    "evaluate": (_evaluate, "AP per class of a checkpoint: Pascal VOC's protocol (VOC07, all-point) and COCO's AP@0.5"),
    "bench": (_bench, "time the batched loss against the lesson's per-image loop and torchvision"),
    "notebooks": (_notebooks, "execute the notebook series in order, optionally exporting HTML"),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"ssd-lesson {__version__}")
        return 0
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; the commands are {', '.join(COMMANDS)}"
        print(f"python -m ssd_lesson: error: unknown command {argv[0]!r}{hint} (--help lists them)", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m ssd_lesson {" + ",".join(COMMANDS) + "} [options]\n")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        print("\n  --version  print the version and exit\n\n'python -m ssd_lesson COMMAND --help' lists a command's options")
        return 0
    # fastai decorates a few activations with torch.jit.script at import, which this torch
    # deprecates with a warning on every run: nothing a user of these commands can act on.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    try:
        # nothing the command or what it imports makes is left in the temporary folder, even when it is killed
        with sigterm_as_exit(), private_tempdir():
            return run_command(COMMANDS[argv[0]][0], argv[1:])
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
