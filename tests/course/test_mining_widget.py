"""Notebook 12's widget: hard negative mining's neg_pos_ratio on the lesson's example, every number ssd_loss's,
every argument checked."""
from __future__ import annotations

import math

import pytest
import torch

from ssd_lesson import LossOptions, ssd_loss
from ssd_lesson.course.widgets import MiningWidget
from tests.helpers import seeded_example

DPI = 30


@pytest.fixture(scope="module")
def case():
    return seeded_example()


def test_the_kept_negatives_are_ssd_losss(case):
    ex, anchors, cl, ba, gb, gl = case
    w = MiningWidget(ex, anchors, cl, ba, dpi=DPI)
    paper = ssd_loss(cl, ba, gb, gl, anchors, options=LossOptions.ssd_paper())
    n_pos, n_neg = int(paper.match.positive.sum()), 189 - int(paper.match.positive.sum())
    assert w.neg_pos_ratio == 3.0 and w.n_kept == min(3 * n_pos, n_neg) == int(paper.counted_negatives.sum())
    assert w.kept.tolist() == paper.counted_negatives[0].tolist()
    assert w.classification == pytest.approx(float(paper.classification[0]), rel=1e-6)
    assert len(w.boxes.get_segments()) == w.n_kept and w.image.value[:4] == b"\x89PNG"
    assert w.set(1).n_kept == min(n_pos, n_neg) and f"{w.n_kept} of {n_neg} negatives kept" in w.rank_ax.get_title()
    assert w.set(30).n_kept == n_neg  # more than there are: every negative
    assert w.set(0).n_kept == n_neg  # 0: no mining, as LossOptions(neg_pos_ratio=0)
    assert w.set(0.5).n_kept == math.ceil(n_pos / 2) and len(w.boxes.get_segments()) == w.n_kept
    assert w.set(100).neg_pos_ratio == 30.0  # clamped to the slider's range
    # Kept negatives are the hardest: every kept box's loss is at least every other negative's.
    w.set(2)
    kept, others = w.box_loss[w.kept], w.box_loss[~w.kept & ~w.positive]
    assert kept.min() >= others.max()


def test_arguments_are_checked(case):
    ex, anchors, cl, ba, _, _ = case
    with pytest.raises(TypeError, match="MiningWidget: neg_pos_ratio must be a number from 0 to 30; got 'three'"):
        MiningWidget(ex, anchors, cl, ba, neg_pos_ratio="three", dpi=DPI)
    for bad in (math.nan, -1, 31):
        with pytest.raises(ValueError, match="MiningWidget: neg_pos_ratio must be a number from 0 to 30"):
            MiningWidget(ex, anchors, cl, ba, neg_pos_ratio=bad, dpi=DPI)
    with pytest.raises(ValueError, match="options.classification must be 'softmax'"):
        MiningWidget(ex, anchors, cl, ba, options=LossOptions(), dpi=DPI)
    with pytest.raises(TypeError, match="got both options=.* and neg_pos_ratio=2.0"):
        MiningWidget(ex, anchors, cl, ba, options=LossOptions.ssd_paper(), neg_pos_ratio=2, dpi=DPI)
    with pytest.raises(ValueError, match="box_actns"):
        MiningWidget(ex, anchors, cl, ba[:, :10], dpi=DPI)
    w = MiningWidget(ex, anchors, cl, ba, neg_pos_ratio=2, dpi=DPI)
    for bad, error in (("a", TypeError), (math.nan, ValueError), (True, TypeError), ([1], TypeError)):
        with pytest.raises(error, match="neg_pos_ratio"):
            w.set(bad)
        assert w.neg_pos_ratio == 2.0
    assert torch.equal(torch.as_tensor(w.kept), torch.as_tensor(w.set(2).kept))
