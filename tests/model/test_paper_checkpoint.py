"""A checkpoint trained with the SSD paper's loss is read back with its own decoding: ``load_checkpoint`` then
``predict`` / ``evaluate_detections`` use its record's log-space offsets and softmax scores, with no option given."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ssd_lesson import DecodeOptions, LossOptions, make_anchors
from ssd_lesson.model.checkpoint import load_checkpoint, save_checkpoint
from ssd_lesson.model.infer import decode, model_decode_options, predict, prepare_images
from ssd_lesson.model.net import create_ssd_model
from ssd_lesson.model.record import CheckpointRecord

PAPER_DECODING = DecodeOptions.for_loss(LossOptions.ssd_paper(), score_threshold=0.01)


@pytest.fixture()
def paper_model(tmp_path):
    torch.manual_seed(0)
    model = create_ssd_model("tiny", pretrained=False, n_hidden=16)
    record = CheckpointRecord(command="python -m ssd_lesson train --loss softmax", loss_options=LossOptions.ssd_paper(),
                              decode_options=PAPER_DECODING)
    return load_checkpoint(save_checkpoint(model, tmp_path / "paper.pth", record=record))


def test_the_record_carries_the_paper_decoding(paper_model):
    assert paper_model.record.decode_options == PAPER_DECODING
    assert model_decode_options(paper_model) == PAPER_DECODING
    assert (PAPER_DECODING.coding, PAPER_DECODING.class_scores) == ("log_offsets", "softmax")
    assert model_decode_options(torch.nn.Linear(1, 1)) == DecodeOptions()  # no record: the lesson's


def test_predict_decodes_with_the_models_coding_and_scores(paper_model):
    image = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
    x, _ = prepare_images(image, paper_model.size)
    paper_model.eval()
    with torch.no_grad():
        class_logits, box_actns = paper_model(x)
    anchors = make_anchors(paper_model.spec)
    (want,) = decode(class_logits, box_actns, anchors, options=PAPER_DECODING)
    (got,) = predict(paper_model, image)
    assert len(got.scores) == len(want.scores) > 0
    torch.testing.assert_close(got.boxes, want.boxes * want.boxes.new_tensor([90, 120, 90, 120]))
    torch.testing.assert_close(got.scores, want.scores)
    # Read the lesson's way (the default decoding), the same activations are other scores and boxes.
    (lesson,) = decode(class_logits, box_actns, anchors, options=PAPER_DECODING.replace(coding="tanh_corners",
                                                                                       class_scores="sigmoid"))
    sigmoid = class_logits[0, :, :-1].sigmoid().max()
    assert float(lesson.scores.max()) == pytest.approx(float(sigmoid)) != pytest.approx(float(want.scores.max()))
    # A loose keyword changes the model's own decoding, not its coding or scores.
    (fewer,) = predict(paper_model, image, max_per_image=3)
    torch.testing.assert_close(fewer.scores, want.scores[:3])
