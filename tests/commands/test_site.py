"""The exported site: an index page, links between pages that work, nothing of the test harness, and the
instructors' key marked on every page and in its file names."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from ssd_lesson.commands.notebooks import export_series, series
from ssd_lesson.commands.site import ARTICLE_URL, KEY_PREFIX, page_copy, title_and_summary

LINK = re.compile(r'href="([^"#]+)(#[^"]*)?"')


def local_links(page: Path) -> set[str]:
    return {m.group(1) for m in LINK.finditer(page.read_text(encoding="utf-8"))
            if not m.group(1).startswith(("http:", "https:", "data:", "mailto:"))}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    export_series(out)
    return out


def test_the_index_lists_every_notebook_with_its_title_and_links_the_article(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    assert ARTICLE_URL in index
    stems = [p.stem for p in series()]
    assert [m.group(1) for m in re.finditer(r'<li><a href="([^"]+)\.html"', index)] == stems
    for p in series():
        title, summary = title_and_summary(nbformat.read(p, as_version=4))
        assert title and summary.endswith((".", "?", "!")), (p.name, title, summary)
    assert "Intersection over union" in index and "04 · " in index


def test_every_local_link_of_every_page_leads_to_a_page_of_the_site(site):
    pages = sorted(site.glob("*.html"))
    assert len(pages) == len(series()) + 1
    broken = {(page.name, link) for page in pages for link in local_links(page) if not (site / link).is_file()}
    assert broken == set()
    assert "02_grid_cells_and_anchors.html" in local_links(site / "01_ground_truth.html")  # "what's next"
    assert {"04_iou.html", "06_classification_loss.html", "index.html"} <= local_links(site / "05_matching.html")
    assert not any(".ipynb" in link for page in pages for link in local_links(page))


def test_no_bare_boolean_output_and_no_harness_marker_on_a_page(site):
    nb = nbformat.read(series()[1], as_version=4)
    bools = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if o.output_type == "execute_result" and o.data.get("text/plain") in ("True", "False")]
    assert bools, "the stored 02 shows the checks' return value: the test would prove nothing"
    page = page_copy(nb, [p.stem for p in series()], series()[1].stem)
    assert not [o for c in page.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "execute_result" and o.data.get("text/plain") in ("True", "False")]
    for html in site.glob("*.html"):
        assert "NBVAL" not in html.read_text(encoding="utf-8"), html.name


def test_the_key_is_marked_on_every_page_and_in_its_file_names(tmp_path):
    pages = export_series(tmp_path, only="0", key=True)
    assert pages and all(p.name.startswith(KEY_PREFIX) for p in pages)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p.name for p in pages] + ["key-index.html"])
    for page in [*pages, tmp_path / "key-index.html"]:
        text = page.read_text(encoding="utf-8")
        assert "Instructors&#x27; key" in text or "Instructors' key" in text, page.name
        assert all(link.startswith(KEY_PREFIX) for link in local_links(page)), page.name
