"""Nothing lost when a run is interrupted or runs beside another: real subprocesses, real signals."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _script(*args: str, tmpdir: Path | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **({"TMPDIR": str(tmpdir)} if tmpdir else {})}
    return subprocess.Popen([sys.executable, "-m", "tests.interrupt_scripts", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the subprocess ended before {path.name}: {proc.communicate()}")
        if time.time() - t0 > seconds:
            proc.kill()
            pytest.fail(f"{path.name} never appeared")
        time.sleep(0.05)


@pytest.mark.slow  # a real subprocess, signalled mid-write
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_checkpoint_write_leaves_a_whole_file_and_no_tmp(tmp_path, sig):
    path, ready = tmp_path / "my_model.pth", tmp_path / "ready"
    torch.save({"old": torch.zeros(3)}, path)  # the previous checkpoint
    proc = _script("slow_checkpoint_write", str(path), str(ready))
    _wait_for(ready, proc)  # torch.save has written half the new file
    assert (tmp_path / f".my_model.pth.{proc.pid}.tmp").stat().st_size > 0
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    # the signal waited for the rename, then did what it does: KeyboardInterrupt, or the end of the process
    assert proc.returncode == -sig, err
    assert "KeyboardInterrupt" in err if sig == signal.SIGINT else err == ""
    assert "saved" not in out  # the program did not go on after the signal
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_model.pth", "ready"]
    ckpt = torch.load(path, weights_only=True)  # the whole new file
    assert ckpt["model"]["class_names"] == ["cat", "dog"] and ckpt["state_dict"]["lin.weight"].shape == (2, 4)


def test_failed_checkpoint_write_keeps_the_old_file(tmp_path, monkeypatch):
    from ssd_lesson.io.files import atomic_write

    path = tmp_path / "m.pth"
    path.write_bytes(b"old checkpoint")
    with pytest.raises(OSError, match="disk full"):
        with atomic_write(path) as tmp:
            tmp.write_bytes(b"half a ne")
            raise OSError("disk full")
    assert path.read_bytes() == b"old checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pth"]


def _notebook(code: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.mark.slow
def test_ctrl_c_during_notebooks_execute_says_what_was_completed(tmp_path):
    series, out, started = tmp_path / "series", tmp_path / "out", tmp_path / "started"
    series.mkdir()
    nbformat.write(_notebook("x = 1"), series / "01_quick.ipynb")
    nbformat.write(_notebook(f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(120)"),
                   series / "02_slow.ipynb")
    nbformat.write(_notebook("y = 2"), series / "03_never.ipynb")
    (tmp_path / "tmpdir").mkdir()
    proc = _script("notebooks", str(series), "--execute", "--out", str(out), tmpdir=tmp_path / "tmpdir",
                   start_new_session=True)
    _wait_for(started, proc)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole foreground process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"interrupted while running 02_slow.ipynb (its kernel is stopped, nothing written for it); "
                     f"notebooks 1 completed (01_quick.ipynb), written to {out}"]
    assert sorted(p.name for p in out.iterdir()) == ["01_quick.ipynb"]  # no half-written notebook, no .tmp
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # the kernel is stopped too: nothing left of the process group
        os.killpg(proc.pid, 0)
    assert list((tmp_path / "tmpdir").iterdir()) == []  # the command's temporary folder is gone


@pytest.mark.slow
def test_two_runs_making_one_collage_set_both_finish(tmp_path):
    out = tmp_path / "runs" / "collage-n40-seed5"
    procs = [_script("collage", "40", "5", str(out)) for _ in range(2)]  # started together, as two train runs
    results = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr
        assert stdout.strip() == "read 40 images"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["collage-n40-seed5"]  # no building folder left
    assert len(list((out / "JPEGImages").iterdir())) == 40


def test_an_incomplete_old_collage_set_is_replaced(tmp_path):
    from ssd_lesson.data.collage import collage_ready, make_collage_once

    out = tmp_path / "set"
    (out / "JPEGImages").mkdir(parents=True)
    (out / "JPEGImages" / "000000.jpg").write_bytes(b"half")  # an older build, interrupted
    assert not collage_ready(out, 6)
    assert make_collage_once(6, 1, out) == out and collage_ready(out, 6)
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
    mtime = (out / "ImageSets" / "Main" / "trainval.txt").stat().st_mtime_ns
    make_collage_once(6, 1, out)  # complete: left as it is
    assert (out / "ImageSets" / "Main" / "trainval.txt").stat().st_mtime_ns == mtime


def test_held_signals_deliver_ctrl_c_when_the_outermost_block_ends():
    """EpochCheckpoint holds Ctrl-C around the save and its bookkeeping; save_checkpoint holds it again inside."""
    from ssd_lesson.io.files import held_signals

    steps = []
    with pytest.raises(KeyboardInterrupt):
        with held_signals():
            with held_signals():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                steps.append("written")
            steps.append("epoch recorded")  # the inner block's end passed the signal to the outer one
    assert steps == ["written", "epoch recorded"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # as before


@pytest.mark.slow  # a real train run: fastai's import and a few batches
@pytest.mark.parametrize("when", ["while importing", "while training"])
def test_sigterm_to_train_leaves_nothing_in_the_temporary_folder(tmp_path, when):
    """``kill`` (SIGTERM) ends ``train`` as Ctrl-C does: status 143, one line, and its private temporary
    folder (where inductor's caches go) removed, at any moment of the run."""
    tmpdir, runs = tmp_path / "tmp", tmp_path / "runs"
    tmpdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen([sys.executable, "-m", "ssd_lesson", "train", "--data", "collage", "--n-images", "24",
                             "--body", "tiny", "--no-pretrained", "--n-hidden", "32", "--epochs", "200", "--bs", "8",
                             "--data-dir", str(runs), "--out", str(tmp_path / "m.pth")],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while not any(tmpdir.glob("ssd-lesson-*")) or (when == "while training" and not any(runs.glob("*/*"))):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < 120, "the run never got there"
        time.sleep(0.05)
    if when == "while training":
        time.sleep(3)  # into the epochs
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (out, err)
    assert err.strip().splitlines()[-1] == "terminated" and "Traceback" not in err
    assert list(tmpdir.iterdir()) == []
    if (tmp_path / "m.pth").exists():  # an epoch had finished: its checkpoint is whole, as after Ctrl-C
        from ssd_lesson.model.checkpoint import load_checkpoint

        assert load_checkpoint(tmp_path / "m.pth").record.epoch >= 1
    assert not [p.name for p in tmp_path.glob(".m.pth*")]  # no half-written file beside it
