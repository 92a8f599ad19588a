"""The notebooks' exercises: the checker marks a right answer right and a wrong one wrong, never prints
the answer, and every exercise a notebook asks is one the checker knows, with the context the notebook passes."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from ssd_lesson import box_iou, ssd_loss
from ssd_lesson.drawing import tables
from ssd_lesson.course.exercises import EXERCISES, check, solve
from ssd_lesson.course.lesson import start_lesson

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(scope="module")
def contexts():
    ex, anchors, cl, ba, gb, gl = start_lesson(verbose=False)
    res = ssd_loss(cl, ba, gb, gl, anchors)
    by_anchors = ssd_loss(cl, ba, gb, gl, anchors, match_on="anchors")
    shares = tables.box_class_losses(cl, res)
    return {
        "01.objects": dict(ex=ex), "01.pixels": dict(ex=ex),
        "02.count_2x2": dict(anchors=anchors), "02.first_1x1": dict(anchors=anchors),
        "03.decode_y0": dict(box_actns=ba, anchors=anchors, index=0), "03.max_height": dict(anchors=anchors, index=0),
        "04.iou": dict(result=res, box=9, gt=1), "04.zero_rows": dict(result=res),
        "05.positives_at_0.5": dict(result=res, threshold=0.5), "05.forced": dict(result=res),
        "06.bce_zero": dict(x=-2.0), "06.background_share": dict(shares=shares),
        "07.n_positive": dict(result=res), "07.mae": dict(result=res),
        "08.grad_size": dict(result=res), "08.pushed_up": dict(result=res),
        "09.batches": dict(n_images=160, bs=16), "09.lr": dict(peak=3e-3),
        "10.after_nms": dict(class_logits=cl, box_actns=ba, anchors=anchors), "10.iou_for_match": dict(),
        "11.both": dict(by_predictions=res, by_anchors=by_anchors), "11.lower": dict(by_predictions=res, by_anchors=by_anchors),
    }


def test_every_exercise_has_a_context(contexts):
    assert set(contexts) == set(EXERCISES)


def test_the_answers_are_what_the_library_computes(contexts):
    """Independent computations of a few answers, the way a learner would do them."""
    ex, anchors = contexts["01.objects"]["ex"], contexts["02.count_2x2"]["anchors"]
    res = contexts["04.iou"]["result"]
    assert solve("01.objects", ex=ex) == 4
    assert solve("02.count_2x2", anchors=anchors) == 2 * 2 * 9 and solve("02.first_1x1", anchors=anchors) == 16 * 9 + 4 * 9
    ba = contexts["03.decode_y0"]["box_actns"]
    t = torch.tanh(ba[0, 0])
    cy, _, h, _ = anchors.centers_hw[0].tolist()
    by_hand = cy + float(t[0]) / 2 * 0.25 - h * (1 + float(t[2]) / 2) / 2
    assert solve("03.decode_y0", box_actns=ba, anchors=anchors, index=0) == pytest.approx(by_hand, abs=1e-6)
    p, q = res.pred_boxes[0, 9].detach(), ex.batch()[1][0, 1]
    assert solve("04.iou", result=res, box=9, gt=1) == pytest.approx(float(box_iou(p[None], q[None])), abs=1e-6)
    assert solve("06.bce_zero", x=-2.0) == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-12)
    n = int(res.match.positive.sum())
    assert solve("07.n_positive", result=res) == n and solve("08.pushed_up", result=res) == n
    assert solve("08.grad_size", result=res) == pytest.approx(1 / (4 * n))
    assert solve("05.positives_at_0.5", result=ssd_loss(*[contexts["10.after_nms"][k] for k in ("class_logits", "box_actns")],
                                                          *ex.batch()[1:], anchors), threshold=0.5) == \
        int(ssd_loss(contexts["10.after_nms"]["class_logits"], ba, *ex.batch()[1:], anchors, iou_threshold=0.5).match.positive.sum())
    assert solve("11.lower", **contexts["11.both"]) == "anchors"  # classification 2.6513 < 3.0819 on the shipped checkpoint
    assert solve("09.batches", n_images=160, bs=16) == 10


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_checker_marks_right_wrong_and_unanswered(name, contexts, capsys):
    ctx = contexts[name]
    right = solve(name, **ctx)
    wrong = "predictions" if right == "anchors" else (right + 1 if isinstance(right, int) else right * 1.5 + 0.1)
    assert check(name, None, **ctx) is False
    assert capsys.readouterr().out.startswith(f"{name}: not answered yet. Hint: ")
    assert check(name, wrong, **ctx) is False
    said_wrong = capsys.readouterr().out
    assert said_wrong.startswith(f"{name}: not quite. Hint: ")
    assert check(name, right, **ctx) is True
    said_right = capsys.readouterr().out
    assert said_right.startswith(f"{name}: right: ")
    if not isinstance(right, str):  # the checker never gives the answer away
        for text in (said_wrong, said_right):
            for shown in (f"{right:.4f}", f"{right:.3f}", f"{right:g}") if isinstance(right, float) else (f" {right} ",):
                assert shown not in text, text


def test_unknown_exercise_names_the_known_ones():
    with pytest.raises(KeyError, match="01.objects"):
        check("99.nothing", 1)


def test_notebook_exercises_are_known_and_unanswered():
    asked = []
    for path in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        cells = [c for c in nb["cells"] if any(t.startswith("exercise-") for t in c["metadata"].get("tags", []))]
        assert len(cells) >= 2, f"{path.name} has {len(cells)} exercises"
        for c in cells:
            src = "".join(c["source"])
            (name,) = re.findall(r'check\("([^"]+)"', src)
            assert name in EXERCISES and "answer = None" in src
            out = "".join("".join(o.get("text", "")) for o in c["outputs"])
            assert out.startswith(f"{name}: not answered yet. Hint: "), (path.name, out)
            asked.append(name)
    assert sorted(asked) == sorted(EXERCISES)
