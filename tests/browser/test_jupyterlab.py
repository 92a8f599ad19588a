"""The series as learners open it: every notebook runs clean in JupyterLab, and its sliders redraw.

Each notebook is a fresh copy (no outputs) opened in a real JupyterLab in Chromium
and run with Run All. The widgets are then moved from the keyboard and their
readouts checked against the library, computed here in the test process on the
same example.
"""
from __future__ import annotations

import math
import re

import pytest

from ssd_lesson import activations_to_boxes, ssd_loss
from ssd_lesson.commands.notebooks import series

from .lab import Slider, View, changed_fraction

pytestmark = pytest.mark.browser

NOTEBOOKS = [p.name for p in series()]
LIMIT_S = {"09_training.ipynb": 900}  # trains 2 epochs on CPU: 268-483 s measured on 2 shared cores
DEFAULT_LIMIT_S = 300  # the others: 21-100 s measured on 2 shared cores
# Widget views each notebook must show live once it has run (the rest must show none).
WIDGET_VIEWS = {"02_grid_cells_and_anchors.ipynb": 1, "03_predicted_boxes.ipynb": 1, "04_iou.ipynb": 1,
                "05_matching.ipynb": 1, "06_classification_loss.ipynb": 1, "08_ssd_loss.ipynb": 1,
                "10_inference.ipynb": 1, "12_ssd_paper_loss.ipynb": 1}


@pytest.fixture(scope="module")
def lesson():
    """The notebooks' example, anchors and activations, computed the way notebooks 03 and 05 do."""
    from ssd_lesson.course.lesson import start_lesson

    _, anchors, class_logits, box_actns, gt_boxes, gt_labels = start_lesson(verbose=False)
    return dict(anchors=anchors, class_logits=class_logits, box_actns=box_actns, gt_boxes=gt_boxes,
                gt_labels=gt_labels)


def save(out_dir, stem: str, before: View, after: View) -> None:
    (out_dir / f"{stem}_before.png").write_bytes(before.widget_png)
    (out_dir / f"{stem}_after.png").write_bytes(after.widget_png)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_clean_in_jupyterlab(lab, name):
    nb = lab.run(name, LIMIT_S.get(name, DEFAULT_LIMIT_S))
    cells = nb.cells()
    errors = [f"cell {c['index']} ({c['source']!r}): {e}" for c in cells for e in c["errors"]]
    assert not errors, f"{name}: error outputs after Run All:\n" + "\n".join(errors)
    not_run = [c["index"] for c in cells if c["count"] is None]
    assert not not_run, f"{name}: code cells never executed: {not_run}"
    assert len(cells) >= 3 and all(isinstance(c["count"], int) for c in cells)
    assert nb.page_errors == [], f"{name}: JavaScript errors in the page: {nb.page_errors}"
    views = sum(c["widgets"] for c in cells)
    assert views == WIDGET_VIEWS.get(name, 0), f"{name}: {views} widget outputs"
    assert nb.widget_outputs().count() == views, f"{name}: not every widget output rendered a live widget"
    if not views:  # widget notebooks stay open for the slider tests below
        lab.close(name)


# ---- ThresholdWidget (notebook 05)

def threshold_readout(text: str) -> tuple[int, int, float, float]:
    m = re.search(r"(\d+) of (\d+) boxes positive; classification ([\d.]+), regression ([\d.]+)", text)
    assert m, f"unexpected ThresholdWidget readout {text!r}"
    return int(m[1]), int(m[2]), float(m[3]), float(m[4])


def test_threshold_slider_redraws_and_agrees_with_the_library(lab, lesson, out_dir):
    name = "05_matching.ipynb"
    nb = lab.run(name, DEFAULT_LIMIT_S)
    output = nb.widget_outputs().filter(has=nb.page.locator(".widget-label", has_text="IoU threshold"))
    assert output.count() == 1
    slider = Slider(nb, output, "IoU threshold", readout=lambda: output.locator(".widget-html").first)

    def expected(threshold: float) -> tuple[int, int, float, float]:
        r = ssd_loss(lesson["class_logits"], lesson["box_actns"], lesson["gt_boxes"], lesson["gt_labels"],
                     lesson["anchors"], iou_threshold=threshold)
        return (int(r.match.positive[0].sum()), len(lesson["anchors"]), float(r.classification[0]),
                float(r.regression[0]))

    def agrees(view: View) -> tuple[int, int, float, float]:
        shown, want = threshold_readout(view.readout), expected(float(view.value))
        assert shown[:2] == want[:2], f"threshold {view.value}: the page says {shown}, ssd_loss says {want}"
        assert shown[2:] == pytest.approx(want[2:], abs=2e-4)
        return shown

    after = None
    for key, step in (("ArrowRight", +0.05), ("ArrowLeft", -0.05), ("ArrowLeft", -0.05)):
        before, after = slider.press(key, before=after, shot=key == "ArrowRight")
        assert float(after.value) == pytest.approx(float(before.value) + step), (before.value, after.value)
        b, a = agrees(before), agrees(after)
        assert a[0] != b[0] and after.readout != before.readout
        assert after.image_src != before.image_src and changed_fraction(before.image_png, after.image_png) > 0.001
        if key == "ArrowRight":
            save(out_dir, "05_threshold_ArrowRight", before, after)
    assert nb.page_errors == []
    lab.close(name)


