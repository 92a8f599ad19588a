"""ssd_lesson.data and ssd_lesson.collage: VOC readers, batching, the offline example and collages.

Pascal VOC itself is never downloaded: small fixture datasets are written in both
layouts (official VOCdevkit XML and fastai's COCO-style json) from one table.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssd_lesson import collage as C
from ssd_lesson import data as D

ROOT = Path(__file__).resolve().parent.parent

# image id: (split, height, width, objects (name, xmin, ymin, xmax, ymax, difficult) in VOC's 1-based inclusive pixels)
LESSON = [("cow", 2, 3, 20, 15), ("person", 21, 1, 30, 25), ("bicycle", 5, 16, 18, 28), ("motorbike", 25, 10, 40, 30)]
SPEC = {
    "000003": ("test", 30, 40, [(*o, 0) for o in LESSON]),  # matches the rule, but is not in trainval
    "000005": ("train", 32, 48, [(*o, 0) for o in LESSON] + [("person", 1, 1, 8, 8, 0)]),  # an extra person
    "000007": ("val", 40, 44, [(*o, int(i == 1)) for i, o in enumerate(LESSON)]),  # the lowest trainval match
    "000009": ("train", 36, 40, [(*o, 0) for o in reversed(LESSON)]),  # matches too, higher id
    "000010": ("train", 24, 36, []),  # no objects at all
    "000012": ("val", 50, 60, [("car", 10, 20, 40, 45, 0)]),
}


def _write_image(path: Path, h: int, w: int, objects) -> None:
    im = np.full((h, w, 3), 40, np.uint8)
    for k, (_, x0, y0, x1, y1, _) in enumerate(objects):  # a filled rectangle exactly on each box
        im[y0 - 1:y1, x0 - 1:x1] = (200, 30 * k, 100)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(im).save(path, quality=95)


def _voc_xml(image_id, h, w, objects) -> str:
    objs = "".join(f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>"
                   f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                   for n, x0, y0, x1, y1, d in objects)
    return (f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size><segmented>0</segmented>{objs}</annotation>")


def make_voc(root: Path, spec=SPEC) -> Path:
    """Official layout: root/VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets/Main}."""
    base = root / "VOCdevkit" / "VOC2007"
    (base / "Annotations").mkdir(parents=True)
    (base / "ImageSets" / "Main").mkdir(parents=True)
    for iid, (_, h, w, objs) in spec.items():
        _write_image(base / "JPEGImages" / f"{iid}.jpg", h, w, objs)
        (base / "Annotations" / f"{iid}.xml").write_text(_voc_xml(iid, h, w, objs))
    splits = {s: [i for i, v in spec.items() if v[0] == s] for s in ("train", "val", "test")}
    splits["trainval"] = sorted(splits["train"] + splits["val"])
    for s, ids in splits.items():
        (base / "ImageSets" / "Main" / f"{s}.txt").write_text("".join(f"{i}\n" for i in ids))
    return base


def make_fastai(root: Path, spec=SPEC) -> Path:
    """fastai's pascal_2007: {train,valid,test}.json with bbox [x, y, w, h]; images in train/ and test/."""
    base = root / "pascal_2007"
    cats = [{"supercategory": "none", "id": i + 1, "name": n} for i, n in enumerate(D.VOC_CLASSES)]
    ann_id = 0
    for split, fname, folder in (("train", "train.json", "train"), ("val", "valid.json", "train"), ("test", "test.json", "test")):
        images, anns = [], []
        for iid, (s, h, w, objs) in spec.items():
            if s != split:
                continue
            _write_image(base / folder / f"{iid}.jpg", h, w, objs)
            images.append({"file_name": f"{iid}.jpg", "height": h, "width": w, "id": int(iid)})
            for n, x0, y0, x1, y1, d in objs:  # as Detectron's VOC json: x = xmin - 1, w = xmax - xmin + 1
                ann_id += 1
                anns.append({"segmentation": [], "area": 1, "iscrowd": 0, "image_id": int(iid), "id": ann_id,
                             "bbox": [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1],
                             "category_id": D.VOC_CLASSES.index(n) + 1, "ignore": d})
        (base / fname).write_text(json.dumps({"images": images, "type": "instances", "annotations": anns, "categories": cats}))
    return base


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="module")
def fastai_root(tmp_path_factory) -> Path:
    return make_fastai(tmp_path_factory.mktemp("fastai"))


@pytest.fixture(scope="module")
def collage_dir(tmp_path_factory) -> Path:
    return C.make_collage_dataset(12, seed=3, out_dir=tmp_path_factory.mktemp("collage") / "set")


