"""Pascal VOC 2007: its classes, its two layouts on disk, and finding it on this machine.

Images are read as viewers show them: the EXIF orientation of a phone photo is applied, to the
pixels (:func:`ssd_lesson.data.transforms.load_image`) and to the size the readers check the annotations
against, so an annotation is read on the upright image. A :class:`Record` holds one image's boxes ``(y0, x0, y1, x1)`` in **pixels** of the
original image, measured at pixel edges: a VOC XML ``xmin=1 .. xmax=W`` box spans
``x0=0 .. x1=W``. The COCO-style json of fastai's ``pascal_2007`` gives the same numbers
from ``[x, y, w, h]`` as ``x0=x, x1=x+w``. Class ids 0..19 follow :data:`VOC_CLASSES`;
background is :data:`BACKGROUND` (20). Readers raise errors that name the file.

fastai is imported only to find or download the data (``untar_data(URLs.PASCAL_2007)``). The readers read
VOC 2012 too; :mod:`~ssd_lesson.data.voc_sets` trains on a year's splits, or both years', by name.
"""
from __future__ import annotations

import json
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .voc_years import FASTAI_JSON, SPLITS, VocYear, describe_years, find_years

__all__ = ["VOC_CLASSES", "BACKGROUND", "ENV_VAR", "SPLITS", "VocNotFoundWarning", "Record", "parse_voc_xml",
           "write_voc_xml", "read_voc_split", "read_fastai_json", "read_fastai_split", "voc_layout", "read_year", "load_voc",
           "voc_place", "find_voc", "fastai_default_voc", "voc_missing_message"]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
BACKGROUND: int = len(VOC_CLASSES)  # 20: the extra, last class column of the model
CLASS_IDS = {name: i for i, name in enumerate(VOC_CLASSES)}
ENV_VAR = "SSD_LESSON_VOC"

_EDGE_TOLERANCE = 1.0  # pixels a box may stick out of its image (rounding in some tools) before it is an error

class VocNotFoundWarning(UserWarning):
    """Pascal VOC 2007 is not on this machine; the message says what to do."""


@dataclass(eq=False)
class Record:
    """One annotated image.

    boxes: ``(G, 4)`` float32 ``(y0, x0, y1, x1)`` in pixels of the original image.
    labels: ``(G,)`` int64 class ids into :data:`VOC_CLASSES`.
    difficult: ``(G,)`` bool, VOC's "difficult" flag (kept, not dropped).
    G may be 0: an image with no objects.
    """

    image_path: Path
    image_id: str
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    height: int
    width: int

    @property
    def class_names(self) -> list[str]:
        return [VOC_CLASSES[i] for i in self.labels]


def _check_box(box: Sequence[float], height: int, width: int, where: str) -> list[float]:
    """Return ``box`` (y0, x0, y1, x1) clipped to the image, or raise if it is really outside or empty."""
    y0, x0, y1, x1 = (float(v) for v in box)
    t = _EDGE_TOLERANCE
    if not (-t <= y0 < y1 <= height + t and -t <= x0 < x1 <= width + t):
        raise ValueError(f"{where}: box (y0, x0, y1, x1) = ({y0:g}, {x0:g}, {y1:g}, {x1:g}) is empty or "
                         f"falls outside the {width}x{height} (width x height) image")
    return [max(y0, 0.0), max(x0, 0.0), min(y1, float(height)), min(x1, float(width))]


def _class_id(name: str, where: str) -> int:
    key = name.strip().lower()
    if key not in CLASS_IDS:
        raise ValueError(f"{where}: unknown class name {name!r}; expected one of the 20 VOC classes {VOC_CLASSES}")
    return CLASS_IDS[key]


def _make_record(image_path: Path, image_id: str, boxes: list, labels: list, difficult: list, h: int, w: int) -> Record:
    return Record(Path(image_path), image_id, np.asarray(boxes, np.float32).reshape(-1, 4),
                  np.asarray(labels, np.int64), np.asarray(difficult, bool), int(h), int(w))


