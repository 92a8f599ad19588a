"""The offline training set: annotated photographs from installed wheels pasted into collages."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ssd_lesson.data import collage as C
from ssd_lesson.data import transforms as T, voc as V
from ssd_lesson.drawing.draw import plot_photo_annotations


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
    assert {V.VOC_CLASSES[c.label] for c in crops} == {"person", "cat", "motorbike"}
    assert all(not name.startswith("motorcycle") or c.label == 13 for c in crops for name in [c.source])
    out = plot_photo_annotations(tmp_path / "check.png")  # the check plot, by eye
    assert Image.open(out).size[0] > 500


def test_collage_dataset_is_read_by_the_voc_loader(collage_dir):
    train, val = V.load_voc(collage_dir, "train"), V.load_voc(collage_dir, "val")
    assert [r.image_id for r in val] == ["000004", "000009"] and len(train) == 10
    for r in train + val:
        assert (r.height, r.width) == (224, 224) and 1 <= len(r.labels) <= 4
        assert ((r.boxes >= 0) & (r.boxes <= 224)).all() and (r.boxes == np.round(r.boxes)).all()


def test_collage_boxes_match_the_pasted_pixels(collage_dir):
    crops = {c.source: c for c in C.object_crops()}
    for rec in V.load_voc(collage_dir, "trainval"):
        c = C.render_collage(3, int(rec.image_id))
        np.testing.assert_array_equal(rec.boxes, c.boxes)
        np.testing.assert_array_equal(rec.labels, c.labels)
        saved = T.load_image(rec.image_path).astype(int)
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
    assert {V.VOC_CLASSES[l] for c in cs for l in c.labels} == {"person", "cat", "motorbike"}
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
    assert len(V.load_voc(out, "val")) == 1
