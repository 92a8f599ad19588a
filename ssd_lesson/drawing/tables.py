"""The article's tables (1, 2 and 4) and a loss summary, as pandas DataFrames.

Each is built from an :class:`~ssd_lesson.core.loss.SSDLossResult` and image ``b`` of its
batch, so a table always shows what the library computed. Boxes are
``(y0, x0, y1, x1)`` as fractions of the image.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np
import pandas as pd
import torch

from ..data.voc import VOC_CLASSES
from ..core.loss import SSDLossResult, classification_loss, regression_loss
from ..core.matching import FORCED_OVERLAP, PAD_LABEL
from ..core.options import LossOptions

__all__ = ["ShownTable", "gt_columns", "iou_table", "match_table", "style_match_table", "box_classes", "regression_table",
           "regression_totals", "loss_table", "compare_matches", "one_hot_table", "box_class_losses"]

Rows = Union[int, Sequence[int], None]
FORCED_NOTE = f"forced: best box of this ground truth ({FORCED_OVERLAP})"
NO_OVERLAP_NOTE = "overlaps nothing: index 0 by default"


class ShownTable:
    """A table as a notebook shows it: an HTML table (numbers to ``digits`` decimals, ``style`` applied)
    where a browser renders the output, and ``table.to_string`` with the same numbers as its plain text,
    which is what an output check compares. ``name`` fixes the HTML's element ids, so that the same table
    always gives the same HTML."""

    def __init__(self, table: pd.DataFrame, name: str, digits: int = 4, style: Any = None):
        if not isinstance(table, pd.DataFrame):
            raise ValueError(f"table: expected a pandas DataFrame, got {type(table).__name__}")
        self.table, self.name, self.digits = table, name, digits
        self.style = style if style is not None else table.style.format(precision=digits)

    def _repr_html_(self) -> str:
        return self.style.set_uuid(self.name).to_html()

    def __repr__(self) -> str:
        return self.table.to_string(float_format=lambda v: f"{v:.{self.digits}f}")


def _labels(gt_labels: Any, b: int) -> list[int]:
    if isinstance(gt_labels, SSDLossResult):
        gt_labels = gt_labels.gt_labels
    lab = torch.as_tensor(gt_labels)
    lab = lab[b] if lab.dim() == 2 else lab
    return [int(v) for v in lab if int(v) != PAD_LABEL]  # padding rows come last and are dropped


def _rows(rows: Rows, n_boxes: int) -> list[int]:
    if rows is None:
        return list(range(n_boxes))
    if isinstance(rows, int):
        return list(range(min(rows, n_boxes)))
    return [int(r) for r in rows]


def gt_columns(gt_labels: Any, b: int = 0, class_names: Sequence[str] = VOC_CLASSES) -> list[str]:
    """Column names ``'0: cow', '1: person', ...`` for the ground-truth boxes of image ``b``.

    ``gt_labels``: ``(B, G)`` or ``(G,)`` labels, or an :class:`SSDLossResult` (its own labels).
    """
    return [f"{i}: {class_names[c]}" for i, c in enumerate(_labels(gt_labels, b))]


def iou_table(result: SSDLossResult, rows: Rows = 30, b: int = 0,
              class_names: Sequence[str] = VOC_CLASSES) -> pd.DataFrame:
    """Table 1: IoU of predicted boxes (rows; default the first 30) with each ground-truth box (columns).

    Columns are named from the result's ground-truth labels. Index: the box number 0..A-1.
    """
    cols = gt_columns(result, b, class_names)
    r = _rows(rows, result.ious.shape[1])
    data = result.ious[b, r][:, : len(cols)].detach().cpu().double().numpy()
    return pd.DataFrame(data, index=pd.Index(r, name="box"), columns=cols)


def match_table(result: SSDLossResult, rows: Rows = 30, b: int = 0) -> pd.DataFrame:
    """Table 2: ``gt_idx`` and ``gt_overlap`` of predicted boxes, with a ``note`` on the two exceptions.

    ``forced`` marks boxes a ground-truth box claimed (overlap ``FORCED_OVERLAP``); ``no_overlap``
    the boxes that overlap nothing and so answer to ground truth 0 by default.
    """
    r = _rows(rows, result.ious.shape[1])
    idx = result.match.gt_idx[b, r].cpu().numpy()
    ov = result.match.gt_overlap[b, r].detach().cpu().double().numpy()
    forced = np.isclose(ov, FORCED_OVERLAP)
    none = (ov == 0) & ~forced
    note = np.where(forced, FORCED_NOTE, np.where(none, NO_OVERLAP_NOTE, ""))
    return pd.DataFrame({"gt_idx": idx, "gt_overlap": ov, "forced": forced, "no_overlap": none, "note": note},
                        index=pd.Index(r, name="box"))


def style_match_table(table: pd.DataFrame, precision: int = 4) -> "pd.io.formats.style.Styler":
    """Table 2 for a notebook: forced rows highlighted, overlap-nothing rows greyed, flag columns hidden."""
    def colour(row: pd.Series) -> list[str]:
        css = ("background-color: #ffe08a; font-weight: bold" if row["forced"]
               else "color: #999999" if row["no_overlap"] else "")
        return [css] * len(row)

    return (table.style.apply(colour, axis=1).format({"gt_overlap": f"{{:.{precision}f}}"})
            .hide(["forced", "no_overlap"], axis="columns"))


def box_classes(result: SSDLossResult, b: int = 0, thresholded: bool = False) -> torch.Tensor:
    """``(A,)`` class id of every predicted box: its ground truth's class (Fig. 5), or with
    ``thresholded=True`` background (C) where the overlap is not above the threshold (Fig. 6)."""
    if thresholded:
        return result.target_labels[b]
    return result.gt_labels[b].to(result.match.gt_idx.device)[result.match.gt_idx[b]]


def regression_table(result: SSDLossResult, b: int = 0) -> pd.DataFrame:
    """Table 4: the positives only, ground-truth and predicted corners side by side, and MAE per box.

    Columns: a MultiIndex ``(gtbbox|pbbox, y0|x0|y1|x1)``, then ``('', 'gt_idx')`` and ``('', 'MAE')``.
    """
    pos = torch.nonzero(result.match.positive[b]).flatten().tolist()
    gt = result.target_boxes[b, pos].detach().cpu().double().numpy().reshape(-1, 4)
    pr = result.pred_boxes[b, pos].detach().cpu().double().numpy().reshape(-1, 4)
    coords = ["y0", "x0", "y1", "x1"]
    cols = pd.MultiIndex.from_tuples([("gtbbox", c) for c in coords] + [("pbbox", c) for c in coords]
                                     + [("", "gt_idx"), ("", "MAE")])
    data = np.concatenate([gt, pr], axis=1)
    table = pd.DataFrame(data, index=pd.Index(pos, name="box"), columns=cols[:8])
    table[("", "gt_idx")] = result.match.gt_idx[b, pos].cpu().numpy()
    table[("", "MAE")] = np.abs(gt - pr).mean(axis=1)
    return table


def regression_totals(result: SSDLossResult, b: int = 0) -> pd.Series:
    """The regression loss of image ``b`` both ways: the lesson code's mean over the positives'
    coordinates (= mean of the per-box MAE) and the article's sum of the per-box MAE."""
    args = (result.pred_boxes[b:b + 1].detach(), result.target_boxes[b:b + 1], result.match.positive[b:b + 1])
    return pd.Series({"mean (lesson code)": float(regression_loss(*args, reduction="mean")[0]),
                      "sum (article wording)": float(regression_loss(*args, reduction="sum")[0])},
                     name="regression loss")


