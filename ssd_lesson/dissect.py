"""``python -m ssd_lesson dissect``: the article's steps, headless.

Prints what the article tabulates (anchor count, output sizes, Tables 1, 2 and 4,
the positive count, the losses) and saves its figures (ground truth, Figs. 1-6,
the aside) as PNGs. Boxes are ``(y0, x0, y1, x1)`` fractions of the image.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import pandas as pd
import torch

from . import plots, tables
from .anchors import Anchors, make_anchors
from .data import BACKGROUND, DATA_DIR, VOC_CLASSES, Example
from .loss import SSDLossResult, ssd_loss

__all__ = ["synthetic_example", "load_example", "example_activations", "find_checkpoint", "figure_names",
           "make_figures", "run_dissect"]

CHECKPOINT_DIR = DATA_DIR / "checkpoints"

# (class id, (y0, x0, y1, x1)): cow, person, bicycle, motorbike, as in the article's image.
SYNTHETIC_OBJECTS = ((9, (0.30, 0.04, 0.80, 0.50)), (14, (0.12, 0.55, 0.86, 0.74)),
                     (1, (0.56, 0.40, 0.95, 0.70)), (13, (0.50, 0.73, 0.93, 0.98)))


def synthetic_example(size: int = 224, seed: int = 0) -> Example:
    """A plain synthetic picture with the article's four objects (cow, person, bicycle, motorbike).

    Used only when the data module's example is unavailable. Boxes: ``(4, 4)`` fractions.
    """
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, size)[:, None, None]
    sky, grass = np.array([150, 190, 230.0]), np.array([110, 160, 90.0])
    img = np.where(y < 0.55, sky * (1 - 0.3 * y), grass * (1.2 - 0.4 * y)) * np.ones((1, size, 1))
    tints = {9: (120, 80, 50), 14: (200, 60, 60), 1: (60, 60, 200), 13: (40, 40, 40)}
    for cls, (y0, x0, y1, x1) in SYNTHETIC_OBJECTS:  # a soft blob inside each box stands in for the object
        yy, xx = np.mgrid[0:size, 0:size] / size
        inside = ((yy - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2 + ((xx - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2 < 0.8
        img[inside] = 0.35 * img[inside] + 0.65 * np.array(tints[cls])
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    boxes = np.array([b for _, b in SYNTHETIC_OBJECTS], np.float32)
    labels = np.array([c for c, _ in SYNTHETIC_OBJECTS], np.int64)
    return Example(img, img, boxes, labels, [VOC_CLASSES[c] for c in labels],
                   "Using a seeded synthetic example (4 boxes: cow, person, bicycle, motorbike)", None)


def load_example(offline: bool = False, voc: Optional[str] = None) -> Example:
    """The data module's ``lesson_example()`` (VOC, else the embedded photo collage), else :func:`synthetic_example`."""
    try:
        from .data import lesson_example

        return lesson_example(voc=voc, offline=offline)
    except (ImportError, FileNotFoundError):  # the embedded example is not there yet
        return synthetic_example()


