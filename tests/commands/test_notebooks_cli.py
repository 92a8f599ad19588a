"""`python -m ssd_lesson notebooks`: lists the series, executes copies (never the originals), exports HTML."""
from __future__ import annotations


import nbformat
import pytest

from ssd_lesson.commands.notebooks import NOTEBOOK_DIR, execute_series, notebooks_main, series


def test_series_is_numbered_and_complete():
    names = [p.name for p in series()]
    assert names == sorted(names) and len(names) == 12
    assert [n[:2] for n in names] == [f"{i:02d}" for i in range(1, 13)]


def test_listing_without_execute(capsys):
    assert notebooks_main([]) == 0
    out = capsys.readouterr().out
    assert "01_ground_truth.ipynb" in out and "--execute" in out


@pytest.mark.slow  # executes a notebook in a kernel
def test_execute_one_writes_a_copy_and_html(tmp_path):
    original = (NOTEBOOK_DIR / "01_ground_truth.ipynb").read_bytes()
    times = execute_series(tmp_path / "nb", tmp_path / "html", only="01_")
    assert list(times) == ["01_ground_truth.ipynb"] and times["01_ground_truth.ipynb"] > 0
    copy = nbformat.read(tmp_path / "nb" / "01_ground_truth.ipynb", as_version=4)
    assert all(c.execution_count for c in copy.cells if c.cell_type == "code")
    assert not any(o.get("output_type") == "error" for c in copy.cells if c.cell_type == "code" for o in c.outputs)
    html = (tmp_path / "html" / "01_ground_truth.html").read_text(encoding="utf-8")
    assert "<html" in html and "ground" in html.lower()
    assert (NOTEBOOK_DIR / "01_ground_truth.ipynb").read_bytes() == original  # the learner's file is untouched


def test_unknown_filter_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebook"):
        execute_series(tmp_path, only="99_nothing")


def test_installed_without_the_checkout_is_a_clear_message(tmp_path, monkeypatch, capsys):
    # From a wheel there is no notebooks/ next to the package: say so, no traceback.
    import ssd_lesson.commands.notebooks as nb_module

    monkeypatch.setattr(nb_module, "NOTEBOOK_DIR", tmp_path / "notebooks")
    assert notebooks_main(["--execute"]) == 2
    err = capsys.readouterr().err
    assert "no notebook series in" in err and "repository checkout" in err
