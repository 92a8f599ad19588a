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


#: The notebooks that go beyond the article, and what each links instead: the SSD paper.
BEYOND_THE_ARTICLE = {"12_ssd_paper_loss": "](https://arxiv.org/abs/1512.02325)"}


@pytest.mark.parametrize("path", SERIES, ids=lambda p: p.stem)
def test_each_notebook_links_the_article_it_follows(path):
    from ssd_lesson.commands.site import ARTICLE_URL

    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    link = BEYOND_THE_ARTICLE.get(path.stem, f"]({ARTICLE_URL})")
    assert link in text, f"{path.name} never links {link[2:-1]}"


def test_nothing_points_outside_the_repository():
    """A clone holds all the course names: the article is linked by its public address, not by a path beside
    the repository that learners do not have."""
    root = NB_DIR.parent
    files = [root / "README.md", root / "data" / "README.md", *SERIES, *(root / "ssd_lesson").rglob("*.py")]
    outside = [str(f.relative_to(root)) for f in files if "../shared" in f.read_text() or "shared/seed" in f.read_text()]
    assert outside == []
