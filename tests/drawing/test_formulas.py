"""The exported pages' formulas: every formula of the series typeset as a picture, nothing else touched."""
from __future__ import annotations

import base64
import html
import re
import xml.etree.ElementTree as ET

import nbformat
import pytest

from ssd_lesson.drawing.formulas import formulas_in, typeset, typeset_markdown
from ssd_lesson.commands.notebooks import series

IMG = re.compile(r'<img class="formula" src="data:image/svg\+xml;base64,([^"]+)" alt="([^"]*)" style="([^"]*)">')


def test_every_formula_of_the_series_becomes_a_picture_with_its_tex_as_alt():
    n = 0
    for path in series():
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "markdown":
                continue
            found = formulas_in(cell.source)
            out = typeset_markdown(cell.source)
            imgs = IMG.findall(out)
            assert [html.unescape(alt) for _, alt, _ in imgs] == [tex.strip() for tex, _ in found], path.name
            assert "$" not in IMG.sub("", out), f"{path.name}: a dollar left as text"
            for b64, _, _ in imgs:
                svg = ET.fromstring(base64.b64decode(b64))
                assert svg.tag.endswith("svg") and float(svg.get("width").rstrip("pt")) > 3
            n += len(found)
    assert n >= 25  # notebooks 06-08 write their losses as formulas


def test_inline_and_display_formulas_are_found_as_markdown_writes_them():
    md = "cost `$x$` in code, $a_1$ inline, $5 or $6 in prose,\n$$\\frac{1}{C}$$\nand ```\n$y$\n```"
    assert formulas_in(md) == [("a_1", False), ("\\frac{1}{C}", True)]
    out = typeset_markdown(md)
    assert "`$x$`" in out and "```\n$y$\n```" in out and "$5 or $6" in out  # code and prices left alone
    (inline, display) = IMG.findall(out)
    assert "vertical-align:-" in inline[2] and "display:block" in display[2]


def test_rewritten_commands_typeset_like_the_ones_mathtext_knows():
    assert typeset(r"\tfrac{1}{4}")[0] == typeset(r"\frac{1}{4}")[0]
    assert typeset(r"\big(x\big)")[0] == typeset(r"\left(x\right)")[0]
    svg, w, h, depth = typeset(r"\frac{1}{C} \sum_{a=1}^{189} x_a")
    _, w1, h1, depth1 = typeset("x")
    assert h > 2 * h1 and depth > depth1 and w > 3 * w1  # a fraction and a sum reach above and below a letter


def test_a_formula_mathtext_cannot_read_is_named():
    with pytest.raises(ValueError, match=r"\\nosuchcommand"):
        typeset(r"a + \nosuchcommand{b}")
    with pytest.raises(ValueError, match="empty formula"):
        typeset(" ")
