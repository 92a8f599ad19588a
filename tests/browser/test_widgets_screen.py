"""The widgets of notebooks 03 and 05 and FollowBox on one 1440x900 screen of JupyterLab:
each fits the viewport, one ArrowRight on each focused slider changes the figure, and FollowBox
follows the box whose number is typed or whose outline is clicked, as the library computes it."""
from __future__ import annotations

import math
import time

import pytest

from .lab import Slider, changed_fraction, notebook_of_cells

pytestmark = pytest.mark.browser

CELLS = [
    "from ssd_lesson.course.lesson import start_lesson\n"
    "ex, anchors, class_logits, box_actns, gt_boxes, gt_labels = start_lesson(figure_format='jpeg')",
    "from ssd_lesson.course.widgets import BoxWidget\nBoxWidget(ex, anchors, box_actns, index=99, image_format='jpeg')",
    "from ssd_lesson.course.widgets import ThresholdWidget\nThresholdWidget(ex, anchors, class_logits, box_actns, image_format='jpeg')",
    "from ssd_lesson.course.follow import FollowBox\nFollowBox(ex, anchors, class_logits, box_actns, index=99, image_format='jpeg')",
]


@pytest.fixture(scope="module")
def screen(lab, browser):
    with notebook_of_cells(lab.server, browser, CELLS, "widgets_screen.ipynb", workspace="wscreen") as page:
        yield page


@pytest.mark.parametrize("n, sliders", [(0, ["tanh(dy)", "tanh(dx)", "tanh(dh)", "tanh(dw)"]), (1, ["IoU threshold"])])
def test_widget_fits_the_screen_and_every_arrow_step_shows(screen, out_dir, n, sliders):
    output = screen.widget_outputs().nth(n)
    output.scroll_into_view_if_needed()
    box = output.bounding_box()
    assert box["height"] <= 900, f"widget {n} is {box['height']:.0f} px tall"
    img = output.locator("img").first
    natural = img.evaluate("i => [i.naturalWidth, i.naturalHeight, i.clientWidth, i.clientHeight]")
    assert natural[:2] == natural[2:], f"image shown at {natural[2:]} for {natural[:2]} pixels"
    after = None
    for d in sliders:
        slider = Slider(screen, output, d, readout=lambda: output.locator(".widget-html").first)
        key = "ArrowLeft" if float(slider.view().value) >= 0.98 else "ArrowRight"  # at the end a key does nothing
        before, after = slider.press(key, before=after, shot=True)
        assert after.image_src != before.image_src
        frac = changed_fraction(before.image_png, after.image_png)
        assert frac > 0.0005, f"{d}: one {key} changed {frac:.3%} of the figure"
        (out_dir / f"screen_{n}_{d}_before.png").write_bytes(before.widget_png)
        (out_dir / f"screen_{n}_{d}_after.png").write_bytes(after.widget_png)


@pytest.fixture(scope="module")
def follow():
    """FollowBox built here, in the test process, on the same example: the library's numbers and pixels."""
    from ssd_lesson.course.widgets.follow import FollowBox
    from ssd_lesson.course.lesson import start_lesson

    ex, anchors, class_logits, box_actns, _, _ = start_lesson(verbose=False)
    return FollowBox(ex, anchors, class_logits, box_actns, index=99)


def _library_readout(follow, index: int) -> str:
    """The readout FollowBox gives box ``index`` in the test process (the text inside its ``<pre>``)."""
    return follow.set(index).readout.value.split(">", 1)[1].removesuffix("</pre>").strip()


