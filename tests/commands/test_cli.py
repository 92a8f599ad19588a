"""The command line refuses bad input in one line ``error: ...`` naming the option or file, exit status 2,
before any work starts; ``--debug`` / ``SSD_LESSON_DEBUG=1`` shows the traceback."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssd_lesson.commands import cli
from ssd_lesson.__main__ import main

from tests.in_process import Ran, run_main

ROOT = Path(__file__).resolve().parents[2]
A_FILE = "{file}"  # replaced by an existing plain file

#: (command line, what the one line must name)
BAD = [
    ("train --epochs 0", "--epochs"),
    ("train --bs 0", "--bs"),
    ("train --n-images 1", "--n-images"),
    ("train --n-hidden 0", "--n-hidden"),
    ("train --lr nan", "--lr"),
    ("train --lr -1", "--lr"),
    ("train --iou-threshold 1.5", "--iou-threshold"),
    (f"train --out {A_FILE}/m.pth", "--out"),
    ("dissect --iou-threshold 5", "--iou-threshold"),
    (f"dissect --out {A_FILE}", "--out"),
    ("dissect --rows -5", "--rows"),
    ("dissect --rows x", "--rows"),
    (f"notebooks --out {A_FILE}", "--out"),
    ("notebooks --execute --only no-such-notebook", "--only"),
    ("evaluate --batch-size 0", "--batch-size"),
    ("evaluate --score-threshold 2", "--score-threshold"),
    (f"evaluate --checkpoint {A_FILE}", A_FILE),
    ("evaluate --bogus", "--bogus"),
    ("bench --batches 0", "--batches"),
    ("bench --budget nan", "--budget"),
    ("bench --repeats 5 2", "--repeats"),
]


def run_cli(line: str, tmp_path: Path, **env) -> Ran:
    """``python -m ssd_lesson <line>`` from ``tmp_path``, in this process (tests/in_process.py)."""
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder, not a checkpoint")
    return run_main(*line.replace(A_FILE, str(a_file)).split(), cwd=tmp_path, env=env)


@pytest.mark.parametrize("line,named", BAD, ids=[b[0] for b in BAD])
def test_every_refused_option_is_one_line_and_status_2(line, named, tmp_path):
    r = run_cli(line, tmp_path)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(err) == 1, r.stderr
    assert err[0].startswith("error: ")
    assert named.replace(A_FILE, str(tmp_path / "a_file.txt")) in err[0]
    assert not (tmp_path / "ssd_lesson_out").exists() and not (tmp_path / "runs").exists()  # refused before any work


def test_debug_shows_the_traceback(tmp_path):
    r = run_cli("evaluate --checkpoint {file}", tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("evaluate --checkpoint {file} --debug", tmp_path)  # evaluate refuses through cli.UserError too
    assert r.returncode != 0 and "Traceback" in r.stderr and "UserError" in r.stderr and "cannot load" in r.stderr
    r = run_cli("dissect --rows 0", tmp_path, SSD_LESSON_DEBUG="1")
    assert r.returncode != 0 and "Traceback" in r.stderr and "UserError" in r.stderr and "--rows" in r.stderr


def test_library_input_errors_become_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def bad_input(argv):
        raise ValueError("gt_boxes: boxes must be fractions of the image\n(more detail)")

    def missing(argv):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "nowhere.pth"))

    assert cli.run_command(bad_input, []) == 2
    assert capsys.readouterr().err == "error: gt_boxes: boxes must be fractions of the image (--debug shows where)\n"
    assert cli.run_command(missing, []) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'nowhere.pth'}: No such file or directory")
    assert cli.run_command(lambda argv: 0, []) == 0


def test_bugs_are_not_hidden(monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def bug(argv):
        raise AttributeError("a bug in ssd_lesson")

    with pytest.raises(AttributeError, match="a bug"):
        cli.run_command(bug, [])


def test_argparse_is_restored_after_a_command():
    before = argparse.ArgumentParser.error
    cli.run_command(lambda argv: 0, [])
    assert argparse.ArgumentParser.error is before


@pytest.mark.parametrize("check,text,value", [
    (cli.positive_int, "3", 3), (cli.nonnegative_int, "0", 0), (cli.at_least(5), "5", 5),
    (cli.fraction, "0.5", 0.5), (cli.fraction, "0", 0.0), (cli.finite_float, "-2.5", -2.5), (cli.positive_float, "1e-3", 1e-3),
])
def test_validators_accept(check, text, value):
    assert check(text) == value


@pytest.mark.parametrize("check,text,says", [
    (cli.positive_int, "0", "at least 1"), (cli.positive_int, "1.5", "an integer"), (cli.at_least(5), "4", "at least 5"),
    (cli.fraction, "1", "[0, 1)"), (cli.fraction, "-0.1", "[0, 1)"), (cli.fraction, "nan", "finite"),
    (cli.finite_float, "inf", "finite"), (cli.positive_float, "0", "above 0"), (cli.positive_float, "x", "a number"),
])
def test_validators_refuse(check, text, says):
    with pytest.raises(argparse.ArgumentTypeError, match=says.replace("[", r"\[").replace(")", r"\)")):
        check(text)


def test_out_paths(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    assert cli.out_folder(str(tmp_path / "new" / "dir")) == tmp_path / "new" / "dir"
    assert cli.out_file(str(tmp_path / "m.pth")) == tmp_path / "m.pth"
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        cli.out_folder(str(f / "sub"))
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        cli.out_file(str(tmp_path))


def test_unknown_command_is_status_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.fastai  # train, in this process, loads fastai
def test_train_asked_for_missing_voc_gives_the_advice_then_one_error(tmp_path):
    r = run_cli(f"train --data voc --data-dir {tmp_path / 'nowhere'} --out {tmp_path / 'm.pth'}", tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("warning: Pascal VOC 2007 was not found") and "SSD_LESSON_VOC=/path/to/pascal_2007" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: Pascal VOC 2007 not found")
    assert not (tmp_path / "m.pth").exists()


def test_a_real_process_answers_help_without_torch_and_refuses_in_one_line(tmp_path):
    """The one subprocess of this file: ``python -m ssd_lesson`` as a shell runs it. ``--help`` imports
    neither torch nor fastai (so it answers in well under a second), and a refusal is one line, status 2."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "SSD_LESSON_DEBUG": ""}
    environ.pop("SSD_LESSON_VOC", None)
    show_heavy = ("import runpy, sys; sys.argv = ['ssd_lesson', *sys.argv[1:]]\n"
                  "try:\n    runpy.run_module('ssd_lesson', run_name='__main__', alter_sys=True)\n"
                  "finally:\n    print(sorted(m for m in ('torch', 'fastai', 'matplotlib') if m in sys.modules), file=sys.stderr)")
    for argv in (["--help"], ["notebooks", "--help"]):
        r = subprocess.run([sys.executable, "-c", show_heavy, *argv], capture_output=True, text=True, cwd=tmp_path,
                           env=environ, timeout=120)
        assert r.returncode == 0 and r.stdout.startswith("usage: python -m ssd_lesson"), r.stderr
        assert r.stderr.strip().splitlines()[-1] == "[]", (argv, r.stderr)  # no heavy module was imported
    r = subprocess.run([sys.executable, "-m", "ssd_lesson", "--help"], capture_output=True, text=True, env=environ,
                       timeout=120)
    assert r.returncode == 0 and "dissect" in r.stdout and "notebooks" in r.stdout and r.stderr == ""
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    r = subprocess.run([sys.executable, "-m", "ssd_lesson", "notebooks", "--out", str(a_file)], capture_output=True,
                       text=True, cwd=tmp_path, env=environ, timeout=120)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.splitlines() == [f"error: argument --out: {a_file} cannot be a folder: {a_file} is a file "
                                     "(see python -m ssd_lesson notebooks --help)"]
