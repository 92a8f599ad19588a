"""The notebooks' exercises: the checker marks a right answer right and a wrong one wrong, never prints
the answer, and every exercise a notebook asks is one the checker knows, with the context the notebook passes."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ssd_lesson import FORCED_OVERLAP, box_iou, ssd_loss
from ssd_lesson.drawing import tables
from ssd_lesson.course.exercises import EXERCISES, check, solve
from ssd_lesson.course.exercises.questions import _same
from ssd_lesson.course.lesson import start_lesson
from ssd_lesson.course.paper_steps import paper_steps_options

# Not the unit tier: the exercises' answers are computed from the lesson's model, which builds fastai's body.
pytestmark = pytest.mark.fastai

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def contexts():
    ex, anchors, cl, ba, gb, gl = start_lesson(verbose=False)
    res = ssd_loss(cl, ba, gb, gl, anchors)
    by_anchors = ssd_loss(cl, ba, gb, gl, anchors, match_on="anchors")
    mined = ssd_loss(cl, ba, gb, gl, anchors, options=paper_steps_options()[3][1])  # notebook 12: softmax, 3 per positive
    article = ssd_loss(cl, ba, gb, gl, anchors, regression_reduction="sum")  # notebook 08's summed regression
    lesson_code = ssd_loss(cl, ba, gb, gl, anchors, options=paper_steps_options()[0][1])  # notebook 12's first row
    shares = tables.box_class_losses(cl, res)
    first_positive = int(res.match.positive[0].nonzero()[0])
    learn = SimpleNamespace(recorder=SimpleNamespace(lrs=[3e-3 / 25, 2e-3, 3e-3, 1e-5]))  # fastai's Recorder.lrs
    return {
        "01.area": dict(ex=ex), "01.centre_x": dict(ex=ex),
        "02.index": dict(anchors=anchors), "02.first_1x1_with_8x8": dict(anchors=anchors),
        "03.decode_y0": dict(box_actns=ba, anchors=anchors, index=0), "03.max_width": dict(anchors=anchors, index=151),
        "04.iou": dict(result=res, box=31, gt=2), "04.mean_column": dict(result=res, gt=3),
        "05.positives_at_0.35": dict(result=res, threshold=0.35), "05.background_overlap": dict(result=res),
        "06.bce_zero": dict(x=-2.0), "06.box_share": dict(shares=shares, box=first_positive),
        "07.step_toward": dict(result=res), "07.worst_corner": dict(result=res),
        "08.grad_summed": dict(result=article), "08.strongest_push_up": dict(result=res, class_logits=cl),
        "09.images_seen": dict(n_images=160, bs=24, epochs=2), "09.first_lr": dict(learn=learn),
        "10.after_nms": dict(class_logits=cl, box_actns=ba, anchors=anchors), "10.iou_for_match": dict(),
        "11.anchor_iou": dict(by_anchors=by_anchors, box=42, gt=0), "11.lower": dict(by_predictions=res, by_anchors=by_anchors),
        "12.mined_at_04": dict(lesson=lesson_code, class_logits=cl, neg_pos_ratio=3),
        "12.kept_share": dict(class_logits=cl, mined=mined, neg_pos_ratio=4),  # notebook 12: 4 per positive, not 3
    }


def test_every_exercise_has_a_context(contexts):
    assert set(contexts) == set(EXERCISES)


def test_the_answers_are_what_the_library_computes(contexts):
    """Independent computations of the answers, the way a learner would do them."""
    ex, anchors = contexts["01.area"]["ex"], contexts["02.index"]["anchors"]
    res = contexts["04.iou"]["result"]
    y0, x0, y1, x1 = ex.boxes[0].tolist()
    assert solve("01.area", ex=ex) == pytest.approx((y1 - y0) * (x1 - x0), abs=1e-6)
    assert solve("01.centre_x", ex=ex) == pytest.approx((ex.boxes[1, 1] + ex.boxes[1, 3]).item() / 2 * 300, abs=1e-4)
    # after the 4x4 grid's 16 x 9 outputs; cell (1, 0) is the 2x2 grid's third; zoom 1.3 is the 3rd, ratio (1, .5) the 2nd
    assert solve("02.index", anchors=anchors) == 16 * 9 + (1 * 2 + 0) * 9 + 2 * 3 + 1
    assert solve("02.first_1x1_with_8x8", anchors=anchors) == 8 * 8 * 9 + 16 * 9 + 4 * 9
    ba = contexts["03.decode_y0"]["box_actns"]
    t = torch.tanh(ba[0, 0])
    cy, _, h, _ = anchors.centers_hw[0].tolist()
    by_hand = cy + float(t[0]) / 2 * 0.25 - h * (1 + float(t[2]) / 2) / 2
    assert solve("03.decode_y0", box_actns=ba, anchors=anchors, index=0) == pytest.approx(by_hand, abs=1e-6)
    assert solve("03.max_width", anchors=anchors, index=151) == pytest.approx(1.5 * 1.3 * 0.5 / 2)  # 2x2 grid, zoom 1.3, w 0.5
    gt = ex.batch()[1][0]
    p = res.pred_boxes[0, 31].detach()
    assert solve("04.iou", result=res, box=31, gt=2) == pytest.approx(float(box_iou(p[None], gt[2:3])), abs=1e-6)
    assert solve("04.mean_column", result=res, gt=3) == pytest.approx(
        float(box_iou(res.pred_boxes[0].detach(), gt[3:4]).mean()), abs=1e-6)
    assert solve("11.anchor_iou", **contexts["11.anchor_iou"]) == pytest.approx(
        float(box_iou(anchors.corners[42:43], gt[0:1])), abs=1e-6)
    # notebook 11's question: matched on predicted boxes, box 42 is the one ground-truth box 0 claims
    assert res.match.gt_overlap[0, 42] == FORCED_OVERLAP and int(res.match.gt_idx[0, 42]) == 0
    assert solve("06.bce_zero", x=-2.0) == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-12)
    pos = res.match.positive[0]
    n = int(pos.sum())
    # the gradients by autograd: on the corners under the summed regression, on the positives' own class logits
    from ssd_lesson import loss_gradients

    cl = contexts["08.strongest_push_up"]["class_logits"].clone().requires_grad_()
    ba = contexts["03.decode_y0"]["box_actns"].clone().requires_grad_()
    summed = ssd_loss(cl, ba, ex.batch()[1], ex.batch()[2], anchors, regression_reduction="sum")
    corner_grad = loss_gradients(summed, cl)[0][summed.match.positive[0]]
    # one small step of gradient descent on the positives' corners, by hand: how far the summed L1 falls per unit lr
    p, t = summed.pred_boxes[0][summed.match.positive[0]].detach().double(), summed.target_boxes[0][summed.match.positive[0]].double()
    lr = 1e-6  # small enough that no corner passes its target
    assert float((p - t).abs().min()) > lr * float(corner_grad.abs().max())
    fall = float((p - t).abs().mean(dim=1).sum() - (p - lr * corner_grad.double() - t).abs().mean(dim=1).sum()) / lr
    assert solve("08.grad_summed", **contexts["08.grad_summed"]) == pytest.approx(fall, rel=1e-4)
    assert solve("08.grad_summed", **contexts["08.grad_summed"]) == pytest.approx(float((corner_grad ** 2).sum()), rel=1e-5)
    _, logit_grad = loss_gradients(ssd_loss(cl, ba, ex.batch()[1], ex.batch()[2], anchors), cl)
    own = [float(logit_grad[a, res.target_labels[0, a]]) for a in pos.nonzero().flatten().tolist()]
    assert solve("08.strongest_push_up", **contexts["08.strongest_push_up"]) == pytest.approx(min(own), abs=1e-7)
    overlap = res.match.gt_overlap[0]
    assert solve("05.positives_at_0.35", result=res, threshold=0.35) == sum(1 for v in overlap.tolist() if v > 0.35)
    assert solve("05.background_overlap", result=res) == pytest.approx(
        sum(v for v in overlap.tolist() if v <= 0.4) / (189 - n), abs=1e-5)
    err = (res.pred_boxes[0][pos] - res.target_boxes[0][pos]).abs().detach()
    step = [max(e - 0.03, 0.0) for e in err.flatten().tolist()]  # every corner 0.03 nearer, none past its target
    assert solve("07.step_toward", result=res) == pytest.approx(sum(step) / len(step), abs=1e-6)
    assert solve("07.worst_corner", result=res) == pytest.approx(float(err.max()) * 224, abs=1e-3)
    by = contexts["11.lower"]  # the shipped checkpoint's last step matched on predictions: its logits fit those targets
    assert float(by["by_predictions"].classification[0]) < float(by["by_anchors"].classification[0])
    assert solve("11.lower", **by) == "b"
    assert solve("09.images_seen", n_images=170, bs=16, epochs=2) == 2 * 10 * 16
    assert solve("09.images_seen", n_images=160, bs=24, epochs=2) == 2 * 6 * 24  # the notebook's question
    assert solve("10.iou_for_match") == pytest.approx(1 / 3)
    s = solve("10.iou_for_match")  # two unit-wide boxes, one slid by s: IoU (1 - s) / (1 + s) is exactly a half
    assert float(box_iou(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[0.0, s, 1.0, 1.0 + s]]))) == pytest.approx(0.5)
    assert solve("09.first_lr", **contexts["09.first_lr"]) == pytest.approx(1.2e-4)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_checker_marks_right_wrong_and_unanswered(name, contexts, capsys):
    ctx = contexts[name]
    right = solve(name, **ctx)
    wrong = ((("anchors", "b") if right != ("anchors", "b") else ("predictions", "b")) if isinstance(right, tuple)
             else ("a" if right != "a" else "b") if isinstance(right, str)
             else right + 1 if isinstance(right, int)
             else right * 1.5 + 0.1)
    assert check(name, None, **ctx) is False
    assert capsys.readouterr().out.startswith(f"{name}: not answered yet. Hint: ")
    assert check(name, wrong, **ctx) is False
    said_wrong = capsys.readouterr().out
    assert said_wrong.startswith(f"{name}: not quite. Hint: ")
    assert check(name, right, **ctx) is True
    said_right = capsys.readouterr().out
    assert said_right.startswith(f"{name}: right: ")
    if not isinstance(right, (str, tuple)):  # the checker never gives the answer away
        for text in (said_wrong, said_right):
            for shown in (f"{right:.4f}", f"{right:.3f}", f"{right:g}") if isinstance(right, float) else (f" {right} ",):
                assert shown not in text, text


#: An operation spelled out: an equation, a product or quotient with a number or a bracket, "times 224",
#: "divided by 4", a sum with a number.
FORMULA = re.compile(r"=|\s[x×*/]\s*[\d(]|\btimes\s+\d|\bdivided? (?:by|the)\b.*?\d|[+-]\s*\d")


def test_the_mining_answers_are_what_a_learner_computes(contexts):
    from ssd_lesson.course.paper_steps import paper_steps_options

    ctx = contexts["12.mined_at_04"]
    lesson, logits = ctx["lesson"], ctx["class_logits"]
    assert lesson.options.iou_threshold == 0.4 and lesson.options.match_on == "anchors"
    ex_batch = start_lesson(verbose=False)
    options = paper_steps_options()[0][1].replace(classification="softmax", neg_pos_ratio=3)  # the question, as options
    asked = ssd_loss(logits, ex_batch.box_actns, ex_batch.gt_boxes, ex_batch.gt_labels, ex_batch.anchors, options=options)
    assert int(asked.counted_negatives.sum()) == 3 * int(lesson.match.positive.sum())
    assert solve("12.mined_at_04", **ctx) == pytest.approx(float(asked.classification[0]), rel=1e-5)
    mined, logits = contexts["12.kept_share"]["mined"], contexts["12.kept_share"]["class_logits"][0].double()
    assert mined.options.neg_pos_ratio == 3 and mined.options.classification == "softmax"
    per_box = torch.logsumexp(logits, dim=-1) - logits.gather(1, mined.target_labels[0][:, None]).squeeze(1)
    negatives = (~mined.match.positive[0]).nonzero().flatten().tolist()
    hardest = sorted(negatives, key=lambda a: -float(per_box[a]))[:4 * int(mined.match.positive.sum())]  # 4 per positive
    share = float(per_box[hardest].sum() / per_box[negatives].sum())
    assert solve("12.kept_share", **contexts["12.kept_share"]) == pytest.approx(share, abs=1e-9)
    assert 0.3 < share < 0.7  # a few boxes carry a large part of the background's loss


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_a_hint_points_at_the_idea_not_at_the_operation(name):
    """A hint that states the formula turns the question into arithmetic."""
    hint = EXERCISES[name].hint
    assert not FORMULA.search(hint), hint
    assert FORMULA.search("the MAE is a fraction; times 224 gives pixels") and FORMULA.search("4 x (n + 8)")


def test_unknown_exercise_names_the_known_ones():
    with pytest.raises(KeyError, match="01.area"):
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


@pytest.mark.parametrize("odd", [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([]), torch.zeros(2, 2), 10 ** 400, -10 ** 400,
                                 "four", "", [4], {"a": 1}, float("nan"), float("inf"), print])
def test_an_odd_answer_is_not_quite_with_a_hint_never_a_traceback(odd, contexts, capsys):
    """A tensor of several numbers, an empty tensor, a huge integer, text: 'not quite' and a hint, for every exercise."""
    for name in sorted(EXERCISES):
        assert check(name, odd, **contexts[name]) is False
        out = capsys.readouterr().out
        assert out.startswith(f"{name}: not quite") and "Hint: " in out and out.count("\n") == 1, out


def test_a_one_number_tensor_or_array_is_read_as_its_number(contexts, capsys):
    import numpy as np
    right = solve("02.index", **contexts["02.index"])
    for answer in (torch.tensor(right), torch.tensor([[right]]), np.array([right]), np.int64(right)):
        assert check("02.index", answer, **contexts["02.index"]) is True
    capsys.readouterr()
    check("02.index", torch.tensor([1.0, 2.0]), **contexts["02.index"])
    assert "one number is asked for, yours is a tensor of shape (2,)" in capsys.readouterr().out


def _printed_numbers(cells: list) -> set[float]:
    """Every number the stored outputs of ``cells`` show (text, and the text of HTML tables)."""
    numbers = set()
    for c in cells:
        for o in c.get("outputs", []):
            data = o.get("data", {})
            text = "".join(o.get("text", "")) + "".join(data.get("text/plain", "")) + "".join(data.get("text/html", ""))
            numbers.update(float(m) for m in re.findall(r"(?<![\w.#])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text))
    return numbers


def test_at_most_two_exercises_can_be_answered_by_copying_a_printed_number(contexts):
    """Tries every number printed earlier in a notebook's stored outputs as the answer to each of its numeric
    exercises. Needs the series executed as committed (the stored outputs are what a learner sees). Notebook 10's
    context (the held-out images' logits) is not rebuilt here: 10.after_nms (NMS applied by hand) is not tried;
    10.iou_for_match needs no context and is."""
    copied = []
    for path in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        assert any(c.get("outputs") for c in cells if c["cell_type"] == "code"), f"{path.name} is not executed"
        for i, c in enumerate(cells):
            if not any(t.startswith("exercise-") for t in c["metadata"].get("tags", [])):
                continue
            (name,) = re.findall(r'check\("([^"]+)"', "".join(c["source"]))
            if name == "10.after_nms":
                continue
            right = solve(name, **contexts[name])
            if isinstance(right, (str, tuple)):
                continue
            if any(_same(x, right, EXERCISES[name].tolerance) for x in _printed_numbers(cells[:i])):
                copied.append(name)
    assert len(copied) <= 2, copied


#: Answers that equal a number an earlier notebook printed for another reason, within the exercise's tolerance:
#: not a way to the answer. Every other numeric answer must appear in no earlier notebook's outputs.
COINCIDENCES = {
    "06.box_share": "0.0231, two other IoUs in notebook 04's Table 1",
    "10.iou_for_match": "0.3366, a corner coordinate in notebook 07's Table 4",
}


def test_no_exercise_can_be_answered_by_copying_a_number_an_earlier_notebook_printed(contexts):
    """Tries every number printed in the earlier notebooks' stored outputs as the answer to each numeric exercise
    (a learner looking back for it), notebook 10's 10.after_nms aside, as above."""
    copied, earlier = {}, set()
    for path in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for c in cells:
            if not any(t.startswith("exercise-") for t in c["metadata"].get("tags", [])):
                continue
            (name,) = re.findall(r'check\("([^"]+)"', "".join(c["source"]))
            right = None if name == "10.after_nms" else solve(name, **contexts[name])
            if right is None or isinstance(right, (str, tuple)):
                continue
            hits = [x for x in earlier if _same(x, right, EXERCISES[name].tolerance)]
            if hits:
                copied[name] = hits
        earlier |= _printed_numbers(cells)
    assert set(copied) <= set(COINCIDENCES), {k: v for k, v in copied.items() if k not in COINCIDENCES}
