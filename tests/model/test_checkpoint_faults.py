"""Checkpoints that cannot be read back are refused when saved, and files that are not checkpoints are named
for what they are: a pickle that would run code, a record of the wrong type."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ssd_lesson.model.checkpoint import load_checkpoint, plain, save_checkpoint
from ssd_lesson.model.net import create_ssd_model
from ssd_lesson.model.record import CheckpointRecord, TrainingData


@pytest.fixture(scope="module")
def model():
    return create_ssd_model("tiny", pretrained=False, n_hidden=16)


def test_numpy_numbers_and_paths_in_the_record_are_saved_as_plain_values(model, tmp_path):
    record = CheckpointRecord(command="python -m ssd_lesson train", seed=np.int64(3),
                              data=TrainingData("collage", Path("runs/set"), np.int64(40), n_train=np.int32(32),
                                                n_valid=8, photos="train"),
                              metrics={"mAP50": np.float32(0.5)})
    path = save_checkpoint(model, tmp_path / "m.pth", record=record)
    back = load_checkpoint(path).record  # weights_only=True reads it back
    assert back.seed == 3 and type(back.seed) is int
    assert back.data.folder == "runs/set" and back.data.n_images == 40 and back.metrics == {"mAP50": 0.5}


def test_an_object_a_checkpoint_cannot_hold_is_refused_at_save_time_naming_where(model, tmp_path):
    class Odd(CheckpointRecord):  # a record some code of a learner's filled with an object
        def to_dict(self):
            return {**super().to_dict(), "note": object()}

    record = Odd(command="x")
    with pytest.raises(TypeError, match=r"^record\.note: a builtins\.object"):
        save_checkpoint(model, tmp_path / "m.pth", record=record)
    assert not (tmp_path / "m.pth").exists()
    assert plain({"a": (1, np.int16(2)), "b": [Path("p")]}, "x") == {"a": (1, 2), "b": ["p"]}
    with pytest.raises(TypeError, match=r"x: a key 3"):
        plain({3: 1}, "x")


class RunsACommand:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_pickle_that_would_run_code_is_refused_as_such(tmp_path, capfd, how):
    path = tmp_path / "evil.pth"
    if how == "torch.save":
        torch.save({"format": "ssd_lesson.checkpoint/2", "x": RunsACommand()}, path)
    else:
        path.write_bytes(pickle.dumps(RunsACommand(), protocol=2))
    with pytest.raises(ValueError, match="refused: it holds Python objects beyond tensors and plain values"):
        load_checkpoint(path)
    assert "this must never run" not in capfd.readouterr().out


@pytest.mark.parametrize("part, value, said", [
    ("record", ["not", "a", "dict"], "the checkpoint's record is malformed"),
    ("model", {"body": "tiny", "size": "224"}, "the checkpoint's model configuration is malformed"),
    ("model", [1, 2], "the checkpoint's model configuration is malformed"),
])
def test_a_record_or_configuration_of_the_wrong_type_is_one_clear_error(model, tmp_path, part, value, said):
    good = save_checkpoint(model, tmp_path / "good.pth")
    ckpt = torch.load(good, weights_only=True)
    ckpt[part] = value
    bad = tmp_path / "bad.pth"
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match=rf"^{bad}: {said} \("):
        load_checkpoint(bad)
