"""The command line's options for LossOptions, DecodeOptions and EvalOptions are made from the records'
fields (ssd_lesson.commands.option_flags): each field has one flag in each command that uses it and no
flag sets what no field holds; every ``--help`` shows the defaults, in plain text."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re

import pytest

from ssd_lesson import DecodeOptions, EvalOptions, LossOptions
from ssd_lesson.commands.option_flags import FLAGS, add_options, options_from

RECORDS = (LossOptions, DecodeOptions, EvalOptions)


def parsers() -> dict[str, argparse.ArgumentParser]:
    from ssd_lesson.__main__ import _dissect_parser
    from ssd_lesson.commands import evaluate, train

    return {"train": train._parser(), "dissect": _dissect_parser(), "evaluate": evaluate._parser()}


#: What each command offers: the fields of each record it takes from the command line.
OFFERED = {
    "train": {LossOptions: {f.name for f in dataclasses.fields(LossOptions)}},
    "dissect": {LossOptions: {f.name for f in dataclasses.fields(LossOptions)}},
    "evaluate": {DecodeOptions: {f.name for f in dataclasses.fields(DecodeOptions)},
                 EvalOptions: {"hit_iou"}},  # the table shows both AP rules: no --ap-rule
}


def test_each_field_has_one_row_and_no_two_share_a_flag_or_a_name():
    for cls in RECORDS:
        assert list(FLAGS[cls]) == [f.name for f in dataclasses.fields(cls)], cls.__name__
    flags = [flag.name for rows in FLAGS.values() for flag in rows.values()]
    fields = [field for rows in FLAGS.values() for field in rows]
    assert len(set(flags)) == len(flags) and len(set(fields)) == len(fields)
    assert FLAGS[LossOptions]["iou_threshold"].name == "--iou-threshold" and FLAGS[EvalOptions]["hit_iou"].name == "--hit-iou"
    assert all(bool(flag.choices) != bool(flag.parse) and flag.help for rows in FLAGS.values() for flag in rows.values())


@pytest.mark.parametrize("command", sorted(OFFERED))
def test_each_offered_field_has_exactly_one_flag_and_each_options_flag_one_field(command):
    actions = [a for a in parsers()[command]._actions if a.option_strings]
    all_flags = {flag.name: flag for rows in FLAGS.values() for flag in rows.values()}
    for cls, fields in OFFERED[command].items():
        for field in fields:
            flag = FLAGS[cls][field]
            setting = [a for a in actions if flag.name in a.option_strings or a.dest == flag.dest]
            assert len(setting) == 1 and setting[0].option_strings == [flag.name], (command, field)
    # vice versa: no option of the table is there for a field the command does not offer, nor under another dest
    offered = {FLAGS[cls][f].name for cls, fields in OFFERED[command].items() for f in fields}
    assert {s for a in actions for s in a.option_strings if s in all_flags} == offered
    assert {a.dest for a in actions if a.dest in {f.dest for f in all_flags.values()}} == {all_flags[s].dest for s in offered}


@pytest.mark.parametrize("command", sorted(OFFERED))
def test_the_parsed_options_are_the_records(command):
    p = parsers()[command]
    if command == "evaluate":
        args = p.parse_args(["--nms-iou", "0.3", "--hit-iou", "0.7"])
        assert options_from(args, DecodeOptions, base=DecodeOptions(score_threshold=0.2)) == DecodeOptions(0.2, 0.3, 100)
        assert options_from(args, EvalOptions) == EvalOptions(hit_iou=0.7)
        assert options_from(p.parse_args([]), EvalOptions) == EvalOptions()
    else:
        preset = LossOptions.training() if command == "train" else LossOptions()
        assert options_from(p.parse_args([]), LossOptions) == preset
        assert options_from(p.parse_args(["--loss", "focal", "--iou-threshold", "0.5"]), LossOptions) == preset.replace(
            classification="focal", iou_threshold=0.5)


def test_a_field_without_a_flag_is_refused_when_a_parser_is_built(monkeypatch):
    """A new option is its field plus its row in FLAGS: the field alone stops every command that offers it."""
    @dataclasses.dataclass(frozen=True)
    class Wider(EvalOptions):
        crowd_as_difficult: bool = True

    monkeypatch.setitem(FLAGS, Wider, dict(FLAGS[EvalOptions]))
    with pytest.raises(TypeError, match=r"FLAGS\[Wider\] must have one row per field, in order: missing "
                                        r"\['crowd_as_difficult'\], not fields \[\]"):
        add_options(argparse.ArgumentParser(), Wider, Wider())
    with pytest.raises(TypeError, match=r"add_options: EvalOptions has no field\(s\) \['rule'\]"):
        add_options(argparse.ArgumentParser(), EvalOptions, EvalOptions(), leave_out={"rule": "misspelt"})


def _help(command: str) -> str:
    from ssd_lesson.__main__ import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main([command, "--help"])
        except SystemExit as done:
            code = done.code
    assert code == 0
    return " ".join(out.getvalue().split())  # argparse wraps lines: compare words


@pytest.mark.parametrize("command", ["train", "dissect", "evaluate", "notebooks"])
def test_every_help_shows_the_defaults_in_plain_text(command):
    text = _help(command)
    assert not re.search(r"``|:(mod|func|class|meth|data|attr):`", text), text
    if command == "notebooks":
        assert "--out OUT where executed copies go (default: ssd_lesson_out/notebooks)" in text
        return
    for action in parsers()[command]._actions:
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            shown = f"(default: {action.default})"
            assert shown in text or "default" in (action.help or ""), (command, action.option_strings)
    want = {"train": ["--match-on {predictions,anchors} match ground truth to the predicted boxes (the article) or "
                      "the anchor boxes (the lesson's code) (default: anchors)", "(default: 0.4; 0.5 with --spec ssd300)",
                      "(default: bce; softmax with --spec ssd300)", "--epochs EPOCHS"],
            "dissect": ["(default: predictions)", "become background (default: 0.4)"],
            "evaluate": ["at least it for COCO) (default: 0.5)", "more than this (default: what the checkpoint's mAP "
                         "was measured with)"]}[command]
    assert all(w in text for w in want), text


def test_the_ssd_paper_s_options_from_the_command_line():
    """Every option of ``LossOptions.ssd_paper()`` has its flag; ``--neg-pos-ratio 0`` keeps every negative, and a
    yes-or-no flag reads yes or no (a refusal of anything else: ``tests/core/test_options.py``)."""
    from ssd_lesson.__main__ import _dissect_parser

    argv = ["--match-on", "anchors", "--iou-threshold", "0.5", "--match-inclusive", "yes", "--loss", "softmax",
            "--neg-pos-ratio", "3", "--box-coding", "log_offsets", "--box-loss", "smooth_l1", "--smooth-l1-beta", "1",
            "--normalization", "batch_positives"]
    p = _dissect_parser()
    assert options_from(p.parse_args(argv), LossOptions) == LossOptions.ssd_paper()
    assert options_from(p.parse_args(["--neg-pos-ratio", "0", "--match-inclusive", "no"]), LossOptions) == LossOptions()