def _steady_point_on_top_edge(follow, a: int) -> tuple[float, float, int]:
    """A point on box ``a``'s top edge in the Fig. 4 view, and the box a click there picks: where
    possibly ``a`` itself, and one where each whole pixel around it (coordinates rounded down or up)
    picks the same box, so that the browser's rounding of the click cannot tip it to another outline."""
    y0, x0, _, x1 = follow.pick_boxes[a]
    steady = []
    for f in sorted((i / 20 for i in range(1, 20)), key=lambda f: abs(f - 0.5)):  # from the middle out
        px, py = follow.pixel_at(y0, x0 + f * (x1 - x0))
        around = {follow.box_at(x, y) for x in (math.floor(px), math.ceil(px)) for y in (math.floor(py), math.ceil(py))}
        if len(around) == 1:
            steady.append((px, py, around.pop()))
    assert steady, f"no steady point on box {a}'s top edge"
    return next((p for p in steady if p[2] == a), steady[0])


def _readout_after(screen, output, before: str, timeout_s: float = 30) -> str:
    readout = output.locator(".widget-html pre").first
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and readout.inner_text() == before:
        screen.page.wait_for_timeout(100)
    screen.wait_idle()
    screen.page.wait_for_timeout(300)
    return readout.inner_text()


def test_follow_box_fits_the_screen_and_follows_the_box_typed_or_clicked(screen, follow, out_dir):
    output = screen.widget_outputs().nth(2)
    output.scroll_into_view_if_needed()
    assert output.bounding_box()["height"] <= 900
    (out_dir / "screen_follow_box.png").write_bytes(output.screenshot())
    readout = output.locator(".widget-html pre").first
    text = readout.inner_text()
    assert text.startswith("box 99: ") and text.strip() == _library_readout(follow, 99)
    # 1. type a number into the box field
    field = output.locator(".widget-inline-hbox", has=screen.page.locator(".widget-label", has_text="box")).locator("input")
    field.first.fill("150")
    field.first.press("Enter")
    text = _readout_after(screen, output, text)
    want = _library_readout(follow, 150)
    assert text.strip() == want, f"the page follows {text[:40]!r}; the library's box 150 reads {want[:40]!r}"
    # 2. click the outline of a box in the Fig. 4 view, where the figure draws its top edge
    pick = output.locator("img").first
    natural = pick.evaluate("i => [i.naturalWidth, i.naturalHeight, i.clientWidth, i.clientHeight]")
    assert natural[:2] == natural[2:] == list(follow.pixel_size_of_pick()), natural
    for a in (5, 188):
        px, py, expected = _steady_point_on_top_edge(follow, a)
        before = readout.inner_text()
        pick.click(position={"x": float(px), "y": float(py)})
        text = _readout_after(screen, output, before)
        assert text.startswith(f"box {expected}: "), f"clicked box {a}'s outline; the page follows {text[:30]!r}"
        assert text.strip() == _library_readout(follow, expected)
    (out_dir / "screen_follow_box_clicked.png").write_bytes(output.screenshot())
    assert screen.page_errors == []


def test_key_press_to_new_figure_is_recorded(screen):
    """Printed, not asserted: per widget, the time from a key press to the new figure on the page."""
    from .lab import key_to_new_figure

    times = {}
    for n, name, d in ((0, "BoxWidget", "tanh(dx)"), (1, "ThresholdWidget", "IoU threshold")):
        output = screen.widget_outputs().nth(n)
        slider = Slider(screen, output, d, readout=lambda: output.locator(".widget-html").first)
        slider.view()
        for key in ("ArrowLeft", "ArrowRight"):
            times.setdefault(name, []).append(key_to_new_figure(screen, output, lambda: (slider.handle.focus(),
                                                                                         slider.handle.press(key))))
            screen.wait_idle()
    output = screen.widget_outputs().nth(2)
    output.scroll_into_view_if_needed()
    field = output.locator(".widget-inline-hbox", has=screen.page.locator(".widget-label", has_text="box")).locator("input")
    for a in ("98", "97"):
        field.first.fill(a)
        times.setdefault("FollowBox", []).append(key_to_new_figure(screen, output, lambda: field.first.press("Enter")))
        screen.wait_idle()
    for name, ms in times.items():
        print(f"key press to new figure, {name}: " + ", ".join(f"{t:.0f} ms" for t in ms))
    assert all(t > 0 for ms in times.values() for t in ms)
