"""Drawing primitives for the figures: the image on the unit square, a box, a grid, labels.

Every box is ``(y0, x0, y1, x1)`` as fractions of the image. Each axes shows the
image on the unit square (x right, y down), so a box is drawn where its numbers
say, and a *margin* of white around the image lets boxes that leave it be seen.

Figures are built with :class:`matplotlib.figure.Figure`, not pyplot: nothing is
shown or kept open behind the caller's back. In a notebook, end a cell with the
returned figure (under ``%matplotlib inline``) or call ``display(fig)``.

Colours: ground-truth box ``i`` is always ``GT_COLORS[i]``; in Figs. 1-3 a panel's box
``n`` is ``BOX_COLORS[n]`` in both the anchor and the predicted column, so each anchor
box can be followed to its predicted box.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ContextManager, NamedTuple, Optional, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from .placement import placer_for
from ..core.matching import PAD_LABEL
from ..data.voc import VOC_CLASSES

__all__ = ["Scene", "as_scene", "GT_COLORS", "BOX_COLORS", "BG_COLOR", "default_margin", "fit_margin", "fit_margins", "show_image",
           "draw_box", "draw_grid", "draw_ground_truth", "show_detections", "plot_photo_annotations", "notebook_style",
           "notebook_style_scope", "NOTEBOOK_RC"]

GT_COLORS = [matplotlib.colormaps["tab10"](i) for i in (0, 1, 2, 3, 4, 6, 8, 9, 5, 7)]  # blue, orange, green, red, ...
BOX_COLORS = ["#e6194b", "#3cb44b", "#ffd000", "#4363d8", "#f58231", "#911eb4", "#00c8d7", "#f032e6",
              "#9acd32", "#008080", "#9a6324", "#800000"]  # bright, distinct; the fastai notebook cycles 12 too
BG_COLOR = "#9a9a9a"
#: The dark box behind a box's label (its edge takes the box's colour), shared by every figure that names boxes.
LABEL_BOX = dict(boxstyle="square,pad=0.15", facecolor="black", alpha=0.75, linewidth=1.2)


class Scene(NamedTuple):
    """The ground truth the figures draw: the model-sized image and its labelled boxes.

    image: ``(H, W, 3)`` uint8 or float in [0, 1].
    boxes: ``(G, 4)`` ``(y0, x0, y1, x1)`` fractions; labels: ``(G,)`` class ids (padding rows dropped).
    class_names: the vocabulary, e.g. the 20 VOC classes; id ``len(class_names)`` is background.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = VOC_CLASSES

    def gt_label(self, i: int) -> str:
        """``'i: class'``, as in the top-left corner of each ground-truth box."""
        return f"{i}: {self.class_names[int(self.labels[i])]}"


