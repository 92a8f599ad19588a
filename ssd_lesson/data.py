"""Pascal VOC 2007 for the lesson, and the embedded offline example.

Conventions (the core library and the loss rely on them):

* A :class:`Record` holds boxes ``(y0, x0, y1, x1)`` in **pixels** of the original
  image, measured at pixel edges: a VOC XML ``xmin=1 .. xmax=W`` box spans
  ``x0=0 .. x1=W``. The COCO-style json of fastai's ``pascal_2007`` gives the same
  numbers from ``[x, y, w, h]`` as ``x0=x, x1=x+w``.
* Training batches hold boxes as **fractions** of the image (0..1), so resizing
  the image never changes them.
* Class ids 0..19 follow :data:`VOC_CLASSES`; background is :data:`BACKGROUND` (20).
* A batch is ``(images (B, 3, S, S) float32, gt_boxes (B, G, 4) float32,
  gt_labels (B, G) int64)``, with G the batch's largest object count; shorter
  images are padded at the end with label -1 and box zeros. An image with no
  objects is all padding, and a batch with no objects at all has G = 0.

fastai is imported only by the functions that need it (finding/downloading VOC,
the DataLoaders), so reading records and the offline example stay light.
"""
from __future__ import annotations

import json
import os
import random
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "VOC_CLASSES", "BACKGROUND", "ENV_VAR", "DATA_DIR", "EXAMPLE_DIR", "IMAGENET_MEAN", "IMAGENET_STD",
    "LESSON_OBJECTS", "VocNotFoundWarning", "Record", "Example", "parse_voc_xml", "write_voc_xml", "read_voc_split",
    "read_fastai_json", "read_fastai_split", "voc_layout", "load_voc", "find_voc", "voc_missing_message",
    "find_lesson_record", "lesson_example", "load_image", "to_fractions", "to_pixels",
    "resize_record", "hflip", "normalize", "denormalize", "DetectionDataset",
    "collate_detections", "make_dataloaders",
]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
BACKGROUND: int = len(VOC_CLASSES)  # 20: the extra, last class column of the model
CLASS_IDS = {name: i for i, name in enumerate(VOC_CLASSES)}
ENV_VAR = "SSD_LESSON_VOC"
SPLITS = ("train", "val", "trainval", "test")


def _data_dir() -> Path:
    """The project's ``data/``: ``ssd_lesson/_data`` when installed from a wheel, else the checkout's."""
    here = Path(__file__).resolve().parent
    for folder in (here / "_data", here.parent / "data"):
        if (folder / "example" / "example.xml").is_file():
            return folder
    return here.parent / "data"  # absent: whoever reads a file from it names the missing file