# ---------------------------------------------------------------- classes and records
def test_classes_and_background():
    assert len(D.VOC_CLASSES) == 20 and D.BACKGROUND == 20
    assert D.VOC_CLASSES[0] == "aeroplane" and D.VOC_CLASSES[9] == "cow" and D.VOC_CLASSES[14] == "person"
    assert D.VOC_CLASSES[19] == "tvmonitor"


def _same(a: D.Record, b: D.Record) -> bool:
    return (a.image_id == b.image_id and (a.height, a.width) == (b.height, b.width)
            and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.labels, b.labels)
            and np.array_equal(a.difficult, b.difficult) and a.image_path.read_bytes() == b.image_path.read_bytes())


@pytest.mark.parametrize("split,ids", [("train", ["000005", "000009", "000010"]), ("val", ["000007", "000012"]),
                                       ("trainval", ["000005", "000007", "000009", "000010", "000012"]), ("test", ["000003"])])
def test_both_layouts_give_identical_records(voc_root, fastai_root, split, ids):
    a, b = D.load_voc(voc_root.parent.parent, split), D.load_voc(fastai_root, split)  # VOCdevkit's parent works too
    assert [r.image_id for r in a] == ids == [r.image_id for r in b]
    assert all(_same(x, y) for x, y in zip(a, b))


def test_record_values(voc_root):
    r = {r.image_id: r for r in D.load_voc(voc_root, "trainval")}
    r7 = r["000007"]
    assert (r7.height, r7.width) == (40, 44) and r7.image_path == voc_root / "JPEGImages" / "000007.jpg"
    # cow xmin=2, ymin=3, xmax=20, ymax=15 -> (y0, x0, y1, x1) = (2, 1, 15, 20) at pixel edges
    np.testing.assert_array_equal(r7.boxes[0], [2, 1, 15, 20])
    assert r7.boxes.dtype == np.float32 and r7.labels.dtype == np.int64
    assert r7.class_names == ["cow", "person", "bicycle", "motorbike"]
    assert r7.difficult.tolist() == [False, True, False, False]  # difficult kept, with its flag
    assert r["000010"].boxes.shape == (0, 4) and r["000010"].labels.shape == (0,)


# ---------------------------------------------------------------- boxes, resizing, flipping
def test_fraction_round_trip_and_resize_keeps_objects_in_their_boxes(voc_root):
    rec = {r.image_id: r for r in D.load_voc(voc_root, "trainval")}["000012"]
    frac = D.to_fractions(rec.boxes, rec.height, rec.width)
    np.testing.assert_allclose(frac, [[19 / 50, 9 / 60, 45 / 50, 40 / 60]], rtol=1e-6)
    np.testing.assert_allclose(D.to_pixels(frac, rec.height, rec.width), rec.boxes, atol=1e-4)
    image, boxes, labels = D.resize_record(rec, 224)
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8 and labels.tolist() == [D.VOC_CLASSES.index("car")]
    np.testing.assert_allclose(boxes, frac)
    # The drawn rectangle sits at boxes * 224 after the squish (to within the resampling blur).
    y0, x0, y1, x1 = boxes[0] * 224
    red = image[..., 0] > 120
    ys, xs = np.nonzero(red)
    assert abs(ys.min() - y0) <= 3 and abs(ys.max() + 1 - y1) <= 3 and abs(xs.min() - x0) <= 3 and abs(xs.max() + 1 - x1) <= 3


def test_hflip_moves_boxes_with_the_image():
    image = np.zeros((10, 20, 3), np.uint8)
    image[2:5, 4:12] = 255  # box (0.2, 0.2, 0.5, 0.6)
    flipped, boxes = D.hflip(image, np.array([[0.2, 0.2, 0.5, 0.6]], np.float32))
    np.testing.assert_allclose(boxes, [[0.2, 0.4, 0.5, 0.8]], atol=1e-6)
    ys, xs = np.nonzero(flipped[..., 0])
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (2, 5, 8, 16)  # = boxes * (10, 20, 10, 20)


