"""What several test files share: seeded random batches and devices for the library tests,
readers for executed notebooks and drawn figures, and the synthetic example they draw."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
import torch
from PIL import Image
from matplotlib.patches import Rectangle

from ssd_lesson import PAD_LABEL, make_anchors, ssd_loss
from ssd_lesson.course.lesson import example_activations, synthetic_example
from ssd_lesson.data.voc import VOC_CLASSES

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"))]


def random_boxes(n, gen, dtype=torch.float64, lo=0.02, hi=0.6):
    """``(n, 4)`` valid corner boxes inside the unit square."""
    y0, x0 = torch.rand(n, generator=gen, dtype=dtype) * 0.7, torch.rand(n, generator=gen, dtype=dtype) * 0.7
    h = lo + torch.rand(n, generator=gen, dtype=dtype) * (hi - lo)
    w = lo + torch.rand(n, generator=gen, dtype=dtype) * (hi - lo)
    return torch.stack([y0, x0, (y0 + h).clamp(max=1), (x0 + w).clamp(max=1)], dim=1)


def random_batch(B, max_g, gen, n_classes=20, A=189, dtype=torch.float64, min_g=0):
    """Activations plus ground truth padded with label -1, 0..max_g boxes per image."""
    G = max_g
    gt_boxes = torch.zeros(B, G, 4, dtype=dtype)
    gt_labels = torch.full((B, G), PAD_LABEL, dtype=torch.long)
    for b in range(B):
        g = int(torch.randint(min_g, max_g + 1, (1,), generator=gen))
        gt_boxes[b, :g] = random_boxes(g, gen, dtype)
        gt_labels[b, :g] = torch.randint(0, n_classes, (g,), generator=gen)
    class_logits = torch.randn(B, A, n_classes + 1, generator=gen, dtype=dtype) * 2
    box_actns = torch.randn(B, A, 4, generator=gen, dtype=dtype)
    return class_logits, box_actns, gt_boxes, gt_labels


#: The cell tag that makes nbval compare a cell's stored text output (the numbers set beside the article).
CHECK_OUTPUT = "nbval-check-output"


def checks_output(cell: nbformat.NotebookNode) -> bool:
    """Whether nbval compares ``cell``'s stored output: it carries the tag, in metadata, never as a comment
    a learner would read."""
    return CHECK_OUTPUT in cell.metadata.get("tags", [])


def tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    """The one cell of ``nb`` carrying ``tag``."""
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def opens_with_the_kit(nb: nbformat.NotebookNode) -> bool:
    """The notebook's first code cell is its setup: two lines of code that call the starting kit."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    lines = [ln for ln in code[0].source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    kit = [ln for ln in lines if "ssd_lesson.course.lesson import" in ln or "start_lesson(" in ln or "setup_notebook(" in ln]
    return len(kit) == 2 and any("start_lesson(" in ln or "setup_notebook(" in ln for ln in kit)


def stdout(cell: nbformat.NotebookNode) -> str:
    """What ``cell`` printed to stdout."""
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def boxes_in(ax, prefix: str = "box:") -> dict:
    """``{gid: (y0, x0, y1, x1)}`` of the box rectangles drawn on ``ax``."""
    out = {}
    for p in ax.patches:
        if isinstance(p, Rectangle) and (p.get_gid() or "").startswith(prefix):
            x0, y0 = p.get_xy()
            out[p.get_gid()] = (y0, x0, y0 + p.get_height(), x0 + p.get_width())
    return out


def synthetic_case() -> SimpleNamespace:
    """The synthetic example with seeded activations (no checkpoint) and its loss in both match modes.

    Fields: ``ex``, ``anchors``, ``cl``, ``ba`` (class and box activations), ``res`` and
    ``by_anchors`` (:class:`~ssd_lesson.core.loss.SSDLossResult` matching on predictions / anchors).
    """
    ex = synthetic_example()
    anchors = make_anchors()
    cl, ba, _ = example_activations(ex, anchors, seed=0, checkpoint=False, verbose=False)
    _, gb, gl = ex.batch()
    return SimpleNamespace(ex=ex, anchors=anchors, cl=cl, ba=ba, res=ssd_loss(cl, ba, gb, gl, anchors),
                           by_anchors=ssd_loss(cl, ba, gb, gl, anchors, match_on="anchors"))


# ---------------------------------------------------------------- small Pascal VOC sets, in both layouts
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
#: A small VOC 2012: its ids carry their year; no image in test (its test annotations are not public).
SPEC_2012 = {
    "2008_000002": ("train", 30, 36, [("dog", 3, 4, 20, 25, 0)]),
    "2008_000008": ("train", 28, 40, [("horse", 1, 2, 30, 20, 0), ("person", 20, 5, 38, 27, 1)]),
    "2009_000011": ("val", 32, 32, [("bird", 5, 5, 25, 25, 0)]),
    "2010_000003": ("train", 26, 30, []),
    "2011_000007": ("val", 36, 28, [("boat", 2, 10, 27, 30, 0)]),
}


