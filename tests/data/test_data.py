"""Images, boxes and batches for the model, and the lesson's example image."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ssd_lesson.data import example as E, images as D, transforms as T, voc as V

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- boxes, resizing, flipping
def test_fraction_round_trip_and_resize_keeps_objects_in_their_boxes(voc_root):
    rec = {r.image_id: r for r in V.load_voc(voc_root, "trainval")}["000012"]
    frac = T.to_fractions(rec.boxes, rec.height, rec.width)
    np.testing.assert_allclose(frac, [[19 / 50, 9 / 60, 45 / 50, 40 / 60]], rtol=1e-6)
    np.testing.assert_allclose(T.to_pixels(frac, rec.height, rec.width), rec.boxes, atol=1e-4)
    image, boxes, labels = T.resize_record(rec, 224)
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8 and labels.tolist() == [V.VOC_CLASSES.index("car")]
    np.testing.assert_allclose(boxes, frac)
    # The drawn rectangle sits at boxes * 224 after the squish (to within the resampling blur).
    y0, x0, y1, x1 = boxes[0] * 224
    red = image[..., 0] > 120
    ys, xs = np.nonzero(red)
    assert abs(ys.min() - y0) <= 3 and abs(ys.max() + 1 - y1) <= 3 and abs(xs.min() - x0) <= 3 and abs(xs.max() + 1 - x1) <= 3


def test_hflip_moves_boxes_with_the_image():
    image = np.zeros((10, 20, 3), np.uint8)
    image[2:5, 4:12] = 255  # box (0.2, 0.2, 0.5, 0.6)
    flipped, boxes = T.hflip(image, np.array([[0.2, 0.2, 0.5, 0.6]], np.float32))
    np.testing.assert_allclose(boxes, [[0.2, 0.4, 0.5, 0.8]], atol=1e-6)
    ys, xs = np.nonzero(flipped[..., 0])
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (2, 5, 8, 16)  # = boxes * (10, 20, 10, 20)


def test_normalize_round_trip():
    image = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)
    t = T.normalize(image)
    assert t.shape == (3, 4, 5) and t.dtype == torch.float32
    assert math.isclose(float(t[0, 0, 0]), (0 / 255 - 0.485) / 0.229, rel_tol=1e-5)
    np.testing.assert_array_equal(T.denormalize(t), image)


# ---------------------------------------------------------------- batching
def test_collate_pads_with_minus_one_at_the_end():
    items = [(torch.zeros(3, 8, 8), torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.9, 0.8]]), torch.tensor([14, 7])),
             (torch.ones(3, 8, 8), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)),  # no objects
             (torch.zeros(3, 8, 8), torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([13]))]
    images, boxes, labels = D.collate_detections(items)
    assert images.shape == (3, 3, 8, 8) and boxes.shape == (3, 2, 4) and labels.shape == (3, 2)
    assert boxes.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.tolist() == [[14, 7], [-1, -1], [13, -1]]
    assert boxes[1].abs().sum() == 0 and boxes[2, 1].abs().sum() == 0
    torch.testing.assert_close(boxes[0, 1], torch.tensor([0.2, 0.3, 0.9, 0.8]))
    # A batch of empty images has G = 0.
    _, b0, l0 = D.collate_detections([items[1], items[1]])
    assert b0.shape == (2, 0, 4) and l0.shape == (2, 0)


def test_collated_batch_feeds_ssd_loss(voc_root):
    from ssd_lesson.core.anchors import make_anchors
    from ssd_lesson.core.loss import ssd_loss

    recs = {r.image_id: r for r in V.load_voc(voc_root, "trainval")}
    ds = D.DetectionDataset([recs["000005"], recs["000010"], recs["000007"]])
    images, gt_boxes, gt_labels = D.collate_detections([ds[i] for i in range(3)])
    assert gt_boxes.shape == (3, 5, 4) and gt_labels[1].tolist() == [-1] * 5 and gt_labels[2, 4] == -1
    anchors = make_anchors()
    assert len(anchors) == 189
    logits, actns = torch.zeros(3, 189, 21), torch.zeros(3, 189, 4)
    res = ssd_loss(logits, actns, gt_boxes, gt_labels, anchors)
    assert torch.isfinite(res.total)
    # The empty image: every box is background; BCE of logit 0 is log 2 for each of 189 x 20 columns, / 20.
    assert (res.target_labels[1] == V.BACKGROUND).all()
    assert math.isclose(float(res.classification[1]), 189 * math.log(2), rel_tol=1e-5)
    assert float(res.regression[1]) == 0.0
    assert (res.target_labels[0] != V.BACKGROUND).sum() >= 5  # every object of image 0 is matched


@pytest.mark.fastai  # fastai's Learner
def test_dataloaders_feed_a_fastai_learner(voc_root):
    import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
    from fastai.learner import Learner
    from ssd_lesson.core.anchors import make_anchors
    from ssd_lesson.core.loss import ssd_loss

    recs = V.load_voc(voc_root, "train") + V.load_voc(voc_root, "val")
    make = lambda seed: D.make_dataloaders(recs[:3], recs[3:], bs=2, size=64, augment=True, seed=seed, device="cpu")  # noqa: E731
    dls, again = make(1), make(1)
    for _ in range(2):  # same seed: same shuffles and flips, epoch after epoch
        for (a, b, c), (x, y, z) in zip(dls.train, again.train):
            assert torch.equal(b, y) and torch.equal(c, z) and torch.equal(a, x)
    xb, boxes, labels = dls.one_batch()
    assert xb.shape == (2, 3, 64, 64) and xb.dtype == torch.float32 and boxes.shape[0] == 2 and boxes.shape[2] == 4
    assert labels.dtype == torch.int64 and dls.train.n_inp == 1 and len(dls.train) == 1  # 3 records, bs 2: drop_last
    assert [len(lab) for _, _, lab in dls.valid] == [2]  # the 2 val records, none dropped

    anchors, calls = make_anchors(), []

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 189 * 25)

        def forward(self, x):
            out = self.head(x.mean(dim=(2, 3))).view(-1, 189, 25)
            return out[..., :21], out[..., 21:]

    def loss_func(preds, gt_boxes, gt_labels):
        calls.append((len(preds), tuple(gt_boxes.shape), gt_labels.dtype))
        return ssd_loss(*preds, gt_boxes, gt_labels, anchors).total

    learn = Learner(dls, Tiny(), loss_func=loss_func)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3)
    assert calls and all(n == 2 and s[2] == 4 and dt == torch.int64 for n, s, dt in calls)


def test_augment_flips_some_items_and_their_boxes(voc_root):
    rec = {r.image_id: r for r in V.load_voc(voc_root, "trainval")}["000012"]
    image, boxes, _ = D.DetectionDataset([rec], size=32)[0]
    flipped = T.hflip(np.zeros((1, 1, 3)), boxes.numpy())[1]
    ds = D.DetectionDataset([rec], size=32, augment=True, seed=0)
    outcomes = []
    for epoch in range(12):
        ds.epoch = epoch
        im, b, _ = ds[0]
        assert torch.equal(ds[0][1], b)  # the same (seed, epoch, index): the same flip
        is_flipped = not torch.equal(b, boxes)
        if is_flipped:
            np.testing.assert_allclose(b.numpy(), flipped, atol=1e-6)
        assert torch.equal(im, image.flip(-1) if is_flipped else image)
        outcomes.append(is_flipped)
    assert 0 < sum(outcomes) < 12


# ---------------------------------------------------------------- the lesson's example
def test_lesson_rule_picks_lowest_trainval_id(voc_root, fastai_root):
    for root in (voc_root, fastai_root):
        assert E.find_lesson_record(V.load_voc(root, "trainval")).image_id == "000007"
        ex = E.lesson_example(voc=root)
        assert ex.source.startswith("Using Pascal VOC 2007 image 000007")
        assert ex.classes == ["cow", "person", "bicycle", "motorbike"] and ex.image.shape == (40, 44, 3)
        assert ex.image224.shape == (224, 224, 3)
        np.testing.assert_allclose(ex.boxes[0], [2 / 40, 1 / 44, 15 / 40, 20 / 44], rtol=1e-6)
    recs = {r.image_id: r for r in V.load_voc(voc_root, "trainval")}
    assert E.find_lesson_record([recs["000005"], recs["000012"]]) is None  # an extra person is not the example


def test_lesson_example_falls_back_when_voc_has_no_match(collage_dir):
    with pytest.warns(V.VocNotFoundWarning, match="exactly one cow"):
        ex = E.lesson_example(voc=collage_dir)
    assert ex.source.startswith("Using the embedded offline example")


def test_embedded_example():
    ex = E.lesson_example(offline=True)
    assert ex.source.startswith("Using the embedded offline example")
    assert ex.image.shape == ex.image224.shape == (224, 224, 3) and ex.image.dtype == np.uint8
    assert ex.classes == ["person", "person", "cat", "motorbike"] and ex.labels.tolist() == [14, 14, 7, 13]
    assert ((ex.boxes >= 0) & (ex.boxes <= 1)).all()
    longest = (ex.boxes[:, 2:] - ex.boxes[:, :2]).max(1) * 224
    # sizes for each grid: 4x4 anchors are 39-73 px, 2x2 78-146 px, 1x1 157-291 px
    assert (longest < 73).sum() >= 2 and ((longest > 78) & (longest < 146)).any() and (longest > 157).any()
    images, boxes, labels = ex.batch()
    assert images.shape == (1, 3, 224, 224) and boxes.shape == (1, 4, 4) and labels.shape == (1, 4)
    # The stored files are what scripts/make_example.py makes (PNG, so to the pixel with the same Pillow).
    spec = importlib.util.spec_from_file_location("make_example", ROOT / "scripts" / "make_example.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    image, pix_boxes, pix_labels = mod.make()
    assert np.abs(image.astype(int) - ex.image.astype(int)).mean() < 1.0
    np.testing.assert_array_equal(pix_boxes, ex.record.boxes)
    np.testing.assert_array_equal(pix_labels, ex.labels)


def test_load_image_scales_16_bit_greyscale(tmp_path):
    from PIL import Image

    grey = np.array([[0, 257, 32896], [65535, 514, 1000]], np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    got = T.load_image(tmp_path / "g16.png")
    assert got.shape == (2, 3, 3) and got.dtype == np.uint8
    assert got[..., 0].tolist() == [[0, 1, 128], [255, 2, 4]]  # /257, not clipped to white
    assert (got[..., 0] == got[..., 2]).all()
