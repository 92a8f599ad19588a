"""Training augmentation: the lesson's flip, unchanged bit for bit, and the SSD paper's recipe built from
torchvision's transforms v2, step by step against small references written here (the crop's sampler from the
paper's rule, the zoom-out's offset read off the canvas, the mirror from ``transforms.hflip``), and whole
(boxes inside the image and not empty, labels with their boxes, reproducible from the seed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ssd_lesson.core.anchors import make_anchors
from ssd_lesson.core.loss import ssd_loss
from ssd_lesson.core.matching import PAD_LABEL
from ssd_lesson.data import images as D, transforms as T, voc as V
from ssd_lesson.data.augment import (CROP_MIN_IOUS, ZOOM_OUT_SIDES, SSDAugment, augment_mode, from_sample, item_seed,
                                     to_sample)

FILL = np.array([round(255 * m) for m in T.IMAGENET_MEAN])  # the zoom-out's canvas colour
SEEDS = range(60)


def synthetic(seed: int, H: int = 60, W: int = 80, G: int = 5, max_side: float = 0.7
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An ``(H, W, 3)`` uint8 image with no pixel of the canvas colour, ``G`` boxes (fractions, sides 0.05 to
    ``max_side``) and the labels ``0..G-1``, so each output label names its input box."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)  # darker than FILL in every channel
    size = rng.uniform(0.05, max_side, (G, 2))
    y0x0 = rng.uniform(0, 1, (G, 2)) * (1 - size)
    boxes = np.concatenate([y0x0, y0x0 + size], axis=1).astype(np.float32)
    return image, boxes, np.arange(G, dtype=np.int64)


def xyxy_pixels(boxes: np.ndarray, H: int, W: int) -> np.ndarray:
    return np.asarray(boxes, np.float64)[:, [1, 0, 3, 2]] * [W, H, W, H]


def iou_with(window: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(x0, y0, x1, y1)`` window with each of ``(N, 4)`` boxes, written out."""
    w = np.clip(np.minimum(boxes[:, 2], window[2]) - np.maximum(boxes[:, 0], window[0]), 0, None)
    h = np.clip(np.minimum(boxes[:, 3], window[3]) - np.maximum(boxes[:, 1], window[1]), 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return w * h / (area(boxes) + area(window) - w * h)


def reference_crop(boxes: np.ndarray, H: int, W: int, options=CROP_MIN_IOUS, trials=40):
    """The SSD crop's sampler (the paper's rule, torchvision's ranges and order of draws from torch's generator):
    ``(min_iou, window (x0, y0, x1, y1) or None for no crop, inside: which boxes' centres it holds)``."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    while True:
        m = options[int(torch.randint(0, len(options), (1,)))]
        if m >= 1.0:
            return m, None, None
        for _ in range(trials):
            r = 0.3 + 0.7 * torch.rand(2)
            w, h = int(W * r[0]), int(H * r[1])
            if not 0.5 <= w / h <= 2.0:
                continue
            r = torch.rand(2)
            left, top = int((W - w) * r[0]), int((H - h) * r[1])
            inside = (left < cx) & (cx < left + w) & (top < cy) & (cy < top + h)
            window = np.array([left, top, left + w, top + h], np.float64)
            if inside.any() and iou_with(window, boxes[inside]).max() >= m:
                return m, window, inside


# ---------------------------------------------------------------- which augmentation
def test_augment_mode_reads_bools_and_names_and_refuses_the_rest():
    assert [augment_mode(a) for a in (True, False, None, "none", "flip", "ssd")] == [
        "flip", "none", "none", "none", "flip", "ssd"]
    with pytest.raises(ValueError, match=r"augment='crop': expected one of 'none', 'flip', 'ssd'"):
        augment_mode("crop")
    with pytest.raises(ValueError, match="needs 1.0"):
        SSDAugment(min_ious=(0.5, 0.9))  # no "no crop" choice: an unreachable IoU would be retried forever


@pytest.mark.parametrize("augment", [True, "flip", False, "none"])
def test_flip_and_none_are_the_lessons_items_bit_for_bit(voc_root, augment):
    """The shipped checkpoints' commands (augment=True then) still make the same batches."""
    recs = V.load_voc(voc_root, "trainval")
    ds = D.DetectionDataset(recs, size=48, augment=augment, seed=3)
    flips = 0
    for epoch in range(4):
        ds.epoch = epoch
        for i, rec in enumerate(recs):
            image, boxes, labels = T.resize_record(rec, 48)  # the lesson's item, written out
            if augment_mode(augment) == "flip" and np.random.default_rng([3, epoch, i]).random() < 0.5:
                (image, boxes), flips = T.hflip(image, boxes), flips + 1
            got = ds[i]
            assert torch.equal(got[0], T.normalize(image)) and torch.equal(got[1], torch.from_numpy(boxes))
            assert torch.equal(got[2], torch.from_numpy(labels))
    assert (flips > 0) == (augment_mode(augment) == "flip")


# ---------------------------------------------------------------- the SSD recipe, step by step
@pytest.fixture(scope="module")
def aug() -> SSDAugment:
    return SSDAugment(size=64)


def test_photometric_changes_pixels_only(aug):
    changed = 0
    for seed in SEEDS:
        image, boxes, labels = synthetic(seed)
        sample = to_sample(image, boxes, labels)
        torch.manual_seed(seed)
        out = aug.photometric(sample)
        assert torch.equal(out["boxes"], sample["boxes"]) and torch.equal(out["labels"], sample["labels"])
        assert out["image"].shape == sample["image"].shape and out["image"].dtype == torch.uint8
        changed += not torch.equal(out["image"], sample["image"])
    assert changed > len(SEEDS) // 2


def test_zoom_out_puts_the_image_on_a_mean_coloured_canvas_and_shrinks_its_boxes(aug):
    ratios = []
    for seed in SEEDS:
        image, boxes, labels = synthetic(seed)
        H, W = image.shape[:2]
        torch.manual_seed(seed)
        out = from_sample(aug.zoom_out(to_sample(image, boxes, labels)))[:2]
        canvas, got = out
        Hc, Wc = canvas.shape[:2]
        photo = (canvas != FILL).any(-1)  # where the image went: read off the pixels, not the boxes
        ys, xs = np.nonzero(photo)
        top, left = ys.min(), xs.min()
        assert (ys.max() + 1 - top, xs.max() + 1 - left) == (H, W)
        np.testing.assert_array_equal(canvas[top:top + H, left:left + W], image)
        assert (canvas[~photo] == FILL).all()
        ratio = Wc / W
        assert ZOOM_OUT_SIDES[0] <= ratio <= ZOOM_OUT_SIDES[1] and abs(Hc / H - ratio) < 2 / H
        expected = (boxes * [H, W, H, W] + [top, left, top, left]) / [Hc, Wc, Hc, Wc]
        np.testing.assert_allclose(got, expected, atol=1e-6)
        np.testing.assert_allclose(got[:, 3] - got[:, 1], (boxes[:, 3] - boxes[:, 1]) * W / Wc, atol=1e-6)
        assert (got >= 0).all() and (got <= 1).all()
        ratios.append(ratio)
    assert min(ratios) < 1.5 and max(ratios) > 3.0  # the whole range is drawn


def test_crop_follows_the_ssd_rule_and_keeps_the_boxes_whose_centre_it_holds(aug):
    drawn = set()
    for seed in SEEDS:
        image, boxes, labels = synthetic(seed, max_side=0.95)  # large objects too: IoU 0.9 needs one
        H, W = image.shape[:2]
        px = xyxy_pixels(boxes, H, W)
        torch.manual_seed(seed)
        m, window, inside = reference_crop(px, H, W)
        torch.manual_seed(seed)
        out_image, out_boxes, out_labels = from_sample(aug.sanitize(aug.crop(to_sample(image, boxes, labels))))
        drawn.add(m)
        if window is None:  # no crop: the whole image, every box
            np.testing.assert_array_equal(out_image, image)
            np.testing.assert_allclose(out_boxes, boxes, atol=1e-6)
            assert out_labels.tolist() == labels.tolist()
            continue
        x0, y0, x1, y1 = window.astype(int)
        assert iou_with(window, px[inside]).max() >= m  # the rule: some object, whose centre it holds, overlaps enough
        np.testing.assert_array_equal(out_image, image[y0:y1, x0:x1])
        w, h = x1 - x0, y1 - y0
        kept = np.clip(px[inside] - [x0, y0, x0, y0], 0, [w, h, w, h])  # the boxes whose centre is in, cut to it
        wide = (kept[:, 2] - kept[:, 0] >= 1) & (kept[:, 3] - kept[:, 1] >= 1)  # sanitize: a pixel at least
        np.testing.assert_allclose(out_boxes, kept[wide][:, [1, 0, 3, 2]] / [h, w, h, w], atol=1e-5)
        assert out_labels.tolist() == labels[inside][wide].tolist()  # each label still with its box
    assert drawn == set(CROP_MIN_IOUS)  # every choice of the rule came up, "no crop" (1.0) included


def test_flip_step_is_the_lessons_mirror(aug):
    image, boxes, labels = synthetic(0)
    out_image, out_boxes, out_labels = from_sample(aug.flip(to_sample(image, boxes, labels)))
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    np.testing.assert_allclose(out_boxes, T.hflip(image, boxes)[1], atol=1e-6)
    assert out_labels.tolist() == labels.tolist()


# ---------------------------------------------------------------- the SSD recipe, whole
def test_ssd_boxes_stay_inside_and_non_empty_and_the_steps_all_happen(aug):
    seen = {"colour": 0, "zoom-out": 0, "crop": 0, "flip": 0}
    for seed in SEEDS:
        image, boxes, labels = synthetic(seed)
        out = aug(image, boxes, labels, seed)
        assert out.image.shape == (64, 64, 3) and out.image.dtype == np.uint8
        assert out.boxes.dtype == np.float32 and out.labels.dtype == np.int64 and len(out.boxes) == len(out.labels)
        assert (out.boxes >= 0).all() and (out.boxes <= 1).all()
        assert (out.boxes[:, 2] > out.boxes[:, 0]).all() and (out.boxes[:, 3] > out.boxes[:, 1]).all()
        assert set(out.labels.tolist()) <= set(labels.tolist()) and (np.diff(out.labels) > 0).all()  # in order
        for step in out.steps:
            seen[step.split()[0]] += 1
    assert all(20 < n < len(SEEDS) for k, n in seen.items() if k != "colour") and seen["colour"] > 40, seen


def test_labels_stay_with_their_boxes_through_the_whole_recipe():
    """Each box painted its own colour: after zoom-out, crop, flip and resize, the middle of every output box
    still shows its label's colour (the colour change switched off, so that colours mean labels)."""
    from torchvision.transforms import v2

    aug = SSDAugment(size=96)
    aug.photometric = v2.Identity()
    image = np.zeros((120, 160, 3), np.uint8)
    boxes = np.array([[0.05, 0.05, 0.45, 0.45], [0.05, 0.55, 0.45, 0.95], [0.55, 0.05, 0.95, 0.45],
                      [0.55, 0.55, 0.95, 0.95]], np.float32)
    colours = np.array([[250, 0, 0], [0, 250, 0], [0, 0, 250], [250, 250, 250]], np.uint8)
    for (y0, x0, y1, x1), c in zip(T.to_pixels(boxes, 120, 160).astype(int), colours):
        image[y0:y1, x0:x1] = c
    checked = 0
    for seed in SEEDS:
        out = aug(image, boxes, np.arange(4), seed)
        for (y0, x0, y1, x1), label in zip(out.boxes * 96, out.labels):
            if y1 - y0 >= 4 and x1 - x0 >= 4:  # big enough that the resize's blur leaves its middle alone
                middle = out.image[int((y0 + y1) / 2), int((x0 + x1) / 2)].astype(int)
                assert np.abs(middle - colours[label]).max() <= 3, (seed, label, middle)
                checked += 1
    assert checked > 100


def test_ssd_is_reproducible_from_the_seed_and_leaves_torchs_generator_alone(aug):
    image, boxes, labels = synthetic(7)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = aug(image, boxes, labels, 5), aug(image, boxes, labels, 5)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.steps == b.steps and all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3]))
    others = [aug(image, boxes, labels, s) for s in range(6, 12)]
    assert any(not np.array_equal(o.image, a.image) for o in others)
    assert item_seed(0, 1, 2) == item_seed(0, 1, 2) and len({item_seed(0, e, i) for e in range(3) for i in range(3)}) == 9


