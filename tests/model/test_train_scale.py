"""Training at scale: metrics reduced over the processes of a distributed run (each valid image once), data
loading workers, mixed precision (the loss in float32), and ``train --resume`` ending with the weights of an
uninterrupted run. Tiny collage sets, a tiny body, one or two epochs."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssd_lesson import AnchorSpec, make_anchors, ssd_loss
from ssd_lesson.commands.train import _parse, full_command, train_main
from ssd_lesson.model.checkpoint import load_checkpoint, load_training_state, plain
from ssd_lesson.model.distributed import real_items
from ssd_lesson.model.precision import amp_mode
from ssd_lesson.model.train import SSDLoss

from tests.in_process import run_main

ROOT = Path(__file__).resolve().parents[2]
#: 25 collages: 20 train, 5 valid; batches of 2: two processes get 3 valid images each, one of them a repeat.
SMALL = ["--body", "tiny", "--n-hidden", "16", "--n-images", "25", "--bs", "2"]


@pytest.fixture(scope="module")
def collage_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("collage")


def weights_equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# ---------------------------------------------------------------- each image once, over the processes
class _NoBroadcast:
    """fastai's ``DistributedDL`` without a process group: every rank shuffles alike (here: no shuffle)."""

    def _broadcast(self, t, rank):
        return t


@pytest.mark.parametrize("n, world_size, bs", [(5, 2, 2), (7, 3, 2), (1, 2, 4), (8, 2, 3), (6, 4, 1)])
def test_real_items_count_every_item_once_over_the_ranks(n, world_size, bs):
    from fastai.data.load import DataLoader
    from fastai.distributed import DistributedDL

    class Shares(_NoBroadcast, DistributedDL):
        pass

    seen, batches = [], []
    for rank in range(world_size):
        dl = Shares(DataLoader(list(range(n)), bs=bs), rank=rank, world_size=world_size)
        batches.append(0)
        for b in dl:
            batches[-1] += 1
            seen += b[:real_items(dl, len(b))].tolist()
    assert sorted(seen) == list(range(n))  # the repeats that pad the shares are left out, nothing else
    assert len(set(batches)) == 1  # every rank the same number of batches: the collectives line up
    assert real_items(object(), 7) == 7  # a plain loader: all of them


def test_plain_turns_numpy_floats_into_python_floats():
    """numpy's float64 is a Python float, but pickles as numpy's, which weights_only loading refuses."""
    value = plain({"lr": np.float64(0.5), "t": torch.ones(2)}, "x")
    assert type(value["lr"]) is float and value["lr"] == 0.5 and torch.equal(value["t"], torch.ones(2))


# ---------------------------------------------------------------- mixed precision
def test_amp_choices_per_device():
    assert amp_mode("auto", "cpu") == "bf16" and amp_mode("bf16", "cpu") == "bf16" and amp_mode("off", "cpu") == "off"
    with pytest.raises(ValueError, match=r"--amp fp16: float16 mixed precision needs a CUDA GPU.*--amp bf16"):
        amp_mode("fp16", "cpu")


def test_the_loss_runs_in_float32_under_autocast():
    anchors = make_anchors(AnchorSpec())
    gen = torch.Generator().manual_seed(0)
    logits, boxes = torch.randn(2, 189, 21, generator=gen), torch.randn(2, 189, 4, generator=gen)
    gt_boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.6]], [[0.2, 0.3, 0.9, 0.8]]])
    gt_labels = torch.tensor([[3], [14]])
    loss = SSDLoss(anchors)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss((logits.bfloat16(), boxes.bfloat16()), gt_boxes, gt_labels)
    want = ssd_loss(logits.bfloat16().float(), boxes.bfloat16().float(), gt_boxes, gt_labels, anchors,
                    options=loss.options)  # the same activations, read as float32
    assert got.dtype == torch.float32 and loss.last.ious.dtype == torch.float32
    torch.testing.assert_close(got, want.total / 2, rtol=0, atol=0)


