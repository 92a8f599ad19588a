"""The HTML export as instructors hand it out: every page shows every figure and formula, widgets included, offline.

The export of the committed (already executed) notebooks is opened in Chromium with
every request that is not a file:// one aborted; the widget cells must show their
figure, every formula must show as a picture (no ``$`` or TeX command left as text), and
no page may raise a JavaScript error or ask the network for anything. Two quick tests without a browser
check where the widget's static figure comes from.
"""
from __future__ import annotations

import base64
import re

import nbformat
import pytest

from ssd_lesson.drawing.formulas import formulas_in
from ssd_lesson.commands.notebooks import WIDGET_VIEW, export_series, series, static_widgets

IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml")


def widget_cells(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]


def test_widget_display_data_carries_its_own_figure():
    from ssd_lesson import make_anchors
    from ssd_lesson.course.lesson import example_activations, load_example
    from ssd_lesson.course.widgets import BoxWidget

    ex, anchors = load_example(), make_anchors()
    _, box_actns, _ = example_activations(ex, anchors)
    w = BoxWidget(ex, anchors, box_actns, image_format="jpeg")
    data = w._repr_mimebundle_()
    assert WIDGET_VIEW in data and data[WIDGET_VIEW]["model_id"] == w.widget.model_id
    assert base64.b64decode(data["image/jpeg"]) == w.image.value  # the widget's own figure, as it is now
    w.set(dx=0.0)
    assert base64.b64decode(w._repr_mimebundle_()["image/jpeg"]) == w.image.value != base64.b64decode(data["image/jpeg"])


def test_static_copy_turns_every_saved_widget_into_its_figure():
    found = 0
    for path in series():
        nb = nbformat.read(path, as_version=4)
        static, missing = static_widgets(nb)
        assert missing == [], f"{path.name}: widget outputs with no figure: {missing}"
        assert "widgets" not in static.metadata  # so the page loads no widget renderer from a CDN
        state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
        for i in widget_cells(nb):
            found += 1
            (data,) = [o.data for o in static.cells[i].outputs if "text/plain" in o.get("data", {})
                       and any(m in o.data for m in IMAGE_MIMES)]
            assert WIDGET_VIEW not in data
            img = data.get("image/jpeg") or data.get("image/png")
            saved = [b["data"] for m in state.values() if m["model_name"] == "ImageModel" for b in m["buffers"]]
            assert img in saved, f"{path.name} cell {i}: the figure is not one of the saved Image widgets'"
        assert nbformat.read(path, as_version=4) == nb  # the notebook itself is left alone
    assert found == 8  # 02 AnchorWidget, 03 BoxWidget, 04 IouWidget, 05 ThresholdWidget, 06 FocalWidget, 08 FollowBox,
    #                    10 DetectionWidget, 12 MiningWidget (the series as re-executed with them)


