"""The checkpoint's record: each fact once, read back whole (a chain of --init starts included), the older
layout of the shipped checkpoints read into the same record, and the photographs seen / kept out asked of it."""
from __future__ import annotations

import pytest

from ssd_lesson import DecodeOptions, LossOptions
from ssd_lesson.data.collage import HELD_OUT_PHOTOS, photo_set
from ssd_lesson.model.record import CheckpointRecord, InitCheckpoint, TrainingData


def collage_run(photos: str, init: InitCheckpoint | None = None, command: str = "python -m ssd_lesson train") -> CheckpointRecord:
    return CheckpointRecord(command=command, loss_options=LossOptions.lesson_code(),
                            data=TrainingData("collage", "runs/set", 20, 16, 4, photos=photos), seed=3, epoch=1, init=init)


def start(record: CheckpointRecord, path: str = "base.pth") -> InitCheckpoint:
    return InitCheckpoint(path, "ab" * 32, record)


def test_the_record_round_trips_through_plain_values_with_its_chain_of_starts():
    first = CheckpointRecord(command="python -m ssd_lesson train --data voc", data=TrainingData("voc", "VOC2007", None, 2501, 2510),
                             seed=0, decode_options=DecodeOptions(score_threshold=0.1), metrics={"mAP50": 0.5})
    record = collage_run("train", start(collage_run("all", start(first, "first.pth"))))
    plain = record.to_dict()
    assert set(plain) == {"command", "loss_options", "decode_options", "data", "seed", "epoch", "metrics", "init", "note"}
    assert "seed" not in plain["data"] and plain["init"]["record"]["init"]["path"] == "first.pth"
    assert CheckpointRecord.from_dict(plain) == record
    assert record.init.command == "python -m ssd_lesson train" and record.init.record.init.record == first


def test_the_older_layout_reads_into_the_same_record():
    """The shipped checkpoints' layout: the parsed options beside the command, the collage seed beside the seed,
    of the start only its command and photographs."""
    older = dict(command="python -m ssd_lesson train --photos train --seed 5", loss_options=LossOptions.article().to_dict(),
                 decode_options=DecodeOptions().to_dict(),
                 data=dict(kind="collage", folder="runs/x", n_images=30, seed=5, n_train=24, n_valid=6, photos="train"),
                 seed=5, epoch=2, metrics={"mAP50": 0.25}, options={"photos": "train", "seed": 5, "force": True},
                 init=dict(path="base.pth", sha256="0" * 64, command="python -m ssd_lesson train --epochs 9", photos="all"),
                 note=None)
    record = CheckpointRecord.read(older, older_layout=True)
    assert record == CheckpointRecord(
        command=older["command"], loss_options=LossOptions.article(), data=TrainingData("collage", "runs/x", 30, 24, 6, "train"),
        seed=5, epoch=2, metrics={"mAP50": 0.25},
        init=InitCheckpoint("base.pth", "0" * 64, CheckpointRecord(command="python -m ssd_lesson train --epochs 9",
                                                                    data=TrainingData("collage", photos="all"))))
    assert record.collage_seed() == 5 and record.photos_seen() == photo_set("all") and record.photos_kept_out() == ()
    unknown_start = CheckpointRecord.read({**older, "init": {**older["init"], "photos": None}}, older_layout=True)
    assert unknown_start.init.record.data is None and unknown_start.photos_kept_out() == ()  # unknown: counted as all
    with pytest.raises(TypeError, match="seed"):  # the older layout is not the newer one: its collage seed is refused
        CheckpointRecord.read({**older, "init": None}, older_layout=False)


@pytest.mark.parametrize("chain, seen, kept_out", [
    (["train"], photo_set("train"), HELD_OUT_PHOTOS),
    (["all"], photo_set("all"), ()),
    (["train", "train"], photo_set("train"), HELD_OUT_PHOTOS),  # --photos train all the way down
    (["train", "all"], photo_set("all"), ()),  # the companion issue's case: its start saw every photograph
    (["train", "train", "all"], photo_set("all"), ()),  # two starts down
    (["train", None], photo_set("all"), ()),  # a start whose record says nothing: counted as every photograph
    (["train", "voc"], photo_set("all"), ()),  # a start trained on VOC: not known to have missed them
], ids=["train", "all", "train-from-train", "train-from-all", "train-from-train-from-all", "from-unknown", "from-voc"])
def test_photos_seen_count_the_whole_chain_of_starts(chain, seen, kept_out):
    below = None
    for photos in reversed(chain):
        if photos is None:
            record = CheckpointRecord()
        elif photos == "voc":
            record = CheckpointRecord(data=TrainingData("voc", "VOC2007"))
        else:
            record = collage_run(photos, below)
        below = start(record)
    assert record.photos_seen() == seen and record.photos_kept_out() == kept_out
    assert record.collage_seed() == 3 and record.trained_on_collages()


def test_a_record_not_trained_on_collages_sees_no_collage_photographs():
    for record in (CheckpointRecord(), CheckpointRecord(data=TrainingData("voc", "VOC2007"), seed=4)):
        assert record.photos_seen() is None and record.photos_kept_out() == () and record.collage_seed() is None
    with pytest.raises(ValueError, match="kind must be 'collage' or 'voc', got 'coco'"):
        TrainingData("coco")


def test_voc_sets_are_recorded_and_a_record_from_before_them_reads_as_the_2007_split():
    union = TrainingData("voc", "/d/VOC2007:/d/VOC2012", None, 16551, 4952, None, ("2007-trainval", "2012-trainval"),
                         "2007-test")
    record = CheckpointRecord(command="python -m ssd_lesson train --data voc --train-sets 2007-trainval,2012-trainval",
                              data=union)
    plain = record.to_dict()
    assert plain["data"]["train_sets"] == ("2007-trainval", "2012-trainval") and plain["data"]["valid_set"] == "2007-test"
    assert CheckpointRecord.from_dict(plain) == record
    listed = {**plain["data"], "train_sets": ["2007-trainval", "2012-trainval"]}  # a list (read back from json) too
    assert CheckpointRecord.from_dict({**plain, "data": listed}).data == union
    # recorded before the sets could be chosen: train read VOC 2007's train and val splits, then as now by default
    before = dict(kind="voc", folder="VOC2007", n_images=None, n_train=2501, n_valid=2510, photos=None)
    old = CheckpointRecord.from_dict({"command": "python -m ssd_lesson train --data voc", "data": before})
    assert (old.data.train_sets, old.data.valid_set, old.data.n_train, old.data.folder) == (("2007-train",), "2007-val",
                                                                                           2501, "VOC2007")
    older = CheckpointRecord.read({"command": "python -m ssd_lesson train --data voc", "data": before}, older_layout=True)
    assert older.data == old.data
    collage = TrainingData("collage", "runs/set", 20, 16, 4)
    assert (collage.train_sets, collage.valid_set) == (None, None)
