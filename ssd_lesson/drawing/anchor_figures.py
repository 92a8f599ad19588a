"""Notebook 2's figures: what a grid is made of (one cell picked out), and the anchor boxes of a grid.

Boxes are ``(y0, x0, y1, x1)`` fractions of the image; the image lies on the unit square.
"""
from __future__ import annotations

from typing import Any

from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from ..core.anchors import Anchors
from .draw import BOX_COLORS, as_scene, draw_box, draw_grid, figure_grid, fit_margin, show_image, to_numpy
from .figures import TIGHT, draw_grid_panel

__all__ = ["cell_figure", "anchor_grid_figure"]

CELL_BOX_COLOR = BOX_COLORS[2]  # the picked cell's anchor box: yellow, clear on the photo and on the white lines
_OUTLINE = [patheffects.withStroke(linewidth=2.5, foreground="black")]


def cell_figure(example: Any, anchors: Anchors, grid: int = 4, cell: int = 11, scale: int = 0,
                size: float = 5.4) -> Figure:
    """What a panel of Figs. 1-3 is made of, one cell picked out (notebook 2, before Fig. 1).

    The ``grid x grid`` grid cells (thin white lines), each numbered in its top-left corner, row by row
    (the number its anchor boxes carry in Figs. 1-3); each cell's anchor (white dot, the cell's centre);
    cell ``cell`` outlined, and around its anchor its anchor box of ``scale`` (a (zoom, ratio) panel of
    Figs. 1-3). The legend says which is which, and gives the box's size and model-output index.
    """
    scene = as_scene(example)
    gi = anchors.spec.grids.index(grid)
    if not 0 <= cell < grid * grid:
        raise ValueError(f"cell must be a cell number 0..{grid * grid - 1} of the {grid}x{grid} grid, got {cell}")
    a = int(anchors.select(grid, scale)[cell])
    box = to_numpy(anchors.corners[a]).astype(float)
    h, w = anchors.spec.scales(gi)[scale]
    row, col = divmod(cell, grid)
    fig, axes = figure_grid(1, 1, size)
    ax = axes[0, 0]
    show_image(ax, scene.image, fit_margin(box, TIGHT))
    draw_grid(ax, grid)
    side = 1 / grid
    for n in range(grid * grid):  # the cell numbers, in the corner the cell's box labels take in Figs. 1-3
        r, c = divmod(n, grid)
        ax.text(c * side + 0.01, r * side + 0.01, str(n), color="white", fontsize=9, va="top", ha="left",
                path_effects=_OUTLINE, gid=f"cell:{n}")
    ax.add_patch(Rectangle((col * side, row * side), side, side, facecolor=(1, 1, 1, 0.22), edgecolor="white", lw=3,
                           gid=f"cell:{cell}"))
    draw_box(ax, box, CELL_BOX_COLOR, None, lw=2.4, gid=f"box:{a}")  # the only box: the legend names it
    ax.set_title(f"the {grid}x{grid} grid: {grid * grid} cells, numbered row by row", fontsize=11)
    fig.legend(handles=[Line2D([], [], color="white", lw=1.5, path_effects=_OUTLINE, label="grid-cell boundary"),
                        Line2D([], [], ls="none", marker="o", ms=5, mfc="white", mec="black", label="anchor: a cell's centre"),
                        Patch(facecolor="0.9", edgecolor="black", lw=1.5, label=f"cell {cell}: row {row}, column {col}"),
                        Line2D([], [], color=CELL_BOX_COLOR, lw=2.4,
                               label=f"its anchor box, {h:g} x {w:g} cells:\n{anchors.spec.scale_label(gi, scale)}\n(model output {a})")],
               loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return fig


def anchor_grid_figure(example: Any, anchors: Anchors, grid: int = 4, panel: float = 3.2) -> Figure:
    """Fig. 1 (grid 4), 2 (grid 2) or 3 (grid 1), its middle column only: the anchor boxes of one grid,
    a panel per (zoom, ratio), three to a row (the lesson's zooms down, its ratios across).

    Every panel has the same margin, just wide enough for the grid's largest boxes, so the image is the
    same size in each, and a box that lies on the image's edge (the 1x1 grid's zoom-1 square) is drawn
    over the white around it, where it can be seen.
    """
    scene = as_scene(example)
    gi = anchors.spec.grids.index(grid)
    k = anchors.spec.k(gi)
    ncols = min(3, k)
    nrows = -(-k // ncols)
    margin = fit_margin(anchors.corners[to_numpy(anchors.grid_index) == gi], TIGHT)
    fig, axes = figure_grid(nrows, ncols, panel)
    for s, ax in enumerate(axes.flat):
        if s < k:
            draw_grid_panel(ax, scene, anchors, anchors.corners, grid, s, max(margin, TIGHT))
        else:
            ax.set_visible(False)
    fig.suptitle(f"the anchor boxes of the {grid}x{grid} grid", fontsize=11)
    return fig