def test_normalize_round_trip():
    image = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)
    t = D.normalize(image)
    assert t.shape == (3, 4, 5) and t.dtype == torch.float32
    assert math.isclose(float(t[0, 0, 0]), (0 / 255 - 0.485) / 0.229, rel_tol=1e-5)
    np.testing.assert_array_equal(D.denormalize(t), image)


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
    from ssd_lesson.anchors import make_anchors
    from ssd_lesson.loss import ssd_loss

    recs = {r.image_id: r for r in D.load_voc(voc_root, "trainval")}
    ds = D.DetectionDataset([recs["000005"], recs["000010"], recs["000007"]])
    images, gt_boxes, gt_labels = D.collate_detections([ds[i] for i in range(3)])
    assert gt_boxes.shape == (3, 5, 4) and gt_labels[1].tolist() == [-1] * 5 and gt_labels[2, 4] == -1
    anchors = make_anchors()
    assert len(anchors) == 189
    logits, actns = torch.zeros(3, 189, 21), torch.zeros(3, 189, 4)
    res = ssd_loss(logits, actns, gt_boxes, gt_labels, anchors)
    assert torch.isfinite(res.total)
    # The empty image: every box is background; BCE of logit 0 is log 2 for each of 189 x 20 columns, / 20.
    assert (res.target_labels[1] == D.BACKGROUND).all()
    assert math.isclose(float(res.classification[1]), 189 * math.log(2), rel_tol=1e-5)
    assert float(res.regression[1]) == 0.0
    assert (res.target_labels[0] != D.BACKGROUND).sum() >= 5  # every object of image 0 is matched


def test_dataloaders_feed_a_fastai_learner(voc_root):
    import fastai.callback.progress  # noqa: F401  (Learner.no_bar)
    from fastai.learner import Learner
    from ssd_lesson.anchors import make_anchors
    from ssd_lesson.loss import ssd_loss

    recs = D.load_voc(voc_root, "train") + D.load_voc(voc_root, "val")
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
    rec = {r.image_id: r for r in D.load_voc(voc_root, "trainval")}["000012"]
    image, boxes, _ = D.DetectionDataset([rec], size=32)[0]
    flipped = D.hflip(np.zeros((1, 1, 3)), boxes.numpy())[1]
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
        assert D.find_lesson_record(D.load_voc(root, "trainval")).image_id == "000007"
        ex = D.lesson_example(voc=root)
        assert ex.source.startswith("Using Pascal VOC 2007 image 000007")
        assert ex.classes == ["cow", "person", "bicycle", "motorbike"] and ex.image.shape == (40, 44, 3)
        assert ex.image224.shape == (224, 224, 3)
        np.testing.assert_allclose(ex.boxes[0], [2 / 40, 1 / 44, 15 / 40, 20 / 44], rtol=1e-6)
    recs = {r.image_id: r for r in D.load_voc(voc_root, "trainval")}
    assert D.find_lesson_record([recs["000005"], recs["000012"]]) is None  # an extra person is not the example


def test_lesson_example_falls_back_when_voc_has_no_match(collage_dir):
    with pytest.warns(D.VocNotFoundWarning, match="exactly one cow"):
        ex = D.lesson_example(voc=collage_dir)
    assert ex.source.startswith("Using the embedded offline example")


def test_embedded_example():
    ex = D.lesson_example(offline=True)
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


# ---------------------------------------------------------------- photo annotations and collages
def test_photo_annotations_are_inside_installed_wheels_and_plotted(tmp_path):
    recs = C.photo_records()
    assert {r.image_path.name for r in recs} >= {"astronaut.png", "camera.png", "chelsea.png", "grace_hopper.jpg",
                                                 "motorcycle_left.png", "motorcycle_right.png"}
    for r in recs:
        w, h = Image.open(r.image_path).size
        assert (r.width, r.height) == (w, h)
        assert ((r.boxes[:, 2] <= h) & (r.boxes[:, 3] <= w) & (r.boxes[:, :2] >= 0).all(1)).all()
    crops = C.object_crops()
    assert {D.VOC_CLASSES[c.label] for c in crops} == {"person", "cat", "motorbike"}
    assert all(not name.startswith("motorcycle") or c.label == 13 for c in crops for name in [c.source])
    out = C.plot_photo_annotations(tmp_path / "check.png")  # the check plot, by eye
    assert Image.open(out).size[0] > 500


def test_collage_dataset_is_read_by_the_voc_loader(collage_dir):
    train, val = D.load_voc(collage_dir, "train"), D.load_voc(collage_dir, "val")
    assert [r.image_id for r in val] == ["000004", "000009"] and len(train) == 10
    for r in train + val:
        assert (r.height, r.width) == (224, 224) and 1 <= len(r.labels) <= 4
        assert ((r.boxes >= 0) & (r.boxes <= 224)).all() and (r.boxes == np.round(r.boxes)).all()


