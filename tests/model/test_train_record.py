"""What the train command records: the full command with every option, the photos kept out, and a short
re-run of the shipped checkpoint's recorded command that gives the same first-epoch losses as a direct run."""
from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssd_lesson.commands.option_flags import loss_options_from
from ssd_lesson.commands.train import _parse, full_command, train_main
from ssd_lesson.data import collage as C
from ssd_lesson import LossOptions
from ssd_lesson.model.checkpoint import load_checkpoint
from ssd_lesson.model.record import CheckpointRecord, InitCheckpoint, TrainingData
from ssd_lesson.model.train import BoxActivationPenalty

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "data" / "checkpoints" / "ssd_collage.pth"
#: The loss options added after the shipped checkpoints were trained (the SSD paper's), by their flags' dest,
#: at the values those runs used: the lesson's, LossOptions.training()'s.
LATER_LOSS_OPTIONS = {"match_inclusive": False, "neg_pos_ratio": None, "box_coding": "tanh_corners", "box_loss": "l1",
                      "smooth_l1_beta": 1.0, "normalization": "per_image"}


def test_full_command_spells_out_every_option_and_parses_back():
    args = _parse(["--body", "tiny", "--no-pretrained", "--photos", "train", "--box-penalty", "0.5", "--half"])
    cmd = full_command(args)
    assert cmd.startswith("python -m ssd_lesson train --data collage --n-images 1000 --photos train --body tiny "
                          "--no-pretrained --n-hidden 128 --epochs 16 --bs 32 --lr 0.01 --box-penalty 0.5 ")
    assert cmd.endswith(" --match-on anchors --iou-threshold 0.4 --loss bce --focal-alpha 0.25 --focal-gamma 1.0 "
                        "--regression mean --match-inclusive False --box-coding tanh_corners --box-loss l1 "
                        "--smooth-l1-beta 1.0 --normalization per_image --seed 0 --out runs/ssd_collage.pth --half --workers 0 "
                        "--amp off")
    assert "--force" not in cmd and "--init" not in cmd and "--wd" not in cmd  # unset options are left out
    again = _parse(shlex.split(cmd)[4:])
    assert vars(again) == vars(args)


def test_full_command_quotes_paths_a_shell_would_split(tmp_path):
    odd = tmp_path / "my runs" / "it's $HOME.pth"
    args = _parse(["--data-dir", str(tmp_path / "a folder"), "--out", str(odd)])
    words = shlex.split(full_command(args))
    assert words[words.index("--out") + 1] == str(odd) and words[words.index("--data-dir") + 1] == str(tmp_path / "a folder")
    assert vars(_parse(words[4:])) == vars(args)


@pytest.mark.parametrize("data, body, pretrained, epochs, out", [
    ("collage", "tiny", False, 16, "runs/ssd_collage.pth"), ("voc", "resnet34", True, 10, "runs/ssd_voc.pth")])
def test_each_data_has_its_recipe_and_the_command_line_wins(data, body, pretrained, epochs, out):
    args = _parse(["--data", data])
    assert (args.body, args.pretrained, args.epochs, args.out) == (body, pretrained, epochs, Path(out))
    mine = _parse(["--data", data, "--body", "resnet18", "--pretrained", "--epochs", "3", "--out", "m.pth"])
    assert (mine.body, mine.pretrained, mine.epochs, mine.out) == ("resnet18", True, 3, Path("m.pth"))


def test_held_out_photos_never_reach_a_train_photos_collage():
    assert C.photo_set("held_out") == C.HELD_OUT_PHOTOS
    assert set(C.photo_set("train")) | set(C.photo_set("held_out")) == set(C.photo_set("all"))
    assert not set(C.photo_set("train")) & set(C.photo_set("held_out"))
    sources = {s.split("#")[0] for i in range(30) for s, _ in C.render_collage(0, i, photos="train").sources}
    assert sources and not sources & set(C.HELD_OUT_PHOTOS)
    held = {s.split("#")[0] for i in range(30) for s, _ in C.render_collage(0, i, photos="held_out").sources}
    assert held == set(C.HELD_OUT_PHOTOS)
    with pytest.raises(ValueError, match="photos must be one of"):
        C.photo_set("test")


def test_box_penalty_adds_mean_square_of_box_activations_to_the_gradient_only():
    class FakeLearn:  # what the callback reads and writes
        training = True

    learn = FakeLearn()
    box_actns = torch.tensor([[[1.0, -2.0, 0.0, 3.0]]])
    learn.pred, learn.loss_grad = (None, box_actns), torch.tensor(5.0)
    learn.loss = learn.loss_grad.clone()
    cb = BoxActivationPenalty(0.5)
    cb.learn = learn
    cb.after_loss()
    assert learn.loss_grad.item() == pytest.approx(5.0 + 0.5 * (1 + 4 + 0 + 9) / 4)
    assert learn.loss.item() == 5.0  # what fastai reports stays the SSD loss
    with pytest.raises(ValueError, match="weight must be >= 0"):
        BoxActivationPenalty(-1.0)