def to_numpy(x: Any) -> np.ndarray:
    """``x`` (a tensor, on any device, or anything array-like) as a numpy array of the same shape."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_box_array(x: Any) -> np.ndarray:
    """``(A, 4)`` numpy boxes from a tensor or array of shape ``(A, 4)`` or ``(1, A, 4)``."""
    a = to_numpy(x).astype(float)
    return a[0] if a.ndim == 3 else a


def as_scene(example: Any, class_names: Sequence[str] = VOC_CLASSES) -> Scene:
    """A :class:`Scene` from a ``data.Example`` (its 224x224 image), a Scene, or ``(image, boxes, labels)``."""
    if isinstance(example, Scene):
        return example
    if isinstance(example, tuple):
        image, boxes, labels = example
    else:
        image = getattr(example, "image224", None)
        image = example.image if image is None else image
        boxes, labels = example.boxes, example.labels
    boxes, labels = as_box_array(boxes).reshape(-1, 4), to_numpy(labels).reshape(-1).astype(int)
    keep = labels != PAD_LABEL  # drop padding rows
    return Scene(to_numpy(image), boxes[keep], labels[keep], tuple(class_names))


# ---------------------------------------------------------------- primitives
def default_margin(grid: int) -> float:
    """White margin (fraction of the image side) for a grid: 4x4 0.25, 2x2 0.5, 1x1 0.75."""
    return max(0.15, 0.25 * (1 + math.log2(4 / grid)))


def fit_margin(boxes: Any, base: float = 0.0, pad: float = 0.04) -> float:
    """At least ``base``, and wide enough that every box in ``(..., 4)`` ``boxes`` stays in view."""
    b = to_numpy(boxes).reshape(-1, 4)
    overshoot = max(0.0, float(-b[:, :2].min()), float(b[:, 2:].max()) - 1) if len(b) else 0.0
    return max(base, overshoot + pad if overshoot > 0 else 0.0)


def fit_margins(boxes: Any, pad: float = 0.02) -> tuple[float, float, float, float]:
    """``(top, left, bottom, right)`` white margins just wide enough for ``boxes`` ``(..., 4)``, plus ``pad``
    on each side a box leaves the image (0 on the others), as fractions of the image side."""
    b = to_numpy(boxes).reshape(-1, 4)
    if not len(b):
        return (0.0, 0.0, 0.0, 0.0)
    over = [float(-b[:, 0].min()), float(-b[:, 1].min()), float(b[:, 2].max()) - 1, float(b[:, 3].max()) - 1]
    return tuple(o + pad if o > 0 else 0.0 for o in over)


def show_image(ax: Axes, image: np.ndarray, margin: Any = 0.0) -> None:
    """Draw ``image`` on the unit square of ``ax`` with ``margin`` of white around it; no ticks.

    ``margin``: one width for every side, or ``(top, left, bottom, right)`` (:func:`fit_margins`).
    """
    top, left, bottom, right = (float(margin),) * 4 if np.ndim(margin) == 0 else (float(m) for m in margin)
    ax.imshow(image, extent=(0, 1, 1, 0), interpolation="bilinear")
    ax.set_xlim(-left, 1 + right)
    ax.set_ylim(1 + bottom, -top)  # y grows downwards, as in the image
    ax.set_facecolor("white")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(max(top, left, bottom, right) == 0)


def draw_box(ax: Axes, box: Any, color: Any, label: Optional[str] = None, lw: float = 1.5, ls: str = "-",
             alpha: float = 1.0, fontsize: float = 8, gid: Optional[str] = None,
             priority: float = 0.0, drop_label_if_crowded: bool = False) -> tuple[Rectangle, Optional[Text]]:
    """Outline one ``(y0, x0, y1, x1)`` box; ``label`` goes on a dark patch in its top-left corner, or
    where :mod:`ssd_lesson.drawing.placement` finds room at draw time (higher ``priority`` placed first; with
    ``drop_label_if_crowded``, left out where no room is free rather than drawn over another)."""
    y0, x0, y1, x1 = (float(v) for v in box)
    rect = Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, lw=lw, ls=ls, alpha=alpha, gid=gid)
    ax.add_patch(rect)
    text = None
    if label is not None:
        text = ax.text(x0, y0, label, color="white", fontsize=fontsize, va="top", ha="left", alpha=alpha,
                       bbox={**LABEL_BOX, "edgecolor": color}, clip_on=True, gid=gid)
        placer_for(ax).add(text, box, color, priority=priority, drop_if_crowded=drop_label_if_crowded)
    return rect, text


def draw_grid(ax: Axes, grid: int, anchor_dots: bool = True) -> None:
    """Thin white lines between the ``grid x grid`` cells, and a small white dot at each anchor."""
    for t in np.linspace(0, 1, grid + 1)[1:-1]:
        ax.plot([t, t], [0, 1], color="white", lw=0.8, alpha=0.9)
        ax.plot([0, 1], [t, t], color="white", lw=0.8, alpha=0.9)
    if anchor_dots:
        c = (np.arange(grid) + 0.5) / grid
        xs, ys = np.meshgrid(c, c)
        ax.scatter(xs.ravel(), ys.ravel(), s=9, color="white", edgecolors="black", linewidths=0.4, zorder=3)


def figure_grid(nrows: int, ncols: int, panel: float = 3.0, dpi: int = 100) -> tuple[Figure, np.ndarray]:
    """A figure of ``nrows x ncols`` panels of ``panel`` inches, and its ``(nrows, ncols)`` array of axes."""
    fig = Figure(figsize=(ncols * panel, nrows * panel * 1.08), dpi=dpi, layout="constrained")
    return fig, np.asarray(fig.subplots(nrows, ncols, squeeze=False))


def draw_ground_truth(ax: Axes, scene: Scene, margin: float = 0.0, fontsize: float = 9) -> None:
    """The image with each ground-truth box and ``'i: class'`` in its top-left corner."""
    show_image(ax, scene.image, margin)
    for i, box in enumerate(scene.boxes):
        draw_box(ax, box, GT_COLORS[i % len(GT_COLORS)], scene.gt_label(i), lw=2, fontsize=fontsize, gid=f"gt:{i}")


def panel_figure(n: int, ncols: int, panel: float) -> tuple[Figure, np.ndarray]:
    """``n`` panels on a grid of ``ncols`` columns; the spare axes are switched off."""
    ncols = max(1, min(n, ncols))
    fig, axes = figure_grid(max(1, math.ceil(n / ncols)), ncols, panel)
    fig.set_layout_engine("compressed")  # square image panels: no gaps, titles kept inside the figure
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    return fig, axes.ravel()


def show_detections(ax: Axes, image: Any, boxes: Any, labels: Any, scores: Optional[Any],
                    class_names: Sequence[str], *, min_score: float = 0.0, title: Optional[str] = None,
                    hits: Optional[Any] = None) -> Axes:
    """Draw ``image`` and its detections on ``ax``, each box labelled ``class score``.

    ``image``: ``(H, W, 3)`` uint8 or a normalised ``(3, H, W)`` tensor; ``boxes``: ``(N, 4)``
    ``(y0, x0, y1, x1)`` pixels of that image (as :func:`ssd_lesson.model.infer.predict` returns);
    ``scores=None`` draws ground truth (no score). ``hits``: ``(N,)`` bool
    (:func:`~ssd_lesson.model.metrics.detection_hits`); the false alarms are then drawn thin, labelled
    with their score only, and placed after every hit's label.
    """
    from ..data.transforms import denormalize

    if isinstance(image, torch.Tensor):
        image = denormalize(image) if image.is_floating_point() else image.permute(1, 2, 0).cpu().numpy()
    ax.imshow(image)
    ax.set_axis_off()
    colours = [BOX_COLORS[i % len(BOX_COLORS)] for i in range(len(class_names))]  # bright: no grey on grey brick
    outline = [patheffects.withStroke(linewidth=3, foreground="black")]
    hit = None if hits is None else to_numpy(hits).astype(bool).reshape(-1)
    for i, ((y0, x0, y1, x1), lab) in enumerate(zip(to_numpy(boxes).tolist(), to_numpy(labels).tolist())):
        if scores is not None and float(scores[i]) < min_score:
            continue
        false_alarm = hit is not None and not hit[i]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colours[lab], lw=1.0 if false_alarm else 2,
                               path_effects=None if false_alarm else outline))  # a false alarm: a thin line only
        text = ("" if false_alarm else class_names[lab] + " ") + ("" if scores is None else f"{float(scores[i]):.2f}")
        t = ax.text(x0 + 2, y0 + 2, text.strip(), va="top", color="white", fontsize=9, path_effects=outline,
                    clip_on=True)
        placer_for(ax).add(t, (y0, x0, y1, x1), colours[lab],
                           priority=(0.0 if scores is None else float(scores[i])) - (1.0 if false_alarm else 0.0))
    if title:
        ax.set_title(title)
    return ax


def plot_photo_annotations(out_path: str | Path, records: Optional[Sequence[Any]] = None) -> Path:
    """Save the check plot of the offline photos: each with its numbered boxes ``i: class`` (difficult dashed)."""
    from ..data.collage import photo_records
    from ..data.transforms import load_image

    records = photo_records() if records is None else records
    cols = 3
    rows = -(-len(records) // cols)
    fig = Figure(figsize=(5 * cols, 4.4 * rows), layout="tight")
    axes = np.atleast_1d(fig.subplots(rows, cols))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, r in zip(np.ravel(axes), records):
        ax.imshow(load_image(r.image_path))
        for i, ((y0, x0, y1, x1), lab, diff) in enumerate(zip(r.boxes, r.labels, r.difficult)):
            colour = "yellow" if diff else "white"
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="black", lw=3))
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.5, ls="--" if diff else "-"))
            ax.text(x0 + 3, y0 + 3, f"{i}: {VOC_CLASSES[lab]}{' (difficult)' if diff else ''}", va="top",
                    color=colour, fontsize=9, bbox=dict(facecolor="black", alpha=0.6, pad=1, lw=0))
        ax.set_title(f"{r.image_path.parent.name}/{r.image_path.name}  {r.width}x{r.height}", fontsize=9)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=80)
    return out_path


#: The series' plotting style, the rcParams :func:`notebook_style` sets (figures measured at 90 dpi, 9 pt text).
NOTEBOOK_RC = {"figure.dpi": 90, "savefig.dpi": 90, "font.size": 9, "figure.max_open_warning": 0}


def notebook_style_scope() -> ContextManager[None]:
    """The series' plotting style for a ``with`` block only (scripts and tests): matplotlib's rcParams
    are put back after it."""
    return matplotlib.rc_context(NOTEBOOK_RC)


def notebook_style(figure_format: Optional[str] = None, jpeg_quality: int = 75) -> None:
    """One plotting style for the series (:data:`NOTEBOOK_RC`, process-wide: called inside a notebook's
    kernel); in a Jupyter kernel, figures shown inline as ``figure_format``.

    Does what ``%matplotlib inline`` does first (its defaults would override the style), so a
    notebook needs no magic line of its own. Outside a kernel (a terminal IPython, a script) figures
    are not stored inline: matplotlib's own backend is kept, and a ``figure_format`` given is set
    aside with one line saying why.
    """
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        get_ipython = set_matplotlib_formats = None
    shell = get_ipython() if get_ipython is not None else None
    in_kernel = shell is not None and getattr(shell, "kernel", None) is not None  # Jupyter's ZMQ shell
    if in_kernel:
        shell.run_line_magic("matplotlib", "inline")
    matplotlib.rcParams.update(NOTEBOOK_RC)
    if in_kernel and figure_format is not None:
        kw = {"pil_kwargs": {"quality": int(jpeg_quality)}} if figure_format in ("jpeg", "jpg") else {}
        set_matplotlib_formats(figure_format, **kw)
    elif shell is not None and figure_format is not None:
        print(f"figure_format={figure_format!r} not applied: it sets how a notebook stores inline figures, and this "
              f"{type(shell).__name__} is not a Jupyter kernel (figures use matplotlib's "
              f"{matplotlib.get_backend()} backend)")