# ---------------------------------------------------------------- reading VOC XML
def parse_voc_xml(xml_path: str | Path, image_dir: str | Path) -> Record:
    """Read one VOC XML annotation; the image is ``image_dir / <filename>``.

    An XML without ``<object>`` gives a record with G = 0 (an image of background only). Raises FileNotFoundError
    (XML or image missing) or ValueError (malformed XML, unknown class name, box outside the image), naming the file.
    """
    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise FileNotFoundError(f"{xml_path}: annotation file not found")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{xml_path}: not a readable XML file ({e})") from None
    image_path = Path(image_dir) / (root.findtext("filename") or f"{xml_path.stem}.jpg").strip()
    if not image_path.is_file():
        raise FileNotFoundError(f"{xml_path}: its image {image_path} not found")
    iw, ih = _image_size(image_path)
    try:
        h, w = int(float(root.findtext("size/height"))), int(float(root.findtext("size/width")))
    except (TypeError, ValueError):  # no <size>: the image header's
        h, w = ih, iw
    if (h, w) != (ih, iw):
        raise ValueError(f"{xml_path}: <size> says {w}x{h} (width x height) but its image {image_path} is {iw}x{ih}"
                         + _turned_note(image_path))
    boxes, labels, difficult = [], [], []
    for i, obj in enumerate(root.iter("object")):
        where = f"{xml_path}, object {i}"
        labels.append(_class_id(obj.findtext("name") or "", where))
        try:  # VOC XML is 1-based and inclusive: xmin=1..xmax=W is the full width.
            b = [float(obj.findtext(f"bndbox/{k}")) for k in ("ymin", "xmin", "ymax", "xmax")]
        except (TypeError, ValueError):
            raise ValueError(f"{where}: <bndbox> lacks a numeric xmin, ymin, xmax or ymax") from None
        boxes.append(_check_box([b[0] - 1, b[1] - 1, b[2], b[3]], h, w, where))
        difficult.append(_flag(obj.findtext("difficult") or 0, where))
    return _make_record(image_path, xml_path.stem, boxes, labels, difficult, h, w)


def write_voc_xml(xml_path: str | Path, filename: str, height: int, width: int, boxes: np.ndarray,
                  labels: Sequence[int], difficult: Sequence[bool] | None = None, source: str = "ssd-lesson") -> None:
    """Write pixel boxes ``(G, 4)`` ``(y0, x0, y1, x1)`` as a VOC XML annotation (integer pixels)."""
    ann = ET.Element("annotation")
    ET.SubElement(ann, "filename").text = filename
    ET.SubElement(ET.SubElement(ann, "source"), "database").text = source
    size = ET.SubElement(ann, "size")
    for k, v in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, k).text = str(int(v))
    difficult = [False] * len(labels) if difficult is None else difficult
    for (y0, x0, y1, x1), lab, diff in zip(np.asarray(boxes).reshape(-1, 4), labels, difficult):
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = VOC_CLASSES[int(lab)]
        ET.SubElement(obj, "difficult").text = str(int(bool(diff)))
        bb = ET.SubElement(obj, "bndbox")
        for k, v in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(bb, k).text = str(int(round(float(v))))
    ET.indent(ann)
    Path(xml_path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(ann).write(xml_path, encoding="utf-8")


def _split_ids(ids_file: Path) -> list[str]:
    if not ids_file.is_file():
        raise FileNotFoundError(f"{ids_file}: split file not found")
    try:  # utf-8-sig: a split file saved with a byte-order mark reads the same
        text = ids_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{ids_file}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    ids: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line.split()) != 1:  # ids have no spaces; a second column would be a per-class file's flag
            raise ValueError(f"{ids_file}, line {n}: {line.strip()!r} is not one image id (an id has no spaces; "
                             "a split file lists one id per line)")
        image_id = line.strip()
        if image_id in ids:  # read twice, its objects would count twice in evaluate
            raise ValueError(f"{ids_file}, line {n}: image id {image_id!r} is listed twice (also on line {ids[image_id]})")
        ids[image_id] = n
    if not ids:
        raise ValueError(f"{ids_file}: the split lists no images")
    return list(ids)


