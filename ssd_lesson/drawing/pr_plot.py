"""One class's precision-recall curve and what VOC's two APs make of it (matplotlib, no pyplot).

:func:`pr_curve_figure` draws, from a :class:`~ssd_lesson.model.voc_eval.VOCResult`:

* the curve itself: precision against recall down the score-sorted detections (grey);
* the all-point AP of VOC2010 and later: the curve with its precision made non-increasing
  (each point takes the best precision at its recall or beyond), the shaded area under it;
* the 11-point AP of VOC2007: at recall 0, 0.1, ..., 1 the best precision at that recall or
  beyond (red stems); the AP is the mean of those 11 heights.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..model.voc_eval import VOC07_RECALLS, VOCResult, average_precision

__all__ = ["draw_pr_curve", "pr_curve_figure"]


def _class_index(cls: int | str, class_names: Optional[Sequence[str]], n: int) -> int:
    if isinstance(cls, str):
        if class_names is None or cls not in class_names:
            raise ValueError(f"unknown class {cls!r}" + (f"; classes: {', '.join(class_names)}" if class_names else
                                                        " (pass class_names to name classes)"))
        return list(class_names).index(cls)
    if not 0 <= int(cls) < n:
        raise ValueError(f"class index {cls} out of range 0..{n - 1}")
    return int(cls)


def draw_pr_curve(ax: Axes, result: VOCResult, cls: int | str, class_names: Optional[Sequence[str]] = None) -> Axes:
    """Draw class ``cls`` (index, or name in ``class_names``) of ``result`` on ``ax``; see the module docstring."""
    c = _class_index(cls, class_names, len(result.ap))
    name = class_names[c] if class_names is not None else f"class {c}"
    rec, prec = result.recall[c], result.precision[c]
    if int(result.n_positives[c]) == 0:
        raise ValueError(f"{name} has no non-difficult ground-truth box: no recall, no curve")
    # the all-point envelope, as a step function from recall 0 to the last recall
    env = prec.flip(0).cummax(0).values.flip(0) if prec.numel() else prec
    xs = torch.cat([rec.new_zeros(1), rec]).tolist()
    ys = torch.cat([env[:1] if env.numel() else env.new_zeros(1), env]).tolist()
    ap_all = average_precision(rec, prec, use_07_metric=False)
    ap07 = average_precision(rec, prec, use_07_metric=True)
    ax.fill_between(xs, ys, step="pre", alpha=0.25, color="C0", label=f"all-point AP (area) {ap_all:.3f}")
    ax.step(xs, ys, where="pre", color="C0", lw=1.5)
    ax.plot(rec.tolist(), prec.tolist(), ".-", color="0.45", lw=0.8, ms=3, label="precision, recall down the detections")
    first = torch.searchsorted(rec.contiguous(), VOC07_RECALLS).tolist()
    heights = [float(env[i]) if i < rec.numel() else 0.0 for i in first]
    ax.vlines(VOC07_RECALLS.tolist(), 0, heights, colors="C3", lw=1.2)
    ax.plot(VOC07_RECALLS.tolist(), heights, "o", color="C3", ms=5, label=f"11-point AP (mean of the dots) {ap07:.3f}")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(f"recall (of {int(result.n_positives[c])} non-difficult boxes)")
    ax.set_ylabel("precision")
    ax.set_title(f"{name}: {prec.numel()} detections scored, IoU > {result.options.hit_iou:g}")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def pr_curve_figure(result: VOCResult, cls: int | str, class_names: Optional[Sequence[str]] = None, *,
                    figsize: tuple[float, float] = (6.5, 4.5)) -> Figure:
    """A ``matplotlib.figure.Figure`` with :func:`draw_pr_curve` of class ``cls``."""
    fig = Figure(figsize=figsize, layout="constrained")
    draw_pr_curve(fig.add_subplot(), result, cls, class_names)
    return fig
