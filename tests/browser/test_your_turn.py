"""A learner's "your turn" in JupyterLab: a function typed into notebook 05's cell is marked by the checker.

The notebook is a fresh copy opened in a real JupyterLab in Chromium and run with Run All
(the stub says "not answered yet"); then the learner's text replaces the cell's, as a paste
into the editor does, and Shift+Enter runs it: a right function gets "Right", one with the
`>=` slip gets that slip's own hint.
"""
from __future__ import annotations

import pytest

from ssd_lesson.course.exercises.solutions import SOLUTIONS
from ssd_lesson.course.exercises.code_exercises import CODE_EXERCISES

pytestmark = pytest.mark.browser

NAME = "05_matching.ipynb"
CHECK = 'check("05.match", my_match)'

JS_CELL = """marker => { const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
    for (let i = 0; i < cells.length; i++) { if (cells.get(i).sharedModel.getSource().includes(marker)) return i; }
    return -1; }"""
JS_OUTPUT = """i => { const c = window.jupyterapp.shell.currentWidget.content.model.cells.get(i);
    return {count: c.executionCount, text: c.outputs.toJSON().map(o => [].concat(o.text || '').join('')
                                                               + (o.ename ? o.ename + ': ' + o.evalue : '')).join('')}; }"""


def _type_and_run(nb, index: int, source: str, before_count) -> str:
    """Replace cell ``index``'s text by ``source`` in its editor, run it with Shift+Enter, return its printed text."""
    cell = nb.page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.scroll_into_view_if_needed()
    cell.locator(".cm-content").click()
    nb.page.keyboard.press("Control+A")
    nb.page.keyboard.insert_text(source)
    nb.page.keyboard.press("Shift+Enter")
    nb.page.wait_for_function(f"() => ({JS_OUTPUT})({index}).count !== {before_count or 0}"
                              f" && ({JS_OUTPUT})({index}).text.length > 0", timeout=60_000, polling=200)
    nb.wait_idle()
    return nb.page.evaluate(JS_OUTPUT, index)


def test_a_typed_function_is_marked_right_and_a_slip_gets_its_hint(lab):
    nb = lab.run(NAME, 300)
    index = nb.page.evaluate(JS_CELL, CHECK)
    assert index >= 0, f"{NAME} has no cell with {CHECK}"
    out = nb.page.evaluate(JS_OUTPUT, index)
    assert out["text"].startswith("05.match: not answered yet."), out

    right = SOLUTIONS["05.match"] + "\n\n" + CHECK
    out = _type_and_run(nb, index, right, out["count"])
    assert out["text"].startswith("05.match: Right, on all "), out

    slipped = right.replace("gt_overlap > 0.4", "gt_overlap >= 0.4")
    assert slipped != right
    out = _type_and_run(nb, index, slipped, out["count"])
    assert out["text"].startswith("05.match: not quite, on the case 'an IoU of exactly 0.4'"), out
    assert CODE_EXERCISES["05.match"].slips["ge"].hint in out["text"]
    assert "Traceback" not in out["text"] and nb.page_errors == []
    lab.close(NAME)