def read_voc_split(root: str | Path, split: str = "trainval") -> list[Record]:
    """Records of ``split`` from an official layout ``root`` = ``.../VOCdevkit/VOC2007``."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    ids = _split_ids(root / "ImageSets" / "Main" / f"{split}.txt")
    return [parse_voc_xml(root / "Annotations" / f"{i}.xml", root / "JPEGImages") for i in ids]


# ---------------------------------------------------------------- reading fastai's pascal_2007
def _fields(d: object, keys: Sequence[str], where: str) -> list:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"{where}: lacks the key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    return [d[k] for k in keys]


def _flag(value: object, where: str) -> bool:
    """A difficult/ignore flag: 0/1, true/false, as a number, a bool or a string."""
    text = str(value).strip().lower()
    if text in ("1", "true", "1.0", "yes"):
        return True
    if text in ("0", "false", "0.0", "no", "", "none"):
        return False
    raise ValueError(f"{where}: difficult flag {value!r} is not 0/1 or true/false")


def read_fastai_json(json_path: str | Path, image_dir: str | Path) -> list[Record]:
    """Records from one COCO-style json of fastai's ``pascal_2007`` (bbox ``[x, y, w, h]`` pixels).

    Every problem (not UTF-8, not JSON, a missing key, a bbox that is not 4 numbers, two images
    with one id, an annotation of an unknown image) is a ``ValueError`` naming the file and the record.
    """
    json_path, image_dir = Path(json_path), Path(image_dir)
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path}: annotation file not found")
    try:
        d = json.loads(json_path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{json_path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_path}: not a JSON file ({e})") from None
    images, anns, cats = _fields(d, ("images", "annotations", "categories"), str(json_path))
    for key, value in (("images", images), ("annotations", anns), ("categories", cats)):
        if not isinstance(value, list):
            raise ValueError(f"{json_path}: \"{key}\" must be a list, got {type(value).__name__}")
    names = dict(_fields(c, ("id", "name"), f"{json_path}, category {i}") for i, c in enumerate(cats))
    if not images:
        raise ValueError(f"{json_path}: the split lists no images")
    per_image: dict = {}
    for i, im in enumerate(images):
        (im_id,) = _fields(im, ("id",), f"{json_path}, image {i}")
        if im_id in per_image:
            raise ValueError(f"{json_path}, image {i}: id {im_id!r} is also the id of an earlier image")
        per_image[im_id] = []
    for i, a in enumerate(anns):
        where = f"{json_path}, annotation {i} (id {a.get('id') if isinstance(a, dict) else None})"
        (im_id,) = _fields(a, ("image_id",), where)
        if im_id not in per_image:
            raise ValueError(f"{where}: image_id {im_id!r} is not among the json's images")
        per_image[im_id].append((i, a))
    records = []
    for i, im in sorted(enumerate(images), key=lambda t: str(t[1].get("file_name"))):
        file_name, h, w = _fields(im, ("file_name", "height", "width"), f"{json_path}, image {i} (id {im['id']!r})")
        path = image_dir / file_name
        if not path.is_file():
            raise FileNotFoundError(f"{json_path}: image {path} not found")
        iw, ih = _image_size(path)
        if (h, w) != (ih, iw):  # the boxes are pixels of the image the json describes: scaling them would be wrong
            raise ValueError(f"{json_path}, image {i} ({file_name}): height and width say {w}x{h} (width x height) "
                             f"but the image {path} is {iw}x{ih}" + _turned_note(path))
        boxes, labels, difficult = [], [], []
        for j, a in per_image[im["id"]]:
            where = f"{json_path}, annotation id {a.get('id')} of image {file_name}"
            cat, bbox = _fields(a, ("category_id", "bbox"), where)
            if cat not in names:
                raise ValueError(f"{where}: category_id {cat} is not in the json's categories")
            labels.append(_class_id(names[cat], where))
            if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
                raise ValueError(f"{where}: bbox must be 4 numbers [x, y, width, height], got {bbox!r}")
            x, y, bw, bh = bbox
            boxes.append(_check_box([y, x, y + bh, x + bw], h, w, where))
            difficult.append(_flag(a.get("ignore", a.get("difficult", 0)), where))  # Detectron's json calls it "ignore"
        records.append(_make_record(path, Path(file_name).stem, boxes, labels, difficult, h, w))
    return records


def read_fastai_split(root: str | Path, split: str = "trainval") -> list[Record]:
    """Records of ``split`` from fastai's ``pascal_2007`` folder (train and val images in ``train/``)."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    image_dir = root / ("test" if split == "test" else "train")
    records = [r for f in FASTAI_JSON[split] for r in read_fastai_json(root / f, image_dir)]
    return sorted(records, key=lambda r: r.image_id)


