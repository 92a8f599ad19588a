"""Make the embedded offline lesson example: data/example/example.png + example.xml.

A fixed 224x224 composition of real photo crops (see data/README.md), standing in
for the article's VOC image with a cow, a person, a bicycle and a motorbike:
two people, a cat and a motorbike, of sizes that suit each grid of the SSD
(4x4 cells are 56 px, 2x2 cells 112 px, the 1x1 cell the whole image).

    python scripts/make_example.py            # rewrite data/example/
    python scripts/make_example.py --check    # only verify the stored files match
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from PIL import Image

from ssd_lesson.data.collage import object_crops, package_file, paste_objects
from ssd_lesson.data.paths import EXAMPLE_DIR
from ssd_lesson.data.transforms import load_image
from ssd_lesson.data.voc import parse_voc_xml, write_voc_xml

BACKGROUND = "skimage/data/grass.png"  # a field, as in the article's photo (CC0)
# (crop, box (y0, x0, y1, x1) in pixels of the 224x224 image), pasted in this order: later ones on top.
OBJECTS = [
    ("astronaut.png#0", (8, 6, 128, 89)),          # person, 83x120: a tall 2x2-grid anchor fits
    ("grace_hopper.jpg#0", (14, 98, 78, 153)),     # person, 55x64: 4x4 grid
    ("chelsea.png#0", (20, 160, 62, 216)),         # cat, 56x42: 4x4 grid
    ("motorcycle_left.png#0", (88, 40, 221, 220)),  # motorbike, 180x133: the 1x1 grid
]


def make() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    crops = {c.source: c for c in object_crops()}
    bg = np.asarray(Image.fromarray(load_image(package_file(BACKGROUND))).resize((224, 224), Image.BILINEAR))
    collage = paste_objects(bg, [crops[name] for name, _ in OBJECTS], np.array([b for _, b in OBJECTS]),
                            [False] * len(OBJECTS))
    return collage.image, collage.boxes, collage.labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--check", action="store_true", help="only verify that data/example matches")
    args = parser.parse_args(argv)
    image, boxes, labels = make()
    png, xml = EXAMPLE_DIR / "example.png", EXAMPLE_DIR / "example.xml"
    if args.check:
        rec = parse_voc_xml(xml, EXAMPLE_DIR)
        same = (np.array_equal(load_image(png), image) and np.array_equal(rec.boxes, boxes)
                and np.array_equal(rec.labels, labels))
        print("data/example matches the script" if same else "data/example differs from the script")
        return 0 if same else 1
    EXAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(png)
    write_voc_xml(xml, png.name, 224, 224, boxes, labels,
                  source="ssd-lesson embedded example (scripts/make_example.py)")
    print(f"wrote {png} and {xml}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
