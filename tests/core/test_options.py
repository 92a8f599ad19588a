"""One ``LossOptions``, one ``DecodeOptions`` and one ``EvalOptions``: frozen, validated, each default
written once (in ``ssd_lesson/core/options.py``), passed as objects; an options object mixed with loose
keywords is refused."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

from ssd_lesson import DecodeOptions, EvalOptions, LossOptions, make_anchors, ssd_loss
from ssd_lesson.core.matching import IOU_THRESHOLD
from ssd_lesson.model.infer import decode

PACKAGE = Path(__file__).resolve().parents[2] / "ssd_lesson"
OPTIONS_FILE = Path("core") / "options.py"
RECORDS = (LossOptions, DecodeOptions, EvalOptions)
#: Every option's name: a literal default of a parameter, field or flag of that name is a second home.
FIELDS = {f.name for cls in RECORDS for f in dataclasses.fields(cls)}
#: Other names the same settings go by in a signature (the devkit's flag for the AP rule).
ALIASES = {"use_07_metric": "ap_rule"}
#: Every option's default (and the lesson code's "anchors"): retyped under any name, it is a second home too.
DEFAULTS = {f.default for cls in RECORDS for f in dataclasses.fields(cls)} | {IOU_THRESHOLD, "anchors"}
#: Literal defaults that equal an option's default by chance: (name, value) and what they are.
UNRELATED = {
    ("dpi", 100): "a figure's resolution",
    ("scale", 1.0): "the lesson's activation scale",
    ("step", 0.05): "a slider's step",
    ("move", 0.5): "an exercise's box shift",
    ("grow", 0.5): "an exercise's box growth",
    ("sign", 1.0): "an exercise's slip",
    ("alpha", 1.0): "a drawing's opacity",
    ("tol", 1.0): "a label placement's tolerance in pixels",
    ("score", 0.25): "the detection widget's shown score, for a picture (decoding's 0.05 is for AP)",
}


def _flag_fields() -> dict[str, str]:
    from ssd_lesson.commands.option_flags import FLAGS

    return {flag.name: field for rows in FLAGS.values() for field, flag in rows.items()}


def written_defaults(source: str) -> list[tuple[int, str, object]]:
    """``(line, name, value)`` of every literal default that retypes an option's: a function parameter,
    a class field (``name: type = value``) or an ``add_argument(--flag, default=...)`` named as an option
    (or an alias), or whose value is an option's default under another name (bar :data:`UNRELATED`)."""
    found = []
    flag_fields = _flag_fields()

    def check(line: int, name: str, node: ast.AST) -> None:
        if not isinstance(node, ast.Constant) or node.value is None:
            return
        value = node.value
        same_value = (type(value) is not bool and value in DEFAULTS
                      and any(type(value) is type(d) or {type(value), type(d)} <= {int, float}
                              for d in DEFAULTS if d == value))
        if name in FIELDS or name in ALIASES or (same_value and (name, value) not in UNRELATED):
            found.append((line, name, value))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            positional = a.posonlyargs + a.args
            for arg, default in zip(positional[len(positional) - len(a.defaults):], a.defaults):
                check(default.lineno, arg.arg, default)
            for arg, default in zip(a.kwonlyargs, a.kw_defaults):
                if default is not None:
                    check(default.lineno, arg.arg, default)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            check(node.value.lineno, node.target.id, node.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument" and node.args:
            flag = str(node.args[-1].value) if isinstance(node.args[-1], ast.Constant) else ""
            name = flag_fields.get(flag, flag.lstrip("-").replace("-", "_"))
            for kw in node.keywords:
                if kw.arg == "default":
                    check(kw.value.lineno, name, kw.value)
    return found


def repeated_defaults(package: Path) -> dict[str, list[tuple[int, str, object]]]:
    """Per module of ``package`` other than ``core/options.py``: the option defaults it retypes."""
    found = {str(p.relative_to(package)): written_defaults(p.read_text())
             for p in sorted(package.rglob("*.py")) if p.relative_to(package) != OPTIONS_FILE}
    return {k: v for k, v in found.items() if v}


def test_the_defaults_are_the_lesson_s():
    assert LossOptions() == LossOptions("predictions", IOU_THRESHOLD, "bce", 0.25, 1.0, "mean")
    assert DecodeOptions() == DecodeOptions(0.05, 0.5, 100)
    assert EvalOptions() == EvalOptions(0.5, "voc07") and EvalOptions().use_07_metric
    assert LossOptions.article() == LossOptions(match_on="predictions", regression_reduction="sum")
    assert LossOptions.lesson_code() == LossOptions(match_on="anchors", regression_reduction="mean")
    assert LossOptions.training() == LossOptions.lesson_code()


def test_each_default_is_written_once():
    """Outside options.py no signature, field or command line retypes an option's default (a grep, by the
    syntax tree); inside it, each field's default is written once, where the field is."""
    assert sorted((name, value) for _, name, value in written_defaults((PACKAGE / OPTIONS_FILE).read_text())) == sorted(
        (f.name, f.default) for cls in RECORDS for f in dataclasses.fields(cls)
        if f.name != "iou_threshold" and f.default is not None)  # None, "not given", is no literal to retype
    assert repeated_defaults(PACKAGE) == {}


def test_the_checker_finds_a_retyped_default():
    source = ("def decode(x, score_threshold=0.05, *, nms_iou: float = 0.5, max_per_image=None, mode='anchors'):\n"
              "    p.add_argument('--regression', default='mean')\n"
              "    p.add_argument('--iou-threshold', default=0.4)\n"
              "    p.add_argument('--hit-iou', default=0.5)\n"
              "def table(preds, thr=0.5, use_07_metric=True, dpi=100, gamma: float = 1.0, n=2, flag=True):\n"
              "    rule: str = 'voc07'\n")
    assert written_defaults(source) == [(1, "score_threshold", 0.05), (1, "nms_iou", 0.5), (1, "mode", "anchors"),
                                        (5, "thr", 0.5), (5, "use_07_metric", True), (5, "gamma", 1.0),
                                        (6, "rule", "voc07"), (2, "regression_reduction", "mean"),
                                        (3, "iou_threshold", 0.4), (4, "hit_iou", 0.5)]


def test_the_package_check_finds_a_repeat_planted_in_a_copy(tmp_path):
    """The whole-package check, on a small package: the options module itself is not a repeat; a
    module that retypes the hit IoU is, wherever it is."""
    (tmp_path / "core").mkdir()
    (tmp_path / OPTIONS_FILE).write_text((PACKAGE / OPTIONS_FILE).read_text())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "clean.py").write_text("def f(options=None, dpi=100):\n    return 0.5\n")
    assert repeated_defaults(tmp_path) == {}
    (tmp_path / "model" / "metrics.py").write_text("def table(preds, *, hit_iou: float = 0.5):\n    pass\n")
    assert repeated_defaults(tmp_path) == {str(Path("model") / "metrics.py"): [(1, "hit_iou", 0.5)]}