# ---- BoxWidget (notebook 03)

def box_readout(text: str) -> tuple[dict[str, float], list[float]]:
    acts = {k: float(m[1]) for k in ("dy", "dx", "dh", "dw")
            for m in [re.search(rf"^\s*{k}\s+([+-]?\d+\.\d+)", text, re.M)] if m}
    m = re.search(r"predicted box \(y0, x0, y1, x1\) = \(([^)]*)\)", text)
    assert m and len(acts) == 4, f"unexpected BoxWidget readout {text!r}"
    return acts, [float(v) for v in m[1].split(",")]


def test_box_sliders_redraw_and_agree_with_the_library(lab, lesson, out_dir):
    name = "03_predicted_boxes.ipynb"
    nb = lab.run(name, DEFAULT_LIMIT_S)
    output = nb.widget_outputs().filter(has=nb.page.locator(".widget-dropdown"))
    assert output.count() == 1
    chosen = output.locator(".widget-dropdown select").evaluate("s => s.options[s.selectedIndex].text")
    index = int(chosen.split(":")[0])  # "99: 4x4 grid, cell (2, 3), ..."
    actns = lesson["box_actns"][0].clone()  # what the sliders hold; each move below updates one entry
    readout = lambda: output.locator(".widget-html").first  # noqa: E731

    def agrees(view: View, atol: float = 6e-4) -> None:
        shown, box = box_readout(view.readout)
        for j, k in enumerate(("dy", "dx", "dh", "dw")):
            assert shown[k] == pytest.approx(float(actns[index, j]), abs=0.0051), (k, shown, actns[index])
        want = activations_to_boxes(actns.unsqueeze(0), lesson["anchors"])[0, index].tolist()
        assert box == pytest.approx(want, abs=atol), f"the page shows box {box}, activations_to_boxes gives {want}"

    moves, after = [], None
    for j, k in enumerate(("dy", "dx", "dh", "dw")):
        slider = Slider(nb, output, f"tanh({k})", readout)  # the sliders move tanh(activation)
        # 1. One key step where the box starts, away from 0 (so that typing 0 next changes something), unless
        #    the slider sits at its end: then the step goes the other way. It moves the box.
        start = float(slider.view().value)
        key = "ArrowLeft" if start >= 0.98 or -0.98 < start <= 0 else "ArrowRight"
        before, after = slider.press(key, before=after)
        assert 0 < abs(float(after.value) - float(before.value)) <= 0.03 + 0.011  # one step, onto the slider's grid
        actns[index, j] = math.atanh(float(after.value))
        agrees(after, atol=3e-3)  # the value shown has two decimals; the slider's own may have more
        moves.append((k, "start", changed_fraction(before.image_png, after.image_png)))
        assert after.image_src != before.image_src, f"{k}: one {key} at the start did not redraw the figure"
        # 2. Type 0 into the slider's readout box: the activation becomes 0.
        before, after = slider.type_value("0", before=after)
        assert float(after.value) == 0.0
        actns[index, j] = 0.0
        agrees(after)
        assert after.readout != before.readout and changed_fraction(before.image_png, after.image_png) > 0.001
        # 3. There, one ArrowRight visibly moves the box.
        before, after = slider.press("ArrowRight", before=after, shot=True)
        assert float(after.value) == pytest.approx(0.03)
        actns[index, j] = math.atanh(0.03)
        agrees(after)
        assert after.readout != before.readout, f"{k}: the readout did not change"
        assert after.image_src != before.image_src
        frac = changed_fraction(before.image_png, after.image_png)
        assert frac > 0.0005, f"{k}: one ArrowRight at 0 changed {frac:.2%} of the figure's pixels"
        moves.append((k, "at 0", frac))
        save(out_dir, f"03_box_{k}_ArrowRight_at_0", before, after)
    print("pixels changed per ArrowRight:", ", ".join(f"{k} {where}: {f:.2%}" for k, where, f in moves))
    assert nb.page_errors == []
    lab.close(name)
