"""The widgets of notebooks 02, 04, 06 and 10 in JupyterLab on a 1440x900 screen: each fits, every
control moved from the keyboard changes the figure, and the readout then states the library's number
(the same widget driven in the test process). Prints, per widget, the time from a key press to the new
figure on the page (a measurement, not asserted) and saves a screenshot of each under ``out_dir``."""
from __future__ import annotations

import re
import time

import pytest

from .lab import Slider, changed_fraction, key_to_new_figure, notebook_of_cells

pytestmark = pytest.mark.browser

SETUP = ("from ssd_lesson.course.lesson import start_lesson\n"
         "from ssd_lesson.drawing import plots\nfrom ssd_lesson.data.voc import VOC_CLASSES\n"
         "ex, anchors, class_logits, box_actns, gt_boxes, gt_labels = start_lesson(figure_format='jpeg')")
BUILD = {
    "anchor": "AnchorWidget(ex, image_format='jpeg')",
    "iou": "IouWidget(ex, gt=0, image_format='jpeg')",
    "focal": "FocalWidget(ex, anchors, class_logits, box_actns, image_format='jpeg')",
    "detection": "DetectionWidget([plots.as_scene(ex).image], class_logits, box_actns, anchors, [gt_boxes[0]], "
                 "[gt_labels[0]], VOC_CLASSES, image_format='jpeg')",
}
IMPORTS = ("from ssd_lesson.course.widgets_more import AnchorWidget, IouWidget\n"
           "from ssd_lesson.course.widgets_loss import DetectionWidget, FocalWidget\n")
TIMES: dict[str, list[float]] = {}


@pytest.fixture(scope="module")
def screen(lab, browser):
    try:
        with notebook_of_cells(lab.server, browser, [SETUP, IMPORTS, *BUILD.values()], "widgets_more_screen.ipynb",
                               workspace="wmore") as page:
            yield page
    finally:
        for name, times in TIMES.items():
            print(f"key press to new figure, {name}: " + ", ".join(f"{t:.0f} ms" for t in times))


@pytest.fixture(scope="module")
def here():
    """The same widgets in the test process: the library's numbers."""
    from ssd_lesson.course.lesson import start_lesson
    from ssd_lesson.course.widgets import DetectionWidget, FocalWidget
    from ssd_lesson.course.widgets import AnchorWidget, IouWidget
    from ssd_lesson.data.voc import VOC_CLASSES
    from ssd_lesson.drawing import plots

    ex, anchors, class_logits, box_actns, gt_boxes, gt_labels = start_lesson(verbose=False)
    return {"anchor": AnchorWidget(ex, dpi=40), "iou": IouWidget(ex, gt=0, dpi=40),
            "focal": FocalWidget(ex, anchors, class_logits, box_actns, dpi=40),
            "detection": DetectionWidget([plots.as_scene(ex).image], class_logits, box_actns, anchors, [gt_boxes[0]],
                                         [gt_labels[0]], VOC_CLASSES, dpi=40)}


def _key_to_pixels(screen, output, press) -> float:
    """Milliseconds from a key press to the page showing a different figure."""
    return key_to_new_figure(screen, output, press)


def _fits(output):
    output.scroll_into_view_if_needed()
    box = output.bounding_box()
    assert box["height"] <= 900 and box["width"] <= 1440, box
    img = output.locator("img").first
    natural = img.evaluate("i => [i.naturalWidth, i.naturalHeight, i.clientWidth, i.clientHeight]")
    assert natural[:2] == natural[2:], f"image shown at {natural[2:]} for {natural[:2]} pixels"


def _number(text: str, after: str) -> str:
    return re.search(re.escape(after) + r"\s*([0-9][0-9.,]*[0-9])", text).group(1)


@pytest.mark.parametrize("n, name, sliders", [(1, "iou", ["cy", "cx", "h", "w"]), (2, "focal", ["gamma", "alpha"]),
                                              (3, "detection", ["score above", "NMS IoU"])])
