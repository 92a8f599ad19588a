"""What a learner reads in a notebook is the lesson, not the test harness: no nbval markers in the
sources (nbval reads its cell tags instead), and no test configuration among the notebooks."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.helpers import checks_output

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
SERIES = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", SERIES, ids=lambda p: p.stem)
def test_no_harness_marker_in_what_a_learner_reads(path):
    nb = nbformat.read(path, as_version=4)
    marked = [i for i, c in enumerate(nb.cells) if "NBVAL" in c.source]
    assert not marked, f"{path.name}: cells {marked} show an nbval marker; tag the cell instead"
    assert any(checks_output(c) for c in nb.cells), f"{path.name}: no cell's printed numbers are compared"


def test_the_learners_folder_holds_only_the_series():
    assert sorted(p.name for p in NB_DIR.iterdir() if not p.name.startswith(".")) == [p.name for p in SERIES]
