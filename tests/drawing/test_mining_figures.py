"""Notebook 12's figure of hard negative mining: the negatives ranked as the mining ranks them, the kept ones drawn."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ssd_lesson import LossOptions, make_anchors, ssd_loss
from ssd_lesson.drawing.mining_figures import mining_figure, negative_ranking, outline_segments


def test_negatives_are_ranked_hardest_first_without_the_positives():
    loss = torch.tensor([0.5, 3.0, 2.0, 2.0, 0.1])
    positive = torch.tensor([False, True, False, False, False])
    assert negative_ranking(loss, positive).tolist() == [2, 3, 0, 4]  # ties in box order, box 1 is positive
    (outline,) = outline_segments(torch.tensor([[0.1, 0.2, 0.5, 0.6]], dtype=torch.float64))
    assert outline.tolist() == [[0.2, 0.1], [0.6, 0.1], [0.6, 0.5], [0.2, 0.5], [0.2, 0.1]]  # (x, y), closed


def test_the_figure_draws_the_kept_negatives():
    g = torch.Generator().manual_seed(0)
    anchors = make_anchors()
    image = np.zeros((224, 224, 3), dtype=np.uint8)
    boxes, labels = torch.tensor([[0.1, 0.1, 0.6, 0.5]]), torch.tensor([4])
    logits, actns = torch.randn(1, 189, 21, generator=g), torch.zeros(1, 189, 4)
    mined = ssd_loss(logits, actns, boxes[None], labels[None], anchors, options=LossOptions.ssd_paper())
    n_pos = int(mined.match.positive.sum())
    fig = mining_figure((image, boxes, labels), anchors, mined, logits)
    rank_ax, image_ax = fig.axes
    assert rank_ax.get_title() == f"{3 * n_pos} of {189 - n_pos} negatives kept: 3 per positive ({n_pos})"
    assert len(image_ax.collections[-1].get_segments()) == 3 * n_pos
    every = ssd_loss(logits, actns, boxes[None], labels[None], anchors, options=LossOptions.ssd_paper().replace(neg_pos_ratio=None))
    with pytest.raises(ValueError, match="without hard negative mining"):
        mining_figure((image, boxes, labels), anchors, every, logits)
