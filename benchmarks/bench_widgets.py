"""How long a widget takes to answer one key press, beside the time to render its figure alone.

Each widget is built on the lesson's example (``start_lesson(offline=True)``, one torch
thread) the way its notebook builds it, then stepped as a learner would with ``.set(...)``
(one keyboard step each, the figure re-rendered each time). The median and max per step
are printed beside ``render``: ``Figure.savefig`` of the same figure at the widget's dpi,
the cost of redrawing the whole figure from scratch.

    python benchmarks/bench_widgets.py            # every widget, a markdown table
    python benchmarks/bench_widgets.py --steps 10 # fewer steps
"""
from __future__ import annotations

import argparse
import io
import statistics
import time
from typing import Any, Callable, Iterator

import torch


def _steps_box(w: Any) -> Iterator[Callable[[], Any]]:
    for k in ("dy", "dx", "dh", "dw"):  # one ArrowRight, then one ArrowLeft, on every slider
        for d in (+1, -1):
            yield lambda k=k, d=d: w.set(**{k: w.sliders[k].value + d * w.sliders[k].step})


def _steps_threshold(w: Any) -> Iterator[Callable[[], Any]]:
    for t in [round(0.05 * i, 2) for i in range(1, 20)] + [0.4]:
        yield lambda t=t: w.set(t)


def _steps_follow(w: Any) -> Iterator[Callable[[], Any]]:
    for a in (98, 100, 5, 150, 188, 0, 64, 99):
        yield lambda a=a: w.set(a)


def _widgets(lesson: Any) -> dict[str, tuple[Callable[[], Any], Callable[[Any], Iterator[Callable[[], Any]]]]]:
    """name -> (build, steps): each built as its notebook builds it."""
    from ssd_lesson.course import widgets
    from ssd_lesson.course.widgets.follow import FollowBox

    ex, anchors, cl, ba = lesson.example, lesson.anchors, lesson.class_logits, lesson.box_actns
    found: dict[str, Any] = {
        "BoxWidget (03)": (lambda: widgets.BoxWidget(ex, anchors, ba, index=11, image_format="jpeg"), _steps_box),
        "ThresholdWidget (05)": (lambda: widgets.ThresholdWidget(ex, anchors, cl, ba, image_format="jpeg"),
                                 _steps_threshold),
        "FollowBox (08)": (lambda: FollowBox(ex, anchors, cl, ba, index=99, image_format="jpeg"), _steps_follow),
    }
    from ssd_lesson.course.widgets import DetectionWidget, FocalWidget
    from ssd_lesson.course.widgets import AnchorWidget, IouWidget
    from ssd_lesson.data.voc import VOC_CLASSES
    from ssd_lesson.drawing import plots

    image = plots.as_scene(ex).image
    found.update({
        "AnchorWidget (02)": (lambda: AnchorWidget(ex, image_format="jpeg"), _steps_anchor),
        "IouWidget (04)": (lambda: IouWidget(ex, image_format="jpeg"), _steps_iou),
        "FocalWidget (06)": (lambda: FocalWidget(ex, anchors, cl, ba, image_format="jpeg"), _steps_focal),
        # notebook 10 gives it the trained model's 40 held-out images; here the lesson's one example
        "DetectionWidget (10)": (lambda: DetectionWidget([image], cl, ba, anchors, [lesson.gt_boxes[0]],
                                                         [lesson.gt_labels[0]], VOC_CLASSES, image_format="jpeg"),
                                 _steps_detection),
    })
    return found


def _steps_anchor(w: Any) -> Iterator[Callable[[], Any]]:
    from ssd_lesson.course.widgets import GRID_CHOICES, RATIO_CHOICES, ZOOM_CHOICES

    for g in GRID_CHOICES[1:] + GRID_CHOICES[:1]:  # the lesson's 189 and its neighbours (SSD300 apart: 8,732)
        yield lambda g=g: w.set(grids=g)
    for z in ZOOM_CHOICES[1:] + ZOOM_CHOICES[:1]:
        yield lambda z=z: w.set(zooms=z)
    for r in RATIO_CHOICES[1:] + RATIO_CHOICES[:1]:
        yield lambda r=r: w.set(ratios=r)


def _steps_iou(w: Any) -> Iterator[Callable[[], Any]]:
    for k in w.NAMES:
        for d in (+1, -1):
            yield lambda k=k, d=d: w.set(**{k: w.sliders[k].value + d * w.sliders[k].step})


def _steps_focal(w: Any) -> Iterator[Callable[[], Any]]:
    for g in (1.25, 1.5, 2.0, 1.0):
        yield lambda g=g: w.set(gamma=g)
    for a in (0.3, 0.5, 0.75, 0.25):
        yield lambda a=a: w.set(alpha=a)


def _steps_detection(w: Any) -> Iterator[Callable[[], Any]]:
    for s in (0.3, 0.35, 0.4, 0.25):
        yield lambda s=s: w.set(score=s)
    for n in (0.55, 0.6, 0.45, 0.5):
        yield lambda n=n: w.set(nms_iou=n)


def _render_ms(w: Any) -> float:
    """One full redraw of the widget's figure, encoded as it is shown."""
    buf = io.BytesIO()
    t = time.perf_counter()
    w.figure.savefig(buf, format=w.image.format, dpi=w.dpi)
    return 1000 * (time.perf_counter() - t)


def run(repeats: int = 2, only: str = "") -> list[dict[str, Any]]:
    """Time every widget; a row per widget: ``median_ms``, ``max_ms``, ``render_ms``, ``steps``, ``build_ms``."""
    from ssd_lesson.course.lesson import start_lesson

    torch.set_num_threads(1)
    lesson = start_lesson(offline=True, verbose=False)
    rows = []
    for name, (build, steps) in _widgets(lesson).items():
        if only and only.lower() not in name.lower():
            continue
        t = time.perf_counter()
        w = build()
        build_ms = 1000 * (time.perf_counter() - t)
        times = []
        for _ in range(repeats):
            for step in steps(w):
                t = time.perf_counter()
                step()
                times.append(1000 * (time.perf_counter() - t))
        render = statistics.median(_render_ms(w) for _ in range(3))
        rows.append(dict(widget=name, steps=len(times), median_ms=statistics.median(times), max_ms=max(times),
                         render_ms=render, build_ms=build_ms))
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| widget | steps | median per step | max | full figure render (savefig) | build |",
             "|---|---|---|---|---|---|"]
    lines += [f"| `{r['widget']}` | {r['steps']} | {r['median_ms']:.0f} ms | {r['max_ms']:.0f} ms | "
              f"{r['render_ms']:.0f} ms | {r['build_ms']:.0f} ms |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2, help="passes over each widget's steps")
    p.add_argument("--only", default="", help="only the widgets whose name contains this")
    args = p.parse_args(argv)
    print(markdown(run(args.repeats, args.only)))


if __name__ == "__main__":
    main()
