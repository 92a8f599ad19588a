"""Every output path is checked for what it is before any work: a regular file (or nothing yet) is replaced
whole by a rename; a stream (a character device, a FIFO, /dev/stdout) is written in place or refused; a
block device, a socket, or a folder where a file goes is refused in one line naming the option and what
the path is. Nothing is ever renamed over a device: the nodes made here are devices still afterwards."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ssd_lesson.io.files import atomic_write, output_kind, output_text
from tests.in_process import run_main

ROOT = Path(__file__).resolve().parents[2]
NULL_DEVICE = os.makedev(1, 3)  # /dev/null's numbers: writing to a node made with them discards, as /dev/null does
LOOP_DEVICE = os.makedev(7, 0)  # a block device's numbers (/dev/loop0); the node is made, never opened here

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making device nodes (mknod) needs root")


def _char_device(path: Path) -> Path:
    os.mknod(path, 0o666 | stat.S_IFCHR, NULL_DEVICE)
    return path


def _block_device(path: Path) -> Path:
    os.mknod(path, 0o600 | stat.S_IFBLK, LOOP_DEVICE)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _is_null_device(path: Path) -> bool:
    st = os.stat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == NULL_DEVICE


@needs_root
def test_output_kind_names_what_is_there(tmp_path):
    (tmp_path / "file").write_text("")
    os.symlink(_char_device(tmp_path / "null"), tmp_path / "link")
    expected = {"file": "regular file", "null": "character device", "link": "character device",
                "fifo": "FIFO", "disk": "block device", "missing": None}
    _fifo(tmp_path / "fifo")
    _block_device(tmp_path / "disk")
    assert {name: output_kind(tmp_path / name) for name in expected} == expected
    assert output_kind(tmp_path) == "folder"
    assert output_kind(tmp_path / "file" / "below") is None
    for name in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/2"):  # what they point to changes with redirections
        assert output_kind(name) == "file descriptor"
    assert output_kind("/dev/null") == "character device"


@needs_root
@pytest.mark.parametrize("make, kind", [(_char_device, "character device"), (_fifo, "FIFO"),
                                        (_block_device, "block device"), (Path.mkdir, "folder")])
def test_atomic_write_never_renames_over_anything_but_a_regular_file(tmp_path, make, kind):
    node = tmp_path / "node"
    make(node)
    before = os.stat(node)
    ran = []
    with pytest.raises(ValueError, match=rf"^{node} is a {kind}, not a regular file: it is never replaced by a rename$"):
        with atomic_write(node) as tmp:
            ran.append(tmp)  # the block never runs: refused before any work
    assert ran == []
    after = os.stat(node)
    assert (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node"]  # no temporary file left beside it


def test_atomic_write_refuses_dev_null_and_dev_stdout():
    for name, kind in (("/dev/null", "character device"), ("/dev/stdout", "file descriptor")):
        with pytest.raises(ValueError, match=f"^{name} is a {kind}, not a regular file"):
            with atomic_write(name):
                pass
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_atomic_write_through_a_link_replaces_the_file_and_keeps_the_link(tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    os.symlink(target, tmp_path / "link.csv")
    with atomic_write(tmp_path / "link.csv") as tmp:
        tmp.write_text("new\n")
    assert (tmp_path / "link.csv").is_symlink() and os.readlink(tmp_path / "link.csv") == str(target)
    assert target.read_text() == "new\n"


@needs_root
def test_output_text_writes_a_device_and_a_fifo_in_place(tmp_path):
    node = _char_device(tmp_path / "null")
    with output_text(node) as f:
        f.write("a,b\n1,2\n")
    assert _is_null_device(node) and sorted(p.name for p in tmp_path.iterdir()) == ["null"]
    fifo = _fifo(tmp_path / "fifo")
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    with output_text(fifo) as f:
        f.write("a,b\n1,2\n")
    reader.join(timeout=30)
    assert got == ["a,b\n1,2\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_output_text_to_dev_stdout_redirected_to_a_file_appends_to_it(tmp_path):
    """``> out.txt``: /dev/stdout is the file itself; replacing it would lose what the command printed before."""
    out = tmp_path / "out.txt"
    script = ("from ssd_lesson.io.files import output_text\nprint('printed first')\n"  # still in the buffer
              "with output_text('/dev/stdout') as f:\n    f.write('a,b\\n')\nprint('printed after')\n")
    with out.open("w") as stdout:
        r = subprocess.run([sys.executable, "-c", script], stdout=stdout, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "printed first\na,b\nprinted after\n"


# ---------------------------------------------------------------- the commands: refused before any work
@needs_root
@pytest.mark.parametrize("argv, option, make, kind", [
    (["train", "--epochs", "1", "--force", "--out"], "--out", _char_device, "character device"),
    (["train", "--epochs", "1", "--out"], "--out", _fifo, "FIFO"),
    (["evaluate", "--force", "--csv"], "--csv", _block_device, "block device"),
], ids=["train-device", "train-fifo", "evaluate-block-device"])
def test_a_file_option_refuses_what_is_not_a_regular_file(tmp_path, argv, option, make, kind):
    node = make(tmp_path / "node")
    r = run_main(*argv, node, cwd=ROOT)
    command = argv[0]
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.splitlines()[0].startswith(f"error: argument {option}: {node} is a {kind}, not a regular file; "
                                               "give a file name"), r.stderr
    assert r.stderr.strip().endswith(f"(see python -m ssd_lesson {command} --help)") and len(r.stderr.splitlines()) == 1
    assert output_kind(node) == kind and sorted(p.name for p in tmp_path.iterdir()) == ["node"]


def test_train_out_dev_stdout_and_dev_null_refused(tmp_path):
    for name, kind in (("/dev/stdout", "file descriptor"), ("/dev/null", "character device")):
        r = run_main("train", "--epochs", "1", "--force", "--out", name, cwd=ROOT)
        assert r.returncode == 2 and r.stderr.startswith(f"error: argument --out: {name} is a {kind}, not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@needs_root
@pytest.mark.parametrize("argv, option", [
    (["dissect", "--out"], "--out"),
    (["notebooks", "--execute", "--out"], "--out"),
    (["notebooks", "--html"], "--html"),
], ids=["dissect", "notebooks-out", "notebooks-html"])
@pytest.mark.parametrize("make, kind", [(_char_device, "character device"), (_fifo, "FIFO")], ids=["device", "fifo"])
def test_a_folder_option_refuses_a_device_or_a_fifo(tmp_path, argv, option, make, kind):
    node = make(tmp_path / "node")
    r = run_main(*argv, node, cwd=ROOT)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.strip() == (f"error: argument {option}: {node} cannot be a folder: {node} is a {kind} "
                                f"(see python -m ssd_lesson {argv[0]} --help)")
    assert output_kind(node) == kind


@needs_root
@pytest.mark.parametrize("argv, option, entry", [
    (["dissect", "--out"], "--out", "fig1_grid_4x4.jpg"),
    (["notebooks", "--execute", "--only", "01", "--out"], "--out", "01_ground_truth.ipynb"),
    (["notebooks", "--html"], "--html", "index.html"),
], ids=["dissect", "notebooks-out", "notebooks-html"])
def test_a_folder_holding_a_device_where_a_file_is_written_is_refused(tmp_path, argv, option, entry):
    folder = tmp_path / "out"
    folder.mkdir()
    node = _char_device(folder / entry)
    r = run_main(*argv, folder, cwd=ROOT)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.strip() == (f"error: {option} {folder}: {entry} in it is a character device, not a regular file, "
                                "and the command writes that file")
    assert _is_null_device(node) and sorted(p.name for p in folder.iterdir()) == [entry]


# ---------------------------------------------------------------- evaluate --csv: a stream is written in place
@needs_root
def test_evaluate_csv_to_a_device_writes_in_place_and_keeps_the_device(tmp_path):
    """No --force is needed: nothing is replaced. The collage set is made under tmp_path (20 images: seconds)."""
    node = _char_device(tmp_path / "table-device")
    r = run_main("evaluate", "--data", "collage", "--data-dir", tmp_path / "collage", "--n-images", 20, "--seed", 0,
                 "--device", "cpu", "--csv", node, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == f"table written to {node}"
    assert _is_null_device(node) and sorted(p.name for p in tmp_path.iterdir()) == ["collage", "table-device"]
    r = run_main("evaluate", "--data", "collage", "--data-dir", tmp_path / "collage", "--n-images", 20, "--seed", 0,
                 "--device", "cpu", "--csv", "/dev/null", "--force", cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "table written to /dev/null", r.stderr
    assert _is_null_device(Path("/dev/null"))


@pytest.mark.slow  # a real evaluate process
def test_evaluate_csv_dev_stdout_prints_the_table_after_the_report(tmp_path):
    """A real process with stdout redirected to a file: the report, then the CSV, nothing lost or overwritten."""
    out = tmp_path / "out.txt"
    with out.open("w") as stdout:
        r = subprocess.run([sys.executable, "-m", "ssd_lesson", "evaluate", "--data", "collage", "--data-dir",
                            str(tmp_path / "collage"), "--n-images", "20", "--seed", "0", "--device", "cpu",
                            "--csv", "/dev/stdout"], cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    header = "class,gt_boxes,difficult,ap_voc07,ap_all_point,ap_coco50"
    at = lines.index(header)
    assert any(line.startswith("checkpoint ") for line in lines[:at]) and lines[at - 1].startswith("mean ")  # report, table, CSV
    assert lines[at + 1].startswith("aeroplane,0,0,") and lines[-1] == "table written to /dev/stdout"
    assert len(lines) - at == 1 + 21 + 1  # the header, 20 classes and the mean, the last line
