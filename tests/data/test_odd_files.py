"""Odd but real files: phone photos (EXIF orientation), a json whose size disagrees with its image,
a decompression bomb, split files listing an id twice or an id with a space. Each is read one agreed way
or refused with one line naming the file."""
from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssd_lesson.data.transforms import load_image, resize_record
from ssd_lesson.data.voc import load_voc, parse_voc_xml, read_fastai_json, read_voc_split
from tests.in_process import run_main

ORIENTATION = 0x0112


def _phone_photo(path: Path, orientation: int) -> np.ndarray:
    """A JPEG stored 120 wide x 60 high with a red block at its stored top-left, tagged with ``orientation``.
    Returns what a viewer shows: the stored pixels turned as EXIF says (numpy's rot90, not PIL's)."""
    stored = np.full((60, 120, 3), 40, np.uint8)
    stored[0:20, 0:30] = (230, 20, 20)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    with Image.open(path) as im:  # the decoded stored pixels, not turned (PIL leaves EXIF alone)
        decoded = np.asarray(im.convert("RGB"))
    return np.rot90(decoded, k=-1 if orientation == 6 else 1)  # 6: turn clockwise to view; 8: anticlockwise


def _fastai_json(path: Path, file_name: str, h: int, w: int, bbox: list) -> Path:
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": file_name, "height": h, "width": w}],
                                "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": bbox}],
                                "categories": [{"id": 7, "name": "cat"}]}))
    return path


@pytest.mark.parametrize("orientation", [6, 8])
def test_phone_photo_record_boxes_and_pixels_agree(tmp_path, orientation):
    shown = _phone_photo(tmp_path / "phone.jpg", orientation)
    assert shown.shape == (120, 60, 3)
    # the stored top-left block, on screen: top-right (6) or bottom-left (8)
    y0, x0, y1, x1 = (0, 40, 30, 60) if orientation == 6 else (90, 0, 120, 20)
    assert shown[y0 + 2:y1 - 2, x0 + 2:x1 - 2, 0].min() > 200 and (shown[..., 0] > 200).sum() <= 30 * 20
    pixels = load_image(tmp_path / "phone.jpg")
    assert pixels.shape == (120, 60, 3)
    np.testing.assert_array_equal(pixels, shown)
    # annotated on the photo as shown: width 60, height 120, the block's box
    (rec,) = read_fastai_json(_fastai_json(tmp_path / "a.json", "phone.jpg", 120, 60, [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]),
                              tmp_path)
    assert (rec.height, rec.width) == pixels.shape[:2]
    np.testing.assert_array_equal(rec.boxes, [[y0, x0, y1, x1]])
    small, frac, _ = resize_record(rec, 224)
    fy0, fx0, fy1, fx1 = (frac[0] * 224).round().astype(int)
    inside = small[fy0 + 4:fy1 - 4, fx0 + 4:fx1 - 4]
    assert inside[..., 0].min() > 180 and inside[..., 1].max() < 80  # the box holds the red block
    # the stored (sideways) size in the json is refused: the boxes would be on another image
    with pytest.raises(ValueError, match=r"b\.json, image 0 \(phone\.jpg\): height and width say 120x60 .* is 60x120 "
                                         r"upright \(its EXIF orientation turns the stored pixels a quarter turn"):
        read_fastai_json(_fastai_json(tmp_path / "b.json", "phone.jpg", 60, 120, [0, 0, 10, 10]), tmp_path)
    # the VOC XML reader checks <size> against the same upright size
    (tmp_path / "phone.xml").write_text("<annotation><filename>phone.jpg</filename><size><width>60</width>"
                                        "<height>120</height></size></annotation>")
    assert (parse_voc_xml(tmp_path / "phone.xml", tmp_path).height, parse_voc_xml(tmp_path / "phone.xml", tmp_path).width) == (120, 60)


def test_fastai_json_size_unlike_its_image_is_refused(tmp_path):
    Image.fromarray(np.zeros((50, 80, 3), np.uint8)).save(tmp_path / "im.jpg")
    with pytest.raises(ValueError, match=r"j\.json, image 0 \(im\.jpg\): height and width say 160x100 \(width x height\) "
                                         r"but the image .*im\.jpg is 80x50"):
        read_fastai_json(_fastai_json(tmp_path / "j.json", "im.jpg", 100, 160, [0, 0, 10, 10]), tmp_path)
    (rec,) = read_fastai_json(_fastai_json(tmp_path / "ok.json", "im.jpg", 50, 80, [8, 5, 16, 10]), tmp_path)
    np.testing.assert_array_equal(rec.boxes, [[5, 8, 15, 24]])


def _bomb(path: Path, side: int = 30000) -> Path:
    """A PNG whose header claims side x side pixels (900 million): a few bytes, no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_is_one_line_naming_the_file(tmp_path):
    bomb = _bomb(tmp_path / "bomb.png")
    with pytest.raises(ValueError, match=r"bomb\.png: refused: its header claims more pixels .* decompression bomb"):
        load_image(bomb)
    (tmp_path / "bomb.xml").write_text("<annotation><filename>bomb.png</filename></annotation>")
    with pytest.raises(ValueError, match=r"bomb\.png: refused: its header claims more pixels"):
        parse_voc_xml(tmp_path / "bomb.xml", tmp_path)


@pytest.mark.fastai  # evaluate loads the model
def test_decompression_bomb_in_evaluate_is_one_line(voc_root, tmp_path):
    """``python -m ssd_lesson evaluate``, run in this process (tests/in_process.py)."""
    voc = shutil.copytree(voc_root, tmp_path / "VOC2007")
    first = (voc / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    _bomb(voc / "JPEGImages" / f"{first}.jpg")
    r = run_main("evaluate", "--data", "voc", "--data-dir", voc, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{first}.jpg: refused: its header claims more pixels" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("lines, message", [
    (["{0}", "{1}", "{0}"], r"val\.txt, line 3: image id '{0}' is listed twice \(also on line 1\)"),
    (["{0}", "{1} 2"], r"val\.txt, line 2: '{1} 2' is not one image id \(an id has no spaces"),
])
def test_split_file_with_a_twice_listed_or_spaced_id_is_refused(voc_root, tmp_path, lines, message):
    voc = shutil.copytree(voc_root, tmp_path / "VOC2007")
    split = voc / "ImageSets" / "Main" / "val.txt"
    ids = split.read_text().split() + (voc / "ImageSets" / "Main" / "train.txt").read_text().split()
    split.write_text("".join(ln.format(*ids) + "\n" for ln in lines))
    with pytest.raises(ValueError, match=message.format(*ids)):
        read_voc_split(voc, "val")
    with pytest.raises(ValueError, match=message.format(*ids)):
        load_voc(voc, "val")
