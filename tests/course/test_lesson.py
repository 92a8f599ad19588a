"""The starting kit (``ssd_lesson.course.lesson``): what every notebook opens with, and where temporary work goes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from ssd_lesson import IOU_THRESHOLD, PAD_LABEL, LossOptions, make_anchors, ssd_loss
from ssd_lesson.course import held_out as H
from ssd_lesson.course import lesson as K
from ssd_lesson.model import checkpoint
from ssd_lesson.model.checkpoint import CheckpointRecord, InitCheckpoint, TrainingData, save_checkpoint
from ssd_lesson.model.net import create_ssd_model

# Not the unit tier: most of the starting kit's tests load the lesson's model (fastai's body).
pytestmark = pytest.mark.fastai


@pytest.fixture
def out_dir(tmp_path, monkeypatch):
    """Point the project's output folder at a fresh folder for the test."""
    monkeypatch.setenv(K.OUT_ENV_VAR, str(tmp_path / "out"))
    return tmp_path / "out"


def test_start_lesson_gives_the_example_anchors_and_activations(capsys):
    ex, anchors, class_logits, box_actns, gt_boxes, gt_labels = K.start_lesson(checkpoint=False)
    said = capsys.readouterr().out.splitlines()
    assert said[0] == ex.source and said[0].startswith("Using ")
    assert said[1] == "Activations: seeded random (torch.randn * 1, seed 0); checkpoint=False"
    assert len(anchors) == 189
    assert class_logits.shape == (1, 189, 21) and box_actns.shape == (1, 189, 4)
    torch.testing.assert_close(gt_boxes[0], torch.from_numpy(ex.boxes))
    assert gt_labels[0].tolist() == ex.labels.tolist()
    assert not class_logits.requires_grad


def test_start_lesson_equals_the_pieces_it_is_made_of():
    lesson = K.start_lesson(checkpoint=None, verbose=False)
    ex = K.load_example()
    cl, ba, source = K.example_activations(ex, make_anchors(), checkpoint=None, verbose=False)
    assert "the trained model in data/checkpoints/ssd_collage.pth" in source  # no machine path
    torch.testing.assert_close(lesson.class_logits, cl, rtol=0, atol=0)
    torch.testing.assert_close(lesson.box_actns, ba, rtol=0, atol=0)
    # the checkpoint's activations give the numbers the article's walk-through prints
    res = lesson.loss()
    assert round(float(res.classification[0]), 4) == 1.5416 and round(float(res.total), 4) == 1.6119


def test_start_lesson_requires_grad_gives_leaves_that_backward_fills():
    lesson = K.start_lesson(requires_grad=True, checkpoint=False, verbose=False)
    assert lesson.class_logits.is_leaf and lesson.class_logits.requires_grad
    lesson.loss().total.backward()
    assert lesson.class_logits.grad.shape == (1, 189, 21) and lesson.box_actns.grad.abs().sum() > 0


def test_the_loss_records_its_options_and_labels():
    lesson = K.start_lesson(checkpoint=False, verbose=False)
    res = lesson.loss(match_on="anchors", iou_threshold=0.5, regression_reduction="sum")
    assert res.options == LossOptions(match_on="anchors", iou_threshold=0.5, regression_reduction="sum")
    assert torch.equal(res.gt_labels, lesson.gt_labels)
    same = ssd_loss(*lesson[2:], lesson.anchors, options=res.options)
    assert torch.equal(same.total, res.total)
    assert LossOptions().iou_threshold == IOU_THRESHOLD == 0.4 and PAD_LABEL == -1


@pytest.mark.parametrize("bad, word", [(dict(match_on="boxes"), "match_on"), (dict(iou_threshold=2.5), "iou_threshold"),
                                       (dict(classification="ce"), "classification"),
                                       (dict(regression_reduction="max"), "regression_reduction")])
def test_loss_options_refuse_what_they_do_not_know(bad, word):
    with pytest.raises(ValueError, match=word):
        LossOptions(**bad)