def _short(argv: list[str], out: Path, data_dir: Path) -> list[str]:
    """The recorded options with a short run's size: 20 collage images, batches of 4, one epoch."""
    args = _parse(argv)
    args.n_images, args.bs, args.epochs, args.out, args.data_dir, args.half = 20, 4, 1, out, str(data_dir), False
    return shlex.split(full_command(args))[4:] + ["--force"]


def test_shipped_checkpoints_records_read_into_the_typed_record(monkeypatch):
    """The two shipped checkpoints' records (the older layout): how they were trained (both with --photos train),
    and the command that made each, which parses back to options that agree with the record's typed facts."""
    monkeypatch.chdir(ROOT)  # the recorded --init is relative to the clone
    base_path = ROOT / "data" / "checkpoints" / "base" / "ssd_collage_anchors.pth"
    shipped, base = load_checkpoint(SHIPPED).record, load_checkpoint(base_path).record
    assert shipped.loss_options == LossOptions(match_on="predictions", regression_reduction="sum")
    assert base.loss_options == LossOptions(match_on="anchors", regression_reduction="sum")
    for record, epochs in ((shipped, 2), (base, 16)):
        assert record.data == TrainingData("collage", "runs/collage-n1000-seed0-train-photos", 1000, 800, 200,
                                           photos="train")
        assert record.seed == 0 and record.epoch == epochs
        recorded = _parse(shlex.split(record.command)[4:])  # the command, parsed: the same facts as the record's
        assert (recorded.data, recorded.n_images, recorded.photos, recorded.seed, recorded.epochs) == (
            record.data.kind, record.data.n_images, record.data.photos, record.seed, epochs)
        assert loss_options_from(recorded) == record.loss_options and ROOT / recorded.out == record.path
        assert recorded.body == "tiny" and recorded.n_hidden == 128 and not recorded.force  # --force left to the rerun
        assert record.photos_seen() == C.photo_set("train") and record.photos_kept_out() == C.HELD_OUT_PHOTOS
    assert base.init is None and base.note is None and shipped.note is None
    # the older layout kept of the start only its command and photographs: they are read into its record
    assert shipped.init == InitCheckpoint("data/checkpoints/base/ssd_collage_anchors.pth",
                                          hashlib.sha256(base_path.read_bytes()).hexdigest(),
                                          CheckpointRecord(command=base.command, data=TrainingData("collage", photos="train")))
    assert _parse(shlex.split(shipped.command)[4:]).init == Path(shipped.init.path) and shipped.init.command == base.command
    assert shipped.metrics["mAP50"] == pytest.approx(0.6166, abs=1e-4) and base.metrics["mAP50"] == pytest.approx(0.5419, abs=1e-4)


