"""Outputs are checked before any work: an unwritable --out is refused in one line, the committed notebook
series is never executed over without --inplace, and no command leaves anything in the temporary folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssd_lesson.io.files import unwritable_reason

ROOT = Path(__file__).resolve().parents[2]
UNWRITABLE = Path("/sys/ssd-lesson-test")  # a folder nobody, root included, can create files in


def _cli(*args: str, tmpdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
    return subprocess.run([sys.executable, "-m", "ssd_lesson", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def cmd_tmp(tmp_path) -> Path:
    """The command's temporary folder: it must be empty again when the command ends."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    yield folder
    assert list(folder.iterdir()) == []


@pytest.fixture(scope="module", autouse=True)
def _unwritable_exists():
    if unwritable_reason(UNWRITABLE / "x.pth") is None:
        pytest.skip("/sys takes new files on this machine")


def test_unwritable_reason_tries_the_folder(tmp_path):
    assert unwritable_reason(tmp_path / "new" / "deeper" / "m.pth") is None  # made on the way
    assert unwritable_reason(tmp_path, folder=True) is None
    assert unwritable_reason(UNWRITABLE / "m.pth") == "cannot create files in /sys (Permission denied)"
    (tmp_path / "f").write_text("")
    assert unwritable_reason(tmp_path / "f" / "m.pth") == f"{tmp_path / 'f'} is a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # the probe is gone, nothing was made


@pytest.mark.parametrize("args, option", [
    (("train", "--epochs", "1", "--out", f"{UNWRITABLE}/m.pth"), "--out"),
    (("dissect", "--out", f"{UNWRITABLE}/figures"), "--out"),
    (("notebooks", "--execute", "--out", f"{UNWRITABLE}/nb"), "--out"),
    (("notebooks", "--html", f"{UNWRITABLE}/html"), "--html"),
    (("evaluate", "--csv", "/sys/ssd-lesson-table.csv"), "--csv"),  # evaluate wants the folder to exist
], ids=["train", "dissect", "notebooks", "notebooks-html", "evaluate"])
def test_unwritable_output_is_refused_before_any_work(args, option, cmd_tmp):
    r = _cli(*args, tmpdir=cmd_tmp)
    path = args[args.index(option) + 1]
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"error: {option} {path}: cannot be written: cannot create files in /sys (Permission denied)"
    assert r.stdout == ""  # nothing was made or printed before the refusal


def test_notebooks_out_into_the_series_needs_inplace(cmd_tmp):
    before = {p.name: p.stat().st_mtime_ns for p in (ROOT / "notebooks").glob("*.ipynb")}
    r = _cli("notebooks", "--execute", "--only", "01", "--out", "notebooks", tmpdir=cmd_tmp)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("error: --out notebooks is the notebook series itself: its notebooks would be "
                                "overwritten; pass --inplace if that is what you mean (maintainers), or choose another --out")
    assert {p.name: p.stat().st_mtime_ns for p in (ROOT / "notebooks").glob("*.ipynb")} == before


def test_execute_series_refuses_the_series_folder_without_inplace(tmp_path):
    from ssd_lesson.commands.notebooks import NOTEBOOK_DIR, execute_series

    with pytest.raises(ValueError, match="is the series' own folder: pass inplace=True"):
        execute_series(NOTEBOOK_DIR / ".." / "notebooks", only="01")


def test_a_refused_train_leaves_nothing_in_the_temporary_folder(cmd_tmp):
    """fastai's import of torch._dynamo makes torchinductor_<user> there; the command's private folder takes it."""
    r = _cli("train", "--data", "voc", "--data-dir", str(cmd_tmp.parent / "no_voc"), "--epochs", "1",
             "--out", str(cmd_tmp.parent / "m.pth"), tmpdir=cmd_tmp)
    assert r.returncode == 2 and "Pascal VOC 2007 not found" in r.stderr
    # cmd_tmp's teardown: empty