def example_activations(example: Example, anchors: Optional[Anchors] = None, seed: int = 0, scale: float = 1.0,
                        checkpoint: str | Path | None | Literal[False] = None,
                        verbose: bool = True) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The model's outputs on ``example``: ``(1, A, 21)`` class logits, ``(1, A, 4)`` box activations, and a source line.

    From a trained checkpoint (``checkpoint``, else the first of ``data/checkpoints/*.pth``),
    so the predicted boxes float as in the article; when there is none (or
    ``checkpoint=False``), seeded ``randn * scale``. Prints the source line if ``verbose``.
    """
    anchors = make_anchors() if anchors is None else anchors
    path = None if checkpoint is False else find_checkpoint(checkpoint)
    if path is not None:
        from .model import load_checkpoint  # imports fastai: only when there is a model to load

        model = load_checkpoint(path, spec=anchors.spec)
        with torch.no_grad():
            class_logits, box_actns = model(example.batch()[0])
        source = f"Activations: the trained model in {path} ({model.body_name} body)"
    else:
        g = torch.Generator().manual_seed(seed)
        class_logits = torch.randn(1, len(anchors), BACKGROUND + 1, generator=g) * scale
        box_actns = torch.randn(1, len(anchors), 4, generator=g) * scale
        why = "checkpoint=False" if checkpoint is False else f"no checkpoint in {CHECKPOINT_DIR}"
        source = f"Activations: seeded random (torch.randn * {scale:g}, seed {seed}); {why}"
    if verbose:
        print(source)
    return class_logits, box_actns, source


def find_checkpoint(checkpoint: str | Path | None = None) -> Optional[Path]:
    """``checkpoint`` if given (it must exist), else the first ``data/checkpoints/*.pth`` by name, else None."""
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
        return Path(checkpoint)
    found = sorted(CHECKPOINT_DIR.glob("*.pth"))
    return found[0] if found else None


def figure_names(anchors: Anchors) -> dict[str, str]:
    """The PNG file name of each figure; ``run_dissect`` writes these and nothing else."""
    names = {"ground_truth": "00_ground_truth.png"}
    for i, g in enumerate(anchors.spec.grids, start=1):
        names[f"fig{i}"] = f"fig{i}_grid_{g}x{g}.png"
    names.update(aside="aside_all_anchors.png", fig4="fig4_all_predictions.png", fig5="fig5_classes.png",
                 fig6="fig6_classes_thresholded.png", iou="iou_heatmap.png")
    return names


def make_figures(example: Example, anchors: Anchors, result: SSDLossResult, b: int = 0,
                 iou_threshold: float = 0.4) -> dict[str, Any]:
    """Every figure of the article for image ``b`` of ``result`` (matched at ``iou_threshold``),
    keyed as in :func:`figure_names`."""
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
                                      title=f"Fig. 6: boxes with overlap <= {iou_threshold:g} become background (bg)")
    figs["iou"] = plots.iou_heatmap(result.ious, example, anchors, result.match, b)
    return figs


def _show(title: str, body: Any) -> None:
    text = body.to_string(float_format=lambda v: f"{v:.4f}") if isinstance(body, (pd.DataFrame, pd.Series)) else str(body)
    print(f"\n== {title}\n{text}")


def run_dissect(out_dir: str | Path = "ssd_lesson_out", n_rows: int = 30, seed: int = 0, iou_threshold: float = 0.4,
                match_on: Literal["predictions", "anchors"] = "predictions", offline: bool = False,
                example: Optional[Example] = None, checkpoint: str | Path | None | Literal[False] = None,
                dpi: int = 100) -> dict[str, Any]:
    """Walk the article on the default example: print its numbers and tables, save its figures in ``out_dir``.

    ``out_dir`` is created if needed; only the files named by :func:`figure_names` are
    written (overwritten), nothing else there is touched. ``example`` defaults to
    :func:`load_example`, the activations to :func:`example_activations` (``checkpoint``
    as there). Returns the result, the tables and the paths written.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # headless; figures are plain Figure objects anyway
    example = load_example(offline) if example is None else example
    print(example.source)
    anchors = make_anchors()
    class_logits, box_actns, _ = example_activations(example, anchors, seed=seed, checkpoint=checkpoint)
    _, gt_boxes, gt_labels = example.batch()
    size = example.image224.shape[0]
    print(f"\nInput {size}x{size}; output grids " + ", ".join(f"{g}x{g}" for g in anchors.spec.grids)
          + f"; {anchors.spec.k()} anchor boxes per grid cell; {len(anchors)} anchor boxes in all")
    print(f"Ground truth: " + ", ".join(plots.as_scene(example).gt_label(i) for i in range(gt_labels.shape[1])))
    result = ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, anchors, match_on=match_on,
                      iou_threshold=iou_threshold)
    out = {"result": result, "anchors": anchors, "example": example,
           "table1": tables.iou_table(result, gt_labels, n_rows), "table2": tables.match_table(result, n_rows),
           "table4": tables.regression_table(result), "losses": tables.loss_table(result)}
    print(f"IoU with ground truth computed against the {'predicted' if match_on == 'predictions' else 'anchor'} boxes: "
          f"{len(anchors)} x {gt_labels.shape[1]} = {len(anchors) * gt_labels.shape[1]} values")
    _show(f"Table 1: IoU of the first {n_rows} predicted boxes with each ground-truth box", out["table1"])
    _show(f"Table 2: gt_idx and gt_overlap of the first {n_rows} predicted boxes",
          out["table2"][["gt_idx", "gt_overlap", "note"]])
    forced = torch.nonzero(result.match.gt_overlap[0] == 1.99).flatten().tolist()
    print(f"forced matches (overlap 1.99) at boxes {forced}")
    n_pos = int(result.match.positive[0].sum())
    print(f"\nPositives (overlap > {iou_threshold}): {n_pos} of {len(anchors)}; the rest are background")
    _show(f"Table 4: the {n_pos} positive boxes, ground truth (gtbbox) and prediction (pbbox)", out["table4"])
    _show("Losses", out["losses"])

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names, paths = figure_names(anchors), {}
    for key, fig in make_figures(example, anchors, result, iou_threshold=iou_threshold).items():
        paths[key] = out_dir / names[key]
        fig.savefig(paths[key], dpi=dpi)
    print(f"\nSaved {len(paths)} figures to {out_dir}/: " + ", ".join(p.name for p in paths.values()))
    out["paths"] = paths
    return out
