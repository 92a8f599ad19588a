"""An image without objects (the readers accept it, the loss handles it): the dissection's figures and the
gradient figure draw what there is and say that there are no objects, instead of an IndexError."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ssd_lesson.commands.dissect import figure_names, run_dissect
from ssd_lesson.core.anchors import make_anchors
from ssd_lesson.core.loss import ssd_loss
from ssd_lesson.course.lesson import load_example
from ssd_lesson.data.example import Example
from ssd_lesson.drawing.loss_figures import gradient_figure


@pytest.fixture(scope="module")
def empty() -> Example:
    ex = load_example(offline=True)
    return Example(ex.image, ex.image224, np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), [],
                   "an image without objects", ex.record)


def _titles(fig) -> list[str]:
    return [t for ax in fig.axes for t in (ax.get_title(), ax.get_xlabel()) if t]


@pytest.mark.slow  # dissect end to end: every figure drawn (test_dissect runs the same path in the fast tier)
def test_dissect_of_an_image_without_objects_draws_every_figure(empty, tmp_path, capsys, monkeypatch):
    from ssd_lesson.commands import dissect

    figs: dict = {}
    real = dissect.make_figures
    monkeypatch.setattr(dissect, "make_figures", lambda *a, **k: figs.update(real(*a, **k)) or figs)  # keep them
    out = run_dissect(tmp_path, example=empty, checkpoint=False, dpi=20)  # every figure drawn, in few pixels
    printed = capsys.readouterr().out
    assert "Ground truth: no objects: every predicted box is background (Tables 1 and 4 are empty)" in printed
    assert "Positives (overlap > 0.4): 0 of 189" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(figure_names(out["anchors"]).values())
    result = out["result"]
    assert not result.match.positive.any() and float(result.regression.sum()) == 0.0
    assert "ground truth: no objects in this image" in _titles(figs["ground_truth"])
    for key in ("fig5", "fig6"):  # every box labelled background, in Fig. 5 too
        legend = [t.get_text() for t in figs[key].legends[0].get_texts()]
        assert legend == ["ground truth: no objects in this image, every box is background"]
        labels = [t.get_text() for ax in figs[key].axes for t in ax.texts if t.get_text()]
        assert len(labels) == 189 and all(t.endswith(": bg") for t in labels)
    assert "no objects in this image: no IoU to show, every predicted box is background" in _titles(figs["iou"])


def test_gradient_figure_of_an_image_without_objects(empty):
    anchors = make_anchors()
    gen = torch.Generator().manual_seed(0)
    class_logits = torch.randn(1, 189, 21, generator=gen, requires_grad=True)
    box_actns = torch.randn(1, 189, 4, generator=gen, requires_grad=True)
    _, gt_boxes, gt_labels = empty.batch()
    result = ssd_loss(class_logits, box_actns, gt_boxes, gt_labels, anchors)
    result.total.backward()
    assert float(box_actns.grad.abs().max()) == 0.0  # nothing to pull
    fig = gradient_figure(empty, anchors, result, box_actns.grad[0], class_logits.grad[0])
    assert ("no objects in this image: no positive box to pull;\nthe loss only pushes class logits down"
            in _titles(fig))
    assert not [p for ax in fig.axes for p in ax.patches if p.get_gid()]  # no box drawn