DATA_DIR = _data_dir()
EXAMPLE_DIR = DATA_DIR / "example"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The article's image: exactly these objects (count per class).
LESSON_OBJECTS = Counter({"cow": 1, "person": 1, "bicycle": 1, "motorbike": 1})
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

    An XML without ``<object>`` gives a record with G = 0 (an image of background only).
    Raises FileNotFoundError (XML or image missing) or ValueError (malformed XML,
    unknown class name, box outside the image), naming the file.
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
    try:
        h, w = int(float(root.findtext("size/height"))), int(float(root.findtext("size/width")))
    except (TypeError, ValueError):  # no <size>: ask the image header
        w, h = _image_size(image_path)
    boxes, labels, difficult = [], [], []
    for i, obj in enumerate(root.iter("object")):
        where = f"{xml_path}, object {i}"
        labels.append(_class_id(obj.findtext("name") or "", where))
        try:  # VOC XML is 1-based and inclusive: xmin=1..xmax=W is the full width.
            b = [float(obj.findtext(f"bndbox/{k}")) for k in ("ymin", "xmin", "ymax", "xmax")]
        except (TypeError, ValueError):
            raise ValueError(f"{where}: <bndbox> lacks a numeric xmin, ymin, xmax or ymax") from None
        boxes.append(_check_box([b[0] - 1, b[1] - 1, b[2], b[3]], h, w, where))
        difficult.append(int(obj.findtext("difficult") or 0) == 1)
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
    ids = [line.split()[0] for line in ids_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{ids_file}: the split lists no images")
    return ids


def read_voc_split(root: str | Path, split: str = "trainval") -> list[Record]:
    """Records of ``split`` from an official layout ``root`` = ``.../VOCdevkit/VOC2007``."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    ids = _split_ids(root / "ImageSets" / "Main" / f"{split}.txt")
    return [parse_voc_xml(root / "Annotations" / f"{i}.xml", root / "JPEGImages") for i in ids]


# ---------------------------------------------------------------- reading fastai's pascal_2007
def read_fastai_json(json_path: str | Path, image_dir: str | Path) -> list[Record]:
    """Records from one COCO-style json of fastai's ``pascal_2007`` (bbox ``[x, y, w, h]`` pixels)."""
    json_path, image_dir = Path(json_path), Path(image_dir)
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path}: annotation file not found")
    try:
        d = json.loads(json_path.read_text())
        names = {c["id"]: c["name"] for c in d["categories"]}
        images, anns = d["images"], d["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{json_path}: not a COCO-style json with images, annotations and categories ({e!r})") from None
    if not images:
        raise ValueError(f"{json_path}: the split lists no images")
    per_image: dict[int, list[dict]] = {im["id"]: [] for im in images}
    for a in anns:
        per_image.setdefault(a["image_id"], []).append(a)
    records = []
    for im in sorted(images, key=lambda im: im["file_name"]):
        path, h, w = image_dir / im["file_name"], im["height"], im["width"]
        if not path.is_file():
            raise FileNotFoundError(f"{json_path}: image {path} not found")
        boxes, labels, difficult = [], [], []
        for a in per_image[im["id"]]:
            where = f"{json_path}, annotation id {a.get('id')} of image {im['file_name']}"
            if a["category_id"] not in names:
                raise ValueError(f"{where}: category_id {a['category_id']} is not in the json's categories")
            labels.append(_class_id(names[a["category_id"]], where))
            x, y, bw, bh = a["bbox"]
            boxes.append(_check_box([y, x, y + bh, x + bw], h, w, where))
            difficult.append(bool(a.get("ignore", a.get("difficult", 0))))  # Detectron's json calls it "ignore"
        records.append(_make_record(path, Path(im["file_name"]).stem, boxes, labels, difficult, h, w))
    return records


_FASTAI_JSON = {"train": ["train.json"], "val": ["valid.json"], "trainval": ["train.json", "valid.json"], "test": ["test.json"]}


