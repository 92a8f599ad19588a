"""The your-turn checker's messages for what goes wrong around a learner's function: an endless loop, autograd
where the exercise says "by hand", a result on another device, NaN, a large tensor, a function that answers only
some cases. Each is one readable line, and the notebook (here: the test process) stays usable afterwards."""
from __future__ import annotations

import signal
import threading
import time

import pytest
import torch

from ssd_lesson.course.exercises import CODE_EXERCISES, SOLUTIONS, check, learner_call
from tests.helpers import checked, learner_function


def _solution(name):
    return learner_function(SOLUTIONS[name])


def _endless(ious):
    while True:
        try:
            ious = ious + 0
        except Exception:  # a learner's catch-all must not swallow the time limit
            pass


def test_an_endless_loop_is_stopped_after_the_time_limit_and_the_checker_still_works(capsys, monkeypatch):
    monkeypatch.setattr(learner_call, "TIME_LIMIT_S", 0.3)
    before = signal.getsignal(signal.SIGALRM)
    start = time.monotonic()
    ok, out = checked(capsys, "05.match", _endless)
    assert time.monotonic() - start < 3
    assert not ok and out.startswith("05.match: your function did not return within 0.3 s on the case 'random "
                                     "overlaps, boxes 2 and 5 overlapping nothing' (ious = [[0.5812, "), out
    assert out.endswith("probably an endless loop (a loop whose condition never changes?). It was stopped, and the "
                        "notebook can go on.\n"), out
    assert signal.getsignal(signal.SIGALRM) == before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert checked(capsys, "05.match", _solution("05.match"))[0]  # the same process checks the next function


def test_an_earlier_alarm_is_put_back(capsys, monkeypatch):
    monkeypatch.setattr(learner_call, "TIME_LIMIT_S", 0.2)
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *a: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        assert not checked(capsys, "05.match", _endless)[0]
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 25.0 < remaining <= 30.0 and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_outside_the_main_thread_the_checker_waits_the_time_limit_and_says_the_loop_may_still_run(monkeypatch):
    monkeypatch.setattr(learner_call, "TIME_LIMIT_S", 0.3)
    stop, said = threading.Event(), []

    def loops_until_stopped(ious):
        while not stop.is_set():
            time.sleep(0.01)

    import contextlib
    import io

    def run():
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            said.append((check("05.match", loops_until_stopped), buffer.getvalue()))
    worker = threading.Thread(target=run)
    worker.start()
    worker.join(10)
    stop.set()
    ok, out = said[0]
    assert not ok and "did not return within 0.3 s" in out
    assert "It may still be running in the background: restart the kernel if the notebook slows down." in out


def test_autograd_is_refused_in_the_by_hand_exercise_and_put_back_afterwards(capsys):
    def by_autograd_grad(pred, target, positive):
        p = pred.clone().requires_grad_(True)
        err = (p - target).abs()[positive]
        with torch.enable_grad():  # even asked for explicitly
            loss = err.sum() / (4 * max(len(err), 1))
            return torch.autograd.grad(loss, p)[0]
    backward, grad = torch.autograd.backward, torch.autograd.grad
    ok, out = checked(capsys, "08.grad", by_autograd_grad)
    assert not ok and out.startswith("08.grad: not quite: your function asks autograd for the gradient (.backward() or "
                                     "torch.autograd.grad) on the case '6 boxes, some positive'"), out
    assert "this exercise asks for it by hand, so the checker runs it with autograd switched off" in out
    assert (torch.autograd.backward, torch.autograd.grad) == (backward, grad)
    x = torch.ones(2, requires_grad=True)
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]
    assert checked(capsys, "05.match", _solution("05.match"))[0]  # autograd is allowed where the exercise allows it


def test_autograd_through_a_grad_imported_before_the_check_is_named_too(capsys):
    from torch.autograd import grad as imported_grad  # bound before the checker runs: not the checker's refusal

    def by_imported_grad(pred, target, positive):
        p = pred.clone().requires_grad_(True)
        err = (p - target).abs()[positive]
        return imported_grad(err.sum() / (4 * max(len(err), 1)), p)[0]
    ok, out = checked(capsys, "08.grad", by_imported_grad)
    assert not ok and "your function asks autograd for the gradient" in out, out


@pytest.mark.parametrize("how", ["imported grad under enable_grad", "torch.func.grad", "backward under enable_grad"])
def test_autograd_switched_back_on_by_the_learner_is_refused_at_the_engine(capsys, how):
    from torch.autograd import grad as imported_grad  # bound before the checker replaces torch.autograd.grad

    def l1(p, target, positive):
        return (p - target).abs()[positive].sum() / (4 * max(int(positive.sum()), 1))

    def by_autograd(pred, target, positive):
        with torch.enable_grad():
            if how == "torch.func.grad":
                return torch.func.grad(l1)(pred.clone(), target, positive)
            p = pred.clone().requires_grad_(True)
            if how == "backward under enable_grad":
                l1(p, target, positive).backward()
                return p.grad
            return imported_grad(l1(p, target, positive), p)[0]
    ok, out = checked(capsys, "08.grad", by_autograd)
    assert not ok and "your function asks autograd for the gradient" in out, out
    x = torch.ones(2, requires_grad=True)  # the engine is put back
    assert imported_grad((x * 3).sum(), x)[0].tolist() == [3.0, 3.0]


