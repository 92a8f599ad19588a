"""Offline images: real photographs from installed wheels, our annotations, and collages.

Pascal VOC cannot always be downloaded (CI, a learner offline). scikit-image and
matplotlib ship a few real photographs of VOC classes inside their wheels; this
project annotates them in ``data/annotations/*.xml`` (VOC XML whose ``<folder>``
is the path inside the installed package). From those:

* :func:`object_crops`: each (non-difficult) annotated object, cut at its box;
* :func:`render_collage`: one 224x224 image of 1-4 crops pasted on a real
  background photo that holds no VOC object; boxes are exact by construction;
* :func:`make_collage_dataset`: a VOC-layout detection set of such images, with
  train and val splits, read back by :func:`ssd_lesson.data.voc.load_voc`;
* :func:`collage_records`: the train and valid records of the set ``(n_images, seed)``,
  made once under a folder (what ``train``, ``evaluate`` and notebooks 09-10 use).

Boxes are ``(y0, x0, y1, x1)`` in pixels (integers here) unless stated otherwise.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from .paths import DATA_DIR
from .transforms import load_image
from .voc import Record, load_voc, parse_voc_xml, write_voc_xml

__all__ = ["PHOTO_ANNOTATIONS", "BACKGROUNDS", "HELD_OUT_PHOTOS", "PHOTO_SETS", "photo_set", "package_file",
           "photo_records", "Crop", "object_crops", "Collage", "paste_objects", "render_collage", "make_collage_dataset",
           "collage_ready", "make_collage_once", "collage_records"]

PHOTO_ANNOTATIONS = DATA_DIR / "annotations"
# Real photographs with no VOC object in them (checked by eye): backgrounds for the collages.
BACKGROUNDS = ("skimage/data/rocket.jpg", "skimage/data/coffee.png", "skimage/data/brick.png",
               "skimage/data/grass.png", "skimage/data/gravel.png", "skimage/data/hubble_deep_field.jpg")
#: Photographs kept out of training (``--photos train``): a person and the motorbike's second view.
#: The cat has one photograph only, so it cannot be held out; ``motorcycle_right`` is the same
#: motorbike as ``motorcycle_left`` seen from a camera a little to the side (a stereo pair).
HELD_OUT_PHOTOS = ("grace_hopper.jpg", "motorcycle_right.png")
#: Which photographs a collage set cuts its objects from.
PHOTO_SETS = ("all", "train", "held_out")
MIN_VISIBLE = 0.6  # an occluded object keeps at least this fraction of its box, and touches all 4 sides


def _package_path(relpath: str) -> Path:
    top, _, rest = relpath.partition("/")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{relpath}: package {top!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / rest


def package_file(relpath: str) -> Path:
    """``"skimage/data/astronaut.png"`` -> that file inside the installed package (no import, no download)."""
    path = _package_path(relpath)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in the installed {relpath.partition('/')[0]!r} package")
    return path


def photo_records(annotations: Path = PHOTO_ANNOTATIONS) -> list[Record]:
    """One record per annotated photograph (image path resolved inside its package)."""
    xmls = sorted(Path(annotations).glob("*.xml"))
    if not xmls:
        raise FileNotFoundError(f"{annotations}: no photo annotations (*.xml) found")
    return [parse_voc_xml(x, _package_path(ET.parse(x).findtext("folder") or "")) for x in xmls]


@dataclass(frozen=True)
class Crop:
    """An annotated object cut at its box: ``image (h, w, 3)`` uint8, class id, source ``"file#i"``."""

    image: np.ndarray
    label: int
    source: str


def photo_set(photos: str) -> tuple[str, ...]:
    """File names of the annotated photographs in ``photos``: ``"all"``, ``"train"`` (all but
    :data:`HELD_OUT_PHOTOS`) or ``"held_out"``."""
    if photos not in PHOTO_SETS:
        raise ValueError(f"photos must be one of {PHOTO_SETS}, got {photos!r}")
    names = tuple(sorted(r.image_path.name for r in photo_records()))
    if photos == "all":
        return names
    return tuple(n for n in names if (n in HELD_OUT_PHOTOS) == (photos == "held_out"))


@lru_cache(maxsize=None)
def object_crops(photos: str = "all") -> tuple[Crop, ...]:
    """Every non-difficult object of the photo annotations (those of :func:`photo_set` ``(photos)``),
    cut out at its (integer) box."""
    crops, wanted = [], photo_set(photos)
    for r in (r for r in photo_records() if r.image_path.name in wanted):
        image = load_image(r.image_path)
        for i, (box, lab, diff) in enumerate(zip(r.boxes.astype(int), r.labels, r.difficult)):
            if not diff:  # difficult = a fragment (e.g. a bicycle hidden behind a bench): not a good example
                y0, x0, y1, x1 = box
                crops.append(Crop(image[y0:y1, x0:x1].copy(), int(lab), f"{r.image_path.name}#{i}"))
    return tuple(crops)


@lru_cache(maxsize=None)
def _backgrounds() -> tuple[np.ndarray, ...]:
    return tuple(load_image(package_file(p)) for p in BACKGROUNDS)


@dataclass
class Collage:
    """image ``(S, S, 3)`` uint8; boxes ``(G, 4)`` int pixels; labels ``(G,)``;
    owner ``(S, S)`` int: which object shows at each pixel (-1 background);
    sources: per object ``(crop source, flipped)``."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    owner: np.ndarray
    sources: list[tuple[str, bool]]