def read_fastai_split(root: str | Path, split: str = "trainval") -> list[Record]:
    """Records of ``split`` from fastai's ``pascal_2007`` folder (train and val images in ``train/``)."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    image_dir = root / ("test" if split == "test" else "train")
    records = [r for f in _FASTAI_JSON[split] for r in read_fastai_json(root / f, image_dir)]
    return sorted(records, key=lambda r: r.image_id)


# ---------------------------------------------------------------- finding the data
def voc_layout(path: str | Path) -> tuple[str, Path] | None:
    """``("fastai", root)`` or ``("voc", .../VOC2007)`` for a folder holding VOC 2007, else None."""
    path = Path(path).expanduser()
    if (path / "train.json").is_file() or (path / "valid.json").is_file():
        return "fastai", path
    for cand in (path, path / "VOC2007", path / "VOCdevkit" / "VOC2007"):
        if (cand / "Annotations").is_dir() and (cand / "ImageSets" / "Main").is_dir():
            return "voc", cand
    return None


def load_voc(root: str | Path, split: str = "trainval") -> list[Record]:
    """Records of ``split`` (train, val, trainval, test) from either layout, sorted by image id."""
    layout = voc_layout(root)
    if layout is None:
        raise FileNotFoundError(f"{root}: holds neither fastai's pascal_2007 (train.json, valid.json, train/) "
                                "nor VOCdevkit/VOC2007 (Annotations/, ImageSets/Main/, JPEGImages/)")
    kind, base = layout
    return read_fastai_split(base, split) if kind == "fastai" else read_voc_split(base, split)


def _fastai_default_voc() -> Path:
    """Where ``untar_data(URLs.PASCAL_2007)`` puts the data (``$FASTAI_HOME``, default ``~/.fastai``)."""
    from fastai.data.external import fastai_path
    return fastai_path("data") / "pascal_2007"


def voc_missing_message(looked_in: Sequence[str] = (), reason: str = "") -> str:
    """What to do when Pascal VOC 2007 is not on this machine."""
    where = "".join(f"\n  - {p}" for p in looked_in)
    return (f"Pascal VOC 2007 was not found{': ' + reason if reason else ''}."
            + (f"\nLooked in:{where}" if where else "")
            + "\nTo use it, either:"
            "\n  - run ssd_lesson.data.find_voc(download=True) (fastai's untar_data(URLs.PASCAL_2007),"
            " into fastai's data folder ~/.fastai/data/pascal_2007 or $FASTAI_HOME/data), or"
            "\n  - download https://s3.amazonaws.com/fast-ai-imagelocal/pascal_2007.tgz (fastai layout) or"
            " VOCtrainval_06-Nov-2007.tar + VOCtest_06-Nov-2007.tar (official VOCdevkit/VOC2007 layout),"
            f" unpack it anywhere and set the environment variable {ENV_VAR}=/path/to/pascal_2007"
            " (or /path/to/VOCdevkit/VOC2007), or pass that path to find_voc(path)."
            "\nUntil then the embedded offline example is used (data/example: real photographs"
            " shipped with scikit-image and matplotlib), and offline training uses make_collage_dataset().")


def find_voc(path: str | Path | None = None, download: bool = False) -> Path | None:
    """Locate Pascal VOC 2007: ``path``, else ``$SSD_LESSON_VOC``, else fastai's default folder.

    ``download=True`` fetches it with fastai's ``untar_data(URLs.PASCAL_2007)`` when it
    is not found. Returns the dataset folder (either layout; pass it to :func:`load_voc`),
    or None after a warning that says what to download, where to put it and that the
    embedded offline example is used instead. Never raises for missing data.
    """
    # The first place named wins: a wrong explicit path is reported, not silently replaced.
    if path is not None:
        what, p = "the path you gave", Path(path)
    elif os.environ.get(ENV_VAR):
        what, p = f"${ENV_VAR}", Path(os.environ[ENV_VAR])
    else:
        try:
            what, p = "fastai's default folder", _fastai_default_voc()
        except Exception as e:  # a broken fastai install or config must not stop the lesson
            what, p = f"fastai's default folder, unavailable: {type(e).__name__}: {e}", None
    if p is not None and voc_layout(p) is not None:
        return voc_layout(p)[1]
    reason = ""
    if download:
        try:
            from fastai.data.external import URLs, untar_data
            got = untar_data(URLs.PASCAL_2007)
            if voc_layout(got) is not None:
                return voc_layout(got)[1]
            reason = f"the download finished but {got} does not hold it"
        except Exception as e:  # no network, disk full, ...: explain instead of a traceback
            reason = f"the download failed ({type(e).__name__}: {e})"
    warnings.warn(voc_missing_message([f"{p} ({what})"], reason), VocNotFoundWarning, stacklevel=2)
    return None


# ---------------------------------------------------------------- the lesson's example image
def find_lesson_record(records: Sequence[Record]) -> Record | None:
    """The record whose objects are exactly one cow, person, bicycle and motorbike (lowest id), or None."""
    hits = [r for r in records if Counter(r.class_names) == LESSON_OBJECTS]
    return min(hits, key=lambda r: r.image_id) if hits else None


@dataclass(eq=False)
class Example:
    """One image ready for the dissection notebooks.

    image: ``(H, W, 3)`` uint8, original size; image224: ``(224, 224, 3)`` uint8, squished.
    boxes: ``(G, 4)`` float32 ``(y0, x0, y1, x1)`` fractions (valid for both images).
    labels: ``(G,)`` int64; classes: their names; source: one line saying where it came from.
    """

    image: np.ndarray
    image224: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source: str
    record: Record

    def batch(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(1, 3, 224, 224)`` normalised image, ``(1, G, 4)`` boxes, ``(1, G)`` labels."""
        return (normalize(self.image224).unsqueeze(0), torch.from_numpy(self.boxes).unsqueeze(0),
                torch.from_numpy(self.labels).unsqueeze(0))


