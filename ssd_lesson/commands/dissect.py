"""``python -m ssd_lesson dissect``: the article's steps, headless.

Prints what the article tabulates (anchor count, output sizes, Tables 1, 2 and 4,
the positive count, the losses) and saves its figures (ground truth, Figs. 1-6,
the aside), saying which it is writing. Figures drawn over the photograph are JPEG, as the notebooks
store them (a tenth of a PNG's size); the IoU heat map, line art, is PNG. Boxes are
``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import pandas as pd
import torch

from ..drawing import plots, tables
from ..core.anchors import Anchors, make_anchors
from ..data.example import Example
from ..course.lesson import example_activations, load_example
from ..core.loss import SSDLossResult, ssd_loss
from ..core.matching import FORCED_OVERLAP
from ..core.options import LossOptions

__all__ = ["figure_names", "make_figures", "run_dissect"]


#: JPEG quality of the figures drawn over the photograph (the notebooks' figure format is JPEG too).
JPEG_QUALITY = 90


def figure_names(anchors: Anchors) -> dict[str, str]:
    """The file name of each figure; ``run_dissect`` writes these and nothing else."""
    names = {"ground_truth": "00_ground_truth.jpg"}
    for i, g in enumerate(anchors.spec.grids, start=1):
        names[f"fig{i}"] = f"fig{i}_grid_{g}x{g}.jpg"
    names.update(aside="aside_all_anchors.jpg", fig4="fig4_all_predictions.jpg", fig5="fig5_classes.jpg",
                 fig6="fig6_classes_thresholded.jpg", iou="iou_heatmap.png")
    return names


def make_figures(example: Example, anchors: Anchors, result: SSDLossResult, b: int = 0) -> dict[str, Any]:
    """Every figure of the article for image ``b`` of ``result``, keyed as in :func:`figure_names`."""
    pred = result.pred_boxes[b].detach()
    thr = result.match
    figs = {"ground_truth": plots.ground_truth_figure(example)}
    for i, g in enumerate(anchors.spec.grids, start=1):
        figs[f"fig{i}"] = plots.grid_figure(example, anchors, pred, grid=g)
    figs["aside"] = plots.all_anchors_figure(example, anchors)
    figs["fig4"] = plots.all_predictions_figure(example, anchors, pred)
    figs["fig5"] = plots.class_figure(example, anchors, pred, thr.gt_idx[b],
                                      title="Fig. 5: ground-truth class of every predicted box")
    figs["fig6"] = plots.class_figure(example, anchors, pred, thr.gt_idx[b], background=~thr.positive[b],
                                      title=f"Fig. 6: boxes with overlap <= {result.options.iou_threshold:g} become background (bg)")
    figs["iou"] = plots.iou_heatmap(result.ious, example, anchors, result.match, b)
    return figs


def _show(title: str, body: Any) -> None:
    text = body.to_string(float_format=lambda v: f"{v:.4f}") if isinstance(body, (pd.DataFrame, pd.Series)) else str(body)
    print(f"\n== {title}\n{text}")


def run_dissect(out_dir: str | Path = "ssd_lesson_out", n_rows: int = 30, seed: int = 0,
                options: LossOptions = LossOptions(), offline: bool = False,
                example: Optional[Example] = None, checkpoint: str | Path | None | Literal[False] = None,
                dpi: int = 100) -> dict[str, Any]:
    """Walk the article on the default example: print its numbers and tables, save its figures in ``out_dir``.

    ``out_dir`` is created if needed; only the files named by :func:`figure_names` are
    written (overwritten), nothing else there is touched. ``example`` defaults to
    :func:`load_example`, the activations to :func:`example_activations` (``checkpoint``
    as there). The loss is scored with ``options`` (the notebooks' ``LossOptions()`` by default).
    Returns the result, the tables and the paths written.
    """
    example = load_example(offline) if example is None else example
    print(example.source)
    anchors = make_anchors()
    class_logits, box_actns, _ = example_activations(example, anchors, seed=seed, checkpoint=checkpoint)
    _, gt_boxes, gt_labels = example.batch()
    size = example.image224.shape[0]
    print(f"\nInput {size}x{size}; output grids " + ", ".join(f"{g}x{g}" for g in anchors.spec.grids)
          + f"; {anchors.spec.k()} anchor boxes per grid cell; {len(anchors)} anchor boxes in all")
    print("Ground truth: " + (", ".join(plots.as_scene(example).gt_label(i) for i in range(gt_labels.shape[1]))
                              or "no objects: every predicted box is background (Tables 1 and 4 are empty)"))
    result = ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, anchors, options=options)
    out = {"result": result, "anchors": anchors, "example": example,
           "table1": tables.iou_table(result, n_rows), "table2": tables.match_table(result, n_rows),
           "table4": tables.regression_table(result), "losses": tables.loss_table(result)}
    print(f"IoU with ground truth computed against the {'predicted' if options.match_on == 'predictions' else 'anchor'} boxes: "
          f"{len(anchors)} x {gt_labels.shape[1]} = {len(anchors) * gt_labels.shape[1]} values")
    _show(f"Table 1: IoU of the first {n_rows} predicted boxes with each ground-truth box", out["table1"])
    _show(f"Table 2: gt_idx and gt_overlap of the first {n_rows} predicted boxes",
          out["table2"][["gt_idx", "gt_overlap", "note"]])
    forced = torch.nonzero(result.match.gt_overlap[0] == FORCED_OVERLAP).flatten().tolist()
    print(f"forced matches (overlap {FORCED_OVERLAP}) at boxes {forced}")
    n_pos = int(result.match.positive[0].sum())
    print(f"\nPositives (overlap > {options.iou_threshold:g}): {n_pos} of {len(anchors)}; the rest are background")
    _show(f"Table 4: the {n_pos} positive boxes, ground truth (gtbbox) and prediction (pbbox)", out["table4"])
    _show("Losses", out["losses"])

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names, paths = figure_names(anchors), {}
    print(f"\nDrawing {len(names)} figures into {out_dir}/")
    for n, (key, fig) in enumerate(make_figures(example, anchors, result).items(), start=1):
        paths[key] = out_dir / names[key]
        print(f"  [{n}/{len(names)}] {names[key]}", flush=True)  # the large figures take seconds each
        jpeg = paths[key].suffix == ".jpg"
        fig.savefig(paths[key], dpi=dpi, **({"pil_kwargs": {"quality": JPEG_QUALITY}} if jpeg else {}))
    print(f"Saved {len(paths)} figures to {out_dir}/: " + ", ".join(p.name for p in paths.values()))
    out["paths"] = paths
    return out
