"""A learner's mistakes and odd set-ups get a line saying what happened, never a silent substitute or a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_start_lesson_with_a_mistyped_voc_path_says_so(capsys, tmp_path, monkeypatch):
    from ssd_lesson.course.lesson import start_lesson

    monkeypatch.chdir(tmp_path)
    start_lesson(voc="my_voc_typo", checkpoint=False)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"voc='my_voc_typo': Pascal VOC 2007 not found there ({tmp_path / 'my_voc_typo'} does not "
                            "exist). Using the embedded offline example")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("SSD_LESSON_VOC", str(tmp_path / "empty"))
    start_lesson(checkpoint=False)
    assert capsys.readouterr().out.startswith(f"$SSD_LESSON_VOC='{tmp_path / 'empty'}': Pascal VOC 2007 not found there "
                                              f"({tmp_path / 'empty'} holds no Pascal VOC 2007 in either layout). Using")
    start_lesson(offline=True, checkpoint=False)  # offline on purpose: nothing to apologise for
    assert capsys.readouterr().out.startswith("Using the embedded offline example")


@pytest.mark.parametrize("shell", ["IPython.core.interactiveshell.InteractiveShell",
                                   "IPython.terminal.interactiveshell.TerminalInteractiveShell"])
def test_figure_format_outside_a_kernel_says_why_it_is_not_applied(shell):
    module, name = shell.rsplit(".", 1)
    code = (f"from {module} import {name}\nsh = {name}.instance()\n"
            "r = sh.run_cell('from ssd_lesson.drawing.draw import notebook_style; notebook_style(figure_format=\"jpeg\")')\n"
            "assert r.success, r.error_in_exec\nprint('done')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "agg"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"figure_format='jpeg' not applied: it sets how a notebook stores inline figures, "
                                     f"and this {name} is not a Jupyter kernel (figures use matplotlib's agg backend)", "done"]


@pytest.mark.slow
def test_figure_format_in_a_kernel_stores_jpeg(tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from ssd_lesson.drawing.draw import notebook_style\n"
                                          "notebook_style(figure_format='jpeg')\nimport matplotlib.pyplot as plt\n"
                                          "plt.plot([0, 1]); plt.show()")]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = nb.cells[0].outputs
    assert [sorted(o.get("data", {})) for o in outputs] == [["image/jpeg", "text/plain"]], outputs