def test_nan_where_0_is_expected_counts_as_a_difference(capsys):
    def divides_by_n(pred, target, positive):  # NaN for an image without positives
        return torch.sign(pred - target) / (4 * positive.sum()) * positive[:, None]
    ok, out = checked(capsys, "08.grad", divides_by_n)
    assert not ok and out.startswith("08.grad: not quite, on the case 'an image without positives'"), out
    assert "the gradient (shape (4, 4)) is [[nan, nan, nan, nan]," in out and "(wrong at 16 of 16 places, the first at " \
        "row 0)" in out, out


def test_a_large_tensor_shows_its_first_differing_row_never_the_expected_one(capsys):
    def shifted(grid, zooms, ratios):
        return _solution("02.anchor_boxes")(grid, zooms, ratios) + torch.tensor([0.0, 0.0, 0.0, 0.01])
    ok, out = checked(capsys, "02.anchor_boxes", shifted)
    assert not ok and out.startswith("02.anchor_boxes: not quite, on the case 'the lesson's 4x4 grid'"), out
    assert ("the anchor boxes (shape (144, 4)) is wrong at 144 of 576 places; the first is row 0, where yours is "
            "[0.0375, 0.0375, 0.2125, 0.2225]") in out, out
    assert "0.2125, 0.2125]" not in out  # the expected row is never shown


@pytest.mark.parametrize("name, move", [("07.l1", lambda out: tuple(t.to("meta") for t in out)),
                                        ("05.match", lambda out: (out[0].to("meta"),) + tuple(out[1:])),
                                        ("04.iou_one_box", lambda out: out.to("meta"))])
def test_a_result_on_another_device_is_one_readable_line(name, move, capsys):
    """``meta`` stands in for a device whose values the checker cannot read: one line naming it."""
    right = _solution(name)
    ok, out = checked(capsys, name, lambda *a: move(right(*a)))
    assert not ok and f"your result is on the device 'meta' on the case '" in out
    assert out.rstrip().endswith("where the checker cannot read its values: return it on the inputs' device (cpu)."), out


def test_a_stacked_tensor_where_a_pair_is_asked_says_a_pair_is_asked(capsys):
    right = _solution("07.l1")
    ok, out = checked(capsys, "07.l1", lambda *a: torch.stack(right(*a)))
    assert not ok and out.startswith("07.l1: not quite: expected two numbers: (the lesson's mean, the article's sum); "
                                     "a pair (a tuple of two: mean, sum) is asked for, yours returned [0.1386, 0.5543] "
                                     "on the case '6 boxes, some positive'"), out


def test_a_function_answering_only_some_cases_is_told_which_case_returned_none(capsys):
    right = _solution("05.match")
    ok, out = checked(capsys, "05.match", lambda ious: right(ious) if ious.shape[1] == 0 else None)
    assert not ok and "not answered yet" not in out
    assert out.startswith("05.match: not quite: your function returned None on the case 'random overlaps, boxes 2 "
                          "and 5 overlapping nothing'"), out
    assert "while it answered other cases: every path through it must return three (A,) tensors" in out

    def forgets_the_empty_image(ious):
        if ious.shape[1]:
            return right(ious)
    ok, out = checked(capsys, "05.match", forgets_the_empty_image)
    assert not ok and out.startswith("05.match: not quite: your function returned None on the case 'an image "
                                     "without objects'"), out


@pytest.mark.parametrize("name", sorted(CODE_EXERCISES))
def test_every_solution_is_right_on_every_case_within_the_time_limit(name, capsys):
    start = time.monotonic()
    ok, out = checked(capsys, name, _solution(name))
    assert ok and out.startswith(f"{name}: Right, on all {len(CODE_EXERCISES[name].cases())} cases"), out
    assert time.monotonic() - start < learner_call.TIME_LIMIT_S


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_result_on_cuda_is_compared_on_cuda(capsys):
    right = _solution("05.match")
    ok, out = checked(capsys, "05.match", lambda ious: tuple(t.cuda() for t in right(ious)))
    assert ok, out
    ok, out = checked(capsys, "05.match", lambda ious: tuple(t.cuda() for t in right(ious))[:2] + (right(ious)[2].cuda() & False,))
    assert not ok and "positive (shape (8,)) is [False, False, False, False, False, False, False, False]" in out, out


@pytest.mark.slow
def test_in_an_ipython_shell_an_endless_loop_is_stopped_and_the_next_cell_runs():
    """As in a notebook: the learner's cell prints the message, and the shell runs the next cell."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cells = ["from ssd_lesson.course.exercises import check, learner_call\nlearner_call.TIME_LIMIT_S = 0.5",
             "def my_match(ious):\n    while True:\n        pass\n\ncheck('05.match', my_match)",
             "print('next cell', 1 + 1)"]
    code = ("from IPython.core.interactiveshell import InteractiveShell\nsh = InteractiveShell.instance()\n"
            f"for cell in {cells!r}:\n    r = sh.run_cell(cell)\n    assert r.success, r.error_in_exec\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if not line.startswith("Out[")]  # check's True/False
    assert len(lines) == 2 and lines[0].startswith("05.match: your function did not return within 0.5 s"), r.stdout
    assert lines[1] == "next cell 2"
