"""A checkpoint trained for other classes (another count, or the 20 VOC classes in another order) is refused by
``evaluate`` before any work, naming the file: its outputs would be paired with the data's classes by position."""
from __future__ import annotations

import pytest

from ssd_lesson.data.voc import VOC_CLASSES
from ssd_lesson.model.checkpoint import check_classes, save_checkpoint
from ssd_lesson.model.net import create_ssd_model
from tests.in_process import run_main

SWAPPED = ("bicycle", "aeroplane", *VOC_CLASSES[2:])


def test_check_classes_compares_names_in_order():
    check_classes(VOC_CLASSES, VOC_CLASSES, "m.pth")  # the same: nothing to say
    with pytest.raises(ValueError, match=r"^m\.pth: the checkpoint has 21 classes, the data 20 \(aeroplane, bicycle, bird, \.\.\.\)"):
        check_classes((*VOC_CLASSES, "giraffe"), VOC_CLASSES, "m.pth")
    with pytest.raises(ValueError, match=r"^m\.pth: the checkpoint has the data's 20 classes in another order \(its class 0 "
                                         r"is 'bicycle', the data's is 'aeroplane'\)"):
        check_classes(SWAPPED, VOC_CLASSES, "m.pth")
    with pytest.raises(ValueError, match=r"^m\.pth: the checkpoint's classes are not the data's: it has \['giraffe'\] "
                                         r"where the data has \['tvmonitor'\]"):
        check_classes((*VOC_CLASSES[:-1], "giraffe"), VOC_CLASSES, "m.pth")


@pytest.mark.parametrize("names, says", [
    ((*VOC_CLASSES, "giraffe"), "the checkpoint has 21 classes, the data 20"),
    (SWAPPED, "the checkpoint has the data's 20 classes in another order"),
], ids=["21-classes", "reordered"])
@pytest.mark.fastai  # builds a model (fastai's body)
def test_evaluate_refuses_a_checkpoint_for_other_classes_before_any_work(tmp_path, names, says):
    """``python -m ssd_lesson evaluate``, run in this process (tests/in_process.py)."""
    model = create_ssd_model("tiny", pretrained=False, n_hidden=16, n_classes=len(names), class_names=names)
    ckpt = save_checkpoint(model, tmp_path / "other_classes.pth")
    runs = tmp_path / "runs"
    r = run_main("evaluate", "--checkpoint", ckpt, "--data-dir", runs, "--n-images", "10", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith(f"error: {ckpt}: {says}") and r.stdout == ""
    assert not runs.exists()  # refused before the collage set was made or anything ran
