"""Decoding a model trained with the SSD paper's loss: its box coding and softmax scores (``DecodeOptions.for_loss``)."""
from __future__ import annotations

import pytest
import torch

from ssd_lesson import DecodeOptions, LossOptions, activations_to_boxes, make_anchors
from ssd_lesson.model.infer import decode


def test_decode_options_follow_the_loss():
    assert DecodeOptions.for_loss(LossOptions()) == DecodeOptions()
    assert DecodeOptions.for_loss(LossOptions.training(), nms_iou=0.3) == DecodeOptions(nms_iou=0.3)
    paper = DecodeOptions.for_loss(LossOptions.ssd_paper())
    assert (paper.coding, paper.class_scores) == ("log_offsets", "softmax") and paper.score_threshold == DecodeOptions().score_threshold
    with pytest.raises(ValueError, match="class_scores must be one of 'sigmoid', 'softmax'"):
        DecodeOptions(class_scores="logits")
    with pytest.raises(ValueError, match="coding must be one of 'tanh_corners', 'log_offsets'"):
        DecodeOptions(coding="corners")


def test_decode_reads_log_offsets_and_softmax_scores():
    anchors = make_anchors()
    class_logits = torch.full((1, 189, 21), -5.0)
    class_logits[..., 20] = 5.0  # background everywhere...
    class_logits[0, 150, 4], class_logits[0, 150, 20] = 3.0, 0.0  # ...but box 150: class 4
    box_actns = torch.zeros(1, 189, 4)
    box_actns[0, 150] = torch.tensor([0.5, -0.5, 1.0, -1.0])
    options = DecodeOptions.for_loss(LossOptions.ssd_paper())
    (dets,) = decode(class_logits, box_actns, anchors, options=options)
    assert dets.labels.tolist() == [4]
    want_score = torch.softmax(class_logits[0, 150], dim=0)[4]
    torch.testing.assert_close(dets.scores, want_score[None])
    want_box = activations_to_boxes(box_actns, anchors, coding="log_offsets")[0, 150].clamp(0, 1)
    torch.testing.assert_close(dets.boxes, want_box[None])
    assert not torch.allclose(want_box, activations_to_boxes(box_actns, anchors)[0, 150].clamp(0, 1))
    # Read with one sigmoid per class, the same logits give box 150 the sigmoid of its logit instead.
    sigmoid = decode(class_logits, box_actns, anchors, options=options.replace(class_scores="sigmoid"))[0]
    assert float(sigmoid.scores[0]) == pytest.approx(float(torch.sigmoid(torch.tensor(3.0))))
