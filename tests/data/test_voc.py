"""Pascal VOC readers (VOC XML and fastai's json), finding the data, and bad annotations; on small sets written in both layouts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ssd_lesson.data import example as E, images as D, transforms as T, voc as V

from tests.helpers import _voc_xml, _write_image, make_fastai, make_voc


# ---------------------------------------------------------------- classes and records
def test_classes_and_background():
    assert len(V.VOC_CLASSES) == 20 and V.BACKGROUND == 20
    assert V.VOC_CLASSES[0] == "aeroplane" and V.VOC_CLASSES[9] == "cow" and V.VOC_CLASSES[14] == "person"
    assert V.VOC_CLASSES[19] == "tvmonitor"


def _same(a: V.Record, b: V.Record) -> bool:
    return (a.image_id == b.image_id and (a.height, a.width) == (b.height, b.width)
            and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.labels, b.labels)
            and np.array_equal(a.difficult, b.difficult) and a.image_path.read_bytes() == b.image_path.read_bytes())


@pytest.mark.parametrize("split,ids", [("train", ["000005", "000009", "000010"]), ("val", ["000007", "000012"]),
                                       ("trainval", ["000005", "000007", "000009", "000010", "000012"]), ("test", ["000003"])])
def test_both_layouts_give_identical_records(voc_root, fastai_root, split, ids):
    a, b = V.load_voc(voc_root.parent.parent, split), V.load_voc(fastai_root, split)  # VOCdevkit's parent works too
    assert [r.image_id for r in a] == ids == [r.image_id for r in b]
    assert all(_same(x, y) for x, y in zip(a, b))


def test_record_values(voc_root):
    r = {r.image_id: r for r in V.load_voc(voc_root, "trainval")}
    r7 = r["000007"]
    assert (r7.height, r7.width) == (40, 44) and r7.image_path == voc_root / "JPEGImages" / "000007.jpg"
    # cow xmin=2, ymin=3, xmax=20, ymax=15 -> (y0, x0, y1, x1) = (2, 1, 15, 20) at pixel edges
    np.testing.assert_array_equal(r7.boxes[0], [2, 1, 15, 20])
    assert r7.boxes.dtype == np.float32 and r7.labels.dtype == np.int64
    assert r7.class_names == ["cow", "person", "bicycle", "motorbike"]
    assert r7.difficult.tolist() == [False, True, False, False]  # difficult kept, with its flag
    assert r["000010"].boxes.shape == (0, 4) and r["000010"].labels.shape == (0,)


# ---------------------------------------------------------------- finding VOC
@pytest.fixture
def no_voc_env(monkeypatch, tmp_path):
    from fastai.data.external import fastai_cfg

    monkeypatch.delenv(V.ENV_VAR, raising=False)
    monkeypatch.setenv("FASTAI_HOME", str(tmp_path / "fastai_home"))  # fastai's default data folder goes here
    fastai_cfg.cache_clear()  # fastai caches its config: make it read FASTAI_HOME again
    yield tmp_path / "fastai_home" / "data" / "pascal_2007"
    fastai_cfg.cache_clear()


def _voc_warning(record) -> str:
    msgs = [str(w.message) for w in record if issubclass(w.category, V.VocNotFoundWarning)]
    assert len(msgs) == 1
    return msgs[0]


@pytest.mark.fastai  # asks fastai where its data folder is
def test_find_voc_explains_what_to_do_when_nothing_is_found(no_voc_env):
    with pytest.warns(V.VocNotFoundWarning) as w:
        assert V.find_voc(warn=True) is None
    msg = _voc_warning(w)
    for needle in (str(no_voc_env), "SSD_LESSON_VOC", "untar_data(URLs.PASCAL_2007)", "pascal_2007.tgz",
                   "VOCdevkit/VOC2007", "embedded offline example"):
        assert needle in msg, needle


@pytest.mark.fastai  # asks fastai where its data folder is
def test_find_voc_order(no_voc_env, monkeypatch, tmp_path, voc_root, fastai_root):
    make_fastai(no_voc_env.parent)  # fastai's default location
    assert V.find_voc() == no_voc_env
    monkeypatch.setenv(V.ENV_VAR, str(voc_root.parent))  # VOCdevkit: the env var wins
    assert V.find_voc() == voc_root
    assert V.find_voc(fastai_root) == fastai_root  # an explicit path wins
    with pytest.warns(V.VocNotFoundWarning, match="the path you gave"):
        assert V.find_voc(tmp_path / "nowhere") is None  # a wrong explicit path is reported, not replaced


@pytest.mark.fastai  # asks fastai where its data folder is
def test_find_voc_download_failure_is_a_message(no_voc_env, monkeypatch):
    import fastai.data.external as fe

    def offline(url, *a, **k):
        raise ConnectionError(f"no network for {url}")

    monkeypatch.setattr(fe, "untar_data", offline)
    with pytest.warns(V.VocNotFoundWarning, match="download failed.*no network"):
        assert V.find_voc(download=True) is None


# ---------------------------------------------------------------- bad input
def test_missing_files(tmp_path, voc_root):
    with pytest.raises(FileNotFoundError, match="holds neither"):
        V.load_voc(tmp_path / "absent")
    base = make_voc(tmp_path / "a", {"000001": ("train", 10, 10, [("cat", 1, 1, 5, 5, 0)])})
    (base / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n")
    with pytest.raises(FileNotFoundError, match=r"000002\.xml: annotation file not found"):
        V.load_voc(base, "train")
    (base / "JPEGImages" / "000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"000001\.xml: its image .*000001\.jpg not found"):
        V.parse_voc_xml(base / "Annotations" / "000001.xml", base / "JPEGImages")
    with pytest.raises(FileNotFoundError, match="valid.json"):
        V.read_fastai_split(tmp_path / "a", "val")
    with pytest.raises(ValueError, match="split must be one of"):
        V.load_voc(voc_root, "training")


def test_corrupt_image(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match=r"bad\.jpg: cannot read the image"):
        T.load_image(bad)
    rec = V.Record(bad, "bad", np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool), 10, 10)
    with pytest.raises(ValueError, match=r"bad\.jpg"):
        D.DetectionDataset([rec])[0]
    xml = tmp_path / "bad.xml"  # no <size>: the reader asks the (corrupt) image
    xml.write_text("<annotation><filename>bad.jpg</filename></annotation>")
    with pytest.raises(ValueError, match=r"bad\.jpg: cannot read the image"):
        V.parse_voc_xml(xml, tmp_path)


def test_xml_without_objects_is_an_empty_record(tmp_path):
    _write_image(tmp_path / "000001.jpg", 12, 16, [])
    (tmp_path / "000001.xml").write_text(_voc_xml("000001", 12, 16, []))
    r = V.parse_voc_xml(tmp_path / "000001.xml", tmp_path)
    assert r.boxes.shape == (0, 4) and r.labels.shape == (0,) and r.difficult.shape == (0,)
    image, boxes, labels = T.resize_record(r, 32)
    assert image.shape == (32, 32, 3) and boxes.shape == (0, 4) and labels.shape == (0,)


def test_bad_annotations(tmp_path):
    _write_image(tmp_path / "000001.jpg", 12, 16, [])
    xml = tmp_path / "000001.xml"
    xml.write_text(_voc_xml("000001", 12, 16, [("cat", 1, 1, 5, 5, 0), ("giraffe", 2, 2, 6, 6, 0)]))
    with pytest.raises(ValueError, match=r"000001\.xml, object 1: unknown class name 'giraffe'"):
        V.parse_voc_xml(xml, tmp_path)
    xml.write_text(_voc_xml("000001", 12, 16, [("cat", 1, 1, 30, 5, 0)]))
    with pytest.raises(ValueError, match=r"000001\.xml, object 0: .*outside the 16x12"):
        V.parse_voc_xml(xml, tmp_path)
    xml.write_text("<annotation><object>")
    with pytest.raises(ValueError, match=r"000001\.xml: not a readable XML"):
        V.parse_voc_xml(xml, tmp_path)


def test_json_bbox_outside_the_image(tmp_path):
    base = make_fastai(tmp_path, {"000001": ("train", 20, 30, [("dog", 1, 1, 10, 10, 0)]),
                                  "000002": ("val", 20, 30, [])})
    d = json.loads((base / "train.json").read_text())
    d["annotations"][0]["bbox"] = [25, 5, 12, 4]  # x + w = 37 > width 30
    (base / "train.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"train\.json, annotation id 1 of image 000001\.jpg: .*outside the 30x20"):
        V.load_voc(base, "train")


@pytest.mark.fastai  # make_dataloaders: fastai's DataLoaders
def test_empty_split(tmp_path):
    base = make_voc(tmp_path / "v", {"000001": ("train", 10, 10, [])})
    with pytest.raises(ValueError, match=r"val\.txt: the split lists no images"):
        V.load_voc(base, "val")
    fa = make_fastai(tmp_path / "f", {"000001": ("train", 10, 10, [])})
    with pytest.raises(ValueError, match=r"valid\.json: the split lists no images"):
        V.load_voc(fa, "val")
    with pytest.raises(ValueError, match="empty split"):
        D.make_dataloaders(V.load_voc(base, "train"), [])


# ---------------------------------------------------------------- bad input is refused, naming the file and record
@pytest.mark.fastai  # asks fastai where its data folder is
def test_offline_is_quiet_and_asking_for_voc_gives_the_advice(no_voc_env, monkeypatch, tmp_path):
    import warnings

    from ssd_lesson.course.lesson import voc_status

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # offline, nothing asked for: no warning at all
        assert V.find_voc() is None
        ex = E.lesson_example()
    assert ex.source.startswith("Using the embedded offline example") and "README.md" in ex.source
    assert voc_status().startswith("Pascal VOC 2007 was not found")  # notebook 01's full advice
    monkeypatch.setenv(V.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.warns(V.VocNotFoundWarning, match=r"\$SSD_LESSON_VOC"):
        assert V.find_voc() is None


def _fastai_json(tmp_path, images=None, annotations=None, **extra):
    _write_image(tmp_path / "train" / "1.jpg", 20, 30, [])
    d = {"images": [{"file_name": "1.jpg", "height": 20, "width": 30, "id": 1}] if images is None else images,
         "annotations": [{"image_id": 1, "id": 7, "bbox": [1, 2, 10, 5], "category_id": 1, "ignore": 0}]
         if annotations is None else annotations,
         "categories": [{"id": 1, "name": "cow"}], **extra}
    path = tmp_path / "train.json"
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize("change,says", [
    (dict(annotations=[{"image_id": 1, "id": 7, "category_id": 1}]), r"annotation id 7 of image 1.jpg: lacks the key 'bbox'"),
    (dict(annotations=[{"image_id": 1, "id": 7, "bbox": [1, 2, 10], "category_id": 1}]), r"annotation id 7 of image 1.jpg: bbox must be 4 numbers"),
    (dict(annotations=[{"id": 7, "bbox": [1, 2, 10, 5], "category_id": 1}]), r"annotation 0 \(id 7\).*lacks the key 'image_id'"),
    (dict(images=[{"file_name": "1.jpg", "id": 1}]), r"image 0 \(id 1\).*lacks the keys 'height', 'width'"),
    (dict(images=[{"file_name": "1.jpg", "height": 20, "width": 30, "id": 1}] * 2), r"image 1: id 1 is also the id"),
    (dict(annotations=[{"image_id": 9, "id": 7, "bbox": [1, 2, 10, 5], "category_id": 1}]), r"image_id 9 is not among"),
    (dict(annotations=[{"image_id": 1, "id": 7, "bbox": [1, 2, 10, 5], "category_id": 1, "ignore": "maybe"}]), "difficult flag"),
])
def test_fastai_json_problems_name_the_file_and_record(tmp_path, change, says):
    path = _fastai_json(tmp_path, **change)
    with pytest.raises(ValueError, match=says) as e:
        V.read_fastai_json(path, tmp_path / "train")
    assert str(path) in str(e.value)


def test_fastai_json_null_annotations_and_non_utf8(tmp_path):
    path = _fastai_json(tmp_path)
    path.write_text(path.read_text().replace('"annotations": [', '"annotations": null, "x": ['))
    with pytest.raises(ValueError, match='"annotations" must be a list, got NoneType') as e:
        V.read_fastai_json(path, tmp_path / "train")
    assert str(path) in str(e.value)
    path.write_bytes(b'{"images": "\xff\xfe caf\xe9"}')
    with pytest.raises(ValueError, match="not a UTF-8 text file") as e:
        V.read_fastai_json(path, tmp_path / "train")
    assert str(path) in str(e.value)


def test_fastai_json_ignore_flags(tmp_path):
    anns = [{"image_id": 1, "id": k, "bbox": [1, 2, 10, 5], "category_id": 1, "ignore": flag}
            for k, flag in enumerate(["0", 0, "1", True, "false", 1])]
    (r,) = V.read_fastai_json(_fastai_json(tmp_path, annotations=anns), tmp_path / "train")
    assert r.difficult.tolist() == [False, False, True, True, False, True]  # "0" is not difficult


def test_voc_xml_difficult_words_bom_and_size(tmp_path):
    _write_image(tmp_path / "JPEGImages" / "a.jpg", 20, 30, [])
    objs = [("cow", 1, 1, 10, 10, d) for d in ("true", "false", "1", "0", "True")]
    xml = tmp_path / "a.xml"
    xml.write_text(_voc_xml("a", 20, 30, objs))
    assert V.parse_voc_xml(xml, tmp_path / "JPEGImages").difficult.tolist() == [True, False, True, False, True]
    xml.write_text(_voc_xml("a", 40, 30, objs[:1]))  # <size> says 30x40, the image is 30x20
    with pytest.raises(ValueError, match=r"<size> says 30x40.*is 30x20") as e:
        V.parse_voc_xml(xml, tmp_path / "JPEGImages")
    assert str(xml) in str(e.value) and "a.jpg" in str(e.value)
    root = make_voc(tmp_path / "bom")
    split = root / "ImageSets" / "Main" / "train.txt"
    split.write_bytes(b"\xef\xbb\xbf" + split.read_bytes())  # saved by an editor with a byte-order mark
    assert [r.image_id for r in V.read_voc_split(root, "train")] == split.read_text(encoding="utf-8-sig").split()
