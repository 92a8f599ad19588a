"""Small readers shared by the tests that look inside executed notebooks and drawn figures,
and the synthetic example they draw."""
from __future__ import annotations

from types import SimpleNamespace

import nbformat
from matplotlib.patches import Rectangle

from ssd_lesson import make_anchors, ssd_loss
from ssd_lesson.dissect import example_activations, synthetic_example


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


def synthetic_case() -> SimpleNamespace:
    """The synthetic example with seeded activations (no checkpoint) and its loss in both match modes.

    Fields: ``ex``, ``anchors``, ``cl``, ``ba`` (class and box activations), ``res`` and
    ``by_anchors`` (:class:`~ssd_lesson.loss.SSDLossResult` matching on predictions / anchors).
    """
    ex = synthetic_example()
    anchors = make_anchors()
    cl, ba, _ = example_activations(ex, anchors, seed=0, checkpoint=False, verbose=False)
    _, gb, gl = ex.batch()
    return SimpleNamespace(ex=ex, anchors=anchors, cl=cl, ba=ba, res=ssd_loss(cl, ba, gb, gl, anchors),
                           by_anchors=ssd_loss(cl, ba, gb, gl, anchors, match_on="anchors"))
