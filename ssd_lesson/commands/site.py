"""The exported series as a site an instructor can publish: an index, working links, nothing of the harness.

:func:`page_copy` turns one notebook into what its page shows: links between notebooks point at the
pages (``05_matching.html``, not the ``.ipynb`` the site does not hold), a bar of previous / index /
next links closes the page, and the bare ``True`` / ``False`` an exercise check returns is left out (its
printed verdict stays). :func:`write_index` writes ``index.html``: each notebook's title and first
sentence, and the article the series follows.

The instructors' key (the series with every "your turn" cell solved) is marked on every page, in a
banner, and in its file names (``key-05_matching.html``, ``key-index.html``), so that it is not
published by mistake in place of the learners' pages.
"""
from __future__ import annotations

import copy
import html
import re
from pathlib import Path
from typing import Sequence

__all__ = ["ARTICLE_TITLE", "ARTICLE_URL", "AUTHOR_NOTEBOOK_URL", "KEY_PREFIX", "page_name", "page_copy",
           "title_and_summary", "write_index"]

ARTICLE_TITLE = "All the boxes in SSD"
#: The article the series follows figure by figure; learners hold the two side by side.
ARTICLE_URL = "https://personal-record.onrender.com/post/all-the-boxes-in-ssd/"
#: The notebook of the article's author, which the article's figures come from.
AUTHOR_NOTEBOOK_URL = "https://github.com/qAp/fastai/blob/mywork/courses/dl2/pascal-multi-dissected.ipynb"
#: What the key's file names start with.
KEY_PREFIX = "key-"
KEY_BANNER = ("**Instructors' key**: every *your turn* cell of this page is solved. "
              "Not for learners; publish the pages without the `key-` prefix instead.")
_NOTEBOOK_LINK = re.compile(r"\(((\d\d_[\w-]+)\.ipynb)(#[^)]*)?\)")


def page_name(stem: str, key: bool = False) -> str:
    """``05_matching`` -> ``05_matching.html`` (``key-05_matching.html`` for the key)."""
    return f"{KEY_PREFIX if key else ''}{stem}.html"


def title_and_summary(nb) -> tuple[str, str]:
    """The notebook's title (its first heading, without the number) and the first sentence under it."""
    heading, _, rest = nb.cells[0].source.strip().partition("\n")
    title = re.sub(r"^#+\s*(\d+\s*·\s*)?", "", heading).strip()
    paragraph = " ".join(rest.strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.!?])\s", paragraph, maxsplit=1)[0]
    return title, re.sub(r"[*`]", "", sentence)


def _is_bare_bool(out) -> bool:
    return out.get("output_type") == "execute_result" and out.get("data", {}).get("text/plain") in ("True", "False")


def page_copy(nb, stems: Sequence[str], stem: str, key: bool = False):
    """A copy of ``nb`` (the notebook ``stem`` of the series ``stems``) as its page shows it."""
    import nbformat

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _NOTEBOOK_LINK.sub(lambda m: f"({page_name(m.group(2), key)}{m.group(3) or ''})", cell.source)
        elif cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if not _is_bare_bool(o)]
    i = list(stems).index(stem)
    links = [f"[← {stems[i - 1]}]({page_name(stems[i - 1], key)})"] if i > 0 else []
    links.append(f"[index]({KEY_PREFIX if key else ''}index.html)")
    links += [f"[{stems[i + 1]} →]({page_name(stems[i + 1], key)})"] if i + 1 < len(stems) else []
    nb.cells.append(nbformat.v4.new_markdown_cell("---\n\n" + " · ".join(links)))
    if key:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(KEY_BANNER))
        nb.cells.append(nbformat.v4.new_markdown_cell(KEY_BANNER))
    return nb


def write_index(html_dir: Path, notebooks: Sequence[tuple[str, object]], key: bool = False) -> Path:
    """``index.html`` (``key-index.html`` for the key) in ``html_dir``: one row per ``(stem, notebook)``."""
    rows = "\n".join(
        f'<li><a href="{page_name(stem, key)}">{html.escape(stem[:2])} · {html.escape(title)}</a>'
        f"<br><span>{html.escape(summary)}</span></li>"
        for stem, nb in notebooks for title, summary in [title_and_summary(nb)])
    heading = "ssd-lesson: instructors' key" if key else "ssd-lesson"
    banner = f'<p class="key">{html.escape(KEY_BANNER.replace("**", "").replace("*", "").replace("`", ""))}</p>' if key else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{heading}</title>
<style>body{{font-family:sans-serif;max-width:52em;margin:2em auto;line-height:1.45;padding:0 1em}}
li{{margin:.7em 0}} span{{color:#444}} .key{{background:#fde2e1;padding:.6em;border:1px solid #c33}}</style>
</head><body>
<h1>{heading}</h1>{banner}
<p>A Single-Shot Detector taken apart one step at a time, from its output activations to its loss, then
training, inference and evaluation. The series follows the article
<a href="{ARTICLE_URL}">“{ARTICLE_TITLE}”</a> (its figures come from
<a href="{AUTHOR_NOTEBOOK_URL}">the author's notebook</a>): read the two side by side.</p>
<ol style="list-style:none;padding:0">
{rows}
</ol>
</body></html>
"""
    dest = Path(html_dir) / f"{KEY_PREFIX if key else ''}index.html"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(page, encoding="utf-8")
    return dest