# ---------------------------------------------------------------- finding the data
def voc_layout(path: str | Path) -> tuple[str, Path] | None:
    """``("fastai", root)`` or ``("voc", .../VOC2007)`` for a folder holding VOC 2007 (itself, or its
    ``VOC2007``, ``VOCdevkit/VOC2007`` or ``pascal_2007``), else None: a VOC 2012 folder is not 2007."""
    found = find_years(path, siblings=False).get("2007")
    return None if found is None else (found.layout, found.root)


def read_year(found: VocYear, split: str) -> list[Record]:
    """Records of ``split`` of one year found on disk (``voc_years.find_years``), by its layout's reader."""
    return (read_fastai_split if found.layout == "fastai" else read_voc_split)(found.root, split)


def load_voc(root: str | Path, split: str = "trainval") -> list[Record]:
    """Records of ``split`` (train, val, trainval, test) from either layout, sorted by image id."""
    found = find_years(root, siblings=False).get("2007")
    if found is None:
        raise FileNotFoundError(f"{root}: holds neither fastai's pascal_2007 (train.json, valid.json, train/) "
                                "nor VOCdevkit/VOC2007 (Annotations/, ImageSets/Main/, JPEGImages/)")
    return read_year(found, split)


def fastai_default_voc() -> Path:
    """Where ``untar_data(URLs.PASCAL_2007)`` puts the data (``$FASTAI_HOME``, default ``~/.fastai``)."""
    from fastai.data.external import fastai_path
    return fastai_path("data") / "pascal_2007"


def voc_place(path: str | Path | None = None) -> tuple[str, Path | None]:
    """Where VOC is looked for and how that place was named: ``path``, else ``$SSD_LESSON_VOC``, else fastai's
    default folder (None when fastai cannot say). The first place named wins: a wrong path is reported, not replaced."""
    if path is not None:
        return "the path you gave", Path(path)
    if os.environ.get(ENV_VAR):
        return f"${ENV_VAR}", Path(os.environ[ENV_VAR])
    try:
        return "fastai's default folder", fastai_default_voc()
    except Exception as e:  # a broken fastai install or config must not stop the lesson
        return f"fastai's default folder, unavailable: {type(e).__name__}: {e}", None


def voc_missing_message(looked_in: Sequence[str] = (), reason: str = "", fallback: bool = True) -> str:
    """What to do when Pascal VOC 2007 is not on this machine (``fallback``: and what is used meanwhile)."""
    where = "".join(f"\n  - {p}" for p in looked_in)
    return (f"Pascal VOC 2007 was not found{': ' + reason if reason else ''}."
            + (f"\nLooked in:{where}" if where else "")
            + "\nTo use it, either:"
            "\n  - run python -m ssd_lesson train --data voc --download (fastai's untar_data(URLs.PASCAL_2007), into"
            " the folder looked in), or ssd_lesson.data.voc.find_voc(download=True) (into fastai's data folder"
            " ~/.fastai/data or $FASTAI_HOME/data), or"
            "\n  - download https://s3.amazonaws.com/fast-ai-imagelocal/pascal_2007.tgz (fastai layout) or"
            " VOCtrainval_06-Nov-2007.tar + VOCtest_06-Nov-2007.tar (official VOCdevkit/VOC2007 layout),"
            f" unpack it anywhere and set the environment variable {ENV_VAR}=/path/to/pascal_2007"
            " (or /path/to/VOCdevkit/VOC2007), or pass that path to find_voc(path)."
            + ("\nUntil then the embedded offline example is used (data/example: real photographs"
               " shipped with scikit-image and matplotlib), and offline training uses make_collage_dataset()."
               if fallback else ""))


