"""Notebook 12's table: the lesson's loss turned into the SSD paper's one option at a time, every number ssd_loss's."""
from __future__ import annotations

import pytest
import torch

from ssd_lesson import LossOptions, make_anchors, ssd_loss
from ssd_lesson.course.paper_steps import PAPER_STEPS, paper_steps_options, paper_steps_table


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(12)
    anchors = make_anchors(dtype=torch.float64)
    lo = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 0.6
    gt_boxes = torch.cat([lo, lo + 0.2 + 0.2 * torch.rand(2, 3, 2, generator=g, dtype=torch.float64)], dim=-1)
    gt_labels = torch.tensor([[3, 7, 14], [1, -1, -1]])  # the second image: one object and two padding rows
    return (torch.randn(2, 189, 21, generator=g, dtype=torch.float64),
            torch.randn(2, 189, 4, generator=g, dtype=torch.float64) * 0.5, gt_boxes, gt_labels, anchors)


def test_the_steps_end_at_the_papers_loss_one_change_each():
    steps = paper_steps_options()
    assert steps[0][1] == LossOptions.lesson_code() and steps[-1][1] == LossOptions.ssd_paper()
    assert [label for label, _ in steps] == [label for label, _ in PAPER_STEPS]
    assert steps[3][0] == "3 hard negatives per positive" and steps[3][1].neg_pos_ratio == 3.0
    for (_, before), (_, after) in zip(steps, steps[1:]):
        changed = {k for k, v in after.to_dict().items() if before.to_dict()[k] != v}
        assert 1 <= len(changed) <= 2  # the threshold goes with its >=, smooth L1 with its beta
    with pytest.raises(TypeError, match="start must be a LossOptions, got dict"):
        paper_steps_options({})


def test_every_number_is_ssd_losss(batch):
    table = paper_steps_table(*batch)
    assert list(table.columns) == ["classification", "regression", "total", "positives", "negatives counted"]
    assert len(table) == len(PAPER_STEPS)
    for (label, options), (_, row) in zip(paper_steps_options(), table.iterrows()):
        r = ssd_loss(*batch, options=options)
        assert row["total"] == pytest.approx(float(r.total), rel=1e-12)
        assert row["classification"] == pytest.approx(float(r.classification.sum()), rel=1e-12)
        assert row["positives"] == int(r.match.positive.sum())
    first, mined = table.iloc[0], table.loc["3 hard negatives per positive"]
    assert first["negatives counted"] == 2 * 189 - first["positives"]  # every background box counts
    assert 0 < mined["negatives counted"] <= 3 * mined["positives"]
    assert table.loc["softmax with background", "negatives counted"] == 2 * 189 - mined["positives"]
    # The paper's row is ssd_paper()'s loss: torchvision's classification + bbox_regression.
    assert table.iloc[-1]["total"] == pytest.approx(float(ssd_loss(*batch, options=LossOptions.ssd_paper()).total))