def test_output_and_cache_folders_follow_the_environment_variable(out_dir):
    assert K.output_dir() == out_dir and K.cache_dir() == out_dir / "cache"


def test_output_folder_defaults_to_the_checkout():
    os.environ.pop(K.OUT_ENV_VAR, None)
    assert K.output_dir() == Path(K.__file__).resolve().parents[2] / "ssd_lesson_out"


def test_lesson_records_make_the_collage_once_in_the_cache(out_dir, monkeypatch, capsys):
    monkeypatch.setattr(K, "COLLAGE_IMAGES", 10)
    monkeypatch.setenv("SSD_LESSON_VOC", str(out_dir / "no_voc_here"))
    before = set(os.listdir(tempfile.gettempdir()))
    train, valid = K.lesson_records()
    line = capsys.readouterr().out.strip()
    assert line == f"VOC not found: using the offline collage set (10 images, seed 0): {len(train)} train / {len(valid)} valid images"
    assert len(train) + len(valid) == 10 and valid
    assert all(out_dir / "cache" in r.image_path.parents for r in train + valid)
    made = (out_dir / "cache" / "collage-n10-seed0" / "ImageSets" / "Main" / "trainval.txt").stat().st_mtime
    again_train, again_valid = K.lesson_records(verbose=False)
    assert [r.image_id for r in again_valid] == [r.image_id for r in valid]
    assert (out_dir / "cache" / "collage-n10-seed0" / "ImageSets" / "Main" / "trainval.txt").stat().st_mtime == made
    assert set(os.listdir(tempfile.gettempdir())) <= before  # nothing left in /tmp


def test_held_out_records_use_the_seed_the_model_was_trained_with(out_dir, monkeypatch):
    monkeypatch.setattr(K, "COLLAGE_IMAGES", 10)
    monkeypatch.setenv("SSD_LESSON_VOC", str(out_dir / "no_voc_here"))
    model = create_ssd_model(**K.SHORT_MODEL)
    model.record = CheckpointRecord(data=TrainingData("collage", "runs/collage-n1000-seed3", 1000), seed=3)
    valid = H.held_out_records(model, verbose=False)
    assert valid and all("collage-n10-seed3" in str(r.image_path) for r in valid)
    model.record = CheckpointRecord()  # a checkpoint that records no data: the default seed, 0
    assert all("collage-n10-seed0" in str(r.image_path) for r in H.held_out_records(model, verbose=False))


def test_held_out_records_say_what_the_map_measures(out_dir, monkeypatch):
    from ssd_lesson.data.collage import HELD_OUT_PHOTOS, photo_set

    monkeypatch.setattr(K, "COLLAGE_IMAGES", 10)
    monkeypatch.setenv("SSD_LESSON_VOC", str(out_dir / "no_voc_here"))
    model = create_ssd_model(**K.SHORT_MODEL)
    model.record = CheckpointRecord(data=TrainingData("collage", "runs/collage-n1000-seed0", 1000, photos="train"), seed=0)
    assert H.photos_seen(model) == photo_set("train")
    records, line = H._held_out_collages(model, 40)
    assert len(records) == 10 and all("collage-n10-seed0-held_out-photos" in str(r.image_path) for r in records)
    assert line.startswith(f"VOC not found: held-out images are 10 collages of photos kept out of its training "
                           f"({', '.join(HELD_OUT_PHOTOS)}); ")
    assert line.endswith(f"{sum(len(r.labels) for r in records)} objects of the classes motorbike, person")
    # a model that started from one trained on every photo has seen them all: nothing is held out
    model.record = model.record.replace(init=InitCheckpoint("base.pth", "0" * 64, CheckpointRecord(
        command="...", data=TrainingData("collage", photos="all"))))
    assert H.photos_seen(model) == photo_set("all")
    records, line = H._held_out_collages(model, 40)
    assert "validation collages (seed 0): new arrangements" in line and "no photograph is held out" in line
    assert all("collage-n10-seed0" in str(r.image_path) and "photos" not in str(r.image_path) for r in records)


