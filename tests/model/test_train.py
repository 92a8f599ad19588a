"""Training with fastai: the loss wrapper, the CLI (checkpoints, --force, Ctrl-C, reproducibility, empty
valid split); the distributed runs are in test_train_scale.py. Tiny collage sets, a few batches: no real training."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssd_lesson import AnchorSpec, LossOptions, make_anchors, ssd_loss
from ssd_lesson.model.checkpoint import load_checkpoint
from ssd_lesson.commands.train import _parse, full_command, train_main
from ssd_lesson.model.checkpoint import TrainingData
from ssd_lesson.model.train import SSDLoss

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--body", "tiny", "--n-hidden", "16", "--n-images", "20", "--bs", "4", "--epochs", "2"]


@pytest.fixture(scope="module")
def collage_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("collage")


def run(collage_dir, out, *extra):
    return train_main([*SMALL, "--data-dir", str(collage_dir), "--out", str(out), *extra])


def test_loss_wrapper_is_ssd_loss_per_image():
    anchors = make_anchors(AnchorSpec())
    gen = torch.Generator().manual_seed(0)
    class_logits, box_actns = torch.randn(3, 189, 21, generator=gen), torch.randn(3, 189, 4, generator=gen)
    gt_boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.6], [0, 0, 0, 0]], [[0.2, 0.3, 0.9, 0.8], [0.0, 0.0, 0.3, 0.3]],
                             [[0, 0, 0, 0], [0, 0, 0, 0]]])
    gt_labels = torch.tensor([[3, -1], [14, 7], [-1, -1]])
    loss = SSDLoss(anchors, LossOptions(match_on="anchors"))
    got = loss((class_logits, box_actns), gt_boxes, gt_labels)
    want = ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, anchors, match_on="anchors")
    torch.testing.assert_close(got, want.total / 3)
    torch.testing.assert_close(loss.last.classification, want.classification)


@pytest.mark.slow  # two training runs and an evaluation (the fast tier trains one epoch in the tests below)
def test_cli_trains_saves_and_is_reproducible(collage_dir, tmp_path, capsys):
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    assert run(collage_dir, a) == 0
    out = capsys.readouterr().out
    assert "16 train / 4 valid images" in out and "mAP50" in out and "checkpoint:" in out
    ma = load_checkpoint(a)
    assert ma.record.epoch == 2 and set(ma.record.metrics) >= {"valid_loss", "clas_loss", "regr_loss", "mAP50", "mAP_coco"}
    # evaluate() without fastai gives the numbers the Learner recorded for the last epoch
    from ssd_lesson.data.images import make_dataloaders
    from ssd_lesson.data.collage import collage_records
    from ssd_lesson.model.train import evaluate

    train_recs, valid_recs, _ = collage_records(20, 0, collage_dir)
    dls = make_dataloaders(train_recs, valid_recs, bs=4, device="cpu")
    loss = SSDLoss(make_anchors(ma.spec), ma.record.loss_options)  # as it trained
    got, recorded = evaluate(ma, dls.valid, loss, ma.record.decode_options), ma.record.metrics
    for k in ("valid_loss", "clas_loss", "regr_loss", "mAP50", "mAP_coco"):
        assert got[k] == pytest.approx(recorded[k], rel=1e-4, abs=1e-6), k
    assert run(collage_dir, b) == 0  # same seed, same data: the same weights
    mb = load_checkpoint(b)
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(va, vb), k


def test_cli_refuses_to_overwrite_without_force(collage_dir, tmp_path, capsys):
    out = tmp_path / "m.pth"
    out.write_bytes(b"precious")
    assert run(collage_dir, out) == 1
    assert "exists; pass --force" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert run(collage_dir, out, "--force", "--epochs", "1") == 0
    assert load_checkpoint(out).record.epoch == 1


def test_cli_loss_options_reach_the_loss_and_the_checkpoint(collage_dir, tmp_path):
    out = tmp_path / "m.pth"
    argv = [*SMALL, "--data-dir", str(collage_dir), "--out", str(out), "--epochs", "1", "--iou-threshold", "0.5",
            "--match-on", "predictions", "--loss", "focal", "--focal-alpha", "0.5", "--focal-gamma", "2"]
    assert train_main(argv) == 0
    record = load_checkpoint(out).record
    assert record.loss_options == LossOptions(match_on="predictions", iou_threshold=0.5, classification="focal",
                                              focal_alpha=0.5, focal_gamma=2.0)  # the rest: lesson_code()'s
    assert record.loss_options.regression_reduction == LossOptions.lesson_code().regression_reduction == "mean"
    assert record.command == full_command(_parse(argv)) and record.seed == 0  # every option spelled out
    assert ("--focal-gamma 2.0 --regression mean --match-inclusive False --box-coding tanh_corners --box-loss l1 "
            "--smooth-l1-beta 1.0 --normalization per_image --seed 0") in record.command  # --neg-pos-ratio: None, left out
    assert record.loss_options.focal_gamma == 2.0
    assert record.data == TrainingData("collage", str(collage_dir / "collage-n20-seed0"), 20, 16, 4, "all")
    assert record.init is None and record.note is None


def test_cli_augment_reaches_the_training_images_and_the_record(collage_dir, tmp_path, monkeypatch, capsys):
    """--augment ssd trains (an image the crop leaves without objects included) and its command says so;
    left out, the lesson's flip: the option the shipped checkpoints' commands, which predate it, ran with."""
    import shlex

    from ssd_lesson.data import images

    used, real = [], images.make_dataloaders
    monkeypatch.setattr(images, "make_dataloaders", lambda *a, **k: used.append(k["augment"]) or real(*a, **k))
    out = tmp_path / "m.pth"
    assert run(collage_dir, out, "--epochs", "1", "--augment", "ssd") == 0
    command = load_checkpoint(out).record.command
    assert used == ["ssd"] and " --augment ssd " in command and _parse(shlex.split(command)[4:]).augment == "ssd"
    assert _parse([]).augment == "flip" and " --augment flip " in full_command(_parse([]))
    with pytest.raises(SystemExit) as exit_:
        _parse(["--augment", "crop"])
    assert exit_.value.code == 2 and "argument --augment: invalid choice: 'crop'" in capsys.readouterr().err


def test_ctrl_c_keeps_last_finished_epoch(collage_dir, tmp_path, monkeypatch, capsys):
    from ssd_lesson.model import train

    def interrupt_in_second_epoch(self):
        if self.epoch == 1 and self.training:
            raise KeyboardInterrupt
    monkeypatch.setattr(train.BatchLosses, "after_batch", interrupt_in_second_epoch)
    out = tmp_path / "m.pth"
    assert run(collage_dir, out) == 130
    assert "interrupted: the checkpoint of the last finished epoch (1) is" in capsys.readouterr().err
    assert load_checkpoint(out).record.epoch == 1
    assert not out.with_name(out.name + ".tmp").exists()


def test_empty_valid_split_is_reported(tmp_path, monkeypatch, capsys):
    from ssd_lesson.data import collage

    monkeypatch.setattr(collage, "collage_records", lambda n, seed, root, **kw: (["a record"], [], Path(root)))
    assert train_main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "m.pth")]) == 2
    assert "the valid split is empty" in capsys.readouterr().err
