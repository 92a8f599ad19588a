"""``train --spec ssd300``: SSD300 on 300 pixel images with the SSD paper's loss as the loss options' defaults, a loss
flag given winning over them, the whole command recorded; and a short run whose checkpoint evaluate and predict read."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch

from ssd_lesson import LossOptions
from ssd_lesson.commands.option_flags import loss_options_from
from ssd_lesson.commands.train import LOSS_PRESETS, _parse, full_command, train_main
from ssd_lesson.model import HEADS

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["--spec", "ssd300", "--data", "collage", "--n-images", "6", "--epochs", "1", "--body", "tiny", "--n-hidden", "16",
         "--bs", "2"]


def test_each_spec_has_its_loss_preset():
    assert tuple(LOSS_PRESETS) == HEADS  # --spec names the head: train --init checks the checkpoint's against it
    assert loss_options_from(_parse([])) == LossOptions.training() == loss_options_from(_parse(["--spec", "lesson"]))
    paper = loss_options_from(_parse(["--spec", "ssd300"]))
    assert paper == LossOptions.ssd_paper()
    assert (paper.classification, paper.neg_pos_ratio, paper.box_coding, paper.iou_threshold) == ("softmax", 3.0,
                                                                                                   "log_offsets", 0.5)


@pytest.mark.parametrize("flags, changes", [
    (["--loss", "bce"], dict(classification="bce")),
    (["--iou-threshold", "0.4", "--match-inclusive", "no"], dict(iou_threshold=0.4, match_inclusive=False)),  # the lesson's
    (["--neg-pos-ratio", "0", "--box-coding", "tanh_corners"], dict(neg_pos_ratio=None, box_coding="tanh_corners")),
])
def test_a_loss_flag_given_wins_over_the_preset_even_at_the_other_preset_s_value(flags, changes):
    assert loss_options_from(_parse(["--spec", "ssd300", *flags])) == LossOptions.ssd_paper().replace(**changes)
    assert loss_options_from(_parse([*flags, "--spec", "lesson"])) == LossOptions.training().replace(**changes)


def test_the_recorded_command_spells_out_the_spec_and_its_loss_options():
    args = _parse(["--spec", "ssd300", "--loss", "focal"])
    cmd = full_command(args)
    assert (" --spec ssd300 --match-on anchors --iou-threshold 0.5 --loss focal --focal-alpha 0.25 --focal-gamma 1.0 "
            "--regression mean --match-inclusive True --neg-pos-ratio 3.0 --box-coding log_offsets --box-loss smooth_l1 "
            "--smooth-l1-beta 1.0 --normalization batch_positives ") in cmd
    again = _parse(shlex.split(cmd)[4:])
    assert vars(again) == vars(args)
    assert loss_options_from(again) == LossOptions.ssd_paper().replace(classification="focal")


@pytest.mark.fastai  # reads the checkpoint into a model (fastai's body)
def test_init_from_a_lesson_checkpoint_is_refused_for_ssd300(tmp_path):
    base = ROOT / "data" / "checkpoints" / "base" / "ssd_collage_anchors.pth"
    argv = ["--spec", "ssd300", "--body", "tiny", "--n-hidden", "128", "--init", str(base), "--data-dir", str(tmp_path),
            "--out", str(tmp_path / "m.pth")]
    with pytest.raises(ValueError, match=r"ssd_collage_anchors.pth: the checkpoint has the lesson head, not the "
                                         r"requested --spec ssd300's"):
        train_main(argv)
    assert not (tmp_path / "m.pth").exists()


@pytest.mark.slow  # trains an epoch and evaluates (fastai, 300 pixel images)
def test_ssd300_trains_and_its_checkpoint_evaluates_and_predicts(tmp_path, capsys):
    from ssd_lesson.commands.evaluate import evaluate_main
    from ssd_lesson.model.checkpoint import load_checkpoint
    from ssd_lesson.model.infer import predict

    out = tmp_path / "ssd300.pth"
    assert train_main([*SHORT, "--data-dir", str(tmp_path), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "SSD300, 300 px images" in said and "loss: match on anchors, IoU >= 0.5, softmax cross-entropy, 3 hard " \
                                               "negatives per positive" in said
    model = load_checkpoint(out)
    record = model.record
    assert (model.config.head, model.size, model.spec.n_anchors, model.body_name) == ("ssd300", 300, 8732, "tiny")
    assert record.loss_options == LossOptions.ssd_paper() and record.epoch == 1
    assert (record.decode_options.coding, record.decode_options.class_scores) == ("log_offsets", "softmax")
    assert " --spec ssd300 " in record.command and {"valid_loss", "mAP50"} <= set(record.metrics)
    assert evaluate_main(["--checkpoint", str(out), "--data-dir", str(tmp_path), "--score-threshold", "0.0"]) == 0
    table = capsys.readouterr().out
    assert "trained with the loss: match on anchors, IoU >= 0.5, softmax" in table and "mean" in table
    image = torch.randint(0, 256, (3, 120, 90), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    (det,) = predict(model, image, score_threshold=0.0, max_per_image=5)
    assert len(det.boxes) == 5 and det.boxes[:, 2].max() <= 120 and det.boxes[:, 3].max() <= 90
    assert torch.all(det.scores <= 1) and det.scores.sum() < 5  # softmax with background: below 1 each
