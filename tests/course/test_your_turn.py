"""The "your turn" code exercises: every solution passes, every stub is 'not answered yet', and each listed
slip, written here as a learner would write it (not with the checker's own slip code), gets its own hint."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from ssd_lesson.course.exercises import check
from ssd_lesson.course.exercises.solutions import FUNCTION_NAMES, SOLUTIONS, STUBS
from ssd_lesson.course.exercises.code_exercises import CODE_EXERCISES
from tests.helpers import checked, learner_function


_function = learner_function


@pytest.mark.parametrize("name", sorted(CODE_EXERCISES))
def test_solution_is_right_and_stub_is_not_answered(name, capsys):
    assert set(SOLUTIONS) == set(STUBS) == set(FUNCTION_NAMES) == set(CODE_EXERCISES)
    ok, out = checked(capsys, name, _function(SOLUTIONS[name]))
    assert ok and out.startswith(f"{name}: Right, on all "), out
    ok, out = checked(capsys, name, _function(STUBS[name]))
    assert not ok and out.startswith(f"{name}: not answered yet. Write {FUNCTION_NAMES[name]}("), out
    ok, out = checked(capsys, name, None)
    assert not ok and "not answered yet" in out


def _raises_not_implemented(*args):
    raise NotImplementedError


def test_a_function_raising_not_implemented_is_a_stub(capsys):
    ok, out = checked(capsys, "05.match", _raises_not_implemented)
    assert not ok and out.startswith("05.match: not answered yet")


# ---- wrong functions, written the way a learner writes them (the catalogue of slips is in test_slips.py) -------------

def _match(ious, forced=1.99):
    A, G = ious.shape
    if G == 0:
        return torch.zeros(A, dtype=torch.long), torch.zeros(A), torch.zeros(A, dtype=torch.bool)
    overlap, idx = ious.max(dim=1)
    for j in range(G):
        b = ious[:, j].argmax()
        overlap[b], idx[b] = forced, j
    return idx, overlap, overlap > 0.4


def test_a_wrong_function_of_no_known_slip_is_shown_its_first_differing_case(capsys):
    def off_by_one(ious):
        idx, overlap, positive = _match(ious)
        return idx + 1, overlap, positive
    ok, out = checked(capsys, "05.match", off_by_one)
    assert not ok
    assert out.startswith("05.match: not quite, on the case 'random overlaps, boxes 2 and 5 overlapping nothing' (ious = ")
    assert "gt_idx (shape (8,)) is [" in out and "wrong at 8 of 8 places" in out and "Hint: gt_overlap, gt_idx" in out
    right = _match(CODE_EXERCISES["05.match"].cases()[0].args[0])[0].tolist()
    assert str(right) not in out  # the expected answer is never printed


def test_a_function_that_raises_is_one_line_with_a_hint(capsys):
    def no_empty_case(ious):
        overlap, idx = ious.max(dim=1)  # fails for an image without objects
        for j in range(ious.shape[1]):
            b = ious[:, j].argmax()
            idx[b], overlap[b] = j, 1.99
        return idx, overlap, overlap > 0.4
    ok, out = checked(capsys, "05.match", no_empty_case)
    assert not ok and re.match(r"05\.match: your function raised IndexError: .* on the case 'an image without "
                               r"objects' \(ious = \[\[\], \[\], \[\], \[\]\]\)\. Hint: with no objects every box is "
                               r"background", out), out


@pytest.mark.parametrize("value", [torch.tensor([1.0, 2.0]), torch.tensor([]), 10 ** 400, "abc", [1, 2], (None,), 3.0])
def test_odd_returns_from_a_learner_function_never_raise(value, capsys):
    ok, out = checked(capsys, "05.match", lambda ious: value)
    assert not ok and out.startswith("05.match: not quite: expected three (A,) tensors"), out


def test_a_value_instead_of_a_function_is_not_quite(capsys):
    ok, out = checked(capsys, "05.match", 3)
    assert not ok and "pass your function itself" in out


def test_inputs_are_fresh_for_every_call_and_a_function_that_changes_them_is_told_so(capsys):
    """Each call gets its own copies (a function writing into its input cannot change the next call's), and
    writing into the caller's tensors is named: a caller's inputs must stay as they were."""
    def writes_into_its_input(ious):
        result = _match(ious)
        ious.fill_(7.0)
        return result
    ok, out = checked(capsys, "05.match", writes_into_its_input)
    assert not ok and out.startswith("05.match: not quite: your function changed its input ious in place on the case "
                                     "'random overlaps, boxes 2 and 5 overlapping nothing' (ious = [[0.5812, "), out
    assert "compute new tensors (torch.tanh(x), not x.tanh_(); y = x + 1, not x += 1), or work on x.clone()" in out
    cases = CODE_EXERCISES["05.match"].cases()

    def writes_into_a_copy(ious):
        ious = ious.clone()
        result = _match(ious)
        ious.fill_(7.0)
        return result
    assert checked(capsys, "05.match", writes_into_a_copy)[0]
    assert [c.args[0].tolist() for c in CODE_EXERCISES["05.match"].cases()] == [c.args[0].tolist() for c in cases]


def test_an_iou_of_exactly_0_4_is_a_case_and_two_objects_share_a_box():
    cases = {c.label: c.args[0] for c in CODE_EXERCISES["05.match"].cases()}
    assert (cases["an IoU of exactly 0.4"] == 0.4).any()
    same = cases["two objects want the same box"]
    assert same.argmax(dim=0).tolist() == [1, 1]
    assert cases["an image without objects"].shape[1] == 0


def test_each_notebook_02_to_08_and_11_has_its_your_turn_cell():
    """The cell is the library's stub and check call (so the solutions key can replace it); its stored output
    (after the series is executed) says 'not answered yet'; a markdown cell above says what to write."""
    import json
    from pathlib import Path

    from ssd_lesson.course.exercises.solutions import cell_source
    found = {}
    for path in sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for i, c in enumerate(cells):
            if c["cell_type"] == "code" and "your-turn" in c["metadata"].get("tags", []):
                src = "".join(c["source"])
                (name,) = re.findall(r'^check\("([^"]+)"', src, flags=re.M)
                assert src == cell_source(name), (path.name, name)
                above = "".join(cells[i - 1]["source"])
                assert cells[i - 1]["cell_type"] == "markdown" and f"`{FUNCTION_NAMES[name]}(" in above
                out = "".join("".join(o.get("text", "")) for o in c["outputs"])
                assert out.startswith(f"{name}: not answered yet."), (path.name, out)
                found[name] = path.name[:2]
    assert found == {name: name[:2] for name in CODE_EXERCISES}


def test_the_solutions_key_fills_every_your_turn_cell_and_each_filled_cell_says_right(tmp_path, capsys):
    """write_solutions (what `notebooks --solutions` executes) fills the 8 cells; each filled cell, run as code, is right."""
    import nbformat

    from ssd_lesson.commands.notebooks import write_solutions
    from ssd_lesson.course.exercises.solutions import cell_source
    written = write_solutions(tmp_path)
    assert [p.name for p in written] == sorted(p.name for p in written) and len(written) >= 11
    filled = {}
    for path in written:
        for c in nbformat.read(path, 4).cells:
            for name in CODE_EXERCISES:
                if c.cell_type == "code" and c.source == cell_source(name, solved=True):
                    filled[name] = c.outputs
                assert c.source != cell_source(name)  # no stub left
    assert set(filled) == set(CODE_EXERCISES) and not any(filled.values())
    keyed = [c.source for p in written for c in nbformat.read(p, 4).cells if "# the key" in c.source]
    assert len(keyed) >= 22 and not any("answer = None" in src for src in keyed)
    for name in CODE_EXERCISES:
        exec(cell_source(name, solved=True), {})
        assert capsys.readouterr().out.startswith(f"{name}: Right, on all ")


def test_solutions_cannot_be_inplace_nor_written_over_the_series(capsys, monkeypatch):
    from ssd_lesson.__main__ import main
    from ssd_lesson.commands.notebooks import NOTEBOOK_DIR, write_solutions

    monkeypatch.chdir(NOTEBOOK_DIR.parent)

    before = {p.name: p.read_bytes() for p in NOTEBOOK_DIR.glob("*.ipynb")}
    assert main(["notebooks", "--solutions", "--inplace"]) == 2
    assert capsys.readouterr().err.startswith("error: --solutions writes the instructors' key as a copy in --out")
    for out in (str(NOTEBOOK_DIR), "notebooks", "notebooks/"):
        assert main(["notebooks", "--solutions", "--only", "04", "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out {Path(out)} is the notebook series itself: --solutions would replace"), err
    with pytest.raises(ValueError, match="is the learners' series"):
        write_solutions(NOTEBOOK_DIR, only="04")
    assert {p.name: p.read_bytes() for p in NOTEBOOK_DIR.glob("*.ipynb")} == before


@pytest.mark.slow
def test_the_solutions_command_writes_and_executes_the_key(tmp_path, capsys):
    """`notebooks --solutions --out DIR` end to end (one notebook): the key is executed in DIR, and its
    your-turn cell says right (the series' own notebooks are left as they are)."""
    import json

    from ssd_lesson.commands.notebooks import NOTEBOOK_DIR, notebooks_main

    before = (NOTEBOOK_DIR / "04_iou.ipynb").read_bytes()
    assert notebooks_main(["--solutions", "--only", "04", "--out", str(tmp_path)]) == 0
    cells = json.loads((tmp_path / "04_iou.ipynb").read_text())["cells"]
    said = ["".join(o.get("text", "")) for c in cells if "your-turn" in c["metadata"].get("tags", [])
            for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    assert len(said) == 1 and said[0].startswith("04.iou_one_box: Right, on all"), said
    assert (NOTEBOOK_DIR / "04_iou.ipynb").read_bytes() == before


def test_the_cases_hold_each_threshold_boundary_and_anchor_sets_other_than_the_lessons():
    """05: unforced overlaps below 0.4, exactly 0.4, in (0.4, 0.45] and in (0.45, 0.5], so that >=, 0.35, 0.45 and 0.5
    all differ from > 0.4; 11: an anchor box at exactly 0.4 that no object claims, and an anchor set of another size;
    03: an anchor box that is not one of the lesson's 189."""
    from ssd_lesson import box_iou, make_anchors

    unforced = []
    for case in CODE_EXERCISES["05.match"].cases():
        ious = case.args[0]
        if ious.shape[1]:
            claimed = set(ious.argmax(dim=0).tolist())
            unforced += [float(v) for a, v in enumerate(ious.max(dim=1).values.tolist()) if a not in claimed]
    for lo, hi in ((0.35, 0.4), (0.4, 0.4), (0.4, 0.45), (0.45, 0.5)):
        assert any(lo < v < hi or v == lo == hi for v in [round(u, 6) for u in unforced]), (lo, hi)
    targets = {c.label: c.args for c in CODE_EXERCISES["11.anchor_targets"].cases()}
    anchors, gt, _ = targets["an anchor box overlapping an object by exactly 0.4"]
    ious = box_iou(anchors, gt)
    assert ious[0, 0].item() == 0.4 and ious[:, 0].argmax().item() != 0  # exactly 0.4, and not object 0's best
    assert {len(a) for a, _, _ in targets.values()} >= {189, 40, 4}
    decode_anchors = [c.args[1] for c in CODE_EXERCISES["03.decode_box"].cases()]
    assert any(not (make_anchors(dtype=torch.float64).centers_hw - a).abs().sum(dim=1).lt(1e-9).any()
               for a in decode_anchors)