def _resized(crop: Crop, h: int, w: int, flip: bool) -> np.ndarray:
    out = np.asarray(Image.fromarray(crop.image).resize((w, h), Image.BILINEAR))
    return out[:, ::-1] if flip else out


def paste_objects(background: np.ndarray, crops: list[Crop], boxes: np.ndarray, flips: list[bool]) -> Collage:
    """Paste each crop, resized to its integer box, onto a copy of ``background``; later ones on top."""
    image, owner = background.copy(), np.full(background.shape[:2], -1, np.int16)
    for k, (crop, (y0, x0, y1, x1), flip) in enumerate(zip(crops, np.asarray(boxes, int), flips)):
        image[y0:y1, x0:x1] = _resized(crop, y1 - y0, x1 - x0, flip)
        owner[y0:y1, x0:x1] = k
    return Collage(image, np.asarray(boxes, np.int64).reshape(-1, 4), np.array([c.label for c in crops], np.int64),
                   owner, [(c.source, bool(f)) for c, f in zip(crops, flips)])


def _still_visible(owner: np.ndarray, boxes: list) -> bool:
    """Each object keeps MIN_VISIBLE of its box, and its visible pixels still span the whole box."""
    for k, (y0, x0, y1, x1) in enumerate(boxes):
        seen = owner[y0:y1, x0:x1] == k
        if seen.mean() < MIN_VISIBLE or not (seen[0].any() and seen[-1].any() and seen[:, 0].any() and seen[:, -1].any()):
            return False
    return True