@pytest.mark.slow
def test_shipped_checkpoint_command_reruns_to_the_same_first_epoch_losses(tmp_path):
    record = load_checkpoint(SHIPPED).record
    argv = shlex.split(record.command)
    assert argv[:4] == ["python", "-m", "ssd_lesson", "train"]
    recorded = vars(_parse(argv[4:]))  # the tests run in the clone, where the recorded --init is
    assert recorded["seed"] == record.seed and recorded["photos"] == record.data.photos  # the command is the record's
    assert str(recorded["init"]) == record.init.path and recorded["force"] is False
    assert "--force" not in argv  # the printed command leaves --force to whoever reruns it
    assert recorded["match_on"] == record.loss_options.match_on
    assert recorded["regression"] == record.loss_options.regression_reduction
    # the printed command, shortened, run as a learner would run it (a new process) ...
    short = _short(argv[4:], tmp_path / "printed.pth", tmp_path / "data")
    done = subprocess.run([sys.executable, "-m", "ssd_lesson", "train", *short], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # ... and directly, with the same options: the same first-epoch losses
    assert train_main(_short(argv[4:], tmp_path / "direct.pth", tmp_path / "data")) == 0
    a, b = (load_checkpoint(tmp_path / n).record.metrics for n in ("printed.pth", "direct.pth"))
    for k in ("train_loss", "valid_loss", "clas_loss", "regr_loss"):
        assert np.isfinite(a[k]) and a[k] == pytest.approx(b[k], rel=1e-5), k


def test_saturated_is_abs_tanh_above_the_limit():
    from ssd_lesson.core.anchors import SATURATION_LIMIT, saturated

    acts = torch.tensor([[[0.0, 2.29, 2.31, -3.0]]])  # atanh(0.98) = 2.2976
    assert saturated(acts).tolist() == [[[False, False, True, True]]]
    assert SATURATION_LIMIT == 0.98 and float(np.arctanh(0.98)) == pytest.approx(2.2976, abs=1e-4)
    with pytest.raises(ValueError, match="must end in 4"):
        saturated(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="limit must be between 0 and 1"):
        saturated(acts, limit=1.5)


def test_init_checkpoint_must_match_body_and_head(tmp_path):
    base = ROOT / "data" / "checkpoints" / "base" / "ssd_collage_anchors.pth"
    argv = ["--body", "tiny", "--no-pretrained", "--n-hidden", "16", "--n-images", "5", "--bs", "2", "--epochs", "1",
            "--init", str(base), "--data-dir", str(tmp_path), "--out", str(tmp_path / "m.pth")]
    with pytest.raises(ValueError, match=r"the checkpoint is a tiny body with n_hidden 128, not the requested "
                                         r"--body tiny --n-hidden 16"):
        train_main(argv)
    assert not (tmp_path / "m.pth").exists()


def test_a_run_from_init_records_where_it_started_and_what_it_saw(tmp_path, monkeypatch, capsys):
    """--init, --box-penalty, --wd and --photos reach the checkpoint's record; the lesson reads them back."""
    from ssd_lesson.course.held_out import checkpoint_summary, photos_seen

    monkeypatch.chdir(ROOT)
    base = Path("data/checkpoints/base/ssd_collage_anchors.pth")
    out = tmp_path / "m.pth"
    argv = ["--body", "tiny", "--no-pretrained", "--n-hidden", "128", "--n-images", "6", "--photos", "train", "--bs", "2",
            "--epochs", "1", "--lr", "0.001", "--wd", "0.001", "--box-penalty", "0.5", "--init", str(base),
            "--regression", "sum", "--data-dir", str(tmp_path), "--out", str(out)]
    from ssd_lesson.model import checkpoint

    read, real_read = [], checkpoint._read_checkpoint
    monkeypatch.setattr(checkpoint, "_read_checkpoint", lambda path, *a: read.append(Path(path)) or real_read(path, *a))
    assert train_main(argv) == 0
    assert read == [base]  # --init is read once
    model = load_checkpoint(out)
    record = model.record
    assert record.command == full_command(_parse(argv)) and "--wd 0.001 --box-penalty 0.5 --init " + str(base) in record.command
    recorded = _parse(shlex.split(record.command)[4:])
    assert recorded.box_penalty == 0.5 and recorded.wd == 0.001 and recorded.init == base
    assert record.data.photos == "train" and record.data.folder == str(tmp_path / "collage-n6-seed0-train-photos")
    base_record = load_checkpoint(base).record
    assert record.init == InitCheckpoint(str(base), hashlib.sha256(base.read_bytes()).hexdigest(),
                                         base_record.replace(path=None))  # its whole record, as it was
    assert record.init.command == base_record.command and record.init.record.data.photos == "train"
    assert photos_seen(model) == C.photo_set("train")  # neither it nor its start saw the held-out photos
    lines = checkpoint_summary(model).splitlines()
    assert lines[2] == f"starting from {base}, made with: {base_record.command}"  # a learner reads the command
    assert f"starting from {base} (sha256 {record.init.sha256[:12]}...), made with: " in record.summary()
    assert lines[-2] == (f"photos its training objects were cut from: {', '.join(C.photo_set('train'))}; "
                         f"kept out of training: {', '.join(C.HELD_OUT_PHOTOS)}")
    assert lines[-1].startswith("its validation numbers: ")
    # the weights moved from the start's
    start = load_checkpoint(base).state_dict()
    assert any(not torch.equal(v, start[k]) for k, v in model.state_dict().items() if v.is_floating_point())


def test_init_must_be_an_existing_file(tmp_path, capsys, monkeypatch):
    from ssd_lesson.__main__ import main

    monkeypatch.delenv("SSD_LESSON_DEBUG", raising=False)
    assert main(["train", "--init", str(tmp_path / "missing.pth")]) == 2
    assert capsys.readouterr().err.startswith(f"error: argument --init: {tmp_path / 'missing.pth'}: no such file")
    assert main(["train", "--init", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: argument --init: {tmp_path} is a folder; give a file")
    assert main(["train", "--box-penalty", "-1"]) == 2
    assert capsys.readouterr().err.startswith("error: argument --box-penalty: must be at least 0, got -1")