def loss_table(result: SSDLossResult, b: int = 0) -> pd.Series:
    """Classification, regression both ways, and the SSD loss (classification + regression) both ways."""
    clas = float(result.classification[b].detach())  # detach: no warning when the loss requires grad
    reg = regression_totals(result, b)
    return pd.Series({
        "classification (BCE, summed over boxes, / C)": clas,
        "regression, mean (lesson code)": reg.iloc[0],
        "regression, sum of per-box MAE (article)": reg.iloc[1],
        "total = classification + mean regression (lesson code)": clas + reg.iloc[0],
        "total = classification + summed regression (article)": clas + reg.iloc[1],
    }, name="loss")


def compare_matches(results: dict[str, SSDLossResult], rows: Rows = 30, b: int = 0) -> pd.DataFrame:
    """``gt_idx`` / ``gt_overlap`` / positive side by side for several results (e.g. match_on variants)."""
    parts = {}
    for name, res in results.items():
        t = match_table(res, rows, b)
        parts[name] = t[["gt_idx", "gt_overlap"]].assign(positive=res.match.positive[b, list(t.index)].cpu().numpy())
    return pd.concat(parts, axis=1)


# ---------------------------------------------------------------- notebooks 6-8: the loss, box by box
def one_hot_table(result: SSDLossResult, rows: Rows, b: int = 0,
                  class_names: Sequence[str] = VOC_CLASSES) -> pd.DataFrame:
    """The lesson's BCE targets of some boxes: ``one_hot(label, C+1)`` with the background column dropped.

    Index: box number; columns: ``target`` (the class name, or ``'background'``), then one
    0/1 column per class. A background box is a row of C zeros ("none of these").
    """
    r = _rows(rows, result.target_labels.shape[1])
    labels = result.target_labels[b, r].cpu()
    C = len(class_names)
    hot = torch.nn.functional.one_hot(labels, C + 1)[:, :C].numpy()
    table = pd.DataFrame(hot, index=pd.Index(r, name="box"), columns=list(class_names))
    table.insert(0, "target", [class_names[int(t)] if int(t) < C else "background" for t in labels])
    return table


def box_class_losses(class_logits: torch.Tensor, result: SSDLossResult, b: int = 0,
                     gammas: Sequence[float] = (1.0, 2.0), alpha: float = LossOptions.focal_alpha) -> pd.DataFrame:
    """Each box's share of the classification loss: BCE and focal (one column per gamma).

    Every column is :func:`~ssd_lesson.core.loss.classification_loss` run on one box at a
    time (so already divided by C); a column's sum is that loss for the image.
    Index: box number; also ``target`` (class id, C for background) and ``positive``.
    """
    x = class_logits[b].detach().unsqueeze(1)  # (A, 1, C+1): each box its own "image"
    t = result.target_labels[b].unsqueeze(1)  # (A, 1)
    cols = {"target": t[:, 0].cpu().numpy(), "positive": result.match.positive[b].cpu().numpy(),
            "BCE": classification_loss(x, t).cpu().double().numpy()}
    for g in gammas:
        cols[f"focal gamma={g:g}"] = classification_loss(x, t, focal=True, alpha=alpha, gamma=g).cpu().double().numpy()
    return pd.DataFrame(cols, index=pd.Index(range(x.shape[0]), name="box"))