def _write_image(path: Path, h: int, w: int, objects) -> None:
    im = np.full((h, w, 3), 40, np.uint8)
    for k, (_, x0, y0, x1, y1, _) in enumerate(objects):  # a filled rectangle exactly on each box
        im[y0 - 1:y1, x0 - 1:x1] = (200, 30 * k, 100)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(im).save(path, quality=95)


def _voc_xml(image_id, h, w, objects, year="2007") -> str:
    objs = "".join(f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>"
                   f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                   for n, x0, y0, x1, y1, d in objects)
    return (f"<annotation><folder>VOC{year}</folder><filename>{image_id}.jpg</filename>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size><segmented>0</segmented>{objs}</annotation>")


def make_voc(root: Path, spec=SPEC, year="2007") -> Path:
    """Official layout: root/VOCdevkit/VOC<year>/{Annotations,JPEGImages,ImageSets/Main}."""
    base = root / "VOCdevkit" / f"VOC{year}"
    (base / "Annotations").mkdir(parents=True)
    (base / "ImageSets" / "Main").mkdir(parents=True)
    for iid, (_, h, w, objs) in spec.items():
        _write_image(base / "JPEGImages" / f"{iid}.jpg", h, w, objs)
        (base / "Annotations" / f"{iid}.xml").write_text(_voc_xml(iid, h, w, objs, year))
    splits = {s: [i for i, v in spec.items() if v[0] == s] for s in ("train", "val", "test")}
    splits["trainval"] = sorted(splits["train"] + splits["val"])
    for s, ids in splits.items():
        (base / "ImageSets" / "Main" / f"{s}.txt").write_text("".join(f"{i}\n" for i in ids))
    return base


def make_fastai(root: Path, spec=SPEC, year="2007") -> Path:
    """fastai's pascal_<year>: {train,valid,test}.json with bbox [x, y, w, h]; images in train/ and test/."""
    base = root / f"pascal_{year}"
    cats = [{"supercategory": "none", "id": i + 1, "name": n} for i, n in enumerate(VOC_CLASSES)]
    ann_id = 0
    for split, fname, folder in (("train", "train.json", "train"), ("val", "valid.json", "train"), ("test", "test.json", "test")):
        images, anns = [], []
        for iid, (s, h, w, objs) in spec.items():
            if s != split:
                continue
            _write_image(base / folder / f"{iid}.jpg", h, w, objs)
            images.append({"file_name": f"{iid}.jpg", "height": h, "width": w, "id": int(iid)})  # 2008_000008: 2008000008
            for n, x0, y0, x1, y1, d in objs:  # as Detectron's VOC json: x = xmin - 1, w = xmax - xmin + 1
                ann_id += 1
                anns.append({"segmentation": [], "area": 1, "iscrowd": 0, "image_id": int(iid), "id": ann_id,
                             "bbox": [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1],
                             "category_id": VOC_CLASSES.index(n) + 1, "ignore": d})
        (base / fname).write_text(json.dumps({"images": images, "type": "instances", "annotations": anns, "categories": cats}))
    return base


def learner_function(source: str):
    """The one ``my_...`` function that ``source`` (a learner's your-turn cell) defines."""
    import torch

    ns = {"torch": torch}
    exec(source, ns)
    (fn,) = [v for k, v in ns.items() if k.startswith("my_")]
    return fn


def checked(capsys, name: str, fn) -> tuple[bool, str]:
    """``check(name, fn)``'s verdict and the one line it printed (never a traceback)."""
    from ssd_lesson.course.exercises import check

    ok = check(name, fn)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "Traceback" not in out, out
    return ok, out


def seeded_example():
    """The offline example, the lesson's anchors, seeded random activations (no checkpoint) and the example's
    ground truth: ``(example, anchors, class_logits (1, 189, 21), box_actns (1, 189, 4), gt_boxes, gt_labels)``.
    Imported when called: the modules that use it decide their own tier."""
    from ssd_lesson import make_anchors
    from ssd_lesson.course.lesson import example_activations, load_example

    ex = load_example(offline=True)
    anchors = make_anchors()
    class_logits, box_actns, _ = example_activations(ex, anchors, seed=0, checkpoint=False, verbose=False)
    _, gt_boxes, gt_labels = ex.batch()
    return ex, anchors, class_logits, box_actns, gt_boxes, gt_labels