# ---------------------------------------------------------------- refusals
def test_refusals_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    shipped = ROOT / "data" / "checkpoints" / "ssd_collage.pth"
    for line, says in [
        (["--amp", "fp16"], "error: --amp fp16: float16 mixed precision needs a CUDA GPU, and this run trains on the CPU"),
        (["--workers", "-1"], "error: argument --workers: must be at least 0, got -1"),
        (["--resume", str(tmp_path / "gone.pth")], f"error: argument --resume: {tmp_path / 'gone.pth'}: no such file"),
        (["--resume", str(shipped)], f"error: --resume {shipped}: the checkpoint holds no training state to resume from"),
    ]:
        r = run_main("train", *line, cwd=tmp_path, env={"SSD_LESSON_DEBUG": None})
        assert r.returncode == 2 and r.stderr.startswith(says) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    r = run_main("train", "--resume", str(tmp_path / "junk.pth"), cwd=tmp_path, env={"SSD_LESSON_DEBUG": None})
    assert r.returncode == 2 and r.stderr.startswith(f"error: --resume {tmp_path / 'junk.pth'}: not a checkpoint")


def test_the_command_records_amp_and_workers_but_not_resume():
    args = _parse(["--amp", "--workers", "3"])
    assert args.amp == "auto" and args.workers == 3  # train resolves auto before recording it (bf16 on a CPU)
    args.amp, args.resume = "bf16", Path("x.pth")
    cmd = full_command(args)
    assert cmd.endswith(" --workers 3 --amp bf16") and "--resume" not in cmd
    assert vars(_parse(shlex.split(cmd)[4:])) == {**vars(args), "resume": None}


# ---------------------------------------------------------------- training runs
@pytest.mark.slow  # three short training runs
def _cut_in_second_epoch(argv, out, monkeypatch) -> int:
    """``train_main(argv)`` into ``out``, interrupted (Ctrl-C) at the second epoch's fourth batch; train's exit status.
    The interrupt is taken away again before returning, so a resumed run in the same test finishes."""
    from ssd_lesson.model import train

    real_after_batch = train.BatchLosses.after_batch

    def interrupt_in_second_epoch(self):
        if self.epoch == 1 and self.training and self.iter == 3:
            raise KeyboardInterrupt
        real_after_batch(self)
    with monkeypatch.context() as m:
        m.setattr(train.BatchLosses, "after_batch", interrupt_in_second_epoch)
        return train_main([*argv, "--out", str(out)])


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(collage_dir, tmp_path, monkeypatch, capsys):
    """Cut short in the second epoch and resumed (with data-loading workers, which change nothing), the run ends
    with the uninterrupted run's weights bit for bit, and the same record (but its --out). With --half: the
    training state keeps the float32 weights, which the float16 ones would not reproduce."""
    argv = [*SMALL, "--epochs", "2", "--half", "--data-dir", str(collage_dir)]
    whole, cut = tmp_path / "whole.pth", tmp_path / "cut.pth"
    assert train_main([*argv, "--out", str(whole)]) == 0
    assert _cut_in_second_epoch(argv, cut, monkeypatch) == 130
    assert f"continue with python -m ssd_lesson train --resume {cut}" in capsys.readouterr().err
    state = load_training_state(cut)  # read with weights_only=True, as load_checkpoint reads
    assert load_checkpoint(cut).record.epoch == 1 and (state["epoch"], state["epochs"]) == (1, 2)
    floats = [v for v in state["weights"].values() if v.is_floating_point()]
    assert all(v.dtype == torch.float32 for v in floats) and any(not torch.equal(v, v.half().float()) for v in floats)

    r = run_main("train", "--resume", str(cut), "--epochs", "3", "--seed", "1", env={"SSD_LESSON_DEBUG": None})
    assert r.returncode == 2 and r.stderr.startswith(
        f"error: --resume {cut} continues the recorded run, and these options differ from it: --epochs 3 (recorded: 2); "
        "--seed 1 (recorded: 0)"), r.stderr
    assert train_main(["--resume", str(cut), "--workers", "2"]) == 0
    said = capsys.readouterr().out
    assert "resuming after epoch 1" in said and "cut short on" not in said  # one process then, one now: same batches
    a, b = load_checkpoint(whole), load_checkpoint(cut)
    assert weights_equal(a, b)
    assert a.record.metrics == b.record.metrics and a.record.epoch == b.record.epoch == 2
    assert a.record.replace(path=None, command=None) == b.record.replace(path=None, command=None)
    assert b.record.command == a.record.command.replace(f"--out {whole}", f"--out {cut}")
    assert load_training_state(whole) is None and load_training_state(cut) is None  # finished: the model alone
    r = run_main("train", "--resume", str(cut), env={"SSD_LESSON_DEBUG": None})
    assert r.returncode == 2 and "holds no training state to resume from" in r.stderr