def lesson_example(voc: str | Path | None = None, offline: bool = False, size: int = 224) -> Example:
    """The article's example: a VOC 2007 trainval image with one cow, person, bicycle and motorbike.

    ``voc`` is passed to :func:`find_voc` (None: env var / fastai default). Without VOC
    (or with ``offline=True``), the embedded example ``data/example/example.xml`` is used.
    """
    record, source = None, ""
    root = None if offline else find_voc(voc)
    if root is not None:
        record = find_lesson_record(load_voc(root, "trainval"))
        if record is None:
            warnings.warn(f"{root}: no trainval image has exactly one cow, person, bicycle and motorbike;"
                          " using the embedded offline example", VocNotFoundWarning, stacklevel=2)
        else:
            source = f"Using Pascal VOC 2007 image {record.image_id} ({record.image_path})"
    if record is None:
        record = parse_voc_xml(EXAMPLE_DIR / "example.xml", EXAMPLE_DIR)
        source = ("Using the embedded offline example (data/example: a collage of real photographs shipped"
                  " with scikit-image and matplotlib); see ssd_lesson.data.find_voc for Pascal VOC 2007")
    image = load_image(record.image_path)
    small, boxes, labels = resize_record(record, size, image=image)
    return Example(image, small, boxes, labels, record.class_names, source, record)


# ---------------------------------------------------------------- images and boxes
def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: cannot read the image ({e})") from None