def test_collage_boxes_match_the_pasted_pixels(collage_dir):
    crops = {c.source: c for c in C.object_crops()}
    for rec in D.load_voc(collage_dir, "trainval"):
        c = C.render_collage(3, int(rec.image_id))
        np.testing.assert_array_equal(rec.boxes, c.boxes)
        np.testing.assert_array_equal(rec.labels, c.labels)
        saved = D.load_image(rec.image_path).astype(int)
        assert np.abs(saved - c.image.astype(int)).mean() < 3  # JPEG, quality 95
        for k, ((y0, x0, y1, x1), (source, flip)) in enumerate(zip(c.boxes, c.sources)):
            seen = c.owner[y0:y1, x0:x1] == k
            # Visible pixels span the whole box (so it stays the tight box) and most of it shows.
            assert seen[0].any() and seen[-1].any() and seen[:, 0].any() and seen[:, -1].any()
            assert seen.mean() >= C.MIN_VISIBLE and (c.owner == k).sum() == seen.sum()
            # What shows there is the annotated crop resized to exactly the box.
            crop = np.asarray(Image.fromarray(crops[source].image).resize((x1 - x0, y1 - y0), Image.BILINEAR))
            crop = crop[:, ::-1] if flip else crop
            np.testing.assert_array_equal(c.image[y0:y1, x0:x1][seen], crop[seen])
            assert crops[source].label == c.labels[k]