def render_collage(seed: int, index: int, size: int = 224, max_objects: int = 4, photos: str = "all") -> Collage:
    """Image ``index`` of the collage set ``seed``: deterministic, independent of the set's length.

    A random square crop of a background photo; then 1..``max_objects`` objects,
    each of a uniformly chosen class, scaled so its longer side is 0.2-0.9 of the
    image, at a random position. A placement that would hide too much of an earlier
    object is retried (smaller every 10 tries) or, after 30 tries, left out. The objects
    are cut from the photographs of :func:`photo_set` ``(photos)``.
    """
    rng = np.random.default_rng([seed, index])
    bgs = _backgrounds()
    bg = bgs[rng.integers(len(bgs))]
    side = int(rng.uniform(0.5, 1.0) * min(bg.shape[:2]))
    y, x = rng.integers(0, bg.shape[0] - side + 1), rng.integers(0, bg.shape[1] - side + 1)
    background = np.asarray(Image.fromarray(bg[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR))
    if rng.random() < 0.5:
        background = np.ascontiguousarray(background[:, ::-1])

    crops = object_crops(photos)
    classes = sorted({c.label for c in crops})
    chosen, boxes, flips = [], [], []
    owner = np.full((size, size), -1, np.int16)
    for k in range(int(rng.integers(1, max_objects + 1))):
        label = classes[rng.integers(len(classes))]
        options = [c for c in crops if c.label == label]
        crop, flip = options[rng.integers(len(options))], bool(rng.random() < 0.5)
        ch, cw = crop.image.shape[:2]
        aspect = ch / cw * np.exp(rng.uniform(-0.15, 0.15))  # a little squish, like resizing to a square does
        longest = rng.uniform(0.2, 0.9) * size
        for attempt in range(30):
            scale = longest * 0.75 ** (attempt // 10)
            h, w = (scale, scale / aspect) if aspect >= 1 else (scale * aspect, scale)
            h, w = int(np.clip(round(h), 8, size)), int(np.clip(round(w), 8, size))
            y0, x0 = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            trial = owner.copy()
            trial[y0:y0 + h, x0:x0 + w] = k
            if _still_visible(trial, boxes + [(y0, x0, y0 + h, x0 + w)]):
                owner = trial
                chosen.append(crop), boxes.append((y0, x0, y0 + h, x0 + w)), flips.append(flip)
                break
    return paste_objects(background, chosen, np.array(boxes), flips)


def _is_valid(i: int, fraction: float) -> bool:
    # Spreads the valid images evenly: with 0.2, images 4, 9, 14, ...
    return int((i + 1) * fraction) > int(i * fraction)


def make_collage_dataset(n_images: int, seed: int, out_dir: str | Path, overwrite: bool = False,
                         valid_fraction: float = 0.2, size: int = 224, quality: int = 95, photos: str = "all") -> Path:
    """Write a VOC-layout detection set (Annotations/, JPEGImages/, ImageSets/Main/{train,val,trainval}.txt).

    Image ``i`` is :func:`render_collage` ``(seed, i)``, saved as JPEG. A non-empty
    ``out_dir`` is refused unless ``overwrite=True``, which replaces only those three
    folders. ``photos`` as in :func:`render_collage`. Returns ``out_dir``; read it with
    ``load_voc(out_dir, "train")``.
    """
    out = Path(out_dir)
    if n_images < 2:
        raise ValueError(f"make_collage_dataset: n_images must be at least 2 (one train, one val), got {n_images}")
    if not 0 < valid_fraction < 1:
        raise ValueError(f"make_collage_dataset: valid_fraction must be between 0 and 1, got {valid_fraction}")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: folder is not empty; pass overwrite=True to replace its "
                                  "Annotations/, JPEGImages/ and ImageSets/, or choose another folder")
        for sub in ("Annotations", "JPEGImages", "ImageSets"):
            shutil.rmtree(out / sub, ignore_errors=True)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ids = {"train": [], "val": []}
    for i in range(n_images):
        c, name = render_collage(seed, i, size, photos=photos), f"{i:06d}"
        Image.fromarray(c.image).save(out / "JPEGImages" / f"{name}.jpg", quality=quality)
        write_voc_xml(out / "Annotations" / f"{name}.xml", f"{name}.jpg", size, size, c.boxes, c.labels,
                      source=f"ssd-lesson collage, seed {seed}" + ("" if photos == "all" else f", {photos} photos"))
        ids["val" if _is_valid(i, valid_fraction) else "train"].append(name)
    if not ids["val"]:  # tiny sets: keep the val split non-empty
        ids["val"].append(ids["train"].pop())
    for split, names in (*ids.items(), ("trainval", sorted(ids["train"] + ids["val"]))):
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return out


def collage_ready(out_dir: str | Path, n_images: int) -> bool:
    """Whether ``out_dir`` holds a complete collage set of ``n_images`` (its trainval split lists them all)."""
    done = Path(out_dir) / "ImageSets" / "Main" / "trainval.txt"
    return done.is_file() and len(done.read_text().split()) == n_images


def make_collage_once(n_images: int, seed: int, out_dir: str | Path, photos: str = "all") -> Path:
    """The collage set ``(n_images, seed)`` (objects cut from :func:`photo_set` ``(photos)``) at ``out_dir``,
    made unless it is complete there already.

    Safe when several processes ask for it at once (two ``train`` runs): each builds in a folder of
    its own beside ``out_dir`` and renames it into place, which is atomic; the first rename wins and
    the others drop their copy, so nobody reads a set that another process is deleting or writing.
    An incomplete set left at ``out_dir`` by an older, interrupted build is replaced.
    """
    out = Path(out_dir)
    if collage_ready(out, n_images):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(building, 0o777 & ~umask)  # mkdtemp's folder is private (0700); the set is not
        make_collage_dataset(n_images, seed, building, overwrite=True, photos=photos)
        try:
            os.rename(building, out)  # fails when out is a non-empty folder
        except OSError:
            if not collage_ready(out, n_images):  # an incomplete old set: move it aside, ours in
                stale = out.with_name(f".{out.name}.stale-{os.getpid()}")
                os.rename(out, stale)
                os.rename(building, out)
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)  # still there when another process's set won
    return out


def _rank() -> int:
    """This process's rank in a distributed run (``RANK``, as fastai's ``rank_distrib`` reads it), else 0."""
    return int(os.environ.get("RANK", 0))


def collage_records(n_images: int, seed: int, root: str | Path = "runs", verbose: bool = True,
                    photos: str = "all") -> tuple[list[Record], list[Record], Path]:
    """Train and valid records of the offline collage set ``(n_images, seed)``, its objects cut from the
    photographs of :func:`photo_set` ``(photos)``, made once under ``root`` (in
    ``root/collage-n{n_images}-seed{seed}``, with ``-{photos}-photos`` appended unless ``photos`` is
    ``"all"``); also its folder. In a distributed run rank 0 makes it and the other ranks wait for it
    (up to 10 minutes)."""
    photo_set(photos)  # a clear error for an unknown set, before any folder is made
    out = Path(root) / (f"collage-n{n_images}-seed{seed}" + ("" if photos == "all" else f"-{photos}-photos"))
    ready = lambda: collage_ready(out, n_images)  # noqa: E731
    if not ready():
        if _rank() == 0:
            if verbose:
                print(f"making the collage set: {n_images} images in {out}", flush=True)
            make_collage_once(n_images, seed, out, photos=photos)
        else:  # other ranks wait for rank 0 (no process group yet: fastai's distrib_ctx makes it later)
            t0 = time.time()
            while not ready():
                if time.time() - t0 > 600:
                    raise TimeoutError(f"rank {_rank()}: gave up waiting for rank 0 to make {out}")
                time.sleep(0.5)
    return load_voc(out, "train"), load_voc(out, "val"), out