@pytest.mark.parametrize("make, message", [
    (lambda: LossOptions(match_on="boxes"), "match_on must be one of 'predictions', 'anchors', got 'boxes'"),
    (lambda: LossOptions(classification="ce"), "classification must be one of 'bce', 'focal'"),
    (lambda: LossOptions(regression_reduction="max"), "regression_reduction must be one of 'mean', 'sum'"),
    (lambda: LossOptions(iou_threshold=2.0), "iou_threshold must be in [0, 1.99), got 2.0"),
    (lambda: LossOptions(iou_threshold=float("nan")), "iou_threshold must be in"),
    (lambda: LossOptions(focal_alpha=1.5), "focal_alpha: must be in [0, 1]"),
    (lambda: LossOptions(focal_gamma=-1.0), "focal_gamma: must be a finite number >= 0"),
    (lambda: DecodeOptions(score_threshold=1.0), "score_threshold: must be in [0, 1)"),
    (lambda: DecodeOptions(nms_iou=-0.1), "nms_iou: must be in [0, 1]"),
    (lambda: DecodeOptions(max_per_image=0), "max_per_image: must be an integer >= 1, got 0"),
    (lambda: DecodeOptions(max_per_image=2.0), "max_per_image: must be an integer >= 1, got 2.0"),
    (lambda: EvalOptions(hit_iou=1.0), "hit_iou: must be in [0, 1) (an IoU), got 1.0"),
    (lambda: EvalOptions(hit_iou=float("nan")), "hit_iou: must be in [0, 1)"),
    (lambda: EvalOptions(ap_rule="coco"), "ap_rule must be one of 'voc07', 'all_point', got 'coco'"),
    (lambda: LossOptions().replace(match_on="x"), "match_on must be one of"),
    (lambda: LossOptions.from_dict({"match_on": "anchors", "gamma": 2}), "LossOptions: unknown option(s) 'gamma'"),
])
def test_bad_options_are_refused_where_they_are_made(make, message):
    with pytest.raises(ValueError) as e:
        make()
    assert str(e.value).startswith(message)


