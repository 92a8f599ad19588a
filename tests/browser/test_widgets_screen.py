"""The widgets of notebooks 03 and 05 and FollowBox on one 1440x900 screen of JupyterLab:
each fits the viewport, and one ArrowRight on each focused slider changes the figure."""
from __future__ import annotations

import json

import pytest

from .lab import Notebook, Slider, changed_fraction

pytestmark = pytest.mark.browser

CELLS = [
    "from ssd_lesson.lesson import start_lesson\n"
    "ex, anchors, class_logits, box_actns, gt_boxes, gt_labels = start_lesson(figure_format='jpeg')",
    "from ssd_lesson.widgets import BoxWidget\nBoxWidget(ex, anchors, box_actns, index=99, image_format='jpeg')",
    "from ssd_lesson.widgets import ThresholdWidget\nThresholdWidget(ex, anchors, class_logits, box_actns, image_format='jpeg')",
    "from ssd_lesson.follow import FollowBox\nFollowBox(ex, anchors, class_logits, box_actns, index=99, image_format='jpeg')",
]


@pytest.fixture(scope="module")
def screen(lab, browser):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None}
                    for c in CELLS],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (lab.server.root / "widgets_screen.ipynb").write_text(json.dumps(nb))
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = Notebook.open(lab.server, context, "widgets_screen.ipynb", workspace="wscreen")
    try:
        page.run_all(300)
        yield page
    finally:
        page.close()
        context.close()


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


def test_follow_box_fits_the_screen(screen, out_dir):
    output = screen.widget_outputs().nth(2)
    output.scroll_into_view_if_needed()
    assert output.bounding_box()["height"] <= 900
    (out_dir / "screen_follow_box.png").write_bytes(output.screenshot())