def find_voc(path: str | Path | None = None, download: bool = False,
             warn: bool | Literal["raise"] | None = None) -> Path | None:
    """Locate Pascal VOC 2007: ``path``, else ``$SSD_LESSON_VOC``, else fastai's default folder.

    ``download=True`` fetches it with fastai's ``untar_data(URLs.PASCAL_2007)`` when it
    is not found. Returns the dataset folder (either layout; pass it to :func:`load_voc`),
    or None. Never raises for missing data. Offline is the normal case: a
    :class:`VocNotFoundWarning` with the full advice (what to download, where to put it,
    that the embedded offline example is used instead) comes only when VOC was asked for,
    by ``path``, ``$SSD_LESSON_VOC`` or ``download``, or when ``warn=True``; ``warn=False``
    never warns. ``warn="raise"`` (a command that needs VOC): a ``FileNotFoundError`` whose first line
    says where it was looked for, the advice after it.
    """
    if warn is None:
        warn = path is not None or bool(os.environ.get(ENV_VAR)) or download
    what, p = voc_place(path)
    if p is not None and (layout := voc_layout(p)) is not None:  # each look reads the split files: look once
        return layout[1]
    others = find_years(p) if p is not None else {}  # VOC 2012 there (or beside it) is worth saying
    reason = f"{describe_years(others)}, but not VOC2007" if others else ""
    if warn == "raise":
        raise FileNotFoundError(f"Pascal VOC 2007 not found in {p} ({what}){'; ' + reason if reason else ''}\n"
                                + voc_missing_message([f"{p} ({what})"], fallback=False).split("\n", 1)[1])
    if download:
        try:
            from fastai.data.external import URLs, untar_data
            got = untar_data(URLs.PASCAL_2007)
            if (layout := voc_layout(got)) is not None:
                return layout[1]
            reason = f"the download finished but {got} does not hold it"
        except Exception as e:  # no network, disk full, ...: explain instead of a traceback
            reason = f"the download failed ({type(e).__name__}: {e})" + (f"; {reason}" if reason else "")
    if warn:
        warnings.warn(voc_missing_message([f"{p} ({what})"], reason), VocNotFoundWarning, stacklevel=2)
    return None


#: EXIF orientations that turn the stored pixels a quarter turn (5-8): width and height swap on screen.
QUARTER_TURNS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112


def image_error(path: Path, e: Exception) -> ValueError:
    """The one-line error for an image PIL cannot or will not read (corrupt, truncated, a decompression bomb)."""
    if isinstance(e, Image.DecompressionBombError):
        return ValueError(f"{path}: refused: its header claims more pixels than an image can sensibly have "
                          f"(limit {2 * Image.MAX_IMAGE_PIXELS} pixels; a decompression bomb?): {e}")
    return ValueError(f"{path}: cannot read the image ({e})")


def _turned_note(path: Path) -> str:
    """Why an annotation's size may be the image's turned a quarter: its EXIF orientation (else nothing)."""
    with Image.open(path) as im:
        turned = im.getexif().get(_EXIF_ORIENTATION, 1) in QUARTER_TURNS
    return (" upright (its EXIF orientation turns the stored pixels a quarter turn; annotations are read on the "
            "image as viewers show it)") if turned else ""


def _image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of the image as viewers show it: the EXIF orientation applied, as
    :func:`ssd_lesson.data.transforms.load_image` applies it (a phone photo stored sideways is read upright)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            turned = im.getexif().get(_EXIF_ORIENTATION, 1) in QUARTER_TURNS
            return (h, w) if turned else (w, h)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise image_error(path, e) from None