def test_every_slider_step_shows_the_library_number(screen, here, out_dir, n, name, sliders):
    output = screen.widget_outputs().nth(n)
    _fits(output)
    w = here[name]
    readout = lambda: output.locator(".widget-html").first  # noqa: E731
    for d in sliders:
        slider = Slider(screen, output, d, readout=readout)
        key = "ArrowRight"  # every widget starts below each slider's end
        before_png = output.locator("img").first.screenshot()
        TIMES.setdefault(name, []).append(_key_to_pixels(screen, output, lambda: (slider.handle.focus(),
                                                                                   slider.handle.press(key))))
        screen.wait_idle()
        screen.page.wait_for_timeout(300)
        after = slider.view()
        assert changed_fraction(before_png, after.image_png) > 0.0002, f"{name} {d}: one {key} changed nothing"
        value = float(after.value)
        if name == "iou":
            w.set(**{d: value})
            assert f"{w.iou:.4f}" == re.findall(r"= ([0-9.]+)", after.readout)[-1], (after.readout, w.iou)
        elif name == "focal":
            w.set(**{d: value})
            assert _number(after.readout, "focal") == f"{w.total:.4f}", (after.readout, w.total)
        else:
            w.set(**{("score" if d == "score above" else "nms_iou"): value})
            assert _number(after.readout, "mAP@0.5") == f"{w.map['map_50']:.4f}", (after.readout, w.map)
    (out_dir / f"widget_{name}.png").write_bytes(output.screenshot())
    assert screen.page_errors == []


def test_anchor_widget_dropdowns_and_ssd300(screen, here, out_dir):
    output = screen.widget_outputs().nth(0)
    _fits(output)
    w = here["anchor"]
    readout = output.locator(".widget-html").first
    assert _number(readout.inner_text(), "") == "189"
    for i, field in enumerate(("grids", "zooms", "ratios")):
        select = output.locator("select").nth(i)
        # the next entry of each list (headless Chromium's closed <select> ignores the arrow keys)
        TIMES.setdefault("anchor", []).append(_key_to_pixels(screen, output, lambda: select.select_option(index=1)))
        screen.wait_idle()
        choice = getattr(w, field).options[1][1]
        w.set(**{field: choice})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _number(readout.inner_text(), "") != f"{w.count:,}":
            screen.page.wait_for_timeout(100)
        assert _number(readout.inner_text(), "") == f"{w.count:,}", (field, readout.inner_text(), w.count)
    button = output.locator("button", has_text="SSD300")
    TIMES["anchor"].append(_key_to_pixels(screen, output, lambda: button.click()))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "8,732" not in readout.inner_text():
        screen.page.wait_for_timeout(100)
    assert _number(readout.inner_text(), "") == "8,732"
    (out_dir / "widget_anchor.png").write_bytes(output.screenshot())
    assert screen.page_errors == []


def test_dragging_across_the_whole_range_ends_on_the_final_value(screen, here):
    """A drag sends every value it passes (continuous_update); the figure ends on the last, without a backlog."""
    output = screen.widget_outputs().nth(2)
    output.scroll_into_view_if_needed()
    readout = output.locator(".widget-html").first
    slider = Slider(screen, output, "gamma", readout=lambda: readout)
    track = slider.root.locator(".noUi-target").first.bounding_box() or slider.root.bounding_box()
    handle = slider.handle.bounding_box()
    y = handle["y"] + handle["height"] / 2
    page = screen.page
    t = time.monotonic()
    page.mouse.move(handle["x"] + handle["width"] / 2, y)
    page.mouse.down()
    for k in range(41):  # to the right end and back to the left end, 40 moves each way
        page.mouse.move(track["x"] + track["width"] * k / 40, y)
    for k in range(40, -1, -1):
        page.mouse.move(track["x"] + track["width"] * k / 40, y)
    page.mouse.up()
    screen.wait_idle()
    settled_ms = 1000 * (time.monotonic() - t)
    page.wait_for_timeout(300)
    value = float(slider.view().value)
    assert value == 0.0, f"the drag ended at gamma {value}"
    w = here["focal"].set(gamma=value)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _number(readout.inner_text(), "focal") != f"{w.total:.4f}":
        page.wait_for_timeout(100)
    assert _number(readout.inner_text(), "focal") == f"{w.total:.4f}", (readout.inner_text(), w.total)
    print(f"drag over 82 positions of gamma: the kernel idle {settled_ms:.0f} ms after the drag began")
    assert screen.page_errors == []
