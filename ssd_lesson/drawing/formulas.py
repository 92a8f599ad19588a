"""The notebooks' formulas, typeset at export time, so the HTML pages show them without a network.

The series writes its formulas in TeX between ``$ ... $`` (inline) and ``$$ ... $$`` (display).
In JupyterLab, MathJax typesets them; an exported page would load MathJax from a CDN, and
offline it would show the TeX source. :func:`typeset_markdown` replaces each formula by a
small SVG picture of it (drawn by matplotlib's mathtext, which ships with the lesson's
dependencies), embedded in the page as a ``data:`` URI with the TeX as its ``alt`` text.

mathtext knows most of TeX's math; the few commands the notebooks use that it lacks are
rewritten first (:data:`REWRITES`: ``\\tfrac`` as ``\\frac``, ``\\big(`` ... ``\\big)`` as
``\\left(`` ... ``\\right)``). A formula it still cannot read raises a ``ValueError`` that names it.
"""
from __future__ import annotations

import base64
import html
import io
import re

__all__ = ["REWRITES", "typeset", "typeset_markdown", "formulas_in"]

REWRITES = ((r"\tfrac", r"\frac"), (r"\dfrac", r"\frac"), (r"\big(", r"\left("), (r"\big)", r"\right)"),
            (r"\big[", r"\left["), (r"\big]", r"\right]"), (r"\Big(", r"\left("), (r"\Big)", r"\right)"))
FONT_PT = 10.5  # 14 px, the size of the exported page's body text
# code spans and fenced code are left alone; then $$display$$ before $inline$ (not across a blank line)
_CODE = re.compile(r"```[\s\S]*?```|`[^`\n]*`")
_MATH = re.compile(r"\$\$([\s\S]+?)\$\$|(?<![\\$])\$(?!\s)((?:[^$\n]|\n(?!\s*\n))+?)(?<![\s\\])\$")


def _mathtext(tex: str) -> str:
    for old, new in REWRITES:
        tex = tex.replace(old, new)
    return tex


def typeset(tex: str, display: bool = False, size: float = FONT_PT) -> tuple[str, float, float, float]:
    """One formula ``tex`` (no dollars) as ``(svg, width, height, depth)``, sizes in points; ``depth``
    is how far the formula reaches below its baseline. Raises ``ValueError`` naming a formula mathtext
    cannot read."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import MathTextParser

    if not tex.strip():
        raise ValueError("empty formula: nothing between the dollar signs")
    s = f"${_mathtext(tex.strip())}$"
    prop = FontProperties(size=size * (1.15 if display else 1.0))
    try:
        width, height, depth, _, _ = MathTextParser("path").parse(s, dpi=72, prop=prop)
    except ValueError as err:
        raise ValueError(f"cannot typeset the formula ${tex}$ (mathtext: {str(err).splitlines()[-1]})") from None
    pad = 1.0  # points of room around the glyphs, so no stroke is clipped
    fig = Figure(figsize=((width + 2 * pad) / 72.0, (height + 2 * pad) / 72.0))
    fig.text(pad / (width + 2 * pad), (depth + pad) / (height + 2 * pad), s, fontproperties=prop)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "ssd-lesson"}):
        fig.savefig(buf, format="svg", dpi=72, transparent=True, metadata={"Date": None, "Creator": None})
    return buf.getvalue(), width + 2 * pad, height + 2 * pad, depth + pad


def _img(tex: str, display: bool) -> str:
    svg, w, h, depth = typeset(tex, display)
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
    style = (f"display:block;margin:0.6em auto;width:{w:.1f}pt;height:{h:.1f}pt" if display else
             f"display:inline;width:{w:.1f}pt;height:{h:.1f}pt;vertical-align:-{depth:.1f}pt")
    return f'<img class="formula" src="{uri}" alt="{html.escape(tex.strip(), quote=True)}" style="{style}">'


def formulas_in(markdown: str) -> list[tuple[str, bool]]:
    """Every formula of a markdown text, outside code, as ``(tex, display)`` in order."""
    found: list[tuple[str, bool]] = []
    for part in _CODE.split(markdown):
        found += [(m[1], True) if m[1] is not None else (m[2], False) for m in _MATH.finditer(part)]
    return found


def typeset_markdown(markdown: str) -> str:
    """``markdown`` with each formula outside code replaced by an ``<img>`` of it (see the module docstring)."""
    def math(prose: str) -> str:
        return _MATH.sub(lambda m: _img(m[1], True) if m[1] is not None else _img(m[2], False), prose)

    out, last = [], 0
    for code in _CODE.finditer(markdown):
        out += [math(markdown[last:code.start()]), code[0]]
        last = code.end()
    return "".join(out) + math(markdown[last:])