def test_options_are_frozen_and_round_trip_as_plain_values():
    o = LossOptions.lesson_code().replace(classification="focal", focal_gamma=2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.match_on = "predictions"
    assert LossOptions.from_dict(o.to_dict()) == o and o.to_dict()["focal_gamma"] == 2.0
    assert DecodeOptions.from_dict({"score_threshold": 0.3}) == DecodeOptions(0.3, 0.5, 100)
    assert EvalOptions.from_dict({"ap_rule": "all_point"}) == EvalOptions(0.5, "all_point")
    assert not EvalOptions(ap_rule="all_point").use_07_metric and EvalOptions.rule_of(False) == "all_point"
    assert EvalOptions.rule_of(None) is None and EvalOptions.rule_of(True) == "voc07"
    with pytest.raises(TypeError, match="use_07_metric must be True or False, got 1"):
        EvalOptions.rule_of(1)
    assert o.describe() == "match on anchors, IoU > 0.4, focal (alpha 0.25, gamma 2), L1 averaged"


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    anchors = make_anchors()
    cl, ba = torch.randn(2, 189, 21, generator=g), torch.randn(2, 189, 4, generator=g)
    gb = torch.tensor([[[0.1, 0.1, 0.6, 0.5], [0.3, 0.5, 0.9, 0.9]], [[0.2, 0.2, 0.8, 0.7], [0, 0, 0, 0]]])
    gl = torch.tensor([[9, 14], [13, -1]])
    return cl, ba, gb, gl, anchors


def test_ssd_loss_mixing_options_and_keywords_raises_naming_both(batch):
    """The issue's case: the keywords were silently ignored (151.643 instead of 151.769 on its batch)."""
    with pytest.raises(TypeError) as e:
        ssd_loss(*batch, match_on="anchors", iou_threshold=0.7, options=LossOptions())
    msg = str(e.value)
    assert msg.startswith("ssd_loss: got both options=LossOptions(") and "match_on='anchors', iou_threshold=0.7" in msg
    with pytest.raises(TypeError, match="ssd_loss: options must be a LossOptions, got dict"):
        ssd_loss(*batch, options={"match_on": "anchors"})


def test_ssd_loss_keywords_and_options_give_the_same_loss(batch):
    by_keywords = ssd_loss(*batch, match_on="anchors", iou_threshold=0.5, regression_reduction="sum")
    by_options = ssd_loss(*batch, options=LossOptions(match_on="anchors", iou_threshold=0.5, regression_reduction="sum"))
    assert by_keywords.options == by_options.options == LossOptions.lesson_code().replace(iou_threshold=0.5,
                                                                                            regression_reduction="sum")
    assert float(by_keywords.total) == float(by_options.total)
    assert float(by_keywords.total) != float(ssd_loss(*batch).total)  # the keywords did something
    assert ssd_loss(*batch).options == LossOptions()


def test_decode_and_predict_take_decode_options(batch):
    cl, ba, _, _, anchors = batch
    loose = decode(cl, ba, anchors, options=DecodeOptions(score_threshold=0.5, max_per_image=3))
    assert [len(d.labels) for d in loose] == [len(d.labels) for d in decode(cl, ba, anchors, score_threshold=0.5,
                                                                               max_per_image=3)]
    assert all(len(d.labels) == 3 for d in loose)  # randn logits: many scores above 0.5, capped at 3
    assert all(float(d.scores.min()) > 0.05 for d in decode(cl, ba, anchors))  # the default threshold, DecodeOptions'
    with pytest.raises(TypeError, match=r"decode: got both options=DecodeOptions\(.*\) and nms_iou=0.3"):
        decode(cl, ba, anchors, options=DecodeOptions(), nms_iou=0.3)
    from ssd_lesson.model.infer import predict

    with pytest.raises(TypeError, match=r"predict: got both options=DecodeOptions\(.*\) and score_threshold=0.5"):
        predict(torch.nn.Identity(), torch.zeros(3, 8, 8, dtype=torch.uint8), options=DecodeOptions(), score_threshold=0.5)


# ---------------------------------------------------------------- the command line
@pytest.mark.parametrize("argv, named", [
    (["train", "--focal-alpha", "1.5"], "error: argument --focal-alpha: must be in [0, 1], got 1.5"),
    (["train", "--focal-gamma", "-1"], "error: argument --focal-gamma: must be at least 0, got -1"),
    (["dissect", "--loss", "ce"], "error: argument --loss: invalid choice: 'ce'"),
    (["dissect", "--regression", "max"], "error: argument --regression: invalid choice: 'max'"),
    (["dissect", "--match-inclusive", "maybe"], "error: argument --match-inclusive: expected yes or no, got 'maybe'"),
    (["train", "--neg-pos-ratio", "-3"], "error: argument --neg-pos-ratio: must be at least 0, got -3"),
])
def test_the_command_line_refuses_bad_loss_options(argv, named, capsys, monkeypatch):
    from ssd_lesson.__main__ import main

    monkeypatch.delenv("SSD_LESSON_DEBUG", raising=False)
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(named)


@pytest.mark.parametrize("command, defaults", [("dissect", LossOptions()), ("train", LossOptions.lesson_code())])
def test_the_command_line_passes_one_loss_options_object(command, defaults, monkeypatch):
    """dissect and train declare the loss options once (option_flags.add_loss_options) over their preset's defaults."""
    import argparse

    from ssd_lesson.commands.option_flags import add_loss_options, loss_options_from

    p = argparse.ArgumentParser()
    add_loss_options(p, defaults)
    assert loss_options_from(p.parse_args([])) == defaults
    got = loss_options_from(p.parse_args(["--match-on", "anchors", "--loss", "focal", "--focal-alpha", "0.5",
                                          "--focal-gamma", "2", "--regression", "sum", "--iou-threshold", "0.5"]))
    assert got == LossOptions("anchors", 0.5, "focal", 0.5, 2.0, "sum")
    seen = {}
    if command == "dissect":
        from ssd_lesson.__main__ import main
        from ssd_lesson.commands import dissect

        monkeypatch.setattr(dissect, "run_dissect", lambda **kw: seen.update(kw))
        assert main(["dissect", "--loss", "focal", "--focal-gamma", "2", "--out", "ignored"]) == 0
        assert seen["options"] == LossOptions(classification="focal", focal_gamma=2.0)