def test_lesson_model_prefers_the_shipped_checkpoint_then_the_short_model(out_dir, monkeypatch, capsys):
    model = H.lesson_model()
    assert capsys.readouterr().out.strip() == "model: the trained checkpoint data/checkpoints/ssd_collage.pth"
    assert model.body_name == "tiny"
    monkeypatch.setattr(checkpoint, "CHECKPOINT_DIR", out_dir / "no_checkpoints")
    H.lesson_model()
    assert "an untrained model" in capsys.readouterr().out
    short = create_ssd_model(**K.SHORT_MODEL)
    path = K.save_short_model(short)
    assert path.parent == out_dir / "cache"
    got = H.lesson_model()
    assert "the 2-epoch model notebook 9 saved" in capsys.readouterr().out
    torch.testing.assert_close(got.state_dict()["head.outs.0.boxes.bias"], short.state_dict()["head.outs.0.boxes.bias"])


def test_checkpoint_summary_names_file_command_and_numbers(tmp_path):
    model = create_ssd_model(**K.SHORT_MODEL)
    record = CheckpointRecord(command="python -m ssd_lesson train", loss_options=LossOptions.lesson_code(),
                              metrics={"mAP50": 0.5})
    path = save_checkpoint(model, tmp_path / "m.pth", record=record)
    lines = H.checkpoint_summary(checkpoint.load_checkpoint(path)).splitlines()  # the record knows its path
    assert lines == [f"trained checkpoint: {path} (tiny body)", "made with: python -m ssd_lesson train",
                     "its loss: match on anchors, IoU > 0.4, BCE, L1 averaged", "its validation numbers: mAP50 0.5000"]
    assert H.checkpoint_summary(model) == "a tiny model not loaded from a checkpoint (nothing recorded)"


def test_voc_status_offline_names_the_three_places_and_what_each_held(monkeypatch, tmp_path):
    monkeypatch.setenv("SSD_LESSON_VOC", str(tmp_path / "nowhere"))
    said = K.voc_status().splitlines()
    assert said[0].startswith("Pascal VOC 2007 was not found") and len(said) == 5
    assert said[1].endswith("none passed here")
    assert said[2] == f"  2. the environment variable SSD_LESSON_VOC: {tmp_path / 'nowhere'}, which does not hold it"
    assert said[3].endswith("not looked at: the environment variable comes first")  # find_voc takes the first given
    assert "README.md" in said[4]
    monkeypatch.delenv("SSD_LESSON_VOC")
    said = K.voc_status().splitlines()
    if said[0].startswith("Pascal VOC 2007 found"):
        pytest.skip("Pascal VOC 2007 is in fastai's data folder on this machine")
    assert said[2].endswith("SSD_LESSON_VOC: not set")
    assert said[3].startswith("  3. fastai's data folder: ") and said[3].endswith("pascal_2007, which does not hold it")


def test_memory_table_sets_trained_photos_beside_kept_out_ones(out_dir, monkeypatch):
    from ssd_lesson.data.collage import photo_set

    monkeypatch.setattr(K, "COLLAGE_IMAGES", 10)
    model = create_ssd_model(**K.SHORT_MODEL)
    model.record = CheckpointRecord(data=TrainingData("collage", "runs/x", 1000, photos="all"), seed=0)
    with pytest.raises(ValueError, match="no photograph was kept out of this model's training"):
        H.memory_table(model)
    model.record = CheckpointRecord(data=TrainingData("collage", "runs/x", 1000, photos="train"), seed=0)
    seen, line = H.seen_photo_records(model)
    assert len(seen) == 2 and all("collage-n10-seed0-train-photos" in str(r.image_path) for r in seen)
    assert line == f"2 validation collages of photos it trained on ({', '.join(photo_set('train'))})"
    table = H.memory_table(model, n_valid=4)
    assert list(table.columns) == ["trained photos", "kept-out photos"] and table.index[-1] == "mean"
    assert set(table.index[:-1]) <= {"person", "motorbike"}  # the classes both sets hold
    torch.testing.assert_close(torch.tensor(table.iloc[-1].tolist()), torch.tensor(table.iloc[:-1].mean().tolist()))