def test_an_image_without_objects_passes_through(aug):
    image = synthetic(0)[0]
    for seed in range(10):
        out = aug(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), seed)
        assert out.image.shape == (64, 64, 3) and out.boxes.shape == (0, 4) and out.labels.shape == (0,)
        assert "crop" not in out.steps  # the crop needs an object to keep


def test_ssd_dataset_items_feed_the_loss_an_image_without_objects_included(voc_root):
    """The dataset reads the full-size photograph, augments it, and its items batch; an image left without
    objects is all padding, and the loss takes it (every box background, no regression)."""
    recs = V.load_voc(voc_root, "trainval")
    empty = V.Record(recs[0].image_path, "empty", np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                     np.zeros(0, bool), recs[0].height, recs[0].width)
    ds = D.DetectionDataset(recs + [empty], size=224, augment="ssd", seed=1)
    items = [ds[i] for i in range(len(ds))]
    assert all(im.shape == (3, 224, 224) and b.shape == (len(lab), 4) for im, b, lab in items)
    assert all(torch.equal(x, y) for a, b in zip(items, [ds[i] for i in range(len(ds))]) for x, y in zip(a, b))
    ds.epoch = 1
    assert any(not torch.equal(a[0], ds[i][0]) for i, a in enumerate(items))  # a new epoch, new draws
    images, gt_boxes, gt_labels = D.collate_detections(items)
    assert (gt_labels[-1] == PAD_LABEL).all()
    gen = torch.Generator().manual_seed(0)
    res = ssd_loss(torch.randn(len(items), 189, 21, generator=gen), torch.randn(len(items), 189, 4, generator=gen),
                   gt_boxes, gt_labels, make_anchors())
    assert torch.isfinite(res.total) and not res.match.positive[-1].any() and float(res.regression[-1]) == 0.0


def test_an_ssd_dataset_survives_pickling_for_worker_processes(voc_root):
    import pickle

    ds = D.DetectionDataset(V.load_voc(voc_root, "trainval"), size=64, augment="ssd", seed=2)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.augment == "ssd" and all(torch.equal(x, y) for x, y in zip(ds[1], copy[1]))