def load_image(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB (greyscale and RGBA converted). Errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:  # OSError: truncated or corrupt data
        raise ValueError(f"{path}: cannot read the image ({e})") from None


def to_fractions(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(G, 4)`` pixel boxes ``(y0, x0, y1, x1)`` to fractions of the image."""
    return (np.asarray(boxes, np.float32).reshape(-1, 4) / np.array([height, width, height, width], np.float32))


def to_pixels(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(G, 4)`` fraction boxes back to pixels of a ``height x width`` image."""
    return (np.asarray(boxes, np.float32).reshape(-1, 4) * np.array([height, width, height, width], np.float32))


def resize_record(record: Record, size: int = 224, image: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(size, size, 3)`` uint8 image (squished, as in the lesson), ``(G, 4)`` fraction boxes, ``(G,)`` labels."""
    image = load_image(record.image_path) if image is None else image
    small = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return small, to_fractions(record.boxes, record.height, record.width), record.labels.copy()


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an ``(H, W, 3)`` image left-right and its ``(G, 4)`` fraction boxes with it."""
    b = np.asarray(boxes, np.float32).copy()
    b[:, 1], b[:, 3] = 1 - boxes[:, 3], 1 - boxes[:, 1]
    return np.ascontiguousarray(image[:, ::-1]), b


def normalize(image: np.ndarray) -> Tensor:
    """``(H, W, 3)`` uint8 to the model's ``(3, H, W)`` float32, ImageNet mean/std normalised."""
    t = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1).float().div_(255)  # a copy: PIL arrays are read-only
    return (t - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def denormalize(t: Tensor) -> np.ndarray:
    """``(3, H, W)`` normalised image back to ``(H, W, 3)`` uint8 for plotting."""
    t = t.detach().cpu().float() * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    return (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


# ---------------------------------------------------------------- batches
class DetectionDataset(torch.utils.data.Dataset):
    """Items ``(image (3, S, S) float32, boxes (G, 4) float32 fractions, labels (G,) int64)``.

    ``augment=True`` mirrors half the images left-right, boxes included. Whether item
    ``i`` is flipped depends only on ``(seed, epoch, i)``, so it does not matter in
    which order, or in which worker process, items are read; the DataLoader sets ``epoch``.
    """

    def __init__(self, records: Sequence[Record], size: int = 224, augment: bool = False, seed: int = 0):
        self.records, self.size, self.augment, self.seed, self.epoch = list(records), size, augment, seed, 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        image, boxes, labels = resize_record(self.records[i], self.size)
        if self.augment and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5:
            image, boxes = hflip(image, boxes)
        return normalize(image), torch.from_numpy(boxes), torch.from_numpy(labels)


def collate_detections(items: Sequence[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Stack items into ``(B, 3, S, S)``, ``(B, G, 4)`` and ``(B, G)``, G = the most objects of any item.

    Padding rows go at the end of each image: label -1, box zeros.
    """
    G = max((len(lab) for _, _, lab in items), default=0)
    boxes = torch.zeros(len(items), G, 4, dtype=torch.float32)
    labels = torch.full((len(items), G), -1, dtype=torch.int64)
    for i, (_, b, lab) in enumerate(items):
        boxes[i, :len(lab)], labels[i, :len(lab)] = b, lab
    return torch.stack([im for im, _, _ in items]), boxes, labels


def _detection_dl_class() -> type:
    """fastai ``DataLoader`` that collates with :func:`collate_detections` and has one input.

    Built on first use so that importing this module does not import fastai; kept as a
    module attribute so worker processes can unpickle it.
    """
    if "DetectionDL" not in globals():
        from fastai.data.load import DataLoader

        class DetectionDL(DataLoader):
            n_inp = 1  # the images; the rest of the tuple (gt_boxes, gt_labels) goes to the loss

            def create_batch(self, b):
                return collate_detections(b)

            def before_iter(self):
                super().before_iter()
                self.epochs_started = getattr(self, "epochs_started", -1) + 1
                if isinstance(self.dataset, DetectionDataset):  # fresh flips each epoch
                    self.dataset.epoch = self.epochs_started

        DetectionDL.__module__, DetectionDL.__qualname__ = __name__, "DetectionDL"
        globals()["DetectionDL"] = DetectionDL
    return globals()["DetectionDL"]


def make_dataloaders(train_records: Sequence[Record], valid_records: Sequence[Record], bs: int = 16, size: int = 224,
                     augment: bool = False, seed: int = 0, num_workers: int = 0, device=None):
    """fastai ``DataLoaders`` yielding ``(images, gt_boxes, gt_labels)`` with ``n_inp = 1``.

    So a fastai ``Learner`` calls ``loss_func(preds, gt_boxes, gt_labels)``. Training
    batches are shuffled (and flipped if ``augment``) from ``seed``; the last partial
    training batch is dropped. ``device`` defaults to fastai's ``default_device()``.
    """
    from fastai.data.core import DataLoaders
    from fastai.torch_core import default_device

    if not train_records or not valid_records:
        raise ValueError(f"make_dataloaders: empty split (train has {len(train_records)} records, "
                         f"valid has {len(valid_records)})")

    device = default_device() if device is None else device
    DetectionDL = _detection_dl_class()
    train = DetectionDL(DetectionDataset(train_records, size, augment, seed), bs=bs, shuffle=True,
                        drop_last=len(train_records) > bs, num_workers=num_workers, device=device)
    train.rng = random.Random(seed)  # fastai seeds its shuffling from the global `random`; pin it
    valid = DetectionDL(DetectionDataset(valid_records, size), bs=bs, shuffle=False, num_workers=num_workers, device=device)
    return DataLoaders(train, valid, device=device)