def test_collage_is_deterministic_and_varied(collage_dir, tmp_path):
    again = C.make_collage_dataset(12, seed=3, out_dir=tmp_path / "again")
    files = sorted(p.relative_to(collage_dir) for p in collage_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((collage_dir / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert not np.array_equal(C.render_collage(4, 0).image, C.render_collage(3, 0).image)
    cs = [C.render_collage(5, i) for i in range(40)]
    assert {D.VOC_CLASSES[l] for c in cs for l in c.labels} == {"person", "cat", "motorbike"}
    assert {len(c.labels) for c in cs} == {1, 2, 3, 4}
    longest = np.array([max(y1 - y0, x1 - x0) for c in cs for y0, x0, y1, x1 in c.boxes])
    assert longest.min() < 73 and longest.max() > 157  # some objects for the 4x4 grid, some for the 1x1


def test_collage_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty.*overwrite=True"):
        C.make_collage_dataset(3, seed=0, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    C.make_collage_dataset(3, seed=0, out_dir=out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and len(list((out / "JPEGImages").iterdir())) == 3
    C.make_collage_dataset(2, seed=0, out_dir=out, overwrite=True)  # replaced, not merged
    assert len(list((out / "JPEGImages").iterdir())) == 2
    assert len(D.load_voc(out, "val")) == 1


# ---------------------------------------------------------------- finding VOC
@pytest.fixture
def no_voc_env(monkeypatch, tmp_path):
    from fastai.data.external import fastai_cfg

    monkeypatch.delenv(D.ENV_VAR, raising=False)
    monkeypatch.setenv("FASTAI_HOME", str(tmp_path / "fastai_home"))  # fastai's default data folder goes here
    fastai_cfg.cache_clear()  # fastai caches its config: make it read FASTAI_HOME again
    yield tmp_path / "fastai_home" / "data" / "pascal_2007"
    fastai_cfg.cache_clear()


def _voc_warning(record) -> str:
    msgs = [str(w.message) for w in record if issubclass(w.category, D.VocNotFoundWarning)]
    assert len(msgs) == 1
    return msgs[0]


def test_find_voc_explains_what_to_do_when_nothing_is_found(no_voc_env):
    with pytest.warns(D.VocNotFoundWarning) as w:
        assert D.find_voc() is None
    msg = _voc_warning(w)
    for needle in (str(no_voc_env), "SSD_LESSON_VOC", "untar_data(URLs.PASCAL_2007)", "pascal_2007.tgz",
                   "VOCdevkit/VOC2007", "embedded offline example"):
        assert needle in msg, needle


def test_find_voc_order(no_voc_env, monkeypatch, tmp_path, voc_root, fastai_root):
    make_fastai(no_voc_env.parent)  # fastai's default location
    assert D.find_voc() == no_voc_env
    monkeypatch.setenv(D.ENV_VAR, str(voc_root.parent))  # VOCdevkit: the env var wins
    assert D.find_voc() == voc_root
    assert D.find_voc(fastai_root) == fastai_root  # an explicit path wins
    with pytest.warns(D.VocNotFoundWarning, match="the path you gave"):
        assert D.find_voc(tmp_path / "nowhere") is None  # a wrong explicit path is reported, not replaced


def test_find_voc_download_failure_is_a_message(no_voc_env, monkeypatch):
    import fastai.data.external as fe

    def offline(url, *a, **k):
        raise ConnectionError(f"no network for {url}")

    monkeypatch.setattr(fe, "untar_data", offline)
    with pytest.warns(D.VocNotFoundWarning, match="download failed.*no network"):
        assert D.find_voc(download=True) is None


# ---------------------------------------------------------------- bad input
def test_missing_files(tmp_path, voc_root):
    with pytest.raises(FileNotFoundError, match="holds neither"):
        D.load_voc(tmp_path / "absent")
    base = make_voc(tmp_path / "a", {"000001": ("train", 10, 10, [("cat", 1, 1, 5, 5, 0)])})
    (base / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n")
    with pytest.raises(FileNotFoundError, match=r"000002\.xml: annotation file not found"):
        D.load_voc(base, "train")
    (base / "JPEGImages" / "000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"000001\.xml: its image .*000001\.jpg not found"):
        D.parse_voc_xml(base / "Annotations" / "000001.xml", base / "JPEGImages")
    with pytest.raises(FileNotFoundError, match="valid.json"):
        D.read_fastai_split(tmp_path / "a", "val")
    with pytest.raises(ValueError, match="split must be one of"):
        D.load_voc(voc_root, "training")


def test_corrupt_image(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match=r"bad\.jpg: cannot read the image"):
        D.load_image(bad)
    rec = D.Record(bad, "bad", np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool), 10, 10)
    with pytest.raises(ValueError, match=r"bad\.jpg"):
        D.DetectionDataset([rec])[0]
    xml = tmp_path / "bad.xml"  # no <size>: the reader asks the (corrupt) image
    xml.write_text("<annotation><filename>bad.jpg</filename></annotation>")
    with pytest.raises(ValueError, match=r"bad\.jpg: cannot read the image"):
        D.parse_voc_xml(xml, tmp_path)


def test_xml_without_objects_is_an_empty_record(tmp_path):
    _write_image(tmp_path / "000001.jpg", 12, 16, [])
    (tmp_path / "000001.xml").write_text(_voc_xml("000001", 12, 16, []))
    r = D.parse_voc_xml(tmp_path / "000001.xml", tmp_path)
    assert r.boxes.shape == (0, 4) and r.labels.shape == (0,) and r.difficult.shape == (0,)
    image, boxes, labels = D.resize_record(r, 32)
    assert image.shape == (32, 32, 3) and boxes.shape == (0, 4) and labels.shape == (0,)


def test_bad_annotations(tmp_path):
    _write_image(tmp_path / "000001.jpg", 12, 16, [])
    xml = tmp_path / "000001.xml"
    xml.write_text(_voc_xml("000001", 12, 16, [("cat", 1, 1, 5, 5, 0), ("giraffe", 2, 2, 6, 6, 0)]))
    with pytest.raises(ValueError, match=r"000001\.xml, object 1: unknown class name 'giraffe'"):
        D.parse_voc_xml(xml, tmp_path)
    xml.write_text(_voc_xml("000001", 12, 16, [("cat", 1, 1, 30, 5, 0)]))
    with pytest.raises(ValueError, match=r"000001\.xml, object 0: .*outside the 16x12"):
        D.parse_voc_xml(xml, tmp_path)
    xml.write_text("<annotation><object>")
    with pytest.raises(ValueError, match=r"000001\.xml: not a readable XML"):
        D.parse_voc_xml(xml, tmp_path)


def test_json_bbox_outside_the_image(tmp_path):
    base = make_fastai(tmp_path, {"000001": ("train", 20, 30, [("dog", 1, 1, 10, 10, 0)]),
                                  "000002": ("val", 20, 30, [])})
    d = json.loads((base / "train.json").read_text())
    d["annotations"][0]["bbox"] = [25, 5, 12, 4]  # x + w = 37 > width 30
    (base / "train.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"train\.json, annotation id 1 of image 000001\.jpg: .*outside the 30x20"):
        D.load_voc(base, "train")


def test_empty_split(tmp_path):
    base = make_voc(tmp_path / "v", {"000001": ("train", 10, 10, [])})
    with pytest.raises(ValueError, match=r"val\.txt: the split lists no images"):
        D.load_voc(base, "val")
    fa = make_fastai(tmp_path / "f", {"000001": ("train", 10, 10, [])})
    with pytest.raises(ValueError, match=r"valid\.json: the split lists no images"):
        D.load_voc(fa, "val")
    with pytest.raises(ValueError, match="empty split"):
        D.make_dataloaders(D.load_voc(base, "train"), [])