@pytest.mark.browser
def test_exported_pages_show_every_figure_offline(browser, workdir, out_dir):
    pages = export_series(workdir / "html")  # the committed notebooks, as stored (no re-execution)
    assert [p.stem for p in pages] == [p.stem for p in series()]
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    blocked: list[str] = []

    def only_files(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_files)
    report = []
    try:
        for page_path, nb_path in zip(pages, series()):
            nb = nbformat.read(nb_path, as_version=4)
            errors: list[str] = []
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(f"{e.name}: {e.message}"))
            page.goto(page_path.as_uri(), wait_until="load")
            page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=30_000)
            images = page.evaluate("() => Array.from(document.images).map(i => i.naturalWidth)")
            figures = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                          if any(m in o.get("data", {}) for m in IMAGE_MIMES) or WIDGET_VIEW in o.get("data", {}))
            assert len(images) >= figures and all(w > 0 for w in images), \
                f"{page_path.name}: {len(images)} images ({sorted(images)[:5]}...) for {figures} figure outputs"
            for i in widget_cells(nb):
                cell = page.locator(f'[id="cell-id={nb.cells[i].id}"]')
                img = cell.locator(".jp-OutputArea-output img")
                assert img.count() == 1, f"{page_path.name}: widget cell {i} shows {img.count()} images"
                assert img.evaluate("i => i.complete && i.naturalWidth > 100 && i.naturalHeight > 100")
                cell.screenshot(path=str(out_dir / f"html_{nb_path.stem}_widget_cell.png"))
            formulas = sum(len(formulas_in(c.source)) for c in nb.cells if c.cell_type == "markdown")
            shown = page.evaluate("""() => Array.from(document.querySelectorAll('.jp-MarkdownOutput img.formula'))
                                       .filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length""")
            assert shown == formulas, f"{page_path.name}: {shown} formulas drawn of {formulas}"
            prose = page.evaluate("() => Array.from(document.querySelectorAll('.jp-MarkdownOutput'), e => e.innerText)")
            tex = [t for t in prose if "$" in t or re.search(r"\\(frac|sum|alpha|gamma|sigma|mathcal|text|pm)\b", t)]
            assert tex == [], f"{page_path.name} shows TeX as text: {[t[:120] for t in tex]}"
            page.wait_for_timeout(200)  # let late scripts fail, if they are to
            assert errors == [], f"{page_path.name} raises offline: {errors}"
            if formulas:
                page.locator("img.formula").first.evaluate("i => i.scrollIntoView()")
                page.screenshot(path=str(out_dir / f"html_{nb_path.stem}_formula.png"))
            page.close()
            report.append((page_path.name, len(images)))
    finally:
        context.close()
    # Nothing the page needs comes from the network: no MathJax (the formulas are typeset at export time),
    # no widget renderer, no require.js.
    assert blocked == [], f"pages asked the network for {sorted(set(blocked))}"
    print("images per exported page:", report)


def test_cli_exports_the_stored_notebooks_without_executing(tmp_path, capsys):
    from ssd_lesson.commands.notebooks import notebooks_main

    assert notebooks_main(["--html", str(tmp_path), "--only", "05_"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.html")) == ["05_matching.html", "index.html"]
    page = tmp_path / "05_matching.html"
    assert str(page) in capsys.readouterr().out
    html = page.read_text(encoding="utf-8")
    assert "require.min.js" not in html and "html-manager" not in html and WIDGET_VIEW not in html
    assert "mathjax" not in html.lower()  # the formulas are pictures: no typesetter to fetch
    nb = nbformat.read(series()[4], as_version=4)
    (i,) = widget_cells(nb)
    cell = html.split(f'id="cell-id={nb.cells[i].id}"', 1)[1].split('class="jp-Cell ', 1)[0]
    assert re.search(r'<img [^>]*src="data:image/jpeg;base64,', cell)  # the widget's figure, in its own cell


@pytest.mark.browser
def test_the_site_opens_at_its_index_and_every_link_leads_somewhere(browser, workdir):
    """An instructor publishes the folder: from ``index.html`` every link of every page, followed in the
    browser, opens a page of the site (the article's link goes out, the only one that does)."""
    from ssd_lesson.commands.site import ARTICLE_URL

    export_series(workdir / "site")
    index = (workdir / "site" / "index.html").as_uri()
    context = browser.new_context()
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort())
    page = context.new_page()
    seen, todo, outside = set(), [index], set()
    try:
        while todo:
            url = todo.pop()
            if url in seen:
                continue
            seen.add(url)
            response = page.goto(url, wait_until="domcontentloaded")
            assert response is None or response.ok, url
            assert page.title(), f"{url}: a page without a title"
            for href in page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)"):
                target = href.split("#")[0]
                if target.startswith("file://"):
                    todo.append(target)
                else:
                    outside.add(href)
    finally:
        context.close()
    pages = {p.as_uri() for p in (workdir / "site").glob("*.html")}
    assert seen == pages, f"not reached from the index: {sorted(pages - seen)}; missing: {sorted(seen - pages)}"
    assert ARTICLE_URL in outside