@pytest.mark.slow  # two short training runs
def test_amp_bf16_on_cpu_trains_in_bfloat16_and_records_it(collage_dir, tmp_path, monkeypatch):
    from ssd_lesson.model import train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    outputs, losses = [], []
    real_learner, real_loss = train.ssd_learner, train.ssd_loss

    def watched_learner(dls, model, *a, **k):
        model.register_forward_hook(lambda m, i, out: outputs.append(out[0].dtype) if m.training else None)
        return real_learner(dls, model, *a, **k)

    def watched_loss(class_logits, box_actns, *a, **k):
        losses.append((class_logits.dtype, box_actns.dtype, torch.is_autocast_enabled("cpu")))
        return real_loss(class_logits, box_actns, *a, **k)
    monkeypatch.setattr(train, "ssd_learner", watched_learner)
    monkeypatch.setattr(train, "ssd_loss", watched_loss)
    argv = [*SMALL, "--epochs", "1", "--data-dir", str(collage_dir)]
    assert train_main([*argv, "--amp", "--out", str(tmp_path / "bf16.pth")]) == 0
    assert set(outputs) == {torch.bfloat16}  # the model ran in bfloat16 ...
    assert set(losses) == {(torch.float32, torch.float32, False)}  # ... the loss in float32, autocast off
    m = load_checkpoint(tmp_path / "bf16.pth")
    assert "--amp bf16" in m.record.command and _parse(shlex.split(m.record.command)[4:]).amp == "bf16"
    assert all(torch.isfinite(v).all() for v in m.state_dict().values() if v.is_floating_point())
    outputs.clear()
    assert train_main([*argv, "--out", str(tmp_path / "fp32.pth")]) == 0
    assert set(outputs) == {torch.float32} and not weights_equal(m, load_checkpoint(tmp_path / "fp32.pth"))


