"""A matplotlib figure shown inside an ipywidget, at its own pixel size, with a static copy for offline pages.

The widgets (:mod:`ssd_lesson.course.widgets`, :mod:`ssd_lesson.course.follow`) each own one
:class:`~matplotlib.figure.Figure`, redraw it on every change and show it as image bytes in an
``ipywidgets.Image``: this works under ``%matplotlib inline`` (no ipympl) and in tests without a browser.
"""
from __future__ import annotations

import base64
import io
from typing import Any

import ipywidgets as W
from matplotlib.figure import Figure

MARGIN_COLOR = "#5a5a5a"  # around the photo: white dashes and light boxes stay visible


def _png(fig: Figure, dpi: int, fmt: str = "png") -> bytes:
    """The figure as image bytes: PNG, or JPEG (quality 75: 5x smaller for figures full of photographs)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, **({"pil_kwargs": {"quality": 75}} if fmt == "jpeg" else {}))
    return buf.getvalue()


def pixel_size(fig: Figure, dpi: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of ``fig`` saved at ``dpi`` (its inches times ``dpi``)."""
    w, h = fig.get_size_inches()
    return int(round(w * dpi)), int(round(h * dpi))


def show(image: W.Image, fig: Figure, dpi: int) -> None:
    """Put ``fig`` into ``image`` (in the image's format) at its own pixel size: never stretched."""
    image.value = _png(fig, dpi, image.format)
    w, h = pixel_size(fig, dpi)
    image.layout.width, image.layout.height = f"{w}px", f"{h}px"


class _Shown:
    """Shared plumbing: the widget tree is ``self.widget``; displaying the object displays it."""

    widget: W.Widget
    figure: Figure
    image: W.Image
    dpi: int
    freeze_layout = True  # the panels stay where the first frame put them (no jumping between frames)

    def _render(self) -> None:
        show(self.image, self.figure, self.dpi)
        if self.freeze_layout and self.figure.get_layout_engine() is not None:
            self.figure.set_layout_engine("none")

    @property
    def pixel_size(self) -> tuple[int, int]:
        """``(width, height)`` of the image shown, in pixels (the figure's inches times ``dpi``)."""
        return pixel_size(self.figure, self.dpi)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view plus a static copy of its figure as it is now (``image/png`` or ``image/jpeg``).

        JupyterLab shows the live widget; a page without a widget renderer (an HTML
        export opened offline, GitHub's viewer) shows the widget's own figure instead.
        """
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, tuple):  # (data, metadata)
            data, metadata = bundle
        else:
            data, metadata = bundle, None
        if data is not None and self.image.value:
            data = dict(data)
            data[f"image/{self.image.format}"] = base64.b64encode(self.image.value).decode("ascii")
        return data if metadata is None else (data, metadata)
