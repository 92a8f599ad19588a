"""Small readers shared by the tests that look inside executed notebooks and drawn figures."""
from __future__ import annotations

import nbformat
from matplotlib.patches import Rectangle


def tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    """The one cell of ``nb`` carrying ``tag``."""
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def stdout(cell: nbformat.NotebookNode) -> str:
    """What ``cell`` printed to stdout."""
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def boxes_in(ax, prefix: str = "box:") -> dict:
    """``{gid: (y0, x0, y1, x1)}`` of the box rectangles drawn on ``ax``."""
    out = {}
    for p in ax.patches:
        if isinstance(p, Rectangle) and (p.get_gid() or "").startswith(prefix):
            x0, y0 = p.get_xy()
            out[p.get_gid()] = (y0, x0, y0 + p.get_height(), x0 + p.get_width())
    return out