def _torchrun(args: list[str], tmp_path: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node nproc -m ssd_lesson train ...``, ended with its workers if it hangs."""
    with socket.socket() as sock:  # a free port for the rendezvous (torchrun's port 0 hangs accelerate's init)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # TMPDIR: torchrun keeps its rendezvous files there; under tmp_path nothing is left in /tmp
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "TMPDIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "ssd_lesson", "train", *args]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)  # its own process group: a hang is ended with the workers
    try:
        stdout, stderr = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        stdout, stderr = p.communicate()
        pytest.fail(f"{nproc}-process run hung:\n" + stdout[-3000:] + stderr[-3000:])
    assert p.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr)


def _one_process_validation(path: Path, collage_dir: Path, device: str) -> tuple[dict, list]:
    """The saved model's validation numbers on the whole valid split in one process: by ``evaluate`` (a plain
    loop, no fastai) and by a fastai ``Learner.validate`` (the table's code, undistributed)."""
    from ssd_lesson.data.collage import collage_records
    from ssd_lesson.data.images import make_dataloaders
    from ssd_lesson.model.train import evaluate, ssd_learner

    model = load_checkpoint(path).to(device)
    train_recs, valid_recs, _ = collage_records(25, 0, collage_dir)
    dls = make_dataloaders(train_recs, valid_recs, bs=2, device=device)
    learn = ssd_learner(dls, model, model.record.loss_options, decode_options=model.record.decode_options)
    with learn.no_bar():
        validated = learn.validate()
    return evaluate(model, dls.valid, learn.loss_func, model.record.decode_options), list(validated)


def _check_reduced(out: Path, stdout: str, collage_dir: Path, device: str = "cpu", rel: float = 1e-5) -> None:
    """The record's numbers are one process's on the whole valid split (the sums in another order: ``rel``)."""
    recorded = load_checkpoint(out).record.metrics
    alone, validated = _one_process_validation(out, collage_dir, device)
    names = ["valid_loss", "clas_loss", "regr_loss", "mAP50", "mAP_coco"]
    for k, v in zip(names, validated):
        assert recorded[k] == pytest.approx(alone[k], rel=rel, abs=rel / 100), k
        assert recorded[k] == pytest.approx(v, rel=rel, abs=rel / 100), k
    closing = next(line for line in stdout.splitlines() if line.startswith("validation: "))
    assert closing == "validation: " + ", ".join(f"{k} {recorded[k]:.4f}" for k in names)  # the table's numbers


@pytest.mark.slow  # two processes that each import fastai and train
def test_two_cpu_processes_report_the_whole_valid_split(collage_dir, tmp_path):
    """``torchrun --nproc_per_node 2`` on gloo (fastai's distrib_ctx, through accelerate): the checkpoint's record
    and the closing line hold the numbers one process gets from the saved weights on the whole valid split
    (5 images: the second process's share ends with a repeat of the first image, which must not count)."""
    pytest.importorskip("accelerate", reason="fastai's distributed training needs the accelerate package")
    out = tmp_path / "ddp.pth"
    done = _torchrun([*SMALL, "--epochs", "1", "--data-dir", str(collage_dir), "--out", str(out)], tmp_path)
    assert "shared by 2 processes" in done.stdout
    assert done.stdout.count("trained 1 epochs") == 1 and done.stdout.count("validation: valid_loss") == 1  # rank 0
    assert load_checkpoint(out).record.epoch == 1
    _check_reduced(out, done.stdout, collage_dir)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.slow
def test_cuda_mixed_precision_and_resume(collage_dir, tmp_path, monkeypatch):
    """On a GPU: --amp auto trains in bf16 or fp16 (fp16 with its gradient scaler, whose state the training state
    keeps), and a resumed run ends where the uninterrupted one does."""
    argv = [*SMALL, "--epochs", "2", "--amp", "--data-dir", str(collage_dir)]
    whole, cut = tmp_path / "whole.pth", tmp_path / "cut.pth"
    assert train_main([*argv, "--out", str(whole)]) == 0
    mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert f"--amp {mode}" in load_checkpoint(whole).record.command
    assert _cut_in_second_epoch(argv, cut, monkeypatch) == 130
    assert (load_training_state(cut)["scaler"] is None) == (mode == "bf16")
    assert train_main(["--resume", str(cut)]) == 0
    a, b = load_checkpoint(whole), load_checkpoint(cut)
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6, msg=k)  # cuDNN may sum in another order


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs (nccl: one GPU per process)")
@pytest.mark.slow
def test_two_gpu_processes_report_the_whole_valid_split(collage_dir, tmp_path):
    """As the CPU test, on nccl: each process on its own GPU, the sums reduced on the GPU. One GPU validates the
    saved weights alone; its batches differ from the processes' (cuDNN may pick other kernels): 1e-3."""
    pytest.importorskip("accelerate", reason="fastai's distributed training needs the accelerate package")
    out = tmp_path / "ddp.pth"
    done = _torchrun([*SMALL, "--epochs", "1", "--data-dir", str(collage_dir), "--out", str(out)], tmp_path)
    _check_reduced(out, done.stdout, collage_dir, device="cuda", rel=1e-3)
